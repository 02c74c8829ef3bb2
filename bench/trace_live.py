"""What the live `trace`'s check costs (root): one node's NetworkPolicy table of the generated
cluster (bench/generate.py, 10 nodes, 10 policies per namespace; 1,000 and 10,000 pods) loaded
into a namespace of its own, then read back as `trace` reads it — one `nft -j list table` and
its shape (podnet.linux.enforced) — and compared with the shape of the ruleset podnet rendered.
The digests must be equal: the kernel's listing and podnet's ruleset reduce to one shape.

    sudo .venv/bin/python bench/trace_live.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generate  # noqa: E402
from podnet.api.store import load_store  # noqa: E402
from podnet.config import parse_config  # noqa: E402
from podnet.controlplane import compute  # noqa: E402
from podnet.linux.enforced import read_kernel_shape, ruleset_shape  # noqa: E402
from podnet.policy import render, transaction  # noqa: E402

REPEAT = 5


def best(action) -> tuple[float, object]:
    times, result = [], None
    for _ in range(REPEAT):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    netns = f"podnet-bench-tracelive-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        for namespaces in (10, 100):
            with tempfile.TemporaryDirectory(prefix="podnet-bench-") as tmp:
                generate.generate(Path(tmp), namespaces=namespaces)
                cluster = compute(load_store([tmp]), parse_config(generate.cluster_config(nodes=10)))
            ruleset = render(cluster, "node1")
            subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=transaction(None, ruleset),
                           text=True, check=True)
            rendered_time, rendered = best(lambda: ruleset_shape(ruleset))
            kernel_time, kernel = best(lambda: read_kernel_shape(netns))
            assert kernel == rendered, f"the kernel's shape {kernel} is not podnet's {rendered}"
            print(f"{len(cluster.of_kind('Pod')):>6} pods: {rendered.describe()}; "
                  f"nft -j list + shape {kernel_time * 1000:.0f} ms, the rendered ruleset's shape "
                  f"{rendered_time * 1000:.0f} ms (best of {REPEAT}); digests equal")
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)


if __name__ == "__main__":
    main()
