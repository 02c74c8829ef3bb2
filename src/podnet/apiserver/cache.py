"""The watch cache: the API server's copy of the cluster, from which it answers gets, lists and
watches without asking the supervisor (kube-apiserver serves from its watch cache likewise).

It holds every object by key and a window of the last HISTORY changes, each with the
resourceVersion it was made at. A watch starts from a resourceVersion: the changes after it
still in the window are sent first, then each change as it comes; one older than the window is
answered 410 Gone ("too old resource version"), and the client lists again. A watch with a
selector sees an object leave it as DELETED and enter it as ADDED, as Kubernetes' filtering
watch does. Objects and events keep resourceVersions of their own (the supervisor's object
versions and its event store's), so each has a cache of its own.

A list is in key order (namespace, name), as etcd returns it. The sorted keys of each kind are
kept between lists and made again only when an object of that kind comes or goes (not when
one changes): kubectl reads 10,000 pods in 20 pages of 500, and sorting every pod for each
page cost more than the rest of the page. Each object's JSON is kept too, made at its first
list after it changed (kube-apiserver's watch cache keeps its objects' serializations likewise):
a list of 10,000 pods as JSON is those bytes joined, not 21 MB encoded again for every client.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from podnet.apiserver.errors import ApiError

HISTORY = 20_000  # changes kept for watches that start from an older resourceVersion
WATCHER_QUEUE = 50_000  # a watcher that falls this far behind is ended (the client watches again)

Key = tuple[str, str, str]  # (kind, namespace, name)
Predicate = Callable[[Mapping[str, Any]], bool]


def key_of(body: Mapping[str, Any]) -> Key:
    metadata = body.get("metadata") or {}
    return (body.get("kind") or "", metadata.get("namespace") or "", metadata.get("name") or "")


def version_of(body: Mapping[str, Any]) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class Change:
    version: int
    type: str  # ADDED, MODIFIED, DELETED
    body: dict[str, Any]
    old: dict[str, Any] | None = None  # what MODIFIED and DELETED replaced (selectors compare both)


@dataclass(eq=False)  # each watcher is itself (a set member), not equal to another alike
class Watcher:
    kind: str
    namespace: str  # "" for all
    name: str  # "" for all (fieldSelector metadata.name=… or a watch on one object)
    selected: Predicate
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(WATCHER_QUEUE))
    ended: bool = False

    def wants(self, key: Key) -> bool:
        kind, namespace, name = key
        return kind == self.kind and (not self.namespace or namespace == self.namespace) \
            and (not self.name or name == self.name)

    def offer(self, change: Change) -> None:
        """The change as this watcher sees it (or nothing), queued."""
        if self.ended or not self.wants(key_of(change.body)):
            return
        event = seen_as(change, self.selected)
        if event is None:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.end()

    def end(self) -> None:
        self.ended = True
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            pass


def seen_as(change: Change, selected: Predicate) -> tuple[str, dict[str, Any]] | None:
    now = change.type != "DELETED" and selected(change.body)
    before = change.old is not None and selected(change.old)
    if change.type == "ADDED":
        return ("ADDED", change.body) if now else None
    if change.type == "DELETED":
        return ("DELETED", change.body) if before or selected(change.body) else None
    if now and before:
        return ("MODIFIED", change.body)
    if now:
        return ("ADDED", change.body)
    if before:
        return ("DELETED", change.body)
    return None


class WatchCache:
    def __init__(self, history: int = HISTORY):
        self.objects: dict[Key, dict[str, Any]] = {}
        self.by_kind: dict[str, dict[Key, dict[str, Any]]] = {}
        self._sorted: dict[str, list[Key]] = {}  # kind -> its keys in order, until one comes or goes
        self._encoded: dict[Key, tuple[dict[str, Any], bytes]] = {}  # key -> (the body, its JSON)
        self.resource_version = 0
        self.history: deque[Change] = deque(maxlen=history)
        self.oldest = 0  # a watch from before this version may have missed changes: 410 Gone
        self.watchers: set[Watcher] = set()
        self.synced = asyncio.Event()
        self.listeners: list[Callable[[list[Change]], None]] = []  # told of every batch (the RBAC index)

    # -- filling it ------------------------------------------------------------------------------

    def replace(self, items: Iterable[dict[str, Any]], resource_version: int) -> list[Change]:
        """Everything, as a full list gave it: the differences become changes."""
        fresh = {key_of(body): body for body in items}
        changes = []
        for key, body in fresh.items():
            old = self.objects.get(key)
            if old is None:
                changes.append(Change(version_of(body), "ADDED", body))
            elif version_of(old) != version_of(body) or old != body:
                changes.append(Change(version_of(body), "MODIFIED", body, old))
        for key in [k for k in self.objects if k not in fresh]:
            old = self.objects[key]
            changes.append(Change(resource_version, "DELETED", _deleted(old, resource_version), old))
        if self.resource_version == 0:  # the first list: nothing to tell anyone
            self.oldest = resource_version
        return self._commit(changes, resource_version)

    def update(self, items: Iterable[dict[str, Any]], deleted: Iterable[tuple[int, Key]],
               resource_version: int) -> list[Change]:
        """What changed since the last update: new or changed bodies, and deletions."""
        changes = []
        deleted = list(deleted)
        gone = {key: version for version, key in deleted}
        for body in items:
            key = key_of(body)
            old = self.objects.get(key)
            if key in gone and gone[key] < version_of(body):  # deleted, then made again under its name
                old = None
            changes.append(Change(version_of(body), "ADDED" if old is None else "MODIFIED", body, old))
        for version, key in deleted:
            old = self.objects.get(key)
            if old is not None:
                changes.append(Change(version, "DELETED", _deleted(old, version), old))
        return self._commit(changes, resource_version)

    def _commit(self, changes: list[Change], resource_version: int) -> list[Change]:
        changes.sort(key=lambda c: c.version)
        for change in changes:
            key = key_of(change.body)
            self._encoded.pop(key, None)
            if change.type == "DELETED":
                self.objects.pop(key, None)
                self.by_kind.get(key[0], {}).pop(key, None)
                self._sorted.pop(key[0], None)
            else:
                if key not in self.objects:
                    self._sorted.pop(key[0], None)
                self.objects[key] = change.body
                self.by_kind.setdefault(key[0], {})[key] = change.body
            if len(self.history) == self.history.maxlen:
                self.oldest = self.history[0].version
            self.history.append(change)
        self.resource_version = max(self.resource_version, resource_version)
        for watcher in list(self.watchers):
            for change in changes:
                watcher.offer(change)
        if changes:
            for listener in self.listeners:
                listener(changes)
        self.synced.set()
        return changes

    # -- reading it ------------------------------------------------------------------------------

    def get(self, key: Key) -> dict[str, Any] | None:
        return self.objects.get(key)

    def list(self, kind: str, namespace: str = "", selected: Predicate | None = None) -> list[dict[str, Any]]:
        """The objects of `kind` (in `namespace`, if given) that `selected` takes, in key order."""
        found = self.by_kind.get(kind)
        if not found:
            return []
        keys = self._sorted.get(kind)
        if keys is None:
            keys = self._sorted[kind] = sorted(found)
        if namespace:  # its keys are one run: from (kind, namespace) to before (kind, namespace + NUL)
            keys = keys[bisect.bisect_left(keys, (kind, namespace)):bisect.bisect_left(keys, (kind, namespace + "\0"))]
        items = [found[key] for key in keys]
        if selected is not None:
            items = [body for body in items if selected(body)]
        return items

    def encoded(self, body: dict[str, Any]) -> bytes:
        """`body` as compact JSON; kept while `body` is the cached object (never changed in place:
        a change replaces it)."""
        key = key_of(body)
        held = self._encoded.get(key)
        if held is not None and held[0] is body:
            return held[1]
        text = json.dumps(body, separators=(",", ":")).encode()
        if self.objects.get(key) is body:
            self._encoded[key] = (body, text)
        return text

    def list_bytes(self, envelope: dict[str, Any], items: list[dict[str, Any]]) -> bytes:
        """A List's JSON: `envelope` (kind, apiVersion, metadata) with `items` from their kept JSON."""
        head = json.dumps(envelope, separators=(",", ":")).encode()
        return head[:-1] + (b',"items":[' if envelope else b'"items":[') + b",".join(map(self.encoded, items)) + b"]}"

    def watch(self, kind: str, namespace: str, name: str, selected: Predicate, since: int | None) -> Watcher:
        """A watcher, with the changes after `since` queued first (None: from now on; 0 would be
        "any": the caller sends the current objects as ADDED instead)."""
        watcher = Watcher(kind, namespace, name, selected)
        if since is not None:
            if since < self.oldest:
                raise ApiError(410, f"too old resource version: {since} ({self.oldest})", "Expired")
            for change in self.history:
                if change.version > since:
                    watcher.offer(change)
        self.watchers.add(watcher)
        return watcher

    def forget(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)


def _deleted(body: dict[str, Any], version: int) -> dict[str, Any]:
    """The last state of a deleted object, at the deletion's version (as a DELETED event has it)."""
    return {**body, "metadata": {**(body.get("metadata") or {}), "resourceVersion": str(version)}}
