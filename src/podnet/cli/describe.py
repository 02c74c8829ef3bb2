"""podnet describe: kubectl describe over the computed cluster.

Each object ends with its Events, as kubectl's describers end: on a running cluster those the
supervisor recorded about it (podnet.linux.supervisor.events); offline `<none>`.
"""

from __future__ import annotations

import argparse
import sys

from podnet.api.kinds import BY_KIND, RBAC_KINDS
from podnet.cli.get import NotFound, parse_kinds
from podnet.cli.load import add_source_options, cluster_from_args, running_events
from podnet.errors import UsageError
from podnet.output import describe as layouts
from podnet.output import events as event_layout

EXAMPLES = """examples:
  podnet describe svc backend -n shop -f examples/shop
  podnet describe node node1 -f examples/shop
  podnet describe netpol -n shop -f examples/shop
  podnet describe anp -f examples/admin-network-policy
"""


def add_parser(sub) -> None:
    p = sub.add_parser("describe", help="show one object in detail", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", metavar="KIND")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-n", "--namespace")
    add_source_options(p)


def run(args) -> int:
    kinds = parse_kinds(args.kind)
    if len(kinds) != 1:
        raise UsageError("error: describe takes one resource type")
    kind = kinds[0]
    cluster = cluster_from_args(args.filename, args.config, args.name)
    namespace = (args.namespace or "default") if BY_KIND[kind].namespaced else None
    candidates = cluster.of_kind(kind, namespace)
    chosen = [o for o in candidates if not args.names or o.name in args.names]
    if args.names:
        missing = sorted(set(args.names) - {o.name for o in chosen})
        if missing:
            raise NotFound(f'Error from server (NotFound): {BY_KIND[kind].plural} "{missing[0]}" not found')
    recorded = running_events(args.name)[0] if not args.filename and chosen else []
    blocks = []
    for obj in chosen:
        if kind == "Pod":
            lines = layouts.describe_pod(obj, cluster.config.standins)
        elif kind == "Service":
            endpoints = []
            for s in cluster.of_kind("EndpointSlice", obj.namespace):
                if s.labels.get("kubernetes.io/service-name") != obj.name:
                    continue
                for port in s.body.get("ports") or []:
                    for e in s.body.get("endpoints") or []:
                        if e.get("conditions", {}).get("ready", True):
                            endpoints += [f"{port.get('name') or ''}|{a}:{port.get('port')}" for a in e.get("addresses") or []]
            lines = layouts.describe_service(obj, endpoints)
        elif kind == "Node":
            pods = [p for p in cluster.of_kind("Pod") if p.spec.get("nodeName") == obj.name]
            lines = layouts.describe_node(obj, pods)
        elif kind == "NetworkPolicy":
            lines = layouts.describe_networkpolicy(obj)
        elif kind in ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy"):
            lines = layouts.describe_admin_network_policy(obj)
        elif kind == "Ingress":
            lines = layouts.describe_ingress(obj)
        elif kind in ("Role", "ClusterRole"):
            lines = layouts.describe_role(obj)
        elif kind in ("RoleBinding", "ClusterRoleBinding"):
            lines = layouts.describe_binding(obj)
        elif kind == "ServiceAccount":
            lines = layouts.describe_service_account(obj)
        else:
            lines = layouts.describe_generic(obj)
        if kind not in RBAC_KINDS:  # kubectl's RBAC describers show no events
            lines = lines + event_layout.describe_lines(event_layout.about(recorded, obj.kind, obj.namespace, obj.name))
        blocks.append("\n".join(lines))
    if not blocks:
        print(f"No resources found in {namespace or 'the cluster'}" + (" namespace." if namespace else "."), file=sys.stderr)
        return 0
    sys.stdout.write("\n\n\n".join(blocks) + "\n")
    return 0
