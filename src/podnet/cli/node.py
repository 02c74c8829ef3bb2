"""podnet node restart: a node reboot, for testing and demos (through the running supervisor)."""

from __future__ import annotations

import argparse
import sys
import time

from podnet.cli.running import require_root
from podnet.host.control import pick_cluster, request

NODE_EXAMPLES = """examples:
  sudo podnet node restart node2                 # node2 reboots: its pods come back, same names and IPs
  sudo podnet node restart node2 --name demo
  sudo podnet get pods -o wide -w                # watch them turn Ready again
  sudo podnet get events --field-selector involvedObject.kind=Node

`restart` is what a power cut and a boot do to a node: every process of its pods (each pod's
sandbox and its containers) is SIGKILLed at once, and the node's kube-proxy and NetworkPolicy
rules (nftables) are lost. Then the node comes back: its Services and policies are programmed
again before any of its pods runs, kubelet makes each pod's sandbox again in the same network
namespace (so with the same address) and starts its containers (RESTARTS + 1; no back-off,
kubelet has restarted too), and readiness is probed anew: the pods leave their Services'
endpoints until their readiness probes pass again. Events: Starting and Rebooted on the node,
SandboxChanged, Pulled, Created and Started on each pod.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("node", help="act on a node of a running cluster: restart (a reboot) (root)",
                       description="Act on a node of a running cluster.", epilog=NODE_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["restart"], help="restart: reboot the node (its pods come back)")
    p.add_argument("node", metavar="NODE", help="the node's name, as `podnet get nodes` lists it")
    p.add_argument("--name", help="the cluster (default: the running one)")


def run(args) -> int:
    require_root("podnet node restart")
    layout = pick_cluster(args.name)
    started = time.monotonic()
    answer = request(layout, "restartNode", node=args.node)
    pods = answer.get("pods") or []
    print(f"node/{answer['node']} restarted: {len(pods)} pod{'s' if len(pods) != 1 else ''} started again "
          f"({time.monotonic() - started:.2f}s)")
    for ref in pods:
        print(f"  {ref}")
    for warning in answer.get("warnings") or []:
        print(warning, file=sys.stderr)
    return 0
