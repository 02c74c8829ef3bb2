"""`podnet trace`: one connection, hop by hop, as the cluster would handle it.

The hops come in the packet's order. Name resolution first (the source pod's resolv.conf; the
query itself must pass the pod's egress policy to reach kube-dns). Then the packet leaves the
source; on the node that holds it kube-proxy may translate it (virtual IPs on any node,
NodePorts only on the node's own address); the source pod's egress policy sees it after that
DNAT; masquerade (SNAT) follows in POSTROUTING; routing carries it over the bridge or the
overlay; the destination's ingress policy sees the (possibly masqueraded) source; and the
destination must serve the port. Through a Service, or for several DNS answers, every
candidate gets its own fate, because a policy may allow some backends and not others.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from podnet import images
from podnet.api import fields
from podnet.api import labels as label_selectors
from podnet.controlplane import Cluster
from podnet.controlplane.nodes import NodeInfo
from podnet.controlplane.pods import find_named_port, serving_containers
from podnet.controlplane.system import INGRESS_NAMESPACE, INGRESS_SERVICE
from podnet.errors import UsageError
from podnet.semantics import dns, httproute, ingress, ingress_controllers, mesh, networkpolicy
from podnet.semantics.ingress_controllers import ControllerFlags
from podnet.semantics.meshcapture import (INBOUND_PASSTHROUGH_SOURCE, INBOUND_PORT, OUTBOUND_PORT, TUNNEL_PORT,
                                          InterceptionError, captures_inbound, captures_outbound, interception_of)
from podnet.semantics.corefile import CorefileError
from podnet.semantics.loadbalancer import announced_ips, announcing_node
from podnet.semantics.policymatch import ICMP, Endpoint
from podnet.semantics.nginxhost import host_header_problem
from podnet.semantics.nodenat import IpMasq, host_port_for, node_host_ports, portmap_masquerade
from podnet.semantics.routing import Addressing, Hop, Party
from podnet.semantics.services import Backend, ServiceTable, Translation, affinity_choice, health_checks
from podnet.sim.curl import HttpRequest, http_request

PROTOCOLS = ("TCP", "UDP", "SCTP", ICMP)  # ICMP: an echo request, as ping sends it (no port)
# the client's proxy choosing a request's route (HTTPRoute on a Service): not "route", which is the
# kernel's routing and, at a pod, the ingress controller's (the live trace checks that controller)
MESH_ROUTE = "mesh-route"


@dataclass
class EndpointFate:
    backend: Backend
    delivered: bool
    reason: str
    hops: list[Hop] = field(default_factory=list)


@dataclass
class TraceResult:
    verdict: str  # "delivered" | "dropped"
    reason: str
    hops: list[Hop]
    destination: dict[str, Any]
    endpoints: list[str] = field(default_factory=list)
    ingress: dict[str, Any] | None = None
    fates: list[EndpointFate] = field(default_factory=list)
    request: dict[str, Any] | None = None  # an HTTP request as sent (sim/curl.py)
    http: dict[str, Any] | None = None  # nginx's answer: {"status", "location"} (status 200: proxied)

    @property
    def all_delivered(self) -> bool:
        return self.verdict == "delivered" and all(f.delivered for f in self.fates)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "reason": self.reason,
            "hops": [h.to_json() for h in self.hops],
            "destination": self.destination,
            "endpoints": self.endpoints,
            "ingress": self.ingress,
        }
        if self.request is not None:
            out["request"] = self.request
        if self.http is not None:
            out["http"] = self.http
        if self.fates:
            out["candidates"] = [{"endpoint": f.backend.name, "ip": f.backend.ip, "port": f.backend.port,
                                  "verdict": "delivered" if f.delivered else "dropped", "reason": f.reason}
                                 for f in self.fates]
        return out


@dataclass(frozen=True)
class PolicySides:
    egress_allowed: bool
    egress_hop: Hop
    egress_reason: str
    ingress_allowed: bool
    ingress_hop: Hop
    ingress_reason: str

    @property
    def allowed(self) -> bool:
        return self.egress_allowed and self.ingress_allowed

    @property
    def reason(self) -> str:
        return self.egress_reason if not self.egress_allowed else self.ingress_reason


@dataclass
class Packet:
    """What the packet looks like and where it is, as it moves."""

    at: NodeInfo | None  # the node holding it; None: on the LAN
    source: Party  # its current source (a node's address after masquerade)
    origin: str  # for kube-proxy on `at`: "pod", "local" or "external"
    egress_checked: bool = False
    # the mesh: the client's identity when its proxy sends mutual TLS, and the HTTP request (a
    # traced URL's) the server's proxy authorizes
    mtls_from: str | None = None
    http: mesh.Http | None = None
    tunnel_to: int | None = None  # the opaque port a client's proxy reaches through the server's tunnel port


class Tracer:
    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.addresses = Addressing(cluster)
        self.services = ServiceTable(cluster)
        self.ip_masq = IpMasq.for_pod_subnet(self.addresses.pod_subnet)
        self._dns = None
        self._policy = None
        self._ingress: dict[ControllerFlags, ingress.IngressController] = {}  # by the controller's flags
        self._service_links: dict = {}  # containerenv.service_environment's, for this (unchanging) cluster

    # ---- the semantics this composes (each lives in podnet.semantics) ---------------------

    def _dns_server(self):
        """The cluster DNS, or the CorefileError that keeps it from starting (raised each time)."""
        if self._dns is None:
            try:
                self._dns = dns.ClusterDNS(self.cluster)
            except CorefileError as error:
                self._dns = error
        if isinstance(self._dns, CorefileError):
            raise self._dns
        return self._dns

    def resolve(self, src: Party, name: str) -> tuple[list[Hop], list[str], str | None]:
        """Name → addresses through the cluster DNS; (hops, IPs, reason when it fails)."""
        if src.pod is not None:
            resolv = dns.resolv_conf(src.pod, self.cluster)
            blocked = self._dns_blocked(src, resolv)
            if blocked:
                hop = Hop(src.name, "resolve", blocked)
                return [hop], [], f"{name} cannot be resolved: {blocked}"
        else:
            # A node or the outside has no cluster search list; ask the cluster DNS for the
            # name as written (as `dig @10.96.0.10 NAME` would).
            resolv = dns.ResolvConf(nameservers=(str(self.cluster.config.networking.dns_service_ip),))
        try:
            server = self._dns_server()
        except CorefileError as error:  # the DNS pods would not start: no name resolves
            why = f"the cluster DNS does not run: {error}"
            return [Hop(src.name, "resolve", f"{name}: {why}")], [], f"{name} does not resolve: {why}"
        result = server.lookup(name, "A", resolv)
        if result.error:
            return [Hop(src.name, "resolve", f"{name}: {result.error}")], [], f"{name} does not resolve: {result.error}"
        answer = result.final
        shown = ", ".join(f"{r.type} {r.data}" for r in answer.answers) or answer.rcode
        hops = [Hop(src.name, "resolve", f"{name}: tried {', '.join(result.tried)} → {shown} "
                                           f"(nameserver {', '.join(resolv.nameservers) or 'none'}, ndots:{resolv.ndots})")]
        addresses = [r.data for r in answer.answers if r.type == "A"]
        if addresses:
            return hops, addresses, None
        cname = [r.data for r in answer.answers if r.type == "CNAME"]
        if cname:
            return hops, [], (f"{name} is an ExternalName: CNAME {cname[-1]}, a name outside the cluster; "
                              "podnet's DNS has no upstream, so it does not resolve (the sandbox rule)")
        return hops, [], f"{name} does not resolve ({answer.rcode})"

    def _dns_blocked(self, src: Party, resolv) -> str | None:
        """The DNS query is a UDP packet to kube-dns: the pod's egress policy (and the DNS pods'
        ingress policy) must let it through, or every lookup times out."""
        if src.host_network or not resolv.nameservers:
            return None
        server = resolv.nameservers[0]
        frontend = self.services.frontend(server, 53, "UDP")
        if frontend is None:
            return None
        backends = [b for b in self.services.backends(frontend.service, frontend.port) if b.ready]
        reasons = []
        for backend in backends:
            sides = self.policy(src, src, self.addresses.party_for_ip(backend.ip), backend.port, "UDP")
            if sides.allowed:
                return None
            reasons.append(sides.reason)
        if not backends:
            return None
        return (f"the DNS query to {server}:53/UDP is blocked ({reasons[0]}), so the lookup times out "
                "(allow egress to kube-dns on 53/UDP and 53/TCP)")

    def policy(self, egress_src: Party, ingress_src: Party, dst: Party, port: int, protocol: str) -> PolicySides:
        """NetworkPolicy and the admin tiers: the source pod's egress (its own address, after DNAT) and the
        destination's ingress (seeing the packet's source as it arrives, after any SNAT)."""
        if self._policy is None:
            self._policy = networkpolicy.PolicyEngine(self.cluster)
        engine = self._policy
        target = self._policy_endpoint(engine, dst)
        out = engine.evaluate(self._policy_endpoint(engine, egress_src), target, port, protocol)
        seen = out if ingress_src is egress_src else engine.evaluate(self._policy_endpoint(engine, ingress_src),
                                                                      target, port, protocol)
        egress_at = f"node/{egress_src.node.name}" if egress_src.node else egress_src.name
        ingress_at = f"node/{dst.node.name}" if dst.node else dst.name
        return PolicySides(
            out.egress.allowed, Hop(egress_at, "egress-allow" if out.egress.allowed else "egress-deny",
                                    f"{out.egress.title} {out.egress}"), f"blocked: {out.egress}",
            seen.ingress.allowed, Hop(ingress_at, "ingress-allow" if seen.ingress.allowed else "ingress-deny",
                                      f"{seen.ingress.title} {seen.ingress}"), f"blocked: {seen.ingress}")

    @staticmethod
    def _policy_endpoint(engine, party: Party):
        if party.kind == "pod" and party.pod is not None:
            return engine.pod(party.pod.namespace, party.pod.name)
        if party.kind == "node" and party.node is not None:
            if party.ip == str(party.node.ip):
                return engine.node(party.node.name)
            # a node's other address (cni0 gateway, flannel.1) as masquerade leaves it
            return Endpoint("node", ipaddress.ip_address(party.ip), name=party.node.name, node=party.node.name)
        return engine.endpoint_for_ip(party.ip)

    def route_http(self, url: str, flags: ControllerFlags = ControllerFlags()):
        """Where ingress-nginx run with `flags` (the stock add-on's by default) sends `url`."""
        if flags not in self._ingress:
            self._ingress[flags] = ingress.IngressController(self.cluster, flags.controller_class, flags.ingress_class,
                                                             flags.watch_ingress_without_class)
        return self._ingress[flags].route(url)

    # ---- parsing ----------------------------------------------------------------------------

    def source(self, text: str) -> Party:
        if text == "external":
            return self.addresses.external_party()
        if text.startswith("node/"):
            node = self.addresses.nodes.get(text[5:])
            if node is None:
                raise UsageError(f"no node {text[5:]!r} (nodes: {', '.join(self.addresses.nodes)})")
            return self.addresses.node_party(node)
        pod = self._pod(text)
        if pod is None:
            raise UsageError(f"SRC {text!r}: no such pod (SRC is NS/POD, node/NAME or external)")
        party = self.addresses.pod_party(pod)
        if not party.ip or party.node is None:
            raise UsageError(f"SRC {text}: the pod is not running ({pod.status.get('phase')}), "
                             "so it sends nothing")
        if party.host_network:
            party = Party("pod", str(party.node.ip), party.name, pod, party.node)
        return party

    def _pod(self, text: str):
        return self.addresses.pods.get(text if "/" in text else f"default/{text}")

    @staticmethod
    def _port_value(value) -> int | str | None:
        if value is None or value == "":
            return None
        text = str(value)
        if text.isdigit():
            number = int(text)
            if not 1 <= number <= 65535:
                raise UsageError(f"port {number}: must be between 1 and 65535")
            return number
        if re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", text):
            return text  # a port name, resolved against the destination
        raise UsageError(f"port {text!r}: a number (1-65535) or a port name")

    # ---- the trace --------------------------------------------------------------------------

    def trace(self, src_text: str, dst_text: str, port=None, protocol: str = "TCP",
              headers: tuple[str, ...] | list[str] = (), resolve: tuple[str, ...] | list[str] = ()) -> TraceResult:
        """SRC → DST; for an http(s):// DST, `headers` and `resolve` are curl's -H and --resolve."""
        protocol = protocol.upper()
        if protocol not in PROTOCOLS:
            raise UsageError(f"--protocol {protocol}: must be TCP, UDP, SCTP or ICMP")
        port = self._port_value(port)
        if protocol == ICMP and "://" in dst_text:
            raise UsageError(f"--protocol ICMP sends an echo request (ping), not a request to {dst_text}")
        if "://" in dst_text:
            request = http_request(dst_text, headers, resolve)
            return self._trace_url(self.source(src_text), request)
        if headers or resolve:
            option = "-H/--header" if headers else "--resolve"
            raise UsageError(f"{option} goes with an http:// or https:// URL as DST (as curl's does), not {dst_text!r}")
        src = self.source(src_text)
        hops: list[Hop] = []
        addresses, port, failure = self._destination(src, dst_text, port, protocol, hops)
        if failure:
            return self._dropped(hops, failure, addresses[0] if addresses else "", port or 0)
        if len(addresses) == 1:
            return self._walk(src, addresses[0], port, protocol, hops)
        return self._several(src, addresses, port, protocol, hops)

    def _destination(self, src: Party, text: str, port, protocol: str, hops: list[Hop]):
        """DST → ([addresses], port, failure)."""
        match = re.fullmatch(r"(\d+\.\d+\.\d+\.\d+)(?::(\S+))?", text)
        if match:
            self._valid_ip(match.group(1))
            given = self._port_value(match.group(2)) if match.group(2) else port
            return [match.group(1)], self._numeric(given, text, None, protocol, match.group(1)), None
        if text in ("external", "node/" + text[5:]) and (text == "external" or text[5:] in self.addresses.nodes):
            ip = self.addresses.external_ip if text == "external" else str(self.addresses.nodes[text[5:]].ip)
            return [ip], self._numeric(port, text, None, protocol, ip), None
        if text.startswith("node/"):
            raise UsageError(f"DST {text}: no such node")
        if "/" in text:
            pod = self._pod(text)
            if pod is None:
                raise UsageError(f"DST {text!r}: no such pod")
            ip = fields.pod_ip(pod)
            if not ip:
                return [], port if isinstance(port, int) else None, f"{text} is not running: it has no IP"
            return [ip], self._numeric(port, text, pod, protocol, ip), None
        name, _, port_text = text.partition(":")
        if port_text:
            port = self._port_value(port_text)
        resolve_hops, addresses, failure = self.resolve(src, name)
        hops += resolve_hops
        if failure:
            return [], port if isinstance(port, int) else None, failure
        return addresses, self._numeric(port, text, None, protocol, addresses[0]), None

    @staticmethod
    def _valid_ip(text: str) -> None:
        try:
            IPv4Address(text)
        except ValueError:
            raise UsageError(f"{text}: not an IPv4 address") from None

    def _numeric(self, port, text: str, pod, protocol: str, ip: str) -> int:
        """A port number: given, or named on the Service or pod at `ip`, or the only one there
        (ICMP: 0, it has none)."""
        if protocol == ICMP:
            if port not in (None, 0):
                raise UsageError(f"DST {text}: ICMP has no ports (an echo request goes to an address)")
            return 0
        svc = self.services.service_at(ip)
        pod = pod or self.addresses.pod_by_ip.get(ip)
        if isinstance(port, int):
            return port
        if isinstance(port, str):
            if svc is not None:
                for p in svc.spec.get("ports") or []:
                    if p.get("name") == port and fields.protocol(p) == protocol:
                        return int(p["port"])
                raise UsageError(f"DST {text}: Service {svc.ref} has no {protocol} port named {port!r}")
            if pod is not None:
                number = find_named_port(serving_containers(pod), port, protocol)
                if number is None:
                    raise UsageError(f"DST {text}: pod {pod.ref} has no {protocol} containerPort named {port!r}")
                return number
            raise UsageError(f"DST {text}: a port name needs a Service or pod to look it up in")
        if svc is not None:
            ports = [int(p["port"]) for p in svc.spec.get("ports") or [] if fields.protocol(p) == protocol]
            if len(ports) == 1:
                return ports[0]
        if pod is not None:
            declared = [p for c in pod.spec.get("containers") or [] for p in c.get("ports") or []
                        if fields.protocol(p) == protocol]
            if len(declared) == 1:
                return int(declared[0]["containerPort"])
        raise UsageError(f"DST {text}: which port? give -p PORT (a number or a name), or NAME:PORT")

    def _dropped(self, hops: list[Hop], reason: str, ip: str, port: int, ingress: dict | None = None,
                 pod: str | None = None) -> TraceResult:
        return TraceResult("dropped", reason, hops, {"pod": pod, "ip": ip or "", "port": port or 0}, [], ingress)

    # ---- walking the packet -----------------------------------------------------------------

    def _start(self, src: Party, hops: list[Hop]) -> Packet:
        if src.kind == "pod" and not src.host_network:
            hops += self.addresses.leave_pod(src)
            return Packet(src.node, src, "pod")
        if src.kind in ("pod", "node"):
            hops.append(Hop(f"node/{src.node.name}", "send", f"from the node's own address {src.ip}"
                                                             + (f" ({src.name}, hostNetwork)" if src.kind == "pod" else "")))
            return Packet(src.node, src, "local")
        hops.append(Hop(src.name, "send", f"from {src.ip} on the LAN"))
        return Packet(None, src, "external")

    def _walk(self, src: Party, dst_ip: str, port: int, protocol: str, hops: list[Hop],
              ingress: dict | None = None, http: mesh.Http | None = None, by_proxy: bool = False) -> TraceResult:
        """The packet from src to dst_ip:port. `by_proxy`: the source pod's proxy sends it
        (uid 1337: not captured again)."""
        if not by_proxy and self._captured(src, dst_ip, port, protocol):
            return self._through_proxy(src, dst_ip, port, hops, ingress, http)
        packet = self._start(src, hops)
        packet.http = http
        for _ in range(3):  # at most: LAN → a node, or a node → another node's address
            if packet.at is None:
                failure = self._reach_from_lan(packet, dst_ip, port, protocol, hops)
                if failure:
                    return self._dropped(hops, failure, dst_ip, port, ingress)
                continue
            local_ips = frozenset({str(packet.at.ip)})
            frontend = self.services.frontend(dst_ip, port, protocol, local_ips)
            if frontend is not None:
                translation = self.services.translate(frontend, packet.source.ip, packet.at.name, packet.origin)
                hops.append(Hop(f"node/{packet.at.name}", "service", f"{frontend.describe}: {translation.reason}"))
                if translation.verdict != "dnat":
                    return self._dropped(hops, translation.reason, dst_ip, port, ingress)
                return self._through_service(src, packet, translation, hops, protocol, ingress)
            if protocol == ICMP and self.services.is_virtual_ip(dst_ip):
                failure = self._echo_to_virtual_ip(src, packet, dst_ip, hops)
                if failure:
                    return self._dropped(hops, failure, dst_ip, port, ingress)
                answering = self.addresses.node_party(packet.at)
                hops.append(Hop(answering.name, "serve", images.echo_answer(answering.name).detail))
                return TraceResult("delivered", f"answered by {answering.name}", hops,
                                   {"pod": None, "ip": dst_ip, "port": 0}, [], ingress)
            if self.services.is_virtual_ip(dst_ip):
                svc = self.services.service_at(dst_ip)
                reason = f"{dst_ip} is Service {svc.ref}, which has no {port}/{protocol} port: rejected by kube-proxy"
                hops.append(Hop(f"node/{packet.at.name}", "reject", reason))
                return self._dropped(hops, reason, dst_ip, port, ingress)
            other = self.addresses.node_by_ip.get(dst_ip)
            if other is not None and other.name != packet.at.name:
                failure = self._to_other_node(src, packet, other, port, protocol, hops)
                if failure:
                    return self._dropped(hops, failure, dst_ip, port, ingress)
                continue
            break
        dst, port, pre, masquerade = self._host_port(packet, dst_ip, port, protocol)
        fate = self._deliver(src, packet, dst, port, protocol, pre, masquerade=masquerade)
        hops += fate.hops
        destination = {"pod": dst.name if dst.kind == "pod" else None, "ip": dst.ip, "port": port}
        if not fate.delivered:
            return TraceResult("dropped", fate.reason, hops, destination, [], ingress)
        return TraceResult("delivered", fate.reason, hops, destination, [dst.name] if dst.kind == "pod" else [], ingress)

    def _reach_from_lan(self, packet: Packet, dst_ip: str, port: int, protocol: str, hops: list[Hop]) -> str | None:
        """On the LAN only the nodes' addresses and announced LoadBalancer IPs answer."""
        node = self.addresses.node_by_ip.get(dst_ip)
        if node is not None:
            hops.append(Hop("LAN", "route", f"{dst_ip} is node/{node.name} on the LAN {self.addresses.lan}"))
            packet.at, packet.origin = node, "external"
            return None
        svc = self.services.service_at(dst_ip)
        if svc is not None and dst_ip in announced_ips(svc, self.addresses.lan):
            node = self.announcing_node(svc, dst_ip)
            if node is None:
                return f"nothing answers ARP for {dst_ip}: no node has a ready endpoint of Service {svc.ref}"
            hops.append(Hop("LAN", "arp", f"{dst_ip} is answered by node/{node.name} (L2 announcement)"))
            packet.at, packet.origin = node, "external"
            return None
        if svc is not None:
            return f"{dst_ip} is a virtual IP of Service {svc.ref}; nothing on the LAN routes to it"
        if IPv4Address(dst_ip) in self.addresses.pod_subnet:
            return (f"{dst_ip} is in the pod network; nothing on the LAN routes there "
                    "(reach pods from outside through a NodePort or LoadBalancer Service)")
        if dst_ip == self.addresses.external_ip:
            return None if packet.source.kind == "external" else "no route"
        return f"no route to {dst_ip}: nothing on the LAN has that address"

    def announcing_node(self, svc, ip: str) -> NodeInfo | None:
        """The node that answers ARP for a LoadBalancer IP (MetalLB L2; semantics/loadbalancer)."""
        return announcing_node(self.cluster, self.services, svc, ip)

    def _to_other_node(self, src: Party, packet: Packet, node: NodeInfo, port: int, protocol: str,
                       hops: list[Hop], address: str | None = None) -> str | None:
        """A packet for another node's own address (or `address`, one the node holds, such as a
        LoadBalancer IP on its lo) leaves over the LAN (pods: masqueraded)."""
        target = self.addresses.node_party(node) if address is None else self.addresses.party_for_ip(address)
        if src.kind == "pod" and not src.host_network and not packet.egress_checked:
            sides = self.policy(src, src, target, port, protocol)
            hops.append(sides.egress_hop)
            packet.egress_checked = True
            if not sides.egress_allowed:
                return sides.egress_reason
        if packet.source.kind == "pod" and self.ip_masq.applies(packet.source.ip, target.ip):
            masq = self.addresses.node_party(packet.at)
            hops.append(Hop(f"node/{packet.at.name}", "snat", f"→ {masq.ip}: leaves the pod network (flannel ip-masq)"))
            packet.source = masq
        hops.append(Hop(f"node/{packet.at.name}", "route", f"{target.ip} is on the LAN → eth0 → node/{node.name}"))
        packet.at, packet.origin = node, "external"
        return None

    def _host_port(self, packet: Packet, dst_ip: str, port: int, protocol: str):
        """CNI portmap (semantics/nodenat): a pod's hostPort on its node's address (or only on
        the hostIP it names) is DNATed to the pod: (destination, port, hops, why it is also
        masqueraded or None)."""
        dst = self.addresses.party_for_ip(dst_ip)
        if packet.at is None:
            return dst, port, [], None
        mapping = host_port_for(node_host_ports(self.cluster.of_kind("Pod"), packet.at.name), dst_ip, port, protocol,
                                self.addresses.local_addresses(packet.at))
        if mapping is None:
            return dst, port, [], None
        hop = Hop(f"node/{packet.at.name}", "dnat", f"{mapping.describe()} (CNI portmap)")
        target = self.addresses.pod_party(self.addresses.pods[mapping.pod])
        return target, mapping.container_port, [hop], portmap_masquerade(mapping, packet.source.ip)

    def _masquerade_address(self, at: NodeInfo, dst: Party) -> str:
        """MASQUERADE takes the address of the interface the packet leaves by."""
        if dst.kind == "pod" and not dst.host_network and dst.node is not None:
            if dst.node.name == at.name:
                return str(at.gateway)  # out via cni0
            if self.addresses.overlay == "vxlan":
                return str(at.pod_cidr.network_address)  # out via flannel.1
        return str(at.ip)  # out via eth0

    def _through_service(self, src: Party, packet: Packet, translation: Translation, hops: list[Hop],
                         protocol: str, ingress: dict | None) -> TraceResult:
        fates = []
        for backend in translation.candidates:
            masq = translation.masquerade
            if src.kind == "pod" and backend.ip == src.ip:
                masq = f"hairpin: {src.name} reached itself through the Service"
            pre = [Hop(f"node/{packet.at.name}", "dnat", f"→ {backend.name} {backend.ip}:{backend.port}")]
            dst = self.addresses.party_for_ip(backend.ip)
            branch = Packet(packet.at, packet.source, packet.origin, packet.egress_checked, http=packet.http)
            fates.append(self._deliver(src, branch, dst, backend.port, protocol, pre, backend, masq))
        return self._choose(src, translation.frontend.service.ref, fates, hops, ingress)

    def _several(self, src: Party, addresses: list[str], port: int, protocol: str, hops: list[Hop]) -> TraceResult:
        """Several A records (a headless Service): the client picks one; each has its fate."""
        hops.append(Hop(src.name, "choose", f"{len(addresses)} addresses (a headless Service has no virtual IP): "
                                            "the client connects to one of them"))
        fates = []
        for ip in addresses:
            result = self._walk(src, ip, port, protocol, [])
            dst = self.addresses.party_for_ip(ip)
            backend = Backend(ip, port, dst.name if dst.kind == "pod" else None,
                              dst.node.name if dst.node else None, True, True, False)
            fates.append(EndpointFate(backend, result.verdict == "delivered", result.reason, result.hops))
        return self._choose(src, ",".join(addresses), fates, hops, None)

    def _choose(self, src: Party, key: str, fates: list[EndpointFate], hops: list[Hop],
                ingress: dict | None) -> TraceResult:
        delivered = [f for f in fates if f.delivered]
        chosen = (affinity_choice(tuple(f.backend for f in delivered), src.ip, key) if delivered else fates[0].backend)
        chosen_fate = next(f for f in fates if f.backend == chosen)
        hops = hops + chosen_fate.hops
        endpoints = [f.backend.name for f in fates]
        destination = {"pod": chosen.pod, "ip": chosen.ip, "port": chosen.port}
        if not delivered:
            reason = "no candidate is reachable: " + "; ".join(f"{f.backend.name}: {f.reason}" for f in fates)
            return TraceResult("dropped", reason, hops, destination, endpoints, ingress, fates)
        if len(delivered) < len(fates):
            reason = (f"delivered to {len(delivered)} of {len(fates)} candidates; the others drop "
                      f"({', '.join(f.backend.name for f in fates if not f.delivered)}), so some connections fail")
        else:
            reason = f"delivered to {chosen.name} {chosen.ip}:{chosen.port}" + (
                f" (any of {len(fates)} candidates)" if len(fates) > 1 else "")
        return TraceResult("delivered", reason, hops, destination, endpoints, ingress, fates)

    def _deliver(self, src: Party, packet: Packet, dst: Party, port: int, protocol: str, pre: list[Hop],
                 backend: Backend | None = None, masquerade: str | None = None) -> EndpointFate:
        """From the node holding the packet to dst: egress policy, masquerade, routing, ingress
        policy, and whether anything serves the port."""
        hops = list(pre)
        holder = backend or Backend(dst.ip, port, dst.name if dst.kind == "pod" else None,
                                    dst.node.name if dst.node else None, True, True, False)
        at = packet.at
        source = packet.source
        # egress policy of the source pod: after DNAT, before SNAT
        if src.kind == "pod" and not src.host_network and not packet.egress_checked:
            sides = self.policy(src, src, dst, port, protocol)
            hops.append(sides.egress_hop)
            if not sides.egress_allowed:
                return EndpointFate(holder, False, sides.egress_reason, hops)
        # masquerade in POSTROUTING: kube-proxy's, or flannel's for pods leaving the pod network
        # (a packet for the node's own address is delivered locally and never reaches POSTROUTING)
        if at is not None:
            if masquerade is None and source.kind == "pod" and self.ip_masq.applies(source.ip, dst.ip) \
                    and dst.ip not in self.addresses.local_addresses(at):
                masquerade = "leaves the pod network (flannel ip-masq)"
            if masquerade:
                address = self._masquerade_address(at, dst)
                hops.append(Hop(f"node/{at.name}", "snat", f"→ {address}: {masquerade}"))
                source = Party("node", address, f"node/{at.name}", None, at)
            elif packet.origin == "local" and source.ip == str(at.ip) and dst.kind == "pod" and not dst.host_network:
                # the node's own packet takes the address of the interface its route leaves by,
                # as MASQUERADE would: cni0's for its own pods, flannel.1's across the VXLAN overlay
                address = self._masquerade_address(at, dst)
                if address != source.ip:
                    hops.append(Hop(f"node/{at.name}", "source", f"{address}: the address of the interface "
                                                                  "the route to the pod leaves by"))
                    source = Party("node", address, f"node/{at.name}", None, at)
        route_hops, failure = self.addresses.deliver(at, dst, source.ip)
        receive = [h for h in route_hops if h.action == "receive"]
        hops += [h for h in route_hops if h.action != "receive"]
        if failure:
            return EndpointFate(holder, False, failure, hops)
        if dst.kind == "pod" and not dst.host_network:
            sides = self.policy(source, source, dst, port, protocol)
            hops.append(sides.ingress_hop)
            if not sides.ingress_allowed:
                return EndpointFate(holder, False, sides.ingress_reason, hops)
        hops += receive
        if dst.kind == "pod" and protocol == "TCP" and mesh.is_meshed(dst.pod):
            refused = self._inbound_proxy(dst, port, source.ip, packet, hops)
            if refused:
                return EndpointFate(holder, False, refused, hops)
        answer = self._serving(dst, packet.tunnel_to or port, protocol)
        hops.append(Hop(dst.name, "serve" if answer.serving is not False else "refuse", answer.detail))
        if answer.serving is False:
            return EndpointFate(holder, False, answer.detail, hops)
        return EndpointFate(holder, True, "allowed" + (f"; {answer.detail}" if answer.serving is None else ""), hops)

    # ---- the mesh: a meshed pod's proxies (semantics/mesh.py, semantics/meshcapture.py) -------

    def _capture(self, party: Party):
        """The pod's capture, or None: no proxy beside it (or a capture its annotations break:
        its proxy would not start)."""
        if party.kind != "pod" or party.pod is None or party.host_network or not mesh.is_meshed(party.pod):
            return None
        try:
            return interception_of(party.pod.metadata.get("annotations"))
        except InterceptionError:
            return None

    def _captured(self, src: Party, dst_ip: str, port: int, protocol: str) -> bool:
        capture = self._capture(src)
        return capture is not None and protocol == "TCP" and captures_outbound(capture, dst_ip, port)

    def _policies(self) -> list:
        return [*self.cluster.of_kind("PeerAuthentication"), *self.cluster.of_kind("AuthorizationPolicy")]

    def _through_proxy(self, src: Party, dst_ip: str, port: int, hops: list[Hop], ingress: dict | None,
                       http: mesh.Http | None) -> TraceResult:
        """The source pod's proxy takes the connection (mesh/envoy.py's outbound listener): to a
        Service's port it connects to one of the ready endpoints itself (kube-proxy bypassed), in
        mutual TLS to an endpoint with a proxy beside it; anything else goes on as asked."""
        hops.append(Hop(src.name, "intercept", f"{dst_ip}:{port} → the proxy's outbound port {OUTBOUND_PORT} "
                                               "(the pod's capture)"))
        frontend = self.services.frontend(dst_ip, port, "TCP")
        if frontend is None or not self.services.is_virtual_ip(dst_ip):
            hops.append(Hop(src.name, "proxy", f"PassthroughCluster: {dst_ip}:{port} is no Service port the proxy "
                                               "knows; it connects there as asked, in plaintext"))
            return self._walk(src, dst_ip, port, "TCP", hops, ingress, http, by_proxy=True)
        svc = frontend.service
        name = f"outbound|{port}||{svc.name}.{svc.namespace}.svc.{self.cluster.config.networking.dns_domain}"
        services, refused = self._routed(src, svc, frontend.port, http, name, hops)
        if refused:
            return self._dropped(hops, refused, dst_ip, port, ingress)
        backends = [b for routed, routed_port in services for b in self.services.backends(routed, routed_port) if b.ready]
        if not backends:
            reason = (f"{', '.join('Service ' + s.ref for s, _ in services)} has no ready endpoint: the proxy answers "
                      "503 (no healthy upstream)")
            hops.append(Hop(src.name, "proxy", f"{name}: {reason}"))
            return self._dropped(hops, reason, dst_ip, port, ingress)
        hops.append(Hop(src.name, "proxy", f"{name}: {len(backends)} ready endpoint(s), one chosen per connection "
                                           "(per request for HTTP) by the proxy, round robin: kube-proxy is bypassed"))
        policies = self._policies()
        fates = []
        for backend in backends:
            dst = self.addresses.party_for_ip(backend.ip)
            pre = []
            mtls_from = tunnel_to = None
            wire_port = backend.port
            if dst.kind == "pod" and mesh.sends_mtls(policies, dst.pod, backend.port):
                mtls_from = mesh.spiffe_id(src.pod.namespace, mesh.service_account_of(src.pod))
                server = mesh.spiffe_id(dst.pod.namespace, mesh.service_account_of(dst.pod))
                identities = f"client {mtls_from}, server {server} (the client's proxy checks that identity)"
                services = self.cluster.of_kind("Service")
                if mesh.tunnels(policies, dst.pod, backend.port, services):  # Linkerd's opaque transport
                    tunnel_to, wire_port = backend.port, TUNNEL_PORT
                    pre.append(Hop(src.name, "mtls", f"→ {backend.name} {backend.ip}:{TUNNEL_PORT} in mutual TLS: "
                                                     f"port {backend.port} is opaque there ({mesh.OPAQUE_PORTS}), "
                                                     f"so the proxy goes through the server proxy's tunnel port, "
                                                     f"naming {backend.port} in the handshake; {identities}"))
                else:
                    pre.append(Hop(src.name, "mtls", f"→ {backend.name} {backend.ip}:{backend.port} in mutual TLS: "
                                                     + identities))
            else:
                why = "no proxy beside it" if not (dst.kind == "pod" and mesh.is_meshed(dst.pod)) else \
                    "its PeerAuthentication mode is DISABLE" if not mesh.mtls_mode(
                        policies, dst.pod.namespace, dst.pod.labels, backend.port).takes_mtls else \
                    f"its {mesh.LINKERD_SKIP_INBOUND} keeps the port from its proxy"
                pre.append(Hop(src.name, "plaintext", f"→ {backend.name} {backend.ip}:{backend.port} in plaintext ({why})"))
            packet = Packet(src.node, src, "pod", mtls_from=mtls_from, http=None if tunnel_to else http,
                            tunnel_to=tunnel_to)
            fates.append(self._deliver(src, packet, dst, wire_port, "TCP", pre, backend))
        return self._choose(src, svc.ref, fates, hops, ingress)

    def _routed(self, src: Party, svc, port: dict, http: mesh.Http | None, name: str,
                hops: list[Hop]) -> tuple[list[tuple[Any, dict]], str | None]:
        """The Services (and ports) the proxy sends to: the Service's own, or, for a request on a
        port with HTTPRoutes attached (GAMMA), the backends of the rule that takes it
        (semantics/httproute.py, as the proxy's routes are rendered). (services, why refused)."""
        routes = mesh.routes_of(self.cluster.of_kind("HTTPRoute"), svc, port, src.pod.namespace)
        if not routes:
            return [(svc, port)], None
        for route in routes:
            problem = httproute.route_problem(route)
            if problem:
                hops.append(Hop(src.name, MESH_ROUTE, f"HTTPRoute {route.namespace}/{route.name} is left out: {problem}"))
        rules = httproute.rules_of(routes, svc)
        if http is None:
            backends = {(b.namespace, b.service, b.port): b for rule in rules for b in rule.backends}.values()
            hops.append(Hop(src.name, MESH_ROUTE, f"{name}: HTTPRoute(s) {', '.join(r.namespace + '/' + r.name for r in routes)} "
                                               "route each request (trace an http:// URL to see which rule takes one)"))
        else:
            path, query = httproute.split_target(http.path)
            request = httproute.Request(http.method, path, {k.lower(): v for k, v in http.headers.items()}, query)
            rule = httproute.choose(rules, request)
            if rule is None:
                reason = f"no rule of HTTPRoute(s) {', '.join(r.namespace + '/' + r.name for r in routes)} matches " \
                         f"{http.method} {http.path}: the proxy answers 404"
                hops.append(Hop(src.name, MESH_ROUTE, reason))
                return [], reason
            backends = [b for b, share in httproute.weighted(rule.backends) if share]
            shares = ", ".join(f"{b.service}:{b.port} {share:.0%}" + ("" if self._backend_port(b) else " (no such Service port: 500)")
                               for b, share in httproute.weighted(rule.backends))
            extras = [f"timeout {rule.timeout:g}s" if rule.timeout else "",
                      f"retries {rule.retry.limit} on {_codes(rule.retry.statuses)}" if rule.retry else "",
                      rule.problem]
            hops.append(Hop(src.name, MESH_ROUTE, f"{rule.describe()} takes {http.method} {http.path}: {shares or 'no backend'}"
                                               + "".join(f"; {e}" for e in extras if e)))
        found = [routed for backend in backends if (routed := self._backend_port(backend)) is not None]
        if not found:
            return [], "the route's rule has no backend Service that exists: the proxy answers 500"
        return found, None

    def _backend_port(self, backend: httproute.Backend):
        """(Service, its port entry) of a route's backend, if the proxy knows it (a TCP port of a
        Service with a cluster IP), else None: its share of the requests gets 500."""
        target = self.cluster.get("Service", backend.namespace, backend.service)
        return next(((svc, port) for svc, port in mesh.proxied_ports([target] if target is not None else [])
                     if port.get("port") == backend.port), None)

    def _inbound_proxy(self, dst: Party, port: int, source_ip: str, packet: Packet, hops: list[Hop]) -> str | None:
        """At a meshed pod: its capture sends the connection to the proxy's inbound port, which
        takes plaintext unless the port's mode is STRICT, then authorizes the request (or the
        connection) by AuthorizationPolicy and hands it to the app. The reason it is refused, or None."""
        capture = self._capture(dst)
        policies = self._policies()
        if capture is not None and packet.tunnel_to is not None and port == TUNNEL_PORT:
            port = packet.tunnel_to
            hops.append(Hop(dst.name, "tunnel", f":{TUNNEL_PORT} (never captured) → the proxy's tunnel listener: "
                                                f"mutual TLS ends there, for port {port} as the handshake names it"))
        elif capture is None or not captures_inbound(capture, port):
            return None
        else:
            mode = mesh.mtls_mode(policies, dst.pod.namespace, dst.pod.labels, port)
            opaque = " — an opaque port: taken as plaintext at once, no TLS detection" \
                if mesh.is_opaque(dst.pod, port) else ""
            hops.append(Hop(dst.name, "intercept", f":{port} → the proxy's inbound port {INBOUND_PORT} "
                                                   f"(mode {mode.mode}: {mode.decided_by}){opaque}"))
            if packet.mtls_from is None and not mode.accepts_plaintext:
                reason = (f"{dst.name}'s proxy refuses plaintext on port {port} (PeerAuthentication mode STRICT: "
                          f"{mode.decided_by}); the client has no proxy to speak mutual TLS")
                hops.append(Hop(dst.name, "refuse", reason))
                return reason
        services = self.cluster.of_kind("Service")
        http = None
        if mesh.port_protocol(services, dst.pod, port) == "http":
            http = packet.http or mesh.Http("GET", "/", "")
        request = mesh.Request(packet.mtls_from, source_ip, port, dst.ip, http)
        decision = mesh.authorize(policies, dst.pod.namespace, dst.pod.labels, request)
        what = (f"{http.method} {http.path}" + ("" if packet.http else " (a request as curl sends it by default; "
                                                "trace an http:// URL for another)") if http else "the connection")
        who = packet.mtls_from or f"{source_ip} (plaintext: no principal)"
        # the proxy checks a connection on the client's first bytes: an opaque port is where servers
        # that speak first live, and their greeting passes before the check
        greeting = (f"; port {port} is opaque: if its app speaks first (MySQL, SMTP), the app takes the "
                    "connection and its greeting reaches the client before the proxy closes it on the "
                    "client's first bytes (Envoy's, and Istio's, limit)") \
            if not http and not decision.allowed and mesh.is_opaque(dst.pod, port) else ""
        hops.append(Hop(dst.name, "authz-allow" if decision.allowed else "authz-deny",
                        f"AuthorizationPolicy: {what} from {who}: {decision}{greeting}"))
        if not decision.allowed:
            return (f"{dst.name}'s proxy denies {what} from {who}: {decision}"
                    + (' (HTTP 403 "RBAC: access denied")' if http else " (the connection is closed)") + greeting)
        hops.append(Hop(dst.name, "deliver", f"the proxy hands it to the app on port {port}, from "
                                             f"{INBOUND_PASSTHROUGH_SOURCE}"))
        return None

    def _echo_to_virtual_ip(self, src: Party, packet: Packet, dst_ip: str, hops: list[Hop]) -> str | None:
        """An echo request for a Service's virtual IP: kube-proxy translates ports, and ICMP has
        none. A LoadBalancer IP is on its announcing node's `lo` (linux/l2announce), which answers
        it like any of its addresses; a ClusterIP is on no interface: in nftables mode kube-proxy's
        cluster-ips check rejects what no Service port took (ICMP port unreachable), in iptables
        and userspace mode nothing takes it and it is lost. None: answered by the node that holds
        the address (packet.at)."""
        svc = self.services.service_at(dst_ip)
        node = self.announcing_node(svc, dst_ip) if dst_ip in announced_ips(svc, self.addresses.lan) else None
        if node is not None:
            if src.kind == "pod" and not src.host_network and not packet.egress_checked:
                sides = self.policy(src, src, self.addresses.party_for_ip(dst_ip), 0, ICMP)
                hops.append(sides.egress_hop)
                packet.egress_checked = True
                if not sides.egress_allowed:
                    return sides.egress_reason
            if node.name != packet.at.name:
                self._to_other_node(src, packet, node, 0, ICMP, hops, address=dst_ip)  # egress checked above
                hops.append(Hop("LAN", "arp", f"{dst_ip} is answered by node/{node.name} (L2 announcement)"))
            hops.append(Hop(f"node/{node.name}", "local", f"{dst_ip} is on node/{node.name}'s lo (the LoadBalancer "
                                                           f"IP of Service {svc.ref}): kube-proxy translates ports "
                                                           "only, so the node itself takes the echo request"))
            return None
        mode = self.cluster.config.networking.proxy_mode
        at = f"node/{packet.at.name}"
        if dst_ip != fields.cluster_ip(svc):  # an externalIP, or a LoadBalancer IP no node announces
            reason = (f"{dst_ip} is a virtual IP of Service {svc.ref} that no node holds, and kube-proxy translates "
                      "ports only: nothing answers the echo request (ping: no reply, or the route's unreachable error)")
            hops.append(Hop(at, "drop", reason))
            return reason
        if mode == "nftables":
            reason = (f"{dst_ip} is Service {svc.ref}'s virtual IP, and an echo request has no port for kube-proxy "
                      "to translate: its cluster-ips check rejects it (ICMP port unreachable; ping says "
                      "'Destination Port Unreachable')")
            hops.append(Hop(at, "reject", reason))
        else:
            reason = (f"{dst_ip} is Service {svc.ref}'s virtual IP, which no interface holds, and kube-proxy's "
                      f"{mode} rules take TCP, UDP and SCTP ports only: the echo request is lost (ping: no reply)")
            hops.append(Hop(at, "drop", reason))
        return reason

    def _serving(self, dst: Party, port: int, protocol: str) -> images.ServingAnswer:
        if protocol == ICMP:
            return images.echo_answer(dst.name)
        if dst.kind == "pod":
            return images.pod_serving(dst.pod, self.cluster, port, protocol, self._service_links)
        if dst.kind == "node":
            if protocol == "TCP":  # kube-proxy's health check server (semantics.services.HealthCheck)
                for check in health_checks(self.cluster, dst.node.name, self.services):
                    if check.port == port:
                        return images.ServingAnswer(True, check.describe())
            for pod in self.cluster.of_kind("Pod"):  # hostNetwork pods listen on the node's address
                if pod.spec.get("hostNetwork") and pod.spec.get("nodeName") == dst.node.name:
                    answer = images.pod_serving(pod, self.cluster, port, protocol, self._service_links)
                    if answer.serving is not False:
                        return images.ServingAnswer(answer.serving, f"{pod.ref} (hostNetwork): {answer.detail}")
            return images.ServingAnswer(False, f"nothing listens on {dst.name} {port}/{protocol}: connection refused")
        if dst.kind == "external":
            return images.ServingAnswer(None, "the client outside the cluster: whether it listens on "
                                              f"{port}/{protocol} is not known")
        return images.ServingAnswer(None, f"{dst.ip}")

    # ---- HTTP ---------------------------------------------------------------------------------

    def _trace_url(self, src: Party, request: HttpRequest) -> TraceResult:
        """A request, as curl sends it: first where the connection goes (--resolve, an address in
        the URL, the cluster DNS for cluster names, else the ingress controller, as outside DNS
        would point a public name at it), then the packet's path there; if it reaches the
        ingress controller, nginx routes by the Host header and proxies on to a backend."""
        hops: list[Hop] = []
        address, resolved = self._connect_address(src, request, hops)
        if address is None:
            why = ("the ingress controller has no LoadBalancer address for a name outside the cluster to point "
                   "at: --resolve HOST:PORT:ADDR says where (e.g. a node's address and the controller's nodePort)"
                   if self._controller_party() is not None else
                   "no ingress controller runs in this cluster (it comes with the first Ingress)")
            return self._attach(self._dropped(hops, why, "", request.port), request, None, resolved)
        reached = self._walk(src, address, request.port, "TCP", hops,
                             http=mesh.Http("GET", request.target, request.host_header or request.host))
        controller = self._controller_pod(reached.destination.get("pod"))
        if reached.verdict != "delivered":
            if self._is_controller_address(address):
                reached = self._dropped(reached.hops, f"the request does not reach the ingress controller: "
                                                      f"{reached.reason}", address, request.port)
            return self._attach(reached, request, address, resolved)
        if controller is None or reached.destination.get("port") not in CONTROLLER_PORTS:
            return self._attach(reached, request, address, resolved)  # an ordinary connection
        result = self._at_controller(*controller, request, reached, address)
        return self._attach(result, request, address, resolved)

    def _connect_address(self, src: Party, request: HttpRequest, hops: list[Hop]) -> tuple[str | None, str]:
        """(the address the connection goes to, how it was found)."""
        entry = request.resolved_by
        if entry is not None:
            others = (f"; curl tries {', '.join(entry.addresses[1:])} if it cannot connect"
                      if len(entry.addresses) > 1 else "")
            hops.append(Hop(src.name, "resolve", f"{request.host}:{request.port} → {entry.addresses[0]}: "
                                                 f"--resolve {entry.text} (no DNS query){others}"))
            return entry.addresses[0], "resolve"
        if request.host_is_address:
            return request.host, "url"
        if src.pod is not None or request.host.endswith("." + self.cluster.config.networking.dns_domain):
            resolve_hops, addresses, _ = self.resolve(src, request.host)
            if addresses:
                hops += resolve_hops
                return addresses[0], "dns"
        entry_ips = [ip for svc in self._controller_services() for ip in _lb_ips(svc)]
        if not entry_ips:
            return None, "ingress"
        entry_ip = entry_ips[0]
        hops.append(Hop(src.name, "resolve", f"{request.host} → {entry_ip}: the ingress controller's address "
                                             "(a name outside the cluster is taken to point at it; "
                                             "--resolve HOST:PORT:ADDR says where instead)"))
        return entry_ip, "ingress"

    @staticmethod
    def _attach(result: TraceResult, request: HttpRequest, address: str | None, resolved: str) -> TraceResult:
        result.request = request.to_json(address, resolved)
        return result

    def _controller_services(self) -> list:
        """The Services in front of a running ingress controller: the add-on's first, then those
        of the input's own controllers (as the seed's NodePort Service nginx-ingress)."""
        pods = [pod for pod in self.cluster.of_kind("Pod")
                if fields.pod_ip(pod) and ingress_controllers.pod_controller(pod, self.cluster, self._service_links) is not None]
        found = []
        for svc in self.cluster.of_kind("Service"):
            selector = svc.spec.get("selector")
            if selector and any(pod.namespace == svc.namespace and label_selectors.from_set(selector).matches(pod.labels)
                                for pod in pods):
                found.append(svc)
        found.sort(key=lambda svc: (svc.ref != f"{INGRESS_NAMESPACE}/{INGRESS_SERVICE}", svc.ref))
        return found

    def _is_controller_address(self, ip: str) -> bool:
        return any(ip == fields.cluster_ip(svc) or ip in _lb_ips(svc) for svc in self._controller_services())

    def _controller_pod(self, ref: str | None) -> tuple[Party, ControllerFlags] | None:
        """The pod `ref` if it runs an ingress-nginx controller, with the flags it serves by."""
        pod = self.addresses.pods.get(ref) if ref else None
        flags = ingress_controllers.pod_controller(pod, self.cluster, self._service_links) if pod is not None else None
        if flags is None:
            return None
        return self.addresses.pod_party(pod), flags

    def _at_controller(self, controller: Party, flags: ControllerFlags, request: HttpRequest, reached: TraceResult,
                       entry: str) -> TraceResult:
        """nginx in the controller pod, and what it answers (`http`: the status nginx gives
        itself, or 200 when it proxies — the backend's own status is the backend's; None when
        no HTTP answer comes, as after a failed TLS handshake)."""
        answer: dict[str, Any] = {"status": None, "location": None}
        result = self._nginx(controller, flags, request, reached, entry, answer)
        if answer["status"] == 200 and result.verdict != "delivered":
            answer["status"] = 504  # proxied, but the connection to the backend is dropped: nginx times out
        result.http = answer
        return result

    def _nginx(self, controller: Party, flags: ControllerFlags, request: HttpRequest, reached: TraceResult,
               entry: str, answer: dict[str, Any]) -> TraceResult:
        """Its listener, the Host header, TLS, then ingress-nginx's routing → the backend endpoints."""
        hops = list(reached.hops)
        port = request.port
        listener = CONTROLLER_PORTS[reached.destination["port"]]
        if listener != request.scheme:
            why = ("nginx answers 400: the plain HTTP request was sent to the HTTPS port" if listener == "https"
                   else "the TLS handshake fails: nginx speaks plain HTTP on that port (curl: wrong version number)")
            hops.append(Hop(controller.name, "refuse", why))
            answer["status"] = 400 if listener == "https" else None
            return self._dropped(hops, f"{request.scheme}:// to the controller's {listener} port: {why}", entry, port)
        if request.scheme == "https":
            hops.append(Hop(controller.name, "tls", f"SNI {request.sni}: the certificate is chosen by the name curl "
                                                    "sends, not by the Host header" if request.sni else
                                                    "no SNI (the URL's host is an address): ingress-nginx presents "
                                                    "its default self-signed certificate, which curl accepts only "
                                                    "with -k"))
        problem = host_header_problem(request.host_headers())
        if problem:
            hops.append(Hop(controller.name, "refuse", f"nginx answers 400 Bad Request: {problem}"))
            answer["status"] = 400
            return self._dropped(hops, f"nginx answers 400 Bad Request before any Ingress is consulted: {problem}",
                                 entry, port)
        try:
            result = self.route_http(self._routing_url(request), flags)
        except ValueError as exc:
            raise UsageError(f"DST {request.url}: {exc}") from None
        hops.append(Hop(controller.name, "route", "; ".join(result.explanation)))
        answer.update(status=result.status, location=result.redirect)
        ingress_json = result.to_json() if result.matched else None
        if not result.matched:
            return self._dropped(hops, f"no Ingress rule matches {request.scheme}://{result.request_host}"
                                       f"{request.target}: ingress-nginx answers {result.status}", entry, port)
        if result.redirect:
            reason = (f"ingress-nginx answers {result.status} with a redirect to {result.redirect} "
                      "(the request itself reaches no backend; trace the redirect target to follow it)")
            return self._dropped(hops, reason, entry, port, ingress_json)
        backend = result.service
        if backend is None or result.service_port is None or result.status >= 400:
            return self._dropped(hops, f"backend {ingress_json['backend']}: ingress-nginx answers {result.status}",
                                 entry, port, ingress_json)
        if backend.spec.get("type") == "ExternalName":
            return self._dropped(hops, f"backend {backend.ref} is an ExternalName ({backend.spec.get('externalName')}): "
                                       "nginx would proxy outside the cluster, and nothing leaves it (the sandbox rule)",
                                 entry, port, ingress_json)
        service_port = result.service_port
        hops.append(Hop(controller.name, "proxy", f"upstream {backend.ref}:{service_port.get('port')} → "
                                                  f"{ingress_json.get('upstream_path')} (nginx proxies to the endpoints itself)"))
        frontend = self.services.frontend(fields.cluster_ip(backend), int(service_port["port"]),
                                          fields.protocol(service_port))
        if frontend is None:
            return self._dropped(hops, f"Service {backend.ref} is headless or has no such port", entry, port, ingress_json)
        translation = self.services.translate(frontend, controller.ip, controller.node.name, "pod")
        if translation.verdict != "dnat":
            return self._dropped(hops, f"{translation.reason}; ingress-nginx answers 503", entry, port, ingress_json)
        packet = Packet(controller.node, controller, "pod")
        return self._through_service(controller, packet, translation, hops, "TCP", ingress_json)

    @staticmethod
    def _routing_url(request: HttpRequest) -> str:
        """The URL whose host is the one nginx routes by: the Host header, lower case, without its port."""
        host = request.host_header or ""
        name, _, port = host.partition(":") if not host.startswith("[") else (host, "", "")
        if not _ROUTABLE_HOST.fullmatch(name):
            raise UsageError(f"-H 'Host: {host}': podnet routes Host names of letters, digits, '.', '-' and '_' "
                             "(no Ingress host holds anything else, so nginx's server _ would answer)")
        return f"{request.scheme}://{name}{':' + port if port.isdigit() else ''}{request.target}"

    def _controller_party(self) -> Party | None:
        for pod in self.cluster.of_kind("Pod"):
            if fields.pod_ip(pod) and ingress_controllers.pod_controller(pod, self.cluster, self._service_links) is not None:
                return self.addresses.pod_party(pod)
        return None


# the controller container's listeners (controlplane/system.py): nginx's HTTP and HTTPS servers
CONTROLLER_PORTS = {80: "http", 443: "https"}
_ROUTABLE_HOST = re.compile(r"[A-Za-z0-9_.*-]*")


def _lb_ips(svc) -> list[str]:
    return fields.load_balancer_ips(svc)


def _codes(statuses: tuple[int, ...]) -> str:
    """Status codes as ranges: 500-599, 429."""
    out, start = [], None
    for i, code in enumerate(statuses):
        if start is None:
            start = code
        if i + 1 == len(statuses) or statuses[i + 1] != code + 1:
            out.append(str(start) if start == code else f"{start}-{code}")
            start = None
    return ", ".join(out)
