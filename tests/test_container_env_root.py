"""Container environment from ConfigMaps and Secrets on a real one-node cluster (root only).

A pod whose container reads envFrom (a ConfigMap, a prefixed Secret), configMapKeyRef,
secretKeyRef and resourceFieldRef: its process sees the values (its own log says so) and so does
`podnet exec … printenv`. A pod naming a ConfigMap that does not exist is not created: `get pods`
shows CreateContainerConfigError, its status kubelet's message, `describe` kubelet's Failed
event; once the ConfigMap is applied the container starts, with its value, as kubelet's next
sync starts it. Nothing asserts a duration: waits poll with generous deadlines. The cluster has
a unique name and is removed at the end, leaving no namespace behind.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from podnet.host.control import request
from podnet.host.layout import ClusterLayout
from tests.livecluster import podnet, up_cluster
from tests.test_termination_root import wait_for

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

PASSWORD = "s3cret-p@ss"
MANIFESTS = f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: app-config}}
data: {{BACKEND_HOST: backend.default.svc.cluster.local, LOG_LEVEL: debug}}
---
apiVersion: v1
kind: Secret
metadata: {{name: app-secret}}
data: {{DB_PASSWORD: {base64.b64encode(PASSWORD.encode()).decode()}}}
stringData: {{API_TOKEN: tok-123}}
---
apiVersion: v1
kind: Pod
metadata: {{name: reader}}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo "process sees backend=$BACKEND_HOST password=$PASSWORD"; exec sleep 3600']
    resources: {{limits: {{memory: 64Mi}}}}
    # kubelet's exec probe runs in the container: it sees the container's env, Secret values too
    readinessProbe: {{exec: {{command: [sh, -c, 'test "$PASSWORD" = "{PASSWORD}"']}}, periodSeconds: 1, timeoutSeconds: 30}}
    envFrom:
    - configMapRef: {{name: app-config}}
    - prefix: SECRET_
      secretRef: {{name: app-secret}}
    env:
    - {{name: LEVEL, valueFrom: {{configMapKeyRef: {{name: app-config, key: LOG_LEVEL}}}}}}
    - {{name: PASSWORD, valueFrom: {{secretKeyRef: {{name: app-secret, key: DB_PASSWORD}}}}}}
    - {{name: MEMORY_MI, valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}}}
    - {{name: URL, value: "http://$(BACKEND_HOST)/"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: waits}}
spec:
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo "process sees later=$LATER"; exec sleep 3600']
    env:
    - {{name: LATER, valueFrom: {{configMapKeyRef: {{name: later-config, key: value}}}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: web-config}}
data: {{PORT: "9090"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: app
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, "--http-port=$(PORT)"]
    env: [{{name: PORT, valueFrom: {{configMapKeyRef: {{name: web-config, key: PORT}}}}}}]
"""
LATER_CONFIG = """apiVersion: v1
kind: ConfigMap
metadata: {name: later-config}
data: {value: here-now}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = f"ce{secrets.token_hex(3)}"
    directory = tmp_path_factory.mktemp("containerenv")
    with up_cluster(directory, name, MANIFESTS, nodes=1):
        yield name, directory


def pod(name: str, cluster: str) -> dict:
    items = json.loads(podnet("get", "pods", "-o", "json", "--name", cluster).stdout)["items"]
    return next(p for p in items if p["metadata"]["name"] == name)


def status_column(name: str, cluster: str) -> str:
    table = podnet("get", "pods", "--name", cluster).stdout
    return next(line.split() for line in table.splitlines() if line.startswith(name + " "))[2]


def test_a_pod_sees_its_config_map_and_secret_values(cluster):
    name, _ = cluster
    wait_for(lambda: "process sees" in podnet("logs", "reader", "--name", name).stdout, 60, "reader's first line")
    logged = podnet("logs", "reader", "--name", name).stdout
    assert f"process sees backend=backend.default.svc.cluster.local password={PASSWORD}" in logged
    printed = dict(line.split("=", 1) for line in podnet("exec", "reader", "--name", name, "--", "printenv").stdout.splitlines()
                   if "=" in line)
    assert printed["BACKEND_HOST"] == "backend.default.svc.cluster.local" and printed["LOG_LEVEL"] == "debug"
    assert printed["SECRET_DB_PASSWORD"] == PASSWORD and printed["SECRET_API_TOKEN"] == "tok-123"
    assert "DB_PASSWORD" not in printed, "the Secret's keys come with their prefix"
    assert printed["LEVEL"] == "debug" and printed["PASSWORD"] == PASSWORD
    assert printed["MEMORY_MI"] == "64" and printed["URL"] == "http://backend.default.svc.cluster.local/"
    assert status_column("reader", name) == "Running"
    wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in pod("reader", name)["status"]["conditions"]),
             60, "reader Ready: its exec probe saw the Secret's value")


def test_a_missing_config_map_is_create_container_config_error_until_it_is_applied(cluster):
    name, directory = cluster
    assert status_column("waits", name) == "CreateContainerConfigError"
    waiting = pod("waits", name)
    [container] = waiting["status"]["containerStatuses"]
    assert container["state"] == {"waiting": {"reason": "CreateContainerConfigError",
                                              "message": 'configmap "later-config" not found'}}
    assert container["ready"] is False and waiting["status"]["phase"] == "Pending"
    assert 'Error: configmap "later-config" not found' in podnet("describe", "pod", "waits", "--name", name).stdout

    (directory / "later.yaml").write_text(LATER_CONFIG)
    podnet("apply", "-f", str(directory / "later.yaml"), "--name", name)
    wait_for(lambda: status_column("waits", name) == "Running", 60, "the container started once its ConfigMap is there")
    wait_for(lambda: "process sees" in podnet("logs", "waits", "--name", name).stdout, 60, "its first line")
    assert "process sees later=here-now" in podnet("logs", "waits", "--name", name).stdout
    events = podnet("describe", "pod", "waits", "--name", name).stdout
    assert "Created container: c" in events and "Started container c" in events


def test_trace_and_the_pod_agree_on_a_port_from_a_config_map(cluster):
    """agnhost netexec --http-port=$(PORT), PORT from a ConfigMap: the process listens on 9090,
    not on its default 8080, and the live trace says the same."""
    name, _ = cluster
    wait_for(lambda: pod("web", name)["status"].get("podIP"), 60, "web's address")
    ip = pod("web", name)["status"]["podIP"]
    wait_for(lambda: podnet("exec", "reader", "--name", name, "--", "curl", "-sS", "-m", "10",
                            f"http://{ip}:9090/hostname", check=False).stdout.strip() == "web", 60, "web on 9090")
    refused = podnet("exec", "reader", "--name", name, "--", "curl", "-sS", "-m", "10", f"http://{ip}:8080/hostname",
                     check=False)
    assert refused.returncode == 7, refused.stderr  # curl: could not connect (refused at once, no timeout: 28)
    for port, verdict, why in ((9090, "delivered", "agnhost netexec"), (8080, "dropped", "connection refused")):
        traced = json.loads(podnet("trace", "default/reader", ip, "-p", str(port), "-o", "json", "--name", name,
                                   check=False).stdout)
        assert traced["verdict"] == verdict and why in traced["reason"] + json.dumps(traced["hops"]), (port, traced)


def test_an_exec_gets_the_containers_env_without_a_secret_on_any_command_line(cluster):
    """`podnet exec` hands the container's environment over by execve: a Secret's value never
    shows in /proc/*/cmdline, which every user on the host can read."""
    name, _ = cluster
    duration = f"600.{secrets.randbelow(10**6):06d}"  # marks the exec'd sleep among the host's processes
    running = subprocess.Popen([sys.executable, "-m", "podnet", "exec", "reader", "--name", name, "--",
                                "sleep", duration],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    try:
        deadline = time.monotonic() + 60
        while not (sleeping := [pid for pid, line in command_lines() if line == f"sleep {duration} ".encode()]):
            assert time.monotonic() < deadline, "the exec'd command did not start"
            time.sleep(0.1)
        argv = request(ClusterLayout(name), "exec", target="default/reader", container=None)["argv"]
        assert not any(PASSWORD in word for word in argv), argv  # what every exec and probe runs
        # the command has the container's environment, as kubectl exec gives it
        assert f"PASSWORD={PASSWORD}".encode() in open(f"/proc/{sleeping[0]}/environ", "rb").read().split(b"\0")
    finally:
        running.kill()
        running.wait(30)


def command_lines() -> list[tuple[int, bytes]]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found.append((int(entry), open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ")))
            except OSError:
                pass
    return found
