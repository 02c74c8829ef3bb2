"""Shared helpers: compute a cluster from inline YAML, as a user would from a file; free ports."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import socket
import sys
import tempfile
import textwrap

import pytest
from hypothesis import HealthCheck, settings

from podnet.api.loader import LoadedFiles, _parse_text
from podnet.api.store import admit
from podnet.config import ClusterConfig, parse_config
from podnet.controlplane import Cluster, compute
from podnet.host.netns import create_netns, delete_netns


_KUBECONFIG_DIR: list[str] = []

# No Hypothesis test depends on how fast the machine is: the default 200 ms deadline per example
# and the too_slow health check fail a test when a loaded worker is descheduled, or collects
# garbage, in the middle of one example. Loaded here, before any test module is imported, so
# every @settings(...) that leaves these out inherits them.
settings.register_profile("podnet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("podnet")


def pytest_configure(config):
    """No test writes the user's kubeconfig: `podnet up` merges a context into $KUBECONFIG (or
    ~/.kube/config) and `down` removes it, so the whole run, and every `podnet` it starts,
    points $KUBECONFIG at a file of its own."""
    directory = tempfile.mkdtemp(prefix="podnet-test-kubeconfig-")
    _KUBECONFIG_DIR.append(directory)
    os.environ["KUBECONFIG"] = os.path.join(directory, "config")


def pytest_unconfigure(config):
    for directory in _KUBECONFIG_DIR:
        shutil.rmtree(directory, ignore_errors=True)


def load_yaml(text: str, name: str = "test.yaml"):
    loaded = LoadedFiles()
    text = textwrap.dedent(text)
    loaded.texts[name] = text
    _parse_text(name, text, loaded)
    return admit(loaded)


def cluster_of(text: str = "", config: str | ClusterConfig | None = None) -> Cluster:
    if isinstance(config, str):
        config = parse_config(textwrap.dedent(config), "cluster.yaml")
    return compute(load_yaml(text), config or ClusterConfig())


# a Corefile podnet's DNS server refuses to run (autopath is not among its plugins)
UNRUNNABLE_COREFILE = """
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        autopath @kubernetes
        kubernetes cluster.local in-addr.arpa ip6.arpa
    }
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec: {containers: [{name: c, image: busybox, command: [sh, -c, "wget http://web/"]}]}
"""


@pytest.fixture
def stdin_text(monkeypatch):
    def feed(text: str) -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO(textwrap.dedent(text)))

    return feed


def run_cli(capsys, *argv):
    """Run `podnet ARGV…` in process: (exit code, stdout, stderr)."""
    from podnet.cli.main import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def admitted_during(age: str, took: float) -> bool:
    """An AGE cell of an object admitted by a command that took `took` seconds: whole seconds
    (as the API server's timestamps), no older than the command, however slow the machine."""
    return age.endswith("s") and age[:-1].isdigit() and int(age[:-1]) <= took + 1


def _port_range() -> range:
    """This test process's own ports: below the kernel's ephemeral range (which outgoing
    connections of every process draw from, so a port found free there can be taken before the
    server binds it), one slice per pytest-xdist worker (gw0, gw1, …), so workers never race."""
    try:
        ephemeral_low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    base, workers = 10000, 8
    span = max(100, (ephemeral_low - base) // workers)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) % workers if worker[2:].isdigit() else 0
    return range(base + index * span, base + (index + 1) * span)


_PORTS = iter(_port_range())


def free_port(tcp: bool = True, udp: bool = False) -> int:
    """A port on 127.0.0.1 free for TCP and/or UDP, never handed out before in this run (a test
    asking for several — a server and its health, ready and metrics ports — gets distinct ones),
    from this process's own slice of ports (`_port_range`)."""
    kinds = [kind for kind, wanted in ((socket.SOCK_STREAM, tcp), (socket.SOCK_DGRAM, udp)) if wanted]
    for port in _PORTS:
        try:
            for kind in kinds:
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue  # something else holds it
        return port
    raise RuntimeError("no free port left in this test process's range")


_ROOT_UNAVAILABLE: list[str | None] = []  # filled by the first root test: None or why not


def _why_no_namespaces() -> str | None:
    """None when this process can make network namespaces, or why a root test must be skipped
    (not root, not Linux, no iproute2). Checked once, when the first root test runs, never at
    collection. As root, a namespace that cannot be made is a failure, not a reason to skip."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "needs root and network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    probe = f"podnet-probe-{secrets.token_hex(3)}"
    try:
        create_netns(probe)
    except OSError as error:
        pytest.fail(f"running as root, but a network namespace cannot be made: {error}")
    delete_netns(probe)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Tests marked `root` run in real namespaces; without root they are skipped, with a reason."""
    if item.get_closest_marker("root") is None:
        return
    if not _ROOT_UNAVAILABLE:
        _ROOT_UNAVAILABLE.append(_why_no_namespaces())
    if _ROOT_UNAVAILABLE[0]:
        pytest.skip(_ROOT_UNAVAILABLE[0])
