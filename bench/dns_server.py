"""podnet's cluster DNS server against dnsmasq: same names, same machine, same run, ratios.

What runs
---------
- A generated cluster of 10,000 ClusterIP Services: 100 namespaces (ns-000..ns-099) x 100
  Services (svc-000..svc-099), each selecting one 2-replica Deployment of its namespace, so
  every Service has an EndpointSlice with two endpoints (202 pods, 4 nodes; bench/generate.py's
  _deployment/_service). The bench computes the cluster once itself, for the expected answers.
- podnet: `python -m podnet.dns -conf COREFILE -dns.port PORT --host 127.0.0.1 -f MANIFESTS
  --config CLUSTER.yaml`, the Corefile being kubeadm's (controlplane/system.py corefile()) with
  `health`, `ready` and `prometheus` removed (they would bind fixed side ports); everything
  else is kept (errors, kubernetes ... ttl 30, cache 30, loop, reload, loadbalance).
- dnsmasq (Debian's): the same 10,000 `svc.ns.svc.cluster.local` names with the same ClusterIPs
  in an --addn-hosts file; `--local=/cluster.local/` so it answers NXDOMAIN itself for every
  other name in the zone (and never forwards: --no-resolv, no servers), `--local-ttl=30` so
  its TTL is podnet's, --cache-size=10000, no query log, -C /dev/null (no system config).
  Not identical: podnet's NXDOMAIN carries the zone's SOA (as CoreDNS's does), dnsmasq's has
  no authority section; dnsperf's "response size" column shows the difference.
- Both servers are pinned to core 0 (`taskset -c 0`), dnsperf to core 1 (`taskset -c 1`); both
  servers run for the whole bench (idle when the other one is measured), on 127.0.0.1 on free
  ports found at start.

Query files (dnsperf format, "name type", shuffled with a fixed seed)
- names:  the 10,000 `svc-NNN.ns-NNN.svc.cluster.local A` (NOERROR, one A record).
- misses: 50,000 search-list misses as a pod's glibc resolver sends them (ndots:5, the search
  list kubelet gives a ClusterFirst pod in namespace C, C = the next namespace): for the short
  name `svc.ns` -> `svc.ns.C.svc.cluster.local` and `svc.ns.cluster.local` (the latter sent
  when a Service is missing); for `svc.ns.svc.cluster.local` without the final dot ->
  `...svc.cluster.local.C.svc.cluster.local`, `...svc.cluster.local.svc.cluster.local`,
  `...svc.cluster.local.cluster.local`. All NXDOMAIN, from both servers.

What is measured, in this order
1. Startup: podnet from exec to its first answer (it computes the cluster itself); RSS then.
2. Correctness, before any measurement: dig (with its default EDNS, so these questions do not
   share podnet's memo entries with dnsperf's non-EDNS ones) asks both servers a sample of names
   (the A record must be the Service's ClusterIP) and of misses (NXDOMAIN). Any mismatch aborts.
   Every dnsperf run below must also come back all NOERROR (names) or all NXDOMAIN (misses).
3. Cold vs warm passes: podnet memoises each question's answer as wire bytes on first sight.
   "cold" = the first pass over a file after start (every question computed), "2nd pass" = the
   same pass right after (every question from the memo); each is `dnsperf -n 1 -c 4 -q 500 -v`
   (one pass as fast as it goes). dnsmasq has no such memo (its hosts are loaded at start) but
   runs the same two passes.
4. Maximum QPS, warm: `dnsperf -c 4 -q 500 -l DURATION` per server and file. Ratio =
   podnet QPS / dnsmasq QPS (goal >= 1.0). Lost = dnsperf's lost (no answer within 5 s); the
   kernel's UDP receive-buffer drops (/proc/net/snmp RcvbufErrors) over the run are beside it
   (dnsmasq keeps the kernel's default receive buffer, podnet asks for 4 MB: dnsmasq drops part
   of dnsperf's first burst of 500). Beside QPS: the server's CPU use (utime+stime over wall
   time), dnsperf's, and QPS per server CPU-second with its ratio -- with dnsperf on one core,
   dnsmasq is not CPU-bound (dnsperf is the limit), so that is the fairer efficiency number.
   "softirq" is the irq+softirq time of each core (/proc/stat; on loopback most of the network
   stack's work, charged to no process); "others" the task time other processes took on the two
   cores during the run (per-core user+system time minus the server's resp. dnsperf's): the
   machine may be shared. Server CPU + softirq + others near 100% = the server's core is full.
   (Clock-tick accounting: approximate; blank for runs under 1 s.)
5. Latency at 80% of podnet's warm maximum for that file: `dnsperf -Q RATE -c 4 -q 100 -l
   DURATION -v` against both servers; p50/p99/p99.9/max from dnsperf's per-query lines
   (dnsperf 2.10 prints no percentiles). -q 100 (dnsperf's default), not 500: when dnsperf is
   descheduled it apparently catches up on -Q by sending up to -q queries at once, and those
   bursts, not the servers, then make the p99 of both (measured at 20,000 qps: p99 10-20 ms
   with -q 500, 0.3-0.4 ms with -q 100, for either server). Goal for podnet: p99 < 2 ms.
6. Memory: VmRSS of each server after loading, after the two passes over the names, after the
   two passes over the misses too (all 60,000 questions memoised) and at the end, and VmHWM
   (peak). Goal for podnet: RSS < 200 MB after serving all names.

Run (root is not required but is what the bench is run as; dnsmasq then drops to nobody):

    sudo PYTHONPATH=src .venv/bin/python bench/dns_server.py [--duration 10] [--json]

--json prints one JSON document instead of the Markdown tables; progress goes to stderr.
The default run takes about two and a half minutes. Every process started is killed in a finally.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))
_spec = importlib.util.spec_from_file_location("generate", HERE / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)

import dns.message  # noqa: E402
import dns.query  # noqa: E402
import yaml  # noqa: E402

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
DNSPERF = shutil.which("dnsperf") or "/usr/bin/dnsperf"
DIG = shutil.which("dig") or "/usr/bin/dig"
ZONE = "cluster.local"
SERVER_CORE, CLIENT_CORE = "0", "1"
CLIENTS, OUTSTANDING, LATENCY_OUTSTANDING = 4, 500, 100

COREFILE = f""".:53 {{
    errors
    kubernetes {ZONE} in-addr.arpa ip6.arpa {{
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"""


def log(msg: str) -> None:
    print(f"[bench/dns] {msg}", file=sys.stderr, flush=True)


# -- the cluster and the query files ------------------------------------------------------------

def write_manifests(out: Path, namespaces: int, services: int, replicas: int, nodes: int) -> Path:
    out.mkdir(parents=True)
    for n in range(namespaces):
        ns = f"ns-{n:03d}"
        docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                generate._deployment(ns, "web-0", replicas)]
        docs += [generate._service(ns, f"svc-{s:03d}", "web-0", "ClusterIP") for s in range(services)]
        with open(out / f"{ns}.yaml", "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
    config = out.parent / "cluster.yaml"
    config.write_text(generate.cluster_config(nodes=nodes))
    return config


def compute_cluster(manifests: Path, config: Path):
    from podnet.cli.load import cluster_from_args

    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # compute's warnings (no image pulls etc.)
        return cluster_from_args([str(manifests)], str(config))


def service_records(cluster) -> dict[str, str]:
    """svc.ns.svc.cluster.local -> ClusterIP, for the generated namespaces only."""
    return {f"{s.name}.{s.namespace}.svc.{ZONE}": s.spec["clusterIP"]
            for s in cluster.of_kind("Service") if s.namespace.startswith("ns-")}


def search_misses(cluster, names: dict[str, str]) -> list[str]:
    """What a pod's resolver asks before (or instead of) the name that exists, per Service."""
    from podnet.semantics.dns import resolv_conf

    namespaces = sorted({n.split(".")[1] for n in names})
    pods = {}
    for pod in cluster.of_kind("Pod"):
        pods.setdefault(pod.namespace, pod)
    searches = {}
    for i, ns in enumerate(namespaces):
        client_ns = namespaces[(i + 1) % len(namespaces)]
        resolv = resolv_conf(pods[client_ns], cluster)
        searches[ns] = [s.rstrip(".") for s in resolv.searches]  # [C.svc.zone, svc.zone, zone]
    out = []
    for fqdn in names:
        svc, ns = fqdn.split(".")[:2]
        own, svc_zone, zone = searches[ns]
        short = f"{svc}.{ns}"
        out += [f"{short}.{own}", f"{short}.{zone}",
                f"{fqdn}.{own}", f"{fqdn}.{svc_zone}", f"{fqdn}.{zone}"]
    return out


def write_queries(path: Path, names: list[str], seed: int) -> Path:
    shuffled = list(names)
    random.Random(seed).shuffle(shuffled)
    path.write_text("".join(f"{n} A\n" for n in shuffled))
    return path


# -- processes ----------------------------------------------------------------------------------

def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (podnet binds both)."""
    for _ in range(100):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError("no free port")


def wait_answer(proc: subprocess.Popen, port: int, name: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=0.2)
            return time.monotonic()
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"no answer on 127.0.0.1:{port} within {timeout} s")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def core_busy() -> dict[str, tuple[float, float]]:
    """Per CPU since boot (/proc/stat): seconds of task time (user+nice+system) and of interrupt
    time (irq+softirq: on loopback, most of the network stack's work, charged to no process)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *ticks = line.split()
            v = [int(t) / os.sysconf("SC_CLK_TCK") for t in ticks]
            out[name[3:]] = (v[0] + v[1] + v[2], v[5] + v[6])
    return out


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def udp_rcvbuf_errors() -> int:
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RcvbufErrors")])


# -- dig and dnsperf ----------------------------------------------------------------------------

def dig(port: int, name: str) -> tuple[str, list[str]]:
    out = subprocess.run([DIG, "+time=2", "+tries=1", "-p", str(port), "@127.0.0.1", name, "A"],
                         capture_output=True, text=True, timeout=10).stdout
    status = re.search(r"status: (\w+)", out)
    answers = re.findall(r"^\S+\s+\d+\s+IN\s+A\s+(\S+)$", out, re.M)
    return (status.group(1) if status else "NO ANSWER"), answers


def check_servers(servers: dict[str, int], names: dict[str, str], misses: list[str], rng: random.Random) -> dict:
    sample_names = rng.sample(sorted(names), 20)
    sample_misses = rng.sample(misses, 20)
    problems = []
    for server, port in servers.items():
        for name in sample_names:
            status, answers = dig(port, name)
            if status != "NOERROR" or answers != [names[name]]:
                problems.append(f"{server}: {name}: {status} {answers}, want NOERROR [{names[name]}]")
        for name in sample_misses:
            status, answers = dig(port, name)
            if status != "NXDOMAIN" or answers:
                problems.append(f"{server}: {name}: {status} {answers}, want NXDOMAIN")
    outside = {server: dig(port, "example.com")[0] for server, port in servers.items()}
    if problems:
        raise RuntimeError("wrong answers before measuring:\n  " + "\n  ".join(problems))
    return {"names": len(sample_names), "misses": len(sample_misses), "outside_zone_rcode": outside}


STAT_PATTERNS = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "run_time": r"Run time \(s\):\s+([\d.]+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "avg_latency": r"Average Latency \(s\):\s+([\d.]+)",
    "max_latency": r"Average Latency \(s\):\s+[\d.]+ \(min [\d.]+, max ([\d.]+)\)",
    "request_size": r"Average packet size:\s+request (\d+)",
    "response_size": r"Average packet size:\s+request \d+, response (\d+)",
}


def dnsperf(port: int, queries: Path, out_dir: Path, tag: str, *, limit: float | None = None, passes: int | None = None,
            rate: float | None = None, verbose: bool = False, server_pid: int | None = None,
            outstanding: int | None = None) -> dict:
    cmd = ["taskset", "-c", CLIENT_CORE, DNSPERF, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
           "-c", str(CLIENTS), "-q", str(outstanding or OUTSTANDING), "-t", "5"]
    if limit is not None:
        cmd += ["-l", f"{limit:g}"]
    if passes is not None:
        cmd += ["-n", str(passes)]
    if rate is not None:
        cmd += ["-Q", str(int(rate))]
    if verbose:
        cmd += ["-v"]
    stdout_path = out_dir / f"dnsperf-{tag}.out"
    drops0, cpu0, t0 = udp_rcvbuf_errors(), cpu_seconds(server_pid) if server_pid else 0.0, time.monotonic()
    busy0, client0 = core_busy(), children_cpu()
    with open(stdout_path, "w") as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=(limit or 60) + 30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wall = time.monotonic() - t0
    drops = udp_rcvbuf_errors() - drops0
    cpu = (cpu_seconds(server_pid) - cpu0) / wall if server_pid else None
    client = (children_cpu() - client0) / wall
    busy = {core: ((t - busy0[core][0]) / wall, (i - busy0[core][1]) / wall) for core, (t, i) in core_busy().items()}
    # what else ran on the two cores (the bench shares the machine): task time not ours
    others = {"server_core": max(0.0, busy[SERVER_CORE][0] - (cpu or 0.0)),
              "client_core": max(0.0, busy[CLIENT_CORE][0] - client)}
    softirq = {"server_core": busy[SERVER_CORE][1], "client_core": busy[CLIENT_CORE][1]}
    if wall < 1.0:  # clock-tick accounting (10 ms) and dnsperf's own start-up swamp a short run
        cpu = client = others = softirq = None
    text = stdout_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({proc.returncode}): {' '.join(cmd)}\n{text[-2000:]}")
    result: dict = {"command": " ".join(cmd[3:]), "kernel_rcvbuf_drops": drops, "server_cpu": cpu,
                    "dnsperf_cpu": client, "others_cpu": others, "softirq": softirq}
    for key, pattern in STAT_PATTERNS.items():
        m = re.search(pattern, text)
        result[key] = float(m.group(1)) if m else None
    m = re.search(r"Response codes:\s+(.*)", text)
    result["rcodes"] = {code: int(n) for code, n in re.findall(r"(\w+) (\d+) \(", m.group(1))} if m else {}
    if verbose:
        latencies = []
        timeouts = 0
        for line in text.splitlines():
            if line.startswith("> "):
                parts = line.split()
                if parts[1] == "T":
                    timeouts += 1
                else:
                    latencies.append(float(parts[-1]))
        latencies.sort()

        def pct(p: float) -> float | None:
            return latencies[min(len(latencies) - 1, int(len(latencies) * p))] if latencies else None

        result.update(p50=pct(0.50), p99=pct(0.99), p999=pct(0.999), timeouts=timeouts, samples=len(latencies))
    stdout_path.unlink()  # -v output is large
    return result


def expect_rcode(result: dict, rcode: str, what: str) -> None:
    other = {k: v for k, v in result["rcodes"].items() if k != rcode}
    if other or not result["rcodes"]:
        raise RuntimeError(f"{what}: expected only {rcode}, got {result['rcodes']}")


# -- the bench ----------------------------------------------------------------------------------

def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="podnet-bench-dns-"))
    procs: list[subprocess.Popen] = []
    report: dict = {"config": {"namespaces": args.namespaces, "services_per_namespace": args.services,
                               "duration": args.duration, "clients": CLIENTS, "outstanding": OUTSTANDING,
                               "latency_outstanding": LATENCY_OUTSTANDING,
                               "server_core": SERVER_CORE, "dnsperf_core": CLIENT_CORE}}
    try:
        os.chmod(tmp, 0o755)  # dnsmasq reads its hosts file as nobody
        loadavg_start = Path("/proc/loadavg").read_text().split()[0]
        log("generating and computing the cluster")
        t0 = time.monotonic()
        config = write_manifests(tmp / "manifests", args.namespaces, args.services, replicas=2, nodes=4)
        cluster = compute_cluster(tmp / "manifests", config)
        names = service_records(cluster)
        misses = search_misses(cluster, names)
        report["cluster"] = {"services": len(cluster.of_kind("Service")), "pods": len(cluster.of_kind("Pod")),
                             "endpointslices": len(cluster.of_kind("EndpointSlice")),
                             "compute_seconds": round(time.monotonic() - t0, 2),
                             "names": len(names), "misses": len(misses)}
        del cluster
        files = {"names": write_queries(tmp / "names.txt", list(names), 1),
                 "misses": write_queries(tmp / "misses.txt", misses, 2)}
        hosts = tmp / "hosts"
        hosts.write_text("".join(f"{ip} {name}\n" for name, ip in names.items()))
        os.chmod(hosts, 0o644)
        (tmp / "Corefile").write_text(COREFILE)

        ports = {"podnet": free_port(), "dnsmasq": free_port()}
        while ports["dnsmasq"] == ports["podnet"]:
            ports["dnsmasq"] = free_port()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
        log(f"starting podnet on :{ports['podnet']} and dnsmasq on :{ports['dnsmasq']} (core {SERVER_CORE})")
        podnet_log = open(tmp / "podnet.log", "w")
        started = time.monotonic()
        podnet = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, sys.executable, "-m", "podnet.dns", "-conf", str(tmp / "Corefile"),
             "-dns.port", str(ports["podnet"]), "--host", "127.0.0.1", "-f", str(tmp / "manifests"),
             "--config", str(config)],
            stdout=podnet_log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        procs.append(podnet)
        dnsmasq = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, DNSMASQ, "-k", "-C", "/dev/null", "--no-resolv", "--no-hosts",
             f"--addn-hosts={hosts}", f"--port={ports['dnsmasq']}", "--listen-address=127.0.0.1",
             "--bind-interfaces", f"--pid-file={tmp / 'dnsmasq.pid'}", "--cache-size=10000",
             f"--local=/{ZONE}/", "--local-ttl=30", "--log-facility=-"],
            stdout=open(tmp / "dnsmasq.log", "w"), stderr=subprocess.STDOUT)
        procs.append(dnsmasq)
        pids = {"podnet": podnet.pid, "dnsmasq": dnsmasq.pid}  # taskset execs: these are the servers
        probe = f"kubernetes.default.svc.{ZONE}"  # not in the query files: the memo stays cold for them
        ready = wait_answer(podnet, ports["podnet"], probe, 120)
        wait_answer(dnsmasq, ports["dnsmasq"], probe, 30)
        mem: dict = {s: {"loaded": proc_status(pid)["VmRSS"]} for s, pid in pids.items()}
        report["startup_seconds"] = round(ready - started, 2)

        log("checking answers with dig")
        report["check"] = check_servers(ports, names, misses, random.Random(7))

        log("cold and second passes")
        passes: dict = {}
        for file in ("names", "misses"):
            want = "NOERROR" if file == "names" else "NXDOMAIN"
            for server in ("podnet", "dnsmasq"):
                for which in ("cold", "2nd pass"):
                    r = dnsperf(ports[server], files[file], tmp, f"{server}-{file}-{which}", passes=1, verbose=True,
                                server_pid=pids[server])
                    expect_rcode(r, want, f"{server} {file} {which}")
                    passes[(file, server, which)] = r
            if file == "names":
                for s, pid in pids.items():
                    mem[s]["after_names"] = proc_status(pid)["VmRSS"]
        for s, pid in pids.items():
            mem[s]["after_all_questions"] = proc_status(pid)["VmRSS"]

        log(f"maximum QPS ({args.duration:g} s each)")
        peak: dict = {}
        for file in ("names", "misses"):
            want = "NOERROR" if file == "names" else "NXDOMAIN"
            for server in ("podnet", "dnsmasq"):
                r = dnsperf(ports[server], files[file], tmp, f"{server}-{file}-max", limit=args.duration,
                            server_pid=pids[server])
                expect_rcode(r, want, f"{server} {file} max")
                peak[(file, server)] = r

        log("latency at 80% of podnet's maximum")
        latency: dict = {}
        for file in ("names", "misses"):
            want = "NOERROR" if file == "names" else "NXDOMAIN"
            rate = 0.8 * peak[(file, "podnet")]["qps"]
            for server in ("podnet", "dnsmasq"):
                r = dnsperf(ports[server], files[file], tmp, f"{server}-{file}-rate", limit=args.duration, rate=rate,
                            verbose=True, server_pid=pids[server], outstanding=LATENCY_OUTSTANDING)
                expect_rcode(r, want, f"{server} {file} at {rate:.0f} qps")
                r["rate"] = int(rate)
                latency[(file, server)] = r

        for s, pid in pids.items():
            status = proc_status(pid)
            mem[s]["end"] = status["VmRSS"]
            mem[s]["peak"] = status["VmHWM"]
        for server, proc in (("podnet", podnet), ("dnsmasq", dnsmasq)):
            if proc.poll() is not None:
                raise RuntimeError(f"{server} exited during the bench ({proc.returncode})")
        podnet_log.flush()
        server_log = (tmp / "podnet.log").read_text().splitlines()
        report["podnet_log"] = [line for line in server_log if "CoreDNS" not in line and not line.startswith(".:")][:20]
        report["podnet_log_lines"] = len(server_log)
        report["passes"] = [{"file": f, "server": s, "pass": w, **r} for (f, s, w), r in passes.items()]
        report["max_qps"] = [{"file": f, "server": s, **r} for (f, s), r in peak.items()]
        report["latency"] = [{"file": f, "server": s, **r} for (f, s), r in latency.items()]
        report["memory_kb"] = mem
        report["ratios"] = {f: peak[(f, "podnet")]["qps"] / peak[(f, "dnsmasq")]["qps"] for f in ("names", "misses")}
        report["cpu_ratios"] = {f: (peak[(f, "podnet")]["qps"] / peak[(f, "podnet")]["server_cpu"])
                                / (peak[(f, "dnsmasq")]["qps"] / peak[(f, "dnsmasq")]["server_cpu"])
                                for f in ("names", "misses")}
        report["loadavg"] = [loadavg_start, Path("/proc/loadavg").read_text().split()[0]]
        return report
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.0f}%"


def others(r: dict) -> str:
    if r["others_cpu"] is None:
        return "-"
    return f"{pct(r['others_cpu']['server_core'])} / {pct(r['others_cpu']['client_core'])}"


def irq(r: dict) -> str:
    if r["softirq"] is None:
        return "-"
    return f"{pct(r['softirq']['server_core'])} / {pct(r['softirq']['client_core'])}"


def markdown(report: dict) -> str:
    c, cl = report["config"], report["cluster"]
    out = [f"## podnet DNS vs dnsmasq: {cl['names']:,} Service names, {cl['misses']:,} search-list misses",
           "",
           f"Cluster: {cl['services']:,} Services, {cl['endpointslices']:,} EndpointSlices, {cl['pods']} pods "
           f"(computed in {cl['compute_seconds']} s by the bench). Servers on core {c['server_core']}, dnsperf "
           f"on core {c['dnsperf_core']}. podnet startup (exec to first answer, computing the cluster itself): "
           f"{report['startup_seconds']} s. dig check: {report['check']['names']} names + "
           f"{report['check']['misses']} misses correct on both; outside the zone (example.com): "
           + ", ".join(f"{s} {r}" for s, r in report["check"]["outside_zone_rcode"].items())
           + f". Load average at start / end: {report['loadavg'][0]} / {report['loadavg'][1]}.",
           "",
           "CPU columns, as a share of one core over the run: \"server CPU\" = the server's utime+stime; "
           "\"softirq\" = irq+softirq time on the server's / dnsperf's core (the loopback network stack, "
           "charged to no process); \"others\" = task time on the server's / dnsperf's core of processes "
           "not in this bench (the machine may be shared). \"-\" = run too short to account.",
           "",
           "### Maximum QPS (warm)", "",
           f"`dnsperf -c {c['clients']} -q {c['outstanding']} -l {c['duration']:g}`. Ratio = podnet/dnsmasq. "
           "When the server CPU is well under 100% the client (one core) is the limit, so QPS per server "
           "CPU-second is the fairer comparison.",
           "",
           "| queries | server | QPS | ratio | QPS per server CPU-s | ratio | lost | kernel rcvbuf drops "
           "| server CPU | softirq | dnsperf CPU | others | avg latency ms | response bytes | rcodes |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["max_qps"]:
        ratio = f"{report['ratios'][r['file']]:.2f}" if r["server"] == "podnet" else ""
        eff_ratio = f"{report['cpu_ratios'][r['file']]:.2f}" if r["server"] == "podnet" else ""
        out.append(f"| {r['file']} | {r['server']} | {r['qps']:,.0f} | {ratio} | {r['qps'] / r['server_cpu']:,.0f} | "
                   f"{eff_ratio} | {r['lost']:.0f} | {r['kernel_rcvbuf_drops']} | {pct(r['server_cpu'])} | "
                   f"{irq(r)} | {pct(r['dnsperf_cpu'])} | {others(r)} | {ms(r['avg_latency'])} | {r['response_size']:.0f} | "
                   f"{', '.join(f'{k} {v:,}' for k, v in r['rcodes'].items())} |")
    out += ["", "### Latency at 80% of podnet's warm maximum", "",
            f"`dnsperf -Q RATE -c {c['clients']} -q {c['latency_outstanding']} -l {c['duration']:g} -v`, percentiles "
            "from the per-query lines (warm: every question memoised). Goal: podnet p99 < 2 ms.", "",
            "| queries | server | rate asked | QPS | p50 ms | p99 ms | p99.9 ms | max ms | lost | server CPU | softirq "
            "| others |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["latency"]:
        out.append(f"| {r['file']} | {r['server']} | {r['rate']:,} | {r['qps']:,.0f} | {ms(r['p50'])} | {ms(r['p99'])} | "
                   f"{ms(r['p999'])} | {ms(r['max_latency'])} | {r['lost']:.0f} | {pct(r['server_cpu'])} | {irq(r)} | "
                   f"{others(r)} |")
    out += ["", "### Cold pass vs 2nd pass", "",
            f"`dnsperf -n 1 -c {c['clients']} -q {c['outstanding']} -v`: one pass over the file as fast as it goes. "
            "cold = first time the server sees these questions (podnet computes and memoises each answer); "
            "2nd pass = the same file again right after (podnet answers from the memo). dnsmasq has no memo. "
            "Latencies include queueing behind up to 500 outstanding queries.", "",
            "| queries | server | pass | queries | seconds | QPS | p50 ms | p99 ms | max ms | lost | server CPU "
            "| softirq | others |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["passes"]:
        out.append(f"| {r['file']} | {r['server']} | {r['pass']} | {r['sent']:,.0f} | {r['run_time']:.3f} | "
                   f"{r['qps']:,.0f} | {ms(r['p50'])} | {ms(r['p99'])} | {ms(r['max_latency'])} | {r['lost']:.0f} | "
                   f"{pct(r['server_cpu'])} | {irq(r)} | {others(r)} |")
    out += ["", "### Memory (RSS, MB)", "",
            "| server | loaded | after the names (2 passes) | after names + misses (2 passes each) | end | peak (VmHWM) |",
            "|---|---:|---:|---:|---:|---:|"]
    for server, m in report["memory_kb"].items():
        out.append(f"| {server} | {m['loaded'] / 1024:.1f} | {m['after_names'] / 1024:.1f} | "
                   f"{m['after_all_questions'] / 1024:.1f} | "
                   f"{m['end'] / 1024:.1f} | {m['peak'] / 1024:.1f} |")
    if report["podnet_log"]:
        out += ["", f"podnet's log ({report['podnet_log_lines']} lines), first lines:", "",
                *(f"    {line}" for line in report["podnet_log"])]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--services", type=int, default=100, help="Services per namespace")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per timed dnsperf run")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = parser.parse_args()
    for tool in (DNSMASQ, DNSPERF, DIG, shutil.which("taskset")):
        if not tool or not os.path.exists(tool):
            print(f"missing tool: {tool}", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # through run()'s finally
    report = run(args)
    report["config"]["names"] = f"{args.namespaces}x{args.services}"
    print(json.dumps(report, indent=2) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
