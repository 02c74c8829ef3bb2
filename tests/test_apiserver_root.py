"""A real cluster's Kubernetes API (root): `up` merges a kubectl context, kubectl reads and drives
the cluster through 127.0.0.1 (get, exec with stdin and exit codes, logs -f, port-forward,
services/proxy, cluster-info), a pod lists and watches through 10.96.0.1 with its ServiceAccount
token and the official Python client, RBAC refuses what no Role grants, and `down` removes the
context and the API server with the rest."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import pytest
import yaml

from podnet.host.layout import ClusterLayout
from tests.livecluster import AGNHOST, netexec_deployment, podnet, up_cluster

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")]

NAME = f"api{os.getpid() % 100000}"
# the pod's readiness probe tests it (pods see the host's files)
READY_FILE = os.path.join(tempfile.gettempdir(), f"podnet-{NAME}-ready")
READER = f"""---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: reader}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reader}}
rules:
- apiGroups: [""]
  resources: [pods, services]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: reader}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}
subjects: [{{kind: ServiceAccount, name: reader, namespace: default}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  serviceAccountName: reader
  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: flips, labels: {{app: flips}}}}
spec:
  containers:
  - name: c
    image: {AGNHOST}
    args: [pause]
    readinessProbe:
      exec: {{command: [test, -f, {READY_FILE}]}}
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""

IN_CLUSTER = """
import json
from kubernetes import client, config, watch
config.load_incluster_config()
v1 = client.CoreV1Api()
seen = {"pods": sorted(p.metadata.name for p in v1.list_namespaced_pod("default").items)}
try:
    v1.list_namespaced_secret("default")
    seen["secrets"] = 200
except client.exceptions.ApiException as exc:
    seen["secrets"] = exc.status
events = watch.Watch().stream(v1.list_namespaced_service, "default", timeout_seconds=5)
seen["watched"] = sorted({(e["type"], e["object"].metadata.name) for e in events})
print(json.dumps(seen))
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    directory = tmp_path_factory.mktemp("api")
    with up_cluster(directory, NAME, netexec_deployment(2) + READER):
        yield


def kubectl(*args, check=True, input=None, timeout=90):
    result = subprocess.run(["kubectl", "--context", f"podnet-{NAME}", *args], capture_output=True, text=True,
                            input=input, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.returncode}\n{result.stderr}")
    return result


def web_pods() -> list[str]:
    return [n.split("/", 1)[1] for n in kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split()]


def test_up_merged_the_context_and_kubectl_sees_the_cluster_as_podnet_does(cluster):
    config = yaml.safe_load(open(os.environ["KUBECONFIG"]))
    assert config["current-context"] == f"podnet-{NAME}"
    listed = {p["metadata"]["name"]: p["status"]["podIP"] for p in json.loads(kubectl("get", "pods", "-o", "json").stdout)["items"]}
    ours = {p["metadata"]["name"]: p["status"]["podIP"]
            for p in json.loads(podnet("get", "pods", "-o", "json", "--name", NAME).stdout)["items"]}
    assert listed == ours and len(listed) == 4
    info = kubectl("cluster-info").stdout
    assert re.search(r"Kubernetes control plane is running at https://127\.0\.0\.1:\d+", info)
    assert "CoreDNS is running at" in info


def test_exec_carries_stdout_stderr_stdin_and_the_exit_code(cluster):
    pod = web_pods()[0]
    result = kubectl("exec", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (result.returncode, result.stdout, result.stderr.splitlines()[0]) == (3, "out\n", "err")
    payload = "".join(f"line {i}\n" for i in range(20000))
    assert kubectl("exec", "-i", pod, "--", "cat", input=payload).stdout == payload
    assert kubectl("exec", pod, "--", "hostname").stdout.strip() == pod


def test_logs_follow_sees_a_request_arrive_and_port_forward_reaches_the_pod(cluster):
    pod = web_pods()[0]
    follow = subprocess.Popen(["kubectl", "--context", f"podnet-{NAME}", "logs", "-f", pod], stdout=subprocess.PIPE,
                              text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(follow.stdout), daemon=True).start()
    forward = subprocess.Popen(["kubectl", "--context", f"podnet-{NAME}", "port-forward", f"pod/{pod}", "0:8080"],
                               stdout=subprocess.PIPE, text=True)
    try:
        first = forward.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+) ->", first).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/echo?msg=through-the-api", timeout=30) as answer:
            assert answer.read() == b"through-the-api"
        deadline = time.monotonic() + 60
        while not any("through-the-api" in line for line in list(lines)):
            assert time.monotonic() < deadline, f"logs -f never showed the request: {lines[-5:]}"
            time.sleep(0.05)
    finally:
        for process in (follow, forward):
            process.terminate()
            process.wait(30)


def test_services_proxy_reaches_a_ready_endpoint(cluster):
    answer = kubectl("get", "--raw", "/api/v1/namespaces/default/services/web:80/proxy/hostname").stdout
    assert answer in web_pods()


def test_a_pod_lists_and_watches_with_its_service_account_and_rbac_holds(cluster):
    result = podnet("exec", "default/client", "--name", NAME, "--", sys.executable, "-c", IN_CLUSTER)
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(web_pods()) | {"client", "flips"} == set(seen["pods"])
    assert seen["secrets"] == 403
    assert ["ADDED", "web"] in seen["watched"] and ["ADDED", "kubernetes"] in seen["watched"]
    denied = kubectl("auth", "can-i", "list", "secrets", "--as", "system:serviceaccount:default:reader", check=False)
    assert denied.stdout.strip() == "no"


def test_down_removes_the_context_and_the_api_server(tmp_path):
    name = f"apid{os.getpid() % 100000}"
    with up_cluster(tmp_path, name, netexec_deployment(1), nodes=1):
        record = json.loads(open(f"/run/podnet/{name}/apiserver.json").read())
        assert os.path.exists(f"/proc/{record['pid']}")
        podnet("down", "--name", name)
        config = yaml.safe_load(open(os.environ["KUBECONFIG"])) or {}
        assert f"podnet-{name}" not in [c["name"] for c in config.get("contexts") or []]
        deadline = time.monotonic() + 60
        while os.path.exists(f"/proc/{record['pid']}"):
            assert time.monotonic() < deadline, "the API server outlived its cluster"
            time.sleep(0.05)


def test_wait_and_get_watch_follow_a_readiness_flip(cluster):
    with open(READY_FILE, "w"):
        pass
    try:
        waited = kubectl("wait", "--for=condition=Ready", "pod/flips", "--timeout=60s")
        assert waited.stdout.strip() == "pod/flips condition met"
        watch = subprocess.Popen(["kubectl", "--context", f"podnet-{NAME}", "get", "pods", "-l", "app=flips", "-w"],
                                 stdout=subprocess.PIPE, text=True)
        rows: list[list[str]] = []
        threading.Thread(target=lambda: rows.extend(line.split() for line in watch.stdout), daemon=True).start()
        try:
            deadline = time.monotonic() + 60
            while not any(row[:2] == ["flips", "1/1"] for row in list(rows)):
                assert time.monotonic() < deadline, rows
                time.sleep(0.05)
            os.unlink(READY_FILE)  # the probe fails: kubelet marks the pod not ready
            while not any(row[:2] == ["flips", "0/1"] for row in list(rows)):
                assert time.monotonic() < deadline + 60, rows
                time.sleep(0.05)
        finally:
            watch.terminate()
            watch.wait(30)
    finally:
        if os.path.exists(READY_FILE):
            os.unlink(READY_FILE)


def test_events_are_listed_and_described_with_their_object(cluster):
    rows = kubectl("get", "events", "-A").stdout.splitlines()
    assert rows[0].split()[:3] == ["NAMESPACE", "LAST", "SEEN"] and len(rows) > 1
    described = kubectl("describe", "pod", web_pods()[0]).stdout
    assert "Events:" in described and "Scheduled" in described and "Started" in described


def test_a_killed_api_server_is_started_again_on_its_port(cluster):
    record = json.loads(open(f"/run/podnet/{NAME}/apiserver.json").read())
    os.kill(record["pid"], 9)
    with socket.socket() as taker:  # the port stays the cluster's while no API server runs: nothing else gets it
        taker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use"):
            taker.bind(("127.0.0.1", record["port"]))
    deadline = time.monotonic() + 60
    while True:  # the supervisor's loop starts it again (kubelet's back-off: at once the first time)
        again = json.loads(open(f"/run/podnet/{NAME}/apiserver.json").read())
        if again["pid"] != record["pid"] and kubectl("get", "ns", check=False).returncode == 0:
            break
        assert time.monotonic() < deadline, (f"the API server was not started again: {again}; the supervisor's log ends "
                                             f"{ClusterLayout(NAME).state_dir.joinpath('supervisor.log').read_text()[-2000:]}")
        time.sleep(0.1)
    assert again["port"] == record["port"]  # the kubeconfig's server stays right
    assert "default" in kubectl("get", "ns", "-o", "name").stdout
