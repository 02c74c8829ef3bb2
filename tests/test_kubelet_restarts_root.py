"""kubelet's restarts on a real cluster (root only): a node reboot and a killed CoreDNS, under load.

`podnet node restart node2` on a Deployment spread over two nodes, while a client on node1
requests through the Service: afterwards every pod has its name, node and address, its
containers' restartCount is one more (node1's pods untouched), every pod is Ready again, node2's
kube-proxy and NetworkPolicy tables are new ones (the reboot flushed them, the supervisor made
them again) and requests reach node2's pods again, with no failure once they are Ready.
Requests that went to node2's pods while its power was off may fail, as they do in Kubernetes
(where the endpoints stay until the node is found NotReady, 40 s later): they are printed,
not asserted.

A CoreDNS container SIGKILLed twice while a client in a pod resolves through kube-dns: see the
second test's docstring. Waits have generous deadlines and nothing asserts a duration; the time
from `podnet node restart` to every pod of node2 Ready again is printed (run with -s). Each
test's cluster has a unique name and is removed in a finally, leaving no namespace behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time

import pytest

from podnet.host.control import send
from podnet.host.layout import ClusterLayout
from tests.livecluster import WEB_SERVICE, netexec_deployment, pause_pod, podnet, up_cluster
from tests.test_termination_root import Client, wait_for

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

APP = netexec_deployment(4) + WEB_SERVICE + pause_pod("client", "node1")


@pytest.fixture
def cluster(tmp_path):
    name = f"kr{secrets.token_hex(3)}"
    with up_cluster(tmp_path, name, APP):
        wait_for(lambda: all(ready(p) for p in live_pods(name).values()), 180, "every pod Ready")
        yield name, tmp_path


def objects(name: str) -> list[dict]:
    """The cluster's objects straight from the supervisor (a look costs milliseconds, not a `podnet get`)."""
    return send(ClusterLayout(name).socket_path, {"op": "objects", "counters": False}, timeout=30)["items"]


def live_pods(name: str, items: list[dict] | None = None) -> dict[str, dict]:
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p
            for p in (items if items is not None else objects(name)) if p["kind"] == "Pod"}


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def restart_counts(pod: dict) -> list[int]:
    return [c.get("restartCount", 0) for c in pod["status"].get("containerStatuses") or []]


def node_tables(netns: str) -> dict[str, int]:
    """The node's nftables tables and their handles (a table made again gets a new handle)."""
    listing = subprocess.run(["ip", "netns", "exec", netns, "nft", "-a", "list", "ruleset"],
                             capture_output=True, text=True, check=True).stdout
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^table (\S+ \S+) \{ # handle (\d+)$", listing, re.M)}


def test_a_rebooted_node_brings_its_pods_back_with_their_names_and_addresses(cluster):
    name, tmp = cluster
    before = live_pods(name)
    on_node2 = sorted(ref for ref, p in before.items() if p["spec"].get("nodeName") == "node2")
    web_on_node2 = {ref.split("/")[1] for ref in on_node2 if ref.startswith("default/web-")}
    assert web_on_node2 and any(p["spec"].get("nodeName") == "node1" and ref.startswith("default/web-")
                                for ref, p in before.items())  # the Deployment is spread over both nodes
    netns = ClusterLayout(name).node_netns("node2")
    tables = node_tables(netns)
    assert {"ip kube-proxy", "inet podnet-netpol", "bridge podnet-netpol"} <= tables.keys()
    cluster_ip = next(s for s in objects(name) if s["kind"] == "Service" and s["metadata"]["name"] == "web"
                      and s["metadata"]["namespace"] == "default")["spec"]["clusterIP"]
    stop = tmp / "stop"
    client = Client(name, "default/client", cluster_ip, 80, "web", str(stop))
    mark = None
    try:
        wait_for(lambda: client.successes() >= 10 or client.errors(), 120, "the client answered")
        assert client.errors() == [], client.errors()[:10]
        during = len(client.answers)
        started = time.monotonic()
        said = podnet("node", "restart", "node2", "--name", name).stdout
        answered = time.monotonic() - started

        def back() -> dict[str, dict] | None:
            now = live_pods(name)
            done = all(ready(now[ref]) and restart_counts(now[ref]) == [n + 1 for n in restart_counts(before[ref])]
                       and all("running" in c.get("state", {}) for c in now[ref]["status"]["containerStatuses"])
                       for ref in on_node2)
            return now if done else None

        after = wait_for(back, 120, "node2's pods Ready again with one more restart")
        print(f"\npodnet node restart node2 ({len(on_node2)} pods): command {answered:.2f}s, "
              f"every pod of node2 Ready again {time.monotonic() - started:.2f}s after the command began")
        assert all(ref in said for ref in on_node2), said
        # the same pods, where they were, with the addresses they had
        assert after.keys() == before.keys()
        for ref, pod in before.items():
            assert (after[ref]["metadata"]["uid"], after[ref]["spec"].get("nodeName"), after[ref]["status"].get("podIP")) \
                == (pod["metadata"]["uid"], pod["spec"].get("nodeName"), pod["status"].get("podIP")), ref
            if ref not in on_node2:
                assert restart_counts(after[ref]) == restart_counts(pod), ref  # node1's pods untouched
        # node2's rules were lost with the reboot and made again: the same tables, new ones
        renewed = node_tables(netns)
        assert renewed.keys() == tables.keys()
        for table in ("ip kube-proxy", "inet podnet-netpol", "bridge podnet-netpol"):
            assert renewed[table] != tables[table], table
        # requests through the Service reach node2's pods again, and none fails now
        mark = len(client.answers)
        wait_for(lambda: web_on_node2 <= client.served_by(mark)
                 or any(not a.startswith("ok ") for a in client.answers[mark:]), 120,
                 "requests answered by node2's pods again")
        events = json.loads(podnet("get", "events", "-A", "-o", "json", "--name", name).stdout)["items"]
        reasons = {(e["involvedObject"]["kind"], e["involvedObject"]["name"], e["reason"]) for e in events}
        assert ("Node", "node2", "Rebooted") in reasons and ("Node", "node2", "Starting") in reasons
        assert {ref.split("/")[1] for ref in on_node2} <= {n for kind, n, reason in reasons if reason == "SandboxChanged"}
    finally:
        stop.write_text("")
        client.finish()
    lost = [a for a in client.answers[during:mark] if not a.startswith("ok ")]
    print(f"requests failed while node2 was down (its pods' endpoints not yet withdrawn): {len(lost)}")
    assert mark is not None and [a for a in client.answers[mark:] if not a.startswith("ok ")] == []
    assert client.successes(mark) > 0


# A resolver's lookups of one name through kube-dns, line by line, until the stop file exists.
# Each attempt is one A query on a fresh UDP socket — a new source port, so kube-proxy picks a
# CoreDNS anew — as glibc's resolver does after a refusal; an attempt refused (ICMP port
# unreachable: nothing listens at that pod any more) or unanswered within ATTEMPT_TIMEOUT is
# followed by the next, until the lookup is answered or LOOKUP_BUDGET seconds have passed.
# Lines: "attempt T KIND" for each failed attempt, "lookup T0 T1 ok|failed N" for each lookup
# (T: time.monotonic(), the same clock as the test's).
DNS_CLIENT = r"""
import os, random, socket, struct, sys, time
server, name, stop = sys.argv[1], sys.argv[2], sys.argv[3]
# ATTEMPT_TIMEOUT: CoreDNS is a Python server, which a loaded machine may not run for a second or
# more, and an attempt timed out before the first kill fails the test; a refusal is still retried
# at once. LOOKUP_BUDGET: a lookup must be answered, several such attempts included.
ATTEMPT_TIMEOUT, LOOKUP_BUDGET = 5.0, 60.0
question = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0" + struct.pack(">HH", 1, 1)

def attempt():
    qid = random.randrange(65536)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(ATTEMPT_TIMEOUT)
    try:
        s.connect((server, 53))
        s.send(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question)
        while True:
            data = s.recv(4096)
            if struct.unpack(">H", data[:2])[0] == qid:
                return "ok" if data[3] & 15 == 0 and struct.unpack(">H", data[6:8])[0] > 0 else f"rcode{data[3] & 15}"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as exc:
        return f"error:{exc.errno}"
    finally:
        s.close()

while not os.path.exists(stop):
    began, tries, outcome = time.monotonic(), 0, None
    while outcome != "ok" and time.monotonic() - began < LOOKUP_BUDGET:
        tries += 1
        outcome = attempt()
        if outcome != "ok":
            print(f"attempt {time.monotonic():.3f} {outcome}", flush=True)
            time.sleep(0.02)
    print(f"lookup {began:.3f} {time.monotonic():.3f} {'ok' if outcome == 'ok' else 'failed'} {tries}", flush=True)
    time.sleep(0.01)
"""


class DnsClient:
    """DNS_CLIENT running in a pod, its lines collected as they come."""

    def __init__(self, cluster: str, where: str, server: str, name: str, stop: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "podnet", "exec", where, "--name", cluster, "--", "python3", "-c", DNS_CLIENT,
             server, name, stop], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.strip())

    def lookups(self) -> list[tuple[float, float, str]]:
        return [(float(w[1]), float(w[2]), w[3]) for w in (line.split() for line in list(self.lines)) if w[0] == "lookup"]

    def failed_attempts(self) -> list[tuple[float, str]]:
        return [(float(w[1]), w[2]) for w in (line.split() for line in list(self.lines)) if w[0] == "attempt"]

    def answered_since(self, since: float) -> int:
        return sum(1 for began, _, outcome in self.lookups() if began >= since and outcome == "ok")

    def finish(self) -> None:
        self.process.wait(timeout=120)
        self.reader.join(timeout=30)


class KubeDnsWatch:
    """Looks at the cluster every 0.05 s: kube-dns's ready endpoint addresses and the victim's
    container state, each look stamped with time.monotonic()."""

    def __init__(self, cluster: str, victim: str):
        self.cluster, self.victim = cluster, victim
        self.seen: list[tuple[float, frozenset[str], str]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(0.05):
            try:
                items = objects(self.cluster)
            except Exception:
                continue
            addresses = frozenset(
                address for s in items if s["kind"] == "EndpointSlice" and s["metadata"]["namespace"] == "kube-system"
                and s["metadata"].get("labels", {}).get("kubernetes.io/service-name") == "kube-dns"
                for e in s.get("endpoints") or [] if e.get("conditions", {}).get("ready") for address in e["addresses"])
            pod = live_pods(self.cluster, items).get(f"kube-system/{self.victim}")
            state = next(iter((pod or {}).get("status", {}).get("containerStatuses") or [{}])).get("state", {})
            reason = state["waiting"].get("reason", "waiting") if "waiting" in state else next(iter(state), "")
            self.seen.append((time.monotonic(), addresses, reason))

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)


def kill_dns_server(name: str, pod: str) -> float:
    """SIGKILL the CoreDNS server process of kube-system/`pod` (its container); the time it was sent."""
    netns = ClusterLayout(name).pod_netns("kube-system", pod)
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=True).stdout.split()
    servers = [int(p) for p in pids if b"podnet.dns" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert servers, pids
    killed = time.monotonic()
    for pid in servers:
        os.kill(pid, signal.SIGKILL)
    return killed


def test_a_killed_coredns_restarts_while_the_other_answers_every_lookup(cluster):
    """A CoreDNS container is SIGKILLed, twice, while a client in a pod resolves a name through
    kube-dns (10.96.0.10). The first time kubelet starts it again at once; the second time it
    waits in CrashLoopBackOff (10 s: its back-off window after one restart). Each time kube-dns's
    ready endpoints drop the killed pod — kubelet sees its container gone, the EndpointSlice
    follows, kube-proxy stops sending it queries — and take it back once its readiness probe
    passes; meanwhile the other CoreDNS answers.

    What can fail, and why it is right that it does: between the SIGKILL and kube-proxy's sync
    without the dead endpoint, a query kube-proxy sends to the killed pod finds nothing there
    (ICMP port unreachable: refused), and one in flight at the kill is lost (no answer). Real
    Kubernetes does the same — and for longer (kubelet's PLEG relists every second). It is the
    resolver that hides it: glibc retries a refused query at once on a new socket and an
    unanswered one after its timeout, and kube-proxy picks a CoreDNS anew for each new socket
    (it also clears the UDP conntrack entries to an endpoint that went, so a retry on the old
    flow is not black-holed). So the client retries the same way, and what must hold is: no
    lookup fails; failed attempts (refused or unanswered, never a wrong answer) happen only
    after a kill; lookups are answered while the killed pod is out of kube-dns's endpoints."""
    name, tmp = cluster
    coredns = {ref.split("/")[1]: p for ref, p in live_pods(name).items() if ref.startswith("kube-system/coredns-")}
    assert len(coredns) == 2
    victim = sorted(coredns)[0]
    victim_ip = coredns[victim]["status"]["podIP"]
    other_ip = next(p["status"]["podIP"] for pod, p in coredns.items() if pod != victim)
    stop = tmp / "stop"
    dns = DnsClient(name, "default/client", "10.96.0.10", "kube-dns.kube-system.svc.cluster.local.", str(stop))
    watch = KubeDnsWatch(name, victim)

    def victim_back(restarts: int) -> bool:
        pod = live_pods(name)[f"kube-system/{victim}"]
        return ready(pod) and restart_counts(pod) == [restarts] and pod["status"]["podIP"] == victim_ip

    try:
        wait_for(lambda: dns.answered_since(0) >= 10 or dns.failed_attempts(), 120, "lookups answered")
        assert dns.failed_attempts() == [], dns.failed_attempts()
        first_kill = kill_dns_server(name, victim)
        wait_for(lambda: victim_back(1), 120, "the killed CoreDNS restarted at once and Ready")
        wait_for(lambda: victim_ip in watch.seen[-1][1], 120, "its endpoint back in kube-dns")
        second_kill = kill_dns_server(name, victim)
        wait_for(lambda: any(t > second_kill and reason == "CrashLoopBackOff" for t, _, reason in watch.seen), 120,
                 "the killed CoreDNS waiting in CrashLoopBackOff")
        wait_for(lambda: victim_back(2), 120, "the CoreDNS restarted after its back-off and Ready")
        wait_for(lambda: victim_ip in watch.seen[-1][1], 120, "its endpoint back in kube-dns")
        mark = time.monotonic()
        wait_for(lambda: dns.answered_since(mark) >= 5, 120, "lookups after it came back")
    finally:
        watch.stop()
        stop.write_text("")
        dns.finish()
    lookups, failed = dns.lookups(), dns.failed_attempts()
    print(f"\n{len(lookups)} lookups; failed attempts, each followed by a retry: {len(failed)} "
          f"({', '.join(sorted({kind for _, kind in failed})) or 'none'})")
    assert lookups and [lookup for lookup in lookups if lookup[2] != "ok"] == []
    assert all(t >= first_kill and kind in ("refused", "timeout") for t, kind in failed), failed
    # the endpoint set followed: after each kill, a look without the killed pod, then with it again
    for kill, until in ((first_kill, second_kill), (second_kill, float("inf"))):
        after = [(t, addresses) for t, addresses, _ in watch.seen if kill < t < until]
        gone = next((i for i, (_, addresses) in enumerate(after) if victim_ip not in addresses), None)
        if kill == first_kill and gone is None:
            print("the first kill's endpoint change came and went between two looks")  # it is short: 0.1-1 s
            continue
        assert gone is not None, "kube-dns kept the killed pod's endpoint"
        assert any(victim_ip in addresses for _, addresses in after[gone:]), "the endpoint never came back"
        assert all(other_ip in addresses for _, addresses in after), "the other CoreDNS left kube-dns"
    # while the killed pod waited in CrashLoopBackOff, out of kube-dns, the other answered
    backing_off = [t for t, addresses, reason in watch.seen
                   if t > second_kill and reason == "CrashLoopBackOff" and victim_ip not in addresses]
    assert backing_off
    answered = [lookup for lookup in lookups if backing_off[0] <= lookup[0] and lookup[1] <= backing_off[-1]]
    print(f"lookups answered while the killed CoreDNS was in CrashLoopBackOff: {len(answered)}")
    assert answered
    slices = json.loads(podnet("get", "endpointslices", "-n", "kube-system", "-o", "json", "--name", name).stdout)
    ready_now = {a for s in slices["items"] for e in s.get("endpoints") or [] if e["conditions"].get("ready")
                 for a in e["addresses"]}
    assert {victim_ip, other_ip} <= ready_now
