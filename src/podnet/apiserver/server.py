"""The HTTP side: routes, authentication and authorization on every request, and the resource
verbs (get, list, watch, create, update, patch, delete, deletecollection) on the watch caches
and the supervisor.

Every request is authenticated (authn.py), described as kube-apiserver's RequestInfo describes
it (paths.py), authorized by RBAC (rbac.py), then answered; failures are metav1.Status bodies
(errors.py). Reads come from the caches (cache.py) — a list of 10,000 pods is answered without
the supervisor — as JSON or as the Table kubectl prints (tables.py). A watch is a chunked
response of newline-separated {"type", "object"} events, kept open until its timeout, the
client going, or the cluster going down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import yaml
from aiohttp import web

from podnet.api import labels
from podnet.api.problems import Problem
from podnet.apiserver import discovery, objects, openapi, patch, protobuf, proxy, rbac, selection, tables
from podnet.apiserver.authn import from_certificate, from_token
from podnet.apiserver.backend import Follower, Supervisor
from podnet.apiserver.cache import WatchCache, key_of
from podnet.apiserver.errors import ApiError, already_exists, conflict, not_found, qualified, success
from podnet.apiserver.paths import RequestInfo, request_info
from podnet.apiserver.rbac import SERVICE_ACCOUNT_PREFIX, Attributes, Authorizer, User, access_review_status, forbidden_message
from podnet.apiserver.registry import BY_PATH, Resource
from podnet.errors import PodnetError
from podnet.linux.supervisor import reconcile
from podnet.linux.collector import Collector
from podnet.pki.authority import ClusterCredentials
from podnet.pki.tokens import issue_token

log = logging.getLogger("podnet.apiserver")
JSON = "application/json"
BOOKMARK_EVERY = 30.0  # seconds between bookmarks on a watch that asked for them
RBAC_KINDS = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})
BACKLOG = 1024
USER = web.RequestKey("user", User)  # who the request is from (after impersonation)
TOKEN_AUDIENCES = ("https://kubernetes.default.svc.cluster.local", "kubernetes.default.svc", "api")


def _dump(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def respond(body: Any, status: int = 200, content_type: str = JSON) -> web.Response:
    return web.Response(body=_dump(body), status=status, headers={"Content-Type": content_type})


class ApiServer:
    def __init__(self, supervisor: Supervisor, public_key: bytes, server_address: str, cluster: str):
        self.supervisor = supervisor
        self.public_key = public_key
        self.server_address = server_address  # what /api advertises (host:port)
        self.cluster = cluster
        self.objects, self.events = WatchCache(), WatchCache()
        self.follower = Follower(supervisor, self.objects, self.events)
        self.authorizer = Authorizer([])
        self.objects.listeners.append(self._rbac_changed)
        self.stopping = asyncio.Event()
        self.serving = asyncio.Event()
        self._started = time.time()
        self.signing_key: bytes | None = None  # the ServiceAccount key, for serviceaccounts/token
        self.proxy_netns: str | None = None  # the network namespace relays into the cluster start from
        # subresource handlers another module registers: (resource plural, subresource) -> handler
        self.subresources: dict[tuple[str, str], Callable] = {}

    # -- the application ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    def _rbac_changed(self, changes) -> None:
        if any(key_of(c.body)[0] in RBAC_KINDS for c in changes):
            self.authorizer = Authorizer([body for kind in RBAC_KINDS for body in self.objects.list(kind)])

    @web.middleware
    async def _middleware(self, request: web.Request, handler):
        try:
            return await handler(request)
        except ApiError as exc:
            return respond(exc.status(), exc.code)
        except web.HTTPException:
            raise
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path_qs)
            return respond(ApiError(500, f"podnet's API server failed: {type(exc).__name__}: {exc}").status(), 500)

    def authenticate(self, request: web.Request) -> User:
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport is not None else None
        user = from_token(request.headers.get("Authorization"), self.public_key, TOKEN_AUDIENCES, self._token_holds) \
            or from_certificate(peer)
        if user is None:
            raise ApiError(401, "Unauthorized")
        return user

    def _token_holds(self, identity) -> bool:
        """A token is good while its ServiceAccount exists and, if bound to a pod, that very pod."""
        if self.objects.get(("ServiceAccount", identity.namespace, identity.service_account)) is None:
            return False
        if identity.pod_name:
            pod = self.objects.get(("Pod", identity.namespace, identity.pod_name))
            if pod is None or (identity.pod_uid and (pod.get("metadata") or {}).get("uid") != identity.pod_uid):
                return False
        return True

    def impersonated(self, request: web.Request, user: User) -> User:
        """Impersonate-User / Impersonate-Group (kubectl --as, --as-group): allowed when RBAC lets
        `user` impersonate them (verb impersonate on users, groups or serviceaccounts), as
        kube-apiserver's impersonation filter checks."""
        name = request.headers.get("Impersonate-User")
        groups = tuple(request.headers.getall("Impersonate-Group", []))
        if not name:
            if groups:
                raise ApiError(500, "requested impersonation of groups without a user")
            return user
        if name.startswith(SERVICE_ACCOUNT_PREFIX) and name.count(":") == 3:
            namespace, account = name[len(SERVICE_ACCOUNT_PREFIX):].split(":")
            wanted = [Attributes("impersonate", "", "serviceaccounts", "", namespace, account)]
            implied = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")
        else:
            wanted = [Attributes("impersonate", "", "users", "", "", name)]
            implied = ()
        wanted += [Attributes("impersonate", "", "groups", "", "", group) for group in groups]
        for attributes in wanted:
            allowed, _ = self.authorizer.authorize(user, attributes)
            if not allowed:
                raise ApiError(403, forbidden_message(user, attributes))
        chosen = tuple(dict.fromkeys(groups + implied + ("system:authenticated",)))
        return User(name, chosen)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        user = self.impersonated(request, self.authenticate(request))
        info = request_info(request.method, request.path, dict(request.query))
        attributes = Attributes(info.verb, info.group, info.resource, info.subresource, info.namespace, info.name,
                                info.path, info.resource_request)
        allowed, reason = self.authorizer.authorize(user, attributes)
        if not allowed:
            raise ApiError(403, forbidden_message(user, attributes, reason), details=_forbidden_details(info))
        request[USER] = user
        if not info.resource_request:
            return await self._non_resource(request, info)
        await self.objects.synced.wait()
        resource = BY_PATH.get((info.group, info.version, info.resource))
        if resource is None:
            raise ApiError(404, "the server could not find the requested resource", details={
                "group": info.group, "kind": info.resource})
        if info.subresource:
            return await self._subresource(request, info, resource)
        return await self._resource(request, info, resource)

    # -- non-resource paths ---------------------------------------------------------------------------

    async def _non_resource(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        accept = request.headers.get("Accept", "")
        if path == "/version":
            return respond(discovery.version())
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/api":
            if discovery.wants_aggregated(accept):
                return respond(discovery.aggregated(core=True), content_type=discovery.AGGREGATED_V2)
            return respond(discovery.api_versions(self.server_address))
        if path == "/apis":
            if discovery.wants_aggregated(accept):
                return respond(discovery.aggregated(core=False), content_type=discovery.AGGREGATED_V2)
            return respond(discovery.api_group_list())
        if path == "/openapi/v2":
            return openapi.respond(request, openapi.rendered_v2())
        if path == "/openapi/v3":
            return openapi.respond(request, openapi.rendered_v3_index())
        if path.startswith("/openapi/v3/"):
            rendered = openapi.rendered_v3(path[len("/openapi/v3/"):])
            if rendered is None:
                raise ApiError(404, "the server could not find the requested resource")
            return openapi.respond(request, rendered,
                                   current_url=f"{path}?hash={rendered.hash}")
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            found = discovery.resource_list("", parts[1])
        elif parts[0] == "apis" and len(parts) == 2:
            found = discovery.api_group(parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            found = discovery.resource_list(parts[1], parts[2])
        else:
            found = None
        if found is None:
            raise ApiError(404, "the server could not find the requested resource")
        return respond(found)

    # -- resources ----------------------------------------------------------------------------------

    def _cache_for(self, resource: Resource) -> WatchCache:
        return self.events if resource.kind == "Event" else self.objects

    async def _resource(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.StreamResponse:
        if info.verb not in resource.verbs:
            raise ApiError(405, f"the server does not allow this method on the requested resource "
                                f"({info.verb} {resource.plural})")
        if resource.namespaced and info.name and not info.namespace and resource.kind != "Namespace":
            raise ApiError(404, "the server could not find the requested resource")
        if not resource.stored:
            return await self._review(request, info, resource)
        verb = info.verb
        if verb == "get":
            return self._get(request, info, resource)
        if verb == "list":
            return self._list(request, info, resource)
        if verb == "watch":
            return await self._watch(request, info, resource)
        if resource.kind == "Event":
            raise ApiError(405, "podnet's events are recorded by its own components: they cannot be written")
        if verb == "create":
            return await self._create(request, info, resource)
        if verb == "update":
            return await self._update(request, info, resource)
        if verb == "patch":
            return await self._patch(request, info, resource)
        if verb == "delete":
            return await self._delete(request, info, resource)
        if verb == "deletecollection":
            return await self._delete_collection(request, info, resource)
        raise ApiError(405, f"{verb} is not supported")

    def _key(self, info: RequestInfo, resource: Resource, name: str | None = None) -> tuple[str, str, str]:
        namespace = info.namespace if resource.namespaced else ""
        return (resource.kind, namespace, name if name is not None else info.name)

    def _current(self, info: RequestInfo, resource: Resource) -> dict[str, Any]:
        body = self._cache_for(resource).get(self._key(info, resource))
        if body is None:
            raise not_found(resource.plural, resource.group, info.name)
        return body

    def _get(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        body = self._current(info, resource)
        accept = request.headers.get("Accept", "")
        if tables.wants_table(accept):
            cache = self._cache_for(resource)
            return respond(tables.table(resource.kind, [body], str(cache.resource_version),
                                        request.query.get("includeObject", "Metadata")))
        return respond(body)

    def _list(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        cache = self._cache_for(resource)
        selected = selection.predicate(resource.kind, resource.plural, request.query)
        namespace = info.namespace if resource.namespaced else ""
        items = cache.list(resource.kind, namespace, selected)
        version = cache.resource_version
        chosen, token, remaining = selection.page(items, request.query, version)
        metadata: dict[str, Any] = {"resourceVersion": str(version)}
        if token:
            metadata.update({"continue": token, "remainingItemCount": remaining})
        if tables.wants_table(request.headers.get("Accept", "")):
            return respond(tables.table(resource.kind, chosen, str(version), request.query.get("includeObject", "Metadata"),
                                        extra_metadata={k: v for k, v in metadata.items() if k != "resourceVersion"}))
        return web.Response(body=cache.list_bytes({"kind": f"{resource.kind}List", "apiVersion": resource.group_version,
                                                   "metadata": metadata}, chosen), headers={"Content-Type": JSON})

    async def _watch(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.StreamResponse:
        cache = self._cache_for(resource)
        query = request.query
        selected = selection.predicate(resource.kind, resource.plural, query)
        name = info.name or selection.named_in(query.get("fieldSelector") or "")
        namespace = info.namespace if resource.namespaced else ""
        since_text = query.get("resourceVersion") or ""
        since = int(since_text) if since_text.isdigit() and since_text != "0" else None
        try:
            watcher = cache.watch(resource.kind, namespace, name, selected, since)
        except ApiError as exc:  # 410: as kube-apiserver, an ERROR event on an open watch (the client lists again)
            gone = web.StreamResponse(headers={"Content-Type": JSON})
            await gone.prepare(request)
            await gone.write(_dump({"type": "ERROR", "object": exc.status()}) + b"\n")
            await gone.write_eof()
            return gone
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        include = query.get("includeObject", "Metadata")
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds") or random.uniform(1800, 3600))
        response = web.StreamResponse(headers={"Content-Type": JSON, "Transfer-Encoding": "chunked",
                                               "Cache-Control": "no-cache, private"})
        await response.prepare(request)
        first = True

        def event(type_: str, body: dict[str, Any]) -> bytes:
            nonlocal first
            shown = body
            if as_table and type_ != "BOOKMARK":
                shown = tables.table(resource.kind, [body], str(cache.resource_version), include, with_definitions=first)
                first = False
            return _dump({"type": type_, "object": shown}) + b"\n"

        try:
            if since is None:  # "the most recent": the current objects first, as ADDED
                for body in cache.list(resource.kind, namespace, selected):
                    if not name or key_of(body)[2] == name:
                        await response.write(event("ADDED", body))
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + BOOKMARK_EVERY
            while not self.stopping.is_set():
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark if bookmarks else deadline) - now
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except asyncio.TimeoutError:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        await response.write(_dump({"type": "BOOKMARK", "object": {
                            "kind": resource.kind, "apiVersion": resource.group_version,
                            "metadata": {"resourceVersion": str(cache.resource_version)}}}) + b"\n")
                        next_bookmark = time.monotonic() + BOOKMARK_EVERY
                    continue
                if item is None:  # fell too far behind: the client watches again
                    break
                await response.write(event(*item))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            cache.forget(watcher)
        try:
            await response.write_eof()
        except (ConnectionResetError, RuntimeError):
            pass
        return response

    # -- writes -------------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        content_type = request.headers.get("Content-Type", JSON)
        try:
            if protobuf.MEDIA_TYPE in content_type:  # kubectl's typed clients (create, run, auth can-i, ...)
                return protobuf.decode(raw)
            if "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, f"the request body could not be decoded: {exc}") from None

    def _dry_run(self, request: web.Request) -> bool:
        return "All" in request.query.getall("dryRun", [])

    async def _send(self, op: str, bodies: list[dict[str, Any]], resource: Resource, name: str,
                    grace: int | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"documents": objects.documents(bodies)}
        if grace is not None:
            fields["gracePeriod"] = grace
        try:
            reply = await self.supervisor.call(op, fields)
        except PodnetError as exc:
            raise objects.admission_error(resource, name, str(exc)) from None
        await self.follower.sync()
        return reply

    async def _admit_only(self, body: dict[str, Any], resource: Resource, name: str) -> None:
        """dryRun=All: the same admission, nothing changed."""
        try:
            await asyncio.to_thread(_admit, objects.documents([body]))
        except PodnetError as exc:
            raise objects.admission_error(resource, name, str(exc)) from None

    async def _write(self, body: dict[str, Any], resource: Resource, request: web.Request, status: int) -> web.Response:
        name = body["metadata"]["name"]
        if self._dry_run(request):
            await self._admit_only(body, resource, name)
            return respond(body, status)
        reply = await self._send("apply", [body], resource, name)
        stored = self.objects.get((resource.kind, body["metadata"].get("namespace") or "", name))
        response = respond(stored if stored is not None else body, status)
        for warning in warnings_of(reply):  # kubectl prints each as "Warning: …"
            response.headers.add("Warning", f'299 - "{warning}"')
        return response

    async def _create(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        sent = await self._body(request)
        body = objects.as_input(resource, sent, info.namespace)
        name = body["metadata"]["name"]
        if self.objects.get((resource.kind, body["metadata"].get("namespace") or "", name)) is not None:
            raise already_exists(resource.plural, resource.group, name)
        body = patch.record_update(None, body, field_manager(request), resource.kind)
        return await self._write(body, resource, request, 201)

    async def _input_of(self, resource: Resource, key: tuple[str, str, str]) -> dict[str, Any] | None:
        reply = await self.supervisor.call("inputs", {"keys": [list(key)]})
        return reply["items"][0]

    def _computed(self, resource: Resource, current: dict[str, Any]) -> ApiError:
        owners = (current.get("metadata") or {}).get("ownerReferences") or []
        owner = f"{owners[0].get('kind')} {owners[0].get('name')}" if owners else "the cluster itself"
        name = (current.get("metadata") or {}).get("name")
        return ApiError(405, f'{qualified(resource.plural, resource.group)} "{name}" is computed by podnet from {owner}: '
                             f"change that object instead")

    async def _update(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        sent = await self._body(request)
        current = self._current(info, resource)
        if objects.stale(current, sent or {}):
            raise conflict(resource.plural, resource.group, info.name,
                           "the object has been modified; please apply your changes to the latest version and try again")
        original = await self._input_of(resource, self._key(info, resource))
        if original is None:
            raise self._computed(resource, current)
        body = objects.as_input(resource, sent, info.namespace, info.name)
        body = patch.record_update(original, body, field_manager(request), resource.kind)
        return await self._write(body, resource, request, 200)

    async def _patch(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        """A patch of the object as applied (its input), by Content-Type (patch.patch_request);
        an apply patch (server-side apply) may create it."""
        content_type = request.headers.get("Content-Type", "")
        applying = content_type.split(";")[0].strip() == patch.APPLY_PATCH
        raw = await request.read()
        key = self._key(info, resource)
        current = self._cache_for(resource).get(key)
        original = await self._input_of(resource, key) if current is not None else None
        if current is not None and original is None:
            raise self._computed(resource, current)
        if current is None and not applying:
            raise not_found(resource.plural, resource.group, info.name)
        if current is not None and not applying and objects.stale(current, _json_or_empty(raw)):
            raise conflict(resource.plural, resource.group, info.name,
                           "the object has been modified; please apply your changes to the latest version and try again")
        try:
            patched = patch.patch_request(original, content_type, raw, kind=resource.kind,
                                          manager=request.query.get("fieldManager") or ("" if applying else field_manager(request)),
                                          force=request.query.get("force") in ("true", "1"))
        except patch.PatchError as exc:
            raise ApiError(exc.code, exc.message, exc.reason, exc.details) from None
        body = objects.as_input(resource, patched, info.namespace, info.name)
        if not applying:
            body = patch.record_update(original, body, field_manager(request), resource.kind)
        return await self._write(body, resource, request, 201 if current is None else 200)

    def _grace(self, request: web.Request, options: Any) -> int | None:
        grace = request.query.get("gracePeriodSeconds")
        if grace is None and isinstance(options, dict):
            grace = options.get("gracePeriodSeconds")
        return None if grace is None else int(grace)

    async def _delete(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        options = await self._body(request)
        current = self._current(info, resource)
        key = self._key(info, resource)
        grace = self._grace(request, options)
        given = await self._input_of(resource, key)
        if given is None:
            if resource.kind != "Pod" or not (current.get("metadata") or {}).get("ownerReferences"):
                raise self._computed(resource, current)
            if not self._dry_run(request):  # a controller's pod: it ends, its controller replaces it
                try:
                    await self.supervisor.call("deletePods", {"refs": [f"{key[1]}/{key[2]}"], "gracePeriod": grace})
                except PodnetError as exc:
                    raise ApiError(409, str(exc), "Conflict") from None
                await self.follower.sync()
            return respond(self.objects.get(key) or current)
        if self._dry_run(request):
            return respond(current)
        # the object as applied: a delete is admitted as `podnet delete -f` is, and a bare name
        # is no valid object of every kind (a Pod needs its containers)
        await self._send("delete", [given], resource, info.name, grace)
        remaining = self.objects.get(key)  # a pod terminating (its grace period) is still there
        if remaining is not None:
            return respond(remaining)
        return respond(success({"name": info.name, **({"group": resource.group} if resource.group else {}),
                                "kind": resource.plural, "uid": (current.get("metadata") or {}).get("uid")}))

    async def _delete_collection(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        options = await self._body(request)
        selected = selection.predicate(resource.kind, resource.plural, request.query)
        namespace = info.namespace if resource.namespaced else ""
        chosen = self.objects.list(resource.kind, namespace, selected)
        keys = [list(key_of(body)) for body in chosen]
        inputs = (await self.supervisor.call("inputs", {"keys": keys}))["items"] if keys else []
        targets = [given for given in inputs if given is not None]  # as applied (_delete says why)
        if targets and not self._dry_run(request):
            await self._send("delete", targets, resource, "", self._grace(request, options))
        return respond({"kind": f"{resource.kind}List", "apiVersion": resource.group_version,
                        "metadata": {"resourceVersion": str(self.objects.resource_version)},
                        "items": [b for b, given in zip(chosen, inputs) if given is not None]})

    # -- reviews (created, answered, never stored) -----------------------------------------------------

    async def _review(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        sent = await self._body(request) or {}
        user: User = request[USER]
        spec = sent.get("spec") or {}
        if resource.kind in ("SelfSubjectAccessReview", "SubjectAccessReview", "LocalSubjectAccessReview"):
            problems = rbac.review_problems(spec, self_review=resource.kind == "SelfSubjectAccessReview")
            if resource.kind == "LocalSubjectAccessReview" and \
                    ((spec.get("resourceAttributes") or {}).get("namespace") or "") != info.namespace:
                problems.append(Problem(("spec", "resourceAttributes", "namespace"),
                                             "Invalid value: must match the namespace of the request"))
            if problems:
                raise ApiError(422, f'{resource.kind}.{resource.group} "" is invalid: '
                                    + ", ".join(str(p) for p in problems), "Invalid")
        if resource.kind == "SelfSubjectReview":
            status = {"userInfo": {"username": user.name, "groups": list(user.groups),
                                   **({"extra": {k: list(v) for k, v in user.extra}} if user.extra else {})}}
        elif resource.kind == "SelfSubjectAccessReview":
            status = access_review_status(self.authorizer, user, spec)
        elif resource.kind in ("SubjectAccessReview", "LocalSubjectAccessReview"):
            status = access_review_status(self.authorizer, rbac.user_from_spec(spec), spec)
        elif resource.kind == "SelfSubjectRulesReview":
            status = self.authorizer.rules_for(user, spec.get("namespace") or "")
        elif resource.kind == "TokenReview":
            try:
                reviewed = from_token(f"Bearer {spec.get('token') or ''}", self.public_key, TOKEN_AUDIENCES)
            except ApiError:
                reviewed = None
            status = {"authenticated": reviewed is not None, **({"user": {
                "username": reviewed.name, "groups": list(reviewed.groups)}} if reviewed else {})}
        else:
            raise ApiError(405, f"{resource.plural} cannot be created here")
        return respond({"kind": resource.kind, "apiVersion": resource.group_version,
                        "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}, 201)

    # -- subresources ---------------------------------------------------------------------------------

    async def _subresource(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.StreamResponse:
        if info.subresource not in resource.subresources:
            raise ApiError(404, "the server could not find the requested resource")
        handler = self.subresources.get((resource.plural, info.subresource)) or \
            self.subresources.get(("*", info.subresource))
        if info.subresource == "status" and request.method == "GET":
            return self._get(request, info, resource)
        if info.subresource == "scale":
            return await self._scale(request, info, resource)
        if info.subresource == "token" and resource.kind == "ServiceAccount":
            return await self._token_request(request, info, resource)
        if info.subresource == "proxy" and resource.kind in ("Service", "Pod"):
            return await self._proxy(request, info, resource)
        if handler is None:
            raise ApiError(405, f"podnet does not serve {resource.plural}/{info.subresource}")
        return await handler(self, request, info, resource)

    async def _token_request(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        """serviceaccounts/token (`kubectl create token`): a TokenRequest answered with a signed token."""
        if request.method != "POST":
            raise ApiError(405, "a token is requested with POST")
        account = self._current(info, resource)
        if self.signing_key is None:
            raise ApiError(503, "this API server cannot sign tokens", "ServiceUnavailable")
        sent = await self._body(request) or {}
        spec = sent.get("spec") or {}
        lifetime = int(spec.get("expirationSeconds") or 3600)
        if lifetime < 600:
            raise ApiError(422, f'TokenRequest.authentication.k8s.io "{info.name}" is invalid: spec.expirationSeconds: '
                                f"Invalid value: {lifetime}: may not specify a duration less than 10 minutes", "Invalid")
        audiences = tuple(spec.get("audiences") or TOKEN_AUDIENCES[:1])
        bound = spec.get("boundObjectRef") or {}
        pod = None
        if bound.get("kind") == "Pod":
            pod = self.objects.get(("Pod", info.namespace, bound.get("name") or ""))
            if pod is None:
                raise not_found("pods", "", bound.get("name") or "")
        now = time.time()
        token = issue_token(self.signing_key, namespace=info.namespace, service_account=info.name,
                            service_account_uid=(account.get("metadata") or {}).get("uid") or "",
                            pod_name=pod["metadata"]["name"] if pod else None,
                            pod_uid=pod["metadata"].get("uid") if pod else None,
                            audiences=audiences, lifetime=lifetime, now=now)
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + lifetime))
        return respond({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                        "metadata": {"name": info.name, "namespace": info.namespace, "creationTimestamp": None},
                        "spec": {**spec, "audiences": list(audiences), "expirationSeconds": lifetime},
                        "status": {"token": token, "expirationTimestamp": expires}}, 201)

    async def _proxy(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        scheme, name, port = proxy.split_target(info.name)
        if scheme == "https":
            raise ApiError(400, "podnet's proxy speaks plain HTTP to pods (https: is not served)")
        if self.proxy_netns is None:
            raise ApiError(503, "this API server has no way into the cluster's network", "ServiceUnavailable")
        marker = f"/{info.name}/proxy"
        path = request.path[request.path.index(marker) + len(marker):] if marker in request.path else "/"
        if resource.kind == "Service":
            service = self.objects.get(("Service", info.namespace, name))
            if service is None:
                raise not_found(resource.plural, resource.group, name)
            slices = [s for s in self.objects.list("EndpointSlice", info.namespace)
                      if (s["metadata"].get("labels") or {}).get("kubernetes.io/service-name") == name]
            address, target = proxy.service_endpoint(service, slices, port)
        else:
            pod = self.objects.get(("Pod", info.namespace, name))
            if pod is None:
                raise not_found(resource.plural, resource.group, name)
            address = (pod.get("status") or {}).get("podIP")
            if not address:
                raise ApiError(503, f'pod "{name}" has no address yet', "ServiceUnavailable")
            target = int(port) if port.isdigit() else next(
                (p.get("containerPort") for c in (pod.get("spec") or {}).get("containers") or []
                 for p in c.get("ports") or [] if port in ("", p.get("name"))), 80)
        return await proxy.relay(request, self.proxy_netns, address, int(target), path)

    async def _scale(self, request: web.Request, info: RequestInfo, resource: Resource) -> web.Response:
        current = self._current(info, resource)
        if request.method in ("PUT", "PATCH"):
            sent = await self._body(request) or {}
            if request.method == "PATCH":
                replicas = ((sent.get("spec") or {}).get("replicas"))
            else:
                if objects.stale(current, sent):
                    raise conflict(resource.plural, resource.group, info.name,
                                   "the object has been modified; please apply your changes to the latest version and try again")
                replicas = (sent.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(422, f"Scale.autoscaling \"{info.name}\" is invalid: spec.replicas: Invalid value: "
                                    f"{replicas!r}: must be greater than or equal to 0", "Invalid")
            original = await self._input_of(resource, self._key(info, resource))
            if original is None:
                raise self._computed(resource, current)
            body = objects.as_input(resource, {**original, "spec": {**(original.get("spec") or {}), "replicas": replicas}},
                                    info.namespace, info.name)
            await self._send("apply", [body], resource, info.name)
            current = self._current(info, resource)
        return respond(_scale_of(current, resource))


def _scale_of(body: dict[str, Any], resource: Resource) -> dict[str, Any]:
    metadata = body.get("metadata") or {}
    selector = (body.get("spec") or {}).get("selector") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: metadata.get(k) for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
            "spec": {"replicas": (body.get("spec") or {}).get("replicas", 1)},
            "status": {"replicas": (body.get("status") or {}).get("replicas", 0),
                       "selector": str(labels.from_label_selector(selector))}}


def _json_or_empty(raw: bytes) -> Any:
    """A merge or strategic patch's body, to read the resourceVersion it may name (a JSON patch is a list)."""
    try:
        found = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def warnings_of(reply: dict[str, Any]) -> list[str]:
    """What the supervisor said beside the change — a pod that could not start, a node whose
    NetworkPolicy rules do not hold yet, the admission's warnings — as HTTP Warning texts."""
    found = [line.split(":", 1)[1].strip() if line.startswith(("Warning:", "Error:")) else line
             for line in reply.get("lines") or [] if line.startswith(("Warning:", "Error:"))]
    found += [str(w) for w in reply.get("warnings") or []]
    return [w.replace('"', "'").replace("\n", " ") for w in found]


def field_manager(request: web.Request) -> str:
    """?fieldManager=, else the client's name from its User-Agent (kube-apiserver's default:
    "kubectl-client-side-apply/v1.32.4 (linux/amd64) …" → kubectl-client-side-apply)."""
    given = request.query.get("fieldManager")
    if given:
        return given
    agent = request.headers.get("User-Agent", "")
    return agent.split("/", 1)[0].strip()[:128] or "unknown"


def _forbidden_details(info: RequestInfo) -> dict[str, Any]:
    return {"name": info.name, **({"group": info.group} if info.group else {}), "kind": info.resource}


def _admit(documents: str) -> None:
    reconcile.admitted(documents, "request")


def tls_context(credentials: ClusterCredentials) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(credentials.server_cert_path, credentials.server_key_path)
    context.load_verify_locations(credentials.ca_path)
    context.verify_mode = ssl.CERT_OPTIONAL  # a certificate, or else a bearer token (authn.py)
    context.set_alpn_protocols(["http/1.1"])
    return context


def listening(sock: socket.socket, address: tuple[str, int]) -> socket.socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


COLLECTOR_ROUND = 0.2  # seconds, as the supervisor's loop


async def _collect(server: ApiServer) -> None:
    """Python's full garbage collection kept off the requests' path, as in the supervisor
    (collector.py): the watch cache (10,000 pods: millions of objects) is long-lived by
    nature, and a full collection visiting it held a request ~0.3 s."""
    collector = Collector()
    while True:
        collector.round(server.objects.resource_version)
        await asyncio.sleep(COLLECTOR_ROUND)


async def run(server: ApiServer, context: ssl.SSLContext, listeners: list[socket.socket]) -> None:
    """Fill the caches, then serve on `listeners` (listening sockets) until server.stopping."""
    followers = [asyncio.create_task(server.follower.follow_objects()),
                 asyncio.create_task(server.follower.follow_events()),
                 asyncio.create_task(_collect(server))]
    runner = web.AppRunner(server.app(), handle_signals=False, access_log=None, shutdown_timeout=1.0)
    try:
        await server.objects.synced.wait()
        await runner.setup()
        for sock in listeners:
            await web.SockSite(runner, sock, ssl_context=context).start()
        server.serving.set()  # (tests wait for it)
        await server.stopping.wait()
    finally:
        server.follower.stopping.set()
        for task in followers:
            task.cancel()
        await runner.cleanup()
