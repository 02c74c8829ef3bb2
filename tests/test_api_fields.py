"""Typed, read-only access to objects: reading never changes the body; writes ask for it."""

from __future__ import annotations

import copy

import pytest

from podnet.api.objects import KubeObject


def _pod(body: dict) -> KubeObject:
    return KubeObject("Pod", "default", "p", body)


# ---------------------------------------------------------------- reading does not write


@pytest.mark.parametrize("body", [
    {},
    {"metadata": {"name": "p"}},
    {"metadata": {"name": "p"}, "status": {}},
    {"metadata": {"name": "p"}, "status": {"podIP": "10.244.1.5"}},
    {"metadata": None, "status": None},
], ids=["empty", "no-status", "empty-status", "status", "nulls"])
def test_reading_metadata_and_status_leaves_the_body_as_it_was(body):
    before = copy.deepcopy(body)
    obj = _pod(body)
    _ = obj.metadata, obj.status, obj.labels, obj.annotations, obj.spec
    _ = obj.metadata.get("uid"), obj.status.get("podIP")
    assert obj.body == before


def test_status_and_metadata_are_read_only_views():
    obj = _pod({"metadata": {"name": "p"}, "status": {"phase": "Running"}})
    with pytest.raises(TypeError):
        obj.status["phase"] = "Failed"  # type: ignore[index]
    with pytest.raises(TypeError):
        obj.metadata["uid"] = "x"  # type: ignore[index]
    assert obj.status == {"phase": "Running"} and obj.metadata == {"name": "p"}


def test_writers_create_what_is_missing_and_write_through():
    obj = _pod({})
    obj.status_for_update()["phase"] = "Running"
    obj.metadata_for_update().setdefault("labels", {})["app"] = "web"
    assert obj.body == {"status": {"phase": "Running"}, "metadata": {"labels": {"app": "web"}}}
    assert obj.status["phase"] == "Running" and obj.labels == {"app": "web"}
