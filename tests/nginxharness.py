"""A real nginx for unprivileged tests: the rendered config on 127.0.0.1 high ports, with
header-echo backends standing in for the pods of each upstream.

Every upstream with ready endpoints gets its own echo server (a distinct 127.0.0.1 port), so
the port that answered tells which backend nginx chose; the echo body is the request line's
URI and the headers it received. Requests are sent as raw HTTP (the URI byte for byte, the Host
header as the URL spells it, SNI for https) from 127.0.0.2, an address that is not nginx's
own, so `/nginx_status` answers as it does to a client from outside.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from podnet.ingressnginx import balancer, certificates, nginxconf
from podnet.semantics.ingress import IngressController
from tests.conftest import free_port as shared_free_port

CLIENT_ADDRESS = "127.0.0.2"
DEADLINE = 60.0


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        # the request line as received (self.path has leading "//" collapsed by http.server)
        body = json.dumps({"port": self.server.server_address[1], "path": self.requestline.split(" ")[1],
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Podnet-Echo", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


class EchoServers:
    """One header-echo HTTP server per upstream name, each on its own 127.0.0.1 port."""

    def __init__(self) -> None:
        self.by_name: dict[str, ThreadingHTTPServer] = {}
        self.names_by_port: dict[int, str] = {}

    def address(self, name: str, tls_certificate: Path | None = None) -> str:
        """The echo server for upstream `name` (HTTPS with `tls_certificate`, for backend-protocol)."""
        if name not in self.by_name:
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
            server.daemon_threads = True
            if tls_certificate is not None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(str(tls_certificate))
                server.socket = context.wrap_socket(server.socket, server_side=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.by_name[name] = server
            self.names_by_port[server.server_address[1]] = name
        return f"127.0.0.1:{self.by_name[name].server_address[1]}"

    def close(self) -> None:
        for server in self.by_name.values():
            server.shutdown()
            server.server_close()


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def echo(self) -> dict | None:
        """What the echo backend received, None when nginx answered itself."""
        return json.loads(self.body) if self.headers.get("x-podnet-echo") == "1" else None


def free_port() -> int:
    return shared_free_port()


class RunningNginx:
    """The host's nginx as the current user, serving `render(controller, …)`; a context manager."""

    def __init__(self, controller: IngressController, certificate_files: Mapping[str, Path] | None = None,
                 worker_processes: str = "1", access_log: bool = False) -> None:
        self.controller = controller
        self.echo = EchoServers()
        self._tmp = tempfile.TemporaryDirectory(prefix="podnet-nginx-")
        self.dir = Path(self._tmp.name)
        self.default_certificate = certificates.default_certificate(self.dir / "certs")
        self.certificate_files = dict(certificate_files or {})
        self.worker_processes = worker_processes
        self.access_log = access_log
        self.process: subprocess.Popen[bytes] | None = None
        self.conf = self.dir / "nginx.conf"

    def upstreams(self, controller: IngressController) -> dict[str, tuple[str, ...]]:
        """Each upstream the simulator gives endpoints to → its own echo server; the others none."""
        https = {r.upstream for r in controller.routes() if r.backend_protocol == "HTTPS"}
        return {u.name: (self.echo.address(u.name, self.default_certificate if u.name in https else None),)
                if u.endpoints else () for u in controller.upstreams()}

    def render(self, controller: IngressController) -> str:
        return nginxconf.render(controller, self.upstreams(controller), self.options)

    def __enter__(self) -> RunningNginx:
        for _attempt in range(5):
            self.options = nginxconf.NginxOptions(
                runtime_dir=self.dir, default_certificate=self.default_certificate,
                http_listen=f"127.0.0.1:{free_port()}", https_listen=f"127.0.0.1:{free_port()}",
                health_listen=f"127.0.0.1:{free_port()}", configuration_listen=f"127.0.0.1:{free_port()}",
                certificates=self.certificate_files,
                worker_processes=self.worker_processes, access_log=self.access_log,
                user="root" if os.geteuid() == 0 else None)  # workers that can write the temp dirs
            text = self.render(self.controller)
            error = nginxconf.validate(text)
            if error is not None:
                self.close()
                raise AssertionError(f"nginx -t refuses the rendered config:\n{error}\n{text}")
            self.conf.write_text(text)
            self.process = subprocess.Popen(nginxconf.command(self.options, self.conf, "-g", "daemon off;"),
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._post_backends(self.controller) and self._wait_healthy():
                return self
            self.process.wait(timeout=DEADLINE)  # a port taken meanwhile: try others
        self.close()
        raise AssertionError(f"nginx did not start: {self.options.error_log.read_text()}")

    def _post_backends(self, controller: IngressController) -> bool:
        """The echo servers as the balancer's endpoints, as the controller posts a pod's; False
        when nginx is not there to take them (it exited: a port taken meanwhile)."""
        try:
            balancer.post(self.options.configuration_listen, balancer.document(self.upstreams(controller)), DEADLINE)
        except OSError:
            return False
        return True

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                return False
            try:
                if self.request("http", self.options.health_listen, "", "/healthz").status == 200:
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def reload(self, controller: IngressController) -> None:
        """Validate, write and load a new config (SIGHUP: nginx starts new workers, old ones finish)."""
        text = self.render(controller)
        error = nginxconf.validate(text)
        if error is not None:
            raise AssertionError(f"nginx -t refuses the rendered config:\n{error}")
        self.conf.write_text(text)
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGHUP)
        if not self._post_backends(controller):
            raise AssertionError("nginx did not take the backends after a reload")

    def fetch(self, url: str, method: str = "GET", headers: Mapping[str, str] | None = None,
              body: bytes = b"") -> Response:
        """`url` as a client sends it: Host from the URL (port included), path byte for byte."""
        scheme, rest = url.split("://", 1)
        netloc = urlsplit(url).netloc
        target = rest[len(netloc):] or "/"
        listen = self.options.https_listen if scheme == "https" else self.options.http_listen
        return self.request(scheme, listen, netloc, target, method, headers, body)

    def request(self, scheme: str, listen: str, host: str, target: str, method: str = "GET",
                headers: Mapping[str, str] | None = None, body: bytes = b"") -> Response:
        address, port = listen.rsplit(":", 1)
        lines = [f"{method} {target} HTTP/1.1" if host else f"{method} {target} HTTP/1.0"]
        if host:
            lines.append(f"Host: {host}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()] + ["Connection: close", "", ""]
        raw = socket.create_connection((address, int(port)), timeout=DEADLINE, source_address=(CLIENT_ADDRESS, 0))
        try:
            if scheme == "https":
                context = ssl.create_default_context()
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
                sni = urlsplit("//" + host).hostname if host else None
                raw = context.wrap_socket(raw, server_hostname=sni or None)
            raw.sendall("\r\n".join(lines).encode("latin-1"))
            try:
                raw.sendall(body)
            except OSError:
                pass  # nginx answered (413) without reading the body: its answer is still there
            chunks = []
            while chunk := raw.recv(65536):
                chunks.append(chunk)
        finally:
            raw.close()
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parsed = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
        if parsed.get("transfer-encoding") == "chunked":
            body = _dechunk(body)
        return Response(int(status_line.split()[1]), parsed, body)

    def peer_certificate_subject(self, sni: str | None) -> str:
        address, port = self.options.https_listen.rsplit(":", 1)
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection((address, int(port)), timeout=DEADLINE) as raw:
            with context.wrap_socket(raw, server_hostname=sni) as tls:
                der = tls.getpeercert(binary_form=True)
        done = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=der,
                              capture_output=True, check=True)
        return done.stdout.decode().strip()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.echo.close()
        self._tmp.cleanup()


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            break
        out, body = out + body[:n], body[n + 2:]
    return out
