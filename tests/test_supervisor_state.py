"""The supervisor's files (no root): what `podnet up` writes is what the supervisor reads,
every rewrite is atomic, and a failure note is read once."""

from __future__ import annotations

import json

import os
import stat

import pytest
import yaml

from podnet.host.layout import ClusterLayout
from podnet.linux.supervisor import durable
from podnet.linux.supervisor import state as state_module
from podnet.linux.supervisor.durable import Journal, atomic_write
from podnet.linux.supervisor.state import ClusterState

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"containers": [{"name": "c", "image": "pause"}]}}


@pytest.fixture
def state(tmp_path):
    return ClusterState(ClusterLayout("demo"), tmp_path / "run" / "demo")


def test_what_up_writes_the_supervisor_reads(state):
    state.create({"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "demo", "nodes": 2}, [POD])
    assert state.config().name == "demo"
    assert len(state.config().nodes) == 2
    assert state.manifests() == [POD]
    assert stat.S_IMODE(state.directory.stat().st_mode) == 0o711  # nginx's workers traverse it


def test_a_second_up_with_the_same_name_is_refused(state):
    state.create({"name": "demo"}, [])
    with pytest.raises(FileExistsError):
        state.create({"name": "demo"}, [POD])
    assert state.manifests() == []  # the first one's files are untouched


def test_manifests_are_a_kubectl_list(state):
    state.create({"name": "demo"}, [POD])
    document = yaml.safe_load((state.directory / "manifests.yaml").read_text())
    assert {k: document[k] for k in ("apiVersion", "kind", "items")} == {"apiVersion": "v1", "kind": "List", "items": [POD]}
    assert json.loads((state.directory / "manifests.yaml").read_text()) == document  # JSON: YAML written fast


def test_saving_manifests_replaces_them_whole(state):
    state.create({"name": "demo"}, [])
    state.save_manifests([POD, POD])
    assert state.manifests() == [POD, POD]
    assert [p.name for p in state.directory.iterdir() if p.name.endswith(".tmp")] == []


def test_an_interrupted_write_leaves_the_old_file(state, monkeypatch):
    state.create({"name": "demo"}, [POD])

    def crash(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(state_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        state.save_manifests([])
    assert state.manifests() == [POD]
    assert sorted(p.name for p in state.directory.iterdir()) == ["cluster.yaml", "manifests.log", "manifests.yaml"]


def test_atomic_write_goes_through_a_synced_temporary_file(tmp_path, monkeypatch):
    synced, renamed = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(state_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    monkeypatch.setattr(state_module.os, "replace",
                        lambda src, dst: (renamed.append((os.path.basename(src), dst)), real_replace(src, dst)))
    target = tmp_path / "f.yaml"
    atomic_write(target, "a: 1\n")
    assert target.read_text() == "a: 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # the state holds Secrets: root's alone
    assert len(synced) == 2  # the file, then its directory
    [(temporary, destination)] = renamed
    assert temporary.startswith(".f.yaml.") and temporary.endswith(".tmp") and destination == target


def test_ready_and_failure_notes(state):
    state.create({"name": "demo"}, [])
    assert not state.is_ready()
    state.mark_ready(1.5)
    assert state.is_ready()
    assert state.take_failure() is None
    state.record_failure("node1: boom")
    assert (state.directory.parent / ".demo.failed").exists()  # outside: teardown removes the directory
    assert state.take_failure() == "node1: boom"
    assert state.take_failure() is None  # read once
    assert state.log_path == state.directory / "supervisor.log"


def _pod(name: str, image: str = "nginx") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": image}]}}


def test_each_change_is_a_line_of_the_journal_and_read_back_in_apply_order(state, monkeypatch):
    a, b, c = _pod("a"), _pod("b"), _pod("c")
    state.create({"name": "demo"}, [a, b])
    snapshot = (state.directory / "manifests.yaml").stat()
    b2 = _pod("b", "busybox")
    state.save_manifests([a, b2, c], {("Pod", "default", "b"): b2, ("Pod", "default", "c"): c})
    state.save_manifests([b2, c], {("Pod", "default", "a"): None})
    after = (state.directory / "manifests.yaml").stat()
    assert (after.st_ino, after.st_mtime_ns) == (snapshot.st_ino, snapshot.st_mtime_ns)  # only lines appended
    assert len((state.directory / "manifests.log").read_text().splitlines()) == 2
    assert state.manifests() == [b2, c]  # b replaced in its place, c after it, a gone
    # a successor goes on numbering from the last line, and a torn last line is a change never answered
    successor = ClusterState(state.layout, state.directory)
    assert successor.resume_manifests() == [b2, c]
    successor.save_manifests([b2, c, a], {("Pod", "default", "a"): a})
    with open(state.directory / "manifests.log", "a") as log:
        log.write('{"seq": 4, "objects": [[["Pod", "default", "x"]')
    assert ClusterState(state.layout, state.directory).manifests() == [b2, c, a]
    # the next writer cuts the torn line off: its first change is a line of its own, read back
    third = ClusterState(state.layout, state.directory)
    assert third.resume_manifests() == [b2, c, a]
    third.save_manifests([b2, a], {("Pod", "default", "c"): None})
    third.save_manifests([b2, a, c], {("Pod", "default", "c"): c})
    assert ClusterState(state.layout, state.directory).manifests() == [b2, a, c]
    assert [json.loads(line)["seq"] for line in (state.directory / "manifests.log").read_text().splitlines()] == [1, 2, 3, 4, 5]
    # once the log outgrows its snapshot (the files' sizes, as found), the next change writes a
    # new snapshot and empties the log
    monkeypatch.setattr(durable, "COMPACT_AT", 10)
    big = ClusterState(state.layout, state.directory)
    big.resume_manifests()
    big.save_manifests([c], {("Pod", "default", "b"): None, ("Pod", "default", "a"): None})
    assert ClusterState(state.layout, state.directory).manifests() == [c]
    assert (state.directory / "manifests.log").read_text() == ""
    big.save_manifests([c, b], {("Pod", "default", "b"): b})
    assert len((state.directory / "manifests.log").read_text().splitlines()) == 1
    assert json.loads((state.directory / "manifests.yaml").read_text())["items"] == [c]


def test_a_torn_line_before_others_is_refused_with_the_file_named(state):
    state.create({"name": "demo"}, [_pod("a")])
    state.save_manifests([_pod("a"), _pod("b")], {("Pod", "default", "b"): _pod("b")})
    state.save_manifests([_pod("b")], {("Pod", "default", "a"): None})
    log = state.directory / "manifests.log"
    lines = log.read_text().splitlines()
    log.write_text(lines[0][:20] + "\n" + lines[1] + "\n")
    with pytest.raises(durable.RecordError, match=r"manifests.log:1: not a whole line; the applied objects cannot be read"):
        state.manifests()


def test_a_line_that_could_not_be_written_whole_is_cut_off_again(state, monkeypatch):
    a, b = _pod("a"), _pod("b")
    state.create({"name": "demo"}, [a])
    state.resume_manifests()
    state.save_manifests([a, b], {("Pod", "default", "b"): b})
    real_fsync = durable.os.fsync

    def full(fd):
        raise OSError("no space left on device")

    monkeypatch.setattr(durable.os, "fsync", full)
    with pytest.raises(OSError, match="no space"):
        state.save_manifests([b], {("Pod", "default", "a"): None})
    monkeypatch.setattr(durable.os, "fsync", real_fsync)
    state.save_manifests([a, b, _pod("c")], {("Pod", "default", "c"): _pod("c")})
    assert ClusterState(state.layout, state.directory).manifests() == [a, b, _pod("c")]  # the failed change was never answered
    assert [json.loads(line)["seq"] for line in (state.directory / "manifests.log").read_text().splitlines()] == [1, 2]


def test_the_journal_and_its_snapshot_are_roots_alone(tmp_path):
    """Applied Secrets and containers' environments resolved from them are in the records: no
    other user may read them (the state directory can be traversed, its file names are known)."""
    journal = Journal(tmp_path, "snap.json", "snap.log")
    journal.append({"secret": "hunter2"})
    journal.close()
    assert stat.S_IMODE((tmp_path / "snap.log").stat().st_mode) == 0o600
    journal.snapshot({"secret": "hunter2"})
    journal.close()
    assert {stat.S_IMODE((tmp_path / name).stat().st_mode) for name in ("snap.json", "snap.log")} == {0o600}
