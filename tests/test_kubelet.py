"""What kubelet gives a container: Service link variables, /etc/hosts, and the argv."""

import sys

import pytest

from podnet.kubelet import container_argv, hosts_file
from podnet.semantics.containerenv import container_environment, service_environment
from tests.conftest import cluster_of

APP = """
apiVersion: v1
kind: Service
metadata: {name: redis-primary}
spec:
  selector: {app: redis}
  ports: [{name: redis, port: 6379}, {name: metrics, port: 9121, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: elsewhere}
spec: {selector: {app: x}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  hostname: web-0
  subdomain: webs
  hostAliases: [{ip: 192.168.1.50, hostnames: [db.local, db]}]
  containers:
  - name: c
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, "--http-port=$(PORT)"]
    env:
    - {name: PORT, value: "8080"}
    - {name: TARGET, value: "$(REDIS_PRIMARY_SERVICE_HOST):$(REDIS_PRIMARY_SERVICE_PORT)"}
    - {name: LITERAL, value: "$$(NOT_EXPANDED)"}
    - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
"""


def test_service_links_for_the_pods_namespace_and_kubernetes():
    c = cluster_of(APP)
    env = service_environment(c.get("Pod", "default", "web"), c)
    ip = c.get("Service", "default", "redis-primary").spec["clusterIP"]
    assert env["REDIS_PRIMARY_SERVICE_HOST"] == ip and env["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
    assert env["REDIS_PRIMARY_SERVICE_PORT_METRICS"] == "9121"
    assert env["REDIS_PRIMARY_PORT"] == f"tcp://{ip}:6379"
    assert env["REDIS_PRIMARY_PORT_9121_TCP_ADDR"] == ip
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert not any(k.startswith("OTHER_") for k in env), "only the pod's own namespace"


def test_env_references_expand_in_order_and_field_refs_resolve():
    c = cluster_of(APP)
    pod = c.get("Pod", "default", "web")
    env = container_environment(pod, pod.spec["containers"][0], c)
    ip = c.get("Service", "default", "redis-primary").spec["clusterIP"]
    assert env["TARGET"] == f"{ip}:6379" and env["LITERAL"] == "$(NOT_EXPANDED)"
    assert env["MY_IP"] == pod.status["podIP"]


def test_hosts_file_has_the_fqdn_and_host_aliases():
    c = cluster_of(APP)
    pod = c.get("Pod", "default", "web")
    text = hosts_file(pod, c)
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert f"{pod.status['podIP']}\tweb-0.webs.default.svc.cluster.local\tweb-0\n" in text
    assert "# Entries added by HostAliases.\n192.168.1.50\tdb.local\tdb\n" in text


def test_argv_for_known_images_and_commands():
    env = {"PORT": "8080"}
    agnhost = {"image": "registry.k8s.io/e2e-test-images/agnhost:2.53", "args": ["netexec", "--http-port=$(PORT)"]}
    assert container_argv(agnhost, env) == [sys.executable, "-m", "podnet.agnhost", "netexec", "--http-port=8080"]
    as_command = {"image": "agnhost:2.53", "command": ["/agnhost", "serve-hostname"], "args": ["--port=9376"]}
    assert container_argv(as_command, env)[-2:] == ["serve-hostname", "--port=9376"]
    assert container_argv({"image": "busybox", "command": ["sh", "-c", "sleep 1"]}, env) == ["sh", "-c", "sleep 1"]
    assert container_argv({"image": "registry.k8s.io/pause:3.10"}, env)[-1] == "podnet.agnhost.pause_image"
    assert container_argv({"image": "nginx:1.27"}, env) is None
    assert container_argv({"image": "redis:7.2"}, env) is None


@pytest.mark.parametrize("namespace, links", [("default", True), ("default", False), ("shop", True), ("shop", False)])
def test_the_api_servers_variables_are_in_every_pod(namespace, links):
    """KUBERNETES_SERVICE_HOST & co. of default/kubernetes, in every namespace, with or without
    service links, hostNetwork too: what in-cluster clients (client-go's InClusterConfig) read."""
    c = cluster_of(f"""
apiVersion: v1
kind: Pod
metadata: {{name: p, namespace: {namespace}}}
spec: {{enableServiceLinks: {str(links).lower()}, hostNetwork: true, containers: [{{name: c, image: busybox}}]}}
""")
    pod = c.get("Pod", namespace, "p")
    env = container_environment(pod, pod.spec["containers"][0], c)
    assert {k: v for k, v in env.items() if k.startswith("KUBERNETES_")} == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1"}


def test_a_namespaces_own_kubernetes_service_takes_the_variables_place():
    """kubelet's map by name: the pod's namespace's Service wins over default/kubernetes, and
    none of the latter's per-port variables is left over."""
    c = cluster_of("""
apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: shop}
spec: {clusterIP: 10.96.5.5, ports: [{name: web, port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: shop}
spec: {containers: [{name: c, image: busybox}]}
""")
    env = service_environment(c.get("Pod", "shop", "p"), c)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.5.5" and env["KUBERNETES_SERVICE_PORT"] == "80"
    assert not [k for k in env if "443" in k or k == "KUBERNETES_SERVICE_PORT_HTTPS"]
