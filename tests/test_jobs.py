"""Jobs: the Job controller's pods and status as computed (controlplane/workloads.py with the
rules of controlplane/jobs.py), offline its first wave, on a running cluster the next ones as
kubelet says earlier ones finished; and kubelet's word laid over the status a running cluster
serves (linux/supervisor/status.py)."""

from __future__ import annotations

import json

import pytest

from podnet.errors import InvalidInput

from podnet.config import ClusterConfig
from podnet.controlplane import compute
from podnet.controlplane.jobs import Observed, PodOutcome
from podnet.linux.supervisor.status import job_status, observed_jobs
from podnet.output.columns import job_row
from podnet.semantics.containerenv import container_environment
from tests.conftest import cluster_of, load_yaml
from tests.supervisor_fakes import sandbox_of

JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: report, namespace: default}
spec:
  %s
  template:
    metadata: {labels: {team: data}}
    spec:
      restartPolicy: Never
      containers: [{name: main, image: busybox, command: [sh, -c, "echo done"]}]
"""


def test_a_job_runs_its_pods_labelled_and_owned_as_the_job_controller_makes_them():
    cluster = cluster_of(JOB % "completions: 3\n  parallelism: 2")
    job = cluster.get("Job", "default", "report")
    pods = [p for p in cluster.of_kind("Pod") if p.labels.get("job-name") == "report"]
    assert len(pods) == 2  # parallelism 2 of 3 completions
    uid = job.metadata["uid"]
    assert job.spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    for pod in pods:
        assert pod.labels["team"] == "data" and pod.labels["batch.kubernetes.io/controller-uid"] == uid
        assert pod.metadata["ownerReferences"][0]["kind"] == "Job" and pod.name.startswith("report-")
    assert job.status["active"] == 2 and job.spec["backoffLimit"] == 6
    assert job_row(job, False)[1:3] == ["Running", "0/3"]


def test_a_suspended_job_runs_nothing():
    cluster = cluster_of(JOB % "suspend: true")
    assert not [p for p in cluster.of_kind("Pod") if p.labels.get("job-name") == "report"]
    assert job_row(cluster.get("Job", "default", "report"), False)[1] == "Suspended"


def finished(sandbox, code: int) -> None:
    for container in sandbox.containers:
        container.process.exit(code)
        container.last_exit, container.finished_at = code, 1.0
        container.started_at = 1_000_000.0


def job_pods(cluster) -> list:
    return sorted((p for p in cluster.of_kind("Pod") if p.labels.get("job-name") == "report"), key=lambda p: p.name)


def test_kubelets_word_makes_the_job_complete_or_failed():
    cluster = cluster_of(JOB % "completions: 1\n  backoffLimit: 0")
    job = cluster.get("Job", "default", "report")
    [pod] = job_pods(cluster)
    sandbox = sandbox_of(pod)
    observed = lambda s: observed_jobs({pod.ref: s}, {}, {job.ref: 1_000_000.0}, now=1_000_100.0)  # noqa: E731
    status = job_status(job, [pod], observed(sandbox))
    assert status["active"] == 1 and "conditions" not in status
    finished(sandbox, 0)
    status = job_status(job, [pod], observed(sandbox))
    assert status["succeeded"] == 1 and status["active"] == 0
    assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert status["startTime"] == "1970-01-12T13:46:40Z"
    shown = job_row(type(job)(job.kind, job.namespace, job.name, {**job.body, "status": status}), False)
    assert shown[1:3] == ["Complete", "1/1"]
    failed = sandbox_of(pod)
    finished(failed, 1)
    status = job_status(job, [pod], observed(failed))
    assert status["failed"] == 1 and [c["type"] for c in status["conditions"]] == ["FailureTarget", "Failed"]
    assert status["conditions"][1]["reason"] == "BackoffLimitExceeded"


def test_offline_a_job_shows_its_first_wave():
    cluster = cluster_of(JOB % "completions: 5\n  parallelism: 2")
    assert len(job_pods(cluster)) == 2
    assert job_row(cluster.get("Job", "default", "report"), False)[1:3] == ["Running", "0/5"]


def test_on_a_running_cluster_the_next_pods_are_made_as_earlier_ones_succeed():
    text = JOB % "completions: 5\n  parallelism: 2"
    first = job_pods(cluster_of(text))
    # the first wave fed back as a running cluster carries it, kubelet saying both succeeded
    bodies = [p.body for p in first]
    observed = Observed(2000.0, {p.ref: PodOutcome("Succeeded", 1500.0) for p in first}, {"default/report": 1000.0})
    cluster = compute(load_yaml(text + "".join("---\n" + json.dumps(b) + "\n" for b in bodies)), ClusterConfig(),
                      observed=observed)
    pods = job_pods(cluster)
    assert len(pods) == 4 and {p.name for p in first} < {p.name for p in pods}
    status = cluster.get("Job", "default", "report").status
    assert status["succeeded"] == 2 and status["active"] == 2


def test_indexed_pods_carry_their_index():
    cluster = cluster_of(JOB % "completions: 3\n  parallelism: 2\n  completionMode: Indexed")
    pods = job_pods(cluster)
    assert sorted(p.annotations["batch.kubernetes.io/job-completion-index"] for p in pods) == ["0", "1"]
    for pod in pods:
        index = pod.annotations["batch.kubernetes.io/job-completion-index"]
        assert pod.labels["batch.kubernetes.io/job-completion-index"] == index
        assert pod.name.startswith(f"report-{index}-") and pod.spec["hostname"] == f"report-{index}"
        [env] = [e for e in pod.spec["containers"][0]["env"] if e["name"] == "JOB_COMPLETION_INDEX"]
        assert env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        assert container_environment(pod, pod.spec["containers"][0], cluster)["JOB_COMPLETION_INDEX"] == index


def test_a_job_that_would_never_end_is_refused():
    with pytest.raises(InvalidInput, match=r'spec.template.spec.restartPolicy: Unsupported value: "Always"'):
        cluster_of((JOB % "completions: 1").replace("restartPolicy: Never", "restartPolicy: Always"))
    with pytest.raises(InvalidInput, match=r"spec.template.spec.restartPolicy: Required value"):
        cluster_of((JOB % "completions: 1").replace("      restartPolicy: Never\n", ""))


def test_parallelism_alone_is_a_work_queue_done_when_one_pod_succeeded():
    cluster = cluster_of(JOB % "parallelism: 3")
    job = cluster.get("Job", "default", "report")
    assert "completions" not in job.spec or job.spec["completions"] is None
    pods = job_pods(cluster)
    assert len(pods) == 3
    sandboxes = {p.ref: sandbox_of(p) for p in pods}
    finished(sandboxes[pods[0].ref], 0)
    status = job_status(job, pods, observed_jobs(sandboxes, {}, {}))
    assert "conditions" not in status  # two still run
    for pod in pods[1:]:
        finished(sandboxes[pod.ref], 0)
    assert job_status(job, pods, observed_jobs(sandboxes, {}, {}))["conditions"][-1]["type"] == "Complete"
