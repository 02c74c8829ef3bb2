"""More meshed pods on one host than one user's inotify instances allow (root only): each Envoy
watches its files with a handful of instances and the kernel allows 128 per user by default
(fs.inotify.max_user_instances, a host setting podnet leaves alone), so the proxies could not
all run as uid 1337: each runs as a uid of its own in group 1337 (mesh/interception.proxy_uid),
which the capture lets through as it does uid 1337. The cluster has a unique name and is
removed in a finally."""

from __future__ import annotations

import secrets
import subprocess
import time

import pytest

from podnet.mesh.interception import PROXY_GID
from tests.livecluster import AGNHOST, leftovers, podnet

pytestmark = pytest.mark.root

REPLICAS = 26  # ~6 instances each: 26 Envoys under one uid would need more than 128
MANIFESTS = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: many, labels: {{istio-injection: enabled}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: many}}
spec:
  replicas: {REPLICAS}
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      containers: [{{name: app, image: {AGNHOST}, args: [netexec, --http-port=8080], ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: many}}
spec: {{selector: {{app: app}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
"""


def test_every_proxy_of_many_runs_as_its_own_user(tmp_path):
    name = f"ms{secrets.token_hex(3)}"
    (tmp_path / "many.yaml").write_text(MANIFESTS)
    (tmp_path / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n")
    started = False
    try:
        podnet("up", "-f", str(tmp_path / "many.yaml"), "--config", str(tmp_path / "cluster.yaml"), timeout=300)
        started = True
        deadline = time.monotonic() + 120
        while True:
            listed = podnet("get", "pods", "-n", "many", "--name", name).stdout.splitlines()[1:]
            if len(listed) == REPLICAS and all(line.split()[1] == "2/2" for line in listed):
                break
            assert time.monotonic() < deadline, "not every meshed pod is Ready 2/2:\n" + "\n".join(listed)
            time.sleep(0.5)
        owners = subprocess.run(["ps", "-ww", "-C", "envoy", "-o", "uid=,gid=,args="], capture_output=True, text=True).stdout
        ours = [line.split(None, 2) for line in owners.splitlines() if f"/run/podnet/{name}/" in line]
        assert len(ours) == REPLICAS and len({uid for uid, _, _ in ours}) == REPLICAS
        assert {int(gid) for _, gid, _ in ours} == {PROXY_GID}
        answer = podnet("exec", f"many/{listed[0].split()[0]}", "--name", name, "--", "python3", "-c",
                        "import urllib.request; print(urllib.request.urlopen('http://app/hostname', timeout=10).read().decode())")
        assert answer.stdout.startswith("app-")  # through the proxies, on a host with 26 of them
    finally:
        if started or leftovers(name):
            podnet("down", "--name", name, check=False)
        assert leftovers(name) == [], f"left behind: {leftovers(name)}"
