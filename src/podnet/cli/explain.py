"""podnet explain: findings about a set of manifests."""

from __future__ import annotations

import argparse
import json
import sys

from podnet.api.store import load_store
from podnet.cli.load import add_source_options
from podnet.config import load_config
from podnet.controlplane import compute
from podnet.errors import InvalidInput, UsageError
from podnet.sim.explain import Explainer, findings_from_errors

EXAMPLES = """examples:
  podnet explain -f examples/shop
  podnet explain -f k8s/ -o json
"""


def add_parser(sub) -> None:
    p = sub.add_parser("explain", help="what is wrong with these manifests, and why",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    add_source_options(p)


def run(args) -> int:
    if not args.filename:
        raise UsageError("explain computes offline: give the manifests with -f FILE|DIR|-")
    try:
        cluster = compute(load_store(args.filename), load_config(args.config))
        for warning in cluster.warnings:
            print(warning, file=sys.stderr)
        findings = Explainer(cluster).findings()
    except InvalidInput as exc:
        findings = findings_from_errors(exc.lines)
    if args.output == "json":
        print(json.dumps([f.to_json() for f in findings], indent=2))
    else:
        for f in findings:
            sys.stdout.write(f"{f.severity.upper():<8}{f.object}: {f.message}\n")
            if f.hint:
                sys.stdout.write(f"        hint: {f.hint}\n")
        counts = {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}
        sys.stdout.write(f"\n{counts['error']} errors, {counts['warning']} warnings, {counts['info']} notes\n")
    return 1 if any(f.severity == "error" for f in findings) else 0
