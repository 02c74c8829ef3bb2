"""Time `podnet probe` on a 30 × 30 matrix (issue 16: under 30 s), as root.

    sudo PYTHONPATH=src python bench/probe.py [--runs 5]

A 3-node cluster of the e2e model's pods (tests/livemodel.py: agnhost serve-hostname on TCP and
UDP 80) in 10 namespaces of 3 pods. Timed, each as a subprocess the way a user runs it, the
median of --runs: `podnet probe` over the 30 pods (900 pairs) on TCP and on UDP, then with
`--compare`; then the same after a deny-ingress policy in every namespace (the simulator blocks
870 pairs: each is a disagreement with its trace while the kernel does not enforce policy; once
it does, every blocked pair costs its attempts' time-outs instead, all in parallel). Every packet
stays inside the cluster's namespaces. The cluster is named b<random hex> and removed in a finally.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SRC = str(ROOT / "src")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(ROOT)])}
NAMESPACES = tuple(f"n{i}" for i in range(10))

from tests.livemodel import serving_model_yaml  # noqa: E402  (after the path above)


def podnet(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "podnet", *argv], capture_output=True, text=True, env=ENV,
                          timeout=300)
    if check and proc.returncode != 0:
        raise SystemExit(f"podnet {' '.join(argv)} failed: {proc.stderr}")
    return proc


def timed(runs: int, *argv: str) -> tuple[float, dict]:
    times, document = [], {}
    for _ in range(runs):
        started = time.monotonic()
        proc = podnet(*argv, check=False)
        times.append(time.monotonic() - started)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"podnet {' '.join(argv)} failed: {proc.stderr}")
        document = json.loads(proc.stdout)
    return statistics.median(times), document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    name = f"b{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory() as tmp:
        model, config, deny = Path(tmp, "model.yaml"), Path(tmp, "cluster.yaml"), Path(tmp, "deny.yaml")
        model.write_text(serving_model_yaml(namespaces=NAMESPACES, ports=(80,)))
        config.write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 3\n")
        deny.write_text("---\n".join(
            f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny, namespace: {ns}}}\n"
            "spec: {podSelector: {}, policyTypes: [Ingress]}\n" for ns in NAMESPACES))
        scope = ["--name", name, "-n", ",".join(NAMESPACES), "-o", "json"]
        try:
            podnet("up", "-f", str(model), "--config", str(config))
            deadline = time.monotonic() + 60
            while True:  # until every server listens (up returns once the processes started)
                document = json.loads(podnet("probe", *scope).stdout)
                if all(all(row.values()) for row in document["allowed"].values()) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            print(f"30 x 30 pods, 3 nodes, median of {args.runs} runs")
            for label, extra in (("probe TCP/80", []), ("probe UDP/80", ["--protocol", "UDP"]),
                                 ("probe TCP/80 --compare", ["--compare"])):
                seconds, document = timed(args.runs, "probe", *scope, *extra)
                connected = sum(v for row in document["allowed"].values() for v in row.values())
                print(f"  {label:<40} {seconds:6.2f} s  ({connected} of 900 connected)")
            podnet("apply", "-f", str(deny), "--name", name)
            seconds, document = timed(args.runs, "probe", *scope, "--compare")
            connected = sum(v for row in document["allowed"].values() for v in row.values())
            print(f"  {'deny-ingress everywhere, --compare':<40} {seconds:6.2f} s  ({connected} of 900 connected, "
                  f"{len(document['disagreements'])} disagreements traced)")
        finally:
            podnet("down", "--name", name, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
