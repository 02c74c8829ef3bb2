"""Render, validate and reload nginx for 1,000 Ingress rules, with requests flowing meanwhile.

One namespace, 20 Services over a 3-replica Deployment, N Ingresses (one host rule each, a
Prefix /api and a Prefix / path; every 10th with rewrite-target, every 10th with TLS). Per
round: build the route table (`IngressController`), render nginx.conf, `nginx -t` on it, then
write it and SIGHUP the running nginx (as the current user, on 127.0.0.1 high ports, echo
backends) and time until a host that only the new config has answers 200. A client thread
sends requests to an existing host the whole time; failed requests are counted. The goal in
issue 17: render + validated reload under 1 s, no failed request.

    .venv/bin/python bench/ingress_render.py [--ingresses 1000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from podnet.api.store import load_store  # noqa: E402
from podnet.config import ClusterConfig  # noqa: E402
from podnet.controlplane import compute  # noqa: E402
from podnet.ingressnginx import nginxconf  # noqa: E402
from podnet.semantics.ingress import IngressController  # noqa: E402
from tests.nginxharness import RunningNginx  # noqa: E402

SERVICES = 20
DEADLINE = 30.0


def cluster_yaml(ingresses: int, last_host: str) -> str:
    docs = ["apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}",
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx, annotations: "
            "{ingressclass.kubernetes.io/is-default-class: \"true\"}}\nspec: {controller: k8s.io/ingress-nginx}",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: echo, namespace: bench}\nspec:\n  replicas: 3\n"
            "  selector: {matchLabels: {app: echo}}\n  template:\n    metadata: {labels: {app: echo}}\n    spec:\n"
            "      containers: [{name: echo, image: registry.k8s.io/e2e-test-images/agnhost:2.53, "
            "args: [netexec, --http-port=8080], ports: [{containerPort: 8080}]}]"]
    docs += [f"apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, namespace: bench}}\n"
             f"spec: {{selector: {{app: echo}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}"
             for i in range(SERVICES)]
    for i in range(ingresses):
        host = last_host if i == ingresses - 1 else f"h{i}.bench.test"
        annotations = ', annotations: {nginx.ingress.kubernetes.io/rewrite-target: "/"}' if i % 10 == 5 else ""
        tls = f"\n  tls: [{{hosts: [{host}], secretName: tls-{i}}}]" if i % 10 == 3 else ""
        docs.append(
            f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: ing-{i}, namespace: bench{annotations}}}\n"
            f"spec:{tls}\n  rules:\n  - host: {host}\n    http:\n      paths:\n"
            f"      - {{path: /api, pathType: Prefix, backend: {{service: {{name: svc-{i % SERVICES}, port: {{number: 80}}}}}}}}\n"
            f"      - {{path: /, pathType: Prefix, backend: {{service: {{name: svc-{(i + 1) % SERVICES}, port: {{name: http}}}}}}}}")
    return "\n---\n".join(docs) + "\n"


def controller_for(ingresses: int, last_host: str) -> tuple[IngressController, float]:
    with tempfile.TemporaryDirectory(prefix="podnet-bench-ing-") as tmp:
        (Path(tmp) / "cluster.yaml").write_text(cluster_yaml(ingresses, last_host))
        cluster = compute(load_store([tmp]), ClusterConfig())
    t0 = time.perf_counter()
    controller = IngressController(cluster)
    return controller, time.perf_counter() - t0


class Load(threading.Thread):
    """Requests to an existing host, back to back, until stopped; counts what failed."""

    def __init__(self, nginx: RunningNginx, url: str) -> None:
        super().__init__(daemon=True)
        self.nginx, self.url = nginx, url
        self.sent = self.failed = 0
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sent += 1
            try:
                response = self.nginx.fetch(self.url)
                if response.status != 200 or response.echo is None:
                    self.failed += 1
                    self.failures.append(f"status {response.status}")
            except OSError as exc:
                self.failed += 1
                self.failures.append(repr(exc))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingresses", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    controller, _ = controller_for(args.ingresses, "new-0.bench.test")
    routes = len(controller.routes())
    print(f"{args.ingresses} Ingresses: {len(controller.servers())} nginx servers, {routes} locations, "
          f"{len(controller.upstreams())} upstreams")
    builds, renders, checks, reloads, totals = [], [], [], [], []
    sizes = []
    with RunningNginx(controller, worker_processes="auto") as nginx:
        load = Load(nginx, "http://h0.bench.test/api/x")
        load.start()
        for round_ in range(1, args.rounds + 1):
            host = f"new-{round_}.bench.test"
            controller, build = controller_for(args.ingresses, host)
            t0 = time.perf_counter()
            text = nginx.render(controller)
            t1 = time.perf_counter()
            error = nginxconf.validate(text)
            t2 = time.perf_counter()
            if error is not None:
                raise SystemExit(f"nginx -t refuses the config: {error}")
            nginx.conf.write_text(text)
            nginx.process.send_signal(1)  # SIGHUP: graceful reload
            deadline = time.monotonic() + DEADLINE
            while nginx.fetch(f"http://{host}/").status != 200:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the reloaded config did not serve {host} within {DEADLINE} s")
                time.sleep(0.002)
            t3 = time.perf_counter()
            builds.append(build)
            renders.append(t1 - t0)
            checks.append(t2 - t1)
            reloads.append(t3 - t2)
            totals.append(t3 - t0)
            sizes.append(len(text))
        load.stop.set()
        load.join(timeout=DEADLINE)

    def ms(values: list[float]) -> str:
        return f"median {statistics.median(values) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"

    print(f"config size            {statistics.median(sizes) / 1024:.0f} KiB")
    print(f"route table (build)    {ms(builds)}")
    print(f"render nginx.conf      {ms(renders)}")
    print(f"nginx -t               {ms(checks)}")
    print(f"reload until serving   {ms(reloads)}")
    print(f"render+validate+reload {ms(totals)}   (goal: under 1 s)")
    print(f"requests during the rounds: {load.sent} sent, {load.failed} failed"
          + (f" ({', '.join(sorted(set(load.failures))[:3])})" if load.failed else ""))


if __name__ == "__main__":
    main()
