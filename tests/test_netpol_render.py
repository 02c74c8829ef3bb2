"""The NetworkPolicy renderer (podnet.policy) without root: its tables, walked by a small
interpreter of the rules it writes, decide every connection as the simulator does.

- Every step and check of the upstream e2e scenarios (tests/netpol_cases.py): each pair's first
  packet is walked through the egress chain of the source's node and the ingress chain of the
  destination's node, and must agree with `PolicyEngine.evaluate` — and with the truth table.
- Rules one by one (numbers of docs/specs/networkpolicy.md): ipBlock except as interval
  elements, named ports per destination pod, endPort ranges, hostNetwork pods, counters.
- Syncs: a pod or label change is a set-element update; a policy change replaces the table in
  one transaction; the table grows with policies, not pods.
- Anti-spoofing: the bridge table drops an IPv4 packet from a pod's veth whose source is not the
  pod's address; IPv6 passes the inet chains untouched.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.linux.netpol import NodePolicy, parse_counters
from podnet.naming import host_veth_name
from podnet.policy import Ruleset, counter_owner, render, transaction
from podnet.policy.nftables import BRIDGE_CHAIN
from podnet.proxy.loader import LoadError, RecordingRunner
from podnet.semantics.networkpolicy import PolicyEngine
from podnet.semantics.policymatch import IPBlock
from tests import netpol_cases as cases
from tests.conftest import cluster_of
from tests.test_networkpolicy import step_engine

# ---------------------------------------------------------------- a packet through the table


class Packet:
    def __init__(self, saddr, daddr, proto: str, dport: int, local_source: bool = False):
        self.saddr, self.daddr = ipaddress.ip_address(str(saddr)), ipaddress.ip_address(str(daddr))
        self.proto, self.dport, self.local_source = proto.lower(), dport, local_source


def in_set(ruleset: Ruleset, name: str, key) -> bool:
    for element in ruleset.sets[name].elements:
        if " . " in element:
            if tuple(element.split(" . ")) == tuple(map(str, key)):
                return True
        elif ipaddress.ip_address(str(key)) in ipaddress.ip_network(element):
            return True
    return False


def matches(ruleset: Ruleset, term: str, p: Packet) -> bool:
    """One match of the rules podnet.policy writes (a deliberately small grammar: anything else
    fails the test, so the renderer cannot drift from what this interpreter understands)."""
    addr = {"saddr": p.saddr, "daddr": p.daddr}
    if term.startswith("ip ") and p.saddr.version != 4:
        return False  # an `ip` match implies meta nfproto ipv4
    if m := re.fullmatch(r"meta nfproto (ipv4|ipv6)", term):
        return m.group(1) == f"ipv{p.saddr.version}"
    if m := re.fullmatch(r"ip (saddr|daddr) (!= )?@(\S+)", term):
        found = in_set(ruleset, m.group(3), addr[m.group(1)])
        return not found if m.group(2) else found
    if term == "ip saddr . ip daddr @self":
        return in_set(ruleset, "self", (p.saddr, p.daddr))
    if term == "fib saddr type local":
        return p.local_source
    if term == "ct state established,related":
        return False  # first packets only
    if m := re.fullmatch(r"meta l4proto (\w+)", term):
        return p.proto == m.group(1)
    if m := re.fullmatch(r"th dport (\d+)(?:-(\d+))?", term):
        return int(m.group(1)) <= p.dport <= int(m.group(2) or m.group(1))
    if m := re.fullmatch(r"ip daddr \. th dport @(\S+)", term):
        return in_set(ruleset, m.group(1), (p.daddr, p.dport))
    raise AssertionError(f"the interpreter does not know {term!r}")


TERM = re.compile(r"ip saddr \. ip daddr @\S+|ip daddr \. th dport @\S+|ip (?:saddr|daddr) (?:!= )?@\S+|"
                  r"fib saddr type local|ct state \S+|meta (?:l4proto|nfproto) \w+|th dport \S+")


def walk(ruleset: Ruleset, chain: str, p: Packet, counted: list[str]) -> str | None:
    """The verdict of `chain` ("accept", "drop") or None when it falls through or returns."""
    for rule in ruleset.chains[chain]:
        rest = rule
        terms = []
        while m := TERM.match(rest):
            terms.append(m.group(0))
            rest = rest[m.end():].lstrip()
        if not all(matches(ruleset, t, p) for t in terms):
            continue
        if rest in ("accept", "drop"):
            return rest
        if rest == "return":
            return None  # Pass: back to the calling chain
        if m := re.fullmatch(r'counter name "(\S+)" drop', rest):
            counted.append(m.group(1))
            return "drop"
        if m := re.fullmatch(r"jump (\S+)", rest):
            verdict = walk(ruleset, m.group(1), p, counted)
            if verdict is not None:
                return verdict
            continue
        if m := re.fullmatch(r'counter name "(\S+)"', rest):
            counted.append(m.group(1))
            continue
        raise AssertionError(f"the interpreter does not know the statement {rest!r} in {rule!r}")
    return None


def allowed(tables: dict[str, Ruleset], engine: PolicyEngine, src: str, dst: str, port: int, proto: str,
            counted: list[str] | None = None) -> bool:
    s, d = engine.endpoint(src), engine.endpoint(dst)
    packet = Packet(s.ip, d.ip, proto, port)
    counted = counted if counted is not None else []
    if walk(tables[s.node], "egress", packet, counted) == "drop":
        return False
    return walk(tables[d.node], "ingress", packet, counted) != "drop"


def tables_of(engine: PolicyEngine) -> dict[str, Ruleset]:
    return {n.name: render(engine.cluster, n.name) for n in engine.cluster.nodes}


# ---------------------------------------------------------------- the e2e scenarios

CHECKS = [pytest.param(si, ti, id=f"{s.id}[{ti}]")
          for si, s in enumerate(cases.SCENARIOS) for ti, _ in enumerate(s.steps)]


@pytest.mark.parametrize("si,ti", CHECKS)
def test_rendered_tables_decide_every_e2e_pair_as_the_simulator(si, ti):
    engine = step_engine(si, ti)
    tables = tables_of(engine)
    assert len({n.node for n in map(engine.endpoint, cases.PODS)}) > 1  # pairs on one node and across
    for check in cases.SCENARIOS[si].steps[ti].checks:
        expected = cases.grid(check.expected)
        for src in cases.PODS:
            for dst in cases.PODS:
                kernel = allowed(tables, engine, src, dst, check.port, check.protocol)
                sim = engine.evaluate(engine.endpoint(src), engine.endpoint(dst), check.port, check.protocol)
                assert kernel == sim.allowed == expected[(src, dst)], (src, dst, check, sim.reason)


# ---------------------------------------------------------------- rules one by one

POD = """
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}
spec:
  nodeName: {node}
  {host}containers:
  - name: c
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    ports: [{{name: web, containerPort: {port}}}, {{name: dns, containerPort: 53, protocol: UDP}}]
---
"""


def pods(*specs) -> str:
    return "".join(POD.format(name=n, ns="default", app=a, node=node, port=port,
                              host="hostNetwork: true\n  " if host else "")
                   for n, a, node, port, host in specs)


def policy(name: str, spec: str, ns: str = "default") -> str:
    return cases.netpol(ns, name, spec) + "---\n"


BASE = pods(("web-1", "web", "node1", 8080, False), ("web-2", "web", "node2", 9090, False),
            ("client", "client", "node1", 1, False), ("host", "client", "node2", 1, True))


def test_named_ports_resolve_on_each_destination_pod_rule_30():
    cluster = cluster_of(BASE + policy("to-web", """
        podSelector: {matchLabels: {app: client}}
        policyTypes: [Egress]
        egress: [{ports: [{port: web}]}]
    """))
    table = render(cluster, "node1")
    engine = PolicyEngine(cluster)
    ip = {ref: str(engine.endpoint(ref).ip) for ref in ("default/web-1", "default/web-2", "default/client")}
    # every pod that names a TCP port "web", each with its own number; hostNetwork pods never
    assert set(table.sets["port/tcp/web"].elements) == {f"{ip['default/web-1']} . 8080", f"{ip['default/web-2']} . 9090",
                                                        f"{ip['default/client']} . 1"}
    assert table.chains["egress/default/to-web"] == ("meta l4proto tcp ip daddr . th dport @port/tcp/web accept",)
    tables = tables_of(engine)
    assert allowed(tables, engine, "default/client", "default/web-2", 9090, "TCP")
    assert not allowed(tables, engine, "default/client", "default/web-2", 8080, "TCP")


def test_ipblock_except_becomes_disjoint_interval_elements_and_matches_pods_rules_23_24():
    cluster = cluster_of(BASE + policy("cidr", """
        podSelector: {matchLabels: {app: client}}
        policyTypes: [Egress]
        egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.244.2.0/24, 10.244.1.128/25]}},
                       {ipBlock: {cidr: 10.244.2.0/25}}]}]
    """))
    elements = render(cluster, "node1").sets["egress/default/cidr/0"].elements
    networks = [ipaddress.ip_network(e) for e in elements]
    assert all(not a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1:])  # an interval set's rule
    covered = lambda ip: any(ipaddress.ip_address(ip) in n for n in networks)  # noqa: E731
    assert covered("10.0.0.1") and covered("10.244.1.5") and covered("10.244.2.5")
    assert not covered("10.244.1.200") and not covered("10.244.2.200") and not covered("192.168.1.12")


def test_endport_is_an_inclusive_range_of_its_protocol_rule_29():
    cluster = cluster_of(BASE + policy("range", """
        podSelector: {matchLabels: {app: web}}
        policyTypes: [Ingress]
        ingress: [{ports: [{protocol: UDP, port: 8000, endPort: 9000}, {protocol: SCTP}]}]
    """))
    assert render(cluster, "node2").chains["ingress/default/range"] == (
        "meta l4proto udp th dport 8000-9000 accept", "meta l4proto sctp accept")


def test_hostnetwork_pods_are_never_subjects_nor_selector_peers_rule_36():
    cluster = cluster_of(BASE + policy("deny", """
        podSelector: {}
        policyTypes: [Ingress, Egress]
        ingress: [{from: [{podSelector: {}}]}]
    """))
    engine = PolicyEngine(cluster)
    host_ip = str(engine.endpoint("default/host").ip)
    for node in ("node1", "node2"):
        table = render(cluster, node)
        assert all(host_ip not in s.elements for s in table.sets.values())


def test_the_own_node_is_always_allowed_in_and_a_pod_reaches_itself_rules_33_34():
    cluster = cluster_of(BASE + policy("deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]\n"))
    engine = PolicyEngine(cluster)
    table = render(cluster, "node1")
    web = engine.endpoint("default/web-1").ip
    node = next(n for n in cluster.nodes if n.name == "node1")
    assert walk(table, "ingress", Packet(node.gateway, web, "tcp", 8080, local_source=True), []) == "accept"
    assert walk(table, "ingress", Packet(web, web, "tcp", 8080), []) == "accept"  # hairpin through a Service
    assert walk(table, "egress", Packet(web, web, "tcp", 8080), []) == "accept"


def test_drops_are_counted_in_every_policy_that_isolates_the_pod():
    cluster = cluster_of(BASE + policy("a", "podSelector: {}\npolicyTypes: [Ingress]\n")
                         + policy("b", "podSelector: {matchLabels: {app: web}}\npolicyTypes: [Ingress]\n"))
    engine = PolicyEngine(cluster)
    counted: list[str] = []
    assert not allowed(tables_of(engine), engine, "default/client", "default/web-1", 8080, "TCP", counted)
    assert counted == ["drops/ingress/default/a", "drops/ingress/default/b"]
    assert render(cluster, "node1").counters == ["drops/ingress/default/a", "drops/ingress/default/b"]


def test_parse_counters_reads_nft_list_counters():
    listing = """table inet podnet-netpol {
\tcounter drops/ingress/default/a {
\t\tpackets 3 bytes 180
\t}
\tcounter drops/egress/x/b {
\t\tpackets 0 bytes 0
\t}
}"""
    assert parse_counters(listing) == {"drops/ingress/default/a": 3, "drops/egress/x/b": 0}


def test_each_drop_counter_names_its_policy_and_no_namespace_can_pose_as_an_admin_policy():
    assert counter_owner("drops/ingress/default/a") == ("NetworkPolicy", "default/a", "ingress")
    assert counter_owner("drops/egress/admin/a") == ("NetworkPolicy", "admin/a", "egress")  # a namespace "admin"
    assert counter_owner("admin-drops/egress/a") == ("AdminNetworkPolicy", "a", "egress")
    assert counter_owner("baseline-drops/ingress") == ("BaselineAdminNetworkPolicy", "default", "ingress")
    assert counter_owner("drops/spoofed") is None


# ---------------------------------------------------------------- syncs


def test_a_label_change_is_a_set_element_update_and_a_policy_change_replaces_the_table():
    deny = policy("deny-web", "podSelector: {matchLabels: {app: web}}\npolicyTypes: [Ingress]\n")
    before = render(cluster_of(BASE + deny), "node1")
    relabelled = render(cluster_of(BASE.replace("name: client, namespace: default, labels: {app: client}",
                                                "name: client, namespace: default, labels: {app: web}") + deny), "node1")
    text = transaction(before, relabelled)
    assert text.startswith("flush set inet podnet-netpol ") and "table inet" not in text
    assert all(line.split()[0] in ("flush", "add") and line.split()[1] in ("set", "element")
               for line in text.splitlines())
    assert transaction(relabelled, relabelled) == ""
    more = render(cluster_of(BASE + deny + policy("other", "podSelector: {}\npolicyTypes: [Egress]\n")), "node1")
    replaced = transaction(before, more)
    assert replaced.startswith("add table inet podnet-netpol\ndelete table inet podnet-netpol\ntable inet podnet-netpol {")


def test_the_table_grows_with_policies_not_with_pods():
    def size(n_pods: int) -> tuple[int, int]:
        text = pods(*[(f"p{i}", "web" if i % 2 else "client", f"node{1 + i % 2}", 80, False) for i in range(n_pods)])
        table = render(cluster_of(text + policy("p", """
            podSelector: {matchLabels: {app: web}}
            ingress: [{from: [{podSelector: {matchLabels: {app: client}}}], ports: [{port: web}]}]
        """)), "node1")
        return sum(len(r) for r in table.chains.values()), sum(len(s.elements) for s in table.sets.values())

    rules_10, elements_10 = size(10)
    rules_60, elements_60 = size(60)
    assert rules_10 == rules_60 and elements_60 > elements_10


def test_node_policy_loads_one_transaction_and_keeps_the_last_known_table_only_on_success():
    cluster = cluster_of(BASE + policy("deny", "podSelector: {}\npolicyTypes: [Ingress]\n"))
    nft = RecordingRunner()
    node = NodePolicy("node1", "podnet-t.node-node1", run=nft)
    node.sync(cluster)
    node.sync(cluster)  # nothing changed: nothing loaded
    assert len(nft.calls) == 1 and nft.calls[0][0][:4] == ["ip", "netns", "exec", "podnet-t.node-node1"]
    nft.fail = {"nft"}
    changed = cluster_of(BASE + policy("deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]\n"))
    with pytest.raises(LoadError):
        node.sync(changed)
    assert node.loaded is None and node.status.failures == 1 and "refused" in node.status.last_error
    nft.fail = set()
    node.sync(changed)
    assert nft.inputs("nft")[-1].startswith("add table inet podnet-netpol\ndelete table")
    assert node.status.last_error is None and node.status.last_full


@given(st.integers(8, 24), st.lists(st.tuples(st.integers(0, 2 ** 16 - 1), st.integers(9, 30)), max_size=4),
       st.lists(st.integers(0, 2 ** 24 - 1), min_size=1, max_size=20))
@settings(max_examples=200, deadline=None)
def test_an_ipblocks_networks_hold_exactly_the_addresses_it_contains(prefix, holes, probes):
    cidr = ipaddress.ip_network(f"10.0.0.0/{prefix}")
    excepts = []
    for offset, length in holes:
        length = max(length, prefix + 1)  # a strict subset (validation's rule 23)
        excepts.append(ipaddress.ip_network((int(cidr.network_address) + (offset << 8) % cidr.num_addresses, length),
                                            strict=False))
    block = IPBlock(cidr, tuple(e for e in excepts if e.subnet_of(cidr)))
    networks = block.networks()
    assert all(not a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1:])
    for value in probes:
        ip = ipaddress.ip_address(int(ipaddress.ip_address("10.0.0.0")) + value)
        assert any(ip in n for n in networks) == block.contains(ip)


LONG = "p" + "-long" * 50  # 251 characters: a valid policy name, too long for nftables' 256 with prefixes


def test_names_stay_nft_identifiers_within_the_limit_even_for_the_longest_policy_names():
    cluster = cluster_of(BASE + policy(LONG, """
        podSelector: {}
        policyTypes: [Ingress, Egress]
        ingress: [{from: [{podSelector: {}}]}]
    """))
    table = render(cluster, "node1")
    names = [*table.sets, *table.chains, *table.counters]
    assert all(re.fullmatch(r"[a-zA-Z][a-zA-Z0-9/\\_.-]*", n) and len(n) <= 200 for n in names), names
    assert len(set(names)) == len(names)
    assert any(n.startswith("ingress/default/p-long") and n != f"ingress/default/{LONG}" for n in table.chains)


# ---------------------------------------------------------------- forged sources, IPv6


def bridge_verdict(table: Ruleset, iifname: str, saddr: str, ether: str = "ip") -> str:
    """The bridge table's rules (podnet.policy's BRIDGE_CHAIN), for a frame of ether type `ether`
    entering cni0 on port `iifname`: "drop" or "accept" (the chain's policy)."""
    assert BRIDGE_CHAIN[2:] == (
        'iifname @pod-veths ether type != { ip, arp } counter name "drops/not-ipv4" drop',
        'ether type ip iifname @pod-veths iifname . ip saddr != @pod-sources counter name "drops/spoofed" drop')
    veths = {e.strip('"') for e in table.bridge_sets["pod-veths"].elements}
    sources = {tuple(x.strip('"') for x in e.split(" . ")) for e in table.bridge_sets["pod-sources"].elements}
    if iifname in veths and ether not in ("ip", "arp"):
        return "drop"
    if ether == "ip" and iifname in veths and (iifname, saddr) not in sources:
        return "drop"
    return "accept"


def test_a_pods_veth_may_send_only_from_the_pods_address():
    cluster = cluster_of(BASE + policy("deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]\n"))
    engine = PolicyEngine(cluster)
    table = render(cluster, "node1")
    web, client = engine.endpoint("default/web-1"), engine.endpoint("default/client")
    veth = {ep.name: host_veth_name(ep.namespace, ep.name) for ep in (web, client)}
    # every pod of the node with a veth (hostNetwork `host` is on node2 and has none); the name
    # is podnet-cni's (podnet.naming)
    assert table.bridge_sets["pod-sources"].elements == tuple(sorted(
        f'"{veth[ep.name]}" . {ep.ip}' for ep in (web, client)))
    assert set(table.bridge_sets["pod-veths"].elements) == {f'"{v}"' for v in veth.values()}
    host_ip = str(engine.endpoint("default/host").ip)  # hostNetwork on node2: no veth, no element
    assert [e.split(" . ")[1] for e in render(cluster, "node2").bridge_sets["pod-sources"].elements] == [
        str(engine.endpoint("default/web-2").ip)] != [host_ip]
    node1 = next(n for n in cluster.nodes if n.name == "node1")
    web2 = engine.endpoint("default/web-2")  # on node2
    assert bridge_verdict(table, veth["client"], str(client.ip)) == "accept"  # its own address
    for forged in (node1.gateway, node1.ip, web.ip, web2.ip, "10.244.1.200", "0.0.0.0"):
        assert bridge_verdict(table, veth["client"], str(forged)) == "drop", forged
    assert bridge_verdict(table, veth["client"], "10.244.1.200", ether="arp") == "accept"  # ARP: out of scope
    for ether in ("ip6", "8021q", "8021ad"):  # IPv6 link-local would go around the IPv4 chains; VLAN 0 too
        assert bridge_verdict(table, veth["client"], str(client.ip), ether=ether) == "drop", ether
    assert bridge_verdict(table, "flannel.1", "fd00::1", ether="ip6") == "accept"
    assert bridge_verdict(table, "flannel.1", str(web2.ip)) == "accept"  # not a pod's port
    # without the bridge table, the forged cni0 address passed the isolated pods' chains:
    # unisolated as a source, the own node as a destination's peer (rule 34)
    forged = Packet(node1.gateway, web.ip, "udp", 9999, local_source=False)
    assert walk(table, "egress", forged, []) == "accept"
    text = transaction(None, table)
    assert "table bridge podnet-netpol {" in text and "hook prerouting priority filter" in text
    assert text.startswith("add table inet podnet-netpol\ndelete table inet podnet-netpol\ntable inet podnet-netpol {")
    assert "add table bridge podnet-netpol\ndelete table bridge podnet-netpol\ntable bridge podnet-netpol {" in text


def test_pods_coming_and_going_update_the_bridge_sets_elements_only():
    before = render(cluster_of(BASE), "node1")
    more = render(cluster_of(BASE + pods(("web-3", "web", "node1", 8080, False))), "node1")
    text = transaction(before, more)
    veth = host_veth_name("default", "web-3")
    assert "flush set bridge podnet-netpol pod-sources" in text and f'"{veth}" . ' in text
    assert "flush set bridge podnet-netpol pod-veths" in text
    assert all(line.startswith(("flush set ", "add element ")) for line in text.splitlines())  # no table replaced
    assert transaction(more, before).count(veth) == 0  # gone: refilled without it


def test_ipv6_passes_the_chains_untouched_even_with_policies():
    cluster = cluster_of(BASE + policy("deny", "podSelector: {}\npolicyTypes: [Ingress, Egress]\n"))
    engine = PolicyEngine(cluster)
    table = render(cluster, "node1")
    for chain in ("egress", "ingress"):
        assert table.chains[chain][-1] == "meta nfproto ipv4 drop"
        assert walk(table, chain, Packet("fd00::1", "fd00::2", "tcp", 80), []) is None  # falls through: accept
        assert walk(table, chain, Packet("fe80::1", "fe80::2", "udp", 53), []) is None
    assert walk(render(cluster_of(BASE), "node1"), "egress", Packet("fd00::1", "fd00::2", "tcp", 80), []) is None
    web = engine.endpoint("default/web-1").ip
    assert walk(table, "ingress", Packet("192.168.1.99", web, "tcp", 8080), []) == "drop"  # IPv4 as before
