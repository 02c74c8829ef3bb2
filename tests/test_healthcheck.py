"""kube-proxy's health check for externalTrafficPolicy Local Services: what it answers
(semantics.services.HealthCheck, the same in `trace`) and the server that answers it on a node
(proxy/healthcheck.py, here on 127.0.0.1). The kernel side is tests/test_healthcheck_root.py."""

import json
import socket

from podnet.proxy.healthcheck import HealthCheckServer
from podnet.proxy.model import service_ports
from podnet.semantics.services import HealthCheck, health_checks
from podnet.sim.trace import Tracer
from tests.conftest import cluster_of

APP = """
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node2
  containers: [{name: app, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec, --http-port=8080, --udp-port=8081]}]
---
apiVersion: v1
kind: Service
metadata: {name: weblb}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 32100
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: udp, port: 81, targetPort: 8081, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: cluster-policy}
spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 90, targetPort: 8080}]}
"""
TWO = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 2\n"


def test_a_node_answers_200_with_a_local_ready_endpoint_and_503_without():
    cluster = cluster_of(APP, TWO)
    [on_node1] = health_checks(cluster, "node1")
    [on_node2] = health_checks(cluster, "node2")  # only the Local Service has a health check
    assert (on_node1.port, on_node1.local_endpoints, on_node1.status) == (32100, 0, 503)
    assert (on_node2.local_endpoints, on_node2.status) == (2, 200)  # one pod, counted once per Service port
    assert json.loads(on_node2.body()) == {"service": {"namespace": "default", "name": "weblb"},
                                           "localEndpoints": 2, "serviceProxyHealthy": True}
    assert {sp.health_check for sp in service_ports(cluster, "node2") if sp.name == "weblb"} == {on_node2}


def test_trace_says_what_each_node_answers():
    cluster = cluster_of(APP, TWO)
    for node_ip, status in (("192.168.1.11", 503), ("192.168.1.12", 200)):
        result = Tracer(cluster).trace("external", f"{node_ip}:32100")
        assert result.verdict == "delivered" and f"answers {status}" in result.hops[-1].detail


def request(port: int) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head and b"X-Content-Type-Options: nosniff" in head
    return int(head.split()[1]), json.loads(body)


def test_the_server_answers_what_it_was_last_told_and_closes_ports_no_longer_wanted():
    opened: dict[int, socket.socket] = {}

    def listen(port: int) -> socket.socket:  # the node's 0.0.0.0:port, here a free port on 127.0.0.1
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        opened[port] = sock
        return sock

    server = HealthCheckServer("node1", listen)
    try:
        server.sync([HealthCheck("default", "weblb", 32100, 1)])
        actual = opened[32100].getsockname()[1]
        assert request(actual) == (200, {"service": {"namespace": "default", "name": "weblb"},
                                         "localEndpoints": 1, "serviceProxyHealthy": True})
        server.sync([HealthCheck("default", "weblb", 32100, 0)])
        assert request(actual)[0] == 503
        server.sync([])
        assert server.ports == [] and opened[32100].fileno() == -1  # closed: the port is let go
    finally:
        server.close()
