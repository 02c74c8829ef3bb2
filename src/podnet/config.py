"""The cluster config: a kind-like YAML (kind: Cluster, apiVersion: podnet.dev/v1alpha1).

Parsed once into frozen dataclasses; defaults live here and only here (DESIGN.md's table);
every problem is reported with its file and line, and a config with any problem is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from podnet.api import names
from podnet.errors import InvalidInput

API_VERSION = "podnet.dev/v1alpha1"
OVERLAYS = ("vxlan", "host-gw")
PROXY_MODES = ("nftables", "iptables", "userspace")
NODE_ROLES = ("worker", "control-plane")
# An image podnet does not have: a stand-in serving its declared and probed ports (standin), or
# failing as one kubelet cannot pull (strict); podnet.images
IMAGE_MODES = ("standin", "strict")
DEFAULT_MAX_PODS = 110  # kubelet's default --max-pods
# kubelet's crashLoopBackOff.maxContainerRestartPeriod: its default and the range it accepts (seconds)
MAX_CONTAINER_RESTART_PERIOD = 300.0
RESTART_PERIOD_RANGE = (1.0, 300.0)
KUBE_PROXY_SYNC_PERIOD = 1.0  # seconds (kube-proxy's own default: 30s; see KubeProxyConfig)
FIRST_NODE_HOST = 11  # nodes sit at .11, .12, .13 … of the LAN (the seeds' example)
EXTERNAL_HOST = 100  # the "external" client namespace on the LAN


@dataclass(frozen=True)
class NodeConfig:
    name: str
    role: str = "worker"
    labels: tuple[tuple[str, str], ...] = ()
    max_pods: int = DEFAULT_MAX_PODS


@dataclass(frozen=True)
class Networking:
    pod_subnet: IPv4Network = IPv4Network("10.244.0.0/16")
    node_cidr_mask_size: int = 24
    service_subnet: IPv4Network = IPv4Network("10.96.0.0/12")
    dns_domain: str = "cluster.local"
    dns_service_ip: IPv4Address = IPv4Address("10.96.0.10")
    node_port_range: tuple[int, int] = (30000, 32767)
    load_balancer_pool: tuple[IPv4Address, IPv4Address] = (IPv4Address("192.168.1.200"), IPv4Address("192.168.1.250"))
    lan_subnet: IPv4Network = IPv4Network("192.168.1.0/24")
    overlay: str = "vxlan"
    proxy_mode: str = "nftables"

    @property
    def external_ip(self) -> IPv4Address:
        return self.lan_subnet.network_address + EXTERNAL_HOST

    def max_nodes(self) -> int:
        # The first /24 (10.244.0.0/24) is not handed out: node N gets 10.244.N.0/24.
        return 2 ** (self.node_cidr_mask_size - self.pod_subnet.prefixlen) - 1


@dataclass(frozen=True)
class KubeletConfig:
    """What podnet takes of KubeletConfiguration (the same for every node)."""

    # crashLoopBackOff.maxContainerRestartPeriod: the longest wait before a crashed container is
    # started again (podnet.crashloop), seconds, 1 to 300 as kubelet validates it
    max_container_restart_period: float = MAX_CONTAINER_RESTART_PERIOD


@dataclass(frozen=True)
class KubeProxyConfig:
    """What podnet takes of KubeProxyConfiguration (v1alpha2's spelling; the same for every node)."""

    # syncPeriod: how often each node's rules are checked for changes made behind podnet's back
    # (kube-proxy's canary, podnet.proxy.canary; the NetworkPolicy tables' too) and resynced when
    # changed. kube-proxy's default is 30s because each of its polls runs iptables; podnet's
    # check is a netlink round trip per node, so it looks every second
    sync_period: float = KUBE_PROXY_SYNC_PERIOD


@dataclass(frozen=True)
class ClusterConfig:
    name: str = "podnet"
    nodes: tuple[NodeConfig, ...] = field(default_factory=lambda: default_nodes(3))
    networking: Networking = field(default_factory=Networking)
    images: str = "standin"
    kubelet: KubeletConfig = field(default_factory=KubeletConfig)
    kube_proxy: KubeProxyConfig = field(default_factory=KubeProxyConfig)

    @property
    def standins(self) -> bool:
        """Whether an image podnet does not have runs as a stand-in (images: standin)."""
        return self.images == "standin"

    def to_dict(self) -> dict[str, Any]:
        n = self.networking
        return {
            "kind": "Cluster",
            "apiVersion": API_VERSION,
            "name": self.name,
            "nodes": [
                {"name": node.name, "role": node.role, "labels": dict(node.labels), "maxPods": node.max_pods}
                for node in self.nodes
            ],
            "networking": {
                "podSubnet": str(n.pod_subnet),
                "nodeCIDRMaskSize": n.node_cidr_mask_size,
                "serviceSubnet": str(n.service_subnet),
                "dnsDomain": n.dns_domain,
                "dnsServiceIP": str(n.dns_service_ip),
                "nodePortRange": f"{n.node_port_range[0]}-{n.node_port_range[1]}",
                "loadBalancerPool": f"{n.load_balancer_pool[0]}-{n.load_balancer_pool[1]}",
                "lanSubnet": str(n.lan_subnet),
                "overlay": n.overlay,
                "proxyMode": n.proxy_mode,
            },
            "images": self.images,
            "kubelet": {"crashLoopBackOff": {
                "maxContainerRestartPeriod": go_duration(self.kubelet.max_container_restart_period)}},
            "kubeProxy": {"syncPeriod": go_duration(self.kube_proxy.sync_period)},
        }


def default_nodes(count: int) -> tuple[NodeConfig, ...]:
    return tuple(NodeConfig(f"node{i}") for i in range(1, count + 1))


# ---------------------------------------------------------------------------------------------
# Loading


class _Problems:
    """Collects "FILE:LINE: Cluster NAME: field: message" lines."""

    def __init__(self, file: str, lines: dict[tuple, int]):
        self.file, self.lines, self.name, self.items = file, lines, "", []

    def add(self, path: tuple, message: str) -> None:
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe, 1)
        dotted = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
        self.items.append(f"{self.file}:{line}: Cluster {self.name or '<unnamed>'}: {dotted}: {message}")


def _line_index(node: yaml.Node, path: tuple = (), lines: dict | None = None) -> dict[tuple, int]:
    """Each field path's line, for messages."""
    lines = {} if lines is None else lines
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _line_index(value, path + (key.value,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _line_index(value, path + (i,), lines)
    return lines


def load_config(path: str | None) -> ClusterConfig:
    if path is None:
        return ClusterConfig()
    try:
        text = Path(path).read_text(encoding="utf-8") if path != "-" else __import__("sys").stdin.read()
    except OSError as exc:
        raise InvalidInput([f"{path}: cannot read: {exc}"]) from None
    return parse_config(text, path)


def parse_config(text: str, file: str = "<config>") -> ClusterConfig:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise InvalidInput([f"{file}{line}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    if node is None:
        return ClusterConfig()
    data = yaml.SafeLoader("").construct_document(node)
    problems = _Problems(file, _line_index(node))
    config = _build(data, problems)
    if problems.items:
        raise InvalidInput(problems.items)
    assert config is not None
    return config


_TOP_KEYS = {"kind", "apiVersion", "name", "nodes", "networking", "images", "kubelet", "kubeProxy"}
_KUBE_PROXY_KEYS = {"syncPeriod"}
_KUBELET_KEYS = {"crashLoopBackOff"}
_CRASH_LOOP_KEYS = {"maxContainerRestartPeriod"}
_NODE_KEYS = {"name", "role", "labels", "maxPods"}
_NET_KEYS = {
    "podSubnet", "nodeCIDRMaskSize", "serviceSubnet", "dnsDomain", "dnsServiceIP",
    "nodePortRange", "loadBalancerPool", "lanSubnet", "overlay", "proxyMode",
}


def _unknown(data: dict, allowed: set[str], path: tuple, problems: _Problems) -> None:
    for key in data:
        if key not in allowed:
            problems.add(path + (key,), f"unknown field (allowed: {', '.join(sorted(allowed))})")


def _build(data: Any, problems: _Problems) -> ClusterConfig | None:
    if not isinstance(data, dict):
        problems.add((), "the cluster config must be a mapping")
        return None
    name = data.get("name", "podnet")
    problems.name = str(name)
    if data.get("kind") != "Cluster":
        problems.add(("kind",), f'must be "Cluster", not {data.get("kind")!r}')
    if data.get("apiVersion") != API_VERSION:
        problems.add(("apiVersion",), f'must be "{API_VERSION}", not {data.get("apiVersion")!r}')
    _unknown(data, _TOP_KEYS, (), problems)
    if not isinstance(name, str) or names.is_dns1123_label(name):
        problems.add(("name",), f"{name!r} is not a valid cluster name (a lowercase RFC 1123 label)")
    networking = _networking(data.get("networking") or {}, problems)
    images = data.get("images", "standin")
    if images not in IMAGE_MODES:
        problems.add(("images",), f"{images!r} is not an images mode: standin (an image podnet does not have "
                                  "serves its declared and probed ports) or strict (it fails as one kubelet cannot pull)")
    nodes = _nodes(data.get("nodes", 3), problems)
    if networking is not None and nodes is not None:
        _check_capacity(networking, nodes, problems)
    kubelet = _kubelet(data.get("kubelet") or {}, problems)
    kube_proxy = _kube_proxy(data.get("kubeProxy") or {}, problems)
    if problems.items or networking is None or nodes is None or kubelet is None or kube_proxy is None:
        return None
    return ClusterConfig(name=name, nodes=nodes, networking=networking, images=images, kubelet=kubelet,
                         kube_proxy=kube_proxy)


def _kube_proxy(data: Any, problems: _Problems) -> KubeProxyConfig | None:
    """kubeProxy: {syncPeriod: DURATION}, KubeProxyConfiguration's spelling; more than 0, as
    kube-proxy validates it."""
    if not isinstance(data, dict):
        problems.add(("kubeProxy",), "must be a mapping")
        return None
    _unknown(data, _KUBE_PROXY_KEYS, ("kubeProxy",), problems)
    raw = data.get("syncPeriod", go_duration(KUBE_PROXY_SYNC_PERIOD))
    try:
        seconds = parse_go_duration(raw)
    except ValueError as exc:
        problems.add(("kubeProxy", "syncPeriod"), str(exc))
        return None
    if seconds <= 0:
        problems.add(("kubeProxy", "syncPeriod"), f"{raw!r} must be greater than 0, as kube-proxy accepts it")
        return None
    return KubeProxyConfig(sync_period=seconds)


def _kubelet(data: Any, problems: _Problems) -> KubeletConfig | None:
    """kubelet: {crashLoopBackOff: {maxContainerRestartPeriod: DURATION}}, KubeletConfiguration's
    own spelling (a Go duration: 10s, 1m30s, 5m)."""
    if not isinstance(data, dict):
        problems.add(("kubelet",), "must be a mapping")
        return None
    _unknown(data, _KUBELET_KEYS, ("kubelet",), problems)
    crash_loop = data.get("crashLoopBackOff") or {}
    path = ("kubelet", "crashLoopBackOff")
    if not isinstance(crash_loop, dict):
        problems.add(path, "must be a mapping")
        return None
    _unknown(crash_loop, _CRASH_LOOP_KEYS, path, problems)
    raw = crash_loop.get("maxContainerRestartPeriod", go_duration(MAX_CONTAINER_RESTART_PERIOD))
    path += ("maxContainerRestartPeriod",)
    try:
        seconds = parse_go_duration(raw)
    except ValueError as exc:
        problems.add(path, str(exc))
        return None
    low, high = RESTART_PERIOD_RANGE
    if not low <= seconds <= high:
        problems.add(path, f"{raw!r} must be between {low:g}s and {high:g}s, as kubelet accepts it")
        return None
    return KubeletConfig(max_container_restart_period=seconds)


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_go_duration(value: Any) -> float:
    """Seconds in a Go duration as KubeletConfiguration's fields take it (metav1.Duration):
    "10s", "1m30s", "1.5s", "500ms". ValueError with the reason otherwise."""
    text = value if isinstance(value, str) else ""
    parts = _GO_DURATION.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{value!r} is not a duration (a number and a unit: 10s, 1m30s, 5m; units ns, us, ms, s, m, h)")
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


def go_duration(seconds: float) -> str:
    """Seconds as Go's Duration.String() writes them for whole seconds and more: 10s, 1m30s, 5m0s."""
    minutes, rest = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{rest:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    return f"{minutes}m{text}" if minutes else text


def _nodes(value: Any, problems: _Problems) -> tuple[NodeConfig, ...] | None:
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        problems.add(("nodes",), "must be a count or a list of nodes")
        return None
    if isinstance(value, int):
        if value < 1:
            problems.add(("nodes",), "a cluster needs at least one node")
            return None
        return default_nodes(value)
    result, seen = [], set()
    for i, entry in enumerate(value):
        path = ("nodes", i)
        if not isinstance(entry, dict):
            problems.add(path, "must be a mapping with at least a name")
            continue
        _unknown(entry, _NODE_KEYS, path, problems)
        name = entry.get("name", f"node{i + 1}")
        if not isinstance(name, str) or names.is_dns1123_subdomain(name):
            problems.add(path + ("name",), f"{name!r} is not a valid node name (a lowercase RFC 1123 subdomain)")
            continue
        if name in seen:
            problems.add(path + ("name",), f"Duplicate value: {name!r}")
        seen.add(name)
        role = entry.get("role", "worker")
        if role not in NODE_ROLES:
            problems.add(path + ("role",), f"Unsupported value: {role!r}: supported values: {', '.join(NODE_ROLES)}")
        labels = entry.get("labels") or {}
        if not isinstance(labels, dict):
            problems.add(path + ("labels",), "must be a mapping")
            labels = {}
        for key, val in labels.items():
            errs = names.is_qualified_name(str(key)) + names.is_valid_label_value(str(val))
            if errs:
                problems.add(path + ("labels", key), "; ".join(errs))
        max_pods = entry.get("maxPods", DEFAULT_MAX_PODS)
        if isinstance(max_pods, bool) or not isinstance(max_pods, int) or max_pods < 1:
            problems.add(path + ("maxPods",), "must be a positive integer")
            max_pods = DEFAULT_MAX_PODS
        result.append(NodeConfig(name, role, tuple(sorted((str(k), str(v)) for k, v in labels.items())), max_pods))
    if not value:
        problems.add(("nodes",), "a cluster needs at least one node")
    return tuple(result)


def _networking(data: Any, problems: _Problems) -> Networking | None:
    if not isinstance(data, dict):
        problems.add(("networking",), "must be a mapping")
        return None
    _unknown(data, _NET_KEYS, ("networking",), problems)
    d = Networking()
    before = len(problems.items)

    def net(key: str, default: IPv4Network) -> IPv4Network:
        value = data.get(key, str(default))
        try:
            return IPv4Network(str(value), strict=True)
        except ValueError as exc:
            problems.add(("networking", key), f"{value!r} is not a valid IPv4 CIDR ({exc})")
            return default

    def addr(key: str, default: IPv4Address) -> IPv4Address:
        value = data.get(key, str(default))
        try:
            return IPv4Address(str(value))
        except ValueError:
            problems.add(("networking", key), f"{value!r} is not a valid IPv4 address")
            return default

    def choice(key: str, default: str, allowed: tuple[str, ...]) -> str:
        value = data.get(key, default)
        if value == "ipvs" and key == "proxyMode":
            problems.add(("networking", key), "ipvs needs the kernel's IP_VS module, which this machine does not "
                         "have; use nftables (kube-proxy's default here), iptables or userspace")
        elif value not in allowed:
            problems.add(("networking", key), f"Unsupported value: {value!r}: supported values: {', '.join(allowed)}")
        return value

    pod_subnet = net("podSubnet", d.pod_subnet)
    service_subnet = net("serviceSubnet", d.service_subnet)
    lan_subnet = net("lanSubnet", d.lan_subnet)
    mask = data.get("nodeCIDRMaskSize", d.node_cidr_mask_size)
    if isinstance(mask, bool) or not isinstance(mask, int) or not (pod_subnet.prefixlen < mask <= 30):
        problems.add(("networking", "nodeCIDRMaskSize"),
                     f"{mask!r} must be an integer longer than the podSubnet prefix (/{pod_subnet.prefixlen}) and at most 30")
        mask = d.node_cidr_mask_size
    dns_domain = data.get("dnsDomain", d.dns_domain)
    if not isinstance(dns_domain, str) or names.is_dns1123_subdomain(dns_domain):
        problems.add(("networking", "dnsDomain"), f"{dns_domain!r} is not a valid DNS domain")
    dns_ip = addr("dnsServiceIP", d.dns_service_ip)
    if dns_ip not in service_subnet:
        problems.add(("networking", "dnsServiceIP"), f"{dns_ip} is outside serviceSubnet {service_subnet}")
    elif dns_ip in (service_subnet.network_address, service_subnet.network_address + 1, service_subnet.broadcast_address):
        problems.add(("networking", "dnsServiceIP"),
                     f"{dns_ip} is reserved (network, broadcast, or the kubernetes Service's first address)")

    port_range = d.node_port_range
    raw = str(data.get("nodePortRange", "30000-32767"))
    try:
        low, high = (int(p) for p in raw.split("-", 1))
        if not (1 <= low <= high <= 65535):
            raise ValueError
        port_range = (low, high)
    except ValueError:
        problems.add(("networking", "nodePortRange"), f"{raw!r} must be FIRST-LAST with 1 <= FIRST <= LAST <= 65535")

    pool = d.load_balancer_pool
    raw_pool = str(data.get("loadBalancerPool", "192.168.1.200-192.168.1.250"))
    try:
        if "/" in raw_pool:
            block = IPv4Network(raw_pool, strict=True)
            pool = (block.network_address, block.broadcast_address)
        else:
            first, last = (IPv4Address(p.strip()) for p in raw_pool.split("-", 1))
            if first > last:
                raise ValueError
            pool = (first, last)
        if pool[0] not in lan_subnet or pool[1] not in lan_subnet:
            problems.add(("networking", "loadBalancerPool"), f"{raw_pool} is not inside lanSubnet {lan_subnet}")
    except ValueError:
        problems.add(("networking", "loadBalancerPool"), f"{raw_pool!r} must be FIRST-LAST addresses or a CIDR")

    named = {"podSubnet": pod_subnet, "serviceSubnet": service_subnet, "lanSubnet": lan_subnet}
    keys = list(named)
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            if named[a].overlaps(named[b]):
                problems.add(("networking", b), f"{named[b]} overlaps {a} {named[a]}; these ranges must not overlap")

    overlay = choice("overlay", d.overlay, OVERLAYS)
    proxy_mode = choice("proxyMode", d.proxy_mode, PROXY_MODES)
    if len(problems.items) > before:
        return None
    return Networking(pod_subnet, mask, service_subnet, dns_domain, dns_ip, port_range, pool, lan_subnet, overlay, proxy_mode)


def _check_capacity(n: Networking, nodes: tuple[NodeConfig, ...], problems: _Problems) -> None:
    if len(nodes) > n.max_nodes():
        problems.add(("nodes",), f"{len(nodes)} nodes do not fit: podSubnet {n.pod_subnet} holds "
                     f"{n.max_nodes()} node CIDRs of /{n.node_cidr_mask_size}")
    try:
        lan_node_addresses(n, len(nodes))
    except ValueError as exc:
        problems.add(("nodes",), str(exc))


def lan_node_addresses(n: Networking, count: int) -> list[IPv4Address]:
    """Node IPs on the LAN: .11, .12 … skipping the external client and the LoadBalancer pool."""
    reserved = {n.external_ip}
    result: list[IPv4Address] = []
    address = n.lan_subnet.network_address + FIRST_NODE_HOST
    while len(result) < count:
        if address >= n.lan_subnet.broadcast_address:
            raise ValueError(f"{count} nodes do not fit in lanSubnet {n.lan_subnet} "
                             f"(addresses from .{FIRST_NODE_HOST}, minus the external client and the LoadBalancer pool)")
        if address not in reserved and not (n.load_balancer_pool[0] <= address <= n.load_balancer_pool[1]):
            result.append(address)
        address += 1
    return result


