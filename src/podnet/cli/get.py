"""podnet get: kubectl get over the computed cluster."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import yaml

from podnet.api import labels
from podnet.api.kinds import ALL_KINDS, BY_KIND, resolve_kind
from podnet.api.objects import KubeObject
from podnet.cli import events, watching
from podnet.cli.load import add_source_options, cluster_from_args, following
from podnet.controlplane import Cluster
from podnet.errors import UsageError
from podnet.host.control import NotRunning
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

  # the pods of a running cluster, then a row for each change (readiness, restarts, deletion)
  podnet get pods -n shop -w

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


def wanted(kinds: list[str], names: list[str], namespace: str | None, all_namespaces: bool,
           selector: str | None) -> Callable[[KubeObject], bool]:
    """Whether an object is one the arguments ask for: of the kinds, in the namespace (unless
    -A, or the kind is cluster-scoped), named, or else matching the label selector."""
    try:
        by_labels = labels.parse(selector) if selector else None
    except ValueError as exc:
        raise UsageError(f"error: {exc}") from None

    def matches(obj: KubeObject) -> bool:
        if obj.kind not in kinds:
            return False
        if BY_KIND[obj.kind].namespaced and not all_namespaces and obj.namespace != namespace:
            return False
        if names:
            return obj.name in names
        return by_labels is None or by_labels.matches(obj.labels)
    return matches


def select(cluster: Cluster, kinds: list[str], names: list[str], namespace: str | None,
           all_namespaces: bool, selector: str | None) -> list[KubeObject]:
    """The objects asked for, kind by kind; a name that is not there is kubectl's NotFound."""
    matches = wanted(kinds, names, namespace, all_namespaces, selector)
    found = []
    for kind in kinds:
        objs = [o for o in cluster.of_kind(kind) if matches(o)]
        if names:
            for name in names:
                match = next((o for o in objs if o.name == name), None)
                if match is None:
                    raise NotFound(f'Error from server (NotFound): {BY_KIND[kind].plural} "{name}" not found')
                found.append(match)
            continue
        found += objs
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
                   "statefulsets|sts, daemonsets|ds, replicasets|rs, secrets, configmaps|cm, serviceaccounts|sa, roles, "
                   "rolebindings, clusterroles, clusterrolebindings, events|ev, all")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.add_argument("-n", "--namespace", help="namespace (default: default)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    p.add_argument("-o", "--output", choices=["wide", "json", "yaml", "name"], help="output format")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier in (a,b)")
    p.add_argument("-w", "--watch", action="store_true",
                   help="a running cluster: after the list, a row (or object) for each change, until Ctrl-C")
    p.add_argument("--watch-only", action="store_true", help="as -w, without the list first")
    p.add_argument("--field-selector", help="events: e.g. involvedObject.name=web-0,type=Warning")
    add_source_options(p)


def run(args) -> int:
    if args.kind.lower() in events.NAMES:
        return events.run(args)
    kinds = parse_kinds(args.kind)
    names = list(args.names)
    if names and len(kinds) > 1:
        raise UsageError("error: a name can only be given with a single resource type")
    if args.watch or args.watch_only:
        return watch(args, kinds, names)
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
        if not first:
            out.write("\n")
        first = False
        table.render(headers_of(kind, wide, args.all_namespaces),
                     [row_of(o, wide, args.all_namespaces, show_kind) for o in of_kind], out)
    return 0


def headers_of(kind: str, wide: bool, all_namespaces: bool) -> list[str]:
    headers, wide_headers, _ = COLUMNS[kind]
    namespace = ["NAMESPACE"] if all_namespaces and BY_KIND[kind].namespaced else []
    return namespace + headers + (wide_headers if wide else [])


def row_of(obj: KubeObject, wide: bool, all_namespaces: bool, show_kind: bool = False) -> list[str]:
    row = COLUMNS[obj.kind][2](obj, wide)
    if show_kind:
        row[0] = f"{qualified(obj.kind)}/{row[0]}"
    return ([obj.namespace] if all_namespaces and BY_KIND[obj.kind].namespaced else []) + row


# ---- -w: kubectl get --watch ----------------------------------------------------------------


def watch(args, kinds: list[str], names: list[str]) -> int:
    """The objects asked for (unless --watch-only), then each change as it comes, as `kubectl
    get -w` prints them: a table row (the columns of the first table; the header comes with
    the first row), or the object (-o json|yaml) or its name (-o name). Ctrl-C ends it (exit 0),
    and so does the cluster going down (as kubectl's watch ends when the server closes it); a
    supervisor being restarted does not (watching.reading_across_restarts)."""
    if args.filename:
        raise UsageError("error: -w follows a running cluster; with -f the objects are computed and do not change")
    if len(kinds) > 1:
        raise UsageError("error: watch is only supported on individual resources and resource collections - "
                         "more than 1 resource was found")
    live, cluster = following(args.name)
    namespace = args.namespace or "default"
    matches = wanted(kinds, names, namespace, args.all_namespaces, args.selector)
    printer = WatchPrinter(args.output, kinds[0], args.all_namespaces, sys.stdout)
    try:
        listed = select(cluster, kinds, names, namespace, args.all_namespaces, args.selector)
        if not args.watch_only:
            printer.print_all(listed)
        seen = watching.chosen(cluster, matches)
        while True:
            reading = watching.reading_across_restarts(live, watching.WINDOW, lambda: print(
                "the supervisor is not answering (restarting?): still watching", file=sys.stderr, flush=True))
            current = watching.chosen(reading, matches)
            for change in watching.changes(seen, current):
                printer.print_all([change.obj])
            seen = current
    except KeyboardInterrupt:
        return 0
    except NotRunning:
        return 0


class WatchPrinter:
    """Prints objects one batch at a time, flushing each, as kubectl's printers do in a watch."""

    def __init__(self, output: str | None, kind: str, all_namespaces: bool, out):
        self.output, self.kind, self.all_namespaces, self.out = output, kind, all_namespaces, out
        self.widths: list[int] | None = None  # the table's columns, once its header is printed
        self.printed = 0

    def print_all(self, objs: list[KubeObject]) -> None:
        if not objs:
            return
        if self.output == "json":
            for obj in objs:
                self.out.write(json.dumps(api_body(obj), indent=4) + "\n")
        elif self.output == "yaml":
            for obj in objs:
                if self.printed:
                    self.out.write("---\n")  # kubectl's YAML printer, from its second object on
                yaml.dump(api_body(obj), self.out, Dumper=NoAliasDumper, sort_keys=True, default_flow_style=False)
                self.printed += 1
        elif self.output == "name":
            self.out.writelines(f"{qualified(obj.kind)}/{obj.name}\n" for obj in objs)
        else:
            wide = self.output == "wide"
            rows = [row_of(obj, wide, self.all_namespaces) for obj in objs]
            if self.widths is None:
                self.widths = table.plain(headers_of(self.kind, wide, self.all_namespaces), rows, self.out)
            else:
                self.out.writelines(table.line(row, self.widths) for row in rows)
        self.out.flush()
