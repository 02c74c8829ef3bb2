"""AdminNetworkPolicy and BaselineAdminNetworkPolicy admitted as the API server with the upstream
CRDs admits them: podnet's own schema (structure, limits, exactly-one-of) and validation.py (the
CRDs' CEL rules, CIDRs, selectors, protocols, what podnet refuses).

Each broken case changes one thing in a valid policy and expects exactly one error line:
FILE:LINE: Kind name: field.path: message.
"""

from __future__ import annotations

import re

import pytest
import yaml

from podnet.api.kinds import resolve_kind
from podnet.errors import InvalidInput
from tests.conftest import cluster_of, load_yaml
from tests.test_validation import DELETE, changed

ANP = {
    "apiVersion": "policy.networking.k8s.io/v1alpha1",
    "kind": "AdminNetworkPolicy",
    "metadata": {"name": "tenants"},
    "spec": {
        "priority": 10,
        "subject": {"namespaces": {"matchLabels": {"tenant": "blue"}}},
        "ingress": [
            {"name": "same-tenant", "action": "Pass", "from": [{"namespaces": {"matchLabels": {"tenant": "blue"}}}]},
            {
                "name": "monitoring",
                "action": "Allow",
                "from": [{"pods": {"namespaceSelector": {"matchLabels": {"team": "ops"}},
                                   "podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                         "values": ["prober"]}]}}}],
                "ports": [{"portNumber": {"protocol": "TCP", "port": 8080}}, {"namedPort": "metrics"}],
            },
        ],
        "egress": [
            {"name": "no-metadata-service", "action": "Deny", "to": [{"networks": ["169.254.169.254/32"]}]},
            {"action": "Allow", "to": [{"nodes": {"matchLabels": {"node-role.kubernetes.io/control-plane": ""}}}],
             "ports": [{"portRange": {"protocol": "UDP", "start": 30000, "end": 32767}}]},
        ],
    },
}

BANP = {
    "apiVersion": "policy.networking.k8s.io/v1alpha1",
    "kind": "BaselineAdminNetworkPolicy",
    "metadata": {"name": "default"},
    "spec": {
        "subject": {"namespaces": {}},
        "ingress": [{"name": "deny-all", "action": "Deny", "from": [{"namespaces": {}}]}],
        "egress": [{"action": "Allow", "to": [{"networks": ["10.0.0.0/8", "fd00::/8"]}],
                    "ports": [{"portNumber": {"protocol": "TCP", "port": 443}}]}],
    },
}

BODIES = {"AdminNetworkPolicy": ANP, "BaselineAdminNetworkPolicy": BANP}
IN0 = ("spec", "ingress", 0)
IN1 = ("spec", "ingress", 1)
EG0 = ("spec", "egress", 0)
EG1 = ("spec", "egress", 1)


def errors_of(body: dict) -> list[str]:
    try:
        load_yaml(yaml.safe_dump(body, sort_keys=False))
    except InvalidInput as exc:
        return list(exc.lines)
    return []


def assert_one_located_error(body: dict, ref: str, path: str, phrase: str) -> None:
    """`body` refused with exactly one error, at a line of test.yaml, naming the object (its
    `ref` as podnet prints it), the field `path` and a message with `phrase` in it."""
    errors = errors_of(body)
    assert len(errors) == 1, errors
    match = re.match(rf"test\.yaml:(\d+): {body['kind']} {re.escape(ref)}: {re.escape(path)}: (.*)$", errors[0])
    assert match, errors[0]
    assert int(match.group(1)) > 0 and phrase in match.group(2), errors[0]


def test_the_valid_policies_are_admitted():
    store = load_yaml(yaml.safe_dump_all([ANP, BANP], sort_keys=False))
    anp = store.get("AdminNetworkPolicy", "", "tenants")
    banp = store.get("BaselineAdminNetworkPolicy", "", "default")
    assert anp is not None and anp.spec["priority"] == 10
    assert banp is not None and banp.namespace == ""  # cluster-scoped


def valid(kind, changes, id):
    return pytest.param(kind, changes, id=id)


@pytest.mark.parametrize("kind, changes", [
    valid("AdminNetworkPolicy", [(("spec", "priority"), 0)], id="priority-0"),
    valid("AdminNetworkPolicy", [(("spec", "priority"), 1000)], id="priority-1000"),
    valid("AdminNetworkPolicy", [(("spec", "ingress"), DELETE), (("spec", "egress"), DELETE)], id="no-rules"),
    valid("AdminNetworkPolicy", [(EG1 + ("ports", 0, "portRange", "protocol"), DELETE)], id="range-protocol-defaults-to-tcp"),
    valid("AdminNetworkPolicy", [(IN1 + ("ports", 0, "portNumber", "protocol"), DELETE)], id="port-protocol-defaults-to-tcp"),
    valid("AdminNetworkPolicy", [(IN1 + ("ports", 0, "portNumber", "protocol"), "SCTP")], id="sctp"),
    valid("AdminNetworkPolicy", [(EG0 + ("to", 0, "networks"), ["2001:db8::/32", "10.1.2.3/8"])], id="ipv6-and-host-bits"),
    valid("AdminNetworkPolicy", [(EG0 + ("to", 0), {"pods": {"namespaceSelector": {}, "podSelector": {}}}),
                                 (EG0 + ("ports",), [{"namedPort": "http"}])], id="named-port-to-pods"),
    valid("AdminNetworkPolicy", [(("spec", "subject"), {"pods": {"namespaceSelector": {}, "podSelector": {}}})], id="subject-pods"),
    valid("AdminNetworkPolicy", [(("status",), {"conditions": []})], id="status"),
    valid("BaselineAdminNetworkPolicy", [(IN0 + ("action",), "Allow")], id="baseline-allow"),
])
def test_valid_variants_are_admitted(kind, changes):
    assert errors_of(changed(BODIES[kind], changes)) == []


def case(kind, changes, path, phrase, id):
    return pytest.param(kind, changes, path, phrase, id=id)


CIDR_33 = "10.0.0.0/33"
CASES = [
    # the schema: structure and limits of the CRD
    case("AdminNetworkPolicy", [(("spec", "priority"), 1001)], "spec.priority", "Invalid value: 1001: must be less than or equal to 1000", id="priority-at-most-1000"),
    case("AdminNetworkPolicy", [(("spec", "priority"), -1)], "spec.priority", "Invalid value: -1: must be greater than or equal to 0", id="priority-at-least-0"),
    case("AdminNetworkPolicy", [(("spec", "priority"), DELETE)], "spec.priority", "Required value", id="priority-required"),
    case("AdminNetworkPolicy", [(("spec", "priority"), "high")], "spec.priority", 'is not of type "integer"', id="priority-integer"),
    case("AdminNetworkPolicy", [(("spec", "subject"), DELETE)], "spec.subject", "Required value", id="subject-required"),
    case("AdminNetworkPolicy", [(("spec", "subject"), {})], "spec.subject", "Required value: exactly one field must be set", id="subject-needs-a-field"),
    case("AdminNetworkPolicy", [(("spec", "subject", "pods"), {"namespaceSelector": {}, "podSelector": {}})], "spec.subject",
         "Forbidden: exactly one field must be set, not 2 (namespaces, pods)", id="subject-one-field"),
    case("AdminNetworkPolicy", [(("spec", "subject"), {"pods": {"podSelector": {}}})], "spec.subject.pods.namespaceSelector", "Required value", id="pods-needs-namespace-selector"),
    case("AdminNetworkPolicy", [(IN0 + ("action",), "Drop")], "spec.ingress[0].action",
         'Unsupported value: "Drop": supported values: "Allow", "Deny", "Pass"', id="action-values"),
    case("AdminNetworkPolicy", [(IN0 + ("action",), DELETE)], "spec.ingress[0].action", "Required value", id="action-required"),
    case("BaselineAdminNetworkPolicy", [(IN0 + ("action",), "Pass")], "spec.ingress[0].action",
         'Unsupported value: "Pass": supported values: "Allow", "Deny"', id="baseline-has-no-pass"),
    case("BaselineAdminNetworkPolicy", [(("spec", "priority"), 5)], "spec.priority", "unknown field", id="baseline-has-no-priority"),
    case("AdminNetworkPolicy", [(IN0 + ("name",), "r" * 101)], "spec.ingress[0].name", "Too long: may not be more than 100 characters", id="rule-name-at-most-100"),
    case("AdminNetworkPolicy", [(IN0 + ("from",), [])], "spec.ingress[0].from", "Required value: must have at least 1 item", id="from-at-least-1"),
    case("AdminNetworkPolicy", [(IN0 + ("from",), DELETE)], "spec.ingress[0].from", "Required value", id="from-required"),
    case("AdminNetworkPolicy", [(IN0 + ("from",), [{"namespaces": {}}] * 101)], "spec.ingress[0].from", "Too many: 101: must have at most 100 items", id="from-at-most-100"),
    case("AdminNetworkPolicy", [(EG0 + ("to",), [])], "spec.egress[0].to", "must have at least 1 item", id="to-at-least-1"),
    case("AdminNetworkPolicy", [(("spec", "ingress"), [ANP["spec"]["ingress"][0]] * 101)], "spec.ingress", "Too many: 101: must have at most 100 items", id="rules-at-most-100"),
    case("AdminNetworkPolicy", [(IN1 + ("ports",), [])], "spec.ingress[1].ports", "must have at least 1 item", id="ports-at-least-1"),
    case("AdminNetworkPolicy", [(IN0 + ("from", 0), {})], "spec.ingress[0].from[0]", "Required value: exactly one field must be set", id="peer-needs-a-field"),
    case("AdminNetworkPolicy", [(EG0 + ("to", 0, "namespaces"), {})], "spec.egress[0].to[0]",
         "Forbidden: exactly one field must be set, not 2 (namespaces, networks)", id="peer-one-field"),
    case("AdminNetworkPolicy", [(IN0 + ("from", 0), {"networks": ["10.0.0.0/8"]})], "spec.ingress[0].from[0].networks", "unknown field", id="ingress-peer-has-no-networks"),
    case("AdminNetworkPolicy", [(EG0 + ("to", 0, "networks"), [])], "spec.egress[0].to[0].networks", "must have at least 1 item", id="networks-at-least-1"),
    case("AdminNetworkPolicy", [(EG0 + ("to", 0, "networks"), [f"10.0.{i}.0/24" for i in range(26)])], "spec.egress[0].to[0].networks",
         "Too many: 26: must have at most 25 items", id="networks-at-most-25"),
    case("AdminNetworkPolicy", [(IN1 + ("ports", 0, "namedPort"), "http")], "spec.ingress[1].ports[0]",
         "Forbidden: exactly one field must be set, not 2 (namedPort, portNumber)", id="port-one-form"),
    case("AdminNetworkPolicy", [(IN1 + ("ports", 0, "portNumber", "port"), 70000)], "spec.ingress[1].ports[0].portNumber.port",
         "must be less than or equal to 65535", id="port-at-most-65535"),
    case("AdminNetworkPolicy", [(IN1 + ("ports", 0, "portNumber", "port"), 0)], "spec.ingress[1].ports[0].portNumber.port",
         "must be greater than or equal to 1", id="port-at-least-1"),
    case("AdminNetworkPolicy", [(EG1 + ("ports", 0, "portRange", "start"), DELETE)], "spec.egress[1].ports[0].portRange.start", "Required value", id="range-start-required"),
    case("AdminNetworkPolicy", [(EG1 + ("ports", 0, "portRange", "end"), 65536)], "spec.egress[1].ports[0].portRange.end",
         "must be less than or equal to 65535", id="range-end-at-most-65535"),
    case("AdminNetworkPolicy", [(IN0 + ("description",), "x")], "spec.ingress[0].description", "unknown field", id="unknown-field"),
    case("BaselineAdminNetworkPolicy", [(EG0 + ("to", 0), {"domainNames": ["example.com"]})], "spec.egress[0].to[0].domainNames", "unknown field", id="baseline-has-no-domain-names"),
    # validation.py: the CRDs' CEL rules and what a schema cannot say
    case("BaselineAdminNetworkPolicy", [(("metadata", "name"), "tenants")], "metadata.name",
         'Invalid value: "tenants": Only one baseline admin network policy with metadata.name="default" can be created in the cluster', id="baseline-named-default"),
    case("AdminNetworkPolicy", [(EG0 + ("to", 0, "networks", 0), CIDR_33)], "spec.egress[0].to[0].networks[0]",
         f'Invalid value: "{CIDR_33}": must be a valid CIDR value', id="networks-are-cidrs"),
    case("BaselineAdminNetworkPolicy", [(EG0 + ("to", 0, "networks", 1), "fd00::1")], "spec.egress[0].to[0].networks[1]",
         "must be a valid CIDR value", id="baseline-networks-are-cidrs"),
    case("AdminNetworkPolicy", [(EG1 + ("ports", 0, "portRange", "end"), 29000)], "spec.egress[1].ports[0].portRange.end",
         "Invalid value: 29000: must be greater than `start`", id="range-end-after-start"),
    case("AdminNetworkPolicy", [(EG1 + ("ports", 0, "portRange", "end"), 30000)], "spec.egress[1].ports[0].portRange.end",
         "must be greater than `start`", id="range-not-empty"),
    case("AdminNetworkPolicy", [(IN1 + ("ports", 0, "portNumber", "protocol"), "ICMP")], "spec.ingress[1].ports[0].portNumber.protocol",
         'Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"', id="port-protocol"),
    case("AdminNetworkPolicy", [(EG1 + ("ports", 0, "portRange", "protocol"), "tcp")], "spec.egress[1].ports[0].portRange.protocol",
         'Unsupported value: "tcp"', id="range-protocol-case-sensitive"),
    case("AdminNetworkPolicy", [(EG0 + ("ports",), [{"namedPort": "http"}])], "spec.egress[0].ports[0].namedPort",
         "Forbidden: networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for networks/nodes/domainNames",
         id="no-named-ports-to-networks"),
    case("AdminNetworkPolicy", [(EG1 + ("ports",), [{"portNumber": {"port": 53}}, {"namedPort": "dns"}])], "spec.egress[1].ports[1].namedPort",
         "peer cannot be set with namedPorts", id="no-named-ports-to-nodes"),
    case("BaselineAdminNetworkPolicy", [(EG0 + ("ports",), [{"namedPort": "https"}])], "spec.egress[0].ports[0].namedPort",
         "Forbidden: networks/nodes peer cannot be set with namedPorts since there are no namedPorts for networks/nodes",
         id="baseline-no-named-ports-to-networks"),
    case("AdminNetworkPolicy", [(EG0 + ("to", 0), {"domainNames": ["*.example.com"]})], "spec.egress[0].to[0].domainNames",
         "Forbidden: podnet does not support domainNames peers", id="domain-names-refused"),
    case("AdminNetworkPolicy", [(("spec", "subject", "namespaces", "matchLabels"), {"tenant": "blue team"})], "spec.subject.namespaces.matchLabels",
         "a valid label must be", id="subject-selector-syntax"),
    case("AdminNetworkPolicy", [(IN1 + ("from", 0, "pods", "podSelector", "matchExpressions", 0, "operator"), "Equals")],
         "spec.ingress[1].from[0].pods.podSelector.matchExpressions[0].operator", "not a valid selector operator", id="peer-pod-selector-syntax"),
    case("AdminNetworkPolicy", [(IN1 + ("from", 0, "pods", "namespaceSelector", "matchLabels"), {"bad key!": "x"})],
         "spec.ingress[1].from[0].pods.namespaceSelector.matchLabels", "Invalid value", id="peer-namespace-selector-syntax"),
    case("AdminNetworkPolicy", [(EG1 + ("to", 0, "nodes", "matchExpressions"), [{"key": "zone", "operator": "Exists", "values": ["a"]}])],
         "spec.egress[1].to[0].nodes.matchExpressions[0].values", "may not be specified when `operator` is 'Exists'", id="nodes-selector-syntax"),
]


@pytest.mark.parametrize("kind, changes, path, phrase", CASES)
def test_bad_field_gives_one_located_error(kind, changes, path, phrase):
    body = changed(BODIES[kind], changes)
    assert_one_located_error(body, body["metadata"]["name"], path, phrase)


def test_error_names_the_line_of_the_field():
    text = """\
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: cidrs}
spec:
  priority: 3
  subject: {namespaces: {}}
  egress:
  - action: Deny
    to:
    - networks:
      - 10.0.0.0/8
      - 10.300.0.0/16
"""
    with pytest.raises(InvalidInput) as raised:
        load_yaml(text)
    assert raised.value.lines == [
        'test.yaml:12: AdminNetworkPolicy cidrs: spec.egress[0].to[0].networks[1]: Invalid value: "10.300.0.0/16": '
        "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]


def test_wrong_api_version_is_refused():
    body = changed(ANP, [(("apiVersion",), "policy.networking.k8s.io/v1")])
    (error,) = errors_of(body)
    assert 'no matches for kind "AdminNetworkPolicy" in version "policy.networking.k8s.io/v1"' in error


@pytest.mark.parametrize("word, kind", [
    ("anp", "AdminNetworkPolicy"), ("adminnetworkpolicies", "AdminNetworkPolicy"),
    ("adminnetworkpolicy.policy.networking.k8s.io", "AdminNetworkPolicy"),
    ("banp", "BaselineAdminNetworkPolicy"), ("BaselineAdminNetworkPolicies", "BaselineAdminNetworkPolicy"),
])
def test_kubectl_names_resolve(word, kind):
    info = resolve_kind(word)
    assert info is not None and info.kind == kind and not info.namespaced


@pytest.mark.parametrize("body", [ANP, BANP], ids=["anp", "banp"])
def test_refused_with_the_userspace_proxy(body):
    config = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnetworking: {proxyMode: userspace}\n"
    with pytest.raises(InvalidInput, match=rf"{body['kind']} is not enforced through the userspace proxy"):
        cluster_of(yaml.safe_dump(body, sort_keys=False), config)


def test_kept_in_the_computed_cluster():
    cluster = cluster_of(yaml.safe_dump_all([ANP, BANP], sort_keys=False))
    assert [o.name for o in cluster.of_kind("AdminNetworkPolicy")] == ["tenants"]
    assert [o.name for o in cluster.of_kind("BaselineAdminNetworkPolicy")] == ["default"]


def test_a_shared_priority_is_accepted_with_a_warning():
    other = changed(ANP, [(("metadata", "name"), "zz-also-10")])
    third = changed(ANP, [(("metadata", "name"), "own"), (("spec", "priority"), 11)])
    cluster = cluster_of(yaml.safe_dump_all([ANP, other, third], sort_keys=False))
    assert len(cluster.of_kind("AdminNetworkPolicy")) == 3
    assert cluster.warnings == [
        "warning: AdminNetworkPolicy zz-also-10: spec.priority 10 is shared with AdminNetworkPolicy tenants: which of the "
        "two applies to a connection both match is not defined (give each its own priority)"]
