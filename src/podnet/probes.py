"""Container probes as kubelet runs them: what a probe says, and when its verdict changes.

Pure: nothing here opens a socket, starts a thread or reads a clock. Times are seconds on
any monotonic clock, passed in by the caller (`podnet.linux.prober` runs the probes).

The rules are those of kubelet's prober workers (pkg/kubelet/prober/worker.go):

* a probe first runs at container start + initialDelaySeconds, then every periodSeconds;
* its result becomes Success after successThreshold consecutive successes and Failure after
  failureThreshold consecutive failures; anything in between keeps the previous result;
* readiness starts as Failure, liveness as Success, startup as unknown;
* while a startupProbe has not succeeded the container is not started, and its liveness and
  readiness probes do not run; a container is ready only once started and (if it has one)
  its readiness probe succeeded;
* a liveness or startup probe that fails means the container must be restarted; the worker
  then holds until a new container instance appears, so the restart is asked for once;
* a new container instance starts every worker over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from podnet.controlplane.pods import find_named_port

KINDS = ("startup", "liveness", "readiness")  # the order they are looked at
SPEC_FIELDS = {"startup": "startupProbe", "liveness": "livenessProbe", "readiness": "readinessProbe"}
DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1,
            "successThreshold": 1, "failureThreshold": 3}
USER_AGENT = "kube-probe/1.31"  # what kubelet 1.31 sends, so servers that log it see a kubelet


class ProbeError(ValueError):
    """A probe kubelet would not run (the API server rejects most of these already)."""


@dataclass(frozen=True)
class HTTPGet:
    port: int
    path: str = "/"
    host: str = ""  # "" = the pod's IP
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class TCPSocket:
    port: int
    host: str = ""


@dataclass(frozen=True)
class Exec:
    command: tuple[str, ...]


@dataclass(frozen=True)
class Probe:
    kind: str  # "startup" | "liveness" | "readiness"
    handler: str  # "httpGet" | "tcpSocket" | "exec" | "unsupported"
    action: HTTPGet | TCPSocket | Exec | None
    initial_delay: int = 0
    period: int = 10
    timeout: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    # Set when the probe cannot be run (a port name the container does not declare): every
    # attempt then fails, as kubelet's do, rather than the probe silently passing.
    error: str | None = None


def _count(spec: dict, key: str, kind: str) -> int:
    value = spec.get(key)
    if value is None or value == 0:  # the API server defaults 0 as well as a missing field
        return DEFAULTS[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProbeError(f"{SPEC_FIELDS[kind]}.{key}: must be a non-negative integer, not {value!r}")
    return value


def resolve_port(port: object, container: dict) -> int:
    """A probe's port: a number, a numeric string, or the name of one of the container's ports."""
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, str):
        number = find_named_port([container], port)  # kubelet's findPortByName: this container, any protocol
        if number is None:
            raise ProbeError(f"port {port!r} is not the name of one of the container's ports")
        port = number
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ProbeError(f"port {port!r} is not a port number (1-65535)")
    return port


def http_get_action(spec: dict, container: dict) -> tuple[HTTPGet, str | None]:
    """An httpGet handler (a probe's, or a lifecycle hook's) and why it cannot be run, if so."""
    scheme = spec.get("scheme") or "HTTP"
    if scheme not in ("HTTP", "HTTPS"):
        raise ProbeError(f"httpGet.scheme: {scheme!r} is neither HTTP nor HTTPS")
    path = str(spec.get("path") or "/")
    if not path.startswith("/"):  # kubelet's URL gets the slash between host and path too
        path = "/" + path
    headers = tuple((str(h.get("name", "")), str(h.get("value", ""))) for h in spec.get("httpHeaders") or [])
    port, error = _port(spec, container)
    return HTTPGet(port, path, str(spec.get("host") or ""), scheme, headers), error


def _port(spec: dict, container: dict) -> tuple[int, str | None]:
    if spec.get("port") in (None, ""):
        raise ProbeError("port is required")
    try:
        return resolve_port(spec["port"], container), None
    except ProbeError as exc:
        return 0, str(exc)


def parse_probe(kind: str, spec: dict, container: dict | None = None) -> Probe:
    """One probe of a container spec, kubelet's defaults filled in. Raises ProbeError."""
    if kind not in SPEC_FIELDS:
        raise ProbeError(f"unknown probe kind {kind!r}")
    container = container or {}
    if not isinstance(spec, dict):
        raise ProbeError(f"{SPEC_FIELDS[kind]}: must be a mapping")
    handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if spec.get(h) is not None]
    if len(handlers) != 1:
        raise ProbeError(f"{SPEC_FIELDS[kind]}: must have exactly one handler (httpGet, tcpSocket, exec, grpc), "
                         f"has {handlers or 'none'}")
    handler, body = handlers[0], spec[handlers[0]]
    if not isinstance(body, dict):
        raise ProbeError(f"{SPEC_FIELDS[kind]}.{handler}: must be a mapping")
    error = None
    action: HTTPGet | TCPSocket | Exec | None
    if handler == "httpGet":
        action, error = http_get_action(body, container)
    elif handler == "tcpSocket":
        port, error = _port(body, container)
        action = TCPSocket(port, str(body.get("host") or ""))
    elif handler == "exec":
        command = body.get("command")
        if not command or not isinstance(command, list):
            raise ProbeError(f"{SPEC_FIELDS[kind]}.exec.command: must be a non-empty list")
        action = Exec(tuple(str(arg) for arg in command))
    else:  # grpc: podnet's containers are processes without a gRPC health service to ask
        handler, action = "unsupported", None
    counts = {key: _count(spec, key, kind) for key in DEFAULTS}
    if kind != "readiness" and counts["successThreshold"] != 1:
        raise ProbeError(f"{SPEC_FIELDS[kind]}.successThreshold: must be 1, not {counts['successThreshold']}")
    if error:
        error = f"{SPEC_FIELDS[kind]}.{handler}: {error}"
    return Probe(kind, handler, action, counts["initialDelaySeconds"], max(1, counts["periodSeconds"]),
                 counts["timeoutSeconds"], counts["successThreshold"], counts["failureThreshold"], error)


def parse_container_probes(container: dict) -> tuple[dict[str, Probe], list[str]]:
    """The probes of a container spec by kind, and why any could not be used (those are left
    out: the API server would have refused the pod)."""
    probes, errors = {}, []
    for kind, name in SPEC_FIELDS.items():
        if container.get(name) is None:
            continue
        try:
            probes[kind] = parse_probe(kind, container[name], container)
        except ProbeError as exc:
            errors.append(f"container {container.get('name')}: {exc}")
    return probes, errors


def http_request(action: HTTPGet, host: str) -> bytes:
    """The request kubelet's httpGet probe sends to host:port. Configured headers come after
    the defaults and replace a default of the same name (Host, User-Agent, Accept)."""
    authority = f"[{host}]:{action.port}" if ":" in host else f"{host}:{action.port}"
    configured = {name.lower() for name, _ in action.headers}
    defaults = [(n, v) for n, v in (("Host", authority), ("User-Agent", USER_AGENT), ("Accept", "*/*"))
                if n.lower() not in configured]
    headers = [*defaults, *((n, v) for n, v in action.headers if n.lower() != "connection"), ("Connection", "close")]
    lines = [f"GET {action.path} HTTP/1.1", *(f"{n}: {v}" for n, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1", "replace")


def http_success(status: int) -> bool:
    """kubelet: 2xx and 3xx succeed (it follows redirects; podnet takes the 3xx as it is)."""
    return 200 <= status < 400


# ---- the state machine ---------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A worker's result changed (`result`), or the container must be restarted (`restart`)."""

    kind: str
    result: bool
    restart: bool = False


@dataclass
class _Worker:
    probe: Probe
    next_run: float
    result: bool | None  # None: unknown (startup before its first verdict)
    last: bool | None = None  # the last attempt's outcome, and how many in a row had it
    run: int = 0
    on_hold: bool = False  # restart asked for: nothing more until a new instance
    triggered: bool = False  # one run due now, off its ticks (kubelet's manual trigger)

    @classmethod
    def fresh(cls, probe: Probe, start: float) -> _Worker:
        initial = {"readiness": False, "liveness": True, "startup": None}[probe.kind]
        return cls(probe, start + probe.initial_delay, initial)


def _next_tick(worker: _Worker, now: float, after: bool) -> float:
    """The worker's next tick at or after `now` (strictly after, if `after`). Ticks are a fixed
    grid from its first run, as kubelet's tickers are: a slow attempt does not shift later ones."""
    behind = (now - worker.next_run) / worker.probe.period  # in periods
    ticks = math.floor(behind) + 1 if after else math.ceil(behind)
    return worker.next_run + max(0, ticks) * worker.probe.period


@dataclass
class ContainerProbes:
    """The probe workers of one container. `instance` tells container instances apart (podnet
    uses the restart count); `observe` it on every look at the container."""

    probes: dict[str, Probe]
    start: float = 0.0
    running: bool = True
    instance: int = 0
    unsupported: tuple[str, ...] = field(init=False, default=())
    workers: dict[str, _Worker] = field(init=False)

    def __post_init__(self) -> None:
        # A probe podnet cannot run counts as absent: it should neither kill nor hold back a
        # container it knows nothing about. The caller may say so (`unsupported`).
        self.unsupported = tuple(k for k, p in self.probes.items() if p.handler == "unsupported")
        self.probes = {k: p for k, p in self.probes.items() if p.handler != "unsupported"}
        self._reset(self.start)

    def _reset(self, start: float) -> None:
        self.start = start
        self.workers = {kind: _Worker.fresh(self.probes[kind], start) for kind in KINDS if kind in self.probes}

    def observe(self, running: bool, instance: int, now: float) -> None:
        """What the runtime says of the container now; a new instance starts the workers over."""
        if instance != self.instance:
            self.instance = instance
            self._reset(now)
        self.running = running

    def carry_over(self, ready: bool, started: bool) -> None:
        """A container whose probes a restarted supervisor takes over: its verdicts stay what
        they were (its readiness does not flip to false until its first new attempt) and its
        probes go on, so only failures the thresholds count change them."""
        if started and "startup" in self.workers:
            self.workers["startup"].result = True
        if "readiness" in self.workers:
            self.workers["readiness"].result = ready

    @property
    def started(self) -> bool:
        startup = self.workers.get("startup")
        return self.running and (startup is None or startup.result is True)

    @property
    def ready(self) -> bool:
        readiness = self.workers.get("readiness")
        return self.started and (readiness is None or readiness.result is True)

    @property
    def liveness_failed(self) -> bool:
        """Liveness or startup reached its failureThreshold: this instance must be restarted."""
        return any(w.on_hold for w in self.workers.values())

    def _active(self) -> list[str]:
        if not self.running:
            return []
        if not self.started:
            return ["startup"] if "startup" in self.workers else []
        return [kind for kind in ("liveness", "readiness") if kind in self.workers]

    def due(self, now: float) -> list[str]:
        """The probes to run now."""
        return [k for k in self._active() if not self.workers[k].on_hold
                and (self.workers[k].next_run <= now or self.workers[k].triggered)]

    def next_due(self) -> float | None:
        """When the next probe falls due (None: none will, until something changes)."""
        times = [min(w.next_run, 0.0) if w.triggered else w.next_run
                 for k in self._active() if not (w := self.workers[k]).on_hold]
        return min(times, default=None)

    def first_readiness_due(self) -> float | None:
        """When the readiness probe's first attempt falls due, while it has made none (None:
        no readiness probe, or it has run): a pod whose first attempt is far off cannot turn
        Ready before it, which is worth saying rather than waiting for (`podnet up`)."""
        worker = self.workers.get("readiness")
        if worker is None or worker.last is not None or not self.running:
            return None
        return worker.next_run

    def record(self, kind: str, success: bool, now: float) -> list[Event]:
        """The outcome of one attempt of probe `kind`, finished at `now`."""
        worker = self.workers.get(kind)
        if worker is None or worker.on_hold or kind not in self._active():
            return []  # late news of a probe that no longer counts
        worker.triggered = False
        if worker.next_run <= now:  # (a triggered run between two ticks leaves them as they are)
            worker.next_run = _next_tick(worker, now, after=True)
        if success == worker.last:
            worker.run += 1
        else:
            worker.last, worker.run = success, 1
        needed = worker.probe.success_threshold if success else worker.probe.failure_threshold
        if worker.run < needed:
            return []
        events = [Event(kind, success)] if worker.result is not success else []
        worker.result = success
        if success and kind == "startup":
            for name, other in self.workers.items():  # they ticked, idle, while startup held them
                other.next_run = _next_tick(other, now, after=False)
                # kubelet's status sync runs the readiness probe of a started container that is not
                # ready at once (prober_manager.UpdatePodStatus' manual trigger); its ticks go on
                other.triggered = (name == "readiness" and other.result is not True
                                   and now >= self.start + other.probe.initial_delay)
        if not success and kind in ("liveness", "startup"):
            worker.on_hold, worker.run = True, 0
            events = [Event(kind, False, restart=True)]
        return events
