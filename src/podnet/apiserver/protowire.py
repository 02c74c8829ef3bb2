"""Protobuf request bodies, as kubectl's typed clients send them: the access reviews.

kubectl 1.32 sends what it builds with its typed clientset as `application/vnd.kubernetes.protobuf`
(measured: `auth can-i` POSTs its SelfSubjectAccessReview that way, `--list` its
SelfSubjectRulesReview, and `create namespace|deployment|configmap` their objects), with
`Accept: application/vnd.kubernetes.protobuf,application/json`, so the answer may be JSON but
the body has to be read. A 415 makes it fail, not fall back.

The body is k8s.io/apimachinery's envelope: the bytes "k8s\\0", then a runtime.Unknown message
(typeMeta = 1 {apiVersion = 1, kind = 2}, raw = 2, contentEncoding = 3, contentType = 4) whose
`raw` is the object's own message. This module reads the protobuf wire format (varints and
length-delimited fields are all these messages use) and turns the authorization.k8s.io/v1
review messages into the JSON shape the rest of the API server works with. The field numbers
are those of k8s.io/api/authorization/v1/generated.proto; fields not listed are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def is_protobuf(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == CONTENT_TYPE


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data):
            raise ValueError("truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def fields(data: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) of one message: ints for varints, bytes for length-delimited fields."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, position = _varint(data, position)
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise ValueError("truncated field")
            value, position = data[position:position + length], position + length
        elif wire_type == _FIXED64:
            value, position = data[position:position + 8], position + 8
        elif wire_type == _FIXED32:
            value, position = data[position:position + 4], position + 4
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        yield number, value


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else ""


def envelope(body: bytes) -> tuple[str, str, bytes]:
    """(apiVersion, kind, the object's message) of a protobuf request body; ValueError if it is none."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf body (no k8s\\0 prefix)")
    api_version = kind = ""
    raw = b""
    for number, value in fields(body[len(MAGIC):]):
        if number == 1:
            for meta_number, meta_value in fields(value):
                if meta_number == 1:
                    api_version = _text(meta_value)
                elif meta_number == 2:
                    kind = _text(meta_value)
        elif number == 2:
            raw = value
    return api_version, kind, raw


def _strings_message(data: bytes, names: dict[int, str]) -> dict[str, str]:
    """A message of string fields, keeping those set to something (as JSON omits empty ones)."""
    out = {}
    for number, value in fields(data):
        if number in names and _text(value):
            out[names[number]] = _text(value)
    return out


_OBJECT_META = {1: "name", 2: "generateName", 3: "namespace"}
_RESOURCE_ATTRIBUTES = {1: "namespace", 2: "verb", 3: "group", 4: "version", 5: "resource", 6: "subresource",
                        7: "name"}
_NON_RESOURCE_ATTRIBUTES = {1: "path", 2: "verb"}


def _access_review_spec(data: bytes) -> dict[str, Any]:
    """(Self|Local)SubjectAccessReviewSpec: attributes = 1|2; SubjectAccessReview's user = 3,
    groups = 4, extra = 5 (map entries: key = 1, value = ExtraValue {items = 1}), uid = 6."""
    spec: dict[str, Any] = {}
    for number, value in fields(data):
        if number == 1:
            spec["resourceAttributes"] = _strings_message(value, _RESOURCE_ATTRIBUTES)
        elif number == 2:
            spec["nonResourceAttributes"] = _strings_message(value, _NON_RESOURCE_ATTRIBUTES)
        elif number == 3:
            spec["user"] = _text(value)
        elif number == 4:
            spec.setdefault("groups", []).append(_text(value))
        elif number == 5:
            key, items = "", []
            for entry_number, entry_value in fields(value):
                if entry_number == 1:
                    key = _text(entry_value)
                elif entry_number == 2:
                    items = [_text(item) for item_number, item in fields(entry_value) if item_number == 1]
            spec.setdefault("extra", {})[key] = items
        elif number == 6:
            spec["uid"] = _text(value)
    return spec


_REVIEW_KINDS = frozenset({"SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview",
                           "SelfSubjectRulesReview"})


def decode_review(body: bytes) -> dict[str, Any]:
    """An authorization.k8s.io review sent as protobuf, as the JSON object it stands for
    (apiVersion, kind, metadata, spec); ValueError for anything else."""
    api_version, kind, raw = envelope(body)
    if kind not in _REVIEW_KINDS:
        raise ValueError(f"{api_version} {kind} is not an access review")
    review: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {}, "spec": {}}
    for number, value in fields(raw):
        if number == 1:
            review["metadata"] = _strings_message(value, _OBJECT_META)
        elif number == 2:
            if kind == "SelfSubjectRulesReview":
                review["spec"] = _strings_message(value, {1: "namespace"})
            else:
                review["spec"] = _access_review_spec(value)
    return review
