"""NodePolicy against the real nft in a scratch namespace (root only): the tables podnet.policy
renders load, set-element syncs change only elements, and a sync nft refuses leaves the
previous table in force — whole, counters included — so a failure never opens a window.
"""

from __future__ import annotations

import re
import secrets
import subprocess

import pytest

from podnet.linux.netpol import NodePolicy
from podnet.proxy.loader import LoadError, run_command
from podnet.semantics.networkpolicy import PolicyEngine
from tests import netpol_cases as cases
from tests.conftest import cluster_of

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces


@pytest.fixture
def netns():
    name = f"npnft{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def listing(netns: str) -> str:
    return run_command(["ip", "netns", "exec", netns, "nft", "list", "table", "inet", "podnet-netpol"])


def test_tables_load_syncs_update_elements_and_a_refused_sync_keeps_the_previous_rules(netns):
    model = cases.model_yaml()
    node = NodePolicy("node1", netns)
    node.sync(cluster_of(model + "---\n" + cases.DENY_INGRESS))
    assert node.status.last_full and "chain ingress/x/deny-ingress" in listing(netns)

    node.sync(cluster_of(model + "---\n" + cases.DENY_INGRESS + "---\n" + cases.X_A_ALLOWS_X_B))
    assert node.status.last_full  # a new policy: the table replaced
    moved = cases.model_yaml(pod_labels={"x/b": {"pod": "c"}, "x/c": {"pod": "b"}})  # same policies, other peers
    peers = "ingress/x/x-a-allows-x-b/0"
    node.sync(cluster_of(moved + "---\n" + cases.DENY_INGRESS + "---\n" + cases.X_A_ALLOWS_X_B))
    assert not node.status.last_full  # pods only: a set-element update
    engine_ips = {ref: str(ep.ip) for ref, ep in PolicyEngine(cluster_of(moved)).pods.items()}
    shown = run_command(["ip", "netns", "exec", netns, "nft", "list", "set", "inet", "podnet-netpol", peers])
    elements = set(re.findall(r"\d+\.\d+\.\d+\.\d+", shown))
    assert engine_ips["x/c"] in elements and engine_ips["x/b"] not in elements
    before = listing(netns)

    def refusing(argv, stdin=None):  # the transaction as the syncer wrote it, made invalid at its end
        return run_command(argv, (stdin or "") + "add rule inet podnet-netpol ingress no-such-statement\n")

    node.run = refusing
    with pytest.raises(LoadError):
        node.sync(cluster_of(model + "---\n" + cases.DENY_ALL))
    assert listing(netns) == before  # the delete of the old table in that transaction did not happen
    assert node.loaded is None and node.status.failures == 1

    node.run = run_command
    node.sync(cluster_of(model + "---\n" + cases.DENY_ALL))
    after = listing(netns)
    assert node.status.last_full and "chain egress/x/deny-all" in after and "x-a-allows-x-b" not in after
    assert set(node.drops()) == {"drops/egress/x/deny-all", "drops/ingress/x/deny-all"}
    # the anti-spoofing table: loaded in the same transactions, each pod's veth with its address
    bridge = run_command(["ip", "netns", "exec", netns, "nft", "list", "table", "bridge", "podnet-netpol"])
    veths = dict(re.findall(r'"(veth[0-9a-f]{8})" \. (\d+\.\d+\.\d+\.\d+)', bridge))
    local = {str(ep.ip) for ep in PolicyEngine(cluster_of(model)).pods.values()
             if ep.node == "node1" and ep.ip and ep.is_policy_pod}
    assert set(veths.values()) == local and "drops/spoofed" in bridge and "ether type != { ip, arp }" in bridge
    node.cleanup()
    assert "podnet-netpol" not in run_command(["ip", "netns", "exec", netns, "nft", "list", "tables"])


def test_the_longest_policy_names_load(netns):
    long = "p" + "-long" * 50  # 251 characters: names past nftables' limit are shortened with a hash
    policy = cases.netpol("x", long, "podSelector: {}\npolicyTypes: [Ingress, Egress]\ningress: [{from: [{podSelector: {}}]}]\n")
    NodePolicy("node1", netns).sync(cluster_of(cases.model_yaml() + "---\n" + policy))
    assert "chain ingress/x/p-long-long" in listing(netns)
