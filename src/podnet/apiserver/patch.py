"""PATCH as the API server applies it: strategic merge, JSON merge (RFC 7386), JSON patch (RFC 6902)
and server-side apply.

Strategic merge patch follows apimachinery's strategicpatch (the server side of it: the patch is
applied, never computed; kubectl computes it, a 3-way diff of last-applied, the new manifest and
the live object). Per field, the schema says how a value merges: x-kubernetes-patch-strategy
"merge" on a list merges it (by x-kubernetes-patch-merge-key for lists of objects, as a set for
primitives), "replace" on a map replaces it, "retainKeys" lets the patch carry `$retainKeys`;
a list without a strategy is replaced whole, as are all lists of podnet's own kinds (their schema
carries none). The patch's directives: `$patch: replace|delete` on a map or a list item
(`$patch: merge` is refused, as upstream refuses it), `$deleteFromPrimitiveList/<field>`,
`$setElementOrder/<field>` (the order kubectl wants; items only the server has keep their place
relative to the live order), `$retainKeys`; a null deletes a key. The order of a merged list is
upstream's: the patch's items in the patch's order, the server-only items interleaved where the
live order puts them.

The result is what the typed decode upstream makes of the merged map: null values dropped, and
directive keys left where upstream would have left them (inside values that had nothing to merge
with) dropped too instead of reported as unknown fields.

Errors are upstream's words and codes: malformed directives 400 BadRequest, lists of lists 422,
the rest of strategicpatch's errors are upstream's 500 InternalError ("Internal error occurred:
...") since the API server passes them through unclassified.

Where this differs from upstream, on purpose: a field the schema does not know merges as a map /
is replaced as a list (upstream fails looking it up, which only a live object carrying an unknown
field could provoke); `$setElementOrder` over a list that is empty on both sides gives the empty
list (upstream: "no elements in any of the given slices"); the kinds that are CRDs upstream take
a strategic merge patch with all their lists atomic (upstream answers 415 for a custom resource;
the OpenAPI documents do not offer it for them, so kubectl sends them a JSON merge patch).
Upstream's in-place slice operations, which disturb the live order $setElementOrder interleaves
by after a `$patch: delete`, are copied (its own tests expect their outcome), see _alias_backing.

Server-side apply is a subset of structured-merge-diff, see `apply_patch`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import yaml

from podnet.api.kinds import BY_KIND
from podnet.apiserver import schemas

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"
SET_ELEMENT_ORDER = "$setElementOrder"
MAX_JSON_PATCH_OPERATIONS = 10000
Schema = dict[str, Any] | None  # a (sub)schema of the served kinds; None where the schema says nothing


class PatchError(Exception):
    """A patch the API server refuses, with the metav1.Status it answers."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _bad_request(message: str) -> PatchError:
    return PatchError(400, "BadRequest", message)


def _internal(message: str) -> PatchError:
    return PatchError(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})


def _unprocessable() -> PatchError:
    # NewGenericServerResponse(422, ...) keeps its own words, not the library's
    return PatchError(422, "Invalid", "the server rejected our request due to an error in our request", {})


def _go(value: Any) -> str:
    """A value as Go's %v prints a decoded JSON value (upstream's error messages show them so)."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{_go(value[key])}" for key in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go(item) for item in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _no_merge_key(item: Any, merge_key: str) -> PatchError:
    return _internal(f"map: {_go(item)} does not contain declared merge key: {merge_key}")


# --- the request ------------------------------------------------------------------------------

STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_MERGE_PATCH)


def patch_request(
    live: dict[str, Any] | None,
    content_type: str,
    body: bytes,
    *,
    kind: str,
    manager: str,
    force: bool = False,
) -> dict[str, Any]:
    """A PATCH request's body applied to the live object by its Content-Type; `live` may be None
    only for an apply (server-side apply creates). Errors as upstream words them: an unknown type
    415, a body that does not decode 400."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in PATCH_TYPES:
        raise PatchError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: {', '.join(PATCH_TYPES)}",
        )
    if media == APPLY_PATCH:
        try:
            applied = yaml.safe_load(body)
        except yaml.YAMLError as error:
            raise _bad_request(f"error encoding patch: {error}") from error
        return apply_patch(live, applied, manager, force, kind)
    if live is None:
        raise ValueError("only an apply patch can create an object")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise _bad_request("invalid JSON patch") from error
    if media == JSON_PATCH:
        return json_patch(live, document)
    if media == MERGE_PATCH:
        return json_merge_patch(live, document)
    return strategic_merge_patch(live, document, kind)


# --- strategic merge patch -------------------------------------------------------------------


@dataclass(frozen=True)
class _FieldMeta:
    strategy: str  # "merge", "replace" or "" (the default: maps merge, lists are replaced)
    merge_key: str


def _field_meta(field_schema: Schema) -> _FieldMeta:
    if field_schema is None:
        return _FieldMeta("", "")
    strategies = [s for s in str(field_schema.get("x-kubernetes-patch-strategy", "")).split(",") if s]
    others = [s for s in strategies if s != "retainKeys"]
    if len(strategies) > 2 or len(others) > 1:
        raise _internal(f"unexpected patch strategy: {strategies}")
    return _FieldMeta(others[0] if others else "", str(field_schema.get("x-kubernetes-patch-merge-key", "")))


def _lookup_map(schema: Schema, key: str) -> tuple[Schema, _FieldMeta]:
    field_schema = schemas.field(schema, key)
    return schemas.resolve(field_schema), _field_meta(field_schema)


def _lookup_list(schema: Schema, key: str) -> tuple[Schema, _FieldMeta]:
    """The schema of a list's items (of the field itself when it declares none, as upstream falls
    back) and the field's patch metadata."""
    field_schema = schemas.field(schema, key)
    item_schema = schemas.items(field_schema)
    return schemas.resolve(item_schema if item_schema is not None else field_schema), _field_meta(field_schema)


def _kind_of(value: Any) -> str:
    """The JSON type as Go's reflect sees a decoded value (ints and floats are distinct types)."""
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "nil"


def _same(a: Any, b: Any) -> bool:
    """Go's == on two decoded scalars: the same type and the same value."""
    return _kind_of(a) == _kind_of(b) and a == b


def _element_kind(*lists: list[Any]) -> str | None:
    kind = None
    for items in lists:
        for item in items:
            current = _kind_of(item)
            if kind is None:
                if current == "slice":
                    raise _unprocessable()  # "lists of lists are not supported", worded generically upstream
                kind = current
            elif kind != current:
                raise _internal(f"list element types are not identical: {_go(list(lists))}")
    return kind


def _directive_key(key: str, prefix: str, error: str) -> str:
    head, sep, rest = key.partition("/")
    if not sep or head != prefix:
        raise _bad_request(error)
    return rest


def _without_directives(value: Any) -> tuple[Any, bool]:
    """removeDirectives: a map carrying $patch is dropped (from its map or list)."""
    if isinstance(value, dict):
        if DIRECTIVE in value:
            return None, False
        for key in list(value):
            kept, keep = _without_directives(value[key])
            if keep:
                value[key] = kept
            else:
                del value[key]
        return value, True
    if isinstance(value, list):
        out = []
        for item in value:
            kept, keep = _without_directives(item)
            if keep:
                out.append(kept)
        return out, True
    return value, True


def _discard_nulls(value: Any) -> None:
    if isinstance(value, dict):
        for key in list(value):
            if value[key] is None:
                del value[key]
            else:
                _discard_nulls(value[key])
    elif isinstance(value, list):
        for item in value:
            _discard_nulls(item)


def _take_patch_value(original: dict[str, Any], key: str, value: Any) -> None:
    _discard_nulls(value)
    kept, keep = _without_directives(value)
    if keep:
        original[key] = kept
    else:
        original.pop(key, None)


def _apply_retain_keys(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if RETAIN_KEYS not in patch:
        return
    retained = patch.pop(RETAIN_KEYS)
    if not isinstance(retained, list):
        raise _bad_request("invalid patch format of retainKeys")
    for key, value in patch.items():
        if value is None or key.startswith((DELETE_FROM_PRIMITIVE_LIST, SET_ELEMENT_ORDER)):
            continue
        if key not in retained:
            raise _bad_request("invalid patch format of retainKeys")
    for key in list(original):
        if key not in retained:
            del original[key]


def _merge_key_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _same(left, right)
    if not isinstance(left, dict):
        raise _internal(f"expected a map[string]interface {{}}, but received a {_go_type(left)}")
    if not isinstance(right, dict):
        raise _internal(f"expected a map[string]interface {{}}, but received a {_go_type(right)}")
    if merge_key not in left:
        raise _no_merge_key(left, merge_key)
    if merge_key not in right:
        raise _no_merge_key(right, merge_key)
    return _same(left[merge_key], right[merge_key])


def _go_type(value: Any) -> str:
    kind = _kind_of(value)
    return {"map": "map[string]interface {}", "slice": "[]interface {}", "nil": "<nil>"}.get(kind, kind)


def _is_delete_item(item: Any) -> bool:
    return isinstance(item, dict) and item.get(DIRECTIVE) == "delete"


def _check_element_order(patch_list: list[Any], order: list[Any], merge_key: str) -> None:
    """The patch's items must appear in $setElementOrder, in the same relative order."""
    if not patch_list or not order:
        return
    if merge_key:
        for item in patch_list:
            if not isinstance(item, dict):
                raise _internal(f"expected a map[string]interface {{}}, but received a {_go_type(item)}")
        items = [item for item in patch_list if not _is_delete_item(item)]
    else:
        items = patch_list
    i = j = 0
    while i < len(items) and j < len(order):
        if isinstance(items[i], dict) and DIRECTIVE in items[i]:
            i += 1
            continue
        if _merge_key_equal(items[i], order[j], merge_key):
            i += 1
        j += 1
    if i < len(items) and j >= len(order):
        raise _internal(
            f"The order in patch list:\n{_go(patch_list)}\n doesn't match {SET_ELEMENT_ORDER} list:\n{_go(order)}\n"
        )


def _identity(item: Any, merge_key: str, kind: str | None) -> Any:
    if kind == "map":
        return item.get(merge_key) if isinstance(item, dict) else None
    return item


def _index(items: list[Any], item: Any, merge_key: str, kind: str | None) -> int:
    wanted = _identity(item, merge_key, kind)
    for position, candidate in enumerate(items):
        if _same(_identity(candidate, merge_key, kind), wanted):
            return position
    return -1


def _sort_by(items: list[Any], order: list[Any], merge_key: str, kind: str | None) -> list[Any]:
    deletions: list[Any] = []
    if kind == "map":
        for item in [*items, *order]:
            if not isinstance(item, dict) or merge_key not in item:
                raise _no_merge_key(item if isinstance(item, dict) else {}, merge_key)
        deletions = [item for item in items if _is_delete_item(item)]
        items = [item for item in items if not _is_delete_item(item)]

    def position(item: Any) -> int:
        found = _index(order, item, merge_key, kind)
        return found if found >= 0 else len(order)

    return sorted(items, key=position) + deletions


def _interleave(
    server_only: list[Any], patch_items: list[Any], server_order: list[Any], merge_key: str, kind: str | None
) -> list[Any]:
    """Both lists keep their own order; a server-only item goes before a patch item when the live
    list has it before that item."""
    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):
        if i >= len(server_only):
            out.append(patch_items[j])
            j += 1
        elif j >= len(patch_items):
            out.append(server_only[i])
            i += 1
        else:
            left = _index(server_order, server_only[i], merge_key, kind)
            right = _index(server_order, patch_items[j], merge_key, kind)
            if left >= 0 and right >= 0 and left < right:
                out.append(server_only[i])
                i += 1
            else:
                out.append(patch_items[j])
                j += 1
    return out


def _normalize_order(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
    kind: str | None,
) -> list[Any]:
    patch_items = _sort_by(patch_items, patch_order, merge_key, kind)
    server_only = _sort_by(server_only, server_order, merge_key, kind)
    return _interleave(server_only, patch_items, server_order, merge_key, kind)


def _partition(merged: list[Any], by: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """Items also in `by` (the patch, or $setElementOrder) and the items only the server has."""
    in_patch: list[Any] = []
    server_only: list[Any] = []
    for item in merged:
        if merge_key:
            if not isinstance(item, dict):
                raise _internal(f"expected a map[string]interface {{}}, but received a {_go_type(item)}")
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            found = any(_has_key_value(other, merge_key, item[merge_key]) for other in by)
        else:
            found = any(_same(other, item) for other in by)
        (in_patch if found else server_only).append(item)
    return in_patch, server_only


def _has_key_value(item: Any, merge_key: str, value: Any) -> bool:
    return isinstance(item, dict) and merge_key in item and _same(item[merge_key], value)


def _merge_list_field(
    original: list[Any],
    patch: list[Any],
    schema: Schema,
    meta: _FieldMeta,
    delete_list: bool,
    backing: list[Any] | None = None,
) -> list[Any]:
    if meta.strategy == "merge" or delete_list:
        return _merge_list(original, patch, schema, meta.merge_key, delete_list, backing)
    return patch


def _merge_list(
    original: list[Any],
    patch: list[Any],
    schema: Schema,
    merge_key: str,
    delete_list: bool,
    backing: list[Any] | None = None,
) -> list[Any]:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    if kind != "map":
        if delete_list:
            return [item for item in original if not any(_same(item, gone) for gone in patch)]
        merged: list[Any] = []
        for item in [*original, *patch]:
            if not any(_same(item, seen) for seen in merged):
                merged.append(item)
        server_order = original
    else:
        if not merge_key:
            raise _internal("cannot merge lists without merge key for struct")
        directives = patch
        original, patch = _apply_list_directives(original, patch, merge_key)
        server_order = list(original)
        merged = list(original)
        appended = []
        for item in patch:
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            found = next((n for n, live in enumerate(merged) if _has_key_value(live, merge_key, item[merge_key])), None)
            if found is None:
                merged.append(item)
                appended.append(item)
            else:
                merged[found] = _merge_map(merged[found], item, schema)
        if backing is not None:
            _alias_backing(backing, directives, merge_key, appended)
    patch_items, server_only = _partition(merged, patch, merge_key if kind == "map" else "")
    return _normalize_order(patch_items, server_only, patch, server_order, merge_key, kind)


def _alias_backing(backing: list[Any], directives: list[Any], merge_key: str, appended: list[Any]) -> None:
    """What upstream's in-place slice operations leave in the live list it later orders by.

    Upstream deletes an item by shifting the rest of the slice left in place and appends new items
    into the same array while it has room, and the $setElementOrder pass then orders server-only
    items by that disturbed array, not by the live list. Its own tests expect the outcome, so the
    order is copied; the array's spare room is taken as none (it depends on how the object was
    decoded upstream)."""
    length = len(backing)
    for item in directives:
        if not (isinstance(item, dict) and item.get(DIRECTIVE) == "delete"):
            continue
        while True:
            found = next((n for n in range(length) if _has_key_value(backing[n], merge_key, item[merge_key])), None)
            if found is None:
                break
            backing[found : length - 1] = backing[found + 1 : length]
            length -= 1
    if any(isinstance(item, dict) and item.get(DIRECTIVE) == "replace" for item in directives):
        return
    for offset, item in enumerate(appended):
        if length + offset >= len(backing):
            return
        backing[length + offset] = item


def _apply_list_directives(original: list[Any], patch: list[Any], merge_key: str) -> tuple[list[Any], list[Any]]:
    """`$patch: delete` items remove the live items with their merge key, `$patch: replace` makes
    the patch's other items the whole list."""
    rest: list[Any] = []
    replace = False
    for item in patch:
        if DIRECTIVE not in item:
            rest.append(item)
            continue
        directive = item[DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            original = [live for live in original if not (merge_key in live and _same(live[merge_key], item[merge_key]))]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _internal("merging lists cannot yet be specified in the patch")
        else:
            raise _internal(f"unknown patch type: {_go(directive)} in map: {_go(item)}")
    if replace:
        return rest, []
    return original, rest


def _merge_ordered_lists(original: dict[str, Any], patch: dict[str, Any], schema: Schema) -> None:
    """The `$setElementOrder/<field>` directives, with the list each orders."""
    for key in [k for k in patch if k.startswith(SET_ELEMENT_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _internal(f"expected a []interface {{}}, but received a {_go_type(order)}")
        name = _directive_key(key, SET_ELEMENT_ORDER, "invalid patch format of setElementOrder list")
        live = original.get(name)
        patched = patch.get(name)
        if name in original and not isinstance(live, list):
            raise _internal(f"expected a []interface {{}}, but received a {_go_type(live)}")
        if name in patch and not isinstance(patched, list):
            raise _internal(f"expected a []interface {{}}, but received a {_go_type(patched)}")
        item_schema, meta = _lookup_list(schema, name)
        _check_element_order(patched or [], order, meta.merge_key)
        if name in original and name not in patch:
            merged = live
        elif name in patch and name not in original:
            merged = _without_directives(patched)[0]
        elif name in original:
            server_order = list(live)  # what the merge leaves of the live array, see _alias_backing
            merged = _merge_list_field(list(live), patched, item_schema, meta, False, backing=server_order)
        else:
            continue
        kind = _element_kind(live or [], patched or [])
        if kind is not None:
            in_order, server_only = _partition(merged, order, meta.merge_key)
            order_by = server_order if name in original and name in patch else (live or [])
            merged = _normalize_order(in_order, server_only, order, order_by, meta.merge_key, kind)
        original[name] = merged
        patch.pop(name, None)


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: Schema) -> dict[str, Any]:
    if DIRECTIVE in patch:
        directive = patch[DIRECTIVE]
        if directive == "replace":
            del patch[DIRECTIVE]
            return patch
        if directive == "delete":
            return {}
        raise _internal(f"unknown patch type: {_go(directive)} in map: {_go(patch)}")
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, schema)
    for key, value in patch.items():
        delete_list = key.startswith(DELETE_FROM_PRIMITIVE_LIST)
        if delete_list:
            key = _directive_key(key, DELETE_FROM_PRIMITIVE_LIST, "invalid patch format of primitive list")
        if value is None:
            original.pop(key, None)
            continue
        if key not in original:
            if not delete_list:
                _take_patch_value(original, key, value)
            continue
        live = original[key]
        if _kind_of(live) != _kind_of(value) or not isinstance(value, (dict, list)):
            if not delete_list:
                _take_patch_value(original, key, value)
            continue
        if isinstance(value, dict):
            child, meta = _lookup_map(schema, key)
            original[key] = value if meta.strategy == "replace" else _merge_map(live, value, child)
        else:
            child, meta = _lookup_list(schema, key)
            original[key] = _merge_list_field(live, value, child, meta, delete_list)
    return original


def _typed(value: Any) -> Any:
    """What decoding into the typed object upstream keeps: no nulls, no directive keys."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items() if v is not None and not k.startswith("$")}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return value


def _root_schema(kind: str) -> Schema:
    info = BY_KIND.get(kind)
    return schemas.kind_schema(info) if info else None


def strategic_merge_patch(original: dict[str, Any], patch: Any, kind: str) -> dict[str, Any]:
    """`application/strategic-merge-patch+json`, with the merge keys and strategies of `kind`'s schema."""
    if not isinstance(patch, dict):
        raise _bad_request("invalid JSON document")
    merged = _merge_map(copy.deepcopy(original), copy.deepcopy(patch), _root_schema(kind))
    return _typed(merged)


# --- JSON merge patch and JSON patch ---------------------------------------------------------


def json_merge_patch(original: dict[str, Any], patch: Any) -> dict[str, Any]:
    """`application/merge-patch+json` (RFC 7386): objects merge, null deletes, the rest replaces."""
    if not isinstance(patch, dict):
        raise _bad_request("Invalid JSON Patch")
    return _merge_patch_value(original, patch)


def _merge_patch_value(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch_value(out.get(key), value)
    return out


def json_patch(original: dict[str, Any], operations: Any) -> dict[str, Any]:
    """`application/json-patch+json` (RFC 6902) with the pinned jsonpatch library."""
    if not isinstance(operations, list):
        raise _bad_request(f"json: cannot unmarshal {_json_kind(operations)} into Go value of type jsonpatch.Patch")
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(
            413,
            "RequestEntityTooLarge",
            f"Request entity too large: The allowed maximum operations in a JSON patch is "
            f"{MAX_JSON_PATCH_OPERATIONS}, got {len(operations)}",
        )
    for operation in operations:
        if not isinstance(operation, dict):
            raise _bad_request(f"json: cannot unmarshal {_json_kind(operation)} into Go value of type jsonpatch.Operation")
    try:
        result = jsonpatch.JsonPatch(operations).apply(copy.deepcopy(original))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, IndexError, TypeError) as error:
        raise _unprocessable() from error
    if not isinstance(result, dict):
        raise _unprocessable()
    return result


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number"


# --- server-side apply -----------------------------------------------------------------------
#
# A subset of structured-merge-diff as the API server uses it. Field sets are sets of paths, each
# path a tuple of FieldsV1 elements: "f:<field>", "k:<json of the key fields>" (an item of a list
# with x-kubernetes-list-type map), "v:<json value>" (an item of a set). An Apply owns the leaves
# it sets and the list items it names; an Update (create, update, patch) owns what it changed, the
# maps and list items it created included (FieldsV1 marks those with "."). A changed field another
# manager owns is a conflict (409) unless force, which takes it over; fields the applier set before
# and no longer sets are removed when no one else owns them.
#
# Left out: defaults of list keys other than a port's protocol (TCP), apply to subresources
# (status), the "i:" index paths of atomic lists' items (atomic lists are owned whole), managers
# by subresource, version conversion of managed fields (podnet serves one version per kind), and
# the checks upstream makes of managedFields a client sends.

_RESET = (("apiVersion",), ("kind",), ("status",)) + tuple(
    ("metadata", name)
    for name in (
        "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
        "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink",
    )
)

Path = tuple[str, ...]
# a key field an item may leave out, and the value the schema defaults it to (upstream's OpenAPI
# carries the default; the JSON schemas here lost it): the ports of containers and Services
_KEY_DEFAULTS = {"protocol": "TCP"}


@dataclass(frozen=True)
class _ListShape:
    kind: str  # "map", "set" or "atomic"
    keys: tuple[str, ...] = ()


def _list_shape(field_schema: Schema) -> _ListShape:
    node = field_schema or {}
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "map":
        return _ListShape("map", tuple(node.get("x-kubernetes-list-map-keys") or ()))
    if list_type == "set":
        return _ListShape("set")
    return _ListShape("atomic")


def _atomic_map(field_schema: Schema) -> bool:
    if field_schema is None:
        return False
    resolved = schemas.resolve(field_schema) or {}
    return "atomic" in (field_schema.get("x-kubernetes-map-type"), resolved.get("x-kubernetes-map-type"))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _item_element(item: Any, shape: _ListShape) -> str:
    if shape.kind == "set":
        return "v:" + _compact(item)
    if not isinstance(item, dict):
        return "k:{}"
    key = {name: item.get(name, _KEY_DEFAULTS.get(name)) for name in sorted(shape.keys)}
    return "k:" + _compact({name: value for name, value in key.items() if value is not None})


def _is_granular_map(field_schema: Schema) -> bool:
    """A map (additionalProperties) rather than a struct: created maps are owned themselves."""
    resolved = schemas.resolve(field_schema) if field_schema else None
    return bool(resolved) and "properties" not in resolved and isinstance(resolved.get("additionalProperties"), dict)


def _fields(value: Any, field_schema: Schema, path: Path, out: set[Path]) -> None:
    """The paths an applied configuration sets: leaves, list items, empty and atomic values."""
    if isinstance(value, dict) and value and not _atomic_map(field_schema):
        node = schemas.resolve(field_schema) if field_schema else None
        for key, child in value.items():
            if child is None:
                continue
            _fields(child, schemas.field(node, key), (*path, "f:" + key), out)
        return
    if isinstance(value, list) and value:
        shape = _list_shape(field_schema)
        if shape.kind != "atomic":
            item_schema = schemas.items(field_schema)
            for item in value:
                item_path = (*path, _item_element(item, shape))
                out.add(item_path)
                if shape.kind == "map" and isinstance(item, dict):
                    _fields(item, item_schema, item_path, out)
            return
    if path:
        out.add(path)


def _without_reset_fields(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    for path in _RESET:
        holder = out
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict):
            holder.pop(path[-1], None)
    metadata = out.get("metadata")
    if isinstance(metadata, dict) and not metadata:
        del out["metadata"]
    return out


def field_set(obj: dict[str, Any], kind: str) -> set[Path]:
    """The fields an object sets, as server-side apply owns them."""
    out: set[Path] = set()
    _fields(_without_reset_fields(obj), _root_schema(kind), (), out)
    return out


_MISSING = object()


def _element_matches(item: Any, element: str) -> bool:
    kind, _, text = element.partition(":")
    wanted = json.loads(text)
    if kind == "v":
        return _compact(item) == _compact(wanted)
    return isinstance(item, dict) and all(
        _same(item.get(name, _KEY_DEFAULTS.get(name)), value) for name, value in wanted.items()
    )


def _value_at(obj: Any, path: Path) -> Any:
    for element in path:
        if element.startswith("f:"):
            if not isinstance(obj, dict) or element[2:] not in obj:
                return _MISSING
            obj = obj[element[2:]]
        else:
            if not isinstance(obj, list):
                return _MISSING
            obj = next((item for item in obj if _element_matches(item, element)), _MISSING)
            if obj is _MISSING:
                return _MISSING
    return obj


def _changed(before: Any, after: Any, field_schema: Schema, path: Path, out: set[Path], *, created_maps: bool) -> None:
    """The paths whose value differs between two objects (added, changed or removed)."""
    if isinstance(before, dict) and isinstance(after, dict) and not _atomic_map(field_schema):
        node = schemas.resolve(field_schema) if field_schema else None
        for key in [*before, *(k for k in after if k not in before)]:
            child = schemas.field(node, key)
            was, now = before.get(key, _MISSING), after.get(key, _MISSING)
            _changed(was, now, child, (*path, "f:" + key), out, created_maps=created_maps)
        return
    if isinstance(before, list) and isinstance(after, list):
        shape = _list_shape(field_schema)
        if shape.kind != "atomic":
            item_schema = schemas.items(field_schema)
            old = {_item_element(item, shape): item for item in before}
            new = {_item_element(item, shape): item for item in after}
            for element in [*old, *(e for e in new if e not in old)]:
                was, now = old.get(element, _MISSING), new.get(element, _MISSING)
                _changed(was, now, item_schema, (*path, element), out, created_maps=created_maps)
            return
    if before is _MISSING and after is _MISSING:
        return
    if before is not _MISSING and after is not _MISSING and before == after:
        return
    if before is _MISSING and isinstance(after, (dict, list)) and after:
        # a whole value appeared: a list item or (for an Update) a map is owned itself, then
        # everything in it as if it had been there empty
        is_item = bool(path) and path[-1][:2] in ("k:", "v:")
        if is_item or (created_maps and isinstance(after, dict) and _is_granular_map(field_schema)):
            out.add(path)
        if isinstance(after, dict) and not _atomic_map(field_schema):
            _changed({}, after, field_schema, path, out, created_maps=created_maps)
            return
        if isinstance(after, list) and _list_shape(field_schema).kind != "atomic":
            _changed([], after, field_schema, path, out, created_maps=created_maps)
            return
    out.add(path)


def _merge_applied(live: Any, config: Any, field_schema: Schema) -> Any:
    """The applied configuration merged into the live object, structure by structure."""
    if isinstance(live, dict) and isinstance(config, dict) and not _atomic_map(field_schema):
        node = schemas.resolve(field_schema) if field_schema else None
        out = dict(live)
        for key, value in config.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _merge_applied(live.get(key, _MISSING), value, schemas.field(node, key))
        return out
    if isinstance(live, list) and isinstance(config, list):
        shape = _list_shape(field_schema)
        if shape.kind != "atomic":
            return _merge_list_items(live, config, shape, schemas.items(field_schema))
    return copy.deepcopy(config)


def _merge_list_items(live: list[Any], config: list[Any], shape: _ListShape, item_schema: Schema) -> list[Any]:
    """structured-merge-diff's order: the items both have follow the configuration's order, an
    item only the live list has keeps its place, a new item goes where the configuration puts it."""
    left = [(_item_element(item, shape), item) for item in live]
    right = [(_item_element(item, shape), item) for item in config]
    in_left = {element: item for element, item in reversed(left)}
    in_right = {element for element, _ in right}
    shared = [element for element, _ in right if element in in_left]
    next_shared = 0
    merged: set[str] = set()
    out: list[Any] = []

    def take(element: str, item: Any) -> None:
        merged.add(element)
        old = in_left.get(element, _MISSING)
        out.append(copy.deepcopy(item) if old is _MISSING else _merge_applied(old, item, item_schema))

    i = j = 0
    while i < len(left) or j < len(right):
        if i < len(left) and j < len(right):
            element = left[i][0]
            if element == right[j][0]:
                take(element, right[j][1])
                i, j = i + 1, j + 1
                if next_shared < len(shared) and shared[next_shared] == element:
                    next_shared += 1
                continue
            if element in in_right and next_shared < len(shared) and shared[next_shared] != element:
                i += 1  # shared, but later in the configuration's order
                continue
        if i < len(left):
            element = left[i][0]
            if element not in in_right:
                out.append(left[i][1])
                i += 1
                continue
            if element in merged:
                i += 1
        if j < len(right):
            element = right[j][0]
            take(element, right[j][1])
            j += 1
            if next_shared < len(shared) and shared[next_shared] == element:
                next_shared += 1
    return out


def _remove_path(obj: Any, path: Path) -> None:
    parent = _value_at(obj, path[:-1]) if len(path) > 1 else obj
    element = path[-1]
    if element.startswith("f:") and isinstance(parent, dict):
        parent.pop(element[2:], None)
    elif isinstance(parent, list):
        parent[:] = [item for item in parent if not _element_matches(item, element)]


def _prune_empty(obj: Any, path: Path, owned: set[Path]) -> None:
    """After a removal, drop the maps it left empty that no one owns."""
    for depth in range(len(path) - 1, 0, -1):
        prefix = path[:depth]
        holder = _value_at(obj, prefix)
        if isinstance(holder, dict) and not holder and prefix not in owned and prefix[-1].startswith("f:"):
            _remove_path(obj, prefix)
        else:
            return


def _path_string(path: Path) -> str:
    """A path as structured-merge-diff prints it: .spec.containers[name="web"].image"""
    out = []
    for element in path:
        kind, _, text = element.partition(":")
        if kind == "f":
            out.append("." + text)
        elif kind == "k":
            key = json.loads(text)
            out.append("[" + ",".join(f"{name}={_go_string(value)}" for name, value in key.items()) + "]")
        else:
            out.append(f"[={_go_string(json.loads(text))}]")
    return "".join(out)


def _go_string(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return _compact(value)


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    """A set of paths in the FieldsV1 format of managedFields."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    members = set(paths)

    def mark(node: dict[str, Any], prefix: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if node and prefix in members:
            out["."] = {}
        for element in sorted(node):
            out[element] = mark(node[element], (*prefix, element))
        return out

    return mark(tree, ())


def paths_of(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    """The set of paths a FieldsV1 tree holds."""
    out: set[Path] = set()
    for element, child in fields.items():
        if element == ".":
            out.add(prefix)
            continue
        path = (*prefix, element)
        if not child:
            out.add(path)
        else:
            out |= paths_of(child, path)
    return out


@dataclass
class _Manager:
    entry: dict[str, Any]
    paths: set[Path]

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.entry.get("manager", ""), self.entry.get("operation", ""), self.entry.get("subresource", ""))


def _managers(obj: dict[str, Any] | None) -> list[_Manager]:
    entries = ((obj or {}).get("metadata") or {}).get("managedFields") or []
    return [_Manager(dict(entry), paths_of(entry.get("fieldsV1") or {})) for entry in entries if isinstance(entry, dict)]


def _now(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _store_managers(obj: dict[str, Any], managers: list[_Manager]) -> dict[str, Any]:
    entries = []
    for manager in managers:
        if not manager.paths:
            continue
        entry = {k: v for k, v in manager.entry.items() if k != "fieldsV1"}
        entry["fieldsType"] = "FieldsV1"
        entry["fieldsV1"] = fields_v1(manager.paths)
        entries.append(entry)
    # upstream's order: by operation (Apply before Update), then time, manager, version, subresource
    entries.sort(key=lambda e: (e.get("operation", ""), e.get("time") or "", e.get("manager", ""),
                                e.get("apiVersion", ""), e.get("subresource", "")))
    metadata = obj.setdefault("metadata", {})
    if entries:
        metadata["managedFields"] = entries
    else:
        metadata.pop("managedFields", None)
    return obj


def _manager_words(manager: _Manager) -> str:
    words = json.dumps(manager.entry.get("manager", ""))
    if manager.entry.get("subresource"):
        words += f' with subresource {json.dumps(manager.entry["subresource"])}'
    if manager.entry.get("operation") == "Update":
        words += f" using {manager.entry.get('apiVersion', '')}"
        if manager.entry.get("time"):
            words += f" at {manager.entry['time']}"
    return words


def _conflict_error(conflicts: list[tuple[_Manager, Path]]) -> PatchError:
    causes = [
        {"reason": "FieldManagerConflict", "message": f"conflict with {_manager_words(m)}", "field": _path_string(p)}
        for m, p in conflicts
    ]
    if len(conflicts) == 1:
        manager, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {_manager_words(manager)}: {_path_string(path)}"
    else:
        lines = []
        by_manager: dict[str, list[Path]] = {}
        words = {}
        for manager, path in conflicts:
            key = json.dumps(manager.entry, sort_keys=True)
            by_manager.setdefault(key, []).append(path)
            words[key] = _manager_words(manager)
        for key in sorted(by_manager, key=lambda k: json.loads(k).get("manager", "")):
            lines.append(f"conflicts with {words[key]}:")
            lines.extend(f"- {_path_string(p)}" for p in sorted(by_manager[key]))
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return PatchError(409, "Conflict", message, {"causes": causes})


def apply_patch(
    live: dict[str, Any] | None,
    applied: Any,
    manager: str,
    force: bool,
    kind: str,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """`application/apply-patch+yaml` (server-side apply) by field manager `manager`: the object to
    store, its metadata.managedFields updated. `live` is None when the object does not exist yet."""
    if not isinstance(applied, dict):
        raise _bad_request("error decoding patch: the applied configuration must be an object")
    if not manager:
        raise PatchError(
            422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
            "is required for apply patch",
            {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
                {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch",
                 "field": "fieldManager"}
            ]},
        )
    schema = _root_schema(kind)
    config = _without_reset_fields(applied)
    config = _typed(config)
    applied_paths: set[Path] = set()
    _fields(config, schema, (), applied_paths)
    api_version = applied.get("apiVersion") or (BY_KIND[kind].api_version if kind in BY_KIND else "")
    managers = _managers(live)
    mine = next((m for m in managers if m.identity == (manager, "Apply", "")), None)
    if mine is None:
        mine = _Manager({"manager": manager, "operation": "Apply", "apiVersion": api_version}, set())
        managers.append(mine)
    others = [m for m in managers if m is not mine]

    base = copy.deepcopy(live) if live is not None else {
        key: copy.deepcopy(applied[key]) for key in ("apiVersion", "kind") if key in applied
    }
    if live is None and isinstance(applied.get("metadata"), dict):
        identity = ("name", "namespace", "generateName")
        base["metadata"] = {k: copy.deepcopy(v) for k, v in applied["metadata"].items() if k in identity}
    merged = _merge_applied(base, config, schema)

    changed: set[Path] = set()
    _changed(base, merged, schema, (), changed, created_maps=False)
    conflicts = [(other, path) for other in others for path in sorted(other.paths & applied_paths) if path in changed]
    if conflicts and not force:
        raise _conflict_error(conflicts)
    for other, path in conflicts:
        other.paths.discard(path)

    owned_by_others = set().union(*(other.paths for other in others)) if others else set()
    still_set = owned_by_others | applied_paths
    for path in sorted(mine.paths - applied_paths, key=len):  # a list item before its fields
        if path in owned_by_others or any(len(p) > len(path) and p[: len(path)] == path for p in still_set):
            continue  # someone still owns it, or something in it
        if _value_at(merged, path) is _MISSING:
            continue
        _remove_path(merged, path)
        _prune_empty(merged, path, still_set)
    mine.paths = applied_paths
    mine.entry["apiVersion"] = api_version
    mine.entry["time"] = _now(now)
    return _store_managers(merged, managers)


def record_update(
    before: dict[str, Any] | None,
    after: dict[str, Any],
    manager: str,
    kind: str,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """managedFields after a create, update or non-apply patch by `manager` (an "Update"): it owns
    what it changed, no one keeps fields that are gone, and no conflict is possible."""
    schema = _root_schema(kind)
    old = _without_reset_fields(before) if before is not None else {}
    new = _without_reset_fields(after)
    changed: set[Path] = set()
    _changed(old, new, schema, (), changed, created_maps=True)
    present: set[Path] = set()
    _fields(new, schema, (), present)
    # managedFields the request itself changed are taken as given (kubectl rewrites them so when
    # it moves an object from client-side to server-side apply), as upstream takes them
    given = (after.get("metadata") or {}).get("managedFields")
    if given is not None and given != ((before or {}).get("metadata") or {}).get("managedFields"):
        managers = _managers(after)
    else:
        managers = _managers(before)
    api_version = after.get("apiVersion", "")
    mine = next((m for m in managers if m.identity == (manager or "unknown", "Update", "")), None)
    if mine is None:
        mine = _Manager({"manager": manager or "unknown", "operation": "Update", "apiVersion": api_version}, set())
        managers.append(mine)
    for other in managers:
        if other is not mine:
            other.paths -= changed
        other.paths = {p for p in other.paths if _value_at(new, p) is not _MISSING}
    mine.paths |= {p for p in changed if _value_at(new, p) is not _MISSING}
    if changed:
        mine.entry["apiVersion"] = api_version
        mine.entry["time"] = _now(now)
    return _store_managers(copy.deepcopy(after), managers)
