"""The userspace proxy without root: its table on a recording fake, its forwarding on 127.0.0.1.

With netns=None the listeners are plain sockets of this process, so the tests connect to a
listener's port directly, as the redirect would make a client do.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from dataclasses import replace

import pytest

from podnet.proxy.loader import LoadError, RecordingRunner
from podnet.proxy.model import Endpoint, ServicePort
from podnet.proxy.node import make_proxier
from podnet.proxy.userspace import UserspaceProxier, ruleset

EPS = (Endpoint("10.244.1.5", 8080, "default/web-a"), Endpoint("10.244.2.7", 8080, "default/web-b"))
WEB = ServicePort("default", "web", "http", "TCP", "10.96.0.10", 80, node_port=30080,
                  external_ips=("192.0.2.10",), cluster_endpoints=EPS, local_endpoints=EPS[:1])
EMPTY = ServicePort("default", "empty", "", "TCP", "10.96.0.11", 80, node_port=30081)
LOCAL = replace(WEB, name="local", cluster_ip="10.96.0.12", node_port=30082, external_ips=(),
                local_endpoints=(), external_local=True)


@pytest.fixture
def proxier():
    run = RecordingRunner()
    p = UserspaceProxier(None, run)
    p.recorded = run
    yield p
    p.cleanup()


def last_table(p) -> str:
    return p.recorded.inputs("nft")[-1]


# -- the table --------------------------------------------------------------------------------


EXPECTED_TABLE = """
    table ip podnet-userspace
    delete table ip podnet-userspace
    table ip podnet-userspace {
        map service-ips {
            type ipv4_addr . inet_proto . inet_service : inet_service
            elements = { 10.96.0.10 . tcp . 80 : 40001, 192.0.2.10 . tcp . 80 : 40002, 10.96.0.12 . tcp . 80 : 40003 }
        }
        map service-nodeports {
            type inet_proto . inet_service : inet_service
            elements = { tcp . 30080 : 40002 }
        }
        map no-endpoint-services {
            type ipv4_addr . inet_proto . inet_service : verdict
            elements = { 10.96.0.11 . tcp . 80 : goto reject-chain }
        }
        map no-endpoint-nodeports {
            type inet_proto . inet_service : verdict
            elements = { tcp . 30081 : goto reject-chain, tcp . 30082 : drop }
        }
        map firewall-ips {
            type ipv4_addr . inet_proto . inet_service : verdict
        }
        chain services {
            meta l4proto { tcp, udp } redirect to ip daddr . meta l4proto . th dport map @service-ips
            fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto { tcp, udp } redirect to meta l4proto . th dport map @service-nodeports
        }
        chain reject-chain {
            meta l4proto tcp reject with tcp reset
            reject
        }
        chain endpoints-check {
            ip daddr . meta l4proto . th dport vmap @no-endpoint-services
            fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports
        }
        chain nat-prerouting {
            type nat hook prerouting priority dstnat; policy accept;
            jump services
        }
        chain nat-output {
            type nat hook output priority -100; policy accept;
            jump services
        }
        chain filter-input {
            type filter hook input priority -110; policy accept;
            ct state new jump endpoints-check
        }
        chain filter-forward {
            type filter hook forward priority -110; policy accept;
            ct state new jump endpoints-check
        }
        chain filter-output-post-dnat {
            type filter hook output priority -90; policy accept;
            ct state new jump endpoints-check
        }
        chain firewall-check {
            ip daddr . meta l4proto . th dport vmap @firewall-ips
        }
        chain filter-prerouting {
            type filter hook prerouting priority -110; policy accept;
            ct state new jump firewall-check
        }
        chain filter-output {
            type filter hook output priority -110; policy accept;
            ct state new jump firewall-check
        }
    }
"""


def test_the_whole_table_reads_as_expected():
    """Redirects for frontends with a listener, reject without endpoints, drop for Local."""
    text = ruleset([WEB, EMPTY, LOCAL], {(WEB.port_ref, "internal"): 40001, (WEB.port_ref, "external"): 40002,
                                         (LOCAL.port_ref, "internal"): 40003})
    assert [line.strip() for line in text.splitlines()] == [line.strip() for line in EXPECTED_TABLE.strip().splitlines()]


def test_every_frontend_is_redirected_to_the_listener_of_its_kind(proxier):
    proxier.sync([WEB])
    internal, external = proxier.listener_port(WEB.port_ref, "internal"), proxier.listener_port(WEB.port_ref, "external")
    assert internal and external and internal != external
    text = last_table(proxier)
    assert f"10.96.0.10 . tcp . 80 : {internal}" in text  # ClusterIP
    assert f"192.0.2.10 . tcp . 80 : {external}" in text  # externalIP
    assert f"tcp . 30080 : {external}" in text  # NodePort
    assert "redirect to ip daddr . meta l4proto . th dport map @service-ips" in text
    assert "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto { tcp, udp } redirect to meta l4proto . th dport map @service-nodeports" in text
    assert "type nat hook prerouting priority dstnat;" in text and "type nat hook output priority -100;" in text


def test_the_table_is_replaced_whole_in_one_transaction_per_sync(proxier):
    proxier.sync([WEB])
    proxier.sync([WEB, EMPTY])
    texts = proxier.recorded.inputs("nft")
    assert len(texts) == 2
    for text in texts:
        assert text.startswith("table ip podnet-userspace\ndelete table ip podnet-userspace\ntable ip podnet-userspace {\n")
    assert proxier.recorded.calls[0][0] == ["nft", "-f", "-"]


def test_a_service_without_endpoints_is_rejected_and_gets_no_listener(proxier):
    proxier.sync([EMPTY])
    text = last_table(proxier)
    assert "10.96.0.11 . tcp . 80 : goto reject-chain" in text
    assert "tcp . 30081 : goto reject-chain" in text
    assert "meta l4proto tcp reject with tcp reset" in text
    assert proxier.listener_port(EMPTY.port_ref, "internal") is None


def test_a_local_policy_without_local_endpoint_drops_external_traffic_only(proxier):
    proxier.sync([LOCAL])
    text = last_table(proxier)
    assert "tcp . 30082 : drop" in text
    assert f"10.96.0.12 . tcp . 80 : {proxier.listener_port(LOCAL.port_ref)}" in text
    assert proxier.listener_port(LOCAL.port_ref, "external") is None


def test_unchanged_and_changed_ports_keep_their_listener_removed_ones_close(proxier):
    proxier.sync([WEB, LOCAL])
    before = proxier.listener_port(WEB.port_ref), proxier.listener_port(LOCAL.port_ref)
    proxier.sync([WEB, LOCAL])
    assert (proxier.listener_port(WEB.port_ref), proxier.listener_port(LOCAL.port_ref)) == before
    proxier.sync([replace(WEB, cluster_endpoints=EPS[:1])])  # new endpoints: same listener
    assert proxier.listener_port(WEB.port_ref) == before[0]
    assert proxier.listener_port(LOCAL.port_ref) is None
    assert f": {before[1]}" not in last_table(proxier)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", before[1]), timeout=1)


def test_sctp_is_skipped_with_one_warning(proxier, caplog):
    sctp = replace(WEB, name="sctp", protocol="SCTP")
    with caplog.at_level(logging.WARNING, "podnet.proxy"):
        proxier.sync([sctp])
        proxier.sync([sctp])
    assert [r.getMessage() for r in caplog.records].count(
        "default/sctp:http: the userspace proxy does not proxy SCTP; skipped") == 1
    assert proxier.listener_port(sctp.port_ref) is None and "sctp" not in last_table(proxier)


def test_a_refused_load_raises_and_keeps_the_listeners_it_still_points_at():
    run = RecordingRunner()
    p = UserspaceProxier(None, run)
    try:
        p.sync([WEB])
        port = p.listener_port(WEB.port_ref)
        run.fail.add("nft")
        with pytest.raises(LoadError):
            p.sync([])
        socket.create_connection(("127.0.0.1", port), timeout=1).close()  # still serving
        run.fail.clear()
        p.sync([])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
    finally:
        p.cleanup()


def test_cleanup_closes_listeners_and_deletes_the_table(proxier):
    proxier.sync([WEB])
    port = proxier.listener_port(WEB.port_ref)
    proxier.cleanup()
    assert last_table(proxier) == "table ip podnet-userspace\ndelete table ip podnet-userspace\n"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    proxier.cleanup()  # twice is fine


def test_node_proxy_builds_this_proxier_for_userspace_mode():
    assert isinstance(make_proxier("userspace", None, "10.244.0.0/16", "10.96.0.0/12", RecordingRunner()),
                      UserspaceProxier)


# -- forwarding on 127.0.0.1 ------------------------------------------------------------------


class _Named(socketserver.BaseRequestHandler):
    def handle(self):
        if isinstance(self.request, tuple):  # UDP: answer name and datagram
            data, sock = self.request
            sock.sendto(self.server.name.encode() + b":" + data, self.client_address)
            return
        self.request.sendall(self.server.name.encode() + b"\n")
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def backends():
    servers = []
    for name in ("a", "b"):
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Named)
        server.daemon_threads, server.name = True, name
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield {s.name: Endpoint("127.0.0.1", s.server_address[1]) for s in servers}
    for s in servers:
        s.shutdown()
        s.server_close()


def service(endpoints, **kw) -> ServicePort:
    return ServicePort("default", "echo", "", "TCP", "10.96.0.20", 80, cluster_endpoints=tuple(endpoints), **kw)


def ask(port: int, payload: bytes = b"") -> tuple[str, bytes]:
    """The backend's name, and the echo of the payload, through the listener."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        f = c.makefile("rb")
        name = f.readline().decode().strip()
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)  # the half-close is passed on: the backend's loop ends
        return name, f.read()


def test_connections_spread_over_both_endpoints_and_bytes_flow_both_ways(proxier, backends):
    proxier.sync([service(backends.values())])
    port = proxier.listener_port("default/echo")
    names = {ask(port)[0] for _ in range(40)}
    assert names == {"a", "b"}
    assert ask(port, b"x" * 200000)[1] == b"x" * 200000


def test_affinity_pins_a_client_to_one_endpoint(proxier, backends):
    proxier.sync([service(backends.values(), affinity_timeout=60)])
    port = proxier.listener_port("default/echo")
    assert len({ask(port)[0] for _ in range(20)}) == 1


def test_affinity_moves_on_when_the_endpoint_is_gone(proxier, backends):
    proxier.sync([service(backends.values(), affinity_timeout=60)])
    port = proxier.listener_port("default/echo")
    first = ask(port)[0]
    other = "b" if first == "a" else "a"
    proxier.sync([service([backends[other]], affinity_timeout=60)])
    assert proxier.listener_port("default/echo") == port
    assert {ask(port)[0] for _ in range(5)} == {other}


def test_a_dead_endpoint_is_skipped(proxier, backends):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
    try:
        proxier.sync([service([Endpoint("127.0.0.1", dead.getsockname()[1]), backends["a"]])])
        port = proxier.listener_port("default/echo")
        assert {ask(port)[0] for _ in range(20)} == {"a"}
    finally:
        dead.close()


def test_no_reachable_endpoint_closes_the_client_connection(proxier):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    try:
        proxier.sync([service([Endpoint("127.0.0.1", dead.getsockname()[1])])])
        assert ask(proxier.listener_port("default/echo")) == ("", b"")
    finally:
        dead.close()


def test_udp_datagrams_and_replies_go_through_a_session(proxier):
    server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), _Named)
    server.name = "u"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proxier.sync([ServicePort("kube-system", "dns", "dns", "UDP", "10.96.0.10", 53,
                                  cluster_endpoints=(Endpoint("127.0.0.1", server.server_address[1]),))])
        port = proxier.listener_port("kube-system/dns:dns")
        assert f"10.96.0.10 . udp . 53 : {port}" in last_table(proxier)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(5)
            for query in (b"one", b"two"):
                c.sendto(query, ("127.0.0.1", port))
                data, source = c.recvfrom(4096)
                assert (data, source) == (b"u:" + query, ("127.0.0.1", port))
    finally:
        server.shutdown()
        server.server_close()
