"""Fakes for driving the supervisor without root: processes, a runtime, a data plane."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from podnet.linux.counted import CountedDict
from podnet.linux.runtime import Container, PodSandbox

# two pause pods, the workload the supervisor tests apply, scale and delete
DEPLOYMENT = yaml.safe_load("""
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: pause}]}
""")


class FakeProcess:
    """A container's process: running until `exit(code)`. At SIGTERM it exits, as agnhost's
    programs do, unless `holds_on` (a server with --delay-shutdown: it exits when the test says,
    or at SIGKILL)."""

    _next_pid = 1 << 30  # above any pid_max: never a real process (the supervisor's record reads /proc)

    def __init__(self):
        FakeProcess._next_pid += 1
        self.pid = FakeProcess._next_pid
        self.returncode: int | None = None
        self.holds_on = False
        self.signals: list[str] = []

    def poll(self) -> int | None:
        return self.returncode

    def exit(self, code: int) -> None:
        self.returncode = code


def sandbox_of(pod, netns: str = "", logs: Path = Path("/nonexistent")) -> PodSandbox:
    """A sandbox whose containers all run, as Runtime.start_pod leaves one."""
    sandbox = PodSandbox(pod.namespace, pod.name, netns, FakeProcess(), pod=pod)
    for spec in pod.spec.get("containers") or []:
        container = Container(spec["name"], ["sleep", "infinity"], {"POD": pod.name},
                              logs / f"{pod.namespace}_{pod.name}_{spec['name']}.log", pod.spec.get("restartPolicy", "Always"), pod_ref=sandbox.ref)
        container.process = FakeProcess()
        sandbox.containers.append(container)
    return sandbox


class FakeRuntime:
    """podnet.linux.runtime.Runtime's surface, recording what the supervisor asked of it."""

    def __init__(self, layout, cluster):
        self.layout, self.cluster = layout, cluster
        self.pods: dict[str, PodSandbox] = CountedDict()
        self.calls: list[tuple] = []
        self.fail: set[str] = set()  # refs whose start fails
        self.events: list[tuple] = []  # Runtime.events: what kubelet would record, for the supervisor

    def take_events(self) -> list[tuple]:
        taken, self.events = self.events, []
        return taken

    def node_files(self, cluster) -> None:
        self.calls.append(("node_files",))

    def start_pod(self, pod, netns: str) -> PodSandbox:
        self.calls.append(("start", pod.ref, netns))
        if pod.ref in self.fail:
            raise RuntimeError(f"{pod.ref} would not start")
        self.pods[pod.ref] = sandbox_of(pod, netns, self.layout.state_dir / "logs")
        return self.pods[pod.ref]

    def stop_pod(self, ref: str) -> None:
        self.calls.append(("stop", ref))
        self.pods.pop(ref, None)

    def stop_all(self) -> None:
        self.calls.append(("stop_all",))
        self.pods.clear()

    def reap(self) -> None:
        self.calls.append(("reap",))

    def kill_container(self, ref: str, name: str) -> None:
        self.calls.append(("kill", ref, name))

    def kill_pods(self, refs: list[str]) -> None:
        """Runtime.kill_pods: every process of the pods SIGKILLed."""
        self.calls.append(("kill_pods", *refs))
        for ref in refs:
            sandbox = self.pods[ref]
            for process in [sandbox.pause, *(c.process for c in sandbox.containers)]:
                process.exit(-9)

    def reboot_pod(self, ref: str):
        """Runtime.reboot_pod: a new sandbox, each container started again and counted."""
        self.calls.append(("reboot", ref))
        sandbox = self.pods.get(ref)
        if sandbox is None or sandbox.terminating:
            return None
        sandbox.pause = FakeProcess()
        for container in sandbox.containers:
            container.process, container.restarts, container.backoff = FakeProcess(), container.restarts + 1, None
        return sandbox

    def begin_termination(self, ref: str):
        self.calls.append(("terminate", ref))
        sandbox = self.pods.get(ref)
        if sandbox is not None:
            sandbox.terminating = True
        return sandbox

    def stop_container(self, container, deadline: float, interrupted) -> str:
        """Runtime.stop_container on a FakeProcess: SIGTERM, the wait, SIGKILL."""
        process = container.process
        if process is None or process.poll() is not None:
            return "exited"
        process.signals.append("TERM")
        if not process.holds_on:
            process.exit(143)
        while process.poll() is None:
            if interrupted.is_set():
                return "interrupted"
            if time.monotonic() >= deadline:
                process.signals.append("KILL")
                process.exit(137)
                return "killed"
            interrupted.wait(0.01)
        return "exited"

    def enter_argv(self, sandbox, argv, workdir=None) -> list[str]:
        return ["nsenter", "-t", str(sandbox.pause.pid), *([f"--wd={workdir}"] if workdir else []), "--", *argv]


class FakeDataPlane:
    """podnet.linux.dataplane.DataPlane's surface: not `real`, so no proxies, prober or announcer."""

    real = False

    def __init__(self, layout, cluster):
        self.layout, self.cluster = layout, cluster
        self.attached: dict[str, str] = {}
        self.calls: list[tuple] = []

    def build(self) -> None:
        self.calls.append(("build",))

    def attach(self, pod) -> str:
        self.calls.append(("attach", pod.ref))
        self.attached[pod.ref] = self.layout.pod_netns(pod.namespace, pod.name)
        return self.attached[pod.ref]

    def adopt_network(self) -> None:
        self.calls.append(("adopt_network",))

    def collect_garbage(self) -> list[str]:
        self.calls.append(("collect_garbage",))
        return []

    def adopt(self, pod, netns: str) -> None:
        self.calls.append(("adopt", pod.ref))
        self.attached[pod.ref] = netns

    def detach(self, namespace: str, name: str) -> None:
        self.calls.append(("detach", f"{namespace}/{name}"))
        self.attached.pop(f"{namespace}/{name}", None)

    def teardown(self) -> None:
        self.calls.append(("teardown",))
        self.attached.clear()
