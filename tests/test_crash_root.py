"""A supervisor SIGKILLed and restarted (root only): the pods never notice.

A client in a pod requests through a ClusterIP Service, one new connection per request, the
whole time: kube-proxy's rules stay in the nodes' kernels while no supervisor runs, so not one
request may fail. Either the supervisor alone is killed and its watchdog starts a new one, or
the watchdog is killed too: then a command says the supervisor is not running and how to
restart it, a container of another pod is killed meanwhile, and `podnet up --name NAME`
starts a supervisor (and a pod it started but had not recorded, as in an apply cut short, is
removed and started again, its address released first; a hostNetwork one, which has no namespace
of its own, has its processes found in the node's and stopped). Either way the new one re-adopts every pod: the same processes in each pod's namespace (`ip netns pids`), the
same addresses, uids, creationTimestamps and restart counts; the killed container is
restarted per its restartPolicy; an apply afterwards works, and the cluster DNS and the
ingress controller (which retried the control socket meanwhile) serve the Service and the
Ingress it added. Waits have generous deadlines
and nothing asserts a duration; the time from the SIGKILL (watchdog) or the restart command
to an answering supervisor is printed (run with -s to see it). The cluster has a unique name and is removed in a finally.
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
from podnet.host.layout import CNI_NETWORK, ClusterLayout
from tests.livecluster import netexec_deployment, pause_pod, podnet, up_cluster
# the Service, the Ingress and the client pod: the termination test's
from tests.test_termination_root import REST, Client, all_ready, lb_ip, pods, wait_for

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

# web's readiness as livecluster's, but with timeoutSeconds 30: the test asserts web's endpoints
# never flip, and under its load (a client loop, kills, a restart, an apply, ingress reloads) three
# answers in a row later than the default 1 s would flip one without anything being wrong
APP = netexec_deployment(2, probe=False, container="readinessProbe: {httpGet: {path: /healthz, port: http}, "
                                                  "periodSeconds: 1, timeoutSeconds: 30}\n") \
    + REST + pause_pod("orphan", "node1") + pause_pod("lone", "node2") + pause_pod("hostorphan", "node2", True)

LATER = """
apiVersion: v1
kind: Service
metadata: {name: later}
spec:
  selector: {app: web}
  ports: [{name: http, port: 81, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: later}
spec:
  ingressClassName: nginx
  rules:
  - host: later.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: later, port: {number: 81}}}}
"""


def through_ingress(name: str, lb: str) -> bool:
    """A request from `external` to the ingress controller's LoadBalancer IP for later.test."""
    proc = podnet("exec", "external", "--name", name, "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                  "-m", "5", "-H", "Host: later.test", f"http://{lb}/hostname", check=False)
    return proc.stdout.strip() == "200"


def netns_pids(netns: str) -> set[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout
    return {int(pid) for pid in out.split()}


def event_names(name: str) -> set[str]:
    return {e["metadata"]["name"] for e in json.loads(podnet("get", "events", "-A", "-o", "json", "--name", name).stdout)["items"]}


def slice_version(name: str, service: str) -> str:
    slices = json.loads(podnet("get", "endpointslices", "-o", "json", "--name", name).stdout)["items"]
    [found] = [s for s in slices if s["metadata"]["labels"].get("kubernetes.io/service-name") == service]
    return found["metadata"]["resourceVersion"]


def seen(name: str) -> dict[str, tuple]:
    """Per pod: what must not change across the restart."""
    return {pod: (p["metadata"]["uid"], p["metadata"]["creationTimestamp"], p["status"].get("podIP"),
                  p["spec"].get("nodeName"), [c.get("restartCount") for c in p["status"].get("containerStatuses") or []])
            for pod, p in pods(name).items()}


@pytest.fixture
def cluster(tmp_path):
    name = f"cr{secrets.token_hex(3)}"
    with up_cluster(tmp_path, name, APP):
        wait_for(lambda: all(all_ready(name, namespace) for namespace in ("default", "kube-system", "ingress-nginx")),
                 180, "every pod Ready")
        yield name, tmp_path


def supervisor_answering(layout: ClusterLayout, other_than: int) -> int | None:
    try:
        pid = send(layout.socket_path, {"op": "ping"}, timeout=5)["pid"]
    except Exception:
        return None
    return pid if pid != other_than else None


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except OSError:
        return True


@pytest.mark.parametrize("restart", ["podnet up", "watchdog"])
def test_a_killed_supervisor_is_restarted_and_adopts_every_pod(cluster, restart):
    """`podnet up`: the watchdog and the supervisor are both killed, and a user restarts the
    supervisor; `watchdog`: the supervisor alone is killed, and its watchdog restarts it."""
    name, tmp = cluster
    layout = ClusterLayout(name)
    cluster_ip = {s["metadata"]["name"]: s for s in json.loads(
        podnet("get", "svc", "-o", "json", "--name", name).stdout)["items"]}["web"]["spec"]["clusterIP"]
    before = seen(name)
    web_slice = slice_version(name, "web")
    events = event_names(name)
    all_pods = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in json.loads(
        podnet("get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]}
    processes = {ref: netns_pids(layout.pod_netns(*ref)) for ref in all_pods
                 if Path(f"/run/netns/{layout.pod_netns(*ref)}").exists()}
    assert processes and all(processes.values())
    stop = tmp / "stop"
    client = Client(name, "default/client", cluster_ip, 80, "web", str(stop))
    killed = None
    try:
        wait_for(lambda: client.successes() >= 10 or client.errors(), 120, "the client answered")
        supervisor = send(layout.socket_path, {"op": "ping"}, timeout=10)["pid"]
        if restart == "podnet up":
            watchdog = int((layout.state_dir / "watchdog.pid").read_text().split()[0])
            os.kill(watchdog, signal.SIGKILL)
            wait_for(lambda: gone(watchdog), 30, "the watchdog gone")
        killing = time.monotonic()
        os.kill(supervisor, signal.SIGKILL)
        if restart == "watchdog":
            wait_for(lambda: supervisor_answering(layout, supervisor), 120, "a new supervisor answering")
            print(f"\nSIGKILL to a re-adopting supervisor answering (watchdog): {time.monotonic() - killing:.2f}s")
        else:
            wait_for(lambda: gone(supervisor), 30, "the supervisor gone")
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
            # pods the dead supervisor started but had not recorded yet (it died in an apply)
            [hostorphan] = [p for p in record["pods"] if p["name"] == "hostorphan"]
            host_pids = [e["pid"] for e in [hostorphan["pause"], *(c["process"] for c in hostorphan["containers"])]]
            record["pods"] = [p for p in record["pods"] if p["name"] not in ("orphan", "hostorphan")]
            record["bodies"] = [b for b in record["bodies"] if b["metadata"]["name"] not in ("orphan", "hostorphan")]
            (layout.state_dir / "running.json").write_text(json.dumps(record))
            # the kernel's rules keep serving while the supervisor is down
            mark = len(client.answers)
            wait_for(lambda: client.successes(mark) >= 20 or client.errors(), 120, "answers with no supervisor")
            restarting = time.monotonic()
            restarted = podnet("up", "--name", name, timeout=180)
            print(f"\nrestart command to answering supervisor: {time.monotonic() - restarting:.2f}s; podnet up said: "
                  f"{restarted.stdout.strip()}")
            assert "running pods re-adopted" in restarted.stdout, restarted.stdout
        # every pod as it was: its processes (but lone's killed container), address, uid, restarts
        after = seen(name)
        assert after.keys() == before.keys()
        changed = {"lone", "orphan", "hostorphan"} if killed is not None else set()
        for pod, was in before.items():
            if pod not in changed:
                assert after[pod] == was, pod
        for ref, pids in processes.items():
            if ref[1] not in changed:
                assert pids <= netns_pids(layout.pod_netns(*ref)), ref  # (the client pod also runs the client)
        if killed is not None:
            # the unrecorded pod was removed and started again: new processes, no address lost
            wait_for(lambda: all_ready(name, "default"), 120, "every pod Ready again")
            assert not processes[("default", "orphan")] & netns_pids(layout.pod_netns("default", "orphan"))
            # the unrecorded hostNetwork pod's processes were stopped, and it was started again
            assert all(gone(pid) for pid in host_pids), [pid for pid in host_pids if not gone(pid)]
            [hostorphan] = [p for p in json.loads((layout.state_dir / "running.json").read_text())["pods"]
                            if p["name"] == "hostorphan"]
            assert hostorphan["containers"][0]["process"]["pid"] not in host_pids
            for node in ("node1", "node2"):
                reserved = sorted(p.name for p in (layout.ipam_dir(node) / CNI_NETWORK).iterdir() if p.name[0].isdigit())
                holders = sorted(p["status"]["podIP"] for p in json.loads(podnet(
                    "get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]
                    if p["spec"].get("nodeName") == node and not p["spec"].get("hostNetwork"))
                assert reserved == holders, node
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
        # and so does the ingress controller: the Ingress applied after the restart serves
        wait_for(lambda: through_ingress(name, lb_ip(name)), 120, "the new Ingress serving")
        mark = len(client.answers)
        wait_for(lambda: client.successes(mark) >= 10 or client.errors(), 120, "answers after the restart")
        assert events and events <= event_names(name)  # the events said before the crash are still there
        # web's endpoints never flipped: kubelet's readiness was carried over, not probed anew from false
        assert slice_version(name, "web") == web_slice
        log = (layout.state_dir / "supervisor.log").read_text()
        assert "pods re-adopted" in log and "Traceback" not in log, log[-3000:]
    finally:
        stop.write_text("")
        client.finish()
    assert client.errors() == [], client.errors()[:10]
    assert client.successes() > 0
