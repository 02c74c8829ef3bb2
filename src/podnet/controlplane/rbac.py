"""RBAC's bootstrap policy, and the clusterrole-aggregation controller.

kube-apiserver creates a set of ClusterRoles and ClusterRoleBindings at start-up
(plugin/pkg/auth/authorizer/rbac/bootstrappolicy). podnet makes the ones a user meets:
`cluster-admin` (bound to the group system:masters, the admin certificate's), the user-facing
`admin`, `edit` and `view` built by aggregation, and what every authenticated user may do
(discover the API, read /version and the health endpoints, ask what it may do itself). The
controllers' own roles (system:controller:*, system:node, ...) are left out: podnet's
controllers do not talk to the API server.

The rules are podnet's own list, not upstream's file: the same intent (view reads what does
not escalate, so not Secrets; edit writes workloads and reads Secrets; admin also manages
Roles and RoleBindings in a namespace) over the API groups a podnet cluster serves or a user
asks about, without the removed `extensions` group. Each rule's lists are sorted, as the
bootstrap policy's rule builder sorts them.

Aggregation is the controller's: a ClusterRole with an aggregationRule gets the rules of every
other ClusterRole its selectors match, those roles taken by name, duplicates dropped. `edit` is
itself aggregated into `admin` (and `view` into `edit`), so the computation repeats until
nothing changes, which is where the controller settles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from podnet.api import labels as selectors
from podnet.api.kinds import RBAC_GROUP
from podnet.api.objects import KubeObject

API_VERSION = f"{RBAC_GROUP}/v1"
BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE_ANNOTATION = {"rbac.authorization.kubernetes.io/autoupdate": "true"}
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"

# the groups the authenticator gives (k8s.io/apiserver/pkg/authentication/user)
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
READ_WRITE = READ + WRITE


def rule(verbs: Iterable[str], group: str | None = None, resources: Iterable[str] = (),
         urls: Iterable[str] = ()) -> dict[str, Any]:
    """A PolicyRule, its lists sorted: resources of one API group, or non-resource URLs."""
    if group is not None:
        return {"apiGroups": [group], "resources": sorted(resources), "verbs": sorted(verbs)}
    return {"nonResourceURLs": sorted(urls), "verbs": sorted(verbs)}


_VIEW_RULES = [
    rule(READ, "", ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                    "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                    "services/status"]),
    rule(READ, "", ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                    "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"]),
    # reading namespaces in a namespace's binding reads that namespace: a hint of where one has access
    rule(READ, "", ["namespaces"]),
    rule(READ, "discovery.k8s.io", ["endpointslices"]),
    rule(READ, "apps", ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                        "deployments/status", "replicasets", "replicasets/scale", "replicasets/status",
                        "statefulsets", "statefulsets/scale", "statefulsets/status"]),
    rule(READ, "autoscaling", ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    rule(READ, "batch", ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    rule(READ, "policy", ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    rule(READ, "networking.k8s.io", ["ingresses", "ingresses/status", "networkpolicies"]),
]

# Not Endpoints or EndpointSlices: writing them sends a Service's traffic anywhere (CVE-2021-25740).
_EDIT_RULES = [
    rule(READ, "", ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"]),
    rule(["impersonate"], "", ["serviceaccounts"]),
    rule(WRITE, "", ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
    rule(["create"], "", ["pods/eviction"]),
    rule(WRITE, "", ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                     "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"]),
    rule(["create"], "", ["serviceaccounts/token"]),
    rule(WRITE, "apps", ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                         "replicasets/scale", "statefulsets", "statefulsets/scale"]),
    rule(WRITE, "autoscaling", ["horizontalpodautoscalers"]),
    rule(WRITE, "batch", ["cronjobs", "jobs"]),
    rule(WRITE, "policy", ["poddisruptionbudgets"]),
    rule(WRITE, "networking.k8s.io", ["ingresses", "networkpolicies"]),
    rule(READ_WRITE, "coordination.k8s.io", ["leases"]),
]

_ADMIN_RULES = [
    rule(["create"], "authorization.k8s.io", ["localsubjectaccessreviews"]),
    rule(READ_WRITE, RBAC_GROUP, ["rolebindings", "roles"]),
]


def _cluster_role(name: str, rules: list[dict] | None = None, *, labels: dict[str, str] | None = None,
                  aggregate_from: str | None = None) -> KubeObject:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION, "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {**BOOTSTRAP_LABEL, **(labels or {})},
                     "annotations": dict(AUTOUPDATE_ANNOTATION)},
    }
    if aggregate_from is not None:
        body["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {AGGREGATE_TO + aggregate_from: "true"}}]}
        body["rules"] = []  # the aggregation fills them
    else:
        body["rules"] = rules or []
    return KubeObject("ClusterRole", "", name, body)


def _cluster_binding(role: str, groups: Iterable[str]) -> KubeObject:
    body = {
        "apiVersion": API_VERSION, "kind": "ClusterRoleBinding",
        "metadata": {"name": role, "labels": dict(BOOTSTRAP_LABEL), "annotations": dict(AUTOUPDATE_ANNOTATION)},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": group} for group in groups],
    }
    return KubeObject("ClusterRoleBinding", "", role, body)


def bootstrap_policy() -> list[KubeObject]:
    """The ClusterRoles and ClusterRoleBindings kube-apiserver starts with (those users meet)."""
    every = "*"
    return [
        _cluster_role("cluster-admin", [rule([every], every, [every]), rule([every], urls=[every])]),
        _cluster_role("admin", aggregate_from="admin"),
        _cluster_role("edit", labels={AGGREGATE_TO + "admin": "true"}, aggregate_from="edit"),
        _cluster_role("view", labels={AGGREGATE_TO + "edit": "true"}, aggregate_from="view"),
        _cluster_role("system:aggregate-to-admin", _ADMIN_RULES, labels={AGGREGATE_TO + "admin": "true"}),
        _cluster_role("system:aggregate-to-edit", _EDIT_RULES, labels={AGGREGATE_TO + "edit": "true"}),
        _cluster_role("system:aggregate-to-view", _VIEW_RULES, labels={AGGREGATE_TO + "view": "true"}),
        _cluster_role("system:basic-user", [
            rule(["create"], "authorization.k8s.io", ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
            rule(["create"], "authentication.k8s.io", ["selfsubjectreviews"]),
        ]),
        _cluster_role("system:discovery", [
            rule(["get"], urls=["/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/version", "/version/"]),
        ]),
        _cluster_role("system:public-info-viewer", [
            rule(["get"], urls=["/healthz", "/livez", "/readyz", "/version", "/version/"]),
        ]),
        _cluster_binding("cluster-admin", [MASTERS]),
        _cluster_binding("system:basic-user", [AUTHENTICATED]),
        _cluster_binding("system:discovery", [AUTHENTICATED]),
        _cluster_binding("system:public-info-viewer", [AUTHENTICATED, UNAUTHENTICATED]),
    ]


def _aggregated_rules(role: KubeObject, roles: list[KubeObject]) -> list[dict]:
    found: list[dict] = []
    for selector in (role.body.get("aggregationRule") or {}).get("clusterRoleSelectors") or []:
        try:
            matcher = selectors.from_label_selector(selector or {})
        except ValueError:
            continue  # validation refuses these; a piped-in one just selects nothing
        for other in roles:  # by name
            if other.name != role.name and matcher.matches(other.labels):
                for policy_rule in other.body.get("rules") or []:
                    if policy_rule not in found:
                        found.append(policy_rule)
    return found


def aggregate(cluster_roles: Iterable[KubeObject]) -> None:
    """Give each ClusterRole with an aggregationRule the rules of the ClusterRoles it selects
    (in place), until that changes nothing (bounded: a cycle of aggregations stops too)."""
    roles = sorted(cluster_roles, key=lambda r: r.name)
    aggregated = [r for r in roles if r.body.get("aggregationRule") is not None]
    for _ in range(len(aggregated) + 1):
        changed = False
        for role in aggregated:
            rules = _aggregated_rules(role, roles)
            if rules != role.body.get("rules"):
                role.body["rules"] = [dict(r) for r in rules]
                changed = True
        if not changed:
            return


def apply_binding_defaults(binding: KubeObject) -> None:
    """SetDefaults_RoleBinding/Subject: roleRef's apiGroup, and a User's or Group's, is RBAC's."""
    ref = binding.body.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = RBAC_GROUP
    for subject in binding.body.get("subjects") or []:
        if isinstance(subject, dict) and not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = RBAC_GROUP
