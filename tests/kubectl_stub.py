"""A minimal Kubernetes API over plain HTTP for driving the real kubectl in tests of the API
server's parts (OpenAPI documents, patching) without a cluster: legacy discovery of the kinds
podnet serves, /openapi/v2 and /v3 from podnet.apiserver.openapi, and get / create / patch of
objects kept in a dict, patched with podnet.apiserver.patch. Every request is recorded."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import yaml
from aiohttp import web

from podnet.api.kinds import KINDS, KindInfo
from podnet.apiserver import openapi
from podnet.apiserver.patch import APPLY_PATCH, PatchError, patch_request, record_update

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Stub:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (plural, namespace, name)
    requests: list[Seen] = field(default_factory=list)
    # what the server adds to every object it stores (defaults, status), as the API server would
    server_side: Callable[[dict[str, Any]], None] | None = None
    port: int = 0
    version: int = 1

    def seen(self, method: str, contains: str = "") -> list[Seen]:
        return [r for r in self.requests if r.method == method and contains in r.path]


def _status(code: int, reason: str, message: str, details: dict | None = None) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=code)


def _group_version(info: KindInfo) -> tuple[str, str]:
    group, _, version = info.api_version.rpartition("/")
    return group, version


def _resources(infos: list[KindInfo]) -> list[dict[str, Any]]:
    return [
        {
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            **({"shortNames": list(info.short_names)} if info.short_names else {}),
        }
        for info in infos
    ]


def build_app(stub: Stub) -> web.Application:
    by_group_version: dict[tuple[str, str], list[KindInfo]] = {}
    for info in KINDS:
        by_group_version.setdefault(_group_version(info), []).append(info)
    by_plural = {(_group_version(info), info.plural): info for info in KINDS}

    @web.middleware
    async def record(request: web.Request, handler):
        body = await request.read()
        stub.requests.append(
            Seen(request.method, request.path, dict(request.query), request.headers.get("Content-Type", ""), body, dict(request.headers))
        )
        return await handler(request)

    app = web.Application(middlewares=[record])

    async def version(_: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "37", "gitVersion": "v1.37.0", "platform": "linux/amd64"})

    async def api(_: web.Request) -> web.Response:
        return web.json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})

    async def apis(_: web.Request) -> web.Response:
        groups = sorted({g for g, _ in by_group_version if g})
        return web.json_response(
            {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for (gg, v) in by_group_version if gg == g],
                        "preferredVersion": next({"groupVersion": f"{g}/{v}", "version": v} for (gg, v) in by_group_version if gg == g),
                    }
                    for g in groups
                ],
            }
        )

    async def resource_list(request: web.Request) -> web.Response:
        group = request.match_info.get("group", "")
        key = (group, request.match_info["version"])
        if key not in by_group_version:
            return _status(404, "NotFound", "the server could not find the requested resource")
        group_version = f"{group}/{key[1]}" if group else key[1]
        return web.json_response({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": _resources(by_group_version[key])})

    async def openapi_v3_index(request: web.Request) -> web.Response:
        return openapi.respond(request, openapi.rendered_v3_index())

    async def openapi_v3(request: web.Request) -> web.Response:
        path = request.match_info["path"]
        rendered = openapi.rendered_v3(path)
        if rendered is None:
            return _status(404, "NotFound", "the server could not find the requested resource")
        return openapi.respond(request, rendered, current_url=f"/openapi/v3/{path}?hash={rendered.hash}")

    async def openapi_v2(request: web.Request) -> web.Response:
        return openapi.respond(request, openapi.rendered_v2(), protobuf=openapi.rendered_v2_protobuf())

    def target(request: web.Request) -> tuple[KindInfo | None, str, str]:
        group = request.match_info.get("group", "")
        info = by_plural.get(((group, request.match_info["version"]), request.match_info["plural"]))
        return info, request.match_info.get("namespace", ""), request.match_info.get("name", "")

    def stored(info: KindInfo, body: dict[str, Any], namespace: str, before: dict | None, manager: str) -> dict[str, Any]:
        if stub.server_side is not None:
            stub.server_side(body)
        body = record_update(before, body, manager, info.kind) if manager else body
        metadata = body.setdefault("metadata", {})
        if info.namespaced:
            metadata["namespace"] = namespace
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        stub.version += 1
        metadata["resourceVersion"] = str(stub.version)
        stub.objects[(info.plural, namespace, metadata["name"])] = body
        return body

    async def get_object(request: web.Request) -> web.Response:
        info, namespace, name = target(request)
        found = stub.objects.get((info.plural, namespace, name)) if info else None
        if found is None:
            return _status(404, "NotFound", f'{info.plural if info else "resource"} "{name}" not found',
                           {"name": name, "kind": info.plural if info else ""})
        return web.json_response(found)

    async def create(request: web.Request) -> web.Response:
        info, namespace, _ = target(request)
        body = json.loads(await request.read())
        if (info.plural, namespace, body["metadata"]["name"]) in stub.objects:
            return _status(409, "AlreadyExists", "already exists")
        manager = request.query.get("fieldManager", "unknown")
        return web.json_response(stored(info, body, namespace, None, manager), status=201)

    async def patch(request: web.Request) -> web.Response:
        info, namespace, name = target(request)
        live = stub.objects.get((info.plural, namespace, name))
        media = request.headers.get("Content-Type", "")
        if live is None and not media.startswith(APPLY_PATCH):
            return _status(404, "NotFound", f'{info.plural} "{name}" not found')
        manager = request.query.get("fieldManager", "")
        try:
            result = patch_request(live, media, await request.read(), kind=info.kind, manager=manager,
                                   force=request.query.get("force") == "true")
        except PatchError as error:
            return web.json_response(error.status(), status=error.code)
        if not media.startswith(APPLY_PATCH):
            result = record_update(live, result, manager or "unknown", info.kind)
        return web.json_response(stored(info, result, namespace, None, ""))

    app.router.add_get("/version", version)
    app.router.add_get("/api", api)
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/{version}", resource_list)
    app.router.add_get("/apis/{group}/{version}", resource_list)
    app.router.add_get("/openapi/v3", openapi_v3_index)
    app.router.add_get("/openapi/v3/{path:.+}", openapi_v3)
    app.router.add_get("/openapi/v2", openapi_v2)
    for root in ("/api/{version}", "/apis/{group}/{version}"):
        for scope in ("/namespaces/{namespace}", ""):
            app.router.add_get(f"{root}{scope}/{{plural}}/{{name}}", get_object)
            app.router.add_patch(f"{root}{scope}/{{plural}}/{{name}}", patch)
            app.router.add_post(f"{root}{scope}/{{plural}}", create)
    return app


class RunningStub:
    """The stub served on 127.0.0.1 from a thread of its own, with a kubeconfig pointing at it."""

    def __init__(self, directory: Path):
        self.stub = Stub()
        self.directory = directory
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(build_app(self.stub), access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.stub.port = self._runner.addresses[0][1]
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def __enter__(self) -> RunningStub:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("the stub API server did not start")
        self.kubeconfig = self.directory / "kubeconfig"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{self.stub.port}"}}],
                    "users": [{"name": "stub", "user": {"token": "unused"}}],
                    "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": "default"}}],
                    "current-context": "stub",
                }
            )
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.directory), "KUBECONFIG": str(self.kubeconfig),
               "KUBECACHEDIR": str(self.directory / "cache")}
        result = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result
