"""RBAC authorization, as kube-apiserver's RBAC authorizer decides and words it.

`Authorizer` is built once from a cluster's Role, ClusterRole, RoleBinding and
ClusterRoleBinding bodies (the computed cluster's: ClusterRoles already aggregated by
controlplane.rbac) and then answers every request. Building it indexes each binding's subjects
by the user name or group they match (a ServiceAccount subject by the user name its token
carries, "system:serviceaccount:<namespace>:<name>"), resolves its roleRef to compiled rules
(sets to look verbs, groups, resources and names up in), and remembers a roleRef that names no
role as the error kube-apiserver reports. A request then only looks at the bindings of the
user's name and groups.

The semantics are plugin/pkg/auth/authorizer/rbac's:

- ClusterRoleBindings are consulted first, then (for a namespaced request) the RoleBindings of
  the request's namespace; a RoleBinding that references a ClusterRole grants its rules in that
  namespace only. The first rule that allows the request wins, and the reason names the binding,
  the role and the first subject of the binding that matched the user. Bindings are taken in
  name order (kube-apiserver takes them in its cache's order, which is not defined).
- A rule allows a resource request when the verb, the API group, the resource and the name
  match: "*" matches any verb, group or resource; "pods/log" names a subresource and "*/log"
  that subresource of any resource; no resourceNames means any name. A non-resource request
  ("/healthz") matches a rule's nonResourceURLs exactly, or by prefix for one ending in "*".
- RBAC never denies: a request no rule allows gets no opinion, with the resolution errors met
  on the way (a binding to a missing role) as its reason.
- Members of system:masters are allowed everything before RBAC is asked, with no reason, as
  kube-apiserver's privileged-group authorizer does: removing the cluster-admin binding does not
  lock the admin certificate out. What they may do still lists as the cluster-admin binding's
  rules (SelfSubjectRulesReview asks RBAC only).

Also here, because they are authorization too: the access reviews' statuses (what
`kubectl auth can-i` asks), the 403 message, and impersonation (`kubectl --as`), which checks the
`impersonate` verb on users, groups and ServiceAccounts before the request runs as that user.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from podnet.api.names import is_dns1123_label, is_dns1123_subdomain
from podnet.api.objects import KubeObject
from podnet.api.problems import Problem

MASTERS = "system:masters"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_ALL = "*"


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Attributes:
    """What a request asks (k8s.io/apiserver authorizer.Attributes)."""

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True


def _go_quote(text: str) -> str:
    """Go's %q for the strings RBAC prints (JSON's quoting agrees for printable text)."""
    return json.dumps(text, ensure_ascii=False)


def service_account_username(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


# ---------------------------------------------------------------- rules


@dataclass(frozen=True)
class _Rule:
    """A PolicyRule, compiled: None stands for "*" (anything)."""

    verbs: frozenset[str] | None
    groups: frozenset[str] | None
    resources: frozenset[str] | None
    any_resource_subresources: frozenset[str]  # "*/status" -> "status"
    names: frozenset[str] | None  # None: no resourceNames, any name
    urls: frozenset[str] | None
    url_prefixes: tuple[str, ...]
    has_resources: bool
    has_urls: bool
    body: Mapping[str, Any]

    @staticmethod
    def compile(body: Mapping[str, Any]) -> _Rule:
        def strings(key: str) -> list[str]:
            return _strings(body.get(key))

        def wild(values: list[str]) -> frozenset[str] | None:
            return None if _ALL in values else frozenset(values)

        resources = strings("resources")
        urls = strings("nonResourceURLs")
        names = strings("resourceNames")
        return _Rule(
            verbs=wild(strings("verbs")),
            groups=wild(strings("apiGroups")),
            resources=wild(resources),
            any_resource_subresources=frozenset(r[2:] for r in resources if r.startswith("*/")),
            names=frozenset(names) if names else None,
            urls=wild(urls),
            url_prefixes=tuple(u.rstrip("*") for u in urls if u.endswith("*")),
            has_resources=bool(resources),
            has_urls=bool(urls),
            body=body,
        )

    def allows(self, attrs: Attributes) -> bool:
        if self.verbs is not None and attrs.verb not in self.verbs:
            return False
        if attrs.resource_request:
            if self.groups is not None and attrs.api_group not in self.groups:
                return False
            if self.resources is not None:
                combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
                if combined not in self.resources and not (
                        attrs.subresource and attrs.subresource in self.any_resource_subresources):
                    return False
            return self.names is None or attrs.name in self.names
        if self.urls is None or attrs.path in self.urls:
            return True
        return any(attrs.path.startswith(prefix) for prefix in self.url_prefixes)


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _compiled_rules(body: Mapping[str, Any]) -> tuple[_Rule, ...]:
    rules = body.get("rules")
    return tuple(_Rule.compile(r) for r in rules if isinstance(r, Mapping)) if isinstance(rules, list) else ()


# ---------------------------------------------------------------- bindings


@dataclass(frozen=True)
class _Binding:
    kind: str  # RoleBinding | ClusterRoleBinding
    namespace: str  # "" for a ClusterRoleBinding
    name: str
    role_kind: str
    role_name: str
    subjects: tuple[Mapping[str, Any], ...]
    rules: tuple[_Rule, ...]
    error: str  # why the roleRef resolves to nothing ("" if it resolves)

    def describe(self, subject_index: int) -> str:
        """The binding as RBAC's reason names it (clusterRoleBindingDescriber, roleBindingDescriber)."""
        subject = self.subjects[subject_index]
        kind, name = str(subject.get("kind", "")), str(subject.get("name", ""))
        if kind == "ServiceAccount":  # name/namespace, in this order
            who = f"{kind} {_go_quote(name + '/' + (subject.get('namespace') or self.namespace))}"
        else:
            who = f"{kind} {_go_quote(name)}"
        binding = self.name if self.kind == "ClusterRoleBinding" else f"{self.name}/{self.namespace}"
        return f"{self.kind} {_go_quote(binding)} of {self.role_kind} {_go_quote(self.role_name)} to {who}"


def _subject_key(subject: Mapping[str, Any], binding_namespace: str) -> str | None:
    """The user name ("user:<name>") or group ("group:<name>") a subject matches; None if none."""
    kind, name = subject.get("kind"), subject.get("name")
    if not isinstance(name, str):
        return None
    if kind == "User":
        return "user:" + name
    if kind == "Group":
        return "group:" + name
    if kind == "ServiceAccount":
        # a RoleBinding's ServiceAccount without a namespace is one of the binding's namespace
        namespace = subject.get("namespace") or binding_namespace
        return "user:" + service_account_username(namespace, name) if namespace else None
    return None


@dataclass
class _BindingIndex:
    """Bindings of one scope (the cluster's, or one namespace's), by the key each subject matches."""

    bindings: list[_Binding] = field(default_factory=list)
    by_key: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # key -> (binding, subject) indexes

    def add(self, binding: _Binding) -> None:
        position = len(self.bindings)
        self.bindings.append(binding)
        for subject_index, subject in enumerate(binding.subjects):
            key = _subject_key(subject, binding.namespace)
            if key is not None:
                self.by_key.setdefault(key, []).append((position, subject_index))

    def applying(self, keys: Iterable[str]) -> list[tuple[_Binding, int]]:
        """The bindings that apply to a user of these keys, in order, each with its first matching subject."""
        first: dict[int, int] = {}
        for key in keys:
            for position, subject_index in self.by_key.get(key, ()):
                if subject_index < first.get(position, subject_index + 1):
                    first[position] = subject_index
        return [(self.bindings[p], first[p]) for p in sorted(first)]


def _user_keys(user: User) -> list[str]:
    return ["user:" + user.name, *("group:" + g for g in user.groups)]


def _aggregate_errors(errors: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message alone, several deduplicated in brackets."""
    unique = list(dict.fromkeys(errors))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


class Authorizer:
    def __init__(self, objects: Iterable[Mapping[str, Any] | KubeObject]):
        """`objects`: bodies (or KubeObjects) of any kinds; those of RBAC's four are read."""
        roles: dict[tuple[str, str], tuple[_Rule, ...]] = {}
        cluster_roles: dict[str, tuple[_Rule, ...]] = {}
        bindings: list[Mapping[str, Any]] = []
        for obj in objects:
            body = obj.body if isinstance(obj, KubeObject) else obj
            kind = body.get("kind")
            metadata = body.get("metadata") or {}
            name, namespace = metadata.get("name") or "", metadata.get("namespace") or ""
            if kind == "Role":
                roles[(namespace, name)] = _compiled_rules(body)
            elif kind == "ClusterRole":
                cluster_roles[name] = _compiled_rules(body)
            elif kind in ("RoleBinding", "ClusterRoleBinding"):
                bindings.append(body)
        self._cluster = _BindingIndex()
        self._namespaces: dict[str, _BindingIndex] = {}
        for body in sorted(bindings, key=lambda b: ((b.get("metadata") or {}).get("namespace") or "",
                                                    (b.get("metadata") or {}).get("name") or "")):
            binding = self._binding(body, roles, cluster_roles)
            if binding.kind == "ClusterRoleBinding":
                self._cluster.add(binding)
            else:
                self._namespaces.setdefault(binding.namespace, _BindingIndex()).add(binding)

    @staticmethod
    def _binding(body: Mapping[str, Any], roles, cluster_roles) -> _Binding:
        kind = str(body.get("kind"))
        metadata = body.get("metadata") or {}
        namespace = (metadata.get("namespace") or "") if kind == "RoleBinding" else ""
        ref = body.get("roleRef") or {}
        role_kind, role_name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        rules: tuple[_Rule, ...] = ()
        error = ""
        if role_kind == "Role":  # of the binding's namespace: a ClusterRoleBinding's finds none
            found = roles.get((namespace, role_name))
            if found is None:
                error = f"role.rbac.authorization.k8s.io {_go_quote(role_name)} not found"
            else:
                rules = found
        elif role_kind == "ClusterRole":
            found = cluster_roles.get(role_name)
            if found is None:
                error = f"clusterrole.rbac.authorization.k8s.io {_go_quote(role_name)} not found"
            else:
                rules = found
        else:
            error = f"unsupported role reference kind: {_go_quote(role_kind)}"
        subjects = tuple(s for s in body.get("subjects") or [] if isinstance(s, Mapping))
        return _Binding(kind, namespace, str(metadata.get("name") or ""), role_kind, role_name, subjects, rules, error)

    def _visit(self, user: User, namespace: str):
        """(binding, subject index) pairs that apply to the user: cluster-wide ones first."""
        keys = _user_keys(user)
        yield from self._cluster.applying(keys)
        if namespace:
            index = self._namespaces.get(namespace)
            if index is not None:
                yield from index.applying(keys)

    def authorize(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason). Denied has no reason unless a binding that applies to the user
        references a role that does not exist."""
        if MASTERS in user.groups:
            return True, ""
        errors = []
        namespace = attrs.namespace if attrs.resource_request else ""
        for binding, subject_index in self._visit(user, namespace):
            if binding.error:
                errors.append(binding.error)
                continue
            for rule in binding.rules:
                if rule.allows(attrs):
                    return True, f"RBAC: allowed by {binding.describe(subject_index)}"
        return False, f"RBAC: {_aggregate_errors(errors)}" if errors else ""

    def rules_for(self, user: User, namespace: str) -> dict[str, Any]:
        """The status of a SelfSubjectRulesReview: every rule that applies to the user in the
        namespace (cluster-wide ones included), as resource and non-resource rules."""
        resource_rules: list[dict[str, Any]] = []
        non_resource_rules: list[dict[str, Any]] = []
        errors = []
        for binding, _ in self._visit(user, namespace):
            if binding.error:
                errors.append(binding.error)
            for rule in binding.rules:
                body = rule.body
                if rule.has_resources:
                    entry = {"verbs": _strings(body.get("verbs"))}
                    for source, target in (("apiGroups", "apiGroups"), ("resources", "resources"),
                                           ("resourceNames", "resourceNames")):
                        values = _strings(body.get(source))
                        if values:
                            entry[target] = values
                    resource_rules.append(entry)
                if rule.has_urls:
                    non_resource_rules.append({"verbs": _strings(body.get("verbs")),
                                               "nonResourceURLs": _strings(body.get("nonResourceURLs"))})
        status: dict[str, Any] = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                                  "incomplete": False}
        if errors:
            status["evaluationError"] = _aggregate_errors(errors)
        return status


# ---------------------------------------------------------------- impersonation (kubectl --as)

IMPERSONATE_USER = "impersonate-user"
IMPERSONATE_GROUP = "impersonate-group"
IMPERSONATE_UID = "impersonate-uid"
IMPERSONATE_EXTRA_PREFIX = "impersonate-extra-"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"


class ImpersonationError(ValueError):
    """Groups, extras or a uid asked for without a user: kube-apiserver answers 500 with this."""


@dataclass(frozen=True)
class Impersonation:
    """What the impersonation filter decided: the user to act as, or the check that failed."""

    user: User | None  # None: nothing impersonated (no headers), or refused
    denied: Attributes | None = None  # the impersonate check refused (answer 403 with forbidden_message)
    reason: str = ""


def _split_service_account(username: str) -> tuple[str, str] | None:
    """serviceaccount.SplitUsername: "system:serviceaccount:<ns>:<name>" with both valid names."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    parts = username[len(SERVICE_ACCOUNT_PREFIX):].split(":")
    if len(parts) != 2:
        return None
    namespace, name = parts
    if is_dns1123_label(namespace) or is_dns1123_subdomain(name):
        return None
    return namespace, name


def impersonate(authorizer: Authorizer, requester: User, headers: Iterable[tuple[str, str]]) -> Impersonation:
    """The Impersonate-User/-Group/-Uid/-Extra-* headers (k8s.io/apiserver's WithImpersonation):
    each thing asked for is an `impersonate` check of the requester (users, groups and uids,
    serviceaccounts in their namespace, userextras/<key> of authentication.k8s.io); the user acted
    as then has the groups asked for (a ServiceAccount's own if none), plus system:authenticated."""
    user_name, groups, extras, uid = None, [], [], None
    for name, value in headers:
        name = name.lower()
        if name == IMPERSONATE_USER and user_name is None:
            user_name = value
        elif name == IMPERSONATE_GROUP:
            groups.append(value)
        elif name == IMPERSONATE_UID and uid is None:
            uid = value
        elif name.startswith(IMPERSONATE_EXTRA_PREFIX):
            extras.append((unquote(name[len(IMPERSONATE_EXTRA_PREFIX):]), value))
    if not user_name:
        if groups or extras or uid:
            raise ImpersonationError("requested groups, extras or a uid without impersonating a user")
        return Impersonation(None)
    checks = []
    account = _split_service_account(user_name)
    if account is not None:
        checks.append(Attributes("impersonate", resource="serviceaccounts", namespace=account[0], name=account[1]))
    else:
        checks.append(Attributes("impersonate", resource="users", name=user_name))
    checks += [Attributes("impersonate", resource="groups", name=group) for group in groups]
    checks += [Attributes("impersonate", "authentication.k8s.io", "userextras", key, name=value) for key, value in extras]
    if uid:
        checks.append(Attributes("impersonate", "authentication.k8s.io", "uids", name=uid))
    for attrs in checks:
        allowed, reason = authorizer.authorize(requester, attrs)
        if not allowed:
            return Impersonation(None, attrs, reason)
    acting_groups = list(groups)
    if account is not None and not groups:
        acting_groups = ["system:serviceaccounts", f"system:serviceaccounts:{account[0]}"]
    if user_name != ANONYMOUS:
        if AUTHENTICATED not in acting_groups and UNAUTHENTICATED not in acting_groups:
            acting_groups.append(AUTHENTICATED)
    elif UNAUTHENTICATED not in acting_groups:
        acting_groups.append(UNAUTHENTICATED)
    extra: dict[str, list[str]] = {}
    for key, value in extras:
        extra.setdefault(key, []).append(value)
    return Impersonation(User(user_name, tuple(acting_groups), uid or "",
                              tuple((k, tuple(v)) for k, v in sorted(extra.items()))))


# ---------------------------------------------------------------- access reviews


def attributes_from_spec(spec: Mapping[str, Any]) -> Attributes:
    """A (Self)SubjectAccessReview spec's resourceAttributes or nonResourceAttributes as Attributes."""
    resource = spec.get("resourceAttributes")
    if isinstance(resource, Mapping):
        return Attributes(verb=str(resource.get("verb") or ""), api_group=str(resource.get("group") or ""),
                          resource=str(resource.get("resource") or ""),
                          subresource=str(resource.get("subresource") or ""),
                          namespace=str(resource.get("namespace") or ""), name=str(resource.get("name") or ""))
    other = spec.get("nonResourceAttributes") or {}
    return Attributes(verb=str(other.get("verb") or ""), path=str(other.get("path") or ""), resource_request=False)


def user_from_spec(spec: Mapping[str, Any]) -> User:
    """The user a SubjectAccessReview asks about (spec.user, groups, uid, extra)."""
    extra = spec.get("extra") if isinstance(spec.get("extra"), Mapping) else {}
    return User(name=str(spec.get("user") or ""), groups=tuple(_strings(spec.get("groups"))),
                uid=str(spec.get("uid") or ""),
                extra=tuple(sorted((str(k), tuple(_strings(v))) for k, v in extra.items())))


def review_problems(spec: Any, *, self_review: bool) -> list[Problem]:
    """What the API server refuses (422) in an access review's spec (ValidateSubjectAccessReviewSpec,
    ValidateSelfSubjectAccessReviewSpec)."""
    spec = spec if isinstance(spec, Mapping) else {}
    resource, other = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    problems = []
    if resource is not None and other is not None:
        problems.append(Problem(("spec", "nonResourceAttributes"),
                                f"Invalid value: {json.dumps(other)}: cannot be specified in combination with "
                                "resourceAttributes"))
    if resource is None and other is None:
        problems.append(Problem(("spec", "resourceAttributes"),
                                "Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes "
                                "must be specified"))
    if not self_review and not spec.get("user") and not spec.get("groups"):
        problems.append(Problem(("spec", "user"),
                                'Invalid value: "": at least one of user or group must be specified'))
    return problems


def access_review_status(authorizer: Authorizer, user: User, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A (Self)SubjectAccessReview's status: {allowed, reason?}. RBAC has no opinion rather than a
    denial, so `denied` never shows (it is omitted when false, as the API server omits it)."""
    allowed, reason = authorizer.authorize(user, attributes_from_spec(spec))
    status: dict[str, Any] = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return status


def forbidden_message(user: User, attrs: Attributes, reason: str = "") -> str:
    """The 403 Status message (responsewriters.Forbidden in apimachinery's NewForbidden):
    'pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "y"'."""
    who = _go_quote(user.name)
    if not attrs.resource_request:
        text = f"User {who} cannot {attrs.verb} path {_go_quote(attrs.path)}"
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        text = f"User {who} cannot {attrs.verb} resource {_go_quote(resource)} in API group {_go_quote(attrs.api_group)}"
        text += f" in the namespace {_go_quote(attrs.namespace)}" if attrs.namespace else " at the cluster scope"
    if reason:
        text += f": {reason}"
    if not attrs.resource_request:
        return f"forbidden: {text}"
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if attrs.name:
        return f"{qualified} {_go_quote(attrs.name)} is forbidden: {text}"
    return f"{qualified} is forbidden: {text}"
