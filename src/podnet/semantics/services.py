"""What kube-proxy does with a packet addressed to a Service, as pure functions.

The proxy (nftables, iptables or userspace: same semantics) matches a destination against
every Service frontend — ClusterIP:port, <any node IP>:nodePort, LoadBalancer ingress IP:port,
externalIP:port — and DNATs to one endpoint chosen with equal probability among those the
traffic may use (kube-proxy's CategorizeEndpoints):
  - ready endpoints; if none, serving-and-terminating ones; if none, the packet is rejected
    (ICMP port unreachable / TCP reset) — `usable_endpoints`, the one rule for new connections;
  - internalTrafficPolicy Local (traffic from inside the cluster to the ClusterIP) and
    externalTrafficPolicy Local (traffic to NodePort / LoadBalancer / externalIPs) use only
    the endpoints on the node doing the translation, and drop when there are none;
  - pods reaching an external frontend of an eTP Local Service are sent to all endpoints
    (kube-proxy short-circuits in-cluster traffic so it does not black-hole);
  - sessionAffinity ClientIP pins a client IP to one endpoint for timeoutSeconds;
  - loadBalancerSourceRanges: traffic to a LoadBalancer IP from any other source is dropped
    (kube-proxy's firewall, checked before DNAT; in iptables mode only while the Service has
    endpoints, in nftables mode always).
Masquerade (SNAT to the node) happens for traffic not from the pod network to a ClusterIP,
for external traffic with policy Cluster, and for hairpin (an endpoint reaching itself).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, ip_address, ip_network
from typing import Protocol, TypeVar

from podnet.api import fields
from podnet.api.defaults import SESSION_AFFINITY_TIMEOUT
from podnet.api.names import parse_cidr
from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Frontend:
    service: KubeObject
    port: dict  # the Service's port entry
    kind: str  # "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalIP"
    ip: str  # the address matched (for NodePort: the node IP the packet was sent to)

    @property
    def external(self) -> bool:
        return self.kind != "ClusterIP"

    @property
    def describe(self) -> str:
        port = self.port.get("nodePort") if self.kind == "NodePort" else self.port.get("port")
        return f"{self.kind} {self.ip}:{port}/{fields.protocol(self.port)} of Service {self.service.ref}"


@dataclass(frozen=True)
class Backend:
    ip: str
    port: int
    pod: str | None  # "ns/name" when the endpoint is a pod
    node: str | None
    ready: bool
    serving: bool
    terminating: bool

    @property
    def name(self) -> str:
        return self.pod or f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Translation:
    frontend: Frontend
    candidates: tuple[Backend, ...]  # those the packet may be DNATed to, equal probability
    all_backends: tuple[Backend, ...]
    verdict: str  # "dnat" | "reject" | "drop"
    reason: str
    masquerade: str | None  # why SNAT to the node happens, or None
    affinity_timeout: int | None


class ServiceTable:
    """Every Service frontend of the cluster, indexed for constant-time dispatch (like
    kube-proxy's verdict map keyed by address . protocol . port)."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self._proxy_mode = cluster.config.networking.proxy_mode
        self._node_ips = {str(n.ip) for n in cluster.nodes}
        self._by_vip: dict[tuple[str, int, str], Frontend] = {}
        self._by_nodeport: dict[tuple[int, str], Frontend] = {}
        self._slices: dict[tuple[str, str], list[KubeObject]] = defaultdict(list)
        for s in cluster.of_kind("EndpointSlice"):
            self._slices[(s.namespace, s.labels.get(SERVICE_NAME_LABEL, ""))].append(s)
        for svc in cluster.of_kind("Service"):
            spec = svc.spec
            if spec.get("type") == "ExternalName":
                continue
            for port in spec.get("ports") or []:
                proto = fields.protocol(port)
                if cluster_ip := fields.cluster_ip(svc):
                    self._by_vip[(cluster_ip, int(port["port"]), proto)] = Frontend(svc, port, "ClusterIP", cluster_ip)
                if port.get("nodePort"):
                    self._by_nodeport[(int(port["nodePort"]), proto)] = Frontend(svc, port, "NodePort", "")
                for ip in fields.load_balancer_ips(svc):
                    self._by_vip[(ip, int(port["port"]), proto)] = Frontend(svc, port, "LoadBalancer", ip)
                for ip in spec.get("externalIPs") or []:
                    self._by_vip[(ip, int(port["port"]), proto)] = Frontend(svc, port, "ExternalIP", ip)
        self._virtual_ips = {key[0] for key in self._by_vip}
        self._service_by_ip = {key[0]: fe.service for key, fe in self._by_vip.items()}

    def frontend(self, ip: str, port: int, protocol: str, local_ips: frozenset[str] = frozenset()) -> Frontend | None:
        """The frontend a node's proxy matches: virtual IPs anywhere; NodePorts only on the
        node's own addresses (`local_ips`), as kube-proxy matches `fib daddr type local`."""
        found = self._by_vip.get((ip, port, protocol))
        if found is None and ip in local_ips:
            nodeport = self._by_nodeport.get((port, protocol))
            if nodeport is not None:
                found = Frontend(nodeport.service, nodeport.port, "NodePort", ip)
        return found

    def backends(self, svc: KubeObject, port: dict) -> list[Backend]:
        """Endpoints for one Service port, from its EndpointSlices (matched by port name)."""
        wanted_name = port.get("name") or ""
        protocol = fields.protocol(port)
        out = []
        for slice_ in self._slices.get((svc.namespace, svc.name), ()):
            for slice_port in slice_.body.get("ports") or []:
                if (slice_port.get("name") or "") != wanted_name or fields.protocol(slice_port) != protocol:
                    continue
                for endpoint in slice_.body.get("endpoints") or []:
                    ready = fields.endpoint_ready(endpoint)
                    ref = endpoint.get("targetRef") or {}
                    pod = f"{ref.get('namespace', svc.namespace)}/{ref['name']}" if ref.get("kind") == "Pod" else None
                    for address in endpoint.get("addresses") or []:
                        out.append(Backend(address, int(slice_port["port"]), pod, endpoint.get("nodeName"), ready,
                                           fields.endpoint_serving(endpoint), fields.endpoint_terminating(endpoint)))
        return sorted(out, key=lambda b: (IPv4Address(b.ip), b.port))

    def translate(self, frontend: Frontend, client_ip: str, via_node: str | None, origin: str) -> Translation:
        """The proxy on `via_node` handling a packet from client_ip to this frontend.

        origin: "pod" (from the pod network), "local" (from the node itself or a hostNetwork
        pod on it) or "external" (arrived from the LAN). kube-proxy masquerades everything that
        goes through an external frontend with policy Cluster, and non-pod traffic to a
        ClusterIP; with externalTrafficPolicy Local only traffic from outside is limited to the
        node's endpoints (pods and the node itself are short-circuited to all endpoints)."""
        svc, spec = frontend.service, frontend.service.spec
        backends = self.backends(svc, frontend.port)
        # iptables mode builds the firewall only while the Service has endpoints (its usesFWChain);
        # nftables mode always, so other sources are dropped rather than rejected when it has none
        if frontend.kind == "LoadBalancer" and (usable_endpoints(backends) or self._proxy_mode != "iptables"):
            node = self.cluster.node(via_node) if via_node else None
            allowed = firewall_sources(svc, str(node.ip) if node else None)
            if allowed and not source_allowed(client_ip, allowed):
                ranges = ", ".join(spec.get("loadBalancerSourceRanges") or [])
                return Translation(frontend, (), tuple(backends), "drop",
                                   f"{client_ip} is not in the loadBalancerSourceRanges ({ranges}): dropped by "
                                   "kube-proxy's firewall before DNAT", None, None)
        local_policy = None
        masquerade = None
        if frontend.external:
            if spec.get("externalTrafficPolicy") == "Local":
                if origin == "external":
                    local_policy = "externalTrafficPolicy: Local"
                elif origin == "local":
                    masquerade = "traffic from the node itself to an external frontend is masqueraded"
            else:
                masquerade = "externalTrafficPolicy: Cluster masquerades traffic to an external frontend"
        else:
            if spec.get("internalTrafficPolicy") == "Local" and origin != "external":
                local_policy = "internalTrafficPolicy: Local"
            if origin != "pod":
                masquerade = "traffic from outside the pod network to a ClusterIP is masqueraded"
        candidates = [b for b in backends if b.node == via_node] if local_policy else backends
        usable = usable_endpoints(candidates)
        if local_policy and not usable:
            return Translation(frontend, (), tuple(backends), "drop",
                               f"{local_policy} and no ready endpoint on {via_node}: dropped", masquerade, None)
        if not usable:
            return Translation(frontend, (), tuple(backends), "reject",
                               f"Service {svc.ref} has no ready endpoints: rejected (ICMP port unreachable / TCP reset)",
                               masquerade, None)
        timeout = affinity_timeout(spec)
        reason = f"{len(usable)} candidate endpoint{'s' if len(usable) != 1 else ''}, equal probability"
        if timeout:
            reason += f"; sessionAffinity ClientIP pins {client_ip} to one for {timeout}s"
        if local_policy:
            reason += f" ({local_policy}: only {via_node}'s endpoints)"
        return Translation(frontend, tuple(usable), tuple(backends), "dnat", reason, masquerade, timeout)

    def is_virtual_ip(self, ip: str) -> bool:
        """A ClusterIP, LoadBalancer IP or externalIP: kube-proxy rejects ports it does not serve."""
        return ip in self._virtual_ips

    def service_at(self, ip: str) -> KubeObject | None:
        return self._service_by_ip.get(ip)


def affinity_timeout(spec: dict) -> int | None:
    """How long sessionAffinity ClientIP pins a client to an endpoint, in seconds; None without
    affinity. The simulator's translation and every proxy renderer read it here."""
    if spec.get("sessionAffinity") != "ClientIP":
        return None
    client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
    return int(client_ip.get("timeoutSeconds") or SESSION_AFFINITY_TIMEOUT)


def firewall_sources(svc: KubeObject, node_ip: str | None) -> tuple[str, ...]:
    """The sources kube-proxy's firewall lets through to the LoadBalancer IPs of `svc` on the
    node with `node_ip`: its loadBalancerSourceRanges, and the LoadBalancer IPs themselves when
    a range holds the node's address (a node reaching a VIP-like load balancer loops back with
    the VIP as its source). Empty: no firewall. As kube-proxy parses them: sloppily
    ("010.0.0.0/8"), only the ranges of the proxy's IP family (IPv4 here); a /0 among them
    lets everyone in."""
    parsed = [parse_cidr(str(r).strip()) for r in svc.spec.get("loadBalancerSourceRanges") or []]
    ipv4 = [n for n in parsed if n is not None and n.version == 4]
    if not ipv4 or any(n.prefixlen == 0 for n in ipv4):
        return ()
    ranges = tuple(dict.fromkeys(str(n) for n in ipv4))
    if node_ip and source_allowed(node_ip, ranges):
        ranges += tuple(ip for ip in fields.load_balancer_ips(svc) if not source_allowed(ip, ranges))
    return ranges


def source_allowed(client_ip: str, sources: tuple[str, ...]) -> bool:
    address = ip_address(client_ip)
    return any(address in ip_network(source, strict=False) for source in sources)


class EndpointConditions(Protocol):
    """What the rule below reads of an endpoint: its EndpointSlice conditions."""

    @property
    def ready(self) -> bool: ...

    @property
    def serving(self) -> bool: ...

    @property
    def terminating(self) -> bool: ...


Endpoint = TypeVar("Endpoint", bound=EndpointConditions)


@dataclass(frozen=True)
class HealthCheck:
    """kube-proxy's answer on a Service's healthCheckNodePort on one node (pkg/proxy/healthcheck,
    service_health.go): a load balancer in front of the nodes asks it, so that traffic for an
    externalTrafficPolicy Local Service, which a node without a local endpoint drops, goes only
    to nodes that have one. Any path, any method: 200 with at least one local endpoint, else 503,
    and the JSON below. `local_endpoints` counts as kube-proxy's LocalReadyEndpoints does: the
    ready endpoints on the node, once per Service port (two ports, one pod: 2)."""

    namespace: str
    name: str
    port: int
    local_endpoints: int

    @property
    def status(self) -> int:
        return 200 if self.local_endpoints else 503

    def body(self) -> str:
        return ("{\n\t\"service\": {\n"
                f"\t\t\"namespace\": {json.dumps(self.namespace)},\n\t\t\"name\": {json.dumps(self.name)}\n\t}},\n"
                f"\t\"localEndpoints\": {self.local_endpoints},\n\t\"serviceProxyHealthy\": true\n}}")

    def describe(self) -> str:
        return (f"kube-proxy's health check for Service {self.namespace}/{self.name} answers {self.status} "
                f"({self.local_endpoints} local ready endpoint(s) on this node)")


def health_checks(cluster: Cluster, node: str, services: ServiceTable | None = None) -> list[HealthCheck]:
    """The health checks kube-proxy serves on `node`: one per Service with a healthCheckNodePort
    (type LoadBalancer with externalTrafficPolicy Local; the API server allocates the port)."""
    services = services or ServiceTable(cluster)
    out = []
    for svc in cluster.of_kind("Service"):
        port = svc.spec.get("healthCheckNodePort")
        if not port or svc.spec.get("type") != "LoadBalancer" or svc.spec.get("externalTrafficPolicy") != "Local":
            continue
        count = sum(1 for service_port in svc.spec.get("ports") or []
                    for backend in services.backends(svc, service_port) if backend.node == node and backend.ready)
        out.append(HealthCheck(svc.namespace, svc.name, int(port), count))
    return out


def usable_endpoints(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """The endpoints that receive new connections — the one rule for it, used by kube-proxy's
    rules (proxy/model.py), `trace` (ServiceTable.translate) and the ingress controller's
    upstreams (semantics/ingress.py), so none of them sends new traffic where another would not.

    kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go, KEP-1669 ProxyTerminatingEndpoints):
    the ready ones; when none is ready, those still serving while terminating (so scaling down or
    a rolling update with no ready pod left does not drop connections); otherwise none. A pod
    being deleted is published `ready: false, serving: <its readiness>, terminating: true` by the
    EndpointSlice controller, so it leaves the ready set the moment it starts terminating, while
    the connections it already has keep their conntrack entry. An endpoint published ready while
    terminating (a Service with publishNotReadyAddresses) stays ready, as kube-proxy reads it."""
    endpoints = list(endpoints)
    return ([e for e in endpoints if e.ready]
            or [e for e in endpoints if e.serving and e.terminating])


def affinity_choice(candidates: tuple[Backend, ...], client_ip: str, service_ref: str) -> Backend:
    """A stable pick for a client, standing for the proxy's random choice (or its affinity)."""
    digest = hashlib.sha256(f"{service_ref}|{client_ip}".encode()).digest()
    return candidates[int.from_bytes(digest[:4], "big") % len(candidates)]
