"""Ingress through a real nginx, end to end (root only).

A two-node cluster runs examples/shop; its `ingress-nginx-controller-…` pod runs
podnet.ingressnginx, which renders the route table `trace` uses into nginx.conf and serves it.
Requests are sent as a user sends them — curl from `external` (192.168.1.100 on the LAN) to the
controller's LoadBalancer IP, with a Host header or --resolve — and each is compared with what
`podnet trace` says on the same live cluster: nginx's status, the redirect's Location, and, when
proxied, a backend among the trace's candidates (serve-hostname and netexec answer with their
pod's name). The seed documents' Ingress examples are applied one after another to the same
cluster (each replaces the previous), so every change also goes through a live reload. The
cluster has a unique name and is removed in a finally.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

import pytest

from tests.livecluster import leftovers, podnet, up_cluster

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

ROOT = Path(__file__).resolve().parent.parent
LB = "192.168.1.200"  # the controller Service's LoadBalancer IP (the first of the pool)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ingress")
    name = f"ig{secrets.token_hex(3)}"
    (tmp / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n")
    started = False
    try:
        podnet("up", "-f", str(ROOT / "examples" / "shop"), "--config", str(tmp / "cluster.yaml"), timeout=180)
        started = True
        wait_ready(name, "ingress-nginx")
        yield name
    finally:
        if started or leftovers(name):
            podnet("down", "--name", name, check=False)
        assert leftovers(name) == [], f"left behind: {leftovers(name)}"


def wait_ready(name: str, namespace: str, limit: float = 180.0) -> None:
    """Until every pod of `namespace` is Ready (a wait, not a measure: generous for a loaded machine)."""
    deadline = time.monotonic() + limit
    while True:
        pods = json.loads(podnet("get", "pods", "-n", namespace, "-o", "json", "--name", name).stdout)["items"]
        ready = [all(c.get("status") == "True" for c in p["status"].get("conditions", []) if c["type"] == "Ready")
                 for p in pods]
        if pods and all(ready):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"pods of {namespace} not Ready: {json.dumps(pods)[:2000]}")
        time.sleep(0.5)


def curl(name: str, url: str, *options: str) -> tuple[int, str, str]:
    """(status, Location, body) of one request from `external`."""
    out = podnet("exec", "external", "--name", name, "--", "curl", "-sk", "-m", "10", "-o", "/dev/stdout",
                 "-w", "\n%{http_code} %{redirect_url}", *options, url, check=False).stdout
    body, _, tail = out.rpartition("\n")
    status, _, location = tail.partition(" ")
    return int(status or 0), location.strip(), body


def pod_names(name: str) -> set[str]:
    pods = json.loads(podnet("get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]
    return {p["metadata"]["name"] for p in pods}


def traced(name: str, url: str, *options: str) -> dict:
    proc = podnet("trace", "external", url, *options, "-o", "json", "--name", name, check=False)
    assert proc.returncode in (0, 3), proc.stderr  # 3: a node not in sync (reported, not a failure here)
    return json.loads(proc.stdout)


def agree(name: str, url: str, *options: str) -> tuple[int, str]:
    """Send the request, trace it, and require the same answer; retried while the controller
    catches up with the state trace reads (a reload takes a moment), then returns (status, body)."""
    deadline = time.monotonic() + 60
    while True:
        trace = traced(name, url, *options)
        status, location, body = curl(name, url, *options)
        expected = trace["http"]["status"]
        problems = []
        if status != expected:
            problems.append(f"nginx answered {status}, trace says {expected}")
        if trace["http"]["location"] and location != trace["http"]["location"]:
            problems.append(f"Location {location!r}, trace says {trace['http']['location']!r}")
        if expected == 200 and trace["verdict"] == "delivered" and body.strip() in pod_names(name):
            # serve-hostname (any path) and netexec's /hostname answer with their pod's name
            pods = {ref.split("/", 1)[1] for ref in trace["endpoints"]}
            if body.strip() not in pods:
                problems.append(f"answered by {body.strip()!r}, trace's candidates are {sorted(pods)}")
        if not problems:
            return status, body
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} {' '.join(options)}: " + "; ".join(problems) + f"\ntrace: {trace['reason']}")
        time.sleep(0.5)


def test_the_controller_pod_turns_ready_and_get_ing_shows_its_address(cluster):
    out = podnet("get", "ing", "-n", "shop", "--name", cluster).stdout
    assert LB in out, out
    pods = podnet("get", "pods", "-n", "ingress-nginx", "--name", cluster).stdout
    assert " 1/1 " in pods and "Running" in pods, pods


def test_the_shop_api_reaches_the_backend_for_real_as_trace_says(cluster):
    # the backend is agnhost netexec: /api is not one of its paths, so its catch-all answers "NOW: …"
    status, body = agree(cluster, f"http://{LB}/api", "-H", "Host: shop.example.com")
    assert status == 200 and body.startswith("NOW: ")
    status, _ = agree(cluster, "http://shop.example.com/api", "--resolve", f"shop.example.com:80:{LB}")
    assert status == 200


def test_no_host_the_catch_all_server_answers_404_as_ingress_nginx_does(cluster):
    assert agree(cluster, f"http://{LB}/")[0] == 404
    assert agree(cluster, f"http://{LB}/", "-H", "Host: unknown.example.org")[0] == 404


def test_https_with_the_default_certificate(cluster):
    status, _ = agree(cluster, "https://shop.example.com/api", "--resolve", f"shop.example.com:443:{LB}")
    assert status == 200


# The seed documents' examples, served one after another (each apply replaces the previous one).
SEEDS = [
    ("minimal-ingress.yaml", [("http://{lb}/testpath", ()), ("http://{lb}/TestPath/abc", ()),
                              ("http://{lb}/other", ())]),
    ("ingress-wear-watch.yaml", [("http://{lb}/wear", ()), ("http://{lb}/watch", ()), ("http://{lb}/", ())]),
    ("ingress-wear-watch-by-host.yaml", [("http://{lb}/", ("-H", "Host: web-service-1.com")),
                                         ("http://{lb}/", ("-H", "Host: web-service-2.com")),
                                         ("http://{lb}/", ("-H", "Host: web-service-3.com"))]),
    ("rewrite.yaml", [("http://rewrite.bar.com/something/hostname", ("--resolve", "rewrite.bar.com:80:{lb}")),
                      ("http://rewrite.bar.com/something", ("--resolve", "rewrite.bar.com:80:{lb}")),
                      ("http://rewrite.bar.com/other", ("--resolve", "rewrite.bar.com:80:{lb}"))]),
    ("whale-ingress.yaml", [("http://{lb}/", ("-H", "Host: a.whale.hey")), ("http://{lb}/", ("-H", "Host: b.whale.hey"))]),
]


@pytest.mark.parametrize("seed,requests", SEEDS, ids=[s for s, _ in SEEDS])
def test_the_seed_documents_ingress_examples_work_as_written(cluster, seed, requests, tmp_path):
    path = ROOT / "examples" / "seeds" / seed
    podnet("apply", "-f", str(path), "--name", cluster, timeout=120)
    # removed afterwards without its IngressClass `nginx`, which the shop's Ingress uses too
    own = tmp_path / seed
    own.write_text("\n---\n".join(d for d in path.read_text().split("\n---\n") if "kind: IngressClass" not in d))
    try:
        wait_ready(cluster, "default")
        served = [agree(cluster, url.format(lb=LB), *(o.format(lb=LB) for o in options))[0]
                  for url, options in requests]
        assert 200 in served, served  # each example serves something
    finally:
        podnet("delete", "-f", str(own), "--name", cluster, timeout=120)


def test_a_config_nginx_refuses_is_never_loaded_and_the_rest_keeps_working(cluster, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: bad-regex
  namespace: shop
  annotations: {nginx.ingress.kubernetes.io/use-regex: "true"}
spec:
  ingressClassName: nginx
  rules:
  - host: bad.example.com
    http:
      paths:
      - {path: "/(unclosed", pathType: ImplementationSpecific, backend: {service: {name: backend, port: {name: http}}}}
""")
    podnet("apply", "-f", str(bad), "--name", cluster)
    try:
        status, body = agree(cluster, f"http://{LB}/api", "-H", "Host: shop.example.com")
        assert status == 200 and body.startswith("NOW: ")
    finally:
        podnet("delete", "-f", str(bad), "--name", cluster)


def controller_pids(name: str) -> list[int]:
    """The controller processes of cluster `name` (their environment names its state directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"podnet.ingressnginx" in cmdline and f"/{name}/ingress-nginx/".encode() in environ:
            found.append(int(proc.name))
    return found


def test_the_live_trace_says_whether_the_controller_serves_the_state_it_traced(cluster, tmp_path):
    url, host = f"http://{LB}/api", ("-H", "Host: shop.example.com")
    now = podnet("trace", "external", url, *host, "-o", "json", "--name", cluster, check=False)
    checks = [c for c in json.loads(now.stdout)["sync"] if c["rules"] == "ingress-nginx"]
    assert now.returncode == 0 and checks and all(c["inSync"] for c in checks), now.stdout[-2000:]
    pids = controller_pids(cluster)
    assert len(pids) == 1
    extra = tmp_path / "extra.yaml"
    extra.write_text("""
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: extra, namespace: shop}
spec:
  ingressClassName: nginx
  rules:
  - host: extra.example.com
    http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: backend, port: {name: http}}}}]
""")
    os.kill(pids[0], signal.SIGSTOP)  # the controller stops following the cluster
    try:
        podnet("apply", "-f", str(extra), "--name", cluster)
        behind = podnet("trace", "external", url, *host, "--name", cluster, check=False)
        assert behind.returncode == 3, behind.stdout
        assert "the controller is behind" in behind.stdout
    finally:
        os.kill(pids[0], signal.SIGCONT)
    try:
        caught_up = podnet("trace", "external", url, *host, "--name", cluster, check=False)
        assert caught_up.returncode == 0, caught_up.stdout
    finally:
        podnet("delete", "-f", str(extra), "--name", cluster)


def nginx_workers(controller_pid: int) -> set[int]:
    """The worker processes of the nginx the controller runs (a reload replaces them all)."""
    masters = Path(f"/proc/{controller_pid}/task/{controller_pid}/children").read_text().split()
    assert len(masters) == 1, masters
    return {int(pid) for pid in Path(f"/proc/{masters[0]}/task/{masters[0]}/children").read_text().split()}


def test_a_new_endpoint_is_served_without_a_reload(cluster, tmp_path):
    """Scaling the frontend 3 → 4: the controller posts the new endpoint to nginx's Lua balancer;
    the new pod answers through the ingress while nginx's workers stay the same processes."""
    [pid] = controller_pids(cluster)
    in_sync = podnet("trace", "external", f"http://{LB}/", "-H", "Host: shop.example.com", "--name", cluster,
                     check=False)  # waits for the controller to serve the current state (an earlier reload)
    assert in_sync.returncode == 0, in_sync.stdout
    workers = nginx_workers(pid)
    manifest = (ROOT / "examples" / "shop" / "frontend.yaml").read_text()
    assert "replicas: 3" in manifest
    scaled = tmp_path / "frontend.yaml"
    scaled.write_text(manifest.replace("replicas: 3", "replicas: 4"))
    before = pod_names(cluster)
    podnet("apply", "-f", str(scaled), "--name", cluster)
    try:
        [new] = pod_names(cluster) - before
        deadline = time.monotonic() + 60  # until the pod is Ready and nginx balances to it
        answered: set[str] = set()
        while new not in answered:
            status, _, body = curl(cluster, f"http://{LB}/hostname", "-H", "Host: shop.example.com")
            assert status == 200, (status, body)
            answered.add(body.strip())
            assert time.monotonic() < deadline, f"{new} never answered; answered: {sorted(answered)}"
        assert nginx_workers(pid) <= workers  # no new workers: no reload (old ones may finish exiting)
    finally:
        podnet("apply", "-f", str(ROOT / "examples" / "shop" / "frontend.yaml"), "--name", cluster)


def test_the_seeds_own_controller_serves_alone_through_its_node_port_as_trace_says(tmp_path):
    """The seed's nginx-ingress-controller Deployment (image 0.21.0, NodePort Service nginx-ingress)
    and its wear/watch Ingress, without an IngressClass as in 0.21's days: podnet adds no controller
    of its own, the old controller serves the class-less Ingress (before 1.0 that was the default
    class's), and a request to a node's nodePort goes through its nginx to the backends, as trace
    says on the live cluster."""
    name = f"is{secrets.token_hex(3)}"
    seeds = ROOT / "examples" / "seeds"
    wear_watch = "\n---\n".join(d for d in (seeds / "ingress-wear-watch.yaml").read_text().split("\n---\n")
                                if "kind: IngressClass" not in d)
    with up_cluster(tmp_path, name, (seeds / "nginx-ingress-controller.yaml").read_text() + "\n---\n" + wear_watch):
        wait_ready(name, "default")
        pods = json.loads(podnet("get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]
        controllers = [p["metadata"]["name"] for p in pods if "ingress" in p["metadata"]["name"]]
        assert len(controllers) == 1 and controllers[0].startswith("nginx-ingress-controller-"), controllers
        service = json.loads(podnet("get", "svc", "nginx-ingress", "-o", "json", "--name", name).stdout)
        node_port = next(p["nodePort"] for p in service["spec"]["ports"] if p["name"] == "http")
        for path in ("/wear", "/watch"):
            status, body = agree(name, f"http://192.168.1.11:{node_port}{path}")
            assert status == 200 and body.strip().startswith(path[1:]), (path, body)
        status, _ = agree(name, f"http://192.168.1.11:{node_port}/other")
        assert status == 404
