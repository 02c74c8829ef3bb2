"""LoadBalancer IPs answered on the LAN, MetalLB layer-2 style.

The node that semantics/loadbalancer elects for an address holds it on its `lo` (scope host
routes aside, a local address is what makes Linux answer ARP for it on eth0 with the default
arp_ignore=0), so the LAN's ARP requests for it get that node's MAC; kube-proxy's rules on the
node then translate the traffic like any other. When the owner changes, the old node lets go
first and the new one sends a gratuitous ARP, as MetalLB's speaker does on fail-over, so the
clients' neighbour caches follow at once.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable

from podnet.controlplane import Cluster
from podnet.host.layout import ClusterLayout
from podnet.semantics.loadbalancer import announcements
from podnet.semantics.topology import NODE_UPLINK

log = logging.getLogger("podnet.l2announce")
ANNOUNCE_DEVICE = "lo"

Runner = Callable[[list[str], str | None], None]


def run_command(argv: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, text=True, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")


class L2Announcer:
    """Keeps each node's announced addresses equal to what the cluster state elects."""

    def __init__(self, layout: ClusterLayout, run: Runner = run_command):
        self.layout = layout
        self.run = run
        self.current: dict[str, set[str]] = {}

    def sync(self, cluster: Cluster) -> dict[str, set[str]]:
        desired = announcements(cluster)
        nodes = sorted(set(desired) | set(self.current))
        for node in nodes:  # let go first, so no address is ever answered by two nodes
            gone = self.current.get(node, set()) - desired.get(node, set())
            if gone:
                self._batch(node, [f"address del {ip}/32 dev {ANNOUNCE_DEVICE}" for ip in sorted(gone)])
        for node in nodes:
            new = desired.get(node, set()) - self.current.get(node, set())
            if new:
                self._batch(node, [f"address replace {ip}/32 dev {ANNOUNCE_DEVICE}" for ip in sorted(new)])
                for ip in sorted(new):
                    self._gratuitous_arp(node, ip)
        self.current = {node: set(ips) for node, ips in desired.items() if ips}
        return desired

    def _batch(self, node: str, commands: list[str]) -> None:
        self.run(["ip", "-n", self.layout.node_netns(node), "-batch", "-"], "\n".join(commands) + "\n")

    def _gratuitous_arp(self, node: str, ip: str) -> None:
        try:
            self.run(["ip", "netns", "exec", self.layout.node_netns(node), "arping", "-q", "-U", "-c", "1",
                      "-I", NODE_UPLINK, ip], None)
        except (RuntimeError, OSError) as exc:  # the address still answers ARP requests
            log.warning("gratuitous ARP for %s from node %s failed: %s", ip, node, exc)
