"""The supervisor itself, on a fake data plane and a fake runtime (no root): what start,
apply and delete ask of the kernel and the processes, and what they leave on disk."""

from __future__ import annotations

import io
import os
import stat
import sys
import threading
import time

import pytest

from podnet.cli import trace as trace_cli
from podnet.cli.load import LiveState
from podnet.controlplane.snapshot import cluster_from_objects
from podnet.errors import PodnetError
from podnet.host.control import LiveCluster, NotRunning, send
from podnet.host.layout import ClusterLayout
from podnet.linux.supervisor import core, server
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.loop import run, step
from podnet.linux.supervisor.server import handle, serving
from podnet.linux.supervisor.state import ClusterState, documents_text
from podnet.linux.netlink import Change, FakeNetlink, Link, Route
from podnet.linux.netpol import NodePolicy
from podnet.proxy.loader import RecordingRunner
from podnet.proxy.node import SyncStatus
from podnet.sim.trace import Tracer
from tests.supervisor_fakes import DEPLOYMENT, FakeDataPlane, FakeRuntime

CONFIG = {"kind": "Cluster", "apiVersion": "podnet.dev/v1alpha1", "name": "sup", "nodes": 2}


def pod(name):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "pause"}, {"name": "d", "image": "pause"}]}}


def scaled(replicas):
    return {**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": replicas}}


@pytest.fixture
def state(tmp_path):
    state = ClusterState(ClusterLayout("sup"), tmp_path / "sup")
    state.create(CONFIG, [DEPLOYMENT])
    return state


@pytest.fixture
def supervisor(state):
    supervisor = Supervisor(ClusterLayout("sup"), state, dataplane_factory=FakeDataPlane, runtime_factory=FakeRuntime)
    supervisor.start()
    return supervisor


def running(supervisor, prefix="default/"):
    return sorted(ref for ref in supervisor.runtime.pods if ref.startswith(prefix))


def addresses(supervisor):
    return {p.ref: p.body["status"]["podIP"] for p in supervisor.cluster.of_kind("Pod")}


def apply(supervisor, *bodies, delete=False):
    return supervisor.change(documents_text(list(bodies)), delete=delete)


def test_start_builds_the_network_then_attaches_and_starts_every_pod(supervisor):
    assert supervisor.dataplane.calls[0] == ("build",)
    pods = sorted(p.ref for p in supervisor.cluster.of_kind("Pod"))
    assert sorted(supervisor.runtime.pods) == pods == sorted(supervisor.dataplane.attached)  # DNS pods too
    assert len(running(supervisor)) == 2
    for ref, sandbox in supervisor.runtime.pods.items():
        assert sandbox.netns == supervisor.layout.pod_netns(*ref.split("/"))
    assert supervisor.status()["ready"] is True
    assert supervisor.proxies == {} and supervisor.prober is None  # a fake data plane has none


def test_apply_starts_the_new_pod_only_and_saves_the_manifests(supervisor, state):
    before = addresses(supervisor)
    generation = supervisor.generation
    reply = apply(supervisor, pod("extra"))
    assert reply == {"lines": ["pod/extra created"], "started": ["default/extra"], "stopped": []}
    assert [c for c in supervisor.runtime.calls if c[0] in ("start", "stop")][-1][:2] == ("start", "default/extra")
    assert {ref: addresses(supervisor)[ref] for ref in before} == before  # nobody moved
    assert supervisor.generation > generation  # watchers (the cluster DNS) see the change
    assert [b["metadata"]["name"] for b in state.manifests()] == ["web", "extra"]


def test_applying_the_same_again_changes_nothing(supervisor):
    apply(supervisor, pod("extra"))
    calls = len(supervisor.runtime.calls)
    reply = apply(supervisor, pod("extra"))
    assert reply == {"lines": ["pod/extra configured"], "started": [], "stopped": []}
    assert len(supervisor.runtime.calls) == calls


def test_scaling_up_keeps_the_running_pods_names_and_addresses(supervisor):
    before = {ref: addresses(supervisor)[ref] for ref in running(supervisor)}
    reply = apply(supervisor, scaled(4))
    assert reply["lines"] == ["deployment/web configured"]
    assert len(reply["started"]) == 2 and reply["stopped"] == []
    assert {ref: addresses(supervisor)[ref] for ref in before} == before
    assert set(before) < set(running(supervisor))


def test_delete_stops_and_detaches_the_pods_and_saves_the_manifests(supervisor, state):
    web = running(supervisor)
    reply = apply(supervisor, DEPLOYMENT, pod("never"), delete=True)
    assert reply["lines"] == ["deployment/web deleted", 'Error from server (NotFound): pod "never" not found']
    assert reply["stopped"] == web and reply["started"] == []
    assert state.manifests() == []
    # the pods terminate in the background (tests/test_supervisor_termination.py), then go
    assert supervisor.wait_for_terminations(timeout=30)
    assert running(supervisor) == []
    assert sorted(c for c in supervisor.dataplane.calls if c[0] == "detach") == [("detach", ref) for ref in web]
    step(supervisor)
    assert [p.ref for p in supervisor.cluster.of_kind("Pod", "default")] == []


def test_a_pod_that_fails_to_start_is_reported_and_the_rest_go_on(supervisor):
    supervisor.runtime.fail.add("default/bad")
    reply = apply(supervisor, pod("bad"), pod("good"))
    assert reply["lines"] == ["pod/bad created", "pod/good created",
                              "Error: pod default/bad: default/bad would not start could not start"]
    assert "default/good" in running(supervisor) and "default/bad" not in running(supervisor)
    # as before the split: it is not tried again by the next change, only once deleted and applied
    assert apply(supervisor, pod("other"))["started"] == ["default/other"]


def test_a_change_that_needs_a_new_node_changes_nothing(supervisor, state):
    calls = list(supervisor.runtime.calls)
    generation = supervisor.generation
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node9"}}
    with pytest.raises(PodnetError, match="node node9 does not exist"):
        apply(supervisor, node, pod("extra"))
    assert supervisor.runtime.calls == calls and supervisor.generation == generation
    assert [b["metadata"]["name"] for b in state.manifests()] == ["web"]


def test_a_change_once_down_began_is_refused_and_changes_nothing(supervisor, state):
    """An apply that reaches the supervisor after `down` (stop() teardown): what it started,
    nothing would remove."""
    calls = list(supervisor.runtime.calls)
    supervisor.stopping.set()
    with pytest.raises(PodnetError, match="is being removed"):
        apply(supervisor, pod("late"))
    assert supervisor.runtime.calls == calls
    assert [b["metadata"]["name"] for b in state.manifests()] == ["web"]


def test_an_invalid_request_changes_nothing(supervisor, state):
    with pytest.raises(PodnetError):
        supervisor.change("apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n  metadata: {}\n", delete=False)
    assert [b["metadata"]["name"] for b in state.manifests()] == ["web"]


def test_a_readiness_change_recomputes_and_keeps_the_pods(supervisor):
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    apply(supervisor, service)
    ref = running(supervisor)[0]
    before, generation = addresses(supervisor), supervisor.generation
    supervisor._probe_changed(ref, "c", ready=False, started=True)
    assert supervisor.state_changed.is_set()
    supervisor.recompute()
    assert supervisor.generation == generation + 1 and addresses(supervisor) == before
    bodies = supervisor.objects()
    [body] = [b for b in bodies if b["kind"] == "Pod" and b["metadata"]["name"] == ref.split("/")[1]]
    assert body["status"]["containerStatuses"][0]["ready"] is False
    [endpoints] = [b["endpoints"] for b in bodies if b["kind"] == "EndpointSlice"
                   and b["metadata"]["labels"].get("kubernetes.io/service-name") == "web"]
    ready = {e["addresses"][0]: e["conditions"]["ready"] for e in endpoints}
    assert ready == {ip: ip != before[ref] for r, ip in before.items() if r in running(supervisor)}


def test_exec_and_logs_find_the_pod_and_its_containers(supervisor, tmp_path):
    apply(supervisor, pod("two"))
    sandbox = supervisor.runtime.pods["default/two"]
    argv = supervisor.exec_argv("default/two", "d")
    # the pod's namespaces; the container's env goes by execve (podnet.linux.withenv), never in argv
    assert argv[-1] == "--" and not any("POD=two" in word for word in argv)
    running = sandbox.containers[1].process
    if running is not None and running.poll() is None:
        assert argv[:5] == [sys.executable, "-m", "podnet.linux.withenv", str(running.pid), "--"]
    assert supervisor.exec_argv("node/node1", None) == ["ip", "netns", "exec", supervisor.layout.node_netns("node1")]
    with pytest.raises(PodnetError, match="container x is not valid for pod default/two, choose one of: \\[c d\\]"):
        supervisor.exec_argv("default/two", "x")
    with pytest.raises(PodnetError, match='node "node7" not found'):
        supervisor.exec_argv("node/node7", None)
    with pytest.raises(PodnetError, match="a container name must be specified"):
        supervisor.logs("default/two", None)
    sandbox.containers[1].log = tmp_path / "d.log"
    sandbox.containers[1].log.write_text("hello\n")
    assert supervisor.logs("default/two", "d") == "hello\n"
    assert supervisor.logs("default/two", "c") == ""  # no log yet


def test_the_api_server_learns_a_pods_netns_and_its_containers_log_file(supervisor):
    apply(supervisor, pod("two"))
    assert handle(supervisor, {"op": "podNetns", "target": "default/two"}) == \
        {"netns": supervisor.layout.pod_netns("default", "two")}
    answer = handle(supervisor, {"op": "logFile", "target": "default/two", "container": "d"})
    sandbox = supervisor.runtime.pods["default/two"]
    assert answer == {"path": str(sandbox.containers[1].log), "running": True, "restarts": 0,
                      "starts": sandbox.containers[1].log_starts}
    with pytest.raises(PodnetError, match="a container name must be specified"):
        handle(supervisor, {"op": "logFile", "target": "default/two"})
    with pytest.raises(PodnetError, match='pod "default/nine" is not running in cluster sup'):
        handle(supervisor, {"op": "podNetns", "target": "default/nine"})


def test_stop_stops_every_pod_and_tears_the_network_down(supervisor):
    supervisor.stop()
    assert supervisor.runtime.pods == {} and supervisor.runtime.calls[-1] == ("stop_all",)
    assert supervisor.dataplane.calls[-1] == ("teardown",)


# ---- the control socket -------------------------------------------------------------------------


def test_apply_admits_the_files_as_read_and_reports_problems_at_their_file_and_line(supervisor, tmp_path):
    """`podnet apply -f` sends the files' texts; the supervisor admits them under their names."""
    good = "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers: [{name: c, image: pause}]\n"
    widget = "---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: y}\nspec:\n  containers: [{name: c, image: pause, portz: 1}]\n"
    with pytest.raises(PodnetError, match=r"^pods/bad.yaml:5: Pod default/y: spec.containers\[0\].portz"):
        handle(supervisor, {"op": "apply", "files": {"pods/good.yaml": good, "pods/bad.yaml": bad}})
    assert "default/x" not in supervisor.runtime.pods  # refused whole
    answer = handle(supervisor, {"op": "apply", "files": {"pods/good.yaml": good + widget}})
    assert answer["lines"] == ["pod/x created"] and answer["started"] == ["default/x"]
    assert answer["warnings"] == ["pods/good.yaml:7: warning: kind Widget (example.com/v1) is not used by podnet; ignored"]


def test_requests_are_dispatched_to_the_supervisor(supervisor):
    assert handle(supervisor, {"op": "ping"}) == {"cluster": "sup", "pid": os.getpid(), "adopted": 0}
    assert handle(supervisor, {"op": "status"})["ready"] is True
    objects = handle(supervisor, {"op": "objects"})
    assert objects["generation"] == handle(supervisor, {"op": "generation"})["generation"]
    assert objects["config"]["name"] == "sup" and len(objects["items"]) == len(supervisor.cluster.objects)
    assert handle(supervisor, {"op": "apply", "documents": documents_text([pod("x")])})["started"] == ["default/x"]
    assert handle(supervisor, {"op": "delete", "documents": documents_text([pod("x")])})["stopped"] == ["default/x"]
    assert handle(supervisor, {"op": "exec", "target": "external"})["argv"][-1] == supervisor.layout.external_netns
    assert handle(supervisor, {"op": "logs", "target": running(supervisor)[0]}) == {"text": ""}
    assert not supervisor.stopping.is_set()
    assert handle(supervisor, {"op": "down"}) == {"stopping": True}
    assert supervisor.stopping.is_set()
    with pytest.raises(PodnetError, match="unknown request 'reboot'"):
        handle(supervisor, {"op": "reboot"})


def test_the_socket_answers_errors_as_one_line_and_keeps_serving(supervisor, tmp_path):
    def handler(message):
        if message["op"] == "crash":
            raise KeyError("boom")
        return handle(supervisor, message)

    path = tmp_path / "s.sock"
    with serving(path, handler):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0  # only its owner, root, talks to a cluster
        assert send(path, {"op": "ping"})["cluster"] == "sup"
        with pytest.raises(PodnetError, match="^supervisor error: KeyError: 'boom'$"):
            send(path, {"op": "crash"})
        with pytest.raises(PodnetError, match="^unknown request 'nope'$"):
            send(path, {"op": "nope"})
        assert send(path, {"op": "apply", "documents": documents_text([pod("y")])})["lines"] == ["pod/y created"]
    with pytest.raises(NotRunning):
        send(path, {"op": "ping"}, timeout=1)


def test_a_watch_answers_as_soon_as_the_generation_moves_and_otherwise_at_its_timeout(supervisor, monkeypatch):
    monkeypatch.setattr(server, "WATCH_TIMEOUT", 3600.0)  # only the change can answer within the test's wait
    generation = supervisor.generation
    assert handle(supervisor, {"op": "watch", "after": generation, "timeout": 0.05}) == {"generation": generation}
    assert handle(supervisor, {"op": "watch", "after": generation - 1}) == {"generation": generation}
    answers = []
    watcher = threading.Thread(target=lambda: answers.append(
        handle(supervisor, {"op": "watch", "after": generation, "timeout": 3600})), daemon=True)
    watcher.start()
    apply(supervisor, scaled(3))
    watcher.join(60)
    assert answers == [{"generation": generation + 1}]  # answered by the change, not the timeout


def test_a_watch_waiting_when_the_cluster_goes_down_answers(supervisor, monkeypatch):
    monkeypatch.setattr(server, "WATCH_TIMEOUT", 3600.0)
    answers = []
    watcher = threading.Thread(target=lambda: answers.append(
        handle(supervisor, {"op": "watch", "after": supervisor.generation, "timeout": 3600})), daemon=True)
    watcher.start()
    deadline = time.monotonic() + 60
    while not supervisor.generation_changed._waiters and time.monotonic() < deadline:
        time.sleep(0.01)
    handle(supervisor, {"op": "down"})
    watcher.join(60)
    assert answers == [{"generation": supervisor.generation}]


def test_a_live_cluster_waits_on_the_socket_for_the_next_change(supervisor, tmp_path, monkeypatch):
    """What the cluster DNS and the ingress controller do: the first wait gets the cluster, the
    next one blocks until a change and returns the changed cluster."""
    monkeypatch.setattr(server, "WATCH_TIMEOUT", 3600.0)
    path = tmp_path / "s.sock"
    with serving(path, lambda message: handle(supervisor, message)):
        live = LiveCluster(path)
        first = live.wait(timeout=30)
        assert live.generation == supervisor.generation
        assert len(first.of_kind("Pod")) == len(supervisor.cluster.of_kind("Pod"))
        assert live.wait(timeout=0.05) is None and live.poll() is None
        changed = []
        watcher = threading.Thread(target=lambda: changed.append(live.wait(timeout=3600)), daemon=True)
        watcher.start()
        apply(supervisor, scaled(3))
        watcher.join(60)
        assert live.generation == supervisor.generation
        assert sorted(p.ref for p in changed[0].of_kind("Pod") if p.namespace == "default") == running(supervisor)


# ---- the loop -----------------------------------------------------------------------------------


def test_a_step_reaps_and_recomputes_only_after_a_readiness_change(supervisor):
    generation = supervisor.generation
    step(supervisor)
    assert supervisor.runtime.calls[-1] == ("reap",) and supervisor.generation == generation
    supervisor._probe_changed(running(supervisor)[0], "c", ready=False, started=True)
    step(supervisor)
    assert supervisor.generation == generation + 1 and not supervisor.state_changed.is_set()


def test_a_failing_step_is_logged_and_the_loop_goes_on(supervisor, monkeypatch, caplog):
    def broken():
        raise RuntimeError("no such process")

    monkeypatch.setattr(supervisor.runtime, "reap", broken)
    monkeypatch.setattr(supervisor, "recompute", broken)
    supervisor.state_changed.set()
    step(supervisor)
    assert [r.getMessage() for r in caplog.records] == ["reaping containers failed",
                                                        "recomputing after a readiness change failed"]


def test_run_serves_until_down(supervisor, tmp_path):
    path = tmp_path / "s.sock"
    loop = threading.Thread(target=run, args=(supervisor, path, 0.01))
    loop.start()
    try:
        deadline = time.monotonic() + 60  # generous: a loaded machine is slow, not wrong
        while not (path.exists() and ("reap",) in supervisor.runtime.calls) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ("reap",) in supervisor.runtime.calls  # the loop reaps while the socket serves
        assert send(path, {"op": "status"})["ready"] is True
        assert send(path, {"op": "down"}) == {"ok": True, "stopping": True}
        loop.join(60)
        assert not loop.is_alive()
    finally:
        supervisor.stopping.set()
        loop.join(10)


class RealLookingDataPlane(FakeDataPlane):
    real = True  # the supervisor then starts kube-proxy, the announcer and the prober too


class Recorded:
    """Stands for NodeProxy, L2Announcer or ProbeManager: records how it was made and used."""

    made: list = []
    stopped: list = []
    fail_on: str | None = None
    pending = False  # as a NodeProxy whose last sync held
    status = SyncStatus()

    def __init__(self, *args, **kwargs):
        if self.fail_on is not None and self.fail_on in args:
            raise RuntimeError(f"no proxy on {self.fail_on}")
        Recorded.made.append(args)

    def sync_now(self, cluster) -> None:
        pass

    def sync(self, cluster) -> None:
        pass

    def update(self, cluster) -> None:
        pass

    def add_pod(self, sandbox) -> None:
        pass

    def remove_pod(self, ref) -> None:
        pass

    def stop(self, cleanup=True) -> None:
        Recorded.stopped.append((self, cleanup))


def started_with_services(state, monkeypatch, fail_on=None, nft: RecordingRunner | None = None):
    Recorded.made, Recorded.stopped, Recorded.fail_on = [], [], fail_on
    for name in ("NodeProxy", "L2Announcer", "ProbeManager"):
        monkeypatch.setattr(core, name, Recorded)
    kernel = FakeNetlink()
    for node in ("node1", "node2"):  # as the network build leaves a node: cni0, the per-device sysctls
        netns = ClusterLayout("sup").node_netns(node)
        kernel.create_namespace(netns)
        kernel.apply(netns, [Change("add", Link("cni0", "bridge", up=True))])
        kernel.ns[netns].sysctls.update({"net.ipv4.conf.all.send_redirects": "1",
                                         "net.ipv4.conf.cni0.send_redirects": "1"})
    kernel.batches = 0
    nft = nft if nft is not None else RecordingRunner()
    supervisor = Supervisor(ClusterLayout("sup"), state, dataplane_factory=RealLookingDataPlane,
                            runtime_factory=FakeRuntime, netlink_factory=lambda: kernel,
                            policy_factory=lambda node, netns: NodePolicy(node, netns, run=nft))
    return supervisor, kernel


def test_each_node_gets_its_service_route_in_one_netlink_batch_and_the_socket_is_closed(state, monkeypatch):
    supervisor, kernel = started_with_services(state, monkeypatch)
    supervisor.start()
    assert kernel.batches == 2 and kernel.closed
    for node in ("node1", "node2"):
        routes = [e for e in kernel.observe(ClusterLayout("sup").node_netns(node)).entries if isinstance(e, Route)]
        assert Route("10.96.0.0/12", "cni0") in routes
    assert [args[1] for args in Recorded.made if len(args) > 2][:2] == ["node1", "node2"]  # a kube-proxy each


def test_a_node_restart_kills_its_pods_rebuilds_its_rules_then_starts_them_again(state, monkeypatch):
    """`podnet node restart`: only that node's pods, their processes killed before its rules go;
    kube-proxy and the NetworkPolicy table made anew (the table whole, from an empty kernel)
    before a pod of the node runs again; restarts counted; kubelet's events."""
    nft = RecordingRunner()
    supervisor, _ = started_with_services(state, monkeypatch, nft=nft)
    supervisor.start()
    on = {node: sorted(p.ref for p in supervisor.cluster.of_kind("Pod") if p.spec.get("nodeName") == node)
          for node in ("node1", "node2")}
    assert on["node1"] and on["node2"]
    before = addresses(supervisor)
    old_proxy = next(proxy for node, proxy in supervisor.proxies.items() if node == "node2")
    loads, supervisor.runtime.calls = len(nft.calls), []

    answer = handle(supervisor, {"op": "restartNode", "node": "node2"})

    assert answer == {"node": "node2", "pods": on["node2"], "warnings": []}
    calls = supervisor.runtime.calls
    assert calls == [("kill_pods", *on["node2"])] + [("reboot", ref) for ref in on["node2"]]
    netns = ClusterLayout("sup").node_netns("node2")
    flushed, loaded = nft.calls[loads:]
    assert flushed[0][3] == netns and "delete table inet podnet-netpol" in flushed[1]
    assert loaded[0][3] == netns and "table inet podnet-netpol {" in loaded[1]  # whole, as into a new kernel
    assert Recorded.stopped == [(old_proxy, True)] and supervisor.proxies["node2"] is not old_proxy
    for ref, sandbox in supervisor.runtime.pods.items():
        assert [c.restarts for c in sandbox.containers] == [1 if ref in on["node2"] else 0] * len(sandbox.containers)
    assert addresses(supervisor) == before
    # not Ready until the prober has looked at the new containers; node1's pods as they were
    ready = {f"{b['metadata']['namespace']}/{b['metadata']['name']}":
             any(c["type"] == "Ready" and c["status"] == "True" for c in b["status"]["conditions"])
             for b in supervisor.objects(counters=False) if b["kind"] == "Pod"}
    assert not any(ready[ref] for ref in on["node2"])
    assert all(ready[ref] for ref in on["node1"] if ref.startswith("default/"))  # (no probes: Ready as computed)
    said = [(e["involvedObject"]["kind"], e["involvedObject"]["name"], e["reason"]) for e in supervisor.events.list(0)]
    assert ("Node", "node2", "Rebooted") in said and ("Node", "node2", "Starting") in said
    assert {name for kind, name, reason in said if reason == "SandboxChanged"} == {ref.split("/")[1] for ref in on["node2"]}
    with pytest.raises(PodnetError, match='node "node9" not found'):
        supervisor.restart_node("node9")


def test_a_node_restart_whose_rules_fail_to_load_says_so_and_the_loop_retries(state, monkeypatch):
    nft = RecordingRunner()
    supervisor, _ = started_with_services(state, monkeypatch, nft=nft)
    supervisor.start()
    nft.fail = {"nft"}  # the flush and the first sync after the reboot are refused
    answer = supervisor.restart_node("node2")
    assert answer["pods"] and len(answer["warnings"]) == 1 and "node node2's" in answer["warnings"][0]
    assert set(supervisor.policy_errors) == {"node2"} and "node2" in supervisor.policies
    assert all(c.restarts == 1 for ref in answer["pods"] for c in supervisor.runtime.pods[ref].containers)
    nft.fail = set()
    supervisor._policy_retry_at = 0.0
    step(supervisor)
    assert not supervisor.policy_errors
    assert "table inet podnet-netpol {" in nft.inputs("nft")[-1]


DENY_ALL = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: default}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
"""


def test_each_node_loads_its_networkpolicy_table_in_one_nft_transaction_and_apply_updates_it(state, monkeypatch):
    nft = RecordingRunner()
    supervisor, _ = started_with_services(state, monkeypatch, nft=nft)
    supervisor.start()
    loads = nft.inputs("nft")
    assert len(loads) == 2 and all("table inet podnet-netpol {" in t for t in loads)
    assert [argv[3] for argv, _ in nft.calls] == [ClusterLayout("sup").node_netns(n) for n in ("node1", "node2")]
    answer = supervisor.change(DENY_ALL, delete=False)
    assert answer["lines"] == ["networkpolicy/deny-all created"]
    loads = nft.inputs("nft")[2:]
    assert len(loads) == 2 and all("chain egress/default/deny-all" in t for t in loads)


def test_a_failing_networkpolicy_sync_is_reported_and_the_next_one_rewrites_the_table(state, monkeypatch):
    nft = RecordingRunner()
    supervisor, _ = started_with_services(state, monkeypatch, nft=nft)
    supervisor.start()
    nft.fail = {"nft"}  # nft refuses: the kernel keeps the previous table (one transaction)
    answer = supervisor.change(DENY_ALL, delete=False)
    assert answer["lines"][0] == "networkpolicy/deny-all created"
    assert len(answer["lines"]) == 3 and all(line.startswith("Warning: NetworkPolicy sync on node")
                                             and "previous rules stay in force" in line for line in answer["lines"][1:])
    assert set(supervisor.policy_errors) == {"node1", "node2"}
    assert supervisor.policies["node1"].status.failures == 1
    loads = len(nft.inputs("nft"))
    step(supervisor)  # the loop retries the failed nodes (still refused: reported again, back-off doubles)
    assert len(nft.inputs("nft")) == loads + 2 and set(supervisor.policy_errors) == {"node1", "node2"}
    assert supervisor._policy_retry_delay > core.POLICY_RETRY_FIRST
    supervisor._policy_retry_at = time.monotonic() + 60
    step(supervisor)
    assert len(nft.inputs("nft")) == loads + 2  # not before its back-off
    nft.fail = set()
    supervisor._policy_retry_at = 0.0
    step(supervisor)
    assert not supervisor.policy_errors
    assert all(t.startswith("add table inet podnet-netpol\ndelete table") for t in nft.inputs("nft")[-2:])
    step(supervisor)
    assert len(nft.inputs("nft")) == loads + 4  # in force: nothing more to retry


def test_the_state_reading_says_per_node_which_generation_its_kernel_holds_and_why_not_the_latest(state, monkeypatch):
    """What the live `trace` compares (podnet.linux.enforced): the generation of each node's
    last good NetworkPolicy sync, its last error and the shape of the table it loaded, in the
    same reading as the objects."""
    nft = RecordingRunner()
    supervisor, _ = started_with_services(state, monkeypatch, nft=nft)
    supervisor.start()
    before = handle(supervisor, {"op": "objects"})["nodes"]
    supervisor.change(DENY_ALL, delete=False)
    reading = handle(supervisor, {"op": "objects"})
    for node in ("node1", "node2"):
        policy = reading["nodes"][node]["networkPolicy"]
        assert policy["generation"] == reading["generation"] and policy["lastError"] is None
        assert policy["loaded"] == supervisor.policies[node].loaded_shape().to_json()
        assert policy["loaded"]["chains"] > before[node]["networkPolicy"]["loaded"]["chains"]  # deny-all's
        assert reading["nodes"][node]["kubeProxy"] == {"pending": False, "lastError": None, "syncs": 0, "failures": 0}
    nft.fail = {"nft"}
    supervisor.change(documents_text([pod("newcomer")]), delete=False)
    reading = handle(supervisor, {"op": "objects"})
    policy = reading["nodes"]["node1"]["networkPolicy"]
    assert policy["generation"] < reading["generation"] and policy["loaded"] is None
    assert policy["lastError"] == "nft: refused (fake)" and policy["failures"] == 1
    nft.fail = set()
    supervisor._policy_retry_at = 0.0
    step(supervisor)
    reading = handle(supervisor, {"op": "objects"})
    assert all(reading["nodes"][n]["networkPolicy"]["generation"] == reading["generation"]
               and reading["nodes"][n]["networkPolicy"]["lastError"] is None for n in ("node1", "node2"))


def test_trace_reads_the_supervisors_record_of_a_failed_sync_and_says_so_at_the_hop(state, monkeypatch):
    """The loop closed without root: the CLI's live trace on the very reading the supervisor
    answers, after node sync failures (the kernel itself faked as holding what podnet loaded)."""
    nft = RecordingRunner()
    supervisor, _ = started_with_services(state, monkeypatch, nft=nft)
    supervisor.start()
    shapes = {n: p.loaded_shape() for n, p in supervisor.policies.items()}
    nft.fail = {"nft"}
    supervisor.change(DENY_ALL, delete=False)
    reading = handle(supervisor, {"op": "objects"})
    live = LiveState(ClusterLayout("sup"), cluster_from_objects(reading["items"], reading["config"]),
                     reading["generation"], reading["nodes"])
    web = sorted(p.ref for p in live.cluster.of_kind("Pod") if p.ref.startswith("default/web-"))
    result = Tracer(live.cluster).trace(web[0], web[1], 80)
    netns_node = {ClusterLayout("sup").node_netns(n): n for n in shapes}
    checks = trace_cli.live_checks(result, live, read=lambda netns: shapes[netns_node[netns]])
    source_node = live.cluster.get("Pod", "default", web[0].split("/")[1]).spec["nodeName"]
    assert [(c.node, c.in_sync) for c in checks][0] == (source_node, False)
    assert checks[0].reason == "last sync failed: nft: refused (fake); the kernel still enforces the previous rules"
    out = io.StringIO()
    trace_cli.render_text(result, out, checks)
    assert f"! {source_node}: NetworkPolicy rules NOT in sync with this state (last sync failed: nft: refused " \
           "(fake); the kernel still enforces the previous rules): this hop is a prediction" in out.getvalue()
    nft.fail = set()
    supervisor._policy_retry_at = 0.0
    step(supervisor)
    reading = handle(supervisor, {"op": "objects"})
    live = LiveState(ClusterLayout("sup"), cluster_from_objects(reading["items"], reading["config"]),
                     reading["generation"], reading["nodes"])
    shapes = {n: p.loaded_shape() for n, p in supervisor.policies.items()}  # the kernel now holds the new tables
    result = Tracer(live.cluster).trace(web[0], web[1], 80)
    assert result.verdict == "dropped"  # deny-all: what the kernel now enforces too
    assert all(c.in_sync for c in trace_cli.live_checks(result, live, read=lambda n: shapes[netns_node[n]]))


def test_the_netlink_socket_is_closed_when_a_node_fails_to_start(state, monkeypatch):
    supervisor, kernel = started_with_services(state, monkeypatch, fail_on="node2")
    with pytest.raises(RuntimeError, match="no proxy on node2"):
        supervisor.start()
    assert kernel.closed  # an open socket would keep the node's namespace alive after down


def test_a_pod_waits_to_start_while_its_nodes_networkpolicy_sync_fails(state, monkeypatch):
    """Fail closed: a pod whose node's rules could not be loaded would run unprotected (the
    previous rules do not know its address), so it starts only once a retry holds."""
    nft = RecordingRunner()
    supervisor, _ = started_with_services(state, monkeypatch, nft=nft)
    supervisor.start()
    supervisor.change(DENY_ALL, delete=False)
    nft.fail = {"nft"}
    answer = supervisor.change(documents_text([pod("newcomer")]), delete=False)
    assert "default/newcomer" not in supervisor.runtime.pods and answer["started"] == []
    assert "Warning: default/newcomer waits to start until its node's NetworkPolicy rules hold" in answer["lines"]
    nft.fail = set()
    supervisor._policy_retry_at = 0.0
    step(supervisor)
    assert not supervisor.policy_errors and "default/newcomer" in supervisor.runtime.pods


def test_the_servers_fetch_objects_without_reading_the_drop_counters(supervisor):
    """`objects` with counters reads each node's NetworkPolicy counters (an nft list per node);
    the servers that follow the cluster ask without, and no node is read for them."""
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "deny", "namespace": "default"}, "spec": {"podSelector": {}}}
    apply(supervisor, policy)
    reads = []

    class Counters:
        def drops(self):
            reads.append(1)
            return {"drops/ingress/default/deny": 3}

    supervisor.policies = {"node1": Counters()}
    annotation = "podnet.dev/dropped-packets"

    def deny(bodies):
        return next(b for b in bodies if b["kind"] == "NetworkPolicy")["metadata"].get("annotations", {})

    assert deny(supervisor.objects(counters=False)).get(annotation) is None and reads == []
    assert deny(supervisor.objects())[annotation] == "ingress 3" and reads == [1]
