"""A hostNetwork pod's processes found by their UTS namespace (root only; podnet.linux.strays):
in a node's network namespace, a pod recorded, a pod not recorded and a node session; only the
unrecorded pod's processes are strays."""

from __future__ import annotations

import secrets
import subprocess
import time

import pytest

from podnet.host.netns import create_netns, delete_netns, kill_pids, pids_in_netns
from podnet.linux.strays import unrecorded_pod_processes, uts_namespace

pytestmark = pytest.mark.root


def sandbox(netns: str) -> subprocess.Popen:
    """As the runtime starts a hostNetwork pod's sandbox: the node's network, a UTS namespace of its own."""
    return subprocess.Popen(["ip", "netns", "exec", netns, "unshare", "--uts", "--fork", "--kill-child", "--",
                             "sh", "-c", 'hostname "$0" && exec sleep infinity', "node1"], start_new_session=True)


def commands(pids) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(open(f"/proc/{pid}/comm").read().strip())
        except OSError:
            out.append("?")  # (gone meanwhile)
    return out


def test_only_the_processes_of_an_unrecorded_pod_are_strays():
    netns = f"podnet-st{secrets.token_hex(3)}.node-node1"
    create_netns(netns)
    started: list[subprocess.Popen] = []
    try:
        recorded, unrecorded = sandbox(netns), sandbox(netns)
        session = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "infinity"], start_new_session=True)
        started += [recorded, unrecorded, session]
        deadline = time.monotonic() + 30
        # each sandbox: unshare and its child, once the child's shell has set the hostname and become
        # sleep (before, its `hostname` is a third process there); the session: sleep
        while sorted(commands(pids_in_netns([netns]).get(netns, []))) != ["sleep"] * 3 + ["unshare"] * 2 \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        # a container of the recorded pod, entered as the runtime does
        while uts_namespace(recorded.pid) == uts_namespace("self") and time.monotonic() < deadline:
            time.sleep(0.02)
        container = subprocess.Popen(["nsenter", "-t", str(recorded.pid), "--net", "--uts", "--", "sleep", "infinity"],
                                     start_new_session=True)
        started.append(container)
        strays = unrecorded_pod_processes([netns], [recorded.pid, 0])
        everything = set(pids_in_netns([netns])[netns])
        assert set(strays) == {netns}
        assert unrecorded.pid in strays[netns]
        assert {recorded.pid, container.pid, session.pid}.isdisjoint(strays[netns])
        assert {uts_namespace(pid) for pid in strays[netns]} == {uts_namespace(unrecorded.pid)}
        # all of the unrecorded sandbox: its unshare and the sleep under it
        assert set(strays[netns]) == {pid for pid in everything if uts_namespace(pid) == uts_namespace(unrecorded.pid)}
        assert len(strays[netns]) == 2
    finally:
        kill_pids([p.pid for p in started] + pids_in_netns([netns]).get(netns, []))
        for process in started:
            process.wait(10)
        delete_netns(netns)
