"""The supervisor's side of the control socket (the client's is podnet.host.control).

One JSON request per connection, one JSON reply: {"ok": true, ...} or {"ok": false,
"error": "..."}. Ops: ping, status, objects, changes, inputs and deletePods (the API server's),
generation, watch, exec, logs, logFile and podNetns (the API server's streams), apply, delete,
down, events (the event store, from a resourceVersion on), event (a controller posts one) and
restartNode (a node reboot, `podnet node restart`).
`watch` is a long poll, as a Kubernetes watch is for its clients: its connection stays open
(in its own thread) until the generation moves from the one the watcher holds or its timeout
ends, so the servers that follow the cluster react within one change. `handle` maps a request
to the supervisor's answer; `serving` runs the socket server in a thread for as long as its
block lasts. The socket is made with umask 077,
so only its owner, root, can talk to a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from podnet.errors import PodnetError
from podnet.host.control import MAX_MESSAGE

log = logging.getLogger("podnet.supervisor")

WATCH_TIMEOUT = 30.0  # the longest a `watch` waits for a change before it answers anyway
Handler = Callable[[dict[str, Any]], dict[str, Any]]


def handle(supervisor, message: dict[str, Any]) -> dict[str, Any]:
    """The answer to one request (podnet.linux.supervisor.core.Supervisor does the work)."""
    op = message.get("op")
    if op == "ping":
        return {"cluster": supervisor.layout.cluster, "pid": os.getpid(), "adopted": len(supervisor.adopted)}
    if op == "status":
        return supervisor.status()
    if op == "objects":  # "counters": false leaves out the NetworkPolicy drop counters (read from each node)
        # one consistent reading: the objects, their generation and what each node's kernel was
        # given of them (the live `trace` compares the three), so no change comes in between
        with supervisor.lock:
            return {"items": supervisor.objects(counters=message.get("counters", True)), "config": supervisor.config.to_dict(),
                    "generation": supervisor.generation, "nodes": supervisor.sync_status()}
    if op == "changes":  # the API server's watch cache: what changed after resourceVersion `since`
        return supervisor.changes(int(message.get("since") or 0))
    if op == "inputs":  # the objects as applied, by key (the API server patches and updates them)
        return {"items": supervisor.inputs_of(message.get("keys"))}
    if op == "generation":  # cheap: where the cluster state is
        return {"generation": supervisor.generation}
    if op == "watch":  # a long poll, for watchers such as the cluster DNS and the ingress controller
        after, timeout = int(message.get("after", -1)), float(message.get("timeout", WATCH_TIMEOUT))
        return {"generation": supervisor.wait_for_generation(after, min(max(timeout, 0.0), WATCH_TIMEOUT))}
    if op == "exec":
        return {"argv": supervisor.exec_argv(message["target"], message.get("container"))}
    if op == "logs":
        return {"text": supervisor.logs(message["target"], message.get("container"))}
    if op == "logFile":  # the API server follows the file itself (`kubectl logs -f`, attach)
        return supervisor.log_file(message["target"], message.get("container"))
    if op == "podNetns":  # the API server's port-forward connects inside it
        return {"netns": supervisor.pod_netns(message["target"])}
    if op in ("apply", "delete"):
        # "files": {name: text} as `podnet apply -f` read them; "documents": one List text
        request = message["files"] if "files" in message else message["documents"]
        grace = message.get("gracePeriod")  # a delete's --grace-period (--now: 1, --force: 0)
        return supervisor.change(request, delete=op == "delete", grace_period=None if grace is None else int(grace))
    if op == "deletePods":  # pods no input holds, deleted by name: their controllers replace them
        grace = message.get("gracePeriod")
        return supervisor.delete_pods(list(message.get("refs") or []), None if grace is None else int(grace))
    if op == "meshStats":  # `podnet mesh stat`: the proxies' counters over a window
        return supervisor.mesh_stats(float(message.get("window") or 60))
    if op == "events":  # `podnet get events`: those changed after resourceVersion `since`
        since = int(message.get("since") or 0)
        if message.get("wait"):  # `-w`: a long poll until one changes (or the wait ends)
            supervisor.events.wait(since, min(max(float(message["wait"]), 0.0), WATCH_TIMEOUT))
        return {"items": supervisor.events.list(since), "resourceVersion": supervisor.events.version}
    if op == "event":  # a controller in a pod reports (the ingress controller's Sync and Warnings)
        return {"event": supervisor.post_event(message)}
    if op == "restartNode":  # `podnet node restart NODE`: its pods' processes killed and started again
        return supervisor.restart_node(str(message.get("node") or ""))
    if op == "down":
        supervisor.stopping.set()
        supervisor.stop_watchers()
        return {"stopping": True}
    raise PodnetError(f"unknown request {op!r}")


def reply(handler: Handler, request: bytes) -> bytes:
    """A request's bytes to the reply's: a PodnetError is the client's one-line error; any
    other exception too, logged, so one bad request never stops the server."""
    try:
        answer = {"ok": True, **handler(json.loads(request or b"{}"))}
    except PodnetError as exc:
        answer = {"ok": False, "error": str(exc)}
    except Exception as exc:
        log.exception("request failed")
        answer = {"ok": False, "error": f"supervisor error: {type(exc).__name__}: {exc}"}
    return json.dumps(answer).encode()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # connections waiting to be accepted: the API server's long polls, the cluster DNS's and the
    # ingress controller's watches and a test's parallel `podnet exec`s arrive together (5, the
    # default, refused a connect with EAGAIN under load)
    request_queue_size = 256


@contextmanager
def serving(path: Path, handler: Handler) -> Iterator[None]:
    """Answer requests on the UNIX socket `path` (replacing a stale one) until the block ends."""

    class Connection(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(reply(handler, self.rfile.read(MAX_MESSAGE)))

    path.unlink(missing_ok=True)
    old_umask = os.umask(0o077)
    try:
        server = _Server(str(path), Connection)
    finally:
        os.umask(old_umask)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
