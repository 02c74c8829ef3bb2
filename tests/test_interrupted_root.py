"""`up`, `apply`, `delete` and `down` killed at random points and run again (root only).

Each round picks a delay at random (seeded: PODNET_FAULT_SEED, printed; run with -s to see
it) within the time the command takes uninterrupted, SIGKILLs the command there — the CLI
alone, or every other round with what a crash would take along (`up`, `down`: the supervisor
and its watchdog; `apply`, `delete`: the supervisor, which its watchdog restarts) — and does
what a user would: runs the command again, following what it says when it refuses (it
must name the command that gets the cluster back). The end state must be the uninterrupted
run's: the objects the offline computation (`get -f`) gives, every pod Ready on its node,
with an address of its node's range and none twice, the Services' ClusterIPs, a
manifests.yaml that parses; and `down` must leave nothing (`leftovers()`, `ip netns list`).
`apply` and `delete` run under load: a client in a pod requests through a Service the whole
time, and not one request may fail. Waits have generous deadlines; nothing asserts a duration.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from podnet.host.control import send
from podnet.host.layout import ClusterLayout
from tests.livecluster import WEB_SERVICE, netexec_deployment, pause_pod, podnet, removed
from tests.test_crash_root import gone
from tests.test_termination_root import Client, wait_for

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

SEED = int(os.environ.get("PODNET_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
ROUNDS = 4
NAMESPACES = ("default", "kube-system", "ingress-nginx")


def web(replicas: int) -> str:
    # drained as users drain a server: it serves on while the removal reaches every node
    return netexec_deployment(replicas, container='lifecycle: {preStop: {exec: {command: [sleep, "3"]}}}')


REST = WEB_SERVICE + pause_pod("client", "node1")
APP = web(2) + REST

# the change an apply makes and a delete takes back (web scaled up is applied, never deleted)
EXTRA = """
apiVersion: v1
kind: Service
metadata: {name: extra}
spec:
  selector: {app: web}
  ports: [{name: http, port: 81, targetPort: http}]
""" + pause_pod("extra", "node2")


@pytest.fixture(scope="module")
def rng():
    print(f"\nPODNET_FAULT_SEED={SEED}")
    return random.Random(SEED)


def write_files(tmp: Path, name: str) -> dict[str, Path]:
    files = {"app": tmp / "app.yaml", "scaled": tmp / "scaled.yaml", "extra": tmp / "extra.yaml",
             "config": tmp / "cluster.yaml", "app-scaled": tmp / "app-scaled.yaml"}
    files["app"].write_text(APP)
    files["scaled"].write_text(web(3))
    files["app-scaled"].write_text(web(3) + REST)  # what the offline computation of app + scaled takes
    files["extra"].write_text(EXTRA)
    files["config"].write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n"
                               "networking: {overlay: vxlan, proxyMode: nftables}\n")
    return files


def stop_and_remove(name: str, stop, client) -> None:
    """The end of a module's cluster: its client loop stopped (the `stop` file), `podnet down`,
    and nothing of it left (livecluster.removed)."""
    stop.write_text("")
    if client is not None:
        client.finish()
    podnet("down", "--name", name, check=False, timeout=240)
    removed(name)


def killed_at(argv: list[str], delay: float, also=None) -> bool:
    """Run `podnet ARGV` and SIGKILL it after `delay` seconds, then call `also` (what else dies
    in the crash: the supervisor, or it and its watchdog). Whether it was killed (False: it had
    finished)."""
    proc = subprocess.Popen([sys.executable, "-m", "podnet", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        pass
    proc.kill()  # first: a CLI that outlived its supervisor would clean up after it, as no crash does
    proc.wait()
    if also is not None:
        also()
    return True


def kill_supervisor_group(name: str) -> None:
    """As a crash of the machine's podnet would: the watchdog and the supervisor (one group)."""
    pidfile = ClusterLayout(name).state_dir / "watchdog.pid"
    try:
        watchdog = int(pidfile.read_text().split()[0])
        os.killpg(watchdog, signal.SIGKILL)  # the watchdog leads its group, the supervisor is in it
    except (OSError, ValueError, IndexError):
        return
    wait_for(lambda: gone(watchdog), 30, "the watchdog gone")


def computed(files: dict[str, Path], *names: str) -> tuple[dict, dict]:
    """Pods (ref -> node, IP) and Services (ref -> ClusterIP) as the offline computation has them."""
    sources = [arg for n in names for arg in ("-f", str(files[n]))]
    pods = json.loads(podnet("get", "pods", "-A", "-o", "json", *sources, "--config", str(files["config"])).stdout)
    svcs = json.loads(podnet("get", "svc", "-A", "-o", "json", *sources, "--config", str(files["config"])).stdout)
    return ({f"{p['metadata']['namespace']}/{p['metadata']['name']}": (p["spec"].get("nodeName"), p["status"].get("podIP"))
             for p in pods["items"]},
            {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s["spec"].get("clusterIP") for s in svcs["items"]})


def live_pods(name: str) -> list[dict]:
    return json.loads(podnet("get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def assert_end_state(name: str, files: dict[str, Path], *names: str, same_addresses: bool) -> None:
    """The cluster is what an uninterrupted run makes of `names`' files."""
    want_pods, want_svcs = computed(files, *names)
    wait_for(lambda: {f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in live_pods(name)} == set(want_pods)
             and all(ready(p) for p in live_pods(name)), 180, f"the pods of {names}, all Ready")
    got = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in live_pods(name)}
    pod_ips = [p["status"]["podIP"] for p in got.values() if not p["spec"].get("hostNetwork")]
    assert len(pod_ips) == len(set(pod_ips)), f"an address twice: {sorted(pod_ips)}"
    cidrs = {n["metadata"]["name"]: ipaddress.ip_network(n["spec"]["podCIDR"])
             for n in json.loads(podnet("get", "nodes", "-o", "json", "--name", name).stdout)["items"]}
    for ref, (node, ip) in want_pods.items():
        pod = got[ref]
        if same_addresses:  # a fresh cluster: where the computation places and addresses it
            assert (pod["spec"].get("nodeName"), pod["status"]["podIP"]) == (node, ip), ref
        if not pod["spec"].get("hostNetwork"):  # a live scale-up keeps the others where they are
            assert ipaddress.ip_address(pod["status"]["podIP"]) in cidrs[pod["spec"]["nodeName"]], ref
    svcs = json.loads(podnet("get", "svc", "-A", "-o", "json", "--name", name).stdout)["items"]
    assert {f"{s['metadata']['namespace']}/{s['metadata']['name']}": s["spec"].get("clusterIP") for s in svcs} == want_svcs
    manifests = yaml.safe_load((ClusterLayout(name).state_dir / "manifests.yaml").read_text())
    assert manifests["kind"] == "List"


def up_args(files: dict[str, Path]) -> list[str]:
    return ["up", "-f", str(files["app"]), "--config", str(files["config"])]


def up_again(name: str, files: dict[str, Path]) -> str:
    """`podnet up` after an interrupted one, as a user runs it: if it refuses, it must say
    which command gets the cluster back, and that command (then `up` again) must work."""
    again = podnet(*up_args(files), check=False, timeout=240)
    if again.returncode == 0:
        return "up again"
    said = again.stderr
    if f"`podnet up --name {name}`" in said:  # its supervisor died: restart it as it was
        podnet("up", "--name", name, timeout=240)
        return "restarted"
    assert f"`podnet down --name {name}`" in said, said
    podnet("down", "--name", name, timeout=240)
    removed(name)
    podnet(*up_args(files), timeout=240)
    return "down, up"


def test_up_and_down_killed_at_random_points_end_as_an_uninterrupted_run(tmp_path, rng):
    name = f"iu{rng.randrange(16 ** 6):06x}"
    files = write_files(tmp_path, name)
    try:
        began = time.monotonic()
        podnet(*up_args(files), timeout=240)
        up_took = time.monotonic() - began
        assert_end_state(name, files, "app", same_addresses=True)
        began = time.monotonic()
        podnet("down", "--name", name, timeout=240)
        down_took = time.monotonic() - began
        removed(name)
        for round_ in range(ROUNDS):
            crash = round_ % 2 == 1
            delay = rng.uniform(0.0, up_took)
            also = (lambda: kill_supervisor_group(name)) if crash else None
            killed = killed_at(up_args(files), delay, also)
            how = up_again(name, files) if killed else "finished"
            print(f"round {round_}: up killed after {delay:.2f}s (crash: {crash}, killed: {killed}): {how}")
            assert_end_state(name, files, "app", same_addresses=True)
            delay = rng.uniform(0.0, down_took)
            killed = killed_at(["down", "--name", name], delay, also)
            podnet("down", "--name", name, timeout=240)
            print(f"round {round_}: down killed after {delay:.2f}s (crash: {crash}, killed: {killed})")
            removed(name)
    finally:
        podnet("down", "--name", name, check=False, timeout=240)
        removed(name)


def change_again(verb: str, name: str, files: dict[str, Path], *names: str) -> None:
    argv = [verb, *(a for n in names for a in ("-f", str(files[n]))), "--name", name]
    proc = podnet(*argv, check=False, timeout=240)
    # a delete that had finished before the kill finds nothing again: kubectl's NotFound, nothing else
    errors = [line for line in proc.stdout.splitlines() if line.startswith("Error")]
    assert proc.returncode == 0 or (verb == "delete" and errors and all("(NotFound)" in e for e in errors)), \
        f"{proc.stdout}\n{proc.stderr}"


def test_apply_and_delete_killed_at_random_points_end_as_an_uninterrupted_run(tmp_path, rng):
    """Under load: the client requests through web's ClusterIP the whole time."""
    name = f"ia{rng.randrange(16 ** 6):06x}"
    files = write_files(tmp_path, name)
    stop = tmp_path / "stop"
    client = None
    try:
        podnet(*up_args(files), timeout=240)
        assert_end_state(name, files, "app", same_addresses=True)
        cluster_ip = computed(files, "app")[1]["default/web"]
        client = Client(name, "default/client", cluster_ip, 80, "web", str(stop))
        wait_for(lambda: client.successes() >= 10 or client.errors(), 120, "the client answered")
        layout = ClusterLayout(name)
        # uninterrupted, for how long each takes
        began = time.monotonic()
        podnet("apply", "-f", str(files["scaled"]), "-f", str(files["extra"]), "--name", name, timeout=240)
        apply_took = time.monotonic() - began
        assert_end_state(name, files, "app-scaled", "extra", same_addresses=False)
        began = time.monotonic()
        podnet("delete", "-f", str(files["extra"]), "--name", name, timeout=240)
        delete_took = time.monotonic() - began
        for round_ in range(ROUNDS):
            crash = round_ % 2 == 1  # the supervisor killed mid-way (its watchdog starts another)
            podnet("apply", "-f", str(files["app"]), "--name", name, timeout=240)  # back to 2 replicas
            assert_end_state(name, files, "app", same_addresses=False)
            for verb, names, took in (("apply", ("scaled", "extra"), apply_took), ("delete", ("extra",), delete_took)):
                supervisor = send(layout.socket_path, {"op": "ping"}, timeout=10)["pid"]
                argv = [verb, *(a for n in names for a in ("-f", str(files[n]))), "--name", name]
                delay = rng.uniform(0.0, took)
                killed = killed_at(argv, delay, (lambda: os.kill(supervisor, signal.SIGKILL)) if crash else None)
                print(f"round {round_}: {verb} killed after {delay:.2f}s (supervisor too: {crash}, killed: {killed})")
                successor = killed and crash
                try:
                    wait_for(lambda: _answering(layout, supervisor if successor else None), 120,
                             "a supervisor answering")
                except AssertionError as exc:  # say why, before the teardown takes the log along
                    raise AssertionError(f"{exc}; ps: {_processes(name)}; the log ends:\n"
                                         + (layout.state_dir / "supervisor.log").read_text()[-4000:]
                                         + "\nsupervisor.out ends:\n"
                                         + (layout.state_dir / "supervisor.out").read_text()[-3000:]) from None
                change_again(verb, name, files, *names)
            assert_end_state(name, files, "app-scaled", same_addresses=False)
        mark = len(client.answers)
        wait_for(lambda: client.successes(mark) >= 10 or client.errors(), 120, "answers after the rounds")
    finally:
        stop_and_remove(name, stop, client)
    assert client.errors() == [], client.errors()[:10]


def _answering(layout: ClusterLayout, other_than: int | None) -> bool:
    try:
        return send(layout.socket_path, {"op": "ping"}, timeout=5)["pid"] != other_than
    except Exception:
        return False


def _processes(name: str) -> list[str]:
    return [line for line in subprocess.run(["ps", "-ww", "-eo", "pid,ppid,stat,args"], capture_output=True,
                                            text=True).stdout.splitlines() if f"--name {name}" in line]
