"""podnet dig: ask the cluster DNS a question, directly or through a pod's resolv.conf."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import subprocess
import sys

import dns.exception
import dns.name
import dns.rdatatype
import dns.reversename

from podnet.cli.load import add_source_options, cluster_from_args
from podnet.errors import UsageError
from podnet.host.control import pick_cluster, request
from podnet.semantics.dns import ClusterDNS, DnsAnswer, Lookup, Record, resolv_conf

EXAMPLES = """examples:
  # a Service's ClusterIP, asked by its full name (as `dig` would, no search list)
  podnet dig backend.shop.svc.cluster.local -f examples/shop

  # a short name, resolved as a pod resolves it: its resolv.conf search list and ndots
  podnet dig backend.shop --from data/redis-0 -f examples/shop

  # SRV records of a headless Service's named port, with the endpoints' A records
  podnet dig _redis._tcp.redis.data.svc.cluster.local SRV -f examples/shop

  # reverse lookup of an address (PTR), and the machine-readable answer
  podnet dig -x 10.96.0.10 -o json -f examples/shop
"""


def add_parser(sub) -> None:
    p = sub.add_parser("dig", help="resolve a name with the cluster DNS (CoreDNS semantics), optionally from a pod",
                       description="Ask the cluster DNS one question and print the answer, dig-style.\n"
                                   "Without --from, NAME is asked as given (absolute). With --from NS/POD, NAME is\n"
                                   "resolved the way that pod's resolver would: its resolv.conf (dnsPolicy, dnsConfig),\n"
                                   "its search list and ndots; every name tried is listed.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("qname", metavar="NAME", help="the name to resolve (with -x: an IP address)")
    p.add_argument("qtype", metavar="TYPE", nargs="?", default="A",
                   help="record type: A (default), AAAA, SRV, PTR, TXT, CNAME, SOA, NS, ...")
    p.add_argument("--from", dest="source", metavar="NS/POD", help="resolve through this pod's resolv.conf")
    p.add_argument("-x", dest="reverse", action="store_true", help="reverse lookup: NAME is an address, TYPE is PTR")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format")
    add_source_options(p)


def parse_type(text: str) -> str:
    try:
        rdtype = dns.rdatatype.from_text(text.upper())
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise UsageError(f'error: unknown record type "{text}" (for example A, AAAA, SRV, PTR, TXT, CNAME, SOA, NS)') from None
    if dns.rdatatype.is_metatype(rdtype) and rdtype != dns.rdatatype.ANY:
        raise UsageError(f'error: record type "{text}" cannot be asked with a single query')
    return dns.rdatatype.to_text(rdtype)


def parse_name(text: str, reverse: bool) -> str:
    if reverse:
        try:
            return dns.reversename.from_address(str(ipaddress.ip_address(text))).to_text()
        except ValueError:
            raise UsageError(f'error: -x needs an IP address, not "{text}"') from None
    try:
        dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise UsageError(f'error: "{text}" is not a valid DNS name: {exc}') from None
    return text


def run(args) -> int:
    qtype = "PTR" if args.reverse and args.qtype == "A" else parse_type(args.qtype)
    qname = parse_name(args.qname, args.reverse)
    cluster = cluster_from_args(args.filename, args.config, args.name)
    server = ClusterDNS(cluster)
    if args.source:
        namespace, _, name = args.source.rpartition("/")
        namespace = namespace or "default"
        pod = cluster.get("Pod", namespace, name)
        if pod is None:
            raise UsageError(f'error: --from: pod "{namespace}/{name}" not found')
        resolv = resolv_conf(pod, cluster)
        lookup = server.lookup(qname, qtype, resolv)
        source = f"{namespace}/{name}"
    else:
        fqdn = qname if qname.endswith(".") else qname + "."
        answer = server.answer(fqdn, qtype)
        lookup = Lookup([fqdn], answer, fqdn if answer.positive else None,
                        str(cluster.config.networking.dns_service_ip), None, fqdn)
        resolv, source = None, None
    predicted = None
    if args.source and not args.filename:  # a running cluster: ask the real server from the pod
        predicted, lookup = lookup, live_lookup(args.name, source, qname, qtype)
    out = sys.stdout
    differs = predicted is not None and _summary(predicted) != _summary(lookup)
    if args.output == "json":
        document = {"rcode": lookup.final.rcode, "answers": [r.to_dict() for r in lookup.final.answers],
                    "tried": list(lookup.tried)}
        if differs:
            document["predicted"] = {"rcode": predicted.final.rcode, "tried": list(predicted.tried),
                                     "answers": [r.to_dict() for r in predicted.final.answers]}
        out.write(json.dumps(document, indent=2) + "\n")
        if lookup.error:
            print(f"podnet dig: {lookup.error}", file=sys.stderr)
    else:
        out.write(render_text(qname, qtype, lookup, source, resolv))
        if differs:
            out.write("\n;; the simulator predicted otherwise:\n" + render_text(qname, qtype, predicted, source, resolv))
    return 9 if lookup.error else 0  # dig's exit status when no server answered


def _summary(lookup: Lookup) -> tuple:
    """What must agree between the real answer and the prediction (TTLs and order aside)."""
    if lookup.error:
        return ("error",)
    return (lookup.final.rcode, (lookup.final_qname or "").lower(),
            frozenset((r.name.lower(), r.type, r.data.lower()) for r in lookup.final.answers))


def live_lookup(cluster_name: str | None, pod: str, qname: str, qtype: str) -> Lookup:
    """Run podnet.dns.probe inside the pod: its resolv.conf, its libc's walk, the real server."""
    argv = request(pick_cluster(cluster_name), "exec", target=pod, container=None)["argv"]
    src = os.pathsep.join(p for p in sys.path if p)
    result = subprocess.run(argv + ["env", f"PYTHONPATH={src}", sys.executable, "-m", "podnet.dns.probe", qname, qtype],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise UsageError(f"error: resolving from {pod} failed: {result.stderr.strip()}")
    doc = json.loads(result.stdout)

    def records(items) -> tuple:
        return tuple(Record(i["name"], i["type"], i["ttl"], i["data"]) for i in items)

    final = DnsAnswer(doc["rcode"], records(doc["answers"]), records(doc["authority"]), records(doc["additional"]),
                      doc["authoritative"])
    return Lookup(doc["tried"], final, doc["final_qname"] if final.positive else None, doc["server"], doc["error"],
                  doc["final_qname"])


def render_text(qname: str, qtype: str, lookup: Lookup, source: str | None, resolv) -> str:
    lines = [f"; <<>> podnet dig <<>> {qname} {qtype}" + (f" (from pod {source})" if source else "")]
    if resolv is not None:
        conf = resolv.render().strip().replace("\n", "; ") or "(empty)"
        lines.append(f";; resolv.conf: {conf}")
    if lookup.error:
        lines.append(f";; {lookup.error}")
    else:
        answer: DnsAnswer = lookup.final
        flags = "qr aa rd" if answer.authoritative else "qr rd"
        lines.append(f";; ->>HEADER<<- opcode: QUERY, status: {answer.rcode}")
        lines.append(f";; flags: {flags}; ANSWER: {len(answer.answers)}, AUTHORITY: {len(answer.authority)}, "
                     f"ADDITIONAL: {len(answer.additional)}")
    lines.append(f";; tried: {' '.join(lookup.tried)}")
    if not lookup.error:
        question = lookup.final_qname or lookup.tried[-1]
        lines += ["", ";; QUESTION SECTION:", f";{question} IN {qtype}"]
        for title, records in (("ANSWER", lookup.final.answers), ("AUTHORITY", lookup.final.authority),
                               ("ADDITIONAL", lookup.final.additional)):
            if records:
                lines += ["", f";; {title} SECTION:"] + [r.text() for r in records]
    if lookup.server:
        lines += ["", f";; SERVER: {lookup.server}#53 (cluster DNS)"]
    return "\n".join(lines) + "\n"

