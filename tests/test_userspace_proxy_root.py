"""The userspace proxy in real namespaces (root only; skipped otherwise).

Two namespaces of the test's own, `node` and `pod`, joined by a veth pair; the ClusterIP range
is routed onto the veth in the node (nothing is routed to the host, no default routes). A
server in the pod answers its name; clients run with `ip netns exec`.
"""

from __future__ import annotations

import secrets
import socket
import socketserver
import subprocess
import sys
import textwrap
import threading

import pytest

from podnet.host.netns import socket_in_netns
from podnet.proxy.model import Endpoint, ServicePort
from podnet.proxy.userspace import UserspaceProxier

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

NODE_IP, POD_IP = "10.123.77.1", "10.123.77.2"
POD = Endpoint(POD_IP, 8080, "default/server")
WEB = ServicePort("default", "web", "", "TCP", "10.96.0.50", 80, node_port=30080, cluster_endpoints=(POD,))
DNS = ServicePort("default", "dns", "", "UDP", "10.96.0.53", 53, cluster_endpoints=(POD,))
EMPTY = ServicePort("default", "empty", "", "TCP", "10.96.0.51", 80)


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30).stdout


@pytest.fixture
def netns(request):
    tag = secrets.token_hex(3)
    node, pod = f"uptest-{tag}-node", f"uptest-{tag}-pod"
    for name in (node, pod):
        request.addfinalizer(lambda name=name: subprocess.run(["ip", "netns", "del", name], capture_output=True))
        sh("ip", "netns", "add", name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
    # made inside the node, moved straight into the pod: the host never holds either end
    sh("ip", "-n", node, "link", "add", f"up{tag}n", "type", "veth", "peer", "name", f"up{tag}p", "netns", pod)
    for name, dev, ip in ((node, f"up{tag}n", NODE_IP), (pod, f"up{tag}p", POD_IP)):
        sh("ip", "-n", name, "addr", "add", f"{ip}/24", "dev", dev)
        sh("ip", "-n", name, "link", "set", dev, "up")
    sh("ip", "-n", node, "route", "add", "10.96.0.0/12", "dev", f"up{tag}n")  # the node reaches ClusterIPs
    return node, pod


class _Named(socketserver.BaseRequestHandler):
    def handle(self):
        if isinstance(self.request, tuple):
            data, sock = self.request
            sock.sendto(b"pod:" + data, self.client_address)
        else:
            self.request.sendall(b"pod\n")


@pytest.fixture
def server(netns):
    """TCP and UDP servers on the pod's 8080, their sockets made in the pod's namespace."""
    servers = []
    for cls, kind in ((socketserver.ThreadingTCPServer, socket.SOCK_STREAM),
                      (socketserver.ThreadingUDPServer, socket.SOCK_DGRAM)):
        s = cls((POD_IP, POD.port), _Named, bind_and_activate=False)
        s.socket.close()
        s.socket = socket_in_netns(netns[1], socket.AF_INET, kind)
        s.daemon_threads = True
        s.server_bind()
        s.server_activate()
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
    yield
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def proxier(netns):
    p = UserspaceProxier(netns[0])
    yield p
    p.cleanup()


def client(netns: str, ip: str, port: int, udp: bool = False) -> str:
    """What a client in the namespace gets from ip:port: the answer, or the error's name."""
    code = textwrap.dedent(f"""
        import socket
        try:
            if {udp}:  # a connected socket, as resolvers use: it takes replies from the peer only
                c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                c.settimeout(3)
                c.connect(({ip!r}, {port}))
                c.send(b"q")
                print(c.recv(100).decode())
            else:
                print(socket.create_connection(({ip!r}, {port}), timeout=3).recv(100).decode().strip())
        except OSError as e:
            print(type(e).__name__)
    """)
    return sh("ip", "netns", "exec", netns, sys.executable, "-c", code).strip()


def test_the_node_reaches_a_cluster_ip_through_the_output_redirect(netns, server, proxier):
    proxier.sync([WEB, EMPTY])
    assert client(netns[0], "10.96.0.50", 80) == "pod"


def test_udp_to_a_cluster_ip_is_answered_by_the_pod(netns, server, proxier):
    """The node's own datagram is redirected to 127.0.0.1: the reply must leave the listener from
    there for conntrack to turn it back into the ClusterIP's (IP_PKTINFO)."""
    proxier.sync([DNS])
    assert client(netns[0], "10.96.0.53", 53, udp=True) == "pod:q"


def test_a_pod_reaches_the_node_port_through_the_prerouting_redirect(netns, server, proxier):
    proxier.sync([WEB])
    assert client(netns[1], NODE_IP, 30080) == "pod"


def test_a_service_without_endpoints_is_refused_at_once(netns, proxier):
    proxier.sync([WEB, EMPTY])
    assert client(netns[0], "10.96.0.51", 80) == "ConnectionRefusedError"  # refused, not the client's timeout


def test_a_changed_endpoint_list_takes_effect_for_new_connections(netns, server, proxier):
    proxier.sync([WEB])
    assert client(netns[0], "10.96.0.50", 80) == "pod"
    proxier.sync([ServicePort("default", "web", "", "TCP", "10.96.0.50", 80, node_port=30080,
                              cluster_endpoints=(Endpoint(POD_IP, 9),))])  # nothing listens on 9
    assert client(netns[0], "10.96.0.50", 80) == ""  # accepted by the proxy, closed: no endpoint answers


def test_cleanup_removes_the_table(netns, proxier):
    proxier.sync([WEB])
    assert "podnet-userspace" in sh("ip", "netns", "exec", netns[0], "nft", "list", "tables")
    proxier.cleanup()
    assert "podnet-userspace" not in sh("ip", "netns", "exec", netns[0], "nft", "list", "tables")
