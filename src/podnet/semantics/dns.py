"""The cluster DNS, as pure functions: the answers CoreDNS gives, and how a pod's resolver asks.

Three parts, each as the real component does it:

- `ClusterDNS(cluster).answer(qname, qtype)`: CoreDNS's `kubernetes` plugin as kubeadm configures
  it (`kubernetes cluster.local in-addr.arpa ip6.arpa { pods insecure; fallthrough in-addr.arpa
  ip6.arpa; ttl 30 }`), following the Kubernetes DNS-Based Service Discovery specification 1.1.0
  (github.com/kubernetes/dns docs/specification.md) and, where the spec is silent, CoreDNS's own
  code (plugin/kubernetes kubernetes.go, parse.go, reverse.go, ns.go, handler.go and
  plugin/backend_lookup.go). Built once per Cluster; each answer is a few dict look-ups, so a
  DNS server can call it per query. The plugin's options are read from the cluster's own
  Corefile (the kube-system/coredns ConfigMap) by semantics/corefile.py, the parser the DNS
  server runs too, so a prediction and the server agree on zones, ttl and what is invalid.
- `resolv_conf(pod, cluster)`: the /etc/resolv.conf kubelet hands the runtime for the pod's
  dnsPolicy and dnsConfig (pkg/kubelet/network/dns/dns.go), rendered as containerd writes it.
- `ClusterDNS.lookup(name, qtype, resolv)`: glibc's stub resolver walking the search list
  (resolv/res_query.c `__res_context_search`).

Decisions where the spec leaves room (CoreDNS 1.12, kubeadm's image, is the reference):

- Outside the cluster zones there is no `forward` in podnet's Corefile, so the plugin chain ends
  (`plugin.NextOrFailure`: "no next plugin found") and the server answers SERVFAIL, not REFUSED
  (REFUSED is only for a query no server block matches; kubeadm's block is `.:53`). The same for
  reverse names the cluster has no record for: `fallthrough in-addr.arpa ip6.arpa` passes them on,
  and nothing follows. Pass `upstream=` to model a configured forwarder.
- ExternalName A/AAAA: the CNAME alone (NOERROR) — CoreDNS asks its own server for the target,
  which ends in SERVFAIL without an upstream, and keeps only the CNAME. An in-zone target is
  chased inside the zone; an IP literal as externalName gives no record (NXDOMAIN).
- Headless Services publish endpoints whose `conditions.ready` is not false (unset = ready, as
  the API documents). publishNotReadyAddresses works through the EndpointSlice controller, which
  marks those endpoints ready; CoreDNS itself never reads the Service field. No ready endpoint:
  NXDOMAIN (spec 2.4.1 and CoreDNS). Endpoint names: `hostname`, else the dashed IP.
- SRV: priority 0, weight floor(100/N) (at least 1) for N records in the answer, as CoreDNS;
  the SRV port of a headless Service is the endpoint (target) port. A query without `_port._proto`
  labels gets every port, named or not (CoreDNS); `_port._proto` selects by port name.
- TXT: `dns-version.<zone>` is "1.1.0" with TTL 28800; any other name gives NODATA when it has
  records of another type, NXDOMAIN otherwise — even an empty non-terminal such as
  `<ns>.svc.<zone>` (CoreDNS PR #5737). Every other type follows NXDOMAIN/NODATA by whether the
  name exists: `svc.<zone>`, `pod.<zone>` and the zone apex always, `<ns>.svc|pod.<zone>` when
  the namespace exists.
- SOA: `<zone>. 30 IN SOA ns.dns.<zone>. hostmaster.<zone>. <serial> 7200 1800 86400 30`
  (CoreDNS: TTL min(ttl, 300), minimum = ttl). CoreDNS's serial is the time of the last change it
  saw; here it is a CRC-32 of the cluster's DNS data, so the same cluster has the same serial.
  Only the zone apex answers an SOA question; any name below it gets NODATA with the SOA in the
  authority section, without a look-up, so a name that does not exist too (handler.go since
  CoreDNS 1.8.4, PR #4592).
- ExternalName: `_port._proto.<svc>` and `<endpoint>.<svc>` in front of an ExternalName Service
  are NXDOMAIN for every type (kubernetes.go findServices skips the Service when a port,
  protocol or endpoint is asked for).
- Names echo the query's case (CoreDNS answers with the question name and the zone as asked).
- Answers keep the order of the EndpointSlices; kubeadm's `loadbalance` plugin shuffles A
  records per response, so compare multi-record answers as sets.
- podnet nodes have no resolver file of their own: dnsPolicy Default (and ClusterFirst on the
  host network) gives an empty resolv.conf, and glibc then sends to 127.0.0.1:53, where nothing
  listens in a pod (connection refused). Pass `node_resolv=` to model a node's file.
- kubelet merges dnsConfig options through a Go map (order unstable); here the existing options
  come first and new ones follow in the pod's order.
"""

from __future__ import annotations

import ipaddress
import math
import zlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, NamedTuple

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.api.positions import LineFinder
from podnet.controlplane import Cluster
from podnet.semantics.corefile import (ClusterServer, KubernetesPlugin, ServerConfig, cluster_server, in_zone,
                                      is_reverse, kubeadm_plugin)

SCHEMA_VERSION = "1.1.0"  # the spec version CoreDNS serves in dns-version.<zone>
SCHEMA_TTL = 28800
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MAX_NAMESERVERS = 3  # kubelet (validation.MaxDNSNameservers)
MAX_SEARCH_PATHS = 32  # kubelet, stable since 1.28
MAX_SEARCH_CHARS = 2048
MAX_SEARCH_DOMAIN = 253
GLIBC_MAX_NDOTS = 15  # RES_MAXNDOTS
CNAME_CHAIN_LIMIT = 7  # CoreDNS stops chasing in-zone CNAMEs after 8


# ---------------------------------------------------------------------------------------------
# Answers


@dataclass(frozen=True, slots=True)
class Record:
    """One resource record in presentation form: names are FQDNs with the trailing dot."""

    name: str
    type: str
    ttl: int
    data: str

    def text(self) -> str:
        """The zone-file line: `web.shop.svc.cluster.local. 30 IN A 10.96.0.20`."""
        return f"{self.name} {self.ttl} IN {self.type} {self.data}"

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "ttl": self.ttl, "data": self.data}


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """A response: rcode, and the answer, authority (the zone SOA on NXDOMAIN/NODATA) and
    additional sections. Authoritative unless the query left the cluster zones."""

    rcode: str
    answers: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    authoritative: bool = True

    @property
    def positive(self) -> bool:
        """What a stub resolver counts as found: NOERROR with at least one answer record."""
        return self.rcode == "NOERROR" and bool(self.answers)

    @property
    def nodata(self) -> bool:
        return self.rcode == "NOERROR" and not self.answers

    def to_message(self, query: dns.message.Message) -> dns.message.Message:
        """The wire response to `query` (for a DNS server serving these answers)."""
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.from_text(self.rcode))
        if self.authoritative:
            response.flags |= dns.flags.AA
        else:
            response.flags &= ~dns.flags.AA
        for section, records in ((response.answer, self.answers), (response.authority, self.authority),
                                 (response.additional, self.additional)):
            for record in records:
                rdtype = dns.rdatatype.from_text(record.type)
                rrset = response.find_rrset(section, dns.name.from_text(record.name), dns.rdataclass.IN,
                                            rdtype, create=True)
                rrset.add(_rdata(rdtype, record.data), record.ttl)
        return response


_RDATA_CACHE: dict[tuple, dns.rdata.Rdata] = {}


def _rdata(rdtype, text: str) -> dns.rdata.Rdata:
    key = (rdtype, text)
    found = _RDATA_CACHE.get(key)
    if found is None:
        if len(_RDATA_CACHE) > 100_000:
            _RDATA_CACHE.clear()
        found = _RDATA_CACHE[key] = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)
    return found


SERVFAIL = DnsAnswer("SERVFAIL", authoritative=False)
REFUSED = DnsAnswer("REFUSED", authoritative=False)
_NO_KUBERNETES = KubernetesPlugin(zones=(), fallthrough=())  # a block without one passes every name on


# ---------------------------------------------------------------------------------------------
# The Corefile's kubernetes block


COREFILE_CONFIGMAP = ("kube-system", "coredns")  # kubeadm's; the DNS pods mount its Corefile key
COREFILE_SOURCE = "configmap kube-system/coredns: Corefile"


def corefile_text(cluster: Cluster) -> str | None:
    """The Corefile the cluster's DNS pods run: the `Corefile` key of the kube-system/coredns
    ConfigMap (their /etc/coredns/Corefile volume); None without one."""
    configmap = cluster.get("ConfigMap", *COREFILE_CONFIGMAP)
    return ((configmap.body.get("data") or {}).get("Corefile") if configmap else None) or None


# ---------------------------------------------------------------------------------------------
# Indexes


class _Port(NamedTuple):
    name: str  # lower case
    protocol: str  # lower case
    number: int  # -1: CoreDNS's sentinel for a slice without ports


_NO_PORTS = (_Port("", "", -1),)


class _Endpoint(NamedTuple):
    ip: str
    label: str  # hostname, pod name (endpoint_pod_names) or dashed IP
    ports: tuple[_Port, ...]


@dataclass(slots=True)
class _Service:
    name: str
    namespace: str
    kind: str  # ClusterIP | Headless | ExternalName
    ips: tuple[str, ...]
    ports: tuple[_Port, ...]
    external_name: str | None
    endpoints: list[_Endpoint] = field(default_factory=list)


class _Item(NamedTuple):
    """CoreDNS's msg.Service: what a name resolves to before it becomes a record."""

    host: str  # an IP, or a name (CNAME)
    port: int
    target: str  # the owner name this item stands for (SRV and NS targets)
    kind: str  # A | AAAA | CNAME | TXT
    ttl: int


@dataclass(slots=True)
class _Query:
    name: str  # as asked, with the trailing dot
    lname: str  # lower case
    qtype: str
    zone: str  # the matched zone, lower case
    zone_text: str  # the zone as the query spelled it


@dataclass(slots=True)
class _Request:
    """parse.go's recordRequest."""

    port: str = ""
    protocol: str = ""
    endpoint: str = ""
    service: str = ""
    namespace: str = ""
    pod_or_svc: str = ""


class _NameError(Exception):
    """errNoItems / errNsNotExposed / errInvalidRequest: the name does not exist.

    Raised as a new instance each time: re-raising one shared instance would grow its
    traceback chain (and keep every frame in it alive) with every query."""


# Every kind ClusterDNS reads (_build, _plugin_of): keep this in step with them.
DNS_KINDS = frozenset({"Namespace", "Service", "EndpointSlice", "Pod", "ConfigMap"})


def dns_view(cluster: Cluster) -> Cluster:
    """`cluster` with only what ClusterDNS reads: its config and the DNS_KINDS objects. For a
    DNS server that keeps its cluster to rebuild from (a reloaded Corefile): ClusterDNS answers
    the same from it, without the legacy Endpoints, the workloads and the manifests' text
    (25 of the 100 MB a cluster of 10,000 Services takes)."""
    objects = {key: obj for key, obj in cluster.objects.items() if obj.kind in DNS_KINDS}
    return replace(cluster, objects=objects, warnings=[], lines=LineFinder({}))


class ClusterDNS:
    """The cluster DNS server's view of a Cluster: build once, then answer() per query.

    Building indexes Services, EndpointSlices and pods (a few hundred ms for 10,000 pods);
    answer() then only reads them, so one instance can serve many threads, and a changed
    cluster means a new instance. A long-running server should `gc.collect(); gc.freeze()`
    after building, so the cyclic collector stops rescanning the cluster's objects.
    """

    def __init__(self, cluster: Cluster, *, plugin: KubernetesPlugin | None = None,
                 upstream: Callable[[str, str], DnsAnswer] | None = None, serial: int | None = None):
        """`plugin`: the kubernetes block to answer with (a DNS server passes its block's, and
        picks the block itself); without it, the cluster's own Corefile decides, as its DNS
        pods read it: each name goes to the server block corefile.serving_block picks (none:
        REFUSED), and is answered by that block's kubernetes plugin, or passed on if it has
        none. An invalid Corefile raises CorefileError: the server would not start."""
        self.cluster = cluster
        self._server: ClusterServer | None = None  # None: the caller picked the block
        self._block: ServerConfig | None = None  # the block whose plugin this instance answers with
        self._others: dict[int, ClusterDNS] = {}  # other blocks' kubernetes plugins, built when asked
        if plugin is None:
            plugin, self._server, self._block = self._plugin_of(cluster)
        self.plugin = plugin
        self.ttl = self.plugin.ttl
        self.upstream = upstream
        self._zones = sorted(self.plugin.zones, key=len, reverse=True)  # longest match first
        self._namespaces = {ns.name.lower() for ns in cluster.of_kind("Namespace")}
        self._services: dict[tuple[str, str], _Service] = {}
        self._reverse: dict[str, tuple[str, ...]] = {}
        self._pod_ips: set[tuple[str, str]] = set()
        self._build()
        self.serial = serial if serial is not None else self._fingerprint()
        self._ns = self._nameservers()
        self.server_ips = frozenset(self._server_ips())

    # -- building -------------------------------------------------------------------------------

    @staticmethod
    def _plugin_of(cluster: Cluster) -> tuple[KubernetesPlugin, ClusterServer | None, ServerConfig | None]:
        """The plugin of the block that serves the cluster domain (the others answer through
        their own instance), the blocks pods reach, and that block."""
        text = corefile_text(cluster)
        server = cluster_server(text, COREFILE_SOURCE) if text else None
        if server is None:  # no Corefile: kubeadm's
            return kubeadm_plugin(cluster.config.networking.dns_domain), None, None
        block = server.block_for(cluster.config.networking.dns_domain + ".")
        if block is None or block.kubernetes is None:
            block = next((b for b in server.blocks if b.kubernetes is not None), None)
        # no kubernetes block: a plugin without zones passes every name on, as the chain does
        return (block.kubernetes if block else _NO_KUBERNETES), server, block

    def _build(self) -> None:
        # Values that recur across Services and slices (the same ports, the same endpoints behind
        # many Services, lowercased names) are kept once: they live as long as the instance, and
        # a large cluster repeats them thousands of times. (Shapes differ, so no false matches.)
        shared: dict = {}

        def one(value):
            return shared.setdefault(value, value)

        for svc in self.cluster.of_kind("Service"):
            spec = svc.spec
            kind = "ExternalName" if spec.get("type") == "ExternalName" else (
                "Headless" if fields.is_headless(svc) else "ClusterIP")
            ips = tuple(fields.cluster_ips(svc))
            ports = one(tuple(_Port((p.get("name") or "").lower(), fields.protocol(p).lower(),
                                    int(p.get("port") or 0)) for p in spec.get("ports") or []))
            self._services[(one(svc.namespace.lower()), one(svc.name.lower()))] = _Service(
                svc.name, svc.namespace, kind, ips if kind == "ClusterIP" else (), ports, spec.get("externalName"))
            if kind == "ClusterIP":
                for ip in ips:  # reverse.go: a ClusterIP maps to its Service alone
                    self._reverse.setdefault(ip, (f"{svc.name}.{svc.namespace}.svc.{self.plugin.primary_zone}",))

        endpoint_names: dict[str, list[str]] = defaultdict(list)
        for slice_ in self.cluster.of_kind("EndpointSlice"):
            body = slice_.body
            if body.get("addressType") == "FQDN":
                continue
            service_name = slice_.labels.get(SERVICE_NAME_LABEL)
            if not service_name:
                continue
            ports = one(tuple(_Port((p.get("name") or "").lower(), fields.protocol(p).lower(),
                                    int(p["port"]) if p.get("port") is not None else -1)
                              for p in body.get("ports") or []) or _NO_PORTS)
            svc = self._services.get((slice_.namespace.lower(), service_name.lower()))
            for endpoint in body.get("endpoints") or []:
                if not fields.endpoint_ready(endpoint):
                    continue
                for ip in endpoint.get("addresses") or []:
                    label = self._endpoint_label(endpoint, ip)
                    if svc is not None:
                        svc.endpoints.append(one(_Endpoint(ip, one(label), ports)))
                    # reverse.go looks endpoints up by IP whether or not their Service exists
                    endpoint_names[ip].append(f"{label}.{service_name}.{slice_.namespace}.svc.{self.plugin.primary_zone}")
        for ip, names in endpoint_names.items():
            if ip not in self._reverse:
                self._reverse[ip] = tuple(dict.fromkeys(names))

        for pod in self.cluster.of_kind("Pod"):
            status = pod.status
            for ip in [p.get("ip") for p in status.get("podIPs") or []] or [status.get("podIP")]:
                if ip:
                    self._pod_ips.add((pod.namespace.lower(), ip))

    def _endpoint_label(self, endpoint: dict, ip: str) -> str:
        """endpointHostname(): hostname, else (endpoint_pod_names) the pod's name, else the dashed IP."""
        if endpoint.get("hostname"):
            return endpoint["hostname"]
        target = (endpoint.get("targetRef") or {}).get("name") or ""
        if self.plugin.endpoint_pod_names and target and len(target) < 64:
            return target
        return ip.replace(".", "-") if "." in ip else ip.replace(":", "-")

    def _fingerprint(self) -> int:
        parts = []
        for key in sorted(self._services):
            s = self._services[key]
            parts.append(f"{key}|{s.kind}|{s.ips}|{s.ports}|{s.external_name}|{s.endpoints}")
        parts.append(repr(sorted(self._namespaces)))
        return zlib.crc32("\n".join(parts).encode()) or 1

    def _nameservers(self) -> list[tuple[str, str]]:
        """ns.go nsAddrs(): the Service in front of the DNS pods, by name and address."""
        zone = self.plugin.primary_zone
        svc = self._services.get(("kube-system", "kube-dns"))
        if svc and svc.kind == "ClusterIP" and svc.ips:
            return [(f"kube-dns.kube-system.svc.{zone}", ip) for ip in svc.ips]
        return [(f"ns.dns.{zone}", str(self.cluster.config.networking.dns_service_ip))]

    def _server_ips(self) -> Iterable[str]:
        """Addresses a pod's resolver can send to and reach this server: the kube-dns Service
        address (and the configured DNS IP) and the DNS pods' own addresses."""
        yield str(self.cluster.config.networking.dns_service_ip)
        svc = self._services.get(("kube-system", "kube-dns"))
        if svc:
            yield from svc.ips
            yield from (e.ip for e in svc.endpoints)

    def serves(self, ip: str) -> bool:
        return ip in self.server_ips

    def hosts(self) -> list[tuple[str, str]]:
        """Every (name, address) pair with a fixed A/AAAA answer — Service names and endpoint
        names, not pod names (which `pods insecure` answers for any IP). Names without the dot."""
        if not self.plugin.zones:
            return []  # no kubernetes block in the Corefile: no cluster names at all
        zone = self.plugin.primary_zone.rstrip(".")
        out = []
        for s in self._services.values():
            base = f"{s.name}.{s.namespace}.svc.{zone}"
            if s.kind == "ClusterIP":
                out += [(base, ip) for ip in s.ips]
            elif s.kind == "Headless":
                out += list(dict.fromkeys((base, e.ip) for e in s.endpoints))
            if s.kind != "ExternalName":
                out += list(dict.fromkeys((f"{e.label}.{base}", e.ip) for e in s.endpoints))
        return out

    # -- answering ------------------------------------------------------------------------------

    def answer(self, qname: str, qtype: str = "A") -> DnsAnswer:
        """The response CoreDNS gives to one question (class IN). `qname` is absolute, with or
        without the trailing dot; `qtype` is a type mnemonic (A, AAAA, SRV, PTR, ...)."""
        name = qname if qname.endswith(".") else qname + "."
        lname = name.lower()
        qtype = qtype.upper()
        if self._server is not None:
            block = self._server.block_for(lname)
            if block is None:
                return REFUSED  # no server block on the port serves the name
            if block is not self._block:
                return self._answer_in(block, name, qtype)
        zone = self._match_zone(lname)
        if zone is None:
            return self._next_plugin(name, qtype)
        q = _Query(name, lname, qtype, zone, name[len(name) - len(zone):] if zone != "." else ".")
        records: list[Record] = []
        extra: list[Record] = []
        try:
            if qtype == "A" or qtype == "AAAA":
                records = self._address(q, qtype, q.name, q.lname, ())
            elif qtype == "TXT":
                records = self._txt(q)
            elif qtype == "CNAME":
                records = self._cname(q)
            elif qtype == "PTR":
                records = self._ptr(q)
            elif qtype == "SRV":
                records, extra = self._srv(q)
            elif qtype == "SOA":  # handler.go: only the apex has one; elsewhere NODATA, looked up or not
                records = [self._soa(q)] if lname == zone else []
            elif qtype == "NS" and lname == zone:
                records, extra = self._ns_records(q)
            else:  # MX (no mail records here), NS below the apex, and every other type
                self._items(q, qtype, q.lname)
        except _NameError:
            if self._falls_through(lname):
                return self._next_plugin(name, qtype)
            return DnsAnswer("NXDOMAIN", authority=(self._soa(q),))
        if not records:
            return DnsAnswer("NOERROR", authority=(self._soa(q),))
        return DnsAnswer("NOERROR", answers=tuple(records), additional=tuple(extra))

    def _match_zone(self, lname: str) -> str | None:
        return next((zone for zone in self._zones if in_zone(lname, zone)), None)

    def _falls_through(self, lname: str) -> bool:
        zones = self.plugin.fallthrough
        if zones is None:
            return False
        return not zones or any(in_zone(lname, z) for z in zones)

    def _answer_in(self, block: ServerConfig, name: str, qtype: str) -> DnsAnswer:
        """A name another server block serves: its own kubernetes plugin answers (with the same
        cluster), or without one the rest of its chain (the upstream, else SERVFAIL)."""
        if block.kubernetes is None:
            return self._next_plugin(name, qtype)
        other = self._others.get(id(block))
        if other is None:
            other = self._others[id(block)] = ClusterDNS(self.cluster, plugin=block.kubernetes, upstream=self.upstream)
        return other.answer(name, qtype)

    def _next_plugin(self, name: str, qtype: str) -> DnsAnswer:
        """Past the kubernetes plugin: the upstream, if one is configured; else the end of the
        chain, which CoreDNS answers with SERVFAIL."""
        if self.upstream is not None:
            return self.upstream(name, qtype)
        return SERVFAIL

    def _soa(self, q: _Query) -> Record:
        z = q.zone_text
        return Record(z, "SOA", min(self.ttl, 300),
                      f"ns.dns.{z} hostmaster.{z} {self.serial} 7200 1800 86400 {self.ttl}")

    # Services() of kubernetes.go: the items a name stands for, by query type.
    def _items(self, q: _Query, qtype: str, lname: str) -> list[_Item]:
        if qtype == "TXT":
            if self._relative(lname, q.zone) == "dns-version":
                return [_Item(SCHEMA_VERSION, 0, lname, "TXT", SCHEMA_TTL)]
            try:
                found = self._records(q, lname)
            except _NameError:
                found = []
            if found:
                return []  # the name exists with other types: NODATA
            raise _NameError
        if lname == "ns.dns." + q.zone:  # isDefaultNS: the server's own name
            return [_Item(ip, 0, lname, kind, self.ttl) for _, ip in self._ns
                    for kind in [_ip_kind(ip)] if kind == qtype]
        items = self._records(q, lname)
        if qtype == "SRV":
            items = [i for i in items if i.kind != "CNAME"]
        return items

    def _records(self, q: _Query, lname: str) -> list[_Item]:
        r = self._parse(lname, q.zone)
        if not r.pod_or_svc:
            return []  # the apex, svc.<zone>, pod.<zone>: NODATA
        if is_reverse(lname):
            raise _NameError
        if r.namespace not in self._namespaces:
            raise _NameError
        if r.pod_or_svc == "pod":
            return self._find_pods(r, q)
        return self._find_services(r, q)

    @staticmethod
    def _relative(lname: str, zone: str) -> str:
        if zone == ".":
            return lname[:-1]
        return lname[: -len(zone) - 1] if lname != zone else ""

    def _parse(self, lname: str, zone: str) -> _Request:
        """parse.go: _port._protocol.service.namespace.svc|pod, endpoint.service.namespace.svc|pod."""
        base = self._relative(lname, zone)
        r = _Request()
        if base in ("", "svc", "pod"):
            return r
        segs = base.split(".")
        last = len(segs) - 1
        r.pod_or_svc = segs[last]
        if r.pod_or_svc not in ("pod", "svc"):
            raise _NameError
        last -= 1
        if last < 0:
            return r
        r.namespace = segs[last]
        last -= 1
        if last < 0:
            return r
        r.service = segs[last]
        last -= 1
        if last < 0:
            return r
        if last == 0:
            r.endpoint = segs[0]
        elif last == 1:
            r.protocol = segs[1][1:] if segs[1].startswith("_") else segs[1]
            r.port = segs[0][1:] if segs[0].startswith("_") else segs[0]
        else:
            raise _NameError  # too long
        return r

    def _find_pods(self, r: _Request, q: _Query) -> list[_Item]:
        mode = self.plugin.pods
        if mode == "disabled":
            raise _NameError
        podname = r.service
        if not podname:
            return []
        if podname.count("-") == 3 and "--" not in podname:
            text = podname.replace("-", ".")
        else:
            text = podname.replace("-", ":")
        try:
            if "%" in text:
                raise ValueError
            ip = str(ipaddress.ip_address(text))
        except ValueError:
            raise _NameError from None
        if mode == "verified" and (r.namespace, ip) not in self._pod_ips:
            raise _NameError
        target = f"{podname}.{r.namespace}.pod.{q.zone_text}"
        return [_Item(ip, 0, target, _ip_kind(ip), self.ttl)]

    def _find_services(self, r: _Request, q: _Query) -> list[_Item]:
        if not r.service:
            return []  # <ns>.svc.<zone> with the namespace present: NODATA
        svc = self._services.get((r.namespace, r.service))
        if svc is None:
            raise _NameError
        base = f"{svc.name}.{svc.namespace}.svc.{q.zone_text}"
        if svc.kind == "ExternalName":  # no endpoints, and no port or protocol labels either
            if r.endpoint or r.port or r.protocol or not svc.external_name or _is_ip(svc.external_name):
                raise _NameError
            return [_Item(svc.external_name, 0, base, "CNAME", self.ttl)]
        items = []
        if svc.kind == "Headless" or r.endpoint:
            for e in svc.endpoints:
                if r.endpoint and e.label.lower() != r.endpoint:
                    continue
                for p in e.ports:
                    if _port_matches(r, p):
                        items.append(_Item(e.ip, p.number, f"{e.label}.{base}", _ip_kind(e.ip), self.ttl))
            if not items:
                raise _NameError
            return items
        matched = False
        for p in svc.ports:
            if _port_matches(r, p):
                matched = True
                items += [_Item(ip, p.number, base, _ip_kind(ip), self.ttl) for ip in svc.ips]
        if not matched:
            raise _NameError
        return items

    # backend_lookup.go, per type
    def _address(self, q: _Query, qtype: str, name: str, lname: str, previous: tuple[Record, ...]) -> list[Record]:
        items = self._items(q, qtype, lname)
        records: list[Record] = []
        seen: set[str] = set()
        for item in items:
            if item.kind == "CNAME":
                target = item.host if item.host.endswith(".") else item.host + "."
                if target.lower() == lname or len(previous) > CNAME_CHAIN_LIMIT:
                    continue  # x CNAME x, or a chain too long
                cname = Record(name, "CNAME", item.ttl, target)
                if any(p.name.lower() == cname.name.lower() and p.data.lower() == target.lower() for p in previous):
                    continue
                ltarget = target.lower()
                if q.zone == "." or ltarget == q.zone or ltarget.endswith("." + q.zone):
                    try:
                        chased = self._address(q, qtype, target, ltarget, previous + (cname,))
                    except _NameError:
                        chased = []
                    if chased:
                        records.append(cname)
                        records += chased
                    continue
                records.append(cname)
                if self.upstream is not None:
                    records += self.upstream(target, qtype).answers
                continue
            if item.kind == qtype and item.host not in seen:
                seen.add(item.host)
                records.append(Record(name, qtype, item.ttl, item.host))
        return records

    def _txt(self, q: _Query) -> list[Record]:
        return [Record(q.name, "TXT", i.ttl, f'"{i.host}"') for i in self._items(q, "TXT", q.lname)]

    def _cname(self, q: _Query) -> list[Record]:
        items = self._items(q, "CNAME", q.lname)
        if items and items[0].kind == "CNAME":
            host = items[0].host
            return [Record(q.name, "CNAME", items[0].ttl, host if host.endswith(".") else host + ".")]
        return []

    def _ptr(self, q: _Query) -> list[Record]:
        ip = _address_from_reverse(q.lname)
        if not ip:
            self._records(q, q.lname)  # raises for names that do not exist
            return []
        targets = self._reverse.get(ip)
        if not targets:
            raise _NameError
        return [Record(q.name, "PTR", self.ttl, t) for t in targets]

    def _srv(self, q: _Query) -> tuple[list[Record], list[Record]]:
        items = self._items(q, "SRV", q.lname)
        records: list[Record] = []
        extra: list[Record] = []
        total = 100 * len(items)  # every item has priority 0 and weight 100 in CoreDNS's sum
        seen_srv: set[tuple[str, int]] = set()
        seen_addr: set[tuple[str, str]] = set()
        for item in items:
            if item.port == -1 or item.kind not in ("A", "AAAA"):
                continue
            weight = max(1, int(math.floor(100.0 / total * 100)))
            if (item.target, item.port) not in seen_srv:
                seen_srv.add((item.target, item.port))
                records.append(Record(q.name, "SRV", item.ttl, f"0 {weight} {item.port} {item.target}"))
            if (item.target, item.host) not in seen_addr:
                seen_addr.add((item.target, item.host))
                extra.append(Record(item.target, item.kind, item.ttl, item.host))
        return records, extra

    def _ns_records(self, q: _Query) -> tuple[list[Record], list[Record]]:
        records, extra, seen = [], [], set()
        for target, ip in self._ns:
            extra.append(Record(target, _ip_kind(ip), self.ttl, ip))
            if target not in seen:
                seen.add(target)
                records.append(Record(q.name, "NS", self.ttl, target))
        return records, extra

    # -- resolving from a pod ---------------------------------------------------------------------

    def lookup(self, name: str, qtype: str, resolv: ResolvConf) -> Lookup:
        """glibc's res_search: which names a pod's resolver asks, in order, and what it gets."""
        server = next((ns for ns in resolv.nameservers if self.serves(ns)), None)
        if not resolv.nameservers:
            failure = ("connection refused: resolv.conf has no nameserver, so glibc asks 127.0.0.1:53, "
                       "where nothing listens")
        elif server is None:
            failure = (f"connection timed out: no DNS server in this cluster at {', '.join(resolv.nameservers)} "
                       f"(the cluster DNS is {self.cluster.config.networking.dns_service_ip})")
        else:
            failure = None
        return res_search(name, resolv, None if failure else (lambda fqdn: self.answer(fqdn, qtype)), server, failure)


def res_search(name: str, resolv: ResolvConf, ask: Callable[[str], DnsAnswer | None] | None,
               server: str | None, failure: str | None = None) -> Lookup:
    """glibc's __res_context_search over `resolv`: `ask(fqdn)` sends one query (None: no
    response at all). The simulator asks ClusterDNS; `podnet dig --from` on a running cluster
    asks the real server from inside the pod, through this same walk."""
    tried: list[str] = []
    answers: list[DnsAnswer] = []

    def send(fqdn: str) -> DnsAnswer | None:
        tried.append(fqdn)
        if ask is None:
            return None
        result = ask(fqdn)
        if result is not None:
            answers.append(result)
        return result

    def done(final: DnsAnswer | None, answered: str | None = None) -> Lookup:
        if final is None:
            return Lookup(tried, SERVFAIL, None, server, failure or "no response from the DNS server", None)
        final_qname = tried[next(i for i, a in enumerate(answers) if a is final)]
        return Lookup(tried, final, answered, server, None, final_qname)

    dots = name.count(".")
    trailing = name.endswith(".")
    absolute = name if trailing else name + "."
    saved: DnsAnswer | None = None
    tried_as_is = False
    if dots >= resolv.ndots or trailing:
        result = send(absolute)
        if result is not None and result.positive:
            return done(result, absolute)
        if trailing:
            return done(result)
        saved, tried_as_is = result, True

    searched = root_on_list = False
    nodata: DnsAnswer | None = None
    last: DnsAnswer | None = None
    if not trailing:  # RES_DEFNAMES and RES_DNSRCH are on by default
        for domain in resolv.searches:
            searched = True
            domain = domain[1:] if domain.startswith(".") else domain
            if not domain:
                root_on_list = True
            fqdn = absolute if not domain else f"{name}.{domain}" + ("" if domain.endswith(".") else ".")
            result = send(fqdn)
            if result is None:
                if failure and failure.startswith("connection refused"):
                    return done(None)  # ECONNREFUSED: give up at once
                break  # timed out: stop searching, try the name as is below
            last = result
            if result.positive:
                return done(result, fqdn)
            if result.rcode == "NOERROR":
                nodata = nodata or result  # NO_DATA: keep trying
            elif result.rcode not in ("NXDOMAIN", "SERVFAIL"):
                break  # REFUSED and the like: done with the search list

    if (dots or not searched or not resolv.no_tld_query) and not (tried_as_is or root_on_list):
        result = send(absolute)
        if result is not None and result.positive:
            return done(result, absolute)
        last = result if result is not None else last
    if failure:
        return done(None)
    return done(saved or nodata or last)


@dataclass(frozen=True)
class Lookup:
    """A search-list walk: every FQDN asked in order, the answer the resolver returns (the
    first positive one; else, as glibc reports it, the as-is answer if that was asked first,
    else a NODATA, else the last), the name that answered, and the server used."""

    tried: list[str]
    final: DnsAnswer
    qname_answered: str | None
    server: str | None = None
    error: str | None = None  # no DNS response at all (connection refused, timed out)
    final_qname: str | None = None  # the name `final` answers


def _port_matches(r: _Request, p: _Port) -> bool:
    return (not r.port or r.port == p.name) and (not r.protocol or r.protocol == p.protocol)


def _ip_kind(ip: str) -> str:
    return "AAAA" if ":" in ip else "A"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _address_from_reverse(lname: str) -> str:
    """dnsutil.ExtractAddressFromReverse: the address of a full reverse name, else ""."""
    if not (lname.endswith(".in-addr.arpa.") or lname.endswith(".ip6.arpa.")):
        return ""
    try:
        return dns.reversename.to_address(dns.name.from_text(lname))
    except Exception:  # partial names, bad labels
        return ""


# ---------------------------------------------------------------------------------------------
# resolv.conf


@dataclass(frozen=True)
class ResolvConf:
    """A resolver file: nameservers, search list, options (`ndots:5`, `edns0`, ...)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # kubelet's events when limits trimmed the file

    @property
    def ndots(self) -> int:
        """glibc: the last ndots option wins; default 1, at most 15."""
        value = 1
        for option in self.options:
            if option.startswith("ndots:"):
                digits = option[6:]
                if digits.isdigit():
                    value = min(int(digits), GLIBC_MAX_NDOTS)
        return value

    @property
    def no_tld_query(self) -> bool:
        return "no-tld-query" in self.options

    def render(self) -> str:
        """The file as the runtime writes it from kubelet's DNS config (containerd: search,
        nameserver lines, options)."""
        lines = []
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        lines += [f"nameserver {ns}" for ns in self.nameservers]
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> ResolvConf:
        """A resolver file as kubelet reads the node's (`search .` dropped, trailing dots trimmed)."""
        nameservers, searches, options = [], [], []
        for line in text.splitlines():
            words = line.split("#", 1)[0].split(";", 1)[0].split()
            if not words:
                continue
            if words[0] == "nameserver" and len(words) > 1:
                nameservers.append(words[1])
            elif words[0] in ("search", "domain"):
                searches = [w.rstrip(".") for w in words[1:] if w != "."]
            elif words[0] == "options":
                options += words[1:]
        return cls(tuple(nameservers), tuple(searches), tuple(options))


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def resolv_conf(pod: KubeObject, cluster: Cluster, node_resolv: ResolvConf | None = None) -> ResolvConf:
    """The /etc/resolv.conf kubelet gives `pod` (GetPodDNS): by dnsPolicy, then dnsConfig
    merged in, then trimmed to the resolver limits."""
    spec = pod.spec
    networking = cluster.config.networking
    host = node_resolv or ResolvConf()  # podnet nodes have no resolver file of their own
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "None":
        kind = "none"
    elif policy == "Default" or (policy == "ClusterFirst" and spec.get("hostNetwork")):
        kind = "host"  # ClusterFirst on the host network falls back to Default, as kubelet does
    else:
        kind = "cluster"  # ClusterFirst, ClusterFirstWithHostNet (and anything unknown, as kubelet)

    if kind == "none":
        servers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
    elif kind == "cluster":
        domain = networking.dns_domain
        servers = [str(networking.dns_service_ip)]
        searches = _unique([f"{pod.namespace}.svc.{domain}", f"svc.{domain}", domain,
                            *(s.rstrip(".") for s in host.searches if s != ".")])
        options = ["ndots:5"]
    else:
        servers, searches, options = list(host.nameservers), list(host.searches), list(host.options)

    dns_config = spec.get("dnsConfig") or {}
    if dns_config:
        servers = _unique([*servers, *(dns_config.get("nameservers") or [])])
        searches = _unique([*searches, *(dns_config.get("searches") or [])])
        merged: dict[str, str] = {}
        for option in options:
            key, _, value = option.partition(":")
            merged[key] = value
        for option in dns_config.get("options") or []:
            value = option.get("value")
            merged[option.get("name") or ""] = "" if value is None else str(value)
        options = [f"{k}:{v}" if v else k for k, v in merged.items() if k]

    warnings = []
    if len(servers) > MAX_NAMESERVERS:
        servers = servers[:MAX_NAMESERVERS]
        warnings.append("Nameserver limits were exceeded, some nameservers have been omitted, "
                        f"the applied nameserver line is: {' '.join(servers)}")
    trimmed = [s for s in searches[:MAX_SEARCH_PATHS] if len(s) <= MAX_SEARCH_DOMAIN]
    while trimmed and len(" ".join(trimmed)) > MAX_SEARCH_CHARS:
        trimmed.pop()
    if trimmed != searches:
        searches = trimmed
        warnings.append("Search Line limits were exceeded, some search paths have been omitted, "
                        f"the applied search line is: {' '.join(searches)}")
    return ResolvConf(tuple(servers), tuple(searches), tuple(options), tuple(warnings))
