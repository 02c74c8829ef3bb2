"""Time `podnet up` until every pod is running AND reachable, and `podnet down`; profile `up`.

    sudo PYTHONPATH=src python bench/up.py                 # (a) 3 x 100, (b) 1,000 pods, profile
    sudo PYTHONPATH=src python bench/up.py --skip-big --skip-profile
    sudo PYTHONPATH=src python bench/up.py --shop-only --shop 5   # the day-one figure only

Day one (first, 3 runs unless --shop 0): `podnet up -f examples/shop` until every pod is Ready
and a Service name resolves from a pod (shop_figure); `up`'s default wait is the goal.

(a) 3 nodes, one Deployment of 300 agnhost netexec replicas (plus kubeadm's 2 coredns pods).
(b) 1,000 agnhost netexec replicas on 4 nodes with maxPods raised (nodes: [{name, maxPods}]).
For each: `podnet up` is run as a subprocess; as soon as it returns, the pod IPs are read from
the running cluster (`podnet get pods -o json`) and one prober process is started in the first
pod (`podnet exec POD -- python -c PROBE`). The prober opens HTTP connections to every pod's
:8080/hostname concurrently (asyncio), retrying each every 50 ms until the body names that pod
or a deadline passes, and reports when each answered on CLOCK_MONOTONIC (system-wide, so the
same clock as this script's). "all reachable" = the last answer - the moment `podnet up` was
started. Then `podnet down` is timed. Every packet stays in the cluster's namespaces: the
prober runs inside a pod and talks only to pod IPs.

The profile runs the supervisor's start() in this process (cProfile, plus wall-clock
accumulators wrapped around the per-pod steps: netns creation, `ip -n … link set lo up`,
CNI ADD, the pod's files, the sandbox process, waiting for it, containers), then waits until
every pod answers, and removes the cluster.

Reference (minikube's time-to-k8s benchmark, a working cluster): k3d ~20 s, kind ~33 s,
minikube ~51 s. Every cluster is named b<random hex> and removed in a finally.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import json
import os
import pstats
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)
ENV = {**os.environ, "PYTHONPATH": SRC, "PODNET_DEBUG": "1"}  # tracebacks on internal errors
PY = sys.executable
REFERENCE = (("k3d", 20.0), ("kind", 33.0), ("minikube", 51.0))
PORT = 8080

PROBE = r"""
import asyncio, json, sys, time
spec = json.load(sys.stdin)
targets, port, deadline = spec["targets"], spec["port"], time.monotonic() + spec["timeout"]
started = time.monotonic()

async def one(ip, name):
    last, tries = None, 0
    while time.monotonic() < deadline:
        tries += 1
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(ip, port), 2)
            try:
                w.write(b"GET /hostname HTTP/1.0\r\nHost: " + ip.encode() + b"\r\nConnection: close\r\n\r\n")
                data = await asyncio.wait_for(r.read(65536), 2)
            finally:
                w.close()
            body = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace").strip()
            if body == name:
                return ip, time.monotonic(), tries, None
            last = "unexpected body %r" % body[:60]
        except Exception as exc:
            last = type(exc).__name__ + ": " + str(exc)
        await asyncio.sleep(0.05)
    return ip, None, tries, last

async def main():
    return await asyncio.gather(*(one(ip, name) for ip, name in targets.items()))

results = asyncio.run(main())
print(json.dumps({"started": started, "answered": {ip: t for ip, t, _, _ in results if t is not None},
                  "failed": {ip: err for ip, t, _, err in results if t is None},
                  "tries": sum(n for _, _, n, _ in results)}))
"""


def podnet(*args: str, timeout: float, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "podnet", *args], input=stdin, capture_output=True, text=True,
                          env=ENV, timeout=timeout, check=check)


def manifests(replicas: int) -> str:
    return json.dumps({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
            "name": "agnhost", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
            "args": ["netexec", f"--http-port={PORT}"], "ports": [{"containerPort": PORT}]}]}}}})


def cluster_config(name: str, nodes: int, max_pods: int | None, overlay: str = "vxlan") -> str:
    node_list: object = nodes if max_pods is None else [{"name": f"node{i + 1}", "maxPods": max_pods}
                                                       for i in range(nodes)]
    return json.dumps({"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": name, "nodes": node_list,
                       "networking": {"overlay": overlay}})


def new_name() -> str:
    return "b" + secrets.token_hex(4)


def down(name: str) -> float:
    start = time.monotonic()
    try:
        podnet("down", "--name", name, timeout=180, check=False)
    except subprocess.TimeoutExpired:
        print(f"  ! podnet down --name {name} timed out", file=sys.stderr)
    return time.monotonic() - start


def running_pods(name: str) -> list[dict]:
    out = podnet("get", "pods", "-A", "-o", "json", "--name", name, timeout=60).stdout
    return [item for item in json.loads(out)["items"] if (item.get("status") or {}).get("phase") == "Running"]


def probe(name: str, source: str, targets: dict[str, str], timeout: float) -> dict:
    spec = json.dumps({"targets": targets, "port": PORT, "timeout": timeout})
    result = subprocess.run([PY, "-m", "podnet", "exec", source, "--name", name, "--", PY, "-c", PROBE],
                            input=spec, capture_output=True, text=True, env=ENV, timeout=timeout + 60)
    if result.returncode != 0:
        raise RuntimeError(f"prober failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout)


def mem_available_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


class LogKeeper:
    """Keeps a copy of the supervisor's log while `up` runs: on failure `up` removes the state directory."""

    def __init__(self, path: Path) -> None:
        import threading

        self.path, self.text, self.stop = path, "", threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.05):
            try:
                self.text = self.path.read_text()
            except OSError:
                pass

    def __enter__(self) -> "LogKeeper":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def run_cluster(label: str, nodes: int, replicas: int, max_pods: int | None, up_timeout: float,
                static_neigh: bool = False) -> dict:
    name = new_name()
    row: dict = {"label": label, "name": name, "nodes": nodes}
    need = replicas * 20  # MB: an agnhost netexec (~11 MB) + its sandbox (unshare + sleep, ~3.5 MB), with margin
    if mem_available_mb() < need:
        row["error"] = f"skipped: {mem_available_mb()} MB available, {need} MB wanted"
        return row
    with tempfile.TemporaryDirectory(prefix="podnet-bench-") as tmp:
        manifest, config = Path(tmp, "web.json"), Path(tmp, "cluster.json")
        manifest.write_text(manifests(replicas))
        config.write_text(cluster_config(name, nodes, max_pods))
        try:
            row["load_before"] = load()
            fulls0 = arp_table_fulls()
            cpu0 = machine_cpu()
            t0 = time.monotonic()
            with LogKeeper(Path(f"/run/podnet/{name}/supervisor.log")) as kept:
                up = subprocess.run([PY, "-m", "podnet", "up", "-f", str(manifest), "--config", str(config),
                                     "--name", name, "--timeout", str(up_timeout)],
                                    capture_output=True, text=True, env=ENV, timeout=up_timeout + 60)
            t_up = time.monotonic() - t0
            if up.returncode != 0:
                tb = kept.text.strip().splitlines()
                raise RuntimeError(f"podnet up failed: {up.stderr.strip()[-800:]}\n  supervisor.log (kept): "
                                   + "\n    ".join(tb[-12:]))
            row["up"] = t_up
            row["up_line"] = up.stdout.splitlines()[0] if up.stdout else ""
            log = Path(f"/run/podnet/{name}/supervisor.log")
            row["supervisor_log"] = [line.split(" INFO ", 1)[-1] for line in log.read_text().splitlines()
                                     if " up in " in line] if log.exists() else []
            pods = running_pods(name)
            t_get = time.monotonic() - t0
            row["pods"] = len(pods)
            web = {p["status"]["podIP"]: p["metadata"]["name"] for p in pods
                   if p["metadata"]["namespace"] == "default" and p["metadata"]["name"].startswith("web-")}
            source = "default/" + web[min(web)]
            row["web"] = len(web)
            if static_neigh:
                row["static_neigh_s"] = add_static_neighbours(name, pods)
            result = probe(name, source, web, timeout=max(60.0, up_timeout))
            times = sorted(t - t0 for t in result["answered"].values())
            row.update(get=t_get, probe_started=result["started"] - t0, answered=len(times),
                       failed=result["failed"], tries=result["tries"])
            if times:
                row.update(first=times[0], median=statistics.median(times), p90=times[int(0.9 * (len(times) - 1))],
                           last=times[-1])
            row["reachable"] = times[-1] if times and not result["failed"] else None
            row["cpu"] = machine_cpu() - cpu0  # the machine's CPU seconds, up to the prober's end
            row["wall"] = time.monotonic() - t0
            row["arp_table_fulls"] = arp_table_fulls() - fulls0
            diagnose(row, name, pods, web, {ip: t - t0 for ip, t in result["answered"].items()})
            row["idle_supervisor_cpu"] = supervisor_idle_cpu(name)
        finally:
            netns_before = netns_objects()
            row["down"] = down(name)
            row["settle"] = settle()
            row["netns_kernel"] = (netns_before, netns_objects())
            row["left"] = [n for n in os.listdir("/run/netns") if n.startswith(f"podnet-{name}.")] \
                if os.path.isdir("/run/netns") else []
    return row


def machine_cpu() -> float:
    """CPU seconds (user+nice+system+irq+softirq) the whole machine spent so far."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def netns_objects() -> int | None:
    """Network namespaces the kernel still holds (also those being destroyed), from slabinfo."""
    try:
        for line in Path("/proc/slabinfo").read_text().splitlines():
            if line.startswith("net_namespace "):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def settle(limit: float = 30.0) -> float:
    """Wait (bounded) until the kernel has finished destroying namespaces: the count stops falling."""
    start = time.monotonic()
    last = netns_objects()
    while last is not None and time.monotonic() - start < limit:
        time.sleep(1.0)
        now = netns_objects()
        if now is None or now >= last:
            break
        last = now
    return time.monotonic() - start


def arp_table_fulls() -> int:
    """How often the kernel's (global, all namespaces) ARP table was full: /proc/net/stat/arp_cache."""
    lines = Path("/proc/net/stat/arp_cache").read_text().split("\n")
    column = lines[0].split().index("table_fulls")
    return sum(int(line.split()[column], 16) for line in lines[1:] if line.strip())


def neigh_limits() -> str:
    return "/".join(Path(f"/proc/sys/net/ipv4/neigh/default/gc_thresh{i}").read_text().strip() for i in (1, 2, 3))


def add_static_neighbours(name: str, pods: list[dict]) -> float:
    """Experiment: PERMANENT neighbour entries (exempt from the ARP table's gc_thresh limits) for
    every pod on its node's cni0 and for the gateway in every pod, inside the cluster's own
    namespaces. Returns the seconds it took."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.monotonic()
    prefix = f"podnet-{name}."

    def mac(netns: str, dev: str) -> str:
        out = subprocess.run(["ip", "-n", netns, "-br", "link", "show", dev], capture_output=True, text=True,
                             timeout=10, check=True).stdout.split()
        return out[2]

    own = [p for p in pods if not p["spec"].get("hostNetwork")]
    nodes = sorted({p["spec"]["nodeName"] for p in own})
    bridge_mac = {n: mac(prefix + "node-" + n, "cni0") for n in nodes}
    with ThreadPoolExecutor(8) as pool:
        pod_macs = list(pool.map(lambda p: mac(f"{prefix}pod-{p['metadata']['namespace']}-{p['metadata']['name']}",
                                               "eth0"), own))
        for node in nodes:
            batch = "".join(f"neigh replace {p['status']['podIP']} lladdr {m} dev cni0 nud permanent\n"
                            for p, m in zip(own, pod_macs) if p["spec"]["nodeName"] == node)
            subprocess.run(["ip", "-n", prefix + "node-" + node, "-batch", "-"], input=batch, text=True,
                           timeout=60, check=True)

        def gateway(p: dict) -> None:
            gw = p["status"]["podIP"].rsplit(".", 1)[0] + ".1"
            subprocess.run(["ip", "-n", f"{prefix}pod-{p['metadata']['namespace']}-{p['metadata']['name']}", "neigh",
                            "replace", gw, "lladdr", bridge_mac[p["spec"]["nodeName"]], "dev", "eth0", "nud",
                            "permanent"], timeout=10, check=True)

        list(pool.map(gateway, own))
    return time.monotonic() - start


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def supervisor_idle_cpu(name: str, seconds: float = 3.0) -> float | None:
    """The supervisor's CPU use (fraction of one CPU) while the cluster just runs (its reap loop)."""
    from podnet.host.control import send
    from podnet.host.layout import ClusterLayout

    try:
        pid = send(ClusterLayout(name).socket_path, {"op": "ping"}, timeout=5)["pid"]
        def cpu() -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        before = cpu()
        time.sleep(seconds)
        return (cpu() - before) / seconds
    except Exception:  # noqa: BLE001 - a figure, not a test
        return None


def diagnose(row: dict, name: str, pods: list[dict], web: dict[str, str], answered: dict[str, float]) -> None:
    """Who answered late (more than 3 s after the median), where they run, whether they restarted."""
    if not answered:
        return
    node_of = {p["status"]["podIP"]: p["spec"].get("nodeName") for p in pods}
    median = statistics.median(answered.values())
    late = sorted((t, ip) for ip, t in answered.items() if t > median + 3) + [(None, ip) for ip in web if ip not in answered]
    row["late_count"] = len(late)
    if not late:
        return
    now = {p["metadata"]["name"]: sum(int(c.get("restartCount") or 0) for c in p["status"].get("containerStatuses") or [])
           for p in running_pods(name)}
    row["restarts_total"] = sum(now.get(n, 0) for n in web.values())
    row["late_by_node"] = dict(collections.Counter(node_of.get(ip) for _, ip in late))
    row["late_restarts"] = sum(now.get(web[ip], 0) for _, ip in late)
    row["late_examples"] = []
    for t, ip in late[:3]:
        logs = podnet("logs", "default/" + web[ip], "--name", name, timeout=30, check=False).stdout
        row["late_examples"].append({"pod": web[ip], "ip": ip, "node": node_of.get(ip), "answered": t,
                                     "restarts": now.get(web[ip]), "log_tail": logs[-600:]})
    host_octets = [int(ip.rsplit(".", 1)[1]) for _, ip in late]
    row["late_host_octets"] = (min(host_octets), statistics.median(host_octets), max(host_octets))


# ---- profile ----------------------------------------------------------------------------------


class Clock:
    """Wall-clock accumulators: name -> [calls, seconds]."""

    def __init__(self) -> None:
        self.totals: dict[str, list] = collections.defaultdict(lambda: [0, 0.0])
        self.originals: list[tuple[object, str, object]] = []

    def restore(self) -> None:
        for owner, attr, original in reversed(self.originals):
            setattr(owner, attr, original)
        self.originals.clear()

    def wrap(self, owner, attr: str, label: str, static: bool = False) -> None:
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        fn = original.__func__ if isinstance(original, staticmethod) else original
        totals = self.totals[label]
        self.originals.append((owner, attr, original))

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[0] += 1
                totals[1] += time.perf_counter() - start

        setattr(owner, attr, staticmethod(timed) if isinstance(original, staticmethod) else timed)


def instrument(clock, supervisor_mod, dataplane, teardown_mod, cni_bridge, runtime) -> None:
    clock.wrap(supervisor_mod.Supervisor, "_compute", "compute the cluster (control plane)")
    clock.wrap(dataplane.DataPlane, "build", "build network (LAN, nodes, overlay)")
    clock.wrap(dataplane.DataPlane, "attach", "DataPlane.attach (per pod)")
    clock.wrap(teardown_mod, "record_namespace", "  record_namespace")
    clock.wrap(dataplane, "create_netns", "  create_netns")
    clock.wrap(dataplane.DataPlane, "_conf", "  CNI config")
    clock.wrap(cni_bridge, "add", "  CNI ADD (bridge.add)")
    clock.wrap(cni_bridge, "_wait_oper_up", "    CNI: wait host veth oper up")
    clock.wrap(runtime.Runtime, "start_pod", "Runtime.start_pod (per pod)")
    clock.wrap(runtime.Runtime, "write_pod_files", "  resolv.conf + hosts")
    clock.wrap(runtime.Runtime, "_wait_for_sandbox", "  wait for sandbox (sleep infinity)")
    clock.wrap(runtime.Runtime, "_start", "  start containers (nsenter …)")
    clock.wrap(runtime, "container_environment", "  container env (service links)")
    clock.wrap(runtime.Runtime, "stop_all", "stop: Runtime.stop_all (every pod, in turn)")
    clock.wrap(dataplane.DataPlane, "teardown", "stop: DataPlane.teardown (namespaces)")
    clock.wrap(teardown_mod._netns, "pids_in_netns", "  stop: pids_in_netns (/proc scan)")
    clock.wrap(teardown_mod._netns, "kill_pids", "  stop: kill_pids")
    clock.wrap(teardown_mod._netns, "delete_netns", "  stop: delete_netns")


def profile(nodes: int, replicas: int, top: int, use_cprofile: bool) -> dict:
    """One cluster started in-process: wall-clock step timers, or (use_cprofile) cProfile alone."""
    import yaml

    import podnet.cni.bridge as cni_bridge
    import podnet.linux.dataplane as dataplane
    import podnet.linux.runtime as runtime
    import podnet.linux.supervisor.core as supervisor_mod
    import podnet.linux.teardown as teardown_mod
    from podnet.api.store import load_store
    from podnet.config import parse_config
    from podnet.host.layout import ClusterLayout
    from podnet.linux.supervisor.state import ClusterState

    clock = Clock()
    name = new_name()
    layout = ClusterLayout(name)
    sup = None
    out: dict = {"name": name, "cprofile": use_cprofile}
    real_run = subprocess.run

    def run(argv, *args, **kwargs):  # `ip -n NS link set lo up` in DataPlane.attach, told apart
        label = "ip -n … link set lo up" if list(argv[:2]) == ["ip", "-n"] and "lo" in argv else "other subprocess.run"
        start = time.perf_counter()
        try:
            return real_run(argv, *args, **kwargs)
        finally:
            clock.totals[label][0] += 1
            clock.totals[label][1] += time.perf_counter() - start

    class TimedSubprocess:  # dataplane's own view of the subprocess module
        def __getattr__(self, item):
            return run if item == "run" else getattr(subprocess, item)

    real_popen = subprocess.Popen

    class TimedPopen(real_popen):  # fork+exec cost of the sandbox and container processes
        def __init__(self, argv, *args, **kwargs):
            start = time.perf_counter()
            try:
                super().__init__(argv, *args, **kwargs)
            finally:
                label = "  Popen (fork/exec) sandbox" if argv[:3] == ["ip", "netns", "exec"] else "  Popen (fork/exec) container"
                clock.totals[label][0] += 1
                clock.totals[label][1] += time.perf_counter() - start

    with tempfile.TemporaryDirectory(prefix="podnet-bench-") as tmp:
        manifest = Path(tmp, "web.json")
        manifest.write_text(manifests(replicas))
        config_doc = yaml.safe_load(cluster_config(name, nodes, None))
        try:
            store = load_store([str(manifest)])
            parse_config(yaml.safe_dump(config_doc), "config")
            ClusterState(layout).create(config_doc, [o.body for o in sorted(store.objects.values(), key=lambda o: o.key)])

            if not use_cprofile:
                instrument(clock, supervisor_mod, dataplane, teardown_mod, cni_bridge, runtime)
                dataplane.subprocess = TimedSubprocess()
                runtime.subprocess = type("S", (), {"Popen": TimedPopen, "DEVNULL": subprocess.DEVNULL,
                                                    "STDOUT": subprocess.STDOUT,
                                                    "TimeoutExpired": subprocess.TimeoutExpired})
            sup = supervisor_mod.Supervisor(layout)
            profiler = cProfile.Profile() if use_cprofile else None
            cpu0, own0 = machine_cpu(), os.times()
            t0 = time.monotonic()
            if profiler:
                profiler.enable()
            sup.start()
            if profiler:
                profiler.disable()
            out["start"] = time.monotonic() - t0
            own1 = os.times()
            out["cpu_machine"] = machine_cpu() - cpu0
            out["cpu_self"] = own1.user + own1.system - own0.user - own0.system
            # then until every pod answers (the containers' own start-up)
            web = {p.body["status"]["podIP"]: p.name for p in sup.cluster.of_kind("Pod")
                   if p.namespace == "default" and p.name.startswith("web-")}
            src = sup.runtime.pods["default/" + web[min(web)]]
            argv = sup.runtime.enter_argv(src, [PY, "-c", PROBE])
            spec = json.dumps({"targets": web, "port": PORT, "timeout": 120})
            done = real_run(argv, input=spec, capture_output=True, text=True, timeout=200, env=ENV)
            result = json.loads(done.stdout) if done.returncode == 0 else {"answered": {}, "failed": done.stderr}
            answered = sorted(result["answered"].values())
            out["reachable"] = (answered[-1] - t0) if answered and not result["failed"] else None
            out["answered"], out["pods"] = len(answered), len(web)
            if profiler:
                buf = io.StringIO()
                pstats.Stats(profiler, stream=buf).sort_stats("tottime").print_stats(top)
                out["cprofile_tottime"] = buf.getvalue()
                buf2 = io.StringIO()
                pstats.Stats(profiler, stream=buf2).sort_stats("cumulative").print_stats(top * 2)
                out["cprofile_cumulative"] = buf2.getvalue()
                buf3 = io.StringIO()
                pstats.Stats(profiler, stream=buf3).sort_stats("tottime").print_callers(
                    r"io.open|posix.open|posix.mkdir|time.sleep|fork_exec|posix.waitpid")
                out["cprofile_callers"] = buf3.getvalue()
            t1 = time.monotonic()
            sup.stopping.set()
            sup.stop()
            out["stop"] = time.monotonic() - t1
            out["clock"] = {k: tuple(v) for k, v in clock.totals.items()}
        finally:
            clock.restore()
            dataplane.subprocess = subprocess
            runtime.subprocess = subprocess
            if sup is not None and sup.runtime is not None:
                try:
                    sup.runtime.stop_all()
                except Exception as exc:  # noqa: BLE001
                    print(f"  ! stop_all: {exc}", file=sys.stderr)
            down(name)
    return out


def profile_down(nodes: int, replicas: int) -> dict:
    """`podnet up` as usual, then `podnet down`'s own code (lifecycle._down) in this process, timed in parts."""
    import datetime
    import shutil

    import podnet.host.control as control
    import podnet.linux.teardown as teardown_mod
    from podnet.cli import lifecycle

    name = new_name()
    clock = Clock()
    out: dict = {"name": name}
    with tempfile.TemporaryDirectory(prefix="podnet-bench-") as tmp:
        manifest, config = Path(tmp, "web.json"), Path(tmp, "cluster.json")
        manifest.write_text(manifests(replicas))
        config.write_text(cluster_config(name, nodes, None))
        try:
            podnet("up", "-f", str(manifest), "--config", str(config), "--name", name, "--timeout", "120", timeout=180)
            time.sleep(2)  # let the containers finish starting
            clock.wrap(control, "send", "send (ping, down)")
            clock.wrap(teardown_mod, "teardown", "teardown.teardown (by name)")
            clock.wrap(teardown_mod._netns, "pids_in_netns", "  pids_in_netns (/proc scan)")
            clock.wrap(teardown_mod._netns, "kill_pids", "  kill_pids")
            clock.wrap(shutil, "rmtree", "shutil.rmtree (etc dirs, state dir)")
            with LogKeeper(Path(f"/run/podnet/{name}/supervisor.log")) as kept:
                sent = time.time()
                t0 = time.monotonic()
                lifecycle._down(name)
                out["total"] = time.monotonic() - t0
            stopped = [line for line in kept.text.splitlines() if " stopped" in line or "stopping" in line]
            if stopped:
                stamp = datetime.datetime.strptime(stopped[-1][:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                out["supervisor_stopped_after"] = stamp - sent
            out["log_tail"] = kept.text.strip().splitlines()[-3:]
            out["clock"] = {k: tuple(v) for k, v in clock.totals.items()}
        finally:
            clock.restore()
            down(name)
    return out


def print_down_profile(prof: dict) -> None:
    print()
    print(f"`podnet down` of {prof['name']} (lifecycle._down in-process): {fmt(prof.get('total'))} s; the supervisor "
          f"logged 'stopped' {fmt(prof.get('supervisor_stopped_after'))} s after the request")
    for label, (calls, total) in prof.get("clock", {}).items():
        print(f"  {label}: {calls} calls, {total:.2f} s")
    print(f"  supervisor.log tail: {prof.get('log_tail')}")


# ---- report -----------------------------------------------------------------------------------


def fmt(value) -> str:
    return "—" if value is None else f"{value:.2f}"


SHOP = str(Path(__file__).resolve().parents[1] / "examples" / "shop")
RESOLVE = "import socket, sys; print(socket.gethostbyname(sys.argv[1]))"


def ready_pods(name: str) -> tuple[list[str], list[str]]:
    """(Ready, not Ready) pods of the running cluster, as `get pods` shows them."""
    items = json.loads(podnet("get", "pods", "-A", "-o", "json", "--name", name, timeout=60).stdout)["items"]
    ready, not_ready = [], []
    for pod in items:
        ref = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        conditions = pod["status"].get("conditions") or []
        (ready if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else not_ready).append(ref)
    return ready, not_ready


def shop_figure(runs: int, settle: float = 15.0) -> list[dict]:
    """The day-one figure: `podnet up -f examples/shop` (3 nodes, CoreDNS, the ingress controller)
    until every pod is Ready and a Service name resolves from a pod. `up` (its default wait) is
    run; as soon as it returns, `podnet exec shop/<frontend pod> -- python3 -c gethostbyname('backend')`
    must answer the backend Service's ClusterIP on the first try; then `get pods` is read until
    every pod is Ready (at most `settle` s more: a pod whose image podnet cannot run stays not
    Ready and is reported, with the reason `up` gave). All times from the start of `podnet up`."""
    rows = []
    for i in range(runs):
        name = new_name()
        row: dict = {"label": f"examples/shop #{i + 1}", "name": name}
        start = time.monotonic()
        try:
            up = podnet("up", "-f", SHOP, "--name", name, timeout=180, check=False)
            row["up"] = time.monotonic() - start
            if up.returncode != 0:
                row["error"] = (up.stderr or up.stdout).strip().splitlines()[-1:]
                rows.append(row)
                continue
            ready, not_ready = ready_pods(name)
            first_look = None if not_ready else time.monotonic() - start  # Ready when `up` returned
            client = next(p for p in ready if p.startswith("shop/frontend"))
            answer = podnet("exec", client, "--name", name, "--", "python3", "-c", RESOLVE, "backend",
                            timeout=30, check=False)
            row["resolved"] = time.monotonic() - start
            service = json.loads(podnet("get", "service", "backend", "-n", "shop", "-o", "json", "--name", name,
                                        timeout=30).stdout)["spec"]["clusterIP"]
            row["resolve_error"] = None if answer.stdout.strip() == service else (answer.stdout + answer.stderr).strip()
            if row["resolve_error"]:
                row["resolved"] = None
            deadline = time.monotonic() + settle
            while not_ready and time.monotonic() < deadline:
                time.sleep(0.1)
                ready, not_ready = ready_pods(name)
            row["all_ready"] = first_look or (None if not_ready else time.monotonic() - start)
            row["ready"], row["not_ready"] = len(ready), not_ready
            row["not_ready_why"] = [line.strip() for line in up.stdout.splitlines() if line.startswith("  ")
                                    and line.strip().split(":")[0] in not_ready]
        finally:
            row["down"] = down(name)
        rows.append(row)
    return rows


def print_shop(rows: list[dict]) -> None:
    print("\n`podnet up -f examples/shop` until every pod is Ready and a Service name resolves from a pod "
          "(goal: under 5 s)")
    for row in rows:
        if "error" in row:
            print(f"  {row['label']}: up failed: {row['error']}")
            continue
        ready = f"{fmt(row['all_ready'])} s" if row["all_ready"] is not None else \
            f"not all: {row['ready']} Ready, not Ready: {', '.join(row['not_ready'])}"
        print(f"  {row['label']}: up returned {fmt(row['up'])} s; every pod Ready: {ready}; "
              f"'backend' resolved from a pod: " + (f"{fmt(row['resolved'])} s" if row["resolved"] else
                                                    f"NO ({row['resolve_error']})") + f"; down {fmt(row['down'])} s")
        for line in row.get("not_ready_why") or []:
            print(f"      {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=300)
    parser.add_argument("--big-nodes", type=int, default=4)
    parser.add_argument("--big-replicas", type=int, default=1000)
    parser.add_argument("--big-max-pods", type=int, default=300)
    parser.add_argument("--runs", type=int, default=1, help="repeat (a) this many times")
    parser.add_argument("--skip-a", action="store_true")
    parser.add_argument("--static-neigh", action="store_true",
                        help="also run (b) with permanent neighbour entries added after up (an experiment)")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--skip-cprofile", action="store_true")
    parser.add_argument("--profile-only", action="store_true")
    parser.add_argument("--down-profile", action="store_true", help="also time the parts of `podnet down`")
    parser.add_argument("--top", type=int, default=25, help="cProfile lines")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--shop", type=int, default=3, metavar="RUNS",
                        help="runs of the day-one figure: examples/shop until usable (0: skip)")
    parser.add_argument("--shop-only", action="store_true", help="only the day-one figure")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/up.py builds real clusters: run it as root", file=sys.stderr)
        return 2
    rows = []
    report: dict = {"rows": rows, "cpus": os.cpu_count()}
    if args.shop and not args.profile_only:
        report["shop"] = shop_figure(args.shop)
        print_shop(report["shop"])
    if args.shop_only:
        args.skip_a = args.skip_big = args.skip_profile = True
        args.static_neigh = args.down_profile = False
    if not args.profile_only and not (args.skip_a and args.skip_big and not args.static_neigh):
        runs = [(f"(a) {args.nodes} nodes x {args.replicas // args.nodes} pods" + (f" #{i + 1}" if args.runs > 1 else ""),
                 args.nodes, args.replicas, None, 120) for i in range(0 if args.skip_a else args.runs)]
        if not args.skip_big:
            runs.append((f"(b) {args.big_replicas} pods, {args.big_nodes} nodes, maxPods {args.big_max_pods}",
                         args.big_nodes, args.big_replicas, args.big_max_pods, 600))
        if args.static_neigh:
            runs.append((f"(b') {args.big_replicas} pods, static neighbours", args.big_nodes, args.big_replicas,
                         args.big_max_pods, 600, True))
        for label, nodes, replicas, max_pods, timeout, *static in runs:
            try:
                rows.append(run_cluster(label, nodes, replicas, max_pods, timeout, bool(static and static[0])))
            except Exception as exc:  # the cluster is already removed (finally in run_cluster)
                rows.append({"label": label, "name": "?", "error": f"{type(exc).__name__}: {exc}"})
            print_row(rows[-1])
        print_table(rows)
    if not args.skip_profile:
        prof = profile(args.nodes, args.replicas, args.top, use_cprofile=False)
        report["profile"] = prof
        print_profile(prof)
        if not args.skip_cprofile:
            prof2 = profile(args.nodes, args.replicas, args.top, use_cprofile=True)
            report["cprofile"] = prof2
            print_cprofile(prof2)
    if args.down_profile:
        report["down_profile"] = profile_down(args.nodes, args.replicas)
        print_down_profile(report["down_profile"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return 0


def print_row(row: dict) -> None:
    print(f"{row['label']} [{row['name']}]: {row.get('up_line', '')}", flush=True)
    if row.get("error"):
        print(f"  ! FAILED: {row['error']}", flush=True)
    if row.get("failed"):
        some = list(row["failed"].items())[:5]
        print(f"  ! {len(row['failed'])} pods never answered, e.g. {some}", flush=True)
    if row.get("late_count"):
        print(f"  late (> median + 3 s): {row['late_count']} pods, by node {row.get('late_by_node')}, "
              f"restarts among them {row.get('late_restarts')} (all web pods: {row.get('restarts_total')}), "
              f"last IP octet min/median/max {row.get('late_host_octets')}", flush=True)
        for ex in row.get("late_examples", []):
            print(f"    {ex['pod']} {ex['ip']} on {ex['node']}: answered at {fmt(ex['answered'])} s, "
                  f"restarts {ex['restarts']}; log: {ex['log_tail'][-300:]!r}", flush=True)
    if row.get("left"):
        print(f"  ! namespaces left after down: {row['left'][:5]}", flush=True)


def print_table(rows: list[dict]) -> None:
    print()
    print(f"machine: {os.cpu_count()} CPUs; times in seconds from the start of `podnet up`")
    header = ("cluster", "pods", "up returns", "supervisor start()", "IPs known", "prober runs", "first", "median",
              "p90", "all reachable", "down", "CPU s (machine)", "load before")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for r in rows:
        sup = r.get("supervisor_log") or []
        sup_s = sup[0].rsplit(" in ", 1)[-1] if sup else "—"
        answered = f"{r.get('answered', 0)}/{r.get('web', 0)}"
        print(f"| {r['label']} | {r.get('pods', '—')} ({answered} answered) | {fmt(r.get('up'))} | {sup_s} | "
              f"{fmt(r.get('get'))} | {fmt(r.get('probe_started'))} | {fmt(r.get('first'))} | {fmt(r.get('median'))} | "
              f"{fmt(r.get('p90'))} | **{fmt(r.get('reachable'))}** | {fmt(r.get('down'))} | {fmt(r.get('cpu'))} | "
              f"{r.get('load_before', '—')} |")
    for tool, seconds in REFERENCE:
        print(f"| reference: {tool} (minikube time-to-k8s, working cluster) | | | | | | | | | {seconds:.0f} | | | |")
    print(f"ARP table (global to all namespaces) gc_thresh1/2/3: {neigh_limits()}")
    for r in rows:
        if r.get("idle_supervisor_cpu") is not None:
            print(f"{r['label']}: the idle supervisor uses {100 * r['idle_supervisor_cpu']:.0f}% of a CPU (reap loop)")
    for r in rows:
        extra = f", static neighbours added in {r['static_neigh_s']:.2f} s (before the prober)" if "static_neigh_s" in r else ""
        print(f"{r['label']}: ARP table full {r.get('arp_table_fulls', '—')} times during the run{extra}")
    for r in rows:
        print(f"{r['label']}: kernel net_namespace objects before/after down {r.get('netns_kernel')}, "
              f"waited {fmt(r.get('settle'))} s for the kernel to finish destroying them")
    a = [r["reachable"] for r in rows if r["label"].startswith("(a)") and r.get("reachable") is not None]
    if a:
        best, median = min(a), statistics.median(a)
        verdict = "met" if median < 10 else "NOT met"
        print(f"goal (a) all reachable < 10 s: {verdict} (median {median:.2f} s of {len(a)} runs, best {best:.2f} s)")


def print_profile(prof: dict) -> None:
    print()
    print(f"profile: Supervisor.start() in-process [{prof['name']}], {prof.get('pods')} web pods: start() "
          f"{prof['start']:.2f} s, all reachable {fmt(prof.get('reachable'))} s "
          f"({prof.get('answered')}/{prof.get('pods')} answered), stop() {fmt(prof.get('stop'))} s")
    print(f"CPU during start(): the supervisor {prof['cpu_self']:.2f} s, the whole machine {prof['cpu_machine']:.2f} s "
          f"of {prof['start'] * (os.cpu_count() or 1):.2f} s available ({os.cpu_count()} CPUs)")
    print("| step (wall clock, nested steps indented) | calls | total s | per call ms | % of start() |")
    print("|---|---:|---:|---:|---:|")
    order = ["compute the cluster (control plane)", "build network (LAN, nodes, overlay)",
             "DataPlane.attach (per pod)", "  record_namespace", "  create_netns", "ip -n … link set lo up",
             "  CNI config", "  CNI ADD (bridge.add)", "    CNI: wait host veth oper up",
             "Runtime.start_pod (per pod)", "  resolv.conf + hosts", "  Popen (fork/exec) sandbox",
             "  wait for sandbox (sleep infinity)", "  container env (service links)", "  start containers (nsenter …)",
             "  Popen (fork/exec) container", "other subprocess.run",
             "stop: Runtime.stop_all (every pod, in turn)", "stop: DataPlane.teardown (namespaces)",
             "  stop: pids_in_netns (/proc scan)", "  stop: kill_pids", "  stop: delete_netns"]
    clock = prof["clock"]
    for label in order + [k for k in clock if k not in order]:
        if label not in clock:
            continue
        calls, total = clock[label]
        shown = "  " + label if label.startswith("ip -n") else label
        print(f"| {shown} | {calls} | {total:.2f} | {1000 * total / max(calls, 1):.2f} | "
              f"{100 * total / prof['start']:.0f}% |")


def print_cprofile(prof: dict) -> None:
    print()
    print(f"cProfile of Supervisor.start() [{prof['name']}]: start() {prof['start']:.2f} s under the profiler, "
          f"all reachable {fmt(prof.get('reachable'))} s")
    print("by own time:")
    print(prof["cprofile_tottime"])
    print("cumulative:")
    print(prof["cprofile_cumulative"])
    print("who calls the expensive built-ins:")
    print(prof["cprofile_callers"])


if __name__ == "__main__":
    sys.exit(main())
