"""One server block's plugin chain, query bytes in, response bytes out.

CoreDNS runs a query through its plugins in plugin.cfg order, whatever order the Corefile
lists them in; of podnet's, the ones that answer are `hosts`, then `kubernetes`, then `forward`
(`errors`, `log`, `cache`, `loadbalance`, `prometheus` wrap them). `hosts` and `kubernetes`
answer from data that only changes with the cluster (or the Corefile), so their responses are
built once per question with dnspython and kept as wire bytes (see wire.py); a new cluster state
means a new Engine and an empty memo, so answers follow the cluster at once. What `forward`
gets back is kept by the `cache` plugin for the record TTL (at most the plugin's), with the TTLs
counting down as CoreDNS's cache does.

The kubernetes plugin is semantics/dns.ClusterDNS: the same answers `podnet dig` predicts.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, replace

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename

from podnet.controlplane import Cluster
from podnet.dns import wire
from podnet.dns.metrics import Metrics
from podnet.semantics.corefile import in_zone
from podnet.semantics.dns import ClusterDNS, DnsAnswer, Record

log = logging.getLogger("podnet.dns")
PASS = DnsAnswer("SERVFAIL", authoritative=False)  # a plugin's "not mine: next plugin"
SERVFAIL = DnsAnswer("SERVFAIL", authoritative=False)
REFUSED = DnsAnswer("REFUSED", authoritative=False)
MEMO_LIMIT = 200_000  # questions kept; a flood of random names must not grow memory unbounded
EDNS_PAYLOAD = 1232  # what the server advertises (CoreDNS's default bufsize)


def _fqdn(name: str) -> str:
    return name.lower() if name.endswith(".") else name.lower() + "."


@dataclass(frozen=True)
class Forwarding:
    """The chain ended at `forward`: the server sends `query` upstream (asynchronously)."""
    query: dns.message.Message
    data: bytes
    tcp: bool
    limit: int


class Entry:
    """A memoised response: its wire variants (loadbalance rotations; each without the ID, see
    wire.splice), its metric labels, and the counts of the hot path (summed into the Metrics
    when scraped or retired).

    `udp` has one writer: the server's UDP listener thread (or whoever calls respond() for UDP
    when there is none). The Metrics never reset it; they remember how much they have counted
    (`udp_seen`, `tcp_seen`), so reading it from the loop thread loses nothing."""
    __slots__ = ("variants", "turn", "qtype", "rcode", "plugin", "denial", "udp", "tcp", "seconds",
                 "udp_seen", "tcp_seen")

    def __init__(self, variants: tuple[bytes, ...], qtype: str, rcode: str, plugin: str, denial: bool):
        self.variants, self.turn, self.qtype, self.rcode, self.plugin, self.denial = variants, 0, qtype, rcode, plugin, denial
        self.udp = self.tcp = 0  # answered from the hot table (a dict look-up: well under 250 µs)
        self.udp_seen = self.tcp_seen = 0  # how much of udp/tcp the Metrics have counted
        self.seconds = 0.0  # their total time

    def next(self) -> bytes:
        if len(self.variants) == 1:
            return self.variants[0]
        self.turn = (self.turn + 1) % len(self.variants)
        return self.variants[self.turn]


class HostsTable:
    """The hosts plugin: inline entries and a hosts file; A, AAAA and (unless no_reverse) PTR."""

    def __init__(self, config, server_zones: tuple[str, ...], file_text: str = ""):
        self.ttl = config.ttl
        self.zones = tuple(_fqdn(z) for z in (config.zones or server_zones))
        self.fallthrough = config.fallthrough
        self.names: dict[str, list[str]] = {}
        self.reverse: dict[str, list[str]] = {}
        entries = list(config.entries) + parse_hosts(file_text)
        for ip, names in entries:
            for name in names:
                self.names.setdefault(_fqdn(name), [])
                if ip not in self.names[_fqdn(name)]:
                    self.names[_fqdn(name)].append(ip)
                if config.reverse:
                    self.reverse.setdefault(_reverse_name(ip), []).append(name if name.endswith(".") else name + ".")

    def answer(self, name: str, lname: str, qtype: str) -> DnsAnswer:
        if not any(in_zone(lname, z) for z in self.zones):
            return PASS
        records: list[Record] = []
        if qtype in ("A", "AAAA") and lname in self.names:
            records = [Record(name, qtype, self.ttl, ip) for ip in self.names[lname] if (":" in ip) == (qtype == "AAAA")]
        elif qtype == "PTR" and lname in self.reverse:
            records = [Record(name, "PTR", self.ttl, target) for target in self.reverse[lname]]
        if records:
            return DnsAnswer("NOERROR", answers=tuple(records))
        if self.fallthrough is not None and (not self.fallthrough or any(in_zone(lname, _fqdn(z)) for z in self.fallthrough)):
            return PASS
        if lname in self.names or lname in self.reverse:
            return DnsAnswer("NOERROR")  # the name exists, with other types
        return SERVFAIL  # hosts has no SOA to deny with; CoreDNS answers SERVFAIL


def parse_hosts(text: str) -> list[tuple[str, tuple[str, ...]]]:
    out = []
    for line in (text or "").splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2:
            out.append((words[0], tuple(words[1:])))
    return out


def _reverse_name(ip: str) -> str:
    return dns.reversename.from_address(ip).to_text().lower()


class Engine:
    """Answers for one server block over one cluster state."""

    def __init__(self, config, cluster: Cluster | None, metrics: Metrics, hosts_file_text: str = ""):
        self.config = config
        self.metrics = metrics
        self.zones = tuple(_fqdn(z) for z in config.zones)
        self.kubernetes = (ClusterDNS(cluster, plugin=config.kubernetes, upstream=lambda name, qtype: PASS)
                           if config.kubernetes is not None and cluster is not None else None)
        self.hosts = HostsTable(config.hosts, self.zones, hosts_file_text) if config.hosts is not None else None
        self.memo: dict[bytes, Entry] = {}  # wire.memo_key (lowercased question, size limit) -> response
        # The exact query bytes after the ID -> (the response after the ID, its entry): a repeated
        # question is answered with one dict look-up (loadbalanced answers rotate: not here). For
        # the usual query the key and the response are the memo's own bytes objects (_remember).
        self.hot_udp: dict[bytes, tuple[bytes, Entry]] = {}
        self.hot_tcp: dict[bytes, tuple[bytes, Entry]] = {}
        self.cache_enabled = config.cache is not None
        self.forward_cache: dict[bytes, tuple[float, float, dns.message.Message]] = {}
        self.log_queries = bool(config.log)

    # -- the query path -------------------------------------------------------------------------

    def respond(self, data: bytes, tcp: bool = False, client=None, hot: bool = True) -> bytes | Forwarding | None:
        """The response to one query (None: send nothing). `hot=False` skips the hot tables'
        counters: the UDP listener's thread owns `Entry.udp`, so the loop thread answering a UDP
        query it handed over counts through the Metrics instead."""
        started = time.perf_counter()
        if hot and not self.log_queries:
            hot = (self.hot_tcp if tcp else self.hot_udp).get(data[2:])
            if hot is not None:
                entry = hot[1]
                if tcp:
                    entry.tcp += 1
                else:
                    entry.udp += 1
                entry.seconds += time.perf_counter() - started
                return data[:2] + hot[0]
        question = wire.parse_question(data, tcp)
        if question is not None:
            entry = self.memo.get(question.key)
            if entry is not None:
                if self.cache_enabled:
                    self.metrics.cache_hits["denial" if entry.denial else "success"] += 1
                out = wire.splice(entry.next(), data, question.end)
                self._remember(data, tcp, out, entry, question.key)
                self._observe(tcp, entry.qtype, entry.rcode, entry.plugin, started, data, out, client)
                return out
        return self._slow(data, tcp, question, started, client)

    def _remember(self, data: bytes, tcp: bool, out: bytes, entry: Entry, memo_key: bytes) -> None:
        if len(entry.variants) == 1:
            hot = self.hot_tcp if tcp else self.hot_udp
            if len(hot) >= MEMO_LIMIT:
                self._forget()
            # The usual query (RD, lowercase, no EDNS or a plain OPT) is spelled like its memo key
            # and gets the template itself back: one copy of each, not two (~240 of ~830 bytes
            # per NXDOMAIN entry; the bench memoises 60,000).
            key, body = data[2:], out[2:]
            if key == memo_key:
                key = memo_key
            if body == entry.variants[0]:
                body = entry.variants[0]
            hot[key] = (body, entry)

    def entries(self) -> list[Entry]:
        """What the hot path counted is in these; the metrics add it up when scraped."""
        hot = [e for table in (self.hot_udp, self.hot_tcp) for _, e in table.values()]
        return list({id(e): e for e in [*self.memo.values(), *hot]}.values())

    def same_answers(self, other: "Engine") -> bool:
        """Whether `other`'s memoised answers are still right here: the same Corefile block and
        the same DNS data (ClusterDNS's serial covers Services, endpoints and namespaces; pod
        records depend on pods only under `pods verified`). A pod or probe change elsewhere in
        the cluster then keeps the memo warm instead of answering cold again."""
        if self.config != other.config or (self.kubernetes is None) != (other.kubernetes is None):
            return False
        if self.kubernetes is None:
            return True
        return (self.kubernetes.serial == other.kubernetes.serial and self.kubernetes.plugin.pods != "verified"
                and self.kubernetes.server_ips == other.kubernetes.server_ips)

    def adopt(self, other: "Engine") -> None:
        """Take over `other`'s memo, hot tables and forward cache (and their uncounted hits)."""
        self.memo, self.hot_udp, self.hot_tcp = other.memo, other.hot_udp, other.hot_tcp
        self.forward_cache = other.forward_cache
        other.memo, other.hot_udp, other.hot_tcp, other.forward_cache = {}, {}, {}, {}

    def retire(self) -> None:
        """This engine is replaced: its entries' counts go into the metrics for good."""
        self.metrics.bury(self.entries(), self.cache_enabled)
        self.memo, self.hot_udp, self.hot_tcp = {}, {}, {}

    def _observe(self, tcp, qtype, rcode, plugin, started, data, out, client) -> None:
        self.metrics.observe("tcp" if tcp else "udp", qtype, rcode, plugin, time.perf_counter() - started)
        if self.log_queries:
            self._log(data, out, tcp, client, started)

    def _slow(self, data: bytes, tcp: bool, question: wire.Question | None, started: float, client):
        try:
            query = dns.message.from_wire(data)
        except dns.message.ShortHeader:
            return None
        except Exception:  # malformed: FORMERR, as CoreDNS's server does for what it cannot unpack
            return self._error(data, dns.rcode.FORMERR, tcp, started)
        if query.flags & dns.flags.QR:
            return None  # a response sent to us: never answer it (that is how reflection loops start)
        if query.opcode() != dns.opcode.QUERY:
            return self._reply(query, DnsAnswer("NOTIMP", authoritative=False), tcp, started, data, client, "")
        if len(query.question) != 1:
            return self._reply(query, DnsAnswer("FORMERR", authoritative=False), tcp, started, data, client, "")
        q = query.question[0]
        name = q.name.to_text()
        lname = name.lower()
        qtype = dns.rdatatype.to_text(q.rdtype)
        limit = 65535 if tcp else (max(query.payload, 512) if query.edns >= 0 else 512)
        if q.rdclass != dns.rdataclass.IN or not any(in_zone(lname, z) for z in self.zones):
            return self._reply(query, REFUSED, tcp, started, data, client, "")
        plugin, answer = self._chain(name, lname, qtype)
        if answer is PASS:
            if self.config.forward is not None and in_zone(lname, _fqdn(self.config.forward.from_zone)):
                return Forwarding(query, data, tcp, limit)
            answer, plugin = SERVFAIL, ""
            if self.config.errors:
                print(f"[ERROR] plugin/errors: 2 {name} {qtype}: plugin/kubernetes: no next plugin found",
                      file=sys.stderr, flush=True)
        if question is not None:  # memoise the response to the lowercased question
            entry = self._entry(question, lname, qtype, plugin, answer)
            if len(self.memo) >= MEMO_LIMIT:
                self._forget()
            self.memo[question.key] = entry
            if self.cache_enabled:
                self.metrics.cache_misses += 1
            out = wire.splice(entry.next(), data, question.end)
            self._remember(data, tcp, out, entry, question.key)
            self._observe(tcp, qtype, answer.rcode, plugin, started, data, out, client)
            return out
        return self._reply(query, answer, tcp, started, data, client, plugin)

    def _chain(self, name: str, lname: str, qtype: str) -> tuple[str, DnsAnswer]:
        if self.hosts is not None:
            answer = self.hosts.answer(name, lname, qtype)
            if answer is not PASS:
                return "hosts", answer
        if self.kubernetes is not None:
            answer = self.kubernetes.answer(name, qtype)
            if answer is not PASS:
                return "kubernetes", answer
        return "", PASS

    # -- building responses ---------------------------------------------------------------------

    def _forget(self) -> None:
        self.metrics.bury(self.entries(), self.cache_enabled)
        self.memo.clear()
        self.hot_udp.clear()
        self.hot_tcp.clear()

    def _entry(self, question: wire.Question, lname: str, qtype: str, plugin: str, answer: DnsAnswer) -> Entry:
        canonical = dns.message.make_query(lname, qtype, use_edns=0 if question.edns else False,
                                           payload=question.limit if question.edns else 1232)
        # RD set, as resolvers send it: the template (without the ID) is then byte for byte the
        # usual response, which the hot table shares (splice sets each query's own RD bit)
        canonical.id, canonical.flags = 0, dns.flags.RD
        variants = tuple(self._wire(canonical, a, question.limit)[2:] for a in self._rotations(answer))
        return Entry(variants, qtype, answer.rcode, plugin, answer.rcode == "NXDOMAIN" or not answer.answers)

    def _rotations(self, answer: DnsAnswer) -> list[DnsAnswer]:
        """loadbalance: the address records in each order of a rotation (round robin)."""
        addresses = [r for r in answer.answers if r.type in ("A", "AAAA")]
        if not self.config.loadbalance or len(addresses) < 2:
            return [answer]
        others = [r for r in answer.answers if r.type not in ("A", "AAAA")]
        return [replace(answer, answers=tuple(others + addresses[i:] + addresses[:i])) for i in range(len(addresses))]

    @staticmethod
    def _wire(query: dns.message.Message, answer: DnsAnswer, limit: int) -> bytes:
        response = answer.to_message(query)
        if query.edns >= 0:
            response.use_edns(0, payload=EDNS_PAYLOAD)
        try:  # in our order: dnspython shuffles each RRset unless told not to, which would make
            # loadbalance's rotations random (two of them often the same) and plain answers vary
            return response.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:  # UDP: tell the client to ask again over TCP
            truncated = dns.message.make_response(query)
            truncated.set_rcode(response.rcode())
            truncated.flags = response.flags | dns.flags.TC
            if query.edns >= 0:
                truncated.use_edns(0, payload=EDNS_PAYLOAD)
            return truncated.to_wire(max_size=limit, want_shuffle=False)

    def _reply(self, query, answer: DnsAnswer, tcp: bool, started: float, data: bytes, client, plugin: str) -> bytes:
        limit = 65535 if tcp else (max(query.payload, 512) if query.edns >= 0 else 512)
        out = self._wire(query, answer, limit)
        qtype = dns.rdatatype.to_text(query.question[0].rdtype) if query.question else "other"
        self._observe(tcp, qtype, answer.rcode, plugin, started, data, out, client)
        return out

    def _error(self, data: bytes, rcode: int, tcp: bool, started: float) -> bytes | None:
        out = wire.error_response(data, rcode)
        if out is not None:
            self.metrics.observe("tcp" if tcp else "udp", "other", dns.rcode.to_text(rcode), "", time.perf_counter() - started)
        return out

    # -- forward's answers, through the cache plugin --------------------------------------------

    def cached_forward(self, data: bytes, tcp: bool) -> bytes | None:
        if not self.cache_enabled:
            return None
        started = time.perf_counter()
        question = wire.parse_question(data, tcp)
        if question is None:
            return None
        found = self.forward_cache.get(question.key)
        now = time.monotonic()
        if found is None or found[0] <= now:
            return None
        expires, stored, message = found
        response = dns.message.from_wire(message.to_wire())
        elapsed = int(now - stored)
        self.cap_ttls(response, elapsed)
        response.id = wire.query_id(data) or 0
        self.metrics.cache_hits["denial" if response.rcode() == dns.rcode.NXDOMAIN or not response.answer else "success"] += 1
        out = response.to_wire()
        # a request like any other for the metrics plugin, which wraps cache in CoreDNS's chain
        self.metrics.observe("tcp" if tcp else "udp", dns.rdatatype.to_text(question.qtype),
                             dns.rcode.to_text(response.rcode()), "cache", time.perf_counter() - started)
        return out

    def cap_ttls(self, response: dns.message.Message, elapsed: int = 0) -> None:
        """TTLs as the cache plugin serves them: at most its TTL, counting down while cached
        (CoreDNS caps the first, forwarded answer too, so clients never see 1799 then 8)."""
        cap = self.config.cache.ttl
        for section in (response.answer, response.authority, response.additional):
            for rrset in section:
                rrset.ttl = max(0, min(rrset.ttl, cap) - elapsed)

    def store_forward(self, forwarding: Forwarding, response: dns.message.Message) -> None:
        if not self.cache_enabled or response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return
        question = wire.parse_question(forwarding.data, forwarding.tcp)
        if question is None:
            return
        ttls = [rrset.ttl for section in (response.answer, response.authority) for rrset in section]
        ttl = min([self.config.cache.ttl, *ttls]) if ttls else min(self.config.cache.ttl, 5)
        if ttl <= 0:
            return
        self.metrics.cache_misses += 1
        now = time.monotonic()
        self.forward_cache[question.key] = (now + ttl, now, response)

    # -- the log plugin -------------------------------------------------------------------------

    def _log(self, data: bytes, out: bytes, tcp: bool, client: str, started: float) -> None:
        try:
            q = dns.message.from_wire(data).question[0]
            flags = dns.flags.to_text(dns.message.from_wire(out).flags).lower().replace(" ", ",")
            rcode = dns.rcode.to_text(out[3] & 0x0F)
            who = f"{client[0]}:{client[1]}" if client else "-"
            print(f'[INFO] {who} - {wire.query_id(data)} "{dns.rdatatype.to_text(q.rdtype)} IN {q.name} '
                  f'{"tcp" if tcp else "udp"} {len(data)} false {512 if not tcp else 65535}" {rcode} {flags} '
                  f"{len(out)} {time.perf_counter() - started:.9f}s", file=sys.stdout, flush=True)
        except Exception:  # logging must never break answering
            pass
