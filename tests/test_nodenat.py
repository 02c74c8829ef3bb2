"""hostPorts (CNI portmap) and ip-masq: the simulator's trace and the nft tables the data plane is
given come from one rule (semantics/nodenat). Each test walks the rendered tables as the kernel
would and holds the trace to the same answer."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network

import pytest

from podnet.api.objects import KubeObject
from podnet.host.layout import ClusterLayout
from podnet.linux.dataplane import DataPlane, node_nat_ruleset
from podnet.linux.plan import plan_network
from podnet.semantics.nodenat import HostPort, IpMasq, host_port_for, host_ports
from podnet.sim.trace import Tracer
from tests.conftest import cluster_of

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
TWO_NODES = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 2\n"
NODE1, NODE2 = "192.168.1.11", "192.168.1.12"


def pod(name, node, ports="[]", host_network=False):
    return f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {node}
  hostNetwork: {str(host_network).lower()}
  containers: [{{name: c, image: {AGNHOST}, args: ["netexec", "--http-port=8080", "--udp-port=8080"],
                 ports: {ports}}}]
"""


MANIFESTS = (
    pod("anywhere", "node1", "[{containerPort: 8080, hostPort: 8088}]")
    + pod("udp", "node1", "[{containerPort: 8080, hostPort: 8089, protocol: UDP}]")
    + pod("at-node1", "node1", f"[{{containerPort: 8080, hostPort: 9090, hostIP: {NODE1}}}]")
    + pod("all-zeros", "node2", "[{containerPort: 8080, hostPort: 9090, hostIP: 0.0.0.0}]")
    # hostIPs that are not an address of the pod's node: the mapping is never reachable
    + pod("at-other-node", "node2", f"[{{containerPort: 8080, hostPort: 9091, hostIP: {NODE1}}}]")
    + pod("at-loopback", "node2", "[{containerPort: 8080, hostPort: 9092, hostIP: 127.0.0.1}]")
    + pod("client1", "node1") + pod("client2", "node2")
)
PROBES = [(8088, "TCP"), (8088, "UDP"), (8089, "UDP"), (8089, "TCP"), (9090, "TCP"), (9091, "TCP"),
          (9092, "TCP")]


class RecordingDataPlane(DataPlane):
    """The data plane with nft replaced by a recorder: what each node's kernel would be given."""

    def __init__(self, cluster):
        super().__init__(ClusterLayout("nodenat"), cluster)
        self.rulesets: dict[str, str] = {}

    def _nft(self, node: str, ruleset: str) -> None:
        self.rulesets[node] = ruleset


def kernel_dnat(ruleset: str, local: set[str], dst_ip: str, port: int, protocol: str) -> tuple[str, int] | None:
    """Where the node's portmap table sends a packet: `fib daddr type local jump hostports`, then
    the first rule of the hostports chain that matches."""
    if dst_ip not in local:
        return None
    chain = ruleset.split("chain hostports {", 1)[1].split("}", 1)[0]
    for line in filter(None, (line.strip() for line in chain.splitlines())):
        m = re.fullmatch(r"(?:ip daddr (\S+) )?(tcp|udp|sctp) dport (\d+) dnat to ([\d.]+):(\d+)", line)
        assert m, f"a rule this walker does not know: {line}"
        if (m[1] in (None, dst_ip)) and m[2] == protocol.lower() and int(m[3]) == port:
            return m[4], int(m[5])
    return None


def node_addresses(plan, node: str) -> set[str]:
    """The node's own addresses as the data plane's network plan gives them to the kernel."""
    state = plan.netns(plan.node(node).netns).state
    return {a.cidr.split("/")[0] for a in state.addresses}


@pytest.fixture(scope="module")
def world():
    cluster = cluster_of(MANIFESTS, TWO_NODES)
    dataplane = RecordingDataPlane(cluster)
    for p in sorted(cluster.of_kind("Pod"), key=lambda p: p.ref):
        dataplane.map_host_ports(p)
    return cluster, Tracer(cluster), dataplane.rulesets, plan_network(cluster)


def test_the_data_plane_maps_exactly_the_declared_host_ports(world):
    cluster, _, rulesets, _ = world
    assert sorted(rulesets) == ["node1", "node2"]
    ip = {p.name: p.status["podIP"] for p in cluster.of_kind("Pod")}
    assert f"ip daddr {NODE1} tcp dport 9090 dnat to {ip['at-node1']}:8080" in rulesets["node1"]
    assert f"    tcp dport 9090 dnat to {ip['all-zeros']}:8080" in rulesets["node2"]  # 0.0.0.0: any address
    assert f"ip daddr 127.0.0.1 tcp dport 9092 dnat to {ip['at-loopback']}:8080" in rulesets["node2"]


@pytest.mark.parametrize("port,protocol", PROBES)
@pytest.mark.parametrize("dst", [NODE1, NODE2])
def test_trace_from_outside_agrees_with_the_portmap_table(world, dst, port, protocol):
    cluster, tracer, rulesets, plan = world
    node = "node1" if dst == NODE1 else "node2"
    expected = kernel_dnat(rulesets[node], node_addresses(plan, node), dst, port, protocol)
    result = tracer.trace("external", f"{dst}:{port}", protocol=protocol)
    predicted = (result.destination["ip"], result.destination["port"]) if result.destination["pod"] else None
    assert predicted == expected


@pytest.mark.parametrize("port,protocol", PROBES)
@pytest.mark.parametrize("node", ["node1", "node2"])
def test_trace_from_a_pod_to_its_node_addresses_agrees_with_the_portmap_table(world, node, port, protocol):
    """A pod reaching its own node on any of the node's addresses (cni0, flannel.1, eth0)."""
    cluster, tracer, rulesets, plan = world
    local = node_addresses(plan, node)
    for dst in sorted(local):
        expected = kernel_dnat(rulesets[node], local, dst, port, protocol)
        result = tracer.trace(f"default/client{node[-1]}", f"{dst}:{port}", protocol=protocol)
        predicted = (result.destination["ip"], result.destination["port"]) if result.destination["pod"] else None
        assert predicted == expected, dst


def test_a_host_port_bound_to_a_host_ip_is_reachable_only_at_that_address(world):
    cluster, tracer, _, _ = world
    assert tracer.trace("external", f"{NODE1}:9090").destination["pod"] == "default/at-node1"
    for dst, port in ((NODE2, 9091), (NODE2, 9092)):
        r = tracer.trace("external", f"{dst}:{port}")
        assert r.verdict == "dropped" and r.destination["pod"] is None and "dnat" not in [h.action for h in r.hops]
    assert tracer.trace("external", f"{NODE1}:9091").destination["pod"] is None  # the pod is on node2


def test_host_network_pods_and_pods_without_an_address_have_no_mappings():
    cluster = cluster_of(pod("hostnet", "node1", "[{containerPort: 8080, hostPort: 8080}]", host_network=True),
                         TWO_NODES)
    assert host_ports(cluster.get("Pod", "default", "hostnet")) == []


@pytest.mark.parametrize("status, mapped", [
    ({"phase": "Running", "podIP": "10.244.1.50"}, True),
    ({"phase": "Pending"}, False),  # no address yet: nothing to DNAT to
    ({"phase": "Succeeded", "podIP": "10.244.1.50"}, False),  # finished: its sandbox and mapping are gone
    ({"phase": "Failed", "podIP": "10.244.1.50"}, False),
])
def test_only_a_running_pod_with_an_address_has_mappings(status, mapped):
    spec = {"nodeName": "node1", "containers": [{"name": "c", "image": "pause",
                                                  "ports": [{"containerPort": 80, "hostPort": 8088}]}]}
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec,
            "status": status}
    assert bool(host_ports(KubeObject("Pod", "default", "p", body))) is mapped


def test_the_first_mapping_that_matches_wins():
    first = HostPort("default/a", "10.244.1.2", 80, "TCP", 8080, NODE1)
    second = HostPort("default/b", "10.244.1.3", 80, "TCP", 8080)
    assert host_port_for([first, second], NODE1, 80, "TCP", {NODE1, "10.244.1.1"}) == first
    assert host_port_for([first, second], "10.244.1.1", 80, "TCP", {NODE1, "10.244.1.1"}) == second
    assert host_port_for([first, second], NODE2, 80, "TCP", {NODE1}) is None  # not the node's address


def kernel_masquerades(ruleset: str, local: set[str], src: str, dst: str) -> bool:
    """The node's ip-masq rule, walked as nft would: `ip saddr NET (ip daddr != NET)* masquerade`
    in POSTROUTING, which a packet for one of the node's own addresses never reaches."""
    if dst in local:
        return False
    rule = next(line.strip() for line in ruleset.splitlines() if line.strip().endswith("masquerade"))
    m = re.fullmatch(r"ip saddr (\S+)((?: ip daddr != \S+)*) masquerade", rule)
    assert m, rule
    exempt = [IPv4Network(net) for net in re.findall(r"!= (\S+)", m[2])]
    return IPv4Address(src) in IPv4Network(m[1]) and not any(IPv4Address(dst) in net for net in exempt)


@pytest.mark.parametrize("dst,where", [
    ("external", "to the LAN"),
    (NODE2, "to another node's address"),
    (NODE1, "to its own node's address: delivered locally, it never reaches POSTROUTING"),
    ("default/client2", "to a pod on another node"),
    ("default/anywhere", "to a pod on the same node"),
])
def test_ip_masq_in_trace_agrees_with_the_nat_table(world, dst, where):
    cluster, tracer, _, plan = world
    ruleset = node_nat_ruleset(IpMasq.for_pod_subnet(cluster.config.networking.pod_subnet))
    src = cluster.get("Pod", "default", "client1").status["podIP"]
    result = tracer.trace("default/client1", dst, 8080)
    snat = [h for h in result.hops if h.action == "snat"]
    assert bool(snat) == kernel_masquerades(ruleset, node_addresses(plan, "node1"), src,
                                                 result.destination["ip"]), where
    assert not IpMasq.for_pod_subnet(cluster.config.networking.pod_subnet).applies(src, "224.0.0.251")


def kernel_portmap_masquerades(ruleset: str, src_ip: str, dst_ip: str) -> bool:
    """The portmap table's POSTROUTING, walked as nft would for a packet it DNATed."""
    chain = ruleset.split("chain postrouting {", 1)[1].split("}", 1)[0]
    for line in filter(None, (line.strip() for line in chain.splitlines())):
        if line.startswith("type nat"):
            continue
        m = re.fullmatch(r"ip saddr (\S+) ip daddr (!= )?(\S+) masquerade", line)
        assert m, f"a rule this walker does not know: {line}"
        in_daddr = IPv4Address(dst_ip) in IPv4Network(m[3])
        if IPv4Address(src_ip) in IPv4Network(m[1]) and in_daddr != bool(m[2]):
            return True
    return False


@pytest.mark.parametrize("client, dst, port", [
    ("anywhere", NODE1, 8088),  # a pod reaching itself through its own hostPort: hairpin
    ("client1", NODE1, 8088),  # another pod on the node: keeps its address
    ("at-node1", NODE1, 8088),  # a pod reaching another pod's hostPort
])
def test_portmap_masquerade_in_trace_agrees_with_the_kernel(world, client, dst, port):
    cluster, tracer, rulesets, _ = world
    source, target = cluster.get("Pod", "default", client), cluster.get("Pod", "default", "anywhere")
    result = tracer.trace(f"default/{client}", f"{dst}:{port}")
    assert result.verdict == "delivered" and result.destination["pod"] == "default/anywhere"
    traced = [h for h in result.hops if h.action == "snat"]
    kernel = kernel_portmap_masquerades(rulesets["node1"], source.status["podIP"], target.status["podIP"])
    assert bool(traced) == kernel == (client == "anywhere")
    if traced:
        assert "hairpin" in traced[0].detail and "10.244.1.1" in traced[0].detail  # out via cni0


def test_a_departed_pods_connections_are_forgotten_on_every_node(world, monkeypatch):
    """conntrack entries from or to the address, on every node (Calico's Felix does the same): the
    NetworkPolicy tables accept established flows first, so a pod that gets the address next
    must not inherit the old pod's."""
    cluster, _, _, plan = world
    dataplane = RecordingDataPlane(cluster)
    dataplane.plan = plan
    ran = []
    monkeypatch.setattr("podnet.linux.dataplane.subprocess.run", lambda argv, **kw: ran.append(argv))
    dataplane.forget_connections("10.244.1.7")
    assert sorted(" ".join(argv) for argv in ran) == sorted(
        f"ip netns exec {ClusterLayout('nodenat').node_netns(n.name)} conntrack -D {flag} 10.244.1.7"
        for n in plan.nodes for flag in ("--src", "--dst"))
