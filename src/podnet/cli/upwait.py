"""What `podnet up` waits for before it hands the cluster over, and how it shows the wait.

kind's `--wait` waits for the control plane only; a new user's first `exec … curl http://web`
then fails because CoreDNS is not Ready yet. So by default `up` returns once the cluster is
*usable*: the cluster's own pods (kube-system, the ingress controller) are Ready, the cluster
DNS answers a query for a Service name from every node through the kube-dns ClusterIP (so
kube-proxy's rules for it are in place too), every node's kube-proxy holds the current
Services and endpoints, and every workload pod is *settled*: Ready, or it has failed a
readiness check, cannot run its image, exited, is not running at all, or its first readiness
probe is not due within FIRST_PROBE_HORIZON (a long initialDelaySeconds: it cannot turn Ready
before then) — each of which podnet can explain, so there is nothing to gain from waiting for
it. `--wait DURATION` asks for more: every pod Ready within the duration, else exit code 1
(the cluster stays up).

The decisions are pure functions of the supervisor's status (podnet.linux.supervisor.status
.pods_status plus `servicesProgrammed`), so tests drive them with a supervisor built on fakes;
`wait_until_usable` is the loop, with the status source, the DNS check and the clock passed in.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode
from rich.console import Console
from rich.live import Live
from rich.table import Table

from podnet.errors import UsageError
from podnet.host.netns import socket_in_netns

SYSTEM_NAMESPACES = ("kube-system", "ingress-nginx")  # the pods podnet adds: CoreDNS, the ingress controller
PHASES = ("nodes", "pod network", "pods running", "probes", "DNS answering", "Services programmed")
# A pod whose first readiness probe is further off than this is not waited for by default (its
# readiness is decided later, by kubelet's schedule); a nearer one is, since it may turn Ready.
FIRST_PROBE_HORIZON = 5.0

Status = dict[str, Any]


def parse_duration(text: str) -> float:
    """A Go-style duration as kind's --wait takes it (`90s`, `5m`, `1m30s`, `500ms`); a bare
    number is seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"--wait {text!r}: not a duration (examples: 60s, 5m, 1m30s)")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def is_system(pod: Status) -> bool:
    return pod["pod"].split("/", 1)[0] in SYSTEM_NAMESPACES


def should_run(pod: Status) -> bool:
    return pod.get("phase") == "Running"


def settled(pod: Status) -> bool:
    """Nothing more will come of waiting for this pod: Ready, or not Ready for a reason podnet
    can give (a failed readiness check, an image it cannot run, a container that exited, a
    first readiness probe not due for a while), or not meant to run (Pending, Succeeded, Failed)."""
    if not should_run(pod):
        return True
    return (pod["ready"] or pod.get("probeFailed", False) or bool(pod.get("reasons"))
            or first_probe_far_off(pod))


def first_probe_far_off(pod: Status) -> bool:
    """Its readiness probe has not run and will not within FIRST_PROBE_HORIZON seconds."""
    return pod.get("firstProbeIn") is not None and pod["firstProbeIn"] > FIRST_PROBE_HORIZON


def system_ready(status: Status) -> bool:
    return all(p["ready"] for p in status["pods"] if is_system(p) and should_run(p))


def every_pod_ready(status: Status) -> bool:
    return all(p["ready"] for p in status["pods"] if should_run(p))


def usable(status: Status, dns_ok: bool) -> bool:
    """The default wait's goal (see the module docstring)."""
    return (status["ready"] and system_ready(status) and dns_ok and status.get("servicesProgrammed", True)
            and all(settled(p) for p in status["pods"] if not is_system(p)))


def not_ready_lines(status: Status) -> list[str]:
    """Each pod that should run and is not Ready, with why."""
    lines = []
    for pod in status["pods"]:
        if not should_run(pod) or pod["ready"]:
            continue
        if not pod["running"]:
            why = "its containers are not running yet"
        elif pod.get("reasons"):
            why = "; ".join(pod["reasons"])
        elif pod.get("firstProbeIn") is not None:
            why = f"waiting for its first readiness probe (initialDelaySeconds {pod['initialDelaySeconds']})"
        else:
            why = "its readiness probe has not passed yet"
        lines.append(f"{pod['pod']}: {why}")
    return lines


@dataclass
class Progress:
    """What is known so far, phase by phase: None while the supervisor builds the cluster."""

    nodes: int
    booted: bool = False  # the supervisor built the network and started every pod
    status: Status | None = None
    dns_ok: bool = False
    has_dns: bool = True
    started: float = field(default_factory=time.monotonic)
    done_at: dict[str, float] = field(default_factory=dict)  # phase -> seconds since `started` it was first done

    def phases(self) -> list[tuple[str, bool, str]]:
        """(phase, done, detail) for each of PHASES."""
        status = self.status
        pods = [p for p in status["pods"] if should_run(p)] if status else []
        running = sum(p["running"] for p in pods)
        ready = sum(p["ready"] for p in pods)
        failed = sum(1 for p in pods if not p["ready"] and settled(p))
        probes_done = bool(status) and all(settled(p) for p in pods)
        programmed = bool(status) and status.get("servicesProgrammed", True) and status["ready"]
        errors = (status or {}).get("proxyErrors") or {}
        return [
            ("nodes", self.booted, f"{self.nodes} nodes"),
            ("pod network", self.booted, "routes, CNI, kube-proxy, NetworkPolicy" if self.booted else "building"),
            ("pods running", bool(status) and status["ready"], f"{running}/{len(pods)}" if status else ""),
            ("probes", probes_done, f"{ready} Ready" + (f", {failed} not Ready" if failed else "") if status else ""),
            ("DNS answering", self.dns_ok or not self.has_dns, "" if self.has_dns else "no cluster DNS"),
            ("Services programmed", programmed,
             "; ".join(f"node {n}: {e}" for n, e in errors.items()) if errors else "on every node" if programmed else ""),
        ]

    def render(self) -> Table:
        table = Table.grid(padding=(0, 1))
        elapsed = time.monotonic() - self.started
        for name, done, detail in self.phases():
            if done:
                self.done_at.setdefault(name, elapsed)
            mark = "[green]✓[/]" if done else "[yellow]…[/]"
            at = f"{self.done_at[name]:.1f}s" if name in self.done_at else ""
            table.add_row(mark, name, f"[dim]{at:>6}[/]", f"[dim]{detail}[/]")
        table.add_row("", "", f"[dim]{elapsed:>5.1f}s[/]", "")
        return table


def dns_answers(netns: str, server: str, name: str, timeout: float = 0.5) -> bool:
    """Whether the cluster DNS at `server` (the kube-dns ClusterIP) answers `name` with an
    address, asked from namespace `netns` (a node: the query goes through its kube-proxy) over
    UDP, or else over TCP: with proxyMode userspace a node's own UDP to a ClusterIP gets no
    reply (a known gap of podnet's userspace proxy; pods, which the cluster is for, are served)."""
    query = dns.message.make_query(name, "A")
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        try:
            sock = socket_in_netns(netns, socket.AF_INET, kind)
        except OSError:
            return False
        try:
            sock.settimeout(timeout)
            if kind == socket.SOCK_DGRAM:
                response = dns.query.udp(query, server, timeout=timeout, sock=sock, ignore_unexpected=True)
            else:
                sock.connect((server, 53))
                response = dns.query.tcp(query, server, timeout=timeout, sock=sock)
        except (dns.exception.DNSException, OSError):
            continue
        finally:
            sock.close()
        return response.rcode() == dns.rcode.NOERROR and bool(response.answer)
    return False


@dataclass
class Outcome:
    status: Status
    usable: bool  # the default goal was reached
    all_ready: bool  # every pod that should run is Ready
    timed_out: bool  # --wait's duration (or --timeout) passed first


def wait_until_usable(progress: Progress, booted: Callable[[], bool], poll: Callable[[], Status | None],
                      check_dns: Callable[[], bool] | None, *, wait: float | None, timeout: float,
                      console: Console | None = None, clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep, interval: float = 0.1) -> Outcome:
    """Poll until the cluster is usable (and, with `wait`, every pod Ready), showing the phases
    live on `console`. `booted()` tells whether the supervisor finished building (it may raise
    if the supervisor died); `poll()` is its status (None when it cannot be read); `check_dns`
    asks the cluster DNS (None: the cluster has none). Gives up after `wait` seconds if given,
    else after `timeout`."""
    progress.has_dns = check_dns is not None
    limit = clock() + (wait if wait is not None else timeout)
    status: Status | None = None
    live = Live(progress.render(), console=console, refresh_per_second=8, transient=False) if console else None
    if live:
        live.start()
    try:
        while True:
            if not progress.booted:
                progress.booted = booted()
            if progress.booted:
                status = poll() or status
                progress.status = status
            if status is not None and check_dns is not None and not progress.dns_ok and system_ready(status):
                progress.dns_ok = check_dns()
            if live:
                live.update(progress.render())
            if status is not None:
                done = usable(status, progress.dns_ok or check_dns is None)
                ready = every_pod_ready(status)
                if done and (wait is None or ready):
                    return Outcome(status, True, ready, False)
            if clock() >= limit:
                if status is None:
                    return Outcome({"pods": [], "ready": False}, False, False, True)
                return Outcome(status, usable(status, progress.dns_ok or check_dns is None),
                               every_pod_ready(status), True)
            sleep(interval)
    finally:
        if live:
            live.update(progress.render())
            live.stop()
