"""podnet explain: each kind of finding, with its severity, object and hint."""

from podnet.probes import ProbeError, resolve_port
from podnet.sim.explain import Explainer
from tests.conftest import UNRUNNABLE_COREFILE, cluster_of

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"

BROKEN = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: c
        image: {AGNHOST}
        args: ["netexec", "--http-port=8080"]
        ports: [{{name: http, containerPort: 8080}}]
        env: [{{name: API, value: "http://bakend:80/v1"}}, {{name: DB, value: "db.example.com:5432"}}]
---
apiVersion: v1
kind: Service
metadata: {{name: backend}}
spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 9090}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: orphan}}
spec: {{selector: {{app: wbe}}, ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: named}}
spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: grpc}}]}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: site}}
spec:
  rules:
  - http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: backnd, port: {{number: 80}}}}}}}}
      - {{path: /x, pathType: Prefix, backend: {{service: {{name: backend, port: {{number: 81}}}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: nobody}}
spec: {{podSelector: {{matchLabels: {{app: ghost}}}}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: lockdown}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: from-team}}
spec:
  podSelector: {{}}
  ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{team: nobody}}}}}}]}}]
"""


def findings():
    return Explainer(cluster_of(BROKEN)).findings()


def find(obj, phrase):
    return [f for f in findings() if f.object == obj and phrase in f.message]


def test_service_selecting_no_pods_suggests_the_label():
    [f] = find("Service default/orphan", "matches no pod")
    assert f.severity == "warning" and "did you mean app=web?" in f.hint


def test_target_port_nobody_serves_is_an_error():
    [f] = find("Service default/backend", "nothing in the selected pods listens on 9090/TCP")
    assert f.severity == "error"


def test_named_target_port_missing_everywhere():
    [f] = find("Service default/named", "no selected pod has a containerPort named 'grpc'")
    assert f.severity == "error"


def test_ingress_backend_missing_service_and_port():
    [missing] = find("Ingress default/site", "backend Service 'backnd' does not exist")
    assert "did you mean 'backend'?" in missing.hint
    [port] = find("Ingress default/site", "has no port 81")
    assert port.severity == "error"


def test_policy_selecting_nothing_and_peer_selecting_no_namespace():
    assert find("NetworkPolicy default/nobody", "selects no pod")
    assert find("NetworkPolicy default/from-team", "namespaceSelector")


def test_pod_isolated_with_nothing_allowed():
    notes = [f for f in findings() if f.object.startswith("Pod default/web-") and "isolated for Egress" in f.message]
    assert notes and all(f.severity == "info" for f in notes)


def test_service_name_in_env_that_does_not_resolve_with_did_you_mean():
    [f] = [f for f in findings() if "'bakend'" in f.message]
    assert f.severity == "warning" and "backend" in f.hint
    assert not [f for f in findings() if "db.example.com" in f.message], "external names are not the cluster's"


def test_invalid_input_becomes_findings(tmp_path, capsys):
    from podnet.cli.main import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: NodePort, ports: [{port: 80, nodePort: 8080}]}\n")
    assert main(["explain", "-f", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "ERROR   Service default/s: spec.ports[0].nodePort" in out and "not in the valid range" in out


PROBED = f"""
apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  containers:
  - name: web
    image: {AGNHOST}
    args: ["netexec", "--http-port=8080"]
    ports: [{{name: http, containerPort: 8080}}]
  - name: elsewhere  # names a port only the web container declares
    image: {AGNHOST}
    args: ["netexec", "--http-port=8081"]
    readinessProbe: {{httpGet: {{port: http}}}}
  - name: any-protocol  # a UDP port by name: kubelet's lookup ignores the protocol
    image: {AGNHOST}
    args: ["netexec", "--http-port=8082"]
    ports: [{{name: both, containerPort: 8082, protocol: UDP}}]
    livenessProbe: {{tcpSocket: {{port: both}}}}
"""


def test_a_probe_port_name_is_looked_up_in_its_own_container_as_kubelet_and_the_prober_do():
    """explain and the prober (probes.resolve_port) use one lookup: kubelet's findPortByName,
    the probe's own container, any protocol."""
    cluster = cluster_of(PROBED)
    explained = [f for f in Explainer(cluster).findings() if f.object == "Pod default/probed"]
    [missing] = [f for f in explained if "names port" in f.message]
    assert missing.severity == "error" and missing.message.startswith("container elsewhere:")
    for container in cluster.get("Pod", "default", "probed").spec["containers"]:
        probe = container.get("readinessProbe") or container.get("livenessProbe")
        if probe is None:
            continue
        port = (probe.get("httpGet") or probe.get("tcpSocket"))["port"]
        try:
            resolve_port(port, container)
            prober_finds = True
        except ProbeError:
            prober_finds = False
        explain_finds = not any(f.message.startswith(f"container {container['name']}:") and "names port" in f.message
                                for f in explained)
        assert prober_finds == explain_finds, container["name"]


def test_a_corefile_the_dns_server_cannot_run_is_one_error_not_a_crash():
    findings = Explainer(cluster_of(UNRUNNABLE_COREFILE)).findings()
    dns = [f for f in findings if f.object == "ConfigMap kube-system/coredns"]
    assert [(f.severity, f.message) for f in dns] == [
        ("error", "the cluster DNS would not start: Corefile line 3: unknown plugin 'autopath'")]
    assert not [f for f in findings if "does not resolve" in f.message]  # said once, not per name


ADMIN_TYPOS = """
apiVersion: v1
kind: Namespace
metadata: {name: blue, labels: {tenant: blue}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: blue}
spec: {containers: [{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.53}]}
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata: {name: typo}
spec:
  priority: 3
  subject: {namespaces: {matchLabels: {tenant: blu}}}
  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {tenant: rde}}}]}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata: {name: default}
spec:
  subject: {namespaces: {matchLabels: {tenant: blue}}}
  egress: [{action: Deny, to: [{namespaces: {matchLabels: {tenant: blue}}}]}]
"""


def test_admin_policies_selecting_nothing_or_with_a_peer_matching_nothing_are_warned_about():
    found = Explainer(cluster_of(ADMIN_TYPOS)).findings()
    about = {(f.object, f.message.split(":")[0]) for f in found if f.severity == "warning"}
    assert ("AdminNetworkPolicy typo", "subject (all pods in namespaces {tenant=blu}) selects no pod") in about
    assert ("AdminNetworkPolicy typo", "ingress[0]") in about
    assert not [f for f in found if f.object.startswith("BaselineAdminNetworkPolicy")]  # it selects blue/web


ENV_FROM_CONFIG = f"""
apiVersion: v1
kind: Service
metadata: {{name: backend}}
spec: {{selector: {{app: backend}}, ports: [{{port: 80}}]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: app}}
data: {{BACKEND_HOST: bakend, UPSTREAM: "http://backend:80/"}}
---
apiVersion: v1
kind: Pod
metadata: {{name: reads-config}}
spec:
  containers:
  - name: c
    image: {AGNHOST}
    args: [pause]
    envFrom: [{{configMapRef: {{name: app}}}}, {{prefix: "X=", configMapRef: {{name: app}}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: misses-config}}
spec:
  containers:
  - name: c
    image: {AGNHOST}
    args: [pause]
    env: [{{name: LEVEL, valueFrom: {{configMapKeyRef: {{name: app, key: LOG_LEVEL}}}}}}]
"""


def test_a_container_whose_config_map_key_is_missing_is_not_created():
    """The simulator says what the running cluster shows: kubelet's CreateContainerConfigError."""
    found = Explainer(cluster_of(ENV_FROM_CONFIG)).findings()
    [f] = [f for f in found if f.object == "Pod default/misses-config"]
    assert f.severity == "error"
    assert f.message == ("container c: CreateContainerConfigError: couldn't find key LOG_LEVEL in ConfigMap "
                         "default/app: the container is not created")
    assert "optional: true" in f.hint


def test_names_from_a_config_map_are_checked_and_unholdable_names_warned_about():
    found = [f for f in Explainer(cluster_of(ENV_FROM_CONFIG)).findings() if f.object == "Pod default/reads-config"]
    [typo] = [f for f in found if "'bakend'" in f.message]
    assert typo.severity == "warning" and "backend" in typo.hint, "a ConfigMap's value is what the process reads"
    [skipped] = [f for f in found if "were skipped" in f.message]
    assert skipped.severity == "warning" and "X=BACKEND_HOST, X=UPSTREAM" in skipped.message
