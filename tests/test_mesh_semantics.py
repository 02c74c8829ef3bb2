"""The service mesh's rules (semantics/mesh.py), case by case as Istio and Linkerd decide them:
injection, identity, PeerAuthentication's mode, AuthorizationPolicy's decision (HTTP and TCP)."""

from __future__ import annotations

import pytest

from podnet.api.objects import KubeObject
from podnet.semantics import mesh
from podnet.semantics.mesh import Http, Request

CLIENT = mesh.spiffe_id("frontend", "web")  # spiffe://cluster.local/ns/frontend/sa/web
OTHER = mesh.spiffe_id("other", "default")


def namespace(name: str, labels: dict | None = None, annotations: dict | None = None) -> KubeObject:
    metadata = {"name": name, **({"labels": labels} if labels else {}), **({"annotations": annotations} if annotations else {})}
    return KubeObject("Namespace", "", name, {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})


def pod(labels: dict | None = None, annotations: dict | None = None, ns: str = "shop", host_network: bool = False) -> KubeObject:
    metadata = {"name": "p", "namespace": ns, **({"labels": labels} if labels else {}),
                **({"annotations": annotations} if annotations else {})}
    spec = {"containers": [{"name": "app", "image": "nginx"}], **({"hostNetwork": True} if host_network else {})}
    return KubeObject("Pod", ns, "p", {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})


# -- injection -------------------------------------------------------------------------------------


@pytest.mark.parametrize("ns_labels, pod_labels, pod_annotations, injected", [
    ({"istio-injection": "enabled"}, {}, {}, True),
    ({"istio-injection": "enabled"}, {"sidecar.istio.io/inject": "false"}, {}, False),
    ({"istio-injection": "enabled"}, {}, {"sidecar.istio.io/inject": "false"}, False),
    ({"istio-injection": "enabled"}, {"sidecar.istio.io/inject": "true"}, {"sidecar.istio.io/inject": "false"}, True),
    ({"istio-injection": "disabled"}, {"sidecar.istio.io/inject": "true"}, {}, False),
    ({"istio-injection": "disabled", "istio.io/rev": "canary"}, {}, {}, False),
    ({"istio.io/rev": "canary"}, {}, {}, True),
    ({"istio.io/rev": "canary"}, {"sidecar.istio.io/inject": "false"}, {}, False),
    ({}, {"sidecar.istio.io/inject": "true"}, {}, True),
    ({}, {}, {"sidecar.istio.io/inject": "true"}, False),  # the legacy annotation alone calls no webhook
    ({}, {}, {}, False),
    ({}, {"istio.io/rev": "canary"}, {}, True),
])
def test_istio_injection_follows_the_namespace_and_pod_markers(ns_labels, pod_labels, pod_annotations, injected):
    decision = mesh.injection(pod(pod_labels, pod_annotations), namespace("shop", ns_labels))
    assert decision.injected is injected, decision.reason
    assert decision.mesh == ("istio" if injected else None)


@pytest.mark.parametrize("ns_annotation, pod_annotation, injected", [
    ("enabled", None, True), ("ingress", None, True), ("enabled", "disabled", False), ("disabled", "enabled", True),
    (None, "enabled", True), ("disabled", None, False), (None, None, False), (None, "disabled", False),
    ("enabled", "yes", False), ("maybe", None, False),
])
def test_linkerd_injection_follows_the_annotation_pod_first(ns_annotation, pod_annotation, injected):
    decision = mesh.injection(pod(annotations={"linkerd.io/inject": pod_annotation} if pod_annotation else None),
                              namespace("shop", annotations={"linkerd.io/inject": ns_annotation} if ns_annotation else None))
    assert decision.injected is injected, decision.reason
    assert decision.mesh == ("linkerd" if injected else None)


def test_host_network_pods_and_system_namespaces_are_never_injected():
    enabled = {"istio-injection": "enabled"}
    assert not mesh.injection(pod(host_network=True), namespace("shop", enabled)).injected
    assert not mesh.injection(pod(ns="kube-system"), namespace("kube-system", enabled)).injected
    assert "hostNetwork" in mesh.injection(pod(host_network=True), namespace("shop", enabled)).reason


# -- identity --------------------------------------------------------------------------------------


def test_a_workloads_identity_is_its_namespace_and_service_account():
    assert CLIENT == "spiffe://cluster.local/ns/frontend/sa/web"
    assert mesh.namespace_of(CLIENT) == "frontend" and mesh.namespace_of(None) is None
    assert mesh.service_account_of(pod()) == "default"


# -- PeerAuthentication ----------------------------------------------------------------------------


def peer_auth(ns: str, name: str, mode: str | None, selector: dict | None = None, ports: dict | None = None,
              created: str = "2026-01-01T00:00:00Z") -> KubeObject:
    spec = {**({"mtls": {"mode": mode}} if mode else {}), **({"selector": {"matchLabels": selector}} if selector is not None else {}),
            **({"portLevelMtls": ports} if ports else {})}
    return KubeObject("PeerAuthentication", ns, name, {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                                                      "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
                                                      "spec": spec})


APP = {"app": "api"}


@pytest.mark.parametrize("policies, port, mode", [
    ([], 8080, "PERMISSIVE"),
    ([peer_auth("istio-system", "default", "UNSET")], 8080, "PERMISSIVE"),
    ([peer_auth("istio-system", "default", "STRICT")], 8080, "STRICT"),
    ([peer_auth("istio-system", "default", "STRICT"), peer_auth("shop", "ns", "UNSET")], 8080, "STRICT"),
    ([peer_auth("istio-system", "default", "STRICT"), peer_auth("shop", "ns", "DISABLE")], 8080, "DISABLE"),
    ([peer_auth("istio-system", "default", "DISABLE"), peer_auth("shop", "ns", None),
      peer_auth("shop", "api", "STRICT", APP)], 8080, "STRICT"),
    ([peer_auth("istio-system", "default", "STRICT"), peer_auth("shop", "ns", "PERMISSIVE"),
      peer_auth("shop", "api", "UNSET", APP, {"8080": {"mode": "DISABLE"}})], 8080, "DISABLE"),
    ([peer_auth("istio-system", "default", "STRICT"), peer_auth("shop", "ns", "PERMISSIVE"),
      peer_auth("shop", "api", "UNSET", APP, {"8080": {"mode": "DISABLE"}})], 9090, "PERMISSIVE"),
    ([peer_auth("shop", "ns", "STRICT"), peer_auth("shop", "api", "UNSET", APP, {80: {"mode": "UNSET"}})], 80, "STRICT"),
    # a root-namespace policy with a selector is ignored
    ([peer_auth("istio-system", "default", "PERMISSIVE"), peer_auth("istio-system", "strict-api", "STRICT", APP)],
     8080, "PERMISSIVE"),
    # an empty matchLabels is no selector: namespace-wide
    ([peer_auth("shop", "all", "STRICT", {})], 8080, "STRICT"),
    # another namespace's policies say nothing here; a selector that does not match neither
    ([peer_auth("other", "ns", "STRICT"), peer_auth("shop", "db", "STRICT", {"app": "db"})], 8080, "PERMISSIVE"),
])
def test_peer_authentication_composes_mesh_namespace_workload_and_port(policies, port, mode):
    assert mesh.mtls_mode(policies, "shop", APP, port).mode == mode


def test_of_two_policies_at_one_level_the_oldest_decides():
    newer = peer_auth("shop", "a-newer", "DISABLE", created="2026-02-01T00:00:00Z")
    older = peer_auth("shop", "z-older", "STRICT", created="2026-01-01T00:00:00Z")
    decided = mesh.mtls_mode([newer, older], "shop", APP, 80)
    assert decided.mode == "STRICT" and decided.decided_by == "PeerAuthentication shop/z-older (namespace)"
    same_second = [peer_auth("shop", "b", "DISABLE"), peer_auth("shop", "a", "STRICT")]
    assert mesh.mtls_mode(same_second, "shop", APP, 80).mode == "STRICT"  # the same second: by name
    assert not mesh.mtls_mode([older], "shop", APP, 80).accepts_plaintext
    assert not mesh.mtls_mode([newer], "shop", APP, 80).takes_mtls


# -- AuthorizationPolicy ---------------------------------------------------------------------------


def authz(name: str, spec: dict, ns: str = "shop", annotations: dict | None = None) -> KubeObject:
    metadata = {"name": name, "namespace": ns, **({"annotations": annotations} if annotations else {})}
    return KubeObject("AuthorizationPolicy", ns, name, {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                                                       "metadata": metadata, "spec": spec})


def get(path: str = "/", method: str = "GET", principal: str | None = CLIENT, port: int = 8080, host: str = "api.shop",
        headers: dict | None = None, source_ip: str = "10.244.1.5") -> Request:
    return Request(principal, source_ip, port, "10.244.2.7", Http(method, path, host, headers or {}))


def tcp(principal: str | None = CLIENT, port: int = 8080, source_ip: str = "10.244.1.5") -> Request:
    return Request(principal, source_ip, port, "10.244.2.7")


def decide(policies, request, labels=APP):
    return mesh.authorize(policies, "shop", labels, request)


def test_without_policies_everything_passes_and_an_empty_allow_allows_nothing():
    assert decide([], get()).allowed
    assert decide([], get()).by == "no ALLOW policy"
    allow_nothing = authz("allow-nothing", {})
    assert not decide([allow_nothing], get()).allowed
    assert decide([allow_nothing], get()).by == "no ALLOW rule matched"
    assert decide([authz("allow-all", {"rules": [{}]})], get()).allowed
    assert not decide([authz("deny-all", {"action": "DENY", "rules": [{}]})], get()).allowed


def test_deny_is_decided_before_allow_and_audit_decides_nothing():
    allow_all = authz("allow-all", {"rules": [{}]})
    deny_get = authz("deny-get", {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
    audit = authz("audit", {"action": "AUDIT", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]})
    decision = decide([allow_all, deny_get, audit], get("/admin/x"))
    assert not decision.allowed and (decision.by, decision.policy, decision.rule) == ("DENY", "shop/deny-get", 0)
    assert decision.audited == ("shop/audit",)
    passed = decide([allow_all, deny_get, audit], get("/admin/x", method="POST"))
    assert passed.allowed and passed.policy == "shop/allow-all" and passed.audited == ("shop/audit",)
    assert decide([audit], get("/admin")).allowed  # AUDIT alone: no default deny


def test_from_to_and_when_are_anded_entries_ored_values_ored():
    policy = authz("p", {"rules": [{
        "from": [{"source": {"principals": ["cluster.local/ns/frontend/sa/web"]}}, {"source": {"namespaces": ["ops"]}}],
        "to": [{"operation": {"methods": ["GET", "HEAD"], "paths": ["/api/*"]}}],
        "when": [{"key": "request.headers[x-team]", "values": ["blue"]}],
    }]})
    headers = {"X-Team": "blue"}
    assert decide([policy], get("/api/items", headers=headers)).allowed
    assert decide([policy], get("/api/items", method="HEAD", headers=headers)).allowed
    assert decide([policy], get("/api/items", principal=mesh.spiffe_id("ops", "bot"), headers=headers)).allowed
    assert not decide([policy], get("/api/items", principal=OTHER, headers=headers)).allowed
    assert not decide([policy], get("/api/items", method="POST", headers=headers)).allowed
    assert not decide([policy], get("/web", headers=headers)).allowed
    assert not decide([policy], get("/api/items")).allowed  # the condition's header is missing
    assert not decide([policy], get("/api/items", headers={"x-team": "red"})).allowed


def test_negative_fields_match_when_none_of_their_values_does():
    policy = authz("p", {"rules": [{"from": [{"source": {"notNamespaces": ["other", "test*"]}}],
                                    "to": [{"operation": {"notPaths": ["/private*"], "ports": ["8080"]}}]}]})
    assert decide([policy], get("/x")).allowed
    assert not decide([policy], get("/x", principal=OTHER)).allowed
    assert not decide([policy], get("/x", principal=mesh.spiffe_id("testing", "a"))).allowed
    assert not decide([policy], get("/private/key")).allowed
    assert not decide([policy], get("/x", port=9090)).allowed
    # plaintext: no namespace, so notNamespaces holds and namespaces never does
    assert decide([policy], get("/x", principal=None)).allowed
    needs_ns = authz("ns", {"rules": [{"from": [{"source": {"namespaces": ["*"]}}]}]})
    assert not decide([needs_ns], get(principal=None)).allowed and decide([needs_ns], get()).allowed


@pytest.mark.parametrize("pattern, principal, matches", [
    ("cluster.local/ns/frontend/sa/web", CLIENT, True),
    ("cluster.local/ns/frontend/*", CLIENT, True),
    ("*/ns/frontend/sa/web", CLIENT, True),
    ("*", CLIENT, True),
    ("*", None, False),
    ("spiffe://cluster.local/ns/frontend/sa/web", CLIENT, False),  # the scheme is added: twice never matches
    ("cluster.local/ns/front*", CLIENT, True),
    ("other.domain/ns/frontend/sa/web", CLIENT, False),
])
def test_principal_patterns(pattern, principal, matches):
    policy = authz("p", {"rules": [{"from": [{"source": {"principals": [pattern]}}]}]})
    assert decide([policy], get(principal=principal)).allowed is matches


def test_string_matches_hosts_without_case_paths_normalized_and_templates():
    hosts = authz("h", {"rules": [{"to": [{"operation": {"hosts": ["API.shop", "*.example.com"]}}]}]})
    assert decide([hosts], get(host="api.SHOP")).allowed
    assert decide([hosts], get(host="www.example.com")).allowed
    assert not decide([hosts], get(host="api.shop:8080")).allowed  # the port is part of the host
    paths = authz("p", {"rules": [{"to": [{"operation": {"paths": ["/public/*", "/v1/{*}/status", "/files/{**}"]}}]}]})
    assert decide([paths], get("/public/a?x=1")).allowed
    assert decide([paths], get("/v1/orders/status")).allowed
    assert not decide([paths], get("/v1/a/b/status")).allowed
    assert decide([paths], get("/files/a/b/c")).allowed
    deny = authz("d", {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]})
    allow_all = authz("all", {"rules": [{}]})
    for sneaky in ("/public/../admin", "/%61dmin", "/public/./..\\admin", "/x/%2e%2e/admin"):
        assert not decide([deny, allow_all], get(sneaky)).allowed, sneaky
    assert decide([deny, allow_all], get("/public/%2fadmin")).allowed  # %2F stays encoded (BASE)


@pytest.mark.parametrize("raw, normal", [
    ("/a/./b/../c", "/a/c"), ("/a/..", "/"), ("/..", "/"), ("/a/b/..", "/a/"), ("/a\\b", "/a/b"),
    ("/%7Euser/%41", "/~user/A"), ("/a%2Fb", "/a%2Fb"), ("/a//b", "/a//b"), ("/p?q=/..", "/p"), ("/", "/"),
])
def test_path_normalization_is_istios_default(raw, normal):
    assert mesh.normalized_path(raw) == normal


def test_over_tcp_an_allow_rule_with_http_fields_is_dropped_and_a_deny_rule_loses_them():
    allow_http = authz("allow", {"rules": [{"from": [{"source": {"namespaces": ["frontend"]}}],
                                            "to": [{"operation": {"ports": ["8080"], "methods": ["GET"]}}]}]})
    assert decide([allow_http], get()).allowed
    assert not decide([allow_http], tcp()).allowed  # the only rule is dropped: ALLOW exists, nothing matches
    allow_both = authz("both", {"rules": [{"to": [{"operation": {"methods": ["GET"]}}]},
                                          {"from": [{"source": {"namespaces": ["frontend"]}}], "to": [{"operation": {"ports": ["8080"]}}]}]})
    decision = decide([allow_both], tcp())
    assert decision.allowed and decision.rule == 1
    deny_get = authz("deny-get", {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"]}}]}]})
    assert decide([deny_get], get(method="POST")).allowed
    assert not decide([deny_get], tcp()).allowed  # methods dropped: it denies every connection
    deny_port = authz("deny-port", {"action": "DENY", "rules": [{"to": [{"operation": {"methods": ["GET"], "ports": ["8080"]}}]}]})
    assert not decide([deny_port], tcp(port=8080)).allowed and decide([deny_port], tcp(port=9090)).allowed
    deny_header = authz("deny-header", {"action": "DENY", "rules": [{"when": [{"key": "request.headers[x]", "values": ["y"]}]}]})
    assert not decide([deny_header], tcp()).allowed and decide([deny_header], get()).allowed


def test_which_policies_govern_a_workload():
    allow_db = authz("db-only", {"selector": {"matchLabels": {"app": "db"}}, "rules": [{}]})
    assert decide([allow_db], get()).by == "no ALLOW policy"  # selects another workload
    mesh_wide = authz("mesh-deny", {"action": "DENY", "rules": [{"from": [{"source": {"namespaces": ["other"]}}]}]},
                      ns="istio-system")
    assert not decide([mesh_wide], get(principal=OTHER)).allowed  # the root namespace's: every workload
    elsewhere = authz("elsewhere", {"action": "DENY", "rules": [{}]}, ns="other")
    assert decide([elsewhere], get()).allowed
    gateway_only = authz("gw", {"action": "DENY", "targetRefs": [{"kind": "Gateway", "name": "gw"}], "rules": [{}]})
    assert decide([gateway_only], get()).allowed  # targetRefs are for gateways, not sidecars
    dry = authz("dry", {"action": "DENY", "rules": [{}]}, annotations={"istio.io/dry-run": "true"})
    assert decide([dry], get()).allowed
    assert decide([authz("dry-allow", {}, annotations={"istio.io/dry-run": "true"})], get()).allowed  # no enforced ALLOW


def test_ip_blocks_ports_and_conditions():
    policy = authz("p", {"rules": [{"from": [{"source": {"ipBlocks": ["10.244.1.0/24"], "notIpBlocks": ["10.244.1.99"]}}],
                                    "when": [{"key": "destination.port", "values": ["8080", "8443"]},
                                             {"key": "source.namespace", "notValues": ["other"]}]}]})
    assert decide([policy], tcp()).allowed
    assert not decide([policy], tcp(source_ip="10.244.1.99")).allowed
    assert not decide([policy], tcp(source_ip="10.244.2.5")).allowed
    assert not decide([policy], tcp(port=9000)).allowed
    assert not decide([policy], tcp(principal=OTHER)).allowed
    accounts = authz("sa", {"rules": [{"from": [{"source": {"serviceAccounts": ["frontend/web", "bot"]}}]}]})
    assert decide([accounts], get()).allowed
    assert decide([accounts], get(principal=mesh.spiffe_id("shop", "bot"))).allowed  # `bot`: the policy's namespace
    assert not decide([accounts], get(principal=mesh.spiffe_id("other", "bot"))).allowed


def test_a_custom_policy_fails_closed_without_its_authorizer():
    custom = authz("ext", {"action": "CUSTOM", "provider": {"name": "opa"}, "rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]})
    decision = decide([custom], get("/x"))
    assert not decision.allowed and decision.by == "CUSTOM"
    assert decide([custom], get("/y")).allowed
    assert str(decision) == "denied: CUSTOM shop/ext rule 0"


def test_a_port_is_http_when_a_service_selecting_the_pod_declares_it_so():
    api = KubeObject("Pod", "shop", "api", {"metadata": {"name": "api", "namespace": "shop", "labels": {"app": "api"}},
                                            "spec": {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 8080},
                                                                                          {"containerPort": 9090}, {"containerPort": 7070}]}]}})

    def service(name, ports, selector=None, ns="shop"):
        return KubeObject("Service", ns, name, {"metadata": {"name": name, "namespace": ns},
                                                "spec": {"selector": selector or {"app": "api"}, "ports": ports}})
    services = [service("named", [{"name": "http-web", "port": 80, "targetPort": "web"}]),
                service("app-protocol", [{"name": "metrics", "port": 9090, "appProtocol": "http"}]),
                service("grpc-elsewhere", [{"name": "grpc", "port": 7070}], selector={"app": "db"}),
                service("other-ns", [{"name": "http", "port": 7070}], ns="other")]
    assert mesh.port_protocol(services, api, 8080) == "http"  # the named target port
    assert mesh.port_protocol(services, api, 9090) == "http"  # appProtocol
    assert mesh.port_protocol(services, api, 7070) == "tcp"  # no Service of its own declares it
    assert mesh.port_protocol([service("tcp", [{"name": "tcp-db", "port": 8080, "targetPort": 8080}])], api, 8080) == "tcp"


def test_what_the_review_found_istio_reads_so():
    # pseudo-headers are request headers too; ports are parsed numbers ("080" is 80)
    deny_delete = authz("d", {"action": "DENY", "rules": [{"when": [{"key": "request.headers[:method]", "values": ["DELETE"]}]}]})
    assert not decide([deny_delete], get(method="DELETE")).allowed and decide([deny_delete], get()).allowed
    by_path = authz("p", {"rules": [{"when": [{"key": "request.headers[:path]", "values": ["/a/c*"]}]}]})
    assert decide([by_path], get("/a/./b/../c?x=1")).allowed  # (the normalized path, the query kept)
    assert decide([authz("port", {"rules": [{"to": [{"operation": {"ports": ["080"]}}]}]})], get(port=80)).allowed
    assert mesh.mtls_mode([peer_auth("shop", "api", "STRICT", APP, {"0080": {"mode": "DISABLE"}})], "shop", APP, 80).mode == "DISABLE"
    # injection: only y/yes/true/on say yes; any other value says no
    enabled = namespace("shop", {"istio-injection": "enabled"})
    for value, injected in (("False", False), ("no", False), ("off", False), ("Yes", True), ("on", True)):
        assert mesh.injection(pod({"sidecar.istio.io/inject": value}), enabled).injected is injected, value
    # dry-run as Go's ParseBool reads it
    assert not decide([authz("dry", {"action": "DENY", "rules": [{}]}, annotations={"istio.io/dry-run": "True"})], get()).allowed is False
    assert not decide([authz("dry", {"action": "DENY", "rules": [{}]}, annotations={"istio.io/dry-run": "tRuE"})], get()).allowed
    # no JWTs: a request principal is never there, its notValues always hold
    needs_jwt = authz("jwt", {"rules": [{"when": [{"key": "request.auth.principal", "notValues": ["x"]}]}]})
    assert decide([needs_jwt], get()).allowed
