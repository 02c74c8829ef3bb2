"""podnet.agnhost: the e2e test image's subcommands, run as real processes on 127.0.0.1.

Every server here is a subprocess bound to 127.0.0.1 ($PODNET_AGNHOST_BIND_ADDRESS) on a free
port; every packet stays on loopback; every process is killed by the fixture, whatever happens.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podnet.agnhost import cli
from podnet.agnhost.gohttp import canonical_key
from podnet.agnhost.golang import format_duration, json_marshal, parse_duration, GoError
from podnet.agnhost.ports import listens
from podnet.images import behaviour_of
from tests.conftest import free_port as shared_free_port

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
HOSTNAME = socket.gethostname()
DEADLINE = 60.0  # seconds any wait may take before the test fails


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["PODNET_AGNHOST_BIND_ADDRESS"] = LOOPBACK
    env.update(extra or {})
    return env


def free_port(both: bool = False) -> int:
    """A port free on 127.0.0.1 for TCP (and UDP too, with both)."""
    return shared_free_port(udp=both)


def wait_tcp(port: int, proc: "Agnhost | None" = None) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"agnhost exited with {proc.returncode}: {proc.logs()}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.01)
    raise AssertionError(f"nothing listens on {LOOPBACK}:{port}")


def udp_ask(port: int, payload: bytes, timeout: float = 2.0) -> bytes:
    """The answer to one datagram. Refused (nothing bound to the port yet: a server binds its UDP
    port after the TCP one `start` waited for, later on a loaded machine) is asked again."""
    deadline = time.monotonic() + DEADLINE
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.connect((LOOPBACK, port))
            s.send(payload)
            try:
                return s.recv(4096)
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.02)


def http_get(port: int, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None,
             tls: bool = False) -> http.client.HTTPResponse:
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(LOOPBACK, port, timeout=DEADLINE, context=ctx)
    else:
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=DEADLINE)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    resp.text = resp.read().decode()  # type: ignore[attr-defined]
    conn.close()
    return resp


def raw_http(port: int, data: bytes) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=DEADLINE) as s:
        s.sendall(data)
        chunks = []
        while True:
            got = s.recv(65536)
            if not got:
                break
            chunks.append(got)
        return b"".join(chunks)


class Agnhost(subprocess.Popen):
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str) -> str:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            logs = self.logs()
            if text in logs:
                return logs
            time.sleep(0.02)
        raise AssertionError(f"{text!r} never logged: {self.logs()}")


@pytest.fixture
def agnhost(tmp_path):
    """start(*argv, env=…, tcp=port) -> a running `python -m podnet.agnhost ARGV`; killed at the end."""
    procs: list[Agnhost] = []

    def start(*argv: str, env: dict[str, str] | None = None, tcp: int | None = None) -> Agnhost:
        log_path = tmp_path / f"agnhost-{len(procs)}.log"
        with open(log_path, "wb") as log:
            proc = Agnhost([sys.executable, "-m", "podnet.agnhost", *argv], env=_env(env), stdout=log,
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path)
        proc.log_path = log_path
        procs.append(proc)
        if tcp is not None:
            wait_tcp(tcp, proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(DEADLINE)


def run_agnhost(*argv: str, env: dict[str, str] | None = None, timeout: float = DEADLINE):
    return subprocess.run([sys.executable, "-m", "podnet.agnhost", *argv], env=_env(env), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture
def netexec(agnhost):
    """A netexec with HTTP and UDP on free ports: (proc, http_port, udp_port)."""
    http_port, udp_port = free_port(), free_port(both=True)
    proc = agnhost("netexec", f"--http-port={http_port}", f"--udp-port={udp_port}", tcp=http_port)
    return proc, http_port, udp_port


def _self_signed(tmp_path: Path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


# ---------------------------------------------------------------------------------------------
# netexec: HTTP endpoints

def test_netexec_root_prints_now_in_go_time_format(netexec):
    _, port, _ = netexec
    resp = http_get(port, "/")
    assert resp.status == 200
    assert re.fullmatch(r"NOW: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \S+ m=\+\d+\.\d{9}", resp.text)
    assert resp.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert resp.getheader("Date") and resp.getheader("Server") is None  # Go sends no Server header


def test_netexec_echo_returns_msg_with_optional_status_code(netexec):
    proc, port, _ = netexec
    assert http_get(port, "/echo?msg=hello%20world").text == "hello world"
    resp = http_get(port, "/echo?msg=teapot&code=418")
    assert (resp.status, resp.text) == (418, "teapot")
    resp = http_get(port, "/echo?msg=x&code=abc")
    assert (resp.status, resp.text) == (200, "argument 'code' must be an integer or empty, got \"abc\"\n")
    # FormValue: a POSTed form value wins over the query
    resp = http_get(port, "/echo?msg=query", method="POST", body=b"msg=posted",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.text == "posted"
    assert "GET /echo?msg=hello world&code=" in proc.wait_log("GET /echo?msg=teapot&code=418")


def test_netexec_clientip_reports_the_peers_ip_and_port(netexec):
    _, port, _ = netexec
    with socket.create_connection((LOOPBACK, port), timeout=DEADLINE) as s:
        s.sendall(b"GET /clientip HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        local = s.getsockname()
    assert data.split(b"\r\n\r\n", 1)[1].decode() == f"{local[0]}:{local[1]}"


def test_netexec_hostname_and_legacy_hostName_return_the_hostname(netexec):
    proc, port, _ = netexec
    assert http_get(port, "/hostname").text == HOSTNAME
    assert http_get(port, "/hostName").text == HOSTNAME
    assert f"hostname: {HOSTNAME}" in proc.wait_log("GET /hostName")


def test_netexec_header_returns_one_header_or_all_as_json(netexec):
    _, port, _ = netexec
    assert http_get(port, "/header?key=x-forwarded-for", headers={"X-Forwarded-For": "10.0.0.7"}).text == "10.0.0.7"
    everything = json.loads(http_get(port, "/header", headers={"X-Test": "<a&b>"}).text)
    assert everything["X-Test"] == ["<a&b>"] and "Host" not in everything
    raw = raw_http(port, b"GET /header HTTP/1.1\r\nHost: h\r\nX-Test: <a&b>\r\nConnection: close\r\n\r\n")
    assert b'"X-Test":["\\u003ca\\u0026b\\u003e"]' in raw  # json.Marshal's HTML-safe escaping


def test_netexec_healthz_and_readyz_succeed_once_udp_serves(netexec):
    _, port, _ = netexec
    assert http_get(port, "/healthz").status == 200
    resp = http_get(port, "/readyz")
    assert (resp.status, resp.text) == (200, "ok")


def test_netexec_healthz_fails_when_no_udp_server_runs(agnhost):
    port = free_port()
    agnhost("netexec", f"--http-port={port}", "--udp-port=-1", tcp=port)
    assert http_get(port, "/healthz").status == 412  # upstream: ready means "the UDP server runs"
    assert http_get(port, "/readyz").status == 412


def test_netexec_redirect_sends_location_and_code(netexec):
    _, port, _ = netexec
    resp = http_get(port, "/redirect?location=/echo%3Fmsg%3Dfoobar&code=307")
    assert resp.status == 307 and resp.getheader("Location") == "/echo?msg=foobar"
    assert resp.text == '<a href="/echo?msg=foobar">Temporary Redirect</a>.\n\n'
    resp = http_get(port, "/redirect?location=elsewhere")
    assert resp.status == 302 and resp.getheader("Location") == "/elsewhere"


def test_netexec_unclean_path_is_redirected_like_go_servemux(netexec):
    _, port, _ = netexec
    resp = http_get(port, "//echo/../echo?msg=x")
    assert resp.status == 301 and resp.getheader("Location") == "/echo?msg=x"
    assert http_get(port, "/no/such/endpoint").text.startswith("NOW: ")  # "/" serves everything else


def test_netexec_shell_runs_a_command_and_reports_its_exit_status(netexec):
    _, port, _ = netexec
    resp = http_get(port, "/shell?cmd=echo%20hi%3B%20exit%203")
    assert json.loads(resp.text) == {"output": "hi\n", "error": "exit status 3"}
    assert resp.text == '{"error":"exit status 3","output":"hi\\n"}'  # Go's sorted keys
    assert json.loads(http_get(port, "/shell?shellCommand=printf%20ok").text) == {"output": "ok"}


def _multipart(field: str, filename: str | None, content: bytes) -> tuple[bytes, str]:
    boundary = "agnhostboundary42"
    disposition = f'form-data; name="{field}"' + (f'; filename="{filename}"' if filename else "")
    body = (f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: application/octet-stream\r\n\r\n"
            .encode() + content + f"\r\n--{boundary}--\r\n".encode())
    return body, f"multipart/form-data; boundary={boundary}"


def test_netexec_upload_writes_the_file_into_the_upload_dir(agnhost, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    port = free_port()
    agnhost("netexec", f"--http-port={port}", "--udp-port=-1", env={"PODNET_AGNHOST_UPLOAD_DIR": str(uploads)},
            tcp=port)
    body, ctype = _multipart("file", "payload.bin", b"\x00binary\r\n--not-a-boundary")
    resp = http_get(port, "/upload", method="POST", body=body, headers={"Content-Type": ctype})
    assert resp.status == 201
    written = Path(json.loads(resp.text)["output"])
    assert written.parent == uploads and re.fullmatch(r"upload\d+", written.name)
    assert written.read_bytes() == b"\x00binary\r\n--not-a-boundary"
    assert oct(written.stat().st_mode & 0o777) == "0o700"
    resp = http_get(port, "/upload", method="POST", body=b"x", headers={"Content-Type": "text/plain"})
    assert (resp.status, resp.text) == (200, '{"error":"Unable to upload file."}')


def test_netexec_upload_without_upload_dir_reports_open_failure(agnhost, tmp_path):
    port = free_port()
    agnhost("netexec", f"--http-port={port}", "--udp-port=-1",
            env={"PODNET_AGNHOST_UPLOAD_DIR": str(tmp_path / "missing")}, tcp=port)
    body, ctype = _multipart("file", "f.txt", b"data")
    resp = http_get(port, "/upload", method="POST", body=body, headers={"Content-Type": ctype})
    assert resp.text == '{"error":"Unable to open file for write"}'


def test_netexec_exit_with_code_ends_the_process_at_once(agnhost):
    port = free_port()
    proc = agnhost("netexec", f"--http-port={port}", "--udp-port=-1", tcp=port)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        http_get(port, "/exit?code=7")
    assert proc.wait(DEADLINE) == 7


def test_netexec_exit_with_timeout_shuts_down_gracefully_then_exits(agnhost):
    port = free_port()
    proc = agnhost("netexec", f"--http-port={port}", "--udp-port=-1", tcp=port)
    resp = http_get(port, "/exit?code=3&timeout=2s&wait=100ms")
    assert (resp.status, resp.text) == (200, "")
    assert proc.wait(DEADLINE) == 3
    logs = proc.logs()
    assert "Will begin shutdown in 100ms, allowing 2s for connections to close, then will exit with 3" in logs
    assert "Graceful shutdown completed with: <nil>" in logs
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=1).close()


def test_netexec_exit_rejects_bad_arguments(netexec):
    _, port, _ = netexec
    assert http_get(port, "/exit?timeout=soon").text == \
        "argument 'timeout' must be a valid golang duration or empty, got \"soon\"\n"
    assert http_get(port, "/exit?code=x").text == "argument 'code' must be an integer [0-127] or empty, got \"x\"\n"


def test_netexec_shutdown_exits_zero(agnhost):
    port = free_port()
    proc = agnhost("netexec", f"--http-port={port}", "--udp-port=-1", tcp=port)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        http_get(port, "/shutdown")
    assert proc.wait(DEADLINE) == 0


def test_netexec_sigterm_exits_zero(netexec):
    proc, _, _ = netexec
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(DEADLINE) == 0


def test_netexec_delay_shutdown_keeps_serving_with_readyz_503_after_sigterm(agnhost):
    port, udp = free_port(), free_port(both=True)
    proc = agnhost("netexec", f"--http-port={port}", f"--udp-port={udp}", "--delay-shutdown=2", tcp=port)
    proc.send_signal(signal.SIGTERM)
    proc.wait_log("Sleeping 2 seconds before terminating...")
    resp = http_get(port, "/readyz")
    assert (resp.status, resp.text) == (503, "shutting down")
    assert http_get(port, "/healthz").status == 200  # healthy: do not kill it, just stop sending traffic
    assert proc.wait(DEADLINE) == 0


def test_netexec_http_override_answers_every_request_with_the_override(agnhost):
    port = free_port()
    agnhost("netexec", f"--http-port={port}", "--udp-port=-1", "--http-override=/echo?msg=overridden", tcp=port)
    assert http_get(port, "/hostname").text == "overridden"
    assert http_get(port, "/anything/else").text == "overridden"


def test_netexec_keeps_a_connection_alive_across_requests(netexec):
    _, port, _ = netexec
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=DEADLINE)
    try:
        for msg in ("one", "two", "three"):
            conn.request("GET", f"/echo?msg={msg}")
            assert conn.getresponse().read() == msg.encode()
    finally:
        conn.close()


def test_netexec_rejects_a_malformed_request_as_go_does(netexec):
    _, port, _ = netexec
    assert raw_http(port, b"GET /hostname HTTP/1.1\r\n\r\n").startswith(
        b"HTTP/1.0 400 Bad Request: missing required Host header\r\n")
    assert raw_http(port, b"garbage\r\n\r\n").startswith(b"HTTP/1.0 400 Bad Request: malformed HTTP request")


def test_netexec_tls_serves_https_with_the_given_certificate(agnhost, tmp_path):
    cert, key = _self_signed(tmp_path)
    port = free_port()
    agnhost("netexec", f"--http-port={port}", "--udp-port=-1", f"--tls-cert-file={cert}",
            f"--tls-private-key-file={key}", tcp=port)
    assert http_get(port, "/hostname", tls=True).text == HOSTNAME


def test_netexec_tls_with_missing_key_is_fatal(tmp_path):
    cert, _ = _self_signed(tmp_path)
    result = run_agnhost("netexec", f"--http-port={free_port()}", "--udp-port=-1", f"--tls-cert-file={cert}")
    assert result.returncode == 1 and "open : no such file or directory" in result.stderr


def test_netexec_port_in_use_is_fatal():
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = run_agnhost("netexec", f"--http-port={port}", "--udp-port=-1")
    assert result.returncode == 1
    assert f"listen tcp 127.0.0.1:{port}: bind: address already in use" in result.stderr


def test_netexec_sctp_port_logs_unavailable_and_keeps_serving_tcp_and_udp(agnhost):
    port, udp, sctp = free_port(), free_port(both=True), free_port()
    proc = agnhost("netexec", f"--http-port={port}", f"--udp-port={udp}", f"--sctp-port={sctp}", tcp=port)
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
        pytest.skip("this machine has SCTP sockets")
    except OSError:
        pass
    assert f"SCTP server not started on port {sctp}: SCTP sockets are unavailable here" in proc.logs()
    assert http_get(port, "/hostname").text == HOSTNAME
    assert udp_ask(udp, b"hostname") == HOSTNAME.encode()


def test_netexec_udp_listen_addresses_binds_the_given_address_and_rejects_garbage(agnhost):
    port, udp = free_port(), free_port(both=True)
    proc = agnhost("netexec", f"--http-port={port}", f"--udp-port={udp}", f"--udp-listen-addresses={LOOPBACK}",
                   tcp=port)
    assert udp_ask(udp, b"hostname") == HOSTNAME.encode()
    assert f"Started UDP server on port {LOOPBACK} {udp}" in proc.logs()
    result = run_agnhost("netexec", f"--http-port={free_port()}", "--udp-listen-addresses=not-an-ip")
    assert result.returncode == 1 and "parseAddress: invalid address not-an-ip" in result.stderr


# ---------------------------------------------------------------------------------------------
# netexec: the UDP server and /dial

def test_netexec_udp_answers_hostname_echo_and_clientip(netexec):
    proc, _, udp = netexec
    assert udp_ask(udp, b"hostname\n") == HOSTNAME.encode()
    assert udp_ask(udp, b"echo Hello There") == b"hello there"  # upstream lower-cases the whole command
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.connect((LOOPBACK, udp))
        s.send(b"clientip")
        assert s.recv(100).decode() == f"{LOOPBACK}:{s.getsockname()[1]}"
    with pytest.raises(TimeoutError):
        udp_ask(udp, b"what is this", timeout=0.3)  # unknown commands get no answer
    assert "Unknown UDP command received from" in proc.wait_log("what is this")


def test_netexec_dial_http_reaches_another_netexec(netexec, agnhost):
    _, port, _ = netexec
    other = free_port()
    agnhost("netexec", f"--http-port={other}", "--udp-port=-1", tcp=other)
    resp = http_get(port, f"/dial?request=hostname&host={LOOPBACK}&port={other}&protocol=http&tries=3")
    assert resp.status == 200
    assert json.loads(resp.text) == {"responses": [HOSTNAME] * 3}
    echoed = json.loads(http_get(port, f"/dial?request=echo%3Fmsg%3Dpong&host={LOOPBACK}&port={other}").text)
    assert echoed == {"responses": ["pong"]}


def test_netexec_dial_udp_reaches_another_netexec(netexec, agnhost):
    _, port, _ = netexec
    other_http, other_udp = free_port(), free_port(both=True)
    agnhost("netexec", f"--http-port={other_http}", f"--udp-port={other_udp}", tcp=other_http)
    resp = http_get(port, f"/dial?request=hostname&host={LOOPBACK}&port={other_udp}&protocol=udp&tries=2")
    assert json.loads(resp.text) == {"responses": [HOSTNAME, HOSTNAME]}


def test_netexec_dial_reports_each_failed_try_as_an_error(netexec):
    _, port, _ = netexec
    closed = free_port(both=True)
    out = json.loads(http_get(port, f"/dial?request=hostname&host={LOOPBACK}&port={closed}&tries=2").text)
    assert out == {"errors": [f'Get "http://{LOOPBACK}:{closed}/hostname": dial tcp {LOOPBACK}:{closed}: '
                              "connect: connection refused"] * 2}
    out = json.loads(http_get(port, f"/dial?request=hostname&host={LOOPBACK}&port={closed}&protocol=udp").text)
    assert re.fullmatch(rf"reading from udp connection failed\. err:'read udp {LOOPBACK}:\d+->{LOOPBACK}:{closed}: "
                        r"read: connection refused'", out["errors"][0]) and "responses" not in out


def test_netexec_dial_udp_times_out_after_five_seconds(netexec):
    _, port, _ = netexec
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((LOOPBACK, 0))
        silent_port = silent.getsockname()[1]
        started = time.monotonic()
        out = json.loads(http_get(port, f"/dial?request=hostname&host={LOOPBACK}&port={silent_port}&protocol=udp").text)
        took = time.monotonic() - started
    assert took > 4.5  # it waited out Go's 5 s read deadline (how much longer is the machine's business)
    assert out["errors"][0].endswith(f"->{LOOPBACK}:{silent_port}: i/o timeout'")


def test_netexec_dial_sctp_reports_that_sctp_is_unavailable(netexec):
    _, port, _ = netexec
    out = json.loads(http_get(port, f"/dial?request=hostname&host={LOOPBACK}&port=9&protocol=sctp").text)
    assert out == {"errors": ["sctp dial failed. err:protocol not supported"]}


def test_netexec_dial_rejects_invalid_parameters_with_400(netexec):
    _, port, _ = netexec
    cases = {
        f"/dial?host={LOOPBACK}&port=80": "request parameter not specified. <nil>\n",
        f"/dial?request=x&host={LOOPBACK}&port=80&tries=many":
            'tries parameter is invalid. strconv.Atoi: parsing "many": invalid syntax\n',
        f"/dial?request=x&host={LOOPBACK}&port=80&protocol=quic": "unsupported protocol. quic\n",
        f"/dial?request=x&host={LOOPBACK}&port=99999": "host and/or port param are invalid. address 99999: invalid port\n",
        f"/dial?request=x&host={LOOPBACK}&port=nosuchservice":
            "host and/or port param are invalid. lookup tcp/nosuchservice: unknown port\n",
    }
    for path, text in cases.items():
        resp = http_get(port, path)
        assert (resp.status, resp.text) == (400, text), path


def test_netexec_dial_with_zero_tries_answers_an_empty_object(netexec):
    _, port, _ = netexec
    assert http_get(port, f"/dial?request=hostname&host={LOOPBACK}&port=1&tries=0").text == "{}"


# ---------------------------------------------------------------------------------------------
# serve-hostname

def test_serve_hostname_http_replies_the_hostname_and_keeps_alive(agnhost):
    port = free_port()
    agnhost("serve-hostname", f"--port={port}", tcp=port)
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=DEADLINE)
    try:
        for _ in range(2):
            conn.request("GET", "/any/path")
            resp = conn.getresponse()
            assert resp.read() == HOSTNAME.encode() and resp.getheader("Connection") is None
    finally:
        conn.close()


def test_serve_hostname_close_flag_closes_the_connection_after_each_request(agnhost):
    port = free_port()
    agnhost("serve-hostname", "--port", str(port), "--close", tcp=port)
    raw = raw_http(port, f"GET / HTTP/1.1\r\nHost: {LOOPBACK}\r\n\r\n".encode())  # returns at server close
    assert b"\r\nConnection: close\r\n" in raw and raw.endswith(HOSTNAME.encode())


def test_serve_hostname_tcp_writes_the_hostname_and_closes(agnhost):
    port = free_port()
    proc = agnhost("serve-hostname", "--tcp", "--http=false", f"--port={port}", tcp=port)
    with socket.create_connection((LOOPBACK, port), timeout=DEADLINE) as s:
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data == HOSTNAME.encode()
    assert "TCP request from 127.0.0.1:" in proc.logs()


def test_serve_hostname_udp_replies_the_hostname(agnhost):
    port = free_port(both=True)
    proc = agnhost("serve-hostname", "--udp", "--http=false", f"--port={port}")
    proc.wait_log(f"Serving on port {port}.")
    assert udp_ask(port, b"anything") == HOSTNAME.encode()
    assert "UDP request from 127.0.0.1:" in proc.wait_log("UDP request")


def test_serve_hostname_tcp_and_udp_share_the_port(agnhost):
    port = free_port(both=True)
    agnhost("serve-hostname", "-tcp", "-udp", "-http=false", "-port", str(port), tcp=port)  # Go flag style
    assert udp_ask(port, b"x") == HOSTNAME.encode()


def test_serve_hostname_raw_mode_with_http_is_fatal():
    result = run_agnhost("serve-hostname", "--tcp", f"--port={free_port()}")
    assert result.returncode == 1
    assert "Can't server TCP/UDP mode and HTTP mode at the same time" in result.stderr


def test_serve_hostname_keeps_serving_after_sigterm_awaiting_deletion(agnhost):
    port = free_port()
    proc = agnhost("serve-hostname", f"--port={port}", tcp=port)
    proc.send_signal(signal.SIGTERM)
    logs = proc.wait_log("Awaiting pod deletion.")
    assert "Shutting down after receiving signal: terminated." in logs
    assert http_get(port, "/").text == HOSTNAME  # still serving until the kubelet's SIGKILL
    assert proc.poll() is None


# ---------------------------------------------------------------------------------------------
# connect

def test_connect_succeeds_silently_against_a_listening_port():
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(8)
        result = run_agnhost("connect", f"{LOOPBACK}:{listener.getsockname()[1]}", "--timeout=5s")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_connect_reports_refused():
    result = run_agnhost("connect", f"{LOOPBACK}:{free_port()}")
    assert (result.returncode, result.stderr) == (1, "REFUSED\n")


def test_connect_reports_timeout_when_nothing_answers_the_syn():
    # A listener whose accept queue is full drops further SYNs: the one way to make loopback silent.
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(16):
                s = socket.socket()
                s.settimeout(0.3)
                try:
                    s.connect((LOOPBACK, port))
                    fillers.append(s)
                except TimeoutError:
                    s.close()
                    break
            else:
                pytest.skip("the accept queue never filled")
            started = time.monotonic()
            result = run_agnhost("connect", "--timeout=1s", f"{LOOPBACK}:{port}")
            took = time.monotonic() - started
        finally:
            for s in fillers:
                s.close()
    assert (result.returncode, result.stderr) == (1, "TIMEOUT\n")
    assert took > 0.9  # it waited out the 1 s timeout before saying so


def test_connect_reports_unknown_for_a_malformed_destination():
    result = run_agnhost("connect", LOOPBACK)
    assert (result.returncode, result.stderr) == (1, f"UNKNOWN: address {LOOPBACK}: missing port in address\n")


def test_connect_reports_dns_for_an_unresolvable_port():
    result = run_agnhost("connect", f"{LOOPBACK}:nosuchservice")
    assert (result.returncode, result.stderr) == (1, "DNS: lookup tcp/nosuchservice: unknown port\n")


def test_connect_udp_succeeds_when_the_server_answers(netexec):
    _, _, udp = netexec
    result = run_agnhost("connect", "--protocol=udp", "--timeout=2s", f"{LOOPBACK}:{udp}")
    assert (result.returncode, result.stderr) == (0, "")


def test_connect_udp_reports_refused_and_timeout():
    closed = free_port(both=True)
    result = run_agnhost("connect", "--protocol", "udp", "--timeout=2s", f"{LOOPBACK}:{closed}")
    assert result.returncode == 1
    assert re.fullmatch(rf"REFUSED: read udp {LOOPBACK}:\d+->{LOOPBACK}:{closed}: read: connection refused\n",
                        result.stderr)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((LOOPBACK, 0))
        result = run_agnhost("connect", "--protocol=udp", "--timeout=500ms", f"{LOOPBACK}:{silent.getsockname()[1]}")
    assert result.returncode == 1 and result.stderr.startswith("TIMEOUT: read udp ") and \
        result.stderr.endswith(": i/o timeout\n")


def test_connect_sctp_reports_other_because_sctp_is_unavailable():
    result = run_agnhost("connect", "--protocol=sctp", "--timeout=1s", f"{LOOPBACK}:9")
    assert (result.returncode, result.stderr) == (1, "OTHER: protocol not supported\n")


def test_connect_rejects_an_unsupported_protocol_and_wrong_arguments():
    result = run_agnhost("connect", "--protocol=quic", f"{LOOPBACK}:9")
    assert (result.returncode, result.stderr) == (1, "Unsupported protocol\nquic")
    result = run_agnhost("connect")
    assert (result.returncode, result.stderr) == (1, "Error: accepts 1 arg(s), received 0\n")


# ---------------------------------------------------------------------------------------------
# porter

def test_porter_serves_each_env_ports_value_over_http(agnhost):
    a, b = free_port(), free_port()
    agnhost("porter", env={f"SERVE_PORT_{a}": "foo", f"SERVE_TCP_PORT_{b}": "bar"}, tcp=a)
    wait_tcp(b)
    assert http_get(a, "/whatever").text == "foo"
    assert http_get(b, "/", method="POST", body=b"ignored").text == "bar"


def test_porter_json_response_reports_method_and_value(agnhost):
    port = free_port()
    agnhost("porter", "--json-response", env={f"SERVE_PORT_{port}": "v<1>"}, tcp=port)
    resp = http_get(port, "/", method="PUT")
    assert resp.getheader("Content-Type") == "application/json"
    assert resp.text == '{"Method":"PUT","Body":"v\\u003c1\\u003e"}'


def test_porter_udp_port_answers_every_datagram_with_the_value(agnhost):
    port = free_port(both=True)
    proc = agnhost("porter", env={f"SERVE_UDP_PORT_{port}": "udp-value"})
    proc.wait_log(f"Started UDP server on port {port}")
    assert udp_ask(port, b"hello") == b"udp-value"


def test_porter_tls_port_serves_https_with_cert_file_and_key_file(agnhost, tmp_path):
    cert, key = _self_signed(tmp_path)
    port = free_port()
    agnhost("porter", env={f"SERVE_TLS_PORT_{port}": "secret", "CERT_FILE": cert, "KEY_FILE": key}, tcp=port)
    assert http_get(port, "/", tls=True).text == "secret"


def test_porter_sctp_port_logs_unavailable_while_other_ports_serve(agnhost):
    tcp, sctp = free_port(), free_port()
    proc = agnhost("porter", env={f"SERVE_SCTP_PORT_{sctp}": "s", f"SERVE_PORT_{tcp}": "t"}, tcp=tcp)
    assert f"SCTP server not started on port {sctp}: SCTP sockets are unavailable here" in \
        proc.wait_log("SCTP server not started")
    assert http_get(tcp, "/").text == "t"


def test_porter_with_nothing_to_serve_ends_like_a_deadlocked_go_program(tmp_path):
    result = run_agnhost("porter", env={"CERT_FILE": str(tmp_path / "none.crt"), f"SERVE_TLS_PORT_{free_port()}": "x"})
    assert result.returncode == 2
    assert "tls server on port" in result.stderr and "no such file or directory" in result.stderr
    assert "fatal error: all goroutines are asleep - deadlock!" in result.stderr


# ---------------------------------------------------------------------------------------------
# pause, and the pause image

def test_pause_prints_paused_and_exits_2_on_sigterm(agnhost):
    proc = agnhost("pause")
    proc.wait_log("Paused")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(DEADLINE) == 2


def test_pause_exits_1_on_sigint(agnhost):
    proc = agnhost("pause")
    proc.wait_log("Paused")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(DEADLINE) == 1


def test_pause_image_exits_0_on_sigterm(tmp_path):
    log = tmp_path / "pause.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "podnet.agnhost.pause_image"], env=_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + DEADLINE
        while "first process" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
        assert "Shutting down, got signal: Terminated" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(DEADLINE)


# ---------------------------------------------------------------------------------------------
# liveness, test-webserver, dns-*

def test_liveness_serves_healthz_started_redirect_and_failure_emulators(agnhost):
    port = free_port()
    agnhost("liveness", env={"PODNET_AGNHOST_LIVENESS_PORT": str(port)}, tcp=port)
    resp = http_get(port, "/healthz")
    assert (resp.status, resp.text) == (200, "ok")
    assert re.fullmatch(r"\d+(\.\d+)?(ms|µs|s)", http_get(port, "/started").text)
    resp = http_get(port, "/redirect?loc=%2Fhealthz")
    assert (resp.status, resp.getheader("Location")) == (302, "/healthz")
    resp = http_get(port, "/sleep-headers?code=503&size=1")
    assert resp.status == 503 and resp.text.startswith("Slept for 0 secs\n") and len(resp.text) == 17 + 1024
    resp = http_get(port, "/sleep-body?code=200&interval=0&time=0")
    assert resp.text == "Sleeping for 0 secs\nSlept for 0 secs\n"
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        http_get(port, "/disconnect-headers")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        http_get(port, "/sleep-headers?code=abc")  # upstream: a 400 then a nil dereference drops it


def test_test_webserver_serves_files_and_directory_listings(agnhost, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "hello.txt").write_text("hello from a file")
    port = free_port()
    agnhost("test-webserver", f"--port={port}", tcp=port)
    resp = http_get(port, str(tmp_path / "site" / "hello.txt"))
    assert (resp.status, resp.text) == (200, "hello from a file")
    assert resp.getheader("Access-Control-Allow-Origin") == "*" and resp.getheader("Last-Modified")
    resp = http_get(port, str(tmp_path / "site"))
    assert (resp.status, resp.getheader("Location")) == (301, "site/")
    listing = http_get(port, str(tmp_path / "site") + "/").text
    assert '<a href="hello.txt">hello.txt</a>' in listing
    assert http_get(port, str(tmp_path / "nope")).status == 404


def test_dns_subcommands_print_the_resolver_configuration():
    resolv = Path("/etc/resolv.conf")
    if not resolv.exists():
        pytest.skip("no /etc/resolv.conf")
    lines = resolv.read_text().split("\n")
    nameserver = next((line for line in lines if line.startswith("nameserver")), None)
    result = run_agnhost("dns-server-list")
    if nameserver is None:
        assert result.returncode == 2
    else:
        assert result.stdout == ",".join(nameserver.split(" ")[1:]) + "\n"
    search = next((line for line in lines if line.startswith("search")), None)
    suffixes = run_agnhost("dns-suffix")
    if search is None:
        assert suffixes.returncode == 2 and "panic: Could not find DNS search list!" in suffixes.stderr
    else:
        assert suffixes.stdout == ",".join(search.split(" ")[1:]) + "\n"
    hosts = run_agnhost("etc-hosts")
    assert hosts.returncode == 0 and hosts.stdout == Path("/etc/hosts").read_text() + "\n"


# ---------------------------------------------------------------------------------------------
# the command line

def test_unknown_subcommand_is_an_error_with_a_suggestion():
    result = run_agnhost("netexe")
    assert result.returncode == 1
    assert result.stderr == 'Error: unknown command "netexe" for "app"\n\nDid you mean this?\n\tnetexec\n\n'


def test_upstream_subcommand_podnet_lacks_says_so():
    result = run_agnhost("guestbook")
    assert result.returncode == 1 and "'guestbook' is not implemented by podnet's built-in agnhost" in result.stderr


def test_bad_flag_prints_usage_then_the_error():
    result = run_agnhost("netexec", "--http-port=eighty")
    assert result.returncode == 1
    assert result.stderr.startswith("Usage:\n  app netexec [flags]\n")
    assert result.stderr.endswith('Error: invalid argument "eighty" for "--http-port" flag: '
                                  'strconv.ParseInt: parsing "eighty": invalid syntax\n')
    assert run_agnhost("serve-hostname", "--nope").stderr.endswith("Error: unknown flag: --nope\n")


def test_help_and_version_and_bare_invocation_exit_zero():
    result = run_agnhost("netexec", "--help")
    assert result.returncode == 0 and "--http-port int" in result.stdout and "(default 8080)" in result.stdout
    assert run_agnhost("--version").stdout == f"app version {cli.VERSION}\n"
    bare = run_agnhost()
    assert bare.returncode == 0 and "Available Commands:" in bare.stdout and "netexec" in bare.stdout


def test_flags_parse_in_pflag_and_go_flag_forms():
    netexec = cli.COMMANDS["netexec"].flags + cli.GLOBAL_FLAGS
    forms = (["--http-port=81"], ["--http-port", "81"], ["-http-port=81"], ["-http-port", "81"], ["--http_port=81"],
             ["--http-port=0x51"])
    for form in forms:
        values, positionals, _ = cli.parse_flags(netexec, form)
        assert values["http-port"] == 81 and positionals == [], form
    values, _, _ = cli.parse_flags(netexec, ["--udp-port", "-1", "--v=3", "-v", "4"])
    assert values["udp-port"] == -1 and values["v"] == 4
    hostname_flags = cli.COMMANDS["serve-hostname"].flags
    values, positionals, _ = cli.parse_flags(hostname_flags, ["--tcp", "--http=false", "--close=T"])
    assert (values["tcp"], values["http"], values["close"], positionals) == (True, False, True, [])
    values, positionals, _ = cli.parse_flags(hostname_flags, ["--http", "false"])  # pflag: "false" is an argument
    assert values["http"] is True and positionals == ["false"]
    connect = cli.COMMANDS["connect"].flags
    values, positionals, _ = cli.parse_flags(connect, ["10.0.0.1:80", "--timeout", "1.5s"])
    assert values["timeout"] == 1_500_000_000 and positionals == ["10.0.0.1:80"]
    with pytest.raises(cli.FlagError, match="flag needs an argument: --port"):
        cli.parse_flags(hostname_flags, ["--port"])


def test_argv_may_start_with_global_flags_before_the_subcommand():
    inv = cli.resolve(["--v", "2", "netexec", "--http-port=9000"])
    assert inv.command.name == "netexec" and inv.values["http-port"] == 9000 and inv.values["v"] == 2


def test_go_durations_parse_and_print_as_go_does():
    for text, ns, printed in (("0", 0, "0s"), ("1.5h", 5_400_000_000_000, "1h30m0s"), ("300ms", 300_000_000, "300ms"),
                              ("2m3.25s", 123_250_000_000, "2m3.25s"), ("1us", 1_000, "1µs"), ("-5s", -5_000_000_000,
                                                                                             "-5s")):
        assert parse_duration(text) == ns and format_duration(ns) == printed
    for bad, message in (("5", 'time: missing unit in duration "5"'), ("1x", 'time: unknown unit "x" in duration "1x"'),
                         ("", 'time: invalid duration ""')):
        with pytest.raises(GoError, match=re.escape(message)):
            parse_duration(bad)


def test_json_marshal_matches_go_key_order_and_escaping():
    assert json_marshal({"output": "a<b>&\n", "error": "x\u2028"}) == \
        '{"error":"x\\u2028","output":"a\\u003cb\\u003e\\u0026\\n"}'


# ---------------------------------------------------------------------------------------------
# what the simulator believes a container listens on (podnet.images) is what runs

@pytest.mark.parametrize("args,env,expected", [
    (["netexec"], {}, {(8080, "TCP"), (8081, "UDP")}),
    (["netexec", "--http-port", "80", "--udp-port", "-1"], {}, {(80, "TCP")}),
    (["netexec", "--sctp-port=9000"], {}, {(8080, "TCP"), (8081, "UDP"), (9000, "SCTP")}),
    (["serve-hostname"], {}, {(9376, "TCP")}),
    (["serve-hostname", "--udp", "--http=false", "--port=53"], {}, {(53, "UDP")}),
    (["serve-hostname", "--tcp"], {}, set()),  # fatal upstream: raw modes need --http=false
    (["porter"], {"SERVE_PORT_81": "a", "SERVE_UDP_PORT_82": "b", "SERVE_TLS_PORT_443": "c"},
     {(81, "TCP"), (82, "UDP"), (443, "TCP")}),
    (["netexec", "--http-port=x"], {}, set()),
    (["pause"], {}, set()),
])
def test_image_behaviour_listens_where_the_subcommand_serves(args, env, expected):
    assert listens(args, env)[1] == frozenset(expected)
    container = {"image": "registry.k8s.io/e2e-test-images/agnhost:2.53", "args": args,
                 "env": [{"name": k, "value": v} for k, v in env.items()]}
    assert behaviour_of(container).listens == frozenset(expected)
    as_command = {"image": "agnhost:2.53", "command": ["/agnhost", *args[:1]], "args": args[1:],
                  "env": container["env"]}
    assert behaviour_of(as_command).listens == frozenset(expected)


def test_header_keys_are_canonical_as_go_writes_them():
    """textproto.CanonicalMIMEHeaderKey: each letter after a hyphen upper case, the rest lower;
    a key with a non-token character is left alone; the cache returns the same answers."""
    cases = {"x-forwarded-for": "X-Forwarded-For", "CONTENT-LENGTH": "Content-Length", "a--b": "A--B",
             "-x": "-X", "x1-2y": "X1-2y", "foo bar": "foo bar", "ümlaut": "ümlaut", "": ""}
    for _ in range(2):
        assert {key: canonical_key(key) for key in cases} == cases
