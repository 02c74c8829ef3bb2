"""ICMP echo (ping) in the simulator and the prober: `trace --protocol ICMP`, `matrix --protocol
ICMP`, and podnet.linux.connect's echo requests. The kernel side is tests/test_icmp_root.py."""

import struct

import pytest

from podnet.errors import UsageError
from podnet.linux import connect
from podnet.semantics.reachability import reachability
from podnet.sim.trace import Tracer
from tests.conftest import cluster_of

APP = """
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  nodeName: node2
  containers: [{name: app, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec, --http-port=8080]}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: node1
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: open, labels: {app: open}}
spec:
  nodeName: node1
  containers: [{name: c, image: busybox, command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: weblb}
spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
"""
POLICIES = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-8080-only}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 8080}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: open-to-pods}
spec:
  podSelector: {matchLabels: {app: open}}
  ingress: [{from: [{podSelector: {}}]}]
"""


def config(mode: str) -> str:
    return f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 2\nnetworking: {{proxyMode: {mode}}}\n"


def ping(cluster, src: str, dst: str):
    return Tracer(cluster).trace(src, dst, None, "ICMP")


@pytest.mark.parametrize("mode", ["nftables", "iptables", "userspace"])
def test_an_echo_request_reaches_a_pod_and_a_node_in_every_mode(mode):
    cluster = cluster_of(APP, config(mode))
    to_pod = ping(cluster, "default/client", "default/web")
    assert to_pod.verdict == "delivered" and to_pod.destination["pod"] == "default/web"
    assert "answers the echo request" in to_pod.hops[-1].detail
    assert ping(cluster, "default/client", "node/node2").verdict == "delivered"


def test_a_cluster_ip_rejects_in_nftables_mode_and_loses_it_in_the_others():
    rejected = ping(cluster_of(APP, config("nftables")), "default/client", "web")
    assert rejected.verdict == "dropped" and "Destination Port Unreachable" in rejected.reason
    assert [h.action for h in rejected.hops][-1] == "reject"
    for mode in ("iptables", "userspace"):
        lost = ping(cluster_of(APP, config(mode)), "default/client", "web")
        assert lost.verdict == "dropped" and "lost" in lost.reason and lost.hops[-1].action == "drop"


def test_a_load_balancer_ip_is_answered_by_the_node_that_announces_it():
    cluster = cluster_of(APP, config("nftables"))
    lb = next(s for s in cluster.of_kind("Service") if s.name == "weblb").status["loadBalancer"]["ingress"][0]["ip"]
    result = ping(cluster, "default/client", lb)
    assert result.verdict == "delivered" and result.reason.startswith("answered by node/")
    assert any(h.action == "local" and "lo" in h.detail for h in result.hops)


def test_only_a_rule_without_ports_lets_an_echo_request_in():
    cluster = cluster_of(APP + POLICIES, config("nftables"))
    blocked = ping(cluster, "default/client", "default/web")
    assert blocked.verdict == "dropped" and blocked.hops[-1].action == "ingress-deny"
    assert ping(cluster, "default/client", "default/open").verdict == "delivered"
    matrix = reachability(cluster, 0, "ICMP")
    assert matrix.traffic == "ICMP echo"
    assert not matrix.allowed("default/client", "default/web") and matrix.allowed("default/client", "default/open")
    assert not matrix.allowed("external", "default/open")  # the rule's peers are pods only
    assert reachability(cluster, 8080, "TCP").allowed("default/client", "default/web")


def test_icmp_takes_no_port_and_no_url():
    cluster = cluster_of(APP, config("nftables"))
    with pytest.raises(UsageError, match="ICMP has no ports"):
        Tracer(cluster).trace("default/client", "default/web", 80, "ICMP")
    with pytest.raises(UsageError, match="echo request"):
        Tracer(cluster).trace("default/client", "http://web/", None, "ICMP")


# ---------------------------------------------------------------- the prober's packets

def ip_header(source: bytes = bytes([10, 0, 0, 2])) -> bytes:
    return bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0]) + source + bytes([10, 0, 0, 1])


def test_an_echo_request_carries_a_valid_checksum():
    packet = connect._echo_request(0x1234, 7)
    assert packet[0] == connect.ECHO_REQUEST and struct.unpack("!HH", packet[4:8]) == (0x1234, 7)
    assert connect._checksum(packet) == 0  # a valid checksum sums to zero with itself


def test_answers_are_matched_to_requests_by_identifier_and_sequence():
    reply = ip_header() + struct.pack("!BBHHH", connect.ECHO_REPLY, 0, 0, 0x1234, 7)
    assert connect._icmp_answer(reply, 0x1234) == (7, connect.CONNECTED, "10.0.0.2")
    assert connect._icmp_answer(reply, 0x9999) is None  # another prober's
    request = connect._echo_request(0x1234, 3)
    for code, outcome in ((3, connect.REFUSED), (1, connect.UNREACHABLE), (13, connect.REFUSED)):
        error = ip_header() + struct.pack("!BBHHH", connect.DESTINATION_UNREACHABLE, code, 0, 0, 0) + ip_header() + request[:8]
        assert connect._icmp_answer(error, 0x1234) == (3, outcome, "10.0.0.1")  # the request's destination
    assert connect._icmp_answer(ip_header() + request, 0x1234) is None  # our own request, seen on lo


def test_a_virtual_ip_no_node_holds_loses_the_echo_request_in_every_mode():
    """Only a ClusterIP is in kube-proxy's cluster-ips set: an externalIP, or a LoadBalancer IP no
    node announces (no ready endpoint), is routed on and lost, not rejected."""
    extra = """
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec: {type: LoadBalancer, selector: {app: none}, externalIPs: [203.0.113.5], ports: [{port: 80}]}
"""
    cluster = cluster_of(APP + extra, config("nftables"))
    svc = cluster.get("Service", "default", "nobody")
    for address in (svc.status["loadBalancer"]["ingress"][0]["ip"], "203.0.113.5"):
        lost = ping(cluster, "default/client", address)
        assert lost.verdict == "dropped" and "nothing answers" in lost.reason and "cluster-ips" not in lost.reason
