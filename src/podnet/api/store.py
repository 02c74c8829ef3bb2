"""Admission: raw manifests in, a validated object store out — or every problem, located.

Mirrors what the API server does on create: resolve the kind, convert deprecated versions,
default the namespace, validate against the OpenAPI schema and then the server's own rules,
and refuse duplicates. Nothing is stored unless everything is valid.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, TextIO

from podnet.api import conversion
from podnet.api.kinds import BY_KIND, kind_for
from podnet.api.loader import LoadedFiles, load_files
from podnet.api.objects import KubeObject, Source
from podnet.api.positions import LineFinder
from podnet.api.problems import FieldPath, Problem
from podnet.api.schema import SchemaValidator
from podnet.api.validation import validate_object
from podnet.errors import InvalidInput
from podnet.naming import generate_name

_schema = SchemaValidator()


@dataclass
class ObjectStore:
    """Validated objects by kind, namespace and name; the control plane's only input."""

    objects: dict[tuple[str, str, str], KubeObject] = field(default_factory=dict)
    lines: LineFinder = field(default_factory=lambda: LineFinder({}))
    warnings: list[str] = field(default_factory=list)

    def get(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        return self.objects.get((kind, namespace, name))

    def of_kind(self, kind: str) -> list[KubeObject]:
        """Objects of one kind, sorted by namespace and name, whatever the input order."""
        return sorted((o for o in self.objects.values() if o.kind == kind), key=lambda o: (o.namespace, o.name))

    def locate(self, obj: KubeObject, path: FieldPath, message: str) -> str:
        return locate(self.lines, obj.source, obj.kind, obj.ref, Problem(path, message))


def locate(lines: LineFinder, source: Source | None, kind: str, ref: str, problem: Problem) -> str:
    """FILE:LINE: Kind ns/name: field.path: what is wrong"""
    where = "<generated>"
    if source is not None:
        line = lines.line_of(source, problem.path)
        where = f"{source.file}:{line}" if line else source.file
    return f"{where}: {kind} {ref}: {problem}"


def load_store(paths: Iterable[str], stdin: TextIO | None = None) -> ObjectStore:
    """Read `-f` arguments and admit every object, or raise InvalidInput listing all problems."""
    return admit(load_files(paths, stdin))


def admit(loaded: LoadedFiles) -> ObjectStore:
    store = ObjectStore(lines=LineFinder(loaded.texts))
    errors: list[str] = list(loaded.problems)
    unknown: dict[tuple[str, str], list[Source]] = defaultdict(list)

    def error_at(source: Source, kind: str, ref: str, path: FieldPath, message: str) -> None:
        errors.append(locate(store.lines, source, kind, ref, Problem(path, message)))

    for raw in loaded.manifests:
        body, source = raw.body, raw.source
        if not isinstance(body, dict):
            errors.append(f"{_where(store.lines, source)}: expected a Kubernetes object (a mapping), got {type(body).__name__}")
            continue
        api_version, kind = body.get("apiVersion"), body.get("kind")
        ref = _ref_of(body)
        if not isinstance(kind, str) or not kind:
            error_at(source, "object", ref, ("kind",), "Required value: every object needs apiVersion and kind")
            continue
        if not isinstance(api_version, str) or not api_version:
            error_at(source, kind, ref, ("apiVersion",), "Required value")
            continue
        known = BY_KIND.get(kind)
        if known and known.namespaced and isinstance(body.get("metadata"), dict) and not body["metadata"].get("namespace"):
            ref = f"default/{ref}"
        info = kind_for(api_version, kind)
        if info is None:
            if kind in BY_KIND:
                error_at(source, kind, ref, ("apiVersion",),
                         f'no matches for kind "{kind}" in version "{api_version}" (use {BY_KIND[kind].api_version})')
            else:
                unknown[(api_version, kind)].append(source)
            continue
        if api_version != info.api_version:
            body, note = conversion.convert(info, body)
            if note:
                store.warnings.append(f"{_where(store.lines, source)}: warning: {note}")
        problems = _schema.problems(info, body)
        if not problems and not body["metadata"].get("name") and body["metadata"].get("generateName"):
            # The API server appends 5 random characters; here they come from the content.
            body["metadata"]["name"] = generate_name(body["metadata"]["generateName"], json.dumps(body, sort_keys=True))
        if not problems:
            obj = KubeObject(kind, "", str(body["metadata"].get("name") or ""), body, source)
            if info.namespaced:
                obj.namespace = body["metadata"].get("namespace") or "default"
                body["metadata"]["namespace"] = obj.namespace
            problems = validate_object(obj)
        for problem in problems:
            error_at(source, kind, ref, problem.path, problem.message)
        if problems:
            continue
        previous = store.objects.get(obj.key)
        if previous is not None:
            first = _where(store.lines, previous.source)
            error_at(source, kind, obj.ref, ("metadata", "name"), f"Duplicate value: {obj.ref} is already defined at {first}")
            continue
        store.objects[obj.key] = obj

    for (api_version, kind), sources in sorted(unknown.items()):
        count = f" ({len(sources)} objects)" if len(sources) > 1 else ""
        store.warnings.append(
            f"{_where(store.lines, sources[0])}: warning: kind {kind} ({api_version}) is not used by podnet; ignored{count}"
        )
    if errors:
        raise InvalidInput(errors)
    return store


def _ref_of(body: dict[str, Any]) -> str:
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        return "<unnamed>"
    name = meta.get("name") or "<unnamed>"
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def _where(lines: LineFinder, source: Source | None) -> str:
    if source is None:
        return "<generated>"
    line = lines.line_of(source)
    return f"{source.file}:{line}" if line else source.file
