"""NetworkPolicy on one node: the desired tables (podnet.policy: `inet podnet-netpol`, the
policies, and `bridge podnet-netpol`, a pod's packets only from its own address) loaded in one
`nft -f` per sync.

The supervisor calls `sync(cluster)` whenever the cluster changes, under its lock, so `podnet
apply` of a policy answers once every node enforces it — in two steps, `plan` (render, in
Python) for every node and then `load` for all of them at once: an `nft -f` spends most of its
time waiting for the kernel's commit, so the nodes' loads overlap. A sync whose structure (policies,
rules, ports) is unchanged only rewrites the sets whose elements changed (a pod came, went or
changed labels); otherwise the table is replaced whole, in the same single transaction. nft
applies a transaction entirely or not at all: a sync that fails leaves the previous rules in
force — never an open window — and is recorded in `status` and raised; the next sync (the
supervisor retries with back-off) rewrites the whole table, since the kernel's state is no
longer known for sure. `loaded_shape` is what podnet believes the kernel holds, reduced for
comparison with the kernel's own listing (podnet.linux.enforced; the live `trace` does it).

`check()` is kube-proxy's canary applied to these tables (podnet.proxy.canary): whether the base
chains — `egress`, `ingress` and the bridge table's `prerouting` — still hold the rules last
loaded (a table deleted or flushed by hand, a rule added or removed there). The supervisor
asks every syncPeriod and, when they do not, forgets what it loaded and syncs the node again,
which replaces both tables whole; and it does so every FULL_RESYNC_PERIOD anyway (`resync_due`),
for what the base chains do not show (a rule gone from one policy's chain).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from podnet.controlplane import Cluster
from podnet.linux.enforced import TableShape, ruleset_shape
from podnet.policy import BASE_CHAINS, BRIDGE_CHAIN, BRIDGE_FAMILY, FAMILY, TABLE, Ruleset, render, replace, transaction
from podnet.proxy.canary import FULL_RESYNC_PERIOD, Canary, NetlinkRuleCounter, RuleCounter, Watched
from podnet.proxy.loader import LoadError, Runner, in_netns, run_command
from podnet.semantics.networkpolicy import PolicyEngine

log = logging.getLogger("podnet.netpol")


@dataclass
class PolicySyncStatus:
    syncs: int = 0
    failures: int = 0
    last_error: str | None = None
    last_duration: float = 0.0
    last_full: bool = False  # the last load replaced the whole table


@dataclass(frozen=True)
class PlannedSync:
    desired: Ruleset  # the node's tables afterwards
    text: str  # the `nft -f` transaction from what the kernel holds ("" if nothing changes)
    started: float  # time.monotonic() when planning began


class NodePolicy:
    def __init__(self, node: str, netns: str | None, run: Runner = run_command, counter: RuleCounter | None = None,
                 full_resync_period: float = FULL_RESYNC_PERIOD):
        self.node, self.netns, self.run = node, netns, run
        self.full_resync_period = full_resync_period
        self.full_at = 0.0  # time.monotonic() of the last load that replaced the tables whole
        self.loaded: Ruleset | None = None  # what the kernel holds, as far as known
        self.status = PolicySyncStatus()
        self._shape: tuple[Ruleset, TableShape] | None = None  # loaded_shape's, for that ruleset
        if counter is None and run is run_command:
            counter = NetlinkRuleCounter(netns)
        self.canary = Canary(counter) if counter is not None else None

    def sync(self, cluster: Cluster, engine: PolicyEngine | None = None) -> None:
        """Make the node enforce `cluster`'s policies (raises LoadError if nft refuses);
        `engine`: the cluster's compiled policies, shared by the nodes of one sync."""
        self.load(self.plan(cluster, engine))

    def plan(self, cluster: Cluster, engine: PolicyEngine | None = None) -> PlannedSync:
        """What a sync to `cluster` loads, from what the kernel holds now; `load` it before the
        next plan."""
        started = time.monotonic()
        desired = render(cluster, self.node, engine)
        return PlannedSync(desired, transaction(self.loaded, desired), started)

    def load(self, planned: PlannedSync) -> None:
        """Load a planned sync (raises LoadError if nft refuses: the previous rules stay)."""
        desired, text = planned.desired, planned.text
        if text:
            try:
                self.run(in_netns(self.netns, ["nft", "-f", "-"]), text)
            except LoadError as exc:
                self.loaded = None
                self.status.failures += 1
                self.status.last_error = str(exc)
                raise
            self.status.last_full = text.startswith("add table")
            if self.status.last_full:
                self.full_at = time.monotonic()
        self.loaded = desired
        self.status.syncs += 1
        self.status.last_error = None
        self.status.last_duration = time.monotonic() - planned.started

    def loaded_shape(self) -> TableShape | None:
        """The shape of the table the kernel holds as far as podnet knows (None: not known,
        after a failed load), computed once per loaded ruleset."""
        if self.loaded is None:
            return None
        if self._shape is None or self._shape[0] is not self.loaded:
            self._shape = (self.loaded, ruleset_shape(self.loaded))
        return self._shape[1]

    def drops(self) -> dict[str, int]:
        """Packets dropped so far, per counter (`drops/DIRECTION/NS/NAME`)."""
        listing = self.run(in_netns(self.netns, ["nft", "list", "counters", "table", FAMILY, TABLE]))
        return parse_counters(listing)

    def watched(self) -> list[Watched]:
        """The base chains of both tables and their rules, as last loaded ([] if not known)."""
        loaded = self.loaded
        if loaded is None:
            return []
        return [Watched(FAMILY, TABLE, tuple((name, len(loaded.chains.get(name, ()))) for name in BASE_CHAINS)),
                Watched(BRIDGE_FAMILY, TABLE, ((BRIDGE_CHAIN[0], len(BRIDGE_CHAIN) - 2),))]

    def check(self) -> str | None:
        """None if the kernel holds the base chains as loaded (or nothing is known to compare);
        otherwise what changed — and what was loaded is forgotten, so the next sync replaces
        both tables whole. The caller (under the supervisor's lock, so no sync runs meanwhile)
        syncs the node again. OSError if the kernel cannot be asked."""
        watched = self.watched()
        if self.canary is None or not watched:
            return None
        reason = self.canary.check(watched)
        if reason is not None:
            self.loaded = None
        return reason

    def resync_due(self) -> bool:
        """Whether the periodic full resync is due; if so, what was loaded is forgotten, so the
        next sync replaces both tables whole."""
        if self.loaded is None or time.monotonic() - self.full_at < self.full_resync_period:
            return False
        self.loaded = None
        return True

    def cleanup(self) -> None:
        self.run(in_netns(self.netns, ["nft", "-f", "-"]), replace(FAMILY) + replace(BRIDGE_FAMILY))
        self.loaded = None
        self.close()

    def close(self) -> None:
        """Let go of the canary's netlink socket: it holds the node's namespace alive."""
        if self.canary is not None:
            self.canary.close()


def parse_counters(listing: str) -> dict[str, int]:
    """`nft list counters` output → {counter name: packets}."""
    found: dict[str, int] = {}
    name = None
    for line in listing.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "counter":
            name = words[1]
        elif name is not None and words[:1] == ["packets"]:
            found[name] = int(words[1])
            name = None
    return found
