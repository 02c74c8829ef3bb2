"""The real kubectl (v1.32 from apt) against podnet's API server, the cluster's pods on fakes
(tests/apiharness.py): discovery, get in every output, apply/create/replace/patch/scale/label/
delete with their messages, watch, errors as kubectl prints them, RBAC answers."""

from __future__ import annotations

import ipaddress
import json
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest
import yaml

from podnet.apiserver import server
from tests.apiharness import KUBECTL, ApiHarness
from tests.supervisor_fakes import DEPLOYMENT

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (make install: apt-get install kubectl)")

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with ApiHarness(tmp_path_factory.mktemp("api"), [DEPLOYMENT, SERVICE]) as harness:
        yield harness


def manifest(tmp_path, *bodies, name="m.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(bodies))
    return str(path)


def test_discovery_names_podnet_s_resources(api):
    out = api.kubectl("api-resources").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert {"pods", "services", "deployments", "networkpolicies", "endpointslices", "namespaces", "nodes"} <= set(rows)
    assert "po" in rows["pods"].split() and "apps/v1" in rows["deployments"]
    assert "v1.32" in api.kubectl("version", "-o", "json").stdout


def test_get_pods_prints_kubectl_s_columns_with_namespaces_and_wide(api):
    out = api.kubectl("get", "pods", "-A", "-o", "wide").stdout.splitlines()
    assert out[0].split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE",
                              "NOMINATED", "NODE", "READINESS", "GATES"]
    web = [line.split() for line in out[1:] if line.startswith("default ") and " web-" in line]
    assert len(web) == 2
    assert all(row[3] == "Running" and row[6].startswith("10.244.") and row[7].startswith("node") for row in web)
    assert any(line.startswith("kube-system ") and "coredns-" in line for line in out)


def test_get_one_object_in_json_yaml_jsonpath_and_name(api):
    service = api.kubectl_json("get", "service", "web")
    assert service["kind"] == "Service"
    assert ipaddress.ip_address(service["spec"]["clusterIP"]) in ipaddress.ip_network("10.96.0.0/12")
    assert service["metadata"]["uid"] and int(service["metadata"]["resourceVersion"]) > 0
    as_yaml = yaml.safe_load(api.kubectl("get", "svc", "web", "-o", "yaml").stdout)
    assert as_yaml["spec"]["clusterIP"] == service["spec"]["clusterIP"]
    assert api.kubectl("get", "svc", "web", "-o", "jsonpath={.spec.ports[0].targetPort}").stdout == "8080"
    assert api.kubectl("get", "deploy", "-o", "name").stdout.split() == ["deployment.apps/web"]
    missing = api.kubectl("get", "svc", "nope", check=False)
    assert missing.returncode == 1
    assert 'Error from server (NotFound): services "nope" not found' in missing.stderr


def test_label_selectors_and_field_selectors_choose_as_kubectl_expects(api):
    names = api.kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split()
    assert len(names) == 2 and all(n.startswith("pod/web-") for n in names)
    node = api.kubectl_json("get", names[0])["spec"]["nodeName"]
    on_node = api.kubectl("get", "pods", "-A", "--field-selector", f"spec.nodeName={node}", "-o", "name").stdout.split()
    assert names[0] in on_node
    assert api.kubectl("get", "pods", "-l", "app=none", check=False).stderr.strip() == "No resources found in default namespace."


def test_apply_creates_configures_and_leaves_unchanged(api, tmp_path):
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}
    path = manifest(tmp_path, config)
    assert api.kubectl("apply", "-f", path).stdout.strip() == "configmap/settings created"
    assert api.kubectl("apply", "-f", path).stdout.strip() == "configmap/settings unchanged"
    config["data"] = {"b": "2"}
    path = manifest(tmp_path, config)
    assert api.kubectl("apply", "-f", path).stdout.strip() == "configmap/settings configured"
    stored = api.kubectl_json("get", "configmap", "settings")
    assert stored["data"] == {"b": "2"}  # the key the new manifest left out is gone (three-way merge)
    assert "kubectl.kubernetes.io/last-applied-configuration" in stored["metadata"]["annotations"]
    assert api.kubectl("delete", "-f", path).stdout.strip() == 'configmap "settings" deleted'
    assert api.kubectl("get", "configmap", "settings", check=False).returncode == 1


def test_a_deployment_scaled_and_labelled_through_the_api_changes_the_cluster(api, tmp_path):
    assert api.kubectl("scale", "deployment", "web", "--replicas=3").stdout.strip() == "deployment.apps/web scaled"
    pods = api.kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split()
    assert len(pods) == 3
    assert len(api.supervisor.runtime.pods.keys() & {f"default/{p[4:]}" for p in pods}) == 3  # and they were started
    assert api.kubectl("label", "deployment", "web", "tier=front").stdout.strip() == "deployment.apps/web labeled"
    assert api.kubectl_json("get", "deployment", "web")["metadata"]["labels"]["tier"] == "front"
    api.kubectl("scale", "deployment", "web", "--replicas=2")
    deadline = time.monotonic() + 60  # the third terminates first (its grace period), then goes
    while len(api.kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split()) != 2:
        assert time.monotonic() < deadline, "the scaled-away pod never went"
        time.sleep(0.1)


def test_an_invalid_manifest_is_refused_with_the_field_and_nothing_changes(api, tmp_path):
    before = api.kubectl_json("get", "services")
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"},
           "spec": {"ports": [{"port": 70000}]}}
    refused = api.kubectl("apply", "-f", manifest(tmp_path, bad), check=False)
    assert refused.returncode != 0
    assert "port" in refused.stderr and "70000" in refused.stderr
    after = api.kubectl_json("get", "services")
    assert [s["metadata"]["name"] for s in after["items"]] == [s["metadata"]["name"] for s in before["items"]]


def test_a_stale_update_is_answered_409(api, tmp_path):
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stale"}, "data": {"a": "1"}}
    api.kubectl("create", "-f", manifest(tmp_path, config, name="first.yaml"))
    old = api.kubectl_json("get", "configmap", "stale")
    api.kubectl("patch", "configmap", "stale", "--type=merge", "-p", '{"data":{"a":"2"}}')
    old["data"] = {"a": "3"}
    refused = api.kubectl("replace", "-f", manifest(tmp_path, old, name="stale.yaml"), check=False)
    assert refused.returncode == 1
    assert "Error from server (Conflict)" in refused.stderr and "the object has been modified" in refused.stderr
    assert api.kubectl_json("get", "configmap", "stale")["data"] == {"a": "2"}
    api.kubectl("delete", "configmap", "stale")


def test_create_of_an_existing_object_is_already_exists(api, tmp_path):
    namespace = manifest(tmp_path, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    api.kubectl("create", "-f", namespace)
    again = api.kubectl("create", "-f", namespace, check=False)
    assert again.stderr.startswith("Error from server (AlreadyExists): ")
    assert again.stderr.strip().endswith('namespaces "team-a" already exists')
    assert "team-a" in api.kubectl("get", "ns", "-o", "name").stdout
    api.kubectl("delete", "namespace", "team-a")


def test_get_watch_streams_the_change(api, tmp_path):
    watch = subprocess.Popen([KUBECTL, "--kubeconfig", str(api.kubeconfig), "get", "configmaps", "-w",
                              "--output-watch-events"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={"HOME": str(api.directory), "PATH": "/usr/bin:/bin"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(watch.stdout), daemon=True)
    reader.start()
    try:
        api.kubectl("apply", "-f", manifest(tmp_path, {"apiVersion": "v1", "kind": "ConfigMap",
                                                       "metadata": {"name": "watched"}, "data": {"x": "1"}}))
        deadline = time.monotonic() + 60
        while not any(line.split()[:2] == ["ADDED", "watched"] for line in list(lines)):
            assert time.monotonic() < deadline, f"the watch never showed the new ConfigMap: {lines}"
            time.sleep(0.05)
        api.kubectl("delete", "configmap", "watched")
        while not any(line.split()[:2] == ["DELETED", "watched"] for line in list(lines)):
            assert time.monotonic() < deadline, f"the watch never showed the deletion: {lines}"
            time.sleep(0.05)
    finally:
        watch.kill()
        watch.wait()
        api.kubectl("delete", "configmap", "watched", "--ignore-not-found")


def test_auth_can_i_answers_for_the_admin_and_for_a_service_account_with_a_role(api, tmp_path):
    assert api.kubectl("auth", "can-i", "delete", "pods").stdout.strip() == "yes"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
               "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}]}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}
    api.kubectl("apply", "-f", manifest(tmp_path, account, role, binding))
    robot = "system:serviceaccount:default:robot"
    assert api.kubectl("auth", "can-i", "list", "pods", "--as", robot).stdout.strip() == "yes"
    denied = api.kubectl("auth", "can-i", "list", "secrets", "--as", robot, check=False)
    assert denied.stdout.strip() == "no" and denied.returncode == 1
    assert api.kubectl("auth", "can-i", "list", "pods", "-n", "kube-system", "--as", robot, check=False).stdout.strip() == "no"


def test_no_request_without_a_credential_and_a_wrong_token_is_unauthorized(api):
    url = f"https://127.0.0.1:{api.port}/api/v1/namespaces/default/secrets"
    anonymous = subprocess.run(["curl", "-sk", url], capture_output=True, text=True, timeout=60)
    status = json.loads(anonymous.stdout)
    assert (status["code"], status["reason"]) == (401, "Unauthorized")
    forged = subprocess.run(["curl", "-sk", "-H", "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln", url],
                            capture_output=True, text=True, timeout=60)
    assert json.loads(forged.stdout)["code"] == 401


def test_deleting_a_deployment_s_pod_ends_it_and_its_replacement_starts(api):
    name = api.kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split()[0]
    before = api.kubectl_json("get", name)
    deleted = api.kubectl("delete", name, "--grace-period=1", "--wait=false")  # see below: the same-name race
    assert deleted.stdout.strip() == f'pod "{name[4:]}" deleted'
    deadline = time.monotonic() + 60
    while True:
        after = api.kubectl("get", name, "-o", "json", check=False)
        if after.returncode == 0 and json.loads(after.stdout)["status"].get("phase") == "Running" \
                and json.loads(after.stdout)["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"] \
                and not json.loads(after.stdout)["metadata"].get("deletionTimestamp"):
            break
        assert time.monotonic() < deadline, "the replacement never ran"
        time.sleep(0.1)
    replacement = json.loads(after.stdout)
    assert replacement["metadata"]["creationTimestamp"] >= before["metadata"]["creationTimestamp"]
    assert f"default/{name[4:]}" in api.supervisor.runtime.pods


def test_kubelet_s_word_on_a_running_pod_reaches_kubectl(api):
    """A restart changes no computed object, only what kubelet lays over the pod: the API
    server's cache still sees it (its resourceVersion moves, as kubelet's status update)."""
    name = api.kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split()[0][4:]
    before = api.kubectl_json("get", "pod", name)["metadata"]["resourceVersion"]
    with api.supervisor.lock:
        api.supervisor.runtime.pods[f"default/{name}"].containers[0].restarts += 1
    deadline = time.monotonic() + 60
    while (pod := api.kubectl_json("get", "pod", name))["status"]["containerStatuses"][0]["restartCount"] != 1:
        assert time.monotonic() < deadline, "the restart never showed"
        time.sleep(0.1)
    assert int(pod["metadata"]["resourceVersion"]) > int(before)
    assert api.kubectl("get", "pod", name).stdout.splitlines()[1].split()[3] == "1"


def test_create_token_gives_a_token_that_authenticates_as_the_service_account(api, tmp_path):
    api.kubectl("apply", "-f", manifest(tmp_path, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                   "metadata": {"name": "bot"}}))
    token = api.kubectl("create", "token", "bot", "--duration=15m").stdout.strip()
    url = f"https://127.0.0.1:{api.port}/apis/authentication.k8s.io/v1/selfsubjectreviews"
    review = subprocess.run(["curl", "-sk", "-X", "POST", "-H", f"Authorization: Bearer {token}", "-H",
                             "Content-Type: application/json", "-d",
                             '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}', url],
                            capture_output=True, text=True, timeout=60)
    assert json.loads(review.stdout)["status"]["userInfo"]["username"] == "system:serviceaccount:default:bot"
    api.kubectl("delete", "serviceaccount", "bot")
    after = subprocess.run(["curl", "-sk", "-H", f"Authorization: Bearer {token}",
                            f"https://127.0.0.1:{api.port}/api/v1/namespaces/default/pods"],
                           capture_output=True, text=True, timeout=60)
    assert json.loads(after.stdout)["code"] == 401  # its ServiceAccount is gone


def test_server_side_apply_creates_owns_fields_and_reports_a_conflict(api, tmp_path):
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}}
    path = manifest(tmp_path, config, name="ssa.yaml")
    assert api.kubectl("apply", "--server-side", "-f", path).stdout.strip() == "configmap/ssa serverside-applied"
    managers = [m["manager"] for m in api.kubectl_json("get", "configmap", "ssa", "--show-managed-fields")
                ["metadata"]["managedFields"]]
    assert managers == ["kubectl"]
    api.kubectl("patch", "configmap", "ssa", "--type=merge", "-p", '{"data":{"a":"2"}}')  # another manager takes a
    conflict = api.kubectl("apply", "--server-side", "-f", path, check=False)
    assert conflict.returncode == 1 and "conflict" in conflict.stderr.lower() and ".data.a" in conflict.stderr
    api.kubectl("apply", "--server-side", "--force-conflicts", "-f", path)
    assert api.kubectl_json("get", "configmap", "ssa")["data"] == {"a": "1"}
    api.kubectl("delete", "configmap", "ssa")


def _watch_lines(api, path: str, count: int) -> list[dict]:
    """The first `count` events of a watch, read with the admin's certificate."""
    context = ssl.create_default_context(cafile=str(api.credentials.ca_path))
    context.load_cert_chain(api.credentials.admin_cert_path, api.credentials.admin_key_path)
    events = []
    with urllib.request.urlopen(f"https://127.0.0.1:{api.port}{path}", context=context, timeout=60) as answer:
        for line in answer:
            events.append(json.loads(line))
            if len(events) == count:
                break
    return events


def test_a_watch_too_old_is_an_expired_error_event_and_bookmarks_come_when_asked(api, monkeypatch):
    monkeypatch.setattr(server, "BOOKMARK_EVERY", 0.2)
    version = int(json.loads(api.kubectl("get", "--raw", "/api/v1/namespaces/default/configmaps").stdout)
                  ["metadata"]["resourceVersion"])
    api.server.objects.oldest = version + 1  # as if the window had moved past it
    try:
        [error] = _watch_lines(api, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={version}", 1)
        assert error["type"] == "ERROR" and (error["object"]["code"], error["object"]["reason"]) == (410, "Expired")
    finally:
        api.server.objects.oldest = 0
    [bookmark] = _watch_lines(api, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={version}"
                                   "&allowWatchBookmarks=true&timeoutSeconds=30", 1)
    assert bookmark["type"] == "BOOKMARK" and int(bookmark["object"]["metadata"]["resourceVersion"]) >= version


def test_replication_controllers_are_listed_empty_and_cannot_be_made(api, tmp_path):
    """Every API server serves the core group's ReplicationControllers, and `kubectl cluster-info
    dump` lists them in each namespace; podnet runs none (a Deployment is what it runs)."""
    listed = api.kubectl("get", "replicationcontrollers", "-A")
    assert (listed.stdout, listed.stderr.strip()) == ("", "No resources found")
    assert api.kubectl("get", "rc", "-n", "default", "-o", "json", check=False).returncode == 0
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "old"},
          "spec": {"replicas": 1, "selector": {"app": "old"},
                   "template": {"metadata": {"labels": {"app": "old"}},
                                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    refused = api.kubectl("create", "--validate=false", "-f", manifest(tmp_path, rc), check=False)
    assert refused.returncode == 1 and "(MethodNotAllowed)" in refused.stderr
    assert "create replicationcontrollers" in refused.stderr


def test_a_bare_pod_applied_with_kubectl_is_deleted_by_name_and_by_collection(api, tmp_path):
    """A delete is admitted as the object was applied: a Pod named alone would have no
    containers, which admission refuses ("spec.containers: Required value")."""
    def bare(name):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bare": "yes"}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}}

    api.kubectl("apply", "-f", manifest(tmp_path, bare("bare-1"), bare("bare-2"), bare("bare-3")))
    assert api.kubectl("delete", "pod", "bare-1", timeout=60).stdout.strip() == 'pod "bare-1" deleted'
    api.kubectl("delete", "--raw", "/api/v1/namespaces/default/pods?labelSelector=bare%3Dyes", timeout=60)
    deadline = time.monotonic() + 60
    while api.kubectl("get", "pods", "-l", "bare=yes", "-o", "name").stdout.strip():
        assert time.monotonic() < deadline, "the bare pods stayed"
        time.sleep(0.1)


def test_a_pod_that_cannot_start_is_a_warning_kubectl_prints(api, tmp_path):
    api.supervisor.runtime.fail.add("default/broken")
    try:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "broken"},
                "spec": {"containers": [{"name": "c", "image": "pause"}]}}
        applied = api.kubectl("apply", "-f", manifest(tmp_path, body, name="broken.yaml"))
        assert applied.stdout.strip() == "pod/broken created"
        assert "Warning: pod default/broken: default/broken would not start could not start" in applied.stderr
    finally:
        api.supervisor.runtime.fail.discard("default/broken")
        api.kubectl("delete", "pod", "broken", "--wait=false", check=False)
