"""`podnet get -w` and `podnet wait` on a real one-node cluster (root only): -w prints a row
when a pod's readiness flips and the last row of a deleted pod, and ends on Ctrl-C with exit
code 0; wait prints kubectl's lines and exit codes (condition met, the time-out message,
--timeout=0, --for=delete, no matching resources). A pod's readiness is an exec probe on a
file the test creates and removes. One cluster for the module, unique name, removed after."""

from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.livecluster import leftovers, podnet

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

DEADLINE = 60.0  # generous: the assertions are on what is printed, never on how fast


def pod(name: str, probe_file: str | None = None) -> str:
    # only the file decides readiness: with the default timeoutSeconds (1) and failureThreshold 1,
    # one slow `nsenter … cat` on a loaded machine made web not Ready for a moment
    probe = (f"    readinessProbe: {{exec: {{command: [cat, {probe_file}]}}, periodSeconds: 1, timeoutSeconds: 30, "
             "failureThreshold: 1}\n" if probe_file else "")
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: {name}}}}}\n"
            f"spec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '3600']\n{probe}")


class Cluster:
    def __init__(self, name: str, tmp):
        self.name, self.apps = name, tmp / "apps"
        self.ready_file = tmp / "ready"  # web's readiness probe reads it

    def podnet(self, *argv, check=False):
        return podnet(*argv, "--name", self.name, check=check)

    def manifest(self, name: str) -> str:
        return str(self.apps / f"{name}.yaml")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("watch")
    name = f"ww{secrets.token_hex(3)}"
    live = Cluster(name, tmp)
    live.ready_file.touch()
    live.apps.mkdir()
    for pod_name in ("web", "gone", "doomed"):
        (live.apps / f"{pod_name}.yaml").write_text(pod(pod_name, str(live.ready_file) if pod_name == "web" else None))
    (tmp / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 1\n")
    try:
        podnet("up", "-f", str(live.apps), "--config", str(tmp / "cluster.yaml"), "--name", name, timeout=180)
        yield live
    finally:
        podnet("down", "--name", name, check=False)
        assert leftovers(name) == []


class Streaming:
    """A `podnet …` that keeps printing (get -w, wait): its lines as they come, Ctrl-C to end it."""

    def __init__(self, *argv):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        # SIGINT as a terminal's Ctrl-C delivers it, even if this run ignores it (a background job)
        self.process = subprocess.Popen([sys.executable, "-m", "podnet", *argv], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, env=env,
                                        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, wanted) -> str:
        """The first line from now on for which wanted(cells) holds."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.process.poll() is None, f"ended: {self.seen} {self.process.stderr.read()}"
                continue
            self.seen.append(line)
            if wanted(line.split()):
                return line
        raise AssertionError(f"no such line within {DEADLINE}s: {self.seen}")

    def following(self) -> None:
        """Until it holds a connection to the supervisor: it has read the cluster (its long poll)."""
        deadline = time.monotonic() + DEADLINE
        fds = f"/proc/{self.process.pid}/fd"
        while time.monotonic() < deadline and self.process.poll() is None:
            if any(link.startswith("socket:") for link in links(fds)):
                return
            time.sleep(0.01)
        raise AssertionError(f"it never talked to the cluster: {self.process.poll()}")

    def interrupt(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=DEADLINE)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        return self.process.returncode, self.process.stderr.read()


def links(directory: str) -> list[str]:
    """What the entries of a /proc/PID/fd point to (an fd closed meanwhile is left out)."""
    found = []
    for fd in os.listdir(directory):
        try:
            found.append(os.readlink(f"{directory}/{fd}"))
        except FileNotFoundError:
            continue
    return found


def test_get_w_prints_a_row_for_a_readiness_flip_and_the_last_row_of_a_deleted_pod(cluster):
    cluster.ready_file.touch()
    assert cluster.podnet("wait", "--for=condition=Ready", "pod/web", "--timeout=60s").returncode == 0
    watch = Streaming("get", "pods", "-w", "--name", cluster.name)
    try:
        assert watch.until(lambda cells: cells[:1] == ["NAME"]).split()[:5] == ["NAME", "READY", "STATUS",
                                                                                "RESTARTS", "AGE"]
        watch.until(lambda cells: cells[:3] == ["web", "1/1", "Running"])  # the table first
        cluster.ready_file.unlink()
        watch.until(lambda cells: cells[:3] == ["web", "0/1", "Running"])  # its readiness probe failed
        deleted = cluster.podnet("delete", "-f", cluster.manifest("gone"))
        assert deleted.returncode == 0, deleted.stderr
        # Terminating first (1/1 while its container runs, 0/1 once SIGTERM ended it), then gone
        watch.until(lambda cells: cells[:1] == ["gone"] and cells[2:3] == ["Terminating"])
    finally:
        code, err = watch.interrupt()
    assert code == 0 and "Traceback" not in err, err
    assert all(not line.startswith("NAME") for line in watch.seen[1:])  # one header


def test_wait_prints_kubectls_lines_and_exit_codes(cluster):
    cluster.ready_file.touch()
    met = cluster.podnet("wait", "--for=condition=Ready", "pod", "-l", "app=web", "--timeout=60s")
    assert (met.returncode, met.stdout, met.stderr) == (0, "pod/web condition met\n", "")
    phase = cluster.podnet("wait", "--for=jsonpath={.status.phase}=Running", "pod/web")
    assert (phase.returncode, phase.stdout) == (0, "pod/web condition met\n")
    timed_out = cluster.podnet("wait", "--for=condition=Ready=false", "pod/web", "--timeout=1s")
    assert (timed_out.returncode, timed_out.stdout) == (1, "")
    assert timed_out.stderr == "error: timed out waiting for the condition on pods/web\n"
    once = cluster.podnet("wait", "--for=condition=Ready=false", "pod/web", "--timeout=0")
    assert (once.returncode, once.stderr) == (1, "error: condition not met for pods/web\n")


def test_wait_for_delete_returns_once_the_pod_is_gone(cluster):
    waiting = Streaming("wait", "--for=delete", "pod/doomed", "--timeout=60s", "--name", cluster.name)
    try:
        waiting.following()  # it has seen the pod, so it has a deletion to wait for
        deleted = cluster.podnet("delete", "-f", cluster.manifest("doomed"))
        assert deleted.returncode == 0, deleted.stderr
        waiting.process.wait(timeout=DEADLINE)
        assert waiting.process.returncode == 0, waiting.process.stderr.read()
        assert waiting.until(lambda cells: True) == "pod/doomed condition met"
    finally:
        if waiting.process.poll() is None:
            waiting.process.kill()
    again = cluster.podnet("wait", "--for=delete", "pod/doomed")  # not there: nothing to wait for
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_wait_without_matching_resources_is_kubectls_error(cluster):
    nothing = cluster.podnet("wait", "--for=condition=Ready", "pod", "-l", "app=nothing")
    assert (nothing.returncode, nothing.stderr) == (1, "error: no matching resources found\n")
    missing = cluster.podnet("wait", "--for=condition=Ready", "pod/missing")
    assert (missing.returncode, missing.stderr) == (1, 'Error from server (NotFound): pods "missing" not found\n')
