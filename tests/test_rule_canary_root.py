"""Rules changed behind podnet's back are repaired, on real clusters (root only), as kube-proxy
repairs its own: inside a node's namespace (never the host's tables) kube-proxy's table is
deleted or flushed (nftables mode), the nat table flushed and its chains deleted, or every
table flushed as seed 000's DNS troubleshooting does it (iptables mode), and the NetworkPolicy
table flushed or deleted; the node's canary notices (podnet.proxy.canary), the rules come back,
a ClusterIP answers again and a denied connection is denied again, with a Warning event on the
Node. Every wait is for an end state, with a generous deadline; nothing asserts a duration.
Each cluster has a unique name and is removed in a finally, also when a test fails.
"""

from __future__ import annotations

import json
import secrets
import time

import pytest

from tests.livecluster import AGNHOST, podnet, up_cluster

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

DEADLINE = 120.0  # seconds for a repair to show: the check runs every second, a loaded machine is slow

MANIFESTS = f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeName: node2
  containers: [{{name: c, image: {AGNHOST}, args: [netexec, --http-port=8080], ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: guarded, labels: {{app: guarded}}}}
spec:
  nodeName: node2
  containers: [{{name: c, image: {AGNHOST}, args: [netexec, --http-port=8080], ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  nodeName: node1
  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: deny-guarded}}
spec: {{podSelector: {{matchLabels: {{app: guarded}}}}, policyTypes: [Ingress]}}
"""

# One new connection per attempt to IP:PORT, an HTTP request for /hostname; prints the answers
# as {"web": 2} or {"ERR:timeout": 3}. The handshake is the kernel's: an allowed connection is
# made at once however loaded the machine; the answer may take long (ANSWER), a drop never comes.
CLIENT = r"""
import json, socket, sys
ip, port, n, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
seen = {}
for _ in range(n):
    try:
        s = socket.create_connection((ip, port), timeout=timeout)
        s.settimeout(30)
        s.sendall(b"GET /hostname HTTP/1.0\r\nHost: x\r\n\r\n"); data = b""
        while chunk := s.recv(4096):
            data += chunk
        answer = data.split(b"\r\n\r\n", 1)[1].decode()
        s.close()
    except (socket.timeout, TimeoutError):
        answer = "ERR:timeout"
    except OSError as e:
        answer = f"ERR:{e.__class__.__name__}"
    seen[answer] = seen.get(answer, 0) + 1
print(json.dumps(seen))
"""
CONNECT = 30.0  # a connection that must be made: only broken rules miss this
DROPPED = 3.0  # a connection that must be dropped: the kernel answers an allowed SYN in microseconds


def reach(name: str, ip: str, port: int, n: int, timeout: float) -> dict[str, int]:
    out = podnet("exec", "default/client", "--name", name, "--", "python3", "-c", CLIENT, ip, str(port), str(n),
                 str(timeout), timeout=120 + n * (timeout + 30)).stdout
    return json.loads(out)


def on_node(name: str, node: str, *command: str, check: bool = True):
    """COMMAND inside the node's network namespace (podnet exec node/NODE): never the host's tables."""
    return podnet("exec", f"node/{node}", "--name", name, "--", *command, check=check)


def wait_for(predicate, what: str):
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {DEADLINE:.0f}s"
        time.sleep(0.2)


def addresses(name: str) -> tuple[str, str]:
    """(web's ClusterIP, guarded's pod IP)."""
    services = json.loads(podnet("get", "svc", "-o", "json", "--name", name).stdout)["items"]
    pods = json.loads(podnet("get", "pods", "-o", "json", "--name", name).stdout)["items"]
    cluster_ip = next(s["spec"]["clusterIP"] for s in services if s["metadata"]["name"] == "web")
    return cluster_ip, next(p["status"]["podIP"] for p in pods if p["metadata"]["name"] == "guarded")


def warnings(name: str, reason: str) -> list[dict]:
    items = json.loads(podnet("get", "events", "-A", "-o", "json", "--name", name).stdout)["items"]
    return [e for e in items if e["reason"] == reason and e["type"] == "Warning"]


def nft_listing(name: str, node: str, *what: str) -> str:
    proc = on_node(name, node, "nft", "list", *what, check=False)
    return proc.stdout if proc.returncode == 0 else ""


@pytest.fixture(scope="module")
def nft_cluster(tmp_path_factory):
    name = f"cn{secrets.token_hex(3)}"
    with up_cluster(tmp_path_factory.mktemp("canary"), name, MANIFESTS, "{overlay: vxlan, proxyMode: nftables}"):
        yield (name, *addresses(name))


@pytest.fixture(scope="module")
def ipt_cluster(tmp_path_factory):
    name = f"ci{secrets.token_hex(3)}"
    with up_cluster(tmp_path_factory.mktemp("canary"), name, MANIFESTS, "{overlay: vxlan, proxyMode: iptables}"):
        yield (name, *addresses(name))


# -- kube-proxy, nftables mode -----------------------------------------------------------------------

@pytest.mark.parametrize("change", [["delete", "table", "ip", "kube-proxy"], ["flush", "table", "ip", "kube-proxy"]],
                         ids=["deleted", "flushed"])
def test_kube_proxys_table_changed_in_a_node_is_synced_again_and_the_cluster_ip_answers(nft_cluster, change):
    name, cluster_ip, _ = nft_cluster
    assert reach(name, cluster_ip, 80, 2, CONNECT) == {"web": 2}
    on_node(name, "node1", "nft", *change)
    wait_for(lambda: "jump services" in nft_listing(name, "node1", "chain", "ip", "kube-proxy", "nat-output")
             and f"{cluster_ip} . tcp . 80 : goto" in nft_listing(name, "node1", "map", "ip", "kube-proxy", "service-ips"),
             "kube-proxy's table on node1 back")
    assert reach(name, cluster_ip, 80, 3, CONNECT) == {"web": 3}
    said = [e for e in warnings(name, "ProxyRulesChanged") if e["involvedObject"]["name"] == "node1"]
    assert said and all(e["source"]["component"] == "kube-proxy" for e in said)
    assert any("table ip kube-proxy" in e["message"] for e in said)


# -- NetworkPolicy -------------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [["flush", "table", "inet", "podnet-netpol"],
                                    ["delete", "table", "inet", "podnet-netpol"]], ids=["flushed", "deleted"])
def test_a_networkpolicy_table_changed_in_a_node_is_loaded_again_and_denies_again(nft_cluster, change):
    name, _, guarded = nft_cluster
    assert reach(name, guarded, 8080, 2, DROPPED) == {"ERR:timeout": 2}  # deny-guarded holds
    on_node(name, "node2", "nft", *change)  # the destination's node judges its ingress
    wait_for(lambda: "meta nfproto ipv4 drop" in nft_listing(name, "node2", "chain", "inet", "podnet-netpol", "ingress"),
             "node2's NetworkPolicy table back")
    assert reach(name, guarded, 8080, 3, DROPPED) == {"ERR:timeout": 3}
    event = next(e for e in reversed(warnings(name, "NetworkPolicyRulesChanged"))
                 if e["involvedObject"]["name"] == "node2")
    assert "table inet podnet-netpol" in event["message"]


# -- kube-proxy, iptables mode -----------------------------------------------------------------------

def kube_services_jumped(name: str, cluster_ip: str) -> bool:
    nat = on_node(name, "node1", "iptables-save", "-t", "nat").stdout
    return ("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in nat
            and f"-d {cluster_ip}/32" in nat and ":KUBE-PROXY-CANARY" in nat)


@pytest.mark.parametrize("flush", [
    "iptables -t nat -F && iptables -t nat -X",
    # seed 000's DNS troubleshooting: every table flushed, the filter table's chains deleted
    "iptables -F && iptables -t nat -F && iptables -t mangle -F && iptables -X",
], ids=["nat", "seed-000-every-table"])
def test_iptables_flushed_in_a_node_are_synced_again_and_the_cluster_ip_answers(ipt_cluster, flush):
    name, cluster_ip, _ = ipt_cluster
    assert reach(name, cluster_ip, 80, 2, CONNECT) == {"web": 2}
    done = on_node(name, "node1", "sh", "-c", flush, check=False)
    # kube-proxy may notice the first command before the shell runs the last: its repair puts the
    # jumps back, and `-X` of a chain they name again is refused (EBUSY) — the user's command
    # raced the repair, which is the product doing its job, not a failure of the test
    assert done.returncode == 0 or "Device or resource busy" in done.stderr, done.stderr
    wait_for(lambda: kube_services_jumped(name, cluster_ip), "kube-proxy's iptables rules on node1 back")
    assert reach(name, cluster_ip, 80, 3, CONNECT) == {"web": 3}
    saved = on_node(name, "node1", "iptables-save").stdout
    assert saved.count(":KUBE-PROXY-CANARY") == 3  # mangle, nat, filter
    assert any(e["involvedObject"]["name"] == "node1" and "KUBE-PROXY-CANARY" in e["message"]
               for e in warnings(name, "ProxyRulesChanged"))
