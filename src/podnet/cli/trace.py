"""podnet trace: one connection, hop by hop.

The simulator (podnet.sim.trace) predicts; on a running cluster this command then checks that
each node the path crosses enforces the state the prediction used (podnet.linux.enforced) and
says so at the hop when one does not, since the verdict is then only a prediction.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor

from podnet.cli.load import add_source_options, cluster_from_args, running_state
from podnet.host.control import request
from podnet.ingressnginx.status import ControllerStatus
from podnet.linux.enforced import (
    INGRESS_NGINX,
    KUBE_PROXY,
    NETWORK_POLICY,
    NodeSync,
    controller_sync,
    policy_sync,
    proxy_sync,
    read_kernel_shape,
)
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

on a running cluster (no -f), trace predicts from the state the supervisor holds and checks
that every node the path crosses enforces that state: the NetworkPolicy table in the node's
kernel (read with nft) for the policy hops, kube-proxy's last sync for the Service hops. A node
that is not in sync (its last sync failed, a sync is pending, or its table was changed outside
podnet) is named at its hop, "inSync": false in -o json, and the exit status is 3: the verdict
is then a prediction, not what the kernel does now.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("trace", help="follow one connection hop by hop (DNS, kube-proxy, overlay, policy)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", metavar="SRC", help="NS/POD, node/NAME or external")
    p.add_argument("dst", metavar="DST", help="NS/POD, a Service (svc, svc.ns, FQDN), any DNS name, IP[:PORT], "
                                              "node/NAME, external, or http(s)://host/path")
    p.add_argument("-p", "--port", help="destination port, a number or a name (default: the Service's only port)")
    p.add_argument("--protocol", default="TCP", type=str.upper, choices=["TCP", "UDP", "SCTP", "ICMP"])
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="an HTTP header, as curl's -H (repeatable): 'Host: h' is the host nginx routes by, while "
                        "the connection still goes to the URL's host; 'Name:' removes a header curl sends itself")
    p.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDR[,ADDR]",
                   help="as curl's --resolve (repeatable): connect to ADDR for HOST:PORT without asking DNS; "
                        "the Host header and TLS SNI stay HOST; HOST * matches any host")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    add_source_options(p)


def run(args) -> int:
    live = None if args.filename else running_state(args.name)
    cluster = live.cluster if live else cluster_from_args(args.filename, args.config, args.name)
    result = Tracer(cluster).trace(args.src, args.dst, args.port, args.protocol, args.header, args.resolve)
    checks = live_checks(result, live) if live else []
    if args.output == "json":
        print(json.dumps(with_checks(result.to_json(), result, checks), indent=2))
    else:
        render_text(result, sys.stdout, checks)
    if not all(c.in_sync for c in checks) and request(live.layout, "generation")["generation"] != live.generation:
        print("note: the cluster changed while tracing; trace again for the new state", file=sys.stderr)
    return NOT_IN_SYNC if any(not c.in_sync for c in checks) else 0


# ---- a live cluster: does the kernel of each node the path crosses hold this state's rules? ----

NOT_IN_SYNC = 3  # the exit status when a crossed node's rules are not in sync: the verdict is a prediction
POLICY_ACTIONS = ("egress-allow", "egress-deny", "ingress-allow", "ingress-deny")
PROXY_ACTIONS = ("service", "reject")  # kube-proxy's translation, or its reject of a port it has not


def hop_rules(hop) -> tuple[str, str] | None:
    """(node, rules) a hop was decided by on a node, or None: NetworkPolicy for the policy
    hops (the source's node for egress, the destination's for ingress), kube-proxy for the
    Service hops."""
    if not hop.at.startswith("node/"):
        return None
    if hop.action in POLICY_ACTIONS:
        return hop.at[5:], NETWORK_POLICY
    if hop.action in PROXY_ACTIONS:
        return hop.at[5:], KUBE_PROXY
    return None


def hop_controller(hop) -> tuple[str, str] | None:
    """(controller pod, ingress-nginx) for the hop where nginx routed the request."""
    return (hop.at, INGRESS_NGINX) if hop.action == "route" and "/" in hop.at and not hop.at.startswith("node/") \
        else None


def crossed(result) -> list[tuple[str, str]]:
    """The (node, rules) the path crosses, the chosen path's and every candidate's, in order."""
    found: dict[tuple[str, str], None] = {}
    for hop in [*result.hops, *(h for fate in result.fates for h in fate.hops)]:
        key = hop_rules(hop) or hop_controller(hop)
        if key is not None:
            found.setdefault(key)
    return list(found)


def live_checks(result, live, read=None) -> list[NodeSync]:
    """Judge every crossed node against the state the trace used (podnet.linux.enforced): one
    read of the kernel's policy table per crossed node (`read`: netns -> TableShape), the nodes
    in parallel (nft takes about 0.4 s to list a table of 7,000 rules)."""
    read = read or read_kernel_shape

    def check(crossing: tuple[str, str]) -> NodeSync:
        node, rules = crossing
        if rules == INGRESS_NGINX:  # `node` is the controller pod: what its nginx serves
            return controller_sync(node, live.generation, lambda: controller_status(live.layout, node))
        record = live.nodes.get(node) or {}
        if rules == KUBE_PROXY:
            return proxy_sync(node, record.get("kubeProxy"))
        return policy_sync(node, live.generation, record.get("networkPolicy"),
                           lambda: read(live.layout.node_netns(node)))

    crossings = crossed(result)
    with ThreadPoolExecutor(max_workers=max(1, len(crossings))) as pool:
        return list(pool.map(check, crossings))


def controller_status(layout, pod: str) -> ControllerStatus | None:
    """The status the controller pod `ns/name` wrote (any of its containers running the controller)."""
    namespace, name = pod.split("/", 1)
    for directory in layout.ingress_controller_dirs(namespace, name):
        status = ControllerStatus.read(directory)
        if status is not None:
            return status
    return None


def with_checks(out: dict, result, checks: list[NodeSync]) -> dict:
    """trace -o json, plus on a live cluster: `inSync` (every crossed node's rules hold this
    state), `sync` (each check), and on each checked hop `inSync` (with `syncReason` when not)."""
    if not checks:
        return out
    by_key = {(c.node, c.rules): c for c in checks}
    for hop, shown in zip(result.hops, out["hops"]):
        check = by_key.get(hop_rules(hop) or hop_controller(hop))
        if check is not None:
            shown["inSync"] = check.in_sync
            if not check.in_sync:
                shown["syncReason"] = check.reason
    out["inSync"] = all(c.in_sync for c in checks)
    out["sync"] = [c.to_json() for c in checks]
    return out


def render_text(result, out, checks: list[NodeSync] = ()) -> None:
    stale = {(c.node, c.rules): c for c in checks if not c.in_sync}
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
        check = stale.get(hop_rules(hop) or hop_controller(hop))
        if check is not None:
            out.write(f"{'':<{width}}  ! {check.describe()}: this hop is a prediction\n")
    out.write(f"\n{result.verdict.upper()}: {result.reason}\n")
    if result.ingress:
        ing = result.ingress
        out.write(f"ingress: {ing['ingress']} host {ing['host']} path {ing['path']} ({ing['pathType']}) → "
                  f"{ing['backend']}, upstream path {ing['upstream_path']}\n")
    if stale:
        out.write("\nNOT IN SYNC: the kernel may not do what this trace predicts; this verdict is a prediction:\n")
        for check in stale.values():
            out.write(f"  {check.describe()}\n")


def _request_line(request: dict) -> str:
    headers = ", ".join(f"{h['name']}: {h['value']}" for h in request["headers"]) or "no Host header"
    where = f"{request['address']}:{request['port']}" if request["address"] else "nowhere"
    how = {"resolve": "--resolve", "url": "the URL's address", "dns": "the cluster DNS",
           "ingress": "the ingress controller's address"}[request["resolved_by"]]
    sni = f", SNI {request['sni']}" if request["sni"] else ""
    return f"{request['method']} {request['url']} ({headers}{sni}) → {where} ({how})"
