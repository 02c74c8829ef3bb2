"""The API server's watch cache, request paths and selection, without a server: what a watch
from a resourceVersion is sent, how a selector turns changes into ADDED/DELETED, 410 Gone,
continue tokens, RequestInfo as kube-apiserver reads paths."""

from __future__ import annotations

import asyncio
import json

import pytest

from podnet.apiserver import discovery, selection
from podnet.apiserver.cache import WatchCache
from podnet.apiserver.errors import ApiError
from podnet.apiserver.paths import request_info
from podnet.apiserver.registry import BY_PATH


def pod(name, version, labels=None, namespace="default", node="node1"):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(version), "labels": labels or {}},
            "spec": {"nodeName": node}, "status": {"phase": "Running"}}


def drain(watcher):
    found = []
    while not watcher.queue.empty():
        item = watcher.queue.get_nowait()
        found.append(None if item is None else (item[0], item[1]["metadata"]["name"], item[1]["metadata"]["resourceVersion"]))
    return found


def run(coroutine):
    return asyncio.run(coroutine)


def test_a_watch_from_a_version_gets_the_later_changes_in_order_then_the_new_ones():
    async def scenario():
        cache = WatchCache()
        cache.replace([pod("a", 1), pod("b", 2)], 2)
        cache.update([pod("a", 3)], [], 3)
        cache.update([pod("c", 4)], [(5, ("Pod", "default", "b"))], 5)
        watcher = cache.watch("Pod", "", "", lambda body: True, 2)
        before = drain(watcher)
        cache.update([pod("c", 6)], [], 6)
        return before, drain(watcher), cache
    before, after, cache = run(scenario())
    assert before == [("MODIFIED", "a", "3"), ("ADDED", "c", "4"), ("DELETED", "b", "5")]
    assert after == [("MODIFIED", "c", "6")]
    assert [b["metadata"]["name"] for b in cache.list("Pod")] == ["a", "c"]
    assert cache.resource_version == 6


def test_an_object_deleted_and_made_again_in_one_update_is_deleted_then_added():
    """A controller's pod replaced under its name (podnet computes names): in one batch of
    changes the old one's deletion and the new one; watchers see DELETED, then ADDED."""
    async def scenario():
        cache = WatchCache()
        cache.replace([pod("a", 1)], 1)
        watcher = cache.watch("Pod", "", "", lambda body: True, None)
        cache.update([pod("a", 3)], [(2, ("Pod", "default", "a"))], 3)
        return drain(watcher), cache
    seen, cache = run(scenario())
    assert seen == [("DELETED", "a", "2"), ("ADDED", "a", "3")]
    assert [b["metadata"]["resourceVersion"] for b in cache.list("Pod")] == ["3"]


def test_a_selector_sees_an_object_enter_as_added_and_leave_as_deleted():
    async def scenario():
        cache = WatchCache()
        cache.replace([pod("a", 1, {"app": "web"})], 1)
        chosen = selection.predicate("Pod", "pods", {"labelSelector": "app=web"})
        watcher = cache.watch("Pod", "default", "", chosen, None)
        cache.update([pod("a", 2, {"app": "db"})], [], 2)   # leaves
        cache.update([pod("a", 3, {"app": "web"})], [], 3)  # comes back
        cache.update([pod("b", 4, {"app": "db"})], [], 4)   # never selected
        cache.update([], [(5, ("Pod", "default", "a"))], 5)
        return drain(watcher)
    assert run(scenario()) == [("DELETED", "a", "2"), ("ADDED", "a", "3"), ("DELETED", "a", "5")]


def test_a_watch_from_before_the_window_is_gone_and_one_namespace_sees_only_its_own():
    async def scenario():
        cache = WatchCache(history=2)
        cache.replace([], 1)
        for version in range(2, 6):
            cache.update([pod(f"p{version}", version, namespace="a" if version % 2 else "b")], [], version)
        with pytest.raises(ApiError) as gone:
            cache.watch("Pod", "", "", lambda b: True, 2)
        watcher = cache.watch("Pod", "a", "", lambda b: True, 3)
        return gone.value, drain(watcher)
    gone, seen = run(scenario())
    assert (gone.code, gone.reason) == (410, "Expired")
    assert seen == [("ADDED", "p5", "5")]


def test_a_full_list_becomes_the_differences():
    async def scenario():
        cache = WatchCache()
        cache.replace([pod("a", 1), pod("b", 2)], 2)
        watcher = cache.watch("Pod", "", "", lambda b: True, 2)
        cache.replace([pod("a", 1), pod("c", 7)], 8)
        return drain(watcher)
    assert run(scenario()) == [("ADDED", "c", "7"), ("DELETED", "b", "8")]


def test_field_selectors_of_pods_and_unknown_fields():
    chosen = selection.predicate("Pod", "pods", {"fieldSelector": "spec.nodeName=node2,status.phase!=Failed"})
    assert chosen(pod("a", 1, node="node2")) and not chosen(pod("a", 1, node="node1"))
    with pytest.raises(ApiError) as refused:
        selection.predicate("Pod", "pods", {"fieldSelector": "spec.image=x"})
    assert refused.value.code == 400 and "spec.image" in refused.value.message
    assert selection.named_in("metadata.name=web-0") == "web-0"


def test_limit_and_continue_walk_the_list_once():
    items = [pod(f"p{i:02}", i) for i in range(7)]
    seen, token = [], None
    while True:
        query = {"limit": "3", **({"continue": token} if token else {})}
        chosen, token, remaining = selection.page(items, query, 7)
        seen += [b["metadata"]["name"] for b in chosen]
        if not token:
            break
        assert remaining == 7 - len(seen)
    assert seen == [f"p{i:02}" for i in range(7)]
    with pytest.raises(ApiError):
        selection.page(items, {"continue": "not-a-token"}, 7)


def test_lists_stay_in_key_order_as_objects_come_and_go_and_a_page_resumes_after_a_deleted_key():
    def names(bodies):
        return [(b["metadata"]["namespace"], b["metadata"]["name"]) for b in bodies]

    async def scenario():
        cache = WatchCache()
        cache.replace([pod("m", 1, namespace="b"), pod("a", 2, namespace="c"), pod("z", 3, namespace="a")], 3)
        first = names(cache.list("Pod"))
        cache.update([pod("b", 4, namespace="b"), pod("m", 5, namespace="b")], [], 5)  # one comes, one changes
        second = names(cache.list("Pod")), names(cache.list("Pod", "b")), names(cache.list("Pod", "bb"))
        page, token, _ = selection.page(cache.list("Pod"), {"limit": "2"}, 5)
        cache.update([], [(6, ("Pod", "b", "b"))], 6)  # the last key of that page goes
        rest, _, _ = selection.page(cache.list("Pod"), {"limit": "2", "continue": token}, 6)
        return first, second, names(page), names(rest)
    first, (second, in_b, in_bb), page, rest = run(scenario())
    assert first == [("a", "z"), ("b", "m"), ("c", "a")]
    assert second == [("a", "z"), ("b", "b"), ("b", "m"), ("c", "a")]
    assert in_b == [("b", "b"), ("b", "m")] and in_bb == []
    assert page == [("a", "z"), ("b", "b")] and rest == [("b", "m"), ("c", "a")]


def test_a_list_s_json_is_each_object_s_current_json():
    async def scenario():
        cache = WatchCache()
        cache.replace([pod("a", 1), pod("b", 2)], 2)
        envelope = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "2"}}
        first = cache.list_bytes(envelope, cache.list("Pod"))
        cache.update([pod("a", 3, {"app": "web"})], [], 3)
        second = cache.list_bytes(envelope, cache.list("Pod"))
        return first, second, cache.list_bytes({}, [])
    first, second, empty = run(scenario())
    assert json.loads(first) == {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "2"},
                                 "items": [pod("a", 1), pod("b", 2)]}
    assert json.loads(second)["items"] == [pod("a", 3, {"app": "web"}), pod("b", 2)]
    assert json.loads(empty) == {"items": []}


@pytest.mark.parametrize("method, path, query, expected", [
    ("GET", "/api/v1/namespaces/shop/pods/web-0/log", {}, ("get", "", "pods", "shop", "web-0", "log")),
    ("GET", "/apis/apps/v1/deployments", {"watch": "true"}, ("watch", "apps", "deployments", "", "", "")),
    ("GET", "/api/v1/namespaces/shop", {}, ("get", "", "namespaces", "shop", "shop", "")),
    ("PUT", "/api/v1/namespaces/shop/finalize", {}, ("update", "", "namespaces", "shop", "shop", "finalize")),
    ("DELETE", "/api/v1/namespaces/shop/pods", {}, ("deletecollection", "", "pods", "shop", "", "")),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {},
     ("create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "", "")),
    ("PATCH", "/apis/apps/v1/namespaces/a/deployments/web/scale", {}, ("patch", "apps", "deployments", "a", "web", "scale")),
])
def test_request_info_reads_paths_as_the_api_server(method, path, query, expected):
    info = request_info(method, path, query)
    assert info.resource_request
    assert (info.verb, info.group, info.resource, info.namespace, info.name, info.subresource) == expected


def test_non_resource_paths_and_discovery_name_every_served_resource():
    for path in ("/version", "/api", "/apis", "/api/v1", "/apis/apps/v1", "/openapi/v3/apis/apps/v1", "/healthz"):
        assert not request_info("GET", path, {}).resource_request
    names = {r["name"] for r in discovery.resource_list("", "v1")["resources"]}
    assert {"pods", "pods/log", "pods/exec", "services", "namespaces", "events", "configmaps"} <= names
    groups = {item["metadata"]["name"] for item in discovery.aggregated(core=False)["items"]}
    assert {"apps", "networking.k8s.io", "discovery.k8s.io", "authorization.k8s.io"} <= groups
    assert ("apps", "v1", "deployments") in BY_PATH
