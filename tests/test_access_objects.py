"""ServiceAccounts and RBAC objects: admission (the API server's RBAC validation), what the
control plane adds to every cluster, and how `podnet get`/`describe` print them."""

from __future__ import annotations

import shutil
import subprocess
import textwrap

import pytest

from podnet.cli.main import main
from podnet.errors import InvalidInput
from tests.conftest import cluster_of, load_yaml

GROUP = "rbac.authorization.k8s.io"


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidInput) as info:
        load_yaml(text)
    return [line.split(": ", 2)[2] for line in info.value.lines]  # without FILE:LINE and the object


BINDING = """
apiVersion: rbac.authorization.k8s.io/v1
kind: {kind}
metadata: {{name: {name}, namespace: dev}}
roleRef: {{apiGroup: {ref_group}, kind: {ref_kind}, name: {ref_name}}}
subjects: [{subject}]
"""


def binding(kind="RoleBinding", name="b", ref_group=GROUP, ref_kind="Role", ref_name="r",
            subject="{kind: User, name: jane}") -> str:
    return BINDING.format(kind=kind, name=name, ref_group=ref_group, ref_kind=ref_kind, ref_name=ref_name,
                          subject=subject)


@pytest.mark.parametrize("text, problem", [
    (binding(ref_kind="Secret"),
     'roleRef.kind: Unsupported value: "Secret": supported values: "Role", "ClusterRole"'),
    (binding(kind="ClusterRoleBinding", ref_kind="Role"),
     'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"'),
    (binding(ref_group="rbac"), 'roleRef.apiGroup: Unsupported value: "rbac": supported values: "rbac.authorization.k8s.io"'),
    (binding(ref_name="a/b"), "roleRef.name: Invalid value: \"a/b\": may not contain '/'"),
    (binding(name=".."), "metadata.name: Invalid value: \"..\": may not be '..'"),
    (binding(subject="{kind: Robot, name: r2}"),
     'subjects[0].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"'),
    (binding(subject="{kind: Group, name: devs, apiGroup: v1}"),
     'subjects[0].apiGroup: Unsupported value: "v1": supported values: "rbac.authorization.k8s.io"'),
    (binding(subject="{kind: ServiceAccount, name: robot, apiGroup: rbac.authorization.k8s.io}"),
     'subjects[0].apiGroup: Unsupported value: "rbac.authorization.k8s.io": supported values: ""'),
    (binding(subject="{kind: ServiceAccount, name: Robot}"),
     'subjects[0].name: Invalid value: "Robot": a lowercase RFC 1123 subdomain must consist of lower case '
     "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
     "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    (binding(kind="ClusterRoleBinding", ref_kind="ClusterRole", subject="{kind: ServiceAccount, name: robot}"),
     "subjects[0].namespace: Required value"),
    (binding(subject="{kind: User, name: ''}"), "subjects[0].name: Required value"),
    ("""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r}
rules: [{verbs: [get], nonResourceURLs: [/healthz]}]
""", 'rules[0].nonResourceURLs: Invalid value: ["/healthz"]: namespaced rules cannot apply to non-resource URLs'),
    ("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: r}
rules: [{verbs: [get], nonResourceURLs: [/healthz], resources: [pods]}]
""", 'rules[0].nonResourceURLs: Invalid value: ["/healthz"]: rules cannot apply to both regular resources and '
     "non-resource URLs"),
    ("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: r}
rules: [{verbs: [], apiGroups: [""], resources: [pods]}]
""", "rules[0].verbs: Required value: verbs must contain at least one value"),
    ("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: r}
rules: [{verbs: [get], resources: [pods]}]
""", "rules[0].apiGroups: Required value: resource rules must supply at least one api group"),
    ("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: r}
aggregationRule: {clusterRoleSelectors: []}
""", "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if "
     "aggregationRule is non-nil"),
    ("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: r}
aggregationRule: {clusterRoleSelectors: [{matchExpressions: [{key: a, operator: In}]}]}
""", "aggregationRule.clusterRoleSelectors[0].matchExpressions[0].values: Required value: must be specified when "
     "`operator` is 'In' or 'NotIn'"),
    ("""
apiVersion: v1
kind: ServiceAccount
metadata: {name: Robot}
""", 'metadata.name: Invalid value: "Robot": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
     "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
     "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
])
def test_the_api_servers_rbac_validation(text, problem):
    assert errors_of(text) == [problem]


def test_valid_rbac_names_and_defaulted_fields_are_accepted():
    """Names with ':' (as the system roles have), a roleRef and User/Group subjects without an
    apiGroup (defaulted), a RoleBinding's ServiceAccount without a namespace (the binding's)."""
    store = load_yaml("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "example:reader"}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}, {nonResourceURLs: ["/metrics"], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: "read:pods", namespace: dev}
roleRef: {kind: ClusterRole, name: "example:reader"}
subjects: [{kind: User, name: jane}, {kind: Group, name: devs}, {kind: ServiceAccount, name: robot}]
""")
    assert sorted(k[0] for k in store.objects) == ["ClusterRole", "RoleBinding"]


# ---------------------------------------------------------------- the control plane


def test_every_namespace_gets_a_default_service_account():
    cluster = cluster_of("""
apiVersion: v1
kind: Namespace
metadata: {name: team}
""")
    namespaces = {n.name for n in cluster.of_kind("Namespace")}
    accounts = cluster.of_kind("ServiceAccount")
    assert {a.namespace for a in accounts} == namespaces and {a.name for a in accounts} == {"default"}


def test_a_service_account_of_the_input_is_kept_as_given():
    cluster = cluster_of("""
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: default, labels: {mine: "yes"}}
automountServiceAccountToken: false
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: default}
""")
    mine = cluster.get("ServiceAccount", "default", "default")
    assert mine.labels == {"mine": "yes"} and mine.body["automountServiceAccountToken"] is False
    assert cluster.get("ServiceAccount", "default", "robot") is not None


@pytest.mark.parametrize("spec_fields, expected", [
    ("", "default"),
    ("serviceAccountName: robot", "robot"),
    ("serviceAccount: old-style", "old-style"),  # the deprecated field, when it is the only one
])
def test_pods_service_account_is_defaulted_as_admission_does(spec_fields, expected):
    cluster = cluster_of(f"""
apiVersion: v1
kind: Pod
metadata: {{name: p}}
spec:
  {spec_fields or "dnsPolicy: ClusterFirst"}
  containers: [{{name: c, image: nginx:1.27}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: d}}
spec:
  selector: {{matchLabels: {{app: d}}}}
  template:
    metadata: {{labels: {{app: d}}}}
    spec:
      {spec_fields or "dnsPolicy: ClusterFirst"}
      containers: [{{name: c, image: nginx:1.27}}]
""")
    for pod in cluster.of_kind("Pod", "default"):
        assert (pod.spec["serviceAccountName"], pod.spec["serviceAccount"]) == (expected, expected)


def test_every_cluster_has_the_bootstrap_policy():
    cluster = cluster_of()
    assert {r.name for r in cluster.of_kind("ClusterRole")} >= {
        "cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery", "system:public-info-viewer"}
    bindings = {b.name: b.body for b in cluster.of_kind("ClusterRoleBinding")}
    assert bindings["cluster-admin"]["subjects"] == [{"apiGroup": GROUP, "kind": "Group", "name": "system:masters"}]
    assert [s["name"] for s in bindings["system:public-info-viewer"]["subjects"]] == [
        "system:authenticated", "system:unauthenticated"]
    assert cluster.get("ClusterRole", "", "admin").body["rules"]  # filled by aggregation


def test_the_inputs_own_clusterrole_replaces_the_bootstrap_one_and_aggregates():
    cluster = cluster_of("""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: view}
rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: monitoring}
aggregationRule: {clusterRoleSelectors: [{matchLabels: {example.com/monitoring: "true"}}]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: metrics, labels: {example.com/monitoring: "true"}}
rules: [{nonResourceURLs: ["/metrics"], verbs: [get]}]
""")
    assert cluster.get("ClusterRole", "", "view").body["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                                                                     "verbs": ["get"]}]
    assert cluster.get("ClusterRole", "", "monitoring").body["rules"] == [{"nonResourceURLs": ["/metrics"],
                                                                           "verbs": ["get"]}]


def test_bindings_get_the_api_servers_defaults():
    cluster = cluster_of("""
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: b, namespace: default}
roleRef: {kind: ClusterRole, name: view}
subjects: [{kind: User, name: jane}, {kind: ServiceAccount, name: robot}]
""")
    body = cluster.get("RoleBinding", "default", "b").body
    assert body["roleRef"]["apiGroup"] == GROUP
    assert body["subjects"] == [{"kind": "User", "name": "jane", "apiGroup": GROUP},
                                {"kind": "ServiceAccount", "name": "robot"}]


# ---------------------------------------------------------------- output


MANIFESTS = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: dev}
secrets: [{name: robot-token}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: dev, creationTimestamp: "2024-07-29T18:59:19Z"}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods, namespace: dev}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: User, name: jane}
- {kind: User, name: joe}
- {kind: Group, name: devs}
- {kind: ServiceAccount, name: robot, namespace: dev}
"""


def table(capsys, tmp_path, *args) -> list[list[str]]:
    source = tmp_path / "rbac.yaml"
    source.write_text(MANIFESTS)
    assert main(["get", *args, "-f", str(source)]) == 0
    return [line.split() for line in capsys.readouterr().out.splitlines()]


def test_get_columns_as_kubectl_prints_them(capsys, tmp_path):
    """AGE is the time since the command stamped the objects: checked for its shape only."""
    def without_age(rows, column):
        assert all(row[column][:-1].isdigit() and row[column][-1] == "s" for row in rows[1:])
        return [row[:column] + row[column + 1:] for row in rows]

    assert without_age(table(capsys, tmp_path, "sa", "robot", "-n", "dev"), 2) == [["NAME", "SECRETS"], ["robot", "1"]]
    assert table(capsys, tmp_path, "roles", "-n", "dev") == [["NAME", "CREATED", "AT"],
                                                            ["pod-reader", "2024-07-29T18:59:19Z"]]
    assert without_age(table(capsys, tmp_path, "rolebindings", "-n", "dev"), 2) == [
        ["NAME", "ROLE"], ["read-pods", "Role/pod-reader"]]
    wide = without_age(table(capsys, tmp_path, "rolebindings", "-n", "dev", "-o", "wide"), 2)
    assert wide == [["NAME", "ROLE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
                    ["read-pods", "Role/pod-reader", "jane,", "joe", "devs", "dev/robot"]]
    assert without_age(table(capsys, tmp_path, "clusterrolebinding", "cluster-admin"), 2)[1] == [
        "cluster-admin", "ClusterRole/cluster-admin"]


def test_get_all_does_not_list_them(capsys, tmp_path):
    kinds = {row[0].split("/")[0] for row in table(capsys, tmp_path, "all", "-A")[1:] if row}
    assert not {k for k in kinds if "role" in k or "serviceaccount" in k}


# ---------------------------------------------------------------- what kubectl writes


KUBECTL_CREATE = [
    ["create", "rolebinding", "read-pods", "--role=pod-reader", "--user=jane", "--group=devs",
     "--serviceaccount=dev:robot", "-n", "dev"],
    ["create", "rolebinding", "viewers", "--clusterrole=view", "--serviceaccount=dev:robot", "-n", "dev"],
    ["create", "clusterrolebinding", "robot-view", "--clusterrole=view", "--serviceaccount=dev:robot"],
    ["create", "clusterrole", "monitoring", "--aggregation-rule=example.com/aggregate-to-monitoring=true"],
    ["create", "clusterrole", "logs", "--verb=get", "--non-resource-url=/logs/*"],
    ["create", "serviceaccount", "robot", "-n", "dev"],
]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_create_dry_run_manifests_are_admitted(tmp_path, capsys, monkeypatch):
    """What `kubectl create ... --dry-run=client -o yaml` writes (these need no server) goes
    through podnet's admission and prints; `kubectl create role` asks the server for its
    resources, so the Role is the one it writes, checked in here."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    documents = [subprocess.run(["kubectl", *args, "--dry-run=client", "-o", "yaml"], check=True,
                                capture_output=True, text=True, env=None).stdout for args in KUBECTL_CREATE]
    documents.append(textwrap.dedent("""\
        apiVersion: rbac.authorization.k8s.io/v1
        kind: Role
        metadata:
          creationTimestamp: null
          name: pod-reader
          namespace: dev
        rules:
        - apiGroups:
          - ""
          resources:
          - pods
          verbs:
          - get
          - list
          - watch
        """))
    source = tmp_path / "created.yaml"
    source.write_text("---\n".join(documents))
    assert main(["get", "sa,roles,rolebindings", "-n", "dev", "-o", "name", "-f", str(source)]) == 0
    assert capsys.readouterr().out.split() == [
        "serviceaccount/default", "serviceaccount/robot", "role.rbac.authorization.k8s.io/pod-reader",
        "rolebinding.rbac.authorization.k8s.io/read-pods", "rolebinding.rbac.authorization.k8s.io/viewers"]
    assert main(["get", "clusterroles,clusterrolebindings", "-o", "name", "-f", str(source)]) == 0
    names = capsys.readouterr().out.split()
    assert {"clusterrole.rbac.authorization.k8s.io/monitoring", "clusterrole.rbac.authorization.k8s.io/logs",
            "clusterrolebinding.rbac.authorization.k8s.io/robot-view"} <= set(names)


def describe(capsys, tmp_path, *args) -> str:
    source = tmp_path / "rbac.yaml"
    source.write_text(MANIFESTS)
    assert main(["describe", *args, "-f", str(source)]) == 0
    return capsys.readouterr().out


def test_describe_role_breaks_rules_down_as_kubectl(capsys, tmp_path):
    assert describe(capsys, tmp_path, "role", "pod-reader", "-n", "dev") == textwrap.dedent("""\
        Name:         pod-reader
        Labels:       <none>
        Annotations:  <none>
        PolicyRule:
          Resources  Non-Resource URLs  Resource Names  Verbs
          ---------  -----------------  --------------  -----
          pods       []                 []              [get list]
        """)
    out = describe(capsys, tmp_path, "clusterrole", "edit")
    rows = [line.split() for line in out.splitlines()]
    assert ["deployments.apps/scale", "[]", "[]", "[create", "delete", "deletecollection", "patch", "update", "get",
            "list", "watch]"] in [row for row in rows if row]  # edit's write rule, then view's read rule, merged
    assert "Events:" not in out


def test_describe_rolebinding_and_service_account(capsys, tmp_path):
    assert describe(capsys, tmp_path, "rolebinding", "read-pods", "-n", "dev") == (
        "Name:         read-pods\n"
        "Labels:       <none>\n"
        "Annotations:  <none>\n"
        "Role:\n"
        "  Kind:  Role\n"
        "  Name:  pod-reader\n"
        "Subjects:\n"
        "  Kind            Name   Namespace\n"
        "  ----            ----   ---------\n"
        "  User            jane   \n"
        "  User            joe    \n"
        "  Group           devs   \n"
        "  ServiceAccount  robot  dev\n")
    assert describe(capsys, tmp_path, "sa", "robot", "-n", "dev").splitlines()[:7] == [
        "Name:                robot",
        "Namespace:           dev",
        "Labels:              <none>",
        "Annotations:         <none>",
        "Image pull secrets:  <none>",
        "Mountable secrets:   robot-token",
        "Tokens:              <none>"]


def test_describe_pod_names_its_service_account(capsys, tmp_path):
    source = tmp_path / "pod.yaml"
    source.write_text("""
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: dev}
spec:
  serviceAccountName: robot
  containers: [{name: c, image: nginx:1.27}]
""")
    assert main(["describe", "pod", "p", "-n", "dev", "-f", str(source)]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == [
        "Name:               p", "Namespace:          dev", "Service Account:    robot"]
