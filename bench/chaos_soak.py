"""Chaos soak: random kills on a running cluster for N minutes, a steady client counting failures.

    sudo PYTHONPATH=src python bench/chaos_soak.py [--minutes 10] [--seed N] [--json out.json]

The cluster: 3 nodes, kube-proxy in nftables mode, a Deployment `web` (3 agnhost netexec
replicas with a readiness probe) behind a Service, kubeadm's 2 CoreDNS pods, and a client pod.
In the client pod run two loops (`podnet exec`, so they outlive any supervisor): requests — a
new connection per request to `web.default.svc.cluster.local` by name (a DNS lookup through
the pod's resolv.conf, then the ClusterIP kube-proxy balances), GET /hostname — and DNS
queries — one UDP A query for the same name straight to the pod's nameserver (kube-dns'
ClusterIP), 2 s timeout. Each prints one line per attempt with its wall-clock start and end.

Then, until the time is up, at random intervals (seeded; the seed is printed) one of:
  supervisor  SIGKILL to the supervisor; its watchdog starts a successor, which re-adopts;
  coredns     SIGKILL to a CoreDNS pod's container process; kubelet's side restarts it;
  workload    SIGKILL to a web pod's container process; the same;
  restart     SIGKILL to the watchdog and the supervisor, then `podnet up --name NAME`.
Each kill waits for its recovery (a new supervisor answering; the killed pod Ready again with
one more restart) before the next interval begins, so every failure falls into at most one
kill's window: a request or query that failed while a kill was in flight (from the kill to its
recovery) is counted under that kill's type — expected for a killed pod's in-flight and
refused connections — any other failure is "unexplained" and a bug.

At the end: kills by type, requests and DNS queries sent and failed (by window), recovery time
per type (median / max), container restarts seen against pod kills, supervisor successors seen,
and the invariants — every pod Ready, no two pods with one address (and host-local holding
exactly the running pods' addresses), the supervisor answering, no Traceback in its log, a
`podnet get pods -A -w` started before the first kill still watching (and printing the pods'
changes after the last supervisor restart), ending by itself at `down`, and `podnet down`
leaving nothing. The cluster is named soak<random hex> and removed in a finally.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' manifests (tests/livecluster.py)
sys.path.insert(0, str(ROOT / "src"))

from podnet.host.control import send  # noqa: E402
from podnet.host.layout import CNI_NETWORK, ClusterLayout  # noqa: E402
from podnet.linux.adopted import start_time  # noqa: E402
from tests.livecluster import WEB_SERVICE, netexec_deployment, pause_pod  # noqa: E402

KINDS = ("supervisor", "coredns", "workload", "restart")
NAME = "web.default.svc.cluster.local"

APP = netexec_deployment(3) + WEB_SERVICE + pause_pod("client", "node1")

# In the client pod. argv: mode (req|dns), stop file. One line per attempt:
# "<start> <end> ok <detail>" or "<start> <end> err <why>", wall-clock seconds.
CLIENT = r"""
import os, random, socket, struct, sys, time
mode, stop = sys.argv[1], sys.argv[2]
name = "web.default.svc.cluster.local"
server = next(l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver"))
def query():
    ident = random.randrange(65536)
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    packet += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    try:
        s.sendto(packet, (server, 53))
        while True:
            data = s.recv(2048)
            if data[:2] == packet[:2]:
                break
    finally:
        s.close()
    rcode, answers = data[3] & 15, struct.unpack("!H", data[6:8])[0]
    if rcode or not answers:
        raise RuntimeError(f"rcode {rcode}, {answers} answers")
    return f"{answers} answers"
def request():
    ip = socket.getaddrinfo(name + ".", 80, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    s = socket.create_connection((ip, 80), timeout=2)
    s.settimeout(5)
    try:
        s.sendall(b"GET /hostname HTTP/1.0\r\nHost: web\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if head.split(b"\r\n", 1)[0].split()[1:2] != [b"200"]:
        raise RuntimeError(f"status {head[:40]!r}")
    return body.decode().strip()
attempt = query if mode == "dns" else request
while not os.path.exists(stop):
    began = time.time()
    try:
        line = "ok " + attempt()
    except Exception as exc:
        line = f"err {type(exc).__name__}: {exc}".replace("\n", " ")
    print(f"{began:.3f} {time.time():.3f} {line}", flush=True)
    time.sleep(0.05)
"""


def podnet(*argv: str, timeout: float = 300) -> str:
    return subprocess.run([sys.executable, "-m", "podnet", *argv], capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


class Watcher:
    """`podnet get pods -A -w` for the whole run: its lines, each with the time it came."""

    def __init__(self, cluster: str):
        self.process = subprocess.Popen([sys.executable, "-m", "podnet", "get", "pods", "-A", "-w", "--name", cluster],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append((time.time(), line.rstrip()))

    def ended(self, timeout: float) -> int | None:
        """Its exit code once it ended within `timeout` seconds, else None (it is then killed)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


class Loop:
    """One client loop in the pod; its attempts as (start, end, ok, detail)."""

    def __init__(self, cluster: str, mode: str, stop: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "podnet", "exec", "default/client", "--name", cluster, "--", "python3", "-c",
             CLIENT, mode, str(stop)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.attempts: list[tuple[float, float, bool, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            began, ended, verdict, detail = (line.strip().split(" ", 3) + [""])[:4]
            self.attempts.append((float(began), float(ended), verdict == "ok", detail))

    def finish(self) -> None:
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reader.join(timeout=30)


@dataclass
class Kill:
    kind: str
    target: str
    at: float  # time.time() of the kill
    recovered: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def took(self) -> float | None:
        return None if self.recovered is None else self.recovered - self.at


class Soak:
    def __init__(self, cluster: str, rng: random.Random):
        self.cluster, self.rng = cluster, rng
        self.layout = ClusterLayout(cluster)
        self.supervisors: set[int] = set()

    # -- the cluster as the supervisor serves it -------------------------------------------------

    def ask(self, op: str, **fields) -> dict:
        return send(self.layout.socket_path, {"op": op, **fields}, timeout=10)

    def supervisor(self) -> int | None:
        try:
            pid = self.ask("ping")["pid"]
        except Exception:
            return None
        self.supervisors.add(pid)
        return pid

    def pods(self) -> dict[str, dict]:
        items = self.ask("objects", counters=False)["items"]
        return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in items if o["kind"] == "Pod"}

    @staticmethod
    def ready(pod: dict) -> bool:
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions") or [])

    @staticmethod
    def restarts(pod: dict) -> int:
        return sum(c.get("restartCount") or 0 for c in pod["status"].get("containerStatuses") or [])

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return True
            except Exception:
                pass  # the supervisor restarting: ask again
            time.sleep(0.05)
        return False

    # -- the kills ----------------------------------------------------------------------------------

    def kill(self, kind: str) -> Kill:
        if kind in ("supervisor", "restart"):
            return self._kill_supervisor(kind == "restart")
        return self._kill_container("kube-system" if kind == "coredns" else "default", kind)

    def _kill_supervisor(self, with_watchdog: bool) -> Kill:
        pid = self.supervisor()
        if with_watchdog:
            watchdog = int((self.layout.state_dir / "watchdog.pid").read_text().split()[0])
            os.kill(watchdog, signal.SIGKILL)
            wait_gone(watchdog)
        kill = Kill("restart" if with_watchdog else "supervisor", f"supervisor {pid}", time.time())
        os.kill(pid, signal.SIGKILL)
        if with_watchdog:
            wait_gone(pid)
            said = podnet("up", "--name", self.cluster).strip()
            kill.notes.append(said)
        if self.wait(lambda: self.supervisor() not in (None, pid), 120):
            kill.recovered = time.time()
        return kill

    def _kill_container(self, namespace: str, kind: str) -> Kill:
        record = json.loads((self.layout.state_dir / "running.json").read_text())
        prefix = "coredns-" if kind == "coredns" else "web-"
        candidates = [p for p in record["pods"] if p["namespace"] == namespace and p["name"].startswith(prefix)
                      and p["containers"][0]["process"] is not None]
        entry = self.rng.choice(sorted(candidates, key=lambda p: p["name"]))
        ref = f"{namespace}/{entry['name']}"
        process = entry["containers"][0]["process"]
        before = self.restarts(self.pods()[ref])
        if start_time(process["pid"]) != process["started"]:
            return Kill(kind, ref, time.time(), None, ["its recorded process is gone: not killed"])
        kill = Kill(kind, ref, time.time())
        os.killpg(process["pid"], signal.SIGKILL)

        def back() -> bool:
            pod = self.pods().get(ref)
            return pod is not None and self.restarts(pod) > before and self.ready(pod)

        if self.wait(back, 180):
            kill.recovered = time.time()
        return kill


def wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)


def leftovers(name: str) -> list[str]:
    prefix = f"podnet-{name}."
    found = [n for n in os.listdir("/run/netns") if n.startswith(prefix)] if os.path.isdir("/run/netns") else []
    found += [str(p) for p in Path("/etc/netns").glob(f"{prefix}*")] if Path("/etc/netns").is_dir() else []
    return found + ([f"/run/podnet/{name}"] if Path(f"/run/podnet/{name}").exists() else [])


def window_of(kills: list[Kill], began: float, ended: float) -> str:
    """The kind of the kill whose window [kill, recovery] the attempt [began, ended] overlaps,
    or "unexplained"."""
    for kill in kills:
        until = kill.recovered if kill.recovered is not None else float("inf")
        if began <= until and ended >= kill.at:
            return kill.kind
    return "unexplained"


def summary(attempts, kills: list[Kill]) -> dict:
    failed: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    for began, ended, ok, detail in attempts:
        if not ok:
            where = window_of(kills, began, ended)
            failed[where] = failed.get(where, 0) + 1
            examples.setdefault(where, []).append(f"{time.strftime('%H:%M:%S', time.localtime(began))} {detail}")
    return {"sent": len(attempts), "failed": sum(failed.values()), "failed_by_window": failed,
            "examples": {k: v[:3] for k, v in examples.items()}}


def invariants(soak: Soak, cluster: str) -> dict[str, bool | str]:
    checks: dict[str, bool | str] = {}
    checks["supervisor answering"] = soak.supervisor() is not None
    checks["every pod Ready"] = soak.wait(lambda: all(soak.ready(p) for p in soak.pods().values()), 120)
    pods = soak.pods()
    ips = [p["status"].get("podIP") for p in pods.values() if not p["spec"].get("hostNetwork")]
    checks["no duplicate pod IPs"] = len(ips) == len(set(ips)) and None not in ips
    held = True
    for node in sorted({p["spec"].get("nodeName") for p in pods.values()}):
        reserved = sorted(p.name for p in (soak.layout.ipam_dir(node) / CNI_NETWORK).iterdir() if p.name[0].isdigit())
        holders = sorted(p["status"]["podIP"] for p in pods.values()
                         if p["spec"].get("nodeName") == node and not p["spec"].get("hostNetwork"))
        held = held and reserved == holders
    checks["host-local holds exactly the pods' addresses"] = held
    checks["3 web pods, 2 coredns, 1 client"] = (
        sum(1 for r in pods if r.startswith("default/web-")) == 3
        and sum(1 for r in pods if r.startswith("kube-system/coredns-")) == 2 and "default/client" in pods)
    log = (soak.layout.state_dir / "supervisor.log").read_text(errors="replace")
    checks["no Traceback in supervisor.log"] = "Traceback" not in log
    return checks


def percentile_line(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--interval", type=float, nargs=2, default=(5.0, 20.0), metavar=("MIN", "MAX"),
                        help="seconds between a kill's recovery and the next kill, uniformly at random")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    rng = random.Random(seed)
    name = f"soak{secrets.token_hex(3)}"
    print(f"chaos soak: cluster {name}, {args.minutes:g} min, seed {seed}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="soak"))
    (work / "app.yaml").write_text(APP)
    (work / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 3\n"
                                       "networking: {proxyMode: nftables}\n")
    stop = work / "stop"
    loops: list[Loop] = []
    watcher: Watcher | None = None
    kills: list[Kill] = []
    results: dict = {"seed": seed, "minutes": args.minutes, "cluster": name}
    soak = Soak(name, rng)
    try:
        podnet("up", "-f", str(work / "app.yaml"), "--config", str(work / "cluster.yaml"))
        podnet("wait", "--for=condition=Ready", "pod", "--all", "-A", "--timeout=180s", "--name", name)
        restarts_before = sum(soak.restarts(p) for p in soak.pods().values())
        soak.supervisor()
        loops = [Loop(name, "req", stop), Loop(name, "dns", stop)]
        watcher = Watcher(name)
        time.sleep(3)  # the loops are running
        started = time.monotonic()
        end = started + args.minutes * 60
        while True:
            time.sleep(rng.uniform(*args.interval))
            if time.monotonic() >= end:
                break
            kind = rng.choice(KINDS)
            kill = soak.kill(kind)
            kills.append(kill)
            took = f"recovered in {kill.took:.2f} s" if kill.took is not None else "NOT RECOVERED"
            print(f"[{time.monotonic() - started:6.1f} s] {kill.kind:10} {kill.target}: {took}"
                  + (f" ({'; '.join(kill.notes)})" if kill.notes else ""), flush=True)
        time.sleep(3)  # what was in flight finishes
        stop.write_text("")
        for loop in loops:
            loop.finish()
        checks = invariants(soak, name)
        last = max((k.recovered or 0.0 for k in kills if k.kind in ("supervisor", "restart")), default=0.0)
        # a pod's change after the last supervisor restart, seen by the watch started before the first
        # kill: one more workload kill (counted with the others)
        marker = time.time()
        restart_web = soak.kill("workload")
        kills.append(restart_web)
        checks["get -w still watching, saw a change after the last supervisor restart"] = (
            watcher.process.poll() is None
            and soak.wait(lambda: any(t > max(last, marker) and restart_web.target.split("/")[1] in line
                                      for t, line in watcher.lines), 60))
        restarts_after = sum(soak.restarts(p) for p in soak.pods().values())
        results["kills"] = {k: sum(1 for x in kills if x.kind == k) for k in KINDS}
        results["recovery"] = {k: [x.took for x in kills if x.kind == k and x.took is not None] for k in KINDS}
        results["not_recovered"] = [f"{x.kind} {x.target}" for x in kills if x.recovered is None]
        results["requests"] = summary(loops[0].attempts, kills)
        results["dns"] = summary(loops[1].attempts, kills)
        pod_kills = sum(1 for x in kills if x.kind in ("coredns", "workload") and x.recovered is not None)
        results["container_restarts"] = {"seen": restarts_after - restarts_before, "pod_kills": pod_kills}
        results["supervisors_seen"] = len(soak.supervisors)
        results["supervisor_kills"] = sum(1 for x in kills if x.kind in ("supervisor", "restart"))
        results["invariants"] = checks
    finally:
        stop.write_text("")
        for loop in loops:
            if loop.process.poll() is None:
                loop.finish()
        subprocess.run([sys.executable, "-m", "podnet", "down", "--name", name], capture_output=True, timeout=300)
        if watcher is not None:
            results.setdefault("invariants", {})["get -w ended by itself at down (exit 0)"] = watcher.ended(60) == 0
        left = leftovers(name)
        results.setdefault("invariants", {})["down leaves nothing"] = not left
        if left:
            results["left_behind"] = left
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    good = all(v is True for v in results["invariants"].values()) and not results.get("not_recovered") \
        and not results["requests"]["failed_by_window"].get("unexplained") \
        and not results["dns"]["failed_by_window"].get("unexplained")
    return 0 if good else 1


def report(results: dict) -> None:
    print(f"\n== chaos soak: {results['minutes']:g} min, seed {results['seed']} ==")
    if "kills" not in results:
        print("(did not get as far as the kills)")
        return
    print("kills: " + ", ".join(f"{k} {n}" for k, n in results["kills"].items()))
    for what in ("requests", "dns"):
        r = results[what]
        by = ", ".join(f"{k} {n}" for k, n in sorted(r["failed_by_window"].items())) or "none"
        print(f"{'requests' if what == 'requests' else 'DNS queries'}: {r['sent']} sent, {r['failed']} failed "
              f"(by the kill in flight: {by})")
        for where, lines in r["examples"].items():
            print(f"    e.g. [{where}] " + " | ".join(lines))
    for kind, took in results["recovery"].items():
        print(f"recovery after {kind}: {percentile_line(took)} ({len(took)} kills)")
    if results["not_recovered"]:
        print("NOT RECOVERED: " + ", ".join(results["not_recovered"]))
    restarts = results["container_restarts"]
    print(f"container restarts seen: {restarts['seen']} (pod kills: {restarts['pod_kills']}); "
          f"supervisors seen: {results['supervisors_seen']} ({results['supervisor_kills']} killed)")
    for check, ok in results["invariants"].items():
        print(f"  [{'ok' if ok is True else 'FAILED'}] {check}")


if __name__ == "__main__":
    sys.exit(main())
