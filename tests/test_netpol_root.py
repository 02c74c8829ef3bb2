"""NetworkPolicy in the kernel, end to end (root only): the first half of the upstream e2e
scenarios on the model as a real cluster (tests/netpol_live.py: how the model runs and how a
step is measured), then what the truth tables do not show — Services, DNS, the own node,
counters, established flows, forged sources, IPv6 link-local and VLAN tags. The other half of
the scenarios is in test_netpol_e2e_more_root.py, the AdminNetworkPolicy ones in
test_anp_root.py, each with a cluster of its own so they run side by side.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import time

import pytest

from podnet.linux.netpol import parse_counters
from tests import netpol_cases as cases
from tests.livecluster import podnet
from tests.netpol_live import (
    HALF,
    LISTEN_UNTIL_TOLD,
    PROBE,
    RETRY_TIMEOUT,
    TIMEOUT,
    Model,
    check_step,
    running_model,
)

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    yield from running_model(tmp_path_factory)


@pytest.mark.parametrize("si,ti", [pytest.param(si, ti, id=f"{s.id}[{ti}]")
                                   for si, s in enumerate(cases.SCENARIOS[:HALF]) for ti, _ in enumerate(s.steps)])
def test_e2e_scenario_on_the_kernel(model, si, ti):
    check_step(model, cases, si, ti)


# -- beyond the truth tables: Services, DNS, counters ----------------------------------------------

SERVICE_B = """
apiVersion: v1
kind: Service
metadata: {name: s-x-b, namespace: x}
spec:
  selector: {pod: b}
  ports: [{name: tcp, port: 8080, targetPort: 80}]
"""

ONLY_XA_TO_XB = cases.netpol("x", "only-x-a-to-x-b", """
    podSelector: {matchLabels: {pod: b}}
    policyTypes: [Ingress]
    ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}]}]
""")

DENY_EGRESS_XA = cases.netpol("x", "deny-egress-x-a", """
    podSelector: {matchLabels: {pod: a}}
    policyTypes: [Egress]
""")

DENY_EGRESS_XB = cases.netpol("x", "deny-egress-x-b", """
    podSelector: {matchLabels: {pod: b}}
    policyTypes: [Egress]
""")

DNS_EGRESS_XA = cases.netpol("x", "dns-egress-x-a", """
    podSelector: {matchLabels: {pod: a}}
    policyTypes: [Egress]
    egress:
    - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}]
      ports: [{protocol: UDP, port: 53}, {protocol: TCP, port: 53}]
""")


def probe_one(model: Model, src: str, ip: str, port: int, proto: str = "tcp") -> str:
    """One attempt, and one more with a longer time-out if it timed out (as Model.measure)."""
    for timeout in (TIMEOUT, RETRY_TIMEOUT):
        out = podnet("exec", src, "--name", model.name, "--", "python3", "-c", PROBE, json.dumps([[ip, port, proto]]),
                     str(timeout), timeout=60).stdout
        result = json.loads(out)[0]
        if result != "timeout":
            break
    return result


def test_a_service_is_judged_after_dnat_on_its_backend_pods_ingress_rule_40(model):
    podnet("apply", "-f", model._file(SERVICE_B), "--name", model.name)
    try:
        svc = json.loads(podnet("get", "svc", "s-x-b", "-n", "x", "-o", "json", "--name", model.name).stdout)
        vip = svc["spec"]["clusterIP"]
        model.enter(cases.Step("x/b admits x/a only and sends nothing", [ONLY_XA_TO_XB, DENY_EGRESS_XB], []))
        results = {src: probe_one(model, src, vip, 8080) for src in ("x/a", "x/b", "x/c", "y/a")}
        # x/b reaches itself through its Service whatever its policies say (rule 33, hairpin)
        assert results == {"x/a": "ok", "x/b": "ok", "x/c": "timeout", "y/a": "timeout"}
    finally:
        podnet("delete", "-f", model._file(SERVICE_B), "--name", model.name)


def test_the_dns_query_passes_through_the_pods_egress_policy_as_in_trace(model):
    lookup = ["python3", "-c", "import socket; socket.setdefaulttimeout(2); "
              "print(socket.gethostbyname('kube-dns.kube-system.svc.cluster.local'))"]
    model.enter(cases.Step("x/a may send nothing", [DENY_EGRESS_XA], []))
    deadline = time.monotonic() + 180  # coredns is ready after its first readiness probe (period 10 s)
    while podnet("exec", "x/b", "--name", model.name, "--", *lookup, check=False, timeout=60).returncode != 0:
        assert time.monotonic() < deadline, "the cluster DNS does not answer an unisolated pod"
        time.sleep(1)
    assert podnet("exec", "x/a", "--name", model.name, "--", *lookup, check=False, timeout=60).returncode != 0
    trace = json.loads(podnet("trace", "x/a", "kube-dns.kube-system", "-p", "53", "--protocol", "UDP", "-o", "json",
                              "--name", model.name, check=False).stdout)
    assert trace["verdict"] == "dropped"
    model.enter(cases.Step("x/a may send DNS to kube-system", [DENY_EGRESS_XA, DNS_EGRESS_XA], []))
    assert podnet("exec", "x/a", "--name", model.name, "--", *lookup, timeout=60).stdout.strip() == "10.96.0.10"


def test_the_own_node_reaches_an_isolated_pod_as_kubelets_probes_do_rule_34(model):
    deny = cases.netpol("kube-system", "deny-all", "podSelector: {}\npolicyTypes: [Ingress, Egress]\n")
    podnet("apply", "-f", model._file(deny), "--name", model.name)
    try:
        pods = json.loads(podnet("get", "pods", "-n", "kube-system", "-o", "json", "--name", model.name).stdout)["items"]
        dns = next(p for p in pods if p["metadata"]["name"].startswith("coredns"))
        ip, node = dns["status"]["podIP"], dns["spec"]["nodeName"]
        other = next(n for n in ("node1", "node2", "node3") if n != node)
        # coredns' readiness port, as the kubelet probes it: from its own node yes, from others not
        results = {where: probe_one(model, where, ip, 8181) for where in (f"node/{node}", f"node/{other}", "x/a")}
        assert results == {f"node/{node}": "ok", f"node/{other}": "timeout", "x/a": "timeout"}
    finally:
        podnet("delete", "-f", model._file(deny), "--name", model.name)


def test_drops_are_counted_per_policy_on_the_destinations_node(model):
    model.enter(cases.Step("deny ingress in x", [cases.DENY_INGRESS], []))
    pods = json.loads(podnet("get", "pods", "-n", "x", "-o", "json", "--name", model.name).stdout)["items"]
    node = next(p["spec"]["nodeName"] for p in pods if p["metadata"]["name"] == "a")

    def dropped() -> int:
        listing = podnet("exec", f"node/{node}", "--name", model.name, "--", "nft", "list", "counters", "table",
                         "inet", "podnet-netpol").stdout
        return parse_counters(listing).get("drops/ingress/x/deny-ingress", 0)

    before = dropped()
    assert probe_one(model, "y/a", model.ips["x/a"], 80) == "timeout"
    assert dropped() > before
    described = podnet("describe", "netpol", "deny-ingress", "-n", "x", "--name", model.name).stdout
    assert re.search(r"podnet.dev/dropped-packets=ingress [1-9]\d*", described), described


# A UDP flow from a fixed source port: its conntrack entry is the "established connection".
UDP_FROM_PORT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", int(sys.argv[3])))
s.settimeout(float(sys.argv[4]))
try:
    s.sendto(b"hostname", (sys.argv[1], int(sys.argv[2])))
    s.recvfrom(512)
    print("ok")
except (socket.timeout, TimeoutError):
    print("timeout")
"""


def test_an_established_flow_survives_a_policy_change_new_ones_do_not_rule_38(model):
    """As Calico: only a connection's first packet is judged, so a flow allowed before a deny
    lives on (its conntrack entry), while a new one is dropped (README, NetworkPolicy)."""
    model.enter(cases.Step("nothing", [], []))

    def udp(source_port: int) -> str:
        return podnet("exec", "y/a", "--name", model.name, "--", "python3", "-c", UDP_FROM_PORT, model.ips["x/a"],
                      "80", str(source_port), str(RETRY_TIMEOUT), timeout=60).stdout.strip()

    assert udp(34567) == "ok"
    model.enter(cases.Step("deny ingress in x", [cases.DENY_INGRESS], []))
    assert udp(34568) == "timeout"  # a new flow
    assert udp(34567) == "ok"  # the established one


# -- forged sources: a pod's packets must carry its own address ------------------------------------

# Listens in a destination pod on a raw UDP socket (argv[3]: "4" or "6") for the datagrams of
# one run (payload starts with argv[1]); prints the (source, label) pairs that arrived.
SPOOF_LISTEN = LISTEN_UNTIL_TOLD + r"""
import json
v6 = sys.argv[2] == "6"
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.settimeout(0.1)
print("ready", flush=True)
token, seen = sys.argv[1].encode(), set()
for data, address in packets(s):
    src = address[0].split("%")[0]
    payload = data[8:] if v6 else data[(data[0] & 15) * 4 + 8:]  # IPv6 raw sockets get no IP header
    if payload.startswith(token):
        seen.add((src, payload[len(token):].decode()))
print(json.dumps(sorted(seen)))
"""

# Sends, from inside a pod, UDP datagrams written whole (IP_HDRINCL) with any source address:
# argv[1] is [[source, destination, label], ...]; the payload is argv[2] + label.
SPOOF_SEND = r"""
import json, socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(3):
    for src, dst, label in json.loads(sys.argv[1]):
        payload = (sys.argv[2] + label).encode()
        udp = struct.pack(">HHHH", 40999, 9999, 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        s.sendto(ip + udp, (dst, 0))
    time.sleep(0.2)
"""

DENY_EGRESS_XC = cases.netpol("x", "deny-egress-x-c", """
    podSelector: {matchLabels: {pod: c}}
    policyTypes: [Egress]
""")

Y_C_ADMITS_X_A = cases.netpol("y", "y-c-admits-x-a", """
    podSelector: {matchLabels: {pod: c}}
    policyTypes: [Ingress]
    ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}},
                       podSelector: {matchLabels: {pod: a}}}]}]
""")


def test_a_forged_source_address_is_dropped_at_the_bridge_port(model):
    """x/c may send nothing (egress deny); x/b and y/c admit only x/a. x/c forges, on a raw
    socket, its node's cni0 address (the node is always admitted, rule 34) and x/a's (admitted):
    dropped at x/c's bridge port, to y/c on the same bridge and to x/b across the overlay. The
    same datagrams with the sender's real source obey the policies: x/a's arrive, x/c's not."""
    model.enter(cases.Step("x/c sends nothing; x/b and y/c admit x/a only",
                           [DENY_EGRESS_XC, ONLY_XA_TO_XB, Y_C_ADMITS_X_A], []))
    spoofer, allowed, targets = "x/c", "x/a", ("x/b", "y/c")
    assert model.nodes["y/c"] == model.nodes[spoofer] != model.nodes["x/b"]  # one bridge, and across nodes
    gateway = str(ipaddress.ip_network(f"{model.ips[spoofer]}/24", strict=False).network_address + 1)
    node = model.nodes[spoofer]
    assert podnet("exec", f"node/{node}", "--name", model.name, "--", "ip", "-4", "-o", "addr", "show", "cni0"
                  ).stdout.split()[3] == f"{gateway}/24"

    def spoofed() -> int:
        listing = podnet("exec", f"node/{node}", "--name", model.name, "--", "nft", "list", "counters", "table",
                         "bridge", "podnet-netpol", check=False).stdout  # none: no table
        return parse_counters(listing).get("drops/spoofed", 0)

    before = spoofed()
    token = f"podnet-spoof-{secrets.token_hex(4)}:"
    with model.listening(targets, SPOOF_LISTEN, token, "4") as heard:
        sends = {
            spoofer: [[source, model.ips[dst], f"{label}>{dst}"] for dst in targets
                      for source, label in ((gateway, "cni0"), (model.ips[allowed], "x/a"),
                                            (model.ips[spoofer], "real"))],
            allowed: [[model.ips[allowed], model.ips[dst], f"control>{dst}"] for dst in targets],
        }
        for src, packets in sends.items():
            podnet("exec", src, "--name", model.name, "--", "python3", "-c", SPOOF_SEND, json.dumps(packets), token,
                   timeout=60)
        arrived = {dst: {tuple(x) for x in seen} for dst, seen in heard().items()}
    labels = {dst: sorted(label for _, label in seen) for dst, seen in arrived.items()}
    # only x/a's own datagrams: nothing forged, and x/c's real ones obey its egress policy
    assert labels == {dst: [f"control>{dst}"] for dst in targets}, labels
    assert all(src == model.ips[allowed] for seen in arrived.values() for src, _ in seen)
    assert spoofed() >= before + 2 * len(targets)  # the forged ones, counted at the bridge port


# Sends UDP datagrams over IPv6 link-local from inside a pod: argv[1] is [[address, label], ...].
LINK_LOCAL_SEND = r"""
import json, socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(3):
    for address, label in json.loads(sys.argv[1]):
        s.sendto((sys.argv[2] + label).encode(), (address, 9999, 0, socket.if_nametoindex("eth0")))
    time.sleep(0.2)
"""


def test_ipv6_link_local_does_not_go_around_the_ipv4_policies(model):
    """Pods have IPv6 link-local addresses, and podnet's chains judge IPv4 only: y/c, which
    admits x/a only, must not receive z/c's datagrams to its fe80:: address on their bridge."""
    model.enter(cases.Step("y/c admits x/a only", [Y_C_ADMITS_X_A], []))
    assert model.nodes["z/c"] == model.nodes["y/c"]
    shown = podnet("exec", "y/c", "--name", model.name, "--", "ip", "-6", "-o", "addr", "show", "dev", "eth0",
                   "scope", "link").stdout
    address = shown.split()[3].split("/")[0]
    token = f"podnet-v6-{secrets.token_hex(4)}:"
    with model.listening(["y/c"], SPOOF_LISTEN, token, "6") as heard:
        podnet("exec", "z/c", "--name", model.name, "--", "python3", "-c", LINK_LOCAL_SEND,
               json.dumps([[address, "z/c"]]), token, timeout=60)
        arrived = heard()["y/c"]
    assert arrived == []


# Sends from inside a pod, on an AF_PACKET socket of eth0, one priority-tagged (802.1Q, VLAN 0)
# frame carrying an IPv4 UDP datagram: argv[1] destination MAC, argv[2] source IP, argv[3]
# destination IP, argv[4] payload.
VLAN0_SEND = r"""
import socket, struct, sys, time
def checksum(header):
    total = sum(struct.unpack(">10H", header))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
payload = sys.argv[4].encode()
udp = struct.pack(">HHHH", 40999, 9999, 8 + len(payload), 0) + payload
ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                 socket.inet_aton(sys.argv[2]), socket.inet_aton(sys.argv[3]))
ip = ip[:10] + struct.pack(">H", checksum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
mine = open("/sys/class/net/eth0/address").read().strip()
frame = (bytes.fromhex(sys.argv[1].replace(":", "")) + bytes.fromhex(mine.replace(":", ""))
         + struct.pack(">HHH", 0x8100, 0, 0x0800) + ip + udp)
for _ in range(3):
    s.send(frame)
    time.sleep(0.2)
"""


def test_a_vlan_tagged_frame_does_not_go_around_the_policies(model):
    """A priority-tagged frame (VLAN 0) is not IPv4 to br_netfilter, yet the receiving pod takes
    it as untagged: z/c's, with its real source, must not reach y/c, which admits x/a only."""
    model.enter(cases.Step("y/c admits x/a only", [Y_C_ADMITS_X_A], []))
    assert model.nodes["z/c"] == model.nodes["y/c"]
    mac = podnet("exec", "y/c", "--name", model.name, "--", "cat", "/sys/class/net/eth0/address").stdout.strip()
    token = f"podnet-vlan-{secrets.token_hex(4)}:"
    with model.listening(["y/c"], SPOOF_LISTEN, token, "4") as heard:
        podnet("exec", "z/c", "--name", model.name, "--", "python3", "-c", VLAN0_SEND, mac, model.ips["z/c"],
               model.ips["y/c"], token + "z/c", timeout=60)
        arrived = heard()["y/c"]
    assert arrived == []
