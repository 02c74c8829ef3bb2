"""An index of a computed cluster's objects, carried from one cluster to the next.

At 10,000 pods a change that touches a few pods (a Deployment scaled by one) must not pass over
every object to find its namespace's pods, the pods bound to each node or the ReplicaSets of the
Deployment: each such pass costs ~5 ms, and a write makes several. A cluster's index is made
once, on first use, from its objects (`index_of`); the cluster a change makes takes its
predecessor's index with what the change touched updated (`updated`, from the ClusterChange),
sharing every bucket the change did not touch. Computed clusters are never changed once made,
and neither is an index: an update copies what it changes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from podnet.api import fields
from podnet.api.objects import KubeObject

Key = tuple[str, str, str]
_EMPTY: Mapping = {}


@dataclass(frozen=True)
class ClusterIndex:
    # (kind, namespace) -> key -> object ("" the namespace of cluster-scoped kinds)
    buckets: Mapping[tuple[str, str], Mapping[Key, KubeObject]]
    # node name -> key -> its pods not finished ("": not bound to any node)
    bound: Mapping[str, Mapping[Key, KubeObject]]
    unplaced: frozenset[Key]  # pods not finished that have no address yet (compute places them again)
    pod_keys: tuple[Key, ...]  # every pod's key, sorted: compute lays the pods out in this order

    def of(self, kind: str, namespace: str = "") -> Mapping[Key, KubeObject]:
        """The objects of `kind` in `namespace`, by key (in no order to rely on)."""
        return self.buckets.get((kind, namespace), _EMPTY)

    def on_node(self, node: str) -> Mapping[Key, KubeObject]:
        """The pods not finished bound to `node`, by key."""
        return self.bound.get(node, _EMPTY)


def _node_of(pod: KubeObject) -> str | None:
    """Where a pod counts on a node: its node's name ("" if none), None once it has finished."""
    return None if fields.is_terminal(pod) else pod.spec.get("nodeName") or ""


def index_of(objects: Mapping[Key, KubeObject]) -> ClusterIndex:
    buckets: dict[tuple[str, str], dict[Key, KubeObject]] = {}
    bound: dict[str, dict[Key, KubeObject]] = {}
    unplaced, pod_keys = set(), []
    for key, obj in objects.items():
        buckets.setdefault((key[0], key[1]), {})[key] = obj
        if key[0] == "Pod":
            pod_keys.append(key)
            node = _node_of(obj)
            if node is not None:
                bound.setdefault(node, {})[key] = obj
                if not fields.pod_ip(obj):
                    unplaced.add(key)
    return ClusterIndex(buckets, bound, frozenset(unplaced), tuple(sorted(pod_keys)))


def updated(index: ClusterIndex, before: Mapping[Key, KubeObject],
            changed: Iterable[tuple[Key, KubeObject]], gone: Iterable[Key]) -> ClusterIndex:
    """The index of the objects `before` (indexed by `index`) with `changed` added or replacing
    those of their keys and `gone` removed (a key in both is changed). An object replaced keeps
    its place in its bucket."""
    changed = list(changed)
    gone = set(gone) - {key for key, _ in changed}
    buckets, bound = dict(index.buckets), dict(index.bound)
    copied: set[tuple[str, object]] = set()  # the buckets copied already: changed in place from then on

    def bucket(table: dict, name, tag: str) -> dict:
        if (tag, name) not in copied:
            copied.add((tag, name))
            table[name] = dict(table.get(name, _EMPTY))
        return table[name]

    unplaced, pod_keys = set(index.unplaced), None
    for key in [*gone, *(key for key, _ in changed)]:  # what the old versions counted
        old = before.get(key)
        if old is None or key[0] != "Pod":
            continue
        node = _node_of(old)
        if node is not None:
            bucket(bound, node, "bound").pop(key, None)
        unplaced.discard(key)
    for key in gone:
        if key not in before:
            continue
        bucket(buckets, (key[0], key[1]), "kind").pop(key, None)
        if key[0] == "Pod":
            pod_keys = list(index.pod_keys) if pod_keys is None else pod_keys
            del pod_keys[bisect.bisect_left(pod_keys, key)]
    for key, obj in changed:
        bucket(buckets, (key[0], key[1]), "kind")[key] = obj
        if key[0] != "Pod":
            continue
        if key not in before:
            pod_keys = list(index.pod_keys) if pod_keys is None else pod_keys
            bisect.insort(pod_keys, key)
        node = _node_of(obj)
        if node is not None:
            bucket(bound, node, "bound")[key] = obj
            if not fields.pod_ip(obj):
                unplaced.add(key)
    for tag, name in copied:  # no empty buckets: as index_of makes them
        table = buckets if tag == "kind" else bound
        if not table[name]:
            del table[name]
    return ClusterIndex(buckets, bound, frozenset(unplaced),
                        index.pod_keys if pod_keys is None else tuple(pod_keys))
