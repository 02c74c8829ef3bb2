"""What a write costs the supervisor is what it changed (no root): the shortcuts it takes
against what the long way says, on a random run of writes.

- what a change touched (ClusterChange) against a comparison of the two clusters' objects;
- the pods to start and stop (reconcile.RunningPods, kept from cluster to cluster) against
  reconcile.pod_actions on the whole cluster;
- the API fields (ApiMeta.observe told what changed) against an ApiMeta looking at everything;
- the record: the API fields' journal (apimeta.json + apimeta.log) read back as they are held,
  running.json as the supervisor would write it now (written only when the counted records
  changed), the manifests' JSON (each input's text kept) as the inputs are;
- the NetworkPolicy tables: a write nothing of NetworkPolicy reads loads nothing, and the
  tables are those of the cluster.
"""

from __future__ import annotations

import gc
import json
import random

import pytest

from podnet.controlplane import cluster as cluster_module
from podnet.controlplane.cluster import ClusterChange
from podnet.controlplane.clusterindex import index_of
from podnet.host.layout import ClusterLayout
from podnet.linux import collector, counted
from podnet.linux.counted import CountedDict
from podnet.linux.netpol import NodePolicy
from podnet.linux.runtime import Container, PodSandbox
from podnet.linux.supervisor import durable, record, reconcile
from podnet.linux.supervisor.apimeta import ApiMeta
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.state import ClusterState, documents_text
from podnet.linux.supervisor.status import live_digest
from podnet.policy import render
from podnet.proxy.loader import RecordingRunner
from tests.supervisor_fakes import FakeDataPlane, FakeRuntime
from tests.test_incremental import BASE, CONFIG_MAP, assert_same, deployment, pod, policy

CONFIG = {"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "wr", "nodes": 2}


def config_map(name: str, value: str) -> dict:
    return {**CONFIG_MAP, "metadata": {"name": name, "namespace": "default"}, "data": {"v": value}}


def random_write(rng: random.Random) -> tuple[list[dict], bool]:
    """(objects, delete): the writes users make most, and some that compute in full."""
    choice = rng.randrange(7)
    if choice == 0:
        return [config_map(f"cm-{rng.randrange(4)}", str(rng.randrange(100)))], False
    if choice == 1:
        return [config_map(f"cm-{rng.randrange(4)}", "x")], True
    if choice == 2:  # a workload's own labels: the incremental path
        return [{**deployment("web", 3), "metadata": {"name": "web", "namespace": "default",
                                                       "labels": {"round": str(rng.randrange(100))}}}], False
    if choice == 3:  # a scale: a full computation, pods started or stopped
        return [deployment("web", rng.randrange(1, 5))], False
    if choice == 4:  # a bare pod's labels: a relabel, or a full computation when a Service selects them
        return [pod("a", {"role": rng.choice(["a", "b"]), "tier": rng.choice(["back", "front"])})], False
    if choice == 5:
        return [policy(f"p-{rng.randrange(3)}", {"role": rng.choice(["a", "b"])}, peers={"role": "a"})], False
    return [pod(f"extra-{rng.randrange(3)}", {"role": "x"})], rng.random() < 0.5


def kubelet_event(rng: random.Random, supervisor: Supervisor) -> None:
    """What happens to a running pod between writes, no write needed: a container restarts (as
    reap records it), or a probe's verdict comes in (as the prober reports it)."""
    ref = rng.choice(sorted(supervisor.runtime.pods))
    sandbox = supervisor.runtime.pods[ref]
    container = rng.choice(sandbox.containers)
    if rng.random() < 0.5:
        with supervisor.lock:
            container.restarts += 1
            container.last_exit = rng.choice([0, 1, 137])
    else:
        supervisor._probe_changed(ref, container.name, ready=rng.random() < 0.5, started=True)


@pytest.fixture
def supervisor(tmp_path):
    state = ClusterState(ClusterLayout("wr"), tmp_path / "wr")
    state.create(CONFIG, BASE)
    nft = RecordingRunner()
    supervisor = Supervisor(ClusterLayout("wr"), state, dataplane_factory=FakeDataPlane, runtime_factory=FakeRuntime)
    supervisor.meta = ApiMeta(clock=lambda: 1_700_000_000.0)
    supervisor.start()
    supervisor.policies = {node: NodePolicy(node, None, run=nft) for node in ("node1", "node2")}
    supervisor._sync_policies()
    supervisor.nft = nft
    yield supervisor
    supervisor.stop()


def exported(meta: ApiMeta) -> dict:
    saved = meta.export()
    return {**saved, "objects": sorted(saved["objects"]), "conditions": sorted(saved["conditions"])}


def replayed(directory) -> ApiMeta:
    """The API fields as a restarted supervisor reads them back."""
    meta, saved = ApiMeta(), record.read_meta(directory)
    meta.restore(saved["state"]["apimeta"])
    for change in saved["changes"]:
        if change.get("apimeta"):
            meta.apply(change["apimeta"])
    return meta


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_run_of_writes_takes_the_short_ways_to_what_the_long_ways_say(supervisor, seed, monkeypatch):
    monkeypatch.setattr(durable, "COMPACT_AT", 20_000)  # a few new snapshots on the way
    rng = random.Random(seed)
    shadow = ApiMeta(clock=lambda: 1_700_000_000.0)  # told nothing of what changed
    shadow.observe(supervisor.cluster)
    kinds_written, carried = set(), []
    update = cluster_module.updated
    monkeypatch.setattr(cluster_module, "updated", lambda *args: carried.append(1) or update(*args))
    for _ in range(40):
        if rng.random() < 0.5:
            kubelet_event(rng, supervisor)
        bodies, delete = random_write(rng)
        before, loads = supervisor.cluster, len(supervisor.nft.calls)
        try:
            supervisor.change(documents_text(bodies), delete=delete)
        except Exception as exc:  # a delete of what is not there is answered, not raised
            pytest.fail(f"{bodies} (delete={delete}): {exc}")
        after = supervisor.cluster
        kinds_written |= {b["kind"] for b in bodies}
        # what changed, found by identity, is what differs
        change = ClusterChange.between(before, after)
        assert {k for k, _ in change.changed} == {k for k, o in after.objects.items() if before.objects.get(k) is not o}
        assert set(change.gone) == set(before.objects) - set(after.objects)
        # the pods to start and stop
        kept = supervisor.running_pods.actions(after, supervisor.started)
        assert kept == reconcile.pod_actions(after, supervisor.started)
        assert not kept.stop  # and the change did what they said
        assert not kept.start or not supervisor.policy_errors
        # the API fields
        shadow.observe(after)
        assert supervisor.wait_for_terminations(60)  # a pod scaled away stops in its own thread
        if supervisor.state_changed.is_set():  # as the loop does: the terminated pods go
            supervisor.state_changed.clear()
            supervisor.recompute()
            shadow.observe(supervisor.cluster)
        # every short way gave what computing the cluster again gives
        assert_same(supervisor.cluster, supervisor._compute(supervisor.inputs, supervisor.cluster))
        assert supervisor.cluster._index == index_of(supervisor.cluster.objects)  # carried, or made anew
        supervisor.persist()
        held = exported(supervisor.meta)
        assert exported(replayed(supervisor.state.directory)) == held
        assert {**exported(shadow), "podStarted": None} == {**held, "podStarted": None}  # (pod starts: the runtime's)
        # the record and the manifests on disk
        written, recorded = record.read(supervisor.state.directory), json.loads(json.dumps(supervisor.record()))
        assert {k: v for k, v in written.items() if k not in ("version", "seq")} == recorded
        running = {p.ref: p.body for p in supervisor.cluster.of_kind("Pod") if p.ref in supervisor.runtime.pods}
        assert recorded["bodies"] == json.loads(json.dumps([running[ref] for ref in sorted(running)]))
        assert supervisor.state.manifests() == json.loads(json.dumps(supervisor.inputs))
        # NetworkPolicy: loaded only when something it reads changed; the tables are the cluster's
        if before is not after and not change.touches(("Namespace", "Node", "Pod", "NetworkPolicy")):
            assert len(supervisor.nft.calls) == loads
        for node, table in supervisor.policies.items():
            assert table.loaded == render(supervisor.cluster, node)
            assert supervisor.policy_synced[node] == supervisor.generation
    assert {"ConfigMap", "Deployment", "Pod", "NetworkPolicy"} <= kinds_written
    assert carried  # most writes took the index of the cluster before, updated


@pytest.mark.parametrize("seed", [1, 2])
def test_the_api_fields_note_kubelets_word_on_the_pods_it_changed(supervisor, seed):
    rng = random.Random(seed)
    for _ in range(30):
        kubelet_event(rng, supervisor)
        if rng.random() < 0.3:
            supervisor.change(documents_text([deployment("web", rng.randrange(1, 5))]), delete=False)
            assert supervisor.wait_for_terminations(60)
        if supervisor.state_changed.is_set():
            supervisor.state_changed.clear()
            supervisor.recompute()
        supervisor.changes(supervisor.meta.version)  # what the API server asks after each write
        for ref, sandbox in supervisor.runtime.pods.items():
            noted = supervisor.meta._records[("Pod", *ref.split("/", 1))].live
            assert noted == live_digest(sandbox, supervisor.container_state.get(ref) or {}), ref


def test_a_write_logs_a_line_of_what_it_changed_and_leaves_the_snapshots_alone(supervisor):
    directory = supervisor.state.directory
    supervisor.persist()
    running = (directory / record.RECORD).stat()
    lines = len((directory / record.META_LOG).read_text().splitlines())
    supervisor.change(documents_text([config_map("settings", "1")]), delete=False)
    after = (directory / record.RECORD).stat()
    assert (after.st_ino, after.st_mtime_ns) == (running.st_ino, running.st_mtime_ns)
    logged = [json.loads(line) for line in (directory / record.META_LOG).read_text().splitlines()]
    assert len(logged) == lines + 1
    assert [o[:3] for o in logged[-1]["apimeta"]["objects"]] == [["ConfigMap", "default", "settings"]]
    assert logged[-1]["generation"] == supervisor.generation
    assert (directory / record.RECORD_LOG).read_text() == ""
    # a container's restart is a change of the pods' record: a line of running.log, that pod's
    ref, sandbox = next(iter(supervisor.runtime.pods.items()))
    sandbox.containers[0].restarts += 1
    supervisor.persist()
    [line] = [json.loads(line) for line in (directory / record.RECORD_LOG).read_text().splitlines()]
    assert list(line["pods"]) == [ref] and line["pods"][ref]["containers"][0]["restarts"] == 1
    assert (directory / record.RECORD).stat().st_ino == running.st_ino
    assert record.read(directory)["pods"] == json.loads(json.dumps(supervisor.record()["pods"]))


def test_a_restarted_supervisor_reads_the_fields_from_the_snapshot_and_the_log(supervisor, tmp_path):
    for i in range(5):
        supervisor.change(documents_text([config_map(f"cm-{i}", str(i))]), delete=False)
    supervisor.change(documents_text([config_map("cm-0", "")]), delete=True)
    supervisor.persist()
    served = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o["metadata"]
              for o in supervisor.objects()}
    second = Supervisor(ClusterLayout("wr"), supervisor.state, dataplane_factory=FakeDataPlane,
                        runtime_factory=FakeRuntime)
    second.adopt(record.read_saved(supervisor.state.directory))
    again = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o["metadata"] for o in second.objects()}
    assert again == served  # uids, resourceVersions, generations, creationTimestamps
    assert second.generation > supervisor.generation
    second.stop()


def meta_files(directory, snapshot: dict, lines: list[str]) -> None:
    (directory / record.META).write_text(json.dumps({"version": record.VERSION, **snapshot}))
    (directory / record.META_LOG).write_text("".join(lines))


def test_the_log_line_a_crash_cut_short_is_left_out_and_one_in_the_middle_is_refused(tmp_path):
    snapshot = {"seq": 1, "state": {"generation": 3}}
    meta_files(tmp_path, snapshot, ['{"seq": 2, "generation": 4}\n', '{"seq": 3, "gener'])
    saved = record.read_meta(tmp_path)
    assert [c["generation"] for c in saved["changes"]] == [4] and saved["seq"] == 2
    meta_files(tmp_path, snapshot, ['{"seq": 2, "gener\n', '{"seq": 3, "generation": 5}\n'])
    with pytest.raises(record.RecordError, match=r"apimeta.log:1: not a whole line"):
        record.read_meta(tmp_path)


def test_a_crash_between_a_snapshot_and_emptying_the_log_replays_nothing_twice(tmp_path):
    journal = durable.Journal(tmp_path, record.META, record.META_LOG)
    journal.snapshot({"generation": 1})
    journal.append({"generation": 2})
    journal.append({"generation": 3})
    old_log = (tmp_path / record.META_LOG).read_text()
    journal.snapshot({"generation": 3})  # holds both lines' changes
    (tmp_path / record.META_LOG).write_text(old_log)  # as if the crash came before the log was emptied
    journal.append({"generation": 4})
    saved = record.read_meta(tmp_path)
    assert saved["state"]["generation"] == 3
    assert [c["generation"] for c in saved["changes"]] == [4]


def test_a_journal_that_outgrew_its_snapshot_is_due_for_a_new_one(tmp_path, monkeypatch):
    monkeypatch.setattr(durable, "COMPACT_AT", 100)
    journal = durable.Journal(tmp_path, record.META, record.META_LOG)
    journal.snapshot({"generation": 0, "padding": "x" * 150})
    while not journal.due:
        journal.append({"generation": 1})
    assert (tmp_path / record.META_LOG).stat().st_size > 150
    journal.snapshot({"generation": 1})
    assert not journal.due and (tmp_path / record.META_LOG).read_text() == ""


# -- counted changes ---------------------------------------------------------------------------------


def test_the_records_count_their_changes_but_not_what_the_record_does_not_hold(tmp_path):
    changes, other = counted.ChangedRefs(), counted.ChangedRefs()
    container = Container("c", ["true"], {}, tmp_path / "c.log", "Always", pod_ref="default/web")
    sandbox = PodSandbox("default", "web", "ns", None, containers=[container])
    changes.take()
    before = counted.count
    container.restarts = 1
    assert counted.count != before
    assert changes.take() == {"default/web"}  # a container's change is its pod's
    before = counted.count
    sandbox.found = (1, 2)  # where its pause process was last found: not recorded
    sandbox.pod = None
    assert counted.count == before and changes.take() == set()
    sandbox.terminating = True
    assert counted.count != before
    assert changes.take() == {"default/web"} and changes.take() == set()  # taken once
    pods = CountedDict()
    for change, ref in ((lambda: pods.__setitem__("a", 1), "a"), (lambda: pods.update(b=2), "b"),
                        (lambda: pods.pop("a"), "a"), (lambda: pods.setdefault("c", 3), "c"),
                        (lambda: pods.__delitem__("b"), "b"), (pods.popitem, "c"),
                        (lambda: pods.__setitem__("d", 4), "d"), (pods.clear, "d")):
        before = counted.count
        change()
        assert counted.count != before
        assert changes.take() == {ref}
    # each consumer is told every change, whatever the others took
    assert other.take() == {"default/web", "a", "b", "c", "d"}
    refs = other._refs
    del other  # a consumer gone is told nothing more
    gc.collect()
    assert all(held is not refs for held in counted._consumers)


# -- the garbage collector --------------------------------------------------------------------------


def test_the_collector_freezes_every_round_and_collects_in_full_only_when_quiet(monkeypatch):
    calls = []
    monkeypatch.setattr(collector.gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(collector.gc, "unfreeze", lambda: calls.append("unfreeze"))
    monkeypatch.setattr(collector.gc, "collect", lambda: calls.append("collect"))
    now = [1000.0]
    gc_policy = collector.Collector(clock=lambda: now[0])
    gc_policy.round(1)
    assert calls == ["freeze"]
    now[0] += collector.FULL_COLLECTION_EVERY  # due, but the cluster changed just now
    gc_policy.round(2)
    assert calls == ["freeze", "freeze"]
    now[0] += collector.QUIET_FOR / 2
    gc_policy.round(2)
    assert "collect" not in calls
    now[0] += collector.QUIET_FOR
    gc_policy.round(2)  # quiet long enough: the full collection, then frozen again
    assert calls[-3:] == ["unfreeze", "collect", "freeze"]
    calls.clear()
    now[0] += collector.QUIET_FOR
    gc_policy.round(2)
    assert calls == ["freeze"]  # and not again before FULL_COLLECTION_EVERY
    calls.clear()
    for generation in range(3, 3 + int(collector.COLLECTION_AT_LEAST_EVERY // 100)):  # never quiet
        now[0] += 100
        gc_policy.round(generation)
    assert calls.count("collect") == 1  # busy all along: at least once in COLLECTION_AT_LEAST_EVERY


def test_a_scale_down_and_the_end_of_its_terminations_compute_nothing_in_full(supervisor, monkeypatch):
    computed = []
    full = reconcile.desired_cluster
    monkeypatch.setattr(reconcile, "desired_cluster", lambda *args, **kwargs: computed.append(1) or full(*args, **kwargs))
    for sandbox in supervisor.runtime.pods.values():  # they stop when told, not at once
        for container in sandbox.containers:
            container.process.holds_on = True
    answer = supervisor.change(documents_text([deployment("web", 1)]), delete=False)
    assert len(answer["stopped"]) == 2 and computed == []
    terminating = [supervisor.cluster.get("Pod", *ref.split("/")) for ref in answer["stopped"]]
    assert all(pod.metadata.get("deletionTimestamp") for pod in terminating)  # still there, marked
    for ref in answer["stopped"]:
        for container in supervisor.runtime.pods[ref].containers:
            container.process.exit(0)
    assert supervisor.wait_for_terminations(60)
    assert supervisor.state_changed.is_set()
    supervisor.state_changed.clear()
    supervisor.recompute()
    assert computed == []
    assert all(supervisor.cluster.get("Pod", *ref.split("/")) is None for ref in answer["stopped"])
    web = supervisor.cluster.get("Deployment", "default", "web")
    assert web.status["replicas"] == 1
    assert_same(supervisor.cluster, full(supervisor.inputs, supervisor.config, supervisor._live_readiness,
                                         supervisor.cluster))
    # a pod deleted by name is replaced under another name, then renamed: computed in full
    [pod] = [p for p in supervisor.cluster.of_kind("Pod") if p.name.startswith("web-")]
    supervisor.delete_pods([pod.ref], grace_period=0)
    supervisor.state_changed.clear()
    supervisor.recompute()
    assert computed


def test_scales_while_pods_still_terminate_give_what_full_computations_give(supervisor, monkeypatch):
    computed = []
    full = reconcile.desired_cluster
    monkeypatch.setattr(reconcile, "desired_cluster", lambda *args, **kwargs: computed.append(1) or full(*args, **kwargs))

    def hold_on() -> None:  # every process stops only when the test says
        for sandbox in supervisor.runtime.pods.values():
            for container in sandbox.containers:
                container.process.holds_on = True

    hold_on()
    for replicas in (2, 4, 1, 3, 5, 2):
        supervisor.change(documents_text([deployment("web", replicas)]), delete=False)
        hold_on()
        assert supervisor.terminating  # some still terminate
        assert_same(supervisor.cluster, full(reconcile.with_terminating(supervisor.inputs, supervisor.terminating.values()),
                                             supervisor.config, supervisor._live_readiness, supervisor.cluster))
    assert computed == []  # none of the scales computed the cluster in full
    for ref in list(supervisor.terminating):
        for container in supervisor.runtime.pods[ref].containers:
            container.process.exit(0)
    assert supervisor.wait_for_terminations(60)
    supervisor.state_changed.clear()
    supervisor.recompute()
    assert not supervisor.terminating
    assert_same(supervisor.cluster, full(supervisor.inputs, supervisor.config, supervisor._live_readiness,
                                         supervisor.cluster))
    assert supervisor.cluster.get("Deployment", "default", "web").status["replicas"] == 2


def test_a_record_write_that_fails_is_made_again_by_the_next(supervisor, monkeypatch):
    supervisor.persist()
    ref, sandbox = next(iter(supervisor.runtime.pods.items()))
    with supervisor.lock:
        sandbox.containers[0].restarts += 1
    append = supervisor.pods_journal.append

    def full(change):
        raise OSError("no space left on device")

    monkeypatch.setattr(supervisor.pods_journal, "append", full)
    with pytest.raises(OSError):
        supervisor.persist()
    monkeypatch.setattr(supervisor.pods_journal, "append", append)
    supervisor.persist()  # nothing else changed meanwhile: the failed change is written now
    written = record.read(supervisor.state.directory)
    assert {k: v for k, v in written.items() if k not in ("version", "seq")} == json.loads(json.dumps(supervisor.record()))
    assert next(p for p in written["pods"] if f"{p['namespace']}/{p['name']}" == ref)["containers"][0]["restarts"] == 1


def test_the_pods_changed_for_the_api_fields_are_let_go_when_nobody_asks(supervisor):
    """Without an API server asking (`changes`), the refs noted for it would pile up with every
    pod name ever changed: past a bound they go, and the next look is at every pod."""
    for i in range(2 * len(supervisor.runtime.pods) + 1001):
        counted.note(f"gone/pod-{i}")
    supervisor.persist()
    assert supervisor._live_changes.pending() == 0 and supervisor._live_everything
    ref, sandbox = next(iter(supervisor.runtime.pods.items()))
    supervisor.meta._records[("Pod", *ref.split("/", 1))].live = None  # as if never noted
    supervisor.changes(supervisor.meta.version)
    assert supervisor.meta._records[("Pod", *ref.split("/", 1))].live == \
        live_digest(sandbox, supervisor.container_state.get(ref) or {})
    assert not supervisor._live_everything
