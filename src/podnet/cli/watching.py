"""Following a running cluster from the command line: the readings `get -w` and `wait` act on,
and what changed between two of them, as a Kubernetes watch would have told it.

There is one watch mechanism: the supervisor's long poll on the generation of its state
(podnet.host.control.LiveCluster.wait), which the cluster DNS and the ingress controller
follow too. A reading comes the moment the generation moves; a long poll that ends without a
change (after at most WINDOW seconds) still reads the objects once, because kubelet's word on
running pods — a restart, a container that exited — is laid over them when they are served
and moves no generation. Between two readings, `changes` is what an API server's watch sends:
ADDED and MODIFIED with the new body, DELETED with the last body seen; a pod's last body
carries a deletionTimestamp, as a pod deleted gracefully does (kubectl prints it Terminating).

A supervisor that is restarted (its watchdog after a crash, or `podnet up --name NAME`) does not
end a watch: while the cluster's state directory is there (`down` removes it) the watcher asks
again every RETRY seconds, and the restarted supervisor's generation counts on above the dead
one's, so the first reading after the gap shows what changed meanwhile, as a client-go watch
re-lists after its API server came back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.host.control import LiveCluster, NotRunning

WINDOW = 2.0  # the longest one long poll waits before the objects are read anyway
RETRY = 0.1  # seconds between attempts to reach a supervisor being restarted

Key = tuple[str, str, str]  # kind, namespace, name
ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(frozen=True)
class Change:
    type: str  # ADDED, MODIFIED or DELETED
    obj: KubeObject


def next_reading(live: LiveCluster, timeout: float) -> Cluster:
    """The cluster as soon as it changes, or as it is after `timeout` seconds (at most WINDOW)."""
    changed = live.wait(min(max(timeout, 0.0), WINDOW))
    return changed if changed is not None else live.read()


def reading_across_restarts(live: LiveCluster, timeout: float, said: Callable[[], None] = lambda: None,
                            deadline: float | None = None) -> Cluster:
    """next_reading, waiting out a supervisor being restarted; NotRunning once the cluster is
    gone (its state directory removed: `down`) or, with a `deadline` (time.monotonic()), once
    that passed. `said` is called once when the supervisor is first found not answering."""
    told = False
    while True:
        try:
            left = timeout if deadline is None else min(timeout, deadline - time.monotonic())
            return next_reading(live, left)
        except NotRunning:
            if not live.path.parent.is_dir() or (deadline is not None and time.monotonic() >= deadline):
                raise
            if not told:
                said()
                told = True
            time.sleep(RETRY)


def chosen(cluster: Cluster, wanted: Callable[[KubeObject], bool]) -> dict[Key, KubeObject]:
    return {obj.key: obj for obj in cluster.objects.values() if wanted(obj)}


def changes(before: Mapping[Key, KubeObject], after: Mapping[Key, KubeObject],
            now: float | None = None) -> list[Change]:
    """What a watch would send between two readings, in key order."""
    found = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old is None and new is not None:
            found.append(Change(ADDED, new))
        elif new is None and old is not None:
            found.append(Change(DELETED, last_state(old, time.time() if now is None else now)))
        elif old is not None and new is not None and old.body != new.body:
            found.append(Change(MODIFIED, new))
    return found


def last_state(obj: KubeObject, now: float) -> KubeObject:
    """A deleted object as its DELETED event carries it: a pod with its deletionTimestamp."""
    if obj.kind != "Pod":
        return obj
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    metadata = {**obj.metadata, "deletionTimestamp": stamp, "deletionGracePeriodSeconds": 0}
    return KubeObject(obj.kind, obj.namespace, obj.name, {**obj.body, "metadata": metadata})
