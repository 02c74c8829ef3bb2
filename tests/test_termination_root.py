"""Pod termination on a real cluster (root only): a Deployment scaled down while clients keep
requesting through its Service (from a pod) and through the ingress controller (from
`external`), and not one request fails.

The pods run agnhost netexec with a preStop hook, as a Kubernetes user drains a server: the
removed pod turns Terminating and its endpoint `ready: false, terminating: true` in the apply, so
kube-proxy and nginx send it no new connection, while the hook keeps its process serving what it
already has; then SIGTERM, and netexec exits at once. The hook (exec, run in the pod) waits for a
file the test writes once it has seen all of that — Terminating, the endpoint, `trace` from the
pod and from `external` with every node's kernel and the ingress controller in sync — so the
order is the test's, not a race with a sleep. Each client opens a new connection per request and
says what came back, line by line, until a stop file appears. Waits have generous deadlines and
nothing asserts a duration; the cluster has a unique name and is removed in a finally, leaving
no namespace behind.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from podnet.host.layout import ClusterLayout
from tests.livecluster import AGNHOST, WEB_SERVICE, leftovers, netexec_deployment, pause_pod, podnet

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces


# web's grace period: far longer than any test here runs, so "not waited for" is told from
# "waited for" by a margin no loaded machine closes (a command that must end gets 600 s)
GRACE = 3600


def web(replicas: int, release: str) -> str:
    """web held in its preStop hook until the file `release` exists."""
    return netexec_deployment(replicas, pod_spec=f"terminationGracePeriodSeconds: {GRACE}", container=f"""
lifecycle:
  preStop: {{exec: {{command: [sh, -c, "while [ ! -e {release} ]; do sleep 0.1; done"]}}}}
""")


REST = WEB_SERVICE + """---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: nginx
  rules:
  - host: web.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
""" + pause_pod("client", "node1")

# One new connection per request to IP:PORT with a Host header, GET /hostname; one line per
# request ("ok NAME" or "err WHY"), until the stop file exists.
CLIENT = r"""
import os, socket, sys
ip, port, host, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
marked = False
while not os.path.exists(stop):
    if not marked and os.path.exists(stop + ".mark"):  # the test's "from now on": the answers after it began after
        marked = True
        print("mark", flush=True)
    try:
        s = socket.create_connection((ip, port), timeout=5)  # the kernel's handshake: a drop, not a stall
        s.settimeout(30)  # the answer comes from a Python server, which a loaded machine may stall
        s.sendall(f"GET /hostname HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split()[1:2]
        line = f"ok {body.decode().strip()}" if status == [b"200"] else f"err status {head[:60]!r}"
    except Exception as exc:
        line = f"err {type(exc).__name__}: {exc}"
    print(line, flush=True)
"""


class Client:
    """A request loop running in a pod or `external`, its answers collected as they come."""

    def __init__(self, cluster: str, where: str, ip: str, port: int, host: str, stop: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "podnet", "exec", where, "--name", cluster, "--", "python3", "-c", CLIENT,
             ip, str(port), host, stop], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.answers: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.answers.append(line.strip())

    def served_by(self, since: int = 0) -> set[str]:
        return {a[3:] for a in self.answers[since:] if a.startswith("ok ")}

    def marked(self, stop: str) -> int:
        """The number of answers before the client saw `stop`.mark (made now): every answer after
        it is to a request that began after this call."""
        Path(stop + ".mark").touch()
        wait_for(lambda: "mark" in self.answers, 120, "the client saw the mark")
        return self.answers.index("mark") + 1

    def successes(self, since: int = 0) -> int:
        return sum(1 for a in self.answers[since:] if a.startswith("ok "))

    def errors(self) -> list[str]:
        return [a for a in self.answers if not a.startswith("ok ") and a != "mark"]

    def finish(self) -> None:
        self.process.wait(timeout=120)
        self.reader.join(timeout=30)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.2)


def pods(cluster: str, namespace: str = "default") -> dict[str, dict]:
    items = json.loads(podnet("get", "pods", "-n", namespace, "-o", "json", "--name", cluster).stdout)["items"]
    return {p["metadata"]["name"]: p for p in items}


def in_sync_trace(cluster: str, source: str, target: str) -> dict | None:
    """`podnet trace` on the live cluster, once it reports every kernel and the controller in sync."""
    options = ["-p", "80"] if not target.startswith("http") else ["--resolve", "web.test:80:" + lb_ip(cluster)]
    proc = podnet("trace", source, target, *options, "-o", "json", "--name", cluster, check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def lb_ip(cluster: str) -> str:
    services = json.loads(podnet("get", "svc", "-n", "ingress-nginx", "-o", "json", "--name", cluster).stdout)["items"]
    [controller] = [s for s in services if s["metadata"]["name"] == "ingress-nginx-controller"]
    return controller["status"]["loadBalancer"]["ingress"][0]["ip"]


def all_ready(cluster: str, namespace: str) -> bool:
    found = pods(cluster, namespace)
    return bool(found) and all(any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
                               for p in found.values())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("termination")
    name = f"tg{secrets.token_hex(3)}"
    (tmp / "app.yaml").write_text(web(3, str(tmp / "release")) + REST)
    (tmp / "cluster.yaml").write_text(
        f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n"
        "networking: {overlay: vxlan, proxyMode: nftables}\n")
    started = False
    try:
        podnet("up", "-f", str(tmp / "app.yaml"), "--config", str(tmp / "cluster.yaml"), timeout=180)
        started = True
        wait_for(lambda: all_ready(name, "default") and all_ready(name, "ingress-nginx"), 180, "every pod Ready")
        yield name, tmp
    finally:
        if started or leftovers(name):
            podnet("down", "--name", name, check=False)
        assert leftovers(name) == [], f"left behind: {leftovers(name)}"
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"podnet-{name}." not in netns, netns


def test_scaling_down_loses_no_request_through_the_service_or_the_ingress(cluster):
    name, tmp = cluster
    services = {s["metadata"]["name"]: s for s in json.loads(
        podnet("get", "svc", "-A", "-o", "json", "--name", name).stdout)["items"]}
    cluster_ip = services["web"]["spec"]["clusterIP"]
    lb = lb_ip(name)
    before = set(pods(name))
    web_pods = {p for p in before if p.startswith("web-")}
    stop = tmp / "stop"
    clients = [Client(name, "default/client", cluster_ip, 80, "web", str(stop)),
               Client(name, "external", lb, 80, "web.test", str(stop))]
    try:
        # every pod answers through both paths, so the one that goes had traffic until it went
        for client in clients:
            wait_for(lambda c=client: c.served_by() >= web_pods or c.errors(), 120, "every pod answering")
        (tmp / "web.yaml").write_text(web(2, str(tmp / "release")))
        podnet("apply", "-f", str(tmp / "web.yaml"), "--name", name)
        # apply returned; the pod that goes is Terminating first, and its endpoint terminating
        now = pods(name)
        [leaving] = [p for p in web_pods if now[p]["metadata"].get("deletionTimestamp")]
        assert now[leaving]["metadata"]["deletionGracePeriodSeconds"] == GRACE
        listing = podnet("get", "pods", "--name", name).stdout
        assert any(line.split()[:1] == [leaving] and "Terminating" in line for line in listing.splitlines()), listing
        slices = json.loads(podnet("get", "endpointslices", "-o", "json", "--name", name).stdout)["items"]
        [endpoint] = [e for s in slices for e in s.get("endpoints") or []
                      if (e.get("targetRef") or {}).get("name") == leaving]
        assert endpoint["conditions"] == {"ready": False, "serving": True, "terminating": True}
        # trace on the live cluster agrees: the terminating pod is no candidate for new connections,
        # once every node's kube-proxy and the ingress controller hold the change (exit code 0)
        for source, target in (("default/client", "web"), ("external", "http://web.test/")):
            traced = wait_for(lambda s=source, t=target: in_sync_trace(name, s, t), 120, f"{target} in sync")
            assert {e.split("/")[-1] for e in traced["endpoints"]} == web_pods - {leaving}, traced
        assert leaving in pods(name)  # still there: its preStop hook holds it
        (tmp / "release").write_text("")  # the hook ends: SIGTERM, netexec exits, the pod goes
        wait_for(lambda: leaving not in pods(name), 120, f"{leaving} gone")
        marks = [len(c.answers) for c in clients]
        for client, mark in zip(clients, marks):
            wait_for(lambda c=client, m=mark: c.successes(m) >= 20 or c.errors(), 120, "answers after the pod went")
    finally:
        (tmp / "release").write_text("")
        stop.write_text("")
        for client in clients:
            client.finish()
    for client in clients:
        assert client.errors() == [], client.errors()[:10]
        assert client.successes() > 0
    events = podnet("get", "events", "--name", name).stdout
    assert any(leaving in line and "Killing" in line for line in events.splitlines()), events


HOOKED = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: hooked}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: hooked}}}}
  template:
    metadata: {{labels: {{app: hooked}}}}
    spec:
      terminationGracePeriodSeconds: 60
      containers:
      - name: c
        image: {AGNHOST}
        args: [netexec, --http-port=8080]
        lifecycle:
          preStop: {{httpGet: {{path: '/echo?msg=prestop', port: 8080}}}}
"""


def test_a_pre_stop_http_get_hook_reaches_the_pod_from_its_node(cluster):
    name, tmp = cluster
    (tmp / "hooked.yaml").write_text(HOOKED)
    podnet("apply", "-f", str(tmp / "hooked.yaml"), "--name", name)
    wait_for(lambda: [p for p in pods(name) if p.startswith("hooked-")] and all_ready(name, "default"), 120,
             "the hooked pod Ready")
    [pod] = [p for p in pods(name) if p.startswith("hooked-")]
    log = ClusterLayout(name).state_dir / "logs" / f"default_{pod}_c.log"
    podnet("delete", "-f", str(tmp / "hooked.yaml"), "--name", name)
    wait_for(lambda: pod not in pods(name), 120, f"{pod} gone")
    assert "GET /echo?msg=prestop" in log.read_text()  # netexec's own word: the hook's request came
    events = podnet("get", "events", "--name", name).stdout
    assert not any(pod in line and "FailedPreStopHook" in line for line in events.splitlines()), events


def test_down_while_a_pod_terminates_removes_everything_without_waiting_for_its_grace_period(cluster):
    name, tmp = cluster
    (tmp / "release").unlink(missing_ok=True)  # the next pod to go is held by its hook for its GRACE
    (tmp / "web.yaml").write_text(web(1, str(tmp / "release")))
    podnet("apply", "-f", str(tmp / "web.yaml"), "--name", name)
    wait_for(lambda: any(p["metadata"].get("deletionTimestamp") for p in pods(name).values()), 60, "a pod Terminating")
    hooks = wait_for(lambda: hook_processes(str(tmp / "release")), 60, "the preStop hook running")
    podnet("down", "--name", name, timeout=600)  # a bound far inside the grace period the hook would use
    assert leftovers(name) == [], leftovers(name)
    assert [pid for pid in hooks if alive(pid)] == []  # the hook was stopped, not waited out


def test_a_supervisor_killed_mid_termination_leaves_nothing_half_done_for_down(tmp_path):
    """A supervisor killed while a pod drains (its watchdog's successor goes on with the
    termination, linux/supervisor/termination.py): `podnet down` removes the cluster by name,
    the pod being drained and its hook included."""
    name = f"tk{secrets.token_hex(3)}"
    release = tmp_path / "release"  # never written: the hook holds the pod
    (tmp_path / "app.yaml").write_text(web(2, str(release)))
    (tmp_path / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 1\n")
    try:
        podnet("up", "-f", str(tmp_path / "app.yaml"), "--config", str(tmp_path / "cluster.yaml"), timeout=180)
        wait_for(lambda: all_ready(name, "default"), 180, "every pod Ready")
        (tmp_path / "web.yaml").write_text(web(1, str(release)))
        podnet("apply", "-f", str(tmp_path / "web.yaml"), "--name", name)
        wait_for(lambda: any(p["metadata"].get("deletionTimestamp") for p in pods(name).values()), 60, "a pod Terminating")
        hooks = wait_for(lambda: hook_processes(str(release)), 60, "the preStop hook running")
        [supervisor] = [int(pid) for pid in subprocess.run(["pgrep", "-f", f"podnet.linux.supervisor --name {name}$"],
                                                           capture_output=True, text=True).stdout.split()]
        os.kill(supervisor, signal.SIGKILL)
        podnet("down", "--name", name, timeout=600)  # a bound far inside the grace period
        assert leftovers(name) == [], leftovers(name)
        assert [pid for pid in hooks if alive(pid)] == []
    finally:
        if leftovers(name):
            podnet("down", "--name", name, check=False)


def hook_processes(marker: str) -> list[int]:
    """The processes whose command line names `marker` (the preStop hook's shell)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in open(f"/proc/{entry}/cmdline", "rb").read():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False
