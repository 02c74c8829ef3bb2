"""Istio's AuthorizationPolicy and PeerAuthentication admitted as Istio's validation webhook
admits them: podnet's own schema (api/schemas/security-istio-v1.json: structure, enums, limits)
and validation.py (which fields go together, ports, IP blocks, `when` keys).

Each broken case changes one thing in a valid policy and expects exactly one error line:
FILE:LINE: Kind name: field.path: message.
"""

from __future__ import annotations


import pytest
import yaml

from podnet.api.kinds import resolve_kind
from tests.conftest import load_yaml
from tests.test_validation import DELETE, changed
from tests.test_validation_anp import assert_one_located_error, errors_of

AP = {
    "apiVersion": "security.istio.io/v1",
    "kind": "AuthorizationPolicy",
    "metadata": {"name": "api-readers", "namespace": "shop"},
    "spec": {
        "selector": {"matchLabels": {"app": "api"}},
        "action": "ALLOW",
        "rules": [{
            "from": [{"source": {"principals": ["cluster.local/ns/frontend/sa/web"], "ipBlocks": ["10.244.0.0/16"]}}],
            "to": [{"operation": {"methods": ["GET"], "paths": ["/api/{*}/items", "/public/*"], "ports": ["8080"]}}],
            "when": [{"key": "request.headers[x-team]", "values": ["blue"]}, {"key": "source.namespace", "notValues": ["test"]}],
        }],
    },
}

PA = {
    "apiVersion": "security.istio.io/v1",
    "kind": "PeerAuthentication",
    "metadata": {"name": "api-strict", "namespace": "shop"},
    "spec": {"selector": {"matchLabels": {"app": "api"}}, "mtls": {"mode": "STRICT"},
             "portLevelMtls": {"9090": {"mode": "PERMISSIVE"}}},
}

BODIES = {"AuthorizationPolicy": AP, "PeerAuthentication": PA}
RULE = ("spec", "rules", 0)


def test_the_valid_policies_are_admitted_and_v1beta1_is_the_same():
    store = load_yaml(yaml.safe_dump_all([AP, PA], sort_keys=False))
    assert store.get("AuthorizationPolicy", "shop", "api-readers").spec["action"] == "ALLOW"
    assert store.get("PeerAuthentication", "shop", "api-strict").spec["mtls"]["mode"] == "STRICT"
    old = changed(AP, [(("apiVersion",), "security.istio.io/v1beta1")])
    assert load_yaml(yaml.safe_dump(old)).get("AuthorizationPolicy", "shop", "api-readers").body["apiVersion"] == \
        "security.istio.io/v1"


@pytest.mark.parametrize("kind, changes", [
    pytest.param("AuthorizationPolicy", [(("spec",), {})], id="allow-nothing"),
    pytest.param("AuthorizationPolicy", [(("spec", "rules"), [{}])], id="allow-all"),
    pytest.param("AuthorizationPolicy", [(("spec", "action"), "DENY"), (("spec", "rules"), [{}])], id="deny-all"),
    pytest.param("AuthorizationPolicy", [(("spec", "action"), "AUDIT"), (("spec", "rules"), DELETE)], id="audit-no-rules"),
    pytest.param("AuthorizationPolicy", [(("spec", "action"), "CUSTOM"), (("spec", "provider"), {"name": "opa"}),
                                         (RULE + ("from",), DELETE),
                                         (RULE + ("when",), [{"key": "request.headers[x]", "values": ["y"]}])], id="custom"),
    pytest.param("AuthorizationPolicy", [(("spec", "selector"), DELETE),
                                         (("spec", "targetRefs"), [{"kind": "Gateway", "group": "gateway.networking.k8s.io",
                                                                    "name": "gw"}])], id="target-refs"),
    pytest.param("AuthorizationPolicy", [(RULE + ("when", 0, "key"), "request.auth.claims[groups]")], id="claims-key"),
    pytest.param("PeerAuthentication", [(("spec",), {"mtls": {"mode": "STRICT"}})], id="namespace-wide"),
    pytest.param("PeerAuthentication", [(("spec", "portLevelMtls"), {8080: {"mode": "DISABLE"}})], id="integer-port-key"),
    pytest.param("AuthorizationPolicy", [(RULE + ("to", 0, "operation", "paths"), ["/files/{**}/"])], id="template-trailing-slash"),
])
def test_valid_variants_are_admitted(kind, changes):
    assert errors_of(changed(BODIES[kind], changes)) == []


def case(kind, changes, path, phrase, id):
    return pytest.param(kind, changes, path, phrase, id=id)


CASES = [
    case("AuthorizationPolicy", [(("spec", "action"), "REJECT")], "spec.action", 'Unsupported value: "REJECT"', id="action-values"),
    case("AuthorizationPolicy", [(RULE + ("from", 0, "source", "users"), ["x"])], "spec.rules[0].from[0].source.users", "unknown field", id="unknown-source-field"),
    case("AuthorizationPolicy", [(("spec", "action"), "DENY"), (("spec", "rules"), DELETE)], "spec.rules",
         "a DENY policy needs at least one rule", id="deny-needs-rules"),
    case("AuthorizationPolicy", [(("spec", "provider"), {"name": "opa"})], "spec.provider", "only allowed with action CUSTOM", id="provider-only-custom"),
    case("AuthorizationPolicy", [(("spec", "action"), "CUSTOM"), (("spec", "provider"), {"name": "opa"}), (RULE + ("when",), DELETE)],
         "spec.rules[0].from[0].source.principals", "not supported with action CUSTOM", id="custom-no-identity"),
    case("AuthorizationPolicy", [(("spec", "action"), "CUSTOM"), (("spec", "provider"), {"name": "opa"}), (RULE + ("from",), DELETE)],
         "spec.rules[0].when[1].key", "source.namespace is not supported with action CUSTOM", id="custom-no-identity-key"),
    case("AuthorizationPolicy", [(("spec", "targetRefs"), [{"kind": "Gateway", "name": "gw"}])], "spec.targetRefs",
         "only one of selector or targetRefs", id="selector-or-target"),
    case("AuthorizationPolicy", [(("spec", "selector", "matchLabels", "app"), "api*")], "spec.selector.matchLabels.app",
         "wildcard is not supported", id="selector-wildcard"),
    case("AuthorizationPolicy", [(RULE + ("from",), [])], "spec.rules[0].from", "must not be empty when present", id="empty-from"),
    case("AuthorizationPolicy", [(RULE + ("to", 0, "operation"), {})], "spec.rules[0].to[0].operation",
         "must set at least one field", id="empty-operation"),
    case("AuthorizationPolicy", [(RULE + ("to", 0, "operation", "ports"), ["http"])], "spec.rules[0].to[0].operation.ports[0]",
         "must be a port number", id="port-number"),
    case("AuthorizationPolicy", [(RULE + ("to", 0, "operation", "ports"), ["70000"])], "spec.rules[0].to[0].operation.ports[0]",
         "must be a port number between 0 and 65535", id="port-range"),
    case("AuthorizationPolicy", [(RULE + ("from", 0, "source", "ipBlocks"), ["10.0.0.0/33"])], "spec.rules[0].from[0].source.ipBlocks[0]",
         "must be an IP address or a CIDR", id="ip-block"),
    case("AuthorizationPolicy", [(RULE + ("from", 0, "source", "principals"), [""])], "spec.rules[0].from[0].source.principals[0]",
         "empty value is not allowed", id="empty-value"),
    case("AuthorizationPolicy", [(RULE + ("to", 0, "operation", "paths"), ["/a/{**}/b"])], "spec.rules[0].to[0].operation.paths[0]",
         "{**} the last", id="path-template"),
    case("AuthorizationPolicy", [(RULE + ("to", 0, "operation", "paths"), ["/a/{x}"])], "spec.rules[0].to[0].operation.paths[0]",
         "must be whole segments", id="path-braces"),
    case("AuthorizationPolicy", [(RULE + ("to", 0, "operation", "paths"), ["/a/{*}/b*"])], "spec.rules[0].to[0].operation.paths[0]",
         "no other * in a template", id="path-template-star"),
    case("AuthorizationPolicy", [(RULE + ("to", 0, "operation", "ports"), ["\u0668\u0660"])], "spec.rules[0].to[0].operation.ports[0]",
         "must be a port number", id="port-ascii-digits"),
    case("AuthorizationPolicy", [(RULE + ("when", 0, "key"), "experimental.envoy.filters.x[y]")], "spec.rules[0].when[0].key",
         "do not support Envoy filter metadata", id="when-envoy-filters"),
    case("AuthorizationPolicy", [(RULE + ("when", 0, "key"), "request.host")], "spec.rules[0].when[0].key", "unknown attribute", id="when-unknown-key"),
    case("AuthorizationPolicy", [(RULE + ("when", 0, "key"), "request.headers")], "spec.rules[0].when[0].key", "form a[b]", id="when-map-key"),
    case("AuthorizationPolicy", [(RULE + ("when", 0, "values"), DELETE)], "spec.rules[0].when[0].values",
         "at least one of values or notValues", id="when-values"),
    case("AuthorizationPolicy", [(RULE + ("when", 1), {"key": "destination.port", "values": ["eighty"]})], "spec.rules[0].when[1].values[0]",
         "must be a port number", id="when-port"),
    case("AuthorizationPolicy", [(RULE + ("from", 0, "source", "serviceAccounts"), ["frontend/web"])],
         "spec.rules[0].from[0].source.serviceAccounts", "cannot be set with principals or namespaces", id="service-accounts-alone"),
    case("AuthorizationPolicy", [(("spec", "rules"), [{}] * 513)], "spec.rules", "Too many: 513", id="rules-at-most-512"),
    case("PeerAuthentication", [(("spec", "mtls", "mode"), "ON")], "spec.mtls.mode", 'Unsupported value: "ON"', id="mode-values"),
    case("PeerAuthentication", [(("spec", "selector"), DELETE)], "spec.portLevelMtls", "cannot have port level mTLS", id="port-level-needs-selector"),
    case("PeerAuthentication", [(("spec", "portLevelMtls"), {"0": {"mode": "STRICT"}})], "spec.portLevelMtls.0",
         "between 1 and 65535", id="port-level-port"),
    case("PeerAuthentication", [(("spec", "portLevelMtls"), {})], "spec.portLevelMtls", "Required value", id="port-level-not-empty"),
]


@pytest.mark.parametrize("kind, changes, path, phrase", CASES)
def test_bad_field_gives_one_located_error(kind, changes, path, phrase):
    body = changed(BODIES[kind], changes)
    assert_one_located_error(body, f"shop/{body['metadata']['name']}", path, phrase)


@pytest.mark.parametrize("word, kind", [("ap", "AuthorizationPolicy"), ("authorizationpolicies", "AuthorizationPolicy"),
                                        ("pa", "PeerAuthentication"), ("peerauthentication.security.istio.io", "PeerAuthentication")])
def test_kubectl_names_resolve(word, kind):
    info = resolve_kind(word)
    assert info is not None and info.kind == kind and info.namespaced
