"""podnet probe: who can reach whom on a running cluster, measured by real connections."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys

from podnet.cli.load import running_cluster
from podnet.cli.matrix import _namespaces, write_table  # -n as matrix reads it
from podnet.cli.trace import render_text
from podnet.errors import PodnetError, UsageError
from podnet.host.control import pick_cluster
from podnet.linux.reach import Destination, Measurement, disagreements, exec_argvs, measure, predicted, sctp_unsupported
from podnet.semantics.networkpolicy import PolicyEngine, networked_pods
from podnet.semantics.policymatch import ICMP, PACKET_PROTOCOLS
from podnet.semantics.reachability import reachability
from podnet.sim.trace import Tracer

EXAMPLES = """examples:
  # every pod × every pod of namespaces x, y and z on TCP 80, by real connections
  sudo podnet probe -n x,y,z

  # two ports, UDP, as JSON (one document per port, a list when there are several)
  sudo podnet probe -p 80,81 --protocol UDP -o json --name mycluster

  # the simulator's matrix on the same live objects: every pair on which they differ, traced;
  # exit status 1 when there is one
  sudo podnet probe -n x,y,z -p 80 --compare
"""


# The table traces this many disagreements (a policy the kernel ignores can make hundreds) and
# lists the rest one line each; -o json has every trace.
TRACED_IN_TABLE = 10


def add_parser(sub) -> None:
    p = sub.add_parser("probe", help="reachability matrix of a running cluster, by real connections (root)",
                       description="From inside every pod, attempts a connection to every pod's IP and port\n"
                                   "(TCP: the handshake completes; UDP: a datagram gets a reply; ICMP: an echo\n"
                                   "request gets its reply, as ping's), all in parallel\n"
                                   "with a bounded time-out, and prints the matrix as `podnet matrix` does.\n"
                                   "SCTP: this kernel cannot open SCTP sockets, so probe refuses it and says so.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-p", "--port", action="append", metavar="PORTS",
                   help="destination ports, comma-separated or repeated (default 80; none for ICMP)")
    p.add_argument("--protocol", default="TCP", type=str.upper, choices=PACKET_PROTOCOLS,
                   help="TCP (default), UDP, SCTP, or ICMP (an echo request, as ping: no port)")
    p.add_argument("-n", "--namespace", action="append", metavar="NS",
                   help="only pods of this namespace (repeatable, or comma-separated); default: every namespace")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table",
                   help="output format (default table: '.' connected, 'X' not)")
    p.add_argument("--compare", action="store_true",
                   help="also compute the simulator's matrix on the same live state and list every disagreement "
                        "with its trace (exit status 1 when there is one)")
    p.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS",
                   help="time-out of one connection attempt (default 1)")
    p.add_argument("--attempts", type=int, default=2, metavar="N",
                   help="attempts per pair before it counts as not connected (default 2)")
    p.add_argument("--name", help="cluster name")


def _ports(values: list[str] | None) -> list[int]:
    ports = []
    for value in values or ["80"]:
        for word in value.split(","):
            if not word:
                continue
            if not word.isdigit() or not 1 <= int(word) <= 65535:
                raise UsageError(f"error: port {word} is not a port number (1-65535)")
            if int(word) not in ports:
                ports.append(int(word))
    return ports


def run(args) -> int:
    if args.protocol == ICMP and args.port:
        raise UsageError("error: ICMP has no ports: drop -p")
    ports = [0] if args.protocol == ICMP else _ports(args.port)
    if args.timeout <= 0 or args.attempts < 1:
        raise UsageError("error: --timeout must be positive and --attempts at least 1")
    if os.geteuid() != 0:
        raise PodnetError("podnet probe connects from inside the pods of a running cluster, which needs root. "
                          "Without root, the simulator's answer for the same manifests: podnet matrix -f FILE")
    if args.protocol == "SCTP" and (why := sctp_unsupported()):
        raise PodnetError(f"podnet probe --protocol SCTP: this kernel cannot open SCTP sockets ({why}), so no real "
                          "SCTP connection can be attempted. The simulator's answer: podnet matrix --protocol SCTP"
                          + (f" --name {args.name}" if args.name else ""))
    namespaces = _namespaces(args.namespace)
    cluster = running_cluster(args.name)
    engine = PolicyEngine(cluster)
    known = {ns.name for ns in cluster.of_kind("Namespace")}
    for ns in namespaces or []:
        if ns not in known:
            print(f"warning: namespace {ns} does not exist in cluster", file=sys.stderr)
    endpoints = networked_pods(engine, namespaces)
    argvs, missing = exec_argvs(pick_cluster(args.name), [ep.ref for ep in endpoints])
    if missing:
        print(f"note: {len(missing)} pod(s) not running, left out: {', '.join(sorted(missing)[:5])}"
              f"{' …' if len(missing) > 5 else ''}", file=sys.stderr)
    destinations = [Destination(ep.ref, str(ep.ip)) for ep in endpoints if ep.ref in argvs]
    if not destinations:
        where = f" in {', '.join(namespaces)}" if namespaces else ""
        raise PodnetError(f"podnet probe: no running pod with an IP{where}")
    found = measure(argvs, destinations, ports, args.protocol, args.timeout, args.attempts)
    documents, tables, disagreeing = [], [], False
    tracer = Tracer(cluster) if args.compare else None
    for port in ports:
        kernel = found.matrices[port]
        document = kernel.to_json()
        text = io.StringIO()
        write_table(kernel, text)
        text.write(_summary_line(found, port, args.timeout, args.attempts))
        if args.compare:
            sim = predicted(cluster, reachability(engine, port, args.protocol, namespaces), kernel.pods)
            differ = disagreements(cluster, kernel, sim, found.outcomes[port], tracer)
            disagreeing = disagreeing or bool(differ)
            document["disagreements"] = [d.to_json() for d in differ]
            _write_disagreements(differ, text)
        documents.append(document)
        tables.append(text.getvalue())
    if args.output == "json":
        json.dump(documents[0] if len(documents) == 1 else documents, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("\n".join(tables))
    return 1 if disagreeing else 0


def _summary_line(found: Measurement, port: int, timeout: float, attempts: int) -> str:
    counts = ", ".join(f"{n} {kind}" for kind, n in found.summary(port).items())
    return f"attempts: {counts} (time-out {timeout:g}s, up to {attempts} attempt(s) per pair)\n"


def _write_disagreements(differ, out) -> None:
    if not differ:
        out.write("the simulator agrees on every pair\n")
        return
    out.write(f"\n{len(differ)} disagreement(s) between the kernel and the simulator:\n")
    for d in differ[:TRACED_IN_TABLE]:
        out.write(f"\n{_headline(d)}; its trace:\n")
        trace = io.StringIO()
        render_text(d.trace, trace)
        out.write("".join(f"    {line}".rstrip() + "\n" for line in trace.getvalue().splitlines()))
    if len(differ) > TRACED_IN_TABLE:
        out.write(f"\nand {len(differ) - TRACED_IN_TABLE} more (-o json traces every one):\n")
        out.write("".join(f"{_headline(d)}\n" for d in differ[TRACED_IN_TABLE:]))


def _headline(d) -> str:
    return (f"{d.source} -> {d.destination}: kernel {'connected' if d.kernel else d.outcome}, "
            f"simulator {'allows' if d.sim else 'blocks'}")
