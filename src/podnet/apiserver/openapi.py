"""/openapi/v3 and /openapi/v2, generated from the schemas podnet validates with.

kubectl reads these documents for more than `explain`: `apply` looks in the group-version's v3
document for a PATCH operation of the object's kind (x-kubernetes-group-version-kind) that accepts
application/strategic-merge-patch+json, and builds its 3-way patch from the kind's component
schema (x-kubernetes-patch-strategy / -patch-merge-key); it sends ?fieldValidation=Strict only if
that PATCH operation declares a `fieldValidation` parameter, looked up by name among the
operation's own parameters (so it is written inline, not as a $ref). The kinds that are CRDs
upstream are published as a CRD is: their PATCH accepts no strategic merge patch, so kubectl
sends them a JSON merge patch.

The documents cover exactly the kinds podnet serves (podnet.api.kinds.KINDS) and the definitions
they reach. The schemas are JSON Schema (kubernetes-validate's conversion of the official
OpenAPI), turned back into OpenAPI: `"type": ["string", "null"]` → "string", references wrapped in
allOf when they carry siblings (OpenAPI 3.0 ignores a $ref's siblings), IntOrString and Quantity
as the API server writes them, and what the strict variant added (additionalProperties: false,
the apiVersion/kind enums) dropped.

Each document is built once and kept with its JSON bytes, their gzip and a hash; the v3 index
names each group-version's document with ?hash=<SHA-512> as the API server does, which is what
kubectl's cache keys on. `respond` answers a request for one of them (gzip when asked, ETag,
immutable caching for the current hash, a redirect for a stale one); /openapi/v2 is served as
JSON or, to client-go, as protobuf (openapiproto).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from aiohttp import web

from podnet.api.kinds import KINDS, KindInfo
from podnet.api.schema import KUBERNETES_VERSION, is_own_schema_kind
from podnet.apiserver import openapiproto, schemas

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_ALWAYS = (_META + "Status", _META + "DeleteOptions", _META + "Patch", _META + "WatchEvent")
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_REPLACED = {
    _INT_OR_STRING: {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
        "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to have, "
        "for example, a JSON field that can accept a name or number.",
        "format": "int-or-string",
        "type": "string",
    },
    _QUANTITY: {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
        "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.",
        "type": "string",
    },
}
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_CRD_PATCH_TYPES = _PATCH_TYPES[:3]
_RESPONSE_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


# --- schemas -----------------------------------------------------------------------------------


def _type_name(value: Any) -> Any:
    if isinstance(value, list):
        named = [t for t in value if t != "null"]
        return named[0] if len(named) == 1 else named
    return value


def _convert(node: Any, ref_prefix: str, v3: bool) -> Any:
    """One JSON Schema value as OpenAPI (components/definitions references under ref_prefix)."""
    if isinstance(node, list):
        return [_convert(item, ref_prefix, v3) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            out[key] = _type_name(value)
        elif key == "additionalProperties" and value is False:
            continue
        elif key == "properties":
            out[key] = {
                name: _convert(_unpinned(name, schema), ref_prefix, v3) for name, schema in value.items()
            }
        elif key == "$ref":
            out[key] = ref_prefix + value.rsplit("/", 1)[-1]
        else:
            out[key] = _convert(value, ref_prefix, v3)
    if "$ref" in out and len(out) > 1 and v3:
        reference = {"$ref": out.pop("$ref")}
        return {"allOf": [reference], **out}
    return out


def _unpinned(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """apiVersion and kind without the enum the strict schemas pin them with."""
    if name in ("apiVersion", "kind") and "enum" in schema:
        return {k: v for k, v in schema.items() if k != "enum"}
    return schema


def _references(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.add(value.rsplit("/", 1)[-1])
            elif key == "properties" and isinstance(value, dict):
                for schema in value.values():
                    _references(schema, found)
            else:
                _references(value, found)
    elif isinstance(node, list):
        for item in node:
            _references(item, found)


def _closure(roots: list[str], definitions: dict[str, dict[str, Any]]) -> list[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        found: set[str] = set()
        _references(definitions[name], found)
        stack.extend(found - seen)
    return sorted(seen)


def _group_version(info: KindInfo) -> tuple[str, str]:
    group, _, version = info.api_version.rpartition("/")
    return group, version


def _list_name(info: KindInfo) -> str:
    return schemas.definition_name(info.api_version, info.kind + "List") or (
        schemas.own_definition_name(info.api_version, info.kind + "List")
    )


def _synthetic_list(info: KindInfo) -> dict[str, Any]:
    """The List schema the API server makes for a CRD."""
    group, version = _group_version(info)
    item = schemas.definition_name(info.api_version, info.kind)
    return {
        "description": f"{info.kind}List is a list of {info.kind}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this object."},
            "items": {"type": "array", "items": {"$ref": "#/$defs/" + item}, "description": f"List of {info.plural}."},
            "kind": {"type": "string", "description": "Kind is the REST resource this object represents."},
            "metadata": {"$ref": "#/$defs/" + _META + "ListMeta", "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": [{"group": group, "kind": info.kind + "List", "version": version}],
    }


def _definitions_for(infos: list[KindInfo]) -> dict[str, dict[str, Any]]:
    """The definitions these kinds reach (JSON Schema still), synthetic CRD lists included."""
    definitions = dict(schemas.definitions())
    roots = list(_ALWAYS)
    for info in infos:
        name = schemas.definition_name(info.api_version, info.kind)
        if name is None:
            continue
        roots.append(name)
        list_name = _list_name(info)
        if list_name not in definitions:
            definitions[list_name] = _synthetic_list(info)
        roots.append(list_name)
    return {name: definitions[name] for name in _closure(roots, definitions)}


def _components(infos: list[KindInfo], ref_prefix: str, v3: bool) -> dict[str, Any]:
    out = {}
    for name, schema in _definitions_for(infos).items():
        out[name] = dict(_REPLACED[name]) if name in _REPLACED else _convert(schema, ref_prefix, v3)
    return out


# --- paths -------------------------------------------------------------------------------------


def _group_words(group: str) -> list[str]:
    if not group:
        return ["core"]
    parts = group.removesuffix(".k8s.io").split(".")
    return parts


def _operation_prefix(info: KindInfo) -> str:
    group, version = _group_version(info)
    return "".join(word[:1].upper() + word[1:] for word in _group_words(group)) + version[:1].upper() + version[1:]


def _tag(info: KindInfo) -> str:
    group, version = _group_version(info)
    words = _group_words(group)
    return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:]) + "_" + version


def _query(name: str, description: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": True}}


_DRY_RUN = ("dryRun", "When present, indicates that modifications should not be persisted. Valid values: All", "string")
_FIELD_MANAGER = (
    "fieldManager",
    "fieldManager is a name associated with the actor or entity that is making these changes.",
    "string",
)
_FIELD_VALIDATION = (
    "fieldValidation",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing "
    "unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
    "string",
)
_FORCE = (
    "force",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.",
    "boolean",
)
_LIST_PARAMETERS = (
    ("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type \"BOOKMARK\".", "boolean"),
    ("continue", "The continue option should be set when retrieving more results from the server.", "string"),
    ("fieldSelector", "A selector to restrict the list of returned objects by their fields.", "string"),
    ("labelSelector", "A selector to restrict the list of returned objects by their labels.", "string"),
    ("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
    ("resourceVersion", "resourceVersion sets a constraint on what resource versions a request may be served from.",
     "string"),
    ("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is applied to list calls.", "string"),
    ("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    ("watch", "Watch for changes to the described resources and return them as a stream of add, update, and remove "
     "notifications.", "boolean"),
)
_DELETE_PARAMETERS = (
    _DRY_RUN,
    ("gracePeriodSeconds", "The duration in seconds before the object should be deleted.", "integer"),
    ("propagationPolicy", "Whether and how garbage collection will be performed.", "string"),
)


@dataclass(frozen=True)
class _Style:
    """What differs between the v3 and the v2 form of an operation."""

    v3: bool

    @property
    def prefix(self) -> str:
        return "#/components/schemas/" if self.v3 else "#/definitions/"

    def parameters(self, specs: tuple[tuple[str, str, str], ...]) -> list[dict[str, Any]]:
        out = []
        for name, description, kind in specs:
            if self.v3:
                out.append(_query(name, description, kind))
            else:
                out.append({"name": name, "in": "query", "description": description, "type": kind, "uniqueItems": True})
        return out

    def path_parameter(self, name: str, description: str) -> dict[str, Any]:
        parameter: dict[str, Any] = {"name": name, "in": "path", "description": description, "required": True}
        if self.v3:
            return {**parameter, "schema": {"type": "string", "uniqueItems": True}}
        return {**parameter, "type": "string", "uniqueItems": True}

    def responses(self, schema: str, codes: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for code in codes:
            if self.v3:
                content = {media: {"schema": {"$ref": self.prefix + schema}} for media in _RESPONSE_TYPES}
                out[code] = {"description": _CODE_WORDS[code], "content": content}
            else:
                out[code] = {"description": _CODE_WORDS[code], "schema": {"$ref": self.prefix + schema}}
        out["401"] = {"description": "Unauthorized"}
        return out

    def body(self, operation: dict[str, Any], schema: str, media: tuple[str, ...]) -> None:
        reference = {"$ref": self.prefix + schema}
        if self.v3:
            operation["requestBody"] = {"content": {m: {"schema": reference} for m in media}, "required": True}
        else:
            operation["consumes"] = list(media)
            body = {"name": "body", "in": "body", "required": True, "schema": reference}
            operation.setdefault("parameters", []).insert(0, body)


_CODE_WORDS = {"200": "OK", "201": "Created", "202": "Accepted"}


def _operation(info: KindInfo, style: _Style, action: str, operation_id: str, description: str) -> dict[str, Any]:
    group, version = _group_version(info)
    operation: dict[str, Any] = {
        "description": description,
        "operationId": operation_id,
        "tags": [_tag(info)],
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": group, "kind": info.kind, "version": version},
    }
    if not style.v3:
        operation["produces"] = list(_RESPONSE_TYPES)
        operation["schemes"] = ["https"]
    return operation


def _paths_for(info: KindInfo, style: _Style) -> dict[str, Any]:
    group, version = _group_version(info)
    root = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    collection = f"{root}/namespaces/{{namespace}}/{info.plural}" if info.namespaced else f"{root}/{info.plural}"
    name = schemas.definition_name(info.api_version, info.kind)
    list_name = _list_name(info)
    scope = "Namespaced" if info.namespaced else ""
    prefix = _operation_prefix(info)
    pretty = ("pretty", "If 'true', then the output is pretty printed.", "string")
    namespace = (
        [style.path_parameter("namespace", "object name and auth scope, such as for teams and projects")]
        if info.namespaced
        else []
    )

    watch_words = f"list or watch objects of kind {info.kind}"
    listing = _operation(info, style, "list", f"list{prefix}{scope}{info.kind}", watch_words)
    listing["parameters"] = style.parameters(_LIST_PARAMETERS)
    listing["responses"] = style.responses(list_name, ("200",))
    create = _operation(info, style, "post", f"create{prefix}{scope}{info.kind}", f"create a {info.kind}")
    create["parameters"] = style.parameters((_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION))
    style.body(create, name, ("*/*",))
    create["responses"] = style.responses(name, ("200", "201", "202"))

    read = _operation(info, style, "get", f"read{prefix}{scope}{info.kind}", f"read the specified {info.kind}")
    read["responses"] = style.responses(name, ("200",))
    replace = _operation(info, style, "put", f"replace{prefix}{scope}{info.kind}", f"replace the specified {info.kind}")
    replace["parameters"] = style.parameters((_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION))
    style.body(replace, name, ("*/*",))
    replace["responses"] = style.responses(name, ("200", "201"))
    patch_words = f"partially update the specified {info.kind}"
    patch = _operation(info, style, "patch", f"patch{prefix}{scope}{info.kind}", patch_words)
    patch["parameters"] = style.parameters((_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION, _FORCE))
    style.body(patch, _META + "Patch", _CRD_PATCH_TYPES if is_own_schema_kind(info.kind) else _PATCH_TYPES)
    patch["responses"] = style.responses(name, ("200", "201"))
    delete = _operation(info, style, "delete", f"delete{prefix}{scope}{info.kind}", f"delete a {info.kind}")
    delete["parameters"] = style.parameters(_DELETE_PARAMETERS)
    style.body(delete, _META + "DeleteOptions", ("*/*",))
    delete["responses"] = style.responses(_META + "Status", ("200", "202"))
    if style.v3:  # a DELETE body is optional
        delete["requestBody"]["required"] = False
    else:
        delete["parameters"][0]["required"] = False

    paths = {
        collection: {
            "get": listing,
            "post": create,
            "parameters": [*namespace, *style.parameters((pretty,))],
        },
        f"{collection}/{{name}}": {
            "get": read,
            "put": replace,
            "patch": patch,
            "delete": delete,
            "parameters": [
                style.path_parameter("name", f"name of the {info.kind}"), *namespace, *style.parameters((pretty,))
            ],
        },
    }
    if info.namespaced:
        everywhere = _operation(info, style, "list", f"list{prefix}{info.kind}ForAllNamespaces", watch_words)
        everywhere["responses"] = style.responses(list_name, ("200",))
        paths[f"{root}/{info.plural}"] = {"get": everywhere, "parameters": style.parameters((*_LIST_PARAMETERS, pretty))}
    return paths


# --- documents ---------------------------------------------------------------------------------


def _group_version_path(info: KindInfo) -> str:
    group, version = _group_version(info)
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _kinds_by_path() -> dict[str, list[KindInfo]]:
    out: dict[str, list[KindInfo]] = {}
    for info in KINDS:
        if schemas.definition_name(info.api_version, info.kind) is not None:
            out.setdefault(_group_version_path(info), []).append(info)
    return out


def _v3(infos: list[KindInfo]) -> dict[str, Any]:
    style = _Style(v3=True)
    paths: dict[str, Any] = {}
    for info in infos:
        paths.update(_paths_for(info, style))
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": _components(infos, style.prefix, v3=True)},
    }


PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


@dataclass(frozen=True)
class Rendered:
    """A document as served: its body (JSON, or protobuf for v2), the same gzip-compressed, and
    its hash (SHA-512, hex)."""

    document: dict[str, Any]
    body: bytes
    gzipped: bytes
    hash: str
    content_type: str = "application/json"


def _render(document: dict[str, Any]) -> Rendered:
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    return Rendered(document, body, gzip.compress(body, mtime=0), hashlib.sha512(body).hexdigest().upper())


@cache
def _v3_rendered() -> dict[str, Rendered]:
    return {path: _render(_v3(infos)) for path, infos in sorted(_kinds_by_path().items())}


def v3_paths() -> list[str]:
    return list(_v3_rendered())


def rendered_v3(group_version_path: str) -> Rendered | None:
    """One group-version's document ("api/v1", "apis/apps/v1"), None if podnet serves none there."""
    return _v3_rendered().get(group_version_path.strip("/"))


def v3_document(group_version_path: str) -> dict[str, Any] | None:
    rendered = rendered_v3(group_version_path)
    return rendered.document if rendered else None


def v3_index() -> dict[str, Any]:
    """GET /openapi/v3: each group-version's document, named with its current hash."""
    return {
        "paths": {
            path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={rendered.hash}"}
            for path, rendered in _v3_rendered().items()
        }
    }


@cache
def rendered_v3_index() -> Rendered:
    return _render(v3_index())


@cache
def rendered_v2() -> Rendered:
    style = _Style(v3=False)
    infos = [info for infos in _kinds_by_path().values() for info in infos]
    paths: dict[str, Any] = {}
    for info in infos:
        paths.update(_paths_for(info, style))
    document = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": f"v{KUBERNETES_VERSION}"},
        "paths": dict(sorted(paths.items())),
        "definitions": _components(infos, style.prefix, v3=False),
        "security": [{"BearerToken": []}],
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication", "in": "header", "name": "authorization", "type": "apiKey"
            }
        },
    }
    return _render(document)


@cache
def rendered_v2_protobuf() -> Rendered:
    """/openapi/v2 as client-go asks for it (gnostic's protobuf, see openapiproto)."""
    as_json = rendered_v2()
    body = openapiproto.document(as_json.document)
    # upstream names both forms by the JSON's hash and lets Go's ServeContent sniff the type
    return Rendered(as_json.document, body, gzip.compress(body, mtime=0), as_json.hash, "application/octet-stream")


def v2_document() -> dict[str, Any]:
    """GET /openapi/v2 as JSON."""
    return rendered_v2().document


# --- serving -----------------------------------------------------------------------------------


def _media_types(accept: str) -> list[str]:
    return [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]


def accepts_json(accept: str) -> bool:
    """Whether an Accept header admits JSON (no header admits anything)."""
    media = _media_types(accept)
    return not media or any(m in ("*/*", "application/*", "application/json") for m in media)


def accepts_protobuf_v2(accept: str) -> bool:
    """Whether the client asks for the v2 document in protobuf, as client-go does."""
    return PROTOBUF_V2.split("@")[0] in [m.split("@")[0] for m in _media_types(accept)]


def respond(
    request: web.Request, rendered: Rendered, *, current_url: str | None = None, protobuf: Rendered | None = None
) -> web.Response:
    """Serve a rendered document: 304 for a matching If-None-Match; a stale ?hash= redirected to
    `current_url`; gzip when the client accepts it; cacheable for good when named by its hash.
    With `protobuf` (the v2 document), a client asking for protobuf gets that form."""
    accept = request.headers.get("Accept", "")
    if protobuf is not None and accepts_protobuf_v2(accept):
        rendered = protobuf
    elif not accepts_json(accept):
        return web.json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotAcceptable",
             "message": "the server was unable to respond with a content type that the client supports",
             "code": 406},
            status=406,
        )
    asked = request.query.get("hash")
    if asked is not None and asked != rendered.hash and current_url:
        raise web.HTTPMovedPermanently(location=current_url)
    etag = f'"{rendered.hash}"'
    headers = {"ETag": etag, "Vary": "Accept-Encoding"}
    headers["Cache-Control"] = "public, immutable, max-age=31536000" if asked == rendered.hash else "no-cache, private"
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    body = rendered.body
    if "gzip" in request.headers.get("Accept-Encoding", "").lower():
        body = rendered.gzipped
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, content_type=rendered.content_type, headers=headers)
