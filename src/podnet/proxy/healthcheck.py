"""kube-proxy's health check server for externalTrafficPolicy Local Services, on one node.

For each Service with a healthCheckNodePort, kube-proxy listens on that port on the node's
addresses and answers any HTTP request with 200 when the node has a ready endpoint of the Service
and 503 otherwise (pkg/proxy/healthcheck/service_health.go): what a load balancer in front of the
nodes asks, so that it sends traffic only to nodes that would not drop it. The answers are
semantics.services.HealthCheck's, the same `trace` gives; this module only serves them: one
listening socket per port in the node's network namespace, one thread with a selector for all of
them, each request answered and the connection closed. Updated by NodeProxy after every sync.
"""

from __future__ import annotations

import logging
import selectors
import socket
import threading
from collections.abc import Callable
from email.utils import formatdate

from podnet.host.netns import socket_in_netns
from podnet.semantics.services import HealthCheck

log = logging.getLogger("podnet.proxy")
REQUEST_LIMIT = 16384  # bytes of request head read before answering anyway (Go's default is larger; nothing here needs it)
REASONS = {200: "OK", 503: "Service Unavailable"}

Listen = Callable[[int], socket.socket]


def answer(check: HealthCheck) -> bytes:
    """The HTTP response kube-proxy's handler writes (Go's net/http adds Date and Content-Length)."""
    body = check.body().encode()
    head = (f"HTTP/1.1 {check.status} {REASONS[check.status]}\r\nContent-Type: application/json\r\n"
            f"X-Content-Type-Options: nosniff\r\nDate: {formatdate(usegmt=True)}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


def listener_in(netns: str) -> Listen:
    """Opens a listening TCP socket on every address of the node (0.0.0.0:port in its namespace)."""
    def listen(port: int) -> socket.socket:
        sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock
    return listen


class HealthCheckServer:
    def __init__(self, node: str, listen: Listen):
        self.node = node
        self.listen = listen
        self._lock = threading.Lock()
        self._checks: dict[int, HealthCheck] = {}  # port -> what it answers
        self._listeners: dict[int, socket.socket] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        self._thread: threading.Thread | None = None
        self._stopping = False

    def sync(self, checks: list[HealthCheck]) -> None:
        """Serve exactly `checks`: new ports opened, gone ones closed, counts updated."""
        wanted = {c.port: c for c in checks}
        with self._lock:
            self._checks = wanted
            for port in sorted(set(self._listeners) - set(wanted)):
                sock = self._listeners.pop(port)
                self._selector.unregister(sock)
                sock.close()
            for port in sorted(set(wanted) - set(self._listeners)):
                try:
                    sock = self.listen(port)
                except OSError as exc:  # kube-proxy logs it and tries again at the next sync
                    log.warning("kube-proxy on node %s: health check port %d for Service %s/%s: %s", self.node, port,
                                wanted[port].namespace, wanted[port].name, exc)
                    continue
                self._listeners[port] = sock
                self._selector.register(sock, selectors.EVENT_READ, ("listener", port))
            if self._listeners and self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"healthcheck:{self.node}", daemon=True)
                self._thread.start()
        self._wake_w.send(b"x")  # the selector takes the new sockets

    def close(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for key in list(self._selector.get_map().values()):
                if key.fileobj not in (self._wake_r,):
                    key.fileobj.close()
            self._listeners.clear()
            self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def ports(self) -> list[int]:
        with self._lock:
            return sorted(self._listeners)

    # -- the serving thread ----------------------------------------------------------------------

    def _serve(self) -> None:
        pending: dict[socket.socket, tuple[int, bytearray]] = {}  # connection -> (port, request so far)
        while True:
            for key, _ in self._selector.select():
                kind, port = key.data
                with self._lock:
                    if self._stopping:
                        for conn in pending:
                            conn.close()
                        return
                    if kind == "wake":
                        self._wake_r.recv(4096)
                    elif kind == "listener":
                        self._accept(key.fileobj, port, pending)
                    else:
                        self._read(key.fileobj, pending)

    def _accept(self, listener: socket.socket, port: int, pending: dict) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        pending[conn] = (port, bytearray())
        self._selector.register(conn, selectors.EVENT_READ, ("connection", port))

    def _read(self, conn: socket.socket, pending: dict) -> None:
        port, head = pending[conn]
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        head += chunk
        if chunk and b"\r\n\r\n" not in head and len(head) < REQUEST_LIMIT:
            return
        self._selector.unregister(conn)
        del pending[conn]
        check = self._checks.get(port)
        if chunk and check is not None:
            try:
                conn.setblocking(True)
                conn.settimeout(5)
                conn.sendall(answer(check))
            except OSError:
                pass
        conn.close()
