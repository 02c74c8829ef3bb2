"""Reachability matrices: for one port and protocol, which pod may open a connection to which.

The same semantics as `PolicyEngine.evaluate` (a property test holds them equal pair by pair),
computed for everyone at once:

- endpoints (pods with an IP, plus `external`) get indices; sets of endpoints are bitsets, Python
  ints with bit i for endpoint i;
- every peer, rule and port list is turned into a bitset once (memoized by value: the same peer
  written in many policies costs one computation);
- pods are grouped into equivalence classes that policies cannot tell apart: for egress, the same
  namespace and labels; for ingress, also the same resolution of named ports for this
  port/protocol. One bitset per class: E[class] = the destinations its egress side allows,
  I[class] = the sources its ingress side admits;
- rows are E[src] AND the set of destinations whose ingress admits src. Sources that every I
  treats alike (a partition refined by each distinct I) share that set, so the transpose is per
  block, not per pod;
- AdminNetworkPolicy and the baseline are tiers around each side (podnet.semantics.adminpolicy):
  a subject's ANP rules, in order, each take the bits no earlier rule took (Allow or Deny them,
  or Pass them on); what is left goes to the NetworkPolicies if they isolate the pod, else to
  the baseline's rules, and what no tier decides is allowed (`_tiers`);
- the built-in exceptions (self, own node) are patched in afterwards.

10,000 pods and 1,000 policies take a few seconds (bench/matrix.py) and the matrix itself is
n² bits (12.5 MB for 10,000 pods).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from podnet.semantics.adminpolicy import ALLOW, DENY, AdminPeer, AdminRule
from podnet.semantics.networkpolicy import (
    EGRESS,
    INGRESS,
    CompiledPolicy,
    Endpoint,
    Peer,
    PolicyEngine,
    PortMatch,
    Rule,
    networked_pods,
)
from podnet.semantics.policymatch import ICMP, normalize_packet_protocol

EXTERNAL = "external"


def bits_of(indices: Iterable[int], size: int) -> int:
    """A bitset from indices, built in one pass (not n big-int ORs)."""
    buffer = bytearray((size + 7) // 8)
    for i in indices:
        buffer[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buffer, "little")


def indices_of(bits: int) -> list[int]:
    """The set bits of a bitset, lowest first."""
    out = []
    data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    for byte_index, byte in enumerate(data):
        if byte:
            base = byte_index << 3
            for bit in range(8):
                if byte >> bit & 1:
                    out.append(base + bit)
    return out


@dataclass
class Matrix:
    """Who may open a connection to whom, for one port and protocol.

    pods: "ns/name" in namespace/name order, then "external". rows[i] is a bitset over the same
    indices: bit j set when pods[i] may connect to pods[j].
    """

    port: int
    protocol: str
    pods: list[str]
    rows: list[int]
    index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def traffic(self) -> str:
        return traffic_name(self.port, self.protocol)

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {name: i for i, name in enumerate(self.pods)}

    def allowed(self, src: str, dst: str) -> bool:
        return bool(self.rows[self.index[src]] >> self.index[dst] & 1)

    def count(self) -> int:
        """How many ordered pairs are allowed (self pairs included)."""
        return sum(row.bit_count() for row in self.rows)

    def to_json(self) -> dict[str, Any]:
        """DESIGN.md's contract: {"port", "protocol", "pods", "allowed": {from: {to: bool}}}."""
        pods = self.pods
        allowed = {}
        for i, src in enumerate(pods):
            row = self.rows[i]
            allowed[src] = {dst: bool(row >> j & 1) for j, dst in enumerate(pods)}
        return {"port": self.port, "protocol": self.protocol, "pods": list(pods), "allowed": allowed}


@dataclass
class MatrixDiff:
    """What a change does to connectivity, over the pods present before and after.

    opened/closed: (from, to) pairs, sorted. Pods only on one side are listed in added/removed
    and their connections are not counted as opened or closed.
    """

    port: int
    protocol: str
    opened: list[tuple[str, str]]
    closed: list[tuple[str, str]]
    added_pods: list[str]
    removed_pods: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"port": self.port, "protocol": self.protocol,
                "opened": [list(p) for p in self.opened], "closed": [list(p) for p in self.closed],
                "addedPods": self.added_pods, "removedPods": self.removed_pods}


def diff(old: Matrix, new: Matrix) -> MatrixDiff:
    common = [p for p in new.pods if p in old.index]
    common_set = set(common)
    opened, closed = [], []
    # Map the common pods to their indices on each side once; compare row by row with bitsets.
    old_bits = {p: 1 << old.index[p] for p in common}
    for src in common:
        old_row = old.rows[old.index[src]]
        new_row = new.rows[new.index[src]]
        for dst in common:
            was = bool(old_row & old_bits[dst])
            now = bool(new_row >> new.index[dst] & 1)
            if was != now:
                (opened if now else closed).append((src, dst))
    return MatrixDiff(new.port, new.protocol, opened, closed,
                      [p for p in new.pods if p not in old.index],
                      [p for p in old.pods if p not in common_set])


class _Builder:
    """One reachability computation: indices, memoized bitsets, classes."""

    def __init__(self, engine: PolicyEngine, port: int, protocol: str, namespaces: Iterable[str] | None):
        self.engine = engine
        self.port = port
        self.protocol = protocol
        self.endpoints: list[Endpoint] = networked_pods(engine, namespaces) + [engine.external()]
        self.n = len(self.endpoints)
        self.all = (1 << self.n) - 1
        # Label classes of policy pods: (namespace, labels) → bitset; per namespace, for selector peers.
        members: dict[tuple[str, tuple], list[int]] = defaultdict(list)
        for i, ep in enumerate(self.endpoints):
            if ep.is_policy_pod:
                members[(ep.namespace, tuple(sorted(ep.labels.items())))].append(i)
        self.classes: dict[tuple[str, tuple], int] = {k: bits_of(v, self.n) for k, v in members.items()}
        self.class_labels = {k: self.endpoints[v[0]].labels for k, v in members.items()}
        self.classes_in_ns: dict[str, list[tuple[str, tuple]]] = defaultdict(list)
        for key in self.classes:
            self.classes_in_ns[key[0]].append(key)
        self.class_members = members
        # Named ports: name → the pods on which that name means this port for this protocol.
        named: dict[str, list[int]] = defaultdict(list)
        for i, ep in enumerate(self.endpoints):
            if ep.is_policy_pod:
                for p in ep.named_ports:
                    if p.protocol == protocol and p.port == port:
                        named[p.name].append(i)
        self.named_bits = {name: bits_of(v, self.n) for name, v in named.items()}
        self._peer_cache: dict[object, int] = {}
        self._peers_cache: dict[tuple[Peer, ...] | None, int] = {}
        self._ports_cache: dict[tuple[PortMatch, ...] | None, int] = {}
        self._ip_ints = [(ep.ip.version, int(ep.ip)) if ep.ip is not None else None for ep in self.endpoints]

    # -- bitsets of peers and ports

    def peer_bits(self, peer: Peer) -> int:
        # Only a selector peer without namespaceSelector depends on the policy's namespace.
        key = peer.ip_block if peer.ip_block is not None else \
            (peer.pod_selector, peer.namespace_selector, peer.namespace if peer.namespace_selector is None else None)
        cached = self._peer_cache.get(key)
        if cached is not None:
            return cached
        if peer.ip_block is not None:
            block = peer.ip_block
            version = block.cidr.version
            ranges = [(int(block.cidr.network_address), int(block.cidr.broadcast_address))]
            holes = [(int(e.network_address), int(e.broadcast_address)) for e in block.excepts if e.version == version]
            lo, hi = ranges[0]
            hits = []
            for i, ip in enumerate(self._ip_ints):
                if ip is None or ip[0] != version or not lo <= ip[1] <= hi:
                    continue
                if any(a <= ip[1] <= b for a, b in holes):
                    continue
                hits.append(i)
            bits = bits_of(hits, self.n)
        else:
            if peer.namespace_selector is None:
                namespaces = [peer.namespace]
            else:
                namespaces = [ns for ns in self.classes_in_ns
                              if peer.namespace_selector.matches(self.engine.ns_labels(ns))]
            bits = 0
            for ns in namespaces:
                for key in self.classes_in_ns.get(ns, ()):
                    if peer.pod_selector is None or peer.pod_selector.matches(self.class_labels[key]):
                        bits |= self.classes[key]
        self._peer_cache[key] = bits
        return bits

    def admin_peer_bits(self, peer: AdminPeer) -> int:
        cached = self._peer_cache.get(peer)
        if cached is not None:
            return cached
        if peer.pods is not None:
            bits = 0
            for ns, keys in self.classes_in_ns.items():
                if peer.pods.namespace_selector.matches(self.engine.ns_labels(ns)):
                    for key in keys:
                        if peer.pods.pod_selector is None or peer.pods.pod_selector.matches(self.class_labels[key]):
                            bits |= self.classes[key]
        else:  # nodes or networks: by address
            bits = bits_of((i for i, ep in enumerate(self.endpoints) if peer.matches(ep, self.engine.node_labels)),
                           self.n)
        self._peer_cache[peer] = bits
        return bits

    def peers_bits(self, peers: tuple[Peer, ...] | None) -> int:
        if peers is None:
            return self.all
        cached = self._peers_cache.get(peers)
        if cached is None:
            cached = 0
            for peer in peers:
                cached |= self.admin_peer_bits(peer) if isinstance(peer, AdminPeer) else self.peer_bits(peer)
            self._peers_cache[peers] = cached
        return cached

    def ports_bits(self, ports: tuple[PortMatch, ...] | None) -> int:
        """The DESTINATIONS for which a port list matches this port/protocol (named ports vary)."""
        if ports is None:
            return self.all
        cached = self._ports_cache.get(ports)
        if cached is None:
            cached = 0
            for entry in ports:
                if entry.protocol != self.protocol:
                    continue
                if entry.name is not None:
                    cached |= self.named_bits.get(entry.name, 0)
                elif entry.port is None or entry.port <= self.port <= (entry.end_port or entry.port):
                    cached = self.all
                    break
            self._ports_cache[ports] = cached
        return cached

    # -- the two sides

    def egress_rows(self) -> list[int]:
        """E[i]: the destinations the egress side of endpoint i allows."""
        by_policies: dict[tuple, int] = {}
        per_class: dict[tuple[str, tuple], int] = {}
        for key, indices in self.class_members.items():
            subject = self.endpoints[indices[0]]
            policies = self._isolating(key, EGRESS)
            admins = self.engine.admin_for(subject, EGRESS)
            baseline = self.engine.baseline_for(subject, EGRESS)
            if not policies and not admins and baseline is None:
                per_class[key] = self.all
                continue
            ids = (tuple(id(p) for p in policies), tuple(id(p) for p in admins), id(baseline))
            bits = by_policies.get(ids)
            if bits is None:
                allowed = None
                if policies:
                    allowed = 0
                    for policy in policies:
                        for rule in policy.egress:
                            allowed |= self.peers_bits(rule.peers) & self.ports_bits(rule.ports)
                bits = self._tiers(
                    [(r.action, self.peers_bits(r.peers) & self.ports_bits(r.ports)) for p in admins for r in p.egress],
                    allowed,
                    [] if baseline is None else
                    [(r.action, self.peers_bits(r.peers) & self.ports_bits(r.ports)) for r in baseline.egress])
                by_policies[ids] = bits
            per_class[key] = bits
        rows = [self.all] * self.n
        for key, indices in self.class_members.items():
            bits = per_class[key]
            for i in indices:
                rows[i] = bits
        return rows

    def _tiers(self, admin: list[tuple[str, int]], isolated: int | None, baseline: list[tuple[str, int]]) -> int:
        """The peers one side allows, tier by tier: `admin` the (action, matched peers) of its
        ANP rules in the order tried; `isolated` what its NetworkPolicies allow (None: none
        isolates it); `baseline` the baseline's (action, matched peers)."""
        allowed = denied = taken = 0
        for action, bits in admin:
            fresh = bits & ~taken  # a peer is decided by the first rule that matches it
            taken |= fresh
            if action == ALLOW:
                allowed |= fresh
            elif action == DENY:
                denied |= fresh
        rest = self.all & ~(allowed | denied)  # passed on, or matched by no ANP rule
        if isolated is not None:
            return allowed | (rest & isolated)
        base_allowed = base_taken = 0
        for action, bits in baseline:
            fresh = bits & ~base_taken
            base_taken |= fresh
            if action == ALLOW:
                base_allowed |= fresh
        return allowed | (rest & (base_allowed | (self.all & ~base_taken)))

    def ingress_groups(self) -> tuple[int, list[tuple[int, int]]]:
        """(open, [(members, admitted sources)]): `open` holds the destinations not isolated for
        ingress; each group is a set of destinations that admit exactly `admitted`."""
        open_bits = self.all
        groups: dict[int, int] = defaultdict(int)  # admitted sources → destinations
        cache: dict[tuple, int] = {}
        for key, indices in self.class_members.items():
            subject = self.endpoints[indices[0]]
            policies = self._isolating(key, INGRESS)
            admins = self.engine.admin_for(subject, INGRESS)
            baseline = self.engine.baseline_for(subject, INGRESS)
            if not policies and not admins and baseline is None:
                continue
            # Named ports resolve on each destination: split the class by what this port is called.
            by_names: dict[frozenset[str], list[int]] = defaultdict(list)
            for i in indices:
                ep = self.endpoints[i]
                names = frozenset(p.name for p in ep.named_ports if p.protocol == self.protocol and p.port == self.port)
                by_names[names].append(i)
            for names, subset in by_names.items():
                cache_key = (tuple(id(p) for p in policies), tuple(id(p) for p in admins), id(baseline), names)
                admitted = cache.get(cache_key)
                if admitted is None:
                    isolated = None
                    if policies:
                        isolated = 0
                        for policy in policies:
                            for rule in policy.ingress:
                                if self._ports_match(rule, names):
                                    isolated |= self.peers_bits(rule.peers)
                    admitted = self._tiers(
                        [(r.action, self.peers_bits(r.peers) if self._ports_match(r, names) else 0)
                         for p in admins for r in p.ingress],
                        isolated,
                        [] if baseline is None else
                        [(r.action, self.peers_bits(r.peers) if self._ports_match(r, names) else 0)
                         for r in baseline.ingress])
                    cache[cache_key] = admitted
                subset_bits = bits_of(subset, self.n)
                open_bits &= ~subset_bits
                groups[admitted] |= subset_bits
        return open_bits, [(members, admitted) for admitted, members in groups.items()]

    def _ports_match(self, rule: Rule | AdminRule, names: frozenset[str]) -> bool:
        if rule.ports is None:
            return True
        for entry in rule.ports:
            if entry.protocol != self.protocol:
                continue
            if entry.name is not None:
                if entry.name in names:
                    return True
            elif entry.port is None or entry.port <= self.port <= (entry.end_port or entry.port):
                return True
        return False

    def _isolating(self, key: tuple[str, tuple], direction: str) -> list[CompiledPolicy]:
        labels = self.class_labels[key]
        return [p for p in self.engine.by_namespace.get(key[0], ())
                if p.isolates(direction) and p.pod_selector.matches(labels)]

    # -- everything together

    def build(self) -> Matrix:
        egress = self.egress_rows()
        open_bits, groups = self.ingress_groups()
        # Sources that every `admitted` set treats alike form one block; refine by each set.
        blocks = [self.all]
        for _members, admitted in groups:
            refined = []
            for block in blocks:
                inside = block & admitted
                if inside and inside != block:
                    refined += [inside, block & ~admitted]
                else:
                    refined.append(block)
            blocks = refined
        reachable_by = [0] * self.n  # per source: the destinations whose ingress admits it
        for block in blocks:
            representative = (block & -block).bit_length() - 1
            bits = open_bits
            for members, admitted in groups:
                if admitted >> representative & 1:
                    bits |= members
            for i in indices_of(block):
                reachable_by[i] = bits
        rows = [egress[i] & reachable_by[i] | (1 << i) for i in range(self.n)]  # self: always
        self._own_node(rows)
        return Matrix(self.port, self.protocol, [ep.ref if ep.kind == "pod" else EXTERNAL for ep in self.endpoints], rows)

    def _own_node(self, rows: list[int]) -> None:
        """A pod and its own node's address (hostNetwork pods) always reach each other."""
        pods_on: dict[str, list[int]] = defaultdict(list)
        host_on: dict[str, list[int]] = defaultdict(list)
        for i, ep in enumerate(self.endpoints):
            if ep.kind == "pod" and ep.node:
                (host_on if ep.host_network else pods_on)[ep.node].append(i)
        for node, hosts in host_on.items():
            pods = pods_on.get(node)
            if not pods:
                continue
            host_bits = bits_of(hosts, self.n)
            pod_bits = bits_of(pods, self.n)
            for h in hosts:
                rows[h] |= pod_bits
            for p in pods:
                rows[p] |= host_bits


def traffic_name(port: int, protocol: str) -> str:
    """TCP/80, or "ICMP echo" (ping: no port)."""
    return "ICMP echo" if protocol == ICMP else f"{protocol}/{port}"


def reachability(cluster, port: int, protocol: str = "TCP", namespaces: Iterable[str] | None = None) -> Matrix:
    """The matrix for every pod with an IP (of `namespaces`, or all) plus `external`.

    `cluster` is a computed Cluster or a PolicyEngine already built for it (to share the compile).
    """
    engine = cluster if isinstance(cluster, PolicyEngine) else PolicyEngine(cluster)
    return _Builder(engine, int(port), normalize_packet_protocol(protocol), namespaces).build()
