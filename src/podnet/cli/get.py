"""podnet get: kubectl get over the computed cluster."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from podnet.api import labels
from podnet.api.kinds import ALL_KINDS, BY_KIND, resolve_kind
from podnet.api.objects import KubeObject
from podnet.cli import events
from podnet.cli.load import add_source_options, cluster_from_args
from podnet.controlplane import Cluster
from podnet.errors import UsageError
from podnet.output import table
from podnet.output.columns import COLUMNS

EXAMPLES = """examples:
  # every pod of the bundled example, with IPs and nodes, computed offline
  podnet get pods -A -o wide -f examples/shop

  # Services and their addresses in one namespace
  podnet get svc -n shop -f examples/shop

  # EndpointSlices as the controller would write them, in kubectl's JSON shape
  podnet get endpointslices -n shop -o json -f examples/shop

  # objects piped in from a real cluster
  kubectl get all -A -o yaml | podnet get pods -A -o wide -f -

  # what kubelet, the scheduler and the controllers said (a running cluster), and what comes next
  podnet get events -A -w

  # select by label, with a cluster config of your own
  podnet get po -l app.kubernetes.io/name=frontend -n shop -f examples/shop --config examples/cluster.yaml
"""


class NotFound(UsageError):
    exit_code = 1


class NoAliasDumper(yaml.SafeDumper):
    """kubectl never prints YAML anchors, even where two objects share a value."""

    def ignore_aliases(self, data) -> bool:
        return True


def qualified(kind: str) -> str:
    """kubectl's resource.group form: pod, deployment.apps, endpointslice.discovery.k8s.io."""
    info = BY_KIND[kind]
    group = info.api_version.rpartition("/")[0]
    return f"{info.singular}.{group}" if group else info.singular


def parse_kinds(text: str) -> list[str]:
    kinds: list[str] = []
    for word in text.split(","):
        if word.lower() == "all":
            kinds += [k for k in ALL_KINDS if k not in kinds]
            continue
        info = resolve_kind(word)
        if info is None:
            raise UsageError(f'error: the server doesn\'t have a resource type "{word}"')
        if info.kind not in kinds:
            kinds.append(info.kind)
    return kinds


def select(cluster: Cluster, kinds: list[str], names: list[str], namespace: str | None,
           all_namespaces: bool, selector: str | None) -> list[KubeObject]:
    try:
        wanted = labels.parse(selector) if selector else None
    except ValueError as exc:
        raise UsageError(f"error: {exc}") from None
    found = []
    for kind in kinds:
        namespaced = BY_KIND[kind].namespaced
        objs = cluster.of_kind(kind, None if all_namespaces or not namespaced else namespace)
        if names:
            for name in names:
                match = next((o for o in objs if o.name == name), None)
                if match is None:
                    raise NotFound(f'Error from server (NotFound): {BY_KIND[kind].plural} "{name}" not found')
                found.append(match)
            continue
        found += [o for o in objs if wanted is None or wanted.matches(o.labels)]
    return found


def api_body(obj: KubeObject) -> dict[str, Any]:
    """The object as the API would serve it (no null placeholders left from computing)."""
    return obj.body


def as_list(objs: list[KubeObject]) -> dict[str, Any]:
    return {"apiVersion": "v1", "items": [api_body(o) for o in objs], "kind": "List", "metadata": {"resourceVersion": ""}}


def add_parser(sub) -> None:
    p = sub.add_parser("get", help="list objects, kubectl-style, with status computed",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", metavar="KIND[,KIND…]", help="pods|po, services|svc, endpoints|ep, endpointslices, "
                   "networkpolicies|netpol, ingresses|ing, ingressclasses, nodes|no, namespaces|ns, deploy, "
                   "statefulsets|sts, daemonsets|ds, replicasets|rs, secrets, configmaps|cm, events|ev, all")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-n", "--namespace", help="namespace (default: default)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument("-o", "--output", choices=["wide", "json", "yaml", "name"], help="output format")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier in (a,b)")
    p.add_argument("-w", "--watch", action="store_true", help="events: after the list, stream new ones")
    p.add_argument("--field-selector", help="events: e.g. involvedObject.name=web-0,type=Warning")
    add_source_options(p)


def run(args) -> int:
    if args.kind.lower() in events.NAMES:
        return events.run(args)
    if args.watch:
        raise UsageError("error: -w streams events only (podnet get events -w)")
    kinds = parse_kinds(args.kind)
    names = list(args.names)
    if names and len(kinds) > 1:
        raise UsageError("error: a name can only be given with a single resource type")
    cluster = cluster_from_args(args.filename, args.config, args.name)
    namespace = args.namespace or "default"
    objs = select(cluster, kinds, names, namespace, args.all_namespaces, args.selector)
    out = sys.stdout
    if args.output in ("json", "yaml"):
        document = api_body(objs[0]) if names and len(objs) == 1 else as_list(objs)
        if args.output == "json":
            out.write(json.dumps(document, indent=4) + "\n")
        else:
            yaml.dump(document, out, Dumper=NoAliasDumper, sort_keys=True, default_flow_style=False)
        return 0
    if args.output == "name":
        for o in objs:
            out.write(f"{qualified(o.kind)}/{o.name}\n")
        return 0
    if not objs:
        where = "" if args.all_namespaces else f" in {namespace} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
        return 0
    wide = args.output == "wide"
    show_kind = len(kinds) > 1
    first = True
    for kind in kinds:
        of_kind = [o for o in objs if o.kind == kind]
        if not of_kind:
            continue
        headers, wide_headers, row_of = COLUMNS[kind]
        headers = headers + (wide_headers if wide else [])
        rows = []
        for o in of_kind:
            row = row_of(o, wide)
            if show_kind:
                row[0] = f"{qualified(kind)}/{row[0]}"
            if args.all_namespaces and BY_KIND[kind].namespaced:
                row = [o.namespace] + row
            rows.append(row)
        if args.all_namespaces and BY_KIND[kind].namespaced:
            headers = ["NAMESPACE"] + headers
        if not first:
            out.write("\n")
        first = False
        table.render(headers, rows, out)
    return 0
