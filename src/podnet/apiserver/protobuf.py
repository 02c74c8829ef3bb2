"""Request bodies in Kubernetes' protobuf encoding, turned into the JSON object they stand for.

kubectl's typed clients (`kubectl create configmap|deployment|role|…`, `run`, `expose`,
`auth can-i|whoami`, `create token`) send `application/vnd.kubernetes.protobuf`, and take no 415
for an answer. Such a body is the magic `k8s\\x00` then a runtime.Unknown: the object's apiVersion
and kind, and `raw`, the object's own protobuf message.

The wire format is parsed by the protobuf runtime against a FileDescriptorSet compiled from the
upstream generated.proto files (kubernetes.binpb, made by scripts/protobuf_descriptors.py, which
names the release). Turning the message into JSON is then done as kube-apiserver and kubectl's Go
code would, because that JSON is what the rest of the server (validation, admission, storage) has
always been given: a .proto file does not say which fields are Go pointers (present even when
zero: `replicas: 0`) or `omitempty` (zero left out), nor which structs are embedded (their fields
flattened into the parent, as Volume's VolumeSource), so that shape is read from the release's
types.go files into kubernetes_go_fields.json by the same script. Empty non-pointer structs stay
(`status: {}`, `creationTimestamp: null`), as Go's encoding/json writes them; the types with their
own JSON form are converted here (Time, MicroTime, Duration, IntOrString, Quantity, RawExtension,
FieldsV1 and the `[]string` types protobuf wraps as `items`).
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
from importlib import resources
from typing import Any, Callable

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
_UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"
_OMIT = object()  # a field Go's encoding/json leaves out


@functools.cache
def _tables() -> tuple[descriptor_pool.DescriptorPool, dict[str, dict[str, list[str]]], frozenset[str]]:
    """The descriptor pool and the Go shapes, loaded on the first protobuf body."""
    here = resources.files("podnet.apiserver")
    files = descriptor_pb2.FileDescriptorSet.FromString((here / "kubernetes.binpb").read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:  # protoc --include_imports writes them dependencies first
        pool.Add(file)
    shapes = json.loads((here / "kubernetes_go_fields.json").read_text())
    return pool, shapes["messages"], frozenset(shapes["lists"])


def decode(raw: bytes) -> dict[str, Any]:
    """The JSON object a `k8s\\x00`-enveloped protobuf body stands for; ValueError if it is none."""
    if not raw.startswith(MAGIC):
        raise ValueError("the protobuf body does not start with the Kubernetes magic number k8s\\x00")
    envelope = _parse(_UNKNOWN, raw[len(MAGIC):])
    if envelope.contentEncoding:
        raise ValueError(f"protobuf bodies with contentEncoding {envelope.contentEncoding!r} are not supported")
    api_version, kind = envelope.typeMeta.apiVersion, envelope.typeMeta.kind
    if not api_version or not kind:
        raise ValueError("the protobuf body names no apiVersion and kind")
    name = message_name(api_version, kind)
    obj = _to_json(_parse(name, envelope.raw), name)
    return {"apiVersion": api_version, "kind": kind, **obj}


# API group -> the k8s.io/api package its protobuf messages are in (scripts/protobuf_descriptors.py
# compiles these)
PACKAGES = {
    "": "core", "apps": "apps", "batch": "batch", "autoscaling": "autoscaling", "policy": "policy",
    "networking.k8s.io": "networking", "discovery.k8s.io": "discovery", "events.k8s.io": "events",
    "rbac.authorization.k8s.io": "rbac", "authorization.k8s.io": "authorization",
    "authentication.k8s.io": "authentication",
}


def message_name(api_version: str, kind: str) -> str:
    """The protobuf message of a kind: k8s.io.api.<package>.<version>.<Kind>, or meta/v1's for
    the options every group version carries (DeleteOptions)."""
    pool = _tables()[0]
    group, _, version = api_version.rpartition("/")
    candidates = [f"{_META}.{kind}"]
    if group in PACKAGES:
        candidates.insert(0, f"k8s.io.api.{PACKAGES[group]}.{version}.{kind}")
    elif group != "meta.k8s.io":
        candidates = []
    for candidate in candidates:
        try:
            pool.FindMessageTypeByName(candidate)
        except KeyError:
            continue
        return candidate
    raise ValueError(f"podnet cannot decode protobuf for {kind} in {api_version} (send it as JSON)")


def message_class(name: str) -> type[Message]:
    """The protobuf class of a message by its full name (k8s.io.api.core.v1.Pod)."""
    return message_factory.GetMessageClass(_tables()[0].FindMessageTypeByName(name))


def _parse(name: str, data: bytes) -> Message:
    message = message_class(name)()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise ValueError(f"the protobuf body is not a valid {message.DESCRIPTOR.name}: {exc}") from None
    return message


# -- Go's encoding/json, field by field -------------------------------------------------------------

def _to_json(message: Message, name: str) -> Any:
    special = _SPECIAL.get(name)
    if special is not None:
        return special(message)
    _, shapes, lists = _tables()
    if name in lists:
        return list(message.items)
    shape = shapes.get(name)
    if shape is None:
        raise ValueError(f"podnet has no JSON form for the protobuf message {name}")
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        json_name, flags = shape.get(str(field.number), (None, ""))
        if json_name is None:
            raise ValueError(f"podnet has no JSON name for field {field.name} of {name}")
        value = _field(message, field, flags)
        if value is _OMIT:
            continue
        if "e" in flags:  # embedded struct: its fields are the parent's
            if value is not None:
                out.update(value)
        else:
            out[json_name] = value
    return out


def _field(message: Message, field: FieldDescriptor, flags: str) -> Any:
    pointer, omitempty = "p" in flags, "o" in flags
    nil = _OMIT if omitempty else None
    if field.is_repeated:  # slices and maps: nil when nothing was sent
        values = getattr(message, field.name)
        if not values:
            return nil
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            return {key: _value(values[key], value_field) for key in sorted(values)}
        return [_value(item, field) for item in values]
    present = message.HasField(field.name)
    if pointer and not present:
        return nil
    value = getattr(message, field.name)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type.full_name in _tables()[2] and not value.items:
            return nil  # a `[]string` type: a slice, not a struct
        return _value(value, field)  # a struct: encoding/json writes it even when empty
    if field.type == FieldDescriptor.TYPE_BYTES and not present:
        return nil
    if not pointer and omitempty and not value:
        return _OMIT
    return _value(value, field)


def _value(value: Any, field: FieldDescriptor) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return _to_json(value, field.message_type.full_name)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


# -- the types with their own JSON form ------------------------------------------------------------

def _time(message: Message) -> str | None:
    """metav1.Time: whole seconds (its protobuf Unmarshal drops the nanoseconds), null when zero."""
    if not message.ListFields():
        return None
    return _utc(message.seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(message: Message) -> str | None:
    if not message.ListFields():
        return None
    return _utc(message.seconds).strftime("%Y-%m-%dT%H:%M:%S") + f".{message.nanos // 1000:06d}Z"


def _utc(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


def go_duration(nanoseconds: int) -> str:
    """Go's time.Duration.String: "1h0m0s", "1.5s", "300ms", "0s"."""
    if nanoseconds == 0:
        return "0s"
    sign, value = ("-" if nanoseconds < 0 else ""), abs(nanoseconds)
    if value < 1_000_000_000:
        for scale, unit in ((1, "ns"), (1_000, "µs"), (1_000_000, "ms")):
            if value < scale * 1000:
                return sign + _decimal(value, scale) + unit
    seconds, fraction = divmod(value, 1_000_000_000)
    text = _decimal(seconds % 60 * 1_000_000_000 + fraction, 1_000_000_000) + "s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def _decimal(value: int, scale: int) -> str:
    whole, fraction = divmod(value, scale)
    if not fraction:
        return str(whole)
    digits = str(fraction).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def _int_or_string(message: Message) -> int | str:
    return message.strVal if message.type == 1 else message.intVal


def _quantity(message: Message) -> str:
    return message.string or "0"


def _embedded_json(message: Message) -> Any:
    """RawExtension and FieldsV1: JSON carried as bytes (null when absent)."""
    raw = message.raw if message.DESCRIPTOR.name == "RawExtension" else message.Raw
    if not raw:
        return None
    if raw.startswith(MAGIC):
        return decode(raw)
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError(f"an embedded {message.DESCRIPTOR.name} holds neither JSON nor a Kubernetes protobuf object") from None


_SPECIAL: dict[str, Callable[[Message], Any]] = {
    f"{_META}.Time": _time,
    f"{_META}.MicroTime": _micro_time,
    f"{_META}.Duration": lambda message: go_duration(message.duration),
    f"{_META}.FieldsV1": _embedded_json,
    "k8s.io.apimachinery.pkg.runtime.RawExtension": _embedded_json,
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": _int_or_string,
    "k8s.io.apimachinery.pkg.api.resource.Quantity": _quantity,
}

