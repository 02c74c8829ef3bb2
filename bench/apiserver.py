"""The API server with 10,000 pods, against the Kubernetes scalability SLOs and `podnet get`.

The cluster of bench/generate.py (100 namespaces of Deployments and StatefulSets: 10,000 pods,
2,000 Services, 1,000 NetworkPolicies over 100 nodes) runs behind the API server through
tests/apiharness.py: the real supervisor (admission, control plane, control socket) on fake
processes and a fake kernel, and the API server's own code with TLS and client certificates.
The supervisor's socket is put where `podnet get --name NAME` finds it (/run/podnet/NAME), so
the same run times `podnet get` as the peer; the directory is removed afterwards. Root only
(that directory is root's).

Measured, each against its goal (issue 20) and printed with the ratio:
- `kubectl get pods -A -o wide` end to end (the real kubectl, process start included): with
  its discovery cache filled by a first call, as a user's kubectl has it, and cold (an empty
  cache directory each time); `podnet get pods -A -o wide --name NAME` on the same cluster;
- single-object writes over one persistent HTTPS connection with the admin client certificate
  (aiohttp, in a process of its own, as a client is: the supervisor runs in this one and the
  API server in a third, as `podnet up` runs them): ConfigMap creates, Deployment label patches (JSON merge patch), scale-ups by one
  (strategic merge patch, as `kubectl scale`/`patch` send) and scale-downs by one (a pod
  terminates, then goes), each on the incremental path — p50/p99, and how much of each is the
  supervisor's `change` (its log's steps, and the call timed); `kubectl apply -f` of one
  ConfigMap (process start included), for context;
- watch event latency: a chunked watch from the list's resourceVersion, timing each write from
  its request's start to its event's arrival, and from the supervisor's change done;
- the list of every pod as JSON (no Table), whole and in limit=500 pages, for context.

    sudo PYTHONPATH=src:. .venv/bin/python bench/apiserver.py [--namespaces 100] [--writes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

import generate  # noqa: E402
from podnet.apiserver.backend import Supervisor as SupervisorClient  # noqa: E402
from podnet.apiserver.server import ApiServer, listening, tls_context  # noqa: E402
from podnet.apiserver.server import run as serve_api  # noqa: E402
from podnet.host.layout import ClusterLayout  # noqa: E402
from podnet.linux.collector import Collector  # noqa: E402
from podnet.pki.authority import ClusterCredentials  # noqa: E402
from tests.apiharness import KUBECTL, ApiHarness  # noqa: E402

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
GOALS = {"get": 2.0, "write_p99": 0.050, "watch_p99": 0.100}  # seconds (issue 20's figures)
SLO_MUTATING_P99 = 1.0  # sig-scalability api_call_latency, mutating calls
SLO_LIST_CLUSTER = 30.0  # the same SLO, a cluster-wide list


class ChangeSteps(logging.Handler):
    """The supervisor's own account of each apply (core.Steps in its log: admit, compute,
    policies, save ...), and how long each of its `change` calls took in all (`timed`, wrapped
    around it: the steps, the lock, and the record it writes before answering)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.steps: list[dict[str, float]] = []  # step -> ms, one per apply
        self.changes: list[tuple[float, float]] = []  # (start, end) of each change, time.time()

    def emit(self, record: logging.LogRecord) -> None:
        found = re.match(r"(apply|delete) of \d+ objects: \d+ ms \((.*)\)$", record.getMessage())
        if found:
            self.steps.append({step: float(value) for step, value in re.findall(r"(\w+) (\d+)", found.group(2))})

    def timed(self, change):
        def timed_change(*args, **kwargs):
            start = time.time()
            try:
                return change(*args, **kwargs)
            finally:
                self.changes.append((start, time.time()))
        return timed_change


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def against(value: float, goal: float) -> str:
    """The ratio to a goal, worded: under or over it."""
    ratio = value / goal
    return f"{ratio:.2f}x the goal ({'met' if value < goal else 'NOT met'})"


def timed_runs(argv: list[str], runs: int, env: dict[str, str] | None = None,
               before: callable = None) -> tuple[list[float], str]:
    samples, out = [], ""
    for _ in range(runs):
        if before is not None:
            before()
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)
        samples.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
        out = done.stdout
    return samples, out


def summary(samples: list[float]) -> str:
    return f"median {statistics.median(samples):.2f} s (min {min(samples):.2f}, max {max(samples):.2f}; {len(samples)} runs)"


# -- the API server in a process of its own, as `podnet up` runs it ----------------------------------


class ProcessHarness(ApiHarness):
    """The harness with its API server in a process of its own (this file with --serve), as the
    supervisor runs `python -m podnet.apiserver`: its JSON and TLS work on the other core, not
    in the supervisor's interpreter. (That module also listens inside the control-plane node's
    network namespace, which the fake kernel does not make: hence this small twin.)"""

    process: subprocess.Popen | None = None

    def _serve(self, ready) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), "--socket", str(self.socket_path),
             "--pki", str(self.credentials.ca_path.parent), "--name", self.name],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])})
        deadline = time.monotonic() + 120
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    ready.set()
                    break
            except OSError:
                time.sleep(0.1)
        self.process.wait()

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
        super().__exit__(*exc)


def serve(port: int, socket_path: Path, pki: Path, name: str) -> None:
    """The API server process of ProcessHarness, until SIGTERM."""
    async def main() -> None:
        credentials = ClusterCredentials(pki)
        server = ApiServer(SupervisorClient(socket_path), credentials.sa_pub_path.read_bytes(), f"127.0.0.1:{port}", name)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.stopping.set)
        await serve_api(server, tls_context(credentials), [listening(socket.socket(), ("127.0.0.1", port))])
    asyncio.run(main())


# -- the client side over HTTPS ------------------------------------------------------------------


class Client:
    """One persistent HTTPS connection with the admin client certificate, and one for the watch."""

    def __init__(self, port: int, credentials: ClusterCredentials):
        self.base = f"https://127.0.0.1:{port}"
        context = ssl.create_default_context(cafile=str(credentials.ca_path))
        context.load_cert_chain(credentials.admin_cert_path, credentials.admin_key_path)
        self.context = context
        self.session: aiohttp.ClientSession | None = None
        self.watching: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "Client":
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.context, limit=1))
        self.watching = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.context, limit=4),
                                              timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()
        await self.watching.close()

    async def request(self, method: str, path: str, body: object = None, content_type: str = "application/json",
                      accept: str = "application/json", expect: int = 200) -> tuple[bytes, float]:
        start = time.perf_counter()
        data = None if body is None else json.dumps(body).encode()
        async with self.session.request(method, self.base + path, data=data,
                                        headers={"Content-Type": content_type, "Accept": accept}) as response:
            raw = await response.read()
            if response.status != expect:
                raise SystemExit(f"{method} {path}: {response.status} {raw[:500]!r}")
        return raw, time.perf_counter() - start


class Watch:
    """A chunked watch from a resourceVersion; `arrived[tag]` is when the event tagged so came
    (the tag: a ConfigMap's name, or a Deployment's label bench-round)."""

    def __init__(self, client: Client, path: str, tag):
        self.client, self.path, self.tag = client, path, tag
        self.arrived: dict[str, float] = {}
        self.task: asyncio.Task | None = None
        self.open = asyncio.Event()

    async def start(self) -> None:
        listed, _ = await self.client.request("GET", self.path)
        version = json.loads(listed)["metadata"]["resourceVersion"]
        self.task = asyncio.create_task(self._read(version))
        await self.open.wait()

    async def _read(self, version: str) -> None:
        separator = "&" if "?" in self.path else "?"
        url = f"{self.client.base}{self.path}{separator}watch=true&resourceVersion={version}&allowWatchBookmarks=true"
        async with self.client.watching.get(url) as response:
            self.open.set()
            while True:
                line = await response.content.readline()
                if not line:
                    return
                now = time.time()
                event = json.loads(line)
                tag = self.tag(event["object"])
                if tag is not None and tag not in self.arrived:
                    self.arrived[tag] = now

    async def stop(self) -> None:
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, aiohttp.ClientError):
            pass


def _round_label(body: dict) -> str | None:
    return ((body.get("metadata") or {}).get("labels") or {}).get("bench-round")


async def paged(client: "Client", accept: str, rows: str) -> tuple[int, float, int]:
    """Every pod in pages of 500 (limit/continue, as kubectl lists): (pages, seconds, rows)."""
    pages, total, count, token = 0, 0.0, 0, ""
    while True:
        raw, took = await client.request("GET", "/api/v1/pods?limit=500" + (f"&continue={token}" if token else ""),
                                         accept=accept)
        body = json.loads(raw)
        pages, total, count = pages + 1, total + took, count + len(body[rows])
        token = body["metadata"].get("continue") or ""
        if not token:
            return pages, total, count


async def api_figures(port: int, credentials: ClusterCredentials, writes: int, replica_writes: int,
                      scale_downs: int) -> dict:
    figures: dict = {}
    async with Client(port, credentials) as client:
        await client.request("GET", "/version")  # the connection, TLS and all, made once

        # the lists: Table as kubectl asks for it, JSON whole, JSON in pages of 500
        raw, figures["table"] = await client.request("GET", "/api/v1/pods?limit=500", accept=TABLE)
        figures["table_pages"] = await paged(client, TABLE, "rows")
        raw, figures["json"] = await client.request("GET", "/api/v1/pods")
        figures["json_items"], figures["json_bytes"] = len(json.loads(raw)["items"]), len(raw)
        figures["json_pages"] = await paged(client, "application/json", "items")

        # writes, each watched
        namespace = "ns-000"
        configmaps = Watch(client, f"/api/v1/namespaces/{namespace}/configmaps",
                           lambda body: (body.get("metadata") or {}).get("name"))
        deployments = Watch(client, f"/apis/apps/v1/namespaces/{namespace}/deployments?fieldSelector=metadata.name%3Dweb-0",
                            _round_label)
        await configmaps.start()
        await deployments.start()

        started, creates = {}, []
        for i in range(writes):
            name = f"bench-{i:04d}"
            started[name] = time.time()
            _, took = await client.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                "data": {"round": str(i)}}, expect=201)
            creates.append(took)
        figures["create"] = creates
        label_patches, replica_patches = [], []
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web-0"
        for i in range(writes):
            tag = f"l{i}"
            started[tag] = time.time()
            _, took = await client.request("PATCH", path, {"metadata": {"labels": {"bench-round": tag}}},
                                           content_type="application/merge-patch+json")
            label_patches.append(took)
        for i in range(replica_writes):  # up by one each time: the incremental path
            tag = f"r{i}"
            started[tag] = time.time()
            _, took = await client.request("PATCH", path, {"metadata": {"labels": {"bench-round": tag}},
                                                           "spec": {"replicas": 11 + i}},
                                           content_type="application/strategic-merge-patch+json")
            replica_patches.append(took)
        scale_down_patches = []
        for i in range(scale_downs):  # down again: a pod terminates, then goes
            tag = f"d{i}"
            started[tag] = time.time()
            _, took = await client.request("PATCH", path, {"metadata": {"labels": {"bench-round": tag}},
                                                           "spec": {"replicas": 10 + replica_writes - 1 - i}},
                                           content_type="application/strategic-merge-patch+json")
            scale_down_patches.append(took)
        figures["label_patch"], figures["replica_patch"] = label_patches, replica_patches
        figures["scale_down"] = scale_down_patches
        deadline = time.monotonic() + 30
        while len(configmaps.arrived) + len(deployments.arrived) < len(started) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await configmaps.stop()
        await deployments.stop()
        arrived = {**configmaps.arrived, **deployments.arrived}
        missing = [tag for tag in started if tag not in arrived]
        if missing:
            raise SystemExit(f"{len(missing)} writes were never seen by the watch (first: {missing[0]})")
        figures["watch"] = {tag: arrived[tag] - started[tag] for tag in started}
        figures["order"], figures["arrived"] = list(started), arrived
    return figures


# -- the run ------------------------------------------------------------------------------------


def load(directory: Path) -> list[dict]:
    return [doc for path in sorted(directory.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=100, help="100 pods each (bench/generate.py)")
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--writes", type=int, default=100, help="ConfigMap creates, and as many label patches")
    parser.add_argument("--replica-writes", type=int, default=20, help="replica patches, each adding a pod")
    parser.add_argument("--scale-downs", type=int, default=1, help="replica patches removing a pod (it terminates)")
    parser.add_argument("--applies", type=int, default=3, help="`kubectl apply -f` runs of one new ConfigMap")
    parser.add_argument("--runs", type=int, default=5, help="of each `get` timed end to end")
    parser.add_argument("--name", default="apibench", help="the cluster name `podnet get --name` is given")
    parser.add_argument("--in-process", action="store_true",
                        help="the API server in the supervisor's process (tests/apiharness.py as the tests run it)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # ProcessHarness's API server: its port
    parser.add_argument("--client-of", type=int, help=argparse.SUPPRESS)  # the HTTPS client, of this port
    parser.add_argument("--socket", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.socket, args.pki, args.name)
        return
    if args.client_of:  # its figures, as JSON on stdout
        figures = asyncio.run(api_figures(args.client_of, ClusterCredentials(args.pki), args.writes,
                                          args.replica_writes, args.scale_downs))
        print(json.dumps(figures))
        return
    if KUBECTL is None:
        raise SystemExit("kubectl is not installed (make install)")
    layout = ClusterLayout(args.name)
    if layout.state_dir.exists():
        raise SystemExit(f"{layout.state_dir} exists (a cluster named {args.name}?): pass another --name")

    with tempfile.TemporaryDirectory(prefix="podnet-apibench-") as tmp:
        directory = Path(tmp)
        generate.generate(directory / "manifests", namespaces=args.namespaces)
        manifests = load(directory / "manifests")
        start = time.perf_counter()
        harness = (ApiHarness if args.in_process else ProcessHarness)(directory, manifests, name=args.name,
                                                                      nodes=args.nodes, collector=Collector())
        harness.socket_path = layout.socket_path  # where `podnet get --name` looks
        layout.state_dir.mkdir(mode=0o700, parents=True)
        try:
            with harness:
                ready = time.perf_counter() - start
                run(harness, args, directory, ready)
        finally:
            shutil.rmtree(layout.state_dir, ignore_errors=True)


def throttled(argv: list[str], env: dict[str, str]) -> tuple[int, float]:
    """One run at -v=6: kubectl's requests and the time it waited in its own client-side rate
    limiter (client-go's default QPS 5, burst 10), as its log says."""
    done = subprocess.run(argv + ["-v=6"], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    waits = [float(v) for v in re.findall(r"Waited for ([\d.]+)ms due to client-side throttling", done.stderr)]
    return len(re.findall(r"round_trippers.go:\d+\] GET ", done.stderr)), sum(waits) / 1000


def write_line(label: str, samples: list[float], goal: float, slo: float | None = None) -> str:
    p99 = percentile(samples, 0.99)
    line = (f"  {label:42} n={len(samples):4}  p50 {ms(percentile(samples, 0.5)):>10}  p99 {ms(p99):>10}  "
            f"-> {against(p99, goal)}")
    return line + (f"; {p99 / slo:.2f}x the SLO" if slo else "")


def run(harness: ApiHarness, args, directory: Path, ready: float) -> None:
    cluster = harness.supervisor.cluster
    print(f"cluster: {len(cluster.of_kind('Pod'))} pods, {len(cluster.of_kind('Service'))} services, "
          f"{len(cluster.objects)} objects on {args.nodes} nodes; supervisor + API server ready in {ready:.1f} s; "
          f"API server {'in the supervisor' if args.in_process else 'in its own'} process")
    env = {"HOME": str(directory)}
    warm_cache, cold_cache = directory / "kube-cache", directory / "cold-cache"
    kubectl = [KUBECTL, "--kubeconfig", str(harness.kubeconfig), "--cache-dir", str(warm_cache)]
    get = ["get", "pods", "-A", "-o", "wide"]
    timed_runs(kubectl + get, 1, env)  # fills the discovery cache
    warm, out = timed_runs(kubectl + get, args.runs, env)
    rows = len(out.splitlines()) - 1
    cold, _ = timed_runs([KUBECTL, "--kubeconfig", str(harness.kubeconfig), "--cache-dir", str(cold_cache)] + get,
                         args.runs, env, before=lambda: shutil.rmtree(cold_cache, ignore_errors=True))
    whole, _ = timed_runs(kubectl + get + ["--chunk-size=0"], args.runs, env)
    requests, waited = throttled(kubectl + get, env)
    podnet = [sys.executable, "-m", "podnet", "get", "pods", "-A", "-o", "wide", "--name", args.name]
    peer, peer_out = timed_runs(podnet, args.runs, {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])})
    peer_rows = len(peer_out.splitlines()) - 1

    # kubectl apply of one new object, process start included (the cache warm)
    applies = []
    for i in range(args.applies):
        manifest = directory / f"cm-{i}.yaml"
        manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": {"name": f"applied-{i}", "namespace": "ns-001"},
                                            "data": {"round": str(i)}}))
        applies += timed_runs(kubectl + ["apply", "-f", str(manifest)], 1, env)[0]

    steps = ChangeSteps()
    supervisor_log = logging.getLogger("podnet.supervisor")
    supervisor_log.addHandler(steps)
    supervisor_log.setLevel(logging.INFO)
    change = harness.supervisor.change
    harness.supervisor.change = steps.timed(change)  # the control socket's apply calls it
    try:  # the client in a process of its own, as kubectl or an operator is: not sharing the supervisor's interpreter
        figures = json.loads(subprocess.run(
            [sys.executable, __file__, "--client-of", str(harness.port), "--pki", str(harness.credentials.ca_path.parent),
             "--writes", str(args.writes), "--replica-writes", str(args.replica_writes),
             "--scale-downs", str(args.scale_downs)],
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
            check=True, stdout=subprocess.PIPE, text=True, timeout=600).stdout)
    finally:
        supervisor_log.removeHandler(steps)
        harness.supervisor.change = change

    print(f"\nkubectl get pods -A -o wide ({rows} rows), end to end (goal < {GOALS['get']:.0f} s):")
    print(f"  discovery cached          {summary(warm)}  -> {against(statistics.median(warm), GOALS['get'])}")
    print(f"  cold (no discovery cache) {summary(cold)}  -> {against(statistics.median(cold), GOALS['get'])}")
    print(f"  --chunk-size=0 (one list) {summary(whole)}  -> {against(statistics.median(whole), GOALS['get'])}")
    print(f"  podnet get pods -A -o wide --name {args.name} ({peer_rows} rows): {summary(peer)}")
    print(f"  kubectl (cached) / podnet get: {statistics.median(warm) / statistics.median(peer):.2f}x; "
          f"kubectl --chunk-size=0 / podnet get: {statistics.median(whole) / statistics.median(peer):.2f}x")
    pages, total, count = figures["table_pages"]
    print(f"  kubectl's default run: {requests} requests, {waited:.2f} s of them waiting in its own client-side "
          f"rate limiter (QPS 5, burst 10)")
    print(f"  the API server's part: the {pages} Table pages of 500 (limit=500 as kubectl asks) take {ms(total)} "
          f"in all over one connection")

    print(f"\nsingle-object writes over one HTTPS connection (goal p99 < {GOALS['write_p99'] * 1000:.0f} ms; "
          f"SLO mutating p99 <= {SLO_MUTATING_P99:.0f} s):")
    writes = [("ConfigMap create", "create"), ("Deployment label patch (merge)", "label_patch"),
              ("Deployment scale up by one (strategic)", "replica_patch"),
              ("Deployment scale down by one (strategic)", "scale_down")]
    for label, key in writes:
        if figures[key]:
            print(write_line(label, figures[key], GOALS["write_p99"], SLO_MUTATING_P99))
    print(f"  kubectl apply -f (one new ConfigMap, process start included): {summary(applies)}")
    order = figures["order"]
    matched = len(steps.changes) == len(order)  # one change in the supervisor for each write, in order
    if steps.steps:
        names = list(dict.fromkeys(step for change in steps.steps for step in change))
        medians = {name: statistics.median(change.get(name, 0.0) for change in steps.steps) for name in names}
        print(f"  the supervisor's apply, median per step over {len(steps.steps)} writes (its log): "
              + ", ".join(f"{name} {value:.0f} ms" for name, value in medians.items()))
    if matched:
        latency = figures["create"] + figures["label_patch"] + figures["replica_patch"] + figures["scale_down"]
        taken = [end - start for start, end in steps.changes]
        print(write_line("the supervisor's change (steps + record)", taken, GOALS["write_p99"]))
        print(write_line("the rest: API server, socket, lock waits", [a - b for a, b in zip(latency, taken)],
                         GOALS["write_p99"]))

    watch = figures["watch"]
    print(f"\nwatch event latency, a write's request start to its event (goal p99 < {GOALS['watch_p99'] * 1000:.0f} ms):")
    for label, prefix in (("ConfigMap creates", "bench-"), ("Deployment label patches", "l"),
                          ("Deployment scale-ups", "r"), ("Deployment scale-downs", "d"), ("all", "")):
        samples = [v for k, v in watch.items() if k.startswith(prefix)]
        if samples:
            print(write_line(label, samples, GOALS["watch_p99"]))
    if matched:
        delivery = [figures["arrived"][tag] - done for tag, (_, done) in zip(order, steps.changes)]
        print(write_line("from the supervisor's change done to event", delivery, GOALS["watch_p99"]))

    pages, total, count = figures["json_pages"]
    print(f"\nlist of every pod as JSON (SLO cluster-wide list <= {SLO_LIST_CLUSTER:.0f} s):")
    print(f"  whole: {figures['json_items']} pods, {figures['json_bytes'] / 1e6:.1f} MB in {ms(figures['json'])} "
          f"-> {figures['json'] / SLO_LIST_CLUSTER:.4f}x the SLO")
    print(f"  limit=500: {pages} pages, {count} pods in {ms(total)} ({ms(total / pages)} a page)")
    print(f"  as a Table, one page of 500 (the first): {ms(figures['table'])}")


if __name__ == "__main__":
    main()
