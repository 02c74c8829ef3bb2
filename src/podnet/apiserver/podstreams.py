"""pods/exec, pods/attach, pods/portforward and pods/log on a running cluster: the supervisor
says where (the nsenter argv into the pod and container, the pod's network namespace, the
container's log file and whether it runs), streams.py carries the protocols.

kubelet and the container runtime do this part in Kubernetes; here the API server does it
directly, so the supervisor's lock is held only for the look-up, never for a stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from podnet.apiserver import streams
from podnet.apiserver.errors import ApiError, not_found
from podnet.apiserver.paths import RequestInfo
from podnet.apiserver.registry import Resource
from podnet.errors import PodnetError


def register(server) -> None:
    server.subresources[("pods", "exec")] = exec_
    server.subresources[("pods", "attach")] = attach
    server.subresources[("pods", "portforward")] = portforward
    server.subresources[("pods", "log")] = log


def _target(server, info: RequestInfo, resource: Resource) -> str:
    if server.objects.get(("Pod", info.namespace, info.name)) is None:
        raise not_found(resource.plural, resource.group, info.name)
    return f"{info.namespace}/{info.name}"


async def _ask(server, op: str, fields: dict[str, Any]) -> dict[str, Any]:
    try:
        return await server.supervisor.call(op, fields)
    except PodnetError as exc:  # not running, no such container …: kubelet's words
        raise ApiError(400, str(exc), "BadRequest") from None


async def exec_(server, request: web.Request, info: RequestInfo, resource: Resource) -> web.StreamResponse:
    target = _target(server, info, resource)
    try:
        options = streams.exec_options(request)
    except streams.StreamRequestError as exc:
        return exc.response()
    argv = (await _ask(server, "exec", {"target": target, "container": options.container or None}))["argv"]
    return await streams.exec_websocket(request, [*argv, *options.command], stdin=options.stdin, tty=options.tty,
                                        stdout=options.stdout, stderr=options.stderr)


def _alive(server, target: str, container: str | None):
    async def alive() -> bool:
        try:
            return bool((await server.supervisor.call("logFile", {"target": target, "container": container}))["running"])
        except PodnetError:
            return False
    return alive


async def attach(server, request: web.Request, info: RequestInfo, resource: Resource) -> web.StreamResponse:
    target = _target(server, info, resource)
    try:
        options = streams.exec_options(request, attach=True)
    except streams.StreamRequestError as exc:
        return exc.response()
    container = options.container or None
    found = await _ask(server, "logFile", {"target": target, "container": container})
    return await streams.attach_websocket(request, Path(found["path"]), alive=_alive(server, target, container),
                                          stdin=options.stdin, tty=options.tty, stdout=options.stdout,
                                          stderr=options.stderr)


async def portforward(server, request: web.Request, info: RequestInfo, resource: Resource) -> web.StreamResponse:
    target = _target(server, info, resource)
    netns = (await _ask(server, "podNetns", {"target": target}))["netns"]

    async def connect(port: int):
        return await streams.connect_in_netns(netns, port)
    return await streams.portforward_websocket(request, connect, pod=info.name)


async def log(server, request: web.Request, info: RequestInfo, resource: Resource) -> web.StreamResponse:
    target = _target(server, info, resource)
    try:
        options = streams.log_options(request)
    except streams.StreamRequestError as exc:
        return exc.response()
    container = options.container or None
    found = await _ask(server, "logFile", {"target": target, "container": container})
    try:
        start, end = streams.log_span(found["starts"], found["restarts"], options.previous, pod=info.name,
                                      container=options.container or "")
    except streams.StreamRequestError as exc:
        return exc.response()
    return await streams.log_response(request, Path(found["path"]), follow=options.follow,
                                      tail_lines=options.tail_lines, since_seconds=options.since_seconds,
                                      since_time=options.since_time, timestamps=options.timestamps,
                                      limit_bytes=options.limit_bytes, alive=_alive(server, target, container),
                                      start=start, end=end)
