"""The cluster DNS in a running cluster (root only): the coredns pods behind 10.96.0.10 answer
pods through their resolv.conf with libc (getent), Python's resolver, dig and kdig; each
dnsPolicy; changes show within a second; losing one replica leaves the other answering;
`podnet dig --from` asks from inside the pod and agrees with the simulator."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time

import pytest

from podnet.host.layout import ClusterLayout
from tests.livecluster import leftovers, podnet

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"


def pause(name: str, ns: str, extra: str = "") -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{extra}"
            f"  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]\n---\n")


APP = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: prod}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: prod}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: c, image: {AGNHOST}, args: [netexec, --http-port=8080], ports: [{{name: http, containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: prod}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: db, namespace: prod}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{name: pg, port: 5432}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db, namespace: prod}}
spec:
  serviceName: db
  replicas: 2
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      containers: [{{name: c, image: {AGNHOST}, args: [pause], ports: [{{name: pg, containerPort: 5432}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: search, namespace: prod}}
spec:
  type: ExternalName
  externalName: web.prod.svc.cluster.local
---
{pause("client", "prod")}
{pause("other", "default")}
{pause("nodns", "default", "  dnsPolicy: Default" + chr(10))}
{pause("custom", "default", "  dnsPolicy: None" + chr(10) + "  dnsConfig: {nameservers: [10.96.0.10], searches: [prod.svc.cluster.local], options: [{name: ndots, value: '2'}]}" + chr(10))}
{pause("merged", "default", "  dnsConfig: {searches: [prod.svc.cluster.local], options: [{name: ndots, value: '1'}]}" + chr(10))}
{pause("hostnet", "default", "  hostNetwork: true" + chr(10) + "  dnsPolicy: ClusterFirstWithHostNet" + chr(10))}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dns")
    name = f"t{secrets.token_hex(3)}"
    (tmp / "app.yaml").write_text(APP)
    (tmp / "cluster.yaml").write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n")
    try:
        podnet("up", "-f", str(tmp / "app.yaml"), "--config", str(tmp / "cluster.yaml"), timeout=120)
        wait_for(lambda: run(name, "prod/client", "getent", "hosts", "kubernetes.default").returncode == 0, 30,
                 "the cluster DNS answering")
        yield name, tmp
    finally:
        podnet("down", "--name", name, check=False)
        assert leftovers(name) == [], f"left behind: {leftovers(name)}"


def run(name: str, pod: str, *cmd: str, timeout: float = 60):
    return podnet("exec", pod, "--name", name, "--", *cmd, check=False, timeout=timeout)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.2)


def services(name: str) -> dict[str, dict]:
    items = json.loads(podnet("get", "svc", "-A", "-o", "json", "--name", name).stdout)["items"]
    return {f"{i['metadata']['namespace']}/{i['metadata']['name']}": i for i in items}


def test_libc_resolves_through_the_search_list(cluster):
    name, _ = cluster
    web = services(name)["prod/web"]["spec"]["clusterIP"]
    for pod, short in (("prod/client", "web"), ("default/other", "web.prod"), ("default/other", "web.prod.svc"),
                       ("default/other", "web.prod.svc.cluster.local")):
        out = run(name, pod, "getent", "hosts", short)
        assert out.returncode == 0 and out.stdout.split()[0] == web, (pod, short, out.stdout, out.stderr)
    assert run(name, "default/other", "getent", "hosts", "web").returncode != 0  # not in default's search path
    code = "import socket; print(socket.getaddrinfo('web', 80, proto=socket.IPPROTO_TCP)[0][4][0])"
    assert run(name, "prod/client", "python3", "-c", code).stdout.strip() == web


def test_record_forms_with_dig_and_kdig(cluster):
    name, _ = cluster
    svcs = services(name)
    web = svcs["prod/web"]["spec"]["clusterIP"]
    assert run(name, "prod/client", "dig", "+short", "+search", "web").stdout.split() == [web]
    srv = run(name, "prod/client", "dig", "+short", "_http._tcp.web.prod.svc.cluster.local", "SRV").stdout.split()
    assert srv[:3] == ["0", "100", "80"] and srv[3] == "web.prod.svc.cluster.local."
    headless = set(run(name, "prod/client", "dig", "+short", "db.prod.svc.cluster.local").stdout.split())
    pods = json.loads(podnet("get", "pods", "-n", "prod", "-o", "json", "--name", name).stdout)["items"]
    db_ips = {p["status"]["podIP"] for p in pods if p["metadata"]["name"].startswith("db-")}
    assert headless == db_ips
    db0 = next(p["status"]["podIP"] for p in pods if p["metadata"]["name"] == "db-0")
    assert run(name, "prod/client", "dig", "+short", "db-0.db.prod.svc.cluster.local").stdout.split() == [db0]
    ptr = run(name, "prod/client", "dig", "+short", "-x", web).stdout.split()
    assert ptr == ["web.prod.svc.cluster.local."]
    cname = run(name, "prod/client", "dig", "+short", "search.prod.svc.cluster.local", "CNAME").stdout.split()
    assert cname == ["web.prod.svc.cluster.local."]
    nx = run(name, "prod/client", "dig", "nope.prod.svc.cluster.local").stdout
    assert "status: NXDOMAIN" in nx and "flags: qr aa rd" in nx and "SOA" in nx
    if shutil.which("kdig"):
        txt = run(name, "prod/client", "kdig", "+short", "@10.96.0.10", "dns-version.cluster.local", "TXT").stdout
        assert txt.strip() == '"1.1.0"'
        tcp = run(name, "prod/client", "kdig", "+tcp", "+short", "@10.96.0.10", "web.prod.svc.cluster.local").stdout
        assert tcp.split() == [web]


def test_each_dns_policy_gets_kubelets_resolv_conf(cluster):
    name, _ = cluster
    assert run(name, "default/nodns", "getent", "hosts", "web.prod").returncode != 0  # dnsPolicy Default: node's (none)
    custom = run(name, "default/custom", "cat", "/etc/resolv.conf").stdout
    assert custom.splitlines() == ["search prod.svc.cluster.local", "nameserver 10.96.0.10", "options ndots:2"]
    assert run(name, "default/custom", "getent", "hosts", "web").returncode == 0
    merged = run(name, "default/merged", "cat", "/etc/resolv.conf").stdout
    assert "search default.svc.cluster.local svc.cluster.local cluster.local prod.svc.cluster.local" in merged
    assert "options ndots:1" in merged
    assert run(name, "default/merged", "getent", "hosts", "web").returncode == 0
    assert run(name, "default/hostnet", "getent", "hosts", "web.prod").returncode == 0  # ClusterFirstWithHostNet


def test_answers_follow_a_new_service_within_a_second(cluster):
    name, tmp = cluster
    (tmp / "late.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: late, namespace: prod}\n"
                                   "spec: {selector: {app: web}, ports: [{port: 81, targetPort: 8080}]}\n")
    podnet("apply", "-f", str(tmp / "late.yaml"), "--name", name)
    ip = services(name)["prod/late"]["spec"]["clusterIP"]
    probe = ("import socket, time\nt = time.monotonic()\nwhile time.monotonic() - t < 60:\n"
             "    try:\n        print(socket.gethostbyname('late.prod.svc.cluster.local')); break\n"
             "    except OSError:\n        time.sleep(0.05)\n")
    out = run(name, "prod/client", "python3", "-c", probe)
    assert out.stdout.strip() == ip
    podnet("delete", "-f", str(tmp / "late.yaml"), "--name", name)
    wait_for(lambda: run(name, "prod/client", "getent", "hosts", "late").returncode != 0, 60, "the deleted name gone")


def test_podnet_dig_from_a_pod_asks_the_real_server_and_agrees_with_the_simulator(cluster):
    name, _ = cluster
    doc = json.loads(podnet("dig", "web", "--from", "prod/client", "-o", "json", "--name", name).stdout)
    assert doc["rcode"] == "NOERROR" and doc["tried"][0] == "web.prod.svc.cluster.local."
    assert [a["data"] for a in doc["answers"]] == [services(name)["prod/web"]["spec"]["clusterIP"]]
    assert "predicted" not in doc  # the real answer is the simulator's
    miss = json.loads(podnet("dig", "nothing", "--from", "prod/client", "-o", "json", "--name", name).stdout)
    # every search domain NXDOMAIN, then "nothing." itself: outside the zone, no upstream: SERVFAIL
    assert miss["rcode"] == "SERVFAIL" and len(miss["tried"]) == 4 and "predicted" not in miss


def test_metrics_count_the_queries(cluster):
    name, _ = cluster
    pods = json.loads(podnet("get", "pods", "-n", "kube-system", "-o", "json", "--name", name).stdout)["items"]
    ip = next(p["status"]["podIP"] for p in pods if p["metadata"]["name"].startswith("coredns-"))
    text = run(name, "node/node1", "curl", "-s", "-m", "3", f"http://{ip}:9153/metrics").stdout
    assert 'coredns_dns_requests_total{family="1",proto="udp"' in text
    assert "coredns_dns_request_duration_seconds_bucket" in text and "coredns_cache_hits_total" in text
    assert run(name, "node/node1", "curl", "-s", "-m", "3", f"http://{ip}:8080/health").stdout == "OK"
    assert run(name, "node/node1", "curl", "-s", "-m", "3", f"http://{ip}:8181/ready").stdout == "OK"


def test_losing_one_replica_leaves_resolution_working(cluster):
    name, _ = cluster
    pods = json.loads(podnet("get", "pods", "-n", "kube-system", "-o", "json", "--name", name).stdout)["items"]
    victim = next(p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("coredns-"))
    # pods share the host's PID namespace: find the victim's server by its network namespace
    netns = ClusterLayout(name).pod_netns("kube-system", victim)
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    server = [p for p in pids if b"podnet.dns" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert server
    for pid in server:
        os.kill(int(pid), signal.SIGKILL)
    probe = ("import socket, time\nok = 0\nfor _ in range(40):\n    try:\n"
             "        socket.gethostbyname('web.prod.svc.cluster.local'); ok += 1\n"
             "    except OSError:\n        pass\n    time.sleep(0.05)\nprint(ok)\n")
    def noticed() -> bool:
        """kubelet saw the exit: the pod is not Ready (its endpoint leaves kube-dns), or the
        container was restarted and is Ready again. Until then kube-proxy may still pick it."""
        pod = json.loads(podnet("get", "pod", victim, "-n", "kube-system", "-o", "json", "--name", name).stdout)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
        restarted = any(c.get("restartCount", 0) >= 1 for c in pod["status"].get("containerStatuses", []))
        return not ready or restarted

    wait_for(noticed, 60, "kubelet noticing the killed CoreDNS")
    assert int(run(name, "prod/client", "python3", "-c", probe).stdout.strip()) == 40
