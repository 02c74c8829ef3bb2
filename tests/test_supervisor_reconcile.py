"""Desired state + what runs -> what to do (no root, nothing started): the rules of apply and
delete, and the carry-over that keeps running pods' names and addresses."""

from __future__ import annotations

import copy

import pytest

from podnet.config import ClusterConfig
from podnet.errors import PodnetError
from podnet.linux.netlink import Change, FakeNetlink, KernelError, Link, Route
from podnet.linux.supervisor import reconcile
from podnet.linux.supervisor.state import documents_text
from tests.supervisor_fakes import DEPLOYMENT


def pod(name, namespace=None):
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": [{"name": "c", "image": "pause"}]}}


def scaled(replicas):
    body = copy.deepcopy(DEPLOYMENT)
    body["spec"]["replicas"] = replicas
    return body


def desired(inputs, keep=None):
    return reconcile.desired_cluster(inputs, ClusterConfig(), lambda _pod: None, keep)


def placed(cluster, prefix="default/"):
    return {p.ref: (p.body["status"]["podIP"], p.spec["nodeName"]) for p in cluster.of_kind("Pod")
            if p.ref.startswith(prefix)}


def request(inputs, bodies, delete=False):
    return reconcile.change_request(inputs, reconcile.admitted(documents_text(bodies), "request"), delete)


# ---- carry-over ---------------------------------------------------------------------------------


def test_running_pods_keep_their_names_addresses_and_nodes():
    before = desired([DEPLOYMENT])
    after = desired([pod("a"), scaled(3)], keep=before)  # "a" sorts first and would take an address
    kept = placed(before)
    assert {ref: placed(after)[ref] for ref in kept} == kept
    assert len(placed(after)) == 4


def test_a_cluster_computed_again_over_itself_is_the_same():
    """Every apply and readiness change computes the running pods again: nothing may pile up
    (each round once added another PodReadyToStartContainers condition to every pod)."""
    first = desired([DEPLOYMENT, pod("a")])
    again = desired([DEPLOYMENT, pod("a")], keep=first)
    assert {k: o.body for k, o in desired([DEPLOYMENT, pod("a")], keep=again).objects.items()} == \
        {k: o.body for k, o in again.objects.items()}
    for p in again.of_kind("Pod"):
        types = [c["type"] for c in p.status["conditions"]]
        assert len(types) == len(set(types)), p.ref


def test_a_running_pod_applied_with_new_labels_keeps_its_address_and_takes_the_labels():
    """`kubectl label` / an apply that relabels a pod: NetworkPolicy selectors must see it (rule 37)."""
    labelled = pod("a")
    labelled["metadata"]["labels"] = {"pod": "a"}
    before = desired([labelled])
    relabelled = copy.deepcopy(labelled)
    relabelled["metadata"]["labels"] = {"pod": "a", "target": "isolated"}
    after = desired([relabelled], keep=before)
    assert placed(after) == placed(before)
    assert after.get("Pod", "default", "a").labels == {"pod": "a", "target": "isolated"}
    unlabelled = desired([pod("a")], keep=after)
    assert not unlabelled.get("Pod", "default", "a").labels


def test_without_carry_over_the_same_inputs_move_pods():
    """Why carry-over exists: computed afresh, the same change gives running pods new addresses."""
    before = desired([DEPLOYMENT])
    fresh = desired([pod("a"), scaled(3)])
    assert {ref: placed(fresh)[ref] for ref in placed(before)} != placed(before)


def test_a_pod_that_no_longer_belongs_is_not_carried():
    before = desired([scaled(3)])
    after = desired([scaled(1)], keep=before)
    assert len(placed(after)) == 1
    assert set(placed(after)) < set(placed(before))


# ---- apply and delete ---------------------------------------------------------------------------


def test_apply_creates_new_objects_and_configures_existing_ones():
    change = request([pod("a")], [pod("a"), pod("b")])
    assert [b["metadata"]["name"] for b in change.inputs] == ["a", "b"]
    assert change.lines() == ["pod/a configured", "pod/b created"]


def test_delete_removes_and_reports_what_was_not_there():
    change = request([pod("a"), pod("b")], [pod("b"), pod("zz")], delete=True)
    assert [b["metadata"]["name"] for b in change.inputs] == ["a"]
    assert change.lines() == ["pod/b deleted", 'Error from server (NotFound): pod "zz" not found']


def test_objects_are_matched_by_kind_namespace_and_name():
    change = request([pod("a")], [pod("a", namespace="other")])
    assert len(change.inputs) == 2
    assert change.lines() == ["pod/a created"]
    assert request([pod("a", namespace="default")], [pod("a")]).lines() == ["pod/a configured"]


def test_pods_that_could_not_start_are_reported():
    assert request([], [pod("a")]).lines(["default/a: no sandbox"]) == [
        "pod/a created", "Error: pod default/a: no sandbox could not start"]


def test_a_change_that_needs_a_new_node_is_refused():
    running = desired([DEPLOYMENT])
    with_node = desired([DEPLOYMENT, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node9"}}])
    with pytest.raises(PodnetError, match="node node9 does not exist in the running cluster demo"):
        reconcile.check_nodes(running, with_node, "demo")
    reconcile.check_nodes(running, desired([scaled(5)], keep=running), "demo")  # same nodes: fine


# ---- pods to start and stop ---------------------------------------------------------------------


def test_pod_actions_start_what_should_run_and_stop_what_should_not():
    cluster = desired([pod("a"), pod("b")])
    running = [p.ref for p in reconcile.running_pods(cluster)]
    assert "default/a" in running and "kube-system/" in running[-1]
    actions = reconcile.pod_actions(cluster, {"default/a", "default/gone"})
    assert actions.stop == ("default/gone",)
    assert actions.started == sorted(set(running) - {"default/a"})


def test_nothing_to_do_when_what_runs_is_what_should():
    cluster = desired([DEPLOYMENT])
    actions = reconcile.pod_actions(cluster, [p.ref for p in reconcile.running_pods(cluster)])
    assert actions == reconcile.PodActions(stop=(), start=())


def marked(body):
    return {**body, "metadata": {**body["metadata"], "deletionTimestamp": "2030-01-01T00:00:30Z",
                                 "deletionGracePeriodSeconds": 30}}


def test_a_terminating_pod_is_neither_stopped_again_nor_started():
    running = desired([scaled(2)])
    leaving = sorted(placed(running))[-1]
    body = running.get("Pod", *leaving.split("/")).body
    cluster = desired(reconcile.with_terminating([scaled(1)], [marked(body)]), running)
    assert placed(cluster)[leaving] == placed(running)[leaving]  # its address stays taken
    assert cluster.get("Pod", *leaving.split("/")).metadata["deletionGracePeriodSeconds"] == 30
    actions = reconcile.pod_actions(cluster, [p.ref for p in reconcile.running_pods(running)])
    assert actions == reconcile.PodActions(stop=(), start=())


def test_the_marks_of_a_pod_that_began_terminating_reach_the_carried_running_pod():
    running = desired([pod("a")])
    cluster = desired(reconcile.with_terminating([], [marked(running.get("Pod", "default", "a").body)]), running)
    assert cluster.get("Pod", "default", "a").metadata["deletionTimestamp"] == "2030-01-01T00:00:30Z"


def test_a_pod_applied_again_while_it_terminates_waits_for_the_terminating_one():
    running = desired([pod("a")])
    inputs = reconcile.with_terminating([pod("a")], [marked(running.get("Pod", "default", "a").body)])
    assert [b["metadata"]["name"] for b in inputs] == ["a"] and inputs[0]["metadata"].get("deletionTimestamp")


# ---- what every node needs for kube-proxy -------------------------------------------------------


@pytest.fixture
def node_kernel():
    """A node's namespace in the fake kernel, with cni0 up, as the network build leaves it."""
    kernel = FakeNetlink()
    kernel.create_namespace("node1")
    kernel.apply("node1", [Change("add", Link("cni0", "bridge", up=True))])
    kernel.ns["node1"].sysctls.update({"net.ipv4.conf.all.send_redirects": "1",
                                       "net.ipv4.conf.cni0.send_redirects": "1"})
    return kernel


def test_a_node_routes_the_service_network_into_cni0_without_redirects(node_kernel):
    node_kernel.apply("node1", reconcile.node_changes(ClusterConfig().networking))
    state = node_kernel.observe("node1", ["net.bridge.bridge-nf-call-iptables", "net.ipv4.conf.all.send_redirects",
                                          "net.ipv4.conf.cni0.send_redirects"])
    assert Route("10.96.0.0/12", "cni0") in state.routes
    assert {s.key_name: s.value for s in state.sysctls} == {"net.bridge.bridge-nf-call-iptables": "1",
                                                            "net.ipv4.conf.all.send_redirects": "0",
                                                            "net.ipv4.conf.cni0.send_redirects": "0"}
    assert node_kernel.batches == 2  # the link, then one batch for all of it


def test_node_changes_can_be_applied_again(node_kernel):
    changes = reconcile.node_changes(ClusterConfig().networking)
    node_kernel.apply("node1", changes)
    before = node_kernel.observe("node1")
    node_kernel.apply("node1", changes)  # a replace, as `ip route replace` was
    assert node_kernel.observe("node1") == before


def test_without_br_netfilter_a_node_cannot_be_prepared():
    kernel = FakeNetlink(br_netfilter=False)
    kernel.create_namespace("node1")
    kernel.apply("node1", [Change("add", Link("cni0", "bridge", up=True))])
    with pytest.raises(KernelError, match="net.bridge.bridge-nf-call-iptables"):
        kernel.apply("node1", reconcile.node_changes(ClusterConfig().networking))
