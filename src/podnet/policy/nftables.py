"""NetworkPolicy as one nftables table per node, rendered from the simulator's compiled policies.

`render(cluster, node)` gives the node's desired `Ruleset`; `transaction(previous, desired)`
gives the `nft -f` input that takes the kernel from one to the other. Every decision comes from
podnet.semantics.networkpolicy (`PolicyEngine`, `CompiledPolicy`, `Rule`, `Peer`, `PortMatch`):
this module only says how a decision is written in nftables. Rule numbers refer to
docs/specs/networkpolicy.md.

**Where the rules hook, and why.** Pods on a node are veths on the `cni0` bridge, and
br_netfilter is on (kube-proxy needs it already), so a bridged IPv4 packet between two pods of
one node visits the IPv4 forward and postrouting hooks just as a routed one does. The `inet`
family's hooks therefore see every pod's traffic — same bridge, other nodes, Services — in one
place, after kube-proxy's DNAT (prerouting, -100) has chosen the backend, so the backend pod is
judged (rule 40), and with conntrack, so replies are recognised (rule 5). The nft bridge family
would see bridged frames at its forward hook but routed ones only at output, and at its usual
priorities before br_netfilter's DNAT: two paths to keep in step, judging the ClusterIP rather
than the backend. netdev hooks on every veth see packets before any NAT and need a chain per
veth, rewritten as pods come and go.

- **egress** (of the source pod): base chain at forward, priority filter. Packets a pod sends
  to its own node (kubelet's probes answered, the node's addresses) go to input, never to
  forward, so a pod can always reach its node (rule 34) without a rule for it.
- **ingress** (of the destination pod): base chain at postrouting, priority srcnat + 10, that is
  after kube-proxy's masquerade: the pod is judged on the source it will see, as `podnet trace`
  judges it ("the destination's ingress, seeing the packet's source as it arrives"). Locally
  generated packets pass postrouting too: `fib saddr type local` accepts whatever carries one of
  the node's own addresses — the node, its hostNetwork pods, a hairpin masqueraded to cni0
  (rule 34, 36).

Both chains accept `ct state established,related` first: only the first packet of a connection
is judged (rule 5), and a connection allowed once lives on after a policy change (rule 38; as
Calico does: "policy changes only take effect after the connection is re-established"). A
pod reaching itself through a Service (`ip saddr . ip daddr @self`) always passes (rule 33).

**Sets, not pairs.** A policy's selected pods on this node are the set `subjects/NS/NAME`; the
peers of one rule are the interval set `DIRECTION/NS/NAME/INDEX` (the matched pods' addresses
and the ipBlock CIDRs minus their excepts, merged); a named port is the set
`port/PROTO/NAME` of (pod address . port) pairs over every pod that declares it, matched
against (daddr . dport), since the name resolves on the destination pod (rule 30). A policy
contributes a chain per isolated direction with a rule per (rule, port) — so the table grows
with policies, rules and ports; pods only add set elements. Every node gets the same chains;
only the elements differ, so a pod or label change is a set-element update.

**Verdicts.** A packet of an isolated pod that no rule accepts is dropped (Calico's and
Cilium's default), and counted in `drops/DIRECTION/NS/NAME` of every policy isolating the pod.
podnet is IPv4-only: the final drops are `meta nfproto ipv4`, so IPv6 the node forwards or
sends passes these chains untouched (a pod's own IPv6 stops at its bridge port, below).

**AdminNetworkPolicy tiers** (podnet.semantics.adminpolicy). When ANPs or the baseline have
rules for a direction, its base chain tests `DIRECTION-governed` (pods some policy of any tier
judges) instead of `-isolated` for the fast path, then jumps to `DIRECTION/admin`: every ANP's
rules, in the order tried (priority, name, rule order), each `ip ME @admin/NAME/subjects ip
PEER @admin/NAME/DIRECTION/INDEX [port] VERDICT` — `accept` for Allow, a counted `drop` for Deny
(`admin-drops/DIRECTION/NAME`), and `return` for Pass: back in the base chain, the packet goes
on to the NetworkPolicies. A packet no ANP rule decides comes back the same way. A pod the
NetworkPolicies isolate is then judged by them (`ip ME @DIRECTION-isolated drop` after their
chains); any other goes to `DIRECTION/baseline`, the baseline's rules in order (accept, or a
counted drop in `baseline-drops/DIRECTION`), and what it does not match is accepted. The
exceptions stay in front of every tier: established connections, a pod's own node, a pod
reaching itself.

**A pod's packets carry its own address.** The chains judge by address, so a pod that forged
its source (a raw socket) would be judged as someone else: as its node's cni0 address, which
every pod admits (rule 34), or as a pod a policy admits; nodes run with rp_filter loose, which
accepts any source routable somewhere. The same transaction therefore keeps a second table,
`bridge podnet-netpol`, with two rules at the bridge's prerouting hook (priority filter, before
br_netfilter hands the frame to IPv4), for frames entering cni0 from a pod's veth (`iifname
@pod-veths`, named by podnet.naming.host_veth_name — the name podnet-cni gives it):

- an IPv4 frame whose (port . source) is not in `pod-sources` is dropped, counted in
  `drops/spoofed`;
- a frame that is neither IPv4 nor ARP is dropped, counted in `drops/not-ipv4`. Pods have IPv6
  link-local addresses, and the chains above leave IPv6 alone: pod-to-pod IPv6 on one bridge
  would go around every policy. A VLAN-tagged frame (ether type 802.1Q, even priority-tagged
  VLAN 0, which the receiving pod takes as untagged) would go around br_netfilter.

The sets hold every networked pod of the node that has a veth (hostNetwork pods have none);
pods coming and going change their elements only. What a pod must still send passes: its
packets to its own node, replies and ICMP errors carry its address, ARP is untouched, and no
pod uses DHCP (host-local IPAM). A veth podnet does not know (a pod not yet in the cluster's
state) is not checked; the supervisor syncs before it starts a pod. ARP is not checked: a pod
can still answer ARP for another pod's address and draw frames meant for it (out of scope).
"""

from __future__ import annotations

import hashlib
import ipaddress
import weakref
from dataclasses import dataclass, field

from podnet.controlplane import Cluster
from podnet.naming import host_veth_name
from podnet.semantics.adminpolicy import (
    ADMIN,
    ALLOW,
    BASELINE,
    BASELINE_NAME,
    DENY,
    PASS,
    AdminPolicy,
    AdminRule,
)
from podnet.semantics.networkpolicy import (
    EGRESS,
    INGRESS,
    CompiledPolicy,
    Endpoint,
    PolicyEngine,
    PortMatch,
    Rule,
)

TABLE = "podnet-netpol"
FAMILY = "inet"
BRIDGE_FAMILY = "bridge"  # the anti-spoofing table: same name, family bridge
SPOOFED, NOT_IPV4 = "drops/spoofed", "drops/not-ipv4"
BRIDGE_CHAIN = (
    "prerouting",
    "type filter hook prerouting priority filter; policy accept;",
    f'iifname @pod-veths ether type != {{ ip, arp }} counter name "{NOT_IPV4}" drop',
    f'ether type ip iifname @pod-veths iifname . ip saddr != @pod-sources counter name "{SPOOFED}" drop',
)
NAME_MAX = 200  # nftables allows 256 bytes for set, chain and object names; room for prefixes
BASE_CHAINS = {
    EGRESS: "type filter hook forward priority filter; policy accept;",
    INGRESS: "type filter hook postrouting priority srcnat + 10; policy accept;",
}


def bounded(name: str) -> str:
    """A set/chain/counter name within nftables' limit: long ones keep a readable head and
    get a hash of the whole, so two never collide."""
    if len(name) <= NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[:NAME_MAX - 13]}-{digest}"  # nft identifiers: letters, digits, / _ . -


@dataclass(frozen=True)
class NftSet:
    name: str
    type: str
    interval: bool = False
    elements: tuple[str, ...] = ()
    comment: str = ""

    def _head(self) -> str:
        flags = " flags interval;" if self.interval else ""
        comment = f' comment "{self.comment}";' if self.comment else ""
        return f"set {self.name} {{ type {self.type};{flags}{comment}"

    def declaration(self) -> str:
        return self._head() + " }"

    def definition(self) -> str:
        elements = f" elements = {{ {', '.join(self.elements)} }};" if self.elements else ""
        return self._head() + elements + " }"


@dataclass
class Ruleset:
    """A node's tables: the `inet` one — sets (with their elements), counters, and chains (base
    chains first) — and the `bridge` one's sets (`pod-veths`, `pod-sources`; its counters and
    its chain never change)."""

    sets: dict[str, NftSet] = field(default_factory=dict)
    counters: list[str] = field(default_factory=list)
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    bridge_sets: dict[str, NftSet] = field(default_factory=dict)

    def structure(self) -> tuple:
        """Everything but the set elements: equal structures differ only in set contents."""
        return (tuple(s.declaration() for s in self.sets.values()), tuple(self.counters),
                tuple(self.chains.items()), tuple(s.declaration() for s in self.bridge_sets.values()))

    def family_sets(self) -> list[tuple[str, dict[str, NftSet]]]:
        return [(FAMILY, self.sets), (BRIDGE_FAMILY, self.bridge_sets)]

    def text(self) -> str:
        """The inet table as `nft -f` input (the full definition)."""
        lines = [f"table {FAMILY} {TABLE} {{"]
        lines += [f"  counter {c} {{ }}" for c in self.counters]
        lines += [f"  {s.definition()}" for s in self.sets.values()]
        for name, rules in self.chains.items():
            head = [f"    {BASE_CHAINS[name]}"] if name in BASE_CHAINS else []
            lines += [f"  chain {name} {{", *head, *(f"    {r}" for r in rules), "  }"]
        lines.append("}")
        return "\n".join(lines) + "\n"

    def bridge_text(self) -> str:
        """The bridge table (anti-spoofing) as `nft -f` input."""
        name, head, *rules = BRIDGE_CHAIN
        lines = [f"table {BRIDGE_FAMILY} {TABLE} {{", f"  counter {SPOOFED} {{ }}", f"  counter {NOT_IPV4} {{ }}"]
        lines += [f"  {s.definition()}" for s in self.bridge_sets.values()]
        lines += [f"  chain {name} {{", f"    {head}", *(f"    {r}" for r in rules), "  }", "}"]
        return "\n".join(lines) + "\n"


def counter_owner(counter: str) -> tuple[str, str, str] | None:
    """Whose drops a counter counts: (kind, "ns/name" or name, direction), or None for the
    anti-spoofing counters."""
    parts = counter.split("/")
    if parts[0] == "drops" and len(parts) == 4:
        return "NetworkPolicy", f"{parts[2]}/{parts[3]}", parts[1]
    if parts[0] == "admin-drops" and len(parts) == 3:
        return ADMIN, parts[2], parts[1]
    if parts[0] == "baseline-drops" and len(parts) == 2:
        return BASELINE, BASELINE_NAME, parts[1]
    return None


def replace(family: str) -> str:
    """`nft -f` lines removing the table of `family` whether or not it exists."""
    return f"add table {family} {TABLE}\ndelete table {family} {TABLE}\n"


def transaction(previous: Ruleset | None, desired: Ruleset) -> str:
    """The `nft -f` input from `previous` (what the kernel holds; None: unknown) to `desired`.

    Same structure: only the sets whose elements changed (of either table) are flushed and
    refilled, in one transaction. Otherwise both tables are replaced whole — `add` then
    `delete` then the new definition, each, in one transaction, so there is never a moment
    without rules. "" when nothing changed."""
    if previous is not None and previous.structure() == desired.structure():
        lines = []
        for (family, sets), (_, before) in zip(desired.family_sets(), previous.family_sets()):
            for name, wanted in sets.items():
                if before[name].elements == wanted.elements:
                    continue
                lines.append(f"flush set {family} {TABLE} {name}")
                if wanted.elements:
                    lines.append(f"add element {family} {TABLE} {name} {{ {', '.join(wanted.elements)} }}")
        return "\n".join(lines) + "\n" if lines else ""
    return replace(FAMILY) + desired.text() + replace(BRIDGE_FAMILY) + desired.bridge_text()


# ---------------------------------------------------------------- rendering


def _addresses(networks) -> tuple[str, ...]:
    """IPv4 networks merged (an interval set refuses overlapping elements), /32s as addresses."""
    v4 = [n for n in networks if n.version == 4]
    return tuple(str(n.network_address) if n.prefixlen == 32 else str(n)
                 for n in ipaddress.collapse_addresses(v4))


def _ips(endpoints: list[Endpoint]) -> tuple[str, ...]:
    return tuple(sorted({str(ep.ip) for ep in endpoints if ep.ip is not None and ep.ip.version == 4},
                        key=ipaddress.ip_address))


# What does not depend on the node (peer sets, named-port sets), computed once per engine: a
# sync renders every node of one cluster with one engine.
_SHARED: weakref.WeakKeyDictionary[PolicyEngine, dict] = weakref.WeakKeyDictionary()


class _Renderer:
    def __init__(self, engine: PolicyEngine, node: str):
        self.engine = engine
        self.shared = _SHARED.setdefault(engine, {})
        self.node = node
        self.local = sorted((ep for ep in self.engine.pods.values()
                             if ep.is_policy_pod and ep.node == node and self.engine.networked(ep)),
                            key=lambda ep: (ep.namespace, ep.name))
        self.policies = sorted(self.engine.policies, key=lambda p: (p.namespace, p.name))
        self.out = Ruleset()

    def add_set(self, name: str, type_: str, elements: tuple[str, ...], interval: bool = False,
                comment: str = "") -> str:
        if name not in self.out.sets:
            self.out.sets[name] = NftSet(name, type_, interval, elements, comment)
        return name

    def render(self) -> Ruleset:
        self._anti_spoofing()
        isolated = {d: [p for p in self.policies if p.isolates(d)] for d in (EGRESS, INGRESS)}
        admins = {d: [a for a in self.engine.admin_policies if a.rules(d)] for d in (EGRESS, INGRESS)}
        base = self.engine.baseline
        baseline = {d: base if base is not None and base.rules(d) else None for d in (EGRESS, INGRESS)}
        tiered = {d: bool(admins[d] or baseline[d]) for d in (EGRESS, INGRESS)}
        subjects: dict[str, str] = {}
        governed = {d: [ep for ep in self.local if self.engine.governed(ep, d)] for d in (EGRESS, INGRESS)}
        for direction in (EGRESS, INGRESS):
            members = [ep for ep in self.local if any(p.selects(ep) for p in isolated[direction])]
            self.add_set(f"{direction}-isolated", "ipv4_addr", _ips(members),
                         comment=f"pods on {self.node} isolated for {direction}"[:120])
            if tiered[direction]:
                self.add_set(f"{direction}-governed", "ipv4_addr", _ips(governed[direction]),
                             comment=f"pods on {self.node} some policy judges for {direction}"[:120])
        either = set(governed[EGRESS]) | set(governed[INGRESS])
        governed_anywhere = [ep for ep in self.local if ep in either]
        self.add_set("self", "ipv4_addr . ipv4_addr",
                     tuple(f"{ip} . {ip}" for ip in _ips(governed_anywhere)),
                     comment="a pod reaching itself, through a Service (rule 33)")
        for policy in self.policies:
            if policy.isolates(EGRESS) or policy.isolates(INGRESS):
                name = bounded(f"subjects/{policy.namespace}/{policy.name}")
                subjects[policy.ref] = self.add_set(name, "ipv4_addr",
                                                    _ips([ep for ep in self.local if policy.selects(ep)]))
        for direction in (EGRESS, INGRESS):
            self._base_chain(direction, isolated[direction], subjects, admins[direction], baseline[direction])
        for direction in (EGRESS, INGRESS):
            for policy in isolated[direction]:
                self.out.chains[self._policy_chain(direction, policy)] = tuple(
                    line for rule in policy.rules(direction) for line in self._rule(direction, policy, rule))
            if admins[direction]:
                self.out.chains[f"{direction}/admin"] = tuple(
                    line for admin in admins[direction] for rule in admin.rules(direction)
                    for line in self._admin_rule(direction, admin, rule))
            if baseline[direction] is not None:
                self.out.chains[f"{direction}/baseline"] = tuple(
                    line for rule in baseline[direction].rules(direction)
                    for line in self._admin_rule(direction, baseline[direction], rule))
        return self.out

    def _anti_spoofing(self) -> None:
        """The bridge table's sets: each local pod's veth, and its (veth . address)."""
        ports = [(host_veth_name(ep.namespace, ep.name), str(ep.ip)) for ep in self.local if ep.ip.version == 4]
        self.out.bridge_sets["pod-veths"] = NftSet(
            "pod-veths", "ifname", elements=tuple(f'"{veth}"' for veth, _ in sorted(ports)),
            comment=f"the veths of the pods on {self.node}"[:120])
        self.out.bridge_sets["pod-sources"] = NftSet(
            "pod-sources", "ifname . ipv4_addr", elements=tuple(f'"{veth}" . {ip}' for veth, ip in sorted(ports)),
            comment="each pod's veth and the one source address it may send from")

    def _policy_chain(self, direction: str, policy: CompiledPolicy) -> str:
        return bounded(f"{direction}/{policy.namespace}/{policy.name}")

    def _base_chain(self, direction: str, policies: list[CompiledPolicy], subjects: dict[str, str],
                    admins: list[AdminPolicy], baseline: AdminPolicy | None) -> None:
        """The direction's hook: the tiers in order — ANPs (`DIRECTION/admin`: accept, drop, or
        return for Pass and no match), the NetworkPolicies of an isolated pod (accept, or count
        and drop), the baseline (`DIRECTION/baseline`), then accept."""
        me = "saddr" if direction == EGRESS else "daddr"
        tiered = bool(admins or baseline)
        rules = ["ct state established,related accept",
                 f"ip {me} != @{direction}-{'governed' if tiered else 'isolated'} accept"]
        if direction == INGRESS:
            rules.append("fib saddr type local accept")  # from the pod's own node (rule 34)
        rules.append("ip saddr . ip daddr @self accept")
        if admins:
            rules.append(f"jump {direction}/admin")
        for policy in policies:
            rules.append(f"ip {me} @{subjects[policy.ref]} jump {self._policy_chain(direction, policy)}")
        for policy in policies:
            counter = bounded(f"drops/{direction}/{policy.namespace}/{policy.name}")
            self.out.counters.append(counter)
            rules.append(f'ip {me} @{subjects[policy.ref]} counter name "{counter}"')
        if not tiered:
            rules.append("meta nfproto ipv4 drop")  # podnet is IPv4-only: IPv6 passes untouched
        else:
            rules.append(f"ip {me} @{direction}-isolated drop")
            if baseline is not None:
                rules.append(f"jump {direction}/baseline")
        self.out.chains[direction] = tuple(rules)

    def _admin_rule(self, direction: str, policy: AdminPolicy, rule: AdminRule) -> list[str]:
        """One ANP or baseline rule: its subjects on this node, its peers, its ports, its action."""
        me, peer = ("saddr", "daddr") if direction == EGRESS else ("daddr", "saddr")
        where = "baseline" if policy.baseline else f"admin/{policy.name}"
        subjects = bounded(f"{where}/subjects")
        if subjects not in self.out.sets:  # once per policy, not per rule
            self.add_set(subjects, "ipv4_addr", _ips([ep for ep in self.local if policy.selects(ep)]),
                         comment=f"pods on {self.node} selected by {policy.ref}"[:120])
        peers = bounded(f"{where}/{direction}/{rule.index}")
        key = ("peers", peers)
        if key not in self.shared:
            self.shared[key] = _addresses([n for p in rule.peers for n in self.engine.peer_networks(p)])
        self.add_set(peers, "ipv4_addr", self.shared[key], interval=True)
        if rule.action == ALLOW:
            verdict = "accept"
        elif rule.action == PASS:
            verdict = "return"  # on to the NetworkPolicies: the base chain goes on after `jump`
        else:
            assert rule.action == DENY, rule.action
            counter = bounded(f"baseline-drops/{direction}" if policy.baseline
                              else f"admin-drops/{direction}/{policy.name}")
            if counter not in self.out.counters:
                self.out.counters.append(counter)
            verdict = f'counter name "{counter}" drop'
        match = f"ip {me} @{subjects} ip {peer} @{peers} "
        if rule.ports is None:
            return [f"{match}{verdict}"]
        return [f"{match}{self._port(pm)} {verdict}" for pm in rule.ports]

    def _rule(self, direction: str, policy: CompiledPolicy, rule: Rule) -> list[str]:
        peer = "saddr" if direction == INGRESS else "daddr"
        match = ""
        if rule.peers is not None:  # rule 13: no peers, everyone
            name = bounded(f"{direction}/{policy.namespace}/{policy.name}/{rule.index}")
            key = ("peers", name)
            if key not in self.shared:
                self.shared[key] = _addresses([n for p in rule.peers for n in self.engine.peer_networks(p)])
            self.add_set(name, "ipv4_addr", self.shared[key], interval=True)
            match = f"ip {peer} @{name} "
        if rule.ports is None:  # rule 14: every port of every protocol
            return [f"{match}accept"]
        return [f"{match}{self._port(pm)} accept" for pm in rule.ports]

    def _port(self, pm: PortMatch) -> str:
        proto = pm.protocol.lower()
        if pm.name is not None:  # rule 30: the destination pod's port of that name
            name = bounded(f"port/{proto}/{pm.name}")
            key = ("port", name)
            if key not in self.shared:
                self.shared[key] = tuple(f"{ip} . {port}" for ip, port in
                                         self.engine.named_port_targets(pm.name, pm.protocol) if ip.version == 4)
            self.add_set(name, "ipv4_addr . inet_service", self.shared[key])
            return f"meta l4proto {proto} ip daddr . th dport @{name}"
        if pm.port is None:  # rule 27: every port of the protocol
            return f"meta l4proto {proto}"
        end = pm.end_port if pm.end_port is not None else pm.port
        ports = f"{pm.port}-{end}" if end != pm.port else str(pm.port)  # rule 29
        return f"meta l4proto {proto} th dport {ports}"


def render(cluster: Cluster, node: str, engine: PolicyEngine | None = None) -> Ruleset:
    """The desired NetworkPolicy table of `node` (see the module doc). `engine`: the cluster's
    compiled policies, when the caller renders several nodes of one cluster."""
    return _Renderer(engine if engine is not None else PolicyEngine(cluster), node).render()
