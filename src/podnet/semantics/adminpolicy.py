"""AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1): the
cluster administrator's tiers around the namespaced NetworkPolicies.

The API (kubernetes-sigs/network-policy-api, apis/v1alpha1) judges each direction of a
connection — the source's egress, the destination's ingress — tier by tier, and the first tier
that decides wins:

1. **AdminNetworkPolicy** (ANP): the ANPs whose subject selects the pod, lowest `priority`
   first (0..1000). Within one ANP the rules of the direction are tried in the order written;
   the first rule whose peers and ports match the connection decides: `Allow` (no
   NetworkPolicy or baseline can deny it), `Deny` (none can allow it), or `Pass` (skip every
   remaining ANP rule and go to tier 2). Two ANPs of one priority that both match are
   ambiguous upstream ("the implementation can apply any"); podnet orders them by name, and
   `podnet check` warns about such pairs.
2. **NetworkPolicy**: if a NetworkPolicy isolates the pod for the direction, the NetworkPolicies
   decide (allowed by a rule, or denied) and the baseline is not consulted.
3. **BaselineAdminNetworkPolicy** (BANP): the one named `default`, if its subject selects the
   pod: its rules in order, first match decides, `Allow` or `Deny`.
4. Nothing decided: allowed.

Subjects and the `namespaces`/`pods` peers select pods by namespace labels (a namespace's
`kubernetes.io/metadata.name` label included, as for NetworkPolicy) and pod labels;
host-network pods are never subjects nor such peers (they are their node). Egress peers may also
be `nodes` (the nodes' addresses, by node labels: the node itself and its host-network pods)
and `networks` (CIDRs, matching any address — pods' too, as the API says). Ports are
`portNumber` (protocol defaults to TCP), `portRange` (inclusive) or `namedPort` — a name resolved
on the destination pod for whatever protocol that pod declares it with.

The built-in exceptions of NetworkPolicy hold before every tier (podnet.semantics.networkpolicy):
an endpoint always reaches itself, and a pod and its own node always reach each other (kubelet's
probes; the kernel sees that traffic on the node's input path, never on the forward path the
policies filter).

The compiled forms are frozen data shared by `trace`, `matrix` and the kernel's nftables
(podnet.policy), like NetworkPolicy's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from podnet.api.labels import Selector
from podnet.api.objects import KubeObject
from podnet.semantics.policymatch import (
    EGRESS,
    INGRESS,
    PROTOCOLS,
    Endpoint,
    IPNetwork,
    PortMatch,
    network_of,
    normalize_protocol,
    selector_of,
)

ADMIN, BASELINE = "AdminNetworkPolicy", "BaselineAdminNetworkPolicy"
ALLOW, DENY, PASS = "Allow", "Deny", "Pass"
BASELINE_NAME = "default"  # the API admits one BANP, by this name


@dataclass(frozen=True)
class Subject:
    """The pods a policy applies to: `namespaces` (pods is None) or `pods` (both selectors)."""

    namespace_selector: Selector
    pod_selector: Selector | None = None

    def selects(self, ep: Endpoint) -> bool:
        if not ep.is_policy_pod:  # host-network pods are never selected
            return False
        if not self.namespace_selector.matches(ep.namespace_labels):
            return False
        return self.pod_selector is None or self.pod_selector.matches(ep.labels)

    def __str__(self) -> str:
        where = "every namespace" if self.namespace_selector.is_empty else f"namespaces {{{self.namespace_selector}}}"
        if self.pod_selector is None or self.pod_selector.is_empty:
            return f"all pods in {where}"
        return f"pods {{{self.pod_selector}}} in {where}"


@dataclass(frozen=True)
class AdminPeer:
    """One entry of `from`/`to`: exactly one of pods (a Subject), nodes (a node label
    selector) or networks (CIDRs)."""

    pods: Subject | None = None
    nodes: Selector | None = None
    networks: tuple[IPNetwork, ...] = ()

    def matches(self, ep: Endpoint, node_labels: Mapping[str, Mapping[str, str]]) -> bool:
        if self.pods is not None:
            return self.pods.selects(ep)
        if self.nodes is not None:
            return ep.is_node_address and ep.node is not None and self.nodes.matches(node_labels.get(ep.node, {}))
        return ep.ip is not None and any(ep.ip.version == n.version and ep.ip in n for n in self.networks)

    def __str__(self) -> str:
        if self.pods is not None:
            return str(self.pods)
        if self.nodes is not None:
            return "every node" if self.nodes.is_empty else f"nodes {{{self.nodes}}}"
        return "networks " + ", ".join(map(str, self.networks))


@dataclass(frozen=True)
class AdminRule:
    """One ingress or egress rule; ports None: every port (the field is absent)."""

    direction: str
    index: int
    name: str
    action: str
    peers: tuple[AdminPeer, ...]
    ports: tuple[PortMatch, ...] | None

    def matches(self, peer: Endpoint, destination: Endpoint, port: int, protocol: str,
                node_labels: Mapping[str, Mapping[str, str]]) -> bool:
        if not any(p.matches(peer, node_labels) for p in self.peers):
            return False
        return self.ports is None or any(p.matches(port, protocol, destination) for p in self.ports)

    @property
    def label(self) -> str:
        """`ingress[0] "deny-from-y"`: where the rule is, and its name when it has one."""
        return f'{self.direction}[{self.index}]' + (f' "{self.name}"' if self.name else "")

    def __str__(self) -> str:
        word = "from" if self.direction == INGRESS else "to"
        ports = "any port" if self.ports is None else ", ".join(map(str, self.ports))
        return f"{self.label}: {self.action} {word} {' or '.join(map(str, self.peers))} on {ports}"


@dataclass(frozen=True)
class AdminPolicy:
    """An ANP (baseline False) or the BANP (baseline True, priority None), as plain data."""

    name: str
    priority: int | None
    subject: Subject
    ingress: tuple[AdminRule, ...] = ()
    egress: tuple[AdminRule, ...] = ()
    baseline: bool = False

    @property
    def kind(self) -> str:
        return BASELINE if self.baseline else ADMIN

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.name}"

    def rules(self, direction: str) -> tuple[AdminRule, ...]:
        return self.ingress if direction == INGRESS else self.egress

    def selects(self, ep: Endpoint) -> bool:
        return self.subject.selects(ep)


@dataclass(frozen=True)
class AdminDecision:
    """The rule of an ANP or of the BANP that matched one side of a connection."""

    policy: AdminPolicy
    rule: AdminRule

    @property
    def action(self) -> str:
        return self.rule.action

    def __str__(self) -> str:
        priority = "" if self.policy.priority is None else f" (priority {self.policy.priority})"
        return f"{self.policy.ref}{priority} {self.rule.label}"


# ---------------------------------------------------------------- compiling


def _subject(value: Mapping[str, Any]) -> Subject:
    if value.get("pods") is not None:
        pods = value["pods"] or {}
        return Subject(selector_of(pods.get("namespaceSelector")), selector_of(pods.get("podSelector")))
    return Subject(selector_of(value.get("namespaces")))


def _peer(value: Mapping[str, Any]) -> AdminPeer:
    if value.get("networks") is not None:
        return AdminPeer(networks=tuple(network_of(cidr) for cidr in value["networks"]))
    if value.get("nodes") is not None:
        return AdminPeer(nodes=selector_of(value["nodes"]))
    return AdminPeer(pods=_subject(value))


def compile_ports(entries: list[Mapping[str, Any]] | None) -> tuple[PortMatch, ...] | None:
    """AdminNetworkPolicyPort → PortMatch: a named port matches in each protocol, since the
    destination pod's declaration says which one."""
    if entries is None:
        return None
    found: list[PortMatch] = []
    for entry in entries:
        entry = entry or {}
        if entry.get("namedPort") is not None:
            found += [PortMatch(protocol, name=str(entry["namedPort"])) for protocol in PROTOCOLS]
        elif entry.get("portRange") is not None:
            span = entry["portRange"]
            found.append(PortMatch(normalize_protocol(span.get("protocol") or "TCP"),
                                   int(span["start"]), int(span["end"])))
        elif entry.get("portNumber") is not None:
            number = entry["portNumber"]
            found.append(PortMatch(normalize_protocol(number.get("protocol") or "TCP"), int(number["port"])))
    return tuple(found)


def _rules(spec: Mapping[str, Any], direction: str) -> tuple[AdminRule, ...]:
    peers_field = "from" if direction == INGRESS else "to"
    return tuple(
        AdminRule(direction, i, str(rule.get("name") or ""), str(rule.get("action")),
                  tuple(_peer(p or {}) for p in rule.get(peers_field) or ()),
                  compile_ports(rule.get("ports")))
        for i, rule in enumerate(spec.get(direction) or ())
    )


def compile_admin_policy(obj: KubeObject) -> AdminPolicy:
    """An AdminNetworkPolicy or BaselineAdminNetworkPolicy object (validated) → AdminPolicy."""
    spec = obj.spec
    baseline = obj.kind == BASELINE
    return AdminPolicy(obj.name, None if baseline else int(spec.get("priority") or 0),
                       _subject(spec.get("subject") or {}), _rules(spec, INGRESS), _rules(spec, EGRESS), baseline)


def ordered(policies: list[AdminPolicy]) -> tuple[AdminPolicy, ...]:
    """ANPs in the order they are tried: priority, then name (upstream leaves ties undefined)."""
    return tuple(sorted(policies, key=lambda p: (p.priority, p.name)))


def same_priority_pairs(policies: tuple[AdminPolicy, ...]) -> list[tuple[AdminPolicy, AdminPolicy]]:
    """Pairs of ANPs sharing a priority: upstream, which of them wins a connection both match
    is undefined (podnet takes the name order)."""
    return [(a, b) for i, a in enumerate(policies) for b in policies[i + 1:] if a.priority == b.priority]

