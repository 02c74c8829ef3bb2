"""The live `trace` tells the truth (no root): a node's NetworkPolicy table reduced to a shape
the kernel's own listing can be compared with, each reason a node is not in sync, and what
`trace` prints, answers in JSON and exits with when a crossed node is not in sync."""

from __future__ import annotations

import json

import pytest

from podnet.cli import trace as trace_cli
from podnet.cli.load import LiveState
from podnet.host.layout import ClusterLayout
from podnet.linux.enforced import (
    KUBE_PROXY,
    NETWORK_POLICY,
    NoTable,
    TableShape,
    Unreadable,
    kernel_shape,
    policy_sync,
    proxy_sync,
    ruleset_shape,
)
from podnet.policy import Ruleset, render
from podnet.policy.nftables import NftSet
from tests.conftest import cluster_of, run_cli

# ---- the shape: podnet's ruleset and nft's JSON listing of it ------------------------------------


def small_ruleset() -> Ruleset:
    return Ruleset(
        sets={"ingress-isolated": NftSet("ingress-isolated", "ipv4_addr", elements=("10.244.1.2", "10.244.1.4")),
              "ingress/ns/p/0": NftSet("ingress/ns/p/0", "ipv4_addr", True, ("10.0.0.0/8", "192.168.1.50")),
              "port/tcp/http": NftSet("port/tcp/http", "ipv4_addr . inet_service", elements=("10.244.1.4 . 8080",)),
              "empty": NftSet("empty", "ipv4_addr")},
        counters=["drops/ingress/ns/p"],
        chains={"ingress": ("ct state established,related accept", "meta nfproto ipv4 drop"),
                "ingress/ns/p": ("ip saddr @ingress/ns/p/0 accept",)})


def rule(chain: str) -> dict:
    return {"rule": {"family": "inet", "table": "podnet-netpol", "chain": chain, "handle": 9, "expr": []}}


def listing(flushed: bool = False, **elements) -> dict:
    """What `nft -j list table inet podnet-netpol` answers for small_ruleset (the forms nft 1.0.6
    prints: an interval set's CIDR as a prefix, its /32 as an address, a concatenation as a list)."""
    sets = {"ingress-isolated": ["10.244.1.4", "10.244.1.2"],  # nft's order is not podnet's
            "ingress/ns/p/0": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, "192.168.1.50"],
            "port/tcp/http": [{"concat": ["10.244.1.4", 8080]}],
            "empty": None, **elements}
    entries = [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "podnet-netpol"}},
               {"counter": {"family": "inet", "name": "drops/ingress/ns/p", "packets": 7, "bytes": 420}}]
    for name, elem in sets.items():
        body = {"family": "inet", "name": name, "table": "podnet-netpol", "type": "ipv4_addr"}
        if elem is not None:
            body["elem"] = elem
        entries.append({"set": body})
    entries += [{"chain": {"family": "inet", "table": "podnet-netpol", "name": "ingress", "hook": "postrouting"}},
                {"chain": {"family": "inet", "table": "podnet-netpol", "name": "ingress/ns/p"}}]
    if not flushed:
        entries += [rule("ingress"), rule("ingress"), rule("ingress/ns/p")]
    return {"nftables": entries}


def test_the_kernels_listing_of_the_table_podnet_loaded_has_its_shape():
    assert kernel_shape(listing()) == ruleset_shape(small_ruleset())
    assert ruleset_shape(small_ruleset()).describe() == "2 chains, 3 rules, 4 sets, 5 set elements"


def test_counters_packets_do_not_change_the_shape():
    counted = listing()
    counted["nftables"][2]["counter"]["packets"] = 1000
    assert kernel_shape(counted) == ruleset_shape(small_ruleset())


def test_a_table_flushed_by_hand_has_another_shape():
    """`nft flush table` empties every chain and keeps the sets: the rule counts tell."""
    flushed = kernel_shape(listing(flushed=True))
    assert flushed.digest != ruleset_shape(small_ruleset()).digest and flushed.rules == 0


def test_a_set_missing_an_element_or_holding_another_has_another_shape():
    missing = kernel_shape(listing(**{"ingress-isolated": ["10.244.1.2"]}))
    other = kernel_shape(listing(**{"ingress-isolated": ["10.244.1.2", "10.244.1.9"]}))
    expected = ruleset_shape(small_ruleset())
    assert missing.digest != expected.digest and missing.elements == expected.elements - 1
    assert other.digest != expected.digest and other.elements == expected.elements


def test_the_shape_survives_the_supervisors_json():
    shape = ruleset_shape(small_ruleset())
    assert TableShape.from_json(json.loads(json.dumps(shape.to_json()))) == shape


# ---- judging a node ---------------------------------------------------------------------------

LOADED = ruleset_shape(small_ruleset())


def record(generation=4, error=None, loaded=LOADED):
    return {"generation": generation, "lastError": error, "syncs": 3, "failures": 0,
            "loaded": loaded.to_json() if loaded else None}


def kernel(shape=LOADED):
    def read():
        if isinstance(shape, Exception):
            raise shape
        return shape
    return read


def test_a_node_whose_kernel_holds_what_podnet_loaded_from_this_state_is_in_sync():
    assert policy_sync("node1", 4, record(), kernel()).in_sync


@pytest.mark.parametrize("why, rec, read, says", [
    ("a failed sync", record(error="nft -f -: Error: Could not process rule"), kernel(),
     "last sync failed: nft -f -: Error: Could not process rule; the kernel still enforces the previous rules"),
    ("a pending sync", record(generation=3), kernel(),
     "a sync is pending: the kernel holds the rules of state generation 3, this trace used generation 4"),
    ("no good sync yet", record(generation=None, loaded=None), kernel(), "no sync has succeeded yet"),
    ("no record", None, kernel(), "the supervisor reports no NetworkPolicy sync for this node"),
    ("a lost table", record(), kernel(NoTable("No such file or directory")),
     "the kernel has no table inet podnet-netpol (deleted outside podnet?), so nothing is enforced"),
    ("an unreadable table", record(), kernel(Unreadable("nft: Permission denied")),
     "the kernel's table could not be read: nft: Permission denied"),
    ("a table flushed by hand", record(), kernel(kernel_shape(listing(flushed=True))),
     "the kernel's table differs from what podnet loaded: the kernel has 2 chains, 0 rules, "
     "4 sets, 5 set elements, podnet loaded 2 chains, 3 rules, 4 sets, 5 set elements; changed outside podnet?"),
])
def test_a_node_not_in_sync_says_why(why, rec, read, says):
    verdict = policy_sync("node2", 4, rec, read)
    assert not verdict.in_sync and verdict.reason == says
    assert verdict.describe() == f"node2: NetworkPolicy rules NOT in sync with this state ({says})"


def test_the_kernel_is_not_read_when_the_record_already_says_it_is_not_in_sync():
    def read():
        raise AssertionError("read although the sync failed")
    assert not policy_sync("node1", 4, record(error="refused"), read).in_sync


def test_kube_proxy_is_judged_by_its_record():
    assert proxy_sync("node1", {"pending": False, "lastError": None}).in_sync
    assert proxy_sync("node1", {"pending": True, "lastError": None}).reason == \
        "a sync is pending: the kernel still holds the previous Service rules"
    assert proxy_sync("node1", {"pending": True, "lastError": "nft: refused"}).reason.startswith(
        "last sync failed: nft: refused")


# ---- podnet trace on a live cluster (the supervisor's reading and the kernel faked) -------------

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
MANIFESTS = f"""
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: default, labels: {{app: client}}}}
spec: {{nodeName: node1, containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: server, namespace: default, labels: {{app: web}}}}
spec:
  nodeName: node2
  containers: [{{name: c, image: {AGNHOST}, args: [netexec, --http-port=8080], ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web-from-client, namespace: default}}
spec:
  podSelector: {{matchLabels: {{app: web}}}}
  ingress: [{{from: [{{podSelector: {{matchLabels: {{app: client}}}}}}]}}]
"""
GENERATION = 7


@pytest.fixture
def live(monkeypatch):
    """A two-node cluster as the supervisor would report it, every node in sync; the kernel's
    tables are what podnet rendered (tests change `nodes` and `tables`)."""
    cluster = cluster_of(MANIFESTS, "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 2\n")
    layout = ClusterLayout("livetrace")
    shapes = {node.name: ruleset_shape(render(cluster, node.name)) for node in cluster.nodes}
    nodes = {name: {"networkPolicy": record(GENERATION, loaded=shape), "kubeProxy": {"pending": False, "lastError": None}}
             for name, shape in shapes.items()}
    tables = {layout.node_netns(name): shape for name, shape in shapes.items()}
    state = LiveState(layout, cluster, GENERATION, nodes)
    read = []

    def read_kernel(netns):
        read.append(netns)
        return tables[netns]

    monkeypatch.setattr(trace_cli, "running_state", lambda name: state)
    monkeypatch.setattr(trace_cli, "read_kernel_shape", read_kernel)
    monkeypatch.setattr(trace_cli, "request", lambda layout, op: {"generation": GENERATION})
    return state, tables, read


def test_live_trace_in_sync_reads_each_crossed_node_once_and_exits_0(live, capsys):
    state, _, read = live
    code, out, _ = run_cli(capsys, "trace", "default/client", "web", "--name", "livetrace", "-o", "json")
    answer = json.loads(out)
    assert code == 0 and answer["verdict"] == "delivered" and answer["inSync"] is True
    assert {(c["node"], c["rules"]) for c in answer["sync"]} == {
        ("node1", NETWORK_POLICY), ("node2", NETWORK_POLICY), ("node1", KUBE_PROXY)}
    assert sorted(read) == sorted(state.layout.node_netns(n) for n in ("node1", "node2"))
    checked = {h["action"]: h["inSync"] for h in answer["hops"] if "inSync" in h}
    assert checked == {"service": True, "egress-allow": True, "ingress-allow": True}


def test_a_failed_sync_on_the_destinations_node_is_said_at_its_hop_and_exits_3(live, capsys):
    state, _, _ = live
    state.nodes["node2"]["networkPolicy"]["lastError"] = "nft -f -: Error: Could not process rule: No such file"
    code, out, _ = run_cli(capsys, "trace", "default/client", "web", "--name", "livetrace")
    assert code == trace_cli.NOT_IN_SYNC == 3
    lines = out.splitlines()
    ingress = next(i for i, line in enumerate(lines) if "ingress-allow" in line)
    assert lines[ingress + 1].strip() == (
        "! node2: NetworkPolicy rules NOT in sync with this state (last sync failed: nft -f -: Error: Could not "
        "process rule: No such file; the kernel still enforces the previous rules): this hop is a prediction")
    assert not any(line.strip().startswith("! node1") for line in lines)
    assert "NOT IN SYNC: the kernel may not do what this trace predicts; this verdict is a prediction:" in out
    assert "DELIVERED:" in out  # the prediction is still shown


def test_a_table_flushed_by_hand_is_found_in_the_kernel_and_marked_in_json(live, capsys):
    state, tables, _ = live
    netns = state.layout.node_netns("node1")
    tables[netns] = TableShape(tables[netns].chains, 0, tables[netns].sets, tables[netns].elements, "0" * 16)
    code, out, _ = run_cli(capsys, "trace", "default/client", "web", "--name", "livetrace", "-o", "json")
    answer = json.loads(out)
    assert code == 3 and answer["inSync"] is False
    stale = [c for c in answer["sync"] if not c["inSync"]]
    assert [(c["node"], c["rules"]) for c in stale] == [("node1", NETWORK_POLICY)]
    assert stale[0]["reason"].startswith("the kernel's table differs from what podnet loaded")
    egress = next(h for h in answer["hops"] if h["action"] == "egress-allow")
    assert egress["inSync"] is False and egress["syncReason"] == stale[0]["reason"]


def test_a_pending_kube_proxy_sync_is_said_at_the_service_hop(live, capsys):
    state, _, _ = live
    state.nodes["node1"]["kubeProxy"]["pending"] = True
    code, out, _ = run_cli(capsys, "trace", "default/client", "web", "--name", "livetrace")
    lines = out.splitlines()
    service = next(i for i, line in enumerate(lines) if " service " in line)
    assert code == 3 and lines[service + 1].strip().startswith("! node1: kube-proxy rules NOT in sync with this state")


def test_a_change_while_tracing_is_noted(live, capsys, monkeypatch):
    state, _, _ = live
    state.nodes["node2"]["networkPolicy"]["generation"] = GENERATION - 1
    monkeypatch.setattr(trace_cli, "request", lambda layout, op: {"generation": GENERATION + 1})
    code, _, err = run_cli(capsys, "trace", "default/client", "web", "--name", "livetrace")
    assert code == 3 and "the cluster changed while tracing" in err


def test_an_offline_trace_reads_no_kernel(live, capsys, tmp_path):
    _, _, read = live
    (tmp_path / "m.yaml").write_text(MANIFESTS)
    code, out, _ = run_cli(capsys, "trace", "default/client", "web", "-f", str(tmp_path / "m.yaml"), "-o", "json")
    assert code == 0 and read == [] and "inSync" not in json.loads(out)
