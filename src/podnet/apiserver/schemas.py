"""The served kinds' schemas, as the API server patches, applies and publishes by them.

The same files podnet validates with (podnet.api.schema): kubernetes-validate's _definitions.json
for the Kubernetes kinds and podnet's own schema for the kinds that are CRDs upstream. They are
JSON Schema; what the patch code needs from them is what the OpenAPI document carries too: the
structure (properties, items, additionalProperties) and the extensions
x-kubernetes-patch-strategy / -patch-merge-key (strategic merge patch) and x-kubernetes-list-type /
-list-map-keys / -map-type (server-side apply).

One namespace of definitions, named as the API server's OpenAPI names them
("io.k8s.api.core.v1.Pod"); every reference is rewritten to "#/$defs/<name>". podnet's own kinds
are named as the API server names a CRD's schema (the group reversed: "io.k8s.networking.policy.
v1alpha1.AdminNetworkPolicy") and, as for a CRD, have their sub-schemas inlined.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from podnet.api.kinds import KindInfo
from podnet.api.schema import OWN_SCHEMA_DIRECTORY, OWN_SCHEMAS, is_own_schema_kind, schema_directory

_REF_PREFIX = "#/$defs/"


def _reversed_group(group: str) -> str:
    return ".".join(reversed(group.split(".")))


def own_definition_name(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    return f"{_reversed_group(group)}.{version}.{kind}"


def _rewrite_refs(node: Any, local: dict[str, Any] | None) -> Any:
    """References as "#/$defs/<name>"; with `local` (podnet's own file), its own refs inlined."""
    if isinstance(node, list):
        return [_rewrite_refs(item, local) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            document, _, pointer = value.partition("#")
            name = pointer.removeprefix("/$defs/")
            if local is not None and not document:
                out.update(_rewrite_refs(local[name], local))
                continue
            out[key] = _REF_PREFIX + name
        elif key == "properties" and isinstance(value, dict):  # field names, not keywords
            out[key] = {field: _rewrite_refs(schema, local) for field, schema in value.items()}
        else:
            out[key] = _rewrite_refs(value, local)
    return out


@cache
def definitions() -> dict[str, dict[str, Any]]:
    """Every definition by its OpenAPI name (loaded once: the file is 1.8 MB)."""
    document = json.loads((schema_directory() / "_definitions.json").read_text())
    merged = {name: _rewrite_refs(schema, None) for name, schema in document["$defs"].items()}
    for file in OWN_SCHEMAS:
        own = json.loads((OWN_SCHEMA_DIRECTORY / file).read_text())["$defs"]
        for name, schema in own.items():
            api_version = schema.get("properties", {}).get("apiVersion", {}).get("enum", [None])[0]
            if api_version and is_own_schema_kind(name):
                root = _rewrite_refs(schema, own)
                root["x-kubernetes-group-version-kind"] = [
                    {"group": api_version.rpartition("/")[0], "version": api_version.rpartition("/")[2], "kind": name}
                ]
                merged[own_definition_name(api_version, name)] = root
    return merged


@cache
def _by_group_version_kind() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            index.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return index


def definition_name(api_version: str, kind: str) -> str | None:
    """The definition of apiVersion/kind ("v1", "Pod" → "io.k8s.api.core.v1.Pod"), None if unknown."""
    group, _, version = api_version.rpartition("/")
    return _by_group_version_kind().get((group, version, kind))


def kind_schema(info: KindInfo) -> dict[str, Any] | None:
    name = definition_name(info.api_version, info.kind)
    return definitions()[name] if name else None


def resolve(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Follow a reference (also one wrapped in allOf, as OpenAPI v3 writes it)."""
    seen = 0
    while schema is not None and seen < 16:
        if "$ref" in schema:
            schema = definitions().get(schema["$ref"].removeprefix(_REF_PREFIX))
        elif len(schema.get("allOf", ())) == 1 and "properties" not in schema:
            schema = schema["allOf"][0]
        else:
            return schema
        seen += 1
    return schema


def field(schema: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """The schema of one field of an object, or of any value of a map; unresolved, so the field's
    own extensions (x-kubernetes-patch-strategy...) are still on it."""
    node = resolve(schema)
    if node is None:
        return None
    properties = node.get("properties")
    if properties is not None and key in properties:
        return properties[key]
    extra = node.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def items(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    node = resolve(schema)
    if node is None:
        return None
    found = node.get("items")
    return found if isinstance(found, dict) else None
