"""Time a supervisor's restart after SIGKILL: by its watchdog's standby, and by `podnet up --name`.

    sudo PYTHONPATH=src python bench/crash_restart.py [--rounds 3] [--proxy-mode userspace]

Each round: `podnet up` a cluster of 2 nodes (a Deployment of 2 agnhost netexec behind a
Service, plus kubeadm's 2 coredns pods), wait 2 s (the watchdog's standby starts once the
cluster is up), SIGKILL the supervisor and ping the control socket every 5 ms until a new
supervisor answers (the watchdog path); then SIGKILL the watchdog and the supervisor and time
`podnet up --name NAME` to its return (it returns once the new supervisor answers; it says how
long the supervisor itself took). Meanwhile a probe in node1's namespace opens a new connection
to the Service's ClusterIP every 5 ms: it reports how many failed and how long ClusterIP was
down (from the SIGKILL to the first answer after a failure; 0 if none failed). In nftables and
iptables modes the rules stay in the kernel, so none fails; in userspace mode the listeners die
with the supervisor and connections are refused until its successor opened new ones. Every
cluster is named crm<random hex> and removed in a finally.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' manifests (tests/livecluster.py)
sys.path.insert(0, str(ROOT / "src"))

from podnet.host.control import send  # noqa: E402
from podnet.host.layout import ClusterLayout  # noqa: E402
from podnet.host.netns import socket_in_netns  # noqa: E402
from tests.livecluster import WEB_SERVICE, netexec_deployment  # noqa: E402

APP = netexec_deployment(2, probe=False) + WEB_SERVICE


def podnet(*argv: str) -> str:
    return subprocess.run([sys.executable, "-m", "podnet", *argv], capture_output=True, text=True, check=True).stdout


class Probe:
    """New connections to ip:port from a namespace, each one a (time.monotonic(), ok) sample."""

    def __init__(self, netns: str, ip: str, port: int):
        self.netns, self.address = netns, (ip, port)
        self.samples: list[tuple[float, bool]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(0.005):
            sock = socket_in_netns(self.netns, socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(2)
            try:
                sock.connect(self.address)
                sock.sendall(b"GET /hostname HTTP/1.0\r\n\r\n")
                ok = sock.recv(64).split(b"\r\n", 1)[0].split()[1:2] == [b"200"]
            except OSError:
                ok = False
            finally:
                sock.close()
            self.samples.append((time.monotonic(), ok))

    def outage(self, since: float) -> tuple[int, int, float]:
        """Requests sent and failed after `since`, and the seconds from `since` to the first
        success following a failure (0.0 if none failed)."""
        after = [(t, ok) for t, ok in self.samples if t >= since]
        failed = [t for t, ok in after if not ok]
        if not failed:
            return len(after), 0, 0.0
        back = next((t for t, ok in after if ok and t > failed[0]), after[-1][0])
        return len(after), len(failed), back - since

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


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
    parser.add_argument("--proxy-mode", default="nftables", choices=["nftables", "iptables", "userspace"])
    args = parser.parse_args()
    app = Path(tempfile.mkdtemp()) / "app.yaml"
    app.write_text(APP)
    config = app.parent / "cluster.yaml"
    for _ in range(args.rounds):
        name = f"crm{secrets.token_hex(3)}"
        layout = ClusterLayout(name)
        try:
            config.write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n"
                              f"networking: {{proxyMode: {args.proxy_mode}}}\n")
            podnet("up", "-f", str(app), "--config", str(config))
            podnet("wait", "--for=condition=Ready", "pod", "--all", "--timeout=120s", "--name", name)
            time.sleep(2)
            services = json.loads(podnet("get", "svc", "web", "-o", "json", "--name", name))
            probe = Probe(layout.node_netns("node1"), services["spec"]["clusterIP"], 80)
            time.sleep(1)
            pid = send(layout.socket_path, {"op": "ping"})["pid"]
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            answering_after(layout, pid)
            by_watchdog = time.monotonic() - killed
            time.sleep(1)
            probe.stop()
            sent, failed, down = probe.outage(killed)
            print(f"{name} ({args.proxy_mode}): ClusterIP from node1 after the SIGKILL: {failed} of {sent} "
                  f"connections failed, down {down:.2f} s")
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
