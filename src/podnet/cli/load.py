"""From command-line arguments to a computed cluster, warnings on stderr.

Offline (-f), the objects are admitted by this command: an object without creationTimestamp
gets the command's start, as an API server stamps the time it admits one, so AGE reads 0s
(a manifest dumped from a real cluster keeps its own); so do the conditions'
lastTransitionTime. A running cluster's objects carry the supervisor's stamps
(podnet.linux.supervisor.apimeta).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from podnet.api.store import load_store
from podnet.config import load_config
from podnet.controlplane import Cluster, compute
from podnet.controlplane.snapshot import cluster_from_objects
from podnet.errors import PodnetError
from podnet.host.control import LiveCluster, NotRunning, not_running, pick_cluster, request
from podnet.host.layout import ClusterLayout


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
    admitted = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # the command's start, as far as it matters
    cluster = compute(store, config)
    for obj in cluster.objects.values():
        if not obj.metadata.get("creationTimestamp"):
            obj.metadata_for_update()["creationTimestamp"] = admitted
        status = obj.body.get("status")
        for condition in (status.get("conditions") or []) if isinstance(status, dict) else []:
            if "lastTransitionTime" in condition and not condition["lastTransitionTime"]:
                condition["lastTransitionTime"] = admitted
    for warning in cluster.warnings:
        print(warning, file=sys.stderr)
    return cluster


@dataclass(frozen=True)
class LiveState:
    """One reading of a running cluster: its state as the supervisor holds it, that state's
    generation, and per node what its kernel was given of it (supervisor status.sync_status)."""

    layout: ClusterLayout
    cluster: Cluster
    generation: int
    nodes: dict[str, dict[str, Any]]


def running_state(name: str | None) -> LiveState:
    """The state of a running cluster, as its supervisor holds it (one request)."""
    if os.geteuid() != 0:
        raise NoCluster("without -f, podnet talks to a running cluster, which needs root; "
                        "pass -f FILE|DIR|- to compute one offline from manifests")
    layout = pick_cluster(name)
    try:
        reply = request(layout, "objects")
    except NotRunning as exc:
        raise NoCluster(str(exc)) from None
    return LiveState(layout, cluster_from_objects(reply["items"], reply["config"]), reply["generation"],
                     reply.get("nodes") or {})


def running_events(name: str | None, since: int = 0, wait: float = 0.0) -> tuple[list[dict[str, Any]], int]:
    """The running cluster's events changed after resourceVersion `since`, and the store's
    resourceVersion now (the next `since`); `wait`: seconds the supervisor may hold the answer
    until one changes (a long poll)."""
    if os.geteuid() != 0:
        raise NoCluster("events are a running cluster's, which needs root")
    layout = pick_cluster(name)
    try:
        reply = request(layout, "events", since=since, wait=wait) if wait else request(layout, "events", since=since)
    except NotRunning as exc:
        raise NoCluster(str(exc)) from None
    return reply["items"], int(reply.get("resourceVersion") or 0)


def following(name: str | None) -> tuple[LiveCluster, Cluster]:
    """A running cluster to follow (`get -w`, `wait`) and its first reading."""
    if os.geteuid() != 0:
        raise NoCluster("without -f, podnet talks to a running cluster, which needs root; "
                        "pass -f FILE|DIR|- to compute one offline from manifests")
    layout = pick_cluster(name)
    live = LiveCluster(layout.socket_path)
    try:
        return live, live.read()
    except NotRunning:
        raise NoCluster(not_running(layout)) from None


def running_cluster(name: str | None) -> Cluster:
    return running_state(name).cluster
