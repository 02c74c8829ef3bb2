"""podnet-cni in real network namespaces (root only).

Every test builds its own throw-away namespaces named podnet-t<random>-*: a "node" (where the
bridge lives, standing in for the host) and pods; nothing is created in the host's namespace
and no namespace gets a route out. The conformance tests drive the podnet-cni executable and
Debian's reference /usr/lib/cni/bridge (+ host-local) with the same configurations in twin
namespaces and compare the result JSON and the state each leaves behind.
"""

from __future__ import annotations

import json
import time
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from podnet.cni import bridge, config
from podnet.cni.spec import CniError

REFERENCE = Path("/usr/lib/cni/bridge")
SRC = str(Path(__file__).resolve().parents[1] / "src")

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30, **kw)


@pytest.fixture
def netns():
    """A factory for namespaces that are always deleted, also when the test fails."""
    prefix = f"podnet-t{secrets.token_hex(3)}-"
    made: list[str] = []

    def make(suffix: str) -> str:
        name = prefix + suffix
        sh("ip", "netns", "add", name)
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "pids", name], capture_output=True)
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except OSError:
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        leftover = [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(prefix)]
        assert not leftover, leftover


def conf_dict(data_dir: Path, **overrides) -> dict:
    conf = {"cniVersion": "1.0.0", "name": "testnet", "type": "bridge", "bridge": "cni0", "isGateway": True,
            "ipMasq": False, "hairpinMode": True, "mtu": 1400,
            "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "routes": [{"dst": "0.0.0.0/0"}],
                     "dataDir": str(data_dir)}}
    ipam = overrides.pop("ipam", None)
    conf.update(overrides)
    if ipam:
        conf["ipam"] = {**ipam, "dataDir": str(data_dir)}
    return conf


def ping(src: str, address: str) -> bool:
    return sh("ip", "netns", "exec", src, "ping", "-c", "1", "-W", "2", address, check=False).returncode == 0


def tcp_roundtrip(server_ns: str, client_ns: str, address: str) -> str:
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, sys.executable, "-c",
         "import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
         f"s.bind(('{address}', 8080)); s.listen(1); print('ready', flush=True); c,_=s.accept();"
         "c.sendall(b'pong:'+c.recv(100)); c.close()"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        client = sh("ip", "netns", "exec", client_ns, sys.executable, "-c",
                    f"import socket; c=socket.create_connection(('{address}', 8080), timeout=5);"
                    "c.sendall(b'ping'); print(c.recv(100).decode())")
        return client.stdout.strip()
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("backend", ["raw", "pyroute2"])
def test_two_pods_talk_over_the_bridge_in_process(netns, tmp_path, backend):
    node, pod1, pod2 = netns("node"), netns("pod1"), netns("pod2")
    conf = config.from_dict(conf_dict(tmp_path))
    nl = bridge.open_netlink(node, backend)
    try:
        r1 = bridge.add(conf, "c1", f"/run/netns/{pod1}", "eth0", node_netns=node, netlink=nl)
        r2 = bridge.add(conf, "c2", pod2, "eth0", node_netns=node, netlink=nl,
                        args={"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web"})
        ip1, ip2 = str(r1.ips[0].address.ip), str(r2.ips[0].address.ip)
        assert (ip1, ip2) == ("10.99.0.2", "10.99.0.3")
        assert ping(pod1, ip2) and ping(pod2, ip1) and ping(pod1, "10.99.0.1")
        assert tcp_roundtrip(pod2, pod1, ip2) == "pong:ping"
        bridge.check(conf, "c1", f"/run/netns/{pod1}", "eth0", node_netns=node, prev_result=r1, netlink=nl)
        for cid, pod in (("c1", pod1), ("c2", pod2)):
            bridge.delete(conf, cid, pod, "eth0", node_netns=node, netlink=nl)
            bridge.delete(conf, cid, pod, "eth0", node_netns=node, netlink=nl)  # twice is fine
        assert "veth" not in sh("ip", "-n", node, "link").stdout
        assert "eth0" not in sh("ip", "-n", pod1, "link").stdout
        assert sorted(os.listdir(tmp_path / "testnet")) == ["last_reserved_ip.0", "lock"]
        with pytest.raises(CniError, match="Failed to find address"):
            bridge.check(conf, "c1", pod1, "eth0", node_netns=node, prev_result=r1, netlink=nl)
    finally:
        nl.close()
    assert sh("ip", "link").stdout.count("cni0") == 0  # nothing leaked into the host namespace


def neighbour_mac(namespace: str, address: str) -> str | None:
    words = sh("ip", "-n", namespace, "neigh", "show", address).stdout.split()
    return words[words.index("lladdr") + 1] if "lladdr" in words else None


def test_a_pod_recreated_with_the_same_address_is_announced_to_its_neighbours(netns, tmp_path):
    """The node and a pod on the bridge know 10.99.0.5 at the first pod's MAC; the pod is
    replaced by another with the same address (one address in the range) and a new MAC. ADD
    announces it (gratuitous ARP), so both neighbours take the new MAC without a failed try."""
    node, first, second, other = netns("node"), netns("first"), netns("second"), netns("other")
    one = conf_dict(tmp_path, ipam={"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24",
                                                                       "rangeStart": "10.99.0.5",
                                                                       "rangeEnd": "10.99.0.5"}]]})
    conf, other_conf = config.from_dict(one), config.from_dict(conf_dict(tmp_path / "other"))
    nl = bridge.open_netlink(node, "raw")
    try:
        old = bridge.add(conf, "old", first, "eth0", node_netns=node, netlink=nl)
        bridge.add(other_conf, "peer", other, "eth0", node_netns=node, netlink=nl)
        address = str(old.ips[0].address.ip)
        assert address == "10.99.0.5" and ping(node, address) and ping(other, address)
        old_mac = old.interfaces[2].mac
        assert neighbour_mac(node, address) == neighbour_mac(other, address) == old_mac
        bridge.delete(conf, "old", first, "eth0", node_netns=node, netlink=nl)
        new = bridge.add(conf, "new", second, "eth0", node_netns=node, netlink=nl)
        assert str(new.ips[0].address.ip) == address and new.interfaces[2].mac != old_mac
        deadline = time.monotonic() + 60  # a wait for the kernel to take the frame, not a measure
        while {neighbour_mac(node, address), neighbour_mac(other, address)} != {new.interfaces[2].mac}:
            assert time.monotonic() < deadline, (neighbour_mac(node, address), neighbour_mac(other, address))
            time.sleep(0.05)
    finally:
        nl.close()


def test_add_rolls_back_in_the_kernel(netns, tmp_path):
    node, pod = netns("node"), netns("pod")
    conf = config.from_dict(conf_dict(tmp_path))
    sh("ip", "-n", node, "link", "add", "cni0", "type", "bridge")
    sh("ip", "-n", node, "addr", "add", "10.50.0.1/24", "dev", "cni0")  # a different gateway address
    with pytest.raises(CniError, match="already has an IP address different from"):
        bridge.add(conf, "c1", pod, "eth0", node_netns=node)
    assert "veth" not in sh("ip", "-n", node, "link").stdout
    assert "eth0" not in sh("ip", "-n", pod, "link").stdout
    assert sorted(os.listdir(tmp_path / "testnet")) == ["last_reserved_ip.0", "lock"]  # the cursor stays, as in host-local


# --- conformance with the reference plugins --------------------------------------------------------

def plugin(binary: list[str], node: str, command: str, conf: dict, cid: str, pod: str, ifname: str = "eth0",
           args: str = "") -> tuple[int, dict]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": SRC, "CNI_COMMAND": command,
           "CNI_CONTAINERID": cid, "CNI_NETNS": f"/run/netns/{pod}" if pod else "", "CNI_IFNAME": ifname,
           "CNI_PATH": "/usr/lib/cni", "CNI_ARGS": args}
    proc = subprocess.run(["ip", "netns", "exec", node, *binary], input=json.dumps(conf), env=env,
                          capture_output=True, text=True, timeout=30)
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else {})


@pytest.fixture(scope="module")
def podnet_cni(tmp_path_factory) -> list[str]:
    """podnet-cni as a runtime execs it: the launcher `python -m podnet.cni.install DIR` writes."""
    from podnet.cni import install

    return [install.install(str(tmp_path_factory.mktemp("cni-bin")))]


REF = [str(REFERENCE)]


def normalise_result(result: dict, pods: dict[str, str]) -> dict:
    text = json.dumps(result)
    text = re.sub(r'"mac": "[0-9a-f:]{17}"', '"mac": "MAC"', text)
    text = re.sub(r"veth[0-9a-f]{8}", "VETH", text)
    for pod, label in pods.items():
        text = text.replace(f"/run/netns/{pod}", label)
    return json.loads(text)


def snapshot(node: str, pods: list[str], data_dir: Path) -> dict:
    """snapshot_once() after the kernel settled: a bridge left without ports loses its carrier
    (NO-CARRIER, routes flagged linkdown) asynchronously, through linkwatch, up to about a
    second later — not something either plugin decides."""
    deadline = time.monotonic() + 30  # however loaded the machine: the loop ends as soon as the kernel settled
    while time.monotonic() < deadline:
        links = json.loads(sh("ip", "-n", node, "-j", "-d", "link", "show").stdout)
        bridges = {l["ifname"]: l for l in links if l.get("linkinfo", {}).get("info_kind") == "bridge"}
        with_ports = {l.get("master") for l in links}
        if all("NO-CARRIER" in b["flags"] or name in with_ports or "UP" not in b["flags"]
               for name, b in bridges.items()):
            break
        time.sleep(0.05)
    return snapshot_once(node, pods, data_dir)


def snapshot_once(node: str, pods: list[str], data_dir: Path) -> dict:
    """What a plugin leaves behind, without the parts that are random by design (MACs, veth
    names, ifindexes, IPv6 link-local addresses)."""
    def links(ns: str) -> list:
        out = []
        for link in json.loads(sh("ip", "-n", ns, "-j", "-d", "link", "show").stdout):
            info = link.get("linkinfo", {})
            out.append({
                "name": "VETH" if link["ifname"].startswith("veth") else link["ifname"],
                "flags": sorted(link["flags"]), "mtu": link["mtu"], "operstate": link.get("operstate"),
                "txqlen": link.get("txqlen"), "kind": info.get("info_kind"), "master": link.get("master"),
                "promiscuity": link.get("promiscuity"),
                "hairpin": info.get("info_slave_data", {}).get("hairpin"),
            })
        return sorted(out, key=lambda l: l["name"])

    def addrs(ns: str) -> list:
        out = []
        for link in json.loads(sh("ip", "-n", ns, "-j", "addr", "show").stdout):
            for a in link.get("addr_info", []):
                if a["family"] == "inet":
                    out.append((link["ifname"][:4], a["local"], a["prefixlen"], a.get("broadcast"), a["scope"]))
        return sorted(out)

    def routes(ns: str) -> list:
        return sorted(json.dumps({k: v for k, v in r.items() if k not in ("dev",)}, sort_keys=True)
                      for r in json.loads(sh("ip", "-n", ns, "-j", "route", "show", "table", "all").stdout)
                      if r.get("type") != "local" and r.get("table") not in ("local",))

    def sysctls(ns: str, keys: list[str]) -> dict:
        return {k: sh("ip", "netns", "exec", ns, "sysctl", "-n", k, check=False).stdout.strip() for k in keys}

    store = {}
    net = data_dir / "testnet"
    if net.exists():
        for f in sorted(net.iterdir()):
            store[f.name] = (f.read_bytes(), oct(f.stat().st_mode & 0o777))
    return {
        "node": {"links": links(node), "addrs": addrs(node), "routes": routes(node),
                 "sysctl": sysctls(node, ["net.ipv4.ip_forward", "net.ipv6.conf.cni0.accept_ra"])},
        "pods": [{"links": links(p), "addrs": addrs(p), "routes": routes(p),
                  "sysctl": sysctls(p, ["net.ipv4.conf.eth0.arp_notify", "net.ipv6.conf.eth0.accept_dad"])}
                 for p in pods],
        "store": store,
    }


CONFORMANCE_CONFIGS = {
    "gateway-hairpin-mtu": {},
    "plain-l2-gateway-off": {"isGateway": False, "hairpinMode": False, "mtu": 0,
                             "ipam": {"type": "host-local", "subnet": "10.99.0.0/24"}},
    "default-gateway-range": {"isGateway": False, "isDefaultGateway": True, "hairpinMode": False,
                              "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "rangeStart": "10.99.0.100",
                                       "rangeEnd": "10.99.0.101", "gateway": "10.99.0.254"}},
    "promisc-ranges-dns": {"hairpinMode": False, "promiscMode": True, "dns": {"nameservers": ["10.96.0.10"]},
                           "ipam": {"type": "host-local", "ranges": [[
                               {"subnet": "10.99.0.0/24", "rangeStart": "10.99.0.5", "rangeEnd": "10.99.0.5"},
                               {"subnet": "10.99.0.0/24", "rangeStart": "10.99.0.20"}]],
                                    "routes": [{"dst": "10.96.0.0/12"}]}},
}


REFERENCE_CHECK_FAILS_ON_OWN_RESULT = {"promisc-ranges-dns"}


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference CNI plugins not installed (/usr/lib/cni)")
@pytest.mark.parametrize("name", sorted(CONFORMANCE_CONFIGS))
def test_conformance_with_the_reference_bridge_plugin(netns, tmp_path, name, podnet_cni):
    overrides = dict(CONFORMANCE_CONFIGS[name])
    twins = {}
    for label, binary in (("reference", REF), ("podnet", podnet_cni)):
        node = netns(f"{label[:3]}-node")
        pods = [netns(f"{label[:3]}-p1"), netns(f"{label[:3]}-p2")]
        data_dir = tmp_path / label
        conf = conf_dict(data_dir, **json.loads(json.dumps(overrides)))
        results, statuses = [], []
        for i, pod in enumerate(pods):
            status, result = plugin(binary, node, "ADD", conf, f"cid{i}", pod)
            assert status == 0, (label, result)
            results.append(result)
        after_add = snapshot(node, pods, data_dir)
        # CHECK with each ADD result passes
        for i, pod in enumerate(pods):
            statuses.append(plugin(binary, node, "CHECK", {**conf, "prevResult": results[i]}, f"cid{i}", pod))
        # the same attachment twice fails the same way
        again = plugin(binary, node, "ADD", conf, "cid0", pods[0])
        for i, pod in enumerate(pods):
            assert plugin(binary, node, "DEL", conf, f"cid{i}", pod)[0] == 0
        after_del = snapshot(node, pods, data_dir)
        redel = plugin(binary, node, "DEL", conf, "cid0", pods[0])
        twins[label] = {
            "results": [normalise_result(r, {p: f"POD{i}" for i, p in enumerate(pods)}) for r in results],
            "after_add": after_add, "check": statuses, "again": (again[0], again[1].get("msg")),
            "after_del": after_del, "redel": redel,
        }
    ref, ours = twins["reference"], twins["podnet"]
    assert ours["results"] == ref["results"]
    for side in ("node", "pods", "store"):
        assert ours["after_add"][side] == ref["after_add"][side], (side, ours["after_add"][side]["links"] if side == "node" else "", ref["after_add"][side]["links"] if side == "node" else "")
    assert ours["check"] == [(0, {}), (0, {})]
    if name in REFERENCE_CHECK_FAILS_ON_OWN_RESULT:
        # Debian's v1.1.1 cannot find a gateway-less route other than the default one (its
        # RouteListFiltered query by Dst misses it) and fails CHECK right after its own ADD;
        # the spec says CHECK must pass there, and podnet-cni's does.
        assert all(code == 1 and "not found in routing table" in out["msg"] for code, out in ref["check"])
    else:
        # Without a gateway address the reference never pins the bridge's MAC, so a second port
        # with a lower MAC changes it and CHECK of the first pod fails, by chance; podnet-cni
        # pins it when it creates the bridge.
        assert all(out == {} or "Bridge interface cni0 Mac doesn't match" in out["msg"] for _, out in ref["check"])
    assert ours["again"] == ref["again"]
    for side in ("node", "pods", "store"):
        assert ours["after_del"][side] == ref["after_del"][side], side
    assert ours["redel"] == ref["redel"] == (0, {})


@pytest.mark.skipif(not REFERENCE.exists(), reason="reference CNI plugins not installed (/usr/lib/cni)")
def test_conformance_exhaustion_and_store_interoperability(netns, tmp_path, podnet_cni):
    """Both plugins fail the same way on an exhausted range, and read each other's store."""
    node, p1, p2, p3 = netns("node"), netns("p1"), netns("p2"), netns("p3")
    conf = conf_dict(tmp_path, ipam={"type": "host-local", "subnet": "10.99.0.0/30"})  # one address: .2
    assert plugin(REF, node, "ADD", conf, "ref", p1)[0] == 0
    ours = plugin(podnet_cni, node, "ADD", conf, "ours", p2)
    assert sh("ip", "-n", p2, "link").stdout.count("eth0") == 0  # rolled back
    assert plugin(podnet_cni, node, "DEL", conf, "ref", p1)[0] == 0  # podnet releases the reference's address
    theirs = plugin(REF, node, "ADD", conf, "ref2", p3)
    assert theirs[0] == 0 and theirs[1]["ips"][0]["address"] == "10.99.0.2/30"
    assert plugin(REF, node, "DEL", conf, "ref2", p3)[0] == 0
    assert plugin(REF, node, "ADD", conf, "x", p1)[0] == 0
    refused = plugin(REF, node, "ADD", conf, "y", p2)
    assert (ours[0], ours[1]["msg"]) == (refused[0], refused[1]["msg"])
    assert ours[1]["code"] == refused[1]["code"] == 999
