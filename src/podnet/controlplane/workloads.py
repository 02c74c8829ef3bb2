"""Workload controllers: Deployment → ReplicaSet → Pods, StatefulSet, DaemonSet.

Like the real controllers, a ReplicaSet first adopts existing pods that match its selector
(its own, or orphans) and only creates the missing ones, so objects piped in from a live
cluster (Deployment, ReplicaSet and Pods together) are not doubled.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import defaultdict
from typing import Any, Callable, Iterable, Iterator

from podnet.api import fields
from podnet.api import labels as selectors
from podnet.api.objects import KubeObject, deterministic_uid
from podnet import naming
from podnet.controlplane import jobs
from podnet.controlplane.defaults import default
from podnet.controlplane.pods import apply_pod_spec_defaults


def owner_reference(owner: KubeObject) -> dict[str, Any]:
    return {
        "apiVersion": owner.body["apiVersion"],
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.metadata.get("uid") or deterministic_uid(owner.kind, owner.namespace, owner.name),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def template_json(owner: KubeObject) -> str:
    """The owner's pod template, serialised once; each pod parses its own copy from it
    (json's C code copies far faster than copy.deepcopy)."""
    return json.dumps(owner.spec.get("template") or {})


def pod_from_template(owner: KubeObject, name: str, extra_labels: dict[str, str], template: str) -> KubeObject:
    template = json.loads(template)
    metadata = template.get("metadata") or {}
    spec = template.get("spec") or {}
    apply_pod_spec_defaults(spec)
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **{k: v for k, v in metadata.items() if k not in ("name", "namespace", "labels")},
            "name": name,
            "namespace": owner.namespace,
            "generateName": name.rsplit("-", 1)[0] + "-" if owner.kind != "StatefulSet" else None,
            "labels": {**(metadata.get("labels") or {}), **extra_labels},
            "uid": deterministic_uid("Pod", owner.namespace, name),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": spec,
    }
    if body["metadata"]["generateName"] is None:
        del body["metadata"]["generateName"]
    return KubeObject("Pod", owner.namespace, name, body, owner.source)


class PodIndex:
    """Pods by namespace, for the controllers' selector lookups."""

    def __init__(self, pods: list[KubeObject]):
        self.by_namespace: dict[str, list[KubeObject]] = defaultdict(list)
        for pod in pods:
            self.by_namespace[pod.namespace].append(pod)

    def add(self, pod: KubeObject) -> None:
        self.by_namespace[pod.namespace].append(pod)

    def claim(self, owner: KubeObject, selector: selectors.Selector) -> list[KubeObject]:
        """Pods the owner controls, adopting matching orphans (ControllerRefManager)."""
        claimed = []
        for pod in self.by_namespace.get(owner.namespace, ()):
            if not is_active(pod):
                continue
            ref = fields.controller_of(pod)
            if ref is not None:
                if ref.get("kind") == owner.kind and ref.get("name") == owner.name:
                    claimed.append(pod)
            elif selector.matches(pod.labels):
                pod.metadata_for_update()["ownerReferences"] = [*(pod.metadata.get("ownerReferences") or []), owner_reference(owner)]
                claimed.append(pod)
        return claimed


def is_active(pod: KubeObject) -> bool:
    """FilterActivePods: a pod finished or being deleted is no replica of its controller."""
    return not fields.is_terminal(pod) and not fields.is_terminating(pod)


def active_by_owner(pods: Iterable[KubeObject]) -> dict[tuple[str, str, str], list[KubeObject]]:
    """The active pods of each controller, by its (kind, namespace, name)."""
    owned: dict[tuple[str, str, str], list[KubeObject]] = defaultdict(list)
    for pod in pods:
        ref = fields.controller_of(pod)
        if ref and is_active(pod):
            owned[(ref.get("kind"), pod.namespace, ref.get("name"))].append(pod)
    return owned


def fill_owner_status(workload: KubeObject, active: list[KubeObject]) -> None:
    """A ReplicaSet's, StatefulSet's or DaemonSet's status from its active pods (a DaemonSet
    wants one on each node it has one on)."""
    fill_workload_status(workload, active, desired=len(active) if workload.kind == "DaemonSet" else None)


def deployment_replicasets(deployment: KubeObject, existing: list[KubeObject]) -> list[KubeObject]:
    """The ReplicaSets a Deployment has: those already owned by it, or one new one."""
    owned = [rs for rs in existing
             if (ref := fields.controller_of(rs)) and ref.get("kind") == "Deployment" and ref.get("name") == deployment.name
             and rs.namespace == deployment.namespace]
    if owned:
        return []
    template = copy.deepcopy(deployment.spec.get("template") or {})
    pod_hash = naming.template_hash(template, int(deployment.status.get("collisionCount") or 0))
    name = f"{deployment.name}-{pod_hash}"
    template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
    selector = copy.deepcopy(deployment.spec.get("selector") or {})
    selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
    body = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": deployment.namespace,
            "labels": {**(template["metadata"].get("labels") or {})},
            "annotations": {"deployment.kubernetes.io/desired-replicas": str(_replicas(deployment)),
                            "deployment.kubernetes.io/max-replicas": str(_replicas(deployment)),
                            "deployment.kubernetes.io/revision": "1"},
            "uid": deterministic_uid("ReplicaSet", deployment.namespace, name),
            "ownerReferences": [owner_reference(deployment)],
        },
        "spec": {"replicas": _replicas(deployment), "selector": selector, "template": template},
    }
    return [KubeObject("ReplicaSet", deployment.namespace, name, body, deployment.source)]


def _replicas(obj: KubeObject) -> int:
    value = obj.spec.get("replicas")
    return 1 if value is None else int(value)


def replicaset_pods(rs: KubeObject, index: PodIndex) -> list[KubeObject]:
    """New pods for a ReplicaSet, after adopting what exists."""
    selector = selectors.from_label_selector(rs.spec.get("selector"))
    have = index.claim(rs, selector)
    created = []
    labels = dict(((rs.spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
    taken = {p.name for p in index.by_namespace.get(rs.namespace, ())}
    template = template_json(rs)
    names = replica_names(rs, taken)
    while len(have) + len(created) < _replicas(rs):
        created.append(pod_from_template(rs, next(names), labels, template))
    return created


def replica_names(rs: KubeObject, taken: set[str]) -> Iterator[str]:
    """The names a ReplicaSet gives its new pods, in order: generated ones not `taken` (which
    it extends)."""
    return free_names(f"{rs.name}-", taken)


def free_names(prefix: str, taken: set[str]) -> Iterator[str]:
    """Names generated from `prefix` (generateName), in order, skipping and extending `taken`."""
    for attempt in itertools.count():
        name = naming.generate_name(prefix, str(attempt))
        if name not in taken:
            taken.add(name)
            yield name


def replicas_of(obj: KubeObject) -> int:
    """spec.replicas, defaulted to 1."""
    return _replicas(obj)


def statefulset_pods(sts: KubeObject, index: PodIndex) -> list[KubeObject]:
    """<name>-0 … <name>-(N-1), each with hostname and subdomain for the governing Service."""
    existing = {p.name: p for p in index.by_namespace.get(sts.namespace, ())}
    revision = f"{sts.name}-{naming.template_hash(sts.spec.get('template') or {})}"
    template = template_json(sts)
    created = []
    for ordinal in range(_replicas(sts)):
        name = f"{sts.name}-{ordinal}"
        if name in existing:
            continue
        pod = pod_from_template(sts, name, {
            "apps.kubernetes.io/pod-index": str(ordinal),
            "controller-revision-hash": revision,
            "statefulset.kubernetes.io/pod-name": name,
        }, template)
        pod.spec["hostname"] = name
        if sts.spec.get("serviceName"):
            pod.spec["subdomain"] = sts.spec["serviceName"]
        created.append(pod)
    return created


def daemonset_pods(ds: KubeObject, node_names: list[str], index: PodIndex,
                   feasible: Callable[[dict[str, Any]], list[str]]) -> list[tuple[KubeObject, str]]:
    """One pod per node the template can run on; each comes back with its node."""
    template_spec = (ds.spec.get("template") or {}).get("spec") or {}
    revision = naming.template_hash(ds.spec.get("template") or {})[:10]
    present = {p.spec.get("nodeName") for p in index.by_namespace.get(ds.namespace, ())
               if (ref := fields.controller_of(p)) and ref.get("kind") == "DaemonSet" and ref.get("name") == ds.name}
    template = template_json(ds)
    created = []
    for node in feasible(template_spec):
        if node in present:
            continue
        name = naming.generate_name(f"{ds.name}-", node)
        pod = pod_from_template(ds, name, {"controller-revision-hash": revision, "pod-template-generation": "1"}, template)
        pod.spec["nodeName"] = node
        created.append((pod, node))
    return created


JOB_UID_LABEL, JOB_NAME_LABEL = "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name"


def apply_job_defaults(job: KubeObject) -> None:
    """The API server's defaults for a Job (its uid stamped first): one completion, one pod at
    a time, the selector by its uid and the labels it puts on the pod template."""
    spec = job.spec
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1  # (parallelism alone: a work queue, done when one pod succeeded)
    for key, value in (("parallelism", 1), ("backoffLimit", 6), ("completionMode", "NonIndexed"), ("suspend", False),
                       ("podReplacementPolicy", "TerminatingOrFailed")):
        default(spec, key, value)
    if spec.get("manualSelector"):
        return  # the user's selector and labels, as given
    uid = job.metadata.get("uid", "")
    labels = {JOB_UID_LABEL: uid, JOB_NAME_LABEL: job.name, "controller-uid": uid, "job-name": job.name}
    spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}
    template = spec.setdefault("template", {})
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**labels, **(metadata.get("labels") or {})}


def job_pods(job: KubeObject, index: PodIndex, observed: jobs.Observed | None = None) -> list[KubeObject]:
    """The pods the Job controller makes now (controlplane/jobs.py decides how many and which
    indexes), after adopting what exists: offline its first wave; on a running cluster
    (`observed`: kubelet's word on its pods and the time) the next ones as earlier ones finish."""
    index.claim(job, selectors.from_label_selector(job.spec.get("selector")))  # orphans adopted
    owned = [p for p in index.by_namespace.get(job.namespace, ()) if _controlled_by(p, job)]
    decision = job_decision(job, owned, observed)
    labels = dict(((job.spec.get("template") or {}).get("metadata") or {}).get("labels") or {})
    taken = {p.name for p in index.by_namespace.get(job.namespace, ())}
    template = template_json(job)
    names = replica_names(job, taken)
    made = []
    for completion in decision.create:
        if completion is None:
            made.append(pod_from_template(job, next(names), labels, template))
            continue
        name = next(free_names(f"{job.name}-{completion}-", taken))
        pod = pod_from_template(job, name, {**labels, jobs.INDEX_KEY: str(completion)}, template)
        pod.metadata_for_update().setdefault("annotations", {})[jobs.INDEX_KEY] = str(completion)
        pod.spec["hostname"] = f"{job.name}-{completion}"
        for container in [*(pod.spec.get("initContainers") or []), *(pod.spec.get("containers") or [])]:
            env = container.setdefault("env", [])
            if not any(e.get("name") == jobs.INDEX_ENV for e in env):
                env.append({"name": jobs.INDEX_ENV, "valueFrom": {"fieldRef": {
                    "fieldPath": f"metadata.annotations['{jobs.INDEX_KEY}']"}}})
        made.append(pod)
    return made


def _controlled_by(pod: KubeObject, owner: KubeObject) -> bool:
    ref = fields.controller_of(pod)
    return ref is not None and ref.get("kind") == owner.kind and ref.get("name") == owner.name


def job_members(pods: Iterable[KubeObject], observed: jobs.Observed | None) -> list[jobs.JobPod]:
    """The Job's pods as its controller counts them: kubelet's word where there is one (a
    running cluster), else the pod's own status (one piped in from a live cluster may be done)."""
    members = []
    for pod in pods:
        outcome = observed.pods.get(pod.ref) if observed is not None else None
        statuses = pod.status.get("containerStatuses") or []
        if outcome is not None:
            phase, finished, restarts, ready = outcome.phase, outcome.finished, outcome.restarts, outcome.ready
        else:
            phase = fields.phase(pod)
            ended = [jobs.parse_timestamp(((s.get("state") or {}).get("terminated") or {}).get("finishedAt"))
                     for s in statuses]
            finished = max((t for t in ended if t is not None), default=None)
            restarts, ready = sum(int(s.get("restartCount") or 0) for s in statuses), fields.is_ready(pod)
        if phase not in (jobs.SUCCEEDED, jobs.FAILED):
            phase = jobs.ACTIVE
        members.append(jobs.JobPod(pod.name, phase, jobs.pod_index(pod.metadata), finished, restarts, ready))
    return members


def job_decision(job: KubeObject, pods: Iterable[KubeObject], observed: jobs.Observed | None) -> jobs.JobSync:
    """jobs.sync for `job` with its `pods`: started when the running cluster first saw it,
    offline at its creationTimestamp (if it has one)."""
    start = observed.started.get(job.ref, observed.now) if observed is not None else \
        jobs.parse_timestamp(job.metadata.get("creationTimestamp"))
    return jobs.sync(job.spec, job_members(pods, observed), start, observed.now if observed is not None else None)


def fill_job_status(job: KubeObject, pods: list[KubeObject], observed: jobs.Observed | None = None) -> None:
    """The Job's status as its controller reports it (`pods`: those it controls)."""
    job.body["status"] = job_decision(job, [p for p in pods if _controlled_by(p, job)], observed).status


def fill_workload_status(obj: KubeObject, pods: list[KubeObject], desired: int | None = None) -> None:
    total = len(pods)
    ready = sum(1 for p in pods if fields.is_ready(p))
    if obj.kind == "DaemonSet":
        obj.body["status"] = {
            "currentNumberScheduled": total, "desiredNumberScheduled": desired or 0, "numberMisscheduled": 0,
            "numberReady": ready, "numberAvailable": ready, "updatedNumberScheduled": total,
            "numberUnavailable": max(0, (desired or 0) - ready), "observedGeneration": 1,
        }
        return
    status: dict[str, Any] = {"replicas": total, "observedGeneration": 1}
    if ready:
        status["readyReplicas"] = ready
        status["availableReplicas"] = ready
    if obj.kind == "StatefulSet":
        status.update({"currentReplicas": total, "updatedReplicas": total, "availableReplicas": ready})
    elif obj.kind == "ReplicaSet":
        status["fullyLabeledReplicas"] = total
    elif obj.kind == "Deployment":
        status["updatedReplicas"] = total
        wanted = _replicas(obj)
        status["conditions"] = [
            {"type": "Available", "status": "True" if ready >= wanted else "False",
             "reason": "MinimumReplicasAvailable" if ready >= wanted else "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ]
        if ready < total:
            status["unavailableReplicas"] = total - ready
    obj.body["status"] = status
