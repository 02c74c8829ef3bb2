"""Faults on one running cluster, each under load (root only): a client in a pod requests
through web's ClusterIP, one new connection per request, for the whole module, and not one
request may fail.

- A kube-proxy sync the kernel refuses, for as long as the cause stays: an admin's chain in
  the node's kube-proxy table jumps to a chain of a Service being deleted, so the transaction
  that deletes it fails (EBUSY); the retries rewrite the whole table, as kube-proxy does after
  a failure, and the kernel refuses those too while another agent's table holds every
  prerouting hook slot of the node (E2BIG: the rewrite registers its base chains before the
  old ones go). Nothing of a refused transaction is applied: the node's previous rules keep
  serving (even the deleted Service's ClusterIP answers there). The error is in the
  supervisor's log, in Warning events on the Node (`get events`, `describe node`) and in the
  node's kube-proxy status. Once the other agent lets go, the next retry holds (the stray
  chain goes with the rewritten table), which a Normal event says.
- Two commands at once (two applies of one Deployment; an apply while a delete): the
  supervisor takes them one after the other, so the end state is one of the serial orders,
  manifests.yaml parses and says what runs.
- The host-local IPAM store after a crash: the supervisor and its watchdog SIGKILLed during a
  scale-up, `podnet up --name NAME` restarts it: every pod has an address of its own, and each
  node's store holds exactly the addresses of the pods on it.

Waits have generous deadlines; nothing asserts a duration. The random delay of the crash is
seeded (PODNET_FAULT_SEED, printed with -s).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from podnet.host.control import send
from podnet.host.layout import CNI_NETWORK, ClusterLayout
from podnet.linux.supervisor.state import ClusterState
from tests.livecluster import podnet, removed
from tests.test_crash_root import gone
from tests.test_interrupted_root import REST, SEED, stop_and_remove, web
from tests.test_termination_root import Client, all_ready, wait_for

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces


def service(name: str, port: int) -> str:
    return (f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  selector: {{app: web}}\n"
            f"  ports: [{{name: http, port: {port}, targetPort: http}}]\n")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    print(f"\nPODNET_FAULT_SEED={SEED}")
    name = f"fa{random.Random(SEED).randrange(16 ** 6):06x}"
    (tmp / "app.yaml").write_text(web(2) + REST)
    (tmp / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n"
                                      "networking: {overlay: vxlan, proxyMode: nftables}\n")
    stop = tmp / "stop"
    client = None
    try:
        podnet("up", "-f", str(tmp / "app.yaml"), "--config", str(tmp / "cluster.yaml"), timeout=240)
        wait_for(lambda: all(all_ready(name, ns) for ns in ("default", "kube-system")), 180, "every pod Ready")
        services = json.loads(podnet("get", "svc", "-o", "json", "--name", name).stdout)["items"]
        [cluster_ip] = [s["spec"]["clusterIP"] for s in services if s["metadata"]["name"] == "web"]
        client = Client(name, "default/client", cluster_ip, 80, "web", str(stop))
        wait_for(lambda: client.successes() >= 10 or client.errors(), 120, "the client answered")
        yield name, tmp, client
        mark = len(client.answers)
        wait_for(lambda: client.successes(mark) >= 10 or client.errors(), 120, "answers at the end")
    finally:
        stop_and_remove(name, stop, client)
    assert client.errors() == [], client.errors()[:10]


def node_nft(name: str, node: str, text: str) -> None:
    netns = ClusterLayout(name).node_netns(node)
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=text, text=True, check=True)


def kube_proxy_chains(name: str, node: str) -> set[str]:
    netns = ClusterLayout(name).node_netns(node)
    out = subprocess.run(["ip", "netns", "exec", netns, "nft", "-j", "list", "chains", "ip"], capture_output=True,
                         text=True, check=True).stdout
    return {item["chain"]["name"] for item in json.loads(out)["nftables"]
            if "chain" in item and item["chain"]["table"] == "kube-proxy"}


def node_events(name: str, node: str) -> list[dict]:
    items = json.loads(podnet("get", "events", "-A", "-o", "json", "--name", name).stdout)["items"]
    return [e for e in items if e["involvedObject"].get("kind") == "Node" and e["involvedObject"].get("name") == node]


def kube_proxy_status(name: str, node: str) -> dict:
    layout = ClusterLayout(name)
    return send(layout.socket_path, {"op": "objects", "counters": False}, timeout=10)["nodes"][node]["kubeProxy"]


def fill_prerouting_hooks(name: str, node: str) -> int:
    """Another agent's table taking every free prerouting hook slot of the node's namespace (the
    kernel has 1,024 per hook: one more is refused with E2BIG). Its chains are empty, with
    policy accept: no packet is treated otherwise. How many it took."""
    netns = ClusterLayout(name).node_netns(node)

    def nft(text: str) -> bool:
        return subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=text, text=True,
                              capture_output=True).returncode == 0

    assert nft("add table ip other-agent\n")
    taken, batch = 0, 64
    while batch:
        chains = "".join(f"add chain ip other-agent c{taken + i} {{ type filter hook prerouting priority 0; }}\n"
                         for i in range(batch))
        if nft(chains):
            taken += batch
        else:
            batch //= 2
    return taken


def test_a_sync_the_kernel_refuses_keeps_the_old_rules_is_reported_and_retried(cluster):
    name, tmp, client = cluster
    (tmp / "other.yaml").write_text(service("other", 82))
    podnet("apply", "-f", str(tmp / "other.yaml"), "--name", name)
    other_ip = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in json.loads(
        podnet("get", "svc", "-o", "json", "--name", name).stdout)["items"]}["other"]
    other = wait_for(lambda: [c for c in kube_proxy_chains(name, "node1") if c.startswith("service-")
                              and "/default/other/" in f"/{c.split('-', 2)[2]}"], 60, "other's chain on node1")
    # the first refusal: an admin's chain in kube-proxy's table jumps to other's, so the
    # transaction that deletes other's chains fails (EBUSY); the retry rewrites the whole table,
    # which the kernel refuses too while another agent holds every prerouting hook slot (E2BIG)
    node_nft(name, "node1", f"add chain ip kube-proxy admin-debug\nadd rule ip kube-proxy admin-debug jump {other[0]}\n")
    taken = fill_prerouting_hooks(name, "node1")
    print(f"\nanother agent took {taken} prerouting hook slots of node1")
    mark = len(client.answers)
    podnet("delete", "-f", str(tmp / "other.yaml"), "--name", name)

    def refusals() -> list[dict]:
        return [e for e in node_events(name, "node1") if e["reason"] == "SyncProxyRulesFailed"]

    wait_for(lambda: len({e["message"] for e in refusals()}) >= 2 and sum(e["count"] for e in refusals()) >= 3, 120,
             "node1's sync refused, and its retries too")
    messages = " ".join(e["message"] for e in refusals())
    assert all(e["type"] == "Warning" and e["source"]["component"] == "kube-proxy" for e in refusals())
    assert "previous rules stay in force" in messages
    assert "busy" in messages.lower() and "argument list too long" in messages.lower(), messages
    status = kube_proxy_status(name, "node1")
    assert status["lastError"] and status["failures"] >= 3, status
    assert "SyncProxyRulesFailed" in podnet("describe", "node", "node1", "--name", name).stdout
    # meanwhile node1's kernel keeps the previous rules: other's ClusterIP still answers from there
    # (node2's rules, synced, no longer have it), and the client's requests all succeed
    served = podnet("exec", "default/client", "--name", name, "--", "curl", "-s", "-m", "5",
                    f"http://{other_ip}:82/hostname", check=False)
    assert served.returncode == 0 and served.stdout.startswith("web-"), served
    wait_for(lambda: client.successes(mark) >= 20 or client.errors(), 120, "answers while the syncs are refused")
    assert not [e for e in node_events(name, "node2") if e["reason"] == "SyncProxyRulesFailed"]
    # the other agent lets go: the next retry holds, and the whole table is rewritten
    node_nft(name, "node1", "delete table ip other-agent\n")
    wait_for(lambda: [e for e in node_events(name, "node1") if e["reason"] == "SyncProxyRulesRecovered"], 120,
             "a Normal event: synced again")
    wait_for(lambda: kube_proxy_status(name, "node1")["lastError"] is None
             and not kube_proxy_status(name, "node1")["pending"], 60, "node1's kube-proxy in sync")
    chains = kube_proxy_chains(name, "node1")
    assert "admin-debug" not in chains and not [c for c in chains if "/other/" in c], sorted(chains)
    log = (ClusterLayout(name).state_dir / "supervisor.log").read_text()
    assert "proxy sync on node node1 failed" in log and "proxy sync on node node1 succeeded again" in log
    gone_now = podnet("exec", "default/client", "--name", name, "--", "curl", "-s", "-m", "3",
                      f"http://{other_ip}:82/hostname", check=False)
    assert not gone_now.stdout.startswith("web-"), gone_now  # other's rules went with the good sync
    mark = len(client.answers)
    wait_for(lambda: client.successes(mark) >= 10 or client.errors(), 120, "answers after the recovery")
    assert client.errors() == [], client.errors()[:10]


def together(*argvs: list[str]) -> list[subprocess.CompletedProcess]:
    """Run the commands at the same moment (each in a thread); their results, in order."""
    results: list = [None] * len(argvs)
    barrier = threading.Barrier(len(argvs))

    def run(i: int, argv: list[str]) -> None:
        barrier.wait()
        results[i] = podnet(*argv, check=False, timeout=240)

    threads = [threading.Thread(target=run, args=(i, argv)) for i, argv in enumerate(argvs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def manifests(name: str) -> dict[tuple[str, str], dict]:
    items = ClusterState(ClusterLayout(name)).manifests()  # the snapshot and the changes logged after it
    return {(o["kind"], o["metadata"]["name"]): o for o in items}


def web_pods(name: str) -> list[dict]:
    items = json.loads(podnet("get", "pods", "-o", "json", "--name", name).stdout)["items"]
    return [p for p in items if p["metadata"].get("labels", {}).get("app") == "web"]


def failed_since(client: Client, mark: int) -> list[str]:
    return [a for a in client.answers[mark:] if not a.startswith("ok ")]


def test_two_applies_and_an_apply_with_a_delete_are_serialised(cluster):
    name, tmp, client = cluster
    mark = len(client.answers)
    (tmp / "a.yaml").write_text(web(3) + service("svc-a", 83))
    (tmp / "b.yaml").write_text(web(4) + service("svc-b", 84))
    results = together(["apply", "-f", str(tmp / "a.yaml"), "--name", name],
                       ["apply", "-f", str(tmp / "b.yaml"), "--name", name])
    assert all(r.returncode == 0 for r in results), [(r.stdout, r.stderr) for r in results]
    # A then B: 4 replicas; B then A: 3. Either way both Services, and what runs is what was saved
    saved = manifests(name)
    replicas = saved[("Deployment", "web")]["spec"]["replicas"]
    assert replicas in (3, 4) and ("Service", "svc-a") in saved and ("Service", "svc-b") in saved
    wait_for(lambda: len(web_pods(name)) == replicas and all_ready(name, "default"), 120, f"{replicas} web pods Ready")
    # an apply while a delete: the delete takes both Services, the apply brings svc-c and 2 replicas
    (tmp / "c.yaml").write_text(web(2) + service("svc-c", 85))
    (tmp / "ab.yaml").write_text(service("svc-a", 83) + service("svc-b", 84))
    results = together(["apply", "-f", str(tmp / "c.yaml"), "--name", name],
                       ["delete", "-f", str(tmp / "ab.yaml"), "--name", name])
    assert all(r.returncode == 0 for r in results), [(r.stdout, r.stderr) for r in results]
    saved = manifests(name)
    assert ("Service", "svc-c") in saved and ("Service", "svc-a") not in saved and ("Service", "svc-b") not in saved
    assert saved[("Deployment", "web")]["spec"]["replicas"] == 2
    svcs = {s["metadata"]["name"] for s in json.loads(podnet("get", "svc", "-o", "json", "--name", name).stdout)["items"]}
    assert {"svc-c", "web"} <= svcs and not {"svc-a", "svc-b"} & svcs
    wait_for(lambda: len(web_pods(name)) == 2 and all_ready(name, "default"), 120, "2 web pods Ready")
    # no half-applied state: a namespace for every running pod, none for another
    layout = ClusterLayout(name)
    running = {layout.pod_netns(p["metadata"]["namespace"], p["metadata"]["name"]) for p in json.loads(
        podnet("get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"] if not p["spec"].get("hostNetwork")}
    pod_netns = {n for n in os.listdir("/run/netns") if n.startswith(f"{layout.prefix}pod-")}
    assert pod_netns == running, (sorted(pod_netns - running), sorted(running - pod_netns))
    (tmp / "svc-c.yaml").write_text(service("svc-c", 85))
    podnet("delete", "-f", str(tmp / "svc-c.yaml"), "--name", name)
    assert failed_since(client, mark) == [], failed_since(client, mark)[:10]


def store_addresses(layout: ClusterLayout, node: str) -> list[str]:
    return sorted(p.name for p in (layout.ipam_dir(node) / CNI_NETWORK).iterdir() if p.name[0].isdigit())


def test_the_ipam_store_after_a_crash_during_a_scale_up_gives_no_address_twice(cluster):
    name, tmp, client = cluster
    mark = len(client.answers)
    layout = ClusterLayout(name)
    rng = random.Random(SEED + 1)
    (tmp / "scaled.yaml").write_text(web(8))
    for round_ in range(2):  # two crashes, at two random points
        watchdog = int((layout.state_dir / "watchdog.pid").read_text().split()[0])
        apply = subprocess.Popen([sys.executable, "-m", "podnet", "apply", "-f", str(tmp / "scaled.yaml"),
                                  "--name", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        delay = rng.uniform(0.2, 1.5)
        print(f"\nround {round_}: the supervisor and its watchdog SIGKILLed {delay:.2f}s into the scale-up")
        try:
            apply.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(watchdog, signal.SIGKILL)  # the watchdog leads its group; the supervisor is in it
        wait_for(lambda: gone(watchdog), 30, "the watchdog gone")
        apply.wait(timeout=60)
        podnet("up", "--name", name, timeout=240)
        podnet("apply", "-f", str(tmp / "scaled.yaml"), "--name", name, timeout=240)  # the user's apply, again
        wait_for(lambda: len(web_pods(name)) == 8 and all_ready(name, "default"), 180, "8 web pods Ready")
        pods = json.loads(podnet("get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]
        addresses = [p["status"]["podIP"] for p in pods if not p["spec"].get("hostNetwork")]
        assert len(addresses) == len(set(addresses)), sorted(addresses)
        for node in ("node1", "node2"):
            holders = sorted(p["status"]["podIP"] for p in pods
                             if p["spec"].get("nodeName") == node and not p["spec"].get("hostNetwork"))
            assert store_addresses(layout, node) == holders, node
        podnet("apply", "-f", str(tmp / "app.yaml"), "--name", name)
        wait_for(lambda: len(web_pods(name)) == 2 and all_ready(name, "default"), 180, "web back to 2, Ready")
        for node in ("node1", "node2"):  # the addresses of the pods scaled away are released
            holders = sorted(p["status"]["podIP"] for p in json.loads(podnet(
                "get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]
                if p["spec"].get("nodeName") == node and not p["spec"].get("hostNetwork"))
            wait_for(lambda: store_addresses(layout, node) == holders, 60, f"{node}'s store matching its pods")
    assert failed_since(client, mark) == [], failed_since(client, mark)[:10]


def test_an_apply_while_down_is_refused_or_taken_and_down_leaves_nothing(tmp_path):
    """Its own cluster: `down` and an apply at the same moment; the apply adds a pod whose
    process would outlive a half-done down (a `sleep` no other test runs)."""
    name = f"fd{random.Random(SEED + 2).randrange(16 ** 6):06x}"
    (tmp_path / "app.yaml").write_text(web(1))
    (tmp_path / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 1\n")
    marker = f"{7000000 + random.Random(SEED + 3).randrange(999999)}"
    (tmp_path / "late.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: late}\n"
        f"spec:\n  containers: [{{name: c, image: busybox, command: [sleep, '{marker}']}}]\n")
    try:
        podnet("up", "-f", str(tmp_path / "app.yaml"), "--config", str(tmp_path / "cluster.yaml"), timeout=240)
        down, apply = together(["down", "--name", name], ["apply", "-f", str(tmp_path / "late.yaml"), "--name", name])
        assert down.returncode == 0, down.stderr
        # the apply either went first (then down removed its pod too) or was refused with one clear line
        assert apply.returncode == 0 or apply.stderr.strip(), apply
        removed(name)
        survivors = [pid for pid in os.listdir("/proc") if pid.isdigit() and marker in _cmdline(pid)]
        assert survivors == [], survivors
    finally:
        podnet("down", "--name", name, check=False, timeout=240)
        removed(name)


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
