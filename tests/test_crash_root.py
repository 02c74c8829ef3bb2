"""A supervisor SIGKILLed and restarted (root only): the pods never notice.

A client in a pod requests through a ClusterIP Service, one new connection per request, the
whole time: kube-proxy's rules stay in the nodes' kernels while no supervisor runs, so not one
request may fail. Meanwhile a command says the supervisor is not running and how to restart
it, and a container of another pod is killed. `podnet up --name NAME` then starts a supervisor
that re-adopts every pod: the same processes in each pod's namespace (`ip netns pids`), the
same addresses, uids, creationTimestamps and restart counts; the killed container is
restarted per its restartPolicy; an apply afterwards works, and the cluster DNS (which retried
the control socket meanwhile) answers for the Service it added. Waits have generous deadlines
and nothing asserts a duration; the time from the restart command to an answering supervisor
is printed (run with -s to see it). The cluster has a unique name and is removed in a finally.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from podnet.host.control import send
from podnet.host.layout import ClusterLayout
from tests.livecluster import leftovers, podnet
from tests.test_termination_root import AGNHOST, Client, all_ready, pods, wait_for

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

APP = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: c
        image: {AGNHOST}
        args: [netexec, --http-port=8080]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: node1
  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: lone}}
spec:
  nodeName: node2
  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]
"""

LATER = """
apiVersion: v1
kind: Service
metadata: {name: later}
spec:
  selector: {app: web}
  ports: [{name: http, port: 81, targetPort: http}]
"""


def netns_pids(netns: str) -> set[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout
    return {int(pid) for pid in out.split()}


def seen(name: str) -> dict[str, tuple]:
    """Per pod: what must not change across the restart."""
    return {pod: (p["metadata"]["uid"], p["metadata"]["creationTimestamp"], p["status"].get("podIP"),
                  p["spec"].get("nodeName"), [c.get("restartCount") for c in p["status"].get("containerStatuses") or []])
            for pod, p in pods(name).items()}


@pytest.fixture
def cluster(tmp_path):
    name = f"cr{secrets.token_hex(3)}"
    (tmp_path / "app.yaml").write_text(APP)
    (tmp_path / "cluster.yaml").write_text(
        f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n"
        "networking: {overlay: vxlan, proxyMode: nftables}\n")
    started = False
    try:
        podnet("up", "-f", str(tmp_path / "app.yaml"), "--config", str(tmp_path / "cluster.yaml"), timeout=180)
        started = True
        wait_for(lambda: all_ready(name, "default") and all_ready(name, "kube-system"), 180, "every pod Ready")
        yield name, tmp_path
    finally:
        if started or leftovers(name):
            podnet("down", "--name", name, check=False, timeout=180)
        assert leftovers(name) == [], f"left behind: {leftovers(name)}"
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"podnet-{name}." not in netns, netns


def test_a_killed_supervisor_is_restarted_and_adopts_every_pod(cluster):
    name, tmp = cluster
    layout = ClusterLayout(name)
    cluster_ip = {s["metadata"]["name"]: s for s in json.loads(
        podnet("get", "svc", "-o", "json", "--name", name).stdout)["items"]}["web"]["spec"]["clusterIP"]
    before = seen(name)
    all_pods = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in json.loads(
        podnet("get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]}
    processes = {ref: netns_pids(layout.pod_netns(*ref)) for ref in all_pods
                 if Path(f"/run/netns/{layout.pod_netns(*ref)}").exists()}
    assert processes and all(processes.values())
    stop = tmp / "stop"
    client = Client(name, "default/client", cluster_ip, 80, "web", str(stop))
    try:
        wait_for(lambda: client.successes() >= 10 or client.errors(), 120, "the client answered")
        supervisor = send(layout.socket_path, {"op": "ping"}, timeout=10)["pid"]
        os.kill(supervisor, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{supervisor}").exists() or
                 Path(f"/proc/{supervisor}/stat").read_text().split(") ")[1][0] == "Z", 30, "the supervisor gone")
        # no supervisor: a command says so and how to get it back
        refused = podnet("get", "pods", "--name", name, check=False)
        assert refused.returncode != 0
        assert f"the supervisor of cluster {name} is not running" in refused.stderr, refused.stderr
        assert f"podnet up --name {name}" in refused.stderr, refused.stderr
        # a container dies while nobody watches: lone's (its sandbox stays)
        record = json.loads((layout.state_dir / "running.json").read_text())
        [lone] = [p for p in record["pods"] if p["name"] == "lone"]
        killed = lone["containers"][0]["process"]["pid"]
        os.killpg(killed, signal.SIGKILL)
        # the kernel's rules keep serving while the supervisor is down
        mark = len(client.answers)
        wait_for(lambda: client.successes(mark) >= 20 or client.errors(), 120, "answers with no supervisor")
        restarting = time.monotonic()
        restarted = podnet("up", "--name", name, timeout=180)
        answering = time.monotonic() - restarting
        print(f"\nrestart command to answering supervisor: {answering:.2f}s; podnet up said: "
              f"{restarted.stdout.strip()}")
        assert "re-adopted" in restarted.stdout, restarted.stdout
        # every pod as it was: its processes (but lone's killed container), address, uid, restarts
        after = seen(name)
        assert after.keys() == before.keys()
        for pod, was in before.items():
            if pod != "lone":
                assert after[pod] == was, pod
        for ref, pids in processes.items():
            if ref != ("default", "lone"):
                assert pids <= netns_pids(layout.pod_netns(*ref)), ref  # (the client pod also runs the client)
        assert netns_pids(layout.pod_netns("default", "lone")) >= processes[("default", "lone")] - {killed}
        # the container that died meanwhile is restarted per restartPolicy (Always), once
        wait_for(lambda: pods(name)["lone"]["status"]["containerStatuses"][0].get("restartCount") == 1
                 and pods(name)["lone"]["status"]["containerStatuses"][0].get("state", {}).get("running"),
                 120, "lone's container restarted")
        assert after["lone"][:4] == before["lone"][:4]  # the same pod, address and node
        # the cluster goes on: an apply, and the cluster DNS follows the new supervisor
        (tmp / "later.yaml").write_text(LATER)
        podnet("apply", "-f", str(tmp / "later.yaml"), "--name", name)
        wait_for(lambda: podnet("exec", "default/client", "--name", name, "--", "getent", "hosts", "later",
                                check=False).returncode == 0, 120, "the new Service resolving")
        mark = len(client.answers)
        wait_for(lambda: client.successes(mark) >= 10 or client.errors(), 120, "answers after the restart")
        log = (layout.state_dir / "supervisor.log").read_text()
        assert "pods re-adopted" in log and "Traceback" not in log, log[-3000:]
    finally:
        stop.write_text("")
        client.finish()
    assert client.errors() == [], client.errors()[:10]
    assert client.successes() > 0
