"""podnet's CoreDNS-compatible DNS server on 127.0.0.1 (no root), asked by real clients.

The server runs in-process (DnsServer over a StaticState, its own asyncio loop in a thread) or,
where the process itself matters (the loop plugin's exit, a flood), as `python -m podnet.dns`.
What it serves for the cluster zone must be exactly `ClusterDNS(cluster).answer()` (record
semantics are tests/test_dns.py's business); this file is about the server around it: the wire,
the memo and its case echo, truncation, EDNS, TCP, loadbalance, malformed input, hosts, forward
and cache, metrics, health/ready, reload, a new cluster state, loop detection, robustness.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podnet.semantics import corefile as corefile_mod
from podnet.dns.engine import Engine
from podnet.dns.metrics import Metrics
from podnet.dns.server import DnsServer, StaticState
from podnet.semantics.dns import ClusterDNS
from tests.conftest import cluster_of
from tests.conftest import free_port as shared_free_port

# The server answers from a thread of this process (or a process beside it): a loaded machine may
# not schedule it for seconds. A reply that is due gets ANSWER_TIMEOUT, which only a server that
# does not answer misses; SILENCE is for replies that must not come, where a late one could only
# make a test pass wrongly.
ANSWER_TIMEOUT = 30.0
SILENCE = 0.5

MANIFESTS = textwrap.dedent("""
    apiVersion: v1
    kind: Namespace
    metadata: {name: web}
    ---
    apiVersion: v1
    kind: Namespace
    metadata: {name: data}
    ---
    # web/api: a ClusterIP Service with two named ports (one UDP) in front of pod api-a
    apiVersion: v1
    kind: Pod
    metadata: {name: api-a, namespace: web, labels: {app: api}}
    spec:
      containers:
      - name: app
        image: agnhost
        ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 5353, protocol: UDP}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: api, namespace: web}
    spec:
      clusterIP: 10.96.10.10
      selector: {app: api}
      ports:
      - {name: http, port: 80, targetPort: http}
      - {name: dns, port: 53, targetPort: dns, protocol: UDP}
    ---
    # data/redis: a StatefulSet behind its headless governing Service (endpoints with hostnames)
    apiVersion: apps/v1
    kind: StatefulSet
    metadata: {name: redis, namespace: data}
    spec:
      serviceName: redis
      replicas: 2
      selector: {matchLabels: {app: redis}}
      template:
        metadata: {labels: {app: redis}}
        spec: {containers: [{name: redis, image: redis, ports: [{name: redis, containerPort: 6379}]}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: redis, namespace: data}
    spec: {clusterIP: None, selector: {app: redis}, ports: [{name: redis, port: 6379}]}
    ---
    # data/wide: a headless Service with 60 ready endpoints (60 A records: more than 512 bytes)
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: wide, namespace: data}
    spec:
      replicas: 60
      selector: {matchLabels: {app: wide}}
      template:
        metadata: {labels: {app: wide}}
        spec: {containers: [{name: c, image: agnhost}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: wide, namespace: data}
    spec: {clusterIP: None, selector: {app: wide}, ports: [{port: 80}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: billing, namespace: web}
    spec: {type: ExternalName, externalName: billing.example.com}
""")

KUBERNETES = ("    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n"
              "       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n")


@pytest.fixture(scope="module")
def cluster():
    return cluster_of(MANIFESTS)


def pod_ip(cluster, namespace: str, name: str) -> str:
    return cluster.get("Pod", namespace, name).status["podIP"]


def free_port() -> int:
    return shared_free_port(udp=True)  # the DNS port needs both


def corefile(body: str = KUBERNETES, port: int = 53) -> str:
    return f".:{port} {{\n    errors\n{body}}}\n"


# -- an in-process server ---------------------------------------------------------------------

class Live:
    """A DnsServer on 127.0.0.1:port with its own asyncio loop in a thread."""

    def __init__(self, cluster, text: str, path: Path):
        path.write_text(text)
        self.path = path
        self.port = free_port()
        self.state = StaticState(cluster, str(path))
        self.server = DnsServer(self.state, port_override=self.port, host="127.0.0.1")
        self.server.configure(self.state.corefile())
        self.server.ready = True  # what main() does once the state is loaded
        self.loop = asyncio.new_event_loop()
        self.failure: BaseException | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.started.wait(60) or self.failure:
            self.stop()
            raise AssertionError(f"the server did not start: {self.failure!r}")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            try:
                await self.server.start()
            except BaseException as exc:
                self.failure = exc
                raise
            finally:
                self.started.set()
            await self.server.watch()

        self.task = self.loop.create_task(main())
        try:
            self.loop.run_until_complete(self.task)
        except BaseException:
            pass
        finally:
            for transport in self.server.transports:
                transport.close()
            for srv in self.server.servers:
                srv.close()
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()

    def stop(self) -> None:
        if not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(lambda: self.task.cancel())
        self.thread.join(60)
        assert not self.thread.is_alive(), "the server thread did not stop"

    def on_loop(self, fn) -> None:
        """Run fn() on the server's loop thread and wait for it."""
        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (fn(), done.set()))
        assert done.wait(60)

    # clients

    def ask(self, name: str, qtype: str = "A", tcp: bool = False, **kw) -> dns.message.Message:
        query = dns.message.make_query(name, qtype, **kw)
        send = dns.query.tcp if tcp else dns.query.udp
        response = send(query, "127.0.0.1", port=self.port, timeout=ANSWER_TIMEOUT)
        assert response.id == query.id
        return response

    def raw(self, data: bytes, timeout: float = ANSWER_TIMEOUT) -> bytes | None:
        """Send a datagram as is; the reply, or None when the server stays silent (pass
        timeout=SILENCE where silence is expected)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(data, ("127.0.0.1", self.port))
            try:
                return s.recv(65535)
            except socket.timeout:
                return None


@pytest.fixture
def live(cluster, tmp_path):
    """live(corefile_text) -> a started Live, stopped at the end of the test."""
    servers: list[Live] = []

    def start(text: str, cluster_=None) -> Live:
        server = Live(cluster_ or cluster, text, tmp_path / f"Corefile{len(servers)}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def plain(live):
    """The cluster zone without loadbalance (wire orders are stable) and no side ports."""
    return live(corefile())


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=ANSWER_TIMEOUT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text: str, series: str, **labels) -> float:
    """The value of one series (labels given must match; others are ignored); 0 when absent."""
    total = None
    for line in text.splitlines():
        m = re.match(rf"{series}(?:{{(.*)}})? (\S+)$", line)
        if not m:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            total = (total or 0) + float(m.group(2))
    return total or 0.0


# -- comparing responses ----------------------------------------------------------------------

def as_sets(response: dns.message.Message) -> tuple:
    """rcode, AA and each section as a set of (owner, type, ttl, rdata): loadbalance may rotate."""
    def section(rrsets):
        return frozenset((r.name.to_text().lower(), dns.rdatatype.to_text(r.rdtype), r.ttl, rd.to_text().lower())
                         for r in rrsets for rd in r)
    return (dns.rcode.to_text(response.rcode()), bool(response.flags & dns.flags.AA),
            section(response.answer), section(response.authority), section(response.additional))


def expected(cluster, name: str, qtype: str) -> tuple:
    return as_sets(ClusterDNS(cluster).answer(name, qtype).to_message(dns.message.make_query(name, qtype)))


def questions(cluster) -> list[tuple[str, str, str]]:
    """(rule, name, type): one row per kind of answer the cluster zone gives."""
    redis0 = pod_ip(cluster, "data", "redis-0")
    api = pod_ip(cluster, "web", "api-a")
    return [
        ("ClusterIP A", "api.web.svc.cluster.local.", "A"),
        ("AAAA of an IPv4 Service is NODATA with the SOA", "api.web.svc.cluster.local.", "AAAA"),
        ("SRV for a named TCP port", "_http._tcp.api.web.svc.cluster.local.", "SRV"),
        ("SRV for a named UDP port", "_dns._udp.api.web.svc.cluster.local.", "SRV"),
        ("SRV for every port", "api.web.svc.cluster.local.", "SRV"),
        ("SRV for a port the Service lacks: NXDOMAIN", "_nope._tcp.api.web.svc.cluster.local.", "SRV"),
        ("headless: one A per ready endpoint", "redis.data.svc.cluster.local.", "A"),
        ("headless SRV names the hostname records", "_redis._tcp.redis.data.svc.cluster.local.", "SRV"),
        ("hostname record", "redis-0.redis.data.svc.cluster.local.", "A"),
        ("PTR of a ClusterIP", "10.10.96.10.in-addr.arpa.", "PTR"),
        ("PTR of a headless endpoint", dns.name.from_text(".".join(reversed(redis0.split(".")))
                                                           + ".in-addr.arpa.").to_text(), "PTR"),
        ("PTR of a ClusterIP endpoint", ".".join(reversed(api.split("."))) + ".in-addr.arpa.", "PTR"),
        ("ExternalName CNAME", "billing.web.svc.cluster.local.", "CNAME"),
        ("ExternalName asked for A: the CNAME", "billing.web.svc.cluster.local.", "A"),
        ("pod record (pods insecure)", "1-2-3-4.web.pod.cluster.local.", "A"),
        ("pod record in a missing namespace", "1-2-3-4.nowhere.pod.cluster.local.", "A"),
        ("dns-version TXT", "dns-version.cluster.local.", "TXT"),
        ("zone apex SOA", "cluster.local.", "SOA"),
        ("unknown Service: NXDOMAIN with the SOA", "nope.web.svc.cluster.local.", "A"),
        ("a namespace exists: NODATA", "web.svc.cluster.local.", "A"),
        ("a missing namespace: NXDOMAIN", "nowhere.svc.cluster.local.", "A"),
        ("MX of a Service: NODATA", "api.web.svc.cluster.local.", "MX"),
        ("outside the zone without forward: SERVFAIL", "www.example.com.", "A"),
        ("unknown PTR falls through: SERVFAIL", "9.9.9.9.in-addr.arpa.", "PTR"),
    ]


def test_every_kind_of_answer_is_the_resolvers_over_udp_tcp_and_memoised(cluster, live):
    server = live(corefile(KUBERNETES + "    cache 30\n    loadbalance\n"))
    for rule, name, qtype in questions(cluster):
        want = expected(cluster, name, qtype)
        for tcp in (False, True, False):  # the second UDP one comes from the memo
            got = server.ask(name, qtype, tcp=tcp)
            assert as_sets(got) == want, f"{rule} (tcp={tcp})"
            assert got.flags & dns.flags.QR and got.flags & dns.flags.RD and not got.flags & dns.flags.TC, rule


def _tool(tool: str, server: Live, *args: str) -> str:
    return subprocess.run([tool, "@127.0.0.1", "-p", str(server.port), *args],
                          capture_output=True, text=True, timeout=60).stdout


def _parse_tool_answer(out: str) -> tuple[str, set, set]:
    """status and ANSWER/AUTHORITY lines of dig/kdig's default output, as sets of tuples."""
    status = re.search(r"status: (\w+)", out).group(1)
    sections: dict[str, set] = {"ANSWER": set(), "AUTHORITY": set()}
    current = None
    for line in out.splitlines():
        m = re.match(r";; (\w+) SECTION:", line)
        if m:
            current = m.group(1)
            continue
        if not line.strip() or line.startswith(";"):
            current = None if not line.strip() else current
            continue
        if current in sections:
            words = line.split()
            owner, ttl, _cls, rtype, *data = words
            if rtype == "SOA":  # kdig and dig print the SOA's numbers alike; serial included
                data = data[:7]
            sections[current].add((owner.lower(), int(ttl), rtype, " ".join(data).lower()))
    return status, sections["ANSWER"], sections["AUTHORITY"]


@pytest.mark.parametrize("tool", ["dig", "kdig"])
@pytest.mark.parametrize("transport", ["+notcp", "+tcp"])
def test_dig_and_kdig_get_the_resolvers_answer(cluster, live, tool, transport):
    if not shutil.which(tool):
        pytest.skip(f"{tool} not installed")
    server = live(corefile(KUBERNETES + "    loadbalance\n"))
    for rule, name, qtype in questions(cluster):
        out = _tool(tool, server, transport, "+nocookie", name, qtype)
        status, answer, authority = _parse_tool_answer(out)
        rcode, aa, want_answer, want_authority, _ = expected(cluster, name, qtype)
        assert status == rcode, f"{rule}: {out}"
        assert answer == {(o, t, ty, d) for o, ty, t, d in want_answer}, rule
        assert authority == {(o, t, ty, d) for o, ty, t, d in want_authority}, rule
        flags = re.search(r"(?i)flags: ([a-z ]*);", out).group(1).split()
        assert ("aa" in flags) == aa, rule


@pytest.mark.skipif(not shutil.which("kdig"), reason="kdig not installed")
def test_kdig_over_tcp_for_the_big_headless_answer(cluster, plain):
    out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(plain.port), "+tcp", "+short",
                          "wide.data.svc.cluster.local", "A"], capture_output=True, text=True, timeout=60).stdout
    want = {rd for _o, _t, _ttl, rd in expected(cluster, "wide.data.svc.cluster.local.", "A")[2]}
    assert set(out.split()) == want and len(want) == 60


# -- the memo and case --------------------------------------------------------------------------

def _without_id(wire: bytes) -> bytes:
    return wire[2:]


@pytest.mark.parametrize("name,qtype", [
    ("Api.WEB.svc.Cluster.Local.", "A"),
    ("_HTTP._Tcp.api.web.SVC.cluster.local.", "SRV"),
    ("NoPe.web.svc.cluster.LOCAL.", "A"),  # negative: the SOA in authority
    ("Redis-0.REDIS.data.svc.cluster.local.", "A"),
    ("BILLING.web.svc.cluster.local.", "CNAME"),
])
def test_a_mixed_case_question_gets_its_case_back_memoised_or_not(cluster, plain, name, qtype):
    replies = []
    for _ in range(4):  # cold (builds the memo), from the memo, then the hot table
        query = dns.message.make_query(name, qtype)
        wire = dns.query.udp(query, "127.0.0.1", port=plain.port, timeout=ANSWER_TIMEOUT, raise_on_truncation=True)
        replies.append(wire)
    first = replies[0]
    assert first.question[0].name.to_text() == name
    for rrset in first.answer:
        assert rrset.name.to_text() == name
    assert {_without_id(r.to_wire()) for r in replies} == {_without_id(first.to_wire())}
    assert as_sets(first) == expected(cluster, name, qtype)


def test_memoised_bytes_are_identical_except_the_id(plain):
    """Raw bytes, not a re-rendered message: the first answer and the memoised ones."""
    def once(qid: int) -> bytes:
        query = dns.message.make_query("WeB.svc.cluster.local", "A", id=qid)
        return plain.raw(query.to_wire())

    first, second, third = once(1), once(2), once(3)
    assert first[:2] == b"\x00\x01" and second[:2] == b"\x00\x02" and third[:2] == b"\x00\x03"
    assert first[2:] == second[2:] == third[2:]
    assert dns.message.from_wire(first).question[0].name.to_text() == "WeB.svc.cluster.local."


def test_a_differently_cased_repeat_is_answered_in_its_own_case(plain):
    plain.ask("api.web.svc.cluster.local", "A")
    for name in ("API.WEB.SVC.CLUSTER.LOCAL.", "aPi.wEb.SvC.cLuStEr.LoCaL."):
        response = plain.ask(name, "A")
        assert response.question[0].name.to_text() == name and response.answer[0].name.to_text() == name


def test_rd_and_cd_bits_and_id_follow_each_query(plain):
    for rd in (True, False, True, False):
        query = dns.message.make_query("api.web.svc.cluster.local", "A")
        if not rd:
            query.flags &= ~dns.flags.RD
        response = dns.message.from_wire(plain.raw(query.to_wire()))
        assert bool(response.flags & dns.flags.RD) == rd and response.id == query.id


# -- truncation, EDNS, TCP ----------------------------------------------------------------------

def test_udp_truncates_the_big_headless_answer_and_tcp_and_edns_carry_it(cluster, plain):
    name = "wide.data.svc.cluster.local."
    want = expected(cluster, name, "A")
    for _ in range(2):  # cold and memoised
        small = plain.ask(name)
        assert small.flags & dns.flags.TC and not small.answer and small.rcode() == dns.rcode.NOERROR
        assert small.edns == -1  # no OPT to a query without one
        full = plain.ask(name, tcp=True)
        assert not full.flags & dns.flags.TC and as_sets(full) == want
        edns = plain.ask(name, use_edns=0, payload=4096)
        assert not edns.flags & dns.flags.TC and as_sets(edns) == want and len(edns.answer[0]) == 60
        assert edns.edns == 0 and edns.payload >= 512  # the OPT record in the response


def test_edns_with_a_small_buffer_still_truncates(plain):
    response = plain.ask("wide.data.svc.cluster.local.", use_edns=0, payload=512)
    assert response.flags & dns.flags.TC and response.edns == 0


def test_edns_opt_is_echoed_on_small_answers_and_with_the_do_bit(plain):
    for flags in (0, dns.flags.DO):  # the DO bit takes the slow path: same answer
        response = plain.ask("api.web.svc.cluster.local", "A", use_edns=0, payload=1232, ednsflags=flags)
        assert response.edns == 0 and response.answer[0][0].to_text() == "10.96.10.10"


def test_several_queries_on_one_tcp_connection(cluster, plain):
    names = [("api.web.svc.cluster.local.", "A"), ("nope.web.svc.cluster.local.", "A"),
             ("wide.data.svc.cluster.local.", "A"), ("api.web.svc.cluster.local.", "A")]
    queries = [dns.message.make_query(n, t) for n, t in names]
    with socket.create_connection(("127.0.0.1", plain.port), timeout=ANSWER_TIMEOUT) as s:
        s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in (q.to_wire() for q in queries)))  # pipelined
        f = s.makefile("rb")
        for query, (name, qtype) in zip(queries, names):
            size = struct.unpack("!H", f.read(2))[0]
            response = dns.message.from_wire(f.read(size))
            assert response.id == query.id and as_sets(response) == expected(cluster, name, qtype)
        # and one more after the pipeline was drained
        again = dns.message.make_query("redis.data.svc.cluster.local", "A")
        s.sendall(struct.pack("!H", len(again.to_wire())) + again.to_wire())
        size = struct.unpack("!H", f.read(2))[0]
        assert dns.message.from_wire(f.read(size)).id == again.id


# -- loadbalance ----------------------------------------------------------------------------------

def _orders(server: Live, n: int = 6) -> list[tuple[str, ...]]:
    return [tuple(rd.to_text() for rd in server.ask("redis.data.svc.cluster.local", tcp=tcp).answer[0])
            for tcp in (False, True) for _ in range(n // 2)]


def test_loadbalance_rotates_the_address_records(live):
    orders = _orders(live(corefile(KUBERNETES + "    loadbalance\n")))
    assert len(set(orders)) == 2 and len({frozenset(o) for o in orders}) == 1
    assert all(a != b for a, b in zip(orders, orders[1:3]))  # a new order for each query


def test_without_loadbalance_the_order_is_stable(plain):
    assert len(set(_orders(plain))) == 1


# -- what is not a plain query ------------------------------------------------------------------

def _header(qid=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QNAME = b"\x03api\x03web\x03svc\x07cluster\x05local\x00"


@pytest.mark.parametrize("rule,data,rcode", [
    ("a short packet (no header) is dropped", b"\x12\x34\x01", None),
    ("an empty datagram is dropped", b"", None),
    ("a header and a cut-off name: FORMERR", _header() + b"\x03api\x03we", dns.rcode.FORMERR),
    ("a question without type and class: FORMERR", _header() + QNAME, dns.rcode.FORMERR),
    ("a compression pointer to itself: FORMERR", _header() + b"\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("a label type 0x40 (reserved): FORMERR", _header() + b"\x41x\x00\x00\x01\x00\x01", dns.rcode.FORMERR),
    ("QDCOUNT 2: FORMERR", _header(qd=2) + QNAME + b"\x00\x01\x00\x01" + QNAME + b"\x00\x1c\x00\x01",
     dns.rcode.FORMERR),
    ("QDCOUNT 0: FORMERR", _header(qd=0), dns.rcode.FORMERR),
    ("a response (QR=1) is never answered", _header(flags=0x8180) + QNAME + b"\x00\x01\x00\x01", None),
    ("a NOTIFY: NOTIMP", _header(flags=0x2000 | 0x0100) + QNAME + b"\x00\x06\x00\x01", dns.rcode.NOTIMP),
    ("an UPDATE: NOTIMP", _header(flags=0x2800) + b"\x07cluster\x05local\x00\x00\x06\x00\x01", dns.rcode.NOTIMP),
    ("an IQUERY (opcode 1): NOTIMP", _header(flags=0x0800) + QNAME + b"\x00\x01\x00\x01", dns.rcode.NOTIMP),
    ("class CH: REFUSED", _header() + b"\x07version\x04bind\x00\x00\x10\x00\x03", dns.rcode.REFUSED),
    ("class ANY: REFUSED", _header() + QNAME + b"\x00\x01\x00\xff", dns.rcode.REFUSED),
    ("trailing garbage after the question: FORMERR", _header() + QNAME + b"\x00\x01\x00\x01" + b"junk",
     dns.rcode.FORMERR),
])
def test_what_is_not_a_plain_query(plain, rule, data, rcode):
    for tcp in (False, True):
        wait = SILENCE if rcode is None else ANSWER_TIMEOUT
        reply = _tcp_raw(plain, data, wait) if tcp else plain.raw(data, wait)
        if rcode is None:
            assert reply is None, rule
            continue
        assert reply is not None, rule
        response = dns.message.from_wire(reply, question_only=True)
        assert response.id == 0x1234 and response.flags & dns.flags.QR, rule
        assert response.rcode() == rcode, f"{rule}: got {dns.rcode.to_text(response.rcode())}"
        assert response.opcode() == dns.opcode.from_flags(struct.unpack("!H", data[2:4])[0]), rule
    assert plain.ask("api.web.svc.cluster.local").answer  # and the server still answers


def _tcp_raw(server: Live, data: bytes, timeout: float = ANSWER_TIMEOUT) -> bytes | None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_TIMEOUT) as s:
        s.sendall(struct.pack("!H", len(data)) + data)
        s.settimeout(timeout)
        try:
            head = s.recv(2, socket.MSG_WAITALL)
        except socket.timeout:
            return None
        if len(head) < 2:
            return None
        return s.recv(struct.unpack("!H", head)[0], socket.MSG_WAITALL)


def test_oversized_datagrams_and_tcp_messages(plain):
    big = dns.message.make_query("api.web.svc.cluster.local", "A").to_wire() + b"\x00" * 5000
    # dropped or FORMERR: either passes, so waiting long for a reply would only slow the drop down
    for reply in (plain.raw(big, SILENCE), _tcp_raw(plain, big + b"\x00" * 60000, SILENCE)):
        assert reply is None or dns.message.from_wire(reply, question_only=True).rcode() == dns.rcode.FORMERR
    assert plain.ask("api.web.svc.cluster.local").answer


# -- hosts, forward, cache ------------------------------------------------------------------------

HOSTS = ("    hosts {\n        10.1.2.3 legacy.example.org\n        fd00::7 legacy.example.org\n"
         "        10.9.9.9 old.web.svc.cluster.local\n        fallthrough\n    }\n")


def test_hosts_entries_first_then_the_cluster(cluster, live):
    server = live(corefile(HOSTS + KUBERNETES))
    assert [rd.to_text() for rd in server.ask("legacy.example.org").answer[0]] == ["10.1.2.3"]
    assert [rd.to_text() for rd in server.ask("LEGACY.example.org", "AAAA").answer[0]] == ["fd00::7"]
    assert [rd.to_text() for rd in server.ask("3.2.1.10.in-addr.arpa", "PTR").answer[0]] == ["legacy.example.org."]
    assert server.ask("old.web.svc.cluster.local").answer[0][0].to_text() == "10.9.9.9"  # hosts wins
    for _rule, name, qtype in questions(cluster):  # everything else falls through to kubernetes
        assert as_sets(server.ask(name, qtype)) == expected(cluster, name, qtype), name


class FakeUpstream:
    """A tiny authoritative server on 127.0.0.1 (UDP and TCP) for names outside the cluster:
    A 192.0.2.7 TTL 60 for everything, NXDOMAIN for names starting with 'nx'. Counts queries."""

    def __init__(self, ttl: int = 60):
        self.ttl = ttl
        # one port for both, from this process's slice below the ephemeral range: a UDP port
        # from bind(0) can be the local port of someone's TCP connection, and TCP's bind fails
        self.port = shared_free_port(tcp=True, udp=True)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(8)
        self.queries: list[tuple[str, str]] = []
        self.threads = [threading.Thread(target=self._serve_udp, daemon=True),
                        threading.Thread(target=self._serve_tcp, daemon=True)]
        for t in self.threads:
            t.start()

    def _answer(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        q = query.question[0]
        self.queries.append((q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype)))
        response = dns.message.make_response(query)
        if q.name.labels[0].lower().startswith(b"nx"):
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(dns.rrset.from_text("example.org.", self.ttl, "IN", "SOA",
                                                          "ns.example.org. h.example.org. 1 2 3 4 5"))
        elif q.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(q.name, self.ttl, "IN", "A", "192.0.2.7"))
        return response.to_wire()

    def _serve_udp(self) -> None:
        while True:
            try:
                data, addr = self.udp.recvfrom(4096)
                self.udp.sendto(self._answer(data), addr)
            except OSError:
                return
            except Exception:
                continue

    def _serve_tcp(self) -> None:
        while True:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                try:
                    f = conn.makefile("rb")
                    size = struct.unpack("!H", f.read(2))[0]
                    out = self._answer(f.read(size))
                    conn.sendall(struct.pack("!H", len(out)) + out)
                except Exception:
                    pass

    def close(self) -> None:
        for s in (self.udp, self.tcp):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture
def upstream():
    up = FakeUpstream()
    yield up
    up.close()


def test_forward_outside_the_cluster_zone_and_cache_the_answer(cluster, live, upstream):
    metrics_port = free_port()
    server = live(corefile(KUBERNETES + f"    forward . 127.0.0.1:{upstream.port}\n    cache 30\n"
                           f"    prometheus 127.0.0.1:{metrics_port}\n"))
    first = server.ask("www.example.org")
    assert first.answer[0][0].to_text() == "192.0.2.7"
    assert first.answer[0].ttl == 30  # the upstream's 60, capped at the cache's TTL as CoreDNS does
    time.sleep(1.1)
    second = server.ask("www.example.org")
    assert second.answer[0][0].to_text() == "192.0.2.7"
    assert second.answer[0].ttl < first.answer[0].ttl  # counting down in the cache
    assert upstream.queries.count(("www.example.org.", "A")) == 1  # hit once for the two
    over_tcp = server.ask("tcp.example.org", tcp=True)
    assert over_tcp.answer[0][0].to_text() == "192.0.2.7"
    nx = server.ask("nx.example.org")
    assert nx.rcode() == dns.rcode.NXDOMAIN and server.ask("nx.example.org").rcode() == dns.rcode.NXDOMAIN
    assert upstream.queries.count(("nx.example.org.", "A")) == 1  # a denial is cached too
    # the cluster zone is still the kubernetes plugin's, never forwarded
    assert as_sets(server.ask("api.web.svc.cluster.local")) == expected(cluster, "api.web.svc.cluster.local.", "A")
    assert not [q for q in upstream.queries if q[0].endswith("cluster.local.")]
    _, text = http_get(metrics_port, "/metrics")
    to = f"127.0.0.1:{upstream.port}"
    assert metric(text, "coredns_forward_requests_total", to=to) == 3  # www, tcp, nx: once each
    assert metric(text, "coredns_forward_responses_total", to=to, rcode="NOERROR") == 2
    assert metric(text, "coredns_forward_responses_total", to=to, rcode="NXDOMAIN") == 1
    assert metric(text, "coredns_cache_hits_total", type="success") == 1
    assert metric(text, "coredns_cache_hits_total", type="denial") == 1
    # every query is a request, whether forward or the cache answered it (CoreDNS's metrics plugin
    # wraps the whole chain): www twice, tcp, nx twice, and the cluster name
    assert metric(text, "coredns_dns_requests_total") == 6
    assert metric(text, "coredns_dns_responses_total", plugin="forward") + metric(
        text, "coredns_dns_responses_total", plugin="cache") == 5
    assert metric(text, "coredns_dns_request_duration_seconds_count") == 6


# -- metrics, health, ready -------------------------------------------------------------------------

def _side_ports() -> dict[str, int]:
    return {"health": free_port(), "ready": free_port(), "metrics": free_port()}


def _with_side_ports(ports: dict[str, int], body: str = KUBERNETES + "    cache 30\n") -> str:
    return corefile(f"    health 127.0.0.1:{ports['health']}\n    ready 127.0.0.1:{ports['ready']}\n"
                    f"    prometheus 127.0.0.1:{ports['metrics']}\n" + body)


def test_metrics_count_every_query_hot_path_included(live):
    ports = _side_ports()
    server = live(_with_side_ports(ports))
    sent = {("udp", "A"): 0, ("tcp", "A"): 0, ("udp", "SRV"): 0, ("udp", "AAAA"): 0}
    for _ in range(7):  # 1 cold, then the memo and the hot table (same bytes but the ID)
        server.ask("api.web.svc.cluster.local", "A")
        sent[("udp", "A")] += 1
    for name in ("API.web.svc.cluster.local", "Api.Web.svc.cluster.local"):  # memo hits in another case
        server.ask(name, "A")
        sent[("udp", "A")] += 1
    for _ in range(3):
        server.ask("api.web.svc.cluster.local", "A", tcp=True)
        sent[("tcp", "A")] += 1
    for _ in range(4):
        server.ask("nope.web.svc.cluster.local", "SRV")  # NXDOMAIN
        sent[("udp", "SRV")] += 1
    for _ in range(2):
        server.ask("api.web.svc.cluster.local", "AAAA")  # NODATA
        sent[("udp", "AAAA")] += 1
    server.raw(_header(flags=0x2000) + QNAME + b"\x00\x06\x00\x01")  # NOTIMP
    server.ask("www.example.com")  # SERVFAIL: no next plugin
    sent[("udp", "A")] += 1
    status, text = http_get(ports["metrics"], "/metrics")
    assert status == 200 and "# TYPE coredns_dns_requests_total counter" in text
    for (proto, qtype), n in sent.items():
        assert metric(text, "coredns_dns_requests_total", proto=proto, type=qtype) == n, (proto, qtype)
    assert metric(text, "coredns_dns_requests_total", type="SOA") == 1  # the NOTIFY
    assert metric(text, "coredns_dns_responses_total", rcode="NOERROR", plugin="kubernetes") == 7 + 2 + 3 + 2
    assert metric(text, "coredns_dns_responses_total", rcode="NXDOMAIN", plugin="kubernetes") == 4
    assert metric(text, "coredns_dns_responses_total", rcode="NOTIMP") == 1
    assert metric(text, "coredns_dns_responses_total", rcode="SERVFAIL") == 1
    total = sum(sent.values()) + 1
    assert metric(text, "coredns_dns_request_duration_seconds_count") == total
    assert metric(text, "coredns_dns_request_duration_seconds_count", type="A") == sent[("udp", "A")] + sent[("tcp", "A")]
    assert metric(text, "coredns_dns_request_duration_seconds_bucket", type="A", le="+Inf") == 13
    assert metric(text, "coredns_dns_request_duration_seconds_sum") > 0
    # cache: one miss per distinct question (A over UDP, A over TCP, SRV, AAAA, and example.com)
    assert metric(text, "coredns_cache_misses_total") == 5
    assert metric(text, "coredns_cache_hits_total", type="success") == 6 + 2 + 2
    assert metric(text, "coredns_cache_hits_total", type="denial") == 3 + 1
    # scraping twice does not count twice
    assert http_get(ports["metrics"], "/metrics")[1].count("\n") > 10
    again = http_get(ports["metrics"], "/metrics")[1]
    assert metric(again, "coredns_dns_requests_total") == metric(text, "coredns_dns_requests_total")
    assert metric(text, "coredns_plugin_enabled", name="kubernetes") == 1
    assert http_get(ports["metrics"], "/nope")[0] == 404


def test_health_and_ready(live):
    ports = _side_ports()
    server = live(_with_side_ports(ports))
    assert http_get(ports["health"], "/health") == (200, "OK")
    assert http_get(ports["ready"], "/ready") == (200, "OK")
    server.server.ready = False  # as before the first state arrives
    assert http_get(ports["ready"], "/ready")[0] == 503
    assert http_get(ports["health"], "/health") == (200, "OK")


# -- reload and a new cluster state ---------------------------------------------------------------

def _until(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _replace(path: Path, text: str) -> None:
    """A new Corefile as a ConfigMap update makes it: whole at once. write_text truncates first,
    and a reload reading the empty or half-written file in between counts a failed reload."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    os.replace(new, path)


def test_reload_applies_a_changed_corefile_and_keeps_the_old_one_when_broken(cluster, live):
    ports = _side_ports()
    body = KUBERNETES + "    cache 30\n    reload 2s 1s\n"
    server = live(_with_side_ports(ports, body))
    assert server.ask("legacy.cluster.local").rcode() == dns.rcode.NXDOMAIN  # memoised now
    _replace(server.path, _with_side_ports(ports, HOSTS.replace("legacy.example.org", "legacy.cluster.local") + body))
    _until(lambda: server.ask("legacy.cluster.local").answer, 60, "the new Corefile did not take effect")
    assert server.ask("legacy.cluster.local").answer[0][0].to_text() == "10.1.2.3"
    assert as_sets(server.ask("api.web.svc.cluster.local")) == expected(cluster, "api.web.svc.cluster.local.", "A")
    good = server.server.corefile_text
    _replace(server.path, good.replace("    errors\n", "    erors\n"))
    _until(lambda: metric(http_get(ports["metrics"], "/metrics")[1], "coredns_reload_failed_total") == 1, 60,
           "a broken Corefile was not counted")
    assert server.ask("legacy.cluster.local").answer[0][0].to_text() == "10.1.2.3"  # still the last good one
    assert server.server.configs and server.thread.is_alive()


NEW_STATE = MANIFESTS.replace("clusterIP: 10.96.10.10", "clusterIP: 10.96.10.99") + textwrap.dedent("""
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: late, namespace: web}
    spec: {clusterIP: 10.96.10.77, selector: {app: api}, ports: [{port: 80}]}
""")


def test_a_new_cluster_state_changes_answers_at_once(cluster, plain):
    names = [("api.web.svc.cluster.local.", "A"), ("late.web.svc.cluster.local.", "A"),
             ("10.10.96.10.in-addr.arpa.", "PTR")]
    for name, qtype in names * 3:  # memoised and in the hot table
        assert as_sets(plain.ask(name, qtype)) == expected(cluster, name, qtype)
    newer = cluster_of(NEW_STATE)
    plain.state.cluster = newer
    plain.on_loop(lambda: plain.server._install(plain.server._build_blocks()))
    for name, qtype in names * 2:  # no stale memo, no stale hot table
        assert as_sets(plain.ask(name, qtype)) == expected(newer, name, qtype), name
    assert plain.ask("api.web.svc.cluster.local").answer[0][0].to_text() == "10.96.10.99"
    assert plain.ask("late.web.svc.cluster.local").answer[0][0].to_text() == "10.96.10.77"
    # and the same state again (nothing DNS cares about changed) keeps answering the same
    plain.on_loop(lambda: plain.server._install(plain.server._build_blocks()))
    assert plain.ask("late.web.svc.cluster.local").answer[0][0].to_text() == "10.96.10.77"


def test_hot_path_counts_survive_state_changes_while_queries_run(cluster, live):
    """The UDP listener's thread counts memoised answers while the loop swaps engines: every
    answered query is counted once, and the retired engines' entries are let go afterwards."""
    ports = _side_ports()
    server = live(_with_side_ports(ports))
    newer = cluster_of(NEW_STATE)
    query = dns.message.make_query("api.web.svc.cluster.local", "A")
    answered = [0, 0]
    stop = threading.Event()

    def client(slot: int) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2)
        try:
            while not stop.is_set():
                sock.sendto(query.to_wire(), ("127.0.0.1", server.port))
                sock.recvfrom(4096)  # one at a time: nothing is ever dropped, so sent = counted
                answered[slot] += 1
        finally:
            sock.close()

    clients = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for thread in clients:
        thread.start()
    try:
        # each swap retires the engine (the DNS data changes every time); at least 30 of them, and
        # on until the clients had 100 answers among them, however slowly a loaded machine goes
        swaps, deadline = 0, time.monotonic() + 120
        while swaps < 30 or sum(answered) <= 100:
            assert time.monotonic() < deadline, f"{swaps} swaps, {answered} answers"
            server.state.cluster = newer if swaps % 2 == 0 else cluster
            server.on_loop(lambda: server.server._install(server.server._build_blocks()))
            swaps += 1
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in clients:
            thread.join(10)
    assert all(answered)
    text = http_get(ports["metrics"], "/metrics")[1]
    assert metric(text, "coredns_dns_requests_total", proto="udp", type="A") == sum(answered)
    metrics = server.server.blocks[server.port][0].metrics
    _until(lambda: not metrics.graveyard, 60, "retired entries were never settled")
    again = http_get(ports["metrics"], "/metrics")[1]
    assert metric(again, "coredns_dns_requests_total", proto="udp", type="A") == sum(answered)


# -- the process: loop detection, the command line, a flood ----------------------------------------

def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("PODNET_CONTROL_SOCKET", None)
    return env


@contextlib.contextmanager
def process(args: list[str]):
    proc = subprocess.Popen([sys.executable, "-m", "podnet.dns", *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()


def _when_listening(ask, proc, seconds: float = 60):
    """`ask()`'s answer once its server accepts connections (a wait with a load-proof bound)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return ask()
        except OSError:  # urllib's URLError too: connection refused while the server starts
            if proc.poll() is not None:
                raise AssertionError(f"the server exited: {proc.stdout.read()}") from None
            assert time.monotonic() < deadline, "the server never listened"
            time.sleep(0.05)


def _wait_for_answers(port: int, proc, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            dns.query.udp(dns.message.make_query("kubernetes.default.svc.cluster.local", "A"), "127.0.0.1",
                          port=port, timeout=0.3)
            return
        # BadResponse: the late answer to an earlier try reached a new socket on the same port
        except (dns.exception.Timeout, dns.query.BadResponse, OSError):
            if proc.poll() is not None:
                raise AssertionError(f"the server exited: {proc.stdout.read()}")
            assert time.monotonic() < deadline, "the server did not start"


def test_loop_plugin_exits_when_forward_points_at_the_server_itself(tmp_path):
    port = free_port()
    path = tmp_path / "Corefile"
    path.write_text(f".:{port} {{\n    errors\n    forward . 127.0.0.1:{port}\n    loop\n}}\n")
    with process(["-conf", str(path), "--host", "127.0.0.1"]) as proc:
        try:
            code = proc.wait(120)  # an interpreter start, the imports, the loop found: seconds, however loaded
        except subprocess.TimeoutExpired:
            raise AssertionError("the server kept running with a forwarding loop")
        output = proc.stdout.read()
    assert code == 1 and "Loop" in output, output


def test_the_command_line_serves_manifests_with_dns_port_and_ready(tmp_path):
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(MANIFESTS)
    ports = {"dns": free_port(), **_side_ports()}
    path = tmp_path / "Corefile"
    path.write_text(_with_side_ports(ports))  # .:53 in the file; -dns.port moves it
    with process(["-conf", str(path), "-dns.port", str(ports["dns"]), "--host", "127.0.0.1",
                  "-f", str(manifests)]) as proc:
        _wait_for_answers(ports["dns"], proc)
        # the side servers start beside the DNS listener, not before it: wait for them to listen
        assert _when_listening(lambda: http_get(ports["ready"], "/ready"), proc) == (200, "OK")
        assert _when_listening(lambda: http_get(ports["health"], "/health"), proc) == (200, "OK")
        response = dns.query.udp(dns.message.make_query("api.web.svc.cluster.local", "A"), "127.0.0.1",
                                 port=ports["dns"], timeout=ANSWER_TIMEOUT)
        assert response.answer[0][0].to_text() == "10.96.10.10"
        assert proc.poll() is None


FLOODER = textwrap.dedent("""
    import signal, socket, sys
    import dns.message
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port, window, announce = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    hot = dns.message.make_query("nope.web.svc.cluster.local", "A").to_wire()
    cold = [dns.message.make_query(f"r{i}.web.svc.cluster.local", "A").to_wire() for i in range(5000)]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.connect(("127.0.0.1", port))
    s.settimeout(10)
    answered, outstanding, i = 0, 0, 0
    while True:  # until SIGTERM: the flood lasts as long as the test needs it, however slow the machine
        # Closed loop: `window` questions always in flight, so the server is never idle, however
        # its CPU share compares with ours, and its socket buffer (at least 512 datagrams even at
        # the kernel's default rmem_max) never overflows: nobody's question is dropped unread.
        # A tenth are names never asked before.
        while outstanding < window:
            i += 1
            try:
                s.send(cold[i % 5000] if i % 10 == 0 else hot)
            except OSError:
                break
            outstanding += 1
        try:
            s.recv(4096)
            answered, outstanding = answered + 1, outstanding - 1
        except socket.timeout:
            outstanding = 0  # 10 s without a reply: whatever was in flight is lost, start again
        except OSError:
            pass
        if answered >= announce > 0:
            print("flooding", flush=True)
            announce = 0
""")
FLOOD_WINDOW = 256  # the flooder's questions in flight: half what the smallest socket buffer holds


def _asked(client: socket.socket, port: int) -> bool:
    """One question of the other client: answered? The flood cannot overflow the server's socket
    buffer, so the question reaches the server and must be answered: it waits long for that."""
    query = dns.message.make_query("api.web.svc.cluster.local", "A")
    with contextlib.suppress(dns.exception.Timeout):
        response = dns.query.udp(query, "127.0.0.1", port=port, timeout=ANSWER_TIMEOUT, sock=client)
        return response.rcode() == dns.rcode.NOERROR and bool(response.answer)
    return False


def test_a_flood_from_one_client_does_not_starve_another(tmp_path):
    """While one client floods the server (5,000 of its questions were answered before the other
    starts, and it keeps the server busy until the end), every question of another client is
    answered. Asserts what the server did, not how fast: the flood is closed-loop, so it saturates
    the server without depending on how the CPU is shared between the two processes."""
    port = free_port()
    path = tmp_path / "Corefile"
    path.write_text(corefile(KUBERNETES + "    cache 30\n", port))
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(MANIFESTS)
    with process(["-conf", str(path), "--host", "127.0.0.1", "-f", str(manifests)]) as proc:
        _wait_for_answers(port, proc)
        flooder = subprocess.Popen([sys.executable, "-c", FLOODER, str(port), str(FLOOD_WINDOW), "5000"],
                                   env=_env(), stdout=subprocess.PIPE, text=True)
        try:
            # 5,000 answers are a state that must come: a generous bound, so a broken server fails
            assert select.select([flooder.stdout], [], [], 300)[0], "the flooder's questions were not answered"
            assert flooder.stdout.readline().strip() == "flooding"
            answered = 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.bind(("127.0.0.1", 0))
                client.setblocking(False)  # dnspython expects a non-blocking socket of its caller
                while answered < 200 and _asked(client, port):  # the first unanswered one fails
                    answered += 1
            flooder_alive = flooder.poll() is None  # it floods until stopped: so it did all along
        finally:
            flooder.terminate()
            flooder.communicate(timeout=30)
        assert proc.poll() is None
    assert (answered, flooder_alive) == (200, True)


# -- robustness: Engine.respond on hostile input --------------------------------------------------

def _fuzz_engine(cluster) -> Engine:
    [config] = corefile_mod.load(corefile(HOSTS + KUBERNETES + "    cache 30\n    loadbalance\n"))
    return Engine(config, cluster, Metrics())


_FUZZ: dict[str, Engine] = {}


def _engine(cluster) -> Engine:
    """One engine for all examples: its memo and hot tables fill up as they would in a server."""
    if "engine" not in _FUZZ:
        _FUZZ["engine"] = _fuzz_engine(cluster)
    return _FUZZ["engine"]


def _must_survive(engine: Engine, data: bytes) -> None:
    for tcp in (False, True):
        out = engine.respond(data, tcp, ("127.0.0.1", 9))
        assert out is None or isinstance(out, bytes), type(out)
        if out is None:
            continue
        response = dns.message.from_wire(out, question_only=True)
        assert response.flags & dns.flags.QR and response.id == int.from_bytes(data[:2], "big")
        if not tcp:
            assert len(out) <= 4096
        try:
            dns.message.from_wire(out)  # the whole response, not just its question
        except dns.message.Truncated:
            pass


SEEDS = [dns.message.make_query(n, t, **kw).to_wire() for n, t, kw in [
    ("api.web.svc.cluster.local", "A", {}),
    ("_http._tcp.api.web.svc.cluster.local", "SRV", {}),
    ("wide.data.svc.cluster.local", "A", {}),
    ("nope.web.svc.cluster.local", "AAAA", {"use_edns": 0, "payload": 4096}),
    ("10.10.96.10.in-addr.arpa", "PTR", {}),
    ("legacy.example.org", "A", {"use_edns": 0, "ednsflags": dns.flags.DO}),
    ("billing.web.svc.cluster.local", "CNAME", {}),
    ("1-2-3-4.web.pod.cluster.local", "A", {}),
]]

FUZZ = settings(max_examples=4000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=700))
def test_random_bytes(cluster, data):
    _must_survive(_engine(cluster), data)


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), min_size=1, max_size=8))
def test_random_mutations_of_valid_queries(cluster, query, flips):
    data = bytearray(query)
    for at, value in flips:
        data[at % len(data)] = value
    _must_survive(_engine(cluster), bytes(data))


@FUZZ
@given(st.sampled_from(SEEDS), st.data())
def test_truncated_and_extended_queries(cluster, query, data):
    cut = data.draw(st.integers(0, len(query)))
    tail = data.draw(st.binary(max_size=40))
    _must_survive(_engine(cluster), query[:cut] + tail)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SEEDS), st.integers(4097 - 30, 9000))
def test_oversized_packets(cluster, query, size):
    _must_survive(_engine(cluster), query + b"\x00" * (size - len(query)))


QTYPES = [0, 1, 2, 5, 6, 12, 16, 28, 33, 41, 99, 250, 251, 252, 253, 254, 255, 256, 65280, 65535]
QCLASSES = [0, 1, 3, 4, 254, 255, 65535]


@pytest.mark.parametrize("qtype", QTYPES)
def test_every_odd_qtype_and_class(cluster, qtype):
    engine = _engine(cluster)
    for qclass in QCLASSES:
        for name in (QNAME, b"\x07cluster\x05local\x00", b"\x00", b"\x03api\x03web\x03svc\x07Cluster\x05LOCAL\x00"):
            _must_survive(engine, _header() + name + struct.pack("!HH", qtype, qclass))


@pytest.mark.parametrize("rule,data", [
    ("pointer to itself", _header() + b"\xc0\x0c\x00\x01\x00\x01"),
    ("two pointers to each other", _header() + b"\x01a\xc0\x0e\xc0\x0c\x00\x01\x00\x01"),
    ("a forward pointer", _header() + b"\xc0\x20\x00\x01\x00\x01" + b"\x00" * 20),
    ("a pointer past the end", _header() + b"\xc0\xff\x00\x01\x00\x01"),
    ("a name longer than 255", _header() + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63
     + b"\x3f" + b"d" * 63 + b"\x00\x00\x01\x00\x01"),
    ("a name of exactly 255", _header() + (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"e" * 61 + b"\x00\x00\x01\x00\x01"),
    ("an OPT without room", _header(ar=1) + QNAME + b"\x00\x01\x00\x01\x00\x00\x29"),
    ("two OPTs", _header(ar=2) + QNAME + b"\x00\x01\x00\x01" + (b"\x00\x00\x29\x10\x00" + b"\x00" * 6) * 2),
    ("an OPT with a bad option length", _header(ar=1) + QNAME + b"\x00\x01\x00\x01"
     + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\x00\x08\x00\x0a\x00\x40\x01"),
    ("EDNS version 1", _header(ar=1) + QNAME + b"\x00\x01\x00\x01" + b"\x00\x00\x29\x10\x00\x00\x01\x00\x00\x00\x00"),
    ("EDNS payload 0", _header(ar=1) + QNAME + b"\x00\x01\x00\x01" + b"\x00\x00\x29\x00\x00\x00\x00\x00\x00\x00\x00"),
    ("an answer record in a query", _header(an=1) + QNAME + b"\x00\x01\x00\x01"
     + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04\x01\x02\x03\x04"),
    ("a TSIG-looking additional", _header(ar=1) + QNAME + b"\x00\x01\x00\x01" + b"\x00\x00\xfa\x00\xff"
     + b"\x00" * 6),
    ("only the ID", b"\x12\x34"),
    ("a header of zeros", b"\x00" * 12),
    ("all ones", b"\xff" * 64),
])
def test_hostile_packets_table(cluster, rule, data):
    _must_survive(_engine(cluster), data)
