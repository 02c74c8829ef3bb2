"""The network of a cluster as plain data: which namespaces, links, addresses, routes,
neighbour and FDB entries and sysctls it has. Pure: a Cluster in, a NetworkPlan out, no I/O.

The shape (DESIGN.md, seeds 002/003, semantics/routing.py):

    podnet-<c>-lan        lan0 (a bridge, no address: the LAN is a switch, not a router)
                          to-<node> / to-external: veth ports of lan0
    podnet-<c>-external   eth0 192.168.1.100/24 (the world outside the cluster)
    podnet-<c>-node-<n>   eth0 <node IP>/<LAN prefix> (peer of to-<n>), ip_forward on
                          cni0 <podCIDR .1>/<mask> (pods are attached here by the CNI plugin)
                          vxlan:   flannel.1 (VNI 1, UDP 8472, local <node IP>, dev eth0,
                                   nolearning, MTU − 50, <podCIDR .0>/32) and per other node
                                   route <podCIDR> via <its .0> dev flannel.1 onlink,
                                   neighbour <its .0> lladdr <its flannel.1 MAC> permanent,
                                   fdb <its flannel.1 MAC> dst <its node IP>
                          host-gw: per other node route <podCIDR> via <its node IP> dev eth0

No namespace has a default route: nothing leads out of the cluster (the sandbox rule).
MACs that other nodes must know (flannel.1) — and, for stable ARP tables, every address-
carrying link — are derived from the cluster and node names, so a plan is reproducible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network

from podnet.api import fields
from podnet.controlplane import Cluster
from podnet.host.layout import ClusterLayout
from podnet.linux.netlink import Address, FdbEntry, Link, Neighbour, NetnsState, Route, Sysctl, VethPeer, Vxlan
from podnet.naming import IFNAMSIZ
from podnet.semantics.topology import (
    BRIDGE,
    DEFAULT_MTU,
    LAN_BRIDGE,
    NODE_UPLINK,
    POD_IFNAME,
    VXLAN_DEVICE,
    VXLAN_OVERHEAD,
    VXLAN_PORT,
    VXLAN_VNI,
)

EXTERNAL = "external"

# Loose reverse-path filtering: a packet is dropped only if its source is unreachable from
# this namespace at all. Strict mode (1) works for the symmetric paths of this topology, but
# breaks as soon as a reply may leave by another interface than the request came in (NodePort
# to a pod on another node, a pod answering through the overlay); flannel deployments run with
# 0 or 2. Set explicitly because a new namespace inherits the host's conf/all and conf/default
# (net.core.devconf_inherit_init_net), and the result must not depend on the host.
RP_FILTER_LOOSE = "2"


@dataclass(frozen=True)
class PodAttachment:
    """One pod to put on its node's bridge: what the CNI bridge plugin gets from its NetConf
    and arguments. The plan lists them; attaching is the CNI plugin's job (build's `pods`)."""

    namespace: str
    name: str
    netns: str  # the pod's network namespace (layout.pod_netns)
    host_veth: str  # the node-side end of the pod's veth, a port of cni0
    ifname: str  # inside the pod
    address: str  # "10.244.1.5/24"
    gateway: str  # the node's cni0 address
    mtu: int


@dataclass(frozen=True)
class NodePlan:
    """A node's part of the plan, with what a pod attacher needs to know about the node."""

    name: str
    index: int
    netns: str
    ip: str
    pod_cidr: str
    gateway: str
    bridge: str  # cni0
    uplink: str  # eth0
    pod_mtu: int  # MTU for pod veths (and cni0): the uplink's, less the overlay's overhead
    pods: tuple[PodAttachment, ...] = ()


@dataclass(frozen=True)
class NetnsPlan:
    role: str  # "lan" | "external" | "node"
    about: str  # one line for humans
    state: NetnsState

    @property
    def name(self) -> str:
        return self.state.name


@dataclass(frozen=True)
class NetworkPlan:
    cluster: str
    overlay: str  # "vxlan" | "host-gw"
    lan_subnet: str
    pod_subnet: str
    mtu: int  # of the LAN (the underlay)
    namespaces: tuple[NetnsPlan, ...]  # in build order: lan, external, nodes by index
    nodes: tuple[NodePlan, ...]

    @property
    def layout(self) -> ClusterLayout:
        return ClusterLayout(self.cluster)

    def netns(self, name: str) -> NetnsPlan:
        for ns in self.namespaces:
            if ns.name == name:
                return ns
        raise KeyError(name)

    def node(self, name: str) -> NodePlan:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def render(self, pods: bool = True) -> str:
        """The whole plan as text, for people and golden tests (pods: also list the pods)."""
        lines = [f"cluster {self.cluster}: overlay {self.overlay}, LAN {self.lan_subnet} (MTU {self.mtu}), "
                 f"pods {self.pod_subnet}"]
        for ns in self.namespaces:
            lines.append("")
            lines.append(f"netns {ns.name}  # {ns.about}")
            lines.extend(f"  {line}" for line in ns.state.lines())
        attachments = [(node, pod) for node in self.nodes for pod in node.pods] if pods else []
        if attachments:
            lines.append("")
            lines.append("pods  # attached to their node's bridge by the CNI plugin, not by build")
        for node, pod in attachments:
            lines.append(f"  {pod.namespace}/{pod.name} on {node.name}: {pod.address} via {pod.gateway} "
                         f"(netns {pod.netns}, {pod.host_veth} on {node.bridge}, MTU {pod.mtu})")
        return "\n".join(lines) + "\n"


class PlanError(ValueError):
    pass


def link_mac(cluster: str, owner: str, ifname: str) -> str:
    """A stable, locally administered unicast MAC for one link of one cluster."""
    digest = bytearray(hashlib.sha256(f"podnet\0{cluster}\0{owner}\0{ifname}".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def plan_network(cluster: Cluster, mtu: int = DEFAULT_MTU) -> NetworkPlan:
    config = cluster.config
    net = config.networking
    layout = ClusterLayout(config.name)
    lan = net.lan_subnet
    overlay = net.overlay
    if overlay not in ("vxlan", "host-gw"):
        raise PlanError(f"overlay {overlay!r} is not supported (vxlan, host-gw)")
    pod_mtu = mtu - VXLAN_OVERHEAD if overlay == "vxlan" else mtu
    nodes = sorted(cluster.nodes, key=lambda n: n.index)

    def vtep_mac(node_name: str) -> str:
        return link_mac(config.name, f"node/{node_name}", VXLAN_DEVICE)

    # -- the LAN: a bridge and one port per member --------------------------------------------
    members = [(EXTERNAL, layout.external_netns)] + [(n.name, layout.node_netns(n.name)) for n in nodes]
    lan_links = [Link("lo", "loopback"), Link(LAN_BRIDGE, "bridge", mtu=mtu)]
    lan_links += [Link(layout.lan_port(member), "veth", mtu=mtu, master=LAN_BRIDGE,
                       peer=VethPeer(netns, NODE_UPLINK)) for member, netns in members]
    lan_ns = NetnsPlan("lan", f"the LAN {lan}: bridge {LAN_BRIDGE}, a switch without an address", NetnsState(
        layout.lan_netns,
        links=tuple(lan_links),
        sysctls=(Sysctl("net.ipv4.ip_forward", "0"),
                 # the LAN is a plain switch: bridged frames do not visit this namespace's iptables
                 Sysctl("net.bridge.bridge-nf-call-iptables", "0", optional=True)),
    ))

    # -- the external client ------------------------------------------------------------------
    external_ip = net.external_ip
    ext_ns = NetnsPlan(EXTERNAL, f"the world outside the cluster, at {external_ip} on the LAN", NetnsState(
        layout.external_netns,
        links=(Link("lo", "loopback"),
               Link(NODE_UPLINK, "veth", mtu=mtu, mac=link_mac(config.name, EXTERNAL, NODE_UPLINK),
                    peer=VethPeer(layout.lan_netns, layout.lan_port(EXTERNAL)))),
        addresses=(Address(NODE_UPLINK, f"{external_ip}/{lan.prefixlen}"),),
        sysctls=_base_sysctls(forward=False),
    ))

    # -- nodes --------------------------------------------------------------------------------
    pods_by_node = _pods_by_node(cluster, layout, pod_mtu)
    node_nss, node_plans = [], []
    for node in nodes:
        name = layout.node_netns(node.name)
        owner = f"node/{node.name}"
        links = [
            Link("lo", "loopback"),
            Link(NODE_UPLINK, "veth", mtu=mtu, mac=link_mac(config.name, owner, NODE_UPLINK),
                 peer=VethPeer(layout.lan_netns, layout.lan_port(node.name))),
            # an explicit MAC, so the bridge's address does not change as pods come and go
            Link(BRIDGE, "bridge", mtu=pod_mtu, mac=link_mac(config.name, owner, BRIDGE)),
        ]
        addresses = [Address(NODE_UPLINK, f"{node.ip}/{lan.prefixlen}"),
                     Address(BRIDGE, f"{node.gateway}/{node.pod_cidr.prefixlen}")]
        routes, neighbours, fdb = [], [], []
        others = [n for n in nodes if n.name != node.name]
        if overlay == "vxlan":
            links.append(Link(VXLAN_DEVICE, "vxlan", mtu=mtu - VXLAN_OVERHEAD, mac=vtep_mac(node.name),
                              vxlan=Vxlan(VXLAN_VNI, VXLAN_PORT, str(node.ip), NODE_UPLINK)))
            # flannel gives flannel.1 the podCIDR's network address, so traffic the node itself
            # sends across the overlay has a source the other nodes route back through it
            addresses.append(Address(VXLAN_DEVICE, f"{node.pod_cidr.network_address}/32"))
            for other in others:
                vtep = str(other.pod_cidr.network_address)
                routes.append(Route(str(other.pod_cidr), VXLAN_DEVICE, via=vtep, onlink=True))
                neighbours.append(Neighbour(VXLAN_DEVICE, vtep, vtep_mac(other.name)))
                fdb.append(FdbEntry(VXLAN_DEVICE, vtep_mac(other.name), str(other.ip)))
        else:
            for other in others:
                routes.append(Route(str(other.pod_cidr), NODE_UPLINK, via=str(other.ip)))
        sysctls = _base_sysctls(forward=True) + (
            # kube-proxy and NetworkPolicy need bridged pod traffic to pass the node's netfilter
            Sysctl("net.bridge.bridge-nf-call-iptables", "1", optional=True),
        )
        about = (f"node {node.name}: {node.ip} on the LAN, podCIDR {node.pod_cidr} on {BRIDGE}, "
                 f"overlay {overlay}")
        node_nss.append(NetnsPlan("node", about, NetnsState(
            name, links=tuple(links), addresses=tuple(addresses), routes=tuple(routes),
            neighbours=tuple(neighbours), fdb=tuple(fdb), sysctls=sysctls)))
        node_plans.append(NodePlan(
            node.name, node.index, name, str(node.ip), str(node.pod_cidr), str(node.gateway), BRIDGE,
            NODE_UPLINK, pod_mtu, tuple(pods_by_node.get(node.name, ()))))

    plan = NetworkPlan(config.name, overlay, str(lan), str(net.pod_subnet), mtu,
                       (lan_ns, ext_ns, *node_nss), tuple(node_plans))
    _validate(plan)
    return plan


def _base_sysctls(forward: bool) -> tuple[Sysctl, ...]:
    return (
        Sysctl("net.ipv4.ip_forward", "1" if forward else "0"),
        Sysctl("net.ipv4.conf.all.rp_filter", RP_FILTER_LOOSE),
        Sysctl("net.ipv4.conf.default.rp_filter", RP_FILTER_LOOSE),
    )


def _pods_by_node(cluster: Cluster, layout: ClusterLayout, pod_mtu: int) -> dict[str, list[PodAttachment]]:
    by_node: dict[str, list[PodAttachment]] = {}
    nodes = {n.name: n for n in cluster.nodes}
    for pod in sorted(cluster.of_kind("Pod"), key=lambda p: (p.namespace, p.name)):
        node = nodes.get(pod.spec.get("nodeName") or "")
        ip = fields.pod_ip(pod)
        if node is None or not ip or pod.spec.get("hostNetwork"):
            continue
        by_node.setdefault(node.name, []).append(PodAttachment(
            pod.namespace, pod.name, layout.pod_netns(pod.namespace, pod.name),
            layout.pod_host_veth(pod.namespace, pod.name), POD_IFNAME, f"{ip}/{node.pod_cidr.prefixlen}",
            str(node.gateway), pod_mtu))
    return by_node


def _validate(plan: NetworkPlan) -> None:
    """What the kernel would refuse later, refused now with a readable reason."""
    problems = []
    names = [ns.name for ns in plan.namespaces]
    if len(set(names)) != len(names):
        problems.append(f"two namespaces have the same name: {sorted(n for n in names if names.count(n) > 1)}")
    for ns in plan.namespaces:
        if len(ns.name) > 255:
            problems.append(f"namespace name too long: {ns.name}")
        links = [link.name for link in ns.state.links]
        if len(set(links)) != len(links):
            problems.append(f"{ns.name}: two links have the same name")
        for name in links:
            if len(name) > IFNAMSIZ:
                problems.append(f"{ns.name}: interface name {name!r} is longer than {IFNAMSIZ}")
        for route in ns.state.routes:
            if IPv4Network(route.dst).prefixlen == 0:
                problems.append(f"{ns.name}: a default route ({route}) would lead out of the cluster")
    macs = [link.mac for ns in plan.namespaces for link in ns.state.links if link.mac]
    if len(set(macs)) != len(macs):
        problems.append("two links have the same MAC")
    for node in plan.nodes:
        for pod in node.pods:
            if IPv4Interface(pod.address).network != IPv4Network(node.pod_cidr):
                problems.append(f"pod {pod.namespace}/{pod.name}: {pod.address} is not in {node.pod_cidr}")
    if problems:
        raise PlanError("; ".join(problems))
