"""From command-line arguments to a computed cluster, warnings on stderr."""

from __future__ import annotations

import sys

from podnet.api import fields
from podnet.api.store import load_store
from podnet.config import ClusterConfig, load_config
from podnet.controlplane import Cluster, compute
from podnet.errors import PodnetError


class NoCluster(PodnetError):
    pass


def add_source_options(p) -> None:
    """-f/--config/--name, shared by every command that works on a cluster."""
    p.add_argument("-f", "--filename", action="append", metavar="FILE|DIR|-",
                   help="manifests to compute from (repeatable; directories are read recursively; - is stdin)")
    p.add_argument("--config", metavar="CLUSTER.yaml", help="cluster config (kind: Cluster); defaults otherwise")
    p.add_argument("--name", help="cluster name (for running clusters)")


def cluster_from_args(files: list[str] | None, config_path: str | None, name: str | None = None) -> Cluster:
    if not files:
        return running_cluster(name)
    config = load_config(config_path)
    store = load_store(files)
    cluster = compute(store, config)
    for warning in cluster.warnings:
        print(warning, file=sys.stderr)
    return cluster


def running_cluster(name: str | None) -> Cluster:
    """The state of a running cluster, as its supervisor holds it."""
    import os

    from podnet.linux.control import NotRunning, pick_cluster, request

    if os.geteuid() != 0:
        raise NoCluster("without -f, podnet talks to a running cluster, which needs root; "
                        "pass -f FILE|DIR|- to compute one offline from manifests")
    try:
        reply = request(pick_cluster(name), "objects")
    except NotRunning as exc:
        raise NoCluster(str(exc)) from None
    return cluster_from_objects(reply["items"], reply["config"])


def cluster_from_objects(items: list[dict], config_doc: dict) -> Cluster:
    from ipaddress import IPv4Address, IPv4Network

    import yaml

    from podnet.api.kinds import BY_KIND
    from podnet.api.objects import KubeObject
    from podnet.config import parse_config
    from podnet.controlplane.nodes import NodeInfo

    config = parse_config(yaml.safe_dump(config_doc), "cluster config")
    cluster = Cluster(config=config)
    for body in items:
        kind = body["kind"]
        namespace = body["metadata"].get("namespace", "") if BY_KIND[kind].namespaced else ""
        cluster.objects[(kind, namespace, body["metadata"]["name"])] = KubeObject(kind, namespace, body["metadata"]["name"], body)
    for index, node in enumerate(cluster.of_kind("Node"), start=1):
        ip = fields.node_addresses(node)["InternalIP"]
        role = "control-plane" if "node-role.kubernetes.io/control-plane" in node.labels else "worker"
        cluster.nodes.append(NodeInfo(node.name, index, IPv4Address(ip), IPv4Network(node.spec["podCIDR"]), role,
                                      int(node.status["capacity"]["pods"])))
    return cluster


def config_from_args(config_path: str | None) -> ClusterConfig:
    return load_config(config_path)
