"""A meshed pod's traffic capture (mesh/interception.py) in real namespaces (root only): the
pod's inbound TCP reaches the proxy's 15006 and its outbound the proxy's 15001, each with the
address it was sent to (SO_ORIGINAL_DST); the proxy's own connections (uid 1337), loopback, the
never-captured ports and what the pod's annotations exclude go where they were sent."""

from __future__ import annotations

import secrets
import subprocess
import sys
import textwrap

import pytest

from podnet.mesh.interception import PROXY_GID, Interception, InterceptionError, interception_of, proxy_uid, ruleset
from podnet.semantics.meshcapture import captures_inbound, captures_outbound

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

# answers each connection with its tag, the port it was accepted on and where it was going
SERVER = textwrap.dedent("""
    import socket, struct, sys, threading
    tag, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
    def serve(port):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(16)
        while True:
            conn, _ = listener.accept()
            try:
                raw = conn.getsockopt(socket.SOL_IP, 80, 16)  # SO_ORIGINAL_DST
                dport, daddr = struct.unpack("!2xH4s8x", raw)
                going = f"{socket.inet_ntoa(daddr)}:{dport}"
            except OSError:  # no connection tracking here: it went where it was sent
                going = "%s:%d" % conn.getsockname()
            conn.sendall(f"{tag} {port} {going}\\n".encode())
            conn.close()
    for port in ports:
        threading.Thread(target=serve, args=(port,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
""")
CONNECT = "import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); print(s.recv(200).decode().strip())"


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def pair(tmp_path):
    """Two namespaces on a veth: the client (10.251.0.1) and the meshed pod (10.251.0.2), each
    with a server: the client's answers on 9000 and 5432, the pod's proxy on 15001 and 15006, and
    the pod's own health port 15021 and a local port 7000."""
    tag = secrets.token_hex(3)
    client, pod = f"mcl{tag}", f"mpod{tag}"
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    servers = []
    try:
        for ns in (client, pod):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "link", "add", f"vc{tag}", "netns", client, "type", "veth", "peer", "name", f"vp{tag}", "netns", pod)
        for ns, dev, address in ((client, f"vc{tag}", "10.251.0.1/24"), (pod, f"vp{tag}", "10.251.0.2/24")):
            run("ip", "-n", ns, "addr", "add", address, "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
        for ns, name, ports in ((client, "direct", ["9000", "5432"]), (pod, "proxy", ["15001", "15006"]),
                                (pod, "app", ["15021", "7000"])):
            server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(script), name, *ports],
                                      stdout=subprocess.PIPE, text=True)
            servers.append(server)
            assert server.stdout.readline().strip() == "ready"
        yield client, pod
    finally:
        for server in servers:
            server.kill()
            server.wait()
        for ns in (client, pod):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def load(pod: str, capture: Interception) -> None:
    subprocess.run(["ip", "netns", "exec", pod, "nft", "-f", "-"], input=ruleset(capture), text=True,
                   check=True, capture_output=True, timeout=60)


def connect(ns: str, address: str, port: int, uid: int | None = None, gid: int | None = None) -> str:
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid if gid is None else gid}", "--clear-groups"] \
        if uid is not None else []
    return run("ip", "netns", "exec", ns, *as_user, sys.executable, "-c", CONNECT, address, str(port)).strip()


def test_the_pods_tcp_goes_through_its_proxy_and_the_proxys_own_does_not(pair):
    client, pod = pair
    capture = interception_of({"traffic.sidecar.istio.io/excludeOutboundPorts": "5432"})
    load(pod, capture)
    load(pod, capture)  # loaded again: the table replaced, not doubled
    assert run("ip", "netns", "exec", pod, "nft", "list", "tables").count("podnet-mesh") == 1
    # inbound: to the proxy's 15006, which learns where it was going
    assert connect(client, "10.251.0.2", 8080) == "proxy 15006 10.251.0.2:8080"
    assert connect(client, "10.251.0.2", 15021) == "app 15021 10.251.0.2:15021"  # never captured
    # outbound: the app's to the proxy's 15001; the proxy's own (uid 1337) where it was sent
    assert connect(pod, "10.251.0.1", 9000, uid=1000) == "proxy 15001 10.251.0.1:9000"
    assert connect(pod, "10.251.0.1", 9000, uid=1337) == "direct 9000 10.251.0.1:9000"
    assert connect(pod, "10.251.0.1", 5432, uid=1000) == "direct 5432 10.251.0.1:5432"  # excluded by annotation
    assert connect(pod, "127.0.0.1", 7000, uid=1000) == "app 7000 127.0.0.1:7000"  # loopback stays
    # the proxy's connection to its own pod address goes through inbound
    assert connect(pod, "10.251.0.2", 8080, uid=1337) == "proxy 15006 10.251.0.2:8080"
    # a pod's proxy as podnet runs it: a uid of its own in group 1337, let through and hairpinned alike
    own = proxy_uid("test/ns/pod")
    assert connect(pod, "10.251.0.1", 9000, uid=own, gid=PROXY_GID) == "direct 9000 10.251.0.1:9000"
    assert connect(pod, "10.251.0.2", 8080, uid=own, gid=PROXY_GID) == "proxy 15006 10.251.0.2:8080"


ANNOTATED = [
    {},
    {"traffic.sidecar.istio.io/excludeOutboundPorts": "5432", "traffic.sidecar.istio.io/excludeInboundPorts": "7000"},
    {"traffic.sidecar.istio.io/includeInboundPorts": "7000", "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.96.0.0/12"},
    {"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.251.0.0/24"},
    {"traffic.sidecar.istio.io/includeOutboundIPRanges": "", "traffic.sidecar.istio.io/includeOutboundPorts": "9000"},
    # Linkerd's: ports and ranges that never go through the proxy
    {"config.linkerd.io/skip-inbound-ports": "6999-7001", "config.linkerd.io/skip-outbound-ports": "5432,5400-5500,8000-8999"},
    {"config.linkerd.io/skip-outbound-ports": "1024-65535"},  # (an interval, not 64,512 ports)
]


@pytest.mark.parametrize("annotations", ANNOTATED, ids=[str(i) for i in range(len(ANNOTATED))])
def test_the_kernel_captures_what_trace_says_it_captures(pair, annotations):
    """The capture the nft table makes and the one the simulator's trace reads from the same
    annotations (semantics/meshcapture.py) agree, port by port."""
    client, pod = pair
    capture = interception_of(annotations)
    load(pod, capture)
    for port in (7000, 15021):  # (the app listens on both: what is not captured reaches it)
        assert connect(client, "10.251.0.2", port).startswith("proxy 15006") is captures_inbound(capture, port), port
    for port in (9000, 5432):
        taken = connect(pod, "10.251.0.1", port, uid=1000).startswith("proxy 15001")
        assert taken is captures_outbound(capture, "10.251.0.1", port), port


def test_only_the_included_ports_and_ranges_are_captured(pair):
    client, pod = pair
    load(pod, interception_of({"traffic.sidecar.istio.io/includeInboundPorts": "8080",
                               "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.96.0.0/12"}))
    assert connect(client, "10.251.0.2", 8080) == "proxy 15006 10.251.0.2:8080"
    assert connect(client, "10.251.0.2", 7000) == "app 7000 10.251.0.2:7000"
    assert connect(pod, "10.251.0.1", 9000, uid=1000) == "direct 9000 10.251.0.1:9000"  # outside the range


def test_bad_annotations_are_refused_with_the_annotation_named():
    with pytest.raises(InterceptionError, match="excludeInboundPorts: 'http'"):
        interception_of({"traffic.sidecar.istio.io/excludeInboundPorts": "http"})
    with pytest.raises(InterceptionError, match="excludeOutboundIPRanges"):
        interception_of({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.0/33"})
    with pytest.raises(InterceptionError, match="IPv4"):  # the table is IPv4's: an IPv6 range would refuse it whole
        interception_of({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.0/8,fd00::/8"})
