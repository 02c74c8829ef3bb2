"""podnet trace: each hop kind and each verdict, on small clusters built for the rule they prove."""

import pytest

from podnet.errors import UsageError
from podnet.sim.trace import Tracer
from tests.conftest import UNRUNNABLE_COREFILE, cluster_of

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
TWO_NODES = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 2\n"
HOST_GW = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 2\nnetworking: {overlay: host-gw}\n"


def pod(name, node, labels="{app: web}", ns="default", args='["netexec", "--http-port=8080"]'):
    return f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
spec:
  nodeName: {node}
  containers: [{{name: c, image: {AGNHOST}, args: {args}, ports: [{{name: http, containerPort: 8080}}]}}]
"""


def service(name, spec, ns="default"):
    return f"\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n"


def trace(manifests, src, dst, port=None, protocol="TCP", config=TWO_NODES):
    return Tracer(cluster_of(manifests, config)).trace(src, dst, port, protocol)


def actions(result):
    return [h.action for h in result.hops]


def ip_of(manifests, ref, config=TWO_NODES):
    ns, name = ref.split("/")
    return cluster_of(manifests, config).get("Pod", ns, name).status["podIP"]


PODS = pod("a", "node1") + pod("b", "node1") + pod("c", "node2")


def test_same_node_goes_over_the_bridge_only():
    r = trace(PODS, "default/a", "default/b", 8080)
    assert r.verdict == "delivered"
    assert "encapsulate" not in actions(r) and actions(r)[:2] == ["send", "bridge"]
    assert r.destination == {"pod": "default/b", "ip": ip_of(PODS, "default/b"), "port": 8080}


def test_other_node_crosses_vxlan():
    r = trace(PODS, "default/a", "default/c", 8080)
    assert r.verdict == "delivered"
    detail = next(h.detail for h in r.hops if h.action == "encapsulate")
    assert "VNI 1" in detail and "UDP 8472" in detail and "192.168.1.11 → 192.168.1.12" in detail


def test_other_node_with_host_gw_routes_via_the_node_ip():
    r = trace(PODS, "default/a", "default/c", 8080, config=HOST_GW)
    assert "encapsulate" not in actions(r)
    assert any("10.244.2.0/24 via 192.168.1.12 dev eth0" in h.detail for h in r.hops)


def test_nothing_listening_is_connection_refused():
    r = trace(PODS, "default/a", "default/c", 9999)
    assert r.verdict == "dropped" and "connection refused" in r.reason


def test_policy_isolation_names_the_policies():
    policy = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec: {podSelector: {}}
"""
    r = trace(PODS + policy, "default/a", "default/c", 8080)
    assert r.verdict == "dropped" and "isolated by default/deny-all" in r.reason
    assert "ingress-deny" in actions(r)


def test_cluster_ip_translates_to_every_ready_endpoint():
    manifests = PODS + service("web", "{selector: {app: web}, ports: [{port: 80, targetPort: http}]}")
    svc_ip = cluster_of(manifests, TWO_NODES).get("Service", "default", "web").spec["clusterIP"]
    r = trace(manifests, "default/a", f"{svc_ip}:80")
    assert r.verdict == "delivered" and sorted(r.endpoints) == ["default/a", "default/b", "default/c"]
    assert any(h.action == "service" and "3 candidate endpoints" in h.detail for h in r.hops)


def test_hairpin_is_masqueraded():
    manifests = pod("a", "node1") + service("web", "{selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}")
    svc_ip = cluster_of(manifests, TWO_NODES).get("Service", "default", "web").spec["clusterIP"]
    r = trace(manifests, "default/a", f"{svc_ip}:80")
    assert any(h.action == "snat" and "hairpin" in h.detail for h in r.hops)


def test_service_without_ready_endpoints_is_rejected():
    manifests = PODS + service("none", "{selector: {app: nobody}, ports: [{port: 80}]}")
    svc_ip = cluster_of(manifests, TWO_NODES).get("Service", "default", "none").spec["clusterIP"]
    r = trace(manifests, "default/a", f"{svc_ip}:80")
    assert r.verdict == "dropped" and "no ready endpoints" in r.reason and "rejected" in r.reason


def test_external_traffic_policy_local_drops_on_a_node_without_endpoints():
    manifests = pod("c", "node2") + service("np", "{type: NodePort, externalTrafficPolicy: Local, selector: {app: web}, "
                                                  "ports: [{port: 80, targetPort: 8080, nodePort: 30080}]}")
    on_node1 = trace(manifests, "external", "192.168.1.11:30080")
    assert on_node1.verdict == "dropped" and "externalTrafficPolicy: Local" in on_node1.reason
    on_node2 = trace(manifests, "external", "192.168.1.12:30080")
    assert on_node2.verdict == "delivered" and not any(h.action == "snat" for h in on_node2.hops), \
        "Local keeps the client's source address"


def test_cluster_policy_nodeport_is_masqueraded():
    manifests = pod("c", "node2") + service("np", "{type: NodePort, selector: {app: web}, "
                                                  "ports: [{port: 80, targetPort: 8080, nodePort: 30080}]}")
    r = trace(manifests, "external", "192.168.1.11:30080")
    assert r.verdict == "delivered" and any(h.action == "snat" for h in r.hops)
    assert any(h.action == "encapsulate" for h in r.hops), "node1 forwards to the endpoint on node2"


def test_internal_traffic_policy_local_uses_only_the_nodes_endpoints():
    manifests = PODS + service("web", "{internalTrafficPolicy: Local, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}")
    svc_ip = cluster_of(manifests, TWO_NODES).get("Service", "default", "web").spec["clusterIP"]
    r = trace(manifests, "default/c", f"{svc_ip}:80")
    assert r.endpoints == ["default/c"]


def test_load_balancer_source_ranges_drop_other_clients_before_dnat():
    manifests = PODS + service("lb", "{type: LoadBalancer, selector: {app: web}, ports: [{port: 80, targetPort: 8080}], "
                                     "loadBalancerSourceRanges: [203.0.113.0/24]}")
    r = trace(manifests, "external", "192.168.1.200:80")
    assert r.verdict == "dropped" and not r.endpoints
    assert "192.168.1.100 is not in the loadBalancerSourceRanges (203.0.113.0/24)" in r.reason
    allowed = trace(manifests.replace("203.0.113.0/24", "192.168.1.96/28"), "external", "192.168.1.200:80")
    assert allowed.verdict == "delivered" and allowed.endpoints
    # the ranges guard the LoadBalancer IP only: the NodePort is open to anyone, as with kube-proxy
    node_port = cluster_of(manifests, TWO_NODES).get("Service", "default", "lb").spec["ports"][0]["nodePort"]
    assert trace(manifests, "external", f"192.168.1.11:{node_port}").verdict == "delivered"


def test_load_balancer_ip_is_announced_by_a_node_from_outside():
    manifests = PODS + service("lb", "{type: LoadBalancer, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}")
    r = trace(manifests, "external", "192.168.1.200:80")
    assert r.verdict == "delivered" and any(h.action == "arp" for h in r.hops)


def test_pods_are_not_reachable_from_outside_directly():
    r = trace(PODS, "external", f"{ip_of(PODS, 'default/a')}:8080")
    assert r.verdict == "dropped" and "nothing on the LAN routes there" in r.reason


def test_pod_to_the_external_client_is_masqueraded():
    r = trace(PODS, "default/a", "192.168.1.100:80")
    assert r.verdict == "delivered" and any(h.action == "snat" and "→ 192.168.1.11" in h.detail for h in r.hops)


def test_nothing_leaves_the_cluster():
    r = trace(PODS, "default/a", "8.8.8.8:53", protocol="UDP")
    assert r.verdict == "dropped" and "no default route out" in r.reason


def test_some_endpoints_allowed_others_not_shows_each_fate():
    policy = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-b}
spec:
  podSelector: {matchLabels: {app: web, role: db}}
  ingress: []
"""
    manifests = (pod("a", "node1", labels="{app: client}") + pod("b", "node1") + pod("c", "node2", labels="{app: web, role: db}")
                 + policy + service("web", "{selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}"))
    svc_ip = cluster_of(manifests, TWO_NODES).get("Service", "default", "web").spec["clusterIP"]
    r = trace(manifests, "default/a", f"{svc_ip}:80")
    fates = {f.backend.pod: f.delivered for f in r.fates}
    assert fates == {"default/b": True, "default/c": False}
    assert r.verdict == "delivered" and "1 of 2 candidates" in r.reason
    assert r.destination["pod"] == "default/b"


def test_json_has_the_contract_shape():
    r = trace(PODS, "default/a", "default/c", 8080).to_json()
    assert set(r) >= {"verdict", "reason", "hops", "destination", "endpoints", "ingress"}
    assert set(r["hops"][0]) == {"at", "action", "detail"}
    assert set(r["destination"]) == {"pod", "ip", "port"} and r["ingress"] is None


@pytest.mark.parametrize("src, dst, phrase", [
    ("default/nope", "default/a", "no such pod"),
    ("node/node9", "default/a", "no node"),
    ("default/a", "default/b", "which port"),
])
def test_bad_arguments_are_one_clear_error(src, dst, phrase):
    manifests = pod("a", "node1") + pod("b", "node1", args='["pause"]').replace(", ports: [{name: http, containerPort: 8080}]", "")
    with pytest.raises(UsageError, match=phrase):
        trace(manifests, src, dst)


# --- HTTP through Ingress ---------------------------------------------------------------------

INGRESS_APP = pod("a", "node1") + service("web", "{selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}") + """
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: site}
spec:
  rules:
  - host: shop.example.com
    http:
      paths: [{path: /api, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: secure}
spec:
  tls: [{hosts: [secure.example.com], secretName: cert}]
  rules:
  - host: secure.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
"""


def test_http_request_goes_through_the_controller_to_a_backend_pod():
    r = trace(INGRESS_APP, "external", "http://shop.example.com/api/items")
    assert r.verdict == "delivered" and r.destination["pod"] == "default/a"
    assert r.to_json()["ingress"] == {"ingress": "default/site", "host": "shop.example.com", "path": "/api",
                                      "pathType": "Prefix", "backend": "web:http", "upstream_path": "/api/items"}
    assert any(h.at.startswith("ingress-nginx/") and h.action == "route" for h in r.hops)


def test_http_request_matching_no_rule_is_a_404():
    r = trace(INGRESS_APP, "external", "http://shop.example.com/other")
    assert r.verdict == "dropped" and "404" in r.reason and r.ingress is None


def test_plain_http_to_a_tls_host_is_redirected_not_delivered():
    r = trace(INGRESS_APP, "external", "http://secure.example.com/")
    # lua_ingress.lua drops the trailing slash of the redirect (preserve-trailing-slash is off)
    assert r.verdict == "dropped" and "308" in r.reason and "redirect to https://secure.example.com (" in r.reason
    https = trace(INGRESS_APP, "external", "https://secure.example.com/")
    assert https.verdict == "delivered" and https.destination["port"] == 8080


# --- regressions from review: order of DNAT, egress, SNAT; where kube-proxy translates ----------

SHOP = str(__import__("pathlib").Path(__file__).resolve().parent.parent / "examples" / "shop")


def shop_trace(src, dst, port=None, protocol="TCP"):
    from podnet.api.store import load_store
    from podnet.config import ClusterConfig
    from podnet.controlplane import compute

    cluster = compute(load_store([SHOP]), ClusterConfig())
    if src == "frontend":
        src = next(p.ref for p in cluster.of_kind("Pod", "shop") if p.name.startswith("frontend-"))
    return Tracer(cluster).trace(src, dst, port, protocol)


def test_egress_policy_applies_before_masquerade():
    r = shop_trace("frontend", "external", 80)
    assert r.verdict == "dropped" and "egress from shop/frontend" in r.reason
    assert "snat" not in actions(r), "a packet the pod may not send is never masqueraded"


def test_dns_lookups_need_egress_to_kube_dns():
    policy = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-web}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{to: [{podSelector: {matchLabels: {app: web}}}]}]
"""
    manifests = (pod("cli", "node1", labels="{app: client}") + pod("b", "node2") + policy
                 + service("web", "{selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}"))
    r = trace(manifests, "default/cli", "web")
    assert r.verdict == "dropped" and "DNS query to 10.96.0.10:53/UDP is blocked" in r.reason


ETP_LOCAL = pod("c", "node2") + service("np", "{type: NodePort, externalTrafficPolicy: Local, selector: {app: web}, "
                                              "ports: [{port: 80, targetPort: 8080, nodePort: 30100}]}")


def test_nodeports_are_translated_only_on_the_node_that_owns_the_address():
    client = pod("client", "node2", labels="{app: client}")
    r = trace(ETP_LOCAL + client, "default/client", "192.168.1.11:30100")
    assert r.verdict == "dropped" and "externalTrafficPolicy: Local and no ready endpoint on node1" in r.reason
    assert any(h.action == "snat" for h in r.hops), "the pod's packet leaves for the LAN masqueraded"


def test_traffic_from_a_node_to_an_etp_local_frontend_uses_all_endpoints():
    r = trace(ETP_LOCAL, "node/node1", "192.168.1.11:30100")
    assert r.verdict == "delivered" and any(h.action == "snat" for h in r.hops)


ALLOW_LAN = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: lan-only}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 192.168.1.0/24}}]}]
"""


def test_vxlan_masquerade_leaves_with_the_flannel_address():
    manifests = pod("c", "node2") + ALLOW_LAN + service("np", "{type: NodePort, selector: {app: web}, "
                                                                "ports: [{port: 80, targetPort: 8080, nodePort: 30100}]}")
    over_vxlan = trace(manifests, "external", "192.168.1.11:30100")
    assert any(h.action == "snat" and "→ 10.244.1.0" in h.detail for h in over_vxlan.hops)
    assert over_vxlan.verdict == "dropped", "10.244.1.0 (flannel.1) is not in the allowed 192.168.1.0/24"
    over_host_gw = trace(manifests, "external", "192.168.1.11:30100", config=HOST_GW)
    assert over_host_gw.verdict == "delivered", "host-gw leaves by eth0 with the node's LAN address"


def test_a_nodes_own_packet_to_a_pod_leaves_with_the_address_of_its_route():
    """As the kernel picks it (checked on a live cluster: `ip route get` on node2 says `src
    10.244.2.0`, and the NetworkPolicy table of node1 drops it): flannel.1's address across the
    VXLAN overlay, eth0's over host-gw, cni0's for the node's own pods (its own node: allowed)."""
    manifests = pod("c", "node1") + ALLOW_LAN
    over_vxlan = trace(manifests, "node/node2", "default/c", 8080)
    assert any(h.action == "source" and h.detail.startswith("10.244.2.0") for h in over_vxlan.hops)
    assert over_vxlan.verdict == "dropped", "10.244.2.0 (flannel.1) is not in the allowed 192.168.1.0/24"
    assert trace(manifests, "node/node2", "default/c", 8080, config=HOST_GW).verdict == "delivered"
    own = trace(manifests, "node/node1", "default/c", 8080)
    assert own.verdict == "delivered" and any(h.action == "source" and h.detail.startswith("10.244.1.1")
                                              for h in own.hops)


def test_a_url_to_a_cluster_address_is_an_ordinary_connection():
    manifests = ETP_LOCAL.replace("externalTrafficPolicy: Local, ", "")
    r = trace(manifests, "external", "http://192.168.1.12:30100/hostname")
    assert r.verdict == "delivered" and r.ingress is None


def test_cluster_ip_from_outside_is_dropped_not_a_crash():
    manifests = PODS + service("web", "{selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}")
    ip = cluster_of(manifests, TWO_NODES).get("Service", "default", "web").spec["clusterIP"]
    r = trace(manifests, "external", f"{ip}:80")
    assert r.verdict == "dropped" and "nothing on the LAN routes to it" in r.reason


def test_ports_by_name_and_unknown_service_ports_are_rejected():
    manifests = PODS + service("web", "{selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}, "
                                      "{name: metrics, port: 9090, targetPort: 9090}]}")
    assert trace(manifests, "default/a", "web", port="http").destination["port"] == 8080
    assert trace(manifests, "default/a", "web:http").verdict == "delivered"
    r = trace(manifests, "default/a", "web:99")
    assert r.verdict == "dropped" and "has no 99/TCP port: rejected" in r.reason
    with pytest.raises(UsageError, match="between 1 and 65535"):
        trace(manifests, "default/a", "web", port=70000)


def test_headless_service_every_address_is_a_candidate():
    manifests = PODS + service("h", "{clusterIP: None, selector: {app: web}, ports: [{port: 8080}]}")
    r = trace(manifests, "default/a", "h", port=8080)
    assert sorted(r.endpoints) == ["default/a", "default/b", "default/c"] and len(r.fates) == 3


def test_node_address_with_nothing_listening_is_refused():
    r = trace(PODS, "external", "192.168.1.11:12345")
    assert r.verdict == "dropped" and "connection refused" in r.reason


def test_host_port_reaches_the_pod_through_portmap():
    manifests = pod("hp", "node1").replace("ports: [{name: http, containerPort: 8080}]",
                                           "ports: [{name: http, containerPort: 8080, hostPort: 8088}]")
    r = trace(manifests, "external", "192.168.1.11:8088")
    assert r.verdict == "delivered" and r.destination["pod"] == "default/hp" and r.destination["port"] == 8080


def test_a_name_does_not_resolve_when_the_corefile_stops_the_dns():
    result = Tracer(cluster_of(UNRUNNABLE_COREFILE + pod("web-1", "node1"))).trace("default/client", "web:8080")
    assert result.verdict == "dropped"
    assert "the cluster DNS does not run" in result.reason and "unknown plugin 'autopath'" in result.reason
