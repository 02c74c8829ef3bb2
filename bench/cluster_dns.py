"""Cluster DNS benchmark: answer() per query on the generated cluster, and dnsmasq side by side.

Generates the foundation cluster (bench/generate.py: 10,000 pods, 2,000 Services in 100
namespaces), builds ClusterDNS once, then times answer() on a fixed mix of queries (Service A,
headless A, endpoint names, SRV, PTR, pod names, NXDOMAIN, AAAA NODATA) and a pod's search-list
lookup. If dnsmasq is installed (/usr/sbin/dnsmasq, Debian's dnsmasq-base), it serves the same
address records from a hosts file on 127.0.0.1, and a forked podnet process serves answer() on
127.0.0.1 too; the same dnspython client asks both the same A questions, one at a time.
Everything stays on 127.0.0.1; every loop is bounded.

    .venv/bin/python bench/cluster_dns.py [--namespaces 100] [--queries 50000] [--udp-queries 5000]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# No bench script is called dns.py: it would hide dnspython's `dns` package from the others.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.util.spec_from_file_location("generate", HERE / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

from podnet.api import loader, store  # noqa: E402
from podnet.config import parse_config  # noqa: E402
from podnet.controlplane import compute  # noqa: E402
from podnet.semantics.dns import ClusterDNS, resolv_conf  # noqa: E402

DNSMASQ = "/usr/sbin/dnsmasq"
ZONE = "cluster.local"


def build(namespaces: int):
    with tempfile.TemporaryDirectory(prefix="podnet-bench-dns-") as tmp:
        directory = Path(tmp) / "cluster"
        generate.generate(directory, namespaces=namespaces)
        config = parse_config(generate.cluster_config(nodes=namespaces), "bench-cluster.yaml")
        return compute(store.admit(loader.load_files([str(directory)])), config)


def query_mix(cluster, n: int, seed: int = 1) -> list[tuple[str, str, str]]:
    """(kind, qname, qtype): a fixed, seeded mix over the whole cluster."""
    rng = random.Random(seed)
    services = [s for s in cluster.of_kind("Service") if s.namespace.startswith("ns-")]
    clusterip = [s for s in services if s.spec.get("clusterIP") not in (None, "None")]
    headless = [s for s in services if s.spec.get("clusterIP") == "None"]
    pods = [p for p in cluster.of_kind("Pod") if (p.body.get("status") or {}).get("podIP")]
    sts_pods = [p for p in pods if p.spec.get("subdomain")]

    def rev(ip: str) -> str:
        return ".".join(reversed(ip.split("."))) + ".in-addr.arpa."

    makers = {
        "service A": lambda: (f"{(s := rng.choice(clusterip)).name}.{s.namespace}.svc.{ZONE}.", "A"),
        "headless A (10 endpoints)": lambda: (f"{(s := rng.choice(headless)).name}.{s.namespace}.svc.{ZONE}.", "A"),
        "endpoint hostname A": lambda: (f"{(p := rng.choice(sts_pods)).spec['hostname']}.{p.spec['subdomain']}."
                                        f"{p.namespace}.svc.{ZONE}.", "A"),
        "service SRV": lambda: (f"_http._tcp.{(s := rng.choice(clusterip)).name}.{s.namespace}.svc.{ZONE}.", "SRV"),
        "headless SRV (10 endpoints)": lambda: (f"_redis._tcp.{(s := rng.choice(headless)).name}.{s.namespace}.svc.{ZONE}.", "SRV"),
        "PTR cluster IP": lambda: (rev(rng.choice(clusterip).spec["clusterIP"]), "PTR"),
        "PTR pod IP": lambda: (rev(rng.choice(sts_pods).status["podIP"]), "PTR"),
        "pod A (insecure)": lambda: (f"{(p := rng.choice(pods)).status['podIP'].replace('.', '-')}.{p.namespace}.pod.{ZONE}.", "A"),
        "NXDOMAIN": lambda: (f"nope-{rng.randrange(1000)}.{rng.choice(services).namespace}.svc.{ZONE}.", "A"),
        "AAAA NODATA": lambda: (f"{(s := rng.choice(clusterip)).name}.{s.namespace}.svc.{ZONE}.", "AAAA"),
    }
    kinds = list(makers)
    return [(kind, *makers[kind]()) for kind in (kinds[i % len(kinds)] for i in range(n))]


def time_answers(server: ClusterDNS, queries) -> dict[str, list[float]]:
    by_kind: dict[str, list[float]] = {}
    clock = time.perf_counter
    answer = server.answer
    for kind, qname, qtype in queries:
        t0 = clock()
        answer(qname, qtype)
        by_kind.setdefault(kind, []).append(clock() - t0)
    return by_kind


def free_udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def serve_forever(server: ClusterDNS, sock: socket.socket) -> None:
    """The child process: answer() behind a plain UDP loop (the real server is a later issue)."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        wire, peer = sock.recvfrom(4096)
        try:
            query = dns.message.from_wire(wire)
            question = query.question[0]
            answer = server.answer(question.name.to_text(), dns.rdatatype.to_text(question.rdtype))
            sock.sendto(answer.to_message(query).to_wire(), peer)
        except Exception:  # a malformed packet: no answer, as a server under test would drop it
            continue


def udp_latency(port: int, names: list[str]) -> tuple[float, int]:
    """Mean seconds per A query (one outstanding at a time) and how many came back NOERROR."""
    ok = 0
    t0 = time.perf_counter()
    for name in names:
        response = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
        ok += response.rcode() == dns.rcode.NOERROR and bool(response.answer)
    return (time.perf_counter() - t0) / len(names), ok


def addresses(port: int, name: str) -> set[str]:
    response = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
    return {rdata.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for rdata in rrset}


def wait_for(port: int, name: str, tries: int = 50) -> None:
    for _ in range(tries):
        try:
            dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=0.2)
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"no DNS server answered on 127.0.0.1:{port}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--queries", type=int, default=50_000, help="in-process answer() calls")
    parser.add_argument("--udp-queries", type=int, default=5_000, help="UDP queries to each server")
    args = parser.parse_args()

    t0 = time.perf_counter()
    cluster = build(args.namespaces)
    t1 = time.perf_counter()
    server = ClusterDNS(cluster)
    t2 = time.perf_counter()
    # What a long-running server does after building: move the cluster's millions of objects out
    # of the cyclic collector's way, so collections triggered by per-query garbage stay short.
    gc.collect()
    gc.freeze()
    print(f"cluster: {len(cluster.of_kind('Pod'))} pods, {len(cluster.of_kind('Service'))} services, "
          f"{len(cluster.of_kind('EndpointSlice'))} endpointslices (computed in {t1 - t0:.2f} s)")
    print(f"ClusterDNS built in {(t2 - t1) * 1000:.0f} ms")

    queries = query_mix(cluster, args.queries)
    time_answers(server, queries[:2000])  # warm up
    by_kind = time_answers(server, queries)
    every = [s for samples in by_kind.values() for s in samples]
    print(f"\nanswer() per query, {len(every)} queries        mean      p50      p99")
    for kind, samples in by_kind.items():
        samples.sort()
        print(f"  {kind:<30} {statistics.fmean(samples) * 1e6:7.1f} µs {samples[len(samples) // 2] * 1e6:6.1f} µs "
              f"{samples[int(len(samples) * 0.99)] * 1e6:6.1f} µs")
    every.sort()
    mean = statistics.fmean(every)
    print(f"  {'all':<30} {mean * 1e6:7.1f} µs {every[len(every) // 2] * 1e6:6.1f} µs "
          f"{every[int(len(every) * 0.99)] * 1e6:6.1f} µs   goal < 1000 µs: {'met' if mean < 1e-3 else 'MISSED'}")

    client = next(p for p in cluster.of_kind("Pod", "ns-000"))
    resolv = resolv_conf(client, cluster)
    services = [f"{s.name}.{s.namespace}" for s in cluster.of_kind("Service") if s.namespace.startswith("ns-")]
    pick = random.Random(3)
    names = [pick.choice(services) for _ in range(5000)]
    t3 = time.perf_counter()
    for name in names:
        server.lookup(name, "A", resolv)
    per_lookup = (time.perf_counter() - t3) / len(names)
    print(f"lookup() from a pod in ns-000 (ndots:5 search list, svc.ns names: 2 queries each): {per_lookup * 1e6:.1f} µs per name")

    if not os.path.exists(DNSMASQ):
        print(f"\n{DNSMASQ} not installed (Debian package dnsmasq-base): no side-by-side comparison")
        return
    hosts = server.hosts()
    a_names = list(dict.fromkeys(name for name, _ in hosts))
    rng = random.Random(2)
    asked = [rng.choice(a_names) + "." for _ in range(args.udp_queries)]

    with tempfile.TemporaryDirectory(prefix="podnet-bench-dnsmasq-") as tmp:
        hosts_file = Path(tmp) / "hosts"
        hosts_file.write_text("".join(f"{ip} {name}\n" for name, ip in hosts))
        os.chmod(tmp, 0o755)  # dnsmasq reads the file after dropping root for nobody
        os.chmod(hosts_file, 0o644)
        probe = free_udp_socket()
        dnsmasq_port = probe.getsockname()[1]
        probe.close()
        dnsmasq = subprocess.Popen(
            [DNSMASQ, "--keep-in-foreground", f"--port={dnsmasq_port}", "--listen-address=127.0.0.1",
             "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts_file}",
             "--no-negcache", f"--pid-file={Path(tmp) / 'dnsmasq.pid'}", "--log-facility=-", "--quiet-dhcp"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        podnet_sock = free_udp_socket()
        podnet_port = podnet_sock.getsockname()[1]
        child = os.fork()
        if child == 0:
            try:
                serve_forever(server, podnet_sock)
            finally:
                os._exit(0)
        podnet_sock.close()
        try:
            wait_for(dnsmasq_port, asked[0])
            wait_for(podnet_port, asked[0])
            udp_latency(dnsmasq_port, asked[:500])  # warm up both
            udp_latency(podnet_port, asked[:500])
            theirs, theirs_ok = udp_latency(dnsmasq_port, asked)
            ours, ours_ok = udp_latency(podnet_port, asked)
            sample = asked[:300]
            disagree = [n for n in sample if addresses(dnsmasq_port, n) != addresses(podnet_port, n)]
        finally:
            os.kill(child, signal.SIGTERM)
            os.waitpid(child, 0)
            dnsmasq.terminate()
            try:
                dnsmasq.wait(timeout=5)
            except subprocess.TimeoutExpired:
                dnsmasq.kill()
                dnsmasq.wait()
    print(f"\nside by side on 127.0.0.1, {len(asked)} A queries each over UDP (dnspython client, one at a time), "
          f"{len(hosts)} address records")
    print(f"  dnsmasq (addn-hosts)           {theirs * 1e6:7.1f} µs per query  "
          f"({theirs_ok} answered)")
    print(f"  podnet answer() behind UDP     {ours * 1e6:7.1f} µs per query  ({ours_ok} answered)")
    print(f"  podnet answer() in process     {mean * 1e6:7.1f} µs per query")
    print(f"  same A record sets from both on {len(sample) - len(disagree)} of {len(sample)} names"
          + (f" (differ: {', '.join(disagree[:3])})" if disagree else ""))
    print(f"  ratio podnet/dnsmasq over UDP: {ours / theirs:.2f}x   "
          f"(answer() alone is {mean / theirs * 100:.0f}% of one dnsmasq round trip)")


if __name__ == "__main__":
    main()
