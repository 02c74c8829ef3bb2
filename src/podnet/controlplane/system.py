"""What every kubeadm cluster has before the user applies anything."""

from __future__ import annotations

from typing import Any

from podnet.api import fields
from podnet.api.objects import KubeObject, deterministic_uid
from podnet.config import ClusterConfig

SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
APISERVER_PORT = 6443
COREDNS_IMAGE = "registry.k8s.io/coredns/coredns:v1.12.0"


def namespace_object(name: str) -> KubeObject:
    body = {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {NAMESPACE_NAME_LABEL: name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    return KubeObject("Namespace", "", name, body)


def kubernetes_service(config: ClusterConfig) -> KubeObject:
    first = config.networking.service_subnet.network_address + 1
    body = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": str(first), "type": "ClusterIP",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": APISERVER_PORT}]},
    }
    return KubeObject("Service", "default", "kubernetes", body)


def apiserver_certificate_sans(config: ClusterConfig, node_name: str, node_ip: Any) -> tuple[list[str], list[str]]:
    """(IPs, DNS names) the API server's serving certificate carries: kubeadm's (the
    control-plane node's name and address, the `kubernetes` Service's ClusterIP and names) and
    kind's 127.0.0.1 and localhost, which kubectl on the host uses."""
    domain = config.networking.dns_domain
    ips = ["127.0.0.1", str(node_ip), kubernetes_service(config).spec["clusterIP"]]
    names = ["localhost", node_name, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             f"kubernetes.default.svc.{domain}"]
    return ips, names


def kubernetes_endpoints(apiserver_ip: str) -> KubeObject:
    """The API server publishes its own address (the first node's) for default/kubernetes."""
    body = {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": apiserver_ip}],
                         "ports": [{"name": "https", "port": APISERVER_PORT, "protocol": "TCP"}]}]}
    return KubeObject("Endpoints", "default", "kubernetes", body)


def kubernetes_endpointslice(apiserver_ip: str) -> KubeObject:
    body = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [apiserver_ip],
                           "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": APISERVER_PORT, "protocol": "TCP"}]}
    return KubeObject("EndpointSlice", "default", "kubernetes", body)


def corefile(config: ClusterConfig) -> str:
    """kubeadm's Corefile, minus `forward`: podnet's DNS has no upstream unless one is configured."""
    domain = config.networking.dns_domain
    return (
        ".:53 {\n"
        "    errors\n"
        "    health {\n       lameduck 5s\n    }\n"
        "    ready\n"
        f"    kubernetes {domain} in-addr.arpa ip6.arpa {{\n"
        "       pods insecure\n"
        "       fallthrough in-addr.arpa ip6.arpa\n"
        "       ttl 30\n"
        "    }\n"
        "    prometheus :9153\n"
        "    cache 30\n"
        "    loop\n"
        "    reload\n"
        "    loadbalance\n"
        "}\n"
    )


def dns_addon(config: ClusterConfig) -> list[KubeObject]:
    """kube-system/kube-dns (10.96.0.10) in front of two coredns pods, and their Corefile."""
    labels = {"k8s-app": "kube-dns"}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system",
                     "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true",
                                "kubernetes.io/name": "CoreDNS"},
                     "annotations": {"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
        "spec": {"clusterIP": str(config.networking.dns_service_ip), "selector": dict(labels),
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                           {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                           {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]},
    }
    container: dict[str, Any] = {
        "name": "coredns", "image": COREDNS_IMAGE, "args": ["-conf", "/etc/coredns/Corefile"],
        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"},
                          "initialDelaySeconds": 60, "timeoutSeconds": 5, "successThreshold": 1, "failureThreshold": 5},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": dict(labels)},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [container], "dnsPolicy": "Default", "priorityClassName": "system-cluster-critical",
                         "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                         {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]},
            },
        },
    }
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "coredns", "namespace": "kube-system"},
                 "data": {"Corefile": corefile(config)}}
    return [
        KubeObject("Service", "kube-system", "kube-dns", service),
        KubeObject("Deployment", "kube-system", "coredns", deployment),
        KubeObject("ConfigMap", "kube-system", "coredns", configmap),
    ]


def stamp_uid(obj: KubeObject) -> None:
    obj.metadata_for_update().setdefault("uid", deterministic_uid(obj.kind, obj.namespace, obj.name))


# ingress-nginx, as its standard manifest installs it; added when the input has Ingresses.
INGRESS_NAMESPACE = "ingress-nginx"
INGRESS_SERVICE = "ingress-nginx-controller"
INGRESS_CONTROLLER = "k8s.io/ingress-nginx"
INGRESS_CLASS = "nginx"
INGRESS_CONTROLLER_IMAGE = "registry.k8s.io/ingress-nginx/controller:v1.12.0"
INGRESS_CONTROLLER_LABELS = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job")


def is_ingress_nginx(image: str) -> bool:
    """ingress-nginx's controller image, current (registry.k8s.io/ingress-nginx/controller) or
    as the old manifests name it (quay.io/kubernetes-ingress-controller/nginx-ingress-controller)."""
    name = fields.image_name(image)
    return (name == "controller" and "ingress-nginx/" in image) or name == "nginx-ingress-controller"


def ingress_nginx_container(pod_spec: dict[str, Any]) -> dict[str, Any] | None:
    """The pod's ingress-nginx controller: a container of that image run with the image's own
    entrypoint (kubelet starts podnet.ingressnginx for it; a `command` runs something else)."""
    for container in pod_spec.get("containers") or []:
        if is_ingress_nginx(str(container.get("image") or "")) and not container.get("command"):
            return container
    return None


def runs_ingress_nginx(obj: KubeObject) -> bool:
    """Whether a Pod, or a workload's pod template, runs an ingress-nginx controller: the input
    brings its own (as the seed's nginx-ingress-controller Deployment, or a Helm release). What a
    controller made (a Deployment's ReplicaSet, its pods: a running cluster keeps them) is not the
    input's own: the object that made it is."""
    if fields.controller_of(obj) is not None:
        return False
    if obj.kind == "Pod":
        return ingress_nginx_container(obj.spec) is not None
    if obj.kind in WORKLOAD_KINDS:
        template = (obj.spec.get("template") or {}).get("spec") or {}
        return ingress_nginx_container(template) is not None
    return False


def ingress_nginx_addon(with_class: bool) -> list[KubeObject]:
    labels = {**INGRESS_CONTROLLER_LABELS, "app.kubernetes.io/instance": "ingress-nginx"}
    namespace = KubeObject("Namespace", "", INGRESS_NAMESPACE, {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": INGRESS_NAMESPACE, "labels": {"app.kubernetes.io/name": "ingress-nginx",
                                                           "app.kubernetes.io/instance": "ingress-nginx"}}})
    container = {
        "name": "controller", "image": INGRESS_CONTROLLER_IMAGE,
        "args": ["/nginx-ingress-controller", f"--ingress-class={INGRESS_CLASS}",
                 f"--controller-class={INGRESS_CONTROLLER}", f"--publish-service={INGRESS_NAMESPACE}/{INGRESS_SERVICE}"],
        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                  {"name": "https", "containerPort": 443, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 10254, "scheme": "HTTP"}},
    }
    deployment = KubeObject("Deployment", INGRESS_NAMESPACE, INGRESS_SERVICE, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": INGRESS_SERVICE, "namespace": INGRESS_NAMESPACE, "labels": dict(labels)},
        "spec": {"replicas": 1, "selector": {"matchLabels": dict(labels)},
                 "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [container]}}}})
    service = KubeObject("Service", INGRESS_NAMESPACE, INGRESS_SERVICE, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": INGRESS_SERVICE, "namespace": INGRESS_NAMESPACE, "labels": dict(labels)},
        "spec": {"type": "LoadBalancer", "selector": dict(labels),
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                           {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]}})
    objects = [namespace, deployment, service]
    if with_class:
        objects.append(KubeObject("IngressClass", "", INGRESS_CLASS, {
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS, "labels": dict(labels),
                         "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": INGRESS_CONTROLLER}}))
    return objects
