"""The cluster's API server process (`python -m podnet.apiserver`), kept by the supervisor as
kubelet keeps the kube-apiserver static pod: started once the cluster is built, started again
when it dies (kubelet's back-off, podnet.crashloop), taken over by a restarted supervisor (its
pid and start time are recorded in apiserver.json, so a successor finds the same process),
stopped before the namespaces go (it holds a listening socket in the control-plane node's
network namespace, which would keep that namespace alive).

Its host port is chosen once, when the cluster is first started, and kept: the kubeconfig
`up` merged into the user's names it. The supervisor opens that listening socket itself and
hands it to each API server it starts (as systemd's socket activation does): the port is never
free while the server restarts, so no other program's bind(0) or connect() takes it meanwhile
(a port taken for a moment, even by a socket in TIME_WAIT, would have moved the API to another
port and left the kubeconfig wrong), and a client that connects in that moment waits in the
backlog instead of being refused. Only a supervisor that adopted a running server has no such
socket; when that server dies it binds the recorded port anew. A process outside the supervisor
is the point: the API server's JSON and TLS work runs on the other core, not in the
supervisor's interpreter.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from podnet import crashloop
from podnet.host.layout import ClusterLayout
from podnet.linux.adopted import start_time

log = logging.getLogger("podnet.supervisor")
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
BACKLOG = 1024  # as the API server's own listeners (podnet.apiserver.server)


def read_record(layout: ClusterLayout) -> dict[str, Any]:
    try:
        return json.loads(layout.apiserver_file.read_text())
    except (OSError, ValueError):
        return {}


def _write_record(layout: ClusterLayout, record: dict[str, Any]) -> None:
    temporary = layout.apiserver_file.with_suffix(".tmp")
    temporary.write_text(json.dumps(record))
    os.replace(temporary, layout.apiserver_file)


def _listening(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port (0: a free port), for the API servers to accept on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def recorded_process(layout: ClusterLayout) -> int | None:
    """The recorded API server's pid if that very process still runs."""
    record = read_record(layout)
    pid, started = record.get("pid"), record.get("started")
    if pid and started is not None and start_time(int(pid)) == started:
        return int(pid)
    return None


def stop_recorded(layout: ClusterLayout, grace: float = STOP_GRACE) -> None:
    """Stop the recorded API server (`down`, also after the supervisor died)."""
    pid = recorded_process(layout)
    if pid is None:
        return
    started = start_time(pid)
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while start_time(pid) == started and time.monotonic() < deadline:
        time.sleep(0.02)
    if start_time(pid) == started:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class ApiServerProcess:
    """Started by `ensure` (at start, at adoption, and each round of the supervisor's loop:
    cheap while it runs), stopped by `stop`."""

    def __init__(self, layout: ClusterLayout, clock=time.monotonic):
        self.layout = layout
        self.clock = clock
        self._child: subprocess.Popen | None = None  # ours to reap; an adopted one is not
        self._listener: socket.socket | None = None  # the host port, held across restarts
        self._backoff: crashloop.BackOff | None = None
        self._exited_at: float | None = None  # when this supervisor found it gone
        self.restarts = 0
        self._stopped = False  # `stop` was called: a loop round under way starts nothing again

    def running(self) -> bool:
        if self._child is not None and self._child.poll() is not None:
            self._child = None
        return recorded_process(self.layout) is not None

    def ensure(self) -> None:
        if self._stopped:
            return
        if self.running():
            self._exited_at = None
            return
        now = self.clock()
        record = read_record(self.layout)
        if record.get("pid"):  # it ran and died: started again as kubelet restarts a container
            if self._exited_at is None:
                self._exited_at = now
                log.warning("API server (pid %s) is not running", record.get("pid"))
            if now < crashloop.restart_at(self._backoff, self._exited_at):
                return
            self._backoff = crashloop.restarted(self._backoff, self._exited_at, now)
            self.restarts += 1
        self._exited_at = None
        self._start(self._host_listener(record.get("port")))

    def _host_listener(self, port: int | None) -> socket.socket:
        """The listening socket the API server accepts on: the one held since the first start,
        else one bound on the recorded port, else (taken) on another."""
        if self._listener is None:
            try:
                self._listener = _listening(int(port or 0))
            except OSError:
                log.warning("API server: port %s on 127.0.0.1 is taken: choosing another (run `podnet kubeconfig`)", port)
                self._listener = _listening(0)
        return self._listener

    def _start(self, listener: socket.socket) -> None:
        port = listener.getsockname()[1]
        logs = self.layout.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / "apiserver.log", "ab") as out:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "podnet.apiserver", "--cluster", self.layout.cluster, "--port", str(port),
                 "--listen-fd", str(listener.fileno())],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                pass_fds=(listener.fileno(),), env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        _write_record(self.layout, {"port": port, "pid": self._child.pid, "started": _start_time_of(self._child.pid)})
        log.info("API server started (pid %d) on https://127.0.0.1:%d", self._child.pid, port)

    def stop(self) -> None:
        self._stopped = True
        stop_recorded(self.layout)
        if self._child is not None:
            try:
                self._child.wait(1)
            except subprocess.TimeoutExpired:
                pass
            self._child = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None


def _start_time_of(pid: int) -> int | None:
    for _ in range(50):  # the child exists at once; /proc shows it as soon as fork returned
        started = start_time(pid)
        if started is not None:
            return started
        time.sleep(0.01)
    return None
