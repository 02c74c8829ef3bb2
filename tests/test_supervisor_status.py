"""Kubelet's status over the computed one (no root): probes, restarts, exits, back-off."""

from __future__ import annotations

import pytest

from podnet.crashloop import BackOff
from podnet.linux.supervisor.status import live_readiness, object_bodies, pods_status, runtime_status
from tests.conftest import cluster_of
from tests.supervisor_fakes import sandbox_of

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: job}
spec:
  restartPolicy: Never
  containers: [{name: a, image: pause}, {name: b, image: pause}]
---
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: c
    image: pause
    readinessProbe: {httpGet: {path: /, port: 80}}
"""


@pytest.fixture
def cluster():
    return cluster_of(PODS)


def body_of(cluster, name):
    return cluster.get("Pod", "default", name).body


def ready_conditions(status):
    return {c["type"]: c["status"] for c in status["conditions"] if c["type"] in ("Ready", "ContainersReady")}


def test_running_containers_keep_the_computed_status(cluster):
    pod = cluster.get("Pod", "default", "job")
    [body] = [b for b in object_bodies(cluster, {pod.ref: sandbox_of(pod)}, {}) if b["metadata"]["name"] == "job"]
    assert body["status"] == pod.body["status"]


def test_a_failed_readiness_probe_makes_the_pod_not_ready(cluster):
    pod = cluster.get("Pod", "default", "web")
    [body] = [b for b in object_bodies(cluster, {pod.ref: sandbox_of(pod)},
                                       {pod.ref: {"c": {"ready": False, "started": True}}})
              if b["metadata"]["name"] == "web"]
    assert body["status"]["containerStatuses"][0]["ready"] is False
    assert ready_conditions(body["status"]) == {"Ready": "False", "ContainersReady": "False"}
    assert ready_conditions(pod.body["status"]) == {"Ready": "True", "ContainersReady": "True"}  # not changed


@pytest.mark.parametrize("codes, phase, reasons", [
    ((0, 0), "Succeeded", ["Completed", "Completed"]),   # every container finished well
    ((0, 1), "Failed", ["Completed", "Error"]),          # one of them did not
])
def test_a_pod_whose_containers_all_finished_has_their_phase(cluster, codes, phase, reasons):
    pod = cluster.get("Pod", "default", "job")
    sandbox = sandbox_of(pod)
    for container, code in zip(sandbox.containers, codes):
        container.process.exit(code)
        container.last_exit = code
    body = {"status": {**pod.body["status"], "containerStatuses": [dict(c) for c in pod.body["status"]["containerStatuses"]]}}
    runtime_status(body, sandbox, {})
    assert body["status"]["phase"] == phase
    assert [c["state"]["terminated"]["reason"] for c in body["status"]["containerStatuses"]] == reasons


def test_one_finished_container_leaves_the_phase_running(cluster):
    pod = cluster.get("Pod", "default", "job")
    sandbox = sandbox_of(pod)
    sandbox.containers[0].process.exit(0)
    sandbox.containers[0].last_exit = 0
    [body] = [b for b in object_bodies(cluster, {pod.ref: sandbox}, {}) if b["metadata"]["name"] == "job"]
    assert body["status"]["phase"] == "Running"
    assert body["status"]["containerStatuses"][0]["state"] == {"terminated": {"exitCode": 0, "reason": "Completed"}}
    assert ready_conditions(body["status"]) == {"Ready": "False", "ContainersReady": "False"}


def test_a_container_in_back_off_is_waiting_with_its_restarts(cluster):
    pod = cluster.get("Pod", "default", "web")
    sandbox = sandbox_of(pod)
    container = sandbox.containers[0]
    container.process.exit(1)
    container.restarts, container.next_start, container.backoff = 3, 123.0, BackOff(window=40.0, updated=80.0)
    [body] = [b for b in object_bodies(cluster, {pod.ref: sandbox}, {}) if b["metadata"]["name"] == "web"]
    entry = body["status"]["containerStatuses"][0]
    assert entry["restartCount"] == 3
    assert entry["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    # kubelet's doBackOff message, with the window being waited as a Go duration
    assert entry["state"]["waiting"]["message"] == (f"back-off 40s restarting failed container={container.name} "
                                                    f"pod=web_default({body['metadata']['uid']})")
    assert entry["ready"] is False and entry["started"] is False


@pytest.mark.parametrize("name, state, expected", [
    ("job", {}, None),                                             # no probes: the offline rule
    ("web", {}, False),                                            # a readiness probe: not ready until it passes
    ("web", {"default/web": {"c": {"ready": True}}}, True),       # the prober's verdict
    ("job", {"default/job": {"a": {"ready": True}, "b": {"ready": False}}}, False),  # every container counts
])
def test_live_readiness(cluster, name, state, expected):
    assert live_readiness(state, cluster.get("Pod", "default", name)) is expected


def test_status_is_ready_once_every_running_pod_has_its_processes(cluster):
    pods = {p.ref: p for p in cluster.of_kind("Pod")}  # the cluster DNS's pods too
    job = pods["default/job"]
    status = pods_status("demo", cluster, {job.ref: sandbox_of(job)})
    assert status["cluster"] == "demo" and status["ready"] is False
    running = {p["pod"]: p["running"] for p in status["pods"]}
    assert running["default/job"] is True and running["default/web"] is False
    sandboxes = {ref: sandbox_of(pod) for ref, pod in pods.items()}
    sandboxes["default/web"].containers[0].restarts = 1
    status = pods_status("demo", cluster, sandboxes)
    assert status["ready"] is True
    assert {p["pod"]: p["restarting"] for p in status["pods"]}["default/web"] == ["c"]
    assert {p["pod"]: p["ip"] for p in status["pods"]}["default/job"] == job.body["status"]["podIP"]


def test_networkpolicies_carry_the_kernels_drop_counts_as_an_annotation_on_a_copy():
    cluster = cluster_of(PODS + """---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: default}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: deny}
spec:
  priority: 3
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{namespaces: {}}]}]
""")
    drops = {("NetworkPolicy", "default/deny"): {"ingress": 7, "egress": 0},
             ("AdminNetworkPolicy", "deny"): {"ingress": 2}}
    bodies = {b["kind"]: b for b in object_bodies(cluster, {}, {}, drops)}
    assert bodies["NetworkPolicy"]["metadata"]["annotations"] == {"podnet.dev/dropped-packets": "ingress 7, egress 0"}
    assert bodies["AdminNetworkPolicy"]["metadata"]["annotations"] == {"podnet.dev/dropped-packets": "ingress 2"}
    assert "annotations" not in cluster.get("NetworkPolicy", "default", "deny").body["metadata"]
