"""podnet up / down: a cluster's life, through its supervisor (exec, logs, apply and delete, which
only talk to a running one, are in podnet.cli.running and do not load the data plane)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from podnet.api.loader import LoadedFiles
from podnet.api.store import admit, load_store
from podnet.cli.running import require_root
from podnet.config import load_config, parse_config
from podnet.controlplane import compute
from podnet.errors import PodnetError, UsageError
from podnet.host.control import pick_cluster, running_clusters, send
from podnet.host.layout import NETNS_DIR, STATE_ROOT, ClusterLayout, valid_cluster_name
from podnet.linux import teardown
from podnet.linux.supervisor.state import ClusterState

UP_TIMEOUT = 180.0


# ---- up -------------------------------------------------------------------------------------

UP_EXAMPLES = """examples:
  sudo podnet up -f examples/shop                      # the bundled example as a real 3-node cluster
  sudo podnet up -f app/ --config examples/cluster-hostgw.yaml --name demo
  sudo podnet get pods -o wide                          # then talk to it
  sudo podnet down
"""


def add_up(sub) -> None:
    p = sub.add_parser("up", help="build and start a real cluster in network namespaces (root)",
                       epilog=UP_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--filename", action="append", metavar="FILE|DIR|-", default=[])
    p.add_argument("--config", metavar="CLUSTER.yaml")
    p.add_argument("--name", help="cluster name (default: the config's name, podnet)")
    p.add_argument("--timeout", type=float, default=UP_TIMEOUT, help="seconds to wait for every pod to run")


def run_up(args) -> int:
    require_root("podnet up")
    config = load_config(args.config)
    name = args.name or config.name
    if not valid_cluster_name(name):
        raise UsageError(f"--name {name!r}: a cluster name is a lowercase DNS label of at most 40 characters")
    layout = ClusterLayout(name)
    if name in running_clusters() or _leftovers(layout):
        raise PodnetError(f"a cluster named {name} already exists: use another --name, or remove it with "
                          f"`podnet down --name {name}`")
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
    except FileExistsError:
        raise PodnetError(f"a cluster named {name} already exists: use another --name, or remove it with "
                          f"`podnet down --name {name}`") from None
    started = time.monotonic()
    with open(state.out_path, "ab") as out:
        supervisor = subprocess.Popen([sys.executable, "-m", "podnet.linux.supervisor", "--name", name],
                                      stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                      env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    deadline = started + args.timeout
    while time.monotonic() < deadline:
        if supervisor.poll() is not None:
            reason = state.take_failure() or "the supervisor exited"
            _down(name)
            raise PodnetError(f"cluster {name} failed to start: {reason}; everything it made was removed")
        if state.is_ready():
            try:
                status = send(layout.socket_path, {"op": "status"}, timeout=10)
                if status.get("ready"):
                    break
            except PodnetError:
                pass
        time.sleep(0.1)
    else:
        waiting = [p["pod"] for p in _status_or_empty(layout)["pods"] if p["phase"] == "Running" and not p["running"]]
        raise PodnetError(f"cluster {name} did not get every pod running within {args.timeout:.0f}s"
                          + (f" (waiting for {', '.join(waiting[:5])})" if waiting else "")
                          + f"; see {state.log_path}, or remove it with `podnet down --name {name}`")
    pods = [p for p in status["pods"] if p["phase"] == "Running"]
    elapsed = time.monotonic() - started
    print(f"cluster {name} is up: {len(cluster.nodes)} nodes, {len(pods)} pods running ({elapsed:.1f}s)")
    flag = "" if name == "podnet" else f" --name {name}"
    print(f"  podnet get pods -A -o wide{flag}")
    example = next((p["pod"] for p in pods if not p["pod"].startswith("kube-system/")), pods[0]["pod"] if pods else None)
    if example:
        print(f"  podnet exec {example}{flag} -- cat /etc/resolv.conf")
    print(f"  podnet exec node/{cluster.nodes[0].name}{flag} -- ip route")
    print(f"  podnet exec external{flag} -- ping -c1 {cluster.nodes[0].ip}")
    print(f"  podnet down{flag}")
    return 0


def _status_or_empty(layout) -> dict:
    try:
        return send(layout.socket_path, {"op": "status"}, timeout=5)
    except (PodnetError, OSError, ValueError):
        return {"pods": []}


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
    teardown.teardown(name)
    for path in layout.etc_dirs():
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(layout.state_dir, ignore_errors=True)
