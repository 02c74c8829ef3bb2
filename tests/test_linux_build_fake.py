"""Building, reconciling, rolling back and tearing down, against the in-memory kernel (no root)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from podnet.host.layout import ClusterLayout
from podnet.linux import diff as diffing
from podnet.linux.build import BuildError, ClusterExists, build
from podnet.linux.netlink import (
    Address,
    Change,
    FakeNetlink,
    KernelError,
    Link,
    Neighbour,
    NetnsState,
    Route,
    Sysctl,
    VethPeer,
)
from podnet.linux.plan import plan_network
from podnet.linux.teardown import cluster_namespaces, sweep_all, teardown
from tests.conftest import cluster_of


def plan_of(name="fake", nodes=3, overlay="vxlan"):
    return plan_network(cluster_of("", f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\n"
                                       f"nodes: {nodes}\nnetworking: {{overlay: {overlay}}}\n"))


@pytest.fixture
def kernel():
    return FakeNetlink()


@pytest.fixture
def dirs(tmp_path):
    netns_dir, state_root = tmp_path / "netns", tmp_path / "state"
    netns_dir.mkdir()
    return {"netns_dir": netns_dir, "state_root": state_root}


def observed(kernel, plan):
    return {ns.name: kernel.observe(ns.name, [s.key_name for s in ns.state.sysctls]) for ns in plan.namespaces}


def remaining(kernel, plan):
    return diffing.diff([ns.state for ns in plan.namespaces], observed(kernel, plan))


# ---- building -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["vxlan", "host-gw"])
def test_build_makes_the_kernel_match_the_plan(kernel, dirs, overlay):
    plan = plan_of(overlay=overlay)
    report = build(plan, kernel, **dirs)
    assert kernel.namespaces() == sorted(ns.name for ns in plan.namespaces)
    assert remaining(kernel, plan) == []
    assert report.created == tuple(ns.name for ns in plan.namespaces)
    # the veth pair to node1: one end on the LAN bridge, the other is node1's eth0 with its IP
    lan = kernel.ns[plan.layout.lan_netns]
    assert lan.links["to-node1"].peer == (plan.layout.node_netns("node1"), "eth0")
    node1 = kernel.observe(plan.layout.node_netns("node1"))
    assert Address("eth0", "192.168.1.11/24") in node1.addresses


def test_each_veth_pair_is_created_once_from_the_lan_side(kernel, dirs):
    report = build(plan_of(), kernel, **dirs)
    veth_adds = [(ns, c.item.name) for ns, c in report.changes
                 if c.action == "add" and isinstance(c.item, Link) and c.item.kind == "veth"]
    assert veth_adds == [("podnet-fake.lan", f"to-{m}") for m in ("external", "node1", "node2", "node3")]


def test_one_batch_per_namespace_and_phase(kernel, dirs):
    plan = plan_of()
    report = build(plan, kernel, **dirs)
    assert report.batches == kernel.batches  # build's batches are all there were
    fresh = {ns.name: NetnsState(ns.name, links=(Link("lo", "loopback", mtu=65536, up=False),))
             for ns in plan.namespaces}
    steps = diffing.diff([ns.state for ns in plan.namespaces], fresh)
    assert len(steps) == report.batches
    per_namespace = max(sum(1 for s in steps if s.netns == ns.name) for ns in plan.namespaces)
    assert per_namespace <= len(diffing.PHASES) + 2  # links-add may take one batch per kind


def test_vxlan_devices_are_created_after_their_uplink(kernel, dirs):
    report = build(plan_of(), kernel, **dirs)
    adds = [c.item.name for _, c in report.changes if c.action == "add" and isinstance(c.item, Link)]
    assert adds.index("flannel.1") > max(i for i, name in enumerate(adds) if name.startswith("to-"))


def test_building_twice_is_refused_and_reconciling_an_up_to_date_cluster_changes_nothing(kernel, dirs):
    plan = plan_of()
    build(plan, kernel, **dirs)
    log = list(kernel.log)
    with pytest.raises(ClusterExists, match="cluster fake already exists"):
        build(plan, kernel, **dirs)
    report = build(plan, kernel, reconcile=True, **dirs)
    assert not report.changed and report.changes == () and kernel.log == log
    assert "up to date" in report.summary()


def test_reconcile_repairs_exactly_what_drifted(kernel, dirs):
    plan = plan_of()
    build(plan, kernel, **dirs)
    node2 = plan.layout.node_netns("node2")
    route = Route("10.244.3.0/24", "flannel.1", via="10.244.3.0", onlink=True)
    kernel.apply(node2, [Change("delete", route),
                         Change("set", Link("cni0", "bridge", mtu=1400)),
                         Change("set", Sysctl("net.ipv4.ip_forward", "0"))])
    report = build(plan, kernel, reconcile=True, **dirs)
    assert sorted(str(c) for _, c in report.changes) == sorted([
        "set sysctl net.ipv4.ip_forward = 1",
        f"set {plan.netns(node2).state.link('cni0')}",
        f"add {route}",
    ])
    assert remaining(kernel, plan) == []


def test_reconcile_leaves_what_other_components_added(kernel, dirs):
    plan = plan_of()
    build(plan, kernel, **dirs)
    layout, node1 = plan.layout, plan.layout.node_netns("node1")
    pod_ns = layout.pod_netns("default", "web")
    kernel.create_namespace(pod_ns)
    veth = layout.pod_host_veth("default", "web")
    kernel.apply(node1, [Change("add", Link(veth, "veth", master="cni0", peer=VethPeer(pod_ns, "eth0"))),
                         Change("add", Address("eth0", "192.168.1.200/32"))])
    build(plan, kernel, reconcile=True, **dirs)
    state = kernel.observe(node1)
    assert state.link(veth).master == "cni0"
    assert Address("eth0", "192.168.1.200/32") in state.addresses
    assert pod_ns in kernel.namespaces()


def test_reconcile_to_another_overlay_removes_the_old_one(kernel, dirs):
    build(plan_of(overlay="vxlan"), kernel, **dirs)
    plan = plan_of(overlay="host-gw")
    build(plan, kernel, reconcile=True, **dirs)
    assert remaining(kernel, plan) == []
    node1 = kernel.observe(plan.layout.node_netns("node1"))
    assert node1.link("flannel.1") is None and node1.neighbours == () and node1.fdb == ()
    assert [str(r) for r in node1.routes] == ["route 10.244.2.0/24 via 192.168.1.12 dev eth0",
                                              "route 10.244.3.0/24 via 192.168.1.13 dev eth0"]


def test_reconcile_with_fewer_nodes_removes_the_stale_node_and_its_lan_port(kernel, dirs):
    build(plan_of(nodes=3), kernel, **dirs)
    plan = plan_of(nodes=2)
    report = build(plan, kernel, reconcile=True, **dirs)
    assert report.removed == ("podnet-fake.node-node3",)
    assert "podnet-fake.node-node3" not in kernel.namespaces()
    assert kernel.observe(plan.layout.lan_netns).link("to-node3") is None
    node1 = kernel.observe(plan.layout.node_netns("node1"))
    assert all("10.244.3." not in str(item) for item in node1.entries)  # routes, neighbour, FDB


def test_a_failed_build_removes_everything_it_made(kernel, dirs):
    kernel.fail = lambda netns, change: isinstance(change.item, Neighbour) and netns.endswith("node3")
    with pytest.raises(KernelError, match="neighbour"):
        build(plan_of(), kernel, **dirs)
    assert kernel.namespaces() == []
    assert not (dirs["state_root"] / "fake").exists()


def test_a_failed_reconcile_puts_back_what_was_there(kernel, dirs):
    plan = plan_of()
    build(plan, kernel, **dirs)
    node2 = plan.layout.node_netns("node2")
    kernel.apply(node2, [Change("delete", Route("10.244.1.0/24", "flannel.1", via="10.244.1.0", onlink=True)),
                         Change("set", Sysctl("net.ipv4.ip_forward", "0"))])
    before = observed(kernel, plan)
    kernel.fail = lambda netns, change: change.action == "add" and isinstance(change.item, Route)
    with pytest.raises(KernelError):
        build(plan, kernel, reconcile=True, **dirs)
    assert observed(kernel, plan) == before


def test_pods_are_handed_to_the_attacher_after_the_nodes_are_up(kernel, dirs):
    plan = plan_of()
    calls = []

    class Recorder:
        def attach(self, node, pod):
            assert kernel.observe(node.netns).link("cni0").up
            calls.append((node.name, f"{pod.namespace}/{pod.name}"))

    build(plan, kernel, pods=Recorder(), **dirs)
    assert calls == [(node.name, f"{p.namespace}/{p.name}") for node in plan.nodes for p in node.pods]
    assert calls  # the default cluster has CoreDNS pods


def test_a_failing_pod_attacher_rolls_the_whole_cluster_back(kernel, dirs):
    class Broken:
        def attach(self, node, pod):
            raise RuntimeError("CNI ADD failed")

    with pytest.raises(RuntimeError, match="CNI ADD failed"):
        build(plan_of(), kernel, pods=Broken(), **dirs)
    assert kernel.namespaces() == []


def test_a_change_the_kernel_does_not_keep_is_caught_by_verification(kernel, dirs):
    original = kernel._set_link

    def forgetful(netns, link):  # a kernel that ignores MTU changes on bridges
        original(netns, replace(link, mtu=None) if link.kind == "bridge" else link)

    kernel._set_link = forgetful
    plan = plan_of()
    build(plan, kernel, **dirs)
    node1 = plan.layout.node_netns("node1")
    kernel.ns[node1].links["cni0"].link = replace(kernel.ns[node1].links["cni0"].link, mtu=1400)
    with pytest.raises(BuildError, match="does not match the plan"):
        build(plan, kernel, reconcile=True, **dirs)


# ---- teardown and ownership ------------------------------------------------------------------


def test_namespaces_of_a_cluster_whose_name_extends_another_are_not_taken(tmp_path):
    names = ["podnet-a.lan", "podnet-a.node-n1", "podnet-a-b.lan", "podnet-a-b.node-n1", "podnet-ab.lan",
             "podnet-a.unknown", "other"]
    for cluster in ("a", "a-b"):
        (tmp_path / cluster).mkdir()
    assert cluster_namespaces("a", names, state_root=tmp_path) == ["podnet-a.lan", "podnet-a.node-n1"]
    assert cluster_namespaces("a-b", names, state_root=tmp_path) == ["podnet-a-b.lan", "podnet-a-b.node-n1"]


def test_a_node_name_cannot_make_a_name_ambiguous(tmp_path):
    # cluster "a" with a node "b-lan", and a cluster "a-node-b": the dot keeps them apart
    (tmp_path / "a").mkdir()
    (tmp_path / "a-node-b").mkdir()
    names = ["podnet-a.node-b-lan", "podnet-a-node-b.lan"]
    assert cluster_namespaces("a", names, tmp_path) == ["podnet-a.node-b-lan"]
    assert cluster_namespaces("a-node-b", names, tmp_path) == ["podnet-a-node-b.lan"]


def test_teardown_removes_the_cluster_and_only_it(dirs):
    netns_dir, state_root = dirs["netns_dir"], dirs["state_root"]
    for name in ["podnet-x.lan", "podnet-x.node-n1", "podnet-x.pod-default-web", "podnet-y.lan", "mine"]:
        (netns_dir / name).touch()
    for cluster in ("x", "y"):
        (state_root / cluster / "ipam").mkdir(parents=True)
    report = teardown("x", **dirs)
    assert report.namespaces == ("podnet-x.lan", "podnet-x.node-n1", "podnet-x.pod-default-web")
    assert report.state_removed
    assert sorted(p.name for p in netns_dir.iterdir()) == ["mine", "podnet-y.lan"]
    assert [p.name for p in state_root.iterdir()] == ["y"]
    assert not teardown("x", **dirs).removed_anything  # twice is harmless


def test_sweep_all_removes_every_podnet_cluster_and_nothing_else(dirs):
    netns_dir, state_root = dirs["netns_dir"], dirs["state_root"]
    for name in ["podnet-x.lan", "podnet-y.node-n1", "podnet-orphan.lan", "mine"]:
        (netns_dir / name).touch()
    (state_root / "x").mkdir(parents=True)
    (state_root / "y").mkdir()
    reports = sweep_all(**dirs)
    assert [r.cluster for r in reports] == ["x", "y", "*"]
    assert [p.name for p in netns_dir.iterdir()] == ["mine"]
    assert list(state_root.iterdir()) == []


def test_build_refuses_names_that_are_not_cluster_names():
    with pytest.raises(ValueError):
        teardown("Bad_Name")


def test_layout_prefix_is_what_build_uses(kernel, dirs):
    plan = plan_of(name="p1")
    build(plan, kernel, **dirs)
    assert all(ClusterLayout("p1").owns_netns(n) for n in kernel.namespaces())
    assert (dirs["state_root"] / "p1" / "netns").read_text().split() == [ns.name for ns in plan.namespaces]
