"""Rules changed behind podnet's back are noticed and repaired (kube-proxy's canary), without
root: the decision (podnet.proxy.canary.Canary) over a fake kernel, each proxy mode's watched
chains, NodeProxy queuing the full resync, NodePolicy forgetting its table, and the
supervisor's round replacing a changed node's NetworkPolicy tables. The kernel side is in
tests/test_rule_canary_root.py."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from podnet.host.layout import ClusterLayout
from podnet.linux.netlink import Change, FakeNetlink, Link
from podnet.config import parse_config
from podnet.errors import PodnetError
from podnet.linux.netpol import NodePolicy
from podnet.linux.supervisor import core
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.state import ClusterState
from podnet.policy import render
from podnet.proxy import iptables, nftables
from podnet.proxy.canary import Canary, FakeKernel, Watched
from podnet.proxy.loader import RecordingRunner
from podnet.proxy.model import service_ports
from podnet.proxy.node import NodeProxy
from podnet.proxy.userspace import FIXED_CHAINS, USERSPACE_TABLE, UserspaceProxier
from tests.conftest import cluster_of
from tests.supervisor_fakes import FakeDataPlane, FakeRuntime

POD_SUBNET, SERVICE_SUBNET = "10.244.0.0/16", "10.96.0.0/12"
PROXY = Watched("ip", "kube-proxy", (("nat-prerouting", 1), ("services", 2)))
POLICY = Watched("inet", "podnet-netpol", (("egress", 5), ("ingress", 6)))

MANIFESTS = textwrap.dedent("""
    apiVersion: v1
    kind: Pod
    metadata: {name: web, labels: {app: web}}
    spec: {nodeName: node1, containers: [{name: c, image: pause}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      selector: {app: web}
      ports: [{port: 80}]
    ---
    apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: deny}
    spec: {podSelector: {matchLabels: {app: web}}, policyTypes: [Ingress]}
""")


@pytest.fixture(scope="module")
def cluster():
    return cluster_of(MANIFESTS, "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: t\nnodes: 2\n")


def loaded(*watched: Watched) -> FakeKernel:
    kernel = FakeKernel()
    kernel.load(list(watched))
    return kernel


# -- the decision ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change, why", [
    (lambda k: k.tables.pop(("ip", "kube-proxy")), "table ip kube-proxy was deleted"),
    (lambda k: k.tables[("ip", "kube-proxy")].update({"nat-prerouting": 0, "services": 0}),  # nft flush table
     "chain nat-prerouting of table ip kube-proxy holds 0 rules, not the 1 loaded (flushed)"),
    (lambda k: k.tables[("ip", "kube-proxy")].pop("nat-prerouting"),
     "chain nat-prerouting of table ip kube-proxy was deleted"),
    (lambda k: k.tables[("ip", "kube-proxy")].update({"services": 3}),  # someone added a rule
     "chain services of table ip kube-proxy holds 3 rules, not the 2 loaded (changed)"),
])
def test_a_changed_table_is_named_with_what_changed(change, why):
    kernel = loaded(PROXY)
    canary = Canary(kernel)
    assert canary.check([PROXY]) is None
    change(kernel)
    kernel.commit()
    assert canary.check([PROXY]) == why


def test_an_unmoved_generation_is_the_whole_check():
    """The kernel's generation moves with every commit in the namespace: unmoved since the last
    check that passed, no chain is read — the cost does not grow with anything."""
    kernel = loaded(PROXY)
    canary = Canary(kernel)
    assert canary.check([PROXY]) is None
    reads = kernel.reads
    for _ in range(10):
        assert canary.check([PROXY]) is None
    assert kernel.reads == reads


def test_a_commit_elsewhere_is_read_once_and_found_harmless():
    kernel = loaded(PROXY, POLICY)
    canary = Canary(kernel)
    assert canary.check([PROXY]) is None
    kernel.tables[("inet", "podnet-netpol")]["egress"] = 0  # another owner's table: not ours to judge
    kernel.commit()
    reads = kernel.reads
    assert canary.check([PROXY]) is None
    assert kernel.reads == reads + 2  # our two chains, once
    assert canary.check([PROXY]) is None and kernel.reads == reads + 2


def test_a_change_is_reported_until_repaired_and_then_trusted_again():
    kernel = loaded(PROXY)
    canary = Canary(kernel)
    kernel.tables.clear()
    kernel.commit()
    assert canary.check([PROXY]) == canary.check([PROXY]) == "table ip kube-proxy was deleted"
    kernel.load([PROXY])  # the full resync
    assert canary.check([PROXY]) is None


def test_other_expectations_are_checked_in_full_even_at_the_same_generation():
    kernel = loaded(PROXY)
    canary = Canary(kernel)
    assert canary.check([PROXY]) is None
    other = Watched("ip", "kube-proxy", (("nat-prerouting", 2),))
    assert canary.check([other]) is not None


# -- what each owner watches ----------------------------------------------------------------------

def test_nftables_mode_watches_the_skeleton_chains_whatever_the_services(cluster):
    proxy = NodeProxy("t", "node1", None, "nftables", POD_SUBNET, SERVICE_SUBNET, run=RecordingRunner(),
                      counter=FakeKernel())
    [watched] = proxy.proxier.watched()
    chains = dict(watched.chains)
    assert (watched.family, watched.table) == ("ip", "kube-proxy")
    assert chains["nat-prerouting"] == chains["nat-output"] == 1 and chains["services"] == 2
    assert not [name for name in chains if "/" in name]  # per-Service chains (kube-proxy's isServiceChainName)
    proxy.sync_now(cluster)  # Services loaded: the same chains, the same counts
    assert proxy.proxier.watched() == [watched]
    text = proxy.run.inputs("nft")[-1]
    for name, count in chains.items():
        assert text.count(f"add rule ip kube-proxy {name} ") == count


def test_iptables_mode_watches_kube_proxys_canary_in_mangle_nat_and_filter():
    run = RecordingRunner(replies={"iptables": "iptables v1.8.9 (nf_tables)\n"})
    proxy = NodeProxy("t", "node1", None, "iptables", POD_SUBNET, SERVICE_SUBNET, run=run, counter=FakeKernel())
    assert proxy.proxier.watched() == [Watched("ip", table, (("KUBE-PROXY-CANARY", 1),))
                                       for table in ("mangle", "nat", "filter")]


def test_legacy_iptables_is_not_watched():
    run = RecordingRunner(replies={"iptables": "iptables v1.8.9 (legacy)\n"})
    proxy = NodeProxy("t", "node1", None, "iptables", POD_SUBNET, SERVICE_SUBNET, run=run, counter=FakeKernel())
    assert proxy.proxier.watched() == []


def test_a_full_iptables_sync_writes_the_canary_in_three_tables_and_an_incremental_one_leaves_it(cluster):
    ports = service_ports(cluster, "node1")
    text, state, _ = iptables.restore_input(iptables.TablesState(), ports, POD_SUBNET, True)
    tables = {part.split("\n", 1)[0]: part for part in text.split("*")[1:]}
    assert set(tables) == {"nat", "filter", "mangle"}
    for part in tables.values():
        assert ":KUBE-PROXY-CANARY - [0:0]" in part
        assert part.count("-A KUBE-PROXY-CANARY ") == 1 and "-j RETURN" in part
        assert part.index(":KUBE-PROXY-CANARY") < part.index("-A ")  # declared before any rule
    again, _, _ = iptables.restore_input(state, ports[:-1], POD_SUBNET, False)
    assert "KUBE-PROXY-CANARY" not in again and "*mangle" not in again


def test_the_canary_is_not_an_earlier_proxys_stale_chain():
    listing = ":KUBE-PROXY-CANARY - [0:0]\n:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n"
    assert iptables.stale_chains(listing, iptables.TablesState()) == ["KUBE-SVC-AAAAAAAAAAAAAAAA"]


def test_userspace_mode_watches_its_tables_fixed_chains():
    assert dict(FIXED_CHAINS)["nat-prerouting"] == 1 and dict(FIXED_CHAINS)["services"] == 2
    assert UserspaceProxier(None, RecordingRunner()).watched() == [Watched("ip", USERSPACE_TABLE, FIXED_CHAINS)]


def test_nftables_fixed_chains_are_read_from_the_skeleton():
    chains = dict(nftables.fixed_chains(SERVICE_SUBNET))
    assert chains["masquerading"] == 3 and chains["filter-output-post-dnat"] == 2 and chains["reject-chain"] == 1


# -- the proxy repairs ----------------------------------------------------------------------------

def synced_proxy(cluster, mode="nftables", **kwargs):
    run = RecordingRunner(replies={"iptables": "iptables v1.8.9 (nf_tables)\n"})
    kernel = FakeKernel()
    said = []
    proxy = NodeProxy("t", "node1", None, mode, POD_SUBNET, SERVICE_SUBNET, run=run, counter=kernel,
                      min_sync_interval=0.0, noticed=lambda node, why: said.append((node, why)), **kwargs)
    proxy.sync_now(cluster)
    kernel.load(proxy.proxier.watched())  # the kernel holds what was loaded
    return proxy, run, kernel, said


def test_an_intact_table_queues_nothing(cluster):
    proxy, run, _, said = synced_proxy(cluster)
    calls = len(run.calls)
    assert proxy.check() is None and not proxy.pending
    assert len(run.calls) == calls and said == []
    proxy.stop(cleanup=False)


def test_a_deleted_nftables_table_is_noticed_told_and_rewritten_whole(cluster):
    proxy, run, kernel, said = synced_proxy(cluster)
    loads = len(run.inputs("nft"))
    kernel.tables.clear()
    kernel.commit()
    assert proxy.check() == "table ip kube-proxy was deleted"
    assert said == [("node1", "table ip kube-proxy was deleted")]
    assert proxy.wait_synced(60)
    assert len(run.inputs("nft")) == loads + 1
    assert run.inputs("nft")[-1].startswith("add table ip kube-proxy\ndelete table ip kube-proxy")
    assert "add rule ip kube-proxy nat-prerouting jump services" in run.inputs("nft")[-1]
    kernel.load(proxy.proxier.watched())
    assert proxy.check() is None and len(said) == 1  # repaired: quiet again
    proxy.stop(cleanup=False)


def test_a_flushed_iptables_canary_brings_a_full_restore_with_the_canaries(cluster):
    proxy, run, kernel, said = synced_proxy(cluster, mode="iptables")
    kernel.tables[("ip", "nat")]["KUBE-PROXY-CANARY"] = 0  # iptables -t nat -F
    kernel.commit()
    assert "KUBE-PROXY-CANARY of table ip nat holds 0 rules" in proxy.check()
    assert proxy.wait_synced(60)
    restore = run.inputs("iptables-restore")[-1]
    assert restore.count(":KUBE-PROXY-CANARY - [0:0]") == 3 and "-I PREROUTING" in restore
    assert len(said) == 1
    proxy.stop(cleanup=False)


def test_nothing_is_queued_while_a_sync_is_pending_or_failing(cluster):
    proxy, run, kernel, said = synced_proxy(cluster)
    kernel.tables.clear()
    kernel.commit()
    proxy.status.last_error = "refused (fake)"  # the retries rewrite everything anyway
    assert proxy.check() is None and said == []
    proxy.status.last_error = None
    proxy.stop(cleanup=False)
    assert proxy.check() is None and said == []  # stopping: not checked (nor is its socket opened)


def test_the_periodic_full_resync_rewrites_everything_quietly(cluster):
    proxy, run, kernel, said = synced_proxy(cluster, full_resync_period=0.0)
    loads = len(run.inputs("nft"))
    assert proxy.check() is None  # nothing changed: nothing to tell
    assert proxy.wait_synced(60)
    assert len(run.inputs("nft")) == loads + 1 and run.inputs("nft")[-1].startswith("add table ip kube-proxy\n")
    assert said == []
    proxy.stop(cleanup=False)


def test_without_a_kernel_to_ask_nothing_is_checked(cluster):
    proxy = NodeProxy("t", "node1", None, "nftables", POD_SUBNET, SERVICE_SUBNET, run=RecordingRunner())
    proxy.sync_now(cluster)
    assert proxy.canary is None and proxy.check() is None
    proxy.stop(cleanup=False)


# -- NetworkPolicy --------------------------------------------------------------------------------

def test_the_policy_tables_base_chains_are_watched_as_loaded(cluster):
    run, kernel = RecordingRunner(), FakeKernel()
    policy = NodePolicy("node1", None, run=run, counter=kernel)
    assert policy.check() is None  # nothing loaded: nothing to compare
    policy.sync(cluster)
    desired = render(cluster, "node1")
    assert policy.watched() == [
        Watched("inet", "podnet-netpol", (("egress", len(desired.chains["egress"])),
                                          ("ingress", len(desired.chains["ingress"])))),
        Watched("bridge", "podnet-netpol", (("prerouting", 2),))]
    kernel.load(policy.watched())
    assert policy.check() is None


def test_a_flushed_policy_table_is_forgotten_so_the_next_sync_replaces_both_tables(cluster):
    run, kernel = RecordingRunner(), FakeKernel()
    policy = NodePolicy("node1", None, run=run, counter=kernel)
    policy.sync(cluster)
    kernel.load(policy.watched())
    policy.sync(cluster)
    loads = len(run.inputs("nft"))
    assert len(run.inputs("nft")) == loads  # unchanged: nothing to load
    kernel.tables[("inet", "podnet-netpol")] = {"egress": 0, "ingress": 0}  # nft flush table inet podnet-netpol
    kernel.commit()
    assert policy.check().startswith("chain egress of table inet podnet-netpol holds 0 rules")
    assert policy.loaded is None
    policy.sync(cluster)
    text = run.inputs("nft")[-1]
    assert text.startswith("add table inet podnet-netpol\ndelete table inet podnet-netpol\n")
    assert "add table bridge podnet-netpol\ndelete table bridge podnet-netpol\n" in text


def test_the_policy_tables_are_replaced_whole_once_the_periodic_resync_is_due(cluster):
    run = RecordingRunner()
    policy = NodePolicy("node1", None, run=run, counter=FakeKernel(), full_resync_period=3600.0)
    assert not policy.resync_due()  # nothing loaded yet
    policy.sync(cluster)
    assert not policy.resync_due() and policy.loaded is not None  # just loaded whole
    policy.full_resync_period = 0.0
    assert policy.resync_due() and policy.loaded is None
    policy.sync(cluster)
    assert run.inputs("nft")[-1].startswith("add table inet podnet-netpol\ndelete table inet podnet-netpol\n")


# -- the supervisor's round -----------------------------------------------------------------------

class RealLookingDataPlane(FakeDataPlane):
    real = True  # the supervisor makes each node's NetworkPolicy table (and kube-proxy: a stand-in)


class StandIn:
    """For NodeProxy, L2Announcer and ProbeManager: does nothing."""
    pending = False

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def test_the_supervisors_round_replaces_only_the_changed_nodes_policy_tables_and_says_so(tmp_path, monkeypatch):
    for name in ("NodeProxy", "L2Announcer", "ProbeManager"):
        monkeypatch.setattr(core, name, StandIn)
    layout = ClusterLayout("canary")
    state = ClusterState(layout, tmp_path / "canary")
    state.create({"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "canary", "nodes": 2,
                  "kubeProxy": {"syncPeriod": "1h"}}, list(yaml.safe_load_all(MANIFESTS)))
    netlink = FakeNetlink()
    for node in ("node1", "node2"):
        netlink.create_namespace(layout.node_netns(node))
        netlink.apply(layout.node_netns(node), [Change("add", Link("cni0", "bridge", up=True))])
        netlink.ns[layout.node_netns(node)].sysctls.update({"net.ipv4.conf.all.send_redirects": "1",
                                                            "net.ipv4.conf.cni0.send_redirects": "1"})
    run, kernels = RecordingRunner(), {}

    def policy(node, netns):
        kernels[node] = FakeKernel()
        return NodePolicy(node, netns, run=run, counter=kernels[node])

    supervisor = Supervisor(layout, state, dataplane_factory=RealLookingDataPlane, runtime_factory=FakeRuntime,
                            netlink_factory=lambda: netlink, policy_factory=policy)
    supervisor.start()
    try:
        for node, kernel in kernels.items():
            kernel.load(supervisor.policies[node].watched())
        loads = len(run.calls)
        supervisor.check_rules()
        assert len(run.calls) == loads  # intact: nothing loaded

        del kernels["node2"].tables[("inet", "podnet-netpol")]  # nft delete table inet podnet-netpol
        kernels["node2"].commit()
        supervisor.check_rules()
        assert len(run.calls) == loads  # within the syncPeriod (1h): not looked at yet
        supervisor._rules_check_at = 0.0  # the hour is up
        supervisor.check_rules()
        [(argv, text)] = run.calls[loads:]
        assert layout.node_netns("node2") in argv
        assert text.startswith("add table inet podnet-netpol\ndelete table inet podnet-netpol\n")
        [event] = [e for e in supervisor.events.list() if e["reason"] == "NetworkPolicyRulesChanged"]
        assert event["type"] == "Warning" and event["involvedObject"]["name"] == "node2"
        assert "table inet podnet-netpol was deleted" in event["message"]
        assert event["source"]["component"] == "kube-network-policies"
        assert "node2" not in supervisor.policy_errors and supervisor.policies["node2"].loaded is not None
    finally:
        supervisor.stop()


@pytest.mark.parametrize("written, seconds", [(None, 1.0), ("30s", 30.0), ("250ms", 0.25), ("1h", 3600.0)])
def test_kube_proxy_sync_period_is_a_go_duration_one_second_by_default(written, seconds):
    text = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: t\n"
    config = parse_config(text + (f"kubeProxy: {{syncPeriod: {written}}}\n" if written else ""), "cluster.yaml")
    assert config.kube_proxy.sync_period == seconds
    assert parse_config(text + "kubeProxy: " + str(config.to_dict()["kubeProxy"]) + "\n",
                        "cluster.yaml").kube_proxy == config.kube_proxy


@pytest.mark.parametrize("written, message", [
    ("{syncPeriod: 0s}", "must be greater than 0"),
    ("{syncPeriod: 30}", "is not a duration"),
    ("{minSyncPeriod: 1s}", "unknown field (allowed: syncPeriod)"),
    ("[syncPeriod]", "must be a mapping"),
])
def test_a_wrong_kube_proxy_sync_period_is_refused_with_its_field(written, message):
    with pytest.raises(PodnetError) as caught:
        parse_config(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: t\nkubeProxy: {written}\n", "cluster.yaml")
    assert "cluster.yaml:4" in str(caught.value) and "kubeProxy" in str(caught.value) and message in str(caught.value)
