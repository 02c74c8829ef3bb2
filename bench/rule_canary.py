"""What the canary check costs (podnet.proxy.canary): the supervisor's look, every syncPeriod,
at each node's kube-proxy and NetworkPolicy tables.

    sudo PYTHONPATH=src python bench/rule_canary.py                    # 3 nodes, 1,000 Services
    sudo PYTHONPATH=src python bench/rule_canary.py --nodes 3 --services 5000

Everything runs in namespaces this script makes (`rc<hex>-nodeN`, no interface but lo) and
removes in a finally. Each node gets kube-proxy's nftables table with N Services x 10
endpoints (synthetic ServicePorts, one full sync) and a NetworkPolicy table's base chains.
Figures, medians of many rounds:
(1) a check round over every node, kube-proxy's table and the NetworkPolicy tables, while
    nothing changed (the nf_tables generation unmoved: one netlink round trip per node and owner);
(2) the same round when the generation moved (a commit somewhere in each node: every watched
    chain's rules counted — 16 chains of kube-proxy's, 3 of NetworkPolicy's);
(3) for comparison, what polling by running a tool costs: one `nft list chain` of one chain per
    node (what a canary read through the nft command would cost; kube-proxy's iptables mode runs
    `iptables` per poll);
(4) the repair: the table deleted, then the check that notices and the full sync that rewrites it.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from podnet.proxy.canary import Canary, NetlinkRuleCounter, Watched  # noqa: E402
from podnet.proxy.node import NftablesProxier  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy import POD_SUBNET, SERVICE_SUBNET, synthetic  # noqa: E402

POLICY_TABLES = """
table inet podnet-netpol {
  set egress-isolated { type ipv4_addr; }
  set ingress-isolated { type ipv4_addr; }
  chain egress {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    ip saddr != @egress-isolated accept
    meta nfproto ipv4 drop
  }
  chain ingress {
    type filter hook postrouting priority srcnat + 10; policy accept;
    ct state established,related accept
    ip daddr != @ingress-isolated accept
    fib saddr type local accept
    meta nfproto ipv4 drop
  }
}
table bridge podnet-netpol {
  chain prerouting {
    type filter hook prerouting priority filter; policy accept;
    ether type arp accept
    ether type ip accept
  }
}
"""
POLICY = [Watched("inet", "podnet-netpol", (("egress", 3), ("ingress", 4))),
          Watched("bridge", "podnet-netpol", (("prerouting", 2),))]


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, check=True, text=True, capture_output=True).stdout


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    tag = f"rc{secrets.token_hex(3)}"
    nodes = [f"{tag}-node{i}" for i in range(1, args.nodes + 1)]
    owners: list[tuple[Canary, list[Watched]]] = []
    proxiers: dict[str, NftablesProxier] = {}
    try:
        ports = synthetic(args.services)
        for node in nodes:
            sh("ip", "netns", "add", node)
            proxier = NftablesProxier(node, POD_SUBNET, SERVICE_SUBNET)
            started = time.monotonic()
            proxier.sync(ports)
            print(f"{node}: {args.services} Services loaded in {time.monotonic() - started:.2f} s")
            sh("ip", "netns", "exec", node, "nft", "-f", "-", stdin=POLICY_TABLES)
            proxiers[node] = proxier
            owners += [(Canary(NetlinkRuleCounter(node)), proxier.watched()), (Canary(NetlinkRuleCounter(node)), POLICY)]

        def round_() -> float:
            started = time.perf_counter()
            for canary, watched in owners:
                assert canary.check(watched) is None
            return time.perf_counter() - started

        round_()  # the sockets opened, each owner verified once
        quiet = [round_() for _ in range(args.rounds)]
        moved = []
        for _ in range(args.rounds // 4):
            for canary, _ in owners:
                canary.forget()  # as after a commit in the namespace: every watched chain read
            moved.append(round_())
        forked = []
        for _ in range(20):
            started = time.perf_counter()
            for node in nodes:
                sh("ip", "netns", "exec", node, "nft", "list", "chain", "ip", "kube-proxy", "nat-prerouting")
            forked.append(time.perf_counter() - started)
        print(f"one check round, {args.nodes} nodes x (kube-proxy + NetworkPolicy), {args.services} Services each:")
        print(f"  nothing changed (generation unmoved): {median_ms(quiet)}")
        print(f"  generation moved (every watched chain counted): {median_ms(moved)}")
        print(f"  for comparison, one `nft list chain` per node: {median_ms(forked)}")

        node, proxier = nodes[0], proxiers[nodes[0]]
        canary, watched = owners[0]
        repairs = []
        for _ in range(5):
            sh("ip", "netns", "exec", node, "nft", "delete", "table", "ip", "kube-proxy")
            started = time.perf_counter()
            reason = canary.check(watched)
            noticed = time.perf_counter() - started
            assert reason == "table ip kube-proxy was deleted", reason
            proxier.force_full()
            proxier.sync(ports)
            repairs.append((noticed, time.perf_counter() - started))
            assert canary.check(watched) is None
        print(f"repair of a deleted table on one node: noticed in {median_ms([r[0] for r in repairs])}, "
              f"rewritten (one full sync) after {median_ms([r[1] for r in repairs])}")
    finally:
        for canary, _ in owners:
            canary.close()
        for proxier in proxiers.values():
            proxier.close()
        for node in nodes:
            subprocess.run(["ip", "netns", "del", node], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
