"""Nodes: names and labels from the cluster config (and Node manifests), LAN IPs, podCIDRs."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from podnet.api.objects import KubeObject, deterministic_uid
from podnet.api.schema import KUBERNETES_VERSION
from podnet.config import ClusterConfig, NodeConfig, lan_node_addresses
from podnet.errors import InvalidInput

KUBELET_VERSION = f"v{KUBERNETES_VERSION}"  # the Kubernetes version podnet follows (`podnet version`)
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


@dataclass(frozen=True)
class NodeInfo:
    """A node's addressing, typed for the data planes."""

    name: str
    index: int  # 1-based: node N owns the Nth node CIDR of the pod subnet
    ip: IPv4Address
    pod_cidr: IPv4Network
    role: str
    max_pods: int

    @property
    def gateway(self) -> IPv4Address:
        return self.pod_cidr.network_address + 1  # the address of cni0


def pod_cidr_for(config: ClusterConfig, index: int) -> IPv4Network:
    """Node N gets the Nth block: 10.244.1.0/24 for the first node (DESIGN.md)."""
    n = config.networking
    size = 2 ** (32 - n.node_cidr_mask_size)
    return IPv4Network((int(n.pod_subnet.network_address) + index * size, n.node_cidr_mask_size))


def build_nodes(config: ClusterConfig, manifests: list[KubeObject],
                referenced: set[str] = frozenset()) -> tuple[list[NodeInfo], list[KubeObject], list[str]]:
    """Config nodes first, in config order, then Node manifests with new names, then nodes that
    pods name in spec.nodeName but nothing defines (objects piped from a live cluster).

    A Node manifest with a config node's name adds its labels, taints and unschedulable flag.
    Its podCIDR and InternalIP are kept when they fit this cluster's networks and are free,
    so pods piped in with it keep their addresses. Returns (infos, Node objects, warnings).
    """
    by_name = {m.name: m for m in manifests}
    configs: list[NodeConfig] = list(config.nodes)
    known = {c.name for c in configs}
    configs += [NodeConfig(m.name, _role_of(m)) for m in manifests if m.name not in known]
    known |= set(by_name)
    extra = sorted(referenced - known)
    configs += [NodeConfig(name) for name in extra]
    warnings = [f"warning: node {name} is named by pods but not defined; added it" for name in extra]
    n = config.networking
    if len(configs) > n.max_nodes():
        raise InvalidInput([f"{len(configs)} nodes do not fit in podSubnet {n.pod_subnet} "
                            f"({n.max_nodes()} node CIDRs of /{n.node_cidr_mask_size})"])
    cidrs = _assign(configs, {c.name: _wanted_cidr(by_name.get(c.name), config) for c in configs},
                    (pod_cidr_for(config, i) for i in range(1, n.max_nodes() + 1)))
    try:
        free_ips = iter(lan_node_addresses(n, len(configs) * 2))
    except ValueError:
        free_ips = iter(lan_node_addresses(n, len(configs)))
    try:
        ips = _assign(configs, {c.name: _wanted_ip(by_name.get(c.name), config) for c in configs}, free_ips)
    except StopIteration:
        raise InvalidInput([f"{len(configs)} nodes do not fit in lanSubnet {n.lan_subnet}"]) from None
    infos, objects = [], []
    for index, node in enumerate(configs, start=1):
        info = NodeInfo(node.name, index, ips[node.name], cidrs[node.name], node.role, node.max_pods)
        infos.append(info)
        objects.append(_node_object(info, node, by_name.get(node.name)))
    return infos, objects, warnings


def _assign(configs: list[NodeConfig], wanted: dict, free) -> dict:
    """Honour each node's wanted value when unclaimed; hand the rest out in order."""
    result, taken = {}, set()
    for c in configs:
        if wanted[c.name] is not None and wanted[c.name] not in taken:
            result[c.name] = wanted[c.name]
            taken.add(wanted[c.name])
    for c in configs:
        if c.name not in result:
            value = next(free)
            while value in taken:
                value = next(free)
            result[c.name] = value
            taken.add(value)
    return result


def _wanted_cidr(manifest: KubeObject | None, config: ClusterConfig) -> IPv4Network | None:
    text = manifest.spec.get("podCIDR") if manifest else None
    try:
        cidr = IPv4Network(text) if text else None
    except ValueError:
        return None
    n = config.networking
    if cidr is None or cidr.prefixlen != n.node_cidr_mask_size or not cidr.subnet_of(n.pod_subnet):
        return None
    return cidr


def _wanted_ip(manifest: KubeObject | None, config: ClusterConfig) -> IPv4Address | None:
    if manifest is None:
        return None
    for address in manifest.status.get("addresses") or []:
        if address.get("type") == "InternalIP":
            try:
                ip = IPv4Address(address.get("address"))
            except ValueError:
                return None
            n = config.networking
            pool = n.load_balancer_pool
            if ip in n.lan_subnet and ip not in (n.lan_subnet.network_address, n.lan_subnet.broadcast_address,
                                                 n.external_ip) and not pool[0] <= ip <= pool[1]:
                return ip
    return None


def _role_of(manifest: KubeObject) -> str:
    labels = manifest.labels
    return "control-plane" if "node-role.kubernetes.io/control-plane" in labels else "worker"


def _node_object(info: NodeInfo, node: NodeConfig, manifest: KubeObject | None) -> KubeObject:
    labels = {
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": info.name,
        "kubernetes.io/os": "linux",
        **dict(node.labels),
    }
    taints: list[dict[str, Any]] = []
    if info.role == "control-plane":
        labels["node-role.kubernetes.io/control-plane"] = ""
        taints.append(dict(CONTROL_PLANE_TAINT))
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {}, "spec": {}, "status": {}}
    unschedulable = bool(manifest and manifest.spec.get("unschedulable"))
    if manifest is not None:
        labels.update(manifest.labels)
        for taint in manifest.spec.get("taints") or []:
            if taint not in taints:
                taints.append(taint)
    if unschedulable and not any(t.get("key") == UNSCHEDULABLE_TAINT["key"] for t in taints):
        taints.append(dict(UNSCHEDULABLE_TAINT))  # what the node lifecycle controller adds
        body["metadata"].update({k: v for k, v in manifest.metadata.items() if k not in ("labels",)})
    body["metadata"].update({"name": info.name, "labels": labels, "uid": deterministic_uid("Node", "", info.name)})
    body["spec"] = {"podCIDR": str(info.pod_cidr), "podCIDRs": [str(info.pod_cidr)]}
    if taints:
        body["spec"]["taints"] = taints
    if unschedulable:
        body["spec"]["unschedulable"] = True
    pods = str(info.max_pods)
    body["status"] = {
        "addresses": [{"type": "InternalIP", "address": str(info.ip)}, {"type": "Hostname", "address": info.name}],
        "capacity": {"pods": pods},
        "allocatable": {"pods": pods},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "kubelet is posting ready status", "lastHeartbeatTime": None,
                        "lastTransitionTime": None}],
        "nodeInfo": {
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "containerRuntimeVersion": "podnet://0.1.0",
            "osImage": "podnet (Linux network namespaces)",
            "kernelVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "machineID": "", "systemUUID": "", "bootID": "",
        },
    }
    return KubeObject("Node", "", info.name, body, manifest.source if manifest else None)
