"""What a network policy rule matches, shared by NetworkPolicy (podnet.semantics.networkpolicy)
and AdminNetworkPolicy (podnet.semantics.adminpolicy): the parties of a connection
(`Endpoint`: a pod, a node or any address), address blocks (`IPBlock`) and ports (`PortMatch`,
named ports resolved on the destination pod). Rule numbers refer to docs/specs/networkpolicy.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Union

from podnet.api import fields
from podnet.api import labels as label_selectors
from podnet.api.labels import Selector
from podnet.api.objects import KubeObject
from podnet.controlplane.pods import NamedPort, named_ports, serving_containers

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

PROTOCOLS = ("TCP", "UDP", "SCTP")  # what a policy's ports name
ICMP = "ICMP"  # an echo request (ping): no port, so only a rule without ports takes it
PACKET_PROTOCOLS = (*PROTOCOLS, ICMP)  # what a packet that policies judge may carry
INGRESS, EGRESS = "ingress", "egress"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
_EMPTY: Mapping[str, str] = MappingProxyType({})


def normalize_protocol(protocol: str) -> str:
    value = str(protocol or "TCP").upper()
    if value not in PROTOCOLS:
        raise ValueError(f"unsupported protocol {protocol!r}: NetworkPolicy knows TCP, UDP and SCTP")
    return value


def normalize_packet_protocol(protocol: str) -> str:
    """A packet's protocol: a policy port's, or ICMP (port 0), which no port entry matches: a
    rule with `ports` never takes it, a rule without takes every protocol (the API's "all ports";
    Calico, Cilium and podnet's nft rules alike)."""
    value = str(protocol or "TCP").upper()
    if value not in PACKET_PROTOCOLS:
        raise ValueError(f"unsupported protocol {protocol!r}: a packet is TCP, UDP, SCTP or ICMP")
    return value


# ---------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    """One party of a connection: a pod, a node, or any other address.

    kind is "pod", "node" or "external". Equality is identity (kind, namespace, name, ip); the
    label maps and ports ride along for matching.
    """

    kind: str
    ip: IPAddress | None
    namespace: str = ""
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY, compare=False)
    namespace_labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY, compare=False)
    named_ports: tuple[NamedPort, ...] = field(default=(), compare=False)
    node: str | None = field(default=None, compare=False)  # the node a pod runs on; a node's own name
    host_network: bool = field(default=False, compare=False)

    @property
    def is_policy_pod(self) -> bool:
        """A pod that policies select and selector peers match (not a hostNetwork pod)."""
        return self.kind == "pod" and not self.host_network

    @property
    def is_node_address(self) -> bool:
        """The node's own network identity: a node, or a hostNetwork pod on it."""
        return self.kind == "node" or (self.kind == "pod" and self.host_network)

    @property
    def ref(self) -> str:
        if self.kind == "pod":
            return f"{self.namespace}/{self.name}"
        if self.kind == "node":
            return f"node/{self.name}"
        return self.name or str(self.ip)

    def describe(self) -> str:
        if self.kind == "pod":
            extra = f", hostNetwork on {self.node}" if self.host_network else ""
            return f"pod {self.ref} ({self.ip or 'no IP'}{extra})"
        if self.kind == "node":
            return f"node {self.name} ({self.ip})"
        return f"{self.name} {self.ip}" if self.name and self.name != str(self.ip) else f"address {self.ip}"

    def ports_named(self, name: str, protocol: str) -> frozenset[int]:
        """The container ports called `name` for `protocol` (rule 30); none on non-policy pods."""
        if not self.is_policy_pod:
            return frozenset()
        return frozenset(p.port for p in self.named_ports if p.name == name and p.protocol == protocol)

    def __str__(self) -> str:
        return self.ref


def pod_named_ports(pod: KubeObject) -> tuple[NamedPort, ...]:
    """Every named container port of the pod's containers (and restartable init containers)."""
    found = set(named_ports(serving_containers(pod)))
    return tuple(sorted(found, key=lambda p: (p.name, p.protocol, p.port)))


def pod_endpoint(pod: KubeObject, namespace_labels: Mapping[str, str]) -> Endpoint:
    address = fields.pod_ip(pod)
    return Endpoint(
        kind="pod",
        ip=ipaddress.ip_address(address) if address else None,
        namespace=pod.namespace,
        name=pod.name,
        labels=MappingProxyType(dict(pod.labels)),
        namespace_labels=namespace_labels,
        named_ports=pod_named_ports(pod),
        node=pod.spec.get("nodeName"),
        host_network=bool(pod.spec.get("hostNetwork")),
    )


def has_network(pod: KubeObject) -> bool:
    """A pod that can take part in connections: it has an IP and has not terminated."""
    return bool(fields.pod_ip(pod)) and not fields.is_terminal(pod)




@dataclass(frozen=True)
class IPBlock:
    """`cidr` minus every `except` (rule 23)."""

    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    def contains(self, ip: IPAddress | None) -> bool:
        if ip is None or ip.version != self.cidr.version or ip not in self.cidr:
            return False
        return not any(ip in e for e in self.excepts)

    def networks(self) -> list[IPNetwork]:
        """`cidr` minus every `except` as disjoint networks, sorted (what a data plane's address
        set holds: an address is in one of them exactly when `contains` says so)."""
        remaining: list[IPNetwork] = [self.cidr]
        for hole in self.excepts:
            kept: list[IPNetwork] = []
            for net in remaining:
                if hole.version != net.version or not net.overlaps(hole):
                    kept.append(net)
                elif hole.subnet_of(net):  # type: ignore[arg-type]
                    kept.extend(net.address_exclude(hole))  # type: ignore[arg-type]
                # else: net lies inside the hole, and goes
            remaining = kept
        return sorted(remaining, key=lambda n: (n.version, n.network_address, n.prefixlen))

    def __str__(self) -> str:
        if not self.excepts:
            return f"ipBlock {self.cidr}"
        return f"ipBlock {self.cidr} except {', '.join(map(str, self.excepts))}"




@dataclass(frozen=True)
class PortMatch:
    """One NetworkPolicyPort (rules 27-31): a protocol and optionally a port, a range or a name.

    port None: every port of `protocol`. end_port: the inclusive end of a range. name: a named
    port, resolved on the DESTINATION pod of the connection (rule 30).
    """

    protocol: str = "TCP"
    port: int | None = None
    end_port: int | None = None
    name: str | None = None

    def matches(self, port: int, protocol: str, destination: Endpoint) -> bool:
        if protocol != self.protocol:
            return False
        if self.name is not None:
            return port in destination.ports_named(self.name, protocol)
        if self.port is None:
            return True
        return self.port <= port <= (self.end_port if self.end_port is not None else self.port)

    def __str__(self) -> str:
        if self.name is not None:
            return f"{self.protocol}/{self.name}"
        if self.port is None:
            return f"{self.protocol}/*"
        if self.end_port is not None and self.end_port != self.port:
            return f"{self.protocol}/{self.port}-{self.end_port}"
        return f"{self.protocol}/{self.port}"




def selector_of(value: Any) -> Selector:
    return label_selectors.from_label_selector(value if isinstance(value, Mapping) else {})


def network_of(text: str) -> IPNetwork:
    return ipaddress.ip_network(str(text).strip(), strict=False)  # Go's ParseCIDR masks host bits


def compile_port(entry: Mapping[str, Any]) -> PortMatch:
    protocol = normalize_protocol(fields.protocol(entry))  # rule 27
    port = entry.get("port")
    if port is None:
        return PortMatch(protocol)
    if isinstance(port, str) and not port.isdigit():
        return PortMatch(protocol, name=port)
    end_port = entry.get("endPort")
    return PortMatch(protocol, int(port), int(end_port) if end_port is not None else None)
