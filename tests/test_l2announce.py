"""MetalLB-style L2 announcement: who answers ARP for a LoadBalancer IP, and how the announcer
moves addresses between nodes (on a recording fake; the root tests do it for real)."""

from podnet.host.layout import ClusterLayout
from podnet.linux.l2announce import L2Announcer
from podnet.semantics.loadbalancer import announcements
from tests.conftest import cluster_of

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec: {nodeName: node2, containers: [{name: c, image: nginx, ports: [{containerPort: 80}]}]}
"""


def lb(policy: str = "Cluster", extra: str = "") -> str:
    return f"""
---
apiVersion: v1
kind: Service
metadata: {{name: lb}}
spec: {{type: LoadBalancer, externalTrafficPolicy: {policy}, selector: {{app: web}}, ports: [{{port: 80}}]{extra}}}
"""


def owners(cluster) -> dict[str, str]:
    return {ip: node for node, ips in announcements(cluster).items() for ip in ips}


def test_local_policy_announces_only_from_a_node_with_a_ready_endpoint():
    cluster = cluster_of(PODS + lb("Local"), "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 3\n")
    assert owners(cluster) == {"192.168.1.200": "node2"}


def test_cluster_policy_announces_from_one_node_when_any_endpoint_is_ready():
    cluster = cluster_of(PODS + lb("Cluster"), "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 3\n")
    assert set(owners(cluster)) == {"192.168.1.200"}
    assert sum(len(ips) for ips in announcements(cluster).values()) == 1


def test_no_ready_endpoint_means_nobody_answers():
    not_ready = PODS.replace("spec: {nodeName", "status: {conditions: [{type: ContainersReady, status: 'False'}]}\nspec: {nodeName")
    cluster = cluster_of(not_ready + lb("Cluster"))
    assert owners(cluster) == {}


def test_external_ips_on_the_lan_are_announced_and_others_are_not():
    cluster = cluster_of(PODS + lb("Cluster", ", externalIPs: [192.168.1.150, 203.0.113.9]"))
    assert set(owners(cluster)) == {"192.168.1.200", "192.168.1.150"}


def test_announcer_moves_an_address_releasing_it_before_the_new_owner_takes_it():
    calls: list[tuple[list[str], str | None]] = []
    announcer = L2Announcer(ClusterLayout("c1"), run=lambda argv, stdin: calls.append((argv, stdin)))
    config = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 3\n"
    announcer.sync(cluster_of(PODS + lb("Local"), config))
    assert calls[0] == (["ip", "-n", "podnet-c1.node-node2", "-batch", "-"], "address replace 192.168.1.200/32 dev lo\n")
    assert calls[1][0][:4] == ["ip", "netns", "exec", "podnet-c1.node-node2"] and "-U" in calls[1][0]
    calls.clear()
    announcer.sync(cluster_of(PODS + lb("Local"), config))  # nothing changed: nothing done
    assert calls == []
    moved = PODS.replace("nodeName: node2", "nodeName: node3")
    announcer.sync(cluster_of(moved + lb("Local"), config))
    assert [c[0][2] for c in calls[:2]] == ["podnet-c1.node-node2", "podnet-c1.node-node3"]
    assert calls[0][1] == "address del 192.168.1.200/32 dev lo\n"
    assert calls[1][1] == "address replace 192.168.1.200/32 dev lo\n"
