"""The kinds podnet understands, with the names kubectl accepts for them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindInfo:
    kind: str
    api_version: str  # the version podnet stores and prints
    plural: str
    short_names: tuple[str, ...]
    namespaced: bool
    # Other apiVersions accepted on input (converted to api_version when loaded).
    legacy_versions: tuple[str, ...] = ()

    @property
    def schema_name(self) -> str:
        """File stem of the kind's JSON schema in kubernetes-validate ("ingress-networking-v1")."""
        group, _, version = self.api_version.rpartition("/")
        group = group.split(".")[0]
        return f"{self.kind.lower()}-{group}-{version}" if group else f"{self.kind.lower()}-{version}"

    @property
    def singular(self) -> str:
        return self.kind.lower()


KINDS: tuple[KindInfo, ...] = (
    KindInfo("Namespace", "v1", "namespaces", ("ns",), False),
    KindInfo("Node", "v1", "nodes", ("no",), False),
    KindInfo("Pod", "v1", "pods", ("po",), True),
    KindInfo("Service", "v1", "services", ("svc",), True),
    KindInfo("Endpoints", "v1", "endpoints", ("ep",), True),
    KindInfo("EndpointSlice", "discovery.k8s.io/v1", "endpointslices", (), True),
    KindInfo("Deployment", "apps/v1", "deployments", ("deploy",), True),
    KindInfo("ReplicaSet", "apps/v1", "replicasets", ("rs",), True),
    KindInfo("StatefulSet", "apps/v1", "statefulsets", ("sts",), True),
    KindInfo("DaemonSet", "apps/v1", "daemonsets", ("ds",), True),
    KindInfo("Job", "batch/v1", "jobs", (), True),
    KindInfo("NetworkPolicy", "networking.k8s.io/v1", "networkpolicies", ("netpol",), True),
    KindInfo(
        "Ingress",
        "networking.k8s.io/v1",
        "ingresses",
        ("ing",),
        True,
        legacy_versions=("extensions/v1beta1", "networking.k8s.io/v1beta1"),
    ),
    KindInfo("IngressClass", "networking.k8s.io/v1", "ingressclasses", (), False),
    KindInfo("AdminNetworkPolicy", "policy.networking.k8s.io/v1alpha1", "adminnetworkpolicies", ("anp",), False),
    KindInfo(
        "BaselineAdminNetworkPolicy",
        "policy.networking.k8s.io/v1alpha1",
        "baselineadminnetworkpolicies",
        ("banp",),
        False,
    ),
    # Istio's mesh policy (semantics/mesh.py); v1beta1 is the same schema
    KindInfo("AuthorizationPolicy", "security.istio.io/v1", "authorizationpolicies", ("ap",), True,
             legacy_versions=("security.istio.io/v1beta1",)),
    KindInfo("PeerAuthentication", "security.istio.io/v1", "peerauthentications", ("pa",), True,
             legacy_versions=("security.istio.io/v1beta1",)),
    # Gateway API's routes: attached to a Service (GAMMA), the mesh's traffic management
    KindInfo("HTTPRoute", "gateway.networking.k8s.io/v1", "httproutes", (), True,
             legacy_versions=("gateway.networking.k8s.io/v1beta1",)),
    KindInfo("Secret", "v1", "secrets", (), True),
    KindInfo("ConfigMap", "v1", "configmaps", ("cm",), True),
    # Who may do what through the API server (podnet.apiserver.rbac); the control plane stores them.
    KindInfo("ServiceAccount", "v1", "serviceaccounts", ("sa",), True),
    KindInfo("Role", "rbac.authorization.k8s.io/v1", "roles", (), True),
    KindInfo("ClusterRole", "rbac.authorization.k8s.io/v1", "clusterroles", (), False),
    KindInfo("RoleBinding", "rbac.authorization.k8s.io/v1", "rolebindings", (), True),
    KindInfo("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "clusterrolebindings", (), False),
)

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")

BY_KIND: dict[str, KindInfo] = {k.kind: k for k in KINDS}

# `kubectl get all` shows these.
ALL_KINDS = ("Pod", "Service", "DaemonSet", "Deployment", "ReplicaSet", "StatefulSet")


def _aliases() -> dict[str, KindInfo]:
    table: dict[str, KindInfo] = {}
    for info in KINDS:
        for word in (info.kind.lower(), info.plural, *info.short_names):
            table[word] = info
    return table


_ALIASES = _aliases()


def object_key(body: dict) -> tuple[str, str, str]:
    """An object's (kind, namespace, name) from its body: a namespaced kind without a
    namespace is in `default`, as kubectl applies it."""
    kind = body.get("kind")
    namespace = (body.get("metadata") or {}).get("namespace") or ("default" if BY_KIND[kind].namespaced else "")
    return (kind, namespace, body["metadata"]["name"])


def resolve_kind(word: str) -> KindInfo | None:
    """Map what a user types after `get` ("po", "svc", "Pods", "ingress.networking.k8s.io") to a kind."""
    word = word.lower().split(".", 1)[0]
    return _ALIASES.get(word)


def kind_for(api_version: str, kind: str) -> KindInfo | None:
    info = BY_KIND.get(kind)
    if info is None:
        return None
    if api_version == info.api_version or api_version in info.legacy_versions:
        return info
    return None
