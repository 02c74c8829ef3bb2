"""The fields the API server sets on objects, for the running cluster.

The control plane computes objects without time (the same input prints the same objects);
the supervisor is the running cluster's API server and stamps, on a copy of what it serves:

- metadata.uid: the computed one (deterministic per kind/namespace/name, so EndpointSlices'
  targetRefs and the runtime's container ids agree with it), stable across applies; an object
  deleted and made again under its name (a controller's pod replaced) is a new object with a
  uid of its own, derived from the computed one and how many times it was made again: clients
  tell the new object from the old by uid (`kubectl delete` waits until the uid it deleted is
  gone, and would wait forever on a replacement with the same one; `describe` selects events
  by uid, so the new pod shows its own);
- metadata.creationTimestamp: when the object was first admitted to the running cluster —
  kept across applies that change it, new when it is deleted and created again (an object
  whose manifest carries one keeps that);
- metadata.resourceVersion: a cluster-wide counter, bumped whenever an object's computed body
  changes or the object goes (kubelet's live status laid over a pod, such as a restart count,
  does not bump it); the deletions of the last TOMBSTONES versions are kept, so the API
  server's watch cache can ask for what changed since the version it holds (`changed_since`);
- metadata.generation: 1 on creation, bumped when anything outside metadata and status changes;
  a status.observedGeneration (workloads) is that generation: the status is computed from it;
- pod status.startTime: when the supervisor started the pod; conditions (of pods, nodes, any
  object with status.conditions) deduplicated by type
  (the first kept) with lastTransitionTime: when the supervisor first computed or served that
  status (kubelet's own overlay, such as a crashed container's Ready False, is seen when served).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from podnet.api.objects import KubeObject
from podnet.controlplane import Cluster
from podnet.controlplane.cluster import ClusterChange, change_order
from podnet.linux.supervisor.events import timestamp

TOMBSTONES = 10_000  # deletions remembered for `changed_since` (older: the caller lists again)


@dataclass
class _Record:
    created: str
    version: int
    generation: int
    body: Any           # the computed body last seen (identity: unchanged objects are not hashed)
    body_text: str      # digests of the body and of its spec (_texts): compared, and kept on disk
    spec_text: str
    incarnation: int = 0  # how many times the object was deleted and made again under its name
    live: Any = None    # what kubelet laid over a running pod when last looked at (status.live_digest)


def _exported(key: tuple, record: _Record) -> list[Any]:
    return [*key, record.created, record.version, record.generation, record.body_text, record.spec_text,
            record.incarnation]


_UID_NAMESPACE = uuid.UUID("7d1e6d0c-5a0b-4c55-8a55-706f646e6574")


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _texts(body: dict[str, Any]) -> tuple[str, str]:
    """Digests of the body as the API server compares it (without its own fields) and of its
    spec: small enough to keep for every object in the supervisor's record (record.py)."""
    spec = {k: v for k, v in body.items() if k not in ("metadata", "status")}
    metadata = {k: v for k, v in (body.get("metadata") or {}).items()
                if k not in ("resourceVersion", "generation", "creationTimestamp", "managedFields")}
    spec_text = json.dumps(spec, sort_keys=True, default=str)
    return _digest(json.dumps([metadata, body.get("status")], sort_keys=True, default=str) + spec_text), \
        _digest(spec_text)


def _recreated(before: Any, after: dict[str, Any]) -> bool:
    """Whether `after` is a new object under the old one's name: the old one was being deleted
    (deletionTimestamp) and the new one is not."""
    return isinstance(before, dict) and bool((before.get("metadata") or {}).get("deletionTimestamp")) \
        and not (after.get("metadata") or {}).get("deletionTimestamp")


class ApiMeta:
    def __init__(self, clock=time.time):
        self.clock = clock
        self._lock = threading.Lock()
        self.version = 0
        self._records: dict[tuple, _Record] = {}
        self._conditions: dict[tuple, dict[str, tuple[str, str]]] = {}  # object key -> type -> (status, time)
        self.pod_started: dict[str, str] = {}  # pod ref -> status.startTime
        # (version, key) of the last TOMBSTONES deletions; `forgotten`: the newest version whose
        # deletions are no longer all known (a restart forgets them all: the version it restored)
        self._tombstones: deque[tuple[int, tuple]] = deque(maxlen=TOMBSTONES)
        self.forgotten = 0
        # what changed since the last `changes()`: the supervisor journals it (durable.Journal),
        # so a write costs the record of what it changed, not of every object
        self._changed: set[tuple] = set()
        self._changed_conditions: set[tuple[tuple, str]] = set()
        self._changed_starts: set[str] = set()
        self._observed: Cluster | None = None  # the cluster the records are of
        # each object's key by its resourceVersion, oldest first (a key moves to the end when its
        # version does): `changed_since` walks back from the newest, not through every record
        self._order: dict[tuple, int] = {}

    def _moved(self, key: tuple, version: int) -> None:
        self._order.pop(key, None)
        self._order[key] = version

    def observe(self, cluster: Cluster, change: ClusterChange | None = None) -> list[tuple[Any, str]]:
        """Note the objects of a newly computed cluster. Returns what changed: (object, "added",
        "modified" or "deleted" — the last body seen), for the controllers' events. `change`:
        from the cluster it was made from; if that is the one observed last, only what changed
        is looked at (at 10,000 pods, ~40 ms less per write)."""
        changes = []
        now = timestamp(self.clock())
        objects = cluster.objects
        with self._lock:
            fast = change is not None and change.before is not None and change.before is self._observed
            if fast:
                present = list(change.changed)
                gone = [key for key in change.gone if key in self._records]
            else:  # in the order a ClusterChange lists them
                present = sorted(objects.items(), key=lambda item: change_order(item[0]))
                gone = sorted((key for key in self._records if key not in objects), key=change_order)
            self._observed = cluster
            for key, obj in present:
                record = self._records.get(key)
                if record is not None and record.body is obj.body:
                    continue
                body_text, spec_text = _texts(obj.body)
                if record is not None and _recreated(record.body, obj.body):
                    # a deleted object made again under its name (a controller's pod replaced,
                    # a bare pod applied again after it terminated): to watchers a deletion and
                    # a new object, as for Kubernetes' new pod (`kubectl delete` waits for it)
                    self.version += 1
                    self._tombstone(key)
                    changes.append((KubeObject(obj.kind, obj.namespace, obj.name,
                                               self._with_uid(record, record.body)), "deleted"))
                    incarnation, record = record.incarnation + 1, None
                else:
                    incarnation = 0
                if record is None:
                    self.version += 1
                    created = obj.metadata.get("creationTimestamp") or now
                    self._records[key] = _Record(created, self.version, 1, obj.body, body_text, spec_text, incarnation)
                    self._moved(key, self.version)
                    self._changed.add(key)
                    changes.append((obj, "added"))
                    continue
                record.body = obj.body
                if body_text != record.body_text:
                    self.version += 1
                    record.version = self.version
                    self._moved(key, self.version)
                    if spec_text != record.spec_text:
                        record.generation += 1
                    record.body_text, record.spec_text = body_text, spec_text
                    self._changed.add(key)
                    changes.append((obj, "modified"))
            for key in gone:
                kind, namespace, name = key
                self.version += 1
                self._tombstone(key)
                body = self._records.pop(key).body
                self._order.pop(key, None)
                self._changed.add(key)
                if body is None:  # restored (a dead supervisor's record keeps digests): its name is all we know
                    body = {"kind": kind, "metadata": {"name": name, **({"namespace": namespace} if namespace else {})}}
                changes.append((KubeObject(kind, namespace, name, body), "deleted"))
            for key in gone if fast else [k for k in self._conditions if k not in objects]:
                self._changed_conditions.update((key, kind) for kind in self._conditions.pop(key, ()))
        for obj, change in changes:  # a computed transition dates from its computing, not from the next reading
            if change != "deleted" and obj.status.get("conditions"):
                self._conditions_of(obj.key, obj.status["conditions"])
        return changes

    def live(self, key: tuple, digest: Any) -> None:
        """kubelet's status of a running pod as it is now: a change (a restart, an exit, a probe's
        verdict) moves the pod's resourceVersion, as kubelet's status update does, so watchers and
        the API server's cache see it."""
        with self._lock:
            record = self._records.get(key)
            if record is None or record.live == digest:
                return
            if record.live is not None:
                self.version += 1
                record.version = self.version
                self._moved(key, self.version)
                self._changed.add(key)
            record.live = digest

    def _tombstone(self, key: tuple) -> None:
        if len(self._tombstones) == self._tombstones.maxlen:
            self.forgotten = self._tombstones[0][0]
        self._tombstones.append((self.version, key))

    def export(self) -> dict[str, Any]:
        """What a restarted supervisor needs to serve the same fields (record.py): all of it
        (what `changes` would say next is in it, and is not said again)."""
        with self._lock:
            self._changed, self._changed_conditions, self._changed_starts = set(), set(), set()
            return {"version": self.version,
                    "objects": [_exported(key, r) for key, r in self._records.items()],
                    "conditions": [[*key, kind, status, when] for key, kinds in self._conditions.items()
                                   for kind, (status, when) in kinds.items()],
                    "podStarted": dict(self.pod_started)}

    def changes(self) -> dict[str, Any] | None:
        """What changed since the last `changes` or `export`, in export's terms (`apply` takes
        it in after a `restore`), or None if nothing did."""
        with self._lock:
            if not (self._changed or self._changed_conditions or self._changed_starts):
                return None
            records = {key: self._records.get(key) for key in self._changed}
            conditions = {(key, kind): self._conditions.get(key, {}).get(kind) for key, kind in self._changed_conditions}
            delta = {"version": self.version,
                     "objects": [_exported(key, r) for key, r in records.items() if r is not None],
                     "gone": [list(key) for key, r in records.items() if r is None],
                     "conditions": [[*key, kind, *seen] for (key, kind), seen in conditions.items() if seen is not None],
                     "conditionsGone": [[*key, kind] for (key, kind), seen in conditions.items() if seen is None],
                     "podStarted": {ref: self.pod_started.get(ref) for ref in self._changed_starts}}
            self._changed, self._changed_conditions, self._changed_starts = set(), set(), set()
            return delta

    def restore(self, saved: dict[str, Any]) -> None:
        """The fields `export` kept: the next `observe` of an unchanged object changes nothing."""
        with self._lock:
            self.version = int(saved["version"])
            self._records = {(kind, namespace, name): _Record(created, version, generation, None, body, spec, *more)
                             for kind, namespace, name, created, version, generation, body, spec, *more
                             in saved["objects"]}  # a record from before incarnations: 0
            self._order = {key: r.version for key, r in sorted(self._records.items(), key=lambda kv: kv[1].version)}
            self._conditions = {}
            for kind, namespace, name, type_, status, when in saved["conditions"]:
                self._conditions.setdefault((kind, namespace, name), {})[type_] = (status, when)
            self._observed = None
            self.pod_started = dict(saved["podStarted"])
            self._tombstones.clear()
            self.forgotten = self.version

    def apply(self, delta: dict[str, Any]) -> None:
        """After `restore`: a `changes` the dead supervisor journalled after its export, in order."""
        with self._lock:
            self.version = self.forgotten = int(delta["version"])
            for kind, namespace, name, created, version, generation, body, spec, *more in \
                    sorted(delta["objects"], key=lambda entry: entry[4]):  # by resourceVersion
                self._records[(kind, namespace, name)] = _Record(created, version, generation, None, body, spec, *more)
                self._moved((kind, namespace, name), version)
            for kind, namespace, name in delta["gone"]:
                self._records.pop((kind, namespace, name), None)
                self._order.pop((kind, namespace, name), None)
            for kind, namespace, name, type_, status, when in delta["conditions"]:
                self._conditions.setdefault((kind, namespace, name), {})[type_] = (status, when)
            for kind, namespace, name, type_ in delta["conditionsGone"]:
                self._conditions.get((kind, namespace, name), {}).pop(type_, None)
            for ref, started in delta["podStarted"].items():
                if started is None:
                    self.pod_started.pop(ref, None)
                else:
                    self.pod_started[ref] = started

    def changed_since(self, since: int) -> tuple[set[tuple], list[tuple[int, tuple]]] | None:
        """The keys of the objects changed after version `since` and the deletions after it
        ((version, key)), or None if deletions after `since` may have been forgotten (the
        caller lists everything again, as a watch answered 410 Gone does)."""
        with self._lock:
            if since < self.forgotten:
                return None
            changed = set()
            for key in reversed(self._order):
                if self._order[key] <= since:
                    break
                changed.add(key)
            return changed, [(version, key) for version, key in self._tombstones if version > since]

    def pod_start(self, ref: str) -> None:
        with self._lock:
            self.pod_started[ref] = timestamp(self.clock())
            self._changed_starts.add(ref)

    def pod_gone(self, ref: str) -> None:
        with self._lock:
            if self.pod_started.pop(ref, None) is not None:
                self._changed_starts.add(ref)

    def created(self, key: tuple) -> str | None:
        """The object's creationTimestamp, if it is known."""
        record = self._records.get(key)
        return record.created if record is not None else None

    def uid(self, obj) -> str | None:
        """The uid the object is served with: the computed one, or its made-again one."""
        return self._with_uid(self._records.get(obj.key), obj.body)["metadata"].get("uid")

    @staticmethod
    def _with_uid(record: _Record | None, body: Any) -> Any:
        uid = (body.get("metadata") or {}).get("uid") if isinstance(body, dict) else None
        if record is None or not record.incarnation or not uid:
            return body
        return {**body, "metadata": {**body["metadata"],
                                     "uid": str(uuid.uuid5(_UID_NAMESPACE, f"{uid}/{record.incarnation}"))}}

    def stamp(self, obj, body: dict[str, Any]) -> dict[str, Any]:
        """`body` (the object's served body, a copy or the computed one) with the API server's
        fields: a new top-level dict and metadata, the computed body is not changed."""
        record = self._records.get(obj.key)
        body = self._with_uid(record, body)
        stamped = {**body, "metadata": dict(body.get("metadata") or {})}
        if record is not None:
            stamped["metadata"].update({"creationTimestamp": record.created,
                                        "resourceVersion": str(record.version),
                                        "generation": record.generation})
        status = body.get("status")
        if record is not None and isinstance(status, dict) and "observedGeneration" in status:
            # the controllers compute status from the current spec, so they have observed its
            # generation (kubectl wait holds a condition whose observedGeneration lags as not met)
            status = stamped["status"] = {**status, "observedGeneration": record.generation}
        if isinstance(status, dict) and (obj.kind == "Pod" or status.get("conditions")):
            status = stamped["status"] = dict(status)
            if obj.kind == "Pod" and obj.ref in self.pod_started:
                status["startTime"] = self.pod_started[obj.ref]
            status["conditions"] = self._conditions_of(obj.key, status.get("conditions") or [])
        return stamped

    def _conditions_of(self, key: tuple, conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        now = timestamp(self.clock())
        out, types = [], set()
        with self._lock:
            for condition in conditions:
                kind = condition.get("type")
                if kind in types:
                    continue
                types.add(kind)
                seen = self._conditions.get(key, {}).get(kind)
                status = condition.get("status")
                if seen is None or seen[0] != status:
                    seen = (status, condition.get("lastTransitionTime") or now)
                    self._conditions.setdefault(key, {})[kind] = seen
                    self._changed_conditions.add((key, kind))
                out.append({**condition, "lastTransitionTime": seen[1]})
        return out
