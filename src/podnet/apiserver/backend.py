"""The API server's side of the supervisor's control socket: the calls (each in a thread: the
socket is blocking), and the two loops that keep the watch caches current — objects by the
cluster's generation (a long poll that answers at the next change, then only what changed
since the cache's resourceVersion), events by the event store's version.

After a write the handler calls `sync()`, so the answer (and every watcher) already has what
the write made, as kube-apiserver answers a create with the stored object.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

from podnet.apiserver.cache import WatchCache
from podnet.host.control import NotRunning, send

log = logging.getLogger("podnet.apiserver")
# the longest one long poll is held by the supervisor: the generation moves with every computed
# change at once; kubelet's status of a running pod (a restart, an exit) moves none, and is
# fetched at the end of each wait (core.Supervisor.changes compares it)
WATCH_WAIT = 1.0
RETRY = 0.5  # seconds between attempts while the supervisor does not answer (it is being restarted)


class Supervisor:
    def __init__(self, socket_path: Path):
        self.path = socket_path

    async def call(self, op: str, fields: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        """One request, in a daemon thread of its own: a long poll held by the supervisor must
        not keep the process from ending (asyncio.to_thread's pool is waited for at exit)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if not answer.done():
                answer.set_exception(error) if error is not None else answer.set_result(result)

        def work() -> None:
            try:
                result, error = send(self.path, {"op": op, **(fields or {})}, timeout), None
            except BaseException as exc:  # handed to the caller
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the loop is gone: nobody waits any more
                pass

        threading.Thread(target=work, name=f"supervisor:{op}", daemon=True).start()
        return await answer


class Follower:
    """Keeps `objects` and `events` (WatchCaches) as the supervisor holds them."""

    def __init__(self, supervisor: Supervisor, objects: WatchCache, events: WatchCache):
        self.supervisor = supervisor
        self.objects, self.events = objects, events
        self.generation = -1
        self._lock = asyncio.Lock()
        self.stopping = asyncio.Event()

    async def sync(self) -> None:
        """Bring the object cache up to the supervisor's state now."""
        async with self._lock:
            since = self.objects.resource_version
            reply = await self.supervisor.call("changes", {"since": since})
            items = reply["items"]
            if reply["full"]:
                self.objects.replace(items, int(reply["resourceVersion"]))
            else:
                deleted = [(int(v), (kind, namespace, name)) for v, kind, namespace, name in reply["deleted"]]
                self.objects.update(items, deleted, int(reply["resourceVersion"]))
            self.generation = int(reply["generation"])

    async def sync_events(self, wait: float = 0.0) -> None:
        since = self.events.resource_version
        reply = await self.supervisor.call("events", {"since": since, "wait": wait}, timeout=wait + 30)
        self.events.update(reply["items"], [], int(reply["resourceVersion"]))

    async def _object_round(self) -> None:
        await self.sync()
        await self.supervisor.call("watch", {"after": self.generation, "timeout": WATCH_WAIT}, timeout=WATCH_WAIT + 30)

    async def follow_objects(self) -> None:
        await self._keep_following(self._object_round, "the cluster")

    async def follow_events(self) -> None:
        await self._keep_following(lambda: self.sync_events(wait=WATCH_WAIT), "the events")

    async def _keep_following(self, round_, what: str) -> None:
        """round_() again and again until stopped; a supervisor that does not answer (it is being
        restarted) or a round that fails is tried again after RETRY seconds."""
        while not self.stopping.is_set():
            try:
                await round_()
            except (NotRunning, OSError, ValueError) as exc:
                log.warning("the supervisor does not answer (%s): retrying", exc)
                await asyncio.sleep(RETRY)
            except Exception:
                log.exception("following %s failed: retrying", what)
                await asyncio.sleep(RETRY)
