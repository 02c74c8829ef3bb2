"""Kubelet's probe rules (podnet.probes) and the prober that runs them (podnet.linux.prober),
the latter with fake executors, a fake clock and fake sandboxes: no root, no sockets."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

import pytest

from podnet.api.objects import KubeObject
from podnet.host.layout import ClusterLayout
from podnet.linux import runtime
from podnet.linux.prober import ProbeFailed, ProbeManager
from podnet.probes import (
    ContainerProbes,
    Event,
    Exec,
    HTTPGet,
    ProbeError,
    TCPSocket,
    http_request,
    http_success,
    parse_container_probes,
    parse_probe,
)

HTTP = {"httpGet": {"port": 8080, "path": "/healthz"}}


# ---- parsing ------------------------------------------------------------------------------

CONTAINER = {"name": "app", "ports": [{"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": 9000}]}

PARSE_CASES = [
    # (rule, kind, probe spec, expected attributes)
    ("defaults are kubelet's", "readiness", {"tcpSocket": {"port": 80}},
     dict(initial_delay=0, period=10, timeout=1, success_threshold=1, failure_threshold=3, handler="tcpSocket",
          action=TCPSocket(80, ""))),
    ("zero counters are defaulted like missing ones", "liveness",
     {"exec": {"command": ["true"]}, "periodSeconds": 0, "timeoutSeconds": 0, "failureThreshold": 0},
     dict(period=10, timeout=1, failure_threshold=3, action=Exec(("true",)))),
    ("given counters are kept", "readiness",
     {"tcpSocket": {"port": 80}, "initialDelaySeconds": 5, "periodSeconds": 1, "timeoutSeconds": 2,
      "successThreshold": 2, "failureThreshold": 1},
     dict(initial_delay=5, period=1, timeout=2, success_threshold=2, failure_threshold=1)),
    ("httpGet defaults: path /, scheme HTTP, the pod IP", "liveness", {"httpGet": {"port": 80}},
     dict(action=HTTPGet(80, "/", "", "HTTP", ()))),
    ("httpGet keeps host, scheme and headers in order", "readiness",
     {"httpGet": {"port": 443, "path": "/ready", "host": "10.1.2.3", "scheme": "HTTPS",
                  "httpHeaders": [{"name": "X-A", "value": "1"}, {"name": "Host", "value": "example"}]}},
     dict(action=HTTPGet(443, "/ready", "10.1.2.3", "HTTPS", (("X-A", "1"), ("Host", "example"))))),
    ("a path without a leading slash gets one", "readiness", {"httpGet": {"port": 80, "path": "ok"}},
     dict(action=HTTPGet(80, "/ok"))),
    ("a named port is the container's port of that name", "readiness", {"httpGet": {"port": "admin"}},
     dict(action=HTTPGet(9000), error=None)),
    ("a numeric string is a port number", "readiness", {"tcpSocket": {"port": "8080"}},
     dict(action=TCPSocket(8080), error=None)),
    ("an unknown port name makes a probe that always fails", "readiness", {"tcpSocket": {"port": "nope"}},
     dict(handler="tcpSocket", error="readinessProbe.tcpSocket: port 'nope' is not the name of one of the container's ports")),
    ("grpc is unsupported", "liveness", {"grpc": {"port": 9090}}, dict(handler="unsupported", action=None)),
    ("readiness may ask for several successes", "readiness", {"tcpSocket": {"port": 80}, "successThreshold": 3},
     dict(success_threshold=3)),
]


@pytest.mark.parametrize("rule,kind,spec,expected", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse(rule, kind, spec, expected):
    probe = parse_probe(kind, spec, CONTAINER)
    assert probe.kind == kind
    assert {key: getattr(probe, key) for key in expected} == expected


PARSE_ERRORS = [
    ("liveness needs successThreshold 1", "liveness", {"tcpSocket": {"port": 80}, "successThreshold": 2}, "must be 1"),
    ("startup needs successThreshold 1", "startup", {"tcpSocket": {"port": 80}, "successThreshold": 3}, "must be 1"),
    ("exactly one handler", "readiness", {"tcpSocket": {"port": 80}, "exec": {"command": ["true"]}}, "exactly one"),
    ("a handler is required", "readiness", {"periodSeconds": 3}, "exactly one"),
    ("scheme is HTTP or HTTPS", "readiness", {"httpGet": {"port": 80, "scheme": "FTP"}}, "HTTP nor HTTPS"),
    ("exec needs a command", "liveness", {"exec": {"command": []}}, "non-empty list"),
    ("a port is required", "readiness", {"httpGet": {"path": "/"}}, "port is required"),
    ("counters are not negative", "readiness", {"tcpSocket": {"port": 80}, "periodSeconds": -1}, "non-negative"),
    ("counters are integers", "readiness", {"tcpSocket": {"port": 80}, "timeoutSeconds": "1"}, "non-negative"),
]


@pytest.mark.parametrize("rule,kind,spec,message", PARSE_ERRORS, ids=[c[0] for c in PARSE_ERRORS])
def test_parse_error(rule, kind, spec, message):
    with pytest.raises(ProbeError, match=message):
        parse_probe(kind, spec, CONTAINER)


def test_port_out_of_range_is_an_error_kept_on_the_probe():
    assert "1-65535" in parse_probe("readiness", {"tcpSocket": {"port": 70000}}).error


def test_container_probes_leave_out_invalid_ones_with_a_reason():
    probes, errors = parse_container_probes({"name": "c", "livenessProbe": {"tcpSocket": {"port": 1}, "successThreshold": 2},
                                             "readinessProbe": HTTP})
    assert list(probes) == ["readiness"]
    assert errors == ["container c: livenessProbe.successThreshold: must be 1, not 2"]


REQUEST_CASES = [
    ("kubelet's default headers", HTTPGet(8080, "/healthz"), "10.0.0.5",
     ["GET /healthz HTTP/1.1", "Host: 10.0.0.5:8080", "User-Agent: kube-probe/1.31", "Accept: */*",
      "Connection: close"]),
    ("configured headers follow the defaults", HTTPGet(80, "/", headers=(("X-Echo", "hi"), ("X-Echo", "again"))), "10.0.0.5",
     ["GET / HTTP/1.1", "Host: 10.0.0.5:80", "User-Agent: kube-probe/1.31", "Accept: */*", "X-Echo: hi",
      "X-Echo: again", "Connection: close"]),
    ("a configured Host or User-Agent replaces the default", HTTPGet(80, "/", headers=(("host", "web.local"), ("User-Agent", "me"))),
     "10.0.0.5", ["GET / HTTP/1.1", "Accept: */*", "host: web.local", "User-Agent: me", "Connection: close"]),
    ("the connection is always closed", HTTPGet(80, "/", headers=(("Connection", "keep-alive"),)), "10.0.0.5",
     ["GET / HTTP/1.1", "Host: 10.0.0.5:80", "User-Agent: kube-probe/1.31", "Accept: */*", "Connection: close"]),
    ("an IPv6 host is bracketed", HTTPGet(80, "/"), "fd00::5",
     ["GET / HTTP/1.1", "Host: [fd00::5]:80", "User-Agent: kube-probe/1.31", "Accept: */*", "Connection: close"]),
]


@pytest.mark.parametrize("rule,action,host,lines", REQUEST_CASES, ids=[c[0] for c in REQUEST_CASES])
def test_http_request(rule, action, host, lines):
    assert http_request(action, host) == ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("status,success", [(199, False), (200, True), (302, True), (399, True), (400, False), (500, False)])
def test_http_success_is_2xx_or_3xx(status, success):
    assert http_success(status) is success


# ---- the state machine --------------------------------------------------------------------


@dataclass
class Run:
    """A container run second by second; each due probe answers from its script (the last
    answer repeats)."""

    probes: ContainerProbes
    script: dict[str, list[bool]]
    runs: list[tuple[float, str]] = field(default_factory=list)
    events: list[tuple[float, Event]] = field(default_factory=list)
    answered: dict[str, int] = field(default_factory=dict)

    def until(self, end: float, start: float = 0.0) -> Run:
        t = start
        while t <= end:
            for kind in self.probes.due(t):
                answers = self.script[kind]
                n = self.answered.get(kind, 0)
                self.answered[kind] = n + 1
                self.runs.append((t, kind))
                self.events += [(t, e) for e in self.probes.record(kind, answers[min(n, len(answers) - 1)], t)]
            t += 1
        return self

    def times(self, kind: str) -> list[float]:
        return [t for t, k in self.runs if k == kind]


def run(container: dict, end: float, **script: list[bool]) -> Run:
    probes, errors = parse_container_probes(container)
    assert not errors
    return Run(ContainerProbes(probes, start=0.0), script).until(end)


def test_first_run_after_initial_delay_then_every_period():
    r = run({"readinessProbe": {**HTTP, "initialDelaySeconds": 5, "periodSeconds": 10}}, 40, readiness=[True])
    assert r.times("readiness") == [5, 15, 25, 35]


def test_no_initial_delay_runs_at_start():
    r = run({"livenessProbe": {**HTTP, "periodSeconds": 3}}, 10, liveness=[True])
    assert r.times("liveness") == [0, 3, 6, 9]


def test_readiness_is_initially_not_ready():
    probes = ContainerProbes(parse_container_probes({"readinessProbe": {**HTTP, "initialDelaySeconds": 30}})[0])
    assert probes.started and not probes.ready
    assert probes.due(0) == []


def test_the_first_readiness_attempt_is_due_after_the_initial_delay_until_it_has_run():
    probes = ContainerProbes(parse_container_probes({"readinessProbe": {**HTTP, "initialDelaySeconds": 30}})[0],
                             start=100.0)
    assert probes.first_readiness_due() == 130.0
    probes.record("readiness", False, 130.0)
    assert probes.first_readiness_due() is None  # it ran: its verdict says more than its schedule
    assert ContainerProbes(parse_container_probes({"livenessProbe": HTTP})[0]).first_readiness_due() is None
    assert ContainerProbes(parse_container_probes({"readinessProbe": HTTP})[0], running=False
                           ).first_readiness_due() is None  # not started: no schedule yet


def test_a_carried_over_container_keeps_its_readiness_until_its_probes_say_otherwise():
    # a restarted supervisor adopting a running container: no flip to not ready before the first attempt
    probes = ContainerProbes(parse_container_probes({"readinessProbe": {**HTTP, "failureThreshold": 2},
                                                     "startupProbe": HTTP})[0], start=0.0)
    assert not probes.started and not probes.ready
    probes.carry_over(ready=True, started=True)
    assert probes.started and probes.ready
    assert probes.due(0.0) == ["readiness"]  # probing goes on
    probes.record("readiness", False, 0.0)
    assert probes.ready  # one failure of two
    probes.record("readiness", False, 10.0)
    assert not probes.ready


def test_without_readiness_probe_ready_once_started():
    probes = ContainerProbes(parse_container_probes({"livenessProbe": HTTP})[0])
    assert probes.ready and probes.started and not probes.liveness_failed


THRESHOLD_CASES = [
    # (rule, probe counters, readiness answers, seconds run, expected ready, expected events as (time, result))
    ("one success makes ready", {}, [True], 0, True, [(0, True)]),
    ("successThreshold counts consecutive successes", {"successThreshold": 3}, [True, True, False, True, True, True], 5,
     True, [(5, True)]),
    ("not yet ready before successThreshold", {"successThreshold": 3}, [True, True], 1, False, []),
    ("failureThreshold consecutive failures make unready", {}, [True, False, False, False], 3, False,
     [(0, True), (3, False)]),
    ("failures broken by a success do not count", {}, [True, False, False, True, False, False, True], 6, True,
     [(0, True)]),
    ("failureThreshold 1 flips at once", {"failureThreshold": 1}, [True, False], 1, False, [(0, True), (1, False)]),
    ("failures while not ready change nothing", {}, [False], 5, False, []),
]


@pytest.mark.parametrize("rule,counters,answers,end,ready,events", THRESHOLD_CASES, ids=[c[0] for c in THRESHOLD_CASES])
def test_readiness_thresholds(rule, counters, answers, end, ready, events):
    r = run({"readinessProbe": {**HTTP, "periodSeconds": 1, **counters}}, end, readiness=answers)
    assert r.probes.ready is ready
    assert [(t, e.result) for t, e in r.events] == events


def test_startup_gates_liveness_and_readiness():
    container = {"startupProbe": {**HTTP, "periodSeconds": 1, "failureThreshold": 10},
                 "livenessProbe": {**HTTP, "periodSeconds": 5}, "readinessProbe": {**HTTP, "periodSeconds": 5}}
    r = run(container, 2, startup=[False, False, False, True], liveness=[True], readiness=[True])
    assert not r.probes.started and not r.probes.ready
    assert {k for _, k in r.runs} == {"startup"}
    r.until(12, start=3)
    assert r.times("startup") == [0, 1, 2, 3]  # never again once it succeeded
    # liveness and readiness run on their own ticks (0, 5, 10, …), the first after startup succeeded;
    # readiness also once as soon as it can (this harness's next second): kubelet's status sync
    # triggers it for a started container that is not ready (prober_manager.UpdatePodStatus)
    assert r.times("liveness") == [5, 10]
    assert r.times("readiness") == [4, 5, 10]
    assert r.probes.started and r.probes.ready


def test_startup_failure_asks_for_one_restart():
    r = run({"startupProbe": {**HTTP, "periodSeconds": 1, "failureThreshold": 3}, "livenessProbe": HTTP}, 10,
            startup=[False], liveness=[True])
    assert r.times("startup") == [0, 1, 2]
    assert r.events == [(2, Event("startup", False, restart=True))]
    assert r.probes.liveness_failed and not r.probes.started


def test_liveness_failure_asks_for_one_restart_and_readiness_goes_on():
    container = {"livenessProbe": {**HTTP, "periodSeconds": 1}, "readinessProbe": {**HTTP, "periodSeconds": 1}}
    r = run(container, 10, liveness=[True, False], readiness=[True])
    assert r.times("liveness") == [0, 1, 2, 3]  # held after the third failure
    assert [e for _, e in r.events if e.restart] == [Event("liveness", False, restart=True)]
    assert r.probes.liveness_failed
    assert r.times("readiness") == list(range(11))  # kubelet's readiness worker keeps probing


def test_new_instance_starts_every_worker_over():
    container = {"livenessProbe": {**HTTP, "periodSeconds": 1, "initialDelaySeconds": 2},
                 "readinessProbe": {**HTTP, "periodSeconds": 1, "initialDelaySeconds": 2}}
    r = run(container, 10, liveness=[False], readiness=[True])
    assert r.probes.liveness_failed and r.probes.ready
    r.probes.observe(running=True, instance=1, now=20)
    assert not r.probes.liveness_failed
    assert not r.probes.ready  # readiness back to its initial Failure
    assert r.probes.due(21) == [] and r.probes.due(22) == ["liveness", "readiness"]  # initial delay again
    r.probes.observe(running=True, instance=1, now=22)  # the same instance: nothing reset
    assert r.probes.due(22) == ["liveness", "readiness"]


def test_a_stopped_container_is_neither_ready_nor_started_nor_probed():
    probes = ContainerProbes(parse_container_probes({"readinessProbe": HTTP})[0])
    probes.record("readiness", True, 0)
    probes.observe(running=False, instance=0, now=1)
    assert not probes.ready and not probes.started
    assert probes.due(100) == [] and probes.next_due() is None


def test_late_results_for_probes_that_no_longer_run_are_ignored():
    probes = ContainerProbes(parse_container_probes({"startupProbe": HTTP, "livenessProbe": HTTP})[0])
    assert probes.record("liveness", False, 0) == []  # not started yet: liveness does not count
    assert probes.record("readiness", True, 0) == []  # there is no readiness probe


def test_unsupported_probes_count_as_absent():
    probes = ContainerProbes(parse_container_probes({"readinessProbe": {"grpc": {"port": 1}},
                                                     "livenessProbe": {"grpc": {"port": 1}}})[0])
    assert probes.unsupported == ("liveness", "readiness")
    assert probes.ready and probes.due(0) == []


def test_an_attempt_that_overran_its_period_keeps_to_the_period_grid():
    probes = ContainerProbes(parse_container_probes({"readinessProbe": {**HTTP, "periodSeconds": 2}})[0])
    probes.record("readiness", True, 5)  # due at 0, answered at 5: the ticks at 2 and 4 are lost
    assert probes.next_due() == 6
    probes.record("readiness", True, 6.5)
    assert probes.next_due() == 8


# ---- the prober, with fakes ---------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeContainer:
    name: str
    running: bool = True
    restarts: int = 0
    argv: tuple[str, ...] = ("sleep", "infinity")  # not one of podnet's programs: probed from its start


@dataclass
class FakeSandbox:
    ref: str
    pod: KubeObject
    containers: list[FakeContainer]
    netns: str = "pod-netns"
    host_network: bool = False


def sandbox(ref: str, *containers: dict, ip: str = "10.244.1.5", node: str = "worker") -> FakeSandbox:
    namespace, name = ref.split("/")
    body = {"metadata": {"namespace": namespace, "name": name},
            "spec": {"nodeName": node, "containers": list(containers)}, "status": {"podIP": ip}}
    return FakeSandbox(ref, KubeObject("Pod", namespace, name, body), [FakeContainer(c["name"]) for c in containers])


class FakeRuntime:
    def enter_argv(self, sandbox, argv):
        return ["enter", sandbox.ref, *argv]

    def container_environment(self, sandbox, name):
        return {"CONTAINER": name}


class FakeExecutors:
    """Answers from `answer(call)`, where call is ("http", netns, host, port, path) or
    ("tcp", netns, host, port) or ("exec", *argv); every call is kept."""

    def __init__(self, answer=lambda call: True):
        self.answer, self.calls = answer, []
        self.environments = []  # each exec's env: the probed container's

    def _ask(self, call):
        self.calls.append(call)
        return self.answer(call)

    def http_get(self, netns, host, action, timeout):
        return self._ask(("http", netns, host, action.port, action.path))

    def tcp_socket(self, netns, host, port, timeout):
        return self._ask(("tcp", netns, host, port))

    def exec(self, argv, timeout, env=None):
        self.environments.append(env)
        return self._ask(("exec", *argv))


class Harness:
    def __init__(self, answer=lambda call: True, **options):
        self.clock = FakeClock()
        self.executors = FakeExecutors(answer)
        self.changes: list[tuple[str, str, bool, bool]] = []
        self.restarts: list[tuple[str, str]] = []
        options = {"threads": 0, "start": False, **options}
        self.manager = ProbeManager(FakeRuntime(), ClusterLayout("t"), lambda *a: self.changes.append(a),
                                    lambda *a: self.restarts.append(a), executors=self.executors, clock=self.clock,
                                    **options)

    def at(self, t: float) -> Harness:
        self.clock.now = t
        self.manager.tick()
        return self


NODE_NETNS = ClusterLayout("t").node_netns("worker")


def test_prober_reports_initial_state_of_every_container_on_add():
    h = Harness(answer=lambda call: False)
    h.manager.add_pod(sandbox("default/web", {"name": "app", "readinessProbe": {**HTTP, "initialDelaySeconds": 5}},
                              {"name": "sidecar"}))
    h.at(0)
    assert h.changes == [("default/web", "app", False, True), ("default/web", "sidecar", True, True)]
    assert h.executors.calls == []  # initial delay


def test_prober_carries_over_what_a_restarted_supervisor_knew():
    # adopted: Ready before the restart, so Ready now — no flip to false while the first attempt
    # waits — until its probe fails failureThreshold times
    h = Harness(answer=lambda call: False)
    h.manager.add_pod(sandbox("default/web", {"name": "app", "readinessProbe": {**HTTP, "initialDelaySeconds": 5,
                                                                                 "failureThreshold": 1}}),
                      known={"app": {"ready": True, "started": True}})
    h.at(0)
    assert h.changes == [("default/web", "app", True, True)]
    h.at(5)
    assert h.changes[1:] == [("default/web", "app", False, True)]


def test_prober_tells_when_a_first_readiness_attempt_is_due_until_it_runs():
    h = Harness(answer=lambda call: False)
    h.manager.add_pod(sandbox("default/slow", {"name": "app", "readinessProbe": {**HTTP, "initialDelaySeconds": 30}},
                              {"name": "plain"}))
    h.at(2)
    assert h.manager.first_readiness == {("default/slow", "app"): (32.0, 30)}
    h.at(32)
    assert h.manager.first_readiness == {}
    assert ("default/slow", "app") in h.manager.readiness_failures


def test_prober_probes_the_pod_ip_from_the_node_namespace():
    h = Harness()
    h.manager.add_pod(sandbox("default/web", {"name": "app", "readinessProbe": HTTP,
                                              "livenessProbe": {"tcpSocket": {"port": 80, "host": "10.0.0.9"}},
                                              "startupProbe": {"exec": {"command": ["cat", "/ready"]}}}))
    h.at(0)  # startup runs first, alone
    assert h.executors.calls == [("exec", "enter", "default/web", "cat", "/ready")]
    assert h.executors.environments == [{"CONTAINER": "app"}]  # it runs with the container's env, as in it
    h.at(1)  # then liveness and readiness, on their own ticks (0, 10, …): the one at 0 is overdue
    assert h.executors.calls[1:] == [("tcp", NODE_NETNS, "10.0.0.9", 80), ("http", NODE_NETNS, "10.244.1.5", 8080, "/healthz")]
    h.at(9)
    assert len(h.executors.calls) == 3
    h.at(10)
    assert len(h.executors.calls) == 5
    # inline attempts land in the same pass: the first report is already after the startup probe
    assert h.changes == [("default/web", "app", False, True), ("default/web", "app", True, True)]


def test_prober_asks_for_one_restart_and_starts_over_on_the_new_instance():
    h = Harness(answer=lambda call: call[0] != "tcp")
    web = sandbox("default/web", {"name": "app", "livenessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1},
                                  "readinessProbe": {**HTTP, "periodSeconds": 1}})
    h.manager.add_pod(web)
    for t in range(6):
        h.at(t)
    assert h.restarts == [("default/web", "app")]  # once, though liveness kept failing
    assert [c[0] for c in h.executors.calls].count("tcp") == 3  # held after the restart was asked for
    app = web.containers[0]
    app.running = False  # the caller killed it
    h.at(6)
    assert h.changes[-1] == ("default/web", "app", False, False)
    app.running, app.restarts = True, 1  # its reaper started a new instance
    h.at(7)  # readiness started over (not ready) and passed again within the pass
    assert h.changes[-1] == ("default/web", "app", True, True)
    assert [c[0] for c in h.executors.calls].count("tcp") == 4  # liveness probes the new instance


def test_prober_fails_a_probe_on_an_undeclared_port_without_running_it():
    h = Harness()
    h.manager.add_pod(sandbox("default/web", {"name": "app", "readinessProbe": {"httpGet": {"port": "metrics"}}}))
    h.at(0)
    assert h.executors.calls == [] and h.changes == [("default/web", "app", False, True)]


def test_prober_counts_an_executor_exception_as_failure():
    def answer(call):
        raise OSError("connection refused")

    h = Harness(answer=answer)
    h.manager.add_pod(sandbox("default/web", {"name": "app", "livenessProbe": {**HTTP, "failureThreshold": 1}}))
    h.at(0)
    assert h.restarts == [("default/web", "app")]


def test_prober_forgets_a_removed_pod():
    h = Harness(answer=lambda call: False)
    h.manager.add_pod(sandbox("default/web", {"name": "app", "livenessProbe": {**HTTP, "periodSeconds": 1}}))
    h.at(0)
    h.manager.remove_pod("default/web")
    for t in range(1, 5):
        h.at(t)
    assert len(h.executors.calls) == 1 and h.restarts == []


def test_prober_slow_probe_does_not_stall_other_pods():
    release = threading.Event()

    def answer(call):
        if call[2] == "10.244.1.5":  # the slow pod
            release.wait(120)  # until the test is done: however slow the fast pod is
        return True

    h = Harness(answer=answer, threads=4, start=True, poll=0.01)
    ready = threading.Event()
    h.manager.on_change = lambda ref, name, r, s: (h.changes.append((ref, name, r, s)), r and ready.set())
    h.manager.add_pod(sandbox("default/slow", {"name": "app", "readinessProbe": HTTP}))
    h.manager.add_pod(sandbox("default/fast", {"name": "app", "readinessProbe": HTTP}, ip="10.244.1.6"))
    try:
        assert ready.wait(60)
        assert ("default/fast", "app", True, True) in h.changes
        assert ("default/slow", "app", True, True) not in h.changes
    finally:
        release.set()
        h.manager.stop()
        h.manager.stop()  # idempotent
    count = len(h.changes)
    time.sleep(0.05)
    assert len(h.changes) == count  # nothing after stop()


def test_a_podnet_program_is_probed_once_it_says_it_started(tmp_path, monkeypatch):
    """CoreDNS's stand-in is a Python program: kubelet's first probe follows the container's
    start, which is when the program runs (it touches its started file), not when the
    interpreter is spawned — else the first probe fails and readiness waits a whole period."""
    marker = tmp_path / "started"
    monkeypatch.setattr(runtime, "started_file", lambda layout, ref, container: marker)
    h = Harness(answer=lambda call: True)
    pod = sandbox("kube-system/coredns", {"name": "coredns", "readinessProbe": HTTP})
    pod.containers[0].argv = (sys.executable, "-m", "podnet.dns")
    h.manager.add_pod(pod)
    h.at(0).at(0.5)
    assert h.executors.calls == []  # spawned, not started: not probed
    marker.touch()
    h.at(0.6)
    assert h.executors.calls == [("http", NODE_NETNS, "10.244.1.5", 8080, "/healthz")]
    assert h.changes[-1] == ("kube-system/coredns", "coredns", True, True)


def test_a_podnet_program_that_never_says_it_started_is_probed_after_the_grace(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "started_file", lambda layout, ref, container: tmp_path / "never")
    h = Harness(answer=lambda call: False)
    pod = sandbox("kube-system/coredns", {"name": "coredns", "readinessProbe": HTTP})
    pod.containers[0].argv = (sys.executable, "-m", "podnet.dns")
    h.manager.add_pod(pod)
    h.at(0).at(runtime.STARTED_GRACE - 0.1)
    assert h.executors.calls == []
    h.at(runtime.STARTED_GRACE)
    assert len(h.executors.calls) == 1
    assert list(h.manager.readiness_failures) == [("kube-system/coredns", "coredns")]


def test_every_failed_attempt_is_reported_with_kubelets_message():
    def answer(call):
        if call[0] == "tcp":
            raise ConnectionRefusedError(111, "Connection refused")
        return False

    failures = []
    h = Harness(answer=answer, on_failure=lambda *a: failures.append(a))
    h.manager.add_pod(sandbox("default/web", {"name": "app", "readinessProbe": HTTP,
                                              "livenessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 10}}))
    h.at(0)
    assert sorted(failures) == [
        ("default/web", "app", "liveness", "dial tcp 10.244.1.5:80: connect: connection refused"),
        ("default/web", "app", "readiness", "HTTP probe failed with statuscode outside 200-399")]
    h.at(10)
    assert len(failures) == 4  # each attempt, as kubelet records Unhealthy each time


def test_an_answer_that_is_a_failure_is_reported_in_kubelets_words():
    def answer(call):
        raise ProbeFailed("HTTP probe failed with statuscode: 503")

    failures = []
    h = Harness(answer=answer, on_failure=lambda *a: failures.append(a))
    h.manager.add_pod(sandbox("default/web", {"name": "app", "readinessProbe": HTTP}))
    h.at(0)
    assert failures == [("default/web", "app", "readiness", "HTTP probe failed with statuscode: 503")]


def test_a_started_container_that_is_not_ready_has_its_readiness_probed_at_once():
    """The injected mesh proxy's probes (startup every 1 s, readiness every 15 s): once startup
    succeeds, readiness runs then, not at its next tick 15 s on (kubelet's manual trigger), and
    after that on its ticks as before."""
    startup = {**HTTP, "periodSeconds": 1, "failureThreshold": 600}
    probes, _ = parse_container_probes({"startupProbe": startup, "readinessProbe": {**HTTP, "periodSeconds": 15}})
    container = ContainerProbes(probes, start=0.0, running=True)
    assert container.due(0.0) == ["startup"]
    container.record("startup", True, 0.2)
    assert container.due(0.2) == ["readiness"] and container.next_due() <= 0.2
    container.record("readiness", True, 0.3)
    assert container.ready and container.due(0.3) == [] and container.next_due() == 15.0


def test_the_readiness_trigger_waits_for_the_initial_delay():
    probes, _ = parse_container_probes({"startupProbe": {**HTTP, "periodSeconds": 1},
                                        "readinessProbe": {**HTTP, "periodSeconds": 15, "initialDelaySeconds": 30}})
    container = ContainerProbes(probes, start=0.0, running=True)
    container.record("startup", True, 1.0)
    assert container.due(2.0) == [] and container.due(30.0) == ["readiness"]
