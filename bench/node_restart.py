"""Time a node reboot: from `podnet node restart node2` to every pod of node2 Ready again.

    sudo PYTHONPATH=src python bench/node_restart.py [--rounds 3] [--replicas 20]

One cluster of 2 nodes (a Deployment of agnhost netexec with a 1 s readiness probe, spread
over both nodes, behind a Service, plus kubeadm's 2 coredns pods). Each round waits for every
pod Ready, runs `podnet node restart node2` and reads the pods from the supervisor's socket
every 20 ms until each pod of node2 is Ready with one restart more. Printed per round: the
command's own time (Python's start-up included) and the time to all Ready, both from the moment
the command began. The cluster is named nrb<random hex> and removed in a finally.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' manifests (tests/livecluster.py)
sys.path.insert(0, str(ROOT / "src"))

from podnet.host.control import send  # noqa: E402
from podnet.host.layout import ClusterLayout  # noqa: E402
from tests.livecluster import WEB_SERVICE, netexec_deployment  # noqa: E402

def app(replicas: int) -> str:
    return netexec_deployment(replicas) + WEB_SERVICE


def podnet(*argv: str) -> str:
    return subprocess.run([sys.executable, "-m", "podnet", *argv], capture_output=True, text=True, check=True).stdout


def pods(layout: ClusterLayout) -> dict[str, dict]:
    items = send(layout.socket_path, {"op": "objects", "counters": False})["items"]
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in items if p["kind"] == "Pod"}


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def restarts(pod: dict) -> list[int]:
    return [c.get("restartCount", 0) for c in pod["status"].get("containerStatuses") or []]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=20)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp())
    (directory / "app.yaml").write_text(app(args.replicas))
    name = f"nrb{secrets.token_hex(3)}"
    (directory / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n")
    layout = ClusterLayout(name)
    try:
        podnet("up", "-f", str(directory / "app.yaml"), "--config", str(directory / "cluster.yaml"))
        for _ in range(args.rounds):
            while not all(ready(p) for p in pods(layout).values()):
                time.sleep(0.1)
            before = pods(layout)
            on_node = [ref for ref, p in before.items() if p["spec"].get("nodeName") == "node2"]
            started = time.monotonic()
            podnet("node", "restart", "node2", "--name", name)
            answered = time.monotonic() - started
            while True:
                now = pods(layout)
                if all(ready(now[ref]) and restarts(now[ref]) == [n + 1 for n in restarts(before[ref])]
                       for ref in on_node):
                    break
                time.sleep(0.02)
            print(f"{name}: {len(on_node)} pods on node2: `podnet node restart` returned after {answered:.2f} s, "
                  f"every pod Ready again after {time.monotonic() - started:.2f} s")
    finally:
        subprocess.run([sys.executable, "-m", "podnet", "down", "--name", name], capture_output=True)


if __name__ == "__main__":
    main()
