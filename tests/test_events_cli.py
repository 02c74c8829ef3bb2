"""`podnet get events [-w]`, Events in `describe` and AGE columns, on events as the supervisor
serves them (the control socket replaced by the store itself: no root)."""

from __future__ import annotations

import json
import time

import pytest

from podnet.cli import describe as describe_cli
from podnet.cli import events as events_cli
from podnet.cli.load import NoCluster
from podnet.cli.main import main
from podnet.host import layout as layout_module
from podnet.linux.supervisor.events import EventStore
from podnet.output import age
from tests.conftest import admitted_during, cluster_of

POD = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec: {containers: [{name: c, image: nginx}]}
"""


@pytest.fixture
def store(monkeypatch):
    store = EventStore()
    now = time.time()
    monkeypatch.setattr(age, "clock", lambda: now)  # ages in whole seconds, whenever the test reads them
    store.clock = lambda: now - 30
    store.record({"kind": "Pod", "namespace": "default", "name": "web"}, "Normal", "Scheduled",
                 "Successfully assigned default/web to node1", "default-scheduler")
    store.clock = lambda: now - 20
    for _ in range(3):
        store.record({"kind": "Pod", "namespace": "default", "name": "web", "fieldPath": "spec.containers{c}"},
                     "Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503", "kubelet")
    store.record({"kind": "Pod", "namespace": "kube-system", "name": "coredns-0"}, "Normal", "Started",
                 "Started container coredns", "kubelet")
    monkeypatch.setattr(events_cli, "running_events", lambda name, since=0, wait=0.0: (store.list(since), store.version))
    monkeypatch.setattr(describe_cli, "running_events", lambda name, since=0, wait=0.0: (store.list(since), store.version))
    return store


def test_get_events_has_kubectls_columns_and_namespaces(store, capsys):
    assert main(["get", "events"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert lines[1].split()[:4] == ["30s", "Normal", "Scheduled", "pod/web"]
    assert lines[2].split()[:4] == ["20s", "Warning", "Unhealthy", "pod/web"]
    assert lines[2].endswith("Readiness probe failed: HTTP probe failed with statuscode: 503")
    assert len(lines) == 3  # kube-system's only with -A
    assert main(["get", "ev", "-A", "--field-selector", "involvedObject.name=coredns-0"]) == 0
    [header, row] = capsys.readouterr().out.splitlines()
    assert header.startswith("NAMESPACE") and row.split()[:5] == ["kube-system", "20s", "Normal", "Started", "pod/coredns-0"]


def test_get_events_as_json_is_a_list_of_core_v1_events(store, capsys):
    assert main(["get", "events", "-o", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [(e["kind"], e["reason"], e["count"]) for e in listing["items"]] == [("Event", "Scheduled", 1),
                                                                              ("Event", "Unhealthy", 3)]
    assert listing["items"][1]["involvedObject"]["fieldPath"] == "spec.containers{c}"


def test_an_unknown_field_selector_is_one_clear_error(store, capsys):
    assert main(["get", "events", "--field-selector", "spec.x=1"]) != 0
    assert 'field label "spec.x" not supported for events' in capsys.readouterr().err


def test_get_events_w_streams_what_comes_after_the_list(store, capsys, monkeypatch):
    """After the table, each reading is a long poll (`wait`) from the version last seen: the
    supervisor answers it with the event that came meanwhile; Ctrl-C ends it with 0."""
    polls = []

    def long_poll(name, since=0, wait=0.0):
        polls.append((since, wait))
        if len(polls) == 2:
            store.record({"kind": "Pod", "namespace": "default", "name": "web"}, "Normal", "Killing",
                         "Stopping container c", "kubelet")
        elif len(polls) > 2:
            raise KeyboardInterrupt
        return store.list(since), store.version

    monkeypatch.setattr(events_cli, "running_events", long_poll)
    assert main(["get", "events", "-w", "--name", "w"]) == 0  # --name: other clusters may run on this host
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[3].split()[1:4] == ["Normal", "Killing", "pod/web"]
    assert polls[0] == (0, 0.0) and polls[1] == (store.version - 1, events_cli.WATCH_WAIT)


def test_get_events_w_waits_out_a_supervisor_restart_and_ends_at_down(store, capsys, monkeypatch, tmp_path):
    """No supervisor answering while the cluster's state directory is there: asked again (from
    the version held); the directory gone (down): exit 0."""
    monkeypatch.setattr(layout_module, "STATE_ROOT", tmp_path)
    (tmp_path / "soak").mkdir()
    polls = []

    def long_poll(name, since=0, wait=0.0):
        polls.append((name, since))
        if len(polls) in (2, 3):  # the supervisor restarting
            raise NoCluster("the supervisor of cluster soak is not running")
        if len(polls) == 4:
            store.record({"kind": "Pod", "namespace": "default", "name": "web"}, "Normal", "Killing",
                         "Stopping container c", "kubelet")
        if len(polls) == 5:
            (tmp_path / "soak").rmdir()  # down
            raise NoCluster("no running cluster named soak")
        return store.list(since), store.version

    monkeypatch.setattr(events_cli, "running_events", long_poll)
    monkeypatch.setattr(events_cli.watching, "RETRY", 0.0)
    assert main(["get", "events", "-w", "--name", "soak"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split()[1:4] == ["Normal", "Killing", "pod/web"]
    assert [name for name, _ in polls] == ["soak"] * 5
    assert polls[1][1] == polls[2][1] == polls[3][1] == store.version - 1  # on from the version it held


def test_describe_ends_with_the_objects_events(store, capsys, monkeypatch):
    monkeypatch.setattr(describe_cli, "cluster_from_args", lambda files, config, name: cluster_of(POD))
    assert main(["describe", "pod", "web"]) == 0
    out = capsys.readouterr().out.splitlines()
    at = out.index("Events:")
    assert out[at + 1].split() == ["Type", "Reason", "Age", "From", "Message"]
    assert out[at + 3].split()[:3] == ["Normal", "Scheduled", "30s"]
    assert "Warning  Unhealthy  20s (x3 over 20s)  kubelet" in out[at + 4]
    assert len(out) == at + 5  # coredns-0's are not web's


def test_offline_objects_are_admitted_by_the_command(tmp_path, capsys):
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(POD)
    started = time.time()
    assert main(["get", "pods", "-f", str(manifest)]) == 0
    took = time.time() - started
    [_, row] = capsys.readouterr().out.splitlines()
    age = row.split()[-1]
    assert admitted_during(age, took)  # admitted at the command's start
    assert main(["get", "pod", "web", "-o", "json", "-f", str(manifest)]) == 0
    body = json.loads(capsys.readouterr().out)
    created = body["metadata"]["creationTimestamp"]
    conditions = body["status"]["conditions"]
    assert len({c["type"] for c in conditions}) == len(conditions)
    assert {c["lastTransitionTime"] for c in conditions} == {created}
    assert main(["describe", "pod", "web", "-f", str(manifest)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("Events:  <none>")
    assert main(["get", "events", "-f", str(manifest)]) == 0
    assert "events happen on a running cluster" in capsys.readouterr().err


@pytest.mark.parametrize("seconds, shown", [(-5, "<invalid>"), (0, "0s"), (119, "119s"), (125, "2m5s"), (600, "10m"),
                                            (3 * 3600 + 60, "3h1m"), (30 * 3600, "30h"), (50 * 3600, "2d2h"),
                                            (400 * 86400, "400d"), (3 * 365 * 86400, "3y")])
def test_ages_read_as_kubectls(seconds, shown):
    assert age.human_duration(seconds) == shown
    assert age.since("2026-12-05T18:00:00Z", age.parse("2026-12-05T18:00:00Z") + seconds) == shown
    assert age.since(None) == "<unknown>"
