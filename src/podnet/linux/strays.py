"""Processes of hostNetwork pods that nobody recorded: what a dead supervisor started last.

A supervisor that dies between starting a pod and writing its record (record.py) leaves the
pod's processes running with nobody knowing them. For an ordinary pod the restarted supervisor
finds its network namespace (named after the pod) and removes it with everything inside
(DataPlane.collect_garbage). A hostNetwork pod has no namespace of its own: its processes run
in the node's, beside those of other hostNetwork pods and of `podnet exec node/…` sessions.

What marks them is their UTS namespace: every sandbox is started under `unshare --uts` (so a
pod has its own hostname) and every container joins its sandbox's (`nsenter --uts`), so each
pod's processes, and only they, share one UTS namespace that is neither the host's nor any
other pod's. A process in a node's network namespace whose UTS namespace is not ours (the
host's: node sessions, podnet's own helpers) and not one of the recorded pods' is a process of
a pod nobody recorded; the restarted supervisor stops it, and starts the pod again, as kubelet
removes the containers of a pod it does not know (its runtime labels them with their pod).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from podnet.host.netns import pids_in_netns


def uts_namespace(pid: int | str) -> str | None:
    """The UTS namespace of a process ("uts:[inode]"), or None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/uts")
    except OSError:
        return None


def unrecorded_pod_processes(node_namespaces: Iterable[str], recorded_pids: Iterable[int]) -> dict[str, list[int]]:
    """Per node namespace, the processes of pods none of `recorded_pids` (the recorded pods'
    sandboxes and containers, those still running) belongs to."""
    own = uts_namespace("self")
    known = {uts_namespace(pid) for pid in recorded_pids if pid > 0} - {None}
    strays: dict[str, list[int]] = {}
    for netns, pids in pids_in_netns(node_namespaces).items():
        for pid in pids:
            uts = uts_namespace(pid)
            if uts is not None and uts != own and uts not in known:
                strays.setdefault(netns, []).append(pid)
    return strays
