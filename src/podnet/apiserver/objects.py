"""Writes: what a create, update, patch or delete sends to the supervisor, which admits it as
`podnet apply` / `podnet delete` would (the same validation, the same messages) and recomputes
the cluster.

The supervisor keeps each object as applied (its input); reads serve the computed object (with
status, defaults, the API server's metadata). An update or a patch changes the input, so what a
user applied is what the next `kubectl apply` compares against. Objects podnet computes from
others (a Deployment's pods, EndpointSlices, Events) are not inputs: a write to one is refused
with the object to change instead, as a user would be told by the controller that owns it.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from podnet.apiserver.errors import ApiError, invalid
from podnet.apiserver.registry import Resource

# metadata the API server owns: never taken from a write
SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "selfLink")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # kube's utilrand: no vowels, no confusable digits


def generated_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_GENERATE_ALPHABET) for _ in range(5))


def as_input(resource: Resource, body: dict[str, Any], namespace: str, name: str | None = None) -> dict[str, Any]:
    """The body a write sends as the object's input: the API server's own metadata dropped,
    status dropped (podnet computes it), apiVersion and kind checked against the URL, the
    namespace filled in from it."""
    if not isinstance(body, dict):
        raise ApiError(400, "the body of the request must be a JSON or YAML object")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind and kind != resource.kind:
        raise ApiError(400, f"the kind of the object ({kind}) does not match the resource ({resource.plural})")
    if api_version and api_version != resource.group_version and not (
            resource.info is not None and api_version in resource.info.legacy_versions):
        raise ApiError(400, f"the API version of the object ({api_version}) does not match the resource's "
                            f"({resource.group_version})")
    metadata = dict(body.get("metadata") or {})
    for field in SERVER_METADATA:
        metadata.pop(field, None)
    if name is not None and metadata.get("name") and metadata["name"] != name:
        raise ApiError(400, f'the name of the object ({metadata["name"]}) does not match the name on the URL ({name})')
    if name is not None:
        metadata["name"] = name
    if not metadata.get("name"):
        if metadata.get("generateName"):
            metadata["name"] = generated_name(metadata["generateName"])
        else:
            raise invalid(resource.kind, resource.group, "", "metadata.name: Required value: name or generateName is required",
                          [{"reason": "FieldValueRequired", "message": "Required value: name or generateName is required",
                            "field": "metadata.name"}])
    if resource.namespaced:
        if metadata.get("namespace") and namespace and metadata["namespace"] != namespace:
            raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
        metadata["namespace"] = metadata.get("namespace") or namespace or "default"
    else:
        metadata.pop("namespace", None)
    written = {k: v for k, v in body.items() if k not in ("status", "metadata")}
    written.update({"apiVersion": resource.group_version, "kind": resource.kind, "metadata": metadata})
    return written


def documents(bodies: list[dict[str, Any]]) -> str:
    """One List text, as the supervisor's apply and delete take it."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": bodies})


def admission_error(resource: Resource, name: str, message: str) -> ApiError:
    """A refusal by the supervisor's admission as kube-apiserver's 422 Invalid: one cause per
    problem (field, message, reason), the message listing them, so kubectl prints each field
    with podnet's words. Each line of podnet's message is `request:N: Kind ns/name: field: what`
    (`request:N` is the position in the List the API server sent: dropped)."""
    causes = []
    for line in message.splitlines():
        text = line.split(":", 2)[-1].strip() if line.startswith("request:") else line.strip()
        about, _, problem = text.partition(": ")
        if problem and " " in about and ": " in problem:  # "Kind ns/name: field: what"
            text = problem
        field, _, what = text.partition(": ")
        if not what or " " in field:
            causes.append({"reason": "FieldValueInvalid", "message": text, "field": ""})
            continue
        reason = ("FieldValueRequired" if what.startswith("Required value") else
                  "FieldValueNotSupported" if what.startswith("Unsupported value") else
                  "FieldValueDuplicate" if what.startswith("Duplicate value") else
                  "FieldValueForbidden" if what.startswith("Forbidden") else "FieldValueInvalid")
        causes.append({"reason": reason, "message": what, "field": field})
    listed = [f"{c['field']}: {c['message']}" if c["field"] else c["message"] for c in causes]
    summary = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
    return invalid(resource.kind, resource.group, name, summary, causes)


def stale(current: dict[str, Any], sent: dict[str, Any]) -> bool:
    """Whether a write names a resourceVersion other than the object's (optimistic concurrency)."""
    wanted = (sent.get("metadata") or {}).get("resourceVersion")
    return bool(wanted) and str(wanted) != str((current.get("metadata") or {}).get("resourceVersion"))

