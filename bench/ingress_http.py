"""HTTP through the ingress controller on a real cluster, against the same backend straight.

Root only. `podnet up` of examples/shop on two nodes (its Ingress sends shop.example.com/api to
the `backend` Deployment, / to `frontend`, both agnhost netexec), the backend scaled to one
replica so that every path ends at the same pod; then, with wrk (Debian package `wrk`):

- **through the ingress**: wrk in `external` (the LAN, 192.168.1.100) to the controller's
  LoadBalancer IP with `Host: shop.example.com`, path /api — the user's path: kube-proxy's DNAT
  on the node, nginx in the controller pod, nginx to the backend pod;
- **direct**: wrk in the controller pod itself to the backend pod's IP:8080, path /api. From
  `external` a pod IP is not routable, and the shop's NetworkPolicies admit the backend's
  traffic only from the frontend and the controller pod, so the controller pod is the one
  client that reaches the pod the way nginx does (same node, same route, same policy);
- **nginx alone**: wrk in the controller pod to its own nginx on 127.0.0.1:80 with the Host
  header — the same client place as "direct", so the difference is nginx's proxying only.

Throughput: 32 connections, keep-alive, `--threads 2`; latency: one connection (p50 of requests
one after another, wrk --latency). Then the endpoint change (with `--pre-stop N` the frontend
first gets a preStop `sleep` of N s, as Kubernetes users drain a server on scale-down): a client in `external` requests
/hostname (served by `frontend`, each reply its pod's name) on a new connection each time, while
the frontend Deployment is scaled 3 → 4; the time from the supervisor publishing the
EndpointSlice with the new pod ready (a `watch` on its control socket, as the controller's)
until the first reply from the new pod through nginx. Requests that fail meanwhile (and while
it is scaled back) are counted. Issue 17's goals: ≥ 0.8× direct requests/s, p50 overhead
< 1 ms, an endpoint change served within 200 ms.

    apt-get install wrk   # the prerequisite (`make bench` installs it)
    sudo PYTHONPATH=src .venv/bin/python bench/ingress_http.py [--seconds 5] [--rounds 3] [--pre-stop 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from podnet.errors import PodnetError  # noqa: E402
from podnet.host.control import send  # noqa: E402
from podnet.host.layout import ClusterLayout  # noqa: E402
from tests.livecluster import leftovers, podnet  # noqa: E402

LB = "192.168.1.200"  # the controller Service's LoadBalancer IP (the first of the pool)
HOST = "shop.example.com"
DEADLINE = 180.0  # generous waits: a loaded machine is slow, not wrong

# runs in `external`: GET /hostname on a new connection each time (a reload's new workers take
# new connections), every 5 ms or so; one line per reply
CLIENT = r"""
import http.client, sys, time
end = time.time() + float(sys.argv[1])
while time.time() < end:
    try:
        c = http.client.HTTPConnection("%s", 80, timeout=5)
        c.request("GET", "/hostname", headers={"Host": "%s"})
        r = c.getresponse()
        body = r.read().decode().strip()
        print(time.time(), r.status, body if r.status == 200 else "-", flush=False)
        c.close()
    except Exception as exc:
        print(time.time(), 0, type(exc).__name__, exc)
    time.sleep(0.005)  # ~150/s: new connections faster than this run out of ports in TIME_WAIT
sys.stdout.flush()
""" % (LB, HOST)


def pods(name: str, namespace: str) -> list[dict]:
    return json.loads(podnet("get", "pods", "-n", namespace, "-o", "json", "--name", name).stdout)["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions", []))


def wait_for(what: str, check, limit: float = DEADLINE):
    deadline = time.monotonic() + limit
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.3)


def scale(name: str, manifest: Path, deployment: str, replicas: int, tmp: Path) -> None:
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == deployment:
            doc["spec"]["replicas"] = replicas
    changed = tmp / manifest.name
    changed.write_text(yaml.safe_dump_all(docs))
    podnet("apply", "-f", str(changed), "--name", name)


def all_ready(name: str, namespace: str, prefix: str, count: int) -> list[dict] | None:
    found = [p for p in pods(name, namespace) if p["metadata"]["name"].startswith(prefix)]
    return found if len(found) == count and all(ready(p) for p in found) else None


# -- wrk ------------------------------------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(name: str, where: str, url: str, connections: int, seconds: int, host: str | None) -> dict:
    argv = ["wrk", f"--threads={min(2, connections)}", f"--connections={connections}",
            f"--duration={seconds}s", "--latency", *(["-H", f"Host: {host}"] if host else []), url]
    out = podnet("exec", where, "--name", name, "--", *argv, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"\n\s+50%\s+([\d.]+)(us|ms|s)\n", out).groups()
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50_ms": float(value) * UNITS[unit], "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": sum(map(int, errors.groups())) if errors else 0}


# -- the endpoint change ------------------------------------------------------------------------------

class SliceWatcher:
    """The supervisor's state, followed as the controller follows it (`watch`, then `objects`):
    the frontend pods that are ready endpoints now, and when each became one (time.time() of
    the watch's answer). Pod names are deterministic: a pod scaled away and back has its old name."""

    def __init__(self, socket_path: Path):
        self.path = socket_path
        self.ready_now: set[str] = set()
        self.became_ready: dict[str, float] = {}
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        generation = -1
        while not self.stopping.is_set():
            try:
                generation = send(self.path, {"op": "watch", "after": generation, "timeout": 1.0})["generation"]
                answered = time.time()
                reply = send(self.path, {"op": "objects"})
            except (OSError, PodnetError) as exc:  # counted and shown: the controller meets the same socket
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.05)
                continue
            generation = reply["generation"]
            ready = set()
            for item in reply["items"]:
                if item["kind"] != "EndpointSlice" or item["metadata"].get("namespace") != "shop":
                    continue
                if item["metadata"].get("labels", {}).get("kubernetes.io/service-name") != "frontend":
                    continue
                for endpoint in item.get("endpoints") or []:
                    pod = (endpoint.get("targetRef") or {}).get("name")
                    if pod and (endpoint.get("conditions") or {}).get("ready"):
                        ready.add(pod)
            for pod in ready - self.ready_now:
                self.became_ready[pod] = answered
            self.ready_now = ready


def with_pre_stop(manifest: Path, deployment: str, seconds: int, tmp: Path) -> Path:
    """`manifest` with a preStop `sleep` hook (KEP-3960) on the Deployment's containers: how a
    Kubernetes user lets a server finish what is on its way while the endpoint change spreads."""
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == deployment:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                container["lifecycle"] = {"preStop": {"sleep": {"seconds": seconds}}}
    changed = tmp / manifest.name
    changed.write_text(yaml.safe_dump_all(docs))
    return changed


def endpoint_change(name: str, tmp: Path, rounds: int, frontend: Path) -> dict:
    watcher = SliceWatcher(ClusterLayout(name).socket_path)
    watcher.thread.start()
    wait_for("the watcher's first reading", lambda: len(watcher.ready_now) >= 3)
    seconds = rounds * 40 + 10  # a round takes 20-30 s on a loaded 2-core machine
    client = subprocess.Popen([sys.executable, "-m", "podnet", "exec", "external", "--name", name, "--",
                               "python3", "-c", CLIENT, str(seconds)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(client.stdout), daemon=True)
    reader.start()
    time.sleep(2)
    changes = []  # (pod, when it became a ready endpoint)
    scaled_down: list[float] = []
    for _ in range(rounds):
        before = set(watcher.ready_now)
        scale(name, frontend, "frontend", 4, tmp)
        new = next(iter(wait_for("the new frontend pod ready", lambda: watcher.ready_now - before)))
        changes.append((new, watcher.became_ready[new]))
        time.sleep(3)  # replies from the new pod meanwhile
        scaled_down.append(time.time())
        scale(name, frontend, "frontend", 3, tmp)
        wait_for("frontend back to 3", lambda: len(watcher.ready_now) == 3 and all_ready(name, "shop", "frontend-", 3))
        time.sleep(2)
    client.wait(seconds + 60)
    reader.join(10)
    watcher.stopping.set()
    replies = [line.strip().split(maxsplit=2) for line in lines if line.strip()]
    failed = [r for r in replies if r[1] != "200"]
    delays = []
    for pod, published in changes:
        # the same name answered in an earlier round: only replies after this round's publication count
        first = min((float(t) for t, status, body in replies if body == pod and float(t) > published - 1), default=None)
        delays.append(None if first is None else (first - published) * 1e3)
    # when each failed request was sent (its line is written when it failed, after the client's
    # 5 s time-out) relative to the last scale-down before it
    def since_scale_down(failure: list[str]) -> str:
        sent = float(failure[0]) - (5 if failure[2].startswith("TimeoutError") else 0)
        last = max((t for t in scaled_down if t <= sent), default=None)
        return "before any scale-down" if last is None else f"{sent - last:.2f} s after a scale-down"

    return {"delays_ms": delays, "published": [published for _, published in changes],
            "requests": len(replies), "failed": len(failed),
            "failures": [f"{' '.join(r[1:])} ({since_scale_down(r)})" for r in failed[:5]],
            "socket_errors": watcher.errors}


def controller_posts(log: str) -> list[float]:
    """When the controller posted endpoints to nginx's balancer (its log's local timestamps)."""
    found = []
    for line in log.splitlines():
        if "Dynamic reconfiguration succeeded" in line:
            stamp, millis = line[:23].split(",")
            found.append(time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1e3)
    return found


def controller_log(name: str, controller: str) -> str:
    return podnet("logs", controller, "--name", name).stdout


def controller_reloads(log: str) -> list[str]:
    return [line for line in log.splitlines() if "reloaded" in line or "Error reloading" in line]


STATIC_HOST = "static.example.com"
# a backend in C beside the Python one: the host's nginx as an `nginx` image runs it, in a
# namespace of its own (the shop's NetworkPolicies deny by default), behind an Ingress host
STATIC = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: bench}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: static, namespace: bench}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: static}}}}
  template:
    metadata: {{labels: {{app: static}}}}
    spec:
      containers: [{{name: nginx, image: "nginx:1.27", ports: [{{containerPort: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: static, namespace: bench}}
spec: {{selector: {{app: static}}, ports: [{{port: 80}}]}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: static, namespace: bench}}
spec:
  ingressClassName: nginx
  rules:
  - host: {STATIC_HOST}
    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: static, port: {{number: 80}}}}}}}}]}}
"""


def start_static_backend(name: str, tmp: Path) -> dict:
    (tmp / "static.yaml").write_text(STATIC)
    podnet("apply", "-f", str(tmp / "static.yaml"), "--name", name)
    pod = wait_for("the nginx-image pod Ready", lambda: all_ready(name, "bench", "static-", 1))[0]
    wait_for("the ingress serving it", lambda: podnet(
        "exec", "external", "--name", name, "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
        "-H", f"Host: {STATIC_HOST}", f"http://{LB}/", check=False).stdout == "200")
    return pod


PLAIN_PORT = 18080


@contextlib.contextmanager
def plain_nginx_proxy(name: str, where: str, backend_ip: str, tmp: Path):
    """The peer: the host's nginx in the controller pod with the smallest hand-written reverse
    proxy to the same pod (an upstream with keep-alive, no Lua, no headers added, no log), so
    what podnet's controller adds to nginx's own cost shows."""
    run = tmp / "plain-nginx"
    run.mkdir()
    (run / "nginx.conf").write_text(f"""
worker_processes auto;
pid {run}/nginx.pid;
error_log {run}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {run}/body; proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi; uwsgi_temp_path {run}/uwsgi; scgi_temp_path {run}/scgi;
    upstream backend {{ server {backend_ip}:80; keepalive 320; }}
    server {{
        listen 127.0.0.1:{PLAIN_PORT};
        location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    }}
}}
""")
    proxy = subprocess.Popen([sys.executable, "-m", "podnet", "exec", where, "--name", name, "--", "nginx",
                              "-c", str(run / "nginx.conf"), "-p", str(run), "-g", "daemon off; user root;"],
                             env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        wait_for("the plain nginx proxy", lambda: podnet(
            "exec", where, "--name", name, "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
            f"http://127.0.0.1:{PLAIN_PORT}/", check=False).stdout == "200")
        yield
    finally:
        proxy.terminate()
        proxy.wait(30)


def throughput_table(backend: str, name: str, pairs: dict[str, tuple[str, str, str | None]], seconds: int) -> None:
    """wrk on each (client, URL, Host) pair: 32 connections for throughput, 1 for the p50."""
    results = {label: {"throughput": wrk(name, client, url, 32, seconds, host),
                       "latency": wrk(name, client, url, 1, seconds, host)}
               for label, (client, url, host) in pairs.items()}
    direct = results["direct (controller pod → backend pod)"]
    print(f"\nbackend: {backend}")
    print(f"{'path':55} {'req/s (32 conns)':>16} {'× direct':>9} {'p50 1 conn':>11} {'overhead':>9}")
    for label, result in results.items():
        rps, p50 = result["throughput"]["rps"], result["latency"]["p50_ms"]
        print(f"{label:55} {rps:16,.0f} {rps / direct['throughput']['rps']:9.2f} {p50:9.3f}ms "
              f"{p50 - direct['latency']['p50_ms']:+7.3f}ms")
    bad = {label: (r["throughput"]["non2xx"] + r["latency"]["non2xx"],
                   r["throughput"]["socket_errors"] + r["latency"]["socket_errors"]) for label, r in results.items()}
    print("non-2xx / socket errors: " + ", ".join(f"{label.split(' (')[0]} {n}/{e}" for label, (n, e) in bad.items()))
    through = results["through the ingress (external → LB → nginx → pod)"]
    ratio = through["throughput"]["rps"] / direct["throughput"]["rps"]
    overhead = through["latency"]["p50_ms"] - direct["latency"]["p50_ms"]
    print(f"goal ≥ 0.8× direct: {ratio:.2f}× {'met' if ratio >= 0.8 else 'NOT met'}; "
          f"goal p50 overhead < 1 ms: {overhead:.3f} ms {'met' if overhead < 1 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="endpoint changes timed")
    parser.add_argument("--pre-stop", type=int, default=0, metavar="SECONDS",
                        help="give the frontend a preStop sleep of SECONDS before the endpoint changes "
                             "(0: as examples/shop has it, none)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="podnet-bench-ingress-"))
    name = f"ib{secrets.token_hex(3)}"
    (tmp / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n")
    started = False
    try:
        podnet("up", "-f", str(ROOT / "examples" / "shop"), "--config", str(tmp / "cluster.yaml"), timeout=300)
        started = True
        scale(name, ROOT / "examples" / "shop" / "backend.yaml", "backend", 1, tmp)
        controller = wait_for("the controller Ready", lambda: all_ready(name, "ingress-nginx", "ingress-nginx-controller-", 1))[0]
        backend = wait_for("one backend Ready", lambda: all_ready(name, "shop", "backend-", 1))[0]
        wait_for("frontends Ready", lambda: all_ready(name, "shop", "frontend-", 3))
        where = f"ingress-nginx/{controller['metadata']['name']}"
        direct_url = f"http://{backend['status']['podIP']}:8080/api"
        print(f"cluster {name}: controller {where} on {controller['spec']['nodeName']}, "
              f"backend shop/{backend['metadata']['name']} {backend['status']['podIP']} on {backend['spec']['nodeName']}")
        wait_for("nginx serving the one backend", lambda: podnet(
            "exec", "external", "--name", name, "--", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
            "-H", f"Host: {HOST}", f"http://{LB}/api", check=False).stdout == "200")
        pairs = {
            "through the ingress (external → LB → nginx → pod)": ("external", f"http://{LB}/api", HOST),
            "nginx alone (controller pod → 127.0.0.1 nginx → pod)": (where, "http://127.0.0.1/api", HOST),
            "direct (controller pod → backend pod)": (where, direct_url, None),
        }
        throughput_table("the shop's backend (agnhost netexec /api, podnet's Python agnhost)", name, pairs,
                         args.seconds)
        static = start_static_backend(name, tmp)
        static_ip = static["status"]["podIP"]
        with plain_nginx_proxy(name, where, static_ip, tmp):
            throughput_table("an nginx-image pod (the host's nginx, its default page)", name, {
                "through the ingress (external → LB → nginx → pod)": ("external", f"http://{LB}/", STATIC_HOST),
                "nginx alone (controller pod → 127.0.0.1 nginx → pod)": (where, "http://127.0.0.1/", STATIC_HOST),
                "plain nginx proxy_pass (controller pod → 127.0.0.1 → pod)":
                    (where, f"http://127.0.0.1:{PLAIN_PORT}/", None),
                "direct (controller pod → backend pod)": (where, f"http://{static_ip}/", None),
            }, args.seconds)

        frontend = ROOT / "examples" / "shop" / "frontend.yaml"
        if args.pre_stop:
            frontend = with_pre_stop(frontend, "frontend", args.pre_stop, tmp)
            podnet("apply", "-f", str(frontend), "--name", name)  # a new template: three new pods
            wait_for("the frontends with the hook", lambda: (found := all_ready(name, "shop", "frontend-", 3)) and all(
                c.get("lifecycle") for p in found for c in p["spec"]["containers"]))
        reloads_before = len(controller_reloads(controller_log(name, where)))
        change = endpoint_change(name, tmp, args.rounds, frontend)
        log = controller_log(name, where)  # one reading for both
        reloads, posts = controller_reloads(log), controller_posts(log)
        posted = [min((t for t in posts if t >= published - 0.002), default=None) for published in change["published"]]
        delays = [d for d in change["delays_ms"] if d is not None]
        print("\nendpoint change (frontend 3 → 4), published → first reply from the new pod through nginx: "
              + ", ".join("never" if d is None else f"{d:.0f} ms" for d in change["delays_ms"])
              + (f" (median {statistics.median(delays):.0f} ms)" if delays else ""))
        print("of which published → the controller's POST to nginx's balancer: "
              + ", ".join("never" if t is None else f"{(t - published) * 1e3:.0f} ms"
                          for t, published in zip(posted, change["published"])))
        hook = f"a preStop sleep of {args.pre_stop} s" if args.pre_stop else "no preStop hook"
        print(f"nginx reloads meanwhile: {len(reloads) - reloads_before}; requests {change['requests']}, "
              f"failed {change['failed']} {change['failures']} (frontend with {hook})")
        if change["socket_errors"]:
            print(f"the bench's own watch of the control socket failed {len(change['socket_errors'])} times: "
                  f"{change['socket_errors'][:3]}")
            print((ClusterLayout(name).state_dir / "supervisor.log").read_text()[-3000:])
        if delays:
            print(f"goal < 200 ms: {'met' if max(delays) < 200 else 'NOT met'} (max {max(delays):.0f} ms)")
    finally:
        if started or leftovers(name):
            podnet("down", "--name", name, check=False, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)
        if leftovers(name):
            print(f"left behind: {leftovers(name)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
