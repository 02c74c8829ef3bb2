"""The injected proxy container's program: what istio-proxy's pilot-agent does in the pod.

It runs Envoy (the pinned wheel) as the proxy's user (uid 1337, whose traffic the capture
table lets through) on the files podnet's control plane keeps in PODNET_PROXY_DIR (the
bootstrap, the watched resources, the certificates: mesh/agent.py writes them before the
container starts and whenever they change), and serves the agent's status port 15020:
- /app-health/<container>/<livez|readyz|startupz>: the app's own probe, run here as the injector
  moved it (ISTIO_KUBE_APP_PROBERS): kubelet's probe from the node would be captured and, under
  STRICT mTLS, refused;
- /healthz/ready: the proxy's readiness (Envoy's 15021 listener);
- /stats/prometheus: Envoy's metrics;
and takes the proxy's spans (Zipkin's API on 127.0.0.1:15099) into the pod's span file
(PODNET_TRACES_FILE), which `podnet mesh traces` reads.
It says it has started once Envoy is ready (podnet.host.started): the runtime holds the app
containers until then (Istio's holdApplicationUntilProxyStarts, which native sidecars give). A
SIGTERM stops Envoy and ends the agent; an Envoy that exits ends it with Envoy's code.

Usage (as the injector writes the container): python -m podnet.mesh.pilot_agent proxy sidecar
[--proxyLogLevel=LEVEL] [other pilot-agent flags, ignored].
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from podnet.host.started import signal_started
from podnet.mesh import envoy
from podnet.mesh.interception import PROXY_GID, PROXY_UID

PROXY_DIR_ENV = "PODNET_PROXY_DIR"
PROXY_UID_ENV = "PODNET_PROXY_UID"  # the uid Envoy runs as (group 1337 always): mesh/interception.proxy_uid
TRACES_ENV = "PODNET_TRACES_FILE"  # where the proxy's spans go, one Zipkin JSON span per line
TRACES_KEPT = 20 * 1024 * 1024  # bytes of spans per pod before the older half is let go
STATUS_PORT = 15020
READY_POLL = 0.05  # seconds between looks at a starting Envoy
IDLE_POLL = 3600.0  # seconds: how often the servers look for a shutdown nobody asks (the process ends them)
CONCURRENCY = 2  # Envoy's worker threads: Istio's default for a sidecar


def _get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def envoy_ready(timeout: float = 1.0) -> bool:
    try:
        return _get(envoy.HEALTH_PORT, "/healthz/ready", timeout)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def app_probe(prober: dict, timeout: float) -> bool:
    """One attempt of the app's original probe, from inside the pod (127.0.0.1), as kubelet's."""
    if "tcpSocket" in prober:
        try:
            socket.create_connection(("127.0.0.1", int(prober["tcpSocket"]["port"])), timeout=timeout).close()
            return True
        except OSError:
            return False
    action = prober.get("httpGet") or {}
    host = action.get("host") or "127.0.0.1"
    try:
        if str(action.get("scheme", "HTTP")).upper() == "HTTPS":
            connection = http.client.HTTPSConnection(host, int(action["port"]), timeout=timeout,
                                                     context=ssl._create_unverified_context())
        else:
            connection = http.client.HTTPConnection(host, int(action["port"]), timeout=timeout)
        headers = {h.get("name"): h.get("value") for h in action.get("httpHeaders") or []}
        connection.request("GET", action.get("path") or "/", headers={"User-Agent": "kube-probe/1.34", **headers})
        status = connection.getresponse().status
        connection.close()
        return 200 <= status < 400  # kubelet's success
    except (OSError, http.client.HTTPException, ValueError, KeyError):
        return False


def status_handler(probers: dict[str, dict]):
    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path in probers:
                prober = probers[path]
                ok = app_probe(prober, float(prober.get("timeoutSeconds") or 1))
                self._answer(200 if ok else 503, b"")
            elif path == "/healthz/ready":
                self._answer(200 if envoy_ready() else 503, b"")
            elif path == "/stats/prometheus":
                try:
                    status, body = _get(envoy.ADMIN_PORT, "/stats/prometheus", 5.0)
                except (OSError, http.client.HTTPException):
                    status, body = 503, b""
                self._answer(status, body, "text/plain; version=0.0.4")
            else:
                self._answer(404, b"")

        def _answer(self, status: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Status


class SpanFile:
    """The pod's spans, appended as JSON lines (the cluster's own file: `podnet mesh traces`
    reads it); past TRACES_KEPT bytes the file moves to .1 and a new one begins."""

    def __init__(self, path: Path):
        self.path, self.lock = path, threading.Lock()

    def add(self, spans: list) -> None:
        text = "".join(json.dumps(span, separators=(",", ":")) + "\n" for span in spans if isinstance(span, dict))
        with self.lock:
            try:
                if self.path.stat().st_size > TRACES_KEPT:
                    self.path.replace(self.path.with_suffix(self.path.suffix + ".1"))
            except FileNotFoundError:
                pass
            with open(self.path, "a") as out:
                out.write(text)


def collector_handler(spans: SpanFile):
    """Zipkin's span API (POST /api/v2/spans, a JSON list), as Envoy's Zipkin tracer sends them."""
    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            try:
                body = self._body()
                spans.add(json.loads(body))
                status = 202
            except (ValueError, OSError):
                status = 400
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _body(self) -> bytes:
            if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []  # (Envoy streams its span reports in chunks)
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, then the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()

        def log_message(self, *args):
            pass

    return Collector


def envoy_argv(directory: Path, log_level: str) -> list[str]:
    uid = int(os.environ.get(PROXY_UID_ENV) or PROXY_UID)
    return ["setpriv", f"--reuid={uid}", f"--regid={PROXY_GID}", "--clear-groups", str(envoy.binary()),
            "-c", str(directory / "bootstrap.json"), "--disable-hot-restart", "--concurrency", str(CONCURRENCY),
            "-l", log_level, "--log-format", "%Y-%m-%dT%T.%fZ\t%l\tenvoy %n\t%v"]


def main(argv: list[str]) -> int:
    directory = Path(os.environ.get(PROXY_DIR_ENV, ""))
    if not (directory / "bootstrap.json").is_file():
        print(f"pilot-agent: no proxy configuration in {directory} ({PROXY_DIR_ENV})", file=sys.stderr, flush=True)
        return 1
    level = next((a.split("=", 1)[1] for a in argv if a.startswith("--proxyLogLevel=")), "warning")
    probers = json.loads(os.environ.get("ISTIO_KUBE_APP_PROBERS") or "{}")
    server = http.server.ThreadingHTTPServer(("0.0.0.0", STATUS_PORT), status_handler(probers))
    server.daemon_threads = True
    # (serve_forever wakes every poll_interval only to see whether shutdown() was asked: never here,
    # the threads end with the process; a hundred idle agents need not wake four hundred times a second)
    threading.Thread(target=server.serve_forever, args=(IDLE_POLL,), name="status", daemon=True).start()
    if os.environ.get(TRACES_ENV):
        collector = http.server.ThreadingHTTPServer(("127.0.0.1", envoy.TRACE_COLLECTOR_PORT),
                                                    collector_handler(SpanFile(Path(os.environ[TRACES_ENV]))))
        collector.daemon_threads = True
        threading.Thread(target=collector.serve_forever, args=(IDLE_POLL,), name="collector", daemon=True).start()
    proxy = subprocess.Popen(envoy_argv(directory, level))
    stopping = threading.Event()

    def stop(signum, frame):
        stopping.set()
        proxy.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"pilot-agent: Envoy started (pid {proxy.pid}) on {directory}", file=sys.stderr, flush=True)
    while proxy.poll() is None and not envoy_ready():
        time.sleep(READY_POLL)
    if proxy.poll() is None:
        print("pilot-agent: Envoy is ready", file=sys.stderr, flush=True)
        signal_started()
    code = proxy.wait()
    if stopping.is_set():
        return 0
    return 128 - code if code < 0 else (code or 1)  # (killed by signal N: 128+N, as a shell says it)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
