"""The prober's real executors against a real server (root only).

Two throw-away namespaces, ptest-<random>-node and ptest-<random>-pod, joined by one veth pair
on 10.213.77.0/24 and nothing else: no route to the host, no default route, so every packet
stays between them. A small HTTP server runs in the "pod"; the probes go out from the "node",
as kubelet's do. Everything is removed in the fixture's finalizer, also when a test fails.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from podnet.api.objects import KubeObject
from podnet.host.netns import list_netns
from podnet.linux.prober import ProbeManager, http_get, run_exec, tcp_socket
from podnet.probes import HTTPGet

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

NODE_IP, POD_IP, NOBODY = "10.213.77.1", "10.213.77.2", "10.213.77.3"  # NOBODY: on the link, never answers ARP
HTTP_PORT, HTTPS_PORT, SILENT_PORT, CLOSED_PORT = 8080, 8443, 8081, 8082
# longer than any probe here could take when it ends, however loaded the machine: the cases that
# time out would otherwise never end (a silent listener, an address nobody answers, `sleep 30`)
HANG = 25.0
# the time-out of an attempt that must succeed: the answer comes from a Python server (or a
# forked shell) that a loaded machine may not run for seconds; short time-outs stay where the
# attempt must fail
SUCCEED_WITHIN = 30.0

SERVER = r'''
import http.server, socket, ssl, sys, threading

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ok":
            code = 200
        elif self.path == "/moved":
            code = 302
        elif self.path == "/header":  # 200 only with the probe's own headers
            code = 200 if (self.headers.get("X-Probe") == "yes" and self.headers.get("User-Agent") == "kube-probe/1.31"
                           and self.headers.get("Connection") == "close") else 400
        elif self.path == "/host":
            code = 200 if self.headers.get("Host") == "web.example" else 400
        else:
            code = 500
        body = self.headers.get("X-Probe", "").encode()  # the header, echoed
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()

ip, cert = sys.argv[1], sys.argv[2]
serve(http.server.ThreadingHTTPServer((ip, 8080), Handler))
tls = http.server.ThreadingHTTPServer((ip, 8443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert)
tls.socket = context.wrap_socket(tls.socket, server_side=True)
serve(tls)
silent = socket.socket()  # completes the handshake (the kernel does), never answers
silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
silent.bind((ip, 8081))
silent.listen(16)
print("serving", flush=True)
threading.Event().wait()
'''


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """(node namespace, pod namespace) with the server running in the pod."""
    tag = secrets.token_hex(3)
    node, pod = f"ptest-{tag}-node", f"ptest-{tag}-pod"
    made: list[str] = []
    server = None
    try:
        for name in (node, pod):
            sh("ip", "netns", "add", name)
            made.append(name)
        # made inside the node namespace with its peer straight in the pod's: never on the host
        sh("ip", "-n", node, "link", "add", f"pt{tag}n", "type", "veth", "peer", "name", f"pt{tag}p", "netns", pod)
        for name, dev, ip in ((node, f"pt{tag}n", NODE_IP), (pod, f"pt{tag}p", POD_IP)):
            sh("ip", "-n", name, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", name, "link", "set", dev, "up")
            sh("ip", "-n", name, "link", "set", "lo", "up")
        cert = tmp_path_factory.mktemp("tls") / "server.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=pod",
                        "-keyout", str(cert), "-out", str(cert)], check=True, capture_output=True, timeout=60)
        server = subprocess.Popen(["ip", "netns", "exec", pod, sys.executable, "-c", SERVER, POD_IP, str(cert)],
                                  stdout=subprocess.PIPE, start_new_session=True)
        assert server.stdout.readline() == b"serving\n"
        yield node, pod
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        assert not [n for n in list_netns() if n in (node, pod)]


def timed(fn, *args):
    start = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - start


def attempt(fn, *args) -> bool:
    """As the manager does it: an exception is a failure."""
    try:
        return fn(*args)
    except Exception:
        return False


HTTP_CASES = [
    # (rule, action, expected)
    ("200 succeeds", HTTPGet(HTTP_PORT, "/ok"), True),
    ("a redirect succeeds", HTTPGet(HTTP_PORT, "/moved"), True),
    ("500 fails", HTTPGet(HTTP_PORT, "/broken"), False),
    ("the probe's headers are sent", HTTPGet(HTTP_PORT, "/header", headers=(("X-Probe", "yes"),)), True),
    ("without the header the server says 400", HTTPGet(HTTP_PORT, "/header"), False),
    ("a configured Host replaces the default", HTTPGet(HTTP_PORT, "/host", headers=(("Host", "web.example"),)), True),
    ("HTTPS without verifying the certificate", HTTPGet(HTTPS_PORT, "/ok", scheme="HTTPS"), True),
    ("HTTPS 500 fails", HTTPGet(HTTPS_PORT, "/broken", scheme="HTTPS"), False),
    ("nothing listening fails", HTTPGet(CLOSED_PORT, "/ok"), False),
]


@pytest.mark.parametrize("rule,action,expected", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_http_get(net, rule, action, expected):
    node, _ = net
    assert attempt(http_get, node, POD_IP, action, SUCCEED_WITHIN if expected else 2.0) is expected


@pytest.mark.parametrize("rule,host,port", [("no answer to the SYN", NOBODY, HTTP_PORT),
                                             ("connected, but no response", POD_IP, SILENT_PORT)])
def test_http_get_fails_within_its_timeout(net, rule, host, port):
    node, _ = net
    result, took = timed(attempt, http_get, node, host, HTTPGet(port, "/ok"), 1.0)
    assert result is False
    # it waited its timeout out, and it gave up (without the timeout neither case ever ends; the
    # upper bound only tells a hang from an end, whatever the machine's load)
    assert 0.9 <= took < HANG


TCP_CASES = [
    ("a listening port succeeds", POD_IP, HTTP_PORT, True),
    ("a silent listener still accepts the connection", POD_IP, SILENT_PORT, True),
    ("a closed port fails", POD_IP, CLOSED_PORT, False),
    ("an address that does not answer fails", NOBODY, HTTP_PORT, False),
    ("a name is not resolved with the host's resolver", "pod.example", HTTP_PORT, False),
]


@pytest.mark.parametrize("rule,host,port,expected", TCP_CASES, ids=[c[0] for c in TCP_CASES])
def test_tcp_socket(net, rule, host, port, expected):
    node, _ = net
    result, took = timed(attempt, tcp_socket, node, host, port, 1.0)
    assert result is expected and took < HANG  # a probe ends: at its timeout at the latest


def test_probes_leave_from_the_node_namespace(net):
    """The pod's address is not reachable from the host (no veth there): success proves the
    socket lived in the node's namespace."""
    node, _ = net
    assert attempt(tcp_socket, node, POD_IP, HTTP_PORT, 1.0)
    assert not any(Path("/sys/class/net").glob(f"pt{node.split('-')[1]}*"))  # nothing of ours on the host


@pytest.mark.parametrize("rule,argv,timeout,expected", [
    ("exit 0 succeeds", ["sh", "-c", "exit 0"], SUCCEED_WITHIN, True),
    ("exit 1 fails", ["sh", "-c", "exit 1"], 1.0, False),
    ("a command that does not end fails at its timeout", ["sh", "-c", "sleep 30"], 0.5, False),
])
def test_exec(rule, argv, timeout, expected):
    result, took = timed(run_exec, argv, timeout)
    assert result is expected and took < timeout + HANG  # `sleep 30` was cut at its timeout, not waited for


class Passthrough:
    """A runtime whose pods are the host: enter_argv leaves the argv as it is."""

    def enter_argv(self, sandbox, argv):
        return argv


def test_manager_with_real_executors(net):
    """ProbeManager end to end: readiness over HTTP from the node's namespace, liveness by exec."""
    node, pod_netns = net
    body = {"spec": {"nodeName": "n", "containers": [
        {"name": "ok", "readinessProbe": {"httpGet": {"port": "web", "path": "/ok"}, "periodSeconds": 1,
                                          "timeoutSeconds": 30},
         "ports": [{"name": "web", "containerPort": HTTP_PORT}]},
        {"name": "broken", "readinessProbe": {"httpGet": {"port": HTTP_PORT, "path": "/broken"}},
         "livenessProbe": {"exec": {"command": ["sh", "-c", "exit 1"]}, "failureThreshold": 1}}]},
        "status": {"podIP": POD_IP}}
    sandbox = SimpleNamespace(ref="default/web", pod=KubeObject("Pod", "default", "web", body), netns=pod_netns,
                              host_network=False, containers=[SimpleNamespace(name="ok", running=True, restarts=0, argv=["sh"]),
                                                              SimpleNamespace(name="broken", running=True, restarts=0,
                                                                              argv=["sh"])])
    changes, restarts = [], []
    layout = SimpleNamespace(node_netns=lambda name: node)
    manager = ProbeManager(Passthrough(), layout, lambda *a: changes.append(a), lambda *a: restarts.append(a), poll=0.02)
    try:
        manager.add_pod(sandbox)
        deadline = time.monotonic() + 60  # a wait for what must come, not a measure of how fast
        while time.monotonic() < deadline and not (restarts and ("default/web", "ok", True, True) in changes):
            time.sleep(0.02)
    finally:
        manager.stop()
    assert ("default/web", "ok", True, True) in changes
    assert ("default/web", "broken", True, True) not in changes
    # at least one restart, of broken only (a wait longer than its period may see a second one)
    assert restarts and set(restarts) == {("default/web", "broken")}
