"""The DNS server's query path (podnet.dns.engine + wire), no sockets: what comes back for
query bytes is exactly what the simulator's resolver answers, memoised or not, and no input
crashes it."""

from __future__ import annotations

import textwrap

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podnet.controlplane.system import corefile
from podnet.semantics import corefile as corefile_mod
from podnet.dns.engine import Engine, Forwarding
from podnet.dns.metrics import Metrics
from podnet.semantics.dns import ClusterDNS
from tests.conftest import cluster_of

MANIFESTS = textwrap.dedent("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: default}
    spec:
      replicas: 3
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: c, image: agnhost, ports: [{name: http, containerPort: 8080}]}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: http}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: wide}
    spec: {clusterIP: None, selector: {app: wide}, ports: [{port: 80}]}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: wide}
    spec:
      replicas: 60
      selector: {matchLabels: {app: wide}}
      template:
        metadata: {labels: {app: wide}}
        spec: {containers: [{name: c, image: agnhost}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: ext}
    spec: {type: ExternalName, externalName: web.default.svc.cluster.local}
""")


@pytest.fixture(scope="module")
def cluster():
    return cluster_of(MANIFESTS)


def engine_for(cluster, text: str | None = None) -> Engine:
    [config] = corefile_mod.load(text or corefile(cluster.config))
    return Engine(config, cluster, Metrics())


def ask(engine: Engine, name: str, qtype: str = "A", tcp: bool = False, **kw) -> dns.message.Message:
    query = dns.message.make_query(name, qtype, **kw)
    out = engine.respond(query.to_wire(), tcp)
    assert isinstance(out, bytes)
    response = dns.message.from_wire(out)
    assert response.id == query.id
    return response


def as_sets(response: dns.message.Message) -> tuple:
    def section(rrsets):
        return {(r.name.to_text().lower(), dns.rdatatype.to_text(r.rdtype), r.ttl, rd.to_text().lower())
                for r in rrsets for rd in r}
    return (dns.rcode.to_text(response.rcode()), bool(response.flags & dns.flags.AA),
            section(response.answer), section(response.authority), section(response.additional))


def expected(cluster, name: str, qtype: str) -> tuple:
    answer = ClusterDNS(cluster).answer(name, qtype)
    return as_sets(answer.to_message(dns.message.make_query(name, qtype)))


@pytest.mark.parametrize("name,qtype", [
    ("web.default.svc.cluster.local.", "A"),
    ("web.default.svc.cluster.local.", "AAAA"),  # NODATA with the SOA
    ("_http._tcp.web.default.svc.cluster.local.", "SRV"),
    ("ext.default.svc.cluster.local.", "CNAME"),
    ("nope.default.svc.cluster.local.", "A"),  # NXDOMAIN with the SOA
    ("dns-version.cluster.local.", "TXT"),
    ("10-244-1-5.default.pod.cluster.local.", "A"),  # pods insecure
    ("10.0.96.10.in-addr.arpa.", "PTR"),
    ("example.com.", "A"),  # outside the zone, no forward: SERVFAIL
    ("cluster.local.", "SOA"),  # the apex: the SOA as the answer
    ("web.default.svc.cluster.local.", "SOA"),  # below the apex: NODATA, the SOA as authority
    ("nope.default.svc.cluster.local.", "SOA"),  # ... not looked up
    ("_http._tcp.ext.default.svc.cluster.local.", "A"),  # ExternalName with port labels: NXDOMAIN
    ("_http._tcp.ext.default.svc.cluster.local.", "SRV"),
])
def test_server_answers_what_the_resolver_answers_memoised_or_not(cluster, name, qtype):
    engine = engine_for(cluster)
    first, again = ask(engine, name, qtype), ask(engine, name, qtype)
    assert as_sets(first) == expected(cluster, name, qtype)
    assert as_sets(again) == as_sets(first)


@pytest.mark.parametrize("rule,name,qtype,rcode,soa_in", [
    ("soa_at_the_apex_is_the_answer", "cluster.local.", "SOA", "NOERROR", "answer"),
    ("soa_below_the_apex_is_nodata", "web.default.svc.cluster.local.", "SOA", "NOERROR", "authority"),
    ("soa_of_a_missing_name_is_nodata", "nope.default.svc.cluster.local.", "SOA", "NOERROR", "authority"),
    ("externalname_with_port_labels_is_nxdomain", "_http._tcp.ext.default.svc.cluster.local.", "A", "NXDOMAIN",
     "authority"),
    ("externalname_with_port_labels_has_no_cname", "_http._tcp.ext.default.svc.cluster.local.", "CNAME",
     "NXDOMAIN", "authority"),
])
def test_memo_and_hot_table_serve_coredns_answers(cluster, rule, name, qtype, rcode, soa_in):
    """The wire answers, cold, memoised (TCP) and from the hot UDP table: the zone's SOA alone,
    in the answer section at the apex, in the authority section of a negative answer."""
    engine = engine_for(cluster)
    query = dns.message.make_query(name, qtype)
    cold = engine.respond(query.to_wire())
    assert query.to_wire()[2:] in engine.hot_udp
    for out in (cold, engine.respond(query.to_wire()), engine.respond(query.to_wire(), tcp=True)):
        response = dns.message.from_wire(out)
        sections = {"answer": response.answer, "authority": response.authority}
        assert dns.rcode.to_text(response.rcode()) == rcode
        assert [(r.name.to_text(), dns.rdatatype.to_text(r.rdtype), len(r)) for r in sections.pop(soa_in)] == [
            ("cluster.local.", "SOA", 1)]
        assert not any(sections.values())


def test_case_is_echoed_from_the_memo(cluster):
    engine = engine_for(cluster)
    ask(engine, "web.default.svc.cluster.local", "A")
    mixed = ask(engine, "WeB.Default.SVC.cluster.LOCAL", "A")
    assert mixed.question[0].name.to_text() == "WeB.Default.SVC.cluster.LOCAL."
    assert mixed.answer[0].name.to_text() == "WeB.Default.SVC.cluster.LOCAL."


def test_rd_bit_and_id_follow_each_query(cluster):
    engine = engine_for(cluster)
    for rd in (True, False, True):
        query = dns.message.make_query("web.default.svc.cluster.local", "A")
        if not rd:
            query.flags &= ~dns.flags.RD
        response = dns.message.from_wire(engine.respond(query.to_wire()))
        assert bool(response.flags & dns.flags.RD) == rd and response.id == query.id


def test_the_usual_query_shares_its_bytes_between_the_memo_and_the_hot_table(cluster):
    """Memory: for a query spelled as resolvers send it, the hot table's key and response are
    the memo's key and template, not copies; any other spelling gets its own, and its own RD."""
    engine = engine_for(cluster, corefile(cluster.config).replace("    loadbalance\n", ""))
    for name in ("web.default.svc.cluster.local", "nope.default.svc.cluster.local"):
        data = dns.message.make_query(name, "A", id=7).to_wire()
        out = engine.respond(data)
        [(key, entry)] = [(k, e) for k, e in engine.memo.items() if k == data[2:]]
        hot_key = next(k for k in engine.hot_udp if k == data[2:])
        body, hot_entry = engine.hot_udp[data[2:]]
        assert hot_key is key and body is entry.variants[0] and hot_entry is entry
        assert out == data[:2] + body
        plain = dns.message.make_query(name, "A", id=8)
        plain.flags &= ~dns.flags.RD
        other = engine.respond(plain.to_wire())
        body = engine.hot_udp[plain.to_wire()[2:]][0]
        assert body is not entry.variants[0] and not dns.message.from_wire(other).flags & dns.flags.RD
        assert other[3:] == out[3:]


def test_udp_truncates_a_big_answer_and_tcp_and_edns_carry_it(cluster):
    engine = engine_for(cluster, corefile(cluster.config).replace("    loadbalance\n", ""))
    name = "wide.default.svc.cluster.local"
    small = ask(engine, name)
    assert small.flags & dns.flags.TC and not small.answer
    assert len(ask(engine, name, tcp=True).answer[0]) == 60
    edns = ask(engine, name, use_edns=0, payload=4096)
    assert not edns.flags & dns.flags.TC and len(edns.answer[0]) == 60 and edns.edns == 0


def test_loadbalance_rotates_address_records(cluster):
    def orders(engine) -> set[tuple[str, ...]]:
        return {tuple(rd.to_text() for rd in ask(engine, "wide.default.svc.cluster.local", tcp=True).answer[0])
                for _ in range(5)}

    rotated = orders(engine_for(cluster))
    assert len(rotated) == 5 and len({frozenset(o) for o in rotated}) == 1  # same records, new order each time
    assert len(orders(engine_for(cluster, corefile(cluster.config).replace("    loadbalance\n", "")))) == 1


def test_malformed_other_opcodes_and_responses(cluster):
    engine = engine_for(cluster)
    assert engine.respond(b"\x12") is None  # not even a header: dropped
    garbage = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07exa"
    assert dns.message.from_wire(engine.respond(garbage), question_only=True).rcode() == dns.rcode.FORMERR
    notify = dns.message.make_query("web.default.svc.cluster.local", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(engine.respond(notify.to_wire())).rcode() == dns.rcode.NOTIMP
    response = dns.message.make_response(dns.message.make_query("web.default.svc.cluster.local", "A"))
    assert engine.respond(response.to_wire()) is None  # never answer an answer
    chaos = dns.message.make_query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
    assert dns.message.from_wire(engine.respond(chaos.to_wire())).rcode() == dns.rcode.REFUSED


def test_hosts_entries_come_before_the_cluster_and_fall_through(cluster):
    text = corefile(cluster.config).replace(
        "    prometheus", '    hosts {\n        10.1.2.3 legacy.example.org\n        fallthrough\n    }\n    prometheus')
    engine = engine_for(cluster, text)
    assert [rd.to_text() for rd in ask(engine, "legacy.example.org").answer[0]] == ["10.1.2.3"]
    assert ask(engine, "web.default.svc.cluster.local").answer  # on to kubernetes


def test_forward_is_handed_to_the_server_and_metrics_count_every_answer(cluster):
    text = corefile(cluster.config).replace("    cache 30", "    forward . 127.0.0.1:5399\n    cache 30")
    engine = engine_for(cluster, text)
    query = dns.message.make_query("example.com", "A")
    assert isinstance(engine.respond(query.to_wire()), Forwarding)
    for _ in range(5):
        ask(engine, "web.default.svc.cluster.local")
    ask(engine, "nope.default.svc.cluster.local")
    engine.metrics.absorb(engine.entries(), engine.cache_enabled)
    m = engine.metrics
    assert m.requests[("udp", "A")] == 6
    assert m.responses[("NOERROR", "kubernetes")] == 5 and m.responses[("NXDOMAIN", "kubernetes")] == 1
    assert m.cache_misses == 2 and m.cache_hits["success"] == 4
    text = m.render()
    assert 'coredns_dns_requests_total{family="1",proto="udp",server="dns://:53",type="A",view="",zone="."} 6' in text
    assert 'coredns_dns_request_duration_seconds_count{server="dns://:53",type="A",view="",zone="."} 6' in text


_QUERIES = [dns.message.make_query(n, t).to_wire() for n, t in
            [("web.default.svc.cluster.local", "A"), ("_http._tcp.web.default.svc.cluster.local", "SRV"),
             ("nope.default.svc.cluster.local", "AAAA"), ("10.0.96.10.in-addr.arpa", "PTR")]]


def _check(engine: Engine, data: bytes) -> None:
    out = engine.respond(data, False)
    if out is None or isinstance(out, Forwarding):
        return
    response = dns.message.from_wire(out, question_only=True)
    assert response.flags & dns.flags.QR and response.id == int.from_bytes(data[:2], "big")


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_server(cluster, data):
    _check(_cached(cluster), data)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(_QUERIES), st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=6),
       st.integers(0, 100))
def test_mutated_and_truncated_queries_never_crash_the_server(cluster, query, flips, cut):
    data = bytearray(query)
    for at, value in flips:
        if at < len(data):
            data[at] = value
    _check(_cached(cluster), bytes(data[:max(2, len(data) - cut)] if cut < 50 else data))


def test_pointer_loops_and_oversized_packets(cluster):
    engine = _cached(cluster)
    loop = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    _check(engine, loop)
    _check(engine, _QUERIES[0] + b"\x00" * 5000)
    _check(engine, b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x3f" + b"a" * 63 * 5)


_ENGINES: dict[int, Engine] = {}  # one engine per cluster for the fuzz tests (its memo fills up: also tested)


def _cached(cluster) -> Engine:
    if id(cluster) not in _ENGINES:
        _ENGINES[id(cluster)] = engine_for(cluster)
    return _ENGINES[id(cluster)]
