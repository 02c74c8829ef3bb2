"""podnet probe without a cluster: the in-pod prober on loopback, the matrices measure() builds
from its answers, and the comparison with the simulator (tests/test_probe_root.py runs it for real)."""

from __future__ import annotations

import io
import json
import socket
import threading

import pytest

from podnet.cli import probe as probe_command
from podnet.cli.matrix import write_table
from podnet.linux import connect
from podnet.linux.reach import Destination, ProbeFailed, disagreements, measure, predicted, sctp_unsupported
from podnet.semantics.networkpolicy import PolicyEngine
from podnet.semantics.reachability import Matrix, reachability
from tests.conftest import cluster_of, free_port, run_cli
from tests.livemodel import serving_model_yaml
from tests.netpol_cases import DENY_INGRESS, PODS


@pytest.fixture
def servers():
    """A TCP listener and a UDP echo on 127.0.0.1, a UDP socket that never answers, a closed port."""
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    closed = socket.socket()
    # bound, never listening: its port refuses TCP; UDP too, as nothing else takes a port of this
    # process's slice (bind(0) could pick a port some UDP socket on the host already holds)
    closed.bind(("127.0.0.1", free_port(tcp=True, udp=True)))
    stop = threading.Event()

    def echo():
        udp.settimeout(0.1)
        while not stop.is_set():
            try:
                data, peer = udp.recvfrom(64)
            except TimeoutError:
                continue
            udp.sendto(b"server", peer)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    yield {"tcp": tcp.getsockname()[1], "udp": udp.getsockname()[1], "silent": silent.getsockname()[1],
           "closed": closed.getsockname()[1]}
    stop.set()
    thread.join()
    for s in (tcp, udp, silent, closed):
        s.close()


# ---- the prober that runs inside a pod

def test_tcp_connection_and_refusal_are_told_apart(servers):
    assert connect.probe("TCP", [("127.0.0.1", servers["tcp"]), ("127.0.0.1", servers["closed"])], 2.0) == \
        ["connected", "refused"]


def test_udp_counts_a_reply_refusal_and_silence(servers):
    # the reply comes from a thread of this process, which a loaded machine may not run for a
    # while: long for the answers that must come, short only for the silence
    answering = [("127.0.0.1", servers["udp"]), ("127.0.0.1", servers["closed"])]
    assert connect.probe("UDP", answering, 30.0, attempts=1) == ["connected", "refused"]
    assert connect.probe("UDP", [("127.0.0.1", servers["silent"])], 0.3, attempts=1) == ["timeout"]


def test_a_failed_attempt_is_tried_again_and_a_silent_one_stays_a_timeout(servers):
    assert connect.probe("UDP", [("127.0.0.1", servers["silent"])], 0.2, attempts=2) == ["timeout"]


def test_more_targets_than_the_window_are_all_answered_in_order(servers, monkeypatch):
    monkeypatch.setattr(connect, "MAX_IN_FLIGHT", 3)
    targets = [("127.0.0.1", servers["tcp"] if i % 2 else servers["closed"]) for i in range(10)]
    assert connect.probe("TCP", targets, 2.0) == ["refused", "connected"] * 5


@pytest.mark.skipif(sctp_unsupported() is None, reason="this kernel has SCTP sockets")
def test_sctp_without_sockets_is_an_error_not_a_verdict():
    [outcome] = connect.probe("SCTP", [("127.0.0.1", 80)], 0.2, attempts=1)
    assert outcome.startswith("error: ")


def test_the_prober_reads_its_request_on_stdin_and_prints_json(servers, monkeypatch, capsys):
    request = {"protocol": "TCP", "timeout": 2, "targets": [["127.0.0.1", servers["tcp"]]]}
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(request)))
    assert connect.main() == 0
    assert json.loads(capsys.readouterr().out) == ["connected"]


# ---- measure: one prober per source, answers into matrices

def in_process(outcome_override: dict[str, str] | None = None):
    """A runner that runs the prober here (no namespaces); argv is ["pod", ref]."""
    def run(argv, stdin, timeout):
        request = json.loads(stdin)
        if outcome_override and argv[1] in outcome_override:
            return json.dumps([outcome_override[argv[1]]] * len(request["targets"]))
        return json.dumps(connect.probe(request["protocol"], [tuple(t) for t in request["targets"]],
                                        request["timeout"], request["attempts"]))
    return run


def test_measure_builds_one_matrix_per_port_from_every_sources_answers(servers):
    pods = ["x/a", "x/b", "y/a"]
    destinations = [Destination(p, "127.0.0.1") for p in pods]
    ports = [servers["tcp"], servers["closed"]]
    found = measure({p: ["pod", p] for p in pods}, destinations, ports, "TCP", 2.0,
                    runner=in_process({"y/a": "timeout"}))
    served, closed = found.matrices[ports[0]], found.matrices[ports[1]]
    assert served.pods == pods and served.protocol == "TCP"
    assert served.allowed("x/a", "y/a") and served.allowed("x/b", "x/a")
    assert not any(served.allowed("y/a", d) for d in pods)
    assert closed.count() == 0
    assert found.outcomes[ports[1]][("x/a", "x/b")] == "refused"
    assert found.outcomes[ports[0]][("y/a", "x/a")] == "timeout"
    assert found.summary(ports[0]) == {"connected": 6, "timeout": 3}


def test_a_destination_that_cannot_be_entered_has_an_empty_row(servers):
    destinations = [Destination("x/a", "127.0.0.1"), Destination("x/b", "127.0.0.1")]
    found = measure({"x/a": ["pod", "x/a"]}, destinations, [servers["tcp"]], "TCP", 2.0, runner=in_process())
    matrix = found.matrices[servers["tcp"]]
    assert matrix.allowed("x/a", "x/b") and matrix.rows[1] == 0
    assert ("x/b", "x/a") not in found.outcomes[servers["tcp"]]


def test_a_prober_that_fails_names_its_pod():
    def broken(argv, stdin, timeout):
        raise ProbeFailed("nsenter: cannot open /proc/42/ns/net")

    with pytest.raises(ProbeFailed, match="probing from x/a failed: nsenter"):
        measure({"x/a": ["pod", "x/a"]}, [Destination("x/a", "127.0.0.1")], [80], "TCP", runner=broken)


# ---- the comparison with the simulator

@pytest.fixture(scope="module")
def denied():
    return cluster_of(serving_model_yaml() + "---\n" + DENY_INGRESS)


def all_connected(port: int) -> Matrix:
    return Matrix(port, "TCP", list(PODS), [(1 << len(PODS)) - 1] * len(PODS))


def test_a_kernel_that_ignores_a_deny_policy_disagrees_on_exactly_the_denied_pairs(denied):
    kernel = all_connected(80)
    sim = predicted(denied, reachability(PolicyEngine(denied), 80, "TCP"), kernel.pods)
    outcomes = {(s, d): "connected" for s in PODS for d in PODS}
    found = disagreements(denied, kernel, sim, outcomes)
    assert sim.unknown == frozenset()
    assert {(d.source, d.destination) for d in found} == \
        {(s, d) for s in PODS for d in PODS if d.startswith("x/") and s != d}
    for d in found:
        document = d.to_json()
        assert set(document) == {"from", "to", "kernel", "sim", "outcome", "trace"}
        assert document["kernel"] is True and document["sim"] is False and document["outcome"] == "connected"
        assert document["trace"]["verdict"] == "dropped" and "x/deny-ingress" in document["trace"]["reason"]


def test_a_kernel_that_enforces_it_agrees(denied):
    sim = predicted(denied, reachability(PolicyEngine(denied), 80, "TCP"), list(PODS))
    outcomes = {(s, d): "connected" if sim.matrix.allowed(s, d) else "timeout" for s in PODS for d in PODS}
    assert disagreements(denied, sim.matrix, sim, outcomes) == []


def test_the_simulator_predicts_a_refusal_where_nothing_listens(denied):
    sim = predicted(denied, reachability(PolicyEngine(denied), 82, "TCP"), list(PODS))
    assert sim.matrix.count() == 0 and sim.unknown == frozenset()  # serve-hostname listens on 80 and 81 only


# its own command with the host's python: what it listens on cannot be told (an unknown image
# would be a stand-in, whose ports the simulator knows)
UNKNOWN_IMAGE = """
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: x}
spec: {containers: [{name: c, image: "python:3.12", command: [python3, db.py]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x}
spec: {containers: [{name: c, image: "python:3.12", command: [python3, db.py]}]}
"""


def test_a_refusal_where_the_simulator_cannot_tell_what_listens_is_no_disagreement():
    cluster = cluster_of(UNKNOWN_IMAGE)
    pods = ["x/client", "x/db"]
    sim = predicted(cluster, reachability(PolicyEngine(cluster), 5432, "TCP"), pods)
    assert sim.unknown == frozenset(pods) and sim.matrix.count() == 4
    kernel = Matrix(5432, "TCP", pods, [0b01, 0b10])  # each reaches only itself
    outcomes = {("x/client", "x/client"): "connected", ("x/client", "x/db"): "refused",
                ("x/db", "x/client"): "timeout", ("x/db", "x/db"): "connected"}
    [found] = disagreements(cluster, kernel, sim, outcomes)  # a timeout is a drop: still one
    assert (found.source, found.destination, found.outcome) == ("x/db", "x/client", "timeout")


def test_the_table_of_a_matrix_without_the_external_client_names_every_namespace():
    pods = ["kube-system/coredns-1", "x/a", "y/a", "z/long-name"]
    out = io.StringIO()
    write_table(Matrix(80, "TCP", pods, [15, 15, 15, 15]), out)
    text = out.getvalue()
    assert "columns: kube-system 1, x 2, y 3, z 4" in text
    assert "external" not in text and "ext" not in text.split("\n")[2]


@pytest.mark.parametrize("argv, message", [
    (["-p", "0"], "port 0 is not a port number"),
    (["-p", "80,http"], "port http is not a port number"),
    (["--timeout", "0"], "--timeout must be positive"),
])
def test_bad_options_are_usage_errors(capsys, argv, message):
    code, _, err = run_cli(capsys, "probe", *argv)
    assert code == 2 and message in err


def test_without_root_it_says_what_to_run_instead(capsys, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, out, err = run_cli(capsys, "probe", "-n", "x")
    assert code == 1 and out == ""
    assert "needs root" in err and "podnet matrix -f FILE" in err


def test_the_table_traces_the_first_disagreements_and_lists_the_rest(denied):
    kernel = all_connected(80)
    sim = predicted(denied, reachability(PolicyEngine(denied), 80, "TCP"), kernel.pods)
    found = disagreements(denied, kernel, sim, {(s, d): "connected" for s in PODS for d in PODS})
    out = io.StringIO()
    probe_command._write_disagreements(found, out)
    text = out.getvalue()
    traced = probe_command.TRACED_IN_TABLE
    assert text.count("; its trace:") == traced and text.count("DROPPED") == traced
    assert f"and {len(found) - traced} more (-o json traces every one):" in text
    assert text.rstrip().endswith("z/c -> x/c: kernel connected, simulator blocks")
