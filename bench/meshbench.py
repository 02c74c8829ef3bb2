"""What bench/mesh_latency.py and bench/mesh_push.py share: running commands, reading the
machine and processes from /proc, a supervisor layout under the run's own directory, and the
injected proxy container started as podnet's runtime starts it."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from podnet.host.layout import ClusterLayout  # noqa: E402
from podnet.host.netns import socket_in_netns  # noqa: E402
from podnet.mesh import pilot_agent  # noqa: E402
from podnet.mesh.interception import proxy_uid  # noqa: E402


def run(*argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=60, input=input)


def http_in(netns: str, address: str, port: int, path: str, method: str = "GET",
            timeout: float = 5.0) -> bytes:
    """One HTTP/1.1 request from inside `netns` (a socket opened there, used from here): the
    whole answer as it came, headers and body, once the server closed the connection."""
    s = socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect((address, port))
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    return data


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    return f"{os.cpu_count()} CPUs ({model}), kernel {platform.release()}"


def cpu_seconds(pid: int) -> float:
    """The CPU time of the process's threads (schedstat: nanoseconds, not utime's clock ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except OSError:
            pass
    return total / 1e9


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def host_busy() -> float:
    """CPU seconds the whole machine has been busy (/proc/stat: all but idle and iowait)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # (guest time is inside user)


@dataclass(frozen=True)
class BenchLayout(ClusterLayout):
    """The supervisor's layout, its state under this run's directory."""
    root: Path = Path(".")

    @property
    def state_dir(self) -> Path:
        return self.root


def sidecar_process(pod, netns: str, directory: Path, log: Path) -> subprocess.Popen:
    """The injected container as the runtime starts it: `python -m podnet.mesh.pilot_agent` with
    the args the injector wrote, Envoy as the pod's proxy uid (MeshProxies.prepare's for a
    cluster named "bench"), its span file beside `log`."""
    container = next(c for c in pod.spec["initContainers"] if c["name"] == "istio-proxy")
    args = [str(a).replace("$(POD_NAMESPACE)", pod.namespace) for a in container.get("args") or []]
    env = {**os.environ, pilot_agent.PROXY_DIR_ENV: str(directory), "PYTHONPATH": str(SRC),
           pilot_agent.PROXY_UID_ENV: str(proxy_uid(f"bench/{pod.ref}")),
           pilot_agent.TRACES_ENV: str(log.with_suffix(".spans.jsonl"))}
    with open(log, "ab") as out:
        return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "podnet.mesh.pilot_agent", *args],
                                env=env, stdout=out, stderr=out)
