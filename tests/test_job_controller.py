"""The Job controller's rules (controlplane/jobs.py) on a fake clock: waves that never run more
than parallelism pods, indexes, the back-off between a failed pod and its replacement,
backoffLimit, activeDeadlineSeconds and ttlSecondsAfterFinished."""

from __future__ import annotations

import pytest

from podnet.controlplane import jobs
from podnet.controlplane.jobs import ACTIVE, FAILED, SUCCEEDED, JobPod, sync


class FakeJob:
    """A Job's pods on a fake clock: `step` applies the controller's decision (its new pods start
    at once), `finish` ends pods as kubelet would report them."""

    def __init__(self, spec: dict, start: float = 1000.0):
        self.spec, self.start, self.now = spec, start, start
        self.pods: list[JobPod] = []
        self.made = 0
        self.most_active = 0

    def step(self) -> jobs.JobSync:
        decision = sync(self.spec, self.pods, self.start, self.now)
        for index in decision.create:
            self.pods.append(JobPod(f"p{self.made}", ACTIVE, index))
            self.made += 1
        self.most_active = max(self.most_active, sum(1 for p in self.pods if p.phase == ACTIVE))
        return decision

    def finish(self, name: str, phase: str) -> None:
        self.pods = [JobPod(p.name, phase, p.index, self.now) if p.name == name else p for p in self.pods]

    def active(self) -> list[str]:
        return [p.name for p in self.pods if p.phase == ACTIVE]


def test_completions_run_in_waves_never_more_than_parallelism_at_once():
    job = FakeJob({"completions": 4, "parallelism": 2})
    decision = job.step()
    while decision.verdict is None:
        job.now += 5
        job.finish(job.active()[0], SUCCEEDED)
        decision = job.step()
    assert job.made == 4 and job.most_active == 2
    assert decision.status["succeeded"] == 4 and decision.status["active"] == 0
    assert [c["type"] for c in decision.status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert decision.status["completionTime"] == jobs.timestamp(1020.0)
    assert decision.status["startTime"] == jobs.timestamp(1000.0)


def test_the_last_completions_make_fewer_pods_than_parallelism():
    job = FakeJob({"completions": 3, "parallelism": 2})
    job.step()
    job.finish("p0", SUCCEEDED)
    job.finish("p1", SUCCEEDED)
    assert job.step().create == (None,)  # one completion left: one pod, not two


def test_indexed_pods_take_the_lowest_missing_index_and_a_failed_index_is_run_again():
    job = FakeJob({"completions": 3, "parallelism": 2, "completionMode": "Indexed"})
    assert job.step().create == (0, 1)
    job.now += 1
    job.finish("p0", SUCCEEDED)
    job.finish("p1", FAILED)
    decision = job.step()
    assert decision.create == () and decision.wake_at == job.now + 10  # back-off after the failure
    assert decision.status["completedIndexes"] == "0" and decision.status["failed"] == 1
    job.now += 10
    assert job.step().create == (1, 2)
    job.finish("p2", SUCCEEDED)
    job.finish("p3", SUCCEEDED)
    decision = job.step()
    assert decision.verdict.type == "Complete" and decision.status["completedIndexes"] == "0-2"
    assert decision.status["succeeded"] == 3


@pytest.mark.parametrize("failures, delay", [
    (0, 0.0), (1, 10.0), (2, 20.0), (3, 40.0), (6, 320.0),
    (7, 600.0),   # capped at MaxJobPodFailureBackOff
    (60, 600.0),
])
def test_the_back_off_doubles_from_ten_seconds_up_to_the_cap(failures, delay):
    assert jobs.backoff_delay(failures) == delay


def test_a_success_resets_the_back_off():
    pods = [JobPod("a", FAILED, finished=10.0), JobPod("b", FAILED, finished=20.0)]
    assert jobs.backoff_until(pods) == 20.0 + 20.0
    assert jobs.backoff_until(pods + [JobPod("c", SUCCEEDED, finished=30.0)]) is None
    assert jobs.backoff_until(pods + [JobPod("c", SUCCEEDED, finished=15.0)]) == 20.0 + 10.0


def test_backoff_limit_one_fails_the_job_after_exactly_two_pods():
    job = FakeJob({"completions": 1, "parallelism": 1, "backoffLimit": 1})
    job.step()
    job.finish("p0", FAILED)
    decision = job.step()
    assert decision.create == () and decision.verdict is None and decision.wake_at == job.now + 10
    job.now += 9.5
    assert job.step().create == ()  # still backing off
    job.now += 0.5
    assert job.step().create == (None,)
    job.now += 3
    job.finish("p1", FAILED)
    decision = job.step()
    assert job.made == 2 and decision.create == ()
    assert decision.verdict == jobs.Verdict("Failed", "BackoffLimitExceeded", jobs.BACKOFF_MESSAGE, job.now)
    assert [c["type"] for c in decision.status["conditions"]] == ["FailureTarget", "Failed"]
    assert decision.status["failed"] == 2 and "completionTime" not in decision.status
    job.now += 3600
    assert job.step().create == ()  # and never another


def test_a_failed_job_kills_its_active_pods():
    job = FakeJob({"completions": 3, "parallelism": 3, "backoffLimit": 0})
    job.step()
    job.finish("p0", FAILED)
    decision = job.step()
    assert decision.verdict.reason == "BackoffLimitExceeded" and decision.kill == ("p1", "p2")
    assert decision.status["active"] == 0


def test_restarts_count_toward_the_backoff_limit_with_restart_policy_on_failure():
    spec = {"completions": 1, "backoffLimit": 2, "template": {"spec": {"restartPolicy": "OnFailure"}}}
    assert sync(spec, [JobPod("a", ACTIVE, restarts=1)], 0.0, 5.0).verdict is None
    decision = sync(spec, [JobPod("a", ACTIVE, restarts=2)], 0.0, 5.0)
    assert decision.verdict.reason == "BackoffLimitExceeded" and decision.kill == ("a",)
    # the pod it killed failed: the Job stays failed, from the time that pod ended, whenever it is asked
    for now in (7.0, 70.0, 7000.0):
        later = sync(spec, [JobPod("a", FAILED, finished=6.0, restarts=2)], 0.0, now)
        assert later.verdict.reason == "BackoffLimitExceeded" and later.verdict.at == 6.0
    with_ttl = {**spec, "ttlSecondsAfterFinished": 5}
    assert not sync(with_ttl, [JobPod("a", FAILED, finished=6.0, restarts=2)], 0.0, 10.0).expired
    assert sync(with_ttl, [JobPod("a", FAILED, finished=6.0, restarts=2)], 0.0, 11.0).expired


def test_active_deadline_fails_the_job_at_start_plus_deadline():
    job = FakeJob({"completions": 1, "activeDeadlineSeconds": 30})
    decision = job.step()
    assert decision.wake_at == 1030.0
    job.now = 1029.0
    assert job.step().verdict is None
    job.now = 1031.0
    decision = job.step()
    assert decision.verdict == jobs.Verdict("Failed", "DeadlineExceeded", jobs.DEADLINE_MESSAGE, 1030.0)
    assert decision.kill == ("p0",)


def test_a_job_complete_before_its_deadline_stays_complete():
    job = FakeJob({"completions": 1, "activeDeadlineSeconds": 30})
    job.step()
    job.now = 1010.0
    job.finish("p0", SUCCEEDED)
    job.now = 5000.0
    assert job.step().verdict.type == "Complete"


def test_a_pod_ending_after_the_deadline_does_not_complete_the_job():
    pods = [JobPod("a", SUCCEEDED, finished=1040.0)]
    assert sync({"completions": 1, "activeDeadlineSeconds": 30}, pods, 1000.0, 1041.0).verdict.reason == "DeadlineExceeded"


def test_ttl_after_finished_expires_the_job_that_long_after_it_finished():
    spec = {"completions": 1, "ttlSecondsAfterFinished": 60}
    pods = [JobPod("a", SUCCEEDED, finished=100.0)]
    decision = sync(spec, pods, 0.0, 150.0)
    assert not decision.expired and decision.wake_at == 160.0
    assert sync(spec, pods, 0.0, 160.0).expired
    assert not sync({"completions": 1}, pods, 0.0, 10_000.0).expired  # no TTL: kept


def test_a_work_queue_is_done_once_one_pod_succeeded_and_none_runs():
    job = FakeJob({"parallelism": 3})
    assert len(job.step().create) == 3
    job.finish("p0", SUCCEEDED)
    decision = job.step()
    assert decision.create == () and decision.verdict is None  # no more pods, two still run
    job.finish("p1", SUCCEEDED)
    job.finish("p2", SUCCEEDED)
    assert job.step().verdict.type == "Complete"


def test_offline_no_time_passes():
    decision = sync({"completions": 5, "parallelism": 2, "activeDeadlineSeconds": 1}, [], None, None)
    assert decision.create == (None, None) and decision.verdict is None and decision.wake_at is None
    assert "startTime" not in decision.status
