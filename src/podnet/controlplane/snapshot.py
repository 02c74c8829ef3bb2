"""A running cluster's state, as its supervisor sends it, back into a Cluster.

The supervisor's control socket answers `objects` with every object (status filled in) and the
cluster config; the command line and the DNS pods both rebuild a Cluster from that reply.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import yaml

from podnet.api import fields
from podnet.api.kinds import BY_KIND
from podnet.api.objects import KubeObject
from podnet.config import parse_config
from podnet.controlplane.cluster import Cluster
from podnet.controlplane.nodes import NodeInfo

__all__ = ["cluster_from_objects"]


def cluster_from_objects(items: list[dict], config_doc: dict) -> Cluster:
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
