"""kubectl's columns for each kind (the printers of k8s.io/kubernetes/pkg/printers/internalversion)."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from podnet.api import fields, labels
from podnet.api.defaults import SERVICE_TYPE
from podnet.api.objects import KubeObject
from podnet.controlplane.pods import is_sidecar
from podnet.output import age

Row = list[str]
NONE = "<none>"
MAX_LISTED = 3  # kubectl lists three endpoints, then "+ N more..."


def _age(obj: KubeObject) -> str:
    # podnet's commands stamp creationTimestamp (the running cluster: when the object was
    # admitted; offline: the command's start); an object without one reads <unknown>
    return age.since(obj.metadata.get("creationTimestamp"))


def _more(items: list[str]) -> str:
    if not items:
        return NONE
    shown = ",".join(items[:MAX_LISTED])
    return shown + (f" + {len(items) - MAX_LISTED} more..." if len(items) > MAX_LISTED else "")


def _selector_text(selector: dict[str, Any] | None) -> str:
    if not selector:
        return NONE

    return str(labels.from_label_selector(selector)) or NONE


def _map_text(mapping: dict[str, str] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((mapping or {}).items())) or NONE


def _containers(spec: dict[str, Any]) -> tuple[str, str]:
    containers = (spec.get("template") or {}).get("spec", {}).get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


# --- per kind -----------------------------------------------------------------------------


def pod_row(o: KubeObject, wide: bool) -> Row:
    status = o.status
    statuses = status.get("containerStatuses") or []
    # kubectl counts native sidecars (init containers with restartPolicy Always) as containers
    sidecars = {c.get("name") for c in o.spec.get("initContainers") or [] if is_sidecar(c)}
    total = len(o.spec.get("containers") or []) + len(sidecars)
    ready = sum(1 for c in statuses if c.get("ready")) + sum(
        1 for c in status.get("initContainerStatuses") or [] if c.get("name") in sidecars and c.get("ready") and c.get("started"))
    phase = fields.phase(o) or "Pending"
    shown = status.get("reason") or phase
    initializing = _initializing(o, sidecars)
    if initializing:  # kubectl: the first init container not done says how far the pod is
        shown = initializing
    for c in [] if initializing else statuses:  # a waiting (ErrImagePull, CrashLoopBackOff …) or terminated container's reason
        waiting, terminated = (c.get("state") or {}).get("waiting"), (c.get("state") or {}).get("terminated")
        if waiting and waiting.get("reason"):
            shown = waiting["reason"]
        elif terminated and terminated.get("reason"):
            shown = terminated["reason"]
    if fields.is_terminating(o):
        shown = "Terminating"
    restarts = str(sum(int(c.get("restartCount") or 0) for c in statuses) + sum(
        int(c.get("restartCount") or 0) for c in status.get("initContainerStatuses") or [] if c.get("name") in sidecars))
    row = [o.name, f"{ready}/{total}", shown, restarts, _age(o)]
    if wide:
        gates = o.spec.get("readinessGates") or []
        conditions = fields.condition_statuses(o)
        gate_text = f"{sum(1 for g in gates if conditions.get(g.get('conditionType')) == 'True')}/{len(gates)}" if gates else NONE
        row += [fields.pod_ip(o) or NONE, o.spec.get("nodeName") or NONE, NONE, gate_text]
    return row


def _initializing(o: KubeObject, sidecars: set) -> str | None:
    """kubectl's printPod for a pod whose init containers are not all done: "Init:i/n" at the
    first one neither completed nor (a sidecar) started, or its waiting or terminated reason;
    None once the pod is initialized."""
    if fields.condition_statuses(o).get("Initialized") == "True":
        return None
    total = len(o.spec.get("initContainers") or [])
    for index, c in enumerate(o.status.get("initContainerStatuses") or []):
        state = c.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated is not None and terminated.get("exitCode") == 0:
            continue
        if c.get("name") in sidecars and c.get("started"):
            continue
        if terminated is not None:
            return "Init:" + (terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}")
        if waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            return "Init:" + waiting["reason"]
        return f"Init:{index}/{total}"
    return None


def _service_ports(spec: dict[str, Any]) -> str:
    parts = []
    for p in spec.get("ports") or []:
        text = str(p.get("port"))
        if p.get("nodePort"):
            text += f":{p['nodePort']}"
        parts.append(f"{text}/{fields.protocol(p)}")
    return ",".join(parts) or NONE


def _external_ip(o: KubeObject) -> str:
    spec = o.spec
    stype = spec.get("type", SERVICE_TYPE)
    external = list(spec.get("externalIPs") or [])
    if stype == "ExternalName":
        return spec.get("externalName") or NONE
    if stype == "LoadBalancer":
        ingress = fields.load_balancer_addresses(o)
        return ",".join(sorted(ingress + external)) or "<pending>"
    return ",".join(external) or NONE


def service_row(o: KubeObject, wide: bool) -> Row:
    spec = o.spec
    row = [o.name, spec.get("type", SERVICE_TYPE), spec.get("clusterIP") or NONE, _external_ip(o), _service_ports(spec), _age(o)]
    if wide:
        row.append(_map_text(spec.get("selector")))
    return row


def endpoints_row(o: KubeObject, wide: bool) -> Row:
    items = []  # kubectl's formatEndpoints: ports outer, addresses inner
    for subset in o.body.get("subsets") or []:
        ports = subset.get("ports") or [{}]
        for port in ports:
            for address in subset.get("addresses") or []:
                items.append(f"{address['ip']}:{port['port']}" if port.get("port") else address["ip"])
    return [o.name, _more(items), _age(o)]


def endpointslice_row(o: KubeObject, wide: bool) -> Row:
    ports = o.body.get("ports")
    port_text = _more([str(p.get("port")) for p in ports]) if ports else "<unset>"
    addresses = [a for e in o.body.get("endpoints") or [] for a in e.get("addresses") or []]
    return [o.name, o.body.get("addressType", ""), port_text, _more(addresses) if addresses else "<unset>", _age(o)]


def job_row(o: KubeObject, wide: bool) -> Row:
    # kubectl's printJob: STATUS from the conditions, COMPLETIONS succeeded/completions, DURATION
    status = o.status
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    shown = ("Complete" if conditions.get("Complete") == "True" else "Failed" if conditions.get("Failed") == "True"
             else "Suspended" if o.spec.get("suspend") else "Running")
    started, finished = status.get("startTime"), status.get("completionTime")
    duration = age.between(started, finished) if started and finished else age.since(started) if started else ""
    row = [o.name, shown, f"{status.get('succeeded', 0)}/{o.spec.get('completions', 1)}", duration, _age(o)]
    if wide:
        row += [*_containers(o.spec), _selector_text(o.spec.get("selector"))]
    return row


def deployment_row(o: KubeObject, wide: bool) -> Row:
    status = o.status
    replicas = o.spec.get("replicas", 1)
    row = [o.name, f"{status.get('readyReplicas', 0)}/{replicas}", str(status.get("updatedReplicas", 0)),
           str(status.get("availableReplicas", 0)), _age(o)]
    if wide:
        row += [*_containers(o.spec), _selector_text(o.spec.get("selector"))]
    return row


def replicaset_row(o: KubeObject, wide: bool) -> Row:
    status = o.status
    row = [o.name, str(o.spec.get("replicas", 1)), str(status.get("replicas", 0)), str(status.get("readyReplicas", 0)), _age(o)]
    if wide:
        row += [*_containers(o.spec), _selector_text(o.spec.get("selector"))]
    return row


def statefulset_row(o: KubeObject, wide: bool) -> Row:
    status = o.status
    row = [o.name, f"{status.get('readyReplicas', 0)}/{o.spec.get('replicas', 1)}", _age(o)]
    if wide:
        row += list(_containers(o.spec))
    return row


def daemonset_row(o: KubeObject, wide: bool) -> Row:
    s = o.status
    node_selector = ((o.spec.get("template") or {}).get("spec") or {}).get("nodeSelector")
    row = [o.name, str(s.get("desiredNumberScheduled", 0)), str(s.get("currentNumberScheduled", 0)),
           str(s.get("numberReady", 0)), str(s.get("updatedNumberScheduled", 0)), str(s.get("numberAvailable", 0)),
           _map_text(node_selector), _age(o)]
    if wide:
        row += [*_containers(o.spec), _selector_text(o.spec.get("selector"))]
    return row


def networkpolicy_row(o: KubeObject, wide: bool) -> Row:
    selector = o.spec.get("podSelector") or {}
    return [o.name, _selector_text(selector) if selector else NONE, _age(o)]


def ingress_row(o: KubeObject, wide: bool) -> Row:
    hosts = [r.get("host") or "*" for r in o.spec.get("rules") or []] or ["*"]
    ingress = fields.load_balancer_addresses(o)
    ports = "80, 443" if o.spec.get("tls") else "80"
    return [o.name, o.spec.get("ingressClassName") or NONE, ",".join(dict.fromkeys(hosts)), ",".join(ingress), ports, _age(o)]


def ingressclass_row(o: KubeObject, wide: bool) -> Row:
    params = o.spec.get("parameters")
    param_text = f"{params.get('kind')}/{params.get('name')}" if params else NONE
    return [o.name, o.spec.get("controller", ""), param_text, _age(o)]


def node_row(o: KubeObject, wide: bool) -> Row:
    ready = fields.is_ready(o)
    roles = sorted(k.split("/", 1)[1] for k in o.labels if k.startswith("node-role.kubernetes.io/")) or [NONE]
    info = o.status.get("nodeInfo") or {}
    state = "Ready" if ready else "NotReady"
    if o.spec.get("unschedulable"):
        state += ",SchedulingDisabled"
    row = [o.name, state, ",".join(roles), _age(o), info.get("kubeletVersion", "")]
    if wide:
        addresses = fields.node_addresses(o)
        row += [addresses.get("InternalIP", NONE), addresses.get("ExternalIP", NONE), info.get("osImage", ""),
                info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]
    return row


def namespace_row(o: KubeObject, wide: bool) -> Row:
    return [o.name, fields.phase(o) or "Active", _age(o)]


def secret_row(o: KubeObject, wide: bool) -> Row:
    data = len(o.body.get("data") or {}) + len(o.body.get("stringData") or {})
    return [o.name, o.body.get("type", "Opaque"), str(data), _age(o)]


def configmap_row(o: KubeObject, wide: bool) -> Row:
    return [o.name, str(len(o.body.get("data") or {}) + len(o.body.get("binaryData") or {})), _age(o)]


def admin_network_policy_row(o: KubeObject, wide: bool) -> Row:
    # the CRD's printer column: .spec.priority, a string column
    priority = o.spec.get("priority")
    return [o.name, "" if priority is None else str(priority), _age(o)]


def baseline_admin_network_policy_row(o: KubeObject, wide: bool) -> Row:
    return [o.name, _age(o)]


def authorization_policy_row(o: KubeObject, wide: bool) -> Row:
    # Istio's CRD printer columns: Action (.spec.action; empty when unset, which means ALLOW), Age
    return [o.name, str(o.spec.get("action") or ""), _age(o)]


def http_route_row(o: KubeObject, wide: bool) -> Row:
    # Gateway API's CRD printer columns: Hostnames (.spec.hostnames), Age
    hostnames = o.spec.get("hostnames")
    return [o.name, json.dumps(hostnames, separators=(",", ":")) if hostnames else "", _age(o)]


def peer_authentication_row(o: KubeObject, wide: bool) -> Row:
    # Istio's CRD printer columns: Mode (.spec.mtls.mode), Age
    return [o.name, str((o.spec.get("mtls") or {}).get("mode") or ""), _age(o)]


def serviceaccount_row(o: KubeObject, wide: bool) -> Row:
    return [o.name, str(len(o.body.get("secrets") or [])), _age(o)]


def _created_at(o: KubeObject) -> str:
    """Roles print their creation time itself (RFC 3339, UTC), not an age; Go's zero time if unset."""
    stamp = age.parse(o.metadata.get("creationTimestamp"))
    if stamp is None:
        return "0001-01-01T00:00:00Z"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(stamp)))


def role_row(o: KubeObject, wide: bool) -> Row:
    return [o.name, _created_at(o)]


def binding_row(o: KubeObject, wide: bool) -> Row:
    ref = o.body.get("roleRef") or {}
    row = [o.name, f"{ref.get('kind', '')}/{ref.get('name', '')}", _age(o)]
    if wide:  # rbac.SubjectsStrings: ServiceAccounts as namespace/name, each column joined by ", "
        subjects = o.body.get("subjects") or []
        users = [s.get("name", "") for s in subjects if s.get("kind") == "User"]
        groups = [s.get("name", "") for s in subjects if s.get("kind") == "Group"]
        accounts = [f"{s.get('namespace', '')}/{s.get('name', '')}" for s in subjects if s.get("kind") == "ServiceAccount"]
        row += [", ".join(users), ", ".join(groups), ", ".join(accounts)]
    return row


Printer = Callable[[KubeObject, bool], Row]

# kind -> (headers, wide extra headers, row function)
COLUMNS: dict[str, tuple[list[str], list[str], Printer]] = {
    "Pod": (["NAME", "READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"], pod_row),
    "Service": (["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], ["SELECTOR"], service_row),
    "Endpoints": (["NAME", "ENDPOINTS", "AGE"], [], endpoints_row),
    "EndpointSlice": (["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], [], endpointslice_row),
    "Deployment": (["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"], deployment_row),
    "Job": (["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"], job_row),
    "ReplicaSet": (["NAME", "DESIRED", "CURRENT", "READY", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"], replicaset_row),
    "StatefulSet": (["NAME", "READY", "AGE"], ["CONTAINERS", "IMAGES"], statefulset_row),
    "DaemonSet": (["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"],
                  ["CONTAINERS", "IMAGES", "SELECTOR"], daemonset_row),
    "NetworkPolicy": (["NAME", "POD-SELECTOR", "AGE"], [], networkpolicy_row),
    "Ingress": (["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"], [], ingress_row),
    "IngressClass": (["NAME", "CONTROLLER", "PARAMETERS", "AGE"], [], ingressclass_row),
    "AdminNetworkPolicy": (["NAME", "PRIORITY", "AGE"], [], admin_network_policy_row),
    "BaselineAdminNetworkPolicy": (["NAME", "AGE"], [], baseline_admin_network_policy_row),
    "AuthorizationPolicy": (["NAME", "ACTION", "AGE"], [], authorization_policy_row),
    "HTTPRoute": (["NAME", "HOSTNAMES", "AGE"], [], http_route_row),
    "PeerAuthentication": (["NAME", "MODE", "AGE"], [], peer_authentication_row),
    "Node": (["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
             ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"], node_row),
    "Namespace": (["NAME", "STATUS", "AGE"], [], namespace_row),
    "Secret": (["NAME", "TYPE", "DATA", "AGE"], [], secret_row),
    "ConfigMap": (["NAME", "DATA", "AGE"], [], configmap_row),
    "ServiceAccount": (["NAME", "SECRETS", "AGE"], [], serviceaccount_row),
    "Role": (["NAME", "CREATED AT"], [], role_row),
    "ClusterRole": (["NAME", "CREATED AT"], [], role_row),
    "RoleBinding": (["NAME", "ROLE", "AGE"], ["USERS", "GROUPS", "SERVICEACCOUNTS"], binding_row),
    "ClusterRoleBinding": (["NAME", "ROLE", "AGE"], ["USERS", "GROUPS", "SERVICEACCOUNTS"], binding_row),
}
