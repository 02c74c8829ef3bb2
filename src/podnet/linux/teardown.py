"""Remove everything of a cluster, knowing nothing but its name; and say what exists.

Everything a cluster creates carries its name (layout.py): namespaces `podnet-<cluster>-…`
under /run/netns, files under /run/podnet/<cluster>. So `teardown` works the same after a
clean stop and after the supervisor was SIGKILLed: it finds the cluster's namespaces by name,
kills the processes inside them (found through /proc/PID/ns/net), unmounts and removes the
namespaces — their links, addresses and routes go with them — and removes the state
directory. Running it twice is harmless.

Which namespaces are a cluster's: the prefix `podnet-<cluster>.` followed by one of the
layout's kinds (lan, external, node-…, pod-…). Cluster names may contain dashes, so
`podnet-a-b-lan` fits both cluster `a` (…) and cluster `a-b`; a namespace that another known
cluster (one with a state directory) claims with a longer name, or has on its record of
namespaces, is left to that cluster.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from podnet.host import netns as _netns
from podnet.host.layout import NETNS_DIR, PREFIX, STATE_ROOT, ClusterLayout, valid_cluster_name
from podnet.linux import serviceaccount
from podnet.linux.netlink import NetnsState, Pyroute2Netlink

RECORD = "netns"  # in the state directory: every namespace the builder created, one a line
_KINDS = ("lan", "external")
_KIND_PREFIXES = ("node-", "pod-")


def _fits(cluster: str, name: str) -> bool:
    layout = ClusterLayout(cluster)
    if not layout.owns_netns(name):
        return False
    rest = name[len(layout.prefix):]
    return rest in _KINDS or any(rest.startswith(p) and len(rest) > len(p) for p in _KIND_PREFIXES)


def known_clusters(state_root: Path = STATE_ROOT) -> list[str]:
    try:
        return sorted(p.name for p in state_root.iterdir() if p.is_dir() and valid_cluster_name(p.name))
    except FileNotFoundError:
        return []


def recorded_namespaces(cluster: str, state_root: Path = STATE_ROOT) -> list[str]:
    try:
        text = (state_root / cluster / RECORD).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted({line.strip() for line in text.splitlines() if line.strip()})


def record_namespace(cluster: str, name: str, state_root: Path | None = STATE_ROOT) -> None:
    """Written before the namespace is created, so a crash leaves a record of it."""
    if state_root is None:
        return
    directory = state_root / cluster
    directory.mkdir(parents=True, exist_ok=True)
    if name not in recorded_namespaces(cluster, state_root):
        with open(directory / RECORD, "a") as f:
            f.write(name + "\n")


def cluster_namespaces(cluster: str, names: Iterable[str], state_root: Path = STATE_ROOT) -> list[str]:
    """The namespaces among `names` that belong to the cluster."""
    others = [c for c in known_clusters(state_root) if c != cluster]
    theirs = {n for c in others for n in recorded_namespaces(c, state_root)}
    ours = set(recorded_namespaces(cluster, state_root))
    result = []
    for name in names:
        if not _fits(cluster, name):
            continue
        if name not in ours and (name in theirs or any(
                len(c) > len(cluster) and _fits(c, name) for c in others)):
            continue
        result.append(name)
    return sorted(result)


@dataclass(frozen=True)
class TeardownReport:
    cluster: str
    namespaces: tuple[str, ...]
    killed: tuple[int, ...]
    state_removed: bool

    @property
    def removed_anything(self) -> bool:
        return bool(self.namespaces or self.killed or self.state_removed)

    def summary(self) -> str:
        if not self.removed_anything:
            return f"cluster {self.cluster}: nothing to remove"
        return (f"cluster {self.cluster}: removed {len(self.namespaces)} namespaces, killed "
                f"{len(self.killed)} processes" + (", removed its state directory" if self.state_removed else ""))


def remove_namespaces(names: Iterable[str], netns_dir: Path = NETNS_DIR, grace: float = 0.5,
                      netlink=None) -> tuple[int, ...]:
    """Kill the processes in the namespaces, then unmount and remove them; the killed pids.
    With a netlink, through it (so it also closes its sockets there, which would otherwise
    keep the namespaces alive, unnamed)."""
    names = list(names)
    pids = [pid for found in _netns.pids_in_netns(names, netns_dir).values() for pid in found]
    killed = _netns.kill_pids(pids, grace) if pids else []
    for name in names:
        if netlink is not None:
            netlink.delete_namespace(name)
        else:
            _netns.delete_netns(name, netns_dir)
    return tuple(killed)


def teardown(cluster: str, *, netns_dir: Path = NETNS_DIR, state_root: Path = STATE_ROOT,
             grace: float = 0.5) -> TeardownReport:
    """Remove every namespace, process, mount and file of the cluster."""
    if not valid_cluster_name(cluster):
        raise ValueError(f"{cluster!r} is not a cluster name")
    state_dir = state_root / cluster
    names = cluster_namespaces(cluster, _netns.list_netns(netns_dir), state_root)
    killed = remove_namespaces(names, netns_dir, grace)
    state_removed = False
    if state_dir.exists():
        for point in _netns.mounts_under(state_dir):
            _netns.unmount(point)
        shutil.rmtree(state_dir, ignore_errors=False)
        state_removed = True
    # the last cluster gone: the empty /run/secrets podnet made for its pods' tokens goes too
    serviceaccount.release_mountpoint(known_clusters(state_root), state_root=state_root)
    return TeardownReport(cluster, tuple(names), killed, state_removed)


def sweep_all(*, netns_dir: Path = NETNS_DIR, state_root: Path = STATE_ROOT,
              grace: float = 0.5) -> list[TeardownReport]:
    """Tear down every podnet cluster: each one with a state directory, then any namespace
    named `podnet-…` that is left (a cluster whose state directory is gone)."""
    reports = [teardown(c, netns_dir=netns_dir, state_root=state_root, grace=grace)
               for c in known_clusters(state_root)]
    leftovers = [n for n in _netns.list_netns(netns_dir) if n.startswith(PREFIX)]
    if leftovers:
        killed = remove_namespaces(leftovers, netns_dir, grace)
        reports.append(TeardownReport("*", tuple(leftovers), killed, False))
    return reports


# ---- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterStatus:
    cluster: str
    namespaces: tuple[NetnsState, ...]
    processes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    @property
    def exists(self) -> bool:
        return bool(self.namespaces or self.files)

    def render(self) -> str:
        if not self.exists:
            return f"cluster {self.cluster}: nothing exists\n"
        lines = [f"cluster {self.cluster}: {len(self.namespaces)} namespaces"]
        for ns in self.namespaces:
            pids = self.processes.get(ns.name, ())
            lines.append("")
            lines.append(f"netns {ns.name}" + (f"  # processes {', '.join(map(str, pids))}" if pids else ""))
            lines.extend(f"  {line}" for line in ns.lines())
        if self.files:
            lines.append("")
            lines.append("files:")
            lines.extend(f"  {f}" for f in self.files)
        return "\n".join(lines) + "\n"


SYSCTLS_SHOWN = ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter",
                 "net.bridge.bridge-nf-call-iptables")


def status(cluster: str, netlink=None, *, netns_dir: Path = NETNS_DIR,
           state_root: Path = STATE_ROOT) -> ClusterStatus:
    """What exists of the cluster: its namespaces (what is in them), processes and files."""
    own = netlink is None
    netlink = netlink or Pyroute2Netlink(netns_dir)
    try:
        names = cluster_namespaces(cluster, netlink.namespaces(), state_root)
        states = []
        for name in names:
            try:
                states.append(netlink.observe(name, SYSCTLS_SHOWN))
            except OSError:  # a name without a namespace (half-made): still worth showing
                states.append(NetnsState(name))
        pids = _netns.pids_in_netns(names, netns_dir) if own else {}
    finally:
        if own:
            netlink.close()
    state_dir = state_root / cluster
    files = tuple(sorted(str(p) for p in state_dir.rglob("*"))) if state_dir.exists() else ()
    return ClusterStatus(cluster, tuple(states), {k: tuple(v) for k, v in pids.items()}, files)
