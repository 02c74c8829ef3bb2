"""Jobs: the Job controller's pods and status as computed (controlplane/workloads.py), and
kubelet's word laid over them on a running cluster (linux/supervisor/status.py): a Job is
Complete once its pods succeeded — a meshed pod's proxy stopped first — and fails with a pod
that failed (podnet runs each completion once)."""

from __future__ import annotations

import json

import pytest

from podnet.errors import InvalidInput

from podnet.linux.supervisor.status import job_status
from podnet.output.columns import job_row
from tests.conftest import cluster_of
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


def test_kubelets_word_makes_the_job_complete_or_failed():
    cluster = cluster_of(JOB % "completions: 1")
    job = cluster.get("Job", "default", "report")
    [pod] = [p for p in cluster.of_kind("Pod") if p.labels.get("job-name") == "report"]
    sandbox = sandbox_of(pod)
    body = json.loads(json.dumps(job.body))
    job_status(body, [sandbox])
    assert body["status"]["active"] == 1 and "conditions" not in body["status"]
    finished(sandbox, 0)
    body = json.loads(json.dumps(job.body))
    job_status(body, [sandbox])
    assert body["status"]["succeeded"] == 1 and body["status"]["active"] == 0
    assert [c["type"] for c in body["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert body["status"]["startTime"] == "1970-01-12T13:46:40Z"
    shown = job_row(type(job)(job.kind, job.namespace, job.name, body), False)
    assert shown[1:3] == ["Complete", "1/1"]
    failed = sandbox_of(pod)
    finished(failed, 1)
    body = json.loads(json.dumps(job.body))
    job_status(body, [failed])
    assert body["status"]["failed"] == 1 and body["status"]["conditions"][0]["type"] == "Failed"


def test_a_job_that_would_never_end_is_refused():
    with pytest.raises(InvalidInput, match=r'spec.template.spec.restartPolicy: Unsupported value: "Always"'):
        cluster_of((JOB % "completions: 1").replace("restartPolicy: Never", "restartPolicy: Always"))
    with pytest.raises(InvalidInput, match=r"spec.template.spec.restartPolicy: Required value"):
        cluster_of((JOB % "completions: 1").replace("      restartPolicy: Never\n", ""))


def test_parallelism_alone_is_a_work_queue_done_when_one_pod_succeeded():
    cluster = cluster_of(JOB % "parallelism: 3")
    job = cluster.get("Job", "default", "report")
    assert "completions" not in job.spec or job.spec["completions"] is None
    pods = [p for p in cluster.of_kind("Pod") if p.labels.get("job-name") == "report"]
    assert len(pods) == 3
    sandboxes = [sandbox_of(p) for p in pods]
    finished(sandboxes[0], 0)
    body = json.loads(json.dumps(job.body))
    job_status(body, sandboxes)
    assert "conditions" not in body["status"]  # two still run
    for sandbox in sandboxes[1:]:
        finished(sandbox, 0)
    body = json.loads(json.dumps(job.body))
    job_status(body, sandboxes)
    assert body["status"]["conditions"][-1]["type"] == "Complete"
