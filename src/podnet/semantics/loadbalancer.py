"""Which node answers ARP for a LoadBalancer IP, as MetalLB's layer-2 mode decides it.

MetalLB's speaker announces a Service's address from one node at a time (layer2
`ShouldAnnounce`): with externalTrafficPolicy Local only nodes holding a ready endpoint are
eligible; with Cluster every node is, as long as the Service has a ready endpoint somewhere. Among
the eligible nodes each speaker computes the same ordering — a hash of node name and address —
and the first one announces, so every address has one owner and owners spread over the nodes.
The simulator's trace and the real data plane's announcer both ask this module.

podnet also announces a Service's externalIPs that lie on the LAN (standing for the route an
administrator would add towards them); other externalIPs are nobody's business on the LAN.
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address, IPv4Network

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.controlplane.nodes import NodeInfo
from podnet.semantics.services import ServiceTable


def announced_ips(svc: KubeObject, lan: IPv4Network) -> list[str]:
    """The addresses of a Service that some node answers ARP for on the LAN."""
    ips = fields.load_balancer_ips(svc) if svc.spec.get("type") == "LoadBalancer" else []
    ips += [ip for ip in svc.spec.get("externalIPs") or [] if IPv4Address(ip) in lan and ip not in ips]
    return ips


def announcing_node(cluster: Cluster, services: ServiceTable, svc: KubeObject, ip: str) -> NodeInfo | None:
    """The node that answers ARP for `ip` of `svc`, or None when no node is eligible."""
    ready_nodes = {b.node for port in svc.spec.get("ports") or [] for b in services.backends(svc, port) if b.ready}
    if svc.spec.get("externalTrafficPolicy") == "Local":
        eligible = [n for n in cluster.nodes if n.name in ready_nodes]
    else:
        eligible = list(cluster.nodes) if ready_nodes else []
    if not eligible:
        return None
    return min(eligible, key=lambda n: hashlib.sha256(f"{n.name}#{ip}".encode()).digest())


def announcements(cluster: Cluster, services: ServiceTable | None = None) -> dict[str, set[str]]:
    """node name → the addresses it announces (every node present, possibly with none)."""
    services = services or ServiceTable(cluster)
    lan = cluster.config.networking.lan_subnet
    out: dict[str, set[str]] = {n.name: set() for n in cluster.nodes}
    for svc in cluster.of_kind("Service"):
        for ip in announced_ips(svc, lan):
            node = announcing_node(cluster, services, svc, ip)
            if node is not None:
                out[node.name].add(ip)
    return out
