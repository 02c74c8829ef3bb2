"""The supervisor's files (no root): what `podnet up` writes is what the supervisor reads,
every rewrite is atomic, and a failure note is read once."""

from __future__ import annotations

import json

import os
import stat

import pytest
import yaml

from podnet.host.layout import ClusterLayout
from podnet.linux.supervisor import state as state_module
from podnet.linux.supervisor.state import ClusterState, atomic_write

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
    assert document == {"apiVersion": "v1", "kind": "List", "items": [POD]}
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
    assert sorted(p.name for p in state.directory.iterdir()) == ["cluster.yaml", "manifests.yaml"]


def test_atomic_write_goes_through_a_synced_temporary_file(tmp_path, monkeypatch):
    synced, renamed = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(state_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    monkeypatch.setattr(state_module.os, "replace",
                        lambda src, dst: (renamed.append((os.path.basename(src), dst)), real_replace(src, dst)))
    target = tmp_path / "f.yaml"
    atomic_write(target, "a: 1\n")
    assert target.read_text() == "a: 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
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
