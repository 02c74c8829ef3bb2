"""podnet up / down: a cluster's life, through its supervisor (exec, logs, apply and delete, which
only talk to a running one, are in podnet.cli.running and do not load the data plane)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from rich.console import Console

from podnet.api.loader import LoadedFiles
from podnet.api.store import admit, load_store
from podnet.cli import upwait
from podnet.cli.kubeconfig import context_after_up, remove_context
from podnet.cli.running import require_root
from podnet.config import load_config, parse_config
from podnet.controlplane import compute
from podnet.errors import PodnetError, UsageError
from podnet.host.control import pick_cluster, running_clusters, send
from podnet.host.layout import NETNS_DIR, STATE_ROOT, ClusterLayout, valid_cluster_name
from podnet.linux import teardown
from podnet.linux.adopted import start_time
from podnet.linux.supervisor import apiserver
from podnet.linux.supervisor.state import ClusterState
from podnet.linux.supervisor.watchdog import RECORD, watchdog_pid

UP_TIMEOUT = 180.0


# ---- up -------------------------------------------------------------------------------------

UP_EXAMPLES = """examples:
  sudo podnet up -f examples/shop                      # the bundled example as a real 3-node cluster
  sudo podnet up -f examples/shop --wait 60s           # and every pod Ready within 60 s (exit 1 otherwise)
  sudo podnet up -f app/ --config examples/cluster-hostgw.yaml --name demo
  sudo podnet get pods -o wide                          # then talk to it
  sudo podnet down

By default `up` returns once the cluster is usable: CoreDNS and the ingress controller Ready,
a Service name resolving through the cluster DNS from every node, the Services programmed on
every node, and every other pod Ready, failed a readiness check or with its first readiness
probe more than 5 s away (it lists those, with why).
Ctrl-C during `up` removes what it made.
"""


def add_up(sub) -> None:
    p = sub.add_parser("up", help="build and start a real cluster in network namespaces (root)",
                       epilog=UP_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--filename", action="append", metavar="FILE|DIR|-", default=[])
    p.add_argument("--config", metavar="CLUSTER.yaml")
    p.add_argument("--name", help="cluster name (default: the config's name, podnet)")
    p.add_argument("--wait", metavar="DURATION", type=upwait.parse_duration,
                   help="also wait for every pod to be Ready, at most DURATION (60s, 5m); exit 1 if one is not "
                        "(the cluster stays up)")
    p.add_argument("--timeout", type=float, default=UP_TIMEOUT,
                   help="seconds to wait for a usable cluster without --wait (default %(default).0f)")


def run_up(args) -> int:
    require_root("podnet up")
    config = load_config(args.config)
    name = args.name or config.name
    if not valid_cluster_name(name):
        raise UsageError(f"--name {name!r}: a cluster name is a lowercase DNS label of at most 40 characters")
    layout = ClusterLayout(name)
    running = name in running_clusters()
    if running and asks_restart(args, layout):
        # what a restart would give is there (its watchdog, or an earlier `up`, got there first)
        print(f"cluster {name} runs: its supervisor answers (`podnet get pods -A --name {name}`)")
        return 0
    if not running and (layout.state_dir / RECORD).exists():
        if not asks_restart(args, layout):
            raise PodnetError(f"cluster {name} exists and its supervisor is not running: `podnet up --name {name}` "
                              "without -f or --config restarts it as it was (then `podnet apply` changes it)")
        return _restart(args, name, layout)
    if running or _leftovers(layout):
        raise PodnetError(_exists(name, layout, running))
    store = load_store(args.filename) if args.filename else load_store_empty()
    config_doc = config.to_dict()
    config_doc["name"] = name
    config = parse_config(yaml.safe_dump(config_doc), "cluster config")
    cluster = compute(store, config)  # validates everything before anything is built
    for warning in cluster.warnings:
        print(warning, file=sys.stderr)
    state = ClusterState(layout)
    try:
        state.create(config_doc, [o.body for o in sorted(store.objects.values(), key=lambda o: o.key)])
    except FileExistsError:  # another `up` of this name got there first, a moment ago
        raise PodnetError(f"a cluster named {name} already exists (another `podnet up` is making it): use another "
                          f"--name, or remove it with `podnet down --name {name}`") from None
    spawned: list[subprocess.Popen] = []
    try:
        return _start_and_wait(args, name, layout, state, cluster, config, spawned)
    except KeyboardInterrupt:
        print(f"\ninterrupted: removing cluster {name}", file=sys.stderr)
        supervisor = spawned[0] if spawned else None
        if supervisor is not None and supervisor.poll() is None:
            if state.is_ready():  # built: it removes what it made when asked
                try:
                    send(layout.socket_path, {"op": "down"}, timeout=10)
                    supervisor.wait(timeout=60)
                except (PodnetError, OSError, ValueError, subprocess.TimeoutExpired):
                    pass
            if supervisor.poll() is None:  # still building (not answering yet), or stuck: stop it there
                os.killpg(supervisor.pid, signal.SIGKILL)  # the watchdog and the supervisor, its group
                supervisor.wait()
        _down(name)  # whatever is left, by name
        print(f"cluster {name} removed", file=sys.stderr)
        return 130


def asks_restart(args, layout: ClusterLayout) -> bool:
    """`podnet up --name NAME` without -f or --config, of a cluster that has a record: the
    command that restarts its supervisor as it was."""
    return not args.filename and not args.config and (layout.state_dir / RECORD).exists()


def _exists(name: str, layout: ClusterLayout, running: bool) -> str:
    """What a second `up` says of a cluster that is there, by what state it is in, with the
    command that gets a working cluster (kind's "node(s) already exist", plus what to do)."""
    down = f"`podnet down --name {name}`"
    if running:
        return (f"a cluster named {name} already exists and runs (`podnet get pods -A --name {name}`): use another "
                f"--name, or remove it with {down}")
    watchdog = watchdog_pid(ClusterState(layout))
    if watchdog is not None:  # an interrupted `up`'s supervisor is still building it
        return (f"a cluster named {name} already exists and is being built (its watchdog is pid {watchdog}, started "
                f"by an earlier `podnet up`): it answers once built (`podnet get pods -A --name {name}`), or remove "
                f"it with {down}")
    return (f"a cluster named {name} already exists but nothing runs it (its `podnet up` was interrupted before the "
            f"cluster was up): remove it with {down}, then run `podnet up` again")


def _spawn_supervisor(name: str, state: ClusterState, *extra: str) -> subprocess.Popen:
    """The supervisor under its watchdog (podnet.linux.supervisor.watchdog), which restarts it
    should it die; both in a session of their own, one process group."""
    with open(state.out_path, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "podnet.linux.supervisor.watchdog", "--name", name, *extra],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})


def _restart(args, name: str, layout: ClusterLayout) -> int:
    """A cluster whose supervisor died: start one that re-adopts the running pods (none is
    restarted, no address changes) and reconciles what changed meanwhile. If it cannot, the
    pods are left as they are, and so is everything else (`podnet down` removes them)."""
    state = ClusterState(layout)
    state.take_failure()  # a note left by an earlier supervisor is not this one's
    started = time.monotonic()
    # a watchdog that runs is restarting it already: only wait for it
    supervisor = None if watchdog_pid(state) else _spawn_supervisor(name, state, "--adopt")
    deadline = started + args.timeout
    while True:
        if supervisor is not None and supervisor.poll() is not None:
            reason = state.take_failure() or f"it exited ({supervisor.returncode}); see {state.log_path}"
            raise PodnetError(f"restarting the supervisor of cluster {name} failed: {reason}; the pods were left "
                              f"as they are (remove them with `podnet down --name {name}`)")
        try:
            answer = send(layout.socket_path, {"op": "ping"}, timeout=10)
            break
        except PodnetError:
            if time.monotonic() >= deadline:
                raise PodnetError(f"the restarted supervisor of cluster {name} did not answer within "
                                  f"{args.timeout:.0f}s; see {state.log_path}") from None
            time.sleep(0.02)
    print(f"cluster {name}: supervisor restarted, {answer.get('adopted', 0)} running pods re-adopted "
          f"({time.monotonic() - started:.2f}s to answering)")
    context_after_up(layout)
    return 0


def _start_and_wait(args, name, layout, state, cluster, config, spawned: list) -> int:
    started = time.monotonic()
    supervisor = _spawn_supervisor(name, state)
    spawned.append(supervisor)

    def booted() -> bool:
        if supervisor.poll() is not None:
            reason = state.take_failure() or "the supervisor exited"
            _down(name)
            raise PodnetError(f"cluster {name} failed to start: {reason}; everything it made was removed")
        return state.is_ready()

    def poll() -> dict | None:
        if supervisor.poll() is not None:
            booted()  # raises, with the reason
        try:
            return send(layout.socket_path, {"op": "status"}, timeout=10)
        except PodnetError:
            return None

    dns_service = cluster.get("Service", "kube-system", "kube-dns")
    check_dns = None
    if dns_service is not None and dns_service.spec.get("clusterIP"):
        server = dns_service.spec["clusterIP"]
        query = f"kube-dns.kube-system.svc.{config.networking.dns_domain}."
        netnses = [layout.node_netns(node.name) for node in cluster.nodes]

        def check_dns() -> bool:
            return all(upwait.dns_answers(netns, server, query) for netns in netnses)

    progress = upwait.Progress(len(cluster.nodes), started=started)
    console = Console(stderr=True)
    outcome = upwait.wait_until_usable(progress, booted, poll, check_dns, wait=args.wait, timeout=args.timeout,
                                       console=console)
    if not console.is_terminal:
        console.line()  # the last frame ends without one off a terminal
    status = outcome.status
    flag = "" if name == "podnet" else f" --name {name}"
    if outcome.timed_out and not (args.wait is not None and outcome.usable):
        waiting = upwait.not_ready_lines(status)
        limit = args.wait if args.wait is not None else args.timeout
        print(f"cluster {name} is not usable after {limit:.0f}s; it stays up: see {state.log_path}, "
              f"or remove it with `podnet down{flag}`", file=sys.stderr)
        for line in waiting:
            print(f"  {line}", file=sys.stderr)
        return 1
    pods = [p for p in status["pods"] if upwait.should_run(p)]
    ready = sum(p["ready"] for p in pods)
    elapsed = time.monotonic() - started
    print(f"cluster {name} is up: {len(cluster.nodes)} nodes, {ready}/{len(pods)} pods Ready ({elapsed:.1f}s)")
    context_after_up(layout)
    _print_reach(cluster, pods, flag)
    not_ready = upwait.not_ready_lines(status)
    if not_ready:
        print("not Ready:")
        for line in not_ready:
            print(f"  {line}")
    if args.wait is not None and not outcome.all_ready:
        print(f"not every pod was Ready within {args.wait:g}s (--wait); the cluster stays up", file=sys.stderr)
        return 1
    return 0


def _print_reach(cluster, pods, flag: str) -> None:
    """How to reach things: a workload pod, a Service by name from it, a node, the LAN."""
    print(f"  podnet get pods -A -o wide{flag}")
    workload = [p for p in pods if not upwait.is_system(p)]

    def service_of(ref: str):  # a Service with a ClusterIP in the pod's namespace, to reach by name
        return next((s for s in cluster.of_kind("Service", ref.split("/", 1)[0])
                     if s.spec.get("clusterIP") not in (None, "None") and s.spec.get("ports")), None)

    choices = [p["pod"] for p in workload if p["ready"]] or [p["pod"] for p in workload]
    example = next((ref for ref in choices if service_of(ref) is not None), choices[0] if choices else None)
    if example:
        service = service_of(example)
        if service is not None:
            print(f"  podnet exec {example}{flag} -- getent hosts {service.name}")
            print(f"  podnet dig {service.name} --from {example}{flag}")
            print(f"  podnet trace {example} {service.name}{flag}")
        else:
            print(f"  podnet exec {example}{flag} -- cat /etc/resolv.conf")
    print(f"  podnet exec node/{cluster.nodes[0].name}{flag} -- ip route")
    print(f"  podnet exec external{flag} -- ping -c1 {cluster.nodes[0].ip}")
    print(f"  podnet down{flag}")


def load_store_empty():
    return admit(LoadedFiles())


def _leftovers(layout) -> bool:
    return (layout.state_dir.exists() or bool(layout.etc_dirs())
            or (NETNS_DIR.is_dir() and any(layout.owns_netns(p.name) for p in NETNS_DIR.iterdir())))


# ---- down -----------------------------------------------------------------------------------

DOWN_EXAMPLES = """examples:
  sudo podnet down                 # the running cluster (or the one named podnet)
  sudo podnet down --name demo
  sudo podnet down --all           # every podnet cluster on this host, also after crashes
"""


def add_down(sub) -> None:
    p = sub.add_parser("down", help="remove everything a cluster made (root)", epilog=DOWN_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name")
    p.add_argument("--all", action="store_true", help="every podnet cluster")


def run_down(args) -> int:
    require_root("podnet down")
    if args.all:
        names = set()
        if STATE_ROOT.is_dir():
            names |= {p.name for p in STATE_ROOT.iterdir() if p.is_dir()}
        for directory in (NETNS_DIR, Path("/etc/netns")):
            if directory.is_dir():
                names |= {c for p in directory.iterdir() if (c := ClusterLayout.cluster_of_netns(p.name))}

        for name in sorted(names):
            _down(name)
        teardown.sweep_all()
        print(f"removed {len(names)} cluster{'s' if len(names) != 1 else ''}" + (f": {', '.join(sorted(names))}" if names else ""))
        return 0
    layout = pick_cluster(args.name)
    if not _leftovers(layout):
        print(f"no cluster named {layout.cluster}: nothing to remove")
        return 0
    _down(layout.cluster)
    print(f"cluster {layout.cluster} removed")
    return 0


def _down(name: str) -> None:
    """Ask the supervisor to stop; whatever it did not remove (it may be dead), remove by name."""
    layout = ClusterLayout(name)
    _stop_watchdog(ClusterState(layout))
    try:
        pid = send(layout.socket_path, {"op": "ping"}, timeout=5).get("pid")
        send(layout.socket_path, {"op": "down"}, timeout=10)
        deadline = time.monotonic() + 60
        while pid and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid and Path(f"/proc/{pid}").exists():
            os.kill(pid, 9)  # it did not finish in time: what it left is removed below
    except (PodnetError, OSError, ValueError):
        pass  # no supervisor (killed, crashed): teardown by name below
    apiserver.stop_recorded(layout)  # not in any of the namespaces: found by its record
    teardown.teardown(name)
    remove_context(name)
    for path in layout.etc_dirs():
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(layout.state_dir, ignore_errors=True)


def _stop_watchdog(state: ClusterState, timeout: float = 60.0) -> None:
    """Stop the cluster's watchdog first, so it restarts nothing: it passes SIGTERM to the
    supervisor (which removes the cluster) and ends with it; after `timeout` seconds both are
    killed, and the teardown by name removes what is left."""
    pid = watchdog_pid(state)
    if pid is None:
        return
    started = start_time(pid)  # the process itself: its pid file goes with the supervisor's teardown
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while start_time(pid) == started and time.monotonic() < deadline:
        time.sleep(0.05)
    if start_time(pid) == started:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
