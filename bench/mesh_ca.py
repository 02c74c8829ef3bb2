"""Workload certificates for 1,000 pods: podnet's mesh CA beside Istio's default key type.

    PYTHONPATH=src python bench/mesh_ca.py [--pods 1000] [--runs 3]

Issue 21's figure: certificates for 1,000 pods issued under 1 s. Each pod's certificate is
what pki/mesh.py issues (a new key, a SPIFFE URI SAN, signed by the mesh root): podnet's keys
are ECDSA P-256; the peer, in the same run and the same code path, makes the RSA 2048 keys
istio-agent asks for by default (WORKLOAD_RSA_KEY_SIZE=2048). Prints the time for all the
pods (median of --runs), per certificate, and the ratios to the goal and to the peer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from podnet.pki import mesh  # noqa: E402

GOAL = 1.0  # seconds for 1,000 pods (issue 21)


def issue_all(authority: mesh.MeshAuthority, pods: int) -> float:
    start = time.perf_counter()
    for i in range(pods):
        authority.issue(f"spiffe://cluster.local/ns/ns-{i % 100:03d}/sa/sa-{i}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peer-pods", type=int, default=100, help="RSA keys are slow: the peer's sample")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        authority = mesh.MeshAuthority(Path(tmp) / "mesh")
        authority.root_pem  # the root made once, as at `up`
        ours = [issue_all(authority, args.pods) for _ in range(args.runs)]
        istio_default = mesh.MeshAuthority(Path(tmp) / "mesh", key_type="rsa-2048")  # the same root
        peer = [issue_all(istio_default, args.peer_pods) for _ in range(args.runs)]
    ours_median, peer_each = statistics.median(ours), statistics.median(peer) / args.peer_pods
    print(f"{args.pods} workload certificates (ECDSA P-256, SPIFFE URI SAN, 24 h), median of {args.runs}: "
          f"{ours_median:.3f} s ({ours_median / args.pods * 1e6:.0f} µs each) -> {ours_median / GOAL * 1000 / args.pods:.2f}x "
          f"the goal ({GOAL:.0f} s for 1,000) ({'met' if ours_median * 1000 / args.pods < GOAL else 'NOT met'})")
    print(f"peer, Istio's default RSA 2048 keys through the same code ({args.peer_pods} pods): {peer_each * 1e3:.1f} ms each, "
          f"{peer_each * args.pods:.1f} s for {args.pods}; podnet / peer: {ours_median / (peer_each * args.pods):.3f}x")


if __name__ == "__main__":
    main()
