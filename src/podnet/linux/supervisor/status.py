"""Kubelet's word on running pods: what `get` shows and what readiness the control plane uses.

The control plane computes each pod's status as it would be once started; once its
containers run, kubelet knows better: probes decide readiness, containers restart, exit or
back off. These functions lay that over the computed bodies. Pure: they read the runtime's
sandboxes (podnet.linux.runtime.PodSandbox) and the prober's verdicts, and change nothing.

`probed` / `container_state`: pod ref -> container name -> {"ready": bool, "started": bool},
as the prober reported it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping
from typing import Any

from podnet import images
from podnet.config import go_duration
from podnet.api.objects import KubeObject
from podnet.api import fields
from podnet.controlplane import Cluster, jobs, workloads
from podnet.controlplane.pods import serving_containers
from podnet.linux.runtime import app_containers_done
from podnet.linux.supervisor.events import timestamp

ContainerState = Mapping[str, Mapping[str, Mapping[str, bool]]]


def live_readiness(container_state: ContainerState, pod: KubeObject, standins: bool = True) -> bool | None:
    """Whether kubelet counts the pod's containers ready: never while a container's image cannot
    be pulled (images: strict, `standins` False); its probes' verdict once it runs; before
    that, a pod with a readiness or startup probe starts out not ready (kubelet's initial
    result is Failure), others follow the offline rule (None)."""
    containers = serving_containers(pod)  # sidecars count as kubelet counts them
    if any(images.behaviour_of(c, standins).runs == images.UNPULLABLE for c in containers):
        return False
    state = container_state.get(pod.ref)
    if state:
        return all(c.get("ready") for c in list(state.values()))  # the prober's thread adds to it
    if any(c.get("readinessProbe") or c.get("startupProbe") for c in containers):
        return False
    return None


def runtime_status(body: dict[str, Any], sandbox, probed: Mapping[str, Mapping[str, bool]]) -> None:
    """What kubelet reports once containers run: readiness and started from the probes,
    restarts, terminated or waiting states, and the pod's phase when every container has
    finished (restartPolicy Never / OnFailure). Changes `body` in place."""
    status = body["status"]
    entries = {e.get("name"): e for e in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])}
    for container in sandbox.containers:
        entry = entries.get(container.name)
        if entry is None:
            continue
        entry["restartCount"] = container.restarts
        if container.name in probed:
            entry["ready"] = bool(probed[container.name].get("ready"))
            entry["started"] = bool(probed[container.name].get("started"))
        if container.running:
            started = getattr(container, "started_at", None)
            if started is not None:
                entry["state"] = {"running": {"startedAt": timestamp(started)}}
            continue
        entry["ready"] = False
        entry["started"] = False
        if container.held:  # kubelet has not started it: its pod's sidecars are starting
            entry["state"] = {"waiting": {"reason": "PodInitializing"}}
        elif container.waiting:  # not created: its image cannot be pulled, or kubelet cannot make its config
            entry["state"] = {"waiting": {"reason": container.waiting[0], "message": container.waiting[1]}}
            entry["image"] = container.image
        elif container.next_start:  # kubelet's doBackOff message, with the window it waits
            window = getattr(container, "backoff", None)
            metadata = body["metadata"]
            entry["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message":
                f"back-off {go_duration(window.window) if window else '0s'} restarting failed container="
                f"{container.name} pod={metadata.get('name')}_{metadata.get('namespace')}({metadata.get('uid', '')})"}}
        else:
            code = container.last_exit if container.last_exit is not None else 0
            terminated: dict[str, Any] = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
            started = getattr(container, "started_at", None)
            if started is not None:
                terminated["startedAt"] = timestamp(started)
            if getattr(container, "finished_at", 0.0):
                terminated["finishedAt"] = timestamp(wall_time(container.finished_at))
            entry["state"] = {"terminated": terminated}
    sidecars = {c.name for c in sandbox.containers if c.sidecar}
    if any(not (c.get("ready")) for c in (status.get("containerStatuses") or []) +
           [e for e in status.get("initContainerStatuses") or [] if e.get("name") in sidecars]):
        for condition in status.get("conditions") or []:
            if condition.get("type") in ("Ready", "ContainersReady"):
                condition["status"] = "False"
                condition["reason"] = "ContainersNotReady"
    done = finished_phase(sandbox)
    if done is not None:
        status["phase"] = done
    if any(container.held for container in sandbox.containers):
        # its sidecars have not all started: kubelet's pod is still initializing
        status["phase"] = "Pending"
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Initialized":
                condition.update(status="False", reason="ContainersNotInitialized")
            elif condition.get("type") in ("Ready", "ContainersReady"):
                condition.update(status="False", reason="ContainersNotReady")
    if any(container.waiting for container in sandbox.containers):  # kubelet: a container never started
        status["phase"] = "Pending"


def finished_phase(sandbox) -> str | None:
    """"Succeeded" or "Failed" once the pod is done — its app containers have exited for good
    (restartPolicy Never or OnFailure) and kubelet has stopped its sidecars — else None."""
    if not app_containers_done(sandbox) or any(c.running for c in sandbox.containers if c.sidecar):
        return None
    return "Succeeded" if all(c.last_exit == 0 for c in sandbox.containers if not c.sidecar) else "Failed"


# the system's clock since boot (the runtime's times) to the epoch, read once: a pod's end is
# the same instant at every look (the Job controller orders its pods' ends by it)
_WALL_OFFSET = time.time() - time.monotonic()


def wall_time(monotonic: float) -> float:
    return monotonic + _WALL_OFFSET


def pod_outcome(sandbox, container_state: ContainerState, standins: bool = True) -> jobs.PodOutcome:
    """kubelet's word on a pod for the Job controller: done or not, when, its restarts, ready."""
    phase = finished_phase(sandbox) or "Running"
    apps = [c for c in sandbox.containers if not c.sidecar]
    ended = [c.finished_at for c in apps if c.finished_at]
    finished = wall_time(max(ended)) if phase != "Running" and ended else None
    ready = (phase == "Running" and bool(apps) and all(c.running for c in apps) and sandbox.pod is not None
             and live_readiness(container_state, sandbox.pod, standins) is not False)
    return jobs.PodOutcome(phase, finished, sum(c.restarts for c in apps), ready)


def observed_jobs(sandboxes: Mapping[str, Any], container_state: ContainerState, started: Mapping[str, float],
                  now: float | None = None, standins: bool = True) -> jobs.Observed:
    """What the Job controller reads on a running cluster: kubelet's word on every Job's pod
    that runs (or ran), when each Job started (`started`, by Job ref) and the time."""
    pods = {ref: pod_outcome(s, container_state, standins) for ref, s in list(sandboxes.items())
            if s.pod is not None and (fields.controller_of(s.pod) or {}).get("kind") == "Job"}
    return jobs.Observed(time.time() if now is None else now, pods, started)


def job_status(job: KubeObject, pods: list[KubeObject], observed: jobs.Observed) -> dict[str, Any]:
    """The Job's status by kubelet's word now (the Job controller's count, controlplane/jobs.py):
    what `get` serves between two computations of the cluster."""
    return workloads.job_decision(job, pods, observed).status


def live_digest(sandbox, probed: Mapping[str, Mapping[str, bool]]) -> tuple:
    """What runtime_status would lay over a pod, as a small comparable value: when it changes,
    the served pod changed (the API server's resourceVersion moves, apimeta.ApiMeta.live)."""
    return tuple((c.restarts, c.running, getattr(c, "started_at", None), c.waiting, bool(c.next_start), c.last_exit,
                  getattr(c, "held", False),
                  tuple(sorted((probed.get(c.name) or {}).items())))
                 for c in sandbox.containers)


def job_starts(cluster: Cluster, meta) -> dict[str, float]:
    """When each Job started: when the running cluster first had it (its creationTimestamp)."""
    starts = {}
    for job in cluster.of_kind("Job"):
        created = meta.created(job.key) if meta is not None else None
        at = jobs.parse_timestamp(created)
        if at is not None:
            starts[job.ref] = at
    return starts


def _owned_by(pod: KubeObject, owner: KubeObject) -> bool:
    return pod.namespace == owner.namespace and any(
        ref.get("controller") and ref.get("kind") == owner.kind and ref.get("name") == owner.name
        for ref in pod.metadata.get("ownerReferences") or [])


DROPPED_ANNOTATION = "podnet.dev/dropped-packets"
POLICY_KINDS = ("NetworkPolicy", "AdminNetworkPolicy", "BaselineAdminNetworkPolicy")  # whose drops are counted


def object_bodies(cluster: Cluster, sandboxes: Mapping[str, Any], container_state: ContainerState,
                  drops: Mapping[tuple[str, str], Mapping[str, int]] | None = None,
                  meta=None, only: Collection[tuple] | None = None) -> list[dict[str, Any]]:
    """Every object of the cluster, in key order; running pods with kubelet's status laid over
    a copy of the computed one (the cluster's own bodies are never changed). `drops`: per
    policy ((kind, ref) of a NetworkPolicy, AdminNetworkPolicy or the baseline), the packets the kernel dropped in each direction for it, summed
    over the nodes, shown as the annotation podnet.dev/dropped-packets (`describe` lists it).
    `meta` (apimeta.ApiMeta): stamps the API server's fields on what is served. `only`: those
    keys alone (what changed since the API server's last look)."""
    bodies = []
    chosen = cluster.objects.values() if only is None else [o for k in only if (o := cluster.objects.get(k)) is not None]
    observed = None
    for obj in sorted(chosen, key=lambda o: o.key):
        body = obj.body
        if obj.kind == "Job":
            if observed is None:
                observed = observed_jobs(sandboxes, container_state, job_starts(cluster, meta), standins=cluster.config.standins)
            body = json.loads(json.dumps(body))
            body["status"] = job_status(obj, [p for p in cluster.of_kind("Pod") if _owned_by(p, obj)], observed)
        elif obj.kind == "Pod" and obj.ref in sandboxes:
            body = json.loads(json.dumps(body))  # a copy, and faster than deepcopy
            runtime_status(body, sandboxes[obj.ref], container_state.get(obj.ref) or {})
        elif obj.kind in POLICY_KINDS and drops and (obj.kind, obj.ref) in drops:
            body = json.loads(json.dumps(body))
            counted = drops[(obj.kind, obj.ref)]
            text = ", ".join(f"{direction} {counted[direction]}" for direction in ("ingress", "egress")
                             if direction in counted)
            body["metadata"].setdefault("annotations", {})[DROPPED_ANNOTATION] = text
        bodies.append(meta.stamp(obj, body) if meta is not None else body)
    return bodies


def pods_status(name: str, cluster: Cluster, sandboxes: Mapping[str, Any], container_state: ContainerState | None = None,
                failures: Mapping[tuple[str, str], str] | None = None,
                awaiting: Mapping[tuple[str, str], tuple[float, int]] | None = None) -> dict[str, Any]:
    """What `podnet up` waits on: every pod, whether its containers have a process, whether
    kubelet counts it Ready (`ready`), whether its readiness probe has failed at least once
    (`probeFailed`) and, for one not Ready, why (`reasons`: the failing probe's message, the
    image podnet cannot run, a container that exited); `ready` once every pod that should run does.
    `awaiting`: (ref, container) -> (seconds until its first readiness attempt, its
    initialDelaySeconds), for containers whose readiness probe has not run yet; a pod not Ready
    gets the latest of its containers' as `firstProbeIn` and `initialDelaySeconds`."""
    container_state, failures, awaiting = container_state or {}, failures or {}, awaiting or {}
    pods = []
    for pod in cluster.of_kind("Pod"):
        sandbox = sandboxes.get(pod.ref)
        containers = sandbox.containers if sandbox else []
        running = bool(sandbox) and all(c.process is not None or c.waiting for c in containers)
        live = live_readiness(container_state, pod) if running else False
        ready = bool(running and all(c.running for c in containers) and (live is None or live))
        failed = {c: m for (ref, c), m in list(failures.items()) if ref == pod.ref}
        reasons = [] if ready else [f"container {c.name}: {c.note}" for c in containers if c.note]
        reasons += [f"container {c.name}: {c.waiting[0]}: {c.waiting[1]}" for c in containers if c.waiting]
        reasons += [] if ready else [f"container {c}: readiness probe failed: {m}" for c, m in sorted(failed.items())]
        reasons += [f"container {c.name}: " + ("back-off restarting after exit code " if c.next_start else "exited with code ")
                    + str(c.last_exit) for c in containers if c.process is not None and not c.running]
        first = max((v for (ref, _), v in list(awaiting.items()) if ref == pod.ref), default=None)
        entry = {"pod": pod.ref, "node": pod.spec.get("nodeName"),
                 "ip": pod.status.get("podIP"),
                 "phase": pod.status.get("phase"),
                 "running": running, "ready": ready, "probeFailed": bool(failed) and not ready,
                 "reasons": reasons,
                 "restarting": [c.name for c in containers if c.restarts]}
        if first is not None and not ready:
            entry["firstProbeIn"], entry["initialDelaySeconds"] = round(first[0], 3), first[1]
        pods.append(entry)
    return {"cluster": name, "pods": pods, "ready": all(p["running"] for p in pods if p["phase"] == "Running")}


def sync_status(policies: Mapping[str, Any], synced: Mapping[str, int], errors: Mapping[str, str],
                proxies: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per node, what its kernel holds as far as the supervisor knows (the live `trace` checks
    it, podnet.linux.enforced): `networkPolicy` — the state generation of the last sync that
    succeeded, the last error, the shape of the loaded table; `kubeProxy` — whether a sync is
    pending and its last error. `policies`: node -> NodePolicy, `synced`: node -> generation,
    `errors`: node -> why its last policy sync failed, `proxies`: node -> NodeProxy."""
    nodes: dict[str, dict[str, Any]] = {}
    for node, policy in policies.items():
        shape = policy.loaded_shape()
        nodes.setdefault(node, {})["networkPolicy"] = {
            "generation": synced.get(node), "lastError": errors.get(node),
            "syncs": policy.status.syncs, "failures": policy.status.failures,
            "loaded": shape.to_json() if shape is not None else None}
    for node, proxy in proxies.items():
        nodes.setdefault(node, {})["kubeProxy"] = {"pending": proxy.pending, "lastError": proxy.status.last_error,
                                                   "syncs": proxy.status.syncs, "failures": proxy.status.failures}
    return nodes
