"""A configuration push after an endpoint change, until every one of 100 meshed proxies has it.

    sudo PYTHONPATH=src .venv/bin/python bench/mesh_push.py [--pods 100] [--pushes 5] [--batch 10]
        [--detect log|poll] [--interval 5] [--as-podnet]

Root only. Issue 21's figure: configuration push after an endpoint change reaching every proxy
under 100 ms for 100 meshed pods.

The model: a namespace labelled istio-injection with a Deployment `app` of --pods replicas
(containerPort 8080) and a Service `app` (80 → 8080, `http`) selecting them, so every proxy has
that Service's cluster with all the pods as endpoints (in the cluster's endpoints file, EDS),
and one endpoint change touches every proxy. Each pod gets a network namespace of its own (loopback only: no
traffic flows, Envoy only needs 127.0.0.1), its proxy's identity and files from a ProxyAgent
(mesh/agent.py, held by a MeshProxies as the supervisor holds them), and its Envoy, started
--batch at a time, each batch ready (15021) before the next.

How the Envoys run: each Envoy holds an inotify instance per watched file (~6, and one per
Service port's endpoints file) and the
kernel allows a uid fs.inotify.max_user_instances of them (128 by default, a host setting this
benchmark must not change), so podnet runs each proxy as a uid of its own in group 1337
(mesh/interception.proxy_uid). By default this benchmark starts each Envoy with pilot_agent's
own Envoy command line (binary, bootstrap, --concurrency 2, log level and format) as the pod's
proxy uid, files from MeshProxies.prepare, without pilot_agent around it and without the
capture (no traffic here), which
saves the 100 agents' memory; configuration, files and push are podnet's. --as-podnet runs every
sidecar exactly as podnet does (MeshProxies.prepare with the capture, `python -m
podnet.mesh.pilot_agent proxy sidecar …` in the pod's namespace, Envoy as the pod's proxy uid).

The change: the control plane computes the cluster again with the last pod not ready
(compute's live_readiness, kubelet's word), which takes its address out of the Service's
endpoints; the next push makes it ready again (--pushes alternate the two states). The push is
podnet's own, MeshProxies.push (the endpoints files, the same for every proxy, written once —
here the Service's — then each agent's sync: render, compare, write the changed files: none
here), the moment of each proxy's
rename stamped (os.replace wrapped in this process for the push). t0 is the start of the push
(the cluster's compute is timed apart). Before each push, the same push to copies of the files
that no Envoy watches gives the control plane's time without the Envoys competing for the CPU.

When a proxy has the change (--detect):
- log (the default): each Envoy's `upstream` logger set to debug through its admin once, before
  the pushes; Envoy then logs, with microsecond wall-clock stamps (pilot_agent's log format),
  "EDS hosts or locality weights changed for cluster: …" once the cluster's hosts are the new
  ones (what the cluster's update_success counts). Nothing asks the Envoys anything while the
  push is under way.
- poll (the brief's first idea): a poller process (this file's `poll` mode) holds a keep-alive
  connection to each Envoy's admin (127.0.0.1:15000 in each pod's namespace, the sockets opened
  there with podnet.host.netns.socket_in_netns) and asks each proxy for its counters again
  --interval ms after each answer still showing the old ones, until the Service cluster's
  `update_success` grew; a proxy's time is the answer's arrival. It disturbs what it measures:
  each question costs that Envoy ~0.1 ms of CPU (/stats?usedonly, ~0.6 ms without usedonly) on
  the thread that applies the change, and on 2 cores 100 proxies polled every few ms take a
  good part of the machine; an answer to a question asked during the apply waits for it.
After each push, every proxy's admin is asked once (outside the timing) whether its Service
cluster has the expected number of endpoints.

Printed, medians over the pushes: the control plane's part (render+write for all proxies, and
the same to unwatched files), the CPU the Envoys spent applying it, the time until the median
and the last proxy had it, the ratio of the last to the 100 ms goal, Envoy's own part (each
proxy's time from its file written to its cluster replaced), and how often each Envoy read each
of its files.

The peer, in the same run: the same change pushed to one proxy alone (its render+write, its
Envoy's apply), the floor of a push: how much of the 100-proxy time is the number of proxies.
Istio publishes no convergence time for a comparable set-up to run beside it (istiod's
pilot_proxy_convergence_time is a metric, not a published figure).

Memory: RSS of all the Envoys (and pilot_agents with --as-podnet) and their PSS (shared pages,
the Envoy binary's and the interpreter's, counted once). On a 2-core machine, 100 Envoys, the
push (and the poller) share the two CPUs; the figures depend on it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from meshbench import SRC, BenchLayout, children, cpu_seconds, host_busy, http_in, machine, run, sidecar_process  # noqa: E402  (bench/meshbench.py: also puts src/ on the path)

GOAL = 100.0  # ms until every proxy has the change (issue 21), 100 pods
READY_DEADLINE = 60.0
WATCH_DEADLINE = 30.0  # s a push may take before it counts as failed
SERVICE_CLUSTER = "outbound|80||app.bench.svc.cluster.local"
# the Service cluster's endpoint (EDS) updates applied; the CDS updates applied; its endpoints
STATS = (f"cluster.{SERVICE_CLUSTER}.update_success", "cluster_manager.cds.update_success",
         f"cluster.{SERVICE_CLUSTER}.membership_total")
# Envoy's upstream logger at debug, once the cluster's hosts changed (EDS)
LOG_APPLIED = f"EDS hosts or locality weights changed for cluster: {SERVICE_CLUSTER}"
MODEL = """
apiVersion: v1
kind: Namespace
metadata: {{name: bench, labels: {{istio-injection: enabled}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app, namespace: bench}}
spec:
  replicas: {pods}
  selector: {{matchLabels: {{app: app}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec: {{containers: [{{name: app, image: nginx, ports: [{{containerPort: 8080}}]}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: bench}}
spec:
  selector: {{app: app}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


# -- Envoy's admin ---------------------------------------------------------------------------


def stats_path() -> str:
    pattern = "^(" + "|".join(name.replace(".", r"\.").replace("|", r"\|") for name in STATS) + ")$"
    return f"/stats?usedonly&filter={urllib.parse.quote(pattern)}"  # (usedonly: 5x cheaper for Envoy)


def _complete(buf: bytes) -> bytes | None:
    """The body once the whole answer is in (Content-Length or chunked), else None."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head, body = buf[:head_end].lower(), buf[head_end + 4:]
    if b"transfer-encoding: chunked" in head:
        if not body.endswith(b"0\r\n\r\n"):
            return None
        out, rest = b"", body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return out
            out, rest = out + rest[:size], rest[size + 2:]
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line.split(b":")[1])
            return body[:length] if len(body) >= length else None
    return body


def _values(body: bytes) -> tuple[int, ...]:
    found = dict(line.split(": ", 1) for line in body.decode().splitlines() if ": " in line)
    return tuple(int(found.get(name, "0")) for name in STATS)  # (usedonly: a counter never used is absent)


def admin(netns: str, path: str, method: str = "GET") -> bytes:
    """One request to the admin of the Envoy in `netns`: its body."""
    data = http_in(netns, "127.0.0.1", 15000, path, method)
    if not data.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the admin in {netns} answered {method} {path}: {data[:100]!r}")
    return _complete(data) or b""


def reads(netns: str) -> dict[str, int]:
    """How often the proxy in `netns` has read each of its watched resources (update_attempt)."""
    found = dict(line.split(": ", 1) for line in admin(netns, "/stats?filter=update_attempt").decode().splitlines()
                 if ": " in line)
    return {name: int(found.get(f"{name}.update_attempt", "0"))
            for name in (f"cluster.{SERVICE_CLUSTER}", "cluster_manager.cds", "listener_manager.lds", "sds.default",
                         "sds.ROOTCA")}


# -- the poller (--detect poll: a process of its own, not sharing the push's interpreter) -------


def poll(args: argparse.Namespace) -> None:
    """Commands on stdin: `watch NS…`: the counters read, `armed` printed, then every watched proxy
    asked until its Service cluster's update_success grew; a JSON line per watch (times: CLOCK_MONOTONIC ns)."""
    from podnet.host.netns import socket_in_netns

    names = args.netns.split(",")
    socks, by_fd = {}, {}
    for name in names:
        s = socket_in_netns(name, socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", 15000))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks[name], by_fd[s.fileno()] = s, name
    poller = select.epoll()
    for s in socks.values():
        poller.register(s.fileno(), select.EPOLLIN)
    request = f"GET {stats_path()} HTTP/1.1\r\nHost: admin\r\n\r\n".encode()
    buffers = dict.fromkeys(names, b"")

    def answer(name: str) -> tuple[int, ...] | None:
        """The counters, once `name`'s whole answer is in (None: not yet)."""
        data = socks[name].recv(65536)
        if not data:
            raise ConnectionError(f"the admin in {name} closed the connection")
        buffers[name] += data
        body = _complete(buffers[name])
        if body is None:
            return None
        buffers[name] = b""
        return _values(body)

    def ask_once(which) -> dict[str, tuple[int, ...]]:
        for name in which:
            socks[name].send(request)
        answers = {}
        while len(answers) < len(which):
            events = poller.poll(5.0)
            if not events:
                raise TimeoutError("an Envoy admin did not answer in 5 s")
            for fd, _ in events:
                values = answer(by_fd[fd])
                if values is not None:
                    answers[by_fd[fd]] = values
        return answers

    print("ready", flush=True)
    for line in sys.stdin:
        command, *which = line.split()
        if command != "watch":
            break
        baseline = ask_once(which)
        armed = time.perf_counter_ns()
        cpu_armed = time.process_time()
        print("armed", flush=True)
        # each proxy asked on its own: again `interval` after each answer with the old counters
        last_old = dict.fromkeys(which, armed)  # the latest question answered with the old counters
        next_ask = dict.fromkeys(which, armed)
        in_flight: dict[str, int] = {}
        applied: dict[str, tuple[int, int]] = {}
        questions = 0
        interval = int(args.interval * 1e6)
        while len(applied) < len(which) and time.perf_counter_ns() - armed < WATCH_DEADLINE * 1e9:
            now = time.perf_counter_ns()
            for name in which:
                if name not in applied and name not in in_flight and next_ask[name] <= now:
                    in_flight[name] = time.perf_counter_ns()
                    socks[name].send(request)
                    questions += 1
            waiting = [next_ask[n] for n in which if n not in applied and n not in in_flight]
            timeout = max(0.0, (min(waiting) - time.perf_counter_ns()) / 1e9) if waiting else 0.05
            for fd, _ in poller.poll(timeout):
                name = by_fd[fd]
                values = answer(name)
                if values is None:
                    continue
                answered, sent = time.perf_counter_ns(), in_flight.pop(name)
                if values[0] > baseline[name][0]:
                    applied[name] = (last_old[name], answered)
                else:
                    last_old[name], next_ask[name] = sent, answered + interval
        for name in list(in_flight):  # (the answers to questions still out, read before the next watch)
            while answer(name) is None:
                pass
        wall = (time.perf_counter_ns() - armed) / 1e9
        print(json.dumps({"applied": applied, "questions": questions,
                          "cpu": (time.process_time() - cpu_armed) / wall}), flush=True)


class PollWatch:
    """--detect poll: the poller process's answers."""

    def __init__(self, netns: list[str], interval: float):
        self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "poll", "--netns",
                                         ",".join(netns), "--interval", str(interval)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "PYTHONPATH": str(SRC)})
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the poller did not start")

    def arm(self, netns: list[str]) -> None:
        self.process.stdin.write("watch " + " ".join(netns) + "\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "armed":
            raise RuntimeError("the poller is not armed")

    def collect(self, t0: int, t0_wall: int) -> tuple[dict[str, dict], dict]:
        """Per proxy, ns after t0: `applied` (and `asked`, its question before, which still had
        the old counters); the poller's own figures."""
        result = json.loads(self.process.stdout.readline())
        times = {ns: {"applied": answered - t0, "asked": before - t0} for ns, (before, answered) in result["applied"].items()}
        return times, {"questions": result["questions"], "poller_cpu": result["cpu"]}

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class LogWatch:
    """--detect log: each Envoy's EDS log line, stamped by Envoy itself."""

    def __init__(self, logs: dict[str, Path]):
        self.logs, self.offsets = logs, {}
        for ns in logs:  # (the upstream logger's debug lines: the hosts' changes; nothing else at rest)
            admin(ns, "/logging?upstream=debug", method="POST")

    def arm(self, netns: list[str]) -> None:
        self.offsets = {ns: self.logs[ns].stat().st_size for ns in netns}

    def collect(self, t0: int, t0_wall: int) -> tuple[dict[str, dict], dict]:
        """Per proxy, ns after t0: `applied` (the cluster's hosts changed)."""
        times: dict[str, dict] = {}
        deadline = time.monotonic() + WATCH_DEADLINE
        while len(times) < len(self.offsets) and time.monotonic() < deadline:
            time.sleep(0.02)
            for ns, offset in self.offsets.items():
                if ns in times:
                    continue
                with open(self.logs[ns], "rb") as log:
                    log.seek(offset)
                    lines = log.read().decode(errors="replace").splitlines()
                for line in lines:
                    if LOG_APPLIED in line:
                        times[ns] = {"applied": _log_time(line) - t0_wall}
                        break
        return times, {}

    def close(self) -> None:
        pass


def _log_time(line: str) -> int:
    """The wall-clock time (ns) of an Envoy log line in pilot_agent's format (…T…%fZ, UTC)."""
    stamp = datetime.datetime.strptime(line.split("\t", 1)[0], "%Y-%m-%dT%H:%M:%S.%fZ")
    whole = int(stamp.replace(microsecond=0, tzinfo=datetime.timezone.utc).timestamp())
    return whole * 1_000_000_000 + stamp.microsecond * 1000


# -- the pods ----------------------------------------------------------------------------------


def healthy(netns: str) -> bool:
    from podnet.host.netns import socket_in_netns

    s = socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(("127.0.0.1", 15021))
        s.sendall(b"GET /healthz/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Rss:"):
            rss = int(line.split()[1])
        elif line.startswith("Pss:"):
            pss = int(line.split()[1])
    return rss, pss


@dataclass
class Sidecar:
    netns: str
    log: Path
    process: subprocess.Popen  # what was started (`ip netns exec` execs it: same pid)
    envoy_pid: int = 0
    agent_pid: int = 0  # pilot_agent's, with --as-podnet


def start_sidecar(pod, netns: str, directory: Path, log: Path) -> Sidecar:
    process = sidecar_process(pod, netns, directory, log)
    return Sidecar(netns, log, process, agent_pid=process.pid)


def start_envoy(netns: str, directory: Path, uid: int, log: Path) -> Sidecar:
    """Envoy as pilot_agent starts it (its argv: binary, bootstrap, --concurrency 2, log level and
    format), but as `uid`."""
    from podnet.mesh.interception import PROXY_GID, PROXY_UID
    from podnet.mesh.pilot_agent import envoy_argv

    argv = [{f"--reuid={PROXY_UID}": f"--reuid={uid}", f"--regid={PROXY_GID}": f"--regid={uid}"}.get(word, word)
            for word in envoy_argv(directory, "warning")]
    with open(log, "ab") as out:
        process = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdout=out, stderr=out)
    return Sidecar(netns, log, process, envoy_pid=process.pid)


# -- the benchmark -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    watcher = sub.add_parser("poll", help="(internal) the poller of the Envoys' admins")
    watcher.add_argument("--netns", required=True)
    watcher.add_argument("--interval", type=float, required=True)
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--pushes", type=int, default=5, help="pushes to all (and as many to one proxy alone)")
    parser.add_argument("--batch", type=int, default=10, help="Envoys started at a time")
    parser.add_argument("--detect", choices=("log", "poll"), default="log",
                        help="when a proxy has the change: its Envoy's log stamps, or its admin asked again and again")
    parser.add_argument("--interval", type=float, default=5.0,
                        help="--detect poll: ms between a proxy's answer and the next question")
    parser.add_argument("--as-podnet", action="store_true",
                        help="every sidecar as podnet runs it (pilot_agent, uid 1337): fits only as many as "
                             "fs.inotify.max_user_instances allows uid 1337")
    args = parser.parse_args()
    if args.mode == "poll":
        poll(args)
        return
    if os.geteuid() != 0:
        sys.exit("root only: it makes network namespaces")
    bench(args)


def ms(ns: float) -> float:
    return ns / 1e6


def bench(args: argparse.Namespace) -> None:
    from podnet.api.loader import parse_texts
    from podnet.api.store import admit
    from podnet.config import ClusterConfig
    from podnet.controlplane import compute
    from podnet.linux.meshproxies import MeshProxies
    from podnet.mesh.interception import proxy_uid

    store = admit(parse_texts({"bench.yaml": MODEL.format(pods=args.pods)}))
    config = ClusterConfig()
    cluster = compute(store, config)
    pods = sorted(cluster.of_kind("Pod", "bench"), key=lambda p: p.name)
    flipped = pods[-1].name
    tag = secrets.token_hex(3)
    netns = {pod.name: f"mb{tag}p{i:03d}" for i, pod in enumerate(pods)}
    made: list[str] = []
    sidecars: list[Sidecar] = []
    watch = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # (the finally below runs on a kill too)
    print(f"machine: {machine()}", flush=True)
    base = Path(tempfile.mkdtemp(prefix="podnet-mesh-push-"))
    try:
        os.chmod(base, 0o755)  # the proxies' users reach their files through it
        started = time.monotonic()
        for name in netns.values():
            run("ip", "netns", "add", name)
            made.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        proxies = MeshProxies(BenchLayout(cluster="bench", root=base))
        for index, pod in enumerate(pods):
            if args.as_podnet:  # identity, files, capture: the supervisor's step before each pod starts
                proxies.prepare(pod, cluster, netns[pod.name])
            else:  # the same without the capture (no traffic here)
                proxies.prepare(pod, cluster, None)
        for first in range(0, len(pods), args.batch):
            batch = pods[first:first + args.batch]
            for pod in batch:
                directory, log = proxies.layout.mesh_proxy_dir("bench", pod.name), base / f"{pod.name}.log"
                sidecars.append(start_sidecar(pod, netns[pod.name], directory, log) if args.as_podnet
                                else start_envoy(netns[pod.name], directory, proxy_uid(f"bench/{pod.ref}"), log))
            limit = time.monotonic() + READY_DEADLINE
            for pod in batch:
                while not healthy(netns[pod.name]):
                    if time.monotonic() > limit or sidecars[pods.index(pod)].process.poll() is not None:
                        log = (base / f"{pod.name}.log").read_text()[-2000:]
                        raise RuntimeError(f"the sidecar of {pod.name} is not ready:\n{log}")
                    time.sleep(0.1)
        for sidecar in sidecars:
            if sidecar.agent_pid:
                envoys = children(sidecar.agent_pid)
                if len(envoys) != 1:
                    raise RuntimeError(f"pilot_agent in {sidecar.netns} has children {envoys}, one Envoy expected")
                sidecar.envoy_pid = envoys[0]
        print(f"{len(pods)} meshed pods, each its namespace, identity, files and "
              f"{'capture and sidecar (pilot_agent, Envoy as the proxy uid of its pod)' if args.as_podnet else 'Envoy (uid of its own)'}: "
              f"ready in {time.monotonic() - started:.1f} s; detecting the change by "
              f"{'the Envoys’ log stamps' if args.detect == 'log' else f'asking the admins every {args.interval:g} ms'}",
              flush=True)
        time.sleep(2.0)  # (the last Envoys' start-up work settled)

        all_netns = [netns[p.name] for p in pods]
        watch = (LogWatch({s.netns: s.log for s in sidecars}) if args.detect == "log"
                 else PollWatch(all_netns, args.interval))

        def not_ready(pod):  # kubelet's word on the flipped pod; the offline rule for the others
            return False if pod.name == flipped else None

        # the control plane's work alone: the same push to copies of the files no Envoy watches
        unwatched = MeshProxies(BenchLayout(cluster="bench", root=base / "unwatched"))
        for pod in pods:
            unwatched.prepare(pod, cluster, None)
        envoy_pids = [s.envoy_pid for s in sidecars]
        full, alone, ready = [], [], True
        for _ in range(args.pushes):
            ready = not ready
            began = time.perf_counter_ns()
            target = compute(store, config, live_readiness=None if ready else not_ready)
            computed = time.perf_counter_ns() - began
            began = time.perf_counter_ns()
            unwatched.push(target)
            quiet = time.perf_counter_ns() - began
            time.sleep(0.5)  # (the page cache's writeback of those files out of the way)
            result = push(proxies, target, watch, all_netns, [p.ref for p in pods], envoy_pids)
            full.append({"compute": computed, "unwatched": quiet, **result})
            confirm(all_netns, args.pods if ready else args.pods - 1)
            time.sleep(0.5)  # (the Envoys settled before the next)
        # the peer: the same change to one proxy alone, its endpoints files where no other proxy
        # reads them (a first push, untimed, points its clusters there)
        one = pods[0].ref
        solo = MeshProxies(BenchLayout(cluster="bench", root=base / "solo"))
        solo.agents = {one: proxies.agents[one]}
        solo.push(compute(store, config, live_readiness=None if ready else not_ready))
        time.sleep(1.0)
        for _ in range(args.pushes):
            ready = not ready
            target = compute(store, config, live_readiness=None if ready else not_ready)
            alone.append(push(solo, target, watch, all_netns[:1], [one], envoy_pids[:1]))
            confirm(all_netns[:1], args.pods if ready else args.pods - 1)
            time.sleep(0.2)
        counts = [reads(ns) for ns in all_netns[1:]]  # (the first had the peer's pushes too)
        read = {name: statistics.median(c[name] for c in counts) for name in counts[0]}
        rss = pss = 0
        parts = {"agent": [0, 0], "envoy": [0, 0]}
        for sidecar in sidecars:
            for part, pid in (("agent", sidecar.agent_pid), ("envoy", sidecar.envoy_pid)):
                r, p = memory_kb(pid) if pid else (0, 0)
                parts[part][0] += r
                parts[part][1] += p
                rss, pss = rss + r, pss + p
        report(args, full, alone, rss, pss, parts, read)
    finally:
        if watch is not None:
            watch.close()
        for sidecar in sidecars:  # SIGTERM: each agent stops its Envoy (or Envoy itself)
            if sidecar.agent_pid and not sidecar.envoy_pid and sidecar.process.poll() is None:
                sidecar.envoy_pid = next(iter(children(sidecar.agent_pid)), 0)  # (killed below if still there)
            if sidecar.process.poll() is None:
                sidecar.process.terminate()
        for sidecar in sidecars:
            try:
                sidecar.process.wait(15)
            except subprocess.TimeoutExpired:
                sidecar.process.kill()
                sidecar.process.wait()
            if sidecar.envoy_pid and sidecar.agent_pid and Path(f"/proc/{sidecar.envoy_pid}").exists():
                try:
                    os.kill(sidecar.envoy_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def push(proxies, target, watch, netns: list[str], refs: list[str], envoy_pids: list[int]) -> dict:
    """MeshProxies.push of `target`, the moment each proxy's file goes into place stamped; when
    each proxy had it; the CPU the push and the Envoys used."""
    written: dict[str, int] = {}  # proxy directory -> its (last) file renamed into place
    rename = os.replace

    def stamped(source, target_path, *args, **kwargs):  # envoy.write_files puts each file in place with os.replace
        # (just before the rename: a stamp after it could come after the Envoy it woke had run)
        if Path(target_path).parent == proxies.layout.mesh_endpoints_dir:
            written["*"] = time.perf_counter_ns()  # an endpoints file every proxy reads
        else:  # a proxy's own file: in a directory of its own under the proxy's
            written[str(Path(target_path).parent.parent)] = time.perf_counter_ns()
        return rename(source, target_path, *args, **kwargs)

    watch.arm(netns)
    envoys_before, host_before = sum(cpu_seconds(pid) for pid in envoy_pids), host_busy()
    cpu_before = time.process_time()
    os.replace = stamped
    try:
        t0, t0_wall = time.perf_counter_ns(), time.time_ns()
        pushed = proxies.push(target)
        done = time.perf_counter_ns()
    finally:
        os.replace = rename
    pusher_cpu = time.process_time() - cpu_before
    times, extra = watch.collect(t0, t0_wall)
    envoys_cpu = sum(cpu_seconds(pid) for pid in envoy_pids) - envoys_before
    busy = (host_busy() - host_before) / ((time.perf_counter_ns() - t0) / 1e9)  # (others' work included)
    written = {ns: written.get(proxies.agents[ref].files.directory, written.get("*")) for ns, ref in zip(netns, refs)}
    missing = [ns for ns in netns if ns not in times]
    if missing:
        raise RuntimeError(f"{len(missing)} proxies did not show the change in {WATCH_DEADLINE:.0f} s (e.g. {missing[:3]})")
    if min(t["applied"] for t in times.values()) < 0:
        raise RuntimeError("a proxy had the change before the push began: clocks disagree")
    applied = [t["applied"] for t in times.values()]
    out = {"written": done - t0, "median": statistics.median(applied), "last": max(applied),
           "envoy": statistics.median(t["applied"] - (written[ns] - t0) for ns, t in times.items()),
           "files": sorted({name for changed in pushed.values() for name in changed}),
           "pushed": "all (a file every proxy reads)" if "*" in pushed and len(pushed) == 1 else len(pushed),
           "pusher_cpu": pusher_cpu * 1e9 / (done - t0), "envoys_cpu": envoys_cpu, "busy": busy, **extra}
    if all("asked" in t for t in times.values()):  # (poll: the question before, answered with the old counters)
        out["gap"] = statistics.median(t["applied"] - t["asked"] for t in times.values())
    return out


def confirm(netns: list[str], endpoints: int) -> None:
    """Every proxy's Service cluster has `endpoints` endpoints (asked after the timing)."""
    wrong = {}
    for ns in netns:
        values = _values(admin(ns, stats_path()))
        if values[2] != endpoints:
            wrong[ns] = values[2]
    if wrong:
        raise RuntimeError(f"{len(wrong)} proxies' {SERVICE_CLUSTER} lack the change: {dict(list(wrong.items())[:3])}, "
                           f"{endpoints} endpoints expected")


def report(args, full: list[dict], alone: list[dict], rss: int, pss: int, parts: dict, read: dict) -> None:
    def med(rows, key) -> float:
        return ms(statistics.median(r[key] for r in rows))

    print(f"\nendpoint change (the last pod's readiness flipped; {args.pushes} pushes alternating), "
          f"{args.pods} proxies; medians over the pushes:")
    print(f"  files written per push: {sorted({f for r in full for f in r['files']})} for "
          f"{sorted({str(r['pushed']) for r in full})} proxies; after each push every proxy's Service cluster had "
          f"{args.pods - 1} or {args.pods} endpoints as it should (asked after the timing)")
    print(f"  the control plane: compute {med(full, 'compute'):.1f} ms (before t0); render+write for all "
          f"{med(full, 'written'):.1f} ms (the pusher on the CPU {statistics.median(r['pusher_cpu'] for r in full):.0%} "
          f"of that time), the same push to unwatched copies of the files {med(full, 'unwatched'):.1f} ms")
    print(f"  the whole machine busy from t0 until the last proxy had it (others' work included): "
          f"{statistics.median(r['busy'] for r in full):.2f} of {os.cpu_count()} CPUs")
    print(f"  the Envoys' CPU to apply it: {statistics.median(r['envoys_cpu'] for r in full):.2f} s in all, "
          f"{statistics.median(r['envoys_cpu'] for r in full) / args.pods * 1e3:.1f} ms each "
          f"(one proxy alone: {statistics.median(r['envoys_cpu'] for r in alone) * 1e3:.1f} ms)")
    print(f"  every proxy has it: median proxy {med(full, 'median'):.1f} ms, last proxy {med(full, 'last'):.1f} ms "
          f"after t0 (each push's last: {', '.join(str(round(ms(r['last']))) for r in full)} ms)")
    if "gap" not in full[0]:
        print(f"  Envoy's own part, median proxy: file written -> {med(full, 'envoy'):.1f} ms -> the cluster's hosts "
              f"changed (one proxy alone: {med(alone, 'envoy'):.1f} ms)")
    else:
        print(f"  Envoy's own part, median proxy: file written -> {med(full, 'envoy'):.1f} ms -> answer showing the "
              f"change; that answer came {med(full, 'gap'):.1f} ms after the question before it "
              f"({statistics.median(r['questions'] for r in full):.0f} questions, the poller busy "
              f"{statistics.median(r['poller_cpu'] for r in full):.2f} CPU)")
    print("  each proxy read its files (median): " + ", ".join(f"{'endpoints' if name.startswith('cluster.') else name.split('.')[-1]} {n:.0f}x"
                                                    for name, n in read.items())
          + f" — at its start and at {args.pushes} pushes that wrote the Service's endpoints file only (each watched "
          f"file apart: Envoy rereads what changed)")
    last = med(full, "last")
    print(f"last proxy: {last:.1f} ms -> {last / GOAL:.2f}x the goal ({GOAL:.0f} ms for 100 pods) "
          f"({'met' if last < GOAL else 'NOT met'}{'' if args.pods == 100 else f', with {args.pods} pods'})")
    solo = med(alone, "last")
    print(f"peer, the same change to one proxy alone: render+write {med(alone, 'written'):.1f} ms, its Envoy has it "
          f"{solo:.1f} ms after t0; {args.pods} proxies / 1 proxy: {last / solo:.1f}x")
    if args.as_podnet:
        print(f"memory of the {args.pods} sidecars: RSS {rss / 1024:.0f} MB (pilot_agent {parts['agent'][0] / 1024:.0f} + "
              f"Envoy {parts['envoy'][0] / 1024:.0f}), PSS {pss / 1024:.0f} MB (pilot_agent "
              f"{parts['agent'][1] / 1024:.0f} + Envoy {parts['envoy'][1] / 1024:.0f}); per sidecar RSS "
              f"{rss / 1024 / args.pods:.1f} MB, PSS {pss / 1024 / args.pods:.1f} MB")
    else:
        print(f"memory of the {args.pods} Envoys (no pilot_agent beside them in this mode): RSS {rss / 1024:.0f} MB, "
              f"PSS {pss / 1024:.0f} MB; per Envoy RSS {rss / 1024 / args.pods:.1f} MB, PSS {pss / 1024 / args.pods:.1f} MB")


if __name__ == "__main__":
    main()
