"""iperf3 between pods: same node versus different nodes, over VXLAN and over host-gw.

    sudo PYTHONPATH=src python bench/throughput.py [--seconds 3] [--repeat 3]

For each overlay a 2-node cluster (named b<random hex>, removed in a finally) with three shell
pods pinned by nodeName: `server` and `same` on node1, `other` on node2 (image busybox,
command sleep: the host's sleep). `iperf3 -s -1` runs in `server` (podnet exec), `iperf3 -c
<server IP> -t N -J` in the client pod; the receiver's rate (end.sum_received) is the figure,
the median of --repeat runs. Every packet stays inside the cluster's namespaces.
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

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "PODNET_DEBUG": "1"}  # tracebacks on internal errors
PY = sys.executable
IPERF = "/usr/bin/iperf3"
PORT = 5201


def pods() -> str:
    def pod(name: str, node: str) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "iperf"}},
                "spec": {"nodeName": node, "containers": [{"name": "shell", "image": "busybox",
                                                           "command": ["sleep", "3600"]}]}}

    return json.dumps({"apiVersion": "v1", "kind": "List",
                       "items": [pod("server", "node1"), pod("same", "node1"), pod("other", "node2")]})


def podnet(*args: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "podnet", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout, check=check)


def pod_ips(name: str) -> dict[str, str]:
    items = json.loads(podnet("get", "pods", "-o", "json", "--name", name, timeout=60).stdout)["items"]
    return {i["metadata"]["name"]: i["status"]["podIP"] for i in items}


def mtu(name: str, pod: str) -> str:
    out = podnet("exec", pod, "--name", name, "--", "cat", "/sys/class/net/eth0/mtu", timeout=20, check=False)
    return out.stdout.strip() or "?"


def iperf(name: str, server: str, client: str, ip: str, seconds: int) -> dict:
    """One run: a one-off server, then the client (retried while the server is not listening yet)."""
    srv = subprocess.Popen([PY, "-m", "podnet", "exec", server, "--name", name, "--",
                            IPERF, "-s", "-1", "-p", str(PORT)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        last = ""
        while time.monotonic() < deadline:
            done = podnet("exec", client, "--name", name, "--", IPERF, "-c", ip, "-p", str(PORT), "-t", str(seconds),
                          "-J", "--connect-timeout", "2000", timeout=seconds + 30, check=False)
            try:
                report = json.loads(done.stdout)
            except json.JSONDecodeError:
                report = {"error": (done.stderr or done.stdout).strip()[-300:]}
            if "error" not in report:
                end = report["end"]
                return {"gbps": end["sum_received"]["bits_per_second"] / 1e9,
                        "retransmits": end["sum_sent"].get("retransmits"),
                        "cpu_sender": end.get("cpu_utilization_percent", {}).get("host_total"),
                        "cpu_receiver": end.get("cpu_utilization_percent", {}).get("remote_total")}
            last = report["error"]
            if "refused" not in last and "unable to connect" not in last:
                break
            time.sleep(0.2)
        raise RuntimeError(f"iperf3 {client} -> {server} ({ip}) failed: {last}")
    finally:
        try:
            srv.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(srv.pid, 9)  # our own `podnet exec` (nsenter iperf3 -s): its process group
            srv.wait(timeout=10)


def measure(overlay: str, seconds: int, repeat: int) -> dict:
    name = "b" + secrets.token_hex(4)
    result: dict = {"overlay": overlay, "name": name}
    with tempfile.TemporaryDirectory(prefix="podnet-bench-") as tmp:
        manifest, config = Path(tmp, "pods.json"), Path(tmp, "cluster.json")
        manifest.write_text(pods())
        config.write_text(json.dumps({"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": name,
                                      "nodes": 2, "networking": {"overlay": overlay}}))
        try:
            podnet("up", "-f", str(manifest), "--config", str(config), "--name", name, "--timeout", "60", timeout=120)
            ips = pod_ips(name)
            result["ips"] = ips
            result["mtu"] = {p: mtu(name, p) for p in ("same", "other")}
            for path, client in (("same node", "same"), ("cross node", "other")):
                runs = [iperf(name, "server", client, ips["server"], seconds) for _ in range(repeat)]
                result[path] = {"runs": runs, "gbps": statistics.median(r["gbps"] for r in runs)}
        finally:
            podnet("down", "--name", name, timeout=180, check=False)
            left = [n for n in os.listdir("/run/netns") if n.startswith(f"podnet-{name}.")] \
                if os.path.isdir("/run/netns") else []
            if left:
                print(f"  ! namespaces left after down: {left}", file=sys.stderr)
    return result


def runs_text(runs: list[dict]) -> str:
    return ", ".join(f"{x['gbps']:.2f}" for x in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/throughput.py builds real clusters: run it as root", file=sys.stderr)
        return 2
    if not os.access(IPERF, os.X_OK):
        print(f"{IPERF} is missing (apt-get install iperf3)", file=sys.stderr)
        return 2
    results = []
    for overlay in ("vxlan", "host-gw"):
        try:
            results.append(measure(overlay, args.seconds, args.repeat))
        except Exception as exc:  # the cluster is already removed
            results.append({"overlay": overlay, "error": f"{type(exc).__name__}: {exc}"})
            print(f"{overlay}: FAILED: {results[-1]['error']}", file=sys.stderr)
    print(f"iperf3 -t {args.seconds}, one TCP stream, median of {args.repeat} runs; {os.cpu_count()} CPUs, "
          f"load before {Path('/proc/loadavg').read_text().split()[0]}")
    print("| overlay | pod MTU (same/other) | same node Gbit/s | cross node Gbit/s | cross/same | runs same | runs cross | retransmits same/cross |")
    print("|---|---|---:|---:|---:|---|---|---:|")
    for r in results:
        if "error" in r:
            print(f"| {r['overlay']} | FAILED: {r['error']} | | | | | | |")
            continue
        same, cross = r["same node"], r["cross node"]
        each_same, each_cross = runs_text(same["runs"]), runs_text(cross["runs"])
        retrans = "/".join(str(sum(x["retransmits"] or 0 for x in runs["runs"])) for runs in (same, cross))
        print(f"| {r['overlay']} | {r['mtu']['same']}/{r['mtu']['other']} | {same['gbps']:.2f} | {cross['gbps']:.2f} | "
              f"{cross['gbps'] / same['gbps']:.2f} | {each_same} | {each_cross} | {retrans} |")
    ok = [r for r in results if "error" not in r]
    if len(ok) == 2:
        print(f"VXLAN cross-node vs host-gw cross-node: {ok[0]['cross node']['gbps'] / ok[1]['cross node']['gbps']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
