"""The real `kubectl auth can-i` against podnet's access reviews.

`kubectl auth can-i` POSTs a SelfSubjectAccessReview (with --list, a SelfSubjectRulesReview)
and prints what the status says. A stand-in for the API server, made here, serves only that
(and the discovery kubectl reads first) from podnet.apiserver.rbac, so kubectl's own parsing and
printing checks the shape of what podnet answers. kubectl sends those reviews as protobuf: read
with podnet.apiserver.protobuf. The stand-in is plain HTTP, over which kubectl sends no
credentials: every request comes from the admin (system:masters), and the users are who it
impersonates with `--as` (podnet.apiserver.rbac.impersonate), as one asks about a ServiceAccount.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading

import pytest
from aiohttp import web

from podnet.apiserver import protobuf
from podnet.apiserver.rbac import Authorizer, User, access_review_status, impersonate, service_account_username
from tests.conftest import cluster_of

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")

POLICY = """
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: dev}
rules:
- {apiGroups: [""], resources: [pods, pods/log], verbs: [get, list, watch]}
- {apiGroups: [""], resources: [configmaps], resourceNames: [app-config], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: robot-reads-pods, namespace: dev}
roleRef: {kind: Role, name: pod-reader}
subjects: [{kind: ServiceAccount, name: robot}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dangling, namespace: dev}
roleRef: {kind: Role, name: gone}
subjects: [{kind: User, name: bob}]
"""

ADMIN = User("kubernetes-admin", ("system:masters", "system:authenticated"))
USERS = {
    "admin": [],
    "robot": ["--as", service_account_username("dev", "robot")],
    "bob": ["--as", "bob"],
}

DISCOVERY = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        {"name": name, "singularName": "", "namespaced": True, "kind": kind, "verbs": ["get", "list"]}
        for name, kind in (("pods", "Pod"), ("pods/log", "Pod"), ("configmaps", "ConfigMap"),
                           ("secrets", "Secret"))]},
}


def make_app(authorizer: Authorizer) -> web.Application:
    def user_of(request: web.Request) -> User:
        acting = impersonate(authorizer, ADMIN, request.headers.items())
        assert acting.denied is None
        return acting.user or ADMIN

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response(DISCOVERY[request.path])

    async def review_of(request: web.Request) -> dict:
        if "protobuf" in request.headers.get("Content-Type", ""):  # what kubectl sends
            return protobuf.decode(await request.read())
        return await request.json()

    async def access_review(request: web.Request) -> web.Response:
        review = await review_of(request)
        review["status"] = access_review_status(authorizer, user_of(request), review["spec"])
        return web.json_response(review, status=201)

    async def rules_review(request: web.Request) -> web.Response:
        review = await review_of(request)
        review["status"] = authorizer.rules_for(user_of(request), review["spec"].get("namespace", ""))
        return web.json_response(review, status=201)

    app = web.Application()
    for path in DISCOVERY:
        app.router.add_get(path, discovery)
    app.router.add_post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", access_review)
    app.router.add_post("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", rules_review)
    return app


@pytest.fixture(scope="module")
def server():
    """The stand-in on 127.0.0.1 in a thread of its own; yields its URL."""
    loop = asyncio.new_event_loop()
    authorizer = Authorizer(cluster_of(POLICY).objects.values())
    runner = web.AppRunner(make_app(authorizer))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)


def kubectl(server: str, tmp_path, who: str, *args: str) -> subprocess.CompletedProcess:
    identity = USERS[who]
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "t",
              "clusters": [{"name": "t", "cluster": {"server": server}}],
              "users": [{"name": "t", "user": {}}],
              "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t", "namespace": "dev"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    return subprocess.run(["kubectl", "--kubeconfig", str(path), "--cache-dir", str(tmp_path / "cache"), *identity,
                           *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("who, args, printed", [
    ("robot", ["list", "pods"], "yes"),
    ("robot", ["get", "pods", "--subresource=log"], "yes"),
    ("robot", ["get", "configmaps/app-config"], "yes"),
    ("robot", ["get", "configmaps/other"], "no"),
    ("robot", ["list", "pods", "-n", "prod"], "no"),
    ("robot", ["get", "secrets"], "no"),
    ("robot", ["get", "/version"], "yes"),
    ("admin", ["delete", "secrets", "-A"], "yes"),
    ("bob", ["list", "pods"], 'no - RBAC: role.rbac.authorization.k8s.io "gone" not found'),
])
def test_kubectl_auth_can_i(server, tmp_path, who, args, printed):
    result = kubectl(server, tmp_path, who, "auth", "can-i", *args)
    assert result.stdout.strip() == printed, result.stderr
    assert result.returncode == (0 if printed == "yes" else 1)


def test_kubectl_auth_can_i_list(server, tmp_path):
    result = kubectl(server, tmp_path, "robot", "auth", "can-i", "--list")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    assert ["pods", "[]", "[]", "[get", "list", "watch]"] in rows
    assert ["pods/log", "[]", "[]", "[get", "list", "watch]"] in rows
    assert ["configmaps", "[]", "[app-config]", "[get]"] in rows
    assert ["selfsubjectaccessreviews.authorization.k8s.io", "[]", "[]", "[create]"] in rows
    assert ["[/version]", "[]", "[get]"] in rows  # the Resources cell is empty
