"""The linux plan, without root: golden plans for 3 nodes (vxlan, host-gw), name bounds,
determinism, and agreement with what the simulator says the network looks like."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from podnet.host.layout import ClusterLayout
from podnet.linux.plan import PlanError, link_mac, plan_network
from podnet.naming import IFNAMSIZ
from podnet.semantics.routing import Addressing
from tests.conftest import cluster_of


def config(name: str = "golden", nodes: int | str = 3, overlay: str = "vxlan") -> str:
    return (f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: {nodes}\n"
            f"networking: {{overlay: {overlay}}}\n")


def plan_of(yaml: str = "", **kw):
    return plan_network(cluster_of(yaml, config(**kw)))


# The whole network of a 3-node cluster, as `ip` would list it. A change in what podnet builds
# shows up here as a readable diff.
GOLDEN_VXLAN = """\
cluster golden: overlay vxlan, LAN 192.168.1.0/24 (MTU 1500), pods 10.244.0.0/16

netns podnet-golden.lan  # the LAN 192.168.1.0/24: bridge lan0, a switch without an address
  sysctl net.ipv4.ip_forward = 0
  sysctl net.bridge.bridge-nf-call-iptables = 0 (if present)
  link lo loopback up
  link lan0 bridge mtu 1500 up
  link to-external veth mtu 1500 master lan0 up peer podnet-golden.external/eth0
  link to-node1 veth mtu 1500 master lan0 up peer podnet-golden.node-node1/eth0
  link to-node2 veth mtu 1500 master lan0 up peer podnet-golden.node-node2/eth0
  link to-node3 veth mtu 1500 master lan0 up peer podnet-golden.node-node3/eth0

netns podnet-golden.external  # the world outside the cluster, at 192.168.1.100 on the LAN
  sysctl net.ipv4.ip_forward = 0
  sysctl net.ipv4.conf.all.rp_filter = 2
  sysctl net.ipv4.conf.default.rp_filter = 2
  link lo loopback up
  link eth0 veth mtu 1500 mac 9e:72:66:b8:c1:0c up peer podnet-golden.lan/to-external
  address 192.168.1.100/24 dev eth0

netns podnet-golden.node-node1  # node node1: 192.168.1.11 on the LAN, podCIDR 10.244.1.0/24 on cni0, overlay vxlan
  sysctl net.ipv4.ip_forward = 1
  sysctl net.ipv4.conf.all.rp_filter = 2
  sysctl net.ipv4.conf.default.rp_filter = 2
  sysctl net.bridge.bridge-nf-call-iptables = 1 (if present)
  link lo loopback up
  link eth0 veth mtu 1500 mac 0e:83:9c:19:44:06 up peer podnet-golden.lan/to-node1
  link cni0 bridge mtu 1450 mac ca:2c:71:0d:49:0b up
  link flannel.1 vxlan id 1 port 8472 local 192.168.1.11 dev eth0 nolearning mtu 1450 mac fe:63:8d:72:8e:f8 up
  address 192.168.1.11/24 dev eth0
  address 10.244.1.1/24 dev cni0
  address 10.244.1.0/32 dev flannel.1
  route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink
  route 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink
  neighbour 10.244.2.0 lladdr 7e:d5:7f:2a:1d:c9 dev flannel.1 permanent
  neighbour 10.244.3.0 lladdr 86:32:9a:ac:6a:95 dev flannel.1 permanent
  fdb 7e:d5:7f:2a:1d:c9 dst 192.168.1.12 dev flannel.1 self permanent
  fdb 86:32:9a:ac:6a:95 dst 192.168.1.13 dev flannel.1 self permanent

netns podnet-golden.node-node2  # node node2: 192.168.1.12 on the LAN, podCIDR 10.244.2.0/24 on cni0, overlay vxlan
  sysctl net.ipv4.ip_forward = 1
  sysctl net.ipv4.conf.all.rp_filter = 2
  sysctl net.ipv4.conf.default.rp_filter = 2
  sysctl net.bridge.bridge-nf-call-iptables = 1 (if present)
  link lo loopback up
  link eth0 veth mtu 1500 mac 8e:9c:51:c4:96:ad up peer podnet-golden.lan/to-node2
  link cni0 bridge mtu 1450 mac 2a:9d:e9:bb:79:07 up
  link flannel.1 vxlan id 1 port 8472 local 192.168.1.12 dev eth0 nolearning mtu 1450 mac 7e:d5:7f:2a:1d:c9 up
  address 192.168.1.12/24 dev eth0
  address 10.244.2.1/24 dev cni0
  address 10.244.2.0/32 dev flannel.1
  route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
  route 10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink
  neighbour 10.244.1.0 lladdr fe:63:8d:72:8e:f8 dev flannel.1 permanent
  neighbour 10.244.3.0 lladdr 86:32:9a:ac:6a:95 dev flannel.1 permanent
  fdb fe:63:8d:72:8e:f8 dst 192.168.1.11 dev flannel.1 self permanent
  fdb 86:32:9a:ac:6a:95 dst 192.168.1.13 dev flannel.1 self permanent

netns podnet-golden.node-node3  # node node3: 192.168.1.13 on the LAN, podCIDR 10.244.3.0/24 on cni0, overlay vxlan
  sysctl net.ipv4.ip_forward = 1
  sysctl net.ipv4.conf.all.rp_filter = 2
  sysctl net.ipv4.conf.default.rp_filter = 2
  sysctl net.bridge.bridge-nf-call-iptables = 1 (if present)
  link lo loopback up
  link eth0 veth mtu 1500 mac 9e:17:29:70:49:a3 up peer podnet-golden.lan/to-node3
  link cni0 bridge mtu 1450 mac de:98:05:f3:13:0d up
  link flannel.1 vxlan id 1 port 8472 local 192.168.1.13 dev eth0 nolearning mtu 1450 mac 86:32:9a:ac:6a:95 up
  address 192.168.1.13/24 dev eth0
  address 10.244.3.1/24 dev cni0
  address 10.244.3.0/32 dev flannel.1
  route 10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink
  route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink
  neighbour 10.244.1.0 lladdr fe:63:8d:72:8e:f8 dev flannel.1 permanent
  neighbour 10.244.2.0 lladdr 7e:d5:7f:2a:1d:c9 dev flannel.1 permanent
  fdb fe:63:8d:72:8e:f8 dst 192.168.1.11 dev flannel.1 self permanent
  fdb 7e:d5:7f:2a:1d:c9 dst 192.168.1.12 dev flannel.1 self permanent
"""

GOLDEN_HOST_GW = """\
cluster golden: overlay host-gw, LAN 192.168.1.0/24 (MTU 1500), pods 10.244.0.0/16

netns podnet-golden.lan  # the LAN 192.168.1.0/24: bridge lan0, a switch without an address
  sysctl net.ipv4.ip_forward = 0
  sysctl net.bridge.bridge-nf-call-iptables = 0 (if present)
  link lo loopback up
  link lan0 bridge mtu 1500 up
  link to-external veth mtu 1500 master lan0 up peer podnet-golden.external/eth0
  link to-node1 veth mtu 1500 master lan0 up peer podnet-golden.node-node1/eth0
  link to-node2 veth mtu 1500 master lan0 up peer podnet-golden.node-node2/eth0
  link to-node3 veth mtu 1500 master lan0 up peer podnet-golden.node-node3/eth0

netns podnet-golden.external  # the world outside the cluster, at 192.168.1.100 on the LAN
  sysctl net.ipv4.ip_forward = 0
  sysctl net.ipv4.conf.all.rp_filter = 2
  sysctl net.ipv4.conf.default.rp_filter = 2
  link lo loopback up
  link eth0 veth mtu 1500 mac 9e:72:66:b8:c1:0c up peer podnet-golden.lan/to-external
  address 192.168.1.100/24 dev eth0

netns podnet-golden.node-node1  # node node1: 192.168.1.11 on the LAN, podCIDR 10.244.1.0/24 on cni0, overlay host-gw
  sysctl net.ipv4.ip_forward = 1
  sysctl net.ipv4.conf.all.rp_filter = 2
  sysctl net.ipv4.conf.default.rp_filter = 2
  sysctl net.bridge.bridge-nf-call-iptables = 1 (if present)
  link lo loopback up
  link eth0 veth mtu 1500 mac 0e:83:9c:19:44:06 up peer podnet-golden.lan/to-node1
  link cni0 bridge mtu 1500 mac ca:2c:71:0d:49:0b up
  address 192.168.1.11/24 dev eth0
  address 10.244.1.1/24 dev cni0
  route 10.244.2.0/24 via 192.168.1.12 dev eth0
  route 10.244.3.0/24 via 192.168.1.13 dev eth0

netns podnet-golden.node-node2  # node node2: 192.168.1.12 on the LAN, podCIDR 10.244.2.0/24 on cni0, overlay host-gw
  sysctl net.ipv4.ip_forward = 1
  sysctl net.ipv4.conf.all.rp_filter = 2
  sysctl net.ipv4.conf.default.rp_filter = 2
  sysctl net.bridge.bridge-nf-call-iptables = 1 (if present)
  link lo loopback up
  link eth0 veth mtu 1500 mac 8e:9c:51:c4:96:ad up peer podnet-golden.lan/to-node2
  link cni0 bridge mtu 1500 mac 2a:9d:e9:bb:79:07 up
  address 192.168.1.12/24 dev eth0
  address 10.244.2.1/24 dev cni0
  route 10.244.1.0/24 via 192.168.1.11 dev eth0
  route 10.244.3.0/24 via 192.168.1.13 dev eth0

netns podnet-golden.node-node3  # node node3: 192.168.1.13 on the LAN, podCIDR 10.244.3.0/24 on cni0, overlay host-gw
  sysctl net.ipv4.ip_forward = 1
  sysctl net.ipv4.conf.all.rp_filter = 2
  sysctl net.ipv4.conf.default.rp_filter = 2
  sysctl net.bridge.bridge-nf-call-iptables = 1 (if present)
  link lo loopback up
  link eth0 veth mtu 1500 mac 9e:17:29:70:49:a3 up peer podnet-golden.lan/to-node3
  link cni0 bridge mtu 1500 mac de:98:05:f3:13:0d up
  address 192.168.1.13/24 dev eth0
  address 10.244.3.1/24 dev cni0
  route 10.244.1.0/24 via 192.168.1.11 dev eth0
  route 10.244.2.0/24 via 192.168.1.12 dev eth0
"""

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  nodeName: node2
  containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  nodeName: node1
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet, namespace: default}
spec:
  nodeName: node3
  hostNetwork: true
  containers: [{name: c, image: busybox}]
"""


@pytest.mark.parametrize("overlay, golden", [("vxlan", GOLDEN_VXLAN), ("host-gw", GOLDEN_HOST_GW)])
def test_golden_plan_for_three_nodes(overlay, golden):
    assert plan_of(overlay=overlay).render(pods=False) == golden


def test_the_same_input_gives_the_same_plan():
    assert plan_of() == plan_of()
    assert plan_of().render() == plan_of().render()


def test_macs_are_derived_from_cluster_and_node_and_differ_between_clusters():
    a, b = plan_of(name="one"), plan_of(name="two")
    vtep = lambda plan, node: plan.netns(plan.layout.node_netns(node)).state.link("flannel.1").mac
    assert vtep(a, "node1") == link_mac("one", "node/node1", "flannel.1")
    assert vtep(a, "node1") != vtep(b, "node1")
    assert vtep(a, "node1") != vtep(a, "node2")
    first_octet = int(vtep(a, "node1").split(":")[0], 16)
    assert first_octet & 0x02 and not first_octet & 0x01  # locally administered, unicast


def test_interface_names_fit_in_15_characters_and_never_collide():
    nodes = "\n" + "".join(f"  - name: worker-with-a-rather-long-name-{i}\n" for i in range(1, 5))
    plan = plan_of(nodes=nodes)
    for ns in plan.namespaces:
        names = [link.name for link in ns.state.links]
        assert len(set(names)) == len(names), ns.name
        assert all(len(name) <= IFNAMSIZ for name in names), names
    ports = [link.name for link in plan.netns(plan.layout.lan_netns).state.links if link.name.startswith("to-")]
    assert len(ports) == 5  # external and four nodes, all different although the names share a long prefix


def test_every_namespace_is_named_after_the_cluster():
    plan = plan_of(name="c1")
    layout = ClusterLayout("c1")
    assert [ns.name for ns in plan.namespaces] == [
        "podnet-c1.lan", "podnet-c1.external", "podnet-c1.node-node1", "podnet-c1.node-node2", "podnet-c1.node-node3"]
    assert all(layout.owns_netns(ns.name) for ns in plan.namespaces)


@pytest.mark.parametrize("overlay", ["vxlan", "host-gw"])
def test_no_namespace_has_a_default_route(overlay):
    for ns in plan_of(overlay=overlay).namespaces:
        assert all(IPv4Network(route.dst).prefixlen > 0 for route in ns.state.routes), ns.name


def test_the_lan_is_a_switch_without_an_address():
    plan = plan_of()
    lan = plan.netns(plan.layout.lan_netns).state
    assert lan.addresses == () and lan.routes == ()
    ports = [link for link in lan.links if link.kind == "veth"]
    assert {p.master for p in ports} == {"lan0"}
    assert {p.peer.name for p in ports} == {"eth0"}


def test_vxlan_device_is_flannels():
    plan = plan_network(cluster_of("", config()), mtu=9000)
    node = plan.netns(plan.layout.node_netns("node2")).state
    vxlan = node.link("flannel.1")
    assert (vxlan.vxlan.vni, vxlan.vxlan.port, vxlan.vxlan.local, vxlan.vxlan.dev, vxlan.vxlan.learning) == (
        1, 8472, "192.168.1.12", "eth0", False)
    assert vxlan.mtu == 8950 and node.link("cni0").mtu == 8950 and node.link("eth0").mtu == 9000
    assert "address 10.244.2.0/32 dev flannel.1" in node.lines()
    assert plan.node("node2").pod_mtu == 8950


def test_host_gw_pods_keep_the_full_mtu_and_there_is_no_vxlan_device():
    plan = plan_of(overlay="host-gw")
    node = plan.netns(plan.layout.node_netns("node1")).state
    assert node.link("flannel.1") is None and node.neighbours == () and node.fdb == ()
    assert plan.node("node1").pod_mtu == 1500


@pytest.mark.parametrize("overlay", ["vxlan", "host-gw"])
def test_routes_between_nodes_are_the_ones_the_simulator_traces(overlay):
    """The differential contract: semantics/routing.py says how a packet crosses from one
    node's pod network to another's; the plan must have exactly that route."""
    cluster = cluster_of(PODS, config(overlay=overlay))
    plan = plan_network(cluster)
    addressing = Addressing(cluster)
    web = addressing.pod_party(addressing.pods["default/web"])
    for node in cluster.nodes:
        if node.name == web.node.name:
            continue
        hops, dropped = addressing.deliver(node, web, web.ip)
        assert dropped is None
        traced = next(h.detail for h in hops if h.action == "route")
        routes = plan.netns(plan.layout.node_netns(node.name)).state.routes
        planned = next(r for r in routes if r.dst == str(web.node.pod_cidr))
        assert traced.startswith(str(planned).removeprefix("route ")), (traced, planned)


def test_the_simulator_names_the_devices_and_addresses_the_plan_builds():
    """One copy of the network's constants (semantics/topology): the hops the trace shows for a
    crossing name the plan's bridge and VXLAN device with its VNI and port, and the addresses
    the simulator takes as a node's own (hostPorts answer on them) are the plan's."""
    cluster = cluster_of(PODS, config())
    plan = plan_network(cluster)
    addressing = Addressing(cluster)
    web = addressing.pod_party(addressing.pods["default/web"])
    other = next(n for n in cluster.nodes if n.name != web.node.name)
    hops, _ = addressing.deliver(other, web, web.ip)
    text = " ".join(h.detail for h in hops)
    for node in cluster.nodes:
        state = plan.netns(plan.layout.node_netns(node.name)).state
        vxlan = next(link for link in state.links if link.kind == "vxlan")
        bridge = next(link for link in state.links if link.kind == "bridge")
        assert {a.cidr.split("/")[0] for a in state.addresses} == addressing.local_addresses(node)
        if node.name == other.name:
            assert f"VNI {vxlan.vxlan.vni}" in text and f"UDP {vxlan.vxlan.port}" in text
            assert f"dev {vxlan.name}" in text
        if node.name == web.node.name:
            assert f"is on {bridge.name}" in text
    host_gw = cluster_of(PODS, config(overlay="host-gw"))
    plan, addressing = plan_network(host_gw), Addressing(host_gw)
    for node in host_gw.nodes:
        state = plan.netns(plan.layout.node_netns(node.name)).state
        assert {a.cidr.split("/")[0] for a in state.addresses} == addressing.local_addresses(node)


def test_pods_are_listed_per_node_for_the_cni_plugin():
    plan = plan_network(cluster_of(PODS, config()))
    layout = ClusterLayout("golden")
    web = next(p for p in plan.node("node2").pods if p.name == "web")
    assert web.netns == layout.pod_netns("default", "web")
    assert web.host_veth == layout.pod_host_veth("default", "web")
    assert web.address.startswith("10.244.2.") and web.address.endswith("/24")
    assert (web.gateway, web.mtu, web.ifname) == ("10.244.2.1", 1450, "eth0")
    assert all(p.name != "hostnet" for node in plan.nodes for p in node.pods)  # the node's own namespace
    assert "default/web on node2" in plan.render()


def test_node_sysctls():
    plan = plan_of()
    node = plan.netns(plan.layout.node_netns("node1")).state
    values = {s.key_name: (s.value, s.optional) for s in node.sysctls}
    assert values == {
        "net.ipv4.ip_forward": ("1", False),
        "net.ipv4.conf.all.rp_filter": ("2", False),
        "net.ipv4.conf.default.rp_filter": ("2", False),
        "net.bridge.bridge-nf-call-iptables": ("1", True),
    }


def test_a_plan_the_kernel_would_refuse_is_refused_early():
    from podnet.linux import plan as plan_module

    good = plan_of()
    lan = good.namespaces[0]
    bad_state = lan.state.__class__(lan.state.name, links=lan.state.links + lan.state.links[:1])
    bad = good.__class__(good.cluster, good.overlay, good.lan_subnet, good.pod_subnet, good.mtu,
                         (lan.__class__(lan.role, lan.about, bad_state),) + good.namespaces[1:], good.nodes)
    with pytest.raises(PlanError, match="two links have the same name"):
        plan_module._validate(bad)
