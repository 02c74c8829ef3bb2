"""What a node's kernel enforces, against what podnet loaded there and the state it came from.

The live `podnet trace` predicts with the simulator from the cluster state the supervisor
holds; the prediction is what the kernel does only if the node's NetworkPolicy table is the one
podnet rendered from that very state. Three things can break that, and each is said plainly
instead of predicting: the node's last sync failed (nft refused the transaction, so the kernel
still holds the rules before it), a sync is pending (the table was rendered from another
generation of the state), or the kernel's table is not what podnet loaded (flushed or deleted
by hand, another program's transaction).

The last one is found by reading the kernel: one `nft -j list table inet podnet-netpol` in the
node's namespace, reduced to a `TableShape` — chains and how many rules each has, sets and
their elements, named counters — and compared with the shape of the `Ruleset` podnet loaded
(reduced the same way). Rules are counted, not compared: their JSON form is nft's own
rewriting of the text podnet sent, and a chain someone edited by hand nearly always changes
its length; set elements, where pods come and go, are compared exactly. One listing per node:
about 50 ms for a table of 700 rules and 6,000 elements, 0.6 s for 7,000 rules (most of it nft's
own listing; bench/trace_live.py); the shape of podnet's ruleset takes milliseconds.

kube-proxy is judged by the supervisor's record only (a sync pending or failed): its tables
depend on the proxy mode (nftables, iptables, userspace), and no second listing is read.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from podnet.ingressnginx.status import ControllerStatus
from podnet.policy import FAMILY, TABLE, Ruleset

NETWORK_POLICY, KUBE_PROXY, INGRESS_NGINX = "NetworkPolicy", "kube-proxy", "ingress-nginx"


@dataclass(frozen=True)
class TableShape:
    """A table reduced to what the comparison needs: counts for people, a digest for equality."""

    chains: int
    rules: int
    sets: int
    elements: int
    digest: str

    def describe(self) -> str:
        return f"{self.chains} chains, {self.rules} rules, {self.sets} sets, {self.elements} set elements"

    def to_json(self) -> dict[str, Any]:
        return {"chains": self.chains, "rules": self.rules, "sets": self.sets, "elements": self.elements,
                "digest": self.digest}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TableShape:
        return cls(int(data["chains"]), int(data["rules"]), int(data["sets"]), int(data["elements"]),
                   str(data["digest"]))


def _shape(chains: Mapping[str, int], sets: Mapping[str, Iterable[str]], counters: Iterable[str]) -> TableShape:
    elements = {name: sorted(values) for name, values in sets.items()}
    canonical = json.dumps({"chains": dict(sorted(chains.items())), "sets": dict(sorted(elements.items())),
                            "counters": sorted(counters)}, separators=(",", ":"))
    return TableShape(len(chains), sum(chains.values()), len(elements), sum(len(v) for v in elements.values()),
                      hashlib.sha256(canonical.encode()).hexdigest()[:16])


def ruleset_shape(ruleset: Ruleset) -> TableShape:
    """The shape of the `inet` table podnet renders for a node (podnet.policy)."""
    return _shape({name: len(rules) for name, rules in ruleset.chains.items()},
                  {name: s.elements for name, s in ruleset.sets.items()}, ruleset.counters)


def _element(value: Any) -> str:
    """One set element of nft's JSON as podnet writes it: `10.0.0.0/8`, `10.244.1.2 . 8080`."""
    if isinstance(value, dict):
        if "elem" in value:  # an element with a timeout or comment
            return _element(value["elem"].get("val"))
        if "prefix" in value:
            return f"{value['prefix']['addr']}/{value['prefix']['len']}"
        if "range" in value:
            low, high = value["range"]
            return f"{_element(low)}-{_element(high)}"
        if "concat" in value:
            return " . ".join(_element(v) for v in value["concat"])
    return str(value)


def kernel_shape(listing: Mapping[str, Any]) -> TableShape:
    """The shape of `nft -j list table inet podnet-netpol`'s answer."""
    chains: dict[str, int] = {}
    sets: dict[str, list[str]] = {}
    counters: list[str] = []
    for entry in listing.get("nftables") or []:
        kind, body = next(iter(entry.items()))
        if kind == "chain":
            chains.setdefault(body["name"], 0)
        elif kind == "rule":
            chains[body["chain"]] = chains.get(body["chain"], 0) + 1
        elif kind == "set":
            sets[body["name"]] = [_element(e) for e in body.get("elem") or []]
        elif kind == "counter":
            counters.append(body["name"])
    return _shape(chains, sets, counters)


class Unreadable(Exception):
    """nft could not list the node's table."""


class NoTable(Unreadable):
    """The node's kernel has no podnet-netpol table."""


def read_kernel_shape(netns: str | None) -> TableShape:
    """One listing of the node's policy table (raises NoTable if it is gone, Unreadable if nft
    cannot list it). Run directly, not through podnet.proxy's loader: `trace` need not import
    the data plane for this."""
    argv = ["nft", "-j", "list", "table", FAMILY, TABLE]
    done = subprocess.run(["ip", "netns", "exec", netns, *argv] if netns else argv, capture_output=True, text=True)
    if done.returncode != 0:
        error = f"{' '.join(argv)}: {done.stderr.strip() or f'exit status {done.returncode}'}"
        raise (NoTable if "No such file or directory" in error else Unreadable)(error)
    return kernel_shape(json.loads(done.stdout))


# ---- judging one node ----------------------------------------------------------------------


@dataclass(frozen=True)
class NodeSync:
    """Whether the kernel of `node` enforces the `rules` ("NetworkPolicy" or "kube-proxy")
    of the state a trace used; `reason` says why not."""

    node: str
    rules: str
    in_sync: bool
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "rules": self.rules, "inSync": self.in_sync, "reason": self.reason}

    def describe(self) -> str:
        if self.in_sync:
            return f"{self.node}: {self.rules} rules in sync with this state"
        return f"{self.node}: {self.rules} rules NOT in sync with this state ({self.reason})"


def policy_sync(node: str, generation: int, record: Mapping[str, Any] | None,
                read: Callable[[], TableShape]) -> NodeSync:
    """Judge a node's NetworkPolicy table: `record` is what the supervisor says of its last
    sync (podnet.linux.supervisor.status.sync_status), `generation` the state the trace used,
    `read` reads the kernel's table (read_kernel_shape)."""
    def out(reason: str) -> NodeSync:
        return NodeSync(node, NETWORK_POLICY, False, reason)

    if record is None:
        return out("the supervisor reports no NetworkPolicy sync for this node")
    if record.get("lastError"):
        return out(f"last sync failed: {record['lastError']}; the kernel still enforces the previous rules")
    synced, loaded = record.get("generation"), record.get("loaded")
    if synced is None or loaded is None:
        return out("no sync has succeeded yet")
    if synced != generation:
        return out(f"a sync is pending: the kernel holds the rules of state generation {synced}, "
                   f"this trace used generation {generation}")
    try:
        kernel = read()
    except NoTable:
        return out(f"the kernel has no table {FAMILY} {TABLE} (deleted outside podnet?), so nothing is enforced")
    except (Unreadable, OSError, ValueError) as exc:
        return out(f"the kernel's table could not be read: {exc}")
    expected = TableShape.from_json(loaded)
    if kernel.digest != expected.digest:
        return out(f"the kernel's table differs from what podnet loaded: the kernel has {kernel.describe()}, "
                   f"podnet loaded {expected.describe()}; changed outside podnet?")
    return NodeSync(node, NETWORK_POLICY, True)


def proxy_sync(node: str, record: Mapping[str, Any] | None) -> NodeSync:
    """Judge a node's kube-proxy rules by the supervisor's record (the kernel is not read:
    kube-proxy's tables depend on the proxy mode)."""
    if record is None:
        return NodeSync(node, KUBE_PROXY, False, "the supervisor reports no kube-proxy on this node")
    if record.get("lastError"):
        return NodeSync(node, KUBE_PROXY, False, f"last sync failed: {record['lastError']}; "
                                                 "the kernel still holds the previous Service rules")
    if record.get("pending"):
        return NodeSync(node, KUBE_PROXY, False, "a sync is pending: the kernel still holds the previous Service rules")
    return NodeSync(node, KUBE_PROXY, True)


def controller_sync(pod: str, generation: int, read: Callable[[], ControllerStatus | None],
                    patience: float = 2.0) -> NodeSync:
    """Judge an ingress controller pod by what it says it serves (podnet.ingressnginx.status):
    the trace's state `generation`, or a later one. It follows the cluster every 0.25 s, so a
    controller behind is read again for up to `patience` seconds before it is called behind."""
    deadline = time.monotonic() + patience
    while True:
        status = read()
        serves = None if status is None else status.generation
        if serves is not None and serves >= generation:
            return NodeSync(pod, INGRESS_NGINX, True)
        if status is not None and status.refused_generation is not None and status.refused_generation >= generation:
            return NodeSync(pod, INGRESS_NGINX, False,
                            f"nginx refused the configuration of this state ({status.refused_error}); it still "
                            f"serves the one of state {serves}" if serves is not None else
                            f"nginx refused the configuration of this state ({status.refused_error}); it serves nothing")
        if time.monotonic() >= deadline:
            what = "nothing yet" if serves is None else f"the routes of an earlier state ({serves}, this is {generation})"
            return NodeSync(pod, INGRESS_NGINX, False, f"the controller is behind: its nginx serves {what}")
        time.sleep(0.1)
