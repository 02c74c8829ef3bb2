"""podnet trace: one connection, hop by hop."""

from __future__ import annotations

import argparse
import json
import sys

from podnet.cli.load import add_source_options, cluster_from_args
from podnet.sim.trace import Tracer

EXAMPLES = """examples:
  # pod to Service by name, through the pod's DNS search list and kube-proxy
  podnet trace shop/frontend-57d4ddf97c-g6r5s backend.shop -f examples/shop

  # pod to pod on a port, blocked or not by NetworkPolicy
  podnet trace data/redis-0 shop/backend-5c75db85f7-nwvjh -p 8080 -f examples/shop

  # from outside the cluster, through a NodePort or a LoadBalancer IP
  podnet trace external 192.168.1.11:30080 -f examples/shop
  podnet trace external 192.168.1.201:80 -f examples/shop

  # an HTTP request through Ingress, as JSON for scripts
  podnet trace external http://shop.example.com/api/items -f examples/shop -o json
"""


def add_parser(sub) -> None:
    p = sub.add_parser("trace", help="follow one connection hop by hop (DNS, kube-proxy, overlay, policy)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="NS/POD, node/NAME or external")
    p.add_argument("dst", metavar="DST", help="NS/POD, a Service (svc, svc.ns, FQDN), any DNS name, IP[:PORT], "
                                              "node/NAME, external, or http(s)://host/path")
    p.add_argument("-p", "--port", help="destination port, a number or a name (default: the Service's only port)")
    p.add_argument("--protocol", default="TCP", type=str.upper, choices=["TCP", "UDP", "SCTP"])
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    add_source_options(p)


def run(args) -> int:
    cluster = cluster_from_args(args.filename, args.config, args.name)
    result = Tracer(cluster).trace(args.src, args.dst, args.port, args.protocol)
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
        return 0
    render_text(result, sys.stdout)
    return 0


def render_text(result, out) -> None:
    width = max((len(h.at) for h in result.hops), default=8)
    action_width = max((len(h.action) for h in result.hops), default=8)
    if result.fates:
        out.write("candidates:\n")
        for fate in result.fates:
            mark = "✓" if fate.delivered else "✗"
            where = f" on {fate.backend.node}" if fate.backend.node else ""
            out.write(f"  {mark} {fate.backend.name} {fate.backend.ip}:{fate.backend.port}{where}: {fate.reason}\n")
        chosen = result.destination.get("pod") or result.destination.get("ip")
        out.write(f"the path to {chosen}:\n")
    for hop in result.hops:
        out.write(f"{hop.at:<{width}}  {hop.action:<{action_width}}  {hop.detail}\n")
    out.write(f"\n{result.verdict.upper()}: {result.reason}\n")
    if result.ingress:
        ing = result.ingress
        out.write(f"ingress: {ing['ingress']} host {ing['host']} path {ing['path']} ({ing['pathType']}) → "
                  f"{ing['backend']}, upstream path {ing['upstream_path']}\n")
