"""`podnet up` on a real cluster (root): it returns with the cluster usable — every pod that can
be Ready is, and a Service name resolves from a pod on the first try — names a pod that
failed its readiness check with the probe's message and one whose first readiness probe is
far off (not waited for), `--wait` exits 1 for them, and Ctrl-C
during `up` removes everything made. Each cluster has a unique name and is removed in a finally.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.livecluster import leftovers, podnet

pytestmark = pytest.mark.root

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
MANIFESTS = f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  containers:
  - name: web
    image: {AGNHOST}
    args: [netexec, --http-port=8080]
    # timeoutSeconds: the first probe runs while the whole cluster starts; one answer later than
    # the default 1 s counts as a failed probe, and `up` would return with web not Ready
    readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, timeoutSeconds: 30}}
---
apiVersion: v1
kind: Service
metadata: {{name: backend}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: never}}
spec:
  containers:
  - name: never
    image: {AGNHOST}
    args: [netexec, --http-port=8080]
    readinessProbe: {{tcpSocket: {{port: 9999}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: late}}
spec:
  containers:
  - name: late
    image: {AGNHOST}
    args: [netexec, --http-port=8080]
    readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, initialDelaySeconds: 120}}
"""
RESOLVE = "import socket; print(socket.gethostbyname('backend'))"


@pytest.fixture
def manifests(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text(MANIFESTS)
    return str(path)


def pods(name: str) -> dict[str, str]:
    items = json.loads(podnet("get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}":
            "True" if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
            else "False" for p in items}


def test_up_returns_a_usable_cluster_and_says_why_a_pod_is_not_ready(manifests):
    name = "u" + secrets.token_hex(3)
    try:
        up = podnet("up", "-f", manifests, "--name", name, timeout=180)
        ready = pods(name)
        # a Service name resolves from a pod the moment `up` returns, on the first try
        resolved = podnet("exec", "default/web", "--name", name, "--", "python3", "-c", RESOLVE, check=False)
        service_ip = json.loads(podnet("get", "service", "backend", "-o", "json", "--name", name).stdout)["spec"]["clusterIP"]
        assert resolved.returncode == 0 and resolved.stdout.strip() == service_ip, resolved.stderr
        waited_for = {ref: r for ref, r in ready.items() if ref not in ("default/never", "default/late")}
        assert waited_for == {ref: "True" for ref in waited_for}
        assert ready["default/never"] == ready["default/late"] == "False"
        assert "not Ready:" in up.stdout
        line = next(line for line in up.stdout.splitlines() if "default/never" in line)
        assert "readiness probe failed" in line and ":9999" in line and "connection refused" in line
        # not waited for: its first readiness probe is two minutes away
        assert "  default/late: waiting for its first readiness probe (initialDelaySeconds 120)" in up.stdout
        assert "getent hosts backend" in up.stdout  # how to reach things
        for phase in ("nodes", "pod network", "pods running", "probes", "DNS answering", "Services programmed"):
            assert phase in up.stderr
        # --wait: every pod Ready within the duration, else exit 1 and the cluster stays up
        other = "u" + secrets.token_hex(3)
        try:
            waited = podnet("up", "-f", manifests, "--name", other, "--wait", "20s", check=False, timeout=180)
            assert waited.returncode == 1, waited.stdout + waited.stderr
            assert "default/never" in waited.stdout + waited.stderr
            assert "--wait" in waited.stderr
            assert leftovers(other)  # still up
        finally:
            podnet("down", "--name", other, check=False)
    finally:
        podnet("down", "--name", name, check=False)
    assert leftovers(name) == []


@pytest.mark.parametrize("when", ["building", "waiting"])
def test_ctrl_c_during_up_removes_what_was_made(manifests, when):
    """SIGINT while the supervisor builds (it does not answer `down` yet) and once it is built
    (`up` waits for pods): either way nothing of the cluster is left."""
    name = "u" + secrets.token_hex(3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    process = subprocess.Popen([sys.executable, "-m", "podnet", "up", "-f", manifests, "--name", name],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        ready = Path(f"/run/podnet/{name}/ready")  # the supervisor built the cluster
        while time.monotonic() < deadline and process.poll() is None and not (
                ready.exists() if when == "waiting" else any(".node-" in n for n in leftovers(name))):
            time.sleep(0.02)
        assert process.poll() is None, "up ended before the signal"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        assert process.returncode == 130, out + err
        assert f"cluster {name} removed" in err
        assert leftovers(name) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        podnet("down", "--name", name, check=False)
