"""The OpenAPI documents (podnet.apiserver.openapi): what kubectl reads in them, and how they are
served (hash names, gzip, caching)."""

from __future__ import annotations

import gzip
import hashlib
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from podnet.api.kinds import KINDS
from podnet.api.schema import is_own_schema_kind
from podnet.apiserver import openapi
from tests.kubectl_stub import RunningStub


def _group_version_path(api_version: str) -> str:
    return f"apis/{api_version}" if "/" in api_version else f"api/{api_version}"


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _patch_operations(document: dict, kind: str) -> list[dict]:
    return [
        path["patch"]
        for path in document["paths"].values()
        if "patch" in path and path["patch"]["x-kubernetes-group-version-kind"]["kind"] == kind
    ]


def test_every_kind_podnet_serves_has_its_schema_and_paths_in_its_group_versions_document():
    for info in KINDS:
        document = openapi.v3_document(_group_version_path(info.api_version))
        assert document is not None, info.kind
        group, _, version = info.api_version.rpartition("/")
        components = [
            name for name, schema in document["components"]["schemas"].items()
            if {"group": group, "version": version, "kind": info.kind} in schema.get("x-kubernetes-group-version-kind", [])
        ]
        assert len(components) == 1, info.kind
        assert _patch_operations(document, info.kind), info.kind


def test_no_kind_outside_kinds_is_published():
    served = {(info.api_version.rpartition("/")[0], info.kind) for info in KINDS}
    served |= {(group, kind + "List") for group, kind in served}
    for path in openapi.v3_paths():
        for operation in _walk(openapi.v3_document(path)["paths"]):
            gvk = operation.get("x-kubernetes-group-version-kind")
            if isinstance(gvk, dict):
                assert (gvk["group"], gvk["kind"]) in served


def test_every_patch_operation_declares_field_validation_inline_so_kubectl_sends_strict():
    for info in KINDS:
        document = openapi.v3_document(_group_version_path(info.api_version))
        for operation in _patch_operations(document, info.kind):
            assert "fieldValidation" in [p.get("name") for p in operation["parameters"]]


def test_strategic_merge_patch_is_offered_for_kubernetes_kinds_and_not_for_podnets_crd_kinds():
    for info in KINDS:
        document = openapi.v3_document(_group_version_path(info.api_version))
        [operation] = _patch_operations(document, info.kind)
        offered = set(operation["requestBody"]["content"])
        assert ("application/strategic-merge-patch+json" in offered) is not is_own_schema_kind(info.kind)
        assert {"application/merge-patch+json", "application/json-patch+json", "application/apply-patch+yaml"} <= offered


def test_schemas_are_openapi_not_json_schema_and_every_reference_resolves():
    for path in openapi.v3_paths():
        document = openapi.v3_document(path)
        components = document["components"]["schemas"]
        for node in _walk(document):
            assert not isinstance(node.get("type"), list), node.get("type")
            assert node.get("additionalProperties") is not False
            reference = node.get("$ref")
            if isinstance(reference, str):
                assert reference.removeprefix("#/components/schemas/") in components, reference
                assert set(node) == {"$ref"}, "a reference with siblings must be wrapped in allOf"
    pod = openapi.v3_document("api/v1")["components"]["schemas"]["io.k8s.api.core.v1.Pod"]
    assert "enum" not in pod["properties"]["apiVersion"]
    int_or_string = openapi.v3_document("api/v1")["components"]["schemas"]["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
    assert (int_or_string["type"], int_or_string["format"]) == ("string", "int-or-string")


def test_patch_extensions_kubectl_builds_its_patch_from_are_on_the_fields():
    schemas = openapi.v3_document("api/v1")["components"]["schemas"]
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert (containers["x-kubernetes-patch-strategy"], containers["x-kubernetes-patch-merge-key"]) == ("merge", "name")
    assert containers["x-kubernetes-list-type"] == "map" and containers["x-kubernetes-list-map-keys"] == ["name"]
    volumes = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"]
    assert volumes["x-kubernetes-patch-strategy"] == "merge,retainKeys"


def test_v2_has_the_same_kinds_with_v2_references():
    document = openapi.v2_document()
    assert document["swagger"] == "2.0"
    for info in KINDS:
        group, _, version = info.api_version.rpartition("/")
        assert any(
            {"group": group, "version": version, "kind": info.kind} in schema.get("x-kubernetes-group-version-kind", [])
            for schema in document["definitions"].values()
        ), info.kind
    for node in _walk(document):
        reference = node.get("$ref")
        if isinstance(reference, str):
            assert reference.removeprefix("#/definitions/") in document["definitions"]
    patches = [p["patch"] for p in document["paths"].values() if "patch" in p]
    assert all("fieldValidation" in [q["name"] for q in op["parameters"]] for op in patches)


def test_the_index_names_each_document_by_the_hash_of_what_is_served():
    index = openapi.v3_index()["paths"]
    assert set(index) == set(openapi.v3_paths())
    for path, entry in index.items():
        rendered = openapi.rendered_v3(path)
        assert entry["serverRelativeURL"] == f"/openapi/v3/{path}?hash={hashlib.sha512(rendered.body).hexdigest().upper()}"
        assert json.loads(gzip.decompress(rendered.gzipped)) == rendered.document
    hashes = {entry["serverRelativeURL"].split("hash=")[1] for entry in index.values()}
    assert len(hashes) == len(index)  # different documents, different names


def _get(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_served_gzip_when_asked_cached_for_good_by_hash_and_redirected_when_stale(tmp_path):
    with RunningStub(tmp_path) as running:
        base = f"http://127.0.0.1:{running.stub.port}"
        rendered = openapi.rendered_v3("apis/apps/v1")
        current = f"{base}/openapi/v3/apis/apps/v1?hash={rendered.hash}"

        status, headers, body = _get(current, {"Accept-Encoding": "gzip", "Accept": "application/json"})
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(body)) == rendered.document
        assert headers["Cache-Control"] == "public, immutable, max-age=31536000"

        status, headers, body = _get(f"{base}/openapi/v3/apis/apps/v1", {"Accept": "application/json"})
        assert status == 200 and "Content-Encoding" not in headers and json.loads(body) == rendered.document
        status, _, _ = _get(f"{base}/openapi/v3/apis/apps/v1", {"If-None-Match": headers["ETag"]})
        assert status == 304

        status, headers, _ = _get(f"{base}/openapi/v3/apis/apps/v1?hash=STALE", {})
        assert status == 301 and headers["Location"].endswith(f"/openapi/v3/apis/apps/v1?hash={rendered.hash}")

        status, headers, body = _get(f"{base}/openapi/v2", {"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
        assert status == 200 and body == openapi.rendered_v2_protobuf().body
        assert headers["Content-Type"] == "application/octet-stream"
        status, _, _ = _get(f"{base}/openapi/v2", {"Accept": "application/xml"})
        assert status == 406


@pytest.mark.parametrize("accept, acceptable", [
    ("", True), ("application/json", True), ("application/json, */*", True),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", False),
])
def test_accepts_json(accept, acceptable):
    assert openapi.accepts_json(accept) is acceptable


def _fields(data: bytes) -> list[tuple[int, int, object]]:
    """A protobuf message's (field, wire type, value) triples, as any protobuf reader sees them."""
    out, i = [], 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(data):
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            out.append((field, wire, varint()))
        elif wire == 1:
            out.append((field, wire, data[i : i + 8]))
            i += 8
        elif wire == 2:
            size = varint()
            out.append((field, wire, data[i : i + size]))
            i += size
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


def _by_field(data: bytes) -> dict[int, list]:
    out: dict[int, list] = {}
    for field, _, value in _fields(data):
        out.setdefault(field, []).append(value)
    return out


def test_v2_protobuf_is_gnostics_document_with_the_same_paths_and_definitions():
    rendered = openapi.rendered_v2_protobuf()
    document = _by_field(rendered.body)  # openapi.v2.Document
    assert document[1] == [b"2.0"]
    named_paths = [_by_field(named) for named in _by_field(document[8][0])[2]]  # Paths.path: NamedPathItem
    assert [p[1][0].decode() for p in named_paths] == list(openapi.v2_document()["paths"])
    named_schemas = {  # Definitions.additional_properties: NamedSchema {name = 1; value = 2}
        _by_field(named)[1][0].decode(): _by_field(named)[2][0] for named in _by_field(document[9][0])[1]
    }
    assert list(named_schemas) == list(openapi.v2_document()["definitions"])
    pod = _by_field(named_schemas["io.k8s.api.core.v1.Pod"])
    extensions = {_by_field(e)[1][0]: _by_field(e)[2][0] for e in pod[31]}  # vendor_extension: NamedAny
    gvk_yaml = _by_field(extensions[b"x-kubernetes-group-version-kind"])[2][0]  # Any.yaml
    assert yaml.safe_load(gvk_yaml) == [{"group": "", "kind": "Pod", "version": "v1"}]
    assert rendered.hash == openapi.rendered_v2().hash  # upstream names both forms by the JSON's hash
