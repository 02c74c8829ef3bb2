"""Addresses and routes: who owns an IP, and which way a packet goes between them.

The network podnet builds (DESIGN.md): a LAN (192.168.1.0/24) with the nodes and the external
client; on each node a cni0 bridge holding the gateway of its podCIDR, pods on veths; between
nodes the overlay — flannel-style VXLAN (VNI 1, UDP 8472, device flannel.1) or host-gw (a route
per other node's podCIDR via its LAN IP). Nothing routes out of the cluster: no default route
leads anywhere (the sandbox rule), so other destinations are unreachable.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.controlplane.nodes import NodeInfo
from podnet.naming import host_veth_name
from podnet.semantics.topology import BRIDGE, VXLAN_DEVICE, VXLAN_PORT, VXLAN_VNI


@dataclass(frozen=True)
class Party:
    """One end of a connection: a pod, a node, the external client, or a bare IP."""

    kind: str  # "pod" | "node" | "external" | "ip"
    ip: str
    name: str  # "ns/pod", "node/NAME", "external", or the IP
    pod: KubeObject | None = None
    node: NodeInfo | None = None  # the node a pod runs on, or the node itself

    @property
    def host_network(self) -> bool:
        return bool(self.pod is not None and self.pod.spec.get("hostNetwork"))


@dataclass(frozen=True)
class Hop:
    at: str
    action: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"at": self.at, "action": self.action, "detail": self.detail}


class Addressing:
    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        net = cluster.config.networking
        self.pod_subnet: IPv4Network = net.pod_subnet
        self.lan: IPv4Network = net.lan_subnet
        self.external_ip = str(net.external_ip)
        self.overlay = net.overlay
        self.nodes = {n.name: n for n in cluster.nodes}
        self.node_by_ip = {str(n.ip): n for n in cluster.nodes}
        self.pod_by_ip: dict[str, KubeObject] = {}
        self.pods: dict[str, KubeObject] = {}
        for pod in cluster.of_kind("Pod"):
            self.pods[pod.ref] = pod
            ip = fields.pod_ip(pod)
            if ip and not pod.spec.get("hostNetwork"):
                self.pod_by_ip[ip] = pod

    def pod_party(self, pod: KubeObject) -> Party:
        node = self.nodes.get(pod.spec.get("nodeName") or "")
        return Party("pod", fields.pod_ip(pod), pod.ref, pod, node)

    def node_party(self, node: NodeInfo) -> Party:
        return Party("node", str(node.ip), f"node/{node.name}", None, node)

    def external_party(self) -> Party:
        return Party("external", self.external_ip, "external")

    def party_for_ip(self, ip: str) -> Party:
        if ip in self.pod_by_ip:
            return self.pod_party(self.pod_by_ip[ip])
        if ip in self.node_by_ip:
            return self.node_party(self.node_by_ip[ip])
        if ip == self.external_ip:
            return self.external_party()
        return Party("ip", ip, ip)

    def local_addresses(self, node: NodeInfo) -> frozenset[str]:
        """The node's own addresses: eth0 on the LAN, cni0 (its pods' gateway) and, with the
        VXLAN overlay, flannel.1 (its podCIDR's network address)."""
        own = {str(node.ip), str(node.gateway)}
        if self.overlay == "vxlan":
            own.add(str(node.pod_cidr.network_address))
        return frozenset(own)

    # ---- hops -------------------------------------------------------------------------------

    def leave_pod(self, src: Party) -> list[Hop]:
        pod, node = src.pod, src.node
        if src.host_network:
            return [Hop(f"node/{node.name}", "send", f"{src.name} uses the node's network namespace (hostNetwork)")]
        gateway = node.gateway
        veth = host_veth_name(pod.namespace, pod.name)
        return [
            Hop(src.name, "send", f"eth0 {src.ip}/{node.pod_cidr.prefixlen} → default via {gateway}"),
            Hop(f"node/{node.name}", "bridge", f"in on {veth} (the pod's veth peer) on bridge {BRIDGE} ({gateway})"),
        ]

    def deliver(self, from_node: NodeInfo | None, dst: Party, src_ip: str) -> tuple[list[Hop], str | None]:
        """Hops from the node holding the packet (None: on the LAN, e.g. from external) to dst.

        Returns the hops and, when it cannot get there, the reason it is dropped."""
        hops: list[Hop] = []
        if dst.kind == "pod" and not dst.host_network:
            target = dst.node
            if from_node is None:
                return hops, (f"{dst.ip} is in the pod network; nothing on the LAN routes there "
                              "(pods are reached from outside through NodePort or LoadBalancer Services)")
            if target.name != from_node.name:
                hops += self._cross(from_node, target, dst.ip)
            veth = host_veth_name(dst.pod.namespace, dst.pod.name)
            hops.append(Hop(f"node/{target.name}", "bridge", f"{dst.ip} is on {BRIDGE} ({target.pod_cidr}) → out {veth}"))
            hops.append(Hop(dst.name, "receive", f"in on eth0 {dst.ip}"))
            return hops, None
        if dst.kind in ("node", "pod"):  # a node, or a hostNetwork pod (the node's IP)
            target = dst.node
            if from_node is not None and target.name == from_node.name:
                hops.append(Hop(f"node/{target.name}", "local", f"{dst.ip} is this node's own address"))
            else:
                where = f"node/{from_node.name}" if from_node else "LAN"
                hops.append(Hop(where, "route", f"{dst.ip} is on the LAN {self.lan} → eth0 of node/{target.name}"))
            if dst.kind == "pod":
                hops.append(Hop(dst.name, "receive", f"in the node's network namespace (hostNetwork), {dst.ip}"))
            return hops, None
        if dst.kind == "external" or IPv4Address(dst.ip) in self.lan:
            where = f"node/{from_node.name}" if from_node else "LAN"
            hops.append(Hop(where, "route", f"{dst.ip} is on the LAN {self.lan} → out eth0"))
            if dst.kind == "external":
                hops.append(Hop("external", "receive", f"the client outside the cluster ({dst.ip})"))
                return hops, None
            return hops, f"nothing on the LAN answers at {dst.ip}"
        if IPv4Address(dst.ip) in self.pod_subnet:
            return hops, f"{dst.ip} is in the pod network but no pod has that address"
        return hops, (f"no route to {dst.ip}: it is outside the cluster, and podnet clusters have no "
                      "default route out (the sandbox rule)")

    def _cross(self, from_node: NodeInfo, to_node: NodeInfo, dst_ip: str) -> list[Hop]:
        if self.overlay == "host-gw":
            return [
                Hop(f"node/{from_node.name}", "route", f"{to_node.pod_cidr} via {to_node.ip} dev eth0 (host-gw)"),
                Hop(f"node/{to_node.name}", "forward", f"in on eth0 from {from_node.ip}, for {dst_ip}"),
            ]
        return [
            Hop(f"node/{from_node.name}", "route", f"{to_node.pod_cidr} via {to_node.pod_cidr.network_address} dev {VXLAN_DEVICE} onlink"),
            Hop(f"node/{from_node.name}", "encapsulate",
                f"VXLAN VNI {VXLAN_VNI}: outer {from_node.ip} → {to_node.ip} UDP {VXLAN_PORT} "
                f"(static FDB/neighbour entry for node/{to_node.name})"),
            Hop(f"node/{to_node.name}", "decapsulate", f"in on {VXLAN_DEVICE}, inner packet for {dst_ip}"),
        ]
