"""The live `trace` tells the truth, on a real cluster (root only): two nodes, a client on node1,
a server behind a Service on node2, a NetworkPolicy admitting the client. trace reads each
crossed node's NetworkPolicy table from its kernel; the test changes a table behind podnet's
back (`nft flush table`, `nft delete table` in the node's namespace, as an administrator
might) and checks that trace names that node at its hop, marks the JSON and exits 3 — and that
it is in sync again once a policy change has made the supervisor rewrite the table. The
cluster has a unique name and is removed in a finally, also when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from tests.livecluster import leftovers, podnet
from tests.test_trace_live import MANIFESTS  # the same small cluster the CLI tests fake

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

# a second policy: a change of the table's structure, so the supervisor rewrites it whole
CLIENT_EGRESS = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  egress: [{to: [{podSelector: {}}]}, {ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]}]
"""

# a policy selecting no pod: still a new chain on every node, so a sync that must replace the table
NOBODY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: nobody, namespace: default}
spec: {podSelector: {matchLabels: {app: nobody}}, policyTypes: [Ingress]}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("livetrace")
    name = f"tr{secrets.token_hex(3)}"
    (tmp / "app.yaml").write_text(MANIFESTS)
    (tmp / "egress.yaml").write_text(CLIENT_EGRESS)
    (tmp / "nobody.yaml").write_text(NOBODY)
    # syncPeriod 1h: the tables changed by hand stay changed for trace to see (podnet repairs them
    # within a syncPeriod, 1 s by default: tests/test_rule_canary_root.py)
    (tmp / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n"
                                      "kubeProxy: {syncPeriod: 1h}\n")
    started = False
    try:
        podnet("up", "-f", str(tmp / "app.yaml"), "--config", str(tmp / "cluster.yaml"), timeout=120)
        started = True
        yield name, tmp
    finally:
        if started or leftovers(name):
            podnet("down", "--name", name, check=False)
        assert leftovers(name) == [], f"left behind: {leftovers(name)}"


def trace(name: str, *extra: str):
    proc = podnet("trace", "default/client", "web", "--name", name, *extra, check=False)
    assert proc.returncode in (0, 3), proc.stdout + proc.stderr
    return proc


def trace_json(name: str) -> tuple[int, dict]:
    proc = trace(name, "-o", "json")
    return proc.returncode, json.loads(proc.stdout)


def in_sync_soon(name: str, limit: float = 60.0) -> dict:
    """trace's answer once every crossed node is in sync (kube-proxy syncs shortly after a
    change, in its own thread; a generous limit: the machine may be loaded)."""
    deadline = time.monotonic() + limit
    while True:
        code, answer = trace_json(name)
        if code == 0:
            return answer
        assert time.monotonic() < deadline, f"never in sync: {answer.get('sync')}"
        time.sleep(0.3)


def stale(answer: dict) -> list[tuple[str, str]]:
    return [(c["node"], c["rules"]) for c in answer["sync"] if not c["inSync"]]


def test_the_kernels_tables_are_what_podnet_loaded_and_trace_says_in_sync(cluster):
    name, _ = cluster
    answer = in_sync_soon(name)
    assert answer["inSync"] is True and answer["verdict"] == "delivered"
    assert {(c["node"], c["rules"]) for c in answer["sync"]} == {
        ("node1", "kube-proxy"), ("node1", "NetworkPolicy"), ("node2", "NetworkPolicy")}


def test_a_table_flushed_by_hand_is_reported_at_its_hop_until_a_resync(cluster):
    name, tmp = cluster
    in_sync_soon(name)
    podnet("exec", "node/node2", "--name", name, "--", "nft", "flush", "table", "inet", "podnet-netpol")
    code, answer = trace_json(name)
    assert code == 3 and answer["inSync"] is False and stale(answer) == [("node2", "NetworkPolicy")]
    reason = next(c["reason"] for c in answer["sync"] if not c["inSync"])
    assert reason.startswith("the kernel's table differs from what podnet loaded") and " 0 rules," in reason
    ingress = next(h for h in answer["hops"] if h["action"].startswith("ingress-"))
    assert ingress["inSync"] is False and ingress["syncReason"] == reason
    text = trace(name)
    assert text.returncode == 3
    assert "! node2: NetworkPolicy rules NOT in sync with this state (the kernel's table differs from what podnet loaded" \
        in text.stdout
    podnet("apply", "-f", str(tmp / "egress.yaml"), "--name", name)  # a new structure: the table is rewritten
    assert in_sync_soon(name)["inSync"] is True


def test_a_table_deleted_by_hand_is_reported_until_a_resync(cluster):
    name, tmp = cluster
    in_sync_soon(name)
    podnet("exec", "node/node1", "--name", name, "--", "nft", "delete", "table", "inet", "podnet-netpol")
    code, answer = trace_json(name)
    assert code == 3 and stale(answer) == [("node1", "NetworkPolicy")]
    reason = next(c["reason"] for c in answer["sync"] if not c["inSync"])
    assert reason == "the kernel has no table inet podnet-netpol (deleted outside podnet?), so nothing is enforced"
    egress = next(h for h in answer["hops"] if h["action"].startswith("egress-"))
    assert egress["inSync"] is False
    # deleting the policy changes the structure; a failed incremental sync would rewrite it too
    podnet("delete", "-f", str(tmp / "egress.yaml"), "--name", name)
    assert in_sync_soon(name)["inSync"] is True


def test_a_sync_the_kernel_refuses_is_reported_with_its_error_until_a_retry_holds(cluster):
    """Another program owns the node's table (`flags owner`: only its netlink socket may change
    the table, and it goes when that program ends), so the supervisor's next replacement of the
    table fails with EPERM: trace names the failed sync; once the owner is gone, the supervisor's
    retry (back-off up to 5 s) loads the table and trace is in sync again."""
    name, tmp = cluster
    in_sync_soon(name)
    owner = subprocess.Popen([sys.executable, "-m", "podnet", "exec", "node/node2", "--name", name, "--", "nft", "-i"],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    try:
        owner.stdin.write("delete table inet podnet-netpol\nadd table inet podnet-netpol { flags owner; }\n")
        owner.stdin.flush()
        deadline = time.monotonic() + 30
        # the owned, empty table in place: node2 out of sync (0 rules; or unreadable, as nft 1.0.6
        # writes the JSON of a table with `flags owner` cut short)
        while all(c["inSync"] for c in trace_json(name)[1]["sync"] if c["node"] == "node2"):
            assert time.monotonic() < deadline, "the owned, empty table never showed"
            time.sleep(0.2)
        applied = podnet("apply", "-f", str(tmp / "nobody.yaml"), "--name", name)
        assert "Warning: NetworkPolicy sync on node node2 failed" in applied.stdout
        code, answer = trace_json(name)
        assert code == 3 and stale(answer) == [("node2", "NetworkPolicy")]
        reason = next(c["reason"] for c in answer["sync"] if not c["inSync"])
        assert reason.startswith("last sync failed: ") and "Operation not permitted" in reason
        assert reason.endswith("; the kernel still enforces the previous rules")
    finally:
        owner.stdin.close()  # the owner ends, and its table with it
        owner.wait(timeout=30)
    assert in_sync_soon(name)["inSync"] is True
