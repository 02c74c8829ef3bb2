"""The cluster index (controlplane/clusterindex.py): carried through changes, it is always the
index made anew from the objects."""

from __future__ import annotations

import json
import random

import pytest

from podnet.api.objects import KubeObject
from podnet.controlplane import incremental
from podnet.controlplane.cluster import Cluster, ClusterChange, _made_between
from podnet.controlplane.clusterindex import index_of, updated
from tests.test_incremental import BASE, desired


def changed_pod(rng: random.Random, old: KubeObject | None, namespace: str, name: str) -> KubeObject:
    body = json.loads(json.dumps(old.body)) if old is not None else \
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": {}}
    body.setdefault("spec", {})["nodeName"] = rng.choice(["node1", "node2", None])
    status = body.setdefault("status", {})
    status["phase"] = rng.choice(["Running", "Pending", "Succeeded", "Failed"])
    status["podIP"] = rng.choice(["10.244.1.9", "10.244.2.7", None])
    return KubeObject("Pod", namespace, name, body)


def random_change(rng: random.Random, objects: dict) -> tuple[list, list]:
    """(changed, gone): pods added, replaced (moved, finished, addressed) or removed, other
    objects replaced or removed."""
    changed, gone = [], []
    keys = list(objects)
    for _ in range(rng.randrange(1, 4)):
        what = rng.randrange(4)
        if what == 0:
            namespace = rng.choice(["default", "shop", "new"])
            key = ("Pod", namespace, f"p-{rng.randrange(6)}")
            changed.append((key, changed_pod(rng, objects.get(key), key[1], key[2])))
        elif what == 1:
            key = rng.choice([k for k in keys if k[0] == "Pod"] or keys)
            if key[0] == "Pod":
                changed.append((key, changed_pod(rng, objects[key], key[1], key[2])))
        elif what == 2:
            key = rng.choice(keys)
            old = objects[key]
            changed.append((key, KubeObject(old.kind, old.namespace, old.name, dict(old.body))))
        else:
            gone.append(rng.choice(keys))
    seen, unique = set(), []
    for key, obj in changed:  # one version of a key per change, and not also gone
        if key not in seen and key not in gone:
            seen.add(key)
            unique.append((key, obj))
    return unique, list(dict.fromkeys(gone))


@pytest.mark.parametrize("seed", range(5))
def test_an_index_carried_through_changes_is_the_one_made_anew(seed):
    rng = random.Random(seed)
    cluster = desired(BASE)
    index = cluster.index
    for _ in range(60):
        changed, gone = random_change(rng, cluster.objects)
        objects = dict(cluster.objects)
        for key in gone:
            objects.pop(key, None)
        objects.update(changed)
        index = updated(index, cluster.objects, changed, gone)
        cluster = Cluster(config=cluster.config, objects=objects, nodes=cluster.nodes)
        assert index == index_of(cluster.objects)


def test_a_cluster_takes_the_index_of_the_one_it_was_made_from():
    before = desired(BASE)
    objects = dict(before.objects)
    key = next(k for k in objects if k[0] == "Pod")
    objects.pop(key)
    after = Cluster(config=before.config, objects=objects, nodes=before.nodes)
    ClusterChange.between(before, after).carry_index()
    assert before._index is None  # the cluster before had none made: after's is made anew
    assert after._index == index_of(after.objects)
    after._index = None
    before.index
    change = ClusterChange.between(before, after)
    change.carry_index()
    assert after._index is not None and after._index == index_of(after.objects)
    assert key not in after.index.of("Pod", key[1]) and key not in after.index.pod_keys
    after.add(before.objects[key])  # a cluster changed after its index was made: made again
    assert after.index == index_of(after.objects) and key in after.index.pod_keys


def test_a_change_made_in_steps_is_found_from_what_each_step_touched():
    """Two short ways in one write (as changed_cluster takes them), the cluster between them
    already gone: the change from the first is still found without comparing every object,
    and lists a workload before its pods."""
    first = desired(BASE)
    first.index
    web = next(o for o in first.objects.values() if o.kind == "Deployment")
    step = incremental.workload_relabelled(first, web.key, {"labels": {"round": "1"}})
    last = incremental.workload_relabelled(step, web.key, {"labels": {"round": "2"}})
    pod = next(o for o in last.objects.values() if o.kind == "Pod")
    relabelled = incremental.relabelled(last, pod.key, {"role": "x"}, None)
    assert relabelled is not None  # (a pod no Service or ReplicaSet selects)
    del step, last
    assert _made_between(first, relabelled) is not None
    change = ClusterChange.between(first, relabelled)
    assert [key for key, _ in change.changed] == [web.key, pod.key]  # the workload first
    assert {k for k, _ in change.changed} == {k for k, o in relabelled.objects.items() if first.objects.get(k) is not o}
    assert relabelled.index == index_of(relabelled.objects)
