"""What the kernel lets through: `podnet probe`'s measurement, and its comparison with the simulator.

The upstream e2e model's method (as cyclonus runs it): every source pod attempts a connection to
every destination pod's IP and port, from inside its own namespaces. One prober process per
source pod (podnet.linux.connect, through the supervisor's `exec` argv, the one `podnet exec`
uses) tries all its destinations at once with a bounded time-out; the sources run in parallel.
A pair is allowed when the connection is made (upstream: agnhost connect's exit status 0); every
other outcome (refused, timed out, unreachable) is kept per pair, so a closed port is not taken
for a policy drop.

The comparison asks the simulator the same question of the same live objects: the reachability
matrix (NetworkPolicy), and, as `trace` does, whether the destination serves that port at all
(a pod whose containers serve nothing there refuses the connection whatever the policy says).
Every pair on which the two differ is a disagreement, with the `trace` of that pair.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from podnet import images
from podnet.controlplane import Cluster
from podnet.errors import PodnetError
from podnet.host.control import request
from podnet.host.layout import ClusterLayout
from podnet.linux.connect import CONNECTED, REFUSED
from podnet.semantics.reachability import EXTERNAL, Matrix
from podnet.sim.trace import Tracer, TraceResult

# Source pods probed at once: each is a short-lived process that mostly waits on its sockets.
MAX_PARALLEL_SOURCES = 32

# Runs the prober inside a pod: (the pod's exec argv, the request on stdin) → its stdout.
Runner = Callable[[list[str], str, float], str]


class ProbeFailed(PodnetError):
    pass


def sctp_unsupported() -> str | None:
    """Why this kernel cannot make SCTP connections, or None when it can."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError as exc:
        return f"socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP): {exc.strerror or exc}"
    return None


@dataclass(frozen=True)
class Destination:
    pod: str  # "ns/name"
    ip: str


@dataclass
class Measurement:
    """One matrix per port, and what every attempt ended with: outcomes[port][(from, to)]."""

    protocol: str
    matrices: dict[int, Matrix]
    outcomes: dict[int, dict[tuple[str, str], str]] = field(default_factory=dict)

    def summary(self, port: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes[port].values():
            kind = outcome.split(":", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (kv[0] != CONNECTED, kv[0])))


def exec_argvs(layout: ClusterLayout, pods: Iterable[str]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Per pod, the argv prefix that runs a command inside it; and the pods that cannot (why)."""
    argvs, missing = {}, {}
    for pod in pods:
        try:
            argvs[pod] = request(layout, "exec", target=pod, container=None)["argv"]
        except PodnetError as exc:
            missing[pod] = str(exc)
    return argvs, missing


def run_inside(argv: list[str], stdin: str, timeout: float) -> str:
    """Run podnet.linux.connect with the argv prefix exec gives (the pod's namespaces, its env)."""
    path = os.pathsep.join(p for p in sys.path if p)
    try:
        result = subprocess.run(argv + ["env", f"PYTHONPATH={path}", sys.executable, "-m", "podnet.linux.connect"],
                                input=stdin, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ProbeFailed(f"the prober did not finish within {timeout:.0f}s") from None
    if result.returncode != 0:
        raise ProbeFailed(result.stderr.strip().splitlines()[-1] if result.stderr.strip()
                          else f"the prober exited with status {result.returncode}")
    return result.stdout


def measure(sources: dict[str, list[str]], destinations: list[Destination], ports: list[int], protocol: str,
            timeout: float = 1.0, attempts: int = 2, runner: Runner = run_inside) -> Measurement:
    """Every source in `sources` (pod → exec argv) to every destination, on every port.

    The matrices' pods are the destinations, in their order; a destination that is not a source
    (it cannot be entered) has an empty row.
    """
    targets = [(d.ip, port) for port in ports for d in destinations]
    payload = json.dumps({"protocol": protocol, "timeout": timeout, "attempts": attempts,
                          "targets": [list(t) for t in targets]})
    windows = -(-len(targets) // 256)  # connect's MAX_IN_FLIGHT
    limit = 30.0 + timeout * attempts * windows  # the process's start-up, then its attempts

    def one(pod: str) -> tuple[str, list[str]]:
        try:
            outcomes = json.loads(runner(sources[pod], payload, limit))
        except (ProbeFailed, ValueError) as exc:
            raise ProbeFailed(f"probing from {pod} failed: {exc}") from None
        if len(outcomes) != len(targets):
            raise ProbeFailed(f"probing from {pod} failed: {len(outcomes)} answers for {len(targets)} attempts")
        return pod, outcomes

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL_SOURCES, len(sources)))) as pool:
        rows = dict(pool.map(one, list(sources)))
    pods = [d.pod for d in destinations]
    result = Measurement(protocol, {}, {})
    for k, port in enumerate(ports):
        outcomes: dict[tuple[str, str], str] = {}
        bits = []
        for src in pods:
            row = 0
            for j, dst in enumerate(pods):
                if src not in rows:
                    continue
                outcome = rows[src][k * len(pods) + j]
                outcomes[(src, dst)] = outcome
                if outcome == CONNECTED:
                    row |= 1 << j
            bits.append(row)
        result.matrices[port] = Matrix(port, protocol, list(pods), bits)
        result.outcomes[port] = outcomes
    return result


# ---- the simulator's view of the same pairs --------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    source: str
    destination: str
    kernel: bool
    sim: bool
    outcome: str  # what the kernel's attempt ended with
    trace: TraceResult

    def to_json(self) -> dict:
        return {"from": self.source, "to": self.destination, "kernel": self.kernel, "sim": self.sim,
                "outcome": self.outcome, "trace": self.trace.to_json()}


@dataclass(frozen=True)
class Prediction:
    """The simulator's answer for the probed pods. `unknown`: destinations of which it cannot
    tell whether anything listens on the port (an image podnet does not know, the port not
    declared); the matrix counts them as serving."""

    matrix: Matrix
    unknown: frozenset[str] = frozenset()


def predicted(cluster: Cluster, sim: Matrix, pods: list[str]) -> Prediction:
    """NetworkPolicy's matrix for `pods`, where a destination that serves nothing on the port
    refuses (images.serving, as `trace` decides it)."""
    serving, unknown = 0, set()
    links: dict = {}  # the Service link variables of each namespace, made once
    for j, ref in enumerate(pods):
        namespace, name = ref.split("/", 1)
        pod = cluster.get("Pod", namespace, name)
        answer = images.pod_serving(pod, cluster, sim.port, sim.protocol, links).serving if pod is not None else None
        if answer is not False:
            serving |= 1 << j
        if answer is None:
            unknown.add(ref)
    rows = []
    for src in pods:
        row = 0
        if src in sim.index and src != EXTERNAL:
            for j, dst in enumerate(pods):
                if dst in sim.index and sim.allowed(src, dst):
                    row |= 1 << j
        rows.append(row & serving)
    return Prediction(Matrix(sim.port, sim.protocol, list(pods), rows), frozenset(unknown))


def disagreements(cluster: Cluster, kernel: Matrix, prediction: Prediction, outcomes: dict[tuple[str, str], str],
                  tracer: Tracer | None = None) -> list[Disagreement]:
    """Pairs measured (in `outcomes`) on which the kernel and the simulator differ, each traced.

    A refusal by a destination the simulator cannot tell to be serving is no disagreement: the
    simulator lets the packet arrive, and a refusal says it did (NetworkPolicy drops)."""
    tracer = tracer or Tracer(cluster)
    sim = prediction.matrix
    found = []
    for (src, dst), outcome in outcomes.items():
        was, said = kernel.allowed(src, dst), sim.allowed(src, dst)
        if said and outcome == REFUSED and dst in prediction.unknown:
            continue
        if was != said:
            found.append(Disagreement(src, dst, was, said, outcome,
                                      tracer.trace(src, dst, kernel.port, kernel.protocol)))
    return found
