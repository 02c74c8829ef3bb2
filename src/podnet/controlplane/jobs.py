"""The Job controller's rules, as pkg/controller/job/job_controller.go syncJob applies them.
Pure: the pods and kubelet's word on them in, the controller's decision out. The control plane
makes the pods it decides (workloads.job_pods, offline and on a running cluster alike), the
supervisor kills the pods it terminates, deletes a Job whose TTL passed and lays the status over
what `get` serves (podnet.linux.supervisor). Times are seconds since the epoch.

- Pods active at once: min(parallelism, completions - succeeded); a work queue (no completions)
  keeps `parallelism` until one pod succeeded, then makes no more. Indexed: each index from 0 to
  completions - 1 runs until one pod of it succeeded, the lowest missing first, each pod with the
  index in its annotation and label batch.kubernetes.io/job-completion-index, JOB_COMPLETION_INDEX
  in its containers' environment and hostname <job>-<index>.
- A failed pod (restartPolicy Never) is replaced after the controller's back-off: 10 s doubled for
  each failure since the last success, at most MAX_BACKOFF after the last failure (backoff_utils.go).
- BackoffLimitExceeded once more pods failed than backoffLimit (default 6), or, with restartPolicy
  OnFailure, once the containers' restarts reach it; DeadlineExceeded once activeDeadlineSeconds
  passed since the Job started. The Job then has FailureTarget and Failed, and its active pods are
  terminated (`kill`); Complete (SuccessCriteriaMet, then Complete) once enough pods succeeded.
- ttlSecondsAfterFinished: the Job (and its pods with it) is deleted that long after it finished.

Upstream keeps its counts in the Job's status (pod finalizers make sure no pod is lost); podnet
keeps a Job's finished pods as long as the Job exists, so the counts are its pods', and the
verdict is found again each time by going through the pods' ends in the order they happened: the
first condition that held stays (a Complete Job never fails later by its deadline). Where podnet
differs: restarts (OnFailure) count whether or not their pod is still active, so the verdict does
not move once the pods it killed are gone; the pods terminated are killed, not deleted (they stay,
Failed, until the Job goes); suspending makes nothing more but kills nothing; a lower parallelism
removes no pod; podFailurePolicy, successPolicy and backoffLimitPerIndex are not read.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BACKOFF = 10.0  # DefaultJobPodFailureBackOff
# MaxJobPodFailureBackOff in job_controller.go (the Job docs still say six minutes)
MAX_BACKOFF = 600.0
INDEX_KEY = "batch.kubernetes.io/job-completion-index"  # annotation, and label (PodIndexLabel)
INDEX_ENV = "JOB_COMPLETION_INDEX"
ACTIVE, SUCCEEDED, FAILED = "Active", "Succeeded", "Failed"

COMPLETE_MESSAGE = "Reached expected number of succeeded pods"
BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"


@dataclass(frozen=True)
class PodOutcome:
    """kubelet's word on one pod: its phase (Succeeded, Failed, else it is active), when it
    finished, how often its containers restarted, whether it is ready."""

    phase: str
    finished: float | None = None
    restarts: int = 0
    ready: bool = False


@dataclass(frozen=True)
class Observed:
    """What a running cluster knows that its inputs do not: the time, kubelet's word on the
    Jobs' pods (by pod ref) and when each Job started (by Job ref)."""

    now: float
    pods: Mapping[str, PodOutcome] = field(default_factory=dict)
    started: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class JobPod:
    name: str
    phase: str  # ACTIVE, SUCCEEDED or FAILED
    index: int | None = None
    finished: float | None = None
    restarts: int = 0
    ready: bool = False


@dataclass(frozen=True)
class Verdict:
    """How the Job finished: Complete or Failed, why, and when."""

    type: str
    reason: str
    message: str
    at: float | None


@dataclass(frozen=True)
class JobSync:
    create: tuple[int | None, ...]  # pods to make now: their indexes (None: NonIndexed)
    kill: tuple[str, ...]  # active pods to terminate (the Job finished)
    status: dict[str, Any]
    verdict: Verdict | None
    wake_at: float | None  # when the decision may change with no pod changing (back-off, deadline, TTL)
    expired: bool  # ttlSecondsAfterFinished passed: delete the Job


def timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def parse_timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None


def pod_index(metadata: Mapping[str, Any]) -> int | None:
    value = (metadata.get("annotations") or {}).get(INDEX_KEY)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def backoff_delay(failures: int) -> float:
    """The wait before a pod replaces the `failures`-th failed one since the last success."""
    if failures <= 0:
        return 0.0
    return min(DEFAULT_BACKOFF * 2 ** min(failures - 1, 32), MAX_BACKOFF)


def backoff_until(pods: list[JobPod]) -> float | None:
    """When the back-off after the latest failures ends (backoffRecord: failures since the last
    success, counted from the last failure's time); None without one."""
    ended = sorted((p for p in pods if p.phase != ACTIVE and p.finished is not None), key=lambda p: p.finished)
    last_success = max((p.finished for p in ended if p.phase == SUCCEEDED), default=None)
    failures = [p.finished for p in ended if p.phase == FAILED and (last_success is None or p.finished >= last_success)]
    if not failures:
        return None
    return failures[-1] + backoff_delay(len(failures))


def sync(spec: Mapping[str, Any], pods: list[JobPod], start: float | None, now: float | None) -> JobSync:
    """The controller's decision for a Job of `spec` with `pods`, started at `start`, at `now`
    (None: offline, no time has passed — no deadline, no back-off, no TTL)."""
    completions = spec.get("completions")
    completions = int(completions) if completions is not None else None
    parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
    limit = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)
    indexed = spec.get("completionMode") == "Indexed" and completions is not None
    on_failure = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure"
    deadline = spec.get("activeDeadlineSeconds")
    deadline_at = start + float(deadline) if deadline is not None and start is not None else None

    verdict = _verdict(pods, completions, indexed, limit, on_failure, deadline_at, now)
    active = [p for p in pods if p.phase == ACTIVE]
    succeeded_indexes = sorted({p.index for p in pods if p.phase == SUCCEEDED and p.index is not None
                                and 0 <= p.index < (completions or 0)}) if indexed else []
    succeeded = len(succeeded_indexes) if indexed else sum(1 for p in pods if p.phase == SUCCEEDED)
    failed = sum(1 for p in pods if p.phase == FAILED)

    create: list[int | None] = []
    wake: list[float] = []
    if verdict is None and not spec.get("suspend"):
        if completions is None:
            want = len(active) if succeeded else parallelism
        else:
            want = max(0, min(parallelism, completions - succeeded))
        missing = want - len(active)
        if missing > 0:
            until = backoff_until(pods) if now is not None else None
            if until is not None and until > now:
                wake.append(until)
            elif indexed:
                running = {p.index for p in active}
                free = [i for i in range(completions) if i not in running and i not in succeeded_indexes]
                create = list(free[:missing])
            else:
                create = [None] * missing
        if deadline_at is not None:
            wake.append(deadline_at)

    status: dict[str, Any] = {"active": 0 if verdict else len(active),
                              "ready": 0 if verdict else sum(1 for p in active if p.ready),
                              "terminating": 0, "uncountedTerminatedPods": {}}
    if start is not None:
        status["startTime"] = timestamp(start)
    if succeeded:
        status["succeeded"] = succeeded
    if failed:
        status["failed"] = failed
    if indexed:
        status["completedIndexes"] = _ranges(succeeded_indexes)
    expired = False
    if verdict is not None:
        at = timestamp(verdict.at if verdict.at is not None else (now if now is not None else start or 0.0))
        first = "SuccessCriteriaMet" if verdict.type == "Complete" else "FailureTarget"
        status["conditions"] = [{"type": kind, "status": "True", "reason": verdict.reason, "message": verdict.message,
                                 "lastProbeTime": at, "lastTransitionTime": at} for kind in (first, verdict.type)]
        if verdict.type == "Complete":
            status["completionTime"] = at
        ttl = spec.get("ttlSecondsAfterFinished")
        if ttl is not None and verdict.at is not None and now is not None:
            expires = verdict.at + float(ttl)
            expired = now >= expires
            if not expired:
                wake.append(expires)
    elif spec.get("suspend"):
        status["conditions"] = [{"type": "Suspended", "status": "True", "reason": "JobSuspended",
                                 "message": "Job suspended"}]
    kill = tuple(sorted(p.name for p in active)) if verdict is not None else ()
    return JobSync(tuple(create), kill, status, verdict, min(wake) if wake else None, expired)


def _verdict(pods: list[JobPod], completions: int | None, indexed: bool, limit: int, on_failure: bool,
             deadline_at: float | None, now: float | None) -> Verdict | None:
    """The first end the Job came to, going through its pods' ends in time order (a pod that
    ended without a known time, first)."""
    ended = sorted((p for p in pods if p.phase != ACTIVE), key=lambda p: (p.finished is not None, p.finished or 0.0))
    succeeded: set[int] = set()
    successes = failures = 0
    active = sum(1 for p in pods if p.phase == ACTIVE)
    for pod in ended:
        if deadline_at is not None and pod.finished is not None and pod.finished >= deadline_at:
            return Verdict("Failed", "DeadlineExceeded", DEADLINE_MESSAGE, deadline_at)
        if pod.phase == FAILED:
            failures += 1
            if failures > limit:
                return Verdict("Failed", "BackoffLimitExceeded", BACKOFF_MESSAGE, pod.finished)
        else:
            successes += 1
            if pod.index is not None:
                succeeded.add(pod.index)
            done = (len(succeeded & set(range(completions))) >= completions if indexed else
                    successes >= completions if completions is not None else False)
            if done:
                return Verdict("Complete", "CompletionsReached", COMPLETE_MESSAGE, pod.finished)
    restarts = sum(p.restarts for p in pods) if on_failure else 0
    if restarts and restarts >= limit:
        # when: as the pods the verdict killed ended (upstream's transition time, from which the
        # TTL counts); not `now`, which would move it at every look — unknown until they ended
        return Verdict("Failed", "BackoffLimitExceeded", BACKOFF_MESSAGE,
                       max((p.finished for p in pods if p.finished is not None), default=None))
    if deadline_at is not None and now is not None and now >= deadline_at:
        return Verdict("Failed", "DeadlineExceeded", DEADLINE_MESSAGE, deadline_at)
    if completions is None and successes and not active:  # a work queue: one succeeded, none runs
        return Verdict("Complete", "CompletionsReached", COMPLETE_MESSAGE, ended[-1].finished if ended else None)
    return None


def _ranges(indexes: list[int]) -> str:
    """completedIndexes' form: "0-2,4"."""
    parts: list[tuple[int, int]] = []
    for i in indexes:
        if parts and parts[-1][1] == i - 1:
            parts[-1] = (parts[-1][0], i)
        else:
            parts.append((i, i))
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)
