"""The API server's patch and OpenAPI costs, in process (no server, no cluster).

    PYTHONPATH=src python bench/apiserver_patch.py [--rounds 2000]

Per operation, median and p99 over --rounds runs on one Deployment (two containers, ports, env,
a volume): the strategic merge patch `kubectl apply` sends when a port is removed, an env var
changed, a container added and the strategy switched; a JSON merge patch of one label;
server-side apply of the changed manifest over the applied one; the managedFields bookkeeping of
an update. Then the cold cost of loading the schemas and building every OpenAPI document (v3 per
group-version, v2 as JSON and as protobuf) and their sizes, plain and gzip-compressed.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

from podnet.apiserver import openapi, patch, schemas

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
    "spec": {
        "replicas": 2,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {"name": "web", "image": "nginx:1.27",
                     "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443, "name": "https"}],
                     "env": [{"name": "MODE", "value": "blue"}, {"name": "LEVEL", "value": "1"}]},
                    {"name": "sidecar", "image": "busybox", "args": ["sleep", "3600"]},
                ],
                "volumes": [{"name": "cache", "emptyDir": {}}],
            },
        },
    },
}

KUBECTL_PATCH = {
    "metadata": {"labels": {"tier": None}},
    "spec": {
        "strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": None},
        "template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "metrics"}, {"name": "sidecar"}],
            "containers": [
                {"name": "web", "$setElementOrder/ports": [{"containerPort": 80}],
                 "ports": [{"$patch": "delete", "containerPort": 443}],
                 "$setElementOrder/env": [{"name": "MODE"}, {"name": "LEVEL"}],
                 "env": [{"name": "MODE", "value": "green"}]},
                {"name": "metrics", "image": "prom/exporter"},
            ],
        }},
    },
}


def timed(action: Callable[[], object], rounds: int) -> str:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return f"median {1e6 * statistics.median(samples):6.0f} us   p99 {1e6 * samples[int(rounds * 0.99) - 1]:6.0f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    rounds = parser.parse_args().rounds

    start = time.perf_counter()
    schemas.definitions()
    loaded = time.perf_counter()
    index = openapi.v3_index()
    documents = {path: openapi.rendered_v3(path) for path in index["paths"]}
    v2, v2_protobuf = openapi.rendered_v2(), openapi.rendered_v2_protobuf()
    built = time.perf_counter()

    changed = patch.strategic_merge_patch(DEPLOYMENT, KUBECTL_PATCH, "Deployment")
    applied = patch.apply_patch(None, DEPLOYMENT, "kubectl", False, "Deployment")
    updated = copy.deepcopy(applied)
    updated["spec"]["replicas"] = 5
    operations = [
        ("strategic merge patch (kubectl apply's)", rounds,
         lambda: patch.strategic_merge_patch(DEPLOYMENT, KUBECTL_PATCH, "Deployment")),
        ("JSON merge patch (one label)", rounds,
         lambda: patch.json_merge_patch(DEPLOYMENT, {"metadata": {"labels": {"x": "1"}}})),
        ("server-side apply (changed manifest)", rounds // 4,
         lambda: patch.apply_patch(applied, changed, "kubectl", False, "Deployment")),
        ("managedFields of an update (record)", rounds // 4,
         lambda: patch.record_update(applied, updated, "kubectl-scale", "Deployment")),
    ]
    for name, count, action in operations:
        print(f"{name:41}{timed(action, count)}")
    print(f"schemas loaded in {1000 * (loaded - start):.0f} ms; every OpenAPI document built in {1000 * (built - loaded):.0f} ms")
    for path, rendered in documents.items():
        print(f"  /openapi/v3/{path:40} {len(rendered.body) // 1024:5} KiB, gzip {len(rendered.gzipped) // 1024:4} KiB")
    print(f"  /openapi/v2 (JSON){'':33} {len(v2.body) // 1024:5} KiB, gzip {len(v2.gzipped) // 1024:4} KiB")
    print(f"  /openapi/v2 (protobuf){'':29} {len(v2_protobuf.body) // 1024:5} KiB, gzip {len(v2_protobuf.gzipped) // 1024:4} KiB")


if __name__ == "__main__":
    main()
