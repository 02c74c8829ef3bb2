"""podnet mesh: what the running cluster's service mesh saw.

    podnet mesh traces [TRACE_ID] [--limit N] [-o json]   each request's span tree (the proxies' spans)
    podnet mesh stat [deploy|pod] [-n NS | -A]           golden metrics per workload, like `linkerd viz stat`
"""

from __future__ import annotations

import argparse
import json
import sys

from podnet.config import parse_go_duration
from podnet.errors import UsageError
from podnet.host.control import pick_cluster, request
from podnet.mesh import stats as mesh_stats
from podnet.output import table
from podnet.output import traces as trace_output

EXAMPLES = """examples:
  podnet mesh traces --limit 3
  podnet mesh traces 4bf92f3577b34da6a3ce929d0e0e4736 -o json
  podnet mesh stat deploy -n shop
"""


def add_parser(sub) -> None:
    parser = sub.add_parser("mesh", help="the service mesh's traces and golden metrics (a running cluster)",
                            description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    mesh_sub = parser.add_subparsers(dest="mesh_command", metavar="SUBCOMMAND", required=True)
    traces = mesh_sub.add_parser("traces", help="each request's span tree, most recent first")
    traces.add_argument("trace_id", nargs="?", metavar="TRACE_ID", help="only this trace")
    traces.add_argument("--limit", type=int, default=10, help="at most this many traces (default 10)")
    traces.add_argument("-o", "--output", choices=("text", "json"), default="text")
    traces.add_argument("--name", help="the cluster (default: the one running)")
    traces.set_defaults(mesh_run=run_traces)
    stat = mesh_sub.add_parser("stat", help="success rate, requests per second and latency per workload")
    stat.add_argument("kind", nargs="?", default="deploy", choices=("deploy", "deployment", "deployments", "pod", "pods", "po"))
    stat.add_argument("-n", "--namespace", default=None)
    stat.add_argument("-A", "--all-namespaces", action="store_true")
    stat.add_argument("-t", "--time-window", default="1m",
                      help="the figures cover this much time back (default 1m; less if the proxies are younger)")
    stat.add_argument("-o", "--output", choices=("text", "json"), default="text")
    stat.add_argument("--name", help="the cluster (default: the one running)")
    stat.set_defaults(mesh_run=run_stat)


def run(args) -> int:
    return args.mesh_run(args)


def run_traces(args) -> int:
    layout = pick_cluster(args.name)
    if not layout.state_dir.is_dir():
        raise UsageError(f"cluster {layout.cluster} is not running (podnet up)")
    found = trace_output.traces(trace_output.read_spans(layout.mesh_traces_dir))
    if args.trace_id:
        found = [t for t in found if t.trace_id == args.trace_id.lower()]
        if not found:
            raise UsageError(f"no trace {args.trace_id} in cluster {layout.cluster}")
    found = found[:max(0, args.limit)] if not args.trace_id else found
    if args.output == "json":
        json.dump([{"traceId": t.trace_id, "durationMs": t.duration_us / 1000, "workloads": t.services,
                    "spans": [{"id": s.span_id, "parentId": s.parent_id, "kind": s.kind, "workload": s.service,
                               "name": s.name, "durationMs": s.duration_us / 1000, "tags": s.tags} for s in t.spans]}
                   for t in found], sys.stdout, indent=2)
        print()
        return 0
    if not found:
        print(f"No traces in cluster {layout.cluster}: meshed pods' requests over HTTP ports leave them "
              "(a Service port named http…, or with an HTTPRoute)", file=sys.stderr)
        return 0
    print("\n\n".join(trace_output.render(t) for t in found))
    return 0


def run_stat(args) -> int:
    """The golden metrics per Deployment (or pod) of the namespace: every pod counted, meshed
    or not (MESHED says how many have a proxy), the figures from the proxies' counters."""
    try:
        window = parse_go_duration(args.time_window)
    except ValueError as exc:
        raise UsageError(f"--time-window: {exc}") from None
    kind = "pod" if args.kind in ("pod", "pods", "po") else "deploy"
    answer = request(pick_cluster(args.name), "meshStats", window=window)
    namespace = args.namespace or "default"
    chosen = {}
    for pod in answer["pods"]:
        metadata = pod.get("metadata") or {}
        if not args.all_namespaces and metadata.get("namespace") != namespace:
            continue
        if kind == "deploy" and not any(o.get("kind") == "ReplicaSet" for o in metadata.get("ownerReferences") or []):
            continue  # (linkerd viz stat deploy: the pods of Deployments)
        key = (metadata.get("namespace"), mesh_stats.workload_of(pod, kind))
        stat = chosen.setdefault(key, mesh_stats.WorkloadStat(key[1], key[0], 0, 0))
        stat.pods += 1
        ref = f"{metadata.get('namespace')}/{metadata.get('name')}"
        if ref in answer["samples"]:
            before, now = answer["samples"][ref]
            stat.meshed += 1
            mesh_stats.add(stat, mesh_stats.Sample.from_json(before), mesh_stats.Sample.from_json(now))
    found = [chosen[key] for key in sorted(chosen)]
    if args.output == "json":
        json.dump([s.to_json() for s in found], sys.stdout, indent=2)
        print()
        return 0
    if not found:
        print(f"No {'Deployments' if kind == 'deploy' else 'pods'} found in {'any namespace' if args.all_namespaces else namespace}.",
              file=sys.stderr)
        return 0
    rows = mesh_stats.render(found, kind)
    if args.all_namespaces:
        rows = [["NAMESPACE", *rows[0]]] + [[s.namespace, *row] for s, row in zip(found, rows[1:])]
    table.render(rows[0], rows[1:])
    return 0
