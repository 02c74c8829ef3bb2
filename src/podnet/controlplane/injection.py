"""The mesh's sidecar injector: what Istio's (or Linkerd's) admission webhook does to a new pod.

Whether a pod gets a proxy (the markers users write: Istio's namespace and pod labels, Linkerd's
annotation) and the change the webhook then makes, once, when the pod is created: a pod that already
runs (it has an address) was admitted before and is left as it is — a namespace labelled later
injects only the pods made after, as in a real cluster (`kubectl rollout restart`).

The proxy is a native sidecar (an init container with restartPolicy Always, Istio's default
since 1.27): it starts before the app containers and kubelet holds them until it has started
(holdApplicationUntilProxyStarts comes with it), and it stops once a Job's containers have
exited. The interception is the istio-cni node agent's (no istio-init container; podnet's
supervisor loads the capture table into the pod's namespace). The app's HTTP and TCP probes
are rewritten to the agent's status port, /app-health/<container>/<kind>z (Istio's
rewriteAppHTTPProbers), with the original probes in ISTIO_KUBE_APP_PROBERS: a probe from the
node would otherwise be captured, and refused under STRICT mTLS. Sources: istio/istio
manifests/charts/istio-control/istio-discovery/files/injection-template.yaml,
pkg/kube/inject/app_probe.go; linkerd2 pkg/inject.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podnet.api.objects import KubeObject

# never injected, whatever they say (istio's IgnoredNamespaces)
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "local-path-storage"})
ISTIO_INJECT = "sidecar.istio.io/inject"  # a pod label (or, legacy, an annotation)
ISTIO_INJECTION = "istio-injection"  # a namespace label: enabled / disabled
ISTIO_REV = "istio.io/rev"  # a namespace or pod label: the control plane revision
LINKERD_INJECT = "linkerd.io/inject"  # an annotation, on the namespace or the pod
TLS_MODE_LABEL = "security.istio.io/tlsMode"  # Istio's injector marks a pod with a proxy: "istio"
LINKERD_CONTROL_PLANE_LABEL = "linkerd.io/control-plane-ns"  # Linkerd's injector's mark
PROXY_CONTAINERS = ("istio-proxy", "linkerd-proxy")  # the injected proxy's container, by mesh

PROXY_CONTAINER = {"istio": "istio-proxy", "linkerd": "linkerd-proxy"}
PROXY_IMAGE = {"istio": "docker.io/istio/proxyv2:1.28.0", "linkerd": "cr.l5d.io/linkerd/proxy:edge-25.11.1"}
STATUS_ANNOTATION = "sidecar.istio.io/status"
LINKERD_STATUS_ANNOTATION = "linkerd.io/proxy-version"
REWRITE_PROBES = "sidecar.istio.io/rewriteAppHTTPProbers"  # "false" keeps the app's probes as written
STATUS_PORT = 15020  # the agent's: app health, merged metrics
HEALTH_PORT = 15021  # the proxy's readiness
METRICS_PORT = 15090  # Envoy's Prometheus endpoint
PROBE_KINDS = {"livenessProbe": "livez", "readinessProbe": "readyz", "startupProbe": "startupz"}
# Linkerd's opaque ports (on a pod, its namespace or a Service): connections the proxies carry
# as bytes, never waiting for the client to speak first; the injector gives a pod its
# namespace's, or Linkerd's default (proxy.opaquePorts: the server-speaks-first protocols SMTP
# 25 and 587, MySQL 3306 and Galera 4444, PostgreSQL 5432, Redis 6379, Elasticsearch 9300,
# Memcached 11211)
OPAQUE_PORTS = "config.linkerd.io/opaque-ports"
LINKERD_DEFAULT_OPAQUE_PORTS = "25,587,3306,4444,5432,6379,9300,11211"


# -- injection -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Injection:
    injected: bool
    mesh: str | None  # "istio" or "linkerd" when injected
    reason: str


def injection(pod: KubeObject, namespace: KubeObject | None) -> Injection:
    """Whether `pod` (in `namespace`, its Namespace object if there is one) gets a proxy.

    Istio: the namespace label istio-injection=enabled, or istio.io/rev, or the pod label
    sidecar.istio.io/inject=true call the injector; the pod's label (else its legacy annotation)
    "false" turns it off, "true" on; istio-injection=disabled wins over a pod's "true" (the
    webhook is never called). Linkerd: the annotation linkerd.io/inject (enabled, ingress,
    disabled) on the pod, else on its namespace; any other value injects nothing. A hostNetwork
    pod, or one in a system namespace, is never injected."""
    ns_labels = (namespace.labels if namespace is not None else {}) or {}
    ns_annotations = (namespace.metadata.get("annotations") if namespace is not None else None) or {}
    labels, annotations = pod.labels or {}, pod.metadata.get("annotations") or {}
    if pod.spec.get("hostNetwork"):
        return Injection(False, None, "hostNetwork pods are never injected")
    if pod.namespace in SYSTEM_NAMESPACES:
        return Injection(False, None, f"namespace {pod.namespace} is never injected")
    istio = _istio_injection(ns_labels, labels, annotations)
    if istio is not None:
        return istio
    return _linkerd_injection(ns_annotations, annotations)


def _istio_injection(ns_labels: Mapping[str, str], labels: Mapping[str, str],
                     annotations: Mapping[str, str]) -> Injection | None:
    """Istio's decision, or None if Istio's injector is not called for the pod at all."""
    namespace_says = ns_labels.get(ISTIO_INJECTION)
    pod_label = labels.get(ISTIO_INJECT)
    # (a) whether the webhook is called: the namespace's labels, or the pod's own labels
    if namespace_says == "enabled":
        called = f"namespace label {ISTIO_INJECTION}=enabled"
    elif namespace_says is None and ISTIO_REV in ns_labels:
        called = f"namespace label {ISTIO_REV}={ns_labels[ISTIO_REV]}"
    elif namespace_says is None and ISTIO_REV in labels:
        called = f"pod label {ISTIO_REV}={labels[ISTIO_REV]}"
    elif namespace_says is None and pod_label == "true":
        called = f"pod label {ISTIO_INJECT}=true"
    else:
        if namespace_says == "disabled" and pod_label == "true":
            return Injection(False, None, f"namespace label {ISTIO_INJECTION}=disabled (the pod's "
                                          f"{ISTIO_INJECT}=true is not asked)")
        return None
    # (b) the injector: the pod's label, else its legacy annotation; else the default policy (enabled)
    said, where = (pod_label, "label") if pod_label is not None else (annotations.get(ISTIO_INJECT), "annotation")
    if said and said.lower() not in ("y", "yes", "true", "on"):  # (upstream's injectRequired)
        return Injection(False, None, f"pod {where} {ISTIO_INJECT}={said}")
    return Injection(True, "istio", called)


def _linkerd_injection(ns_annotations: Mapping[str, str], annotations: Mapping[str, str]) -> Injection:
    valid = ("enabled", "ingress", "disabled")
    pod_says, namespace_says = annotations.get(LINKERD_INJECT), ns_annotations.get(LINKERD_INJECT)
    if pod_says is not None and pod_says not in valid:
        return Injection(False, None, f"pod annotation {LINKERD_INJECT}={pod_says} is not one of {', '.join(valid)}")
    if pod_says is None and namespace_says is not None and namespace_says not in valid:
        return Injection(False, None, f"namespace annotation {LINKERD_INJECT}={namespace_says} is not one of "
                                      f"{', '.join(valid)}")
    if pod_says in ("enabled", "ingress"):
        return Injection(True, "linkerd", f"pod annotation {LINKERD_INJECT}={pod_says}")
    if pod_says == "disabled":
        return Injection(False, None, f"pod annotation {LINKERD_INJECT}=disabled")
    if namespace_says in ("enabled", "ingress"):
        return Injection(True, "linkerd", f"namespace annotation {LINKERD_INJECT}={namespace_says}")
    return Injection(False, None, "nothing asks for a proxy")


def proxy_container(pod: KubeObject) -> dict | None:
    """The pod's injected proxy (a native sidecar, or an ordinary container as older injectors
    put it), or None."""
    for group in ("initContainers", "containers"):
        for container in pod.spec.get(group) or []:
            if isinstance(container, dict) and container.get("name") in PROXY_CONTAINERS:
                return container
    return None


def is_meshed(pod: KubeObject) -> bool:
    """Whether a proxy sits beside the pod, as the control plane tells its peers: the injector's
    label (auto-mTLS sends mTLS to such an endpoint, plaintext to any other)."""
    labels = pod.labels or {}
    return labels.get(TLS_MODE_LABEL) == "istio" or LINKERD_CONTROL_PLANE_LABEL in labels


# -- the webhook's change ----------------------------------------------------------------------------


def inject(pod: KubeObject, namespace: KubeObject | None) -> Injection:
    """Give `pod` its proxy if the mesh's markers ask for one and it was not injected (or
    started: it has an address) already. Changes the pod in place; returns the decision."""
    decision = injection(pod, namespace)
    if not decision.injected or proxy_container(pod) is not None or pod.status.get("podIP"):
        return decision
    flavour = decision.mesh or "istio"
    spec = pod.spec
    metadata = pod.metadata_for_update()
    labels = metadata.setdefault("labels", {})
    annotations = metadata.setdefault("annotations", {})
    apps = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    probers = {} if annotations.get(REWRITE_PROBES) == "false" else _rewrite_probes(apps)
    proxy = _proxy_container(pod, flavour, probers)
    spec["initContainers"] = [proxy, *(spec.get("initContainers") or [])]
    if flavour == "istio":
        labels.setdefault(TLS_MODE_LABEL, "istio")
        labels.setdefault("service.istio.io/canonical-name",
                          labels.get("app.kubernetes.io/name") or labels.get("app") or _workload_name(pod))
        labels.setdefault("service.istio.io/canonical-revision",
                          labels.get("app.kubernetes.io/version") or labels.get("version") or "latest")
        annotations[STATUS_ANNOTATION] = json.dumps(
            {"initContainers": [proxy["name"]], "containers": None, "volumes": [], "imagePullSecrets": None,
             "revision": "default"}, separators=(",", ":"))
        annotations.setdefault("prometheus.io/scrape", "true")
        annotations.setdefault("prometheus.io/port", str(STATUS_PORT))
        annotations.setdefault("prometheus.io/path", "/stats/prometheus")
    else:
        labels.setdefault(LINKERD_CONTROL_PLANE_LABEL, "linkerd")
        annotations[LINKERD_STATUS_ANNOTATION] = PROXY_IMAGE["linkerd"].rsplit(":", 1)[1]
    namespace_annotations = (namespace.metadata.get("annotations") or {}) if namespace is not None else {}
    if OPAQUE_PORTS not in annotations:  # (present, even empty, the pod's own says it)
        if OPAQUE_PORTS in namespace_annotations:
            annotations[OPAQUE_PORTS] = namespace_annotations[OPAQUE_PORTS]
        elif flavour == "linkerd":  # the default, as far as the pod declares those ports (FilterPodOpaquePorts)
            declared = {p.get("containerPort") for c in apps for p in c.get("ports") or []}
            if kept := [p for p in LINKERD_DEFAULT_OPAQUE_PORTS.split(",") if int(p) in declared]:
                annotations[OPAQUE_PORTS] = ",".join(kept)
    if apps:  # kubectl logs / exec pick the app, not the proxy
        annotations.setdefault("kubectl.kubernetes.io/default-container", apps[0].get("name"))
        annotations.setdefault("kubectl.kubernetes.io/default-logs-container", apps[0].get("name"))
    return decision


# what the injector puts on a pod's metadata (inject): a running pod keeps them when an apply gives
# it new labels and annotations — the webhook saw its creation, not the update
MARK_LABELS = (TLS_MODE_LABEL, "service.istio.io/canonical-name", "service.istio.io/canonical-revision",
               LINKERD_CONTROL_PLANE_LABEL)
MARK_ANNOTATIONS = (STATUS_ANNOTATION, LINKERD_STATUS_ANNOTATION, "prometheus.io/scrape", "prometheus.io/port",
                    "prometheus.io/path", "kubectl.kubernetes.io/default-container",
                    "kubectl.kubernetes.io/default-logs-container", OPAQUE_PORTS)


def keep_injected_marks(metadata: dict[str, Any], running: KubeObject) -> None:
    """`metadata` (labels and annotations given anew to the running pod `running`) with the
    marks the injector put on it, if it has a proxy. Changes `metadata` in place."""
    if proxy_container(running) is None:
        return
    for field, keys in (("labels", MARK_LABELS), ("annotations", MARK_ANNOTATIONS)):
        had = running.metadata.get(field) or {}
        kept = {key: had[key] for key in keys if key in had}
        if kept:  # (what the apply sets itself wins, as kubectl apply's merge keeps the keys it does not set)
            metadata[field] = {**kept, **(metadata.get(field) or {})}


def _workload_name(pod: KubeObject) -> str:
    """The workload's name as Istio derives it (GetDeployMetaFromPod): a ReplicaSet's owner (its
    name less the pod-template-hash), another controller's name, else the pod's."""
    owner = next((o for o in pod.metadata.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is None:
        return pod.name
    hash_ = (pod.labels or {}).get("pod-template-hash")
    if owner.get("kind") == "ReplicaSet" and hash_ and owner.get("name", "").endswith("-" + hash_):
        return owner["name"][: -len(hash_) - 1]
    return owner.get("name") or pod.name


def _rewrite_probes(apps: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The app containers' HTTP and TCP probes pointed at the agent's status port; returns the
    originals by the path that now asks for them."""
    probers = {}
    for container in apps:
        for field, kind in PROBE_KINDS.items():
            probe = container.get(field)
            if not isinstance(probe, dict):
                continue
            path = f"/app-health/{container.get('name')}/{kind}"
            handler = "httpGet" if isinstance(probe.get("httpGet"), dict) else \
                "tcpSocket" if isinstance(probe.get("tcpSocket"), dict) else None
            port = _port_of(probe[handler].get("port"), container) if handler else None
            if port is None:
                continue  # exec and gRPC probes run as written; so does one naming a port nobody declares
            if handler == "httpGet":
                probers[path] = {"httpGet": {**probe["httpGet"], "port": port},
                                 "timeoutSeconds": probe.get("timeoutSeconds", 1)}
            else:
                probers[path] = {"tcpSocket": {"port": port}, "timeoutSeconds": probe.get("timeoutSeconds", 1)}
            rewritten = {k: v for k, v in probe.items() if k not in ("httpGet", "tcpSocket")}
            rewritten["httpGet"] = {"path": path, "port": STATUS_PORT, "scheme": "HTTP"}
            container[field] = rewritten
    return probers


def _port_of(port: Any, container: dict[str, Any]) -> int | None:
    """A probe's port as a number (the agent does not see the container's port names); None for
    a name the container does not declare."""
    if isinstance(port, str) and not port.isdigit():
        return next((item.get("containerPort") for item in container.get("ports") or [] if item.get("name") == port), None)
    return int(port) if isinstance(port, (str, int)) and not isinstance(port, bool) else None


def _proxy_container(pod: KubeObject, flavour: str, probers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    health = {"path": "/healthz/ready", "port": HEALTH_PORT, "scheme": "HTTP"}
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        {"name": "INSTANCE_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
        {"name": "SERVICE_ACCOUNT", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.serviceAccountName"}}},
        {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
    ]
    if probers:
        env.append({"name": "ISTIO_KUBE_APP_PROBERS", "value": json.dumps(probers, sort_keys=True, separators=(",", ":"))})
    return {
        "name": PROXY_CONTAINER[flavour],
        "image": PROXY_IMAGE[flavour],
        "imagePullPolicy": "IfNotPresent",
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning"],
        "env": env,
        "ports": [{"name": "http-envoy-prom", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "restartPolicy": "Always",
        "startupProbe": {"httpGet": health, "initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 3,
                         "failureThreshold": 600, "successThreshold": 1},
        "readinessProbe": {"httpGet": dict(health), "initialDelaySeconds": 0, "periodSeconds": 15, "timeoutSeconds": 3,
                           "failureThreshold": 4, "successThreshold": 1},
        "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
