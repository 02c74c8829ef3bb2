"""Manifests in: every input form, and every bad input refused with FILE:LINE: Kind ns/name: field: what."""

import json
import textwrap

import pytest

from podnet.api.store import load_store
from podnet.errors import InvalidInput
from tests.conftest import load_yaml

POD = """apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: c
    image: nginx
"""


def test_multi_document_yaml_file(tmp_path):
    (tmp_path / "a.yaml").write_text(POD.format(name="a") + "---\n" + POD.format(name="b") + "---\n")
    store = load_store([str(tmp_path / "a.yaml")])
    assert [o.name for o in store.of_kind("Pod")] == ["a", "b"]


def test_directory_is_read_recursively_yaml_yml_json_only(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "a.yaml").write_text(POD.format(name="a"))
    (tmp_path / "sub" / "b.yml").write_text(POD.format(name="b"))
    (tmp_path / "sub" / "deeper" / "c.json").write_text(json.dumps(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}))
    (tmp_path / "notes.txt").write_text("not a manifest")
    store = load_store([str(tmp_path)])
    assert [o.name for o in store.of_kind("Pod")] == ["a", "b", "c"]


def test_several_f_and_stdin(tmp_path, stdin_text):
    (tmp_path / "a.yaml").write_text(POD.format(name="a"))
    stdin_text(POD.format(name="b"))
    store = load_store([str(tmp_path / "a.yaml"), "-"])
    assert [o.name for o in store.of_kind("Pod")] == ["a", "b"]


def test_kind_list_as_kubectl_prints_it():
    store = load_yaml("""
    apiVersion: v1
    kind: List
    metadata: {resourceVersion: ""}
    items:
    - apiVersion: v1
      kind: Service
      metadata: {name: s, namespace: x, creationTimestamp: 2024-01-01T00:00:00Z}
      spec: {ports: [{port: 80}], selector: {app: a}}
    - apiVersion: v1
      kind: Pod
      metadata: {name: p, namespace: x}
      spec: {containers: [{name: c, image: nginx}]}
    """)
    assert {o.key for o in store.objects.values()} == {("Service", "x", "s"), ("Pod", "x", "p")}
    # timestamps stay strings, as the API's JSON has them
    assert store.get("Service", "x", "s").metadata["creationTimestamp"] == "2024-01-01T00:00:00Z"


def test_objects_without_namespace_land_in_default():
    store = load_yaml(POD.format(name="a"))
    assert store.get("Pod", "default", "a") is not None


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidInput) as info:
        load_yaml(text)
    return info.value.lines


@pytest.mark.parametrize("text, expected", [
    pytest.param("""
        apiVersion: v1
        kind: Service
        metadata:
          name: web
          namespace: shop
        spec:
          ports:
          - port: 80
            protocl: TCP
        """, "test.yaml:10: Service shop/web: spec.ports[0].protocl: unknown field", id="unknown-field-by-schema"),
    pytest.param("""
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec:
          ports:
          - port: eighty
        """, 'test.yaml:7: Service default/web: spec.ports[0].port: "eighty" is not of type "integer"', id="wrong-type-by-schema"),
    pytest.param("""
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec: {}
        """, "test.yaml:5: Pod default/p: spec.containers: Required value", id="required-field-by-schema"),
    pytest.param("""
        apiVersion: apps/v1beta1
        kind: Deployment
        metadata: {name: d}
        """, 'test.yaml:2: Deployment default/d: apiVersion: no matches for kind "Deployment" in version "apps/v1beta1"', id="removed-api-version"),
])
def test_bad_field_is_located(text, expected):
    lines = errors_of(text)
    assert any(l.startswith(expected) for l in lines), lines


def test_semantic_rule_is_located_too():
    lines = errors_of("""
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports:
      - port: 80
      - port: 81
    """)
    assert any(l.startswith("test.yaml:8: Service default/web: spec.ports[0].name: Required value") for l in lines), lines


def test_bad_yaml_names_the_line():
    loaded = load_files_from_text("a: [1, 2\nb: 3\n")
    assert loaded.problems and loaded.problems[0].startswith("x.yaml:") and "invalid YAML" in loaded.problems[0]


def load_files_from_text(text):
    from podnet.api.loader import LoadedFiles, _parse_text

    loaded = LoadedFiles()
    _parse_text("x.yaml", text, loaded)
    return loaded


def test_duplicate_object_names_the_first_definition():
    lines = errors_of(POD.format(name="a") + "---\n" + POD.format(name="a"))
    assert lines == ["test.yaml:13: Pod default/a: metadata.name: Duplicate value: default/a is already defined at test.yaml:1"]


def test_unknown_kind_warns_once_and_is_ignored():
    store = load_yaml("""
    apiVersion: v1
    kind: PersistentVolumeClaim
    metadata: {name: a}
    ---
    apiVersion: v1
    kind: PersistentVolumeClaim
    metadata: {name: b}
    """)
    assert store.objects == {}
    assert len(store.warnings) == 1 and "PersistentVolumeClaim" in store.warnings[0] and "2 objects" in store.warnings[0]


def test_extensions_v1beta1_ingress_is_converted_with_a_warning():
    store = load_yaml("""
    apiVersion: extensions/v1beta1
    kind: Ingress
    metadata: {name: old}
    spec:
      backend: {serviceName: default-http, servicePort: 80}
      rules:
      - http:
          paths:
          - path: /wear
            backend: {serviceName: wear-service, servicePort: 8080}
    """)
    ing = store.get("Ingress", "default", "old")
    assert ing.body["apiVersion"] == "networking.k8s.io/v1"
    assert ing.spec["defaultBackend"] == {"service": {"name": "default-http", "port": {"number": 80}}}
    path = ing.spec["rules"][0]["http"]["paths"][0]
    assert path["pathType"] == "ImplementationSpecific"
    assert path["backend"] == {"service": {"name": "wear-service", "port": {"number": 8080}}}
    assert any("deprecated" in w for w in store.warnings)


def test_every_problem_is_reported_and_nothing_is_admitted():
    lines = errors_of(POD.format(name="Bad_Name") + "---\n" + POD.format(name="ok") + "---\n" + textwrap.dedent("""
    apiVersion: v1
    kind: Service
    metadata: {name: s}
    spec: {ports: [{port: 70000}]}
    """))
    assert len(lines) >= 2
    assert any("Pod default/Bad_Name: metadata.name" in l for l in lines)
    assert any("Service default/s: spec.ports[0].port" in l for l in lines)


def test_generate_name_gets_a_stable_suffix():
    text = """
    apiVersion: v1
    kind: Pod
    metadata: {generateName: job-}
    spec: {containers: [{name: c, image: busybox}]}
    """
    [first] = load_yaml(text).of_kind("Pod")
    [again] = load_yaml(text).of_kind("Pod")
    assert first.name.startswith("job-") and len(first.name) == 9 and first.name == again.name
