"""The record a restarted supervisor re-adopts the pods from (no root): processes known by pid
and start time, the record's round trip, its atomic write, and a missing or torn record."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from podnet.crashloop import BackOff
from podnet.host import layout as layout_module
from podnet.host.control import NotRunning, request
from podnet.host.layout import ClusterLayout
from podnet.linux.adopted import UNKNOWN_EXIT, AdoptedProcess, start_time
from podnet.linux.runtime import Container, PodSandbox
from podnet.linux.supervisor import record
from podnet.linux.supervisor import state as state_module
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.events import EventStore
from podnet.linux.supervisor.state import ClusterState
from tests.supervisor_fakes import DEPLOYMENT, FakeDataPlane, FakeRuntime

CONFIG = {"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "rec", "nodes": 2}


@pytest.fixture
def sleeper():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield process
    process.kill()
    process.wait()


def test_an_adopted_process_runs_until_it_ends(sleeper):
    adopted = AdoptedProcess(sleeper.pid, start_time(sleeper.pid))
    assert adopted.poll() is None
    sleeper.kill()
    sleeper.wait()
    assert adopted.poll() == UNKNOWN_EXIT  # its exit code went with its parent: kubelet's 137
    assert adopted.wait(timeout=1) == UNKNOWN_EXIT


def test_a_reused_pid_is_not_the_adopted_process(sleeper):
    # the same pid with another start time: another process that got the pid after a reuse
    assert AdoptedProcess(sleeper.pid, start_time(sleeper.pid) + 1).poll() == UNKNOWN_EXIT


def test_a_zombie_has_ended():
    child = subprocess.Popen(["true"])
    deadline_tries = 500
    while start_time(child.pid) is not None and deadline_tries:  # exited, not yet waited for
        deadline_tries -= 1
        subprocess.run(["sleep", "0.01"])
    assert start_time(child.pid) is None
    child.wait()


def test_an_ended_process_is_never_signalled_as_pid_0():
    ended = AdoptedProcess.ended()
    assert ended.pid == 0 and ended.poll() == UNKNOWN_EXIT


def test_a_sandbox_round_trips_through_the_record(tmp_path, sleeper):
    pause = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        sandbox = PodSandbox("default", "web", "podnet-rec.pod-default.web", pause)
        running = Container("app", ["python3", "-m", "http.server"], {"PORT": "80"}, tmp_path / "app.log", "Always",
                            pod_ref="default/web", workdir="/tmp", image="python:3", restarts=3, note="a note", started_at=1700000000.5,
                            log_starts=[0, 120, 250, 400])
        running.process = sleeper
        crashed = Container("side", ["false"], {}, tmp_path / "side.log", "OnFailure", pod_ref="default/web",
                            restarts=1, last_exit=1,
                            finished_at=12325.5, next_start=12345.5, backoff=BackOff(window=20.0, updated=12300.25))
        unpullable = Container("img", [], {}, tmp_path / "img.log", "Always", image="nope:1", pod_ref="default/web",
                               waiting=("ImagePullBackOff", "Back-off pulling image"), backoff_at=99.0)
        sandbox.containers = [running, crashed, unpullable]
        record.write(tmp_path, {"pods": [record.sandbox_record(sandbox, record.ProcessIds())]})
        entry = record.read(tmp_path)["pods"][0]
        adopted = record.adopted_sandbox(entry, pod=None)
        assert (adopted.ref, adopted.netns, adopted.host_network) == ("default/web", sandbox.netns, False)
        assert adopted.pause.pid == pause.pid and adopted.pause.poll() is None
        app, side, img = adopted.containers
        assert (app.name, app.argv, app.env, app.log, app.restart_policy, app.workdir, app.image, app.restarts,
                app.note, app.started_at) == ("app", running.argv, {"PORT": "80"}, tmp_path / "app.log", "Always",
                                              "/tmp", "python:3", 3, "a note", 1700000000.5)
        assert app.process.pid == sleeper.pid and app.running
        assert (app.log_starts, side.log_starts) == ([0, 120, 250, 400], [])  # where each run's log begins
        # a crashed container waiting for its back-off keeps its exit, its restart time and
        # kubelet's back-off entry (the next wait doubles from it, or it resets after 10 minutes)
        assert (side.last_exit, side.next_start, side.restarts, side.running) == (1, 12345.5, 1, False)
        assert (side.finished_at, side.backoff) == (12325.5, BackOff(window=20.0, updated=12300.25))
        assert app.backoff is None
        assert (img.waiting, img.backoff_at, img.process) == (("ImagePullBackOff", "Back-off pulling image"), 99.0, None)
        sleeper.kill()
        sleeper.wait()
        assert not app.running and app.process.returncode == UNKNOWN_EXIT  # reap restarts it per restartPolicy
    finally:
        pause.kill()
        pause.wait()


def test_a_process_that_ended_before_the_record_is_adopted_as_ended(tmp_path):
    child = subprocess.Popen(["true"])
    child.wait()
    sandbox = PodSandbox("default", "web", "ns", child)
    container = Container("app", ["true"], {}, tmp_path / "app.log", "Always", pod_ref="default/web")
    container.process = child
    sandbox.containers = [container]
    entry = json.loads(json.dumps(record.sandbox_record(sandbox, record.ProcessIds())))
    assert entry["pause"] is None and entry["containers"][0]["process"] is None
    adopted = record.adopted_sandbox(entry, pod=None)
    assert adopted.pause.poll() == UNKNOWN_EXIT and adopted.containers[0].process.poll() == UNKNOWN_EXIT


def test_a_missing_record_is_none(tmp_path):
    assert record.read(tmp_path) is None


def test_a_torn_record_is_refused_with_its_file(tmp_path):
    (tmp_path / record.RECORD).write_text('{"version": 1, "pods": [{"namespace": "def')
    with pytest.raises(record.RecordError, match=f"{tmp_path / record.RECORD}: not a whole record"):
        record.read(tmp_path)


def test_a_record_of_another_version_is_refused(tmp_path):
    (tmp_path / record.RECORD).write_text('{"version": 99}')
    with pytest.raises(record.RecordError, match="version 99"):
        record.read(tmp_path)


def test_an_interrupted_write_leaves_the_old_record(tmp_path, monkeypatch):
    record.write(tmp_path, {"pods": []})

    def crash(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(state_module.os, "replace", crash)
    with pytest.raises(OSError):
        record.write(tmp_path, {"pods": [{"namespace": "x"}]})
    assert record.read(tmp_path) == {"version": record.VERSION, "seq": 0, "pods": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == [record.RECORD, record.RECORD_LOG]  # no temporary file left


# -- the supervisor writes the record and a new one adopts from it ---------------------------------

@pytest.fixture
def state(tmp_path):
    state = ClusterState(ClusterLayout("rec"), tmp_path / "rec")
    state.create(CONFIG, [DEPLOYMENT])
    return state


def make(state):
    return Supervisor(ClusterLayout("rec"), state, dataplane_factory=FakeDataPlane, runtime_factory=FakeRuntime)


def served(supervisor):
    """What `get` shows of every object, without kubelet's live overlay."""
    return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in supervisor.objects()}


def test_a_restarted_supervisor_adopts_the_pods_as_they_were(state):
    first = make(state)
    first.start()
    first.change(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": 3}}]}), delete=False)
    first.runtime.pods[sorted(first.runtime.pods)[0]].containers[0].restarts = 2
    first.persist()
    before = served(first)
    events_said = len(first.events.list(0))
    # SIGKILL: nothing more is written; a new supervisor reads what is on disk
    second = make(state)
    adopted = second.adopt(record.read_saved(state.directory))
    assert sorted(adopted) == sorted(first.runtime.pods) == sorted(second.adopted)
    assert ("collect_garbage",) in second.dataplane.calls  # what it had not recorded goes
    assert second.dataplane.calls[0] == ("adopt_network",)
    assert not [c for c in second.dataplane.calls if c[0] in ("build", "attach")]  # nothing made again
    assert not [c for c in second.runtime.calls if c[0] == "start"]  # no pod started again
    assert second.started == first.started and second.attached == first.attached
    after = served(second)
    assert after.keys() == before.keys()
    for key, body in before.items():  # the same names, addresses, uids, resourceVersions, timestamps
        assert after[key]["metadata"] == body["metadata"], key
        if key[0] == "Pod":
            assert after[key]["status"].get("podIP") == body["status"].get("podIP")
    assert [s["restartCount"] for s in after[("Pod",) + tuple(sorted(first.runtime.pods)[0].split("/"))]
            ["status"]["containerStatuses"]][:1] == [2]
    # the same events, and the controllers say nothing new of what they said before
    assert second.events.list(0) == first.events.list(0) and len(first.events.list(0)) == events_said > 0
    assert second.events.version == first.events.version
    # and it goes on as the first would have: an apply changes the cluster
    answer = second.change(json.dumps({"apiVersion": "v1", "kind": "List", "items": [DEPLOYMENT]}), delete=False)
    assert len(answer["stopped"]) == 1


def test_a_supervisor_killed_between_saving_a_delete_and_recording_it_is_adopted(state):
    """The manifests say a pod is gone, the record (written after) still has it and its API
    metadata: the restarted supervisor sees it deleted, knowing only its name, and adopts the rest."""
    first = make(state)
    first.start()
    extra = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "extra", "namespace": "default"},
             "spec": {"containers": [{"name": "c", "image": "pause"}]}}
    first.change(json.dumps({"apiVersion": "v1", "kind": "List", "items": [extra]}), delete=False)
    first.persist()
    state.save_manifests([DEPLOYMENT])  # the delete's save, then SIGKILL before the record
    second = make(state)
    adopted = second.adopt(record.read_saved(state.directory))
    assert "default/extra" not in adopted and adopted
    assert second.cluster.get("Pod", "default", "extra") is None


# -- a command finding no supervisor says what to do -------------------------------------------------

def test_a_command_finding_the_state_but_no_supervisor_says_how_to_restart_it(tmp_path, monkeypatch):
    monkeypatch.setattr(layout_module, "STATE_ROOT", tmp_path)
    layout = ClusterLayout("gone")
    with pytest.raises(NotRunning, match="no running cluster named gone"):
        request(layout, "status")
    layout.state_dir.mkdir()  # the state directory is there, no supervisor answers (SIGKILLed)
    with pytest.raises(NotRunning) as caught:
        request(layout, "status")
    assert str(caught.value) == ("the supervisor of cluster gone is not running (its pods still run): restart it with "
                                 "`sudo podnet up --name gone`, or remove the cluster with `sudo podnet down --name gone`")


def test_the_event_store_round_trips_and_counts_on(tmp_path):
    first = EventStore()
    about = {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u1", "apiVersion": "v1"}
    first.record(about, "Normal", "Started", "Started container c", "kubelet", "node1")
    first.record(about, "Warning", "BackOff", "Back-off restarting failed container c", "kubelet", "node1")
    record.write_events(tmp_path, first.export())
    second = EventStore()
    second.restore(record.read_events(tmp_path))
    assert second.list(0) == first.list(0) and second.version == 2
    # the same event again aggregates with the carried-over one; a new one takes the next version
    again = second.record(about, "Warning", "BackOff", "Back-off restarting failed container c", "kubelet", "node1")
    assert again["count"] == 2 and again["metadata"]["resourceVersion"] == "3"
    assert [e["reason"] for e in second.list(2)] == ["BackOff"]


def test_a_torn_event_file_is_refused_with_its_name(tmp_path):
    assert record.read_events(tmp_path) is None
    (tmp_path / record.EVENTS).write_text('{"version": 3, "ev')
    with pytest.raises(record.RecordError, match="events.json: not a whole record"):
        record.read_events(tmp_path)
