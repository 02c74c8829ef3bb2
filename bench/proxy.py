"""kube-proxy figures: programming time, first-packet latency, throughput through a ClusterIP.

    sudo PYTHONPATH=src python bench/proxy.py            # everything (a few minutes)
    sudo PYTHONPATH=src python bench/proxy.py --quick    # 1,000 Services only, fewer connections

Everything runs in two namespaces this script makes (`pb<hex>-node`, `pb<hex>-pod`, a veth
between them, no route anywhere else) and removes in a finally:
(1) programming time: N Services x 10 endpoints (synthetic ServicePorts: the proxy's desired
    state), a full sync — render + one `nft -f` / `iptables-restore` — and then a change to one
    Service (one endpoint replaced) with all N installed; nftables mode beside iptables mode,
    its changes both as one netlink batch (what the proxier does) and through `nft -f`, and
    the kernel's floor for any transaction at that size;
(2) first-packet latency: a TCP server in the pod namespace behind a ClusterIP; the client in
    the node namespace opens new connections (connect + one request/response) through it with
    10 and with 5,000 other Services installed (the measured one last, the worst place for
    iptables' linear KUBE-SERVICES); the ratio 5,000 / 10 per mode;
(3) throughput: iperf3 from the node to the pod, through the ClusterIP versus to the pod IP.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from podnet.host.netns import socket_in_netns  # noqa: E402
from podnet.proxy import nftables, nftnl  # noqa: E402
from podnet.proxy.model import Endpoint, ServicePort  # noqa: E402
from podnet.proxy.node import IptablesProxier, NftablesProxier, cleanup_leftovers  # noqa: E402

POD_SUBNET, SERVICE_SUBNET = "10.244.0.0/16", "10.96.0.0/12"
NODE_IP, POD_IP = "10.244.0.1", "10.244.0.2"
TARGET_VIP, PORT, SERVER_PORT = "10.111.255.254", 80, 8080
PROXIERS = {"nftables": NftablesProxier, "iptables": IptablesProxier}


def sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, text=True, capture_output=True, **kw)


def synthetic(n: int, endpoints: int = 10) -> list[ServicePort]:
    base = int(IPv4Address("10.96.0.10"))
    out = []
    for i in range(n):
        eps = tuple(Endpoint(str(IPv4Address(int(IPv4Address("10.244.1.0")) + (i * endpoints + j) % 60000)), 8080,
                             f"ns{i % 100}/svc{i}-{j}") for j in range(endpoints))
        out.append(ServicePort(f"ns{i % 100}", f"svc{i}", "http", "TCP", str(IPv4Address(base + i)), 80,
                               cluster_endpoints=eps))
    return out


def target() -> ServicePort:
    return ServicePort("bench", "target", "", "TCP", TARGET_VIP, PORT, cluster_endpoints=(Endpoint(POD_IP, SERVER_PORT),))


def one_changed(ports: list[ServicePort], round_: int) -> list[ServicePort]:
    """One endpoint of one Service (a different one each round) replaced."""
    i = (len(ports) // 2 + round_) % len(ports)
    sp = ports[i]
    eps = sp.cluster_endpoints[:-1] + (Endpoint(f"10.244.250.{round_ + 1}", 8080),)
    return ports[:i] + [ServicePort(**{**sp.__dict__, "cluster_endpoints": eps})] + ports[i + 1:]


def bounded_runner(limit: float):
    """run_command with a time limit: iptables-restore (nf_tables backend) slows down
    superlinearly with the number of chains, and one run must not take the whole bench."""
    def run(argv: list[str], stdin: str | None = None) -> str:
        result = subprocess.run(argv, input=stdin, text=True, capture_output=True, timeout=limit)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout
    return run


def programming(node: str, mode: str, n: int, limit: float) -> dict[str, float]:
    """Full sync, then one-Service changes; in nftables mode the changes both ways (netlink
    batch, the default, and `nft -f`), and the kernel's own floor for a one-rule transaction."""
    ports = synthetic(n)
    extra = {"netlink": True} if mode == "nftables" else {}
    proxier = PROXIERS[mode](node, POD_SUBNET, SERVICE_SUBNET, bounded_runner(limit), **extra)
    t0 = time.perf_counter()
    try:
        proxier.sync(ports)
    except subprocess.TimeoutExpired:
        cleanup_leftovers(node)
        return {"full": float("inf"), "change": float("inf")}
    out = {"full": time.perf_counter() - t0}

    def changes(rounds: range) -> float:
        nonlocal ports
        times = []
        for round_ in rounds:
            ports = one_changed(ports, round_)
            t0 = time.perf_counter()
            rewritten = proxier.sync(ports)
            times.append(time.perf_counter() - t0)
            assert rewritten == 1, rewritten
        return statistics.median(times)

    out["change"] = changes(range(5))
    if mode == "nftables":
        loader, proxier.loader = proxier.loader, None
        out["change_nft"] = changes(range(5, 10))
        proxier.loader = loader
        t = f"{nftables.FAMILY} {nftables.TABLE}"
        for key, rule in (("floor_match", "ip saddr 10.0.0.1"), ("floor_verdict", "goto reject-chain")):
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                loader.load(f"add chain {t} bench-floor\nadd rule {t} bench-floor {rule}\n")
                times.append(time.perf_counter() - t0)
                loader.load(f"flush chain {t} bench-floor\ndelete chain {t} bench-floor\n")
            out[key] = statistics.median(times)
    proxier.cleanup()
    if mode == "nftables" and n >= 10000:
        out.update(kernel_floor_full(node, ports, limit))
    return out


def kernel_floor_full(node: str, ports: list[ServicePort], limit: float) -> dict[str, float]:
    """What the kernel alone takes to accept the whole table: the skeleton loaded by nft first,
    then everything else compiled (timed apart) and sent as one netlink batch."""
    text, _, _ = nftables.transaction(nftables.TableState(), ports, POD_SUBNET, SERVICE_SUBNET, True)
    lines = text.splitlines()
    head = 2 + len(nftables.skeleton(SERVICE_SUBNET))  # add table, delete table, the skeleton
    bounded_runner(limit)(["ip", "netns", "exec", node, "nft", "-f", "-"], "\n".join(lines[:head]) + "\n")
    loader = nftnl.Loader(node)
    try:
        t0 = time.perf_counter()
        messages = nftnl.compile_transaction("\n".join(lines[head:]))
        t1 = time.perf_counter()
        size = loader.send(messages)
        t2 = time.perf_counter()
    finally:
        loader.close()
        cleanup_leftovers(node)
    return {"floor_full": t2 - t1, "compile_full": t1 - t0, "messages": len(messages),
            "batch_mb": size / 1e6}


def server(pod: str) -> subprocess.Popen:
    code = ("import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            f"s.bind(('0.0.0.0',{SERVER_PORT}));s.listen(512)\n"
            "while True:\n c,_=s.accept();c.recv(16);c.sendall(b'ok');c.close()\n")
    proc = subprocess.Popen(["ip", "netns", "exec", pod, sys.executable, "-c", code])
    time.sleep(0.3)
    return proc


def connect_latency(node: str, ip: str, connections: int) -> float:
    """Median seconds for connect + request + response over new connections from the node."""
    times = []
    for _ in range(connections):
        s = socket_in_netns(node, socket.AF_INET, socket.SOCK_STREAM)
        t0 = time.perf_counter()
        s.connect((ip, PORT if ip == TARGET_VIP else SERVER_PORT))
        s.sendall(b"x")
        s.recv(16)
        times.append(time.perf_counter() - t0)
        s.close()
    return statistics.median(times)


def latency(node: str, mode: str, others: int, connections: int, limit: float) -> float:
    cleanup_leftovers(node)
    proxier = PROXIERS[mode](node, POD_SUBNET, SERVICE_SUBNET, bounded_runner(limit))
    try:
        proxier.sync(synthetic(others) + [target()])
    except subprocess.TimeoutExpired:
        cleanup_leftovers(node)
        return float("inf")
    try:
        connect_latency(node, TARGET_VIP, 50)  # warm up
        return connect_latency(node, TARGET_VIP, connections)
    finally:
        proxier.cleanup()


def iperf(node: str, ip: str, seconds: int) -> float:
    out = sh("ip", "netns", "exec", node, "iperf3", "-c", ip, "-p", str(PORT if ip == TARGET_VIP else SERVER_PORT + 1),
             "-t", str(seconds), "-J").stdout
    import json

    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--limit", type=float, default=120.0, help="seconds allowed per load (default 120)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/proxy.py needs root (network namespaces)", file=sys.stderr)
        return 2
    tag = f"pb{secrets.token_hex(3)}"
    node, pod = f"{tag}-node", f"{tag}-pod"
    procs: list[subprocess.Popen] = []
    try:
        for ns in (node, pod):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", node, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", pod)
        sh("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "veth0")
        sh("ip", "-n", pod, "addr", "add", f"{POD_IP}/24", "dev", "eth0")
        for ns, dev in ((node, "veth0"), (pod, "eth0")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        # the node's own packets to a ClusterIP need a route before DNAT picks the real one (podnet
        # nodes have the same route towards cni0; there is no default route in the sandbox)
        sh("ip", "-n", node, "route", "add", SERVICE_SUBNET, "dev", "veth0")

        sizes = [1000] if args.quick else [1000, 10000]
        print("(1) programming time, N Services x 10 endpoints (seconds; render + one load). nftables: full "
              "syncs by nft -f, changes by one netlink batch, beside the same changes by nft -f; the kernel's "
              "floor: one new chain with one rule, a match only / a goto (which makes the kernel validate "
              "the whole table)")
        print("| Services | nftables full sync | nftables one change (netlink) | same by nft -f | kernel floor "
              "match / goto | iptables full sync | iptables one change |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        def fmt(seconds: float, unit: str) -> str:
            if seconds == float("inf"):
                return f"> {args.limit:.0f} s (stopped)"
            if unit == "ms":
                return f"{seconds * 1000:.1f} ms" if seconds < 0.01 else f"{seconds * 1000:.0f} ms"
            return f"{seconds:.2f}"

        for n in sizes:
            cleanup_leftovers(node)
            row = {mode: programming(node, mode, n, args.limit) for mode in PROXIERS}
            nft = row["nftables"]
            floor = (f"{fmt(nft['floor_match'], 'ms')} / {fmt(nft['floor_verdict'], 'ms')}"
                     if "floor_match" in nft else "")
            print(f"| {n:,} | {fmt(nft['full'], 's')} | {fmt(nft['change'], 'ms')} | {fmt(nft.get('change_nft', 0), 'ms')} | "
                  f"{floor} | {fmt(row['iptables']['full'], 's')} | {fmt(row['iptables']['change'], 'ms')} |", flush=True)
            if "floor_full" in nft:
                print(f"  the kernel alone, for the whole table of {n:,} Services: {nft['floor_full']:.2f} s in one netlink "
                      f"batch of {nft['messages']:,} messages, {nft['batch_mb']:.0f} MB (compiling it took "
                      f"{nft['compile_full']:.2f} s more)", flush=True)

        procs.append(server(pod))
        connections = 300 if args.quick else args.connections
        print(f"\n(2) first-packet latency through a ClusterIP: connect + request + response, median of {connections} "
              "new connections from the node")
        print("| mode | 10 Services | 5,000 Services | ratio |")
        print("|---|---:|---:|---:|")
        for mode in PROXIERS:
            small = latency(node, mode, 10, connections, args.limit)
            big = latency(node, mode, 5000, connections, args.limit)
            if big == float("inf"):
                print(f"| {mode} | {small * 1e6:.0f} µs | loading 5,000 Services took > {args.limit:.0f} s | |")
                continue
            print(f"| {mode} | {small * 1e6:.0f} µs | {big * 1e6:.0f} µs | {big / small:.2f} |", flush=True)
        direct = connect_latency(node, POD_IP, connections)
        print(f"| (pod IP, no proxy) | {direct * 1e6:.0f} µs | | |")

        print(f"\n(3) iperf3 -t {args.seconds}, one TCP stream, node → pod")
        procs.append(subprocess.Popen(["ip", "netns", "exec", pod, "iperf3", "-s", "-p", str(SERVER_PORT + 1)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        proxier = NftablesProxier(node, POD_SUBNET, SERVICE_SUBNET)
        vip_target = ServicePort("bench", "iperf", "", "TCP", TARGET_VIP, PORT,
                                 cluster_endpoints=(Endpoint(POD_IP, SERVER_PORT + 1),))
        proxier.sync(synthetic(1000) + [vip_target])
        via_vip = iperf(node, TARGET_VIP, args.seconds)
        straight = iperf(node, POD_IP, args.seconds)
        proxier.cleanup()
        print("| path | Gbit/s |\n|---|---:|")
        print(f"| to the pod IP | {straight:.2f} |\n| through the ClusterIP (nftables, 1,001 Services) | {via_vip:.2f} |")
        print(f"| ratio | {via_vip / straight:.2f} |")
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for ns in (node, pod):
            sh("ip", "netns", "del", ns, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
