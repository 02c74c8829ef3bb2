"""Images in a real one-node cluster (root only): redis-server Ready by its probes and answering
PING by Service name from another pod, a stand-in Ready by its httpGet probe and answering
exactly where `trace` says it does. The cluster has a unique name and is removed in a finally."""

from __future__ import annotations

import json
import secrets
import time
from contextlib import contextmanager

import pytest

from tests.livecluster import leftovers, podnet

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

MANIFESTS = """
apiVersion: v1
kind: Pod
metadata: {name: redis, labels: {app: redis}}
spec:
  containers:
  - name: redis
    image: redis:7.2
    args: ["--port", "6379"]
    ports: [{name: redis, containerPort: 6379}]
    readinessProbe: {tcpSocket: {port: redis}, periodSeconds: 1}
    livenessProbe: {exec: {command: [redis-cli, ping]}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: redis}
spec:
  selector: {app: redis}
  ports: [{port: 6379, targetPort: redis}]
---
apiVersion: v1
kind: Pod
metadata: {name: app}
spec:
  containers:
  - name: app
    image: example.com/team/app:1
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
"""


@contextmanager
def running(tmp, config: str = ""):
    name = f"im{secrets.token_hex(3)}"
    (tmp / "pods.yaml").write_text(MANIFESTS)
    (tmp / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 1\n{config}")
    started = False
    try:
        podnet("up", "-f", str(tmp / "pods.yaml"), "--config", str(tmp / "cluster.yaml"), timeout=120)
        started = True
        yield name
    finally:
        if started or leftovers(name):
            podnet("down", "--name", name, check=False)
        assert leftovers(name) == [], f"left behind: {leftovers(name)}"


@pytest.fixture
def cluster(tmp_path):
    with running(tmp_path) as name:
        yield name


def ready_pods(name: str) -> dict[str, bool]:
    """Every pod, the cluster DNS's too (redis is reached by name)."""
    pods = json.loads(podnet("get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]
    return {p["metadata"]["namespace"] + "/" + p["metadata"]["name"]: any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in p["status"].get("conditions") or []) for p in pods}


def test_every_image_turns_ready_and_serves_what_trace_says(cluster):
    deadline = time.monotonic() + 120
    while not all((ready := ready_pods(cluster)).values()):
        assert time.monotonic() < deadline, f"not Ready: {ready}"
        time.sleep(0.5)
    ping = podnet("exec", "client", "--name", cluster, "--", "redis-cli", "-h", "redis", "ping", check=False)
    assert ping.stdout.strip() == "PONG", ping.stdout + ping.stderr
    assert "stand-in for image example.com/team/app:1" in podnet("describe", "pod", "app", "--name", cluster).stdout
    pods = json.loads(podnet("get", "pods", "-o", "json", "--name", cluster).stdout)["items"]
    app_ip = next(p["status"]["podIP"] for p in pods if p["metadata"]["name"] == "app")
    for port, served in ((8080, True), (8081, False)):
        trace = podnet("trace", "default/client", "default/app", "-p", str(port), "--name", cluster, check=False)
        assert ("connection refused" not in trace.stdout) is served, trace.stdout
        curl = podnet("exec", "client", "--name", cluster, "--", "curl", "-s", "-m", "5", "-o", "/dev/null",
                      "-w", "%{http_code}", f"http://{app_ip}:{port}/hostname", check=False)
        assert (curl.stdout == "200") is served, f"{port}: trace says served={served}, curl {curl.stdout!r}"


def test_with_images_strict_an_unknown_image_waits_as_kubelet_says_and_is_no_endpoint(tmp_path):
    with running(tmp_path, "images: strict\n") as name:
        deadline = time.monotonic() + 60
        while True:
            table = podnet("get", "pods", "--name", name).stdout
            row = next(line.split() for line in table.splitlines() if line.startswith("app "))
            if row[2] == "ImagePullBackOff":
                break
            assert row[2] in ("ErrImagePull", "Pending"), table
            assert time.monotonic() < deadline, table
            time.sleep(0.5)
        assert row[1] == "0/1"
        described = podnet("describe", "pod", "app", "--name", name).stdout
        assert 'Back-off pulling image "example.com/team/app:1"' in described
        assert "cannot be pulled (images: strict)" in described
        pods = json.loads(podnet("get", "pods", "-o", "json", "--name", name).stdout)["items"]
        app = next(p for p in pods if p["metadata"]["name"] == "app")
        assert app["status"]["phase"] == "Pending"
        assert not any(c["type"] == "Ready" and c["status"] == "True" for c in app["status"]["conditions"])
        trace = podnet("trace", "default/client", "default/app", "-p", "8080", "--name", name, check=False)
        assert "cannot be pulled" in trace.stdout, trace.stdout
