"""The seed documents' kubectl sessions, run as written against a podnet cluster (root, with
the real kubectl): every `kubectl …` line of ../shared/seeds/*.txt (beside the repository) (the files are quoted as
"000" … "004" below), its placeholders filled with the real names, and the output checked
for the shape the seed shows or describes.

One cluster for the whole module (2 nodes), made from the seeds' own manifests that fit
together: examples/seeds/net-demo.yaml (000's two-container pod, which 000's commands use
without applying it) and whale-ingress.yaml (004's Ingress, before its `kubectl get ingress`).
The rest is applied by the seeds' own `kubectl apply -f` lines. Seed 001's slides apply
pod.yml, service-clusterip.yml, service-loadbalancer.yml and ingress.yml without showing them
(examples/README.md), so the test writes those files under the seed's names:
- pod.yml: pod bb1 whose container bb1 has curl, beside an nginx container, so that
  `kubectl exec -it bb1 -c bb1 -- curl localhost:80` shows what the slide is about (containers
  of a pod share its localhost);
- service-clusterip.yml: examples/seeds/back-end.yaml (002's ClusterIP Service, with pods);
- service-loadbalancer.yml: examples/seeds/myapp-service-loadbalancer.yaml (002's
  LoadBalancer Service, nodePort 30008);
- ingress.yml: examples/seeds/basic-ingress.yaml (the Ingress on the slide next to it).
  (000's my-service-*.yaml are not used: they all name Service my-service and Deployment
  my-app, as basic-ingress does, with other selectors, which cannot be applied over each other.)

Commands run as written, with a remark:
- 000 `kubectl exec <pod-name>  -- ping <some-other-pod-ip-address>`: ping runs until
  interrupted; the test stops kubectl (SIGINT, as Ctrl-C) after the first reply, and the ping
  in the pod ends with it.
- 000 `kubectl exec <podname> cat /etc/resolv.conf`: kubectl 1.32 refuses this deprecated form
  itself (no request is made); its message is checked, and the command is then run with `--`.
- 000 `kubectl -n kube-system describe pods coredns-...` and `logs coredns-...`: "..." filled
  with a real pod's name; describe is also run with the prefix `coredns-` (kubectl then
  describes every pod whose name starts with it).
- 000 `kubectl delete pod -n kube-system -l k8s-app=kube-dns`: podnet computes pod names, so
  the replacements have the old names (a ReplicaSet would give new suffixes); they are new
  objects (new uids) and Running again. Run with `--wait=false`: kubectl's wait GETs each pod,
  then lists and watches it by name, and a replacement made between the two (same name) is
  waited on as the deleted pod until kubectl's timeout (README: the Kubernetes API, known gap).
- 002 `kubectl cluster-info dump | grep -i cluster-ip-range`: the dump completes and holds the
  cluster's nodes and pods with their logs; the grep finds nothing, since podnet's API server
  is no kube-apiserver static pod with a --service-cluster-ip-range flag (podnet's cluster
  config's serviceSubnet is that range).
- 002 `kubectl create ingress  --rule="host/path=service:port"` is the seed's format line (no
  NAME): kubectl's own refusal is checked. The seed's trailing `**` (Markdown) is not typed.
- 003 `kubectl apply -f ""` (the seed elides weave's URL): kubectl's own refusal is checked.

Commands that cannot apply to podnet, not run:
- 000 `kubectl get pods --all-namespaces -o wide | grep weave`, `kubectl get pods -n
  kube-system weave.. -o yaml`, `kubectl -n kube-system exec weave.. ip route show` and
  `… ip a s`; 002 `kubectl apply -f https://github.com/weaveworks/weave/…/weave-daemonset-k8s.yaml`
  (and 003's `kubectl apply -f ""` for it): podnet's network plugin is podnet itself, not a
  DaemonSet of pods, and the sandbox reaches no network to fetch the manifest from. (`kubectl
  get pods --all-namespaces -o wide` itself is run.)
- 002 `kubectl logs <kube-proxy-pod-name> -n kube-system`: podnet's kube-proxy runs in the
  node, not as a pod (`podnet get nodes` and the cluster config say its mode).
- 000 `docker ps | grep pause | grep <pod-name>` is not kubectl (podnet has no container
  runtime CLI; `podnet exec node/NODE -- …` is how one looks at a node).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.livecluster import up_cluster

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")]

NAME = f"seeds{os.getpid() % 100000}"
SEEDS = Path(__file__).resolve().parent.parent / "examples" / "seeds"
POD_YML = """apiVersion: v1
kind: Pod
metadata:
  name: bb1
spec:
  containers:
  - name: bb1
    image: curlimages/curl:8.11.1
    command: ["sleep", "3600"]
  - name: web
    image: nginx
    ports:
    - containerPort: 80
"""
SLIDE_FILES = {"pod.yml": POD_YML,
               "service-clusterip.yml": (SEEDS / "back-end.yaml").read_text(),
               "service-loadbalancer.yml": (SEEDS / "myapp-service-loadbalancer.yaml").read_text(),
               "ingress.yml": (SEEDS / "basic-ingress.yaml").read_text()}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The cluster, and the directory the seeds' `kubectl apply -f FILE` lines run in."""
    directory = tmp_path_factory.mktemp("seeds")
    for name, text in SLIDE_FILES.items():
        (directory / name).write_text(text)
    manifests = (SEEDS / "net-demo.yaml").read_text() + "\n---\n" + (SEEDS / "whale-ingress.yaml").read_text()
    with up_cluster(directory, NAME, manifests):
        yield directory


def argv_of(command: str) -> list[str]:
    argv = shlex.split(command)
    assert argv[0] == "kubectl", command
    return ["kubectl", "--context", f"podnet-{NAME}", *argv[1:]]


def run(command: str, workdir: Path, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess:
    """A seed's command line as written, against this module's cluster (`--context`, which `up`
    also made the current one, so that another cluster of the same test run is not used)."""
    result = subprocess.run(argv_of(command), capture_output=True, text=True, cwd=workdir, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def table(output: str) -> tuple[list[str], list[list[str]]]:
    """kubectl's table: the header's words and each row's cells (none of which has a space here)."""
    lines = output.splitlines()
    return lines[0].split(), [line.split() for line in lines[1:] if line.strip()]


def wait_until(what: str, condition, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)
    return value


def pods(workdir: Path, where: str) -> list[dict]:
    """The pods `kubectl get pods WHERE` lists (WHERE: its namespace and selector flags)."""
    return json.loads(run(f"kubectl get pods {where} -o json", workdir).stdout)["items"]


def pod_namespaces() -> set[str]:
    """The pods of this cluster that have a network namespace on the host, as NAMESPACE.NAME."""
    prefix = f"podnet-{NAME}.pod-"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    return {entry[len(prefix):] for entry in listed if entry.startswith(prefix)}


def running(pod: dict) -> bool:
    return pod["status"].get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp") and all(
        c.get("ready") for c in pod["status"].get("containerStatuses") or [{}])


def eth0_address(ip_a_s: str) -> str:
    """The inet address of eth0 in `ip a s`'s output."""
    block = re.search(r"^\d+: eth0@\S+: .*?(?=^\d+: |\Z)", ip_a_s, re.M | re.S)
    assert block, ip_a_s
    return re.search(r"^\s+inet (\d+\.\d+\.\d+\.\d+)/\d+ ", block.group(0), re.M).group(1)


# -- 000: "2. Understand connectivity between Pods" --------------------------------------------------

def test_000_both_containers_of_net_demo_have_the_pod_s_address(workdir):
    busy1 = run("kubectl exec net-demo -c busy1 -- ip a s", workdir).stdout
    busy2 = run("kubectl exec net-demo -c busy2 -- ip a s", workdir).stdout
    assert "1: lo: <LOOPBACK,UP,LOWER_UP>" in busy1 and "inet 127.0.0.1/8" in busy1
    assert eth0_address(busy1) == eth0_address(busy2)  # one network namespace: the same interface
    header, rows = table(run("kubectl get po -o wide", workdir).stdout)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE", "READINESS",
                      "GATES"]
    net_demo = next(row for row in rows if row[0] == "net-demo")
    assert net_demo[1:4] == ["2/2", "Running", "0"] and net_demo[5] == eth0_address(busy1)
    assert net_demo[6].startswith("node") and net_demo[7:] == ["<none>", "<none>"]


def test_000_a_pod_pings_another_pod_s_address(workdir):
    header, rows = table(run("kubectl get pods -o wide", workdir).stdout)
    node_of = {row[0]: row[6] for row in rows}
    other = next(row for row in rows if row[0] != "net-demo" and node_of[row[0]] != node_of["net-demo"])
    address = other[5]
    ping = subprocess.Popen(argv_of(f"kubectl exec net-demo  -- ping {address}"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=workdir)
    stuck = threading.Timer(60, ping.kill)  # no reply at all: the reads below end, and fail
    stuck.start()
    try:
        first, reply = ping.stdout.readline(), ping.stdout.readline()
        assert first.startswith(f"PING {address} ({address})"), first
        assert re.match(rf"64 bytes from {re.escape(address)}: icmp_seq=1 ttl=\d+ time=", reply), reply
        assert pings_in_net_demo(address), "no ping runs in the pod's network namespace"
    finally:
        stuck.cancel()
        ping.send_signal(signal.SIGINT)  # the user's Ctrl-C
        ping.wait(30)
    # the ping in the pod went with the session (a command whose client left is killed)
    wait_until("the pod's ping ended", lambda: not pings_in_net_demo(address), timeout=30)


def pings_in_net_demo(address: str) -> list[int]:
    """The processes `ping ADDRESS` running in net-demo's network namespace."""
    pod = os.stat(f"/run/netns/podnet-{NAME}.pod-default.net-demo").st_ino
    found = []
    for pid in subprocess.run(["pgrep", "-f", f"ping {re.escape(address)}$"], capture_output=True,
                              text=True).stdout.split():
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == pod:
                found.append(int(pid))
        except FileNotFoundError:  # ended meanwhile
            pass
    return found


# -- 000: "5. Understand CoreDNS" --------------------------------------------------------------------

def test_000_the_pod_s_resolver_is_the_kube_dns_service(workdir):
    refused = run("kubectl exec net-demo cat /etc/resolv.conf", workdir, check=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[0] == ("error: exec [POD] [COMMAND] is not supported anymore. "
                                              "Use exec [POD] -- [COMMAND] instead")
    resolv = run("kubectl exec net-demo -- cat /etc/resolv.conf", workdir).stdout.splitlines()
    assert "nameserver 10.96.0.10" in resolv
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
    assert "options ndots:5" in resolv
    header, rows = table(run("kubectl get svc -n kube-system", workdir).stdout)
    assert header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    kube_dns = next(row for row in rows if row[0] == "kube-dns")
    assert kube_dns[1:5] == ["ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP"]


def test_000_coredns_is_up_described_and_logs(workdir):
    header, rows = table(run("kubectl get pods --namespace=kube-system -l k8s-app=kube-dns", workdir).stdout)
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert len(rows) == 2 and all(row[0].startswith("coredns-") and row[1:3] == ["1/1", "Running"] for row in rows)
    coredns = rows[0][0]
    described = run(f"kubectl -n kube-system describe pods {coredns}", workdir).stdout
    fields = dict(re.findall(r"^([A-Z][A-Za-z ]+):\s+(\S.*)$", described, re.M))
    assert fields["Name"] == coredns and fields["Namespace"] == "kube-system"
    assert fields["Status"] == "Running" and fields["Labels"] == "k8s-app=kube-dns"
    assert fields["Node"].startswith("node") and fields["Controlled By"].startswith("ReplicaSet/coredns-")
    for section in ("Containers:\n  coredns:\n", "\nConditions:\n", "\nVolumes:", "\nQoS Class:", "\nTolerations:",
                    "\nEvents:\n"):
        assert section in described, section
    assert re.search(r"^  Ready\s+True\s*$", described, re.M)
    events = described.split("\nEvents:\n", 1)[1].splitlines()
    assert events[0].split() == ["Type", "Reason", "Age", "From", "Message"]
    said = [(line.split()[1], line.split()[3]) for line in events[2:] if line.strip()]
    assert said[:4] == [("Scheduled", "default-scheduler"), ("Pulled", "kubelet"), ("Created", "kubelet"),
                    ("Started", "kubelet")]
    assert f"Successfully assigned kube-system/{coredns} to {fields['Node'].split('/')[0]}" in described
    # as the seed writes it, "coredns-...": kubectl describes every pod whose name starts so
    both = run("kubectl -n kube-system describe pods coredns-", workdir).stdout
    assert sorted(re.findall(r"^Name:\s+(\S+)$", both, re.M)) == sorted(row[0] for row in rows)
    logs = run(f"kubectl -n kube-system logs {coredns}", workdir).stdout.splitlines()
    assert logs[0] == ".:53" and any(line.startswith("CoreDNS-") for line in logs), logs


def test_000_deleted_coredns_pods_are_recreated(workdir):
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods(workdir, "-n kube-system -l k8s-app=kube-dns")}
    deleted = run("kubectl delete pod -n kube-system -l k8s-app=kube-dns --wait=false", workdir)
    assert sorted(deleted.stdout.splitlines()) == sorted(f'pod "{name}" deleted' for name in before)
    after = wait_until("coredns Running again", lambda: (
        found if len(found := pods(workdir, "-n kube-system -l k8s-app=kube-dns")) == len(before)
        and all(running(p) for p in found) else None))
    assert all(p["metadata"]["uid"] not in before.values() for p in after)  # new pods
    # and what runs is what is served: no replacement left running unseen with an address
    wait_until("the pods running are the pods served", lambda: pod_namespaces() == {
        f"{p['metadata']['namespace']}.{p['metadata']['name']}" for p in pods(workdir, "--all-namespaces")})
    header, rows = table(run("kubectl get pods --namespace=kube-system -l k8s-app=kube-dns", workdir).stdout)
    assert all(row[1:3] == ["1/1", "Running"] for row in rows) and len(rows) == len(before)
    # and they answer: the pod's resolver (kube-dns, 10.96.0.10) resolves again
    resolved = wait_until("the new coredns pods answer", lambda: run(
        "kubectl exec net-demo -- getent hosts kubernetes.default.svc.cluster.local", workdir, check=False).stdout)
    assert resolved.split()[0] == "10.96.0.1"


# -- 000: "6. Choose an appropriate container network interface plugin" ------------------------------

def test_000_pods_of_all_namespaces_wide(workdir):
    header, rows = table(run("kubectl get pods --all-namespaces -o wide", workdir).stdout)
    assert header == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                      "READINESS", "GATES"]
    assert ["default", "net-demo", "2/2", "Running"] in [row[:4] for row in rows]
    assert [row[2:4] for row in rows if row[0] == "kube-system" and row[1].startswith("coredns-")] == \
        [["1/1", "Running"]] * 2
    assert all(re.fullmatch(r"10\.244\.\d+\.\d+", row[6]) and row[7].startswith("node") for row in rows)


# -- 001: the "Kubernetes Networking" slides ---------------------------------------------------------

def test_001_containers_of_a_pod_share_localhost(workdir):
    assert run("kubectl apply -f pod.yml", workdir).stdout.strip() == "pod/bb1 created"
    run("kubectl wait --for=condition=Ready pod/bb1 --timeout=90s", workdir)
    answer = run("kubectl exec -it bb1 -c bb1 -- curl localhost:80", workdir)
    # no terminal here: kubectl says so and runs the command without one
    assert answer.stderr.splitlines()[0] == "Unable to use a TTY - input is not a terminal or the right kind of file"
    assert "<title>Welcome to nginx!</title>" in answer.stdout


def test_001_services_and_the_ingress_apply(workdir):
    assert run("kubectl apply -f service-clusterip.yml", workdir).stdout.splitlines() == [
        "service/back-end created", "deployment.apps/myapp-back-end created"]
    assert run("kubectl apply -f service-loadbalancer.yml", workdir).stdout.splitlines() == [
        "service/myapp-service created"]
    applied = run("kubectl apply -f ingress.yml", workdir).stdout.splitlines()
    assert applied[0] == "ingress.networking.k8s.io/basic-ingress created"
    assert applied[2:] == ["service/my-service created", "deployment.apps/my-app created"]
    assert re.fullmatch(r"ingressclass\.networking\.k8s\.io/nginx (unchanged|configured)", applied[1]), applied[1]
    header, rows = table(run("kubectl get svc", workdir).stdout)
    services = {row[0]: row for row in rows}
    assert services["back-end"][1] == "ClusterIP" and services["back-end"][4] == "80/TCP"
    load_balancer = services["myapp-service"]
    assert load_balancer[1] == "LoadBalancer" and load_balancer[4] == "80:30008/TCP"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", load_balancer[3]), load_balancer  # its address from the pool
    assert services["my-service"][4] == "8080/TCP"


# -- 002: "Service Networking" and "Ingress" ---------------------------------------------------------

def test_002_cluster_info_dump_completes_with_the_pods(workdir):
    dump = run("kubectl cluster-info dump", workdir).stdout
    assert '"kind": "NodeList"' in dump and '"kind": "PodList"' in dump
    assert '"name": "net-demo"' in dump and re.search(r'"name": "coredns-[0-9a-z]+-[0-9a-z]+"', dump)
    assert "==== START logs for container coredns of pod kube-system/coredns-" in dump
    assert "cluster-ip-range" not in dump.lower()  # no kube-apiserver pod with its flags (docstring)


def test_002_create_ingress_makes_the_seed_s_ingress(workdir):
    format_line = run('kubectl create ingress  --rule="host/path=service:port"', workdir, check=False)
    assert format_line.returncode == 1
    assert format_line.stderr.splitlines()[0] == "error: exactly one NAME is required, got 0"
    created = run('kubectl create ingress ingress-test --rule="wear.my-online-store.com/wear*=wear-service:80"',
                  workdir)
    assert created.stdout.strip() == "ingress.networking.k8s.io/ingress-test created"
    made = json.loads(run("kubectl get ingress ingress-test -o json", workdir).stdout)
    seed = next(doc for doc in yaml.safe_load_all((SEEDS / "ingress-test.yaml").read_text())
                if doc["kind"] == "Ingress")
    assert made["spec"] == seed["spec"]  # the object examples/seeds/ingress-test.yaml says the command makes
    header, rows = table(run("kubectl get ingress", workdir).stdout)
    assert ["ingress-test", "<none>", "wear.my-online-store.com"] == rows[[r[0] for r in rows].index("ingress-test")][:3]


# -- 003, 004 ----------------------------------------------------------------------------------------

def test_003_apply_with_an_empty_file_name_is_kubectl_s_error(workdir):
    refused = run('kubectl apply -f ""', workdir, check=False)
    assert (refused.returncode, refused.stderr.strip()) == (1, "error: must specify one of -f and -k")


def test_004_get_ingress_lists_the_whale_ingress(workdir):
    header, rows = table(run("kubectl get ingress", workdir).stdout)
    assert header == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    whale = next(row for row in rows if row[0] == "whale-ingress")
    assert whale[1:3] == ["<none>", "a.whale.hey,b.whale.hey"] and whale[-2] == "80"
