"""Service addresses: ClusterIP, NodePort and LoadBalancer IP allocation, and spec defaults.

The API server splits the ClusterIP range (and the NodePort range) into a lower static band,
kept for addresses users ask for, and an upper dynamic band it prefers for automatic choices;
it picks randomly there. podnet picks at a hash of the Service's name within the dynamic band,
probing onwards on collision: addresses look like a real cluster's and stay put when other
Services come and go. Requested addresses are honoured first; a conflict is an error, as with
the API server ("provided IP is already allocated").
"""

from __future__ import annotations

import hashlib
from ipaddress import IPv4Address
from typing import Any, Callable

from podnet.api import fields
from podnet.api import defaults as api_defaults
from podnet.api.objects import KubeObject
from podnet.api.problems import FieldPath
from podnet.config import Networking
from podnet.controlplane.defaults import default

SERVICE_TYPES_WITH_NODEPORTS = ("NodePort", "LoadBalancer")


def _ipv4(text: str) -> IPv4Address | None:
    try:
        return IPv4Address(text)
    except ValueError:
        return None  # not an IPv4 address: this cluster is single-stack IPv4


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def static_band_size(total: int, minimum: int, divisor: int, maximum: int) -> int:
    """k8s calculateRangeOffset: min(max(minimum, total/divisor), maximum)."""
    return min(max(minimum, total // divisor), maximum)


class BandAllocator:
    """Integers in [first, last]; explicit requests anywhere, automatic ones from the upper band."""

    def __init__(self, first: int, last: int, static_band: int):
        self.first, self.last = first, last
        self.dynamic_first = min(first + static_band, last)
        self.used: set[int] = set()

    def reserve(self, value: int) -> bool:
        if value in self.used:
            return False
        self.used.add(value)
        return True

    def allocate(self, key: str) -> int | None:
        for low, high in ((self.dynamic_first, self.last), (self.first, self.dynamic_first - 1)):
            span = high - low + 1
            if span <= 0:
                continue
            start = _hash(key) % span
            for step in range(span):
                value = low + (start + step) % span
                if value not in self.used:
                    self.used.add(value)
                    return value
        return None


def apply_service_defaults(svc: KubeObject) -> None:
    """SetDefaults_Service and the API server's allocation-independent defaults."""
    if svc.body.get("spec") is None:
        svc.body["spec"] = {}
    spec = svc.body["spec"]
    stype = default(spec, "type", api_defaults.SERVICE_TYPE)
    if default(spec, "sessionAffinity", api_defaults.SESSION_AFFINITY) == "ClientIP":
        config = default(default(spec, "sessionAffinityConfig", {}), "clientIP", {})
        default(config, "timeoutSeconds", api_defaults.SESSION_AFFINITY_TIMEOUT)
    if stype != "ExternalName":
        default(spec, "ipFamilies", list(api_defaults.IP_FAMILIES))
        default(spec, "ipFamilyPolicy", api_defaults.IP_FAMILY_POLICY)
        default(spec, "internalTrafficPolicy", api_defaults.TRAFFIC_POLICY)
    if stype in SERVICE_TYPES_WITH_NODEPORTS:
        default(spec, "externalTrafficPolicy", api_defaults.TRAFFIC_POLICY)
    if stype == "LoadBalancer":
        default(spec, "allocateLoadBalancerNodePorts", api_defaults.ALLOCATE_LOAD_BALANCER_NODE_PORTS)
    ports = spec.get("ports") or []
    for i, port in enumerate(ports):
        port = ports[i] = dict(port)
        default(port, "protocol", fields.DEFAULT_PROTOCOL)
        default(port, "targetPort", port.get("port"))


ErrorSink = Callable[[KubeObject, FieldPath, str], None]


def allocate_cluster_ips(services: list[KubeObject], net: Networking, error: ErrorSink) -> None:
    subnet = net.service_subnet
    first, last = int(subnet.network_address) + 1, int(subnet.broadcast_address) - 1
    band = static_band_size(last - first + 1, 16, 16, 256)
    pool = BandAllocator(first, last, band)
    automatic = []
    for svc in services:  # requested addresses first, so they always win
        spec = svc.spec
        if spec.get("type") == "ExternalName":
            spec.pop("clusterIP", None)
            continue
        wanted = spec.get("clusterIP") or ""
        if wanted == "None":
            spec["clusterIPs"] = ["None"]
            continue
        if not wanted:
            automatic.append(svc)
            continue
        address = _ipv4(wanted)
        if address is None or address not in subnet or not (first <= int(address) <= last):
            error(svc, ("spec", "clusterIP"),
                  f"Invalid value: \"{wanted}\": provided IP is not in the valid range. The range of valid IPs is {subnet}")
        elif not pool.reserve(int(address)):
            error(svc, ("spec", "clusterIP"), f"Invalid value: \"{wanted}\": provided IP is already allocated")
        spec["clusterIPs"] = [wanted]
    for svc in automatic:
        value = pool.allocate(f"{svc.namespace}/{svc.name}")
        if value is None:
            error(svc, ("spec", "clusterIP"), f"Internal error: failed to allocate a serviceIP: range {subnet} is full")
            continue
        svc.spec["clusterIP"] = str(IPv4Address(value))
        svc.spec["clusterIPs"] = [svc.spec["clusterIP"]]


def allocate_node_ports(services: list[KubeObject], net: Networking, error: ErrorSink) -> None:
    low, high = net.node_port_range
    band = static_band_size(high - low + 1, 16, 32, 128)
    pool = BandAllocator(low, high, band)
    automatic: list[tuple[KubeObject, int | None]] = []
    for svc in services:
        spec = svc.spec
        if spec.get("type") not in SERVICE_TYPES_WITH_NODEPORTS:
            continue
        wants_ports = spec.get("type") == "NodePort" or spec.get("allocateLoadBalancerNodePorts") is not False
        for i, port in enumerate(spec.get("ports") or []):
            requested = port.get("nodePort")
            if requested:
                if not (low <= requested <= high):
                    error(svc, ("spec", "ports", i, "nodePort"),
                          f"Invalid value: {requested}: provided port is not in the valid range. "
                          f"The range of valid ports is {low}-{high}")
                elif not _same_service_reuse(spec, i) and not pool.reserve(requested):
                    error(svc, ("spec", "ports", i, "nodePort"), f"Invalid value: {requested}: provided port is already allocated")
            elif wants_ports:
                automatic.append((svc, i))
        if spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local":
            requested = spec.get("healthCheckNodePort")
            if requested:
                if not (low <= requested <= high):
                    error(svc, ("spec", "healthCheckNodePort"),
                          f"Invalid value: {requested}: provided port is not in the valid range. "
                          f"The range of valid ports is {low}-{high}")
                elif not pool.reserve(requested):
                    error(svc, ("spec", "healthCheckNodePort"), f"Invalid value: {requested}: provided port is already allocated")
            else:
                automatic.append((svc, None))
    for svc, i in automatic:
        if i is None:
            value = pool.allocate(f"{svc.namespace}/{svc.name}/healthCheckNodePort")
            svc.spec["healthCheckNodePort"] = value
            continue
        ports = svc.spec["ports"]
        # A port number served over two protocols shares one NodePort, as the API server does.
        twin = next((p.get("nodePort") for p in ports if p is not ports[i] and p.get("port") == ports[i].get("port")
                     and p.get("nodePort")), None)
        value = twin or pool.allocate(f"{svc.namespace}/{svc.name}/{ports[i].get('port')}/{ports[i].get('protocol')}")
        if value is None:
            error(svc, ("spec", "ports", i, "nodePort"), f"Internal error: range {low}-{high} has no free port")
            continue
        ports[i]["nodePort"] = value


def _same_service_reuse(spec: dict[str, Any], index: int) -> bool:
    """True when an earlier port of the same Service already holds this nodePort (TCP+UDP pair)."""
    ports = spec.get("ports") or []
    this = ports[index]
    return any(p.get("nodePort") == this.get("nodePort") and p.get("port") == this.get("port")
               and p.get("protocol") != this.get("protocol") for p in ports[:index])


def assign_load_balancer_ips(services: list[KubeObject], net: Networking, warn: Callable[[KubeObject, str], None]) -> None:
    """MetalLB-style: the lowest free address of the pool; spec.loadBalancerIP honoured if free."""
    first, last = int(net.load_balancer_pool[0]), int(net.load_balancer_pool[1])
    # Never hand out the LAN's network or broadcast address, or the external client's.
    reserved = {int(net.lan_subnet.network_address), int(net.lan_subnet.broadcast_address), int(net.external_ip)}
    used: set[int] = set(reserved)
    wanting = [s for s in services if s.spec.get("type") == "LoadBalancer" and not s.spec.get("loadBalancerClass")]
    automatic = []
    assigned: set[int] = set()
    for svc in wanting:
        requested = svc.spec.get("loadBalancerIP")
        if not requested:
            automatic.append(svc)
            continue
        address = _ipv4(str(requested))
        value = int(address) if address is not None else -1
        if address is None:
            warn(svc, f"spec.loadBalancerIP {requested!r} is not an IPv4 address; the Service stays <pending>")
        elif not (first <= value <= last) or value in reserved:
            warn(svc, f"spec.loadBalancerIP {requested} is not in the pool {net.load_balancer_pool[0]}-"
                      f"{net.load_balancer_pool[1]}; the Service stays <pending>")
        elif value in used:
            warn(svc, f"spec.loadBalancerIP {requested} is already in use; the Service stays <pending>")
        else:
            used.add(value)
            _set_ingress(svc, value)
            assigned.add(id(svc))
    candidate = first
    for svc in automatic:
        while candidate in used and candidate <= last:
            candidate += 1
        if candidate > last:
            warn(svc, "the LoadBalancer pool is exhausted; the Service stays <pending>")
            continue
        used.add(candidate)
        _set_ingress(svc, candidate)
        assigned.add(id(svc))
    for svc in services:  # whatever status the input carried, this cluster's is what counts
        if id(svc) not in assigned:
            svc.body["status"] = {"loadBalancer": {}}


def _set_ingress(svc: KubeObject, value: int) -> None:
    svc.body["status"] = {"loadBalancer": {"ingress": [{"ip": str(IPv4Address(value)), "ipMode": "VIP"}]}}
