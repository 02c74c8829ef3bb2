"""Time a supervisor's restart after SIGKILL: by its watchdog's standby, and by `podnet up --name`.

    sudo PYTHONPATH=src python bench/crash_restart.py [--rounds 3]

Each round: `podnet up` a cluster of 2 nodes (a Deployment of 2 agnhost netexec behind a
Service, plus kubeadm's 2 coredns pods), wait 2 s (the watchdog's standby starts once the
cluster is up), SIGKILL the supervisor and ping the control socket every 5 ms until a new
supervisor answers (the watchdog path); then SIGKILL the watchdog and the supervisor and time
`podnet up --name NAME` to its return (it returns once the new supervisor answers; it says how
long the supervisor itself took). Every cluster is named crm<random hex> and removed in a finally.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from podnet.host.control import send
from podnet.host.layout import ClusterLayout

APP = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: c
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: [netexec, --http-port=8080]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


def podnet(*argv: str) -> str:
    return subprocess.run([sys.executable, "-m", "podnet", *argv], capture_output=True, text=True, check=True).stdout


def answering_after(layout: ClusterLayout, dead: int) -> None:
    while True:
        try:
            if send(layout.socket_path, {"op": "ping"}, timeout=5)["pid"] != dead:
                return
        except Exception:
            pass
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    app = Path(tempfile.mkdtemp()) / "app.yaml"
    app.write_text(APP)
    for _ in range(args.rounds):
        name = f"crm{secrets.token_hex(3)}"
        layout = ClusterLayout(name)
        try:
            podnet("up", "-f", str(app), "--name", name)
            time.sleep(2)
            pid = send(layout.socket_path, {"op": "ping"})["pid"]
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            answering_after(layout, pid)
            by_watchdog = time.monotonic() - killed
            time.sleep(1)
            watchdog = int((layout.state_dir / "watchdog.pid").read_text().split()[0])
            pid = send(layout.socket_path, {"op": "ping"})["pid"]
            os.kill(watchdog, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            started = time.monotonic()
            said = podnet("up", "--name", name).strip()
            print(f"{name}: SIGKILL to answering (watchdog, standby) {by_watchdog:.2f} s; "
                  f"`podnet up --name` {time.monotonic() - started:.2f} s ({said})")
        finally:
            subprocess.run([sys.executable, "-m", "podnet", "down", "--name", name], capture_output=True)


if __name__ == "__main__":
    main()
