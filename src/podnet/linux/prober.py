"""kubelet's prober on the real cluster: runs the probes of running pods and reports verdicts.

The rules (when to probe, when a result flips, what needs a restart) are podnet.probes; this
module only runs the attempts. Like kubelet, it probes from the node, not from inside the pod:
sockets are made in the node's network namespace and connect to the pod's IP. One scheduler
thread owns all the state and makes every callback; the attempts themselves run in a small
thread pool, so one pod's slow probe (bounded by its timeoutSeconds) never delays another's.
The runtime gives no notice of container restarts, so the scheduler looks at each container's
`running` and `restarts` every `poll` seconds. Every failed attempt is reported to `on_failure`
with what went wrong (kubelet's Unhealthy event: the exception's text, or what the probe got).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import queue
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from podnet.api import fields
from podnet.controlplane.pods import serving_containers
from podnet.host.layout import ClusterLayout
from podnet.host.netns import socket_in_netns
from podnet.linux.runtime import program_started
from podnet.probes import ContainerProbes, HTTPGet, Probe, http_request, http_success, parse_container_probes

log = logging.getLogger("podnet.prober")


class Executors(Protocol):
    """How one attempt is made; True is success. Any exception counts as a failure."""

    def http_get(self, netns: str, host: str, action: HTTPGet, timeout: float) -> bool: ...

    def tcp_socket(self, netns: str, host: str, port: int, timeout: float) -> bool: ...

    def exec(self, argv: list[str], timeout: float, env: dict[str, str] | None = None) -> bool: ...


# ---- the real executors ---------------------------------------------------------------------


def _connect(netns: str, host: str, port: int, timeout: float) -> socket.socket:
    # Only addresses: a name would be resolved with the host's resolv.conf, not the node's.
    address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket_in_netns(netns, family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((str(address), port))
    except BaseException:
        sock.close()
        raise
    return sock


class ProbeFailed(Exception):
    """An attempt that got an answer, and the answer is a failure: kubelet's words for it."""


def http_get(netns: str, host: str, action: HTTPGet, timeout: float) -> bool:
    """One httpGet attempt from namespace `netns`; `timeout` bounds connect, TLS and the status
    line. A status outside 200-399 raises ProbeFailed with kubelet's message."""
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("probe timed out")
        return left

    sock = _connect(netns, host, action.port, timeout)
    try:
        if action.scheme == "HTTPS":  # kubelet does not verify the certificate either
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock.settimeout(remaining())
            sock = context.wrap_socket(sock, server_hostname=host)
        sock.settimeout(remaining())
        sock.sendall(http_request(action, host))
        head = b""
        while b"\r\n" not in head and len(head) < 8192:  # the status line is all we need
            sock.settimeout(remaining())
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        parts = head.split(b"\r\n", 1)[0].split()
        if not (len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit()):
            raise ProbeFailed("HTTP probe failed: malformed HTTP response")
        if not http_success(int(parts[1])):
            raise ProbeFailed(f"HTTP probe failed with statuscode: {int(parts[1])}")
        return True
    finally:
        sock.close()


def tcp_socket(netns: str, host: str, port: int, timeout: float) -> bool:
    _connect(netns, host, port, timeout).close()
    return True


def run_exec(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> bool:
    # A session of its own, so a timeout kills what the command started too (kubelet kills the exec).
    # `env`: the container's, as kubelet's exec runs in the container (given by execve, not argv).
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    try:
        return process.wait(timeout=timeout) == 0
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        return False


class NetnsExecutors:
    """The executors kubelet has: from the node's namespace, and exec inside the pod."""

    http_get = staticmethod(http_get)
    tcp_socket = staticmethod(tcp_socket)
    exec = staticmethod(run_exec)


# ---- the manager ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    token: int  # which registration of the pod: a pod removed and added again is another
    ref: str
    container: str
    instance: int
    kind: str


@dataclass
class _Pod:
    sandbox: object  # podnet.linux.runtime.PodSandbox
    token: int
    probes: dict[str, ContainerProbes] = field(default_factory=dict)
    reported: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    # a pod a restarted supervisor adopted: container -> {"ready", "started"} as last known
    known: dict[str, dict[str, bool]] = field(default_factory=dict)


class ProbeManager:
    def __init__(self, runtime, layout: ClusterLayout,
                 on_change: Callable[[str, str, bool, bool], None], on_restart: Callable[[str, str], None], *,
                 executors: Executors | None = None, clock: Callable[[], float] = time.monotonic,
                 threads: int = 8, poll: float = 0.1, start: bool = True,
                 on_failure: Callable[[str, str, str, str], None] | None = None):
        """`threads=0` runs attempts inline in `tick` and `start=False` leaves the ticking to
        the caller: together they make the manager deterministic for tests."""
        self.runtime, self.layout = runtime, layout
        self.on_change, self.on_restart, self.on_failure = on_change, on_restart, on_failure
        self.executors = executors or NetnsExecutors()
        self.clock, self.poll = clock, poll
        self._lock = threading.Lock()  # guards _pods and _added, shared with add/remove callers
        self._pods: dict[str, _Pod] = {}
        self._added: list[_Pod] = []
        self._tokens = 0
        self._inflight: set[_Job] = set()
        self._results: queue.SimpleQueue[tuple[_Job, bool, str]] = queue.SimpleQueue()
        # (ref, container) -> why its last readiness attempt failed, while it fails: what `up`
        # says of a pod that is not Ready
        self.readiness_failures: dict[tuple[str, str], str] = {}
        # (ref, container) -> (when its first readiness attempt falls due on `clock`, its
        # initialDelaySeconds), while it has made none: `up` does not wait for one far off.
        # Replaced whole each pass, so other threads read one consistent mapping.
        self.first_readiness: dict[tuple[str, str], tuple[float, int]] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._in_callback = False
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="probe") if threads else None
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(target=self._loop, name="prober", daemon=True)
            self._thread.start()

    # -- the caller's side ----------------------------------------------------------------------

    def add_pod(self, sandbox, known: dict[str, dict[str, bool]] | None = None) -> None:
        """Start probing the sandbox's containers; on_change reports each one's initial state.
        `known`: the containers' verdicts before a supervisor restart, carried over."""
        with self._lock:
            self._tokens += 1
            self._added.append(_Pod(sandbox, self._tokens, known=dict(known or {})))
        self._wake.set()

    def remove_pod(self, ref: str) -> None:
        with self._lock:
            self._pods.pop(ref, None)
            self._added = [p for p in self._added if p.sandbox.ref != ref]
            for key in [k for k in self.readiness_failures if k[0] == ref]:
                del self.readiness_failures[key]
            self.first_readiness = {k: v for k, v in self.first_readiness.items() if k[0] != ref}

    def stop(self) -> None:
        """Stop the thread and wait for it, unless it is inside a callback: the caller may hold
        the lock that callback waits for. No callback starts after stop()."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        while thread is not None and thread.is_alive() and thread is not threading.current_thread():
            if self._in_callback:
                break
            thread.join(0.05)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)  # attempts end within their timeout

    # -- the scheduler --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before the pass: a result that lands during it wakes the next wait
            try:
                wait = self.tick()
            except Exception:  # a bug in one pass must not end probing for the whole cluster
                log.exception("probing failed")
                wait = self.poll
            self._wake.wait(wait)

    def tick(self) -> float:
        """One pass: register added pods, follow restarts, apply finished attempts, start due
        ones, report changes. Returns how long the caller may sleep."""
        now = self.clock()
        with self._lock:
            added, self._added = self._added, []
            for pod in added:
                self._register(pod, now)
                self._pods[pod.sandbox.ref] = pod
            pods = dict(self._pods)
        restarts: list[tuple[_Pod, str]] = []
        failures: list[tuple[_Pod, str, str, str]] = []
        for pod in pods.values():
            for container in pod.sandbox.containers:
                probes = pod.probes.get(container.name)
                if probes is not None:
                    if container.restarts != probes.instance:  # a new instance: its own start
                        probes.observe(False, container.restarts, now)
                    probes.observe(self._started(pod, container, probes.start, now), container.restarts, now)
        self._start_due(pods, now)
        while True:
            try:
                job, success, message = self._results.get_nowait()
            except queue.Empty:
                break
            self._inflight.discard(job)
            pod = pods.get(job.ref)
            probes = pod.probes.get(job.container) if pod is not None and pod.token == job.token else None
            if probes is None or probes.instance != job.instance:
                continue  # the pod went, or the container was restarted meanwhile
            if job.kind == "readiness":
                if success:
                    self.readiness_failures.pop((job.ref, job.container), None)
                else:
                    self.readiness_failures[(job.ref, job.container)] = message
            if not success and self.on_failure is not None:
                failures.append((pod, job.container, job.kind, message))
            events = probes.record(job.kind, success, self.clock())
            restarts += [(pod, job.container) for e in events if e.restart]
        for pod, name, kind, message in failures:
            self._call(pod, self.on_failure, pod.sandbox.ref, name, kind, message)
        for pod, name in restarts:
            self._call(pod, self.on_restart, pod.sandbox.ref, name)
        for pod in pods.values():
            for name, probes in pod.probes.items():
                state = (probes.ready, probes.started)
                if pod.reported.get(name) != state:
                    pod.reported[name] = state
                    self._call(pod, self.on_change, pod.sandbox.ref, name, *state)
        self.first_readiness = {(ref, name): (due, probes.probes["readiness"].initial_delay)
                                for ref, pod in pods.items() for name, probes in pod.probes.items()
                                if (due := probes.first_readiness_due()) is not None}
        upcoming = [t for pod in pods.values() for p in pod.probes.values() if (t := p.next_due()) is not None]
        return max(0.0, min([self.poll, *(t - self.clock() for t in upcoming)]))

    def _register(self, pod: _Pod, now: float) -> None:
        specs = {c.get("name"): c for c in serving_containers(pod.sandbox.pod)} if pod.sandbox.pod is not None else {}
        for container in pod.sandbox.containers:
            probes, errors = parse_container_probes(specs.get(container.name) or {})
            for error in errors:
                log.warning("%s: %s (probe left out)", pod.sandbox.ref, error)
            state = ContainerProbes(probes, start=now, running=self._started(pod, container, now, now),
                                    instance=container.restarts)
            known = pod.known.get(container.name)
            if known is not None and container.running:
                state.carry_over(bool(known.get("ready")), bool(known.get("started")))
            for kind in state.unsupported:
                log.warning("%s: container %s: podnet cannot run its %s probe (grpc): it counts as absent",
                            pod.sandbox.ref, container.name, kind)
            pod.probes[container.name] = state

    def _started(self, pod: _Pod, container, since: float, now: float) -> bool:
        """kubelet probes a container once it has started: for podnet's stand-ins, once their
        program says so (podnet.host.started), not while the interpreter loads."""
        return program_started(self.layout, pod.sandbox.ref, container, since, now)

    def _start_due(self, pods: dict[str, _Pod], now: float) -> None:
        for ref, pod in pods.items():
            for name, probes in pod.probes.items():
                for kind in probes.due(now):
                    job = _Job(pod.token, ref, name, probes.instance, kind)
                    if job in self._inflight:
                        continue
                    self._inflight.add(job)
                    probe = probes.probes[kind]
                    if self._pool is None:
                        self._attempt(job, pod.sandbox, probe)
                    else:
                        self._pool.submit(self._attempt, job, pod.sandbox, probe)

    def _attempt(self, job: _Job, sandbox, probe: Probe) -> None:
        message = ""
        try:
            success = self._execute(sandbox, probe, job.container)
            if not success:
                message = probe.error or _failure_text(probe, sandbox)
        except Exception as exc:  # refused, unreachable, timed out, not an address: all failures
            log.debug("%s: %s probe of %s: %s", job.ref, job.kind, job.container, exc)
            success, message = False, _exception_text(exc, probe, sandbox)
        self._results.put((job, success, message))
        self._wake.set()

    def _execute(self, sandbox, probe: Probe, container: str) -> bool:
        if probe.error:
            return False
        action, timeout = probe.action, float(probe.timeout)
        if probe.handler == "exec":
            return self.executors.exec(self.runtime.enter_argv(sandbox, list(action.command)), timeout,
                                       self.runtime.container_environment(sandbox, container))
        netns = self.layout.node_netns(sandbox.pod.spec["nodeName"])
        host = action.host or fields.pod_ip(sandbox.pod)
        if probe.handler == "httpGet":
            return self.executors.http_get(netns, host, action, timeout)
        return self.executors.tcp_socket(netns, host, action.port, timeout)

    def _call(self, pod: _Pod, callback: Callable, *args) -> None:
        with self._lock:
            current = self._pods.get(pod.sandbox.ref) is pod
        if not current or self._stopping.is_set():
            return
        self._in_callback = True
        try:
            callback(*args)
        except Exception:
            log.exception("probe callback %s%r failed", getattr(callback, "__name__", callback), args)
        finally:
            self._in_callback = False



def _address(probe: Probe, sandbox) -> str:
    host = getattr(probe.action, "host", "") or (fields.pod_ip(sandbox.pod) if sandbox.pod is not None else "")
    return f"{host}:{getattr(probe.action, 'port', '')}"


def _failure_text(probe: Probe, sandbox) -> str:
    """kubelet's message for an attempt that got an answer and failed."""
    if probe.handler == "httpGet":
        return "HTTP probe failed with statuscode outside 200-399"
    if probe.handler == "exec":
        return f"command {' '.join(probe.action.command)!r} exited with a non-zero code"
    return f"dial tcp {_address(probe, sandbox)}: tcp probe failed"


def _exception_text(exc: Exception, probe: Probe, sandbox) -> str:
    """kubelet's message for an attempt that got no answer (connection refused, a timeout)."""
    address = _address(probe, sandbox)
    if isinstance(exc, ProbeFailed):
        return str(exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        why = f"dial tcp {address}: i/o timeout"
    elif isinstance(exc, ConnectionRefusedError):
        why = f"dial tcp {address}: connect: connection refused"
    else:
        why = str(exc) or type(exc).__name__
    if probe.handler == "httpGet":
        action = probe.action
        return f'Get "{action.scheme.lower()}://{address}{action.path}": {why}'
    return why
