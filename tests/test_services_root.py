"""Services in the kernel, end to end (root only): kube-proxy's rules in every mode, LoadBalancer
IPs from outside, traffic policies, affinity, hairpin, rejects, and probes deciding endpoints.

Connections are made by one small Python client run inside a pod, a node or `external`
(`podnet exec`), each attempt a new connection, so the set of backends reached is the proxy's
random choice at work; it is compared with what `podnet trace` predicts from the live state.
Every cluster has a unique name and is removed in a finally, also when a test fails.
"""

from __future__ import annotations

import json
import secrets
import time

import pytest

from tests.livecluster import leftovers, podnet

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
EXTERNAL_IP = "192.168.1.100"


def netexec(name: str, node: str, labels: str = "app: web", extra: str = "") -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{{labels}}}}}
spec:
  nodeName: {node}
  containers:
  - name: c
    image: {AGNHOST}
    args: [netexec, --http-port=8080, --udp-port=8081]
    ports: [{{name: http, containerPort: 8080}}, {{name: udp, containerPort: 8081, protocol: UDP}}]
{extra}---"""


def service(name: str, spec: str, selector: str = "app: web", ports: str = "[{name: http, port: 80, targetPort: http}]") -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{{selector}}}
  ports: {ports}
{spec}
---"""


def app(marks: str) -> str:
    # Only the file decides: an attempt may take long on a loaded machine (forking nsenter), and
    # with the default timeoutSeconds (1) and failureThreshold 1 one slow attempt restarted `live`
    # or took `flip` out. The short period keeps the tests quick.
    probe = "    {kind}: {{exec: {{command: [test, -e, {path}]}}, periodSeconds: 1, timeoutSeconds: 30, failureThreshold: 1}}\n"

    def client(pod: str, node: str) -> str:
        return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {pod}}}\nspec:\n  nodeName: {node}\n"
                f"  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]\n---")

    return "\n".join([
        netexec("web-1", "node1", "app: web, hair: pin"), netexec("web-2", "node2"), netexec("web-3", "node2"),
        client("client-1", "node1"), client("client-3", "node3"),
        netexec("flip", "node1", "app: flip", probe.format(kind="readinessProbe", path=f"{marks}/ready")),
        netexec("live", "node2", "app: live", probe.format(kind="livenessProbe", path=f"{marks}/alive")),
        service("web", "", ports="[{name: http, port: 80, targetPort: http}, {name: udp, port: 81, protocol: UDP, targetPort: udp}]"),
        service("web-lb", "  type: LoadBalancer"),
        service("web-local", "  type: LoadBalancer\n  externalTrafficPolicy: Local"),
        service("web-office", "  type: LoadBalancer\n  loadBalancerSourceRanges: [203.0.113.0/24]"),
        service("web-lan", "  type: LoadBalancer\n  loadBalancerSourceRanges: [192.168.1.96/28]"),
        service("sticky", "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 300}}"),
        service("itp", "  internalTrafficPolicy: Local"),
        service("hairpin", "", selector="hair: pin"),
        service("empty", "", selector="app: nobody"),
        service("flip", "", selector="app: flip"),
    ])


# One new connection per attempt; prints {"answer": count}; errors as ERR:refused / ERR:timeout.
# TIMEOUT is per attempt. Where answers are due (DROPPED is "0") it is long, since the answer
# comes from a user-space server that a loaded machine may not schedule for seconds, and the
# first silence ends the run: it already fails the caller, and a broken proxy should not cost
# TIMEOUT n times. Where a drop is expected it is short, and every attempt is made.
CLIENT = r"""
import json, socket, sys
proto, ip, port, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
timeout, dropped = float(sys.argv[6]), sys.argv[7] == "1"
seen = {}
for _ in range(n):
    try:
        if proto == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(timeout)
            s.sendto(path.encode(), (ip, port)); answer = s.recvfrom(512)[0].decode()
        else:
            s = socket.create_connection((ip, port), timeout=timeout)
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode()); data = b""
            while chunk := s.recv(4096):
                data += chunk
            answer = data.split(b"\r\n\r\n", 1)[1].decode()
        s.close()
    except ConnectionRefusedError:
        answer = "ERR:refused"
    except (socket.timeout, TimeoutError):
        answer = "ERR:timeout"
    except OSError as e:
        answer = f"ERR:{e.__class__.__name__}"
    seen[answer] = seen.get(answer, 0) + 1
    if answer == "ERR:timeout" and not dropped:
        break
print(json.dumps(seen))
"""

ANSWER_TIMEOUT = 30.0  # an answer that is due: only a broken proxy or server misses this
DROP_TIMEOUT = 1.5  # a drop is expected: a late answer could only make the test pass wrongly


def reach(name: str, where: str, ip: str, port: int, path: str = "/hostname", n: int = 40, proto: str = "tcp",
          dropped: bool = False) -> dict[str, int]:
    """The answers of N attempts. DROPPED: the caller expects silence (ERR:timeout), so each
    attempt waits only DROP_TIMEOUT; otherwise it waits ANSWER_TIMEOUT for an answer."""
    target = where if where in ("external",) or where.startswith("node/") else f"default/{where}"
    timeout = DROP_TIMEOUT if dropped else ANSWER_TIMEOUT
    out = podnet("exec", target, "--name", name, "--", "python3", "-c", CLIENT, proto, ip, str(port), path, str(n),
                 str(timeout), "1" if dropped else "0", timeout=120 + ANSWER_TIMEOUT).stdout
    return json.loads(out)


def reach_each(name: str, where: str, ip: str, port: int, wanted: set[str], tries: int = 300, **kwargs) -> set[str]:
    """The answers seen, asking until each of `wanted` has answered (or `tries` requests were
    made, or an attempt failed): the proxy picks endpoints at random, and a few requests can
    miss one by chance (20 requests over 3 endpoints miss one about once in a thousand runs)."""
    seen: set[str] = set()
    made = 0
    while made < tries and not wanted <= seen and not any(a.startswith("ERR:") for a in seen):
        seen |= set(reach(name, where, ip, port, n=30, **kwargs))
        made += 30
    return seen


def state(name: str, kind: str) -> dict[str, dict]:
    items = json.loads(podnet("get", kind, "-o", "json", "--name", name).stdout)["items"]
    return {i["metadata"]["name"]: i for i in items}


def trace_endpoints(name: str, src: str, dst: str, port: int | str, protocol: str = "TCP") -> set[str]:
    result = json.loads(podnet("trace", src, dst, "-p", str(port), "--protocol", protocol, "-o", "json",
                               "--name", name).stdout)
    return {e.split("/")[-1] for e in result["endpoints"]}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.2)


def start_cluster(tmp_path, manifests: str, nodes: int, overlay: str, mode: str) -> str:
    name = f"t{secrets.token_hex(3)}"
    (tmp_path / "app.yaml").write_text(manifests)
    (tmp_path / "cluster.yaml").write_text(
        f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: {nodes}\n"
        f"networking: {{overlay: {overlay}, proxyMode: {mode}}}\n"
        # syncPeriod 1h: test_switching_modes_leaves_no_stale_rules hands a node's rules to proxies
        # of its own, which the supervisor's proxy would repair within its syncPeriod (1 s by default)
        "kubeProxy: {syncPeriod: 1h}\n")
    try:
        podnet("up", "-f", str(tmp_path / "app.yaml"), "--config", str(tmp_path / "cluster.yaml"), timeout=120)
    except BaseException:
        podnet("down", "--name", name, check=False)  # the caller never learns the name: remove it here
        raise
    return name


@pytest.fixture(scope="module")
def nft_cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("svc")
    marks = tmp / "marks"
    marks.mkdir()
    (marks / "alive").write_text("")
    name = None
    try:
        name = start_cluster(tmp, app(str(marks)), 3, "vxlan", "nftables")
        yield name, marks, state(name, "svc")
    finally:
        if name:
            podnet("down", "--name", name, check=False)
            assert leftovers(name) == [], f"left behind: {leftovers(name)}"


def ip_of(services, svc: str) -> str:
    return services[svc]["spec"]["clusterIP"]


def lb_of(services, svc: str) -> str:
    return services[svc]["status"]["loadBalancer"]["ingress"][0]["ip"]


def node_port(services, svc: str) -> int:
    return services[svc]["spec"]["ports"][0]["nodePort"]


# -- ClusterIP ---------------------------------------------------------------------------------

def test_cluster_ip_reaches_every_ready_endpoint_that_trace_predicts(nft_cluster):
    name, _, services = nft_cluster
    predicted = trace_endpoints(name, "default/client-1", "web", 80)
    assert predicted == {"web-1", "web-2", "web-3"}
    for where in ("client-1", "client-3", "node/node2"):
        seen = reach(name, where, ip_of(services, "web"), 80)
        assert set(seen) == predicted, (where, seen)
    udp = reach(name, "client-3", ip_of(services, "web"), 81, path="hostname", proto="udp")
    assert set(udp) == trace_endpoints(name, "default/client-3", "web", "udp", "UDP")


def test_session_affinity_pins_a_client_to_one_endpoint(nft_cluster):
    name, _, services = nft_cluster
    seen = reach(name, "client-1", ip_of(services, "sticky"), 80, n=25)
    assert len(seen) == 1 and next(iter(seen)) in {"web-1", "web-2", "web-3"}, seen
    assert len(reach(name, "client-3", ip_of(services, "sticky"), 80, n=10)) == 1


def test_internal_traffic_policy_local_uses_the_nodes_endpoints_or_drops(nft_cluster):
    name, _, services = nft_cluster
    assert set(reach(name, "client-1", ip_of(services, "itp"), 80, n=15)) == {"web-1"}
    assert reach(name, "client-3", ip_of(services, "itp"), 80, n=2, dropped=True) == {"ERR:timeout": 2}  # dropped, not rejected
    assert trace_endpoints(name, "default/client-3", "itp", 80) == set()


def test_service_without_endpoints_and_unknown_ports_are_rejected(nft_cluster):
    name, _, services = nft_cluster
    assert reach(name, "client-1", ip_of(services, "empty"), 80, n=3) == {"ERR:refused": 3}
    assert reach(name, "node/node3", ip_of(services, "empty"), 80, n=3) == {"ERR:refused": 3}
    assert reach(name, "client-3", ip_of(services, "web"), 8080, n=3) == {"ERR:refused": 3}  # not a Service port
    trace = json.loads(podnet("trace", "default/client-1", "empty", "-p", "80", "-o", "json", "--name", name).stdout)
    assert trace["verdict"] == "dropped" and "reject" in trace["reason"]


def test_hairpin_a_pod_reaches_itself_through_its_service_masqueraded(nft_cluster):
    name, _, services = nft_cluster
    pods = state(name, "pods")
    assert reach(name, "web-1", ip_of(services, "hairpin"), 80, n=5) == {"web-1": 5}
    clients = reach(name, "web-1", ip_of(services, "hairpin"), 80, path="/clientip", n=3)
    ips = {c.rsplit(":", 1)[0] for c in clients}
    assert pods["web-1"]["status"]["podIP"] not in ips and len(ips) == 1, clients  # SNAT to the node


# -- from outside: NodePort, LoadBalancer ------------------------------------------------------

def test_node_port_and_load_balancer_from_outside_with_policy_cluster(nft_cluster):
    name, _, services = nft_cluster
    nodes = state(name, "nodes")
    everyone = {"web-1", "web-2", "web-3"}
    for node in nodes.values():
        ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        assert reach_each(name, "external", ip, node_port(services, "web-lb"), everyone) == everyone, node["metadata"]["name"]
    assert reach_each(name, "external", lb_of(services, "web-lb"), 80, everyone) == everyone
    clients = reach(name, "external", lb_of(services, "web-lb"), 80, path="/clientip", n=5)
    assert not any(c.startswith(EXTERNAL_IP + ":") for c in clients), clients  # SNAT to the node


def test_load_balancer_source_ranges_let_only_their_clients_in_as_trace_predicts(nft_cluster):
    name, _, services = nft_cluster
    everyone = {"web-1", "web-2", "web-3"}
    lan, office = lb_of(services, "web-lan"), lb_of(services, "web-office")
    assert reach_each(name, "external", lan, 80, everyone) == everyone == trace_endpoints(name, "external", lan, 80)
    assert reach(name, "external", office, 80, n=3, dropped=True) == {"ERR:timeout": 3}  # dropped, not rejected
    assert trace_endpoints(name, "external", office, 80) == set()
    # only the LoadBalancer IP is guarded: its NodePort and ClusterIP stay open, as with kube-proxy
    assert reach_each(name, "external", "192.168.1.11", node_port(services, "web-office"), everyone) == everyone
    assert reach_each(name, "client-1", ip_of(services, "web-office"), 80, everyone) == everyone
    table = podnet("exec", "node/node1", "--name", name, "--", "nft", "list", "table", "ip", "kube-proxy").stdout
    assert "ip saddr != 203.0.113.0/24 drop" in table and f"{office} . tcp . 80 : goto firewall-" in table


def test_local_policy_keeps_the_client_ip_and_drops_on_nodes_without_endpoints(nft_cluster):
    name, _, services = nft_cluster
    nodes = {n: next(a["address"] for a in body["status"]["addresses"] if a["type"] == "InternalIP")
             for n, body in state(name, "nodes").items()}
    np = node_port(services, "web-local")
    assert set(reach(name, "external", nodes["node1"], np, n=10)) == {"web-1"}
    assert reach_each(name, "external", nodes["node2"], np, {"web-2", "web-3"}) == {"web-2", "web-3"}
    assert reach(name, "external", nodes["node3"], np, n=2, dropped=True) == {"ERR:timeout": 2}
    clients = reach(name, "external", nodes["node2"], np, path="/clientip", n=5)
    assert {c.rsplit(":", 1)[0] for c in clients} == {EXTERNAL_IP}
    # the LoadBalancer IP is announced by a node with a local endpoint; the client IP survives
    lb = lb_of(services, "web-local")
    lb_seen = reach(name, "external", lb, 80, n=20)
    assert set(lb_seen) in ({"web-1"}, {"web-2", "web-3"}), lb_seen
    assert {c.rsplit(":", 1)[0] for c in reach(name, "external", lb, 80, path="/clientip", n=3)} == {EXTERNAL_IP}
    # pods are short-circuited to every endpoint, even from a node without one
    assert reach_each(name, "client-3", nodes["node3"], np, {"web-1", "web-2", "web-3"}) == {"web-1", "web-2", "web-3"}


def test_kube_proxy_table_on_the_node(nft_cluster):
    name, _, services = nft_cluster
    table = podnet("exec", "node/node1", "--name", name, "--", "nft", "list", "table", "ip", "kube-proxy").stdout
    assert "map service-ips" in table and "numgen random mod 3 0 goto endpoint-" in table
    assert f"{ip_of(services, 'web')} . tcp . 80 : goto service-" in table
    assert "KUBE-SERVICES" not in podnet("exec", "node/node1", "--name", name, "--", "iptables-save").stdout


# -- probes ------------------------------------------------------------------------------------

def test_readiness_probe_adds_and_removes_the_endpoint(nft_cluster):
    name, marks, services = nft_cluster
    flip = ip_of(services, "flip")

    def ready_in_slice() -> bool | None:
        slices = [s for s in state(name, "endpointslices").values()
                  if s["metadata"]["labels"].get("kubernetes.io/service-name") == "flip"]
        return any(e["conditions"]["ready"] for s in slices for e in s.get("endpoints") or [])

    assert not ready_in_slice()
    assert reach(name, "client-3", flip, 80, n=2) == {"ERR:refused": 2}
    (marks / "ready").write_text("")
    wait_for(ready_in_slice, 60, "flip becoming ready")  # periodSeconds 1: a couple of periods, a sync
    wait_for(lambda: reach(name, "client-3", flip, 80, n=2) == {"flip": 2}, 60, "traffic to flip")
    assert state(name, "pods")["flip"]["status"]["containerStatuses"][0]["ready"] is True
    assert "1/1" in podnet("get", "pods", "--name", name).stdout.split("flip")[1].splitlines()[0]
    (marks / "ready").unlink()
    wait_for(lambda: not ready_in_slice(), 60, "flip becoming not ready")
    wait_for(lambda: reach(name, "client-3", flip, 80, n=2) == {"ERR:refused": 2}, 60, "flip rejected again")
    assert trace_endpoints(name, "default/client-3", "flip", 80) == set()


def test_liveness_failure_restarts_the_container(nft_cluster):
    name, marks, _ = nft_cluster

    def restarts() -> int:
        return state(name, "pods")["live"]["status"]["containerStatuses"][0]["restartCount"]

    before = restarts()
    (marks / "alive").unlink()
    try:
        wait_for(lambda: restarts() > before, 60, "a liveness restart")
    finally:
        (marks / "alive").write_text("")
    line = next(li for li in podnet("get", "pods", "--name", name).stdout.splitlines() if li.startswith("live "))
    assert int(line.split()[3]) > before  # RESTARTS


# -- the other modes ---------------------------------------------------------------------------

SMALL = "\n".join([netexec("web-1", "node1"), netexec("web-2", "node2"),
                   service("web", "  type: LoadBalancer"), service("empty", "", selector="app: nobody"),
                   service("office", "  type: LoadBalancer\n  loadBalancerSourceRanges: [203.0.113.0/24]"),
                   "apiVersion: v1\nkind: Pod\nmetadata: {name: client}\nspec:\n  nodeName: node1\n  containers: "
                   f"[{{name: c, image: {AGNHOST}, args: [pause]}}]\n"])


@pytest.mark.parametrize("mode", ["iptables", "userspace"])
def test_other_proxy_modes_over_host_gw(tmp_path, mode):
    if mode == "userspace":
        pytest.importorskip("podnet.proxy.userspace")
    name = None
    try:
        name = start_cluster(tmp_path, SMALL, 2, "host-gw", mode)
        services = state(name, "svc")
        both = {"web-1", "web-2"}
        assert reach_each(name, "client", ip_of(services, "web"), 80, both) == both
        assert reach_each(name, "node/node2", ip_of(services, "web"), 80, both) == both
        for node_ip in ("192.168.1.11", "192.168.1.12"):
            assert reach_each(name, "external", node_ip, node_port(services, "web"), both) == both
        assert reach_each(name, "external", lb_of(services, "web"), 80, both) == both
        assert reach(name, "external", lb_of(services, "office"), 80, n=2, dropped=True) == {"ERR:timeout": 2}  # source ranges
        assert reach(name, "client", ip_of(services, "empty"), 80, n=2) == {"ERR:refused": 2}
        tables = podnet("exec", "node/node1", "--name", name, "--", "nft", "list", "tables").stdout
        assert "kube-proxy" not in tables
        if mode == "iptables":
            nat = podnet("exec", "node/node1", "--name", name, "--", "iptables", "-t", "nat", "-L", "-n").stdout
            assert "/* default/web:http cluster IP */" in nat and "KUBE-SVC-" in nat and "statistic mode random" in nat
    finally:
        if name:
            podnet("down", "--name", name, check=False)
            assert leftovers(name) == [], f"left behind: {leftovers(name)}"


def test_switching_modes_leaves_no_stale_rules(nft_cluster):
    """A node handed from one mode to the other: the new proxy sweeps the old one's rules."""
    from podnet.cli.load import running_cluster
    from podnet.proxy.node import NodeProxy

    name, _, _ = nft_cluster
    cluster = running_cluster(name)
    netns = f"podnet-{name}.node-node3"

    def rules() -> tuple[str, str]:
        return (podnet("exec", "node/node3", "--name", name, "--", "nft", "list", "tables").stdout,
                podnet("exec", "node/node3", "--name", name, "--", "iptables-save").stdout)

    iptables_proxy = NodeProxy(name, "node3", netns, "iptables", "10.244.0.0/16")
    try:
        iptables_proxy.sync_now(cluster)
        tables, saved = rules()
        assert "kube-proxy" not in tables and "KUBE-SVC-" in saved
    finally:
        iptables_proxy.stop(cleanup=False)  # its sockets would hold the node's namespace
    nftables_proxy = NodeProxy(name, "node3", netns, "nftables", "10.244.0.0/16")
    try:
        nftables_proxy.sync_now(cluster)
        tables, saved = rules()
        assert "kube-proxy" in tables and "KUBE-" not in saved
    finally:
        nftables_proxy.stop(cleanup=False)
