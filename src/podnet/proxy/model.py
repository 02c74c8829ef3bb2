"""What one node's kube-proxy must program: every Service port with the endpoints each kind of
traffic may use there, as pure data.

This is kube-proxy's ServicePort/Endpoint view after CategorizeEndpoints, derived from the
simulator's ServiceTable so the kernel and `podnet trace` agree by construction:
  - cluster_endpoints: the usable endpoints of the whole cluster (ready, or serving-terminating
    when none is ready) — what ClusterIP traffic uses, and what pods reaching an external
    frontend of an externalTrafficPolicy Local Service are short-circuited to;
  - local_endpoints: the usable endpoints on this node, chosen among this node's own (so a
    node's terminating endpoint is used when it has no ready one, as kube-proxy does);
  - internal_local / external_local: internalTrafficPolicy / externalTrafficPolicy Local;
  - serving_ips: the endpoints still serving, whose UDP flows keep their conntrack entries;
  - firewall_sources: who may reach the load_balancer_ips (loadBalancerSourceRanges, plus the
    LoadBalancer IPs when a range holds this node's address); empty: anyone;
  - health_check: what kube-proxy's health check server answers on the Service's
    healthCheckNodePort on this node (proxy/healthcheck.py serves it).
Headless and ExternalName Services have no ServicePort: kube-proxy ignores them.
Renderers (nftables, iptables, userspace) turn a list of these into rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from podnet.api import fields
from podnet.controlplane import Cluster
from podnet.semantics.services import (HealthCheck, ServiceTable, affinity_timeout, firewall_sources, health_checks,
                                       usable_endpoints)

MASQ_MARK = "0x4000"  # kube-proxy's --masquerade-bit 14, the same in every proxy mode


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    pod: str | None = None  # "ns/name"

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    name: str
    port_name: str  # "" for a single unnamed port
    protocol: str  # "TCP" | "UDP" | "SCTP"
    cluster_ip: str | None
    port: int
    node_port: int | None = None
    external_ips: tuple[str, ...] = ()  # LoadBalancer ingress IPs, then spec.externalIPs
    cluster_endpoints: tuple[Endpoint, ...] = ()
    local_endpoints: tuple[Endpoint, ...] = ()
    internal_local: bool = False
    external_local: bool = False
    affinity_timeout: int | None = None  # sessionAffinity ClientIP
    load_balancer_ips: tuple[str, ...] = ()  # the LoadBalancer ingress IPs among external_ips
    firewall_sources: tuple[str, ...] = ()
    # the addresses of the endpoints that still serve (ready, or serving while terminating): a
    # UDP flow to one of them keeps its conntrack entry, as kube-proxy clears only those of
    # endpoints that stopped serving — a terminating pod answers the flows it already has
    serving_ips: tuple[str, ...] = ()
    # what kube-proxy answers on the Service's healthCheckNodePort on this node (the same object
    # for each port of the Service); None: the Service has none
    health_check: HealthCheck | None = None

    @property
    def service(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def port_ref(self) -> str:
        """kube-proxy's ServicePortName as it prints it: ns/name:port (`ns/name` when unnamed)."""
        return f"{self.service}:{self.port_name}" if self.port_name else self.service

    @property
    def proto(self) -> str:
        return self.protocol.lower()

    @property
    def internal_endpoints(self) -> tuple[Endpoint, ...]:
        """What traffic to the ClusterIP uses."""
        return self.local_endpoints if self.internal_local else self.cluster_endpoints

    @property
    def external_endpoints(self) -> tuple[Endpoint, ...]:
        """What traffic from outside to a NodePort, LoadBalancer IP or externalIP uses."""
        return self.local_endpoints if self.external_local else self.cluster_endpoints

    @property
    def has_external(self) -> bool:
        return bool(self.node_port or self.external_ips)

    @property
    def uses_cluster_chain(self) -> bool:
        """Whether some traffic is spread over all the cluster's endpoints: ClusterIP traffic
        with policy Cluster, external traffic with policy Cluster, or pods and the node
        short-circuited from an external frontend of a Local Service."""
        return bool(self.cluster_endpoints) and (not self.internal_local or self.has_external)

    @property
    def uses_firewall(self) -> bool:
        """kube-proxy's nftables usesFWChain: source ranges and LoadBalancer IPs (its iptables
        mode also wants an endpoint: that renderer checks it)."""
        return bool(self.firewall_sources and self.load_balancer_ips)

    @property
    def uses_local_chain(self) -> bool:
        return bool(self.local_endpoints) and (self.internal_local or (self.external_local and self.has_external))


def service_ports(cluster: Cluster, node: str, services: ServiceTable | None = None) -> list[ServicePort]:
    """Every Service port the proxy on `node` programs, in a stable order."""
    services = services or ServiceTable(cluster)
    node_info = cluster.node(node)
    checks = {(c.namespace, c.name): c for c in health_checks(cluster, node, services)}
    out = []
    for svc in cluster.of_kind("Service"):
        spec = svc.spec
        if spec.get("type") == "ExternalName" or not fields.cluster_ip(svc):
            continue
        lb_ips = tuple(fields.load_balancer_ips(svc) if spec.get("type") == "LoadBalancer" else [])
        external_ips = lb_ips + tuple(ip for ip in spec.get("externalIPs") or [] if ip not in lb_ips)
        sources = firewall_sources(svc, str(node_info.ip) if node_info else None) if lb_ips else ()
        timeout = affinity_timeout(spec)
        for port in spec.get("ports") or []:
            backends = services.backends(svc, port)
            cluster_eps = usable_endpoints(backends)
            local_eps = usable_endpoints([b for b in backends if b.node == node])
            out.append(ServicePort(
                namespace=svc.namespace, name=svc.name, port_name=port.get("name") or "",
                protocol=fields.protocol(port), cluster_ip=fields.cluster_ip(svc), port=int(port["port"]),
                node_port=int(port["nodePort"]) if port.get("nodePort") else None,
                external_ips=external_ips,
                cluster_endpoints=tuple(Endpoint(b.ip, b.port, b.pod) for b in cluster_eps),
                local_endpoints=tuple(Endpoint(b.ip, b.port, b.pod) for b in local_eps),
                internal_local=spec.get("internalTrafficPolicy") == "Local",
                external_local=spec.get("externalTrafficPolicy") == "Local",
                affinity_timeout=timeout, load_balancer_ips=lb_ips, firewall_sources=sources,
                serving_ips=tuple(sorted({b.ip for b in backends if b.serving}, key=IPv4Address)),
                health_check=checks.get((svc.namespace, svc.name)),
            ))
    return out
