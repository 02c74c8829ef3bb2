"""Resolve a name from inside a pod, the way its libc does, against the real cluster DNS.

Run in the pod's namespaces by `podnet dig --from POD` on a running cluster: reads the pod's
/etc/resolv.conf, walks its search list with semantics/dns.res_search (the walk the simulator
predicts with) and sends every query with dnspython over UDP (TCP when truncated), one
attempt per nameserver as glibc's `attempts:1`. Prints one JSON document.
"""

from __future__ import annotations

import json
import sys

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from podnet.semantics.dns import DnsAnswer, Record, ResolvConf, res_search

TIMEOUT = 2.0


def to_answer(response: dns.message.Message) -> DnsAnswer:
    def records(section) -> tuple[Record, ...]:
        return tuple(Record(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl, rdata.to_text())
                     for rrset in section for rdata in rrset)

    return DnsAnswer(dns.rcode.to_text(response.rcode()), records(response.answer), records(response.authority),
                     records(response.additional), bool(response.flags & dns.flags.AA))


def ask_servers(nameservers: list[str], qtype: str):
    def ask(fqdn: str) -> DnsAnswer | None:
        query = dns.message.make_query(fqdn, qtype)
        for server in nameservers or ["127.0.0.1"]:  # glibc's fallback without a nameserver line
            try:
                response = dns.query.udp(query, server, timeout=TIMEOUT, ignore_unexpected=True)
                if response.flags & dns.flags.TC:
                    response = dns.query.tcp(query, server, timeout=TIMEOUT)
                return to_answer(response)
            except (dns.exception.DNSException, OSError):
                continue
        return None

    return ask


def main(argv: list[str]) -> int:
    name, qtype = argv[0], (argv[1] if len(argv) > 1 else "A")
    with open("/etc/resolv.conf") as f:
        resolv = ResolvConf.parse(f.read())
    server = resolv.nameservers[0] if resolv.nameservers else None
    lookup = res_search(name, resolv, ask_servers(list(resolv.nameservers), qtype), server)
    final = lookup.final
    print(json.dumps({"tried": lookup.tried, "error": lookup.error, "server": lookup.server,
                      "final_qname": lookup.final_qname, "rcode": final.rcode, "authoritative": final.authoritative,
                      "answers": [r.to_dict() for r in final.answers],
                      "authority": [r.to_dict() for r in final.authority],
                      "additional": [r.to_dict() for r in final.additional]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
