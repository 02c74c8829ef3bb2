"""A supervisor SIGKILLed on a cluster whose kube-proxy runs in userspace mode (root only).

In nftables and iptables modes the Service rules stay in the nodes' kernels while no supervisor
runs (tests/test_crash_root.py: not one request fails). The userspace proxy's listeners are
sockets of the supervisor's own process, so they die with it — as kube-proxy's userspace mode
dropped its proxying when kube-proxy restarted — and the table left in the kernel redirects
ClusterIP connections to ports nobody listens on: they are refused. The supervisor the watchdog
starts opens new listeners and points the table at them before it answers its control socket,
so from then on every request is served again. The client (a pod, one new connection per
request) may fail while no supervisor runs, never afterwards; how long ClusterIP was down is
printed (run with -s), not asserted.
"""

from __future__ import annotations

import json
import os
import secrets
import signal

import pytest

from podnet.host.control import send
from podnet.host.layout import ClusterLayout
from tests.livecluster import WEB_SERVICE, netexec_deployment, pause_pod, podnet, up_cluster
from tests.test_crash_root import supervisor_answering
from tests.test_termination_root import Client, all_ready, wait_for

pytestmark = pytest.mark.root

APP = netexec_deployment(2, probe=False) + WEB_SERVICE + pause_pod("client", "node1")


@pytest.fixture
def cluster(tmp_path):
    name = f"cu{secrets.token_hex(3)}"
    with up_cluster(tmp_path, name, APP, networking="{proxyMode: userspace}"):
        wait_for(lambda: all_ready(name, "default"), 180, "every pod Ready")
        yield name, tmp_path


def test_a_restarted_supervisor_serves_the_cluster_ip_again_in_userspace_mode(cluster):
    name, tmp = cluster
    layout = ClusterLayout(name)
    cluster_ip = {s["metadata"]["name"]: s for s in json.loads(
        podnet("get", "svc", "-o", "json", "--name", name).stdout)["items"]}["web"]["spec"]["clusterIP"]
    stop = tmp / "stop"
    client = Client(name, "default/client", cluster_ip, 80, "web", str(stop))
    try:
        wait_for(lambda: client.successes() >= 10 or client.errors(), 120, "the client answered")
        assert client.errors() == [], client.errors()[:5]
        supervisor = send(layout.socket_path, {"op": "ping"}, timeout=10)["pid"]
        before = len(client.answers)
        os.kill(supervisor, signal.SIGKILL)
        wait_for(lambda: supervisor_answering(layout, supervisor), 120, "a new supervisor answering")
        answering = client.marked(str(stop))  # (an answer still in the pipe is from before)
        wait_for(lambda: client.successes(answering) >= 20, 120, "answers after the restart")
        # once the new supervisor answers, its listeners serve: no failure from then on
        assert [a for a in client.answers[answering:] if not a.startswith("ok ")] == []
        log = (layout.state_dir / "supervisor.log").read_text()
        assert "pods re-adopted" in log
        gap = [a for a in client.answers[before:answering] if a != "mark"]
        print(f"\nuserspace mode: {sum(1 for a in gap if not a.startswith('ok '))} of {len(gap)} requests "
              f"failed between the SIGKILL and the new supervisor answering")
    finally:
        stop.write_text("")
        client.finish()
