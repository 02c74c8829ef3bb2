"""ADD latency of podnet-cni against the reference bridge plugin, side by side in one run.

    sudo PYTHONPATH=src python bench/cni.py [-n 50]

Three ways to attach N pods to a fresh node namespace each, all with the same configuration
(bridge cni0, isGateway, hairpinMode, mtu 1400, host-local 10.99.0.0/24):

  podnet in-process   podnet.cni.bridge.add(..., node_netns=NODE), as the node agent calls it
  podnet-cni          ip netns exec NODE <bin>/podnet-cni, the launcher that
                      `python -m podnet.cni.install <bin>` writes (python -IS), config on stdin
  python -c           ip netns exec NODE python -c 'from podnet.cni.main import main; ...'
                      (what pip's console script `podnet-cni` amounts to, with site-packages)
  reference           ip netns exec NODE /usr/lib/cni/bridge (which execs host-local)

Median and 90th percentile per ADD, and the ratios to the reference (goals: in-process <= 1x,
executable <= 2x). Everything lives in podnet-b<random>-* namespaces, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)

REFERENCE = "/usr/lib/cni/bridge"
ENTRY = "import sys; from podnet.cni.main import main; sys.exit(main())"  # the console script's body


def conf(data_dir: str) -> dict:
    return {"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cni0", "isGateway": True,
            "ipMasq": False, "hairpinMode": True, "mtu": 1400,
            "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": data_dir}}


class Namespaces:
    def __init__(self) -> None:
        self.prefix = f"podnet-b{secrets.token_hex(3)}-"
        self.made: list[str] = []

    def add(self, suffix: str) -> str:
        name = self.prefix + suffix
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.made.append(name)
        return name

    def remove_all(self) -> None:
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.made.clear()


def run_mode(mode: str, n: int, spaces: Namespaces, tmp: str, backend: str = "raw") -> list[float]:
    tag = mode.replace("-", "")[:5]
    node = spaces.add(f"{tag}-node")
    pods = [spaces.add(f"{tag}-p{i}") for i in range(n)]
    data_dir = os.path.join(tmp, f"{mode}-{backend}")
    text = json.dumps(conf(data_dir))
    times = []
    if mode == "inproc":
        from podnet.cni import bridge, config

        netconf = config.parse(text)
        os.environ["PODNET_CNI_NETLINK"] = backend
        for i, pod in enumerate(pods):
            start = time.perf_counter()
            bridge.add(netconf, f"c{i}", f"/run/netns/{pod}", "eth0", node_netns=node)
            times.append(time.perf_counter() - start)
        return times
    if mode == "exec":
        from podnet.cni import install

        binary = [install.install(os.path.join(tmp, "bin"))]
    else:
        binary = [sys.executable, "-c", ENTRY] if mode == "exec-c" else [REFERENCE]
    for i, pod in enumerate(pods):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SRC, "CNI_COMMAND": "ADD",
               "CNI_CONTAINERID": f"c{i}", "CNI_NETNS": f"/run/netns/{pod}", "CNI_IFNAME": "eth0",
               "CNI_PATH": "/usr/lib/cni", "PODNET_CNI_NETLINK": backend}
        start = time.perf_counter()
        proc = subprocess.run(["ip", "netns", "exec", node, *binary], input=text.encode(), env=env, capture_output=True)
        times.append(time.perf_counter() - start)
        if proc.returncode:
            raise SystemExit(f"{mode}: ADD failed: {proc.stdout.decode()} {proc.stderr.decode()}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="pods per plugin (default 50)")
    parser.add_argument("--pyroute2", action="store_true", help="also time the in-process path on pyroute2")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    spaces = Namespaces()
    tmp = tempfile.mkdtemp(prefix="podnet-bench-cni-")
    rows = []
    try:
        modes = [("reference", "ref", "raw"), ("podnet in-process", "inproc", "raw"),
                 ("podnet-cni executable", "exec", "raw"), ("python -c (console script)", "exec-c", "raw")]
        if opts.pyroute2:
            modes.append(("podnet in-process (pyroute2)", "inproc", "pyroute2"))
        for label, mode, backend in modes:
            times = run_mode(mode, opts.n, spaces, tmp, backend)
            spaces.remove_all()
            times.sort()
            rows.append((label, statistics.median(times) * 1000, times[int(len(times) * 0.9) - 1] * 1000))
    finally:
        spaces.remove_all()
        shutil.rmtree(tmp, ignore_errors=True)
    ref = rows[0][1]
    print(f"ADD latency over {opts.n} pods (ms)")
    print(f"{'':30} {'median':>8} {'p90':>8} {'x reference':>12}")
    for label, median, p90 in rows:
        print(f"{label:30} {median:8.2f} {p90:8.2f} {median / ref:11.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
