"""Every kind podnet serves, through the real kubectl: apply (created, then unchanged), get in
the table kubectl prints, describe, get -o yaml round-tripping what was applied, delete — and
what a dry run leaves (nothing). The cluster's pods run on fakes (tests/apiharness.py)."""

from __future__ import annotations

import pytest
import yaml

from podnet.api.kinds import KINDS as SERVED
from tests.apiharness import KUBECTL, ApiHarness

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (make install: apt-get install kubectl)")

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
TEMPLATE = {"metadata": {"labels": {"app": "k"}}, "spec": {"containers": [{"name": "c", "image": AGNHOST, "args": ["pause"]}]}}
RBAC = "rbac.authorization.k8s.io/v1"
POLICY = "policy.networking.k8s.io/v1alpha1"

# (kubectl's name for the kind, manifest, a header kubectl's table has for it)
KINDS = [
    ("namespace", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "k-ns"}}, "STATUS"),
    ("pod", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "k-pod"}, "spec": TEMPLATE["spec"]}, "RESTARTS"),
    ("service", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "k-svc"},
                 "spec": {"selector": {"app": "k"}, "ports": [{"port": 80}]}}, "CLUSTER-IP"),
    ("endpoints", {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "k-ep"},
                   "subsets": [{"addresses": [{"ip": "192.168.1.50"}], "ports": [{"port": 80}]}]}, "ENDPOINTS"),
    ("endpointslice", {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {
        "name": "k-eps", "labels": {"kubernetes.io/service-name": "k-ext"}}, "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.168.1.51"]}], "ports": [{"port": 80}]}, "ADDRESSTYPE"),
    ("deployment", {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "k-deploy"},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "k"}}, "template": TEMPLATE}}, "UP-TO-DATE"),
    ("replicaset", {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "k-rs"},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "krs"}},
                             "template": {**TEMPLATE, "metadata": {"labels": {"app": "krs"}}}}}, "DESIRED"),
    ("statefulset", {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "k-sts"},
                     "spec": {"replicas": 1, "serviceName": "k-svc", "selector": {"matchLabels": {"app": "ksts"}},
                              "template": {**TEMPLATE, "metadata": {"labels": {"app": "ksts"}}}}}, "READY"),
    ("daemonset", {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "k-ds"},
                   "spec": {"selector": {"matchLabels": {"app": "kds"}},
                            "template": {**TEMPLATE, "metadata": {"labels": {"app": "kds"}}}}}, "NODE SELECTOR"),
    ("networkpolicy", {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "k-np"},
                       "spec": {"podSelector": {"matchLabels": {"app": "k"}}, "policyTypes": ["Ingress"]}}, "POD-SELECTOR"),
    ("ingressclass", {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "k-class"},
                      "spec": {"controller": "example.com/k"}}, "CONTROLLER"),
    ("ingress", {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "k-ing"},
                 "spec": {"ingressClassName": "k-class", "rules": [{"host": "k.example", "http": {"paths": [
                     {"path": "/", "pathType": "Prefix",
                      "backend": {"service": {"name": "k-svc", "port": {"number": 80}}}}]}}]}}, "HOSTS"),
    ("adminnetworkpolicy", {"apiVersion": POLICY, "kind": "AdminNetworkPolicy", "metadata": {"name": "k-anp"},
                            "spec": {"priority": 10, "subject": {"namespaces": {}},
                                     "ingress": [{"name": "all", "action": "Allow", "from": [{"namespaces": {}}]}]}},
     "PRIORITY"),
    ("authorizationpolicy", {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                             "metadata": {"name": "k-ap", "namespace": "default"},
                             "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}]}},
     "ACTION"),
    ("peerauthentication", {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                            "metadata": {"name": "k-pa", "namespace": "default"}, "spec": {"mtls": {"mode": "STRICT"}}},
     "MODE"),
    ("job", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "k-job", "namespace": "default"},
             "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never",
                                                           "containers": [{"name": "c", "image": "busybox"}]}}}},
     "COMPLETIONS"),
    ("httproute", {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                   "metadata": {"name": "k-route", "namespace": "default"},
                   "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "kubernetes", "port": 443}],
                            "rules": [{"backendRefs": [{"name": "kubernetes", "port": 443}]}]}}, "HOSTNAMES"),
    ("baselineadminnetworkpolicy", {"apiVersion": POLICY, "kind": "BaselineAdminNetworkPolicy",
                                    "metadata": {"name": "default"},
                                    "spec": {"subject": {"namespaces": {}},
                                             "ingress": [{"name": "all", "action": "Allow",
                                                          "from": [{"namespaces": {}}]}]}}, "AGE"),
    ("secret", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k-secret"}, "stringData": {"a": "b"}}, "TYPE"),
    ("configmap", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "k-cm"}, "data": {"a": "b"}}, "DATA"),
    ("serviceaccount", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "k-sa"}}, "SECRETS"),
    ("role", {"apiVersion": RBAC, "kind": "Role", "metadata": {"name": "k-role"},
              "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}, "CREATED AT"),
    ("clusterrole", {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": "k-crole"},
                     "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]}, "CREATED AT"),
    ("rolebinding", {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": {"name": "k-rb"},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "k-role"},
                     "subjects": [{"kind": "ServiceAccount", "name": "k-sa", "namespace": "default"}]}, "ROLE"),
    ("clusterrolebinding", {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": "k-crb"},
                            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "k-crole"},
                            "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}]},
     "ROLE"),
]


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with ApiHarness(tmp_path_factory.mktemp("kinds"), []) as harness:
        yield harness


def contains(served, given) -> bool:
    """What was applied is in what is served (which may hold defaults besides)."""
    if isinstance(given, dict):
        return isinstance(served, dict) and all(k in served and contains(served[k], v) for k, v in given.items())
    if isinstance(given, list):
        return isinstance(served, list) and len(served) == len(given) and all(map(contains, served, given))
    return served == given


def test_every_kind_podnet_serves_is_covered_here():
    assert {info.singular for info in SERVED} - {"node"} == {name for name, _, _ in KINDS}


@pytest.mark.parametrize("name, body, header", KINDS, ids=[k[0] for k in KINDS])
def test_apply_get_describe_delete(api, tmp_path, name, body, header):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    object_name = body["metadata"]["name"]
    dry = api.kubectl("apply", "-f", str(path), "--dry-run=server")
    assert "(server dry run)" in dry.stdout
    assert api.kubectl("get", name, object_name, check=False).returncode == 1  # the dry run left nothing
    created = api.kubectl("apply", "-f", str(path)).stdout.strip()
    assert created.endswith(f"/{object_name} created"), created
    version = api.kubectl_json("get", name, object_name)["metadata"]["resourceVersion"]
    again = api.kubectl("apply", "-f", str(path)).stdout.strip()
    # kubectl says "configured" when its patch is not empty: an atomic list the server defaulted
    # (an EndpointSlice's ports) is sent again, as against any API server; either way nothing changes
    assert again.endswith((f"/{object_name} unchanged", f"/{object_name} configured")), again
    assert api.kubectl_json("get", name, object_name)["metadata"]["resourceVersion"] == version
    table = api.kubectl("get", name, object_name).stdout.splitlines()
    assert header in table[0] and table[1].split()[0] == object_name
    served = yaml.safe_load(api.kubectl("get", name, object_name, "-o", "yaml").stdout)
    assert served["kind"] == body["kind"] and served["metadata"]["uid"]
    for field in set(body) - {"metadata", "stringData", "apiVersion"}:
        assert contains(served[field], body[field]), (field, served[field])
    described = api.kubectl("describe", name, object_name).stdout
    assert object_name in described and "Name:" in described
    deleted = api.kubectl("delete", "-f", str(path)).stdout.strip()
    assert deleted.endswith(f'"{object_name}" deleted'), deleted
    assert api.kubectl("get", name, object_name, check=False).returncode == 1
