"""podnet get events [-w]: the running cluster's events (kubectl get events).

The events are the supervisor's store (podnet.linux.supervisor.events), read with the control
socket's `events` op; `-w` prints the table, then asks for the events changed since the last
reading — a long poll the supervisor answers as soon as one changes — and prints a row for each (an aggregated event again, with its
new count's LAST SEEN), until interrupted — as `kubectl get events -w` streams them. A
supervisor being restarted does not end it (the store and its resourceVersions carry over to
the successor: it goes on from the version it holds); the cluster's `down` does, with exit 0.
Offline (-f) there are no events: nothing has happened to computed objects.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import yaml

from podnet.cli import watching
from podnet.cli.load import NoCluster, running_events
from podnet.host.control import pick_cluster
from podnet.api import fieldselectors
from podnet.errors import UsageError
from podnet.output import events as layout
from podnet.output import table

NAMES = ("events", "event", "ev")
WATCH_WAIT = 25.0  # the longest the supervisor holds one `-w` reading (it answers at the first change)


def field_filter(text: str | None):
    """--field-selector: key=value or key!=value terms, comma-separated (the fields events have)."""
    try:
        return fieldselectors.parse(text, "Event", "events")
    except UsageError as exc:
        raise UsageError(f"error: {exc}") from None


def run(args) -> int:
    if args.filename:
        print("No resources found: events happen on a running cluster (podnet up), not offline.", file=sys.stderr)
        return 0
    namespace = args.namespace or "default"
    wanted = field_filter(getattr(args, "field_selector", None))

    def chosen(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in layout.ordered(items) if (args.all_namespaces or
                (e.get("metadata") or {}).get("namespace") == namespace) and wanted(e)]

    def rows(items: list[dict[str, Any]]) -> list[list[str]]:
        return [([(e.get("metadata") or {}).get("namespace", "")] if args.all_namespaces else []) + layout.row(e)
                for e in items]

    items, version = running_events(args.name)
    shown = [] if args.watch_only else chosen(items)
    watch = args.watch or args.watch_only
    if args.output in ("json", "yaml", "name") and not watch:
        listing = {"apiVersion": "v1", "items": shown, "kind": "List", "metadata": {"resourceVersion": ""}}
        if args.output == "json":
            sys.stdout.write(json.dumps(listing, indent=4) + "\n")
        elif args.output == "yaml":
            sys.stdout.write(yaml.safe_dump(listing, sort_keys=True, default_flow_style=False))
        else:
            sys.stdout.writelines(f"event/{e['metadata']['name']}\n" for e in shown)
        return 0
    headers = (["NAMESPACE"] if args.all_namespaces else []) + layout.HEADERS
    widths = [len(h) for h in headers]  # what -w pads its rows to: the first table's columns
    if shown and watch:
        widths = table.plain(headers, rows(shown), sys.stdout)
    elif shown:
        table.render(headers, rows(shown), sys.stdout)
    elif watch:
        sys.stdout.write(table.line(headers, widths))
    else:
        where = "" if args.all_namespaces else f" in {namespace} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
    if not watch:
        return 0
    sys.stdout.flush()
    cluster = pick_cluster(args.name)  # this one for the whole watch, also while its supervisor restarts
    try:
        while True:
            try:
                items, version = running_events(cluster.cluster, version, wait=WATCH_WAIT)
            except NoCluster:
                if not cluster.state_dir.is_dir():
                    return 0  # down: the cluster is gone
                time.sleep(watching.RETRY)
                continue
            new = rows(chosen(items))
            sys.stdout.writelines(table.line(row, widths) for row in new)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
