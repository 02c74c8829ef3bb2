"""The API server's fields and the events of a running cluster, on the supervisor's fakes
(no root): what `get`, `describe` and `get events` are served."""

from __future__ import annotations

import threading
import time

import pytest

from podnet.errors import PodnetError
from podnet.host.layout import ClusterLayout
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.loop import step
from podnet.linux.supervisor.events import EventStore
from podnet.linux.supervisor.server import handle
from podnet.linux.supervisor.state import ClusterState, documents_text
from podnet.controlplane.snapshot import cluster_from_objects
from podnet.output import events as event_layout
from podnet.output.describe import describe_pod
from podnet.output.age import parse
from tests.supervisor_fakes import DEPLOYMENT, FakeDataPlane, FakeRuntime

CONFIG = {"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "sup", "nodes": 2}
T0 = 1_800_000_000.0


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def supervisor(tmp_path, clock):
    state = ClusterState(ClusterLayout("sup"), tmp_path / "sup")
    state.create(CONFIG, [DEPLOYMENT])
    supervisor = Supervisor(ClusterLayout("sup"), state, dataplane_factory=FakeDataPlane, runtime_factory=FakeRuntime)
    supervisor.meta.clock = supervisor.events.clock = clock
    supervisor.start()
    return supervisor


def apply(supervisor, *bodies):
    return supervisor.change(documents_text(list(bodies)), delete=False)


def served(supervisor, kind, name=None):
    """The served bodies of `kind` in the default namespace (the cluster's own pods left out)."""
    return [b for b in supervisor.objects() if b["kind"] == kind and b["metadata"].get("namespace") == "default"
            and (name is None or b["metadata"]["name"] == name)]


def events_about(supervisor, name):
    return [(e["type"], e["reason"], e["message"], e["count"]) for e in supervisor.events.list()
            if e["involvedObject"]["name"] == name]


def test_objects_carry_uid_creation_time_resource_version_and_generation(supervisor, clock):
    [deployment] = served(supervisor, "Deployment", "web")
    meta = deployment["metadata"]
    assert meta["uid"] and meta["generation"] == 1 and parse(meta["creationTimestamp"]) == T0
    pods = {b["metadata"]["name"]: b["metadata"] for b in served(supervisor, "Pod")}
    clock.now = T0 + 60
    apply(supervisor, {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": 3}})
    [after] = served(supervisor, "Deployment", "web")
    assert after["metadata"]["uid"] == meta["uid"]
    assert after["metadata"]["creationTimestamp"] == meta["creationTimestamp"]  # kept across the apply
    assert after["metadata"]["generation"] == 2  # the spec changed
    assert after["status"]["observedGeneration"] == 2  # its status is computed from that spec
    assert int(after["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    now = {b["metadata"]["name"]: b["metadata"] for b in served(supervisor, "Pod")}
    for name, old in pods.items():  # the pods that stay are unchanged: same version, same age
        assert now[name]["resourceVersion"] == old["resourceVersion"]
        assert now[name]["creationTimestamp"] == old["creationTimestamp"]
    [new] = [m for name, m in now.items() if name not in pods]
    assert parse(new["creationTimestamp"]) == T0 + 60
    versions = [int(b["metadata"]["resourceVersion"]) for b in supervisor.objects()]
    assert len(set(versions)) == len(versions)  # one cluster-wide counter


def test_pods_have_a_start_time_and_each_condition_once_with_its_transition_time(supervisor, clock):
    [body, _] = served(supervisor, "Pod")
    ref = f"default/{body['metadata']['name']}"
    assert parse(body["status"]["startTime"]) == T0
    types = [c["type"] for c in body["status"]["conditions"]]
    assert len(types) == len(set(types)) and "Ready" in types
    assert all(parse(c["lastTransitionTime"]) == T0 for c in body["status"]["conditions"])
    clock.now = T0 + 30
    supervisor._probe_changed(ref, "c", ready=False, started=True)
    supervisor.recompute()
    [body] = [b for b in served(supervisor, "Pod") if b["metadata"]["name"] == ref.split("/")[1]]
    conditions = {c["type"]: c for c in body["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False" and parse(conditions["Ready"]["lastTransitionTime"]) == T0 + 30
    assert parse(conditions["PodScheduled"]["lastTransitionTime"]) == T0
    assert len(body["status"]["conditions"]) == len(conditions)


def test_a_started_pod_has_kubelets_events_in_order(supervisor):
    name = served(supervisor, "Pod")[0]["metadata"]["name"]
    found = events_about(supervisor, name)
    assert [reason for _, reason, _, _ in found] == ["Scheduled", "Pulled", "Created", "Started"]
    assert found[0][2].startswith(f"Successfully assigned default/{name} to ")
    assert found[1][2] == 'Container image "pause" already present on machine'
    assert found[3][2] == "Started container c"
    [scheduled] = [e for e in supervisor.events.list() if e["reason"] == "Scheduled" and e["involvedObject"]["name"] == name]
    assert scheduled["source"] == {"component": "default-scheduler"}
    assert scheduled["involvedObject"]["kind"] == "Pod" and scheduled["involvedObject"]["uid"]


def test_probe_failures_liveness_restarts_and_back_off_are_events_with_counts(supervisor, clock):
    name = served(supervisor, "Pod")[0]["metadata"]["name"]
    ref = f"default/{name}"
    message = 'Get "http://10.244.1.2:8080/healthz": dial tcp 10.244.1.2:8080: connect: connection refused'
    supervisor._probe_failed(ref, "c", "liveness", message)
    clock.now = T0 + 10
    supervisor._probe_failed(ref, "c", "liveness", message)
    supervisor._probe_restart(ref, "c")
    container = supervisor.runtime.pods[ref].containers[0]
    container.process.exit(137)
    container.next_start = 1.0
    supervisor.reap()
    supervisor.reap()  # still waiting: the same back-off, not another event
    found = events_about(supervisor, name)[4:]
    assert found == [("Warning", "Unhealthy", f"Liveness probe failed: {message}", 2),
                     ("Normal", "Killing", "Container c failed liveness probe, will be restarted", 1),
                     ("Warning", "BackOff", f"Back-off restarting failed container c in pod {name}_default("
                      f"{served(supervisor, 'Pod', name)[0]['metadata']['uid']})", 1)]
    [unhealthy] = [e for e in supervisor.events.list() if e["reason"] == "Unhealthy"]
    assert parse(unhealthy["firstTimestamp"]) == T0 and parse(unhealthy["lastTimestamp"]) == T0 + 10
    assert unhealthy["involvedObject"]["fieldPath"] == "spec.containers{c}"
    lines = event_layout.describe_lines([unhealthy], now=T0 + 70)
    assert lines[0] == "Events:" and "60s (x2 over 70s)" in lines[3] and "kubelet" in lines[3]


def test_an_unschedulable_pod_and_a_load_balancer_have_their_controllers_events(supervisor):
    pending = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "picky", "namespace": "default"},
               "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "pause"}]}}
    lb = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "front", "namespace": "default"},
          "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]}}
    apply(supervisor, pending, lb)
    [(type_, reason, message, _)] = events_about(supervisor, "picky")
    assert (type_, reason) == ("Warning", "FailedScheduling") and "node" in message
    [service] = served(supervisor, "Service", "front")
    ip = service["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert events_about(supervisor, "front") == [("Normal", "IPAllocated", f'Assigned IP ["{ip}"]', 1),
                                                 ("Normal", "EnsuringLoadBalancer", "Ensuring load balancer", 1),
                                                 ("Normal", "EnsuredLoadBalancer", "Ensured load balancer", 1)]
    apply(supervisor, pending, lb)  # nothing new happened: nothing new said
    assert len(events_about(supervisor, "picky")) == 1 and len(events_about(supervisor, "front")) == 3


def test_deleting_a_pod_kills_its_containers(supervisor):
    apply(supervisor, {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": 1}})
    killed = [e for e in supervisor.events.list() if e["reason"] == "Killing"]
    assert [e["message"] for e in killed] == ["Stopping container c"]


def test_the_control_socket_serves_events_and_takes_a_controllers(supervisor):
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"rules": [{"host": "a.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                        "backend": {"service": {"name": "missing", "port": {"number": 80}}}}]}}]}}
    apply(supervisor, ingress)
    before = handle(supervisor, {"op": "events"})["resourceVersion"]
    post = {"op": "event", "component": "nginx-ingress-controller", "type": "Warning", "reason": "Sync",
            "message": "Service default/missing does not exist: path / answers 503",
            "involvedObject": {"kind": "Ingress", "namespace": "default", "name": "web"}}
    event = handle(supervisor, post)["event"]
    assert event["involvedObject"]["uid"] == served(supervisor, "Ingress", "web")[0]["metadata"]["uid"]
    newer = handle(supervisor, {"op": "events", "since": before})
    assert [(e["reason"], e["type"], e["count"]) for e in newer["items"]] == [("Sync", "Warning", 1)]
    with pytest.raises(PodnetError, match="Ingress default/nope not found"):
        handle(supervisor, {**post, "involvedObject": {"kind": "Ingress", "namespace": "default", "name": "nope"}})
    with pytest.raises(PodnetError, match="unknown source component"):
        handle(supervisor, {**post, "component": "me"})
    with pytest.raises(PodnetError, match="Normal or Warning"):
        handle(supervisor, {**post, "type": "Error"})


def test_the_store_is_bounded_and_keeps_the_newest():
    store = EventStore(limit=3)
    for n in range(5):
        store.record({"kind": "Pod", "namespace": "default", "name": f"p{n}"}, "Normal", "Started", "x", "kubelet")
    assert [e["involvedObject"]["name"] for e in store.list()] == ["p2", "p3", "p4"]


def test_a_running_container_says_when_it_started_and_describe_shows_the_pods_start(supervisor, clock):
    name = served(supervisor, "Pod")[0]["metadata"]["name"]
    supervisor.runtime.pods[f"default/{name}"].containers[0].started_at = T0 + 2
    [body] = served(supervisor, "Pod", name)
    assert body["status"]["containerStatuses"][0]["state"] == {"running": {"startedAt": "2027-01-15T08:00:02Z"}}
    lines = describe_pod(cluster_from_objects([body], supervisor.config.to_dict()).get("Pod", "default", name))
    assert "Start Time:         Fri, 15 Jan 2027 08:00:00 +0000" in lines


def test_the_workload_controllers_say_what_they_made(supervisor):
    [replica_set] = served(supervisor, "ReplicaSet")
    rs = replica_set["metadata"]["name"]
    pods = sorted(b["metadata"]["name"] for b in served(supervisor, "Pod"))
    assert events_about(supervisor, "web") == [
        ("Normal", "ScalingReplicaSet", f"Scaled up replica set {rs} from 0 to 2", 1)]
    assert sorted(events_about(supervisor, rs)) == [("Normal", "SuccessfulCreate", f"Created pod: {p}", 1) for p in pods]
    apply(supervisor, {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": 1}})
    assert events_about(supervisor, "web")[-1] == (
        "Normal", "ScalingReplicaSet", f"Scaled down replica set {rs} from 2 to 1", 1)
    # said as the controller deletes it: the pod is Terminating now, and gone once it stopped
    [gone] = [p for p in pods if served(supervisor, "Pod", p)[0]["metadata"].get("deletionTimestamp")]
    assert events_about(supervisor, rs)[-1] == ("Normal", "SuccessfulDelete", f"Deleted pod: {gone}", 1)
    assert supervisor.wait_for_terminations(timeout=30)
    step(supervisor)
    assert not served(supervisor, "Pod", gone)
    assert events_about(supervisor, rs)[-1] == ("Normal", "SuccessfulDelete", f"Deleted pod: {gone}", 1)  # once
    [scaling] = [e for e in supervisor.events.list() if e["reason"] == "ScalingReplicaSet" and "down" in e["message"]]
    assert scaling["source"] == {"component": "deployment-controller"} and scaling["involvedObject"]["kind"] == "Deployment"


def test_a_watcher_of_the_events_is_answered_by_the_next_event():
    """`get events -w`'s long poll: `wait` returns at once when something changed after the
    version the watcher holds, else when the next event is recorded (not at its time-out)."""
    store = EventStore()
    pod = {"kind": "Pod", "namespace": "default", "name": "web"}
    store.record(pod, "Normal", "Scheduled", "assigned", "default-scheduler")
    store.wait(0, timeout=600)  # version 1 > 0: no wait at all (a hang would fail the suite's time-out)
    answered = threading.Event()
    watcher = threading.Thread(target=lambda: (store.wait(store.version, timeout=600), answered.set()), daemon=True)
    watcher.start()
    assert not answered.wait(0.2)  # nothing new: it waits
    store.record(pod, "Normal", "Started", "started", "kubelet")
    assert answered.wait(60)  # a generous bound: it is answered by the event, not by its 600 s
    assert [e["reason"] for e in store.list(1)] == ["Started"]


def test_a_pod_made_again_under_its_name_is_a_new_object_with_its_own_events(supervisor):
    """A Deployment's pod deleted by name (deletePods) comes back under the same name (podnet
    computes names): to clients a new object — another uid (`kubectl delete` waits until the
    uid it deleted is gone), its own events (`describe` selects them by uid) — and the events
    are named by time, so a list by name is in the order they happened."""
    name = served(supervisor, "Pod")[0]["metadata"]["name"]
    [before] = served(supervisor, "Pod", name)
    supervisor.delete_pods([f"default/{name}"], grace_period=1)
    deadline = time.monotonic() + 60
    assert supervisor.wait_for_terminations(timeout=60)
    while not [p for p in served(supervisor, "Pod", name) if not p["metadata"].get("deletionTimestamp")] \
            or f"default/{name}" not in supervisor.runtime.pods:
        assert time.monotonic() < deadline, "the pod never came back"
        supervisor.state_changed.set()
        step(supervisor)
    [after] = served(supervisor, "Pod", name)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    mine = [e for e in supervisor.events.list() if e["involvedObject"].get("uid") == after["metadata"]["uid"]]
    assert [e["reason"] for e in sorted(mine, key=lambda e: e["metadata"]["name"])] == \
        ["Scheduled", "Pulled", "Created", "Started"]
    assert all(e["count"] == 1 for e in mine)  # not counted together with the old pod's


def test_what_the_runtime_says_for_kubelet_is_recorded_about_the_pod_or_its_container(supervisor):
    """The runtime's Failed (a config kubelet cannot make), its Created and Started once it can,
    and InvalidEnvironmentVariableNames about the pod itself, recorded as kubelet's on reap."""
    name = served(supervisor, "Pod")[0]["metadata"]["name"]
    ref = f"default/{name}"
    skipped = "Keys [X=A] from the EnvFrom configMap default/app were skipped since they are considered invalid environment variable names."
    supervisor.runtime.events += [(ref, "c", "Warning", "Failed", 'Error: configmap "app" not found'),
                                  (ref, None, "Warning", "InvalidEnvironmentVariableNames", skipped),
                                  ("default/gone", "c", "Warning", "Failed", "about a pod that is not there")]
    supervisor.reap()
    found = {e["reason"]: e for e in supervisor.events.list() if e["involvedObject"]["name"] == name}
    assert found["Failed"]["message"] == 'Error: configmap "app" not found' and found["Failed"]["type"] == "Warning"
    assert found["Failed"]["involvedObject"]["fieldPath"] == "spec.containers{c}"
    assert found["Failed"]["source"]["component"] == "kubelet"
    assert found["InvalidEnvironmentVariableNames"]["message"] == skipped
    assert "fieldPath" not in found["InvalidEnvironmentVariableNames"]["involvedObject"]
    assert not [e for e in supervisor.events.list() if e["involvedObject"]["name"] == "gone"]
    assert supervisor.runtime.events == [], "taken"
