"""The DNS server as a process on 127.0.0.1 (no root): UDP and TCP with real clients, the side
ports, reload of a changed Corefile, a forward to a fake upstream, and a flood from one client
not starving another."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest

from tests.conftest import free_port as shared_free_port


def free_port(kind=socket.SOCK_STREAM) -> int:
    return shared_free_port(tcp=kind == socket.SOCK_STREAM, udp=kind == socket.SOCK_DGRAM)


# The server is a process on a loaded machine: a reply that is due gets long, only a server that
# does not answer misses it.
ANSWER_TIMEOUT = 30.0


def corefile(ports: dict[str, int], extra: str = "") -> str:
    return (f".:{ports['dns']} {{\n    errors\n    health 127.0.0.1:{ports['health']}\n    ready 127.0.0.1:{ports['ready']}\n"
            "    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n"
            "       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }\n"
            f"    prometheus 127.0.0.1:{ports['metrics']}\n{extra}    cache 30\n    reload 2s 1s\n    loadbalance\n}}\n")


class FakeUpstream:
    """A one-record authoritative server for example.org on 127.0.0.1 (UDP), counting queries."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            self.queries += 1
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.7"))
            self.sock.sendto(response.to_wire(), addr)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dnslive")
    ports = {"dns": free_port(socket.SOCK_DGRAM), "health": free_port(), "ready": free_port(), "metrics": free_port()}
    upstream = FakeUpstream()
    forward = f"    forward example.org 127.0.0.1:{upstream.port}\n"
    path = tmp / "Corefile"
    path.write_text(corefile(ports, forward))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("PODNET_CONTROL_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-m", "podnet.dns", "-conf", str(path), "--host", "127.0.0.1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                dns.query.udp(dns.message.make_query("kubernetes.default.svc.cluster.local", "A"), "127.0.0.1",
                              port=ports["dns"], timeout=0.5)
                break
            except (dns.exception.Timeout, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the server did not start: {proc.stdout.read() if proc.poll() is not None else ''}")
        yield {"ports": ports, "path": path, "proc": proc, "upstream": upstream, "forward": forward}
    finally:
        proc.kill()
        proc.wait()
        upstream.sock.close()


def query(server, name: str, qtype: str = "A", tcp: bool = False) -> dns.message.Message:
    q = dns.message.make_query(name, qtype)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(q, "127.0.0.1", port=server["ports"]["dns"], timeout=ANSWER_TIMEOUT)


def http(server, which: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server['ports'][which]}{path}", timeout=ANSWER_TIMEOUT) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_udp_and_tcp_answer_the_cluster_zone(server):
    for tcp in (False, True):
        r = query(server, "kube-dns.kube-system.svc.cluster.local", tcp=tcp)
        assert r.rcode() == dns.rcode.NOERROR and r.answer[0][0].to_text() == "10.96.0.10"
    assert query(server, "nope.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


@pytest.mark.skipif(not shutil.which("dig"), reason="dig not installed")
def test_dig_and_kdig_against_the_server(server):
    port = str(server["ports"]["dns"])
    out = subprocess.run(["dig", "@127.0.0.1", "-p", port, "+short", "kubernetes.default.svc.cluster.local"],
                         capture_output=True, text=True, timeout=60).stdout
    assert out.split() == ["10.96.0.1"]
    if shutil.which("kdig"):
        out = subprocess.run(["kdig", "@127.0.0.1", "-p", port, "+tcp", "+short", "dns-version.cluster.local", "TXT"],
                             capture_output=True, text=True, timeout=60).stdout
        assert out.strip() == '"1.1.0"'


def test_health_ready_and_metrics(server):
    assert http(server, "health", "/health") == (200, "OK")
    assert http(server, "ready", "/ready") == (200, "OK")
    for _ in range(3):
        query(server, "kubernetes.default.svc.cluster.local", "SRV")
    status, text = http(server, "metrics", "/metrics")
    assert status == 200
    line = next(li for li in text.splitlines() if li.startswith("coredns_dns_requests_total") and 'type="SRV"' in li)
    assert line.endswith(" 3")


def test_forward_to_an_upstream_and_cache_its_answer(server):
    before = server["upstream"].queries
    first = query(server, "www.example.org")
    assert first.answer[0][0].to_text() == "192.0.2.7"
    time.sleep(1.1)
    second = query(server, "www.example.org")
    assert second.answer[0][0].to_text() == "192.0.2.7" and second.answer[0].ttl < first.answer[0].ttl
    assert server["upstream"].queries == before + 1  # the second came from the cache
    assert query(server, "example.com").rcode() == dns.rcode.SERVFAIL  # not forwarded: no next plugin
    _, text = http(server, "metrics", "/metrics")
    assert f'coredns_forward_requests_total{{to="127.0.0.1:{server["upstream"].port}"}} 1' in text


def replace(path, text: str) -> None:
    """A new Corefile as a ConfigMap update makes it: whole at once. write_text truncates first,
    and a reload reading the empty or half-written file in between counts a failed reload."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    os.replace(new, path)


def test_reload_applies_a_changed_corefile_and_keeps_the_old_on_errors(server):
    ports, path = server["ports"], server["path"]
    hosts = "    hosts {\n        10.9.9.9 legacy.cluster.local\n        fallthrough\n    }\n"
    replace(path, corefile(ports, server["forward"] + hosts))
    deadline = time.monotonic() + 60  # the reload interval is seconds; a loaded machine may take longer
    while not query(server, "legacy.cluster.local").answer:
        assert time.monotonic() < deadline, "the new Corefile did not take effect"
        time.sleep(0.3)
    assert query(server, "legacy.cluster.local").answer[0][0].to_text() == "10.9.9.9"
    replace(path, corefile(ports, server["forward"] + hosts).replace("    errors\n", "    erors\n"))
    deadline = time.monotonic() + 60  # until the server has tried the broken one, however loaded
    while "coredns_reload_failed_total 1" not in http(server, "metrics", "/metrics")[1]:
        assert time.monotonic() < deadline, "the broken Corefile was never tried"
        time.sleep(0.3)
    assert query(server, "legacy.cluster.local").answer[0][0].to_text() == "10.9.9.9"  # still the last good one
    assert server["proc"].poll() is None


def test_loop_plugin_stops_a_server_that_forwards_to_itself(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    (tmp_path / "Corefile").write_text(f".:{port} {{\n    errors\n    forward . 127.0.0.1:{port}\n    loop\n}}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("PODNET_CONTROL_SOCKET", None)
    proc = subprocess.run([sys.executable, "-m", "podnet.dns", "-conf", str(tmp_path / "Corefile"), "--host", "127.0.0.1"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "plugin/loop: Loop" in proc.stderr and "HINFO" in proc.stderr
