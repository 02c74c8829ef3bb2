"""What `podnet up` waits for (podnet.cli.upwait), judged on the status a supervisor on fakes
reports (no root): the default goal (a usable cluster), --wait's (every pod Ready), the phases
it shows, and the reasons it gives for pods that are not Ready."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from podnet.cli import upwait
from podnet.errors import UsageError
from podnet.host.layout import ClusterLayout
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.loop import step
from podnet.linux.supervisor.state import ClusterState
from tests.supervisor_fakes import FakeDataPlane, FakeRuntime

CONFIG = {"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "upw", "nodes": 2}
PROBE = {"httpGet": {"path": "/ready", "port": 8080}}


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
                                     "args": ["netexec"], "readinessProbe": PROBE}]}}


@pytest.fixture
def supervisor(tmp_path):
    state = ClusterState(ClusterLayout("upw"), tmp_path / "upw")
    state.create(CONFIG, [pod("web"), pod("never")])
    supervisor = Supervisor(ClusterLayout("upw"), state, dataplane_factory=FakeDataPlane, runtime_factory=FakeRuntime)
    supervisor.start()
    # the fake data plane has no prober: this one holds what a real one would have found
    supervisor.prober = SimpleNamespace(readiness_failures={}, first_readiness={}, clock=lambda: 100.0,
                                        add_pod=lambda sandbox: None, remove_pod=lambda ref: None, stop=lambda: None)
    return supervisor


def probed(supervisor, ref: str, ready: bool, message: str = "") -> None:
    """The prober's verdict on pod `ref`'s only container, and the recompute that follows it."""
    container = supervisor.runtime.pods[ref].containers[0].name
    if not ready:
        supervisor.prober.readiness_failures[(ref, container)] = message
    else:
        supervisor.prober.readiness_failures.pop((ref, container), None)
    supervisor._probe_changed(ref, container, ready, True)


def coredns(supervisor) -> list[str]:
    return sorted(ref for ref in supervisor.runtime.pods if ref.startswith("kube-system/coredns"))


def test_the_default_goal_is_system_pods_ready_and_every_workload_pod_settled(supervisor):
    status = supervisor.status()
    assert status["ready"]  # every pod has its processes
    assert not upwait.usable(status, dns_ok=True)  # but nothing was probed yet
    for ref in coredns(supervisor):
        probed(supervisor, ref, True)
    step(supervisor)
    status = supervisor.status()
    assert upwait.system_ready(status)
    assert not upwait.usable(status, dns_ok=True)  # the workload pods have no verdict yet
    assert not upwait.usable(status, dns_ok=False)
    probed(supervisor, "default/web", True)
    probed(supervisor, "default/never", False, "httpGet probe failed: [Errno 111] Connection refused")
    step(supervisor)
    status = supervisor.status()
    assert upwait.usable(status, dns_ok=True)  # `never` failed a check: no point waiting for it
    assert not upwait.every_pod_ready(status)  # what --wait also asks for
    assert upwait.not_ready_lines(status) == [
        "default/never: container c: readiness probe failed: httpGet probe failed: [Errno 111] Connection refused"]


def test_services_are_not_programmed_between_a_readiness_flip_and_its_recompute(supervisor):
    for ref in coredns(supervisor):
        probed(supervisor, ref, True)
    assert supervisor.status()["servicesProgrammed"] is False  # the EndpointSlices still say not Ready
    step(supervisor)
    assert supervisor.status()["servicesProgrammed"] is True


def test_a_container_that_exited_is_a_reason(supervisor):
    supervisor.runtime.pods["default/web"].containers[0].process.exit(3)
    supervisor.runtime.pods["default/web"].containers[0].last_exit = 3
    web = next(p for p in supervisor.status()["pods"] if p["pod"] == "default/web")
    assert not web["ready"] and web["reasons"] == ["container c: exited with code 3"]
    assert upwait.settled(web)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def settle_all_but_never(supervisor):
    for ref in coredns(supervisor):
        probed(supervisor, ref, True)
    probed(supervisor, "default/web", True)
    probed(supervisor, "default/never", False, "httpGet probe failed: [Errno 111] Connection refused")
    step(supervisor)


def test_the_default_wait_does_not_wait_for_a_pod_that_failed_its_readiness_check(supervisor):
    settle_all_but_never(supervisor)
    clock = Clock()
    outcome = upwait.wait_until_usable(upwait.Progress(2), lambda: True, supervisor.status, lambda: True,
                                       wait=None, timeout=60, clock=clock, sleep=clock.sleep)
    assert outcome.usable and not outcome.timed_out and not outcome.all_ready
    assert clock.now == 0.0  # usable at the first look


def first_probe_due(supervisor, ref: str, at: float, initial_delay: int) -> None:
    """The prober's word: pod `ref`'s readiness probe has not run, its first attempt is due at
    `at` on the prober's clock (which reads 100)."""
    container = supervisor.runtime.pods[ref].containers[0].name
    supervisor.prober.first_readiness[(ref, container)] = (at, initial_delay)


def test_the_default_wait_does_not_wait_for_a_first_readiness_probe_far_off(supervisor):
    settle_all_but_never(supervisor)
    probed(supervisor, "default/never", False)  # not Ready, and no attempt failed yet:
    supervisor.prober.readiness_failures.clear()
    first_probe_due(supervisor, "default/never", 100.0 + upwait.FIRST_PROBE_HORIZON + 25, 30)
    step(supervisor)
    status = supervisor.status()
    assert upwait.usable(status, dns_ok=True)
    assert upwait.not_ready_lines(status) == [
        "default/never: waiting for its first readiness probe (initialDelaySeconds 30)"]
    clock = Clock()
    outcome = upwait.wait_until_usable(upwait.Progress(2), lambda: True, supervisor.status, lambda: True,
                                       wait=5, timeout=60, clock=clock, sleep=clock.sleep)
    assert outcome.timed_out and not outcome.all_ready  # --wait still asks for every pod Ready


def test_the_default_wait_waits_for_a_first_readiness_probe_due_soon(supervisor):
    settle_all_but_never(supervisor)
    probed(supervisor, "default/never", False)
    supervisor.prober.readiness_failures.clear()
    first_probe_due(supervisor, "default/never", 100.0 + upwait.FIRST_PROBE_HORIZON - 1, 3)
    step(supervisor)
    assert not upwait.usable(supervisor.status(), dns_ok=True)  # it may yet turn Ready


def test_wait_duration_requires_every_pod_ready_and_gives_up_with_the_list(supervisor):
    settle_all_but_never(supervisor)
    clock = Clock()
    outcome = upwait.wait_until_usable(upwait.Progress(2), lambda: True, supervisor.status, lambda: True,
                                       wait=5, timeout=60, clock=clock, sleep=clock.sleep)
    assert outcome.timed_out and outcome.usable and not outcome.all_ready
    assert [line.split(":")[0] for line in upwait.not_ready_lines(outcome.status)] == ["default/never"]
    probed(supervisor, "default/never", True)
    step(supervisor)
    outcome = upwait.wait_until_usable(upwait.Progress(2), lambda: True, supervisor.status, lambda: True,
                                       wait=5, timeout=60, clock=clock, sleep=clock.sleep)
    assert outcome.all_ready and not outcome.timed_out


def test_the_wait_asks_the_dns_only_once_the_system_pods_are_ready(supervisor):
    asked = []
    clock = Clock()

    def dns() -> bool:
        asked.append(clock.now)
        return True

    def poll():
        if clock.now >= 1.0 and not upwait.system_ready(supervisor.status()):
            settle_all_but_never(supervisor)
        return supervisor.status()

    outcome = upwait.wait_until_usable(upwait.Progress(2), lambda: True, poll, dns, wait=None, timeout=60,
                                       clock=clock, sleep=clock.sleep)
    assert outcome.usable and asked and min(asked) >= 1.0


def test_phases_are_shown_in_order_and_end_done(supervisor):
    progress = upwait.Progress(2)
    assert [done for _, done, _ in progress.phases()] == [False] * 6  # still building
    settle_all_but_never(supervisor)
    out = io.StringIO()
    clock = Clock()
    upwait.wait_until_usable(progress, lambda: True, supervisor.status, lambda: True, wait=None, timeout=60,
                             console=Console(file=out, width=100), clock=clock, sleep=clock.sleep)
    assert [name for name, _, _ in progress.phases()] == list(upwait.PHASES)
    assert all(done for _, done, _ in progress.phases())
    text = out.getvalue()
    assert [text.index(name) for name in upwait.PHASES] == sorted(text.index(name) for name in upwait.PHASES)
    assert "1 not Ready" in text


def test_a_cluster_that_does_not_boot_in_time_is_reported_as_timed_out():
    clock = Clock()
    outcome = upwait.wait_until_usable(upwait.Progress(2), lambda: False, lambda: None, None, wait=None, timeout=3,
                                       clock=clock, sleep=clock.sleep)
    assert outcome.timed_out and not outcome.usable


@pytest.mark.parametrize("text, seconds", [("60", 60), ("60s", 60), ("5m", 300), ("1m30s", 90), ("500ms", 0.5)])
def test_wait_takes_go_durations(text, seconds):
    assert upwait.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "5 m", "1d", ""])
def test_a_bad_duration_is_one_clear_error(text):
    with pytest.raises(UsageError, match="not a duration"):
        upwait.parse_duration(text)
