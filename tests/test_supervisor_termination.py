"""Pod termination on the supervisor (linux/supervisor/termination.py), on the fake data plane
and runtime: a pod that goes away is Terminating first — its endpoint published terminating,
its processes asked to stop — and only then detached and gone; apply returns meanwhile."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from podnet.api.objects import KubeObject
from podnet.cli import running as running_cli
from podnet.errors import UsageError
from podnet.host.layout import ClusterLayout
from podnet.linux.supervisor import termination
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.loop import step
from podnet.linux.supervisor.server import handle
from podnet.linux.supervisor.state import ClusterState, documents_text
from podnet.output.columns import pod_row
from podnet.output.describe import describe_pod
from podnet.semantics.services import ServiceTable
from podnet.controlplane.snapshot import cluster_from_objects
from tests.supervisor_fakes import DEPLOYMENT, FakeDataPlane, FakeRuntime

CONFIG = {"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "sup", "nodes": 2}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
DEADLINE = 30  # seconds: a generous bound on waits, never an assertion


def scaled(replicas):
    template = DEPLOYMENT["spec"]["template"]
    return {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": replicas,
                                   "template": {**template, "spec": dict(template["spec"])}}}


@pytest.fixture
def supervisor(tmp_path):
    state = ClusterState(ClusterLayout("sup"), tmp_path / "sup")
    state.create(CONFIG, [scaled(3), SERVICE])
    supervisor = Supervisor(ClusterLayout("sup"), state, dataplane_factory=FakeDataPlane, runtime_factory=FakeRuntime)
    supervisor.start()
    yield supervisor
    supervisor.stop()


def apply(supervisor, *bodies, delete=False, grace_period=None):
    return supervisor.change(documents_text(list(bodies)), delete=delete, grace_period=grace_period)


def web_pods(supervisor):
    return {p.ref: p for p in supervisor.cluster.of_kind("Pod", "default")}


def endpoint_conditions(supervisor):
    table = ServiceTable(supervisor.cluster)
    service = supervisor.cluster.get("Service", "default", "web")
    return {b.pod: (b.ready, b.serving, b.terminating) for b in table.backends(service, service.spec["ports"][0])}


def hold_on(supervisor, ref=None):
    """The pod's processes (every web pod's) do not exit at SIGTERM (a server with --delay-shutdown)."""
    for each in [ref] if ref else web_pods(supervisor):
        for container in supervisor.runtime.pods[each].containers:
            container.process.holds_on = True


def test_scaling_down_makes_the_pod_terminating_before_it_is_stopped_and_gone(supervisor):
    before = set(web_pods(supervisor))
    hold_on(supervisor)
    reply = apply(supervisor, scaled(2), SERVICE)
    [leaving] = reply["stopped"]
    assert leaving in before and reply["started"] == []
    # apply returned; the pod is still there, Terminating, its processes asked to stop
    pod = web_pods(supervisor)[leaving]
    assert pod.metadata["deletionGracePeriodSeconds"] == termination.DEFAULT_GRACE
    assert pod_row(pod, False)[2] == "Terminating"
    assert leaving in supervisor.runtime.pods and supervisor.runtime.pods[leaving].terminating
    assert ("detach", leaving) not in supervisor.dataplane.calls
    conditions = endpoint_conditions(supervisor)
    assert conditions[leaving] == (False, True, True)
    assert all(c == (True, True, False) for ref, c in conditions.items() if ref != leaving)
    assert supervisor.cluster.get("ReplicaSet", "default", pod.metadata["ownerReferences"][0]["name"]).status["replicas"] == 2
    # the process exits (its delay is over): kubelet's side ends, the pod is detached, then gone
    for container in supervisor.runtime.pods[leaving].containers:
        container.process.exit(0)
    assert supervisor.wait_for_terminations(DEADLINE)
    assert ("detach", leaving) in supervisor.dataplane.calls and leaving not in supervisor.runtime.pods
    step(supervisor)
    assert set(web_pods(supervisor)) == before - {leaving}


def test_every_container_gets_sigterm_and_one_that_holds_on_is_killed_when_the_grace_period_ends(supervisor):
    ref = sorted(web_pods(supervisor))[-1]
    hold_on(supervisor, ref)
    processes = [c.process for c in supervisor.runtime.pods[ref].containers]
    apply(supervisor, scaled(3), delete=True, grace_period=1)
    assert supervisor.wait_for_terminations(DEADLINE)
    assert [p.signals for p in processes] == [["TERM", "KILL"]]


def test_a_process_that_exits_at_sigterm_ends_the_termination_without_waiting_for_the_grace_period(supervisor):
    ref = sorted(web_pods(supervisor))[-1]
    processes = [c.process for c in supervisor.runtime.pods[ref].containers]
    apply(supervisor, scaled(3), delete=True, grace_period=3600)  # an hour: the wait below would give up first
    assert supervisor.wait_for_terminations(DEADLINE)
    assert [p.signals for p in processes] == [["TERM"]]


def test_a_delete_grace_period_overrides_the_pods_own(supervisor):
    hold_on(supervisor)
    apply(supervisor, DEPLOYMENT, delete=True, grace_period=7)
    assert {p.metadata["deletionGracePeriodSeconds"] for p in web_pods(supervisor).values()} == {7}
    stamp = next(iter(web_pods(supervisor).values())).metadata["deletionTimestamp"]
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert moment > datetime.now(timezone.utc)  # the time it will be gone at the latest


def test_force_deletion_with_grace_period_zero_stops_at_once(supervisor):
    refs = set(web_pods(supervisor))
    apply(supervisor, DEPLOYMENT, delete=True, grace_period=0)
    assert not (refs & set(supervisor.runtime.pods)) and not supervisor.terminating
    assert not any(p.metadata.get("deletionTimestamp") for p in web_pods(supervisor).values())
    assert [c for c in supervisor.runtime.calls if c[0] == "terminate"] == []


def test_pods_replacing_terminating_ones_start_with_the_addresses_the_cluster_gives_them(supervisor):
    hold_on(supervisor)
    old = {ref: pod.status["podIP"] for ref, pod in web_pods(supervisor).items()}
    changed = scaled(3)
    changed["spec"]["template"]["metadata"] = {"labels": {"app": "web", "version": "2"}}
    reply = apply(supervisor, changed, SERVICE)  # a new template: a new ReplicaSet replaces every pod
    assert sorted(reply["stopped"]) == sorted(old) and len(reply["started"]) == 3
    for ref in reply["started"]:
        address = web_pods(supervisor)[ref].status["podIP"]
        assert supervisor.runtime.pods[ref].pod.status["podIP"] == address  # started as computed
        assert address not in old.values()  # the terminating pods still hold theirs


def test_a_scale_up_while_a_pod_terminates_makes_a_new_pod_with_another_name_and_address(supervisor):
    hold_on(supervisor)
    [leaving] = apply(supervisor, scaled(2), SERVICE)["stopped"]
    address = web_pods(supervisor)[leaving].status["podIP"]
    reply = apply(supervisor, scaled(3), SERVICE)
    [new] = reply["started"]
    assert new != leaving and web_pods(supervisor)[new].status["podIP"] != address
    assert leaving in supervisor.terminating and reply["stopped"] == []


def test_the_terminating_pod_survives_recomputation_with_its_marks_and_address(supervisor):
    hold_on(supervisor)
    [leaving] = apply(supervisor, scaled(2), SERVICE)["stopped"]
    before = web_pods(supervisor)[leaving]
    supervisor._probe_changed(sorted(web_pods(supervisor))[0], "c", ready=False, started=True)
    step(supervisor)  # a readiness change: recomputed from the inputs and the terminating pods
    after = web_pods(supervisor)[leaving]
    assert after.metadata["deletionTimestamp"] == before.metadata["deletionTimestamp"]
    assert after.status["podIP"] == before.status["podIP"]


def test_the_live_objects_show_the_pod_terminating_and_its_endpoint_not_ready(supervisor):
    hold_on(supervisor)
    [leaving] = apply(supervisor, scaled(2), SERVICE)["stopped"]
    reading = handle(supervisor, {"op": "objects"})
    cluster = cluster_from_objects(reading["items"], reading["config"])
    [pod] = [p for p in cluster.of_kind("Pod", "default") if p.ref == leaving]
    assert pod_row(pod, False)[2] == "Terminating"
    described = describe_pod(pod)
    assert any(line.startswith("Status:") and "Terminating (lasts " in line for line in described), described
    assert any(line.startswith("Termination Grace Period:") and line.endswith(" 30s") for line in described)
    endpoints = [e for s in cluster.of_kind("EndpointSlice", "default") for e in s.body.get("endpoints") or []]
    [mine] = [e for e in endpoints if (e.get("targetRef") or {}).get("name") == leaving.split("/")[1]]
    assert mine["conditions"] == {"ready": False, "serving": True, "terminating": True}


def test_down_during_a_termination_stops_everything_and_the_termination_gives_up(supervisor):
    hold_on(supervisor)
    [leaving] = apply(supervisor, scaled(2), SERVICE)["stopped"]
    supervisor.stop()
    assert supervisor.wait_for_terminations(DEADLINE)
    assert supervisor.runtime.pods == {} and ("detach", leaving) not in supervisor.dataplane.calls
    assert supervisor.dataplane.calls[-1] == ("teardown",)


def test_a_pre_stop_hook_that_fails_is_an_event_and_the_container_still_stops(supervisor):
    hooked = scaled(1)
    spec = hooked["spec"]["template"]["spec"]
    spec["containers"] = [{**spec["containers"][0], "lifecycle": {"preStop": {"tcpSocket": {"port": 80}}}}]
    apply(supervisor, hooked, SERVICE)  # a new template: a new ReplicaSet, the old pods go
    assert supervisor.wait_for_terminations(DEADLINE)
    step(supervisor)
    [ref] = web_pods(supervisor)
    processes = [c.process for c in supervisor.runtime.pods[ref].containers]
    apply(supervisor, {**hooked, "spec": {**hooked["spec"], "replicas": 0}}, SERVICE)
    assert supervisor.wait_for_terminations(DEADLINE)
    assert [p.signals for p in processes] == [["TERM"]]
    [event] = [e for e in supervisor.events.list() if e["reason"] == "FailedPreStopHook"]
    assert event["involvedObject"]["name"] == ref.split("/")[1] and event["type"] == "Warning"
    assert "tcpSocket is not a lifecycle handler" in event["message"]


def bare(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "pause"}]}}


def test_a_pod_applied_again_while_it_terminates_starts_once_the_old_one_is_gone(supervisor):
    apply(supervisor, bare("solo"))
    old = supervisor.runtime.pods["default/solo"]
    for container in old.containers:
        container.process.holds_on = True
    apply(supervisor, bare("solo"), delete=True)
    reply = apply(supervisor, bare("solo"))
    assert reply["started"] == [] and supervisor.runtime.pods["default/solo"] is old  # the name is taken
    assert web_pods(supervisor)["default/solo"].metadata.get("deletionTimestamp")
    for container in old.containers:
        container.process.exit(0)
    assert supervisor.wait_for_terminations(DEADLINE)
    step(supervisor)  # the old one is gone: the new one starts
    new = supervisor.runtime.pods["default/solo"]
    assert new is not old and not new.terminating
    assert not web_pods(supervisor)["default/solo"].metadata.get("deletionTimestamp")


def test_a_statefulset_scaled_back_up_waits_for_its_terminating_ordinal_to_go(supervisor):
    def sts(replicas):
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"},
                "spec": {"replicas": replicas, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                         "template": {"metadata": {"labels": {"app": "db"}},
                                      "spec": {"containers": [{"name": "c", "image": "pause"}]}}}}

    apply(supervisor, sts(2))
    old = supervisor.runtime.pods["default/db-1"]
    for container in old.containers:
        container.process.holds_on = True
    assert apply(supervisor, sts(1))["stopped"] == ["default/db-1"]
    assert apply(supervisor, sts(2))["started"] == []  # db-1 is still there, Terminating
    for container in old.containers:
        container.process.exit(0)
    assert supervisor.wait_for_terminations(DEADLINE)
    step(supervisor)
    new = supervisor.runtime.pods["default/db-1"]
    assert new is not old and not web_pods(supervisor)["default/db-1"].metadata.get("deletionTimestamp")


# ---- the pure parts ---------------------------------------------------------------------------------


def pod_object(spec):
    return KubeObject("Pod", "default", "p", {"metadata": {"name": "p"}, "spec": spec}, None)


@pytest.mark.parametrize("spec, requested, grace", [
    ({}, None, 30),
    ({"terminationGracePeriodSeconds": 5}, None, 5),
    ({"terminationGracePeriodSeconds": 5}, 1, 1),
    ({"terminationGracePeriodSeconds": 0}, None, 0),
], ids=["default-30", "the-pods-own", "the-requests-wins", "zero"])
def test_grace_period(spec, requested, grace):
    assert termination.grace_period(pod_object(spec), requested) == grace


def test_marked_deleted_sets_the_deletion_time_to_now_plus_the_grace_period_on_a_copy():
    body = {"metadata": {"name": "p"}}
    marked = termination.marked_deleted(body, datetime(2030, 1, 1, 0, 0, 0, tzinfo=timezone.utc), 30)
    assert marked["metadata"] == {"name": "p", "deletionTimestamp": "2030-01-01T00:00:30Z",
                                  "deletionGracePeriodSeconds": 30}
    assert body == {"metadata": {"name": "p"}}


@pytest.mark.parametrize("lifecycle, handler, detail", [
    ({"preStop": {"exec": {"command": ["sleep", "5"]}}}, "exec", ("sleep", "5")),
    ({"preStop": {"sleep": {"seconds": 5}}}, "sleep", 5),
    ({"preStop": {"httpGet": {"path": "/shutdown", "port": 8080}}}, "httpGet", "/shutdown"),
    ({"preStop": {"httpGet": {"path": "/shutdown", "port": "nope"}}}, "httpGet", "error"),
    ({"preStop": {"tcpSocket": {"port": 8080}}}, "tcpSocket", "error"),
    ({"postStart": {"exec": {"command": ["true"]}}}, None, None),
], ids=["exec-sleep", "sleep-action", "http-get", "http-get-unknown-port-name", "tcp-socket-is-no-hook", "no-prestop"])
def test_pre_stop_hooks_as_kubelet_reads_them(lifecycle, handler, detail):
    hook = termination.pre_stop_hook({"name": "c", "lifecycle": lifecycle})
    if handler is None:
        assert hook is None
        return
    assert hook.handler == handler
    if detail == "error":
        assert hook.error
    elif handler == "exec":
        assert hook.command == detail and hook.error is None
    elif handler == "sleep":
        assert hook.seconds == detail
    else:
        assert hook.http.path == detail and hook.http.port == 8080


def test_a_sleep_hook_is_cut_short_when_down_interrupts_it():
    interrupted = threading.Event()
    interrupted.set()
    hook = termination.PreStop("sleep", seconds=3600)
    assert termination.run_pre_stop(hook, None, None, "", 3600, interrupted) is None


class Flags:
    def __init__(self, grace_period=-1, now=False, force=False):
        self.grace_period, self.now, self.force = grace_period, now, force


@pytest.mark.parametrize("flags, grace", [
    (Flags(), None),
    (Flags(grace_period=5), 5),
    (Flags(now=True), 1),
    (Flags(grace_period=0), 1),  # kubectl: 0 without --force would be a forced deletion by accident
    (Flags(grace_period=0, force=True), 0),
    (Flags(force=True), 0),
], ids=["the-pods-own", "given", "now", "zero-without-force-is-one", "force-zero", "force"])
def test_delete_flags_as_kubectl_reads_them(flags, grace):
    assert running_cli.requested_grace_period(flags) == grace


def test_now_and_a_grace_period_together_are_refused():
    with pytest.raises(UsageError, match="cannot be specified together"):
        running_cli.requested_grace_period(Flags(grace_period=5, now=True))


def test_once_a_deleted_pod_is_gone_exactly_the_cluster_s_pods_run_each_at_its_address(supervisor):
    """`kubectl delete pod -l …` of a Deployment's pods (deletePods): while they terminate the
    ReplicaSet's replacements run under other names; once they are gone the names are computed
    again. What runs is then what the cluster has — no replacement left running unseen, holding
    an address the cluster gives the next pod."""
    hold_on(supervisor)  # they terminate when their grace period ends, after the replacements started
    refs = sorted(web_pods(supervisor))
    supervisor.delete_pods(refs[:2], grace_period=1)
    supervisor.state_changed.set()  # the next recomputation (any readiness report asks for one)
    step(supervisor)  # starts the replacements
    assert len(supervisor.runtime.pods) > len(refs) + 2  # (+2: coredns)
    assert supervisor.wait_for_terminations(DEADLINE)
    step(supervisor)  # the deleted pods are gone: recomputed
    running = {ref: sandbox.pod.status["podIP"] for ref, sandbox in supervisor.runtime.pods.items()}
    served = {p.ref: p.status["podIP"] for p in supervisor.cluster.of_kind("Pod") if p.status.get("podIP")}
    assert running == served
    assert len(set(running.values())) == len(running)
