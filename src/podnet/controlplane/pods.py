"""Pods: the API server's defaults, and the status a kubelet would report offline."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from podnet.api import fields
from podnet.api.objects import KubeObject
from podnet.controlplane.defaults import default
from podnet.controlplane.serviceaccounts import apply_pod_service_account

_PROBE_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}


def apply_pod_spec_defaults(spec: dict[str, Any]) -> None:
    """The defaults `kubectl get -o yaml` shows that matter to networking (SetDefaults_PodSpec)."""
    default(spec, "dnsPolicy", "ClusterFirst")
    default(spec, "restartPolicy", "Always")
    default(spec, "schedulerName", "default-scheduler")
    default(spec, "terminationGracePeriodSeconds", 30)
    default(spec, "enableServiceLinks", True)
    apply_pod_service_account(spec)
    for group in ("initContainers", "containers"):
        containers = spec.get(group) or []
        for i, container in enumerate(containers):
            container = containers[i] = dict(container)
            ports = container.get("ports")
            if ports:
                container["ports"] = [{**port, "protocol": fields.protocol(port)} for port in ports]
            image = str(container.get("image") or "")
            default(container, "imagePullPolicy", "Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] else "IfNotPresent")
            for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
                probe = container.get(probe_name)
                if isinstance(probe, dict):
                    probe = container[probe_name] = {**_PROBE_DEFAULTS, **probe}
                    if isinstance(probe.get("httpGet"), dict):
                        probe["httpGet"] = {"path": "/", "scheme": "HTTP", **probe["httpGet"]}


@dataclass(frozen=True)
class NamedPort:
    """A container port with a name: what a Service's targetPort, a NetworkPolicy's port or a
    probe's port may refer to by that name."""

    name: str
    protocol: str  # "TCP" | "UDP" | "SCTP"
    port: int


@dataclass(frozen=True)
class DeclaredHostPort:
    """A hostPort a container asks for, as the API server defaults it."""

    host_ip: str  # "": every address of the node (also what 0.0.0.0 means)
    protocol: str  # "TCP" | "UDP" | "SCTP"
    host_port: int
    container_port: int

    def conflicts(self, other: DeclaredHostPort) -> bool:
        """kube-scheduler's HostPortInfo.CheckConflict: the same port and protocol, on the same
        address or with either one bound to every address."""
        return (self.protocol, self.host_port) == (other.protocol, other.host_port) and \
            (not self.host_ip or not other.host_ip or self.host_ip == other.host_ip)


def declared_host_ports(pod: KubeObject) -> list[DeclaredHostPort]:
    """The hostPorts of the pod's containers, in declaration order. A hostNetwork pod's
    containerPorts are its hostPorts (the API server defaults hostPort to containerPort)."""
    host_network = bool(pod.spec.get("hostNetwork"))
    out = []
    for container in pod.spec.get("containers") or []:
        for port in container.get("ports") or []:
            host_port = port.get("hostPort") or (port.get("containerPort") if host_network else 0)
            if host_port:
                host_ip = port.get("hostIP") or ""
                out.append(DeclaredHostPort("" if host_ip == "0.0.0.0" else host_ip,
                                            fields.protocol(port), int(host_port),
                                            int(port.get("containerPort") or host_port)))
    return out


def serving_containers(pod: KubeObject) -> list[dict[str, Any]]:
    """App containers, and sidecars (init containers with restartPolicy Always), which serve too."""
    sidecars = [c for c in pod.spec.get("initContainers") or [] if is_sidecar(c)]
    return list(pod.spec.get("containers") or []) + sidecars


def named_ports(containers: Iterable[dict[str, Any]]) -> list[NamedPort]:
    """Every named containerPort of the containers, in declaration order, protocol defaulted."""
    out = []
    for container in containers:
        for port in (container or {}).get("ports") or []:
            name, number = port.get("name"), port.get("containerPort")
            if name and isinstance(number, (int, float)) and not isinstance(number, bool):
                out.append(NamedPort(name, fields.protocol(port), int(number)))
    return out


def find_named_port(containers: Iterable[dict[str, Any]], name: str, protocol: str | None = None) -> int | None:
    """The one lookup of a port by name: the first containerPort called `name` (for `protocol`,
    unless None). Over serving_containers(pod) it is the endpoints controllers' FindPort (a
    Service's targetPort; NetworkPolicy ports likewise); over one container, with any
    protocol, kubelet's findPortByName for that container's probes."""
    return next((p.port for p in named_ports(containers) if p.name == name and protocol in (None, p.protocol)), None)


def input_says_containers_not_ready(pod: KubeObject) -> bool:
    conditions = fields.condition_statuses(pod)
    if conditions.get("ContainersReady") == "False":
        return True
    # a Ready=False without a ContainersReady condition: the containers are what is not ready
    return conditions.get("Ready") == "False" and "ContainersReady" not in conditions


def set_containers_ready(pod: KubeObject, ready: bool) -> None:
    """Record kubelet's verdict on the pod's containers (from its probes) as the input condition
    the rules above read; Ready itself still waits for the readiness gates."""
    status = pod.status_for_update()
    conditions = [c for c in status.get("conditions") or [] if c.get("type") not in ("ContainersReady", "Ready")]
    conditions.append({"type": "ContainersReady", "status": "True" if ready else "False"})
    status["conditions"] = conditions


def readiness_gates_open(pod: KubeObject) -> bool:
    conditions = fields.condition_statuses(pod)
    return all(conditions.get(g.get("conditionType")) == "True" for g in pod.spec.get("readinessGates") or [])


def input_says_not_ready(pod: KubeObject) -> bool:
    """Offline, a pod is Ready unless its own status or a readiness gate says otherwise."""
    return input_says_containers_not_ready(pod) or not readiness_gates_open(pod)


def qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed: every container limits cpu and memory, requests equal; BestEffort: nothing set."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    resources = [c.get("resources") or {} for c in containers]
    if not any((r.get("requests") or r.get("limits")) for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                return "Burstable"
    return "Guaranteed"


def _condition(kind: str, ok: bool, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": kind, "status": "True" if ok else "False",
                                 "lastProbeTime": None, "lastTransitionTime": None}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def running_status(pod: KubeObject, host_ip: str, pod_ip: str, ready: bool) -> dict[str, Any]:
    previous = pod.status
    # the conditions written here are replaced, not kept: a pod computed again (a running pod
    # carried over) must not collect a copy of one each time
    extra = [c for c in fields.conditions(pod) if c.get("type") not in
             ("PodReadyToStartContainers", "PodScheduled", "Initialized", "ContainersReady", "Ready")]
    containers_ready = not input_says_containers_not_ready(pod)
    restarts = {c.get("name"): int(c.get("restartCount") or 0)
                for c in (previous.get("containerStatuses") or []) + (previous.get("initContainerStatuses") or [])}
    status = {
        "phase": "Running",
        "conditions": [
            _condition("PodReadyToStartContainers", True),
            _condition("Initialized", True),
            _condition("Ready", ready, None if ready else "ContainersNotReady" if not containers_ready else "ReadinessGatesNotReady"),
            _condition("ContainersReady", containers_ready, None if containers_ready else "ContainersNotReady"),
            _condition("PodScheduled", True),
            *extra,
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "containerStatuses": [
            {
                "name": c.get("name"),
                "image": c.get("image"),
                "imageID": "",
                "ready": containers_ready,
                "restartCount": restarts.get(c.get("name"), 0),
                "started": True,
                "state": {"running": {}},
            }
            for c in pod.spec.get("containers") or []
        ],
        "qosClass": qos_class(pod.spec),
    }
    init = pod.spec.get("initContainers") or []
    if init:  # run to completion before the app (Initialized), or still running beside it: sidecars
        status["initContainerStatuses"] = [
            {"name": c.get("name"), "image": c.get("image"), "imageID": "", "restartCount": restarts.get(c.get("name"), 0),
             **({"ready": containers_ready, "started": True, "state": {"running": {}}} if is_sidecar(c) else
                {"ready": True, "started": False, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}})}
            for c in init]
    return status


def is_sidecar(container: dict[str, Any]) -> bool:
    """A native sidecar: an init container with restartPolicy Always, which runs beside the app."""
    return (container or {}).get("restartPolicy") == "Always"


def pending_status(pod: KubeObject, reason: str, message: str) -> dict[str, Any]:
    return {
        "phase": "Pending",
        "conditions": [_condition("PodScheduled", False, reason, message)],
        "qosClass": qos_class(pod.spec),
    }
