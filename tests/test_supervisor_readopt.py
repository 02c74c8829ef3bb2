"""What a restarted supervisor carries on from the dead one's record (no root): the generation
watchers hold, a `get -w` running across the restart, and the grace period of a pod that was
terminating when the supervisor died."""

from __future__ import annotations

import json
import threading
import time

import pytest

from podnet.cli.main import main
from podnet.host import layout as layout_module
from podnet.host.layout import ClusterLayout
from podnet.linux.supervisor import core, record
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.server import handle, serving
from podnet.linux.supervisor.state import ClusterState
from tests.supervisor_fakes import DEPLOYMENT, FakeDataPlane, FakeRuntime

CONFIG = {"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "ro", "nodes": 2}


def scaled(replicas: int) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List",
                       "items": [{**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": replicas}}]})


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setattr(layout_module, "STATE_ROOT", tmp_path)
    state = ClusterState(ClusterLayout("ro"))
    state.create(CONFIG, [DEPLOYMENT])
    return state


def make(state):
    return Supervisor(ClusterLayout("ro"), state, dataplane_factory=FakeDataPlane, runtime_factory=FakeRuntime)


def test_the_generation_counts_on_across_a_restart(state):
    first = make(state)
    first.start()
    first.change(scaled(3), delete=False)
    held = first.generation  # what a watcher holds when the supervisor dies
    first.persist()
    second = make(state)
    second.adopt(record.read_saved(state.directory))
    assert second.generation > held
    # a watcher holding the dead one's generation is answered at once with the new one
    assert second.wait_for_generation(held, timeout=30) == second.generation
    # even one the dead supervisor reached after its last write (a few changes at most)
    assert second.generation > held + 10
    before = second.generation
    second.change(scaled(2), delete=False)
    assert second.generation > before


def test_get_w_keeps_watching_across_a_supervisor_restart(state, monkeypatch, capsys):
    """The first supervisor stops answering (as if SIGKILLed: its socket file stays), a second
    adopts from the record and serves on the same socket; the watch prints what the second
    changes. It ends when the cluster's state directory goes (down)."""
    monkeypatch.setattr("podnet.cli.load.os.geteuid", lambda: 0)
    layout = ClusterLayout("ro")
    first = make(state)
    first.start()
    answer: list[int] = []
    watcher = None
    try:
        with serving(layout.socket_path, lambda message: handle(first, message)):
            watcher = threading.Thread(target=lambda: answer.append(main(["get", "pods", "-w", "--name", "ro"])),
                                       daemon=True)
            watcher.start()
            deadline = time.monotonic() + 60
            listed = ""
            while listed.count("web-") < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
                listed += capsys.readouterr().out
            first.persist()
        layout.socket_path.touch()  # a dead supervisor's socket file stays, nobody listening on it
        said = ""
        while "still watching" not in said and watcher.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # the watcher finds nobody answering (once its long poll ends), and says so
            said += capsys.readouterr().err
        assert "still watching" in said and watcher.is_alive()
        second = make(state)
        second.adopt(record.read_saved(state.directory))
        with serving(layout.socket_path, lambda message: handle(second, message)):
            started = second.change(scaled(3), delete=False)["started"]
            [new] = [ref.split("/")[1] for ref in started]
            seen = ""
            while new not in seen and time.monotonic() < deadline:
                time.sleep(0.05)
                captured = capsys.readouterr()
                seen += captured.out
            assert new in seen, seen
        for path in sorted(layout.state_dir.rglob("*"), reverse=True):  # down: the state directory goes
            path.unlink() if not path.is_dir() else path.rmdir()
        layout.state_dir.rmdir()
        watcher.join(60)
        assert answer == [0]
    finally:
        if watcher is not None and watcher.is_alive():
            layout.state_dir.mkdir(exist_ok=True)
            for path in sorted(layout.state_dir.rglob("*"), reverse=True):
                path.unlink() if not path.is_dir() else path.rmdir()
            layout.state_dir.rmdir()
            watcher.join(10)


def test_wait_goes_on_across_a_supervisor_restart(state, monkeypatch, capsys):
    """`podnet wait --for=delete` of pods the restarted supervisor deletes: met, exit 0."""
    monkeypatch.setattr("podnet.cli.load.os.geteuid", lambda: 0)
    layout = ClusterLayout("ro")
    first = make(state)
    first.start()
    web = sorted(ref.split("/")[1] for ref in first.runtime.pods if ref.startswith("default/web-"))
    answer: list[int] = []
    asked: list[str] = []

    def answering(message):
        asked.append(message.get("op"))
        return handle(first, message)

    with serving(layout.socket_path, answering):
        waiter = threading.Thread(target=lambda: answer.append(main(
            ["wait", "--for=delete", "pod", "-l", "app=web", "--timeout=120s", "--name", "ro"])), daemon=True)
        waiter.start()
        deadline = time.monotonic() + 60
        while "watch" not in asked and time.monotonic() < deadline:
            time.sleep(0.02)  # its first reading is taken, and it waits in the long poll
        first.persist()
        first.stopping.set()  # the long poll it waits in answers now: its next request finds nobody
        first.stop_watchers()
    layout.socket_path.touch()  # the dead supervisor's socket file
    time.sleep(0.5)  # nobody answering
    assert waiter.is_alive(), (answer, capsys.readouterr())
    second = make(state)
    second.adopt(record.read_saved(state.directory))
    with serving(layout.socket_path, lambda message: handle(second, message)):
        second.change(json.dumps({"apiVersion": "v1", "kind": "List", "items": [DEPLOYMENT]}), delete=True,
                      grace_period=0)
        waiter.join(60)
    assert answer == [0]
    out = capsys.readouterr().out
    assert len(web) == 2 and all(f"pod/{name} condition met" in out for name in web), out


# The grace period of the pod being terminated, and what a test leaves of it at the restart: both
# far longer than making and adopting a supervisor could take on a loaded machine, so what is
# left is still ahead when kill_pod is called, and LEFT is told from GRACE anew by a wide margin.
GRACE = 3600
LEFT = 600


@pytest.fixture
def terminating(state, monkeypatch):
    """A supervisor that began terminating a pod (grace period GRACE, its process holding on)
    and died; its record, and what the kill_pod of a restarted supervisor is given."""
    given: dict[str, float] = {}

    def kill_pod(runtime, sandbox, node_netns, deadline, interrupted, hook_failed):
        given[sandbox.ref] = deadline - time.monotonic()
        return {}

    first = make(state)
    first.start()
    for sandbox in first.runtime.pods.values():
        for container in sandbox.containers:
            container.process.holds_on = True
    answer = first.change(scaled(1), delete=False, grace_period=GRACE)
    [ref] = answer["stopped"]
    first.persist(force=True)
    first.stopping.set()  # its termination thread ends here; nothing more is written
    first.wait_for_terminations(30)
    saved = record.read_saved(state.directory)
    assert ref in saved["terminating"] and ref in saved["graceDeadlines"]
    monkeypatch.setattr(core.termination, "kill_pod", kill_pod)
    return ref, saved, given


def killing_events(supervisor) -> int:
    return sum(1 for e in supervisor.events.list(0) if e["reason"] == "Killing")


def test_a_termination_goes_on_with_what_was_left_of_its_grace_period(state, terminating):
    ref, saved, given = terminating
    saved["graceDeadlines"][ref] = time.time() + LEFT  # the rest of its GRACE ran out before the restart
    second = make(state)
    second.adopt(saved)
    assert second.wait_for_terminations(30)
    assert 0 < given[ref] <= LEFT  # not GRACE anew
    assert ref not in second.terminating and ref not in second.grace_deadlines
    assert killing_events(second) == killing_events_of_record(state)  # Killing was said, once, before


def killing_events_of_record(state) -> int:
    return sum(1 for e in (record.read_events(state.directory) or {}).get("events", []) if e.get("reason") == "Killing")


def test_a_grace_period_that_ran_out_while_no_supervisor_ran_ends_at_once(state, terminating):
    ref, saved, given = terminating
    saved["graceDeadlines"][ref] = time.time() - 10
    second = make(state)
    second.adopt(saved)
    assert second.wait_for_terminations(30)
    assert given[ref] <= 0  # past: kill_pod then gives each container kubelet's minimum of 2 s after SIGTERM


def test_without_a_recorded_deadline_the_deletion_timestamp_says_when(state, terminating):
    ref, saved, given = terminating
    del saved["graceDeadlines"]  # a record written before the deadlines were
    body = saved["terminating"][ref]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + LEFT))
    body["metadata"]["deletionTimestamp"] = stamp
    second = make(state)
    second.adopt(saved)
    assert second.wait_for_terminations(30)
    assert 0 < given[ref] <= LEFT  # not GRACE anew
