"""NetworkPolicy (networking.k8s.io/v1): which connections a cluster's policies allow, and why.

The rules are those of docs/specs/networkpolicy.md (numbers below refer to it). Policies
are compiled once into plain, frozen data (`CompiledPolicy` → `Rule` → `Peer` / `PortMatch`),
which three consumers share:

- `PolicyEngine.evaluate()`: one connection, explained (`podnet trace`);
- `podnet.semantics.reachability`: everyone × everyone at once (`podnet matrix`);
- the real data plane, which renders the same compiled rules into nftables.

A connection is judged after DNAT: the destination is the backend pod, so `podnet trace` calls
`evaluate()` once per candidate endpoint. A pod's packets are taken to carry its own address;
the kernel makes that true (podnet.policy drops a forged source at the pod's bridge port).

The built-in exceptions, applied before any policy (§F):

- **self**: an endpoint can always reach itself (rule 33, 35). Same pod, or the same IP (two
  hostNetwork pods on one node share it). The e2e suite ignores these pairs; podnet allows them.
- **own node**: a pod can always be reached from, and reach, the node it runs on (rule 34). The
  node is its LAN IP (`node/NAME`), its cni0 gateway, or any hostNetwork pod on it.
- **hostNetwork pods** (rule 36, undefined upstream; the common behaviour): such a pod is its
  node's IP. No policy selects it, neither as subject nor through a podSelector/namespaceSelector
  peer, and named ports never resolve on it; an ipBlock containing the node IP does match it.
- **non-pods** (the `external` client, node IPs, any other address): never isolated; only an
  ipBlock or an empty `from`/`to` matches them (rule 26); named ports never resolve on them (30).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from podnet.api.labels import Selector
from podnet.api.objects import KubeObject
from podnet.semantics.adminpolicy import (
    ALLOW,
    BASELINE,
    BASELINE_NAME,
    PASS,
    AdminDecision,
    AdminPeer,
    AdminPolicy,
    compile_admin_policy,
    ordered,
)
from podnet.semantics.policymatch import (
    EGRESS,
    INGRESS,
    NAMESPACE_NAME_LABEL,
    Endpoint,
    IPAddress,
    IPBlock,
    IPNetwork,
    PortMatch,
    compile_port,
    has_network,
    network_of,
    normalize_packet_protocol,
    pod_endpoint,
    selector_of,
)

if TYPE_CHECKING:
    from podnet.controlplane import Cluster
    from podnet.controlplane.cluster import ClusterChange

# ---------------------------------------------------------------- compiled policies


@dataclass(frozen=True)
class Peer:
    """One entry of `from`/`to` (rules 17-26).

    Either `ip_block`, or selectors: `pod_selector` (EVERYTHING when absent) AND the namespace
    condition: `namespace_selector` over namespace labels, or when it is None (absent), the
    policy's own `namespace` (rule 20: absent is not empty).
    """

    namespace: str
    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    ip_block: IPBlock | None = None

    def matches(self, ep: Endpoint) -> bool:
        if self.ip_block is not None:
            return self.ip_block.contains(ep.ip)  # pods too (rule 24)
        if not ep.is_policy_pod:  # rule 26, and hostNetwork pods (rule 36)
            return False
        if self.namespace_selector is None:
            if ep.namespace != self.namespace:
                return False
        elif not self.namespace_selector.matches(ep.namespace_labels):
            return False
        return self.pod_selector is None or self.pod_selector.matches(ep.labels)

    def __str__(self) -> str:
        if self.ip_block is not None:
            return str(self.ip_block)
        pods = "all pods" if self.pod_selector is None or self.pod_selector.is_empty else f"pods {{{self.pod_selector}}}"
        if self.namespace_selector is None:
            where = f"in namespace {self.namespace}"
        elif self.namespace_selector.is_empty:
            where = "in every namespace"
        else:
            where = f"in namespaces {{{self.namespace_selector}}}"
        return f"{pods} {where}"


@dataclass(frozen=True)
class Rule:
    """One ingress or egress rule. peers None: every peer (rule 13); ports None: every port (14)."""

    direction: str
    index: int
    peers: tuple[Peer, ...] | None
    ports: tuple[PortMatch, ...] | None

    def matches_peer(self, peer: Endpoint) -> bool:
        return self.peers is None or any(p.matches(peer) for p in self.peers)

    def matches_port(self, port: int, protocol: str, destination: Endpoint) -> bool:
        return self.ports is None or any(p.matches(port, protocol, destination) for p in self.ports)

    def matches(self, peer: Endpoint, destination: Endpoint, port: int, protocol: str) -> bool:
        """Peer AND port (rule 12); `destination` resolves named ports."""
        return self.matches_peer(peer) and self.matches_port(port, protocol, destination)

    def __str__(self) -> str:
        word = "from" if self.direction == INGRESS else "to"
        peers = "anyone" if self.peers is None else " or ".join(map(str, self.peers))
        ports = "any port" if self.ports is None else ", ".join(map(str, self.ports))
        return f"{self.direction}[{self.index}]: {word} {peers} on {ports}"


@dataclass(frozen=True)
class CompiledPolicy:
    """A NetworkPolicy after defaulting, as plain data.

    policy_types is the defaulted list (rule 9), in canonical order. `ingress`/`egress` hold the
    rules of the enabled directions only (rule 10): an enabled direction with no rules is deny-all.
    """

    namespace: str
    name: str
    pod_selector: Selector
    policy_types: tuple[str, ...]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def isolates(self, direction: str) -> bool:
        return ("Ingress" if direction == INGRESS else "Egress") in self.policy_types

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.ingress if direction == INGRESS else self.egress

    def selects(self, ep: Endpoint) -> bool:
        """Rule 8: pods of the policy's own namespace, by podSelector (hostNetwork pods never)."""
        return ep.is_policy_pod and ep.namespace == self.namespace and self.pod_selector.matches(ep.labels)


def compile_peer(namespace: str, peer: Mapping[str, Any]) -> Peer:
    block = peer.get("ipBlock")
    if block:
        return Peer(namespace, ip_block=IPBlock(network_of(block["cidr"]),
                                                tuple(network_of(e) for e in block.get("except") or ())))
    pod_selector = peer.get("podSelector")
    namespace_selector = peer.get("namespaceSelector")
    return Peer(
        namespace,
        pod_selector=None if pod_selector is None else selector_of(pod_selector),
        namespace_selector=None if namespace_selector is None else selector_of(namespace_selector),
    )


def compile_rule(namespace: str, direction: str, index: int, rule: Mapping[str, Any] | None) -> Rule:
    rule = rule or {}
    peers = rule.get("from" if direction == INGRESS else "to") or None
    ports = rule.get("ports") or None
    return Rule(
        direction,
        index,
        None if peers is None else tuple(compile_peer(namespace, p or {}) for p in peers),
        None if ports is None else tuple(compile_port(p or {}) for p in ports),
    )


def default_policy_types(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """SetDefaults_NetworkPolicy (rule 9); an explicit list wins, in any order (10, 11)."""
    given = spec.get("policyTypes") or []
    if given:
        return tuple(t for t in ("Ingress", "Egress") if t in given)
    return ("Ingress", "Egress") if len(spec.get("egress") or []) != 0 else ("Ingress",)


def compile_policy(policy: KubeObject) -> CompiledPolicy:
    spec = policy.spec
    types = default_policy_types(spec)
    ns = policy.namespace
    ingress = tuple(compile_rule(ns, INGRESS, i, r) for i, r in enumerate(spec.get("ingress") or [])) \
        if "Ingress" in types else ()
    egress = tuple(compile_rule(ns, EGRESS, i, r) for i, r in enumerate(spec.get("egress") or [])) \
        if "Egress" in types else ()
    return CompiledPolicy(ns, policy.name, selector_of(spec.get("podSelector") or {}), types, ingress, egress)


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class RuleRef:
    policy: str  # "ns/name"
    direction: str
    index: int

    def __str__(self) -> str:
        return f"{self.policy} {self.direction}[{self.index}]"


@dataclass(frozen=True)
class Side:
    """One direction's judgement: the source's egress, or the destination's ingress.

    isolated: some NetworkPolicy selects `subject` for this direction; `policies` names them.
    allowed_by: every rule of those policies that matches the connection.
    decided_by: the AdminNetworkPolicy or baseline rule that decided (Allow or Deny), if one did.
    passed_by: the AdminNetworkPolicy rule whose Pass handed the connection on to NetworkPolicy.
    admin: the AdminNetworkPolicies and baseline consulted (their subject selects the pod).
    exception: set when the side was decided without rules (non-pod, hostNetwork, own node).
    """

    direction: str
    subject: str
    allowed: bool
    isolated: bool = False
    policies: tuple[str, ...] = ()
    allowed_by: tuple[RuleRef, ...] = ()
    exception: str | None = None
    connection: str = ""  # "TCP/80 to y/b" or "TCP/80 from x/a", for messages
    decided_by: AdminDecision | None = None
    passed_by: AdminDecision | None = None
    admin: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """What judged this side, for a trace's hop: "NetworkPolicy", or "policy" once the
        admin tiers took part (the explanation names each)."""
        return "policy" if self.admin else "NetworkPolicy"

    @property
    def verdict_word(self) -> str:
        return "allowed" if self.allowed else "denied"

    def __str__(self) -> str:
        what = f"{self.direction} {'from' if self.direction == EGRESS else 'to'} {self.subject}"
        if self.exception is not None:
            return f"{what}: {self.exception}"
        if self.decided_by is not None and not self.decided_by.policy.baseline:
            return f"{what}: {self.verdict_word} by {self.decided_by}"
        steps = [f"passed on by {self.passed_by}"] if self.passed_by is not None else []
        if not self.passed_by and self.admin and any(not a.startswith(BASELINE) for a in self.admin):
            steps.append(f"no rule of {', '.join(a for a in self.admin if not a.startswith(BASELINE))} "
                         f"matches {self.connection}")
        kind = "Egress" if self.direction == EGRESS else "Ingress"
        if self.isolated:
            if self.allowed:
                steps.append(f"allowed by {', '.join(map(str, self.allowed_by))}")
            else:
                steps.append(f"isolated by {', '.join(self.policies)}; no rule allows {self.connection}")
        elif self.decided_by is not None:
            steps.append(f"no NetworkPolicy isolates it for {kind}; {self.verdict_word} by {self.decided_by}")
        else:
            steps.append(f"not isolated (no NetworkPolicy selects it for {kind})")
        return f"{what}: " + "; ".join(steps)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    src: Endpoint
    dst: Endpoint
    port: int
    protocol: str
    egress: Side
    ingress: Side
    exception: str | None = None  # "self": decided before any policy

    @property
    def reason(self) -> str:
        if self.exception is not None:
            return self.exception
        if self.allowed:
            return f"allowed: {self.egress}; {self.ingress}"
        blocked = [s for s in (self.egress, self.ingress) if not s.allowed]
        return "blocked: " + "; ".join(map(str, blocked))

    def to_dict(self) -> dict[str, Any]:
        def side(s: Side) -> dict[str, Any]:
            return {"allowed": s.allowed, "isolated": s.isolated, "policies": list(s.policies),
                    "allowedBy": [str(r) for r in s.allowed_by], "exception": s.exception,
                    "decidedBy": None if s.decided_by is None else str(s.decided_by),
                    "action": None if s.decided_by is None else s.decided_by.action,
                    "passedBy": None if s.passed_by is None else str(s.passed_by), "explanation": str(s)}

        return {"allowed": self.allowed, "from": self.src.ref, "to": self.dst.ref, "port": self.port,
                "protocol": self.protocol, "reason": self.reason, "egress": side(self.egress),
                "ingress": side(self.ingress)}


# ---------------------------------------------------------------- the engine

# what PolicyEngine reads of a cluster, with its nodes and config: two clusters that share these
# objects have the same verdicts and the same kernel rules (a write of anything else needs no sync)
POLICY_INPUT_KINDS = frozenset({"Namespace", "Node", "Pod", "NetworkPolicy", "AdminNetworkPolicy", BASELINE})


def same_policy_inputs(change: ClusterChange) -> bool:
    """Whether the cluster after `change` has exactly the policy inputs of the one before: no
    object of those kinds added, replaced or removed, the same nodes and config."""
    before, after = change.before, change.after
    return before is not None and after.config is before.config and after.nodes == before.nodes and \
        not change.touches(POLICY_INPUT_KINDS)



class PolicyEngine:
    """Every NetworkPolicy of a computed cluster, compiled once; pods, nodes and addresses as endpoints."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.namespace_labels: dict[str, Mapping[str, str]] = {}
        for ns in cluster.of_kind("Namespace"):
            labels = dict(ns.labels)
            labels.setdefault(NAMESPACE_NAME_LABEL, ns.name)  # rule 21
            self.namespace_labels[ns.name] = MappingProxyType(labels)
        self.policies: tuple[CompiledPolicy, ...] = tuple(compile_policy(p) for p in cluster.of_kind("NetworkPolicy"))
        self.by_namespace: dict[str, list[CompiledPolicy]] = defaultdict(list)
        for policy in self.policies:
            self.by_namespace[policy.namespace].append(policy)
        # The admin tiers: ANPs in the order they are tried, and the one baseline.
        self.admin_policies: tuple[AdminPolicy, ...] = ordered(
            [compile_admin_policy(p) for p in cluster.of_kind("AdminNetworkPolicy")])
        self.baseline: AdminPolicy | None = next(
            (compile_admin_policy(p) for p in cluster.of_kind(BASELINE) if p.name == BASELINE_NAME), None)
        self.node_labels: dict[str, Mapping[str, str]] = {
            n.name: MappingProxyType(dict(n.labels)) for n in cluster.of_kind("Node")}
        self.pods: dict[str, Endpoint] = {}
        self.pod_objects: dict[str, KubeObject] = {}
        for pod in cluster.of_kind("Pod"):
            ep = pod_endpoint(pod, self.ns_labels(pod.namespace))
            self.pods[ep.ref] = ep
            self.pod_objects[ep.ref] = pod
        self.nodes: dict[str, Endpoint] = {
            n.name: Endpoint("node", n.ip, name=n.name, node=n.name) for n in cluster.nodes
        }
        self._pods_by_namespace: dict[str, list[Endpoint]] | None = None  # built on first use
        self._by_ip: dict[IPAddress, Endpoint] = {}
        for n in cluster.nodes:
            self._by_ip[n.gateway] = self.nodes[n.name]  # traffic from the host to its pods leaves via cni0
            self._by_ip[n.ip] = self.nodes[n.name]
        for ref, ep in self.pods.items():
            if ep.ip is not None and ep.is_policy_pod and has_network(self.pod_objects[ref]):
                self._by_ip[ep.ip] = ep

    # -- endpoints

    def ns_labels(self, namespace: str) -> Mapping[str, str]:
        labels = self.namespace_labels.get(namespace)
        if labels is None:
            labels = self.namespace_labels[namespace] = MappingProxyType({NAMESPACE_NAME_LABEL: namespace})
        return labels

    def pod(self, namespace: str, name: str) -> Endpoint:
        ep = self.pods.get(f"{namespace}/{name}")
        if ep is None:
            raise KeyError(f'pod "{name}" not found in namespace {namespace}')
        return ep

    def node(self, name: str) -> Endpoint:
        ep = self.nodes.get(name)
        if ep is None:
            raise KeyError(f'node "{name}" not found')
        return ep

    def external(self, ip: str | IPAddress | None = None) -> Endpoint:
        """The `external` client on the LAN (192.168.1.100 by default), or any address given."""
        if ip is None:
            return Endpoint("external", self.cluster.config.networking.external_ip, name="external")
        address = ipaddress.ip_address(str(ip))
        return Endpoint("external", address, name=str(address))

    def endpoint_for_ip(self, ip: str | IPAddress) -> Endpoint:
        """A pod's IP gives the pod, a node's LAN or cni0 address the node, anything else an address."""
        address = ipaddress.ip_address(str(ip))
        found = self._by_ip.get(address)
        if found is not None:
            return found
        if address == self.cluster.config.networking.external_ip:
            return self.external()
        return self.external(address)

    def endpoint(self, ref: str) -> Endpoint:
        """"ns/pod", "node/NAME", "external", or an IP address."""
        if ref == "external":
            return self.external()
        if ref.startswith("node/"):
            return self.node(ref[len("node/"):])
        if "/" in ref:
            namespace, name = ref.split("/", 1)
            return self.pod(namespace, name)
        try:
            return self.endpoint_for_ip(ref)
        except ValueError:
            raise KeyError(f"{ref!r} is not ns/pod, node/NAME, external or an IP address") from None

    # -- policy selection

    def isolating(self, ep: Endpoint, direction: str) -> list[CompiledPolicy]:
        """The policies that select `ep` for `direction` (rule 2); empty means not isolated."""
        if not ep.is_policy_pod:
            return []
        return [p for p in self.by_namespace.get(ep.namespace, ()) if p.isolates(direction) and p.selects(ep)]

    def admin_for(self, ep: Endpoint, direction: str) -> list[AdminPolicy]:
        """The ANPs with rules for `direction` whose subject selects `ep`, in the order tried."""
        return [p for p in self.admin_policies if p.rules(direction) and p.selects(ep)]

    def baseline_for(self, ep: Endpoint, direction: str) -> AdminPolicy | None:
        """The baseline, if it has rules for `direction` and its subject selects `ep`."""
        base = self.baseline
        return base if base is not None and base.rules(direction) and base.selects(ep) else None

    def governed(self, ep: Endpoint, direction: str) -> bool:
        """Some policy of any tier may judge `ep`'s `direction`: a data plane filters its packets."""
        return bool(self.isolating(ep, direction) or self.admin_for(ep, direction)
                    or self.baseline_for(ep, direction))

    def selected_pods(self, policy: CompiledPolicy) -> list[Endpoint]:
        """The pods a policy applies to, in namespace/name order (a data plane renders per pod)."""
        return [ep for ep in self.pods.values() if policy.selects(ep)]

    def peer_pods(self, peer: Peer) -> list[Endpoint]:
        """The pods a peer matches (an ipBlock peer also matches non-pods: render its CIDRs as well).

        A selector peer looks only at the namespaces it can match (its own, or those whose
        labels its namespaceSelector matches), in the cluster's pod order."""
        if peer.ip_block is not None:
            return [ep for ep in self.pods.values() if peer.matches(ep)]
        if self._pods_by_namespace is None:
            self._pods_by_namespace = defaultdict(list)
            for ep in self.pods.values():
                self._pods_by_namespace[ep.namespace].append(ep)
        if peer.namespace_selector is None:
            namespaces = [peer.namespace]
        else:
            namespaces = [ns for ns in self._pods_by_namespace if peer.namespace_selector.matches(self.ns_labels(ns))]
        found = [ep for ns in namespaces for ep in self._pods_by_namespace.get(ns, ()) if peer.matches(ep)]
        if len(namespaces) > 1:
            order = {ref: i for i, ref in enumerate(self.pods)}
            found.sort(key=lambda ep: order[ep.ref])
        return found

    def networked(self, ep: Endpoint) -> bool:
        """A pod that takes part in connections now (an IP, not terminated): a data plane
        renders only these (a terminated pod's address may already be someone else's)."""
        pod = self.pod_objects.get(ep.ref)
        return pod is not None and ep.ip is not None and has_network(pod)

    def peer_networks(self, peer: Peer | AdminPeer) -> list[IPNetwork]:
        """The addresses a peer matches, as networks (rules 17-26): an ipBlock's CIDR minus
        its excepts — pod addresses included (24) — or the matched pods' own addresses. For an
        AdminNetworkPolicy peer: its networks, its nodes' addresses (LAN and cni0, as
        `endpoint_for_ip` takes them), or its pods' addresses."""
        if isinstance(peer, AdminPeer):
            if peer.networks:
                return list(peer.networks)
            if peer.nodes is not None:  # the addresses endpoint_for_ip takes for a node, matched as trace matches them
                return [ipaddress.ip_network(ip) for ip, ep in self._by_ip.items()
                        if ep.kind == "node" and peer.matches(ep, self.node_labels)]
            return [ipaddress.ip_network(ep.ip) for ep in self.pods.values()
                    if self.networked(ep) and peer.matches(ep, self.node_labels)]
        if peer.ip_block is not None:
            return peer.ip_block.networks()
        return [ipaddress.ip_network(ep.ip) for ep in self.peer_pods(peer) if self.networked(ep)]

    def named_port_targets(self, name: str, protocol: str) -> list[tuple[IPAddress, int]]:
        """Every (pod address, port) a named port resolves to for `protocol` (rule 30): the
        name means a port of the DESTINATION pod, so a data plane matches the pair (daddr, dport)."""
        found = {(ep.ip, port) for ep in self.pods.values() if self.networked(ep)
                 for port in ep.ports_named(name, protocol)}
        return sorted(found, key=lambda t: (t[0].version, t[0], t[1]))  # type: ignore[misc]

    # -- evaluation

    def evaluate(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> Verdict:
        """May `src` open a new connection to `dst` on port/protocol? (post-DNAT: dst is the backend)"""
        protocol = normalize_packet_protocol(protocol)
        port = int(port)
        if src == dst or (src.ip is not None and src.ip == dst.ip):
            text = "self traffic: an endpoint can always reach itself"
            return Verdict(True, src, dst, port, protocol,
                           Side(EGRESS, src.ref, True, exception=text), Side(INGRESS, dst.ref, True, exception=text),
                           exception=text)
        egress = self._side(EGRESS, src, peer=dst, destination=dst, port=port, protocol=protocol)
        ingress = self._side(INGRESS, dst, peer=src, destination=dst, port=port, protocol=protocol)
        return Verdict(egress.allowed and ingress.allowed, src, dst, port, protocol, egress, ingress)

    def _side(self, direction: str, subject: Endpoint, peer: Endpoint, destination: Endpoint,
              port: int, protocol: str) -> Side:
        if not subject.is_policy_pod:
            if subject.host_network:
                why = (f"hostNetwork pod: policies do not select it (it is node {subject.node}'s address), "
                       "never isolated")
            else:
                why = f"{subject.describe()} is not a pod: no NetworkPolicy applies to it, never isolated"
            return Side(direction, subject.ref, True, exception=why)
        word = "to" if direction == EGRESS else "from"
        connection = f"{protocol}/{port} {word} {peer.ref}"
        policies = self.isolating(subject, direction)
        names = tuple(p.ref for p in policies)
        admins = self.admin_for(subject, direction)
        baseline = self.baseline_for(subject, direction)
        consulted = tuple(p.ref for p in admins) + ((baseline.ref,) if baseline is not None else ())
        if not policies and not consulted:
            return Side(direction, subject.ref, True, connection=connection)
        if peer.is_node_address and peer.node is not None and peer.node == subject.node:
            governing = ", ".join(names + consulted)
            why = (f"{word} its own node {subject.node}: always allowed (governed by {governing}, "
                   "but a pod cannot block its node)")
            return Side(direction, subject.ref, True, bool(policies), names, exception=why,
                        connection=connection, admin=consulted)
        passed = None
        for admin in admins:  # tier 1: the first matching rule of the first ANP that has one
            decision = self._first_match(admin, direction, peer, destination, port, protocol)
            if decision is None:
                continue
            if decision.action != PASS:
                return Side(direction, subject.ref, decision.action == ALLOW, bool(policies), names,
                            connection=connection, decided_by=decision, admin=consulted)
            passed = decision
            break
        if policies:  # tier 2: NetworkPolicy
            allowed_by = tuple(
                RuleRef(p.ref, direction, r.index)
                for p in policies for r in p.rules(direction)
                if r.matches(peer, destination, port, protocol)
            )
            return Side(direction, subject.ref, bool(allowed_by), True, names, allowed_by,
                        connection=connection, passed_by=passed, admin=consulted)
        decision = None if baseline is None else \
            self._first_match(baseline, direction, peer, destination, port, protocol)  # tier 3
        return Side(direction, subject.ref, decision is None or decision.action == ALLOW, connection=connection,
                    decided_by=decision, passed_by=passed, admin=consulted)

    def _first_match(self, policy: AdminPolicy, direction: str, peer: Endpoint, destination: Endpoint,
                     port: int, protocol: str) -> AdminDecision | None:
        for rule in policy.rules(direction):
            if rule.matches(peer, destination, port, protocol, self.node_labels):
                return AdminDecision(policy, rule)
        return None


def networked_pods(engine: PolicyEngine, namespaces: Iterable[str] | None = None) -> list[Endpoint]:
    """Pods that can take part in connections (an IP, not terminated), sorted by namespace/name."""
    wanted = None if namespaces is None else set(namespaces)
    return [ep for ref, ep in sorted(engine.pods.items(), key=lambda kv: (kv[1].namespace, kv[1].name))
            if (wanted is None or ep.namespace in wanted) and has_network(engine.pod_objects[ref])]
