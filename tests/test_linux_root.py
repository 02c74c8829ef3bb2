"""The linux data plane in real network namespaces (root only; skipped otherwise).

Every cluster here has a unique name (t + random hex) and is torn down in a finally, also
when the test fails. Test "pods" are made by hand the way the CNI plugin will make them: a
namespace, a veth with one end on the node's cni0, an address in the podCIDR and a default
route via the gateway. The last tests check that the host's own namespace is exactly as it
was and that no namespace of this module is left.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from ipaddress import IPv4Network

import pytest

from podnet.host.layout import STATE_ROOT, ClusterLayout
from podnet.host.netns import list_netns, socket_in_netns
from podnet.linux import connect
from podnet.linux.build import ClusterExists, build
from podnet.linux.netlink import Address, Change, KernelError, Link, Pyroute2Netlink, Route, VethPeer
from podnet.linux.plan import NetworkPlan, plan_network
from podnet.linux.teardown import status, teardown
from tests.conftest import cluster_of

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

USED: list[str] = []  # every cluster name this module used


# ---- the host's own namespace ---------------------------------------------------------------------

_VOLATILE = re.compile(r"(valid_lft|preferred_lft|expires) \S+|\s+$", re.M)


def root_snapshot() -> str:
    """Links, addresses, routes and rules of the host's namespace, and the host sysctls podnet
    must not touch (lifetimes that count down are left out)."""
    commands = [["ip", "-d", "-o", "link", "show"], ["ip", "-o", "addr", "show"],
                ["ip", "-4", "route", "show", "table", "all"], ["ip", "-6", "route", "show", "table", "all"],
                ["ip", "-4", "rule", "show"], ["ip", "-6", "rule", "show"]]
    parts = [subprocess.run(c, capture_output=True, text=True, check=True).stdout for c in commands]
    for key in ("net/ipv4/ip_forward", "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/default/rp_filter",
                "net/bridge/bridge-nf-call-iptables"):
        try:
            parts.append(f"{key}={open('/proc/sys/' + key).read().strip()}")
        except FileNotFoundError:
            pass
    return _VOLATILE.sub(lambda m: "" if m.group(1) is None else m.group(1), "\n".join(parts))


@pytest.fixture(scope="module", autouse=True)
def host_namespace_unchanged():
    """Around the whole module: nothing of its clusters is left, and the host's own namespace
    (links, addresses, routes, rules, the sysctls podnet must not touch) is as it was."""
    before = root_snapshot()
    yield
    assert [n for n in list_netns() for name in USED if ClusterLayout(name).owns_netns(n)] == []
    assert not [name for name in USED if (STATE_ROOT / name).exists()]
    assert root_snapshot() == before


def host_ipv4_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines() if " lo " not in line]


# ---- clusters -----------------------------------------------------------------------------------


def config(name: str, nodes: int, overlay: str) -> str:
    return (f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: {nodes}\n"
            f"networking: {{overlay: {overlay}}}\n")


@pytest.fixture
def clusters():
    """make(nodes, overlay) -> plan, built; everything torn down afterwards, whatever happens."""
    made: list[str] = []

    def make(nodes: int = 2, overlay: str = "vxlan") -> NetworkPlan:
        name = "t" + secrets.token_hex(4)
        made.append(name)
        USED.append(name)
        plan = plan_network(cluster_of("", config(name, nodes, overlay)))
        build(plan)
        return plan

    try:
        yield make
    finally:
        for name in made:
            teardown(name)


def add_pod(plan: NetworkPlan, node_name: str, pod: str, host: int = 10) -> tuple[str, str]:
    """A pod the way the CNI bridge plugin makes one; (its namespace, its IP)."""
    layout, node = plan.layout, plan.node(node_name)
    netns = layout.pod_netns("default", pod)
    ip = str(IPv4Network(node.pod_cidr)[host])
    prefix = IPv4Network(node.pod_cidr).prefixlen
    with Pyroute2Netlink() as kernel:
        kernel.create_namespace(netns)
        kernel.apply(node.netns, [Change("add", Link(layout.pod_host_veth("default", pod), "veth",
                                                     mtu=node.pod_mtu, master=node.bridge,
                                                     peer=VethPeer(netns, "eth0")))])
        kernel.apply(netns, [Change("set", Link("lo", "loopback")),
                             Change("set", Link("eth0", "veth", mtu=node.pod_mtu)),
                             Change("add", Address("eth0", f"{ip}/{prefix}")),
                             Change("add", Route("0.0.0.0/0", "eth0", via=node.gateway))])
    return netns, ip


# ---- probes -------------------------------------------------------------------------------------


def ping(netns: str, dst: str, timeout: float = 1.0, tries: int = 3) -> bool:
    """One ICMP echo answered by dst, from inside netns (a raw socket opened there)."""
    sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        ident = secrets.randbits(16)
        for seq in range(tries):
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            payload = b"podnet-ping"
            packet = struct.pack("!BBHHH", 8, 0, connect._checksum(header + payload), ident, seq) + payload
            try:
                sock.sendto(packet, (dst, 0))
            except OSError:  # no route: ENETUNREACH
                return False
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    data, (source, _) = sock.recvfrom(2048)
                except (socket.timeout, OSError):
                    break
                ihl = (data[0] & 0x0F) * 4
                kind, _code, _sum, rid, _rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
                if kind == 0 and rid == ident and source == dst:
                    return True
                if kind == 3:  # destination unreachable (from a router on the way)
                    return False
        return False
    finally:
        sock.close()


SERVER = textwrap.dedent("""
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080))
    s.listen()
    print("ready", flush=True)
    c, (peer, _) = s.accept()
    c.sendall(("hello " + peer).encode())
    c.close()
""")


def tcp_exchange(server_ns: str, server_ip: str, client_ns: str) -> str:
    """A tiny server started with `ip netns exec`, a client connecting from client_ns."""
    proc = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", SERVER],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        client = socket_in_netns(client_ns, socket.AF_INET, socket.SOCK_STREAM)
        try:
            client.settimeout(5)
            client.connect((server_ip, 8080))
            return client.recv(100).decode()
        finally:
            client.close()
    finally:
        proc.kill()
        proc.wait()


def link_stats(netns: str, dev: str) -> dict:
    out = subprocess.run(["ip", "-n", netns, "-j", "-s", "link", "show", dev], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)[0]["stats64"]


def routes_in(netns: str) -> str:
    return subprocess.run(["ip", "-n", netns, "route", "show", "table", "all"], capture_output=True, text=True,
                          check=True).stdout


# ---- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes", [2, 3])
@pytest.mark.parametrize("overlay", ["vxlan", "host-gw"])
def test_pods_on_different_nodes_reach_each_other(clusters, nodes, overlay):
    before = root_snapshot()
    plan = clusters(nodes, overlay)
    layout = plan.layout
    node1, node2 = layout.node_netns("node1"), layout.node_netns("node2")

    # the LAN: node to node, external to nodes
    assert ping(node1, plan.node("node2").ip)
    for node in plan.nodes:
        assert ping(layout.external_netns, node.ip), node.name

    # pods, one per node, made as the CNI plugin will make them
    pods = {node.name: add_pod(plan, node.name, f"p-{node.name}") for node in plan.nodes}
    for src, (src_ns, _) in pods.items():
        for dst, (_, dst_ip) in pods.items():
            assert ping(src_ns, dst_ip), f"{src} -> {dst} over {overlay}"
    last = plan.nodes[-1].name
    server_ns, server_ip = pods[last]
    client_ns, client_ip = pods["node1"]
    assert tcp_exchange(server_ns, server_ip, client_ns) == f"hello {client_ip}"  # no NAT between pods

    # a node reaches a pod on another node; the LAN does not route into the pod network
    assert ping(node1, pods["node2"][1])
    assert not ping(layout.external_netns, pods["node1"][1], timeout=0.3, tries=1)

    if overlay == "vxlan":
        assert link_stats(node1, "flannel.1")["tx"]["packets"] > 0  # it did cross the overlay
    else:
        assert "flannel.1" not in subprocess.run(["ip", "-n", node1, "link"], capture_output=True,
                                                 text=True).stdout

    # the sandbox: no way out, not to the internet, not to the host
    outside = ["8.8.8.8"] + host_ipv4_addresses()
    for netns in [layout.external_netns, node1, node2, client_ns]:
        for ip in outside:
            assert not ping(netns, ip, timeout=0.3, tries=1), f"{netns} reached {ip}"
    for ns in plan.namespaces:
        assert "default" not in routes_in(ns.name), ns.name
    assert root_snapshot() == before


def test_building_twice_changes_nothing(clusters):
    plan = clusters(3, "vxlan")
    before = status(plan.cluster).render()
    with pytest.raises(ClusterExists, match=plan.cluster):
        build(plan)
    report = build(plan, reconcile=True)
    assert not report.changed, report.changes
    assert status(plan.cluster).render() == before


def test_reconcile_repairs_a_deleted_route(clusters):
    plan = clusters(2, "host-gw")
    node1 = plan.layout.node_netns("node1")
    subprocess.run(["ip", "-n", node1, "route", "del", "10.244.2.0/24"], check=True)
    assert not ping(node1, "10.244.2.1", timeout=0.3, tries=1)
    report = build(plan, reconcile=True)
    assert [str(c) for _, c in report.changes] == ["add route 10.244.2.0/24 via 192.168.1.12 dev eth0"]
    assert ping(node1, "10.244.2.1")


def test_a_batch_error_names_the_change_the_kernel_refused(clusters):
    plan = clusters(2, "host-gw")
    node1 = plan.layout.node_netns("node1")
    good = Route("10.250.1.0/24", "eth0", via="192.168.1.12")
    unreachable = Route("10.250.2.0/24", "eth0", via="10.9.9.9")  # not on eth0's network, not onlink
    also_good = Route("10.250.3.0/24", "eth0", via="192.168.1.12")
    with Pyroute2Netlink() as kernel:
        with pytest.raises(KernelError) as caught:
            kernel.apply(node1, [Change("add", good), Change("add", unreachable), Change("add", also_good)])
        assert caught.value.change == Change("add", unreachable)
        routes = kernel.observe(node1).routes
    # one batch: the kernel went on after the refused request
    assert good in routes and also_good in routes and unreachable not in routes


def test_a_failed_build_leaves_nothing_behind():
    name = "t" + secrets.token_hex(4)
    USED.append(name)
    plan = plan_network(cluster_of("", config(name, 3, "vxlan")))

    class Failing(Pyroute2Netlink):
        def apply(self, netns, changes):
            if netns == plan.layout.node_netns("node3") and any(c.item.__class__.__name__ == "FdbEntry"
                                                                 for c in changes):
                raise KernelError(netns, changes[-1], 5)
            super().apply(netns, changes)

    try:
        with Failing() as kernel, pytest.raises(KernelError):
            build(plan, kernel)
        assert not [n for n in list_netns() if ClusterLayout(name).owns_netns(n)]
        assert not (STATE_ROOT / name).exists()
    finally:
        teardown(name)


def test_teardown_leaves_nothing(clusters):
    plan = clusters(3, "host-gw")
    add_pod(plan, "node1", "leftover")
    assert status(plan.cluster).exists
    report = teardown(plan.cluster)
    assert len(report.namespaces) == 6  # lan, external, 3 nodes, 1 pod
    assert not [n for n in list_netns() if ClusterLayout(plan.cluster).owns_netns(n)]
    assert not (STATE_ROOT / plan.cluster).exists()
    assert not status(plan.cluster).exists
    assert not teardown(plan.cluster).removed_anything


SUPERVISOR = textwrap.dedent("""
    import os, subprocess, sys, time
    sys.path[:0] = {path!r}
    from podnet.linux.build import build
    from podnet.linux.plan import plan_network
    from tests.conftest import cluster_of
    plan = plan_network(cluster_of("", {config!r}))
    build(plan)
    netns = plan.layout.node_netns("node1")
    child = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "300"])
    while os.stat(f"/proc/{{child.pid}}/ns/net").st_ino != os.stat(f"/run/netns/{{netns}}").st_ino:
        time.sleep(0.01)  # `ip netns exec` has not entered the namespace yet (later on a loaded machine)
    print(child.pid, flush=True)
    time.sleep(300)
""")


def test_teardown_after_the_supervisor_was_killed_kills_what_it_left_running():
    name = "t" + secrets.token_hex(4)
    USED.append(name)
    code = SUPERVISOR.format(path=sys.path[:], config=config(name, 2, "vxlan"))
    supervisor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        sleeper = int(supervisor.stdout.readline())
        supervisor.send_signal(signal.SIGKILL)  # a crash: nothing is cleaned up
        supervisor.wait()
        assert os.path.exists(f"/proc/{sleeper}")
        report = teardown(name)  # knowing nothing but the name
        assert sleeper in report.killed
        assert not os.path.exists(f"/proc/{sleeper}") or "Z" in open(f"/proc/{sleeper}/stat").read().split()[2]
        assert not [n for n in list_netns() if ClusterLayout(name).owns_netns(n)]
    finally:
        supervisor.kill()
        supervisor.wait()
        teardown(name)


def test_two_clusters_coexist_with_the_same_addresses(clusters):
    a = clusters(2, "vxlan")
    b = clusters(2, "host-gw")
    for plan in (a, b):
        assert ping(plan.layout.node_netns("node1"), "192.168.1.12")
    teardown(a.cluster)
    assert ping(b.layout.node_netns("node1"), "192.168.1.12")
    assert status(b.cluster).exists and not status(a.cluster).exists


def test_status_lists_what_exists(clusters):
    plan = clusters(2, "vxlan")
    text = status(plan.cluster).render()
    for expected in ["netns " + plan.layout.lan_netns, "link lan0 bridge", "link flannel.1 vxlan id 1 port 8472",
                     "route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink", "sysctl net.ipv4.ip_forward = 1"]:
        assert expected in text
