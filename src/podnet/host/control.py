"""The supervisor's control socket: one JSON request per connection, one JSON reply.

The socket lives in the cluster's state directory (mode 0700, owned by root), so only root
can talk to a cluster. Replies are {"ok": true, ...} or {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from podnet.controlplane import Cluster
from podnet.controlplane.snapshot import cluster_from_objects
from podnet.errors import PodnetError
from podnet.host.layout import STATE_ROOT, ClusterLayout

MAX_MESSAGE = 64 * 1024 * 1024


class NotRunning(PodnetError):
    pass


def send(path: Path, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            _connect(conn, path, timeout)
        except (FileNotFoundError, ConnectionRefusedError):
            raise NotRunning(f"no supervisor answers at {path}") from None
        except PermissionError:
            raise PodnetError(f"{path}: permission denied (only root can talk to a podnet cluster)") from None
        chunks = []
        try:
            conn.sendall(json.dumps(request).encode() + b"\n")
            conn.shutdown(socket.SHUT_WR)
            while True:
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            chunks = []
        if not chunks:  # it always answers: the supervisor died (or stopped) with the request in hand
            raise NotRunning(f"the supervisor at {path} went away before answering {request.get('op')}")
    reply = json.loads(b"".join(chunks))
    if not reply.get("ok"):
        raise PodnetError(reply.get("error") or f"the supervisor gave no answer to {request.get('op')}")
    return reply


def _connect(conn: socket.socket, path: Path, timeout: float) -> None:
    """connect(), waiting while the supervisor's accept queue is full (a UNIX socket with a
    timeout answers EAGAIN at once then, where a TCP one would wait)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.connect(str(path))
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the supervisor at {path} accepted no connection within {timeout:g}s") from None
            time.sleep(0.01)


def running_clusters() -> list[str]:
    """Clusters whose supervisor answers."""
    names = []
    if STATE_ROOT.is_dir():
        for sock in sorted(STATE_ROOT.glob("*/supervisor.sock")):
            try:
                send(sock, {"op": "ping"}, timeout=2.0)
                names.append(sock.parent.name)
            except (PodnetError, OSError, ValueError):
                continue
    return names


def pick_cluster(name: str | None) -> ClusterLayout:
    """--name, else the one running cluster, else the cluster named podnet."""
    if name:
        return ClusterLayout(name)
    running = running_clusters()
    if len(running) == 1:
        return ClusterLayout(running[0])
    if "podnet" in running or not running:
        return ClusterLayout("podnet")
    raise PodnetError(f"several clusters are running ({', '.join(running)}): say which with --name")


def not_running(layout: ClusterLayout) -> str:
    """Why a command found no supervisor to talk to, and what to do about it: a state directory
    without an answering supervisor is a cluster whose supervisor died (its pods run on)."""
    if layout.state_dir.is_dir():
        flag = "" if layout.cluster == "podnet" else f" --name {layout.cluster}"
        return (f"the supervisor of cluster {layout.cluster} is not running (its pods still run): restart it "
                f"with `sudo podnet up{flag}`, or remove the cluster with `sudo podnet down{flag}`")
    return f"no running cluster named {layout.cluster} (start one with `podnet up`, or pass -f FILE to compute offline)"


def request(layout: ClusterLayout, op: str, **fields: Any) -> dict[str, Any]:
    try:
        return send(layout.socket_path, {"op": op, **fields})
    except NotRunning:
        raise NotRunning(not_running(layout)) from None


class LiveCluster:
    """The running cluster as its supervisor holds it, for the servers in pods that follow it
    (the cluster DNS, the ingress controller) as CoreDNS and ingress-nginx watch the API
    server, and for `podnet get -w` and `podnet wait`: `wait` is a long poll on the
    generation (the supervisor answers the moment it moves), `poll` a cheap look at it; the
    objects are fetched only when it moved, or when asked (`read`)."""

    def __init__(self, socket_path: str | Path):
        self.path = Path(socket_path)
        self.generation = -1

    def poll(self) -> Cluster | None:
        """The cluster if it changed since the last look, else None (blocking: run it off an
        event loop)."""
        return self._fetch(send(self.path, {"op": "generation"}, timeout=10)["generation"])

    def wait(self, timeout: float) -> Cluster | None:
        """The cluster as soon as it changes after the last look, or None if it did not within
        `timeout` seconds (blocking: run it off an event loop)."""
        reply = send(self.path, {"op": "watch", "after": self.generation, "timeout": timeout}, timeout=timeout + 10)
        return self._fetch(reply["generation"])

    def read(self) -> Cluster:
        """The cluster now, whether or not its generation moved: kubelet's word laid over
        running pods (a restart, an exit) is served with the objects but moves no generation.
        Without the policies' drop counters: an `nft list` per node, which no follower needs."""
        reply = send(self.path, {"op": "objects", "counters": False}, timeout=10)
        self.generation = reply.get("generation", self.generation)
        return cluster_from_objects(reply["items"], reply["config"])

    def _fetch(self, generation: int) -> Cluster | None:
        if generation == self.generation:
            return None
        return self.read()
