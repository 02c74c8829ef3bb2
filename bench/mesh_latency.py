"""Latency, CPU and memory of two meshed sidecars at 1,000 RPS, beside the same pods unmeshed.

    sudo PYTHONPATH=src .venv/bin/python bench/mesh_latency.py [--rps 1000] [--connections 16]
        [--seconds 10] [--rounds 3] [--processes 1]

Root only. Issue 21's figure: at 1,000 RPS of HTTP/1.1 with 1 kB bodies through two sidecars
with mTLS, the added latency at p90 ≤ 0.23 ms and at p99 ≤ 0.30 ms (Istio 1.20's published
figures), CPU per 1,000 RPS per proxy ≤ 0.2 vCPU, and each sidecar's memory.

The set-up is podnet's own path for a meshed pod: the model (namespace `bench` labelled
istio-injection, Pods `server` (containerPort 8080) and `client`, Service `server` 80 → 8080 named
`http`) computed by the control plane, which injects istio-proxy into both pods; each pod gets
its namespace on one bridge (its computed IP, /16; the Service range routed to eth0), then
MeshProxies.prepare (its identity, its Envoy files, the nft capture, as the supervisor does) and
its sidecar started as the runtime starts the injected container (`python -m
podnet.mesh.pilot_agent proxy sidecar …`, PODNET_PROXY_DIR; Envoy as uid 1337, --concurrency
2). The app is the host's nginx answering every GET with a fixed 1,024-byte body (access log off).

The load is an open-loop generator (this file's `generate` mode, a separate Python process in the
client's namespace via `ip netns exec`): HTTP/1.1 GET with keep-alive over --connections
persistent connections, at a fixed total rate on an absolute schedule (request k due at
t0 + k/rps, dealt round-robin to the connections), each request pre-built as bytes and carrying
its own W3C `traceparent`, each response read to exactly its Content-Length. A request due
while its connection still waits for the previous answer is sent as soon as that answer is in
(fortio's behaviour: one request in flight per connection). The latency is measured from the
actual send to the last byte of the answer, as fortio measures it in Istio's benchmark; the
latency from the scheduled time (which also counts a request's wait behind a late one on its
connection, and the generator's own lateness: it wakes at epoll's 1 ms granularity) is printed
beside it as p99. 16 connections: Istio's published latency graphs plot 1,000 QPS against
2 to 64 client connections, and 16 sits in that range; at 16 each connection carries ~62 RPS
(one request every 16 ms), so a request almost never queues behind its predecessor, and one
Python process keeps the rate with little work per connection (--processes splits it if not).
The first --warmup seconds of each run are not recorded.

The peer, in the same run: the same two pods, the same nginx, the same generator, with the
client connecting to the server pod's IP:8080 directly and the capture tables removed (`nft
delete table ip podnet-mesh` in both pods; the idle Envoys left running). Rounds alternate mesh
and no mesh (the order flipped every round); the medians across rounds of p50/p90/p99 are
printed for both, and the added latency (mesh − no mesh) per percentile against the goals.

CPU: per sidecar, pilot_agent plus its Envoy (utime+stime from /proc/PID/stat) over the mesh
runs' recorded windows, as vCPU, normalised per 1,000 RPS achieved (the whole machine's busy
CPUs in each window are printed too: others' work on a shared host shows there); memory: VmRSS
of both after the load. The machine (CPUs, model) is printed first: on a 2-core machine the generator, nginx and
both proxies (2 workers each) share the cores, which a Kubernetes benchmark spreads over nodes.

What the two sidecars do on this path is whatever podnet renders for it (mesh/envoy.py): the run
prints the filters of the client's outbound chain for ClusterIP:80 and of the server's inbound
mTLS chain for 8080, and whether their HTTP connection managers trace and at what sampling, as
read from the files the agents wrote. Istio's figure is for its defaults: telemetry v2's stats
filter (per-request labelled metrics) and metadata exchange on both proxies, 1% trace sampling.
"""

from __future__ import annotations

import argparse
import array
import json
import math
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
from dataclasses import dataclass
from pathlib import Path

from meshbench import BenchLayout, children, cpu_seconds, host_busy, http_in, machine, run, sidecar_process  # noqa: E402  (bench/meshbench.py: also puts src/ on the path)

GOAL_P90, GOAL_P99 = 0.23, 0.30  # ms added by two sidecars (Istio 1.20's published figures)
GOAL_CPU = 0.2  # vCPU per 1,000 RPS per proxy
BODY_BYTES = 1024
# the client's trace context: not sampled ("00"), so the proxies' own sampling decides (--sampling,
# 1% as in Istio's benchmark); a sampled flag ("01") makes every proxy trace every request
TRACE_FLAGS = "00"
APP_PORT, SERVICE_PORT = 8080, 80
READY_DEADLINE = 60.0
MODEL = """
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: bench, labels: {app: server}, annotations: {proxy.istio.io/config: "tracing: {sampling: SAMPLING}"}}
spec:
  containers: [{name: server, image: nginx, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench, labels: {app: client}, annotations: {proxy.istio.io/config: "tracing: {sampling: SAMPLING}"}}
spec:
  containers: [{name: client, image: client}]
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: bench}
spec:
  selector: {app: server}
  ports: [{name: PORT_NAME, port: 80, targetPort: 8080}]
"""


# -- the load generator (runs in the client pod's namespace) -----------------------------------


def generate(args: argparse.Namespace) -> None:
    """One generator process: its share of the schedule (request k is this process's when
    k % processes == index), latencies into files, a JSON summary on stdout."""
    rate, conns = args.rps, args.connections
    requests = [(f"GET / HTTP/1.1\r\nHost: server.bench.svc.cluster.local\r\nUser-Agent: podnet-mesh-bench\r\n"
                 f"traceparent: 00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-{TRACE_FLAGS}\r\n\r\n").encode()
                for _ in range(4096)]  # distinct trace ids, built before the clock starts
    socks = []
    for _ in range(conns):
        s = socket.create_connection((args.host, args.port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(requests[0])  # a first exchange outside the measurement (the mesh's handshakes)
        _read_answer_blocking(s)
        s.setblocking(False)
        socks.append(s)
    poller = select.epoll()
    for s in socks:
        poller.register(s.fileno(), select.EPOLLIN)
    by_fd = {s.fileno(): i for i, s in enumerate(socks)}
    # per connection: the send time and due time of the request in flight (0: idle), its bytes so
    # far, the answer's total length once its head is in, and the due times waiting behind it
    sent_at, due_at, buffers, total = [0] * conns, [0] * conns, [b""] * conns, [0] * conns
    backlog: list[list[int]] = [[] for _ in range(conns)]
    start = args.start_ns  # CLOCK_MONOTONIC, shared with the other generator processes
    step = 1e9 / (rate * args.processes)  # (between requests of all the processes: k is the global index)
    record_from = start + int(args.warmup * 1e9)
    end = start + int((args.warmup + args.seconds) * 1e9)
    from_send, from_due = array.array("q"), array.array("q")
    errors = late = sent = 0
    k = args.index  # the global index of this process's next request
    counter = 0
    time.sleep(max(0.0, (start - time.perf_counter_ns()) / 1e9))
    cpu_at_start = time.process_time()

    def send(c: int, due: int) -> None:
        nonlocal counter, sent, late
        now = time.perf_counter_ns()
        socks[c].send(requests[counter % len(requests)])  # (small: the socket takes it whole)
        counter += 1
        sent += 1
        if now - due > 1_000_000:
            late += 1
        sent_at[c], due_at[c] = now, due

    while True:
        now = time.perf_counter_ns()
        due = start + int(k * step)
        while due <= now and due < end:
            c = (k // args.processes) % conns
            if sent_at[c]:
                backlog[c].append(due)
            else:
                send(c, due)
            k += args.processes
            due = start + int(k * step)
        if due >= end and not any(sent_at) and not any(backlog):
            break
        if due >= end and now > end + 5_000_000_000:
            errors += sum(1 for t in sent_at if t) + sum(len(b) for b in backlog)  # no answer in 5 s
            break
        timeout = max(0.0, (due - now) / 1e9) if due < end else 0.05
        for fd, _ in poller.poll(timeout):
            c = by_fd[fd]
            try:
                data = socks[c].recv(65536)
            except BlockingIOError:
                continue
            if not data:  # closed by the other end: counted, the connection replaced
                errors += 1 + len(backlog[c])
                poller.unregister(fd)
                socks[c].close()
                socks[c] = socket.create_connection((args.host, args.port), timeout=10)
                socks[c].setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socks[c].setblocking(False)
                poller.register(socks[c].fileno(), select.EPOLLIN)
                by_fd[socks[c].fileno()] = c
                sent_at[c], buffers[c], total[c], backlog[c] = 0, b"", 0, []
                continue
            buf = buffers[c] + data
            if not total[c]:
                head_end = buf.find(b"\r\n\r\n")
                if head_end < 0:
                    buffers[c] = buf
                    continue
                total[c] = head_end + 4 + _content_length(buf[:head_end])
                if not buf.startswith(b"HTTP/1.1 200"):
                    errors += 1
            if len(buf) < total[c]:
                buffers[c] = buf
                continue
            done = time.perf_counter_ns()
            if due_at[c] >= record_from:
                from_send.append(done - sent_at[c])
                from_due.append(done - due_at[c])
            buffers[c], total[c], sent_at[c] = buf[total[c]:], 0, 0
            if backlog[c]:
                send(c, backlog[c].pop(0))
    cpu = (time.process_time() - cpu_at_start) / ((time.perf_counter_ns() - start) / 1e9)
    with open(args.out + ".send", "wb") as f:
        from_send.tofile(f)
    with open(args.out + ".due", "wb") as f:
        from_due.tofile(f)
    print(json.dumps({"sent": sent, "recorded": len(from_send), "errors": errors, "late": late,
                      "cpu": cpu}), flush=True)


def _read_answer_blocking(s: socket.socket) -> None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the answer")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"answer: {head.splitlines()[0]!r}")
    need = _content_length(head) - len(rest)
    while need > 0:
        chunk = s.recv(need)
        if not chunk:
            raise ConnectionError("closed in the body")
        need -= len(chunk)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("an answer without Content-Length")


# -- the pods ----------------------------------------------------------------------------------


def nginx_conf(directory: Path) -> str:
    body = nginx_body().decode()  # (no quote, backslash or $ in it: nginx takes it as it is)
    return f"""
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body; proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi; uwsgi_temp_path {directory}/uwsgi; scgi_temp_path {directory}/scgi;
    keepalive_requests 10000000; keepalive_timeout 600s;  # (the default 1,000 would close connections mid-run)
    default_type text/plain;
    server {{
        listen {APP_PORT};
        location / {{ return 200 "{body}"; }}
    }}
}}
"""


def http_get_in(netns: str, address: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A GET from inside `netns`: (status, body)."""
    head, _, body = http_in(netns, address, port, path, timeout=timeout).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def wait_until(what: str, check, deadline: float = READY_DEADLINE) -> None:
    limit = time.monotonic() + deadline
    while True:
        try:
            if check():
                return
        except (OSError, ValueError, IndexError):
            pass
        if time.monotonic() > limit:
            raise RuntimeError(f"{what}: not after {deadline:.0f} s")
        time.sleep(0.1)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Sidecar:
    pod: str
    netns: str
    process: subprocess.Popen  # pilot_agent (`ip netns exec` execs it: same pid)
    envoy_pid: int = 0

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far: (pilot_agent, Envoy)."""
        return cpu_seconds(self.process.pid), cpu_seconds(self.envoy_pid)


def start_sidecar(pod, netns: str, directory: Path, log: Path) -> Sidecar:
    return Sidecar(pod.name, netns, sidecar_process(pod, netns, directory, log))


def path_filters(client_dir: Path, server_dir: Path, service_ip: str) -> str:
    """The filters the request meets in each proxy, from the listeners file its agent wrote."""
    def listener(directory: Path, name: str) -> dict:
        from podnet.mesh.envoy import ProxyFiles
        resources = json.loads(Path(ProxyFiles(str(directory)).path("lds.json")).read_text())["resources"]
        return next(r for r in resources if r["name"] == name)

    def describe(chain: dict | None) -> str:
        if chain is None:
            return "no chain"
        words = []
        for f in chain["filters"]:
            words.append(f["name"].rsplit(".", 1)[-1])
            config = f.get("typed_config", {})
            if "http_filters" in config:
                tracing = config.get("tracing")
                sampling = (tracing or {}).get("random_sampling", {}).get("value", 100)
                words[-1] += (f" [{', '.join(h['name'].rsplit('.', 1)[-1] for h in config['http_filters'])}; "
                              f"{f'tracing {sampling:g}%' if tracing else 'no tracing'}]")
        return " + ".join(words)

    outbound = next((c for c in listener(client_dir, "virtualOutbound")["filter_chains"]
                     if c["filter_chain_match"].get("destination_port") == SERVICE_PORT and
                     any(p["address_prefix"] == service_ip for p in c["filter_chain_match"].get("prefix_ranges", []))),
                    None)
    inbound = next((c for c in listener(server_dir, "virtualInbound")["filter_chains"]
                    if c["filter_chain_match"].get("destination_port") == APP_PORT
                    and c["filter_chain_match"].get("transport_protocol") == "tls" and "transport_socket" in c), None)
    return f"client outbound {describe(outbound)}; server inbound (mTLS) {describe(inbound)}"


def capture(on: bool, netns: str, rules: str) -> None:
    if on:
        run("ip", "netns", "exec", netns, "nft", "-f", "-", input=rules)
    else:
        run("ip", "netns", "exec", netns, "nft", "delete", "table", "ip", "podnet-mesh", check=False)


# -- one run -----------------------------------------------------------------------------------


def load(args, client_ns: str, host: str, port: int, base: Path, label: str, sidecars: list[Sidecar]) -> dict:
    """The generator processes in the client's namespace, started together on one schedule; the
    sidecars' CPU time over the recorded window (the same clock as the generators')."""
    start_ns = time.perf_counter_ns() + int(1.5e9) + int(0.05e9) * args.processes  # (their start-up and connections first)
    procs = []
    for index in range(args.processes):
        out = base / f"{label}-{index}"
        procs.append((out, subprocess.Popen(
            ["ip", "netns", "exec", client_ns, sys.executable, str(Path(__file__).resolve()), "generate",
             "--host", host, "--port", str(port), "--rps", str(args.rps / args.processes),
             "--connections", str(max(1, args.connections // args.processes)), "--seconds", str(args.seconds),
             "--warmup", str(args.warmup), "--start-ns", str(start_ns), "--index", str(index),
             "--processes", str(args.processes), "--out", str(out)],
            stdout=subprocess.PIPE, text=True)))
    result = {"send": [], "due": [], "sent": 0, "recorded": 0, "errors": 0, "late": 0, "cpu": 0.0}
    record_from = start_ns + int(args.warmup * 1e9)
    time.sleep(max(0.0, (record_from - time.perf_counter_ns()) / 1e9))
    before, host_before = {s.pod: s.cpu() for s in sidecars}, host_busy()
    time.sleep(max(0.0, (record_from + int(args.seconds * 1e9) - time.perf_counter_ns()) / 1e9))
    result["proxy_cpu"] = {s.pod: tuple(now - then for now, then in zip(s.cpu(), before[s.pod])) for s in sidecars}
    result["host_busy"] = (host_busy() - host_before) / args.seconds  # the whole machine's, others' work included
    for out, proc in procs:
        stdout, _ = proc.communicate(timeout=args.warmup + args.seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"the generator failed ({label}, code {proc.returncode})")
        summary = json.loads(stdout)
        for key in ("sent", "recorded", "errors", "late", "cpu"):
            result[key] += summary[key]
        for kind in ("send", "due"):
            values = array.array("q")
            data = Path(f"{out}.{kind}").read_bytes()
            values.frombytes(data)
            result[kind] += values.tolist()
    for kind in ("send", "due"):
        result[kind].sort()
    result["rps"] = result["recorded"] / args.seconds
    return result


def percentile(ordered: list[int], q: float) -> float:
    """The q-th percentile (nearest rank) in ms."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))] / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    gen = sub.add_parser("generate", help="(internal) one load generator process")
    for name, kind in (("--host", str), ("--port", int), ("--rps", float), ("--connections", int),
                       ("--seconds", float), ("--warmup", float), ("--start-ns", int), ("--index", int),
                       ("--processes", int), ("--out", str)):
        gen.add_argument(name, type=kind, required=True)
    parser.add_argument("--rps", type=float, default=1000.0, help="total requests per second")
    parser.add_argument("--protocol", choices=("http", "tcp"), default="http",
                        help="what the Service declares its port: http (the proxies handle each request, L7: the "
                             "issue's figure) or tcp (they pass the connection through, L4)")
    parser.add_argument("--sampling", type=float, default=1.0,
                        help="percent of requests the proxies trace (their proxy.istio.io/config): 1, Istio's default "
                             "and its benchmark's; podnet's own default is 100")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="recorded seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unrecorded seconds at each run's start")
    parser.add_argument("--rounds", type=int, default=3, help="each round: one mesh run, one without")
    parser.add_argument("--processes", type=int, default=1, help="generator processes sharing the rate")
    args = parser.parse_args()
    if args.mode == "generate":
        generate(args)
        return
    if os.geteuid() != 0:
        sys.exit("root only: it makes network namespaces")
    if not shutil.which("nginx"):
        sys.exit("the host's nginx is needed (apt-get install nginx)")
    bench(args)


def bench(args: argparse.Namespace) -> None:
    from podnet.api.loader import parse_texts
    from podnet.api.store import admit
    from podnet.config import ClusterConfig
    from podnet.controlplane import compute
    from podnet.linux.meshproxies import MeshProxies
    from podnet.mesh.interception import interception_of, ruleset

    model = MODEL.replace("SAMPLING", f"{args.sampling:g}").replace("PORT_NAME", "http" if args.protocol == "http" else "tcp")
    cluster = compute(admit(parse_texts({"bench.yaml": model})), ClusterConfig())
    pods = {name: cluster.get("Pod", "bench", name) for name in ("client", "server")}
    service_ip = cluster.get("Service", "bench", "server").spec["clusterIP"]
    server_ip = pods["server"].status["podIP"]
    tag = secrets.token_hex(3)
    node = f"mb{tag}node"
    netns = {name: f"mb{tag}{name[:3]}" for name in pods}
    base = Path(tempfile.mkdtemp(prefix="podnet-mesh-latency-"))
    os.chmod(base, 0o755)  # the proxies' user reaches its files through it
    processes: list[subprocess.Popen] = []
    sidecars: list[Sidecar] = []
    made: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # (the finally below runs on a kill too)
    print(f"machine: {machine()}", flush=True)
    try:
        for name in (node, *netns.values()):
            run("ip", "netns", "add", name)
            made.append(name)
        run("ip", "-n", node, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", node, "link", "set", "br0", "up")
        for index, (name, pod) in enumerate(pods.items()):
            ns = netns[name]
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "link", "add", f"mb{index}{tag}", "netns", node, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "-n", node, "link", "set", f"mb{index}{tag}", "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{pod.status['podIP']}/16", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "route", "add", str(cluster.config.networking.service_subnet), "dev", "eth0")
        app = base / "nginx"
        app.mkdir()
        (app / "nginx.conf").write_text(nginx_conf(app))
        processes.append(subprocess.Popen(["ip", "netns", "exec", netns["server"], "nginx", "-c", str(app / "nginx.conf"),
                                           "-p", str(app), "-g", "daemon off; user root;"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_until("nginx", lambda: http_get_in(netns["client"], server_ip, APP_PORT, "/") == (200, nginx_body()))

        proxies = MeshProxies(BenchLayout(cluster="bench", root=base))
        rules = {}
        for name, pod in pods.items():  # identity, files, capture: the supervisor's step before the pod starts
            proxies.prepare(pod, cluster, netns[name])
            rules[name] = ruleset(interception_of(pod.metadata.get("annotations")))
            sidecars.append(start_sidecar(pod, netns[name], proxies.layout.mesh_proxy_dir("bench", name),
                                          base / f"{name}-proxy.log"))
        for sidecar in sidecars:
            wait_until(f"the sidecar of {sidecar.pod}",
                       lambda: http_get_in(sidecar.netns, "127.0.0.1", 15021, "/healthz/ready")[0] == 200)
            envoys = children(sidecar.process.pid)
            if len(envoys) != 1:
                raise RuntimeError(f"pilot_agent of {sidecar.pod} has children {envoys}, one Envoy expected")
            sidecar.envoy_pid = envoys[0]
        if http_get_in(netns["client"], service_ip, SERVICE_PORT, "/") != (200, nginx_body()):
            raise RuntimeError("no answer from nginx through the two sidecars")

        print("on the path: " + path_filters(proxies.layout.mesh_proxy_dir("bench", "client"),
                                             proxies.layout.mesh_proxy_dir("bench", "server"), service_ip), flush=True)
        runs: dict[str, list[dict]] = {"mesh": [], "plain": []}
        for round_ in range(args.rounds):
            for mode in (("mesh", "plain") if round_ % 2 == 0 else ("plain", "mesh")):
                for name in pods:
                    capture(mode == "mesh", netns[name], rules[name])
                target = (service_ip, SERVICE_PORT) if mode == "mesh" else (server_ip, APP_PORT)
                result = load(args, netns["client"], *target, base, f"{mode}{round_}", sidecars)
                runs[mode].append(result)
                print(f"  round {round_ + 1} {mode:5}: {result['rps']:7.1f} RPS, p50 {percentile(result['send'], 50):.3f} "
                      f"p90 {percentile(result['send'], 90):.3f} p99 {percentile(result['send'], 99):.3f} ms, "
                      f"errors {result['errors']}, sent >1 ms late {result['late']}, "
                      f"generator {result['cpu']:.2f} vCPU, sidecars "
                      + ", ".join(f"{pod} {sum(used) / args.seconds:.3f}" for pod, used in result["proxy_cpu"].items())
                      + f" vCPU; the whole machine busy {result['host_busy']:.2f} of {os.cpu_count()} CPUs", flush=True)
        handshakes = server_handshakes(netns["server"])
        memory = {s.pod: (rss_mb(s.process.pid), rss_mb(s.envoy_pid)) for s in sidecars}
        report(args, runs, memory, handshakes)
    finally:
        for sidecar in sidecars:  # SIGTERM: the agent stops its Envoy
            if not sidecar.envoy_pid and sidecar.process.poll() is None:
                sidecar.envoy_pid = next(iter(children(sidecar.process.pid)), 0)  # (killed below if still there)
            if sidecar.process.poll() is None:
                sidecar.process.terminate()
        for process in processes:
            if process.poll() is None:
                process.terminate()  # nginx: a fast shutdown, its worker with it
        for process in [s.process for s in sidecars] + processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for sidecar in sidecars:
            if sidecar.envoy_pid and Path(f"/proc/{sidecar.envoy_pid}").exists():
                try:
                    os.kill(sidecar.envoy_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        shutil.rmtree(base, ignore_errors=True)


def nginx_body() -> bytes:
    return (("podnet-mesh-bench " * 100)[:BODY_BYTES - 1] + "\n").encode()


def server_handshakes(ns: str) -> int:
    """TLS handshakes the server's proxy completed on its inbound listener: the mesh's mTLS."""
    status, body = http_get_in(ns, "127.0.0.1", 15000, "/stats?filter=ssl.handshake$", timeout=5)
    return sum(int(line.split(":")[1]) for line in body.decode().splitlines() if "15006" in line)


def report(args, runs: dict[str, list[dict]], memory: dict[str, tuple[float, float]], handshakes: int) -> None:
    def med(mode: str, q: float, kind: str = "send") -> float:
        return statistics.median(percentile(r[kind], q) for r in runs[mode])

    rps = sum(r["recorded"] for r in runs["mesh"]) / (args.seconds * len(runs["mesh"]))  # (the CPU windows' rate)
    print(f"\n{args.rps:.0f} RPS offered over {args.connections} keep-alive connections, HTTP/1.1 GET, "
          f"{BODY_BYTES}-byte answers, traceparent on each; {args.rounds} rounds of {args.seconds:.0f} s each way; "
          f"medians across rounds (latency from the actual send, fortio's):")
    print(f"  {'':24} {'p50':>8} {'p90':>8} {'p99':>8}   {'p99 from schedule':>17}   achieved")
    for mode, label in (("plain", "no mesh (pod IP:8080)"), ("mesh", "mesh (ClusterIP:80)")):
        print(f"  {label:24} {med(mode, 50):7.3f}  {med(mode, 90):7.3f}  {med(mode, 99):7.3f}   "
              f"{med(mode, 99, 'due'):15.3f}     {statistics.median(r['rps'] for r in runs[mode]):7.1f} RPS "
              f"(errors {sum(r['errors'] for r in runs[mode])})")
    print(f"  the whole machine busy in the recorded windows (others' work included), median: mesh "
          f"{statistics.median(r['host_busy'] for r in runs['mesh']):.2f}, no mesh "
          f"{statistics.median(r['host_busy'] for r in runs['plain']):.2f} of {os.cpu_count()} CPUs")
    added = {q: med("mesh", q) - med("plain", q) for q in (50, 90, 99)}
    print(f"  {'added by two sidecars':24} {added[50]:7.3f}  {added[90]:7.3f}  {added[99]:7.3f}   ms")
    print(f"  mTLS: {handshakes} handshakes completed at the server's proxy (port 15006)")
    for q, goal in ((90, GOAL_P90), (99, GOAL_P99)):
        print(f"added p{q}: {added[q]:.3f} ms -> {added[q] / goal:.2f}x the goal ({goal:.2f} ms, Istio 1.20) "
              f"({'met' if added[q] <= goal else 'NOT met'})")
    for pod in runs["mesh"][0]["proxy_cpu"]:
        agent, proxy = (sum(r["proxy_cpu"][pod][i] for r in runs["mesh"]) / (args.seconds * len(runs["mesh"]))
                        for i in (0, 1))
        per_k = (agent + proxy) / (rps / 1000)
        print(f"CPU of the {pod}'s sidecar in the mesh runs: {agent + proxy:.3f} vCPU (pilot_agent {agent:.3f} + Envoy "
              f"{proxy:.3f}) at {rps:.0f} RPS, {per_k:.3f} vCPU per 1,000 RPS -> {per_k / GOAL_CPU:.2f}x the goal "
              f"({GOAL_CPU} vCPU) ({'met' if per_k <= GOAL_CPU else 'NOT met'})")
    for pod, (agent, proxy) in memory.items():
        print(f"memory of the {pod}'s sidecar after the load: {agent + proxy:.1f} MB RSS "
              f"(pilot_agent {agent:.1f} MB + Envoy {proxy:.1f} MB)")


if __name__ == "__main__":
    main()
