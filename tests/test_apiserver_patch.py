"""The API server's PATCH semantics (podnet.apiserver.patch): strategic merge patch case by case,
named after the rule each proves; JSON merge and JSON patch; server-side apply's ownership."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.apiserver.patch import (
    PatchError,
    apply_patch,
    field_set,
    fields_v1,
    json_merge_patch,
    json_patch,
    patch_request,
    paths_of,
    record_update,
    strategic_merge_patch,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def pod(**spec) -> dict:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "containers": [
                {"name": "a", "image": "i:a", "args": ["x", "y"], "ports": [{"containerPort": 80}, {"containerPort": 81}]},
                {"name": "b", "image": "i:b"},
                {"name": "c", "image": "i:c"},
            ]
        },
    }
    body["spec"].update(spec)
    return body


def names(items: list[dict]) -> list[str]:
    return [item["name"] for item in items]


# --- strategic merge patch: one rule per case ------------------------------------------------


def test_null_deletes_a_key_and_maps_merge():
    out = strategic_merge_patch(pod(), {"metadata": {"labels": {"tier": None, "env": "prod"}}}, "Pod")
    assert out["metadata"]["labels"] == {"app": "web", "env": "prod"}


def test_null_for_an_absent_key_and_nulls_inside_a_new_value_leave_nothing():
    out = strategic_merge_patch(pod(), {"metadata": {"annotations": {"a": "1", "b": None}, "gone": None}}, "Pod")
    assert out["metadata"]["annotations"] == {"a": "1"}
    assert "gone" not in out["metadata"]


def test_list_with_merge_strategy_merges_items_by_merge_key():
    out = strategic_merge_patch(pod(), {"spec": {"containers": [{"name": "b", "image": "i:b2"}]}}, "Pod")
    assert names(out["spec"]["containers"]) == ["a", "b", "c"]
    assert out["spec"]["containers"][1] == {"name": "b", "image": "i:b2"}
    assert out["spec"]["containers"][0]["ports"] == [{"containerPort": 80}, {"containerPort": 81}]


def test_list_without_strategy_is_replaced_whole():
    patch = {"spec": {"containers": [{"name": "a", "args": ["z"]}]}}
    out = strategic_merge_patch(pod(), patch, "Pod")
    assert out["spec"]["containers"][0]["args"] == ["z"]


def test_a_new_item_of_a_merged_list_goes_before_the_server_only_items():
    # upstream's order: patch items first unless the live order places a server item before them
    out = strategic_merge_patch(pod(), {"spec": {"containers": [{"name": "new", "image": "n"}]}}, "Pod")
    assert names(out["spec"]["containers"]) == ["new", "a", "b", "c"]


def test_set_element_order_reorders_and_server_only_items_keep_their_live_place():
    patch = {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}], "containers": [{"name": "c", "image": "i:c2"}]}}
    out = strategic_merge_patch(pod(), patch, "Pod")
    # c before a as ordered; b, which only the server has, stays before c where it was live
    assert names(out["spec"]["containers"]) == ["b", "c", "a"]
    keep_place = {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "c"}], "containers": [{"name": "c", "image": "x"}]}}
    assert names(strategic_merge_patch(pod(), keep_place, "Pod")["spec"]["containers"]) == ["a", "b", "c"]


def test_set_element_order_for_a_list_the_patch_does_not_touch_only_reorders():
    patch = {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}]}}
    out = strategic_merge_patch(pod(), patch, "Pod")
    assert names(out["spec"]["containers"]) == ["b", "a", "c"]
    assert out["spec"]["containers"][1]["image"] == "i:a"


def test_set_element_order_that_contradicts_the_patch_is_refused():
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}], "containers": [{"name": "b", "image": "x"}]}}
    with pytest.raises(PatchError) as refused:
        strategic_merge_patch(pod(), patch, "Pod")
    assert refused.value.code == 500
    assert "doesn't match $setElementOrder list" in refused.value.message


def test_patch_delete_removes_a_list_item_by_merge_key():
    patch = {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 81, "$patch": "delete"}]}, {"name": "c", "$patch": "delete"}]}}
    out = strategic_merge_patch(pod(), patch, "Pod")
    assert names(out["spec"]["containers"]) == ["a", "b"]
    assert out["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]


def test_patch_replace_in_a_list_makes_the_patch_items_the_list():
    patch = {"spec": {"containers": [{"name": "z", "image": "i:z"}, {"$patch": "replace"}]}}
    out = strategic_merge_patch(pod(), patch, "Pod")
    assert out["spec"]["containers"] == [{"name": "z", "image": "i:z"}]


def test_patch_replace_on_a_map_replaces_it_and_delete_empties_it():
    live = pod(nodeSelector={"disk": "ssd", "zone": "a"}, securityContext={"runAsUser": 1})
    out = strategic_merge_patch(live, {"spec": {"nodeSelector": {"$patch": "replace", "zone": "b"}, "securityContext": {"$patch": "delete"}}}, "Pod")
    assert out["spec"]["nodeSelector"] == {"zone": "b"}
    assert out["spec"]["securityContext"] == {}


def test_patch_merge_directive_is_refused_as_upstream_refuses_it():
    # (a map only the patch has is taken without its directives, as upstream takes it)
    assert "nodeSelector" not in strategic_merge_patch(pod(), {"spec": {"nodeSelector": {"$patch": "merge"}}}, "Pod")["spec"]
    with pytest.raises(PatchError) as refused:
        strategic_merge_patch(pod(nodeSelector={"a": "b"}), {"spec": {"nodeSelector": {"$patch": "merge"}}}, "Pod")
    assert (refused.value.code, refused.value.reason) == (500, "InternalError")
    with pytest.raises(PatchError) as in_list:
        strategic_merge_patch(pod(), {"spec": {"containers": [{"$patch": "merge"}]}}, "Pod")
    assert "merging lists cannot yet be specified in the patch" in in_list.value.message


def test_primitive_list_with_merge_strategy_is_a_set_union_and_delete_from_primitive_list_removes():
    live = pod()
    live["metadata"]["finalizers"] = ["x", "y"]
    merged = strategic_merge_patch(live, {"metadata": {"finalizers": ["z", "x"]}}, "Pod")
    assert merged["metadata"]["finalizers"] == ["z", "x", "y"]
    removed = strategic_merge_patch(live, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}, "Pod")
    assert removed["metadata"]["finalizers"] == ["y"]


def test_retain_keys_clears_the_fields_not_listed():
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    out = strategic_merge_patch(deployment, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}, "Deployment")
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_retain_keys_inside_a_merged_list_item_switches_a_volume_source():
    live = pod(volumes=[{"name": "v", "emptyDir": {}}, {"name": "w", "emptyDir": {}}])
    patch = {"spec": {"volumes": [{"name": "v", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/data"}}]}}
    out = strategic_merge_patch(live, patch, "Pod")
    assert out["spec"]["volumes"] == [{"name": "v", "hostPath": {"path": "/data"}}, {"name": "w", "emptyDir": {}}]


def test_retain_keys_must_list_every_field_the_patch_sets():
    live = pod(volumes=[{"name": "v", "emptyDir": {}}])
    patch = {"spec": {"volumes": [{"name": "v", "$retainKeys": ["name"], "hostPath": {"path": "/data"}}]}}
    with pytest.raises(PatchError) as refused:
        strategic_merge_patch(live, patch, "Pod")
    assert (refused.value.code, refused.value.message) == (400, "invalid patch format of retainKeys")


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"spec": {"$setElementOrderX": []}}, "invalid patch format of setElementOrder list"),
        ({"metadata": {"$deleteFromPrimitiveListX": ["a"]}}, "invalid patch format of primitive list"),
        ({"spec": {"containers": [{"$retainKeys": "name", "name": "a"}]}}, "invalid patch format of retainKeys"),
    ],
)
def test_malformed_directives_are_bad_requests(patch, message):
    with pytest.raises(PatchError) as refused:
        strategic_merge_patch(pod(), patch, "Pod")
    assert (refused.value.code, refused.value.reason, refused.value.message) == (400, "BadRequest", message)


def test_an_item_without_its_merge_key_is_refused_with_upstreams_words():
    with pytest.raises(PatchError) as refused:
        strategic_merge_patch(pod(), {"spec": {"containers": [{"image": "x"}]}}, "Pod")
    assert refused.value.message == "Internal error occurred: map: map[image:x] does not contain declared merge key: name"


def test_lists_of_lists_are_unprocessable():
    live = pod()
    live["metadata"]["finalizers"] = []
    with pytest.raises(PatchError) as refused:
        strategic_merge_patch(live, {"metadata": {"finalizers": [["b"]]}}, "Pod")
    assert (refused.value.code, refused.value.reason) == (422, "Invalid")


def test_a_value_of_another_type_replaces():
    out = strategic_merge_patch(pod(), {"spec": {"containers": {"name": "odd"}}}, "Pod")
    assert out["spec"]["containers"] == {"name": "odd"}


def test_service_ports_merge_by_port():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
               "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}]}}
    out = strategic_merge_patch(service, {"spec": {"ports": [{"port": 443, "targetPort": 9443}]}}, "Service")
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 9443}]


def test_podnets_own_kinds_have_atomic_lists():
    anp = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy", "metadata": {"name": "a"},
           "spec": {"priority": 5, "subject": {"namespaces": {}},
                    "ingress": [{"name": "r1", "action": "Allow", "from": [{"namespaces": {}}]},
                                {"name": "r2", "action": "Deny", "from": [{"namespaces": {}}]}]}}
    out = strategic_merge_patch(anp, {"spec": {"ingress": [{"name": "r2", "action": "Pass", "from": [{"namespaces": {}}]}]}}, "AdminNetworkPolicy")
    assert out["spec"]["ingress"] == [{"name": "r2", "action": "Pass", "from": [{"namespaces": {}}]}]
    assert out["spec"]["priority"] == 5


def test_the_inputs_are_not_changed():
    live, patch = pod(), {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}, "metadata": {"labels": {"app": None}}}
    live_copy, patch_copy = copy.deepcopy(live), copy.deepcopy(patch)
    strategic_merge_patch(live, patch, "Pod")
    assert (live, patch) == (live_copy, patch_copy)


def test_a_patch_that_is_not_an_object_is_a_bad_request():
    with pytest.raises(PatchError) as refused:
        strategic_merge_patch(pod(), ["x"], "Pod")
    assert refused.value.status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "invalid JSON document", "reason": "BadRequest", "code": 400,
    }


# --- kubectl's 3-way patches, as properties --------------------------------------------------

_word = st.text(alphabet="abcdefgh", min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(st.lists(_word, unique=True, max_size=6), st.lists(_word, unique=True, max_size=6))
def test_a_primitive_list_patched_as_kubectl_diffs_it_becomes_the_new_list(before, after):
    live = pod()
    live["metadata"]["finalizers"] = before
    patch = {"metadata": {"$setElementOrder/finalizers": after, "finalizers": [f for f in after if f not in before],
                          "$deleteFromPrimitiveList/finalizers": [f for f in before if f not in after]}}
    if not patch["metadata"]["finalizers"]:
        del patch["metadata"]["finalizers"]
    out = strategic_merge_patch(live, patch, "Pod")
    assert out["metadata"].get("finalizers", []) == after


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_word, _word), unique_by=lambda t: t[0], min_size=1, max_size=5),
       st.lists(st.tuples(_word, _word), unique_by=lambda t: t[0], min_size=1, max_size=5))
def test_a_keyed_list_patched_as_kubectl_diffs_it_becomes_the_new_list(before, after):
    live = pod()
    live["spec"]["containers"] = [{"name": n, "image": i} for n, i in before]
    old = dict(before)
    changed = [{"name": n, "image": i} for n, i in after if old.get(n) != i]
    deleted = [{"name": n, "$patch": "delete"} for n, _ in before if n not in dict(after)]
    patch = {"spec": {"$setElementOrder/containers": [{"name": n} for n, _ in after], "containers": changed + deleted}}
    out = strategic_merge_patch(live, patch, "Pod")
    assert out["spec"]["containers"] == [{"name": n, "image": i} for n, i in after]


# --- JSON merge patch and JSON patch ---------------------------------------------------------

_json_leaf = st.one_of(st.integers(-5, 5), st.booleans(), _word, st.lists(st.integers(0, 3), max_size=3))
_json_object = st.recursive(
    st.dictionaries(_word, _json_leaf, max_size=4),
    lambda children: st.dictionaries(_word, st.one_of(_json_leaf, children), max_size=4),
    max_leaves=12,
)


def merge_diff(a: dict, b: dict) -> dict:
    """The RFC 7386 patch from a to b (what kubectl would send for a CRD)."""
    patch: dict = {key: None for key in a if key not in b}
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(a.get(key), dict):
            inner = merge_diff(a[key], value)
            if inner:
                patch[key] = inner
        elif key not in a or a[key] != value or type(a[key]) is not type(value):
            patch[key] = value
    return patch


@settings(max_examples=200, deadline=None)
@given(_json_object, _json_object)
def test_json_merge_patch_of_the_diff_gives_the_target(a, b):
    assert json_merge_patch(a, merge_diff(a, b)) == b


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_word, _word, max_size=5), st.dictionaries(_word, _word, max_size=5))
def test_strategic_merge_patch_of_a_map_without_merge_lists_is_a_json_merge_patch(a, b):
    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": a}, "data": a}
    target = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": b}, "data": b}
    diff = merge_diff(live, target)
    assert strategic_merge_patch(live, diff, "ConfigMap") == json_merge_patch(live, diff)


def test_json_merge_patch_rfc7386_examples():
    assert json_merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert json_merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert json_merge_patch({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}) == {"a": {"b": "d"}}
    assert json_merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    with pytest.raises(PatchError) as refused:
        json_merge_patch({"a": 1}, ["x"])
    assert (refused.value.code, refused.value.reason) == (400, "BadRequest")


def test_json_patch_applies_operations_and_refuses_failing_ones_as_unprocessable():
    out = json_patch(pod(), [{"op": "replace", "path": "/spec/containers/1/image", "value": "i:new"},
                             {"op": "add", "path": "/metadata/labels/x", "value": "1"},
                             {"op": "remove", "path": "/metadata/labels/tier"}])
    assert out["spec"]["containers"][1]["image"] == "i:new"
    assert out["metadata"]["labels"] == {"app": "web", "x": "1"}
    for failing in ([{"op": "remove", "path": "/metadata/nothere"}], [{"op": "test", "path": "/kind", "value": "Service"}],
                    [{"op": "explode", "path": "/kind"}]):
        with pytest.raises(PatchError) as refused:
            json_patch(pod(), failing)
        assert refused.value.status()["reason"] == "Invalid"
        assert refused.value.code == 422


def test_json_patch_that_is_not_a_list_is_a_bad_request_and_too_many_operations_too_large():
    with pytest.raises(PatchError) as refused:
        json_patch(pod(), {"op": "add"})
    assert refused.value.message == "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
    assert refused.value.code == 400
    with pytest.raises(PatchError) as large:
        json_patch(pod(), [{"op": "test", "path": "/kind", "value": "Pod"}] * 10001)
    assert large.value.code == 413


# --- server-side apply -----------------------------------------------------------------------


def deployment(replicas: int = 2, ports: tuple[int, ...] = (80, 443), labels: dict | None = None) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels if labels is not None else {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": p} for p in ports]}]},
            },
        },
    }


def managers(obj: dict) -> dict[tuple[str, str], dict]:
    return {(m["manager"], m["operation"]): m["fieldsV1"] for m in obj["metadata"]["managedFields"]}


def test_apply_creates_and_owns_leaves_and_keyed_items_in_fields_v1():
    out = apply_patch(None, deployment(), "kubectl", False, "Deployment", now=NOW)
    assert out["spec"]["replicas"] == 2 and out["metadata"]["name"] == "web"
    [entry] = out["metadata"]["managedFields"]
    assert {k: entry[k] for k in ("manager", "operation", "apiVersion", "time", "fieldsType")} == {
        "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": "2026-01-02T03:04:05Z", "fieldsType": "FieldsV1"}
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},  # LabelSelector is an atomic map
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"web"}': {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {'k:{"containerPort":443,"protocol":"TCP"}': {".": {}, "f:containerPort": {}},
                                'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}}},
            },
        },
    }


def test_fields_v1_round_trips_through_paths():
    paths = field_set(deployment(), "Deployment")
    assert paths_of(fields_v1(paths)) == paths


def test_apply_by_another_manager_changing_an_owned_field_conflicts_with_upstreams_message():
    live = apply_patch(None, deployment(), "alice", False, "Deployment", now=NOW)
    with pytest.raises(PatchError) as refused:
        apply_patch(live, deployment(replicas=3), "bob", False, "Deployment", now=NOW)
    error = refused.value
    assert (error.code, error.reason) == (409, "Conflict")
    assert error.message == 'Apply failed with 1 conflict: conflict with "alice": .spec.replicas'
    assert error.details == {"causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "alice"', "field": ".spec.replicas"}]}


def test_conflicts_with_several_fields_are_listed_by_manager_with_update_managers_named_by_version():
    created = record_update(None, deployment(), "kubectl-client-side-apply", "Deployment", now=NOW)
    changed = deployment(replicas=5)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    with pytest.raises(PatchError) as refused:
        apply_patch(created, changed, "kubectl", False, "Deployment", now=NOW)
    assert refused.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-client-side-apply" using apps/v1 at 2026-01-02T03:04:05Z:\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="web"].image'
    )


def test_applying_the_same_value_shares_ownership_without_conflict():
    live = apply_patch(None, deployment(), "alice", False, "Deployment", now=NOW)
    shared = apply_patch(live, deployment(), "bob", False, "Deployment", now=NOW)
    owners = managers(shared)
    assert owners[("alice", "Apply")] == owners[("bob", "Apply")]


def test_force_takes_conflicting_fields_over():
    live = apply_patch(None, deployment(), "alice", False, "Deployment", now=NOW)
    out = apply_patch(live, deployment(replicas=3), "bob", True, "Deployment", now=NOW)
    assert out["spec"]["replicas"] == 3
    owners = managers(out)
    assert "f:replicas" in owners[("bob", "Apply")]["f:spec"]
    assert "f:replicas" not in owners[("alice", "Apply")]["f:spec"]


def test_fields_a_manager_stops_applying_are_removed_unless_someone_else_owns_them():
    live = apply_patch(None, deployment(labels={"app": "web", "tier": "front"}), "alice", False, "Deployment", now=NOW)
    out = apply_patch(live, deployment(ports=(80,), labels={"app": "web"}), "alice", False, "Deployment", now=NOW)
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]

    shared = apply_patch(live, deployment(labels={"app": "web", "tier": "front"}), "bob", False, "Deployment", now=NOW)
    kept = apply_patch(shared, deployment(ports=(80,), labels={"app": "web"}), "alice", False, "Deployment", now=NOW)
    assert kept["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert kept["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80}, {"containerPort": 443}]


def test_apply_merges_into_what_other_managers_set():
    live = record_update(None, deployment(), "controller", "Deployment", now=NOW)
    live["metadata"]["annotations"] = {"note": "kept"}
    config = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"extra": "1"}}}
    out = apply_patch(live, config, "kubectl", False, "Deployment", now=NOW)
    assert out["metadata"]["labels"] == {"app": "web", "extra": "1"}
    assert out["metadata"]["annotations"] == {"note": "kept"}
    assert out["spec"] == deployment()["spec"]


def test_apply_needs_a_field_manager():
    with pytest.raises(PatchError) as refused:
        apply_patch(None, deployment(), "", False, "Deployment")
    assert refused.value.code == 422
    assert "fieldManager: Required value" in refused.value.message


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 9), st.lists(st.integers(1, 9000), unique=True, max_size=4), st.dictionaries(_word, _word, max_size=3))
def test_apply_is_idempotent_and_its_result_holds_the_configuration(replicas, ports, labels):
    config = deployment(replicas, tuple(ports), labels)
    once = apply_patch(None, config, "m", False, "Deployment", now=NOW)
    twice = apply_patch(once, config, "m", False, "Deployment", now=NOW)
    assert once == twice
    assert {k: v for k, v in once["metadata"].items() if k != "managedFields"} == config["metadata"]
    assert once["spec"] == config["spec"]


def test_update_owns_what_it_changed_and_takes_it_from_others():
    created = record_update(None, deployment(), "creator", "Deployment", now=NOW)
    assert managers(created)[("creator", "Update")]["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    scaled = copy.deepcopy(created)
    scaled["spec"]["replicas"] = 7
    out = record_update(created, scaled, "scaler", "Deployment", now=NOW)
    owners = managers(out)
    assert owners[("scaler", "Update")] == {"f:spec": {"f:replicas": {}}}
    applied = apply_patch(out, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"x": "1"}}},
                          "kubectl", False, "Deployment", now=NOW)
    assert [(m["manager"], m["operation"]) for m in applied["metadata"]["managedFields"]] == [
        ("kubectl", "Apply"), ("creator", "Update"), ("scaler", "Update")]  # upstream's order
    assert "f:replicas" not in owners[("creator", "Update")]["f:spec"]
    assert json.dumps(out["spec"]) == json.dumps(scaled["spec"])


def test_apply_owns_set_items_and_atomic_lists_whole():
    config = deployment()
    config["metadata"]["finalizers"] = ["a.io/x", "a.io/y"]
    config["spec"]["template"]["spec"]["containers"][0]["args"] = ["--one", "--two"]
    live = apply_patch(None, config, "m", False, "Deployment", now=NOW)
    fields = managers(live)[("m", "Apply")]
    assert fields["f:metadata"]["f:finalizers"] == {'v:"a.io/x"': {}, 'v:"a.io/y"': {}}
    assert fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']["f:args"] == {}

    config["metadata"]["finalizers"] = ["a.io/y"]
    config["spec"]["template"]["spec"]["containers"][0]["args"] = ["--three"]
    out = apply_patch(live, config, "m", False, "Deployment", now=NOW)
    assert out["metadata"]["finalizers"] == ["a.io/y"]
    assert out["spec"]["template"]["spec"]["containers"][0]["args"] == ["--three"]


def test_apply_orders_a_keyed_list_as_structured_merge_diff_does():
    # live: a b c d (b and d set by another manager); applied: c x a → the shared items in the
    # applied order (c before a), the live-only items where the walk over the live list meets
    # them (b before c, d right after it), the new x after c as the configuration puts it
    live = deployment()
    live["spec"]["template"]["spec"]["containers"] = [{"name": n, "image": "old"} for n in "abcd"]
    config = deployment()
    config["spec"]["template"]["spec"]["containers"] = [{"name": n, "image": "new"} for n in "cxa"]
    out = apply_patch(record_update(None, live, "creator", "Deployment", now=NOW), config, "m", True, "Deployment", now=NOW)
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["b", "c", "d", "x", "a"]
    assert {c["name"]: c["image"] for c in containers} == {"a": "new", "b": "old", "c": "new", "x": "new", "d": "old"}


def test_a_port_without_protocol_is_the_same_item_as_the_live_port_defaulted_to_tcp():
    live = record_update(None, deployment(ports=(80,)), "creator", "Deployment", now=NOW)
    live["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
    out = apply_patch(live, deployment(ports=(80,)), "m", False, "Deployment", now=NOW)
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_a_request_is_dispatched_by_its_content_type_with_upstreams_decode_errors():
    live = pod()
    out = patch_request(live, "application/merge-patch+json; charset=utf-8", b'{"metadata":{"labels":null}}', kind="Pod", manager="m")
    assert "labels" not in out["metadata"]
    applied = patch_request(None, "application/apply-patch+yaml", yaml.safe_dump(deployment()).encode(), kind="Deployment", manager="m")
    assert applied["spec"] == deployment()["spec"]
    for content_type, body, code, message in [
        ("application/json", b"{}", 415, "the body of the request was in an unknown format - accepted media types include: "
         "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, "
         "application/strategic-merge-patch+json"),
        ("application/strategic-merge-patch+json", b"{not json", 400, "invalid JSON patch"),
    ]:
        with pytest.raises(PatchError) as refused:
            patch_request(live, content_type, body, kind="Pod", manager="m")
        assert (refused.value.code, refused.value.message) == (code, message)
    with pytest.raises(PatchError) as bad_yaml:
        patch_request(live, "application/apply-patch+yaml", b"a: [", kind="Pod", manager="m")
    assert bad_yaml.value.code == 400 and bad_yaml.value.message.startswith("error encoding patch: ")


def test_after_a_delete_a_server_only_item_keeps_its_place_before_an_added_one_as_upstream_orders_it():
    # live x y z; the patch deletes x, adds "new" after y and says nothing of z (only the server
    # has it): upstream's in-place delete and append leave z before "new" in the order it
    # interleaves by, so z stays ahead of the added item
    live = pod()
    live["spec"]["containers"] = [{"name": n, "image": n} for n in ("x", "y", "z")]
    patch = {"spec": {"$setElementOrder/containers": [{"name": "y"}, {"name": "new"}],
                      "containers": [{"name": "new", "image": "n"}, {"name": "x", "$patch": "delete"}]}}
    assert names(strategic_merge_patch(live, patch, "Pod")["spec"]["containers"]) == ["y", "z", "new"]
