"""Make the kernel match a NetworkPlan: all of it, or nothing.

    report = build(plan)                   # a new cluster; refuses if the name is in use
    report = build(plan, reconcile=True)   # bring an existing cluster in line; no-op if it is

How: create the namespaces that are missing (each one recorded in the state directory first,
so `teardown` finds it even after a crash), observe every namespace, compute the changes
(diff.py), apply them one batch per namespace and phase, then observe again and require that
nothing is left to change — so a second build is provably a no-op. If any step fails, what
this build made is undone: a new cluster is removed entirely; an existing one is put back
to what was observed before (as far as the kernel allows), and the error is raised.

Pods are not built here. Each node's plan lists its pods (NodePlan.pods) with what a CNI
plugin needs; pass `pods=` an object with `attach(node, pod)` (a PodAttacher) and build calls
it for every pod once the node networks are up — the hook for the CNI plugin.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Protocol

from podnet.host.layout import NETNS_DIR, STATE_ROOT, ClusterLayout
from podnet.linux import diff as _diff
from podnet.linux.netlink import Change, FdbEntry, Item, Link, Neighbour, Netlink, NetnsState, Pyroute2Netlink, Route
from podnet.linux.plan import NetworkPlan, NodePlan, PodAttachment
from podnet.linux.teardown import RECORD, cluster_namespaces, record_namespace, remove_namespaces
from podnet.semantics.topology import NODE_UPLINK, VXLAN_DEVICE

PLAN_FILE = "network.plan"


class ClusterExists(Exception):
    pass


class BuildError(Exception):
    pass


class PodAttacher(Protocol):
    def attach(self, node: NodePlan, pod: PodAttachment) -> None:
        """Put the pod on the node's bridge (CNI ADD). Called again on reconcile, so it must
        treat "already attached" as success, as CNI ADD does."""


@dataclass(frozen=True)
class BuildReport:
    cluster: str
    created: tuple[str, ...]  # namespaces
    changes: tuple[tuple[str, Change], ...]  # (namespace, change) in the order applied
    batches: int
    removed: tuple[str, ...]  # stale node namespaces (reconcile)
    seconds: float

    @property
    def changed(self) -> bool:
        return bool(self.created or self.changes or self.removed)

    def summary(self) -> str:
        if not self.changed:
            return f"cluster {self.cluster}: up to date ({self.seconds:.2f}s)"
        parts = []
        if self.created:
            parts.append(f"created {len(self.created)} namespaces")
        parts.append(f"{len(self.changes)} changes in {self.batches} batches")
        if self.removed:
            parts.append(f"removed {len(self.removed)} stale namespaces")
        return f"cluster {self.cluster}: " + ", ".join(parts) + f" ({self.seconds:.2f}s)"


def plan_prune(plan: NetworkPlan) -> _diff.Prune:
    """What reconcile may remove when the plan no longer has it: the overlay's own objects in
    node namespaces (routes into the pod network via eth0 or flannel.1, flannel.1's neighbour
    and FDB entries, flannel.1 itself). Everything else belongs to someone else or is never
    stale: pods' veths, service addresses, routes other components add."""
    node_namespaces = {node.netns for node in plan.nodes}
    pod_network = IPv4Network(plan.pod_subnet)

    def prune(netns: str, item: Item) -> bool:
        if netns not in node_namespaces:
            return False
        if isinstance(item, Link):
            return item.name == VXLAN_DEVICE
        if isinstance(item, Route):
            return item.dev in (VXLAN_DEVICE, NODE_UPLINK) and IPv4Network(item.dst).subnet_of(pod_network)
        if isinstance(item, (Neighbour, FdbEntry)):
            return item.dev == VXLAN_DEVICE
        return False

    return prune


def build(plan: NetworkPlan, netlink: Netlink | None = None, *, reconcile: bool = False,
          pods: PodAttacher | None = None, state_root: Path | None = STATE_ROOT,
          netns_dir: Path = NETNS_DIR) -> BuildReport:
    """Build (or with reconcile=True, bring in line) the plan's network. See the module doc.

    state_root None: keep no state files (tests with a fake kernel)."""
    own = netlink is None
    if own:
        netlink = Pyroute2Netlink(netns_dir)
    try:
        return _Builder(plan, netlink, pods, state_root, netns_dir).run(reconcile)
    finally:
        if own:
            netlink.close()


class _Builder:
    def __init__(self, plan: NetworkPlan, netlink: Netlink, pods: PodAttacher | None,
                 state_root: Path | None, netns_dir: Path):
        self.plan, self.netlink, self.pods = plan, netlink, pods
        self.state_root, self.netns_dir = state_root, netns_dir
        self.layout = ClusterLayout(plan.cluster)
        self.wanted = [ns.state for ns in plan.namespaces]
        self.sysctl_keys = {ns.name: [s.key_name for s in ns.sysctls] for ns in self.wanted}
        self.created: list[str] = []
        self.applied: list[tuple[str, Change]] = []
        self.batches = 0
        self.state_dir_existed = bool(state_root and (state_root / plan.cluster).exists())

    def _existing(self) -> list[str]:
        root = self.state_root if self.state_root is not None else Path("/nonexistent")
        return cluster_namespaces(self.plan.cluster, self.netlink.namespaces(), root)

    def run(self, reconcile: bool) -> BuildReport:
        start = time.perf_counter()
        existing = self._existing()
        if existing and not reconcile:
            shown = ", ".join(existing[:4]) + (", …" if len(existing) > 4 else "")
            raise ClusterExists(
                f"cluster {self.plan.cluster} already exists ({len(existing)} namespaces: {shown}); "
                f"remove it first (podnet down --name {self.plan.cluster}) or reconcile it")
        before = {name: self.netlink.observe(name, self.sysctl_keys[name])
                  for name in existing if name in self.sysctl_keys}
        removed: tuple[str, ...] = ()
        try:
            for ns in self.wanted:
                if ns.name not in existing:
                    record_namespace(self.plan.cluster, ns.name, self.state_root)
                    self.netlink.create_namespace(ns.name)
                    self.created.append(ns.name)
            self._converge(plan_prune(self.plan))
            if reconcile:
                stale = [n for n in existing if n not in self.sysctl_keys
                         and n.startswith(self.layout.prefix + "node-")]
                if stale:
                    remove_namespaces(stale, self.netns_dir, netlink=self.netlink)
                removed = tuple(stale)
            if self.pods is not None:
                for node in self.plan.nodes:
                    for pod in node.pods:
                        self.pods.attach(node, pod)
            if self.state_root is not None:
                for ns in self.wanted:  # complete the record (a reconcile may find it lost)
                    record_namespace(self.plan.cluster, ns.name, self.state_root)
                (self.state_root / self.plan.cluster / PLAN_FILE).write_text(self.plan.render())
        except BaseException as exc:
            problems = self._rollback(fresh=not existing, before=before)
            if problems:
                raise BuildError(f"building cluster {self.plan.cluster} failed ({exc}); rolling back also "
                                 f"failed: {'; '.join(problems)}") from exc
            raise
        return BuildReport(self.plan.cluster, tuple(self.created), tuple(self.applied), self.batches,
                           removed, time.perf_counter() - start)

    def _observe_all(self) -> dict[str, NetnsState]:
        return {ns.name: self.netlink.observe(ns.name, self.sysctl_keys[ns.name]) for ns in self.wanted}

    def _converge(self, prune: _diff.Prune) -> None:
        steps = _diff.diff(self.wanted, self._observe_all(), prune)
        for step in steps:
            self.netlink.apply(step.netns, step.changes)
            self.batches += 1
            self.applied.extend((step.netns, change) for change in step.changes)
        if steps:
            left = _diff.diff(self.wanted, self._observe_all(), prune)
            if left:
                raise BuildError(f"cluster {self.plan.cluster}: the kernel does not match the plan after "
                                 f"applying it: {'; '.join(map(str, left))}")

    def _rollback(self, fresh: bool, before: dict[str, NetnsState]) -> list[str]:
        problems: list[str] = []
        if fresh:
            # nothing of this cluster existed: everything of it now was made by this build
            # (pods' namespaces included)
            names = sorted(set(self._existing()) | set(self.created))
            try:
                remove_namespaces(names, self.netns_dir, netlink=self.netlink)
            except OSError as exc:
                problems.append(f"removing namespaces: {exc}")
            self._forget_state()
            return problems
        try:
            remove_namespaces(self.created, self.netns_dir, netlink=self.netlink)
        except OSError as exc:
            problems.append(f"removing namespaces: {exc}")
        desired = list(before.values())
        try:
            actual = {ns.name: self.netlink.observe(ns.name, [s.key_name for s in ns.sysctls]) for ns in desired}
            for step in _diff.diff(desired, actual, _diff.everything):
                try:
                    self.netlink.apply(step.netns, step.changes)
                except Exception as exc:  # restore as much as possible
                    problems.append(str(exc))
        except Exception as exc:
            problems.append(f"observing for rollback: {exc}")
        return problems

    def _forget_state(self) -> None:
        if self.state_root is None:
            return
        state_dir = self.state_root / self.plan.cluster
        if not self.state_dir_existed:
            shutil.rmtree(state_dir, ignore_errors=True)
            return
        for name in (RECORD, PLAN_FILE):
            try:
                (state_dir / name).unlink()
            except FileNotFoundError:
                pass
