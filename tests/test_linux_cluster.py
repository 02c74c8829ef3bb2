"""A real cluster, end to end (root only): podnet up, traffic between pods on different nodes
over both overlays, exec into pods, nodes and the external client, logs, apply/delete, down —
also after the supervisor was killed — leaving nothing behind."""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.livecluster import leftovers, podnet

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
UP_WITHIN = 240  # a bound on a whole cluster build (two at once in the race), not a measure of it
APP = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: c
        image: {AGNHOST}
        args: [netexec, --http-port=8080, --udp-port=8081]
        ports: [{{name: http, containerPort: 8080}}]
"""
EXTRA = f"""
apiVersion: v1
kind: Pod
metadata: {{name: extra}}
spec:
  nodeName: node1
  containers: [{{name: c, image: {AGNHOST}, args: [serve-hostname, --port=9376]}}]
"""


def host_network_state() -> str:
    return "\n".join(subprocess.run(cmd, capture_output=True, text=True).stdout
                     for cmd in (["ip", "-o", "link"], ["ip", "-o", "addr"], ["ip", "route", "show", "table", "all"],
                                 ["ip", "rule"]))


@pytest.fixture
def cluster(tmp_path):
    """Starts a cluster from APP; yields (name, manifest dir); always removes it."""
    name = f"t{secrets.token_hex(3)}"
    (tmp_path / "app.yaml").write_text(APP)
    created = []

    def up(overlay="vxlan", nodes=2):
        config = tmp_path / "cluster.yaml"
        config.write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: {nodes}\n"
                          f"networking: {{overlay: {overlay}}}\n")
        created.append(name)
        podnet("up", "-f", str(tmp_path / "app.yaml"), "--config", str(config), timeout=UP_WITHIN)
        return name

    try:
        yield up, tmp_path
    finally:
        for n in created:
            podnet("down", "--name", n, check=False)
            assert leftovers(n) == [], f"left behind: {leftovers(n)}"


def pods(name):
    listing = json.loads(podnet("get", "pods", "-o", "json", "--name", name).stdout)
    return {p["metadata"]["name"]: p for p in listing["items"]}


def answered(name, where, url, seconds: float = 60) -> str:
    """The body of a GET that must succeed, from `where` (default/POD, node/N or external), asked
    again until it does: `up` and `apply` return once the containers are spawned, not once their
    servers listen. Each attempt has 30 s, as the servers are Python on a loaded machine."""
    deadline = time.monotonic() + seconds
    while True:
        got = podnet("exec", where, "--name", name, "--", "curl", "-s", "--max-time", "30", url, check=False)
        if got.returncode == 0:
            return got.stdout
        assert time.monotonic() < deadline, f"{url} from {where}: curl exit {got.returncode} {got.stderr}"
        time.sleep(0.2)


def curl(name, pod, url):
    return answered(name, f"default/{pod}", url)


@pytest.mark.parametrize("overlay", ["vxlan", "host-gw"])
def test_pods_on_different_nodes_talk_without_nat(cluster, overlay):
    up, _ = cluster
    name = up(overlay)
    web = pods(name)
    (a, pa), (b, pb) = sorted(web.items())
    assert pa["spec"]["nodeName"] != pb["spec"]["nodeName"]
    assert curl(name, a, f"http://{pb['status']['podIP']}:8080/hostname") == b
    assert curl(name, a, f"http://{pb['status']['podIP']}:8080/clientip").split(":")[0] == pa["status"]["podIP"]
    udp = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(30); "
           f"s.sendto(b'hostname', ('{pb['status']['podIP']}', 8081)); print(s.recvfrom(256)[0].decode())")
    assert podnet("exec", f"default/{a}", "--name", name, "--", "python3", "-c", udp).stdout.strip() == b
    routes = podnet("exec", "node/node1", "--name", name, "--", "ip", "route").stdout
    if overlay == "vxlan":
        assert "dev flannel.1" in routes
    else:
        assert f"via {pb['status']['hostIP']}" in routes or f"via {pa['status']['hostIP']}" in routes


def test_exec_sees_the_pods_files_and_the_outside_reaches_nodes_not_pods(cluster):
    up, _ = cluster
    name = up()
    a, pa = sorted(pods(name).items())[0]
    resolv = podnet("exec", f"default/{a}", "--name", name, "--", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 10.96.0.10" in resolv and "options ndots:5" in resolv
    assert podnet("exec", f"default/{a}", "--name", name, "--", "hostname").stdout.strip() == a
    assert podnet("exec", "external", "--name", name, "--", "ping", "-c1", "-W1", pa["status"]["hostIP"]).returncode == 0
    assert podnet("exec", "external", "--name", name, "--", "ping", "-c1", "-W1", pa["status"]["podIP"],
                  check=False).returncode != 0
    assert podnet("exec", f"default/{a}", "--name", name, "--", "ping", "-c1", "-W1", "8.8.8.8",
                  check=False).returncode != 0, "nothing leaves the cluster"
    assert "Started HTTP server on port 8080" in podnet("logs", f"default/{a}", "--name", name).stdout


def test_apply_and_delete_start_and_stop_pods_and_release_addresses(cluster):
    up, tmp = cluster
    name = up()
    (tmp / "extra.yaml").write_text(EXTRA)
    assert "pod/extra created" in podnet("apply", "-f", str(tmp / "extra.yaml"), "--name", name).stdout
    extra = pods(name)["extra"]
    a = sorted(pods(name))[0]
    assert curl(name, a, f"http://{extra['status']['podIP']}:9376/") == "extra"
    before = {p: v["status"]["podIP"] for p, v in pods(name).items() if p != "extra"}
    # serve-hostname lingers 60 s after SIGTERM (as agnhost's does): --now gives it 1 s, then SIGKILL
    podnet("delete", "-f", str(tmp / "extra.yaml"), "--now", "--name", name)
    deadline = time.monotonic() + 60
    while "extra" in pods(name):
        assert time.monotonic() < deadline, "the deleted pod did not go"
        time.sleep(0.2)
    after = {p: v["status"]["podIP"] for p, v in pods(name).items()}
    assert after == before, "the pods that stay keep their addresses"
    held = list(Path(f"/run/podnet/{name}/ipam/node1").rglob(extra["status"]["podIP"]))
    assert held == [], "the deleted pod's address went back to host-local"


def test_down_after_the_supervisor_was_killed_leaves_nothing(cluster):
    up, _ = cluster
    state = host_network_state()
    name = up()
    in_cluster = [int(pid) for ns in os.listdir("/run/netns") if ns.startswith(f"podnet-{name}.")
                  for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()]
    assert in_cluster, "the pods' processes run in the cluster's namespaces"
    pid = int(subprocess.run(["pgrep", "-f", f"podnet.linux.supervisor --name {name}"], capture_output=True,
                             text=True).stdout.split()[0])
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    podnet("down", "--name", name)
    assert leftovers(name) == []
    alive = [p for p in in_cluster if Path(f"/proc/{p}").exists()
             and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"]
    assert alive == [], f"processes left running: {alive}"
    assert host_network_state() == state, "the host's links, addresses, routes and rules are untouched"


def test_two_clusters_coexist_and_a_name_in_use_is_refused(cluster, tmp_path):
    up, tmp = cluster
    first = up()
    second = f"{first}x"
    config = tmp / "second.yaml"
    config.write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {second}\nnodes: 2\n")
    try:
        podnet("up", "-f", str(tmp / "app.yaml"), "--config", str(config), timeout=UP_WITHIN)
        assert set(pods(first)) and set(pods(second))
        refused = podnet("up", "-f", str(tmp / "app.yaml"), "--name", first, check=False)
        assert refused.returncode != 0 and f"a cluster named {first} already exists" in refused.stderr
    finally:
        podnet("down", "--name", second, check=False)
        assert leftovers(second) == []


HOSTS = f"""
apiVersion: v1
kind: Pod
metadata: {{name: mapped}}
spec:
  nodeName: node2
  containers:
  - name: c
    image: {AGNHOST}
    args: [netexec, --http-port=8080]
    ports: [{{containerPort: 8080, hostPort: 8088}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: hostnet}}
spec:
  nodeName: node1
  hostNetwork: true
  containers:
  - {{name: c, image: {AGNHOST}, args: [netexec, --http-port=9099, --udp-port=-1]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: shell}}
spec:
  nodeName: node1
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'pwd; echo "$GREETING"']
    workingDir: /tmp
    env: [{{name: WHO, value: world}}, {{name: GREETING, value: "hello $(WHO)"}}]
"""


def test_host_port_host_network_same_node_and_pod_node_traffic(cluster):
    up, tmp = cluster
    name = up()
    (tmp / "hosts.yaml").write_text(HOSTS)
    podnet("apply", "-f", str(tmp / "hosts.yaml"), "--name", name)
    all_pods = pods(name)
    node2 = all_pods["mapped"]["status"]["hostIP"]
    node1 = all_pods["hostnet"]["status"]["hostIP"]
    # hostPort from the world outside, through the node's address (CNI portmap)
    assert answered(name, "external", f"http://{node2}:8088/hostname") == "mapped"
    # a hostNetwork pod listens on its node's address
    web = sorted(p for p in all_pods if p.startswith("web-"))
    assert curl(name, web[0], f"http://{node1}:9099/hostname") == "node1"
    # pod to its node and node to pod
    same = [p for p in web if all_pods[p]["spec"]["nodeName"] == "node1"] or web
    pod_ip = all_pods[same[0]]["status"]["podIP"]
    assert answered(name, "node/node1", f"http://{pod_ip}:8080/hostname") == same[0]
    # shell image: workingDir and $(VAR) expansion
    deadline = time.monotonic() + 60  # the shell writes its two lines soon after it starts
    while (lines := podnet("logs", "default/shell", "--name", name).stdout.splitlines()[-2:]) != ["/tmp", "hello world"]:
        assert time.monotonic() < deadline, lines
        time.sleep(0.2)


BOUND = f"""
apiVersion: v1
kind: Pod
metadata: {{name: bound}}
spec:
  nodeName: node2
  containers:
  - name: c
    image: {AGNHOST}
    args: [netexec, --http-port=8080, --udp-port=-1]
    ports: [{{containerPort: 8080, hostPort: 8090, hostIP: 10.244.2.1}}]
"""


def test_a_host_port_bound_to_a_host_ip_answers_only_there_as_trace_predicts(cluster):
    """The kernel (CNI portmap's table) and the simulator's trace on the same cluster: a hostPort
    bound to a hostIP (here node2's cni0 address) is DNATed at that address only, not at the
    node's LAN address (which the simulator used to map whatever the hostIP said)."""
    up, tmp = cluster
    name = up()
    (tmp / "bound.yaml").write_text(BOUND)
    podnet("apply", "-f", str(tmp / "bound.yaml"), "--name", name)
    all_pods = pods(name)
    client = next(p for p in sorted(all_pods) if p.startswith("web-") and all_pods[p]["spec"]["nodeName"] == "node2")
    node2, gateway2 = all_pods["bound"]["status"]["hostIP"], "10.244.2.1"  # node N has 10.244.N.0/24
    # apply returns before bound's server listens: wait for it at its pod IP (not the path tested)
    assert curl(name, client, f"http://{all_pods['bound']['status']['podIP']}:8080/hostname") == "bound"
    seen = {}
    for src, dst in (("external", node2), (f"default/{client}", node2), (f"default/{client}", gateway2)):
        got = podnet("exec", src, "--name", name, "--", "curl", "-s", "--max-time", "30",
                     f"http://{dst}:8090/hostname", check=False)
        kernel = got.stdout if got.returncode == 0 else None
        trace = json.loads(podnet("trace", src, f"{dst}:8090", "-o", "json", "--name", name, check=False).stdout)
        predicted = trace["destination"]["pod"]
        assert kernel == (predicted.split("/")[1] if predicted else None), (src, dst, got.stderr, trace["reason"])
        seen[(src, dst)] = kernel
    assert list(seen.values()) == [None, None, "bound"]


NGINX = """
apiVersion: v1
kind: Pod
metadata: {name: web-nginx}
spec:
  nodeName: node2
  containers: [{name: nginx, image: "nginx:1.27", ports: [{containerPort: 80}]}]
"""
GHOST = """
apiVersion: v1
kind: Pod
metadata: {name: ghost}
spec:
  nodeName: node7
  containers: [{name: c, image: busybox, command: [sleep, "60"]}]
"""


def test_the_cluster_survives_a_dead_sandbox_and_refuses_unknown_nodes(cluster):
    up, tmp = cluster
    name = up()
    a = sorted(pods(name))[0]
    netns = f"podnet-{name}.pod-default.{a}"
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    for pid in pids:  # the sandbox and the container: everything of the pod
        os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 60  # a restart that must come: generous, however loaded the machine
    while True:
        restarted = pods(name)[a]["status"]["containerStatuses"][0]
        if restarted["restartCount"] >= 1 and restarted.get("state", {}).get("running") is not None:
            break
        assert time.monotonic() < deadline, f"{a} was not restarted: {restarted}"
        time.sleep(0.2)
    assert curl(name, sorted(pods(name))[1], f"http://{pods(name)[a]['status']['podIP']}:8080/hostname") == a
    (tmp / "ghost.yaml").write_text(GHOST)
    refused = podnet("apply", "-f", str(tmp / "ghost.yaml"), "--name", name, check=False)
    assert refused.returncode != 0 and "node node7 does not exist in the running cluster" in refused.stderr
    assert "ghost" not in pods(name)


def test_nginx_serves_its_page_and_pods_leaving_the_pod_network_are_masqueraded(cluster):
    up, tmp = cluster
    name = up()
    (tmp / "nginx.yaml").write_text(NGINX + "---\n" + HOSTS.split("---")[1])
    podnet("apply", "-f", str(tmp / "nginx.yaml"), "--name", name)
    all_pods = pods(name)
    web = sorted(p for p in all_pods if p.startswith("web-"))
    assert "Welcome to nginx!" in curl(name, web[0], f"http://{all_pods['web-nginx']['status']['podIP']}/")
    client = next(p for p in web if all_pods[p]["spec"]["nodeName"] == "node2")
    seen = curl(name, client, f"http://{all_pods['hostnet']['status']['hostIP']}:9099/clientip").split(":")[0]
    assert seen == all_pods[client]["status"]["hostIP"], "a pod reaching the LAN leaves with its node's address"


def test_two_ups_racing_for_one_name_leave_exactly_one_cluster(cluster, tmp_path):
    up, tmp = cluster
    name = up()
    podnet("down", "--name", name)
    config = tmp / "race.yaml"
    config.write_text(f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 2\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    racers = [subprocess.Popen([sys.executable, "-m", "podnet", "up", "-f", str(tmp / "app.yaml"), "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(r.wait(timeout=UP_WITHIN), r.stderr.read()) for r in racers]
    assert sorted(code for code, _ in results) == [0, 1]
    assert any("already exists" in err for code, err in results if code == 1)
    assert len(pods(name)) == 2
