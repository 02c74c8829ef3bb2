"""The node's own NAT, apart from kube-proxy's: hostPorts (CNI portmap) and flannel's ip-masq.

One copy of each rule for both planes: the simulator's trace asks these functions what a node
does to a packet, and the data plane renders the same objects into its nftables tables
(linux/dataplane.py), so the two cannot drift apart.

hostPort, as the CNI portmap plugin does it (containernetworking/plugins, meta/portmap): a
packet for one of the node's own addresses (`fib daddr type local`) on the hostPort and
protocol is DNATed to the pod's IP and containerPort, whether it arrives from outside or is
sent by the node itself. A hostIP narrows that to one address: the mapping is reachable only
at that address (an unset hostIP, or 0.0.0.0, means every address of the node). hostNetwork
pods are not mapped: their containers listen on the node's own ports.

ip-masq, as flannel's `--ip-masq` does it: pod traffic leaving the pod network is SNATed to
the address of the interface it leaves by; traffic between pods keeps its addresses, and so
does multicast.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_network

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.controlplane.pods import declared_host_ports


@dataclass(frozen=True)
class HostPort:
    """One hostPort mapping of one pod."""

    pod: str  # "ns/name"
    pod_ip: str
    host_port: int
    protocol: str  # "TCP" | "UDP" | "SCTP"
    container_port: int
    host_ip: str = ""  # "": every address of the node

    def matches(self, dst_ip: str, port: int, protocol: str, local: Collection[str]) -> bool:
        """Whether a packet for dst_ip:port/protocol on a node whose own addresses are `local`
        is DNATed by this mapping."""
        if port != self.host_port or protocol != self.protocol or dst_ip not in local:
            return False
        return not self.host_ip or dst_ip == self.host_ip

    def describe(self) -> str:
        at = f" on {self.host_ip}" if self.host_ip else ""
        return f"hostPort {self.host_port}/{self.protocol}{at} → {self.pod} {self.pod_ip}:{self.container_port}"


def host_ports(pod: KubeObject) -> list[HostPort]:
    """The pod's hostPort mappings, in declaration order (none for a hostNetwork pod, a pod
    without an address, or one that has finished: its sandbox, and so its mapping, is gone)."""
    pod_ip = fields.pod_ip(pod)
    if pod.spec.get("hostNetwork") or not pod_ip or fields.is_terminal(pod):
        return []
    return [HostPort(pod.ref, pod_ip, d.host_port, d.protocol, d.container_port, d.host_ip)
            for d in declared_host_ports(pod)]


def node_host_ports(pods: Iterable[KubeObject], node: str) -> list[HostPort]:
    """Every mapping of the pods on `node`, in the order the node's portmap table has them
    (by pod reference): the first that matches a packet wins."""
    on_node = sorted((p for p in pods if p.spec.get("nodeName") == node), key=lambda p: p.ref)
    return [m for pod in on_node for m in host_ports(pod)]


def host_port_for(mappings: Iterable[HostPort], dst_ip: str, port: int, protocol: str,
                  local: Collection[str]) -> HostPort | None:
    """The mapping that DNATs a packet for dst_ip:port/protocol on the node, if any."""
    return next((m for m in mappings if m.matches(dst_ip, port, protocol, local)), None)


LOOPBACK = IPv4Network("127.0.0.0/8")


def portmap_masquerade(mapping: HostPort, src_ip: str) -> str | None:
    """Why portmap masquerades a packet it DNATed to `mapping`, or None. A pod reaching its own
    hostPort (hairpin: the reply would come from itself to itself, not from the node address
    it asked) and the node reaching a hostPort on 127.0.0.1 (route_localnet: a loopback source
    cannot leave on cni0) both get the node's address as their source."""
    if src_ip == mapping.pod_ip:
        return "a pod reaching its own hostPort (CNI portmap hairpin)"
    if IPv4Address(src_ip) in LOOPBACK:
        return "from the node's loopback to a pod (CNI portmap)"
    return None


@dataclass(frozen=True)
class IpMasq:
    """flannel's ip-masq rule for a cluster: traffic from the pod network to anywhere but the
    pod network (or a multicast group) is masqueraded."""

    source: IPv4Network  # the pod network
    exempt: tuple[IPv4Network, ...]  # destinations that keep the pod's address

    @classmethod
    def for_pod_subnet(cls, pod_subnet: IPv4Network) -> IpMasq:
        return cls(pod_subnet, (pod_subnet, ip_network("224.0.0.0/4")))

    def applies(self, src_ip: str, dst_ip: str) -> bool:
        if IPv4Address(src_ip) not in self.source:
            return False
        destination = IPv4Address(dst_ip)
        return not any(destination in net for net in self.exempt)
