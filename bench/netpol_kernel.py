"""NetworkPolicy in the kernel (issue 16, Performance): enforcement delay, ruleset size, cost per packet.

    sudo PYTHONPATH=src python bench/netpol_kernel.py [--pods 300] [--policies 1000]
                                                      [--skip-renderer] [--skip-live]

1. Ruleset size from the renderer (no cluster): 10 namespaces, the same 100 policies of
   bench/generate.py, 100 / 1,000 / 5,000 pods (replicas 1 / 10 / 50): rules and set elements
   of node1's table (100 nodes, so that every pod is scheduled and has an address).
2. A real 3-node cluster (named b<random hex>, removed in a finally): a Deployment `web` of
   --pods agnhost netexec replicas (app=web), a client pod `cli` (node1), a server `srv`
   (node2) and a `joiner` (node3, app=other). A prober runs in `cli` (podnet exec) and opens a
   new TCP connection to its targets every ~5 ms (100 ms time-out), recording when each
   attempt started (CLOCK_MONOTONIC, shared by every namespace).
   - apply → enforced: `podnet apply` of a deny-all-ingress policy selecting app=web; targets:
     one web pod on each node. Figure: from the command's start to the start of the first
     refused attempt, the slowest node (the drop direction); then `podnet delete` of it and the
     first admitted attempt (admit). The command's own wall time beside it.
   - a pod joining the selected set: `podnet apply` of `joiner` with app=web (it drops), then
     back to app=other (it admits).
   - cost per packet: TCP connect time cli → srv (median of 2,000 new connections) and iperf3
     cli → srv (median of 3 × 3 s), with 0 policies, then with --policies policies loaded that
     select the web pods (each: ingress from app=cN on port 1000+N), not cli or srv. Ratio.
Every packet stays inside the cluster's namespaces.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
SRC = str(ROOT / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "PODNET_DEBUG": "1"}
PY = sys.executable
IPERF = "/usr/bin/iperf3"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
PORT = 8080

PROBER = r"""
import json, socket, sys, threading, time
spec = json.loads(sys.argv[1])
out = {}
def loop(ip):
    rec = []
    end = time.monotonic() + spec["seconds"]
    while time.monotonic() < end:
        t = time.monotonic()
        s = socket.socket()
        s.settimeout(0.1)
        try:
            s.connect((ip, spec["port"])); ok = True
        except OSError:
            ok = False
        s.close()
        if not rec or rec[-1][1] != ok:
            rec.append((t, ok))
        if ok:
            time.sleep(0.005)
    out[ip] = rec
def latency(ip, n):
    times = []
    for _ in range(n):
        s = socket.socket()
        t = time.perf_counter()
        s.connect((ip, spec["port"]))
        times.append(time.perf_counter() - t)
        s.close()
    out[ip] = times
if spec.get("latency"):
    latency(spec["targets"][0], spec["latency"])
else:
    ts = [threading.Thread(target=loop, args=(ip,)) for ip in spec["targets"]]
    [t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
"""


def podnet(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([PY, "-m", "podnet", *args], capture_output=True, text=True, env=ENV, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podnet {' '.join(args)} failed: {proc.stderr[-800:]}")
    return proc


def ruleset_sizes() -> list[tuple[int, int, int, int, int]]:
    import generate
    from podnet.api.store import load_store
    from podnet.config import parse_config
    from podnet.controlplane import compute
    from podnet.policy import render
    from podnet.semantics.networkpolicy import PolicyEngine
    rows = []
    for replicas in (1, 10, 50):
        with tempfile.TemporaryDirectory(prefix="podnet-bench-") as tmp:
            generate.generate(Path(tmp), namespaces=10, replicas=replicas)
            cluster = compute(load_store([tmp]), parse_config(generate.cluster_config(nodes=100)))
        engine = PolicyEngine(cluster)
        table = render(cluster, "node1", engine)
        rules = sum(len(chain) for chain in table.chains.values())
        elements = sum(len(s.elements) for s in table.sets.values())
        rows.append((len(cluster.of_kind("Pod")), len(engine.policies), rules, len(table.sets), elements))
    return rows


def pod(name: str, labels: dict, node: str, serve: bool) -> dict:
    container = ({"name": "agnhost", "image": AGNHOST, "args": ["netexec", f"--http-port={PORT}"],
                  "ports": [{"containerPort": PORT}]} if serve else
                 {"name": "shell", "image": "busybox", "command": ["sleep", "3600"]})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [container]}}


def doc(*items: dict) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})


def policy(name: str, selector: dict, ingress: list | None = None) -> dict:
    spec: dict = {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"]}
    if ingress:
        spec["ingress"] = ingress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name}, "spec": spec}


def prober(name: str, spec: dict) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "podnet", "exec", "cli", "--name", name, "--", PY, "-c", PROBER,
                             json.dumps(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def change(name: str, file: Path, verb: str, targets: list[str], want: bool) -> tuple[float, float]:
    """(seconds from the command's start to the first attempt of the wanted outcome on the slowest target,
    the command's wall time)."""
    proc = prober(name, {"targets": targets, "port": PORT, "seconds": 12})
    time.sleep(2.5)  # exec start-up, then a baseline of attempts
    t0 = time.monotonic()
    podnet(verb, "-f", str(file), "--name", name)
    wall = time.monotonic() - t0
    out, err = proc.communicate(timeout=60)
    records = json.loads(out)
    worst = 0.0
    for ip in targets:
        before = [ok for t, ok in records[ip] if t < t0]
        if not before or before[-1] == want:
            raise RuntimeError(f"{ip}: not {'refused' if want else 'admitted'} before the change: {records[ip]}")
        hits = [t for t, ok in records[ip] if t >= t0 and ok == want]
        if not hits:
            raise RuntimeError(f"{ip}: never {'admitted' if want else 'refused'} after the change: {records[ip]}")
        worst = max(worst, hits[0] - t0)
    return worst, wall


def latency(name: str, ip: str, n: int = 2000) -> float:
    proc = prober(name, {"targets": [ip], "port": PORT, "latency": n})
    out, err = proc.communicate(timeout=120)
    if proc.returncode:
        raise RuntimeError(err)
    return statistics.median(json.loads(out)[ip]) * 1e6


def iperf(name: str, ip: str, seconds: int = 3, repeat: int = 3) -> float:
    rates = []
    for _ in range(repeat):
        srv = subprocess.Popen([PY, "-m", "podnet", "exec", "srv", "--name", name, "--", IPERF, "-s", "-1", "-p", "5201"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, start_new_session=True)
        try:
            for _attempt in range(50):
                done = podnet("exec", "cli", "--name", name, "--", IPERF, "-c", ip, "-p", "5201", "-t", str(seconds),
                              "-J", "--connect-timeout", "2000", check=False)
                try:
                    report = json.loads(done.stdout)
                except json.JSONDecodeError:
                    report = {"error": done.stderr}
                if "error" not in report:
                    rates.append(report["end"]["sum_received"]["bits_per_second"] / 1e9)
                    break
                time.sleep(0.2)
            else:
                raise RuntimeError(f"iperf3 failed: {report['error']}")
        finally:
            try:
                srv.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(srv.pid, 9)
                srv.wait()
    return statistics.median(rates)


def kernel_size(name: str) -> str:
    sizes = []
    for node in ("node1", "node2", "node3"):
        text = podnet("exec", f"node/{node}", "--name", name, "--", "nft", "list", "table", "inet",
                      "podnet-netpol").stdout
        sizes.append(f"{node} {len(text.splitlines())} lines")
    return ", ".join(sizes)


def live(pods: int, policies: int) -> dict:
    name = "b" + secrets.token_hex(4)
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="podnet-bench-") as tmp:
        d = Path(tmp)
        web = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {
            "replicas": pods, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                "name": "agnhost", "image": AGNHOST, "args": ["netexec", f"--http-port={PORT}"],
                "ports": [{"containerPort": PORT}]}]}}}}
        (d / "pods.json").write_text(doc(web, pod("cli", {"app": "client"}, "node1", False),
                                         pod("srv", {"app": "srv"}, "node2", True),
                                         pod("joiner", {"app": "other"}, "node3", True)))
        (d / "cluster.json").write_text(json.dumps({"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1",
                                                    "name": name, "nodes": [
            {"name": f"node{i + 1}", "maxPods": max(110, pods // 3 + 10)} for i in range(3)]}))
        (d / "deny.json").write_text(doc(policy("deny-web", {"app": "web"})))
        (d / "join.json").write_text(doc(pod("joiner", {"app": "web"}, "node3", True)))
        (d / "leave.json").write_text(doc(pod("joiner", {"app": "other"}, "node3", True)))
        (d / "many.json").write_text(doc(*(policy(f"p{i}", {"app": "web"}, [
            {"from": [{"podSelector": {"matchLabels": {"app": f"c{i}"}}}], "ports": [{"port": 1000 + i}]}])
            for i in range(policies))))
        try:
            t = time.monotonic()
            podnet("up", "-f", str(d / "pods.json"), "--config", str(d / "cluster.json"), "--name", name,
                   "--timeout", "300", timeout=600)
            res["up"] = time.monotonic() - t
            items = json.loads(podnet("get", "pods", "-o", "json", "--name", name).stdout)["items"]
            ip = {i["metadata"]["name"]: i["status"].get("podIP") for i in items}
            res["pods"] = len(items)
            per_node: dict[str, str] = {}
            for i in items:
                if i["metadata"]["labels"].get("app") == "web" and i["status"].get("phase") == "Running":
                    per_node.setdefault(i["spec"]["nodeName"], i["status"]["podIP"])
            targets = sorted(per_node.values())
            res["web"] = sum(1 for i in items if i["metadata"]["labels"].get("app") == "web")
            deadline = time.monotonic() + 240
            while True:  # every target and srv answers
                try:
                    latency(name, ip["srv"], 1)
                    for target in targets + [ip["joiner"]]:
                        latency(name, target, 1)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            res["policy drop"] = [change(name, d / "deny.json", "apply", targets, False) for _ in range(1)]
            res["join drop"], res["join admit"] = [], []
            for _ in range(3):
                res["join drop"].append(change(name, d / "join.json", "apply", [ip["joiner"]], False))
                res["join admit"].append(change(name, d / "leave.json", "apply", [ip["joiner"]], True))
            res["policy admit"] = [change(name, d / "deny.json", "delete", targets, True)]
            for _ in range(2):
                res["policy drop"].append(change(name, d / "deny.json", "apply", targets, False))
                res["policy admit"].append(change(name, d / "deny.json", "delete", targets, True))
            podnet("apply", "-f", str(d / "deny.json"), "--name", name)
            res["noop"], res["version"] = [], []
            for _ in range(3):  # the floor: the same policy applied again (nothing changes); the CLI alone
                t = time.monotonic()
                podnet("apply", "-f", str(d / "deny.json"), "--name", name)
                res["noop"].append(time.monotonic() - t)
                t = time.monotonic()
                podnet("version")
                res["version"].append(time.monotonic() - t)
            podnet("delete", "-f", str(d / "deny.json"), "--name", name)
            res["lat0"] = latency(name, ip["srv"])
            res["iperf0"] = iperf(name, ip["srv"])
            res["size0"] = kernel_size(name)
            t = time.monotonic()
            podnet("apply", "-f", str(d / "many.json"), "--name", name, timeout=600)
            res["apply many"] = time.monotonic() - t
            res["sizeN"] = kernel_size(name)
            res["latN"] = latency(name, ip["srv"])
            res["iperfN"] = iperf(name, ip["srv"])
        finally:
            podnet("down", "--name", name, timeout=300, check=False)
            left = [n for n in os.listdir("/run/netns") if name in n] if os.path.isdir("/run/netns") else []
            if left:
                print(f"  ! namespaces left after down: {left}", file=sys.stderr)
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-renderer", action="store_true")
    args = parser.parse_args()
    if not args.skip_renderer:
        print_sizes()
    if args.skip_live:
        return 0
    if os.geteuid() != 0:
        print("the live part builds a real cluster: run it as root", file=sys.stderr)
        return 2
    r = live(args.pods, args.policies)
    report(r, args.policies)
    return 0


def print_sizes() -> None:
    print("ruleset of node1 (renderer; 10 namespaces, 100 nodes of maxPods 110, the same policies):")
    print("| pods | policies | rules | sets | set elements |\n|---:|---:|---:|---:|---:|")
    for row in ruleset_sizes():
        print("| " + " | ".join(f"{v:,}" for v in row) + " |")
    sys.stdout.flush()


def report(r: dict, policies: int) -> None:
    print(f"\nlive cluster: 3 nodes, {r['pods']} pods ({r['web']} app=web), up {r['up']:.1f} s; "
          f"{os.cpu_count()} CPUs")

    def fmt(runs: list) -> str:
        return (f"enforced {statistics.median(x[0] for x in runs) * 1e3:.0f} ms (runs "
                f"{', '.join(f'{x[0] * 1e3:.0f}' for x in runs)}), command "
                f"{statistics.median(x[1] for x in runs) * 1e3:.0f} ms (runs {', '.join(f'{x[1] * 1e3:.0f}' for x in runs)})")
    print(f"| policy selecting {r['web']} pods, apply → dropped on every node | {fmt(r['policy drop'])} | goal < 1 s |")
    print(f"| the same policy deleted → admitted on every node | {fmt(r['policy admit'])} | |")
    print(f"| a pod joins the selected set (label change by apply) → dropped | {fmt(r['join drop'])} | goal < 200 ms |")
    print(f"| the pod leaves it → admitted | {fmt(r['join admit'])} | |")
    print(f"| `podnet apply` of the same policy again (nothing changes) | command "
          f"{statistics.median(r['noop']) * 1e3:.0f} ms | `podnet version` {statistics.median(r['version']) * 1e3:.0f} ms |")
    print(f"| TCP connect cli → srv (other node), median of 2,000 | 0 policies {r['lat0']:.0f} µs | "
          f"{policies} policies {r['latN']:.0f} µs | ratio {r['latN'] / r['lat0']:.2f} (goal ≤ 1.2) |")
    print(f"| iperf3 cli → srv, median of 3 × 3 s | 0 policies {r['iperf0']:.2f} Gbit/s | "
          f"{policies} policies {r['iperfN']:.2f} Gbit/s | ratio {r['iperfN'] / r['iperf0']:.2f} (goal ≥ 0.95) |")
    print(f"applying the {policies} policies: {r['apply many']:.2f} s; nft table size: 0 policies "
          f"{r['size0']}; {policies}: {r['sizeN']}")


if __name__ == "__main__":
    sys.exit(main())
