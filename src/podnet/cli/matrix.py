"""podnet matrix: who may open a connection to whom, for one port and protocol, under NetworkPolicy."""

from __future__ import annotations

import argparse
import csv
import html
import json
import sys
from typing import TextIO

from podnet.cli.load import add_source_options, cluster_from_args
from podnet.errors import UsageError
from podnet.semantics.networkpolicy import PolicyEngine
from podnet.semantics.policymatch import ICMP, PACKET_PROTOCOLS, has_network
from podnet.semantics.reachability import EXTERNAL, Matrix, MatrixDiff, diff, reachability, traffic_name

EXAMPLES = """examples:
  # every pod × every pod (and the external client) on TCP 80, as a compact table
  podnet matrix -f examples/shop

  # UDP 53, only the pods of two namespaces
  podnet matrix -f examples/shop -p 53 --protocol UDP -n shop -n kube-system

  # for scripts (DESIGN.md's contract), or a spreadsheet
  podnet matrix -f examples/shop -p 8080 -o json
  podnet matrix -f examples/shop -o csv > matrix.csv

  # one self-contained HTML page with a heatmap
  podnet matrix -f examples/shop -o html > matrix.html

  # exactly the connections a change opens and closes
  podnet matrix --diff before/ after/ -p 8080
"""

# Above this many endpoints the HTML page shows the namespace heatmap only (a pod grid would be huge).
HTML_POD_GRID_LIMIT = 400


def add_parser(sub) -> None:
    p = sub.add_parser("matrix", help="reachability matrix under NetworkPolicy (who can connect to whom)",
                       description="Computes, for one port and protocol, whether each pod (and the external\n"
                                   "client) may open a connection to each other one under the cluster's\n"
                                   "NetworkPolicies. Rows are sources, columns destinations.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-p", "--port", type=int, default=None, help="destination port (default 80; none for ICMP)")
    p.add_argument("--protocol", default="TCP", type=str.upper, choices=PACKET_PROTOCOLS,
                   help="TCP (default), UDP, SCTP, or ICMP (an echo request, as ping: no port)")
    p.add_argument("-n", "--namespace", action="append", metavar="NS",
                   help="only pods of this namespace (repeatable, or comma-separated); default: every namespace")
    p.add_argument("-o", "--output", choices=["table", "json", "csv", "html"], default="table",
                   help="output format (default table: '.' allowed, 'X' blocked)")
    p.add_argument("--diff", nargs=2, metavar=("OLD", "NEW"),
                   help="compare two sets of manifests (files or directories): list the connections the change "
                        "opens and closes")
    add_source_options(p)


def _namespaces(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [ns for value in values for ns in value.split(",") if ns]


def _matrix_of(files: list[str], args, namespaces: list[str] | None) -> Matrix:
    cluster = cluster_from_args(files, args.config, args.name)
    engine = PolicyEngine(cluster)
    known = {ns.name for ns in cluster.of_kind("Namespace")}
    for ns in namespaces or []:
        if ns not in known:
            print(f"warning: namespace {ns} does not exist in the input", file=sys.stderr)
    offline = [o.ref for o in cluster.of_kind("Pod")
               if (namespaces is None or o.namespace in namespaces) and not has_network(o)]
    if offline:
        print(f"note: {len(offline)} pod(s) without an IP (pending or finished) left out: {', '.join(offline[:5])}"
              f"{' …' if len(offline) > 5 else ''}", file=sys.stderr)
    return reachability(engine, args.port, args.protocol, namespaces)


def run(args) -> int:
    if args.protocol == ICMP:
        if args.port is not None:
            raise UsageError("error: ICMP has no ports: drop -p")
        args.port = 0
    elif args.port is None:
        args.port = 80
    elif not 1 <= args.port <= 65535:
        raise UsageError(f"error: port {args.port} is out of range (1-65535)")
    namespaces = _namespaces(args.namespace)
    out = sys.stdout
    if args.diff:
        if args.filename:
            raise UsageError("error: --diff OLD NEW reads its own two inputs; drop -f")
        if args.output == "html":
            raise UsageError("error: --diff prints table, json or csv")
        old = _matrix_of([args.diff[0]], args, namespaces)
        new = _matrix_of([args.diff[1]], args, namespaces)
        change = diff(old, new)
        {"json": write_diff_json, "csv": write_diff_csv}.get(args.output, write_diff_table)(change, out, args.diff)
        return 0
    matrix = _matrix_of(args.filename, args, namespaces)
    {"json": write_json, "csv": write_csv, "html": write_html}.get(args.output, write_table)(matrix, out)
    return 0


# ---------------------------------------------------------------- the matrix


def _groups(pods: list[str]) -> list[tuple[str, list[int]]]:
    """Consecutive indices per namespace (the external client is a group of its own)."""
    groups: list[tuple[str, list[int]]] = []
    for i, ref in enumerate(pods):
        ns = EXTERNAL if ref == EXTERNAL else ref.split("/", 1)[0]
        if not groups or groups[-1][0] != ns:
            groups.append((ns, []))
        groups[-1][1].append(i)
    return groups


def _short_name(ref: str) -> str:
    return "ext" if ref == EXTERNAL else ref.split("/", 1)[1]


def write_table(matrix: Matrix, out: TextIO) -> None:
    """Rows are sources, columns destinations, grouped by namespace, like the e2e truth tables."""
    pods = matrix.pods
    total = len(pods)
    allowed = matrix.count()
    out.write(f"{matrix.traffic}: rows connect to columns ('.' allowed, 'X' blocked); "
              f"{allowed} of {total * total} allowed\n\n")
    groups = _groups(pods)
    named = all(len(_short_name(p)) <= 3 for p in pods)
    labels = [_short_name(p) for p in pods] if named else [str(i + 1) for i in range(total)]
    if pods[-1] == EXTERNAL:  # the external column: as wide as its label
        width = max(len(label) for label in labels[:-1] or labels)
        widths = [width] * (total - 1) + [len(labels[-1])]
    else:  # `podnet probe`'s matrices: pods only
        widths = [max(len(label) for label in labels)] * total
    row_labels = pods if named else [f"{i + 1:>{len(str(total))}} {p}" for i, p in enumerate(pods)]
    margin = max(len(label) for label in row_labels) + 2

    def group_cells(cells: list[str]) -> str:
        parts = []
        for _ns, indices in groups:
            parts.append(" ".join(cells[i].rjust(widths[i]) for i in indices))
        return "  ".join(parts)

    headers = []
    truncated = False
    for ns, indices in groups:
        span = sum(widths[i] + 1 for i in indices) - 1
        if ns == EXTERNAL:  # its column label (or row label) already says it
            ns = ""
        truncated = truncated or len(ns) > span
        headers.append((ns if len(ns) <= span else ns[: max(span, 1)]).ljust(span))
    out.write(" " * margin + "  ".join(headers).rstrip() + "\n")
    out.write(" " * margin + group_cells(labels) + "\n")
    for i, label in enumerate(row_labels):
        row = matrix.rows[i]
        marks = ["." if row >> j & 1 else "X" for j in range(total)]
        out.write(label.ljust(margin) + group_cells(marks) + "\n")
    if truncated:  # narrow column groups cut their namespace's name: spell the groups out
        spans = []
        for ns, indices in groups:
            if ns == EXTERNAL:
                continue
            first, last = labels[indices[0]], labels[indices[-1]]
            spans.append(f"{ns} {first}" + (f"-{last}" if len(indices) > 1 else ""))
        out.write("\ncolumns: " + ", ".join(spans) + "\n")


def write_json(matrix: Matrix, out: TextIO) -> None:
    json.dump(matrix.to_json(), out, indent=2)
    out.write("\n")


def write_csv(matrix: Matrix, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["from \\ to", *matrix.pods])
    for i, src in enumerate(matrix.pods):
        row = matrix.rows[i]
        writer.writerow([src, *("true" if row >> j & 1 else "false" for j in range(len(matrix.pods)))])


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;font-size:12px}
th{font-weight:normal;white-space:nowrap;padding:2px 4px}
th.col{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;vertical-align:bottom}
th.row{text-align:right}
td{width:14px;height:14px;padding:0;border:1px solid #fff}
td.y{background:#3a9d5d} td.n{background:#d9534f}
td.g{border-left:2px solid #333}
.heat td{width:auto;min-width:44px;height:22px;text-align:center;color:#fff;font-size:11px;padding:0 3px}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
"""


def _heat_color(fraction: float) -> str:
    """Red (nothing allowed) → amber → green (everything allowed)."""
    red, green = (217, 83, 79), (58, 157, 93)
    r, g, b = (round(red[k] + (green[k] - red[k]) * fraction) for k in range(3))
    return f"rgb({r},{g},{b})"


def write_html(matrix: Matrix, out: TextIO) -> None:
    """One self-contained page: a namespace heatmap, and the pod grid when it is not too large."""
    e = html.escape
    pods = matrix.pods
    groups = _groups(pods)
    total = len(pods)
    allowed = matrix.count()
    title = f"podnet matrix — {matrix.traffic}"
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>{e(title)}</h1>",
             f"<p>Rows are sources, columns destinations. {allowed} of {total * total} ordered pairs may connect "
             f"(self pairs included: a pod can always reach itself).</p>",
             "<p class=\"legend\">allowed<span style=\"background:#3a9d5d\"></span> blocked"
             "<span style=\"background:#d9534f\"></span></p>",
             "<h2>Namespaces (share of allowed pairs)</h2><table class=\"heat\"><tr><th></th>"]
    parts += [f"<th class=\"col\">{e(ns)}</th>" for ns, _ in groups]
    parts.append("</tr>")
    masks = {ns: sum(1 << i for i in indices) for ns, indices in groups}
    for src_ns, src_indices in groups:
        parts.append(f"<tr><th class=\"row\">{e(src_ns)}</th>")
        for dst_ns, dst_indices in groups:
            count = sum((matrix.rows[i] & masks[dst_ns]).bit_count() for i in src_indices)
            pairs = len(src_indices) * len(dst_indices)
            fraction = count / pairs if pairs else 0.0
            parts.append(f"<td style=\"background:{_heat_color(fraction)}\" title=\"{e(src_ns)} → {e(dst_ns)}: "
                         f"{count}/{pairs} allowed\">{round(fraction * 100)}%</td>")
        parts.append("</tr>")
    parts.append("</table>")
    if total <= HTML_POD_GRID_LIMIT:
        parts.append("<h2>Pods</h2><table><tr><th></th>")
        first_of_group = {indices[0] for _, indices in groups}
        parts += [f"<th class=\"col\">{e(p)}</th>" for p in pods]
        parts.append("</tr>")
        for i, src in enumerate(pods):
            row = matrix.rows[i]
            parts.append(f"<tr><th class=\"row\">{e(src)}</th>")
            for j, dst in enumerate(pods):
                ok = row >> j & 1
                cls = ("y" if ok else "n") + (" g" if j in first_of_group else "")
                parts.append(f"<td class=\"{cls}\" title=\"{e(src)} → {e(dst)}: "
                             f"{'allowed' if ok else 'blocked'}\"></td>")
            parts.append("</tr>")
        parts.append("</table>")
    else:
        parts.append(f"<p>{total} endpoints: the pod grid is left out above {HTML_POD_GRID_LIMIT}; "
                     "use -n to narrow it, or -o csv/json for every pair.</p>")
    parts.append("</body></html>\n")
    out.write("".join(parts))


# ---------------------------------------------------------------- diffs


def write_diff_table(change: MatrixDiff, out: TextIO, names: list[str]) -> None:
    old, new = names
    out.write(f"{traffic_name(change.port, change.protocol)}: {old} → {new}: {len(change.opened)} connection(s) opened, "
              f"{len(change.closed)} closed\n")
    if change.added_pods:
        out.write(f"pods only in {new}: {', '.join(change.added_pods)}\n")
    if change.removed_pods:
        out.write(f"pods only in {old}: {', '.join(change.removed_pods)}\n")
    for src, dst in change.opened:
        out.write(f"+ {src} -> {dst}\n")
    for src, dst in change.closed:
        out.write(f"- {src} -> {dst}\n")


def write_diff_json(change: MatrixDiff, out: TextIO, names: list[str]) -> None:
    json.dump({**change.to_json(), "old": names[0], "new": names[1]}, out, indent=2)
    out.write("\n")


def write_diff_csv(change: MatrixDiff, out: TextIO, names: list[str]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["change", "from", "to"])
    for src, dst in change.opened:
        writer.writerow(["opened", src, dst])
    for src, dst in change.closed:
        writer.writerow(["closed", src, dst])
