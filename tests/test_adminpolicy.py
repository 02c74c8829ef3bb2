"""AdminNetworkPolicy and BaselineAdminNetworkPolicy: the simulator's verdicts, the matrix and
the rendered nftables tables, each against the scenarios' truth tables (tests/anp_cases.py) and
against each other on random clusters."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podnet.policy import render, transaction
from podnet.semantics.adminpolicy import ALLOW, DENY, PASS, compile_ports
from podnet.semantics.networkpolicy import PolicyEngine
from podnet.semantics.policymatch import PortMatch
from podnet.semantics.reachability import reachability
from tests import anp_cases
from tests import netpol_cases as cases
from tests.conftest import cluster_of
from tests.test_netpol_render import allowed as kernel_allows
from tests.test_netpol_render import tables_of
from tests.test_networkpolicy import assert_matrix_is_evaluate, model_engine, random_cluster, substitute

STEPS = [pytest.param(si, ti, id=f"{s.id}[{ti}]")
         for si, s in enumerate(anp_cases.SCENARIOS) for ti, _ in enumerate(s.steps)]


def anp_step_engine(si: int, ti: int) -> PolicyEngine:
    step = anp_cases.SCENARIOS[si].steps[ti]
    base = model_engine(json.dumps(step.pod_labels, sort_keys=True), json.dumps(step.namespace_labels, sort_keys=True))
    text = cases.model_yaml(step.pod_labels, step.namespace_labels)
    if step.policies:
        text += "---\n" + "---\n".join(substitute(p, base) for p in step.policies)
    return PolicyEngine(cluster_of(text))


def test_at_least_ten_scenarios_with_label_changes_and_deletions():
    assert len(anp_cases.SCENARIOS) >= 10
    steps = [step for s in anp_cases.SCENARIOS for step in s.steps]
    assert any(step.pod_labels for step in steps) and any(step.namespace_labels for step in steps)
    assert any(not step.policies for step in steps)  # a policy deleted
    texts = "".join(p for step in steps for p in step.policies)
    for word in ("action: Allow", "action: Deny", "action: Pass", "BaselineAdminNetworkPolicy", "namedPort",
                 "portRange", "networks", "egress", "ingress", "protocol: UDP", "protocol: SCTP"):
        assert word in texts, word


@pytest.mark.parametrize("si,ti", STEPS)
def test_simulator_matrix_and_rendered_tables_agree_with_the_truth_table(si, ti):
    engine = anp_step_engine(si, ti)
    assert engine.admin_policies or engine.baseline or not any(
        "Admin" in p for p in anp_cases.SCENARIOS[si].steps[ti].policies)
    tables = tables_of(engine)
    for check in anp_cases.SCENARIOS[si].steps[ti].checks:
        expected = cases.grid(check.expected)
        matrix = reachability(engine, check.port, check.protocol, namespaces=cases.NAMESPACES)
        problems = []
        for src, dst in expected:
            verdict = engine.evaluate(engine.endpoint(src), engine.endpoint(dst), check.port, check.protocol)
            kernel = kernel_allows(tables, engine, src, dst, check.port, check.protocol)
            if not verdict.allowed == matrix.allowed(src, dst) == kernel == expected[(src, dst)]:
                problems.append(f"{src} -> {dst} {check.protocol}/{check.port}: expected {expected[(src, dst)]}, "
                                f"trace {verdict.allowed}, matrix {matrix.allowed(src, dst)}, tables {kernel}: "
                                f"{verdict.reason}")
        assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- explanations

def engine_of(*policies: str) -> PolicyEngine:
    return PolicyEngine(cluster_of(cases.model_yaml() + "---\n" + "---\n".join(policies)))


def test_verdicts_name_the_deciding_tier_and_rule():
    later_deny = anp_cases.DENY_Y_TO_X.replace("priority: 10", "priority: 20")
    engine = engine_of(anp_cases.PASS_Y, anp_cases.BASELINE_Z_ONLY_TO_X, later_deny)
    # y -> x: pass-y (priority 10) passes before deny-y-to-x (20) is tried; the baseline denies
    verdict = engine.evaluate(engine.endpoint("y/a"), engine.endpoint("x/a"), 80)
    assert not verdict.allowed
    side = verdict.ingress
    assert side.passed_by is not None and side.passed_by.policy.name == "pass-y"
    assert side.decided_by is not None and side.decided_by.policy.baseline and side.decided_by.action == DENY
    assert str(side) == ('ingress to x/a: passed on by AdminNetworkPolicy pass-y (priority 10) ingress[0]; '
                         'no NetworkPolicy isolates it for Ingress; denied by BaselineAdminNetworkPolicy default '
                         'ingress[1] "deny-the-rest"')
    as_json = verdict.to_dict()["ingress"]
    assert as_json["action"] == DENY and as_json["passedBy"].startswith("AdminNetworkPolicy pass-y")
    # z -> x: no ANP rule matches; the baseline allows
    side = engine.evaluate(engine.endpoint("z/a"), engine.endpoint("x/b"), 80).ingress
    assert side.allowed and side.decided_by.action == ALLOW
    assert "no rule of AdminNetworkPolicy pass-y, AdminNetworkPolicy deny-y-to-x matches TCP/80 from z/a" in str(side)


def test_an_anp_deny_is_final_and_says_so():
    engine = engine_of(anp_cases.NP_FROM_Y_TO_X, anp_cases.DENY_Y_TO_X)
    side = engine.evaluate(engine.endpoint("y/c"), engine.endpoint("x/a"), 80).ingress
    assert not side.allowed and side.isolated  # isolated by the NetworkPolicy, which would allow it
    assert str(side) == ('ingress to x/a: denied by AdminNetworkPolicy deny-y-to-x (priority 10) '
                         'ingress[0] "deny-from-y"')


def test_the_own_node_and_self_stay_allowed_whatever_the_tiers_say():
    engine = engine_of(anp_cases.deny_all_to_x(1), anp_cases.banp("""
        subject: {namespaces: {}}
        egress:
        - {action: Deny, to: [{namespaces: {}}, {nodes: {}}, {networks: [0.0.0.0/0]}]}
    """))
    xa = engine.endpoint("x/a")
    node = engine.node(xa.node)
    assert engine.evaluate(node, xa, 80).allowed
    assert engine.evaluate(xa, node, 10250).allowed
    assert engine.evaluate(xa, xa, 80).allowed
    other = next(n for n in engine.nodes.values() if n.name != xa.node)
    assert not engine.evaluate(xa, other, 10250).allowed  # another node is a peer like any
    assert "its own node" in engine.evaluate(node, xa, 80).ingress.exception


def test_a_nodes_peer_matches_the_nodes_addresses_by_node_labels():
    engine = engine_of(anp_cases.anp("no-node2", 10, """
        subject: {namespaces: {}}
        egress:
        - {action: Deny, to: [{nodes: {matchLabels: {kubernetes.io/hostname: node2}}}]}
    """))
    pod_elsewhere = next(ep for ep in engine.pods.values() if ep.node != "node2")
    assert not engine.evaluate(pod_elsewhere, engine.node("node2"), 10250).allowed
    assert engine.evaluate(pod_elsewhere, engine.node("node3" if pod_elsewhere.node != "node3" else "node1"),
                           10250).allowed
    networks = engine.peer_networks(engine.admin_policies[0].egress[0].peers[0])
    node2 = engine.cluster.node("node2")
    assert {str(n.network_address) for n in networks} == {str(node2.ip), str(node2.gateway)}


def test_named_ports_match_in_the_protocol_the_destination_declares():
    assert compile_ports([{"namedPort": "http"}]) == tuple(PortMatch(p, name="http") for p in ("TCP", "UDP", "SCTP"))
    assert compile_ports([{"portNumber": {"port": 80}}]) == (PortMatch("TCP", 80),)
    assert compile_ports([{"portRange": {"protocol": "UDP", "start": 80, "end": 90}}]) == (PortMatch("UDP", 80, 90),)
    assert compile_ports(None) is None


def test_rendered_tiers_are_chains_tried_in_order_with_pass_as_return():
    engine = engine_of(anp_cases.PASS_Y_DENY_REST, anp_cases.allow_z_to_x(5), anp_cases.BASELINE_Z_ONLY_TO_X)
    node = engine.endpoint("x/a").node
    ruleset = render(engine.cluster, node, engine)
    admin = ruleset.chains["ingress/admin"]
    assert [line.split()[-1] for line in admin] == ["accept", "return", "drop"]
    assert admin[0].startswith("ip daddr @admin/allow-z/subjects ip saddr @admin/allow-z/ingress/0 ")
    assert 'counter name "admin-drops/ingress/pass-y-deny-rest" drop' in admin[2]
    base = ruleset.chains["ingress"]
    assert base[1] == "ip daddr != @ingress-governed accept"
    assert base.index("jump ingress/admin") < base.index("ip daddr @ingress-isolated drop") \
        < base.index("jump ingress/baseline")
    assert "egress/admin" not in ruleset.chains and "egress/baseline" not in ruleset.chains
    assert ruleset.chains["egress"][-1] == "meta nfproto ipv4 drop"  # no tiers for egress: as before


def test_the_table_keeps_its_shape_when_subjects_change_only_set_elements_do():
    anp_text = anp_cases.anp("locked", 10, """
        subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {state: locked}}}}
        ingress:
        - {action: Deny, from: [{namespaces: {}}]}
    """)
    before = PolicyEngine(cluster_of(cases.model_yaml() + "---\n" + anp_text))
    after = PolicyEngine(cluster_of(cases.model_yaml({"y/b": {"state": "locked"}}) + "---\n" + anp_text))
    node = after.endpoint("y/b").node
    old, new = render(before.cluster, node, before), render(after.cluster, node, after)
    text = transaction(old, new)
    assert text and not text.startswith("add table")
    assert "admin/locked/subjects" in text


# ---------------------------------------------------------------- random clusters

ACTIONS = (ALLOW, DENY, PASS)


@st.composite
def random_tiered_cluster(draw):
    """random_cluster's pods and NetworkPolicies plus random ANPs and maybe a baseline."""
    docs = list(yaml.safe_load_all(draw(random_cluster())))
    namespaces = [d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"]
    labels = st.sampled_from([{}, {"app": "a"}, {"app": "b"}, {"tier": "web"}, {"tier": "db"}])
    ns_selectors = st.sampled_from([{}, {"matchLabels": {"env": "prod"}}, {"matchLabels": {"env": "dev"}}]
                                   + [{"matchLabels": {"kubernetes.io/metadata.name": n}} for n in namespaces])

    def selection():
        if draw(st.booleans()):
            return {"namespaces": draw(ns_selectors)}
        return {"pods": {"namespaceSelector": draw(ns_selectors), "podSelector": {"matchLabels": draw(labels)}}}

    def peer(direction: str):
        kind = draw(st.integers(0, 5 if direction == "egress" else 1))
        if kind <= 1:
            return selection()
        if kind == 2:
            return {"nodes": draw(st.sampled_from([{}, {"matchLabels": {"kubernetes.io/hostname": "node2"}}]))}
        return {"networks": draw(st.lists(st.sampled_from(
            ["10.244.0.0/16", "10.244.1.0/24", "0.0.0.0/0", "192.168.1.0/24", "10.244.2.0/25"]),
            min_size=1, max_size=2, unique=True))}

    def ports(no_named: bool):
        choices = [{"portNumber": {"port": 80}}, {"portNumber": {"protocol": "UDP", "port": 80}},
                   {"portRange": {"start": 79, "end": 81}}, {"portRange": {"protocol": "SCTP", "start": 81, "end": 90}}]
        if not no_named:
            choices += [{"namedPort": "http"}, {"namedPort": "dns"}, {"namedPort": "s"}]
        return draw(st.lists(st.sampled_from(choices), min_size=1, max_size=2))

    def rules(direction: str, actions):
        out = []
        for _ in range(draw(st.integers(0, 3))):
            peers = [peer(direction) for _ in range(draw(st.integers(1, 2)))]
            rule = {"action": draw(st.sampled_from(actions)), "from" if direction == "ingress" else "to": peers}
            if draw(st.booleans()):
                rule["ports"] = ports(any("nodes" in p or "networks" in p for p in peers))
            out.append(rule)
        return out

    def spec(actions):
        body = {"subject": selection()}
        for direction in ("ingress", "egress"):
            found = rules(direction, actions)
            if found:
                body[direction] = found
        return body

    for i in range(draw(st.integers(0, 3))):
        docs.append({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
                     "metadata": {"name": f"anp{i}"}, "spec": {"priority": draw(st.integers(0, 3)), **spec(ACTIONS)}})
    if draw(st.booleans()):
        docs.append({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
                     "metadata": {"name": "default"}, "spec": spec((ALLOW, DENY))})
    return yaml.safe_dump_all(docs, sort_keys=False)


@settings(max_examples=int(os.environ.get("PODNET_HYPOTHESIS_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(random_tiered_cluster())
def test_matrix_tables_and_evaluate_agree_on_random_tiered_clusters(text):
    pods_only = "---\n".join(d for d in text.split("---\n") if "Policy" not in d)
    engine = PolicyEngine(cluster_of(substitute(text, PolicyEngine(cluster_of(pods_only)))))
    tables = tables_of(engine)
    for protocol in ("TCP", "UDP", "SCTP"):
        for port in (80, 81):
            matrix = assert_matrix_is_evaluate(engine, port, protocol)
            for src in matrix.pods:
                for dst in matrix.pods:
                    if "external" in (src, dst) or engine.endpoint(src).host_network \
                            or engine.endpoint(dst).host_network:
                        continue  # the tables' walk models pod-to-pod packets only
                    verdict = engine.evaluate(engine.endpoint(src), engine.endpoint(dst), port, protocol)
                    assert kernel_allows(tables, engine, src, dst, port, protocol) == verdict.allowed, \
                        f"{src} -> {dst} {protocol}/{port}: tables disagree with {verdict.reason}"
