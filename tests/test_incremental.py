"""The fast path of a running cluster's changes (podnet.controlplane.incremental, through
reconcile.changed_cluster) against a full computation (reconcile.desired_cluster), which is
what the cluster must be: on scripted changes, on random ones, and in the supervisor."""

from __future__ import annotations

import copy
import random
from dataclasses import replace

import pytest

from podnet.config import ClusterConfig, parse_config
from podnet.controlplane import Cluster
from podnet.controlplane.clusterindex import index_of
from podnet.host.layout import ClusterLayout
from podnet.linux.netpol import NodePolicy
from podnet.linux.supervisor import reconcile
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.state import ClusterState, documents_text
from podnet.policy import render
from podnet.proxy.loader import RecordingRunner
from podnet.semantics.networkpolicy import PolicyEngine
from tests.supervisor_fakes import FakeDataPlane, FakeRuntime

CONFIG = ClusterConfig()
FULL = reconcile.desired_cluster  # kept: one test counts the supervisor's calls to it


def namespace(name, labels=None):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **({"labels": labels} if labels else {})}}


def pod(name, labels, namespace="default", node=None):
    spec = {"containers": [{"name": "c", "image": "pause", "ports": [{"name": "http", "containerPort": 80}]}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": spec}


def deployment(name, replicas, namespace="default"):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "pause"}]}}}}


def service(name, selector, namespace="default"):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector, "ports": [{"port": 80}]}}


def policy(name, selector, namespace="default", peers=None, port=None):
    spec = {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"]}
    if peers is not None:
        spec["ingress"] = [{"from": [{"podSelector": {"matchLabels": peers}}],
                            **({"ports": [{"port": port}]} if port is not None else {})}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def replicaset(name, replicas):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "pause"}]}}}}


# shop is meshed: the pods a scale-up makes there get their proxy as compute gives it (controlplane/injection.py)
BASE = [namespace("shop", {"istio-injection": "enabled"}), deployment("web", 3), replicaset("legacy", 2), deployment("api", 2, "shop"), service("api", {"app": "api"}, "shop"),
        service("front", {"tier": "front"}), pod("a", {"role": "a"}), pod("b", {"role": "b"}, node="node2"),
        pod("s", {"role": "s"}, "shop"), policy("deny-a", {"role": "a"})]


CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"}, "stringData": {"t": "x"}}
ACCOUNT = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}
ROLE = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
BINDING = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "reader"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
           "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}]}
CLUSTER_BINDING = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                   "metadata": {"name": "viewers"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]}


def desired(inputs, keep=None, config=CONFIG):
    return reconcile.desired_cluster(inputs, config, lambda _pod: None, keep)


def store(*bodies):
    return reconcile.admitted(documents_text(list(bodies)), "request")


def change(cluster, inputs, bodies, delete=False, config=CONFIG):
    """(the fast path's cluster or None, the full computation's, the inputs afterwards)."""
    request = store(*bodies)
    fast = reconcile.changed_cluster(cluster, inputs, request, delete, readiness=lambda _pod: None)
    new_inputs = reconcile.change_request(inputs, request, delete).inputs
    return fast, desired(new_inputs, cluster, config), new_inputs


def assert_same(fast: Cluster, full: Cluster):
    assert list(fast.objects) == list(full.objects)  # the same objects, in the same order
    if fast._index is not None:  # taken along from the cluster it was made from
        assert fast._index == index_of(fast.objects)
    for key, obj in full.objects.items():
        mine = fast.objects[key]
        assert (mine.kind, mine.namespace, mine.name) == (obj.kind, obj.namespace, obj.name)
        assert mine.body == obj.body, key
    assert fast.warnings == full.warnings
    assert fast.nodes == full.nodes
    fast_engine, full_engine = PolicyEngine(fast), PolicyEngine(full)
    for node in full.nodes:
        assert render(fast, node.name, fast_engine) == render(full, node.name, full_engine), node.name


@pytest.fixture(scope="module")
def base():
    first = desired(BASE)
    return desired(BASE, first), BASE  # as a running cluster holds it: every pod carried over


# ---- scripted -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bodies, delete", [
    ([policy("deny-b", {"role": "b"})], False),  # a new policy
    ([policy("deny-a", {"role": "a"}, peers={"role": "b"}, port=80)], False),  # one replaced
    ([policy("deny-a", {"role": "a"})], True),  # deleted
    ([policy("deny-shop", {}, "shop", peers={"app": "web"})], False),  # in another declared namespace
    ([pod("a", {"role": "a", "extra": "1"})], False),  # a running pod relabelled
    ([pod("b", {}, node="node2")], False),  # its labels removed
    ([{**pod("a", {"role": "b"}), "metadata": {**pod("a", {"role": "b"})["metadata"],
                                               "annotations": {"note": "x"}}}], False),  # and annotated
    ([pod("a", {"role": "b"}), policy("deny-b", {"role": "b"}, peers={"role": "a"})], False),  # both at once
    ([deployment("web", 3)], False),  # applied again unchanged
    ([pod("a", {"role": "a"}), policy("deny-a", {"role": "a"})], False),  # the same, nothing changes
    ([CONFIG_MAP], False), ([CONFIG_MAP], True),  # a ConfigMap (the API server's most common write)
    ([{**CONFIG_MAP, "data": {"b": "2"}}], False),  # one changed
    ([SECRET, CONFIG_MAP], False), ([{**SECRET, "metadata": {"name": "s", "namespace": "shop"}}], False),
    ([ACCOUNT, ROLE, BINDING], False), ([ACCOUNT, ROLE, BINDING], True),  # RBAC's objects: stored only
    ([CLUSTER_BINDING], False),
    ([{**deployment("web", 3), "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"},
                                             "annotations": {"owner": "me"}}}], False),  # a workload's own labels
    ([deployment("web", 4)], False), ([deployment("web", 9)], False),  # scaled up
    ([deployment("web", 2)], False), ([deployment("web", 0)], False),  # and down (its pods terminate)
    ([deployment("api", 5, "shop")], False),  # and its Service's endpoints follow
    ([{**deployment("web", 5), "metadata": {"name": "web", "namespace": "default", "labels": {"x": "y"}}}], False),
])
def test_the_fast_path_gives_what_a_full_computation_gives(base, bodies, delete):
    cluster, inputs = base
    fast, full, _ = change(cluster, inputs, bodies, delete)
    assert fast is not None, "this change should not need a full computation"
    assert_same(fast, full)


@pytest.mark.parametrize("bodies, delete", [
    ([pod("a", {"tier": "front"})], False),  # a Service selects it now: its EndpointSlices change
    ([pod("s", {"app": "api"}, "shop")], False),  # so does a Service, and a ReplicaSet would adopt it
    ([pod("a", {"app": "legacy"})], False),  # a ReplicaSet would adopt it (and scale down)
    ([pod("a", {"role": "a"}, node="node2")], False),  # not only labels
    ([pod("new", {"role": "a"})], False),  # a new pod
    ([pod("a", {"role": "a"})], True),  # a pod deleted
    ([{**deployment("web", 4), "spec": {**deployment("web", 4)["spec"], "minReadySeconds": 3}}], False),  # not only replicas
    ([policy("p", {}, "elsewhere")], False),  # its namespace would be created
    ([service("front", {"role": "a"})], False),  # anything else
    ([{**CONFIG_MAP, "metadata": {"name": "c", "namespace": "elsewhere"}}], False),  # its namespace would be created
    ([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "agg"},
       "rules": []}], False),  # aggregation reads ClusterRoles
    ([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}], True),  # made again
])
def test_changes_that_reach_further_are_left_to_the_full_computation(base, bodies, delete):
    cluster, inputs = base
    fast, _, _ = change(cluster, inputs, bodies, delete)
    assert fast is None


def test_a_policy_whose_namespace_nothing_else_uses_is_deleted_by_the_full_computation():
    inputs = [pod("a", {"role": "a"}), policy("lonely", {}, "elsewhere")]
    cluster = desired(inputs)
    assert cluster.get("Namespace", "", "elsewhere") is not None  # created for the policy alone
    fast, full, _ = change(cluster, inputs, [policy("lonely", {}, "elsewhere")], delete=True)
    assert fast is None and full.get("Namespace", "", "elsewhere") is None


def test_with_the_userspace_proxy_policies_are_refused_by_the_full_computation(base):
    config = replace(CONFIG, networking=replace(CONFIG.networking, proxy_mode="userspace"))
    inputs = [pod("a", {"role": "a"})]
    cluster = desired(inputs, config=config)
    request = store(policy("p", {}))
    assert reconcile.changed_cluster(cluster, inputs, request, False) is None


# ---- random -------------------------------------------------------------------------------------

LABELS = [{}, {"role": "a"}, {"role": "b"}, {"role": "a", "tier": "back"}, {"tier": "front"}, {"app": "web"},
          {"app": "legacy"}]
NAMESPACES = ["default", "shop"]


def random_change(rng: random.Random, inputs):
    """One change a user might make: mostly policies and labels, sometimes anything else."""
    pods = [b for b in inputs if b["kind"] == "Pod"]
    policies = [b for b in inputs if b["kind"] == "NetworkPolicy"]
    roll = rng.random()
    if roll < 0.3:
        ns = rng.choice(NAMESPACES + ["elsewhere"] * (roll < 0.03))
        peers = rng.choice([None, *LABELS])
        return [policy(f"p{rng.randrange(6)}", rng.choice(LABELS), ns, peers, rng.choice([None, 80, "http"]))], False
    if roll < 0.45 and policies:
        return [copy.deepcopy(rng.choice(policies))], True
    if roll < 0.8 and pods:
        body = copy.deepcopy(rng.choice(pods))
        body["metadata"]["labels"] = dict(rng.choice(LABELS))
        if rng.random() < 0.2:
            body["metadata"]["annotations"] = {"n": str(rng.randrange(3))}
        return [body], False
    if roll < 0.85:
        return [copy.deepcopy(rng.choice(inputs))], False  # again, unchanged
    if roll < 0.9:
        return [pod(f"n{rng.randrange(4)}", dict(rng.choice(LABELS)), rng.choice(NAMESPACES))], False
    if roll < 0.95 and pods:
        return [copy.deepcopy(rng.choice(pods))], True
    return [deployment("web", rng.randrange(1, 5))], False


@pytest.mark.parametrize("seed", range(3))
def test_random_changes_give_what_full_computations_give(base, seed):
    rng = random.Random(seed)
    cluster, inputs = base
    fast_taken = 0
    for _step in range(60):
        bodies, delete = random_change(rng, inputs)
        fast, full, inputs = change(cluster, inputs, bodies, delete)
        if fast is not None:
            assert_same(fast, full)
            fast_taken += 1
            cluster = fast  # the next change starts from the fast path's cluster
        else:
            cluster = full
    assert fast_taken >= 20  # the random changes exercised the fast path


# ---- in the supervisor --------------------------------------------------------------------------


def test_the_supervisor_takes_the_fast_path_and_its_tables_are_those_of_a_full_computation(tmp_path, monkeypatch):
    state = ClusterState(ClusterLayout("inc"), tmp_path / "inc")
    state.create({"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "inc", "nodes": 2}, BASE)
    nft = RecordingRunner()
    supervisor = Supervisor(ClusterLayout("inc"), state, dataplane_factory=FakeDataPlane, runtime_factory=FakeRuntime,
                            policy_factory=lambda node, netns: NodePolicy(node, netns, run=nft))
    supervisor.start()
    # the fake data plane starts no policy tables: give the supervisor one per node, loaded
    for node in ("node1", "node2"):
        supervisor.policies[node] = NodePolicy(node, None, run=nft)
    supervisor._sync_policies()
    computed = []
    monkeypatch.setattr(reconcile, "desired_cluster",
                        lambda *args, **kwargs: computed.append(args) or FULL(*args, **kwargs))
    config = parse_config(state.directory.joinpath("cluster.yaml").read_text())
    for bodies in ([policy("deny-b", {"role": "b"}, peers={"role": "a"})], [pod("a", {"role": "b"})],
                   [pod("a", {"role": "a"})]):
        before, loads = supervisor.cluster, len(nft.calls)
        supervisor.change(documents_text(bodies), delete=False)
        assert computed == []  # no full computation
        full = FULL(supervisor.inputs, config, lambda _pod: None, before)
        assert_same(supervisor.cluster, full)
        for node, table in supervisor.policies.items():
            assert table.loaded == render(full, node)  # what each node holds
        assert len(nft.calls) > loads  # and each change reached the tables
    supervisor.change(documents_text([pod("a", {"tier": "front"})]), delete=False)  # a Service's endpoints change
    assert len(computed) == 1



def test_an_apply_that_changes_nothing_loads_nothing_writes_nothing_and_wakes_no_watcher(tmp_path):
    state = ClusterState(ClusterLayout("inc"), tmp_path / "inc")
    state.create({"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "inc", "nodes": 2}, BASE)
    nft = RecordingRunner()
    supervisor = Supervisor(ClusterLayout("inc"), state, dataplane_factory=FakeDataPlane, runtime_factory=FakeRuntime)
    supervisor.start()
    supervisor.policies = {node: NodePolicy(node, None, run=nft) for node in ("node1", "node2")}
    supervisor.change(documents_text([policy("deny-b", {"role": "b"})]), delete=False)
    manifests, log = state.directory / "manifests.yaml", state.directory / "manifests.log"
    before = (manifests.stat().st_ino, log.stat().st_size, supervisor.generation, len(nft.calls), supervisor.cluster)
    answer = supervisor.change(documents_text([policy("deny-b", {"role": "b"}), BASE[1]]), delete=False)
    assert answer["lines"] == ["deployment/web configured", "networkpolicy/deny-b configured"]
    assert (manifests.stat().st_ino, log.stat().st_size, supervisor.generation, len(nft.calls),
            supervisor.cluster) == before


@pytest.mark.parametrize("seed", range(3))
def test_random_scales_give_what_full_computations_give(base, seed):
    """Deployments scaled up and down, among pods coming and going
    and Services selecting them: each fast scale is what the full computation gives."""
    rng = random.Random(seed)
    cluster, inputs = base
    scaled_fast = 0
    for _step in range(40):
        roll = rng.random()
        if roll < 0.6:
            name, ns = rng.choice([("web", "default"), ("api", "shop")])
            bodies = [deployment(name, rng.randrange(1, 9), ns)]
        elif roll < 0.8:
            bodies = [pod(f"n{rng.randrange(4)}", dict(rng.choice(LABELS)), rng.choice(NAMESPACES))]
        else:
            bodies = [service(f"s{rng.randrange(2)}", dict(rng.choice(LABELS[1:])), rng.choice(NAMESPACES))]
        fast, full, inputs = change(cluster, inputs, bodies, False)
        if fast is not None:
            assert_same(fast, full)
            scaled_fast += bodies[0]["kind"] == "Deployment"
            cluster = fast
        else:
            cluster = full
    assert scaled_fast >= 5  # scale-ups took the fast path
