"""podnet.apiserver.rbac: RBAC's decisions, reasons and messages, one case per rule.

Cases are written from the behaviour of kube-apiserver's RBAC authorizer (its rule matching,
rule resolution and the wording of its reasons and 403 messages), each named for the rule it
proves. The policy is a small cluster of bindings, plus the bootstrap policy podnet's control
plane adds to every cluster.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.api.objects import KubeObject
from podnet.apiserver.rbac import (Attributes, Authorizer, Impersonation, ImpersonationError, User,
                                   access_review_status, forbidden_message, impersonate, review_problems,
                                   service_account_username, user_from_spec)
from podnet.controlplane import rbac as bootstrap
from tests.conftest import cluster_of

GROUP = "rbac.authorization.k8s.io"


def role(name, namespace, *rules):
    return {"apiVersion": f"{GROUP}/v1", "kind": "Role", "metadata": {"name": name, "namespace": namespace},
            "rules": list(rules)}


def cluster_role(name, *rules):
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": list(rules)}


def rule(verbs, groups=None, resources=None, names=None, urls=None):
    body = {"verbs": verbs}
    if groups is not None:
        body["apiGroups"] = groups
    if resources is not None:
        body["resources"] = resources
    if names is not None:
        body["resourceNames"] = names
    if urls is not None:
        body["nonResourceURLs"] = urls
    return body


def user(name):
    return {"kind": "User", "apiGroup": GROUP, "name": name}


def group(name):
    return {"kind": "Group", "apiGroup": GROUP, "name": name}


def sa(name, namespace=None):
    subject = {"kind": "ServiceAccount", "name": name}
    if namespace:
        subject["namespace"] = namespace
    return subject


def binding(name, namespace, role_kind, role_name, *subjects):
    kind = "RoleBinding" if namespace else "ClusterRoleBinding"
    metadata = {"name": name, "namespace": namespace} if namespace else {"name": name}
    return {"apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": metadata,
            "roleRef": {"apiGroup": GROUP, "kind": role_kind, "name": role_name}, "subjects": list(subjects)}


POLICY = [
    role("pod-reader", "dev", rule(["get", "list", "watch"], [""], ["pods"])),
    role("log-reader", "dev", rule(["get"], [""], ["pods/log"])),
    role("one-config", "dev", rule(["get", "update"], [""], ["configmaps"], names=["app-config"])),
    role("status-everywhere", "dev", rule(["get"], ["*"], ["*/status"])),
    cluster_role("secret-reader", rule(["get", "list"], [""], ["secrets"])),
    cluster_role("deployer", rule(["*"], ["apps"], ["deployments", "deployments/scale"])),
    cluster_role("everything-in-apps", rule(["get"], ["apps"], ["*"])),
    cluster_role("log-urls", rule(["get"], urls=["/logs", "/logs/*"])),
    cluster_role("metrics", rule(["get"], urls=["/metrics"])),
    cluster_role("debug", rule(["get"], urls=["/debug/*"])),
    binding("jane-reads-pods", "dev", "Role", "pod-reader", user("jane")),
    binding("jane-reads-logs", "dev", "Role", "log-reader", user("jane")),
    binding("jane-one-config", "dev", "Role", "one-config", user("jane")),
    binding("ops-status", "dev", "Role", "status-everywhere", group("ops")),
    binding("robot-secrets", "dev", "ClusterRole", "secret-reader", sa("robot")),
    binding("builder-deploys", "", "ClusterRole", "deployer", sa("builder", "ci")),
    binding("auditors-apps", "", "ClusterRole", "everything-in-apps", group("auditors")),
    binding("log-readers", "", "ClusterRole", "log-urls", user("jane"), group("ops")),
    binding("debuggers", "", "ClusterRole", "debug", group("ops")),
    binding("broken", "dev", "Role", "no-such-role", user("bob")),
    binding("broken-cluster", "", "ClusterRole", "no-such-clusterrole", user("bob")),
    binding("sa-no-namespace", "", "ClusterRole", "metrics", sa("lost")),
]
AUTHORIZER = Authorizer(POLICY + [o.body for o in bootstrap.bootstrap_policy()])

JANE = User("jane", ("system:authenticated",))
BOB = User("bob", ("system:authenticated",))
OPS = User("olga", ("ops", "system:authenticated"))
AUDITOR = User("al", ("auditors", "system:authenticated"))
ROBOT = User(service_account_username("dev", "robot"),
             ("system:serviceaccounts", "system:serviceaccounts:dev", "system:authenticated"))
BUILDER = User(service_account_username("ci", "builder"), ("system:serviceaccounts", "system:authenticated"))
ADMIN = User("kubernetes-admin", ("system:masters", "system:authenticated"))
ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


def resource(verb, resource, namespace="", group="", subresource="", name=""):
    return Attributes(verb=verb, api_group=group, resource=resource, subresource=subresource, namespace=namespace,
                      name=name)


def path(verb, url):
    return Attributes(verb=verb, path=url, resource_request=False)


CASES = [
    # (case, user, attributes, allowed)
    ("a Role grants its verbs on its resource", JANE, resource("list", "pods", "dev"), True),
    ("a Role grants nothing outside its verbs", JANE, resource("delete", "pods", "dev"), False),
    ("a Role grants nothing in another namespace", JANE, resource("list", "pods", "prod"), False),
    ("a Role grants nothing cluster-wide", JANE, resource("list", "pods"), False),
    ("a resource does not grant its subresources", JANE, resource("get", "pods", "dev", subresource="exec"), False),
    ("resource/subresource grants that subresource", JANE, resource("get", "pods", "dev", subresource="log"), True),
    ("resource/subresource does not grant the resource", User("jane"), resource("get", "pods", "prod"), False),
    ("*/subresource grants it on any resource", OPS, resource("get", "deployments", "dev", "apps", "status"), True),
    ("*/subresource does not grant another subresource", OPS, resource("get", "pods", "dev", subresource="log"), False),
    ("*/subresource does not grant the resource itself", OPS, resource("get", "pods", "dev"), False),
    ("resourceNames allow the named object", JANE, resource("update", "configmaps", "dev", name="app-config"), True),
    ("resourceNames refuse another name", JANE, resource("update", "configmaps", "dev", name="other"), False),
    ("resourceNames refuse a request without a name (list)", JANE, resource("get", "configmaps", "dev"), False),
    ("the API group must match", AUDITOR, resource("get", "pods", "dev"), False),
    ('"*" resources match every resource of the group', AUDITOR, resource("get", "statefulsets", "x", "apps"), True),
    ('"*" resources match subresources too', AUDITOR, resource("get", "deployments", "x", "apps", "scale"), True),
    ('"*" verbs match any verb', BUILDER, resource("deletecollection", "deployments", "x", "apps"), True),
    ("a ClusterRoleBinding grants in every namespace", BUILDER, resource("patch", "deployments", "prod", "apps"), True),
    ("a ClusterRoleBinding grants cluster-wide requests", BUILDER, resource("list", "deployments", "", "apps"), True),
    ("a RoleBinding to a ClusterRole grants in its namespace", ROBOT, resource("get", "secrets", "dev"), True),
    ("a RoleBinding to a ClusterRole grants nothing elsewhere", ROBOT, resource("get", "secrets", "prod"), False),
    ("a RoleBinding to a ClusterRole grants nothing cluster-wide", ROBOT, resource("list", "secrets"), False),
    ("a ServiceAccount subject defaults to the binding's namespace", ROBOT, resource("list", "secrets", "dev"), True),
    ("a ServiceAccount of another namespace is another user",
     User(service_account_username("prod", "robot"), ("system:authenticated",)), resource("get", "secrets", "dev"), False),
    ("a cluster binding's ServiceAccount without a namespace matches nobody",
     User(service_account_username("", "lost")), path("get", "/metrics"), False),
    ("a user named like a group is not in it", User("ops"), resource("get", "pods", "dev", subresource="status"), False),
    ("nonResourceURLs match exactly", JANE, path("get", "/logs"), True),
    ("a trailing * matches by prefix", JANE, path("get", "/logs/kubelet/today"), True),
    ("a prefix is not a path segment", JANE, path("get", "/logsearch"), False),
    ("nonResourceURLs grant no resources", JANE, resource("get", "logs"), False),
    ("resource rules grant no paths", JANE, path("get", "/pods"), False),
    ("nonResourceURLs still need the verb", OPS, path("post", "/logs"), False),
    ("a path/* prefix does not match the path itself", OPS, path("get", "/debug"), False),
    ("a path/* prefix matches below it", OPS, path("get", "/debug/pprof/heap"), True),
    ("verbs are case-sensitive", JANE, resource("GET", "pods", "dev"), False),
    ("resources are case-sensitive", JANE, resource("get", "Pods", "dev"), False),
    ("every authenticated user may discover the API", BOB, path("get", "/apis/apps/v1"), True),
    ("every authenticated user may read the version", BOB, path("get", "/version"), True),
    ("every authenticated user may ask what it may do", BOB,
     resource("create", "selfsubjectaccessreviews", group="authorization.k8s.io"), True),
    ("anonymous users may read health, not discover", ANONYMOUS, path("get", "/healthz"), True),
    ("anonymous users may not discover", ANONYMOUS, path("get", "/api"), False),
    ("system:masters may do anything", ADMIN, resource("delete", "nodes", name="node1"), True),
    ("system:masters reach any path", ADMIN, path("post", "/anything/at/all"), True),
    ("nobody else may read secrets", BOB, resource("get", "secrets", "dev"), False),
]


@pytest.mark.parametrize("case, who, attrs, allowed", CASES, ids=[c[0] for c in CASES])
def test_decision(case, who, attrs, allowed):
    assert AUTHORIZER.authorize(who, attrs)[0] is allowed


REASONS = [
    ("a RoleBinding names itself as name/namespace", JANE, resource("list", "pods", "dev"),
     'RBAC: allowed by RoleBinding "jane-reads-pods/dev" of Role "pod-reader" to User "jane"'),
    ("a ServiceAccount subject is named name/namespace", ROBOT, resource("get", "secrets", "dev"),
     'RBAC: allowed by RoleBinding "robot-secrets/dev" of ClusterRole "secret-reader" to ServiceAccount "robot/dev"'),
    ("a ClusterRoleBinding names the subject that matched", OPS, path("get", "/logs"),
     'RBAC: allowed by ClusterRoleBinding "log-readers" of ClusterRole "log-urls" to Group "ops"'),
    ("a group binding names the group", BOB, path("get", "/version"),
     'RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group '
     '"system:authenticated"'),
    ("system:masters are allowed before RBAC: no reason", ADMIN, resource("get", "pods", "dev"), ""),
    ("a denial has no reason", JANE, resource("delete", "pods", "dev"), ""),
    ("a denial lists the bindings to missing roles", BOB, resource("get", "pods", "dev"),
     'RBAC: [clusterrole.rbac.authorization.k8s.io "no-such-clusterrole" not found, '
     'role.rbac.authorization.k8s.io "no-such-role" not found]'),
    ("one resolution error is not bracketed", BOB, resource("get", "pods", "prod"),
     'RBAC: clusterrole.rbac.authorization.k8s.io "no-such-clusterrole" not found'),
]


@pytest.mark.parametrize("case, who, attrs, reason", REASONS, ids=[c[0] for c in REASONS])
def test_reason(case, who, attrs, reason):
    assert AUTHORIZER.authorize(who, attrs)[1] == reason


def test_the_authorizer_reads_a_computed_clusters_objects():
    """Every object of a cluster may be given (KubeObjects or bodies): only RBAC's are read."""
    from_cluster = Authorizer(cluster_of().objects.values())
    assert from_cluster.authorize(BOB, path("get", "/version"))[0]
    assert not from_cluster.authorize(BOB, resource("list", "pods", "default"))[0]


def test_the_first_rule_that_allows_wins_cluster_bindings_first():
    policy = [cluster_role("reader", rule(["get"], [""], ["pods"])),
              binding("a-namespaced", "dev", "ClusterRole", "reader", user("u")),
              binding("z-cluster", "", "ClusterRole", "reader", user("u"))]
    allowed, reason = Authorizer(policy).authorize(User("u"), resource("get", "pods", "dev"))
    assert allowed and reason == 'RBAC: allowed by ClusterRoleBinding "z-cluster" of ClusterRole "reader" to User "u"'


def test_a_role_ref_of_a_cluster_binding_to_a_role_resolves_to_nothing():
    policy = [role("r", "dev", rule(["get"], [""], ["pods"])), binding("c", "", "Role", "r", user("u"))]
    assert Authorizer(policy).authorize(User("u"), resource("get", "pods", "dev")) == (
        False, 'RBAC: role.rbac.authorization.k8s.io "r" not found')


FORBIDDEN = [
    (resource("list", "pods", "dev"), "",
     'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "dev"'),
    (resource("get", "deployments", "dev", "apps", name="web"), "",
     'deployments.apps "web" is forbidden: User "jane" cannot get resource "deployments" in API group "apps" '
     'in the namespace "dev"'),
    (resource("create", "pods", "dev", subresource="exec", name="web-0"), "",
     'pods "web-0" is forbidden: User "jane" cannot create resource "pods/exec" in API group "" in the namespace "dev"'),
    (resource("list", "nodes"), "",
     'nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope'),
    (path("get", "/metrics"), "", 'forbidden: User "jane" cannot get path "/metrics"'),
    (resource("list", "pods", "dev"), 'RBAC: role.rbac.authorization.k8s.io "x" not found',
     'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "dev": '
     'RBAC: role.rbac.authorization.k8s.io "x" not found'),
]


@pytest.mark.parametrize("attrs, reason, message", FORBIDDEN)
def test_forbidden_message(attrs, reason, message):
    assert forbidden_message(User("jane"), attrs, reason) == message


def test_access_review_status_resource_and_non_resource():
    spec = {"resourceAttributes": {"namespace": "dev", "verb": "list", "resource": "pods", "version": "v1"}}
    assert access_review_status(AUTHORIZER, JANE, spec) == {
        "allowed": True, "reason": 'RBAC: allowed by RoleBinding "jane-reads-pods/dev" of Role "pod-reader" to User "jane"'}
    assert access_review_status(AUTHORIZER, JANE, {"resourceAttributes": {"namespace": "dev", "verb": "delete",
                                                                          "resource": "pods"}}) == {"allowed": False}
    assert access_review_status(AUTHORIZER, JANE, {"nonResourceAttributes": {"path": "/logs/x", "verb": "get"}})[
        "allowed"]


def test_subject_access_review_asks_about_the_spec_user():
    spec = {"user": ROBOT.name, "groups": list(ROBOT.groups),
            "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "secrets"}}
    assert access_review_status(AUTHORIZER, user_from_spec(spec), spec)["allowed"]


@pytest.mark.parametrize("spec, self_review, expected", [
    ({"resourceAttributes": {"verb": "get"}}, True, []),
    ({}, True, ["spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or "
                "resourceAttributes must be specified"]),
    ({"resourceAttributes": {}, "nonResourceAttributes": {"path": "/x"}}, True,
     ['spec.nonResourceAttributes: Invalid value: {"path": "/x"}: cannot be specified in combination with '
      "resourceAttributes"]),
    ({"resourceAttributes": {"verb": "get"}}, False,
     ['spec.user: Invalid value: "": at least one of user or group must be specified']),
    ({"groups": ["g"], "resourceAttributes": {"verb": "get"}}, False, []),
])
def test_review_problems(spec, self_review, expected):
    assert [str(p) for p in review_problems(spec, self_review=self_review)] == expected


def test_rules_for_lists_cluster_and_namespace_rules_like_can_i_list():
    status = AUTHORIZER.rules_for(JANE, "dev")
    assert {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]} in status["resourceRules"]
    assert {"verbs": ["get", "update"], "apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": ["app-config"]} in status["resourceRules"]
    assert {"verbs": ["get"], "nonResourceURLs": ["/logs", "/logs/*"]} in status["nonResourceRules"]
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} in status["resourceRules"]
    assert status["incomplete"] is False and "evaluationError" not in status
    assert not any(r.get("resources") == ["pods"] for r in AUTHORIZER.rules_for(JANE, "prod")["resourceRules"])


def test_rules_for_reports_missing_roles_as_evaluation_error():
    status = AUTHORIZER.rules_for(BOB, "dev")
    assert status["evaluationError"] == ('[clusterrole.rbac.authorization.k8s.io "no-such-clusterrole" not found, '
                                         'role.rbac.authorization.k8s.io "no-such-role" not found]')


def test_rules_for_the_admin_are_the_cluster_admin_binding():
    status = AUTHORIZER.rules_for(ADMIN, "default")
    assert {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]} in status["resourceRules"]
    assert {"verbs": ["*"], "nonResourceURLs": ["*"]} in status["nonResourceRules"]


# ---------------------------------------------------------------- the bootstrap policy, aggregated


def computed_policy(*extra):
    objects = bootstrap.bootstrap_policy()
    roles = [o for o in objects if o.kind == "ClusterRole"]
    roles += [KubeObject("ClusterRole", "", b["metadata"]["name"], b) for b in extra]
    bootstrap.aggregate(roles)
    return {o.name: o.body for o in objects if o.kind == "ClusterRoleBinding"} | {o.name: o.body for o in roles}


def bound(role_name, who="u", namespace="team"):
    return binding("b", namespace, "ClusterRole", role_name, user(who))


@pytest.mark.parametrize("role_name, attrs, allowed", [
    ("view", resource("list", "pods", "team"), True),
    ("view", resource("get", "pods", "team", subresource="log"), True),
    ("view", resource("list", "endpointslices", "team", "discovery.k8s.io"), True),
    ("view", resource("get", "secrets", "team"), False),
    ("view", resource("create", "pods", "team"), False),
    ("edit", resource("get", "secrets", "team"), True),
    ("edit", resource("create", "pods", "team", subresource="exec"), True),
    ("edit", resource("patch", "deployments", "team", "apps"), True),
    ("edit", resource("list", "pods", "team"), True),  # view's rules, aggregated into edit
    ("edit", resource("update", "endpoints", "team"), False),
    ("edit", resource("create", "rolebindings", "team", GROUP), False),
    ("admin", resource("create", "rolebindings", "team", GROUP), True),
    ("admin", resource("delete", "networkpolicies", "team", "networking.k8s.io"), True),  # edit's, aggregated
    ("admin", resource("watch", "services", "team"), True),  # view's, through edit
    ("admin", resource("list", "pods", "other"), False),  # a RoleBinding: its namespace only
    ("cluster-admin", resource("delete", "nodes"), False),  # bound in a namespace: nodes are cluster-scoped
    ("cluster-admin", resource("delete", "pods", "team"), True),
])
def test_bootstrap_roles(role_name, attrs, allowed):
    authorizer = Authorizer(list(computed_policy().values()) + [bound(role_name)])
    assert authorizer.authorize(User("u"), attrs)[0] is allowed


def test_aggregation_takes_roles_by_name_without_duplicates():
    policy = computed_policy()
    edit, view, to_edit = (policy[n]["rules"] for n in ("edit", "view", "system:aggregate-to-edit"))
    assert edit == to_edit + [r for r in view if r not in to_edit]
    assert policy["admin"]["rules"][:len(edit)] == edit


def test_a_users_clusterrole_labelled_to_aggregate_extends_view_edit_and_admin():
    crontab = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
               "metadata": {"name": "crontabs-view", "labels": {bootstrap.AGGREGATE_TO + "view": "true"}},
               "rules": [rule(["get"], ["example.com"], ["crontabs"])]}
    policy = computed_policy(crontab)
    for name in ("view", "edit", "admin"):
        assert rule(["get"], ["example.com"], ["crontabs"]) in policy[name]["rules"]


def test_bootstrap_objects_carry_the_bootstrapping_label():
    assert all(o.labels["kubernetes.io/bootstrapping"] == "rbac-defaults" for o in bootstrap.bootstrap_policy())


# ---------------------------------------------------------------- properties


NAMES = st.sampled_from(["a", "b", "c"])


@settings(max_examples=200, deadline=None)
@given(verbs=st.lists(st.sampled_from(["get", "list", "*"]), min_size=1, max_size=2),
       resources=st.lists(st.sampled_from(["pods", "pods/log", "*", "*/log", "services"]), min_size=1, max_size=2),
       names=st.one_of(st.none(), st.lists(NAMES, min_size=1, max_size=2)),
       verb=st.sampled_from(["get", "list"]), res=st.sampled_from(["pods", "services"]),
       sub=st.sampled_from(["", "log", "exec"]), name=st.sampled_from(["", "a", "b"]))
def test_a_rule_allows_exactly_what_its_lists_say(verbs, resources, names, verb, res, sub, name):
    """Against a literal reading of the rule (the model), through both binding kinds."""
    combined = f"{res}/{sub}" if sub else res
    expected = (("*" in verbs or verb in verbs)
                and ("*" in resources or combined in resources or (sub and f"*/{sub}" in resources))
                and (names is None or name in names))
    policy_rule = rule(verbs, [""], resources, names)
    for policy in ([role("r", "ns", policy_rule), binding("b", "ns", "Role", "r", user("u"))],
                   [cluster_role("r", policy_rule), binding("b", "", "ClusterRole", "r", user("u"))]):
        decision = Authorizer(policy).authorize(User("u"), resource(verb, res, "ns", subresource=sub, name=name))
        assert decision[0] is bool(expected)


# ---------------------------------------------------------------- cost


def test_authorize_with_a_thousand_bindings_reads_only_the_users_bindings():
    """1,000 ServiceAccounts, each with its own Role and RoleBinding in its own namespace: a
    request is decided on its user's bindings (the answer is right for every one of them)."""
    policy = [o.body for o in bootstrap.bootstrap_policy()]
    for i in range(1000):
        namespace = f"ns{i % 50}"
        policy.append(role(f"r{i}", namespace, rule(["get"], [""], ["configmaps"], names=[f"cm{i}"])))
        policy.append(binding(f"b{i}", namespace, "Role", f"r{i}", sa(f"sa{i}")))
    authorizer = Authorizer(policy)
    for i in range(0, 1000, 37):
        namespace = f"ns{i % 50}"
        who = User(service_account_username(namespace, f"sa{i}"), ("system:serviceaccounts", "system:authenticated"))
        assert authorizer.authorize(who, resource("get", "configmaps", namespace, name=f"cm{i}"))[0]
        assert not authorizer.authorize(who, resource("get", "configmaps", namespace, name=f"cm{i + 1}"))[0]


def measure_per_call(bindings: int = 1000, calls: int = 20000) -> tuple[float, float]:
    """Seconds to build the index, and per authorize() call, with `bindings` RoleBindings (and
    as many Roles) over 50 namespaces; used by `python tests/test_rbac.py`."""
    policy = [o.body for o in bootstrap.bootstrap_policy()]
    for i in range(bindings):
        namespace = f"ns{i % 50}"
        policy.append(role(f"r{i}", namespace, rule(["get", "list"], [""], ["configmaps", "pods"])))
        policy.append(binding(f"b{i}", namespace, "Role", f"r{i}", sa(f"sa{i}")))
    started = time.perf_counter()
    authorizer = Authorizer(policy)
    built = time.perf_counter() - started
    who = User(service_account_username("ns7", "sa7"), ("system:serviceaccounts", "system:serviceaccounts:ns7",
                                                         "system:authenticated"))
    requests = [resource("list", "pods", "ns7"), resource("delete", "pods", "ns7"), path("get", "/version")]
    started = time.perf_counter()
    for i in range(calls):
        authorizer.authorize(who, requests[i % 3])
    return built, (time.perf_counter() - started) / calls


if __name__ == "__main__":
    build, per_call = measure_per_call()
    print(f"1,000 RoleBindings + bootstrap policy: index built in {build * 1000:.1f} ms, "
          f"authorize {per_call * 1e6:.1f} µs per call")


# ---------------------------------------------------------------- impersonation


IMPERSONATORS = Authorizer([
    cluster_role("impersonate-robots", rule(["impersonate"], [""], ["serviceaccounts"])),
    binding("carol-robots", "dev", "ClusterRole", "impersonate-robots", user("carol")),
    cluster_role("impersonate-jane", rule(["impersonate"], [""], ["users"], names=["jane"])),
    binding("carol-jane", "", "ClusterRole", "impersonate-jane", user("carol")),
])
CAROL = User("carol", ("system:authenticated",))


def test_impersonating_a_service_account_gives_its_groups():
    acting = impersonate(AUTHORIZER, ADMIN, [("Impersonate-User", "system:serviceaccount:dev:robot")])
    assert acting.user == User("system:serviceaccount:dev:robot",
                               ("system:serviceaccounts", "system:serviceaccounts:dev", "system:authenticated"))
    assert AUTHORIZER.authorize(acting.user, resource("get", "secrets", "dev"))[0]


def test_impersonated_groups_replace_the_defaults_and_get_system_authenticated():
    acting = impersonate(AUTHORIZER, ADMIN, [("impersonate-user", "jane"), ("impersonate-group", "ops"),
                                             ("Impersonate-Extra-Scopes%2Fx", "a"), ("Impersonate-Uid", "7")])
    assert acting.user == User("jane", ("ops", "system:authenticated"), "7", (("scopes/x", ("a",)),))


def test_impersonation_is_checked_in_the_namespace_of_the_service_account():
    assert impersonate(IMPERSONATORS, CAROL, [("Impersonate-User", "system:serviceaccount:dev:x")]).user is not None
    refused = impersonate(IMPERSONATORS, CAROL, [("Impersonate-User", "system:serviceaccount:prod:x")])
    assert refused.user is None and refused.denied == Attributes(
        "impersonate", resource="serviceaccounts", namespace="prod", name="x")
    assert forbidden_message(CAROL, refused.denied, refused.reason) == (
        'serviceaccounts "x" is forbidden: User "carol" cannot impersonate resource "serviceaccounts" in API group "" '
        'in the namespace "prod"')


def test_impersonating_a_user_and_a_group_checks_each():
    assert impersonate(IMPERSONATORS, CAROL, [("Impersonate-User", "jane")]).user.name == "jane"
    refused = impersonate(IMPERSONATORS, CAROL, [("Impersonate-User", "jane"), ("Impersonate-Group", "admins")])
    assert forbidden_message(CAROL, refused.denied, refused.reason) == (
        'groups "admins" is forbidden: User "carol" cannot impersonate resource "groups" in API group "" '
        "at the cluster scope")


def test_no_impersonation_headers_and_groups_without_a_user():
    assert impersonate(AUTHORIZER, JANE, [("Accept", "application/json")]) == Impersonation(None)
    with pytest.raises(ImpersonationError):
        impersonate(AUTHORIZER, ADMIN, [("Impersonate-Group", "ops")])
