"""The container runtime in a real network namespace (root only): hostname, resolv.conf,
hosts, environment, logs, restartPolicy, exec, and nothing left behind."""

import os
import secrets
import signal
import subprocess
import time

import pytest

from podnet.host.layout import ClusterLayout
from podnet.linux.runtime import ETC_NETNS, Runtime

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

from tests.conftest import cluster_of  # noqa: E402

POD = """
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: team}
spec:
  hostname: probe-0
  restartPolicy: %s
  containers:
  - name: main
    image: busybox
    command: [sh, -c, 'echo "hello from $(hostname) MY_VAR=$MY_VAR"; %s']
    env: [{name: MY_VAR, value: "42"}]
"""


@pytest.fixture
def netns(tmp_path, monkeypatch):
    name = f"podnet-t{secrets.token_hex(3)}.pod-team-probe"
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    monkeypatch.setattr("podnet.host.layout.STATE_ROOT", tmp_path)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


# kubelet's CrashLoopBackOff capped at 1 s (KubeletConfiguration's maxContainerRestartPeriod): a
# crashing container restarts at once, then after 1 s each time, so tests see several restarts
FAST_RESTARTS = """
kind: Cluster
apiVersion: podnet.dev/v1alpha1
kubelet: {crashLoopBackOff: {maxContainerRestartPeriod: 1s}}
"""


def runtime_for(text, tmp_path, config=None):
    cluster = cluster_of(text, config)
    layout = ClusterLayout("t")
    runtime = Runtime(layout, cluster)
    runtime.logs = tmp_path / "logs"
    return runtime, cluster.get("Pod", "team", "probe")


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_container_sees_the_pods_hostname_env_resolv_conf_and_hosts(netns, tmp_path):
    runtime, pod = runtime_for(POD % ("Never", "cat /etc/resolv.conf /etc/hosts"), tmp_path)
    sandbox = runtime.start_pod(pod, netns)
    try:
        container = sandbox.containers[0]
        assert wait_for(lambda: container.process.poll() is not None)
        log = container.log.read_text()
        assert "hello from probe-0 MY_VAR=42" in log
        assert "search team.svc.cluster.local svc.cluster.local cluster.local" in log
        assert "nameserver 10.96.0.10" in log and "options ndots:5" in log
        assert f"{pod.status['podIP']}\tprobe-0" in log
        exec_out = subprocess.run(runtime.enter_argv(sandbox, ["hostname"]), capture_output=True, text=True, check=True)
        assert exec_out.stdout.strip() == "probe-0"
        assert open("/etc/hostname").read().strip() != "probe-0", "the host's own hostname is untouched"
    finally:
        runtime.stop_all()
    assert not (ETC_NETNS / netns).exists()


def test_restart_policy_always_restarts_and_counts(netns, tmp_path):
    runtime, pod = runtime_for(POD % ("Always", "exit 3"), tmp_path, FAST_RESTARTS)
    sandbox = runtime.start_pod(pod, netns)
    try:
        container = sandbox.containers[0]
        waited = []

        def restarted():
            runtime.reap()
            if container.next_start and not container.running:  # waiting in CrashLoopBackOff
                waited.append(container.next_start - container.finished_at)
            return container.restarts >= 3

        assert wait_for(restarted, timeout=60)
        assert wait_for(lambda: container.log.read_text().count("hello from probe-0") >= 4)
        # the first restart came at once; later ones waited the window, capped at 1 s
        assert container.backoff is not None and container.backoff.window == 1.0
        assert waited and all(abs(wait - 1.0) < 1e-6 for wait in waited)
        # where each run's output begins in the one log file (`kubectl logs` shows the last run,
        # `--previous` the one before): every finished run wrote its one line there
        starts, log = list(container.log_starts), container.log.read_bytes()
        assert starts[0] == 0 and starts == sorted(starts) and len(starts) >= 4
        for begin, end in zip(starts, starts[1:]):
            assert log[begin:end].count(b"hello from probe-0") == 1
    finally:
        runtime.stop_all()


def test_restart_policy_never_leaves_it_exited(netns, tmp_path):
    runtime, pod = runtime_for(POD % ("Never", "exit 0"), tmp_path)
    sandbox = runtime.start_pod(pod, netns)
    try:
        container = sandbox.containers[0]
        assert wait_for(lambda: container.process.poll() is not None)
        runtime.reap()
        time.sleep(0.7)
        runtime.reap()
        assert container.restarts == 0 and container.last_exit == 0
    finally:
        runtime.stop_all()


def test_stopping_kills_every_process_of_the_pod(netns, tmp_path):
    runtime, pod = runtime_for(POD % ("Always", "sleep 300"), tmp_path)
    sandbox = runtime.start_pod(pod, netns)
    pids = [sandbox.pause.pid, runtime.sandbox_pid(sandbox), sandbox.containers[0].process.pid]
    runtime.stop_all()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_a_pause_process_that_dies_is_noticed_and_the_sandbox_made_again(netns, tmp_path):
    """reap knows the pause process it found last time and checks it with one read: a pause
    killed since (its parent still winding down, or gone) is a dead sandbox all the same."""
    runtime, pod = runtime_for(POD % ("Always", "sleep 300"), tmp_path)
    sandbox = runtime.start_pod(pod, netns)
    try:
        first = runtime.sandbox_pid(sandbox)
        assert first is not None and runtime.sandbox_pid(sandbox) == first and sandbox.found[1] == first
        outer = sandbox.pause.pid
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: runtime.sandbox_pid(sandbox) is None)
        runtime.reap()  # made again: a new pause process, found afresh
        assert sandbox.pause.pid != outer
        assert wait_for(lambda: runtime.sandbox_pid(sandbox) not in (None, first))
    finally:
        runtime.stop_all()


def test_a_rebooted_pod_gets_a_new_sandbox_and_its_containers_start_at_once_counted(netns, tmp_path):
    """kill_pods then reboot_pod (`podnet node restart`): the same namespace, a new sandbox; the
    container starts again at once with restartCount + 1 — also one that was waiting out its
    back-off, since kubelet's back-off entries went with the reboot."""
    runtime, pod = runtime_for(POD % ("Always", "sleep 300"), tmp_path)  # kubelet's default 5 min cap
    sandbox = runtime.start_pod(pod, netns)
    try:
        container = sandbox.containers[0]

        def said_hello(times: int) -> bool:
            return wait_for(lambda: container.log.read_text().count("hello from probe-0") == times)

        assert said_hello(1)
        runtime.kill_container(sandbox.ref, "main")  # a first crash restarts at once ...
        assert wait_for(lambda: (runtime.reap(), container.restarts == 1 and container.running)[1])
        assert said_hello(2)
        runtime.kill_container(sandbox.ref, "main")  # ... a second one waits 10 s in CrashLoopBackOff
        assert wait_for(lambda: (runtime.reap(), container.next_start > 0)[1])
        assert not container.running and container.next_start - container.finished_at == pytest.approx(10.0)
        outer, pause = sandbox.pause.pid, runtime.sandbox_pid(sandbox)
        runtime.kill_pods([sandbox.ref])
        assert sandbox.pause.poll() is not None
        assert runtime.reboot_pod(sandbox.ref) is sandbox
        assert sandbox.pause.pid != outer and runtime.sandbox_pid(sandbox) not in (None, pause)
        assert sandbox.netns == netns and container.running and container.restarts == 2
        assert container.backoff is not None and container.backoff.window == 10.0  # made anew: the first window
        assert said_hello(3), container.log.read_text()
    finally:
        runtime.stop_all()
