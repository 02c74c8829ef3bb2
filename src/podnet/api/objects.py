"""KubeObject: one Kubernetes object as the API would return it, and where it came from."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Source:
    """Where an object was read: file, YAML document, and item of a `kind: List`."""

    file: str
    document: int
    item: int | None = None


@dataclass(eq=False, slots=True)
class KubeObject:
    """An object in API shape (`body` is what `kubectl get -o json` prints) plus its origin.

    Objects made by the control plane (pods of a Deployment, EndpointSlices) carry the
    source of the object that caused them, so messages about them can point somewhere useful.

    `metadata` and `status` are read-only views that never change the body (printing an object
    after reading it shows what it had); code that writes asks for `metadata_for_update()` or
    `status_for_update()`, so a write is visible as one.
    """

    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str
    body: dict[str, Any]
    source: Source | None = field(default=None)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    @property
    def ref(self) -> str:
        """"ns/name" or "name": how messages and JSON contracts name the object."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def metadata(self) -> Mapping[str, Any]:
        metadata = self.body.get("metadata")
        return MappingProxyType(metadata) if metadata else _EMPTY

    def metadata_for_update(self) -> dict[str, Any]:
        """The body's metadata, created if absent, to write into."""
        return self.body.setdefault("metadata", {})

    @property
    def labels(self) -> dict[str, str]:
        return (self.body.get("metadata") or _EMPTY).get("labels") or {}

    @property
    def annotations(self) -> dict[str, str]:
        return (self.body.get("metadata") or _EMPTY).get("annotations") or {}

    @property
    def spec(self) -> dict[str, Any]:
        return self.body.get("spec") or {}

    @property
    def status(self) -> Mapping[str, Any]:
        status = self.body.get("status")
        return MappingProxyType(status) if status else _EMPTY

    def status_for_update(self) -> dict[str, Any]:
        """The body's status, created if absent, to write into."""
        return self.body.setdefault("status", {})


_UID_NAMESPACE = uuid.UUID("5f1c3f3e-6a43-4d4e-9d0b-706f646e6574")


def deterministic_uid(kind: str, namespace: str, name: str) -> str:
    """A stable metadata.uid, so the same input always prints the same objects."""
    return str(uuid.uuid5(_UID_NAMESPACE, f"{kind}/{namespace}/{name}"))
