"""Control plane rules, one test per rule, on small inline manifests."""

from ipaddress import IPv4Address, IPv4Network

import pytest

from podnet.api import defaults as api_defaults
from podnet.controlplane.pods import find_named_port, serving_containers
from podnet.errors import InvalidInput
from tests.conftest import cluster_of

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"


def pod(name, ns="default", labels="{app: web}", extra="", ports="[{name: http, containerPort: 8080}]"):
    return f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {labels}}}
spec:
  containers: [{{name: c, image: {AGNHOST}, ports: {ports}}}]
{extra}"""


def deployment(name, replicas=3, ns="default"):
    return f"""
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: c, image: {AGNHOST}, ports: [{{name: http, containerPort: 8080}}]}}]
"""


def service(name, spec, ns="default"):
    return f"""
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec: {spec}
"""


# --- kubeadm baseline ---------------------------------------------------------------------

def test_every_cluster_has_kubeadm_namespaces_with_name_labels():
    c = cluster_of()
    names = [n.name for n in c.of_kind("Namespace")]
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]
    assert all(n.labels["kubernetes.io/metadata.name"] == n.name for n in c.of_kind("Namespace"))


def test_kubernetes_service_takes_the_first_service_address():
    c = cluster_of()
    svc = c.get("Service", "default", "kubernetes")
    assert svc.spec["clusterIP"] == "10.96.0.1"
    slice_ = c.get("EndpointSlice", "default", "kubernetes")
    assert slice_.body["endpoints"][0]["addresses"] == ["192.168.1.11"] and slice_.body["ports"][0]["port"] == 6443


def test_dns_addon_is_kube_dns_at_10_96_0_10_backed_by_two_coredns_pods():
    c = cluster_of()
    svc = c.get("Service", "kube-system", "kube-dns")
    assert svc.spec["clusterIP"] == "10.96.0.10"
    assert [(p["name"], p["port"], p["protocol"]) for p in svc.spec["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    coredns = [p for p in c.of_kind("Pod", "kube-system") if p.name.startswith("coredns-")]
    assert len(coredns) == 2
    addresses = sorted(a for s in c.of_kind("EndpointSlice", "kube-system") for e in s.body["endpoints"] for a in e["addresses"])
    assert addresses == sorted(p.status["podIP"] for p in coredns)


def test_namespace_used_but_not_declared_is_created_with_a_warning():
    c = cluster_of(pod("a", ns="team"))
    assert c.get("Namespace", "", "team") is not None
    assert any("namespace team is used but not defined" in w for w in c.warnings)


# --- nodes and IPAM -----------------------------------------------------------------------

def test_nodes_get_lan_ips_from_11_and_pod_cidrs_from_10_244_1():
    c = cluster_of()
    assert [(n.name, str(n.ip), str(n.pod_cidr)) for n in c.nodes] == [
        ("node1", "192.168.1.11", "10.244.1.0/24"), ("node2", "192.168.1.12", "10.244.2.0/24"),
        ("node3", "192.168.1.13", "10.244.3.0/24")]
    node = c.get("Node", "", "node2")
    assert node.spec["podCIDR"] == "10.244.2.0/24"
    assert {"type": "InternalIP", "address": "192.168.1.12"} in node.status["addresses"]


def test_node_ips_skip_the_external_client_address():
    c = cluster_of(config="kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 92\n")
    ips = [str(n.ip) for n in c.nodes]
    assert "192.168.1.100" not in ips and ips[-1] == "192.168.1.103"


def test_pod_ips_come_in_order_from_dot_2_never_the_gateway():
    c = cluster_of("".join(pod(f"p{i}", extra="  nodeName: node1") for i in range(3)))
    ips = [c.get("Pod", "default", f"p{i}").status["podIP"] for i in range(3)]
    coredns_on_node1 = [p.status["podIP"] for p in c.of_kind("Pod", "kube-system") if p.spec["nodeName"] == "node1"]
    assert "10.244.1.1" not in ips + coredns_on_node1
    assert sorted(ips + coredns_on_node1, key=IPv4Address)[0] == "10.244.1.2"
    assert ips == sorted(ips, key=IPv4Address)


def test_host_network_pod_takes_the_node_ip():
    c = cluster_of(pod("h", extra="  hostNetwork: true\n  nodeName: node3"))
    p = c.get("Pod", "default", "h")
    assert p.status["podIP"] == "192.168.1.13" == p.status["hostIP"]


# --- workloads ----------------------------------------------------------------------------

def test_deployment_makes_a_replicaset_named_by_template_hash_and_pods_with_suffixes():
    c = cluster_of(deployment("web", 3))
    [rs] = c.of_kind("ReplicaSet", "default")
    hash_ = rs.labels["pod-template-hash"]
    assert rs.name == f"web-{hash_}" and len(hash_) in (9, 10)
    pods = c.of_kind("Pod", "default")
    assert len(pods) == 3
    for p in pods:
        prefix, suffix = p.name.rsplit("-", 1)
        assert prefix == rs.name and len(suffix) == 5 and set(suffix) <= set("bcdfghjklmnpqrstvwxz2456789")
        assert p.metadata["ownerReferences"][0]["name"] == rs.name
    assert c.get("Deployment", "default", "web").status["readyReplicas"] == 3


def test_replicaset_adopts_matching_orphan_pods_instead_of_doubling():
    rs = deployment("web", 2).replace("kind: Deployment", "kind: ReplicaSet")
    c = cluster_of(rs + pod("existing", labels="{app: web}"))
    pods = c.of_kind("Pod", "default")
    assert len(pods) == 2 and "existing" in [p.name for p in pods]
    assert c.get("Pod", "default", "existing").metadata["ownerReferences"][0]["name"] == "web"


def test_deployment_pods_are_not_adopted_without_their_template_hash():
    # the ReplicaSet's selector carries pod-template-hash, so a bare app=web pod stays an orphan
    c = cluster_of(deployment("web", 2) + pod("bare", labels="{app: web}"))
    assert len(c.of_kind("Pod", "default")) == 3
    assert "ownerReferences" not in c.get("Pod", "default", "bare").metadata


def test_statefulset_pods_are_ordinals_with_hostname_and_subdomain():
    c = cluster_of("""
    apiVersion: apps/v1
    kind: StatefulSet
    metadata: {name: redis}
    spec:
      replicas: 3
      serviceName: redis
      selector: {matchLabels: {app: redis}}
      template:
        metadata: {labels: {app: redis}}
        spec: {containers: [{name: r, image: "redis:7.2", ports: [{name: redis, containerPort: 6379}]}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: redis}
    spec: {clusterIP: None, selector: {app: redis}, ports: [{port: 6379}]}
    """)
    pods = c.of_kind("Pod", "default")
    assert [p.name for p in pods] == ["redis-0", "redis-1", "redis-2"]
    assert all(p.spec["hostname"] == p.name and p.spec["subdomain"] == "redis" for p in pods)
    [slice_] = [s for s in c.of_kind("EndpointSlice", "default") if s.labels["kubernetes.io/service-name"] == "redis"]
    assert sorted(e["hostname"] for e in slice_.body["endpoints"]) == ["redis-0", "redis-1", "redis-2"]
    assert "service.kubernetes.io/headless" in slice_.labels
    assert c.get("Service", "default", "redis").spec["clusterIP"] == "None"


def test_daemonset_runs_one_pod_per_matching_node():
    c = cluster_of("""
    apiVersion: apps/v1
    kind: DaemonSet
    metadata: {name: agent, namespace: kube-system}
    spec:
      selector: {matchLabels: {app: agent}}
      template:
        metadata: {labels: {app: agent}}
        spec:
          nodeSelector: {disk: ssd}
          containers: [{name: a, image: busybox}]
    """, config="""
    kind: Cluster
    apiVersion: podnet.dev/v1alpha1
    nodes: [{name: a, labels: {disk: ssd}}, {name: b}, {name: c, labels: {disk: ssd}}]
    """)
    pods = [p for p in c.of_kind("Pod", "kube-system") if p.name.startswith("agent-")]
    assert sorted(p.spec["nodeName"] for p in pods) == ["a", "c"]
    assert c.get("DaemonSet", "kube-system", "agent").status["desiredNumberScheduled"] == 2


# --- scheduler ----------------------------------------------------------------------------

def test_scheduler_spreads_pods_evenly():
    c = cluster_of(deployment("web", 9))
    counts = {}
    for p in c.of_kind("Pod"):
        counts[p.spec["nodeName"]] = counts.get(p.spec["nodeName"], 0) + 1
    assert max(counts.values()) - min(counts.values()) <= 1


def test_node_name_and_node_selector_are_honoured():
    c = cluster_of(pod("pinned", extra="  nodeName: node2") + pod("picky", extra="  nodeSelector: {zone: b}"),
                   config="kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: [{name: node1}, {name: node2}, {name: node3, labels: {zone: b}}]\n")
    assert c.get("Pod", "default", "pinned").spec["nodeName"] == "node2"
    assert c.get("Pod", "default", "picky").spec["nodeName"] == "node3"


def test_unplaceable_pod_is_pending_with_the_schedulers_reason():
    c = cluster_of(pod("nowhere", extra="  nodeSelector: {gpu: 'true'}"))
    p = c.get("Pod", "default", "nowhere")
    assert p.status["phase"] == "Pending" and "podIP" not in p.status
    [cond] = p.status["conditions"]
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


def test_control_plane_taint_keeps_ordinary_pods_off():
    c = cluster_of(deployment("web", 4),
                   config="kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: [{name: cp, role: control-plane}, {name: w}]\n")
    assert {p.spec["nodeName"] for p in c.of_kind("Pod", "default")} == {"w"}


def test_max_pods_is_a_capacity():
    c = cluster_of(deployment("web", 3), config="kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: [{name: n, maxPods: 3}]\n")
    phases = sorted(p.status["phase"] for p in c.of_kind("Pod", "default"))
    assert phases == ["Pending", "Pending", "Running"]  # the two coredns pods, system-critical, placed first
    assert all(p.status["phase"] == "Running" for p in c.of_kind("Pod", "kube-system"))


# --- services -----------------------------------------------------------------------------

def test_cluster_ips_are_unique_and_in_the_service_subnet():
    c = cluster_of("".join(service(f"s{i}", "{selector: {app: web}, ports: [{port: 80}]}") for i in range(50)))
    ips = [s.spec["clusterIP"] for s in c.of_kind("Service")]
    assert len(set(ips)) == len(ips)
    assert all(IPv4Address(ip) in IPv4Network("10.96.0.0/12") for ip in ips)


def test_explicit_cluster_ip_is_honoured():
    c = cluster_of(service("s", "{clusterIP: 10.96.5.5, ports: [{port: 80}]}"))
    assert c.get("Service", "default", "s").spec["clusterIP"] == "10.96.5.5"


@pytest.mark.parametrize("spec, phrase", [
    pytest.param("{clusterIP: 10.96.0.10, ports: [{port: 80}]}", "provided IP is already allocated", id="clusterip-conflict-with-kube-dns"),
    pytest.param("{clusterIP: 10.0.0.5, ports: [{port: 80}]}", "not in the valid range", id="clusterip-outside-subnet"),
    pytest.param("{type: NodePort, ports: [{port: 80, nodePort: 8080}]}", "not in the valid range. The range of valid ports is 30000-32767", id="nodeport-outside-range"),
])
def test_service_address_errors_point_at_the_field(spec, phrase):
    with pytest.raises(InvalidInput) as info:
        cluster_of(service("s", spec))
    [line] = info.value.lines
    assert line.startswith("test.yaml:") and "Service default/s: spec." in line and phrase in line


def test_nodeport_collision_is_rejected():
    with pytest.raises(InvalidInput, match="provided port is already allocated"):
        cluster_of(service("a", "{type: NodePort, ports: [{port: 80, nodePort: 30080}]}")
                   + service("b", "{type: NodePort, ports: [{port: 80, nodePort: 30080}]}"))


def test_nodeport_allocated_from_range_and_loadbalancer_gets_a_pool_ip():
    c = cluster_of(service("lb", "{type: LoadBalancer, selector: {app: web}, ports: [{port: 80}]}")
                   + service("np", "{type: NodePort, ports: [{port: 80}, {port: 80, protocol: UDP, name: u}], selector: {app: x}}".replace("[{port: 80}", "[{port: 80, name: t}")))
    lb = c.get("Service", "default", "lb")
    assert 30000 <= lb.spec["ports"][0]["nodePort"] <= 32767
    assert lb.status["loadBalancer"]["ingress"][0]["ip"] == "192.168.1.200"
    np = c.get("Service", "default", "np")
    tcp, udp = np.spec["ports"]
    assert tcp["nodePort"] == udp["nodePort"], "one port number over TCP and UDP shares its NodePort"


def test_external_name_and_target_port_defaults():
    c = cluster_of(service("ext", "{type: ExternalName, externalName: db.example.com}")
                   + service("plain", "{selector: {app: web}, ports: [{port: 8080}]}"))
    assert "clusterIP" not in c.get("Service", "default", "ext").spec
    assert not [s for s in c.of_kind("EndpointSlice") if s.labels.get("kubernetes.io/service-name") == "ext"]
    assert c.get("Service", "default", "plain").spec["ports"][0]["targetPort"] == 8080


def test_service_defaults_are_the_api_servers_from_one_table():
    c = cluster_of(service("sticky", "{type: LoadBalancer, sessionAffinity: ClientIP, selector: {app: web}, "
                                     "ports: [{port: 80}]}")
                   + service("plain", "{selector: {app: web}, ports: [{port: 80}]}"))
    plain, sticky = c.get("Service", "default", "plain").spec, c.get("Service", "default", "sticky").spec
    assert (plain["type"], plain["sessionAffinity"], plain["internalTrafficPolicy"], plain["ipFamilyPolicy"],
            plain["ipFamilies"]) == (api_defaults.SERVICE_TYPE, api_defaults.SESSION_AFFINITY,
                                     api_defaults.TRAFFIC_POLICY, api_defaults.IP_FAMILY_POLICY,
                                     list(api_defaults.IP_FAMILIES))
    assert "externalTrafficPolicy" not in plain and sticky["externalTrafficPolicy"] == api_defaults.TRAFFIC_POLICY
    assert sticky["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == api_defaults.SESSION_AFFINITY_TIMEOUT == 10800
    assert sticky["allocateLoadBalancerNodePorts"] is api_defaults.ALLOCATE_LOAD_BALANCER_NODE_PORTS


# --- EndpointSlices -----------------------------------------------------------------------

def slices_of(c, name, ns="default"):
    return [s for s in c.of_kind("EndpointSlice", ns) if s.labels.get("kubernetes.io/service-name") == name]


def test_named_target_port_resolved_per_pod_and_pods_without_it_get_a_portless_slice():
    c = cluster_of(pod("a", ports="[{name: http, containerPort: 8080}]")
                   + pod("b", ports="[{name: http, containerPort: 9090}]")
                   + pod("c", ports="[{name: other, containerPort: 7070}]")
                   + service("web", "{selector: {app: web}, ports: [{port: 80, targetPort: http}]}"))
    slices = slices_of(c, "web")
    by_port = {(s.body["ports"][0]["port"] if s.body["ports"] else None): [e["targetRef"]["name"] for e in s.body["endpoints"]]
               for s in slices}
    # as the upstream reconciler keys slices by resolved port set: "c" serves none, so no ports
    assert by_port == {8080: ["a"], 9090: ["b"], None: ["c"]}
    legacy = c.get("Endpoints", "default", "web").body["subsets"]
    assert sorted(a["targetRef"]["name"] for sub in legacy for a in sub["addresses"]) == ["a", "b"]
    assert all(s.labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io" for s in slices)


def test_not_ready_pods_are_endpoints_with_ready_false_unless_publish_not_ready():
    gate = "  readinessGates: [{conditionType: example.com/gate}]"
    c = cluster_of(pod("ready") + pod("gated", extra=gate)
                   + service("web", "{selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}")
                   + service("all", "{selector: {app: web}, publishNotReadyAddresses: true, ports: [{port: 80, targetPort: 8080}]}"))
    [s] = slices_of(c, "web")
    ready = {e["targetRef"]["name"]: e["conditions"]["ready"] for e in s.body["endpoints"]}
    assert ready == {"gated": False, "ready": True}
    [s] = slices_of(c, "all")
    assert all(e["conditions"]["ready"] for e in s.body["endpoints"])
    endpoints = c.get("Endpoints", "default", "web")
    assert [a["targetRef"]["name"] for a in endpoints.body["subsets"][0]["notReadyAddresses"]] == ["gated"]


def test_service_without_selector_mirrors_user_endpoints():
    c = cluster_of(service("db", "{ports: [{port: 5432}]}") + """
---
apiVersion: v1
kind: Endpoints
metadata: {name: db}
subsets: [{addresses: [{ip: 192.168.1.50}], ports: [{port: 5432}]}]
""")
    [s] = slices_of(c, "db")
    assert s.labels["endpointslice.kubernetes.io/managed-by"] == "endpointslicemirroring-controller.k8s.io"
    assert s.body["endpoints"][0]["addresses"] == ["192.168.1.50"]


def test_selector_matching_no_pods_leaves_an_empty_placeholder_slice():
    c = cluster_of(service("lonely", "{selector: {app: nobody}, ports: [{port: 80}]}"))
    [s] = slices_of(c, "lonely")
    assert s.body["endpoints"] is None and s.body["ports"] is None


def test_ingresses_bring_the_ingress_nginx_controller_and_get_its_address():
    c = cluster_of("""
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    metadata: {name: web}
    spec:
      rules:
      - http:
          paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
    """)
    controller = c.get("Service", "ingress-nginx", "ingress-nginx-controller")
    address = controller.status["loadBalancer"]["ingress"][0]["ip"]
    assert controller.spec["type"] == "LoadBalancer"
    assert [p.name.startswith("ingress-nginx-controller-") for p in c.of_kind("Pod", "ingress-nginx")] == [True]
    assert c.get("IngressClass", "", "nginx").spec["controller"] == "k8s.io/ingress-nginx"
    assert c.get("Ingress", "default", "web").status == {"loadBalancer": {"ingress": [{"ip": address}]}}


def test_no_ingress_no_controller():
    assert cluster_of().get("Namespace", "", "ingress-nginx") is None


# --- regressions found in review -----------------------------------------------------------

def test_explicit_nulls_count_as_unset():
    c = cluster_of(service("s", "{type: null, sessionAffinity: ClientIP, sessionAffinityConfig: null, ports: [{port: 80}]}"))
    spec = c.get("Service", "default", "s").spec
    assert spec["type"] == "ClusterIP" and spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == 10800


def test_bad_load_balancer_ip_leaves_the_service_pending_with_a_warning():
    c = cluster_of(service("lb", "{type: LoadBalancer, loadBalancerIP: banana, ports: [{port: 80}]}"))
    assert c.get("Service", "default", "lb").status == {"loadBalancer": {}}
    assert any("not an IPv4 address" in w for w in c.warnings)


def test_user_service_cannot_take_kube_dns_address():
    with pytest.raises(InvalidInput) as info:
        cluster_of(service("aaa", "{clusterIP: 10.96.0.10, ports: [{port: 53}]}", ns="kube-system"))
    assert "Service kube-system/aaa" in info.value.lines[0] and "already allocated" in info.value.lines[0]


def test_coredns_corefile_configmap_exists():
    cm = cluster_of().get("ConfigMap", "kube-system", "coredns")
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in cm.body["data"]["Corefile"]


def test_serving_follows_pod_readiness_even_when_publishing_not_ready():
    c = cluster_of(pod("gated", extra="  readinessGates: [{conditionType: example.com/gate}]")
                   + service("all", "{selector: {app: web}, publishNotReadyAddresses: true, ports: [{port: 80, targetPort: 8080}]}"))
    [s] = slices_of(c, "all")
    assert s.body["endpoints"][0]["conditions"] == {"ready": True, "serving": False, "terminating": False}


def test_readiness_gate_leaves_containers_ready():
    c = cluster_of(pod("gated", extra="  readinessGates: [{conditionType: example.com/gate}]"))
    conditions = {x["type"]: (x["status"], x.get("reason")) for x in c.get("Pod", "default", "gated").status["conditions"]}
    assert conditions["ContainersReady"] == ("True", None)
    assert conditions["Ready"] == ("False", "ReadinessGatesNotReady")


def test_headless_service_without_ports_publishes_addresses():
    c = cluster_of(pod("a") + service("h", "{clusterIP: None, selector: {app: web}}"))
    endpoints = c.get("Endpoints", "default", "h")
    assert endpoints.labels["service.kubernetes.io/headless"] == ""
    assert [a["ip"] for a in endpoints.body["subsets"][0]["addresses"]] == [c.get("Pod", "default", "a").status["podIP"]]


def test_slices_of_another_manager_are_kept_for_selector_services():
    c = cluster_of(pod("a") + service("web", "{selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}") + """
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-extra
  labels: {kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: me.example.com}
addressType: IPv4
endpoints: [{addresses: [192.168.1.60]}]
ports: [{port: 8080}]
""")
    assert {s.name for s in slices_of(c, "web")} >= {"web-extra"} and len(slices_of(c, "web")) == 2


def test_replicaset_replaces_finished_and_terminating_pods():
    rs = deployment("web", 2).replace("kind: Deployment", "kind: ReplicaSet")
    failed = pod("old", labels="{app: web}") + "status: {phase: Failed}\n"
    leaving = pod("leaving", labels="{app: web}").replace("metadata: {name: leaving,", "metadata: {deletionTimestamp: '2024-01-01T00:00:00Z', name: leaving,")
    c = cluster_of(rs + failed + leaving)
    running = [p for p in c.of_kind("Pod", "default") if p.status.get("phase") == "Running" and p.name not in ("leaving",)]
    assert len(running) == 2 and c.get("ReplicaSet", "default", "web").status["replicas"] == 2


def test_piped_live_cluster_objects_keep_nodes_cidrs_and_pod_ips():
    c = cluster_of("""
    apiVersion: v1
    kind: List
    items:
    - apiVersion: v1
      kind: Node
      metadata: {name: kind-worker}
      spec: {podCIDR: 10.244.7.0/24}
      status: {addresses: [{type: InternalIP, address: 192.168.1.50}]}
    - apiVersion: v1
      kind: Pod
      metadata: {name: p, namespace: default}
      spec: {nodeName: kind-worker, containers: [{name: c, image: nginx}]}
      status: {phase: Running, podIP: 10.244.7.9, containerStatuses: [{name: c, restartCount: 4, ready: true, image: nginx, imageID: "", started: true}]}
    - apiVersion: v1
      kind: Pod
      metadata: {name: q, namespace: default}
      spec: {nodeName: kind-worker2, containers: [{name: c, image: nginx}]}
    """)
    node = c.node("kind-worker")
    assert str(node.pod_cidr) == "10.244.7.0/24" and str(node.ip) == "192.168.1.50"
    p = c.get("Pod", "default", "p")
    assert p.status["podIP"] == "10.244.7.9" and p.status["containerStatuses"][0]["restartCount"] == 4
    assert c.get("Pod", "default", "q").status["phase"] == "Running"
    assert any("kind-worker2 is named by pods but not defined" in w for w in c.warnings)


def test_unschedulable_node_gets_no_new_pods():
    c = cluster_of(deployment("web", 4) + """
---
apiVersion: v1
kind: Node
metadata: {name: node1}
spec: {unschedulable: true}
""")
    assert "node1" not in {p.spec["nodeName"] for p in c.of_kind("Pod", "default")}
    assert c.get("Node", "", "node1").spec["unschedulable"] is True


def test_a_pod_bound_to_a_node_whose_host_port_is_taken_is_rejected():
    hp = "[{name: http, containerPort: 8080, hostPort: 8088}]"
    c = cluster_of(pod("first", ports=hp, extra="  nodeName: node1") + pod("second", ports=hp, extra="  nodeName: node1"))
    assert c.get("Pod", "default", "first").status["phase"] == "Running"
    second = c.get("Pod", "default", "second").status
    assert second["phase"] == "Failed" and "didn't have free ports" in second["message"]


@pytest.mark.parametrize("first, second, conflict", [
    ("{containerPort: 80, hostPort: 8088}", "{containerPort: 81, hostPort: 8088}", True),
    ("{containerPort: 80, hostPort: 8088, hostIP: 192.168.1.11}", "{containerPort: 81, hostPort: 8088}", True),
    ("{containerPort: 80, hostPort: 8088, hostIP: 0.0.0.0}", "{containerPort: 81, hostPort: 8088, hostIP: 10.244.1.1}",
     True),
    ("{containerPort: 80, hostPort: 8088, hostIP: 192.168.1.11}",
     "{containerPort: 81, hostPort: 8088, hostIP: 10.244.1.1}", False),  # two addresses of one node
    ("{containerPort: 80, hostPort: 8088}", "{containerPort: 81, hostPort: 8088, protocol: UDP}", False),
], ids=["same-port", "one-address-and-any", "all-zeros-is-any", "different-addresses", "different-protocols"])
def test_host_ports_conflict_as_kube_scheduler_checks_them(first, second, conflict):
    """HostPortInfo.CheckConflict: a hostIP narrows a hostPort to one address, so two pods may
    share the port on one node when they bind different addresses."""
    c = cluster_of(pod("first", ports=f"[{first}]", extra="  nodeName: node1")
                   + pod("second", ports=f"[{second}]", extra="  nodeName: node1"))
    assert (c.get("Pod", "default", "second").status["phase"] == "Failed") is conflict


def test_live_readiness_from_probes_sets_conditions_and_slices_but_gates_still_hold():
    from podnet.config import ClusterConfig
    from tests.conftest import load_yaml
    from podnet.controlplane import compute

    text = (pod("probed") + pod("gated", extra="  readinessGates: [{conditionType: example.com/gate}]")
            + service("web", "{selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}"))
    verdicts = {"probed": False, "gated": True}
    c = compute(load_yaml(text), ClusterConfig(), lambda p: verdicts.get(p.name))
    ready = {e["targetRef"]["name"]: e["conditions"]["ready"] for s in slices_of(c, "web") for e in s.body["endpoints"]}
    assert ready == {"probed": False, "gated": False}
    probed = {x["type"]: x["status"] for x in c.get("Pod", "default", "probed").status["conditions"]}
    assert probed["ContainersReady"] == probed["Ready"] == "False"
    gated = {x["type"]: (x["status"], x.get("reason")) for x in c.get("Pod", "default", "gated").status["conditions"]}
    assert gated["ContainersReady"] == ("True", None) and gated["Ready"] == ("False", "ReadinessGatesNotReady")
    verdicts["probed"] = True
    c = compute(load_yaml(text), ClusterConfig(), lambda p: verdicts.get(p.name))
    assert {e["targetRef"]["name"]: e["conditions"]["ready"] for s in slices_of(c, "web")
            for e in s.body["endpoints"]}["probed"] is True


@pytest.mark.parametrize("containers, name, protocol, expected", [
    ([{"ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}]}], "http", "TCP", 80),
    ([{"ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]}], "dns", "TCP", None),  # protocol must match
    ([{"ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]}], "dns", None, 53),  # kubelet: any protocol
    ([{"ports": [{"name": "dns", "containerPort": 53}]}], "dns", "TCP", 53),  # an unset protocol is TCP
    ([{"ports": [{"name": "a", "containerPort": 1}]}, {"ports": [{"name": "a", "containerPort": 2}]}], "a", "TCP", 1),
    ([{"ports": [{"containerPort": 80}]}], "http", "TCP", None),  # unnamed ports are not found by name
    ([{}, {"ports": None}], "http", "TCP", None),
], ids=["by-name-and-protocol", "other-protocol", "any-protocol", "protocol-defaulted", "first-container-wins",
        "unnamed", "no-ports"])
def test_the_one_named_port_lookup(containers, name, protocol, expected):
    assert find_named_port(containers, name, protocol) == expected


def test_named_ports_of_a_pod_include_sidecars_but_not_plain_init_containers():
    p = cluster_of(pod("side", ports="[{name: http, containerPort: 8080}]").replace(
        "  containers:", "  initContainers:\n  - {name: proxy, image: busybox, restartPolicy: Always, "
                         "ports: [{name: admin, containerPort: 15000}]}\n"
                         "  - {name: setup, image: busybox, ports: [{name: setup, containerPort: 9999}]}\n  containers:"))
    containers = serving_containers(p.get("Pod", "default", "side"))
    assert find_named_port(containers, "admin", "TCP") == 15000 and find_named_port(containers, "setup", "TCP") is None


def test_networkpolicy_is_refused_with_the_userspace_proxy():
    """The userspace proxy ends a pod's Service connection on the node and opens another from the
    node's address, so no NetworkPolicy could hold for Service traffic: one clear error instead
    of a cluster where trace and the kernel would disagree."""
    policy = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny, namespace: default}
        spec: {podSelector: {}, policyTypes: [Ingress]}
    """
    with pytest.raises(InvalidInput, match=r"NetworkPolicy default/deny: spec: Forbidden: NetworkPolicy is not "
                                           r"enforced through the userspace proxy"):
        cluster_of(policy, "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnetworking: {proxyMode: userspace}\n")
    assert cluster_of(policy, "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnetworking: {proxyMode: iptables}\n")
