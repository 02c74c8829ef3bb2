"""Fakes for driving the supervisor without root: processes, a runtime, a data plane."""

from __future__ import annotations

from pathlib import Path

import yaml

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
    """A container's process: running until `exit(code)`."""

    _next_pid = 1000

    def __init__(self):
        FakeProcess._next_pid += 1
        self.pid = FakeProcess._next_pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def exit(self, code: int) -> None:
        self.returncode = code


def sandbox_of(pod, netns: str = "", logs: Path = Path("/nonexistent")) -> PodSandbox:
    """A sandbox whose containers all run, as Runtime.start_pod leaves one."""
    sandbox = PodSandbox(pod.namespace, pod.name, netns, FakeProcess(), pod=pod)
    for spec in pod.spec.get("containers") or []:
        container = Container(spec["name"], ["sleep", "infinity"], {"POD": pod.name},
                              logs / f"{pod.namespace}_{pod.name}_{spec['name']}.log", pod.spec.get("restartPolicy", "Always"))
        container.process = FakeProcess()
        sandbox.containers.append(container)
    return sandbox


class FakeRuntime:
    """podnet.linux.runtime.Runtime's surface, recording what the supervisor asked of it."""

    def __init__(self, layout, cluster):
        self.layout, self.cluster = layout, cluster
        self.pods: dict[str, PodSandbox] = {}
        self.calls: list[tuple] = []
        self.fail: set[str] = set()  # refs whose start fails

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

    def detach(self, namespace: str, name: str) -> None:
        self.calls.append(("detach", f"{namespace}/{name}"))
        self.attached.pop(f"{namespace}/{name}", None)

    def teardown(self) -> None:
        self.calls.append(("teardown",))
        self.attached.clear()
