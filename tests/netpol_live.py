"""The upstream e2e model as a real cluster, for the NetworkPolicy and AdminNetworkPolicy
tests on the kernel (tests/test_netpol_root.py, test_netpol_e2e_more_root.py, test_anp_root.py;
each module runs its own cluster, so they can run side by side).

tests/netpol_cases.py's namespaces x, y, z with pods a, b, c run as a `podnet up` cluster of
three nodes (so pairs are on one bridge and across the overlay); every container serves its
port with agnhost serve-hostname (TCP or UDP; the SCTP containers only declare their named
ports, since no process can open an SCTP socket here). Each scenario step is applied with
`podnet apply` / `podnet delete` (policies, and the model again when a step relabels a pod or a
namespace), then every pair is measured with real, new connections from inside the source
pod's namespace — all destinations of one source in parallel, each with a short time-out —
and compared with the step's truth table, as is `podnet matrix` on the same live cluster. TCP
and UDP by connecting; SCTP by injection: an SCTP INIT chunk sent on a raw socket from the
source pod, looked for on a raw socket in the destination pod (see SCTP_LISTEN). A dropped
attempt times out; "refused" would mean a server is missing, and fails the test whatever the
table says. The cluster is removed in a finally.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from tests import netpol_cases as cases
from tests.livecluster import leftovers, podnet


HALF = len(cases.SCENARIOS) // 2  # test_netpol_root runs the e2e scenarios before it, the other module the rest


def livecluster_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


TIMEOUT = 1.0  # seconds a blocked (dropped) connection attempt waits
RETRY_TIMEOUT = 3.0  # a pair that timed out is asked once more, with longer: a slow machine is not a drop
# A pair the step's table allows that still timed out is asked a third time with this: a UDP reply
# comes from a user-space server, which a loaded machine may not schedule for seconds. Only a
# real drop misses it, and the short time-outs stay for the pairs the table blocks.
ANSWER_TIMEOUT = 30.0

# Probes from inside one pod: argv[1] is [[ip, port, "tcp"|"udp"], ...]; prints a result each:
# "ok", "timeout" (dropped) or "refused" (nothing listens: a broken test, not a policy).
PROBE = r"""
import json, socket, sys, threading, time
targets, timeout = json.loads(sys.argv[1]), float(sys.argv[2])
results = [None] * len(targets)
def probe(i, ip, port, proto):
    try:
        if proto == "tcp":
            socket.create_connection((ip, port), timeout=timeout).close()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(timeout / 2)
            for _ in range(2):  # a second datagram, in case the first waited on ARP
                s.sendto(b"hostname", (ip, port))
                try:
                    s.recvfrom(512)
                    break
                except socket.timeout:
                    continue
            else:
                raise socket.timeout()
        results[i] = "ok"
    except ConnectionRefusedError:
        results[i] = "refused"
    except (socket.timeout, TimeoutError):
        results[i] = "timeout"
    except OSError as e:
        results[i] = "error:" + e.__class__.__name__
threads = [threading.Thread(target=probe, args=(i, *t)) for i, t in enumerate(targets)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(results))
"""


# SCTP: no process can open an SCTP socket here, but raw IP sockets of protocol 132 work. The
# destination pods listen on a raw socket and report which (source, port) INIT chunks arrived;
# the sources send an SCTP INIT (valid CRC32c, so conntrack tracks it as a new association) to
# every destination and port. Allowed pairs are those whose packet arrived.
# A listener's window (`Model.listening`): it hears until its stdin ends — the test closes it
# once every sender has returned — and then until nothing came for QUIET seconds, so a loaded
# machine's late packets are heard (a fixed window counted slow senders as drops).
LISTEN_UNTIL_TOLD = r"""
import select, socket, sys, time
QUIET = 0.5
def packets(s):
    told = None
    while told is None or time.monotonic() < told + QUIET:
        if told is None and select.select([sys.stdin], [], [], 0)[0]:
            sys.stdin.read()
            told = time.monotonic()
        try:
            data, address = s.recvfrom(2048)
        except socket.timeout:
            continue
        if told is not None:
            told = time.monotonic()  # still arriving: wait for quiet again
        yield data, address
"""

SCTP_LISTEN = LISTEN_UNTIL_TOLD + r"""
import json
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
s.settimeout(0.1)
print("ready", flush=True)
seen = set()
for data, (src, _) in packets(s):
    ihl = (data[0] & 15) * 4
    if len(data) >= ihl + 13 and data[ihl + 12] == 1:  # an INIT chunk
        seen.add((src, int.from_bytes(data[ihl + 2:ihl + 4], "big")))
print(json.dumps(sorted(seen)))
"""

SCTP_SEND = r"""
import json, os, socket, struct, sys, time
def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return ~crc & 0xFFFFFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
for _ in range(2):
    for ip, port in json.loads(sys.argv[1]):
        tag = int.from_bytes(os.urandom(4), "big") | 1
        init = struct.pack(">BBHIIHHI", 1, 0, 20, tag, 65535, 1, 1, tag)
        packet = struct.pack(">HHII", 40000 + port, port, 0, 0) + init
        packet = packet[:8] + struct.pack("<I", crc32c(packet)) + packet[12:]
        s.sendto(packet, (ip, 0))
    time.sleep(0.2)
"""


def served_model(pod_labels=None, namespace_labels=None) -> str:
    """The e2e model whose containers serve: serve-hostname on TCP or UDP, pause for SCTP."""
    text = cases.model_yaml(pod_labels, namespace_labels)

    def args(match: re.Match) -> str:
        port, proto = match.group(2), match.group(3)
        argv = "[pause]" if proto == "sctp" else f"[serve-hostname, --{proto}, --http=false, --port, '{port}']"
        return f"{match.group(1)}    args: {argv}\n"

    return re.sub(r"(  - name: cont-(\d+)-(tcp|udp|sctp)\n    image: [^\n]+\n)", args, text)


def policy_key(text: str) -> tuple[str, str, str]:
    """(kind, namespace, name); namespace "" for the cluster-scoped admin policies."""
    kind = re.search(r"^kind: (\S+)", text, re.M).group(1)
    ns = re.search(r"namespace: (\S+)", text)
    name = re.search(r"name: (\S+)", text).group(1)
    return kind, ns.group(1) if ns else "", name


class Model:
    """The running model cluster and what has been applied to it."""

    def __init__(self, name: str, tmp):
        self.name, self.tmp = name, tmp
        pods = json.loads(podnet("get", "pods", "-A", "-o", "json", "--name", name).stdout)["items"]
        self.ips = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["status"]["podIP"] for p in pods}
        self.nodes = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["spec"]["nodeName"] for p in pods}
        self.policies: dict[tuple[str, str, str], str] = {}
        self.labels = ("{}", "{}")

    def substitute(self, text: str) -> str:
        text = re.sub(r"CIDR4\(([\w-]+/[\w-]+)\)",
                      lambda m: str(ipaddress.ip_network(f"{self.ips[m.group(1)]}/4", strict=False)), text)
        return re.sub(r"IP\(([\w-]+/[\w-]+)\)", lambda m: self.ips[m.group(1)], text)

    def _file(self, text: str) -> str:
        path = self.tmp / f"{secrets.token_hex(4)}.yaml"
        path.write_text(text)
        return str(path)

    def enter(self, step: cases.Step) -> None:
        """Make the cluster's policies and labels those of `step`."""
        wanted = {policy_key(p): self.substitute(p) for p in step.policies}
        gone = [text for key, text in self.policies.items() if key not in wanted]
        if gone:
            podnet("delete", "-f", self._file("---\n".join(gone)), "--name", self.name)
        labels = (json.dumps(step.pod_labels, sort_keys=True), json.dumps(step.namespace_labels, sort_keys=True))
        if labels != self.labels:
            podnet("apply", "-f", self._file(served_model(step.pod_labels, step.namespace_labels)), "--name", self.name)
            self.labels = labels
        changed = [text for key, text in wanted.items() if self.policies.get(key) != text]
        if changed:
            podnet("apply", "-f", self._file("---\n".join(changed)), "--name", self.name)
        self.policies = wanted

    def measure(self, checks: list[tuple[int, str]]) -> dict[tuple[int, str], dict[tuple[str, str], str]]:
        """Every pair for every (port, protocol), from inside each source pod, in parallel; the
        pairs that timed out are asked again with a longer time-out (a drop times out twice)."""
        targets = [(self.ips[dst], port, proto.lower()) for port, proto in checks for dst in cases.PODS
                   if proto != "SCTP"]

        def first_then_again(src: str) -> list[str]:
            results = self.probe_from(src, targets, TIMEOUT)
            again = [i for i, r in enumerate(results) if r == "timeout"]
            if again:
                for i, r in zip(again, self.probe_from(src, [targets[i] for i in again], RETRY_TIMEOUT)):
                    results[i] = r
            return results

        with ThreadPoolExecutor(len(cases.PODS)) as pool:
            rows = dict(zip(cases.PODS, pool.map(first_then_again, cases.PODS))) if targets else {}
        found: dict[tuple[int, str], dict[tuple[str, str], str]] = {c: {} for c in checks}
        for src, results in rows.items():
            for (ip, port, proto), result in zip(targets, results):
                dst = next(d for d in cases.PODS if self.ips[d] == ip)
                found[(port, proto.upper())][(src, dst)] = result
        sctp_ports = [port for port, proto in checks if proto == "SCTP"]
        if sctp_ports:
            found.update(self.measure_sctp(sctp_ports))
        return found

    def probe_from(self, src: str, asked: list, timeout: float) -> list[str]:
        """PROBE from inside pod `src` to each [ip, port, "tcp"|"udp"] of `asked`."""
        out = podnet("exec", src, "--name", self.name, "--", "python3", "-c", PROBE, json.dumps(asked),
                     str(timeout), timeout=60 + 2 * timeout).stdout
        return json.loads(out)

    def confirm_timeouts(self, found: dict[tuple[int, str], dict[tuple[str, str], str]],
                         allowed: dict[tuple[int, str], set[tuple[str, str]]]) -> None:
        """Each pair of `allowed` that `found` says timed out is asked again with ANSWER_TIMEOUT,
        and `found` takes the new result: a late answer is not a drop."""
        again: dict[str, list[tuple[int, str, str]]] = {}
        for (port, proto), pairs in allowed.items():
            for src, dst in pairs:
                if proto != "SCTP" and found[(port, proto)].get((src, dst)) == "timeout":
                    again.setdefault(src, []).append((port, proto, dst))
        if not again:
            return

        def from_src(src: str) -> None:
            asked = [(self.ips[dst], port, proto.lower()) for port, proto, dst in again[src]]
            for (port, proto, dst), result in zip(again[src], self.probe_from(src, asked, ANSWER_TIMEOUT)):
                found[(port, proto)][(src, dst)] = result

        with ThreadPoolExecutor(len(again)) as pool:
            list(pool.map(from_src, again))

    @contextmanager
    def listening(self, pods, script: str, *args: str):
        """A listener (`python3 -c script args…`, built on LISTEN_UNTIL_TOLD) in each of `pods`:
        it prints "ready" once bound, hears until told (its stdin closed) and quiet, then prints
        what it heard as JSON. Yields a function to call once every sender has returned: it tells
        the listeners and collects their reports ({pod: heard}); no listener outlives the block."""
        listeners = {dst: subprocess.Popen(
            [sys.executable, "-m", "podnet", "exec", dst, "--name", self.name, "--", "python3", "-c", script, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=livecluster_env()) for dst in pods}

        def heard() -> dict:
            for proc in listeners.values():
                proc.stdin.close()  # told: each ends once quiet (LISTEN_UNTIL_TOLD)
            reports = {dst: proc.stdout.read() for dst, proc in listeners.items()}
            for proc in listeners.values():
                proc.wait(timeout=60)
            return {dst: json.loads(out) for dst, out in reports.items()}
        try:
            for proc in listeners.values():
                assert proc.stdout.readline().strip() == "ready"
            yield heard
        finally:
            for proc in listeners.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    def measure_sctp(self, ports: list[int]) -> dict[tuple[int, str], dict[tuple[str, str], str]]:
        """Raw SCTP INIT packets from every pod to every pod and port, seen (or not) on the far side."""
        with self.listening(cases.PODS, SCTP_LISTEN) as heard:
            targets = json.dumps([(self.ips[dst], port) for port in ports for dst in cases.PODS])
            with ThreadPoolExecutor(len(cases.PODS)) as pool:
                list(pool.map(lambda src: podnet("exec", src, "--name", self.name, "--", "python3", "-c", SCTP_SEND,
                                                 targets, timeout=60), cases.PODS))
            arrived = {dst: {tuple(x) for x in seen} for dst, seen in heard().items()}
        return {(port, "SCTP"): {(src, dst): "ok" if (self.ips[src], port) in arrived[dst] else "timeout"
                                 for src in cases.PODS for dst in cases.PODS} for port in ports}


def running_model(tmp_path_factory):
    """The model as a running 3-node cluster, every server answering; removed afterwards
    (a generator for a module-scoped fixture: each test module runs its own cluster)."""
    tmp = tmp_path_factory.mktemp("netpol")
    name = f"np{secrets.token_hex(3)}"
    (tmp / "model.yaml").write_text(served_model())
    (tmp / "cluster.yaml").write_text(
        f"kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: {name}\nnodes: 3\n"
        "networking: {overlay: vxlan, proxyMode: nftables}\n")
    up = False
    try:
        podnet("up", "-f", str(tmp / "model.yaml"), "--config", str(tmp / "cluster.yaml"), timeout=180)
        up = True
        m = Model(name, tmp)
        placed = [m.nodes[p] for p in cases.PODS]
        assert len(set(placed)) > 1 and len(set(placed)) < len(placed)  # pairs on one bridge and across nodes
        # every server listens before any scenario counts on it
        deadline = time.monotonic() + 180  # a wait, not a measure: generous for a loaded machine
        while True:
            found = m.measure([(80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP")])
            if all(r == "ok" for table in found.values() for r in table.values()):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the model's servers do not all answer: {found}")
            time.sleep(0.5)
        yield m
    finally:
        if up or leftovers(name):
            podnet("down", "--name", name, check=False)
        assert leftovers(name) == [], f"left behind: {leftovers(name)}"


def check_step(model: Model, source, si: int, ti: int) -> None:
    """One step of `source`'s scenarios against its truth table, measured in the kernel and asked
    of the live simulator (`podnet matrix`), then `podnet probe --compare` on the step's first
    port and protocol, which must find no disagreement."""
    scenario = source.SCENARIOS[si]
    step = scenario.steps[ti]
    model.enter(step)  # the whole state of the step: earlier steps and scenarios leave nothing behind
    measured = model.measure([(c.port, c.protocol) for c in step.checks])
    model.confirm_timeouts(measured, {(c.port, c.protocol): {pair for pair, ok in cases.grid(c.expected).items() if ok}
                                      for c in step.checks})
    problems = []
    for check in step.checks:
        expected = cases.grid(check.expected)
        results = measured[(check.port, check.protocol)]
        actual = {pair: results[pair] == "ok" for pair in expected}
        # the simulator on the same live state (DESIGN: the two data planes must agree)
        live = json.loads(podnet("matrix", "-p", str(check.port), "--protocol", check.protocol, "-n", "x,y,z",
                                 "-o", "json", "--name", model.name).stdout)["allowed"]
        sim = {(s, d): live[s][d] for s, d in expected}
        if sim != expected:
            problems.append(f"{check.protocol}/{check.port}: the live simulator disagrees with the table:\n"
                            f"{cases.render(sim)}")
        odd = {pair: r for pair, r in results.items() if r not in ("ok", "timeout")}
        if actual != expected or odd:
            wrong = [f"  {s} -> {d}: expected {'allowed' if expected[(s, d)] else 'blocked'}, kernel {results[(s, d)]}"
                     for s, d in expected if actual[(s, d)] != expected[(s, d)] or (s, d) in odd]
            problems.append(f"{check.protocol}/{check.port}:\nexpected:\n{cases.render(expected)}\n"
                            f"kernel:\n{cases.render(actual)}\n" + "\n".join(wrong))
    # and `podnet probe --compare`, the user's own check, on the step's first TCP or UDP port (SCTP
    # sockets are missing in this kernel: probe cannot connect over SCTP)
    first = next((c for c in step.checks if c.protocol != "SCTP"), None)
    if first is not None:
        def compare(*timing: str):
            return podnet("probe", "-n", "x,y,z", "-p", str(first.port), "--protocol", first.protocol,
                          "-o", "json", "--compare", "--name", model.name, *timing, check=False, timeout=300)

        compared = compare()  # probe's own time-outs (1 s, 2 attempts): quick where the table blocks
        if compared.returncode == 1:
            # a disagreement: asked again with time for a late UDP answer, which only a real drop misses
            compared = compare("--timeout", str(ANSWER_TIMEOUT), "--attempts", "1")
        if compared.returncode != 0:
            problems.append(f"probe --compare {first.protocol}/{first.port} exit {compared.returncode}:\n"
                            f"{compared.stdout[-3000:]}{compared.stderr[-2000:]}")
    assert not problems, f"{scenario.title} / {step.title}\n" + "\n".join(problems)
