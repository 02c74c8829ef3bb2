"""The Job controller on a real one-node cluster (root only).

A Job of 4 completions, 2 at a time, whose busybox pods print when they start and end: it ends
Complete with 4 pods succeeded, and the pods' own times (one host clock) never have more than 2
running at once, nor does any status `get` served. A pod that fails with backoffLimit 1 is
replaced once, after the controller's back-off, and the Job ends Failed (BackoffLimitExceeded)
with exactly 2 pods. An Indexed Job's pods see their JOB_COMPLETION_INDEX; with
ttlSecondsAfterFinished 0 the Job and its pods are deleted once it completed. Nothing asserts a
duration: waits poll with generous deadlines. The cluster has a unique name and is removed at
the end.
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.livecluster import podnet, up_cluster
from tests.test_termination_root import wait_for

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

DEADLINE = 240.0  # generous: a loaded machine may start pods slowly; nothing here is timed


def job(name: str, spec: str, command: str) -> str:
    return f"""
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  {spec}
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: busybox
        command: [sh, -c, '{command}']
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    name = f"jb{secrets.token_hex(3)}"
    directory = tmp_path_factory.mktemp(name)
    with up_cluster(directory, name, "apiVersion: v1\nkind: Pod\nmetadata: {name: idle}\nspec:\n"
                               "  containers: [{name: c, image: busybox, command: [sleep, '3600']}]\n", nodes=1):
        yield name, directory


def apply(cluster, text: str, file: str) -> None:
    name, directory = cluster
    (directory / file).write_text(text)
    podnet("apply", "-f", str(directory / file), "--name", name)


def get_job(cluster, job_name: str) -> dict | None:
    items = json.loads(podnet("get", "jobs", "-o", "json", "--name", cluster[0]).stdout)["items"]
    return next((j for j in items if j["metadata"]["name"] == job_name), None)


def job_pods(cluster, job_name: str) -> list[dict]:
    items = json.loads(podnet("get", "pods", "-o", "json", "--name", cluster[0]).stdout)["items"]
    return [p for p in items if p["metadata"].get("labels", {}).get("batch.kubernetes.io/job-name") == job_name]


def condition(job: dict | None, kind: str) -> dict | None:
    return next((c for c in ((job or {}).get("status") or {}).get("conditions") or []
                 if c["type"] == kind and c["status"] == "True"), None)


def test_completions_run_two_at_a_time_until_four_succeeded(cluster):
    apply(cluster, job("waves", "completions: 4\n  parallelism: 2",
                       "echo start $(date +%s.%N); sleep 1; echo end $(date +%s.%N)"), "waves.yaml")
    most_active = 0

    def complete():
        nonlocal most_active
        found = get_job(cluster, "waves")
        most_active = max(most_active, ((found or {}).get("status") or {}).get("active", 0))
        return found if condition(found, "Complete") else None

    done = wait_for(complete, DEADLINE, "the Job complete")
    assert done["status"]["succeeded"] == 4 and done["status"]["active"] == 0
    assert [c["type"] for c in done["status"]["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert most_active <= 2
    pods = job_pods(cluster, "waves")
    assert len(pods) == 4 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    runs = []
    for pod in pods:
        lines = dict(line.split() for line in podnet("logs", pod["metadata"]["name"], "--name", cluster[0])
                     .stdout.splitlines() if line.startswith(("start", "end")))
        runs.append((float(lines["start"]), float(lines["end"])))
    at_once = max(sum(1 for s, e in runs if s <= start < e) for start, _ in runs)
    assert at_once <= 2, runs


def test_a_failing_pod_is_replaced_once_then_the_job_fails_with_backoff_limit_exceeded(cluster):
    apply(cluster, job("fails", "backoffLimit: 1", "echo trying; exit 1"), "fails.yaml")
    failed = wait_for(lambda: condition(get_job(cluster, "fails"), "Failed") and get_job(cluster, "fails"),
                      DEADLINE, "the Job failed")
    assert condition(failed, "Failed")["reason"] == "BackoffLimitExceeded"
    assert [c["type"] for c in failed["status"]["conditions"]] == ["FailureTarget", "Failed"]
    assert failed["status"]["failed"] == 2 and failed["status"]["active"] == 0
    pods = job_pods(cluster, "fails")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    assert len({p["metadata"]["name"] for p in pods}) == 2
    events = podnet("get", "events", "--name", cluster[0]).stdout
    assert "BackoffLimitExceeded" in events


def test_an_indexed_job_gives_each_pod_its_index_and_its_ttl_deletes_it(cluster):
    apply(cluster, job("indexed", "completions: 3\n  parallelism: 3\n  completionMode: Indexed\n"
                                  "  ttlSecondsAfterFinished: 3600",
                       "echo index=$JOB_COMPLETION_INDEX"), "indexed.yaml")
    wait_for(lambda: condition(get_job(cluster, "indexed"), "Complete"), DEADLINE, "the Indexed Job complete")
    pods = job_pods(cluster, "indexed")
    seen = {}
    for pod in pods:
        index = pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
        seen[index] = podnet("logs", pod["metadata"]["name"], "--name", cluster[0]).stdout.strip()
        assert pod["spec"]["hostname"] == f"indexed-{index}"
    assert seen == {"0": "index=0", "1": "index=1", "2": "index=2"}
    assert get_job(cluster, "indexed")["status"]["completedIndexes"] == "0-2"
    apply(cluster, job("short", "ttlSecondsAfterFinished: 0", "true"), "short.yaml")
    wait_for(lambda: get_job(cluster, "short") is None and not job_pods(cluster, "short"), DEADLINE,
             "the Job and its pod deleted after its TTL")
