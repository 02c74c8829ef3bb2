"""Pod termination, as the API server, the EndpointSlice controller and kubelet do it together.

A pod that an apply or a delete takes away (a Deployment scaled down, a pod deleted) is not
stopped at once. First it becomes Terminating: the API server sets metadata.deletionTimestamp
(now + the grace period) and deletionGracePeriodSeconds — the grace period is the delete
request's (`podnet delete --grace-period=N`, `--now`) or the pod's
spec.terminationGracePeriodSeconds (30 by default). The supervisor keeps the pod, so marked, in
the cluster it computes, and the control plane does the rest as upstream: the ReplicaSet no
longer counts it (a scale-up makes a new pod with a new name), its address stays taken, and the
EndpointSlice controller publishes it `ready: false, serving: <its readiness>, terminating:
true`. That cluster is published to kube-proxy, the ingress controller and `trace` in the same
apply, so new connections stop going to it (semantics.services.usable_endpoints: ready
endpoints, the serving-terminating ones only when none is ready), while the connections it
already has keep their conntrack entries and its process keeps answering them.

Then kubelet's side runs in a thread of its own, so `apply` returns as before: for every
container at once (kubelet's killContainer per container), the preStop hook if it declares one
(exec — `sleep N` included —, httpGet from the node, or KEP-3960's `sleep` action), then SIGTERM
to its processes, then a wait until they exit or the grace period ends, then SIGKILL. However
short the grace period (`--now`: 1 s) or long the hook, a container has kubelet's minimum of 2 s
between SIGTERM and SIGKILL. A
process that exits at SIGTERM (agnhost netexec does, unless `--delay-shutdown` says to wait)
ends the termination there and then: the grace period is a bound, not a wait. Only when every
container is gone does the supervisor stop the sandbox, detach the pod (its veth, its address)
and let the pod object disappear (core.Supervisor._finish_termination).

Interruptions: `podnet down` sets the supervisor's `stopping` event, every termination gives up
at once and the teardown kills what is left without grace. A supervisor that is killed leaves
the terminating pods and when each grace period ends in its record (record.py); the one that
re-adopts the pods goes on with each termination where the dead one was — the grace period
ends when it was to end, not a whole period after the restart, as kubelet after a restart
counts from the pod's deletionTimestamp (grace_deadline) — and the applied objects (manifests.yaml
and its log, state.py), written in the apply that started the termination, already hold the
state without the pod. `--force` with grace period 0 skips the Terminating state, as a forced
deletion removes the pod object at once (its processes are stopped as before: SIGTERM, 2 s, SIGKILL).
"""

from __future__ import annotations

import copy
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.linux.prober import http_get
from podnet.linux.runtime import Container, PodSandbox, Runtime
from podnet.probes import HTTPGet, ProbeError, http_get_action

DEFAULT_GRACE = 30  # spec.terminationGracePeriodSeconds when the pod does not say
MINIMUM_GRACE = 2  # kubelet's minimumGracePeriodInSeconds: what a container always has after SIGTERM


def grace_period(pod: KubeObject, requested: int | None) -> int:
    """The pod's grace period in seconds: the delete request's when it gives one (kubectl's
    --grace-period, --now: 1), else spec.terminationGracePeriodSeconds."""
    if requested is not None:
        return max(0, int(requested))
    value = pod.spec.get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE if value is None else max(0, int(value))


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC, to the second, as the API server writes metadata times."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def marked_deleted(body: dict[str, Any], now: datetime, grace: int) -> dict[str, Any]:
    """A copy of a pod's body as the API server leaves it after a graceful delete: the time it
    will be gone at the latest (deletionTimestamp = now + grace) and the grace period."""
    marked = copy.deepcopy(body)
    metadata = marked.setdefault("metadata", {})
    metadata["deletionTimestamp"] = timestamp(now + timedelta(seconds=grace))
    metadata["deletionGracePeriodSeconds"] = grace
    return marked


def grace_deadline(metadata: dict[str, Any], grace: int, now: float, resumed: bool) -> float:
    """When a termination's grace period ends, in seconds since the epoch: `grace` from `now`
    for one that begins; for one a dead supervisor began without recording its end (`resumed`),
    the pod's deletionTimestamp (the API server's now + grace, to the second)."""
    stamp = metadata.get("deletionTimestamp") if resumed else None
    if stamp:
        try:
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            pass
    return now + grace


# ---- the preStop hook -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreStop:
    handler: str  # "exec" | "httpGet" | "sleep"
    command: tuple[str, ...] = ()
    http: HTTPGet | None = None
    seconds: int = 0
    error: str | None = None  # a hook kubelet cannot run: it fails (FailedPreStopHook)

    def describe(self) -> str:
        if self.handler == "exec":
            return f"exec {list(self.command)}"
        if self.handler == "sleep":
            return f"sleep {self.seconds}s"
        return f"httpGet {self.http.path if self.http else ''}"


def pre_stop_hook(container: dict[str, Any]) -> PreStop | None:
    """The container's lifecycle.preStop, or None."""
    hook = (container.get("lifecycle") or {}).get("preStop")
    if not hook:
        return None
    if hook.get("exec") is not None:
        return PreStop("exec", tuple(str(arg) for arg in (hook["exec"].get("command") or [])))
    if hook.get("sleep") is not None:
        return PreStop("sleep", seconds=max(0, int(hook["sleep"].get("seconds") or 0)))
    if hook.get("httpGet") is not None:
        try:
            action, error = http_get_action(hook["httpGet"], container)
        except ProbeError as exc:
            return PreStop("httpGet", error=str(exc))
        return PreStop("httpGet", http=action, error=error)
    return PreStop("tcpSocket", error="tcpSocket is not a lifecycle handler kubelet runs")


def run_pre_stop(hook: PreStop, runtime: Runtime, sandbox: PodSandbox, node_netns: str, timeout: float,
                 interrupted: threading.Event, container: str | None = None) -> str | None:
    """Run the hook, for at most `timeout` seconds; why it failed, or None. An exec hook runs
    with `container`'s environment, as kubelet's runs in the container."""
    if hook.error:
        return hook.error
    if hook.handler == "sleep":
        interrupted.wait(min(hook.seconds, max(0.0, timeout)))
        return None
    try:
        if hook.handler == "exec":
            argv = runtime.enter_argv(sandbox, list(hook.command))
            env = runtime.container_environment(sandbox, container) if container is not None else None
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True, env=env)
            deadline = time.monotonic() + timeout
            while process.poll() is None:
                if interrupted.is_set() or time.monotonic() >= deadline:
                    process.kill()
                    process.wait()
                    return None if interrupted.is_set() else f"command {list(hook.command)} timed out"
                interrupted.wait(0.05)
            return None if process.returncode == 0 else \
                f"command {list(hook.command)} exited with {process.returncode}"
        host = hook.http.host or (fields.pod_ip(sandbox.pod) if sandbox.pod is not None else "")
        try:
            http_get(node_netns, host, hook.http, max(0.1, timeout))
        except Exception as exc:  # kubelet's words: the request, then what went wrong
            url = f"{hook.http.scheme.lower()}://{host}:{hook.http.port}{hook.http.path}"
            return f'Get "{url}": {str(exc) or type(exc).__name__}'
        return None
    except Exception as exc:  # a hook that fails does not stop the termination
        return str(exc) or type(exc).__name__


def kill_pod(runtime: Runtime, sandbox: PodSandbox, node_netns: str, deadline: float,
             interrupted: threading.Event, hook_failed: Callable[[str, str], None]) -> dict[str, str]:
    """kubelet's killPod for the containers: each in a thread of its own, its preStop hook, then
    SIGTERM, the wait, SIGKILL (runtime.stop_container). How each container ended, by name."""
    specs = {c.get("name"): c for c in (sandbox.pod.spec.get("containers") or [] if sandbox.pod else [])}
    ended: dict[str, str] = {}

    def stop(container: Container) -> None:
        hook = pre_stop_hook(specs.get(container.name) or {})
        if hook is not None and container.running:
            why = run_pre_stop(hook, runtime, sandbox, node_netns, deadline - time.monotonic(), interrupted,
                               container.name)
            if why is not None and not interrupted.is_set():
                hook_failed(container.name, f"PreStopHook failed: {hook.describe()}: {why}")
        # what is left of the grace period, but never less than kubelet's minimum
        until = max(deadline, time.monotonic() + MINIMUM_GRACE)
        ended[container.name] = runtime.stop_container(container, until, interrupted)

    threads = [threading.Thread(target=stop, args=(c,), name=f"terminate:{sandbox.ref}:{c.name}", daemon=True)
               for c in sandbox.containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ended
