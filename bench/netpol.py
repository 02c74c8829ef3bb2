"""NetworkPolicy tables (podnet.policy) on the generated cluster: render time and size per node.

For 1,000 and 10,000 pods (10 and 100 namespaces of bench/generate.py, 10 policies each, 10
nodes): the compiled policies once, the first node's table (which computes the peer and
named-port sets every node shares), a further node's, and the table's size — rules grow with
policies and ports, pods only add set elements. No root: nothing is loaded.

    .venv/bin/python bench/netpol.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generate  # noqa: E402
from podnet.api.store import load_store  # noqa: E402
from podnet.config import parse_config  # noqa: E402
from podnet.controlplane import compute  # noqa: E402
from podnet.policy import render  # noqa: E402
from podnet.semantics.networkpolicy import PolicyEngine  # noqa: E402


def main() -> None:
    for namespaces in (10, 100):
        with tempfile.TemporaryDirectory(prefix="podnet-bench-") as tmp:
            generate.generate(Path(tmp), namespaces=namespaces)
            cluster = compute(load_store([tmp]), parse_config(generate.cluster_config(nodes=10)))
        t0 = time.perf_counter()
        engine = PolicyEngine(cluster)
        t1 = time.perf_counter()
        first = render(cluster, "node1", engine)
        t2 = time.perf_counter()
        render(cluster, "node2", engine)
        t3 = time.perf_counter()
        rules = sum(len(chain) for chain in first.chains.values())
        elements = sum(len(s.elements) for s in first.sets.values())
        print(f"{len(cluster.of_kind('Pod')):>6} pods, {len(engine.policies):>5} policies: compile {t1 - t0:.2f} s, "
              f"first node {t2 - t1:.2f} s, another node {t3 - t2:.2f} s; {rules} rules, {len(first.sets)} sets, "
              f"{elements} elements, {len(first.text()) // 1024} KiB")


if __name__ == "__main__":
    main()
