"""The real kubectl against podnet's OpenAPI documents and patch code (a stub API server, plain
HTTP, tests/kubectl_stub.py): it parses the documents (`explain`), decides it may send
?fieldValidation=Strict, builds its strategic merge patch from the schemas' merge keys, and the
patch applied with podnet.apiserver.patch gives back the new manifest; server-side apply's
conflict reaches the user in upstream's words."""

from __future__ import annotations

import copy
import json
import os

import pytest
import yaml

from podnet.api.kinds import KINDS
from tests.kubectl_stub import KUBECTL, RunningStub

pytestmark = pytest.mark.skipif(not os.access(KUBECTL, os.X_OK), reason="kubectl is not installed")

SERVER_FIELDS = ("uid", "creationTimestamp", "resourceVersion", "managedFields", "annotations")

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80, name: http}, {containerPort: 443, name: https}]
        env: [{name: MODE, value: blue}, {name: LEVEL, value: "1"}]
      - name: sidecar
        image: busybox
        args: [sleep, "3600"]
      volumes: [{name: cache, emptyDir: {}}]
"""


def changed_deployment() -> str:
    """A container port removed, an env var changed, a label removed, the strategy switched
    (retainKeys drops rollingUpdate), a volume's source switched, a container added."""
    manifest = yaml.safe_load(DEPLOYMENT)
    manifest["metadata"]["labels"] = {"app": "web"}
    manifest["spec"]["strategy"] = {"type": "Recreate"}
    spec = manifest["spec"]["template"]["spec"]
    web = spec["containers"][0]
    web["ports"] = [{"containerPort": 80, "name": "http"}]
    web["env"] = [{"name": "MODE", "value": "green"}, {"name": "LEVEL", "value": "1"}]
    spec["containers"].insert(1, {"name": "metrics", "image": "prom/exporter"})
    spec["volumes"] = [{"name": "cache", "hostPath": {"path": "/var/cache"}}]
    return yaml.safe_dump(manifest)


def without_server_fields(obj: dict) -> dict:
    out = copy.deepcopy(obj)
    for name in SERVER_FIELDS:
        out["metadata"].pop(name, None)
    out["metadata"].pop("namespace", None)
    return out


@pytest.fixture
def running(tmp_path):
    with RunningStub(tmp_path) as stub:
        yield stub


def test_kubectl_explain_reads_the_v3_documents(running):
    out = running.kubectl("explain", "pod.spec.containers").stdout
    assert "KIND:       Pod" in out and "FIELD: containers <[]Container>" in out
    assert "imagePullPolicy\t<string>" in out
    deep = running.kubectl("explain", "deployment.spec.strategy.rollingUpdate.maxSurge").stdout
    # a reference to a string-typed schema is shown as that type (kubectl's plaintext template)
    assert "FIELD: maxSurge <string>" in deep and "IntOrString is a type that can hold an int32" in deep
    anp = running.kubectl("explain", "adminnetworkpolicy.spec").stdout
    assert "priority\t<integer> -required-" in anp
    assert any(r.path.startswith("/openapi/v3/apis/apps/v1") and "hash" in r.query for r in running.stub.requests)


def test_kubectl_reads_the_v2_document_in_protobuf(running):
    out = running.kubectl("explain", "deployment.spec.strategy", "--output=plaintext-openapiv2").stdout
    assert "RESOURCE: strategy <Object>" in out and "rollingUpdate\t<Object>" in out
    anp = running.kubectl("explain", "adminnetworkpolicies.spec", "--output=plaintext-openapiv2").stdout
    assert "priority\t<integer> -required-" in anp
    asked = [r for r in running.stub.requests if r.path == "/openapi/v2"]
    assert asked and all("protobuf" in r.headers["Accept"] for r in asked)


def test_kubectl_explains_every_kind_podnet_serves(running):
    for info in KINDS:
        group = info.api_version.rpartition("/")[0]
        out = running.kubectl("explain", f"{info.plural}.{group}" if group else info.plural).stdout
        assert f"KIND:       {info.kind}" in out, out
        assert "metadata\t<ObjectMeta>" in out, out


def test_kubectl_apply_twice_sends_a_strict_strategic_merge_patch_that_gives_the_new_manifest(running):
    running.kubectl("apply", "--validate=strict", "-f", "-", stdin=DEPLOYMENT)
    [create] = running.stub.seen("POST", "/deployments")
    assert create.query["fieldValidation"] == "Strict"

    changed = changed_deployment()
    out = running.kubectl("apply", "--validate=strict", "-f", "-", stdin=changed).stdout
    assert out.strip() == "deployment.apps/web configured"
    [patch] = running.stub.seen("PATCH", "/deployments/web")
    assert patch.query["fieldValidation"] == "Strict"
    assert patch.content_type == "application/strategic-merge-patch+json"
    body = json.loads(patch.body)
    # what kubectl built from the schemas' merge keys and strategies
    assert body["metadata"]["labels"] == {"tier": None}
    template = body["spec"]["template"]["spec"]
    assert template["$setElementOrder/containers"] == [{"name": "web"}, {"name": "metrics"}, {"name": "sidecar"}]
    web = next(c for c in template["containers"] if c["name"] == "web")
    assert {"$patch": "delete", "containerPort": 443} in web["ports"]
    assert web["env"] == [{"name": "MODE", "value": "green"}]
    assert "$retainKeys" in body["spec"]["strategy"]

    stored = running.stub.objects[("deployments", "default", "web")]
    assert without_server_fields(stored) == yaml.safe_load(changed)


def test_kubectl_apply_of_a_pod_removing_a_port_and_a_label(running):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "p", "gone": "soon"}},
           "spec": {"containers": [{"name": "c", "image": "agnhost", "ports": [{"containerPort": 8080}, {"containerPort": 9090}],
                                    "env": [{"name": "A", "value": "1"}]}]}}
    running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod))
    pod["metadata"]["labels"] = {"app": "p"}
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 9090}]
    pod["spec"]["containers"][0]["env"] = [{"name": "A", "value": "2"}]
    running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod))
    assert without_server_fields(running.stub.objects[("pods", "default", "p")]) == pod


def test_kubectl_sends_podnets_crd_kinds_a_json_merge_patch(running):
    anp = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy", "metadata": {"name": "deny"},
           "spec": {"priority": 10, "subject": {"namespaces": {}},
                    "ingress": [{"name": "a", "action": "Deny", "from": [{"namespaces": {}}]}]}}
    running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(anp))
    anp["spec"]["priority"] = 20
    anp["spec"]["ingress"][0]["action"] = "Pass"
    running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(anp))
    [patch] = running.stub.seen("PATCH", "/adminnetworkpolicies/deny")
    assert patch.content_type == "application/merge-patch+json"
    assert without_server_fields(running.stub.objects[("adminnetworkpolicies", "", "deny")]) == anp


def test_server_side_apply_conflict_reaches_kubectl_and_force_takes_the_field(running):
    running.kubectl("apply", "-f", "-", stdin=DEPLOYMENT)
    scaled = DEPLOYMENT.replace("replicas: 2", "replicas: 5")
    refused = running.kubectl("apply", "--server-side", "-f", "-", stdin=scaled, check=False)
    assert refused.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1' in refused.stderr
    assert ": .spec.replicas" in refused.stderr
    [attempt] = running.stub.seen("PATCH", "/deployments/web")
    assert attempt.content_type == "application/apply-patch+yaml" and attempt.query["fieldManager"] == "kubectl"

    running.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=scaled)
    stored = running.stub.objects[("deployments", "default", "web")]
    assert stored["spec"]["replicas"] == 5
    owners = {m["manager"]: m["fieldsV1"] for m in stored["metadata"]["managedFields"]}
    assert "f:replicas" in owners["kubectl"]["f:spec"]


def test_kubectl_patch_of_each_type_and_a_failing_json_patch_as_kubectl_reports_it(running):
    running.kubectl("apply", "-f", "-", stdin=DEPLOYMENT)
    running.kubectl("patch", "deployment", "web", "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}}}')
    running.kubectl("patch", "deployment", "web", "--type=merge", "-p", '{"metadata":{"labels":{"tier":null,"team":"a"}}}')
    running.kubectl("patch", "deployment", "web", "--type=json", "-p", '[{"op":"replace","path":"/spec/replicas","value":4}]')
    stored = running.stub.objects[("deployments", "default", "web")]
    assert [c["name"] for c in stored["spec"]["template"]["spec"]["containers"]] == ["web"]
    assert stored["metadata"]["labels"] == {"app": "web", "team": "a"}
    assert stored["spec"]["replicas"] == 4
    assert [r.content_type for r in running.stub.seen("PATCH")] == [
        "application/strategic-merge-patch+json", "application/merge-patch+json", "application/json-patch+json"]

    failed = running.kubectl("patch", "deployment", "web", "--type=json", "-p", '[{"op":"remove","path":"/spec/nothere"}]', check=False)
    assert failed.returncode != 0
    assert "the server rejected our request due to an error in our request" in failed.stderr


def test_server_side_apply_creates_and_then_removes_what_the_manifest_no_longer_sets(running):
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "labels": {"a": "1", "b": "2"}},
              "data": {"mode": "fast", "level": "3"}}
    running.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(config))
    assert not running.stub.seen("POST")  # created by the apply patch itself
    del config["data"]["level"]
    del config["metadata"]["labels"]["b"]
    running.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(config))
    stored = running.stub.objects[("configmaps", "default", "settings")]
    assert without_server_fields(stored) == config
    [entry] = stored["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")
    assert entry["fieldsV1"] == {"f:data": {"f:mode": {}}, "f:metadata": {"f:labels": {"f:a": {}}}}


def _defaults_and_status(obj: dict) -> None:
    """What a server adds: a port's protocol, a pull policy, and a status."""
    for container in obj.get("spec", {}).get("containers", []):
        container.setdefault("imagePullPolicy", "IfNotPresent")
        for port in container.get("ports", []):
            port.setdefault("protocol", "TCP")
    obj["status"] = {"phase": "Running", "podIP": "10.244.1.5"}


def test_kubectl_apply_keeps_what_the_server_added_and_changes_only_what_the_manifest_changed(running):
    running.stub.server_side = _defaults_and_status
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "p", "gone": "soon"}},
           "spec": {"containers": [{"name": "c", "image": "agnhost", "ports": [{"containerPort": 8080}, {"containerPort": 9090}]},
                                   {"name": "d", "image": "pause"}]}}
    running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod))
    pod["metadata"]["labels"] = {"app": "p"}
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 9090}]
    pod["spec"]["containers"][1]["image"] = "pause:3.10"
    running.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod))

    expected = copy.deepcopy(pod)
    _defaults_and_status(expected)
    assert without_server_fields(running.stub.objects[("pods", "default", "p")]) == expected
