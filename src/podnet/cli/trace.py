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

  # the same request the way users send it to the controller, with curl's options:
  # a Host header to the LoadBalancer IP, or --resolve to pin the name to an address
  podnet trace external http://192.168.1.200/api -H 'Host: shop.example.com' -f examples/shop
  podnet trace external http://shop.example.com/api --resolve shop.example.com:80:192.168.1.200 -f examples/shop

  # a node's address and the controller's NodePort; no Host header: nginx's catch-all server _ answers
  podnet trace external http://192.168.1.11:32578/ -f examples/shop
"""


def add_parser(sub) -> None:
    p = sub.add_parser("trace", help="follow one connection hop by hop (DNS, kube-proxy, overlay, policy)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="NS/POD, node/NAME or external")
    p.add_argument("dst", metavar="DST", help="NS/POD, a Service (svc, svc.ns, FQDN), any DNS name, IP[:PORT], "
                                              "node/NAME, external, or http(s)://host/path")
    p.add_argument("-p", "--port", help="destination port, a number or a name (default: the Service's only port)")
    p.add_argument("--protocol", default="TCP", type=str.upper, choices=["TCP", "UDP", "SCTP"])
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="an HTTP header, as curl's -H (repeatable): 'Host: h' is the host nginx routes by, while "
                        "the connection still goes to the URL's host; 'Name:' removes a header curl sends itself")
    p.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDR[,ADDR]",
                   help="as curl's --resolve (repeatable): connect to ADDR for HOST:PORT without asking DNS; "
                        "the Host header and TLS SNI stay HOST; HOST * matches any host")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    add_source_options(p)


def run(args) -> int:
    cluster = cluster_from_args(args.filename, args.config, args.name)
    result = Tracer(cluster).trace(args.src, args.dst, args.port, args.protocol, args.header, args.resolve)
    if args.output == "json":
        print(json.dumps(result.to_json(), indent=2))
        return 0
    render_text(result, sys.stdout)
    return 0


def render_text(result, out) -> None:
    if result.request:
        out.write(f"request: {_request_line(result.request)}\n")
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


def _request_line(request: dict) -> str:
    headers = ", ".join(f"{h['name']}: {h['value']}" for h in request["headers"]) or "no Host header"
    where = f"{request['address']}:{request['port']}" if request["address"] else "nowhere"
    how = {"resolve": "--resolve", "url": "the URL's address", "dns": "the cluster DNS",
           "ingress": "the ingress controller's address"}[request["resolved_by"]]
    sni = f", SNI {request['sni']}" if request["sni"] else ""
    return f"{request['method']} {request['url']} ({headers}{sni}) → {where} ({how})"
