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
from podnet.controlplane import Cluster
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
            entry["state"] = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
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


def job_status(body: dict[str, Any], sandboxes: list) -> None:
    """kubelet's word on a Job's pods laid over its computed status (the Job controller's
    count): those done are succeeded or failed, the Job Complete once enough succeeded. podnet
    runs each completion once: a pod that failed is not replaced (backoffLimit's retries are
    not made), and the Job fails with it when nothing else runs. Changes `body` in place."""
    spec, status = body.get("spec") or {}, body.setdefault("status", {})
    phases = [finished_phase(s) for s in sandboxes]
    succeeded, failed = phases.count("Succeeded"), phases.count("Failed")
    status["active"] = phases.count(None)
    status["ready"] = status.get("ready", 0) if status["active"] else 0
    if succeeded:
        status["succeeded"] = succeeded
    if failed:
        status["failed"] = failed
    started = [c.started_at for s in sandboxes for c in s.containers if getattr(c, "started_at", None)]
    if started and not status.get("startTime"):
        status["startTime"] = timestamp(min(started))  # (its first pod's start)
    ended = [c.finished_at for s in sandboxes for c in s.containers if not c.sidecar and c.finished_at]
    when = timestamp(time.time() - (time.monotonic() - max(ended))) if ended else timestamp()
    completions = spec.get("completions")
    # a work queue (no completions): done once one pod succeeded and none runs
    done = succeeded >= int(completions) if completions is not None else succeeded and not status["active"]
    if done:
        status.update(active=0, ready=0, completionTime=when, conditions=[
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods", "lastTransitionTime": when},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached",
             "message": "Reached expected number of succeeded pods", "lastTransitionTime": when}])
    elif failed and not status["active"]:
        status["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                 "message": "Job has reached the specified backoff limit (podnet runs each pod once: "
                                            "a failed pod is not replaced)", "lastTransitionTime": when}]


def live_digest(sandbox, probed: Mapping[str, Mapping[str, bool]]) -> tuple:
    """What runtime_status would lay over a pod, as a small comparable value: when it changes,
    the served pod changed (the API server's resourceVersion moves, apimeta.ApiMeta.live)."""
    return tuple((c.restarts, c.running, getattr(c, "started_at", None), c.waiting, bool(c.next_start), c.last_exit,
                  getattr(c, "held", False),
                  tuple(sorted((probed.get(c.name) or {}).items())))
                 for c in sandbox.containers)


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
    for obj in sorted(chosen, key=lambda o: o.key):
        body = obj.body
        if obj.kind == "Job":
            body = json.loads(json.dumps(body))
            job_status(body, [s for s in sandboxes.values() if s.pod is not None and _owned_by(s.pod, obj)])
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
