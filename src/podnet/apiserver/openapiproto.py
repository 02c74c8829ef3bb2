"""The OpenAPI v2 document in the protobuf encoding client-go asks /openapi/v2 for.

client-go requests `application/com.github.proto-openapi.spec.v2@v1.0+protobuf` and decodes
gnostic's `openapi.v2.Document` (github.com/google/gnostic, openapiv2/OpenAPIv2.proto); kubectl
needs it for `explain --output plaintext-openapiv2` and reads patch types from it when v3 says
nothing. Only the messages and fields podnet's v2 document uses are written here, by their field
numbers in that .proto; a protobuf runtime would be a dependency for a few dozen lines of
encoding. Vendor extensions (x-kubernetes-...) and the values of `enum` are carried as YAML text
in gnostic's `Any.yaml`, as kube-openapi writes them.
"""

from __future__ import annotations

import struct
from typing import Any

import yaml

# --- the wire format -------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64 as two's complement, ten bytes
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _string(field: int, text: str | None) -> bytes:
    return _bytes(field, text.encode()) if text else b""


def _strings(field: int, texts: list[str] | None) -> bytes:
    return b"".join(_bytes(field, text.encode()) for text in texts or ())


def _bool(field: int, value: bool | None) -> bytes:
    return _key(field, 0) + b"\x01" if value else b""


def _int(field: int, value: int | None) -> bytes:
    return _key(field, 0) + _varint(int(value)) if value else b""


def _double(field: int, value: float | None) -> bytes:
    return _key(field, 1) + struct.pack("<d", float(value)) if value else b""


def _message(field: int, body: bytes, *, always: bool = False) -> bytes:
    return _bytes(field, body) if body or always else b""


# --- openapi.v2 messages ---------------------------------------------------------------------


def _yaml_any(value: Any) -> bytes:
    """gnostic's Any: the value as YAML text (field 2)."""
    return _string(2, yaml.safe_dump(value, default_flow_style=False, sort_keys=True))


def _extensions(field: int, node: dict[str, Any]) -> bytes:
    """repeated NamedAny {name = 1; Any value = 2}."""
    return b"".join(
        _message(field, _string(1, name) + _message(2, _yaml_any(value), always=True))
        for name, value in node.items()
        if name.startswith("x-")
    )


def schema(node: dict[str, Any]) -> bytes:
    """openapi.v2.Schema."""
    out = [
        _string(1, node.get("$ref")),
        _string(2, node.get("format")),
        _string(3, node.get("title")),
        _string(4, node.get("description")),
    ]
    if "default" in node:
        out.append(_message(5, _yaml_any(node["default"]), always=True))
    out += [
        _double(6, node.get("multipleOf")),
        _double(7, node.get("maximum")),
        _bool(8, node.get("exclusiveMaximum")),
        _double(9, node.get("minimum")),
        _bool(10, node.get("exclusiveMinimum")),
        _int(11, node.get("maxLength")),
        _int(12, node.get("minLength")),
        _string(13, node.get("pattern")),
        _int(14, node.get("maxItems")),
        _int(15, node.get("minItems")),
        _bool(16, node.get("uniqueItems")),
        _int(17, node.get("maxProperties")),
        _int(18, node.get("minProperties")),
        _strings(19, node.get("required")),
        b"".join(_message(20, _yaml_any(value), always=True) for value in node.get("enum", ())),
    ]
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):  # AdditionalPropertiesItem {oneof: Schema schema = 1; bool boolean = 2}
        out.append(_message(21, _message(1, schema(extra), always=True), always=True))
    elif isinstance(extra, bool):
        out.append(_message(21, _key(2, 0) + _varint(int(extra)), always=True))
    kind = node.get("type")
    if kind:  # TypeItem {repeated string value = 1}
        out.append(_message(22, _strings(1, kind if isinstance(kind, list) else [kind]), always=True))
    if isinstance(node.get("items"), dict):  # ItemsItem {repeated Schema schema = 1}
        out.append(_message(23, _message(1, schema(node["items"]), always=True), always=True))
    out.append(b"".join(_message(24, schema(part), always=True) for part in node.get("allOf", ())))
    if isinstance(node.get("properties"), dict):  # Properties {repeated NamedSchema additional_properties = 1}
        named = b"".join(
            _message(1, _string(1, name) + _message(2, schema(value), always=True), always=True)
            for name, value in node["properties"].items()
        )
        out.append(_message(25, named, always=True))
    out += [_bool(27, node.get("readOnly")), _extensions(31, node)]
    return b"".join(out)


def _parameter(node: dict[str, Any]) -> bytes:
    """ParametersItem {Parameter parameter = 1}; Parameter {BodyParameter = 1; NonBodyParameter = 2}."""
    if node["in"] == "body":
        body = (
            _string(1, node.get("description")) + _string(2, node["name"]) + _string(3, "body")
            + _bool(4, node.get("required")) + _message(5, schema(node.get("schema", {})), always=True)
        )
        parameter = _message(1, body, always=True)
    else:
        common = _bool(1, node.get("required")) + _string(2, node["in"]) + _string(3, node.get("description"))
        common += _string(4, node["name"])
        if node["in"] == "query":  # QueryParameterSubSchema: type 6, unique_items 20, extensions 23
            sub = common + _string(6, node.get("type")) + _bool(20, node.get("uniqueItems")) + _extensions(23, node)
            parameter = _message(2, _message(3, sub, always=True), always=True)
        else:  # PathParameterSubSchema: type 5, unique_items 19, extensions 22
            sub = common + _string(5, node.get("type")) + _bool(19, node.get("uniqueItems")) + _extensions(22, node)
            parameter = _message(2, _message(4, sub, always=True), always=True)
    return _message(1, parameter, always=True)


def _response(code: str, node: dict[str, Any]) -> bytes:
    """NamedResponseValue {name = 1; ResponseValue {Response response = 1} value = 2}."""
    response = _string(1, node.get("description"))
    if "schema" in node:  # SchemaItem {Schema schema = 1}
        response += _message(2, _message(1, schema(node["schema"]), always=True), always=True)
    return _message(1, _string(1, code) + _message(2, _message(1, response, always=True), always=True), always=True)


def _operation(node: dict[str, Any]) -> bytes:
    responses = b"".join(_response(code, value) for code, value in node.get("responses", {}).items())
    return b"".join(
        [
            _strings(1, node.get("tags")),
            _string(2, node.get("summary")),
            _string(3, node.get("description")),
            _string(5, node.get("operationId")),
            _strings(6, node.get("produces")),
            _strings(7, node.get("consumes")),
            b"".join(_message(8, _parameter(p), always=True) for p in node.get("parameters", ())),
            _message(9, responses, always=True),
            _strings(10, node.get("schemes")),
            _extensions(13, node),
        ]
    )


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _path_item(node: dict[str, Any]) -> bytes:
    out = [_message(field, _operation(node[method]), always=True) for method, field in _METHODS.items() if method in node]
    out.append(b"".join(_message(9, _parameter(p), always=True) for p in node.get("parameters", ())))
    return b"".join(out)


def document(swagger: dict[str, Any]) -> bytes:
    """openapi.v2.Document for a Swagger 2.0 document as podnet builds it (openapi.v2_document)."""
    info = swagger.get("info", {})
    paths = b"".join(
        _message(2, _string(1, path) + _message(2, _path_item(item), always=True), always=True)
        for path, item in swagger.get("paths", {}).items()
    )
    definitions = b"".join(
        _message(1, _string(1, name) + _message(2, schema(value), always=True), always=True)
        for name, value in swagger.get("definitions", {}).items()
    )
    security = b"".join(
        _message(12, b"".join(
            _message(1, _string(1, name) + _message(2, _strings(1, scopes), always=True), always=True)
            for name, scopes in requirement.items()
        ), always=True)
        for requirement in swagger.get("security", ())
    )
    schemes = b""
    for name, scheme in swagger.get("securityDefinitions", {}).items():
        if scheme.get("type") == "apiKey":  # SecurityDefinitionsItem {ApiKeySecurity api_key_security = 2}
            key = _string(1, "apiKey") + _string(2, scheme.get("name")) + _string(3, scheme.get("in"))
            key += _string(4, scheme.get("description"))
            item = _message(2, key, always=True)
            schemes += _message(1, _string(1, name) + _message(2, item, always=True), always=True)
    return b"".join(
        [
            _string(1, swagger.get("swagger")),
            _message(2, _string(1, info.get("title")) + _string(2, info.get("version"))),
            _message(8, paths, always=True),
            _message(9, definitions, always=True),
            security,
            _message(13, schemes),
        ]
    )
