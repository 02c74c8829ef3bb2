"""podnet check: assertions for CI, exit code 1 when any fails."""

from __future__ import annotations

import argparse
import json
import sys

from podnet.cli.load import add_source_options, cluster_from_args
from podnet.errors import UsageError
from podnet.sim.check import Checker, load_expectations

EXAMPLES = """examples:
  podnet check -f examples/shop --expect examples/shop-expectations.yaml
  podnet check -f k8s/ --expect ci/network.yaml -o json

The expectations file (see the README, "podnet check --expect"):
  expectations:
  - {from: shop/frontend, to: backend.shop:80, reachable: true}
  - {from: {namespace: data}, to: {namespace: shop}, port: 8080, reachable: false}
  - {from: external, url: http://shop.example.com/api, reaches: backend:80}
  - {resolves: redis-0.redis.data, from: shop/frontend}
"""


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="assert who can reach whom (exit 1 on any failure)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--expect", required=True, metavar="EXPECT.yaml", help="the expectations file")
    p.add_argument("-o", "--output", choices=["text", "json"], default="text")
    add_source_options(p)


def run(args) -> int:
    if not args.filename:
        raise UsageError("check computes offline: give the manifests with -f FILE|DIR|-")
    expectations = load_expectations(args.expect)
    cluster = cluster_from_args(args.filename, args.config, args.name)
    outcomes = Checker(cluster).run(expectations)
    failed = [o for o in outcomes if not o.passed]
    if args.output == "json":
        print(json.dumps({"passed": len(outcomes) - len(failed), "failed": len(failed),
                          "results": [{"line": o.line, "expectation": o.text, "passed": o.passed, "detail": o.detail}
                                      for o in outcomes]}, indent=2))
    else:
        for o in outcomes:
            mark = "PASS" if o.passed else "FAIL"
            sys.stdout.write(f"{mark}  {args.expect}:{o.line}  {o.text}\n      {o.detail}\n")
        sys.stdout.write(f"\n{len(outcomes) - len(failed)} expectations hold, {len(failed)} fail\n")
    return 1 if failed else 0
