"""The upstream NetworkPolicy e2e model and its scenarios, with truth tables written from the spec.

kubernetes/kubernetes test/e2e/network/netpol/ (network_policy.go, model.go): namespaces x, y, z
labelled ns=<name> (and kubernetes.io/metadata.name, set by the API server); pods a, b, c in each,
labelled pod=<name>, one container per (port, protocol) for 80/81 × TCP/UDP/SCTP, container
`cont-<port>-<proto>` serving port `serve-<port>-<proto>`.

Each `Scenario` is one `It(...)` of network_policy.go, under its upstream title. Upstream creates
only the pods a test needs (x/a, x/b, y/a …); here all 9 pods always exist (spec rule 42), so
every table is the complete 9×9 one, derived by hand from docs/specs/networkpolicy.md,
not from podnet. Steps are the upstream test's phases (a policy created, updated or deleted, a
pod or namespace label added); the cluster is recomputed for each step.

Tables: a row is the source, a column the destination, `.` allowed and `X` blocked, columns
grouped a b c per namespace x y z. The diagonal is always `.`: a pod can always reach itself
(rule 33; upstream ignores those cells, ignoreLoopback).

Policies may use `IP(ns/pod)` (the pod's IP) and `CIDR4(ns/pod)` (the /4 around it, upstream's
makeLargeCIDRForIP); tests substitute them from the computed cluster.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
PODS = tuple(f"{ns}/{p}" for ns in NAMESPACES for p in POD_NAMES)
PORTS = (80, 81)
PROTOCOLS = ("TCP", "UDP", "SCTP")


def model_yaml(pod_labels: dict[str, dict[str, str]] | None = None,
               namespace_labels: dict[str, dict[str, str]] | None = None) -> str:
    """The e2e model as manifests; extra labels per pod ("x/b") or namespace ("y") for the update tests."""
    pod_labels = pod_labels or {}
    namespace_labels = namespace_labels or {}
    docs = []
    for ns in NAMESPACES:
        labels = {"ns": ns, **namespace_labels.get(ns, {})}
        docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {_flow(labels)}\n")
        for pod in POD_NAMES:
            labels = {"pod": pod, **pod_labels.get(f"{ns}/{pod}", {})}
            containers = []
            for port in PORTS:
                for protocol in PROTOCOLS:
                    p = protocol.lower()
                    containers.append(
                        f"  - name: cont-{port}-{p}\n"
                        f"    image: registry.k8s.io/e2e-test-images/agnhost:2.53\n"
                        f"    ports: [{{name: serve-{port}-{p}, containerPort: {port}, protocol: {protocol}}}]\n"
                    )
            docs.append(f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {ns}\n"
                        f"  labels: {_flow(labels)}\nspec:\n  containers:\n" + "".join(containers))
    return "---\n".join(docs)


def _flow(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in labels.items()) + "}"


def netpol(namespace: str, name: str, spec: str) -> str:
    """A NetworkPolicy document; `spec` is the YAML of its spec."""
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
            f"metadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n{body}\n")


def grid(text: str) -> dict[tuple[str, str], bool]:
    """Parse a truth table: rows `ns/pod` followed by 9 marks (spaces ignored); other lines skipped."""
    table: dict[tuple[str, str], bool] = {}
    for line in text.strip("\n").splitlines():
        words = line.split()
        if not words or words[0] not in PODS:
            continue
        marks = "".join(words[1:])
        if len(marks) != len(PODS) or set(marks) - {".", "X"}:
            raise ValueError(f"bad truth table row: {line!r}")
        for dst, mark in zip(PODS, marks):
            table[(words[0], dst)] = mark == "."
    if len(table) != len(PODS) ** 2:
        raise ValueError(f"truth table has {len(table) // len(PODS)} rows, not {len(PODS)}")
    return table


def render(table: dict[tuple[str, str], bool]) -> str:
    """A table in the same text form (for failure messages)."""
    lines = ["to:   x   y   z", "      abc abc abc"]
    for src in PODS:
        marks = "".join("." if table[(src, dst)] else "X" for dst in PODS)
        lines.append(f"{src}   {marks[0:3]} {marks[3:6]} {marks[6:9]}")
    return "\n".join(lines)


@dataclass
class Check:
    port: int
    protocol: str
    expected: str  # a truth table (see grid)
    ours: bool = False  # a check podnet adds beyond upstream's (same spec, another port/protocol)


@dataclass
class Step:
    title: str
    policies: list[str]
    checks: list[Check]
    pod_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Scenario:
    title: str  # the It(...) title in network_policy.go
    steps: list[Step]
    nca_skip: str | None = None  # why NCA 2.1.0 is not a valid oracle here (spec §J), if it is not

    @property
    def id(self) -> str:
        return self.title.replace(" ", "-").replace("'", "")[:90]


# ---------------------------------------------------------------- truth tables

HEADER = """
to:   x   y   z
      abc abc abc
"""

ALL_OPEN = HEADER + """
x/a   ... ... ...
x/b   ... ... ...
x/c   ... ... ...
y/a   ... ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   ... ... ...
z/b   ... ... ...
z/c   ... ... ...
"""

# Nobody reaches a pod of x (but itself).
DENY_INGRESS_X = HEADER + """
x/a   .XX ... ...
x/b   X.X ... ...
x/c   XX. ... ...
y/a   XXX ... ...
y/b   XXX ... ...
y/c   XXX ... ...
z/a   XXX ... ...
z/b   XXX ... ...
z/c   XXX ... ...
"""

# No pod of x reaches anything (but itself).
DENY_EGRESS_X = HEADER + """
x/a   .XX XXX XXX
x/b   X.X XXX XXX
x/c   XX. XXX XXX
y/a   ... ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   ... ... ...
z/b   ... ... ...
z/c   ... ... ...
"""

# Both: x is cut off in both directions.
DENY_ALL_X = HEADER + """
x/a   .XX XXX XXX
x/b   X.X XXX XXX
x/c   XX. XXX XXX
y/a   XXX ... ...
y/b   XXX ... ...
y/c   XXX ... ...
z/a   XXX ... ...
z/b   XXX ... ...
z/c   XXX ... ...
"""

# x/a is isolated for ingress and admits nobody.
NOTHING_TO_XA = HEADER + """
x/a   ... ... ...
x/b   X.. ... ...
x/c   X.. ... ...
y/a   X.. ... ...
y/b   X.. ... ...
y/c   X.. ... ...
z/a   X.. ... ...
z/b   X.. ... ...
z/c   X.. ... ...
"""

# x/a admits x/b only.
ONLY_XB_TO_XA = HEADER + """
x/a   ... ... ...
x/b   ... ... ...
x/c   X.. ... ...
y/a   X.. ... ...
y/b   X.. ... ...
y/c   X.. ... ...
z/a   X.. ... ...
z/b   X.. ... ...
z/c   X.. ... ...
"""

# x/a admits x/b and x/c.
ONLY_XB_XC_TO_XA = HEADER + """
x/a   ... ... ...
x/b   ... ... ...
x/c   ... ... ...
y/a   X.. ... ...
y/b   X.. ... ...
y/c   X.. ... ...
z/a   X.. ... ...
z/b   X.. ... ...
z/c   X.. ... ...
"""

# x/a admits the pods of namespace y only.
ONLY_Y_TO_XA = HEADER + """
x/a   ... ... ...
x/b   X.. ... ...
x/c   X.. ... ...
y/a   ... ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   X.. ... ...
z/b   X.. ... ...
z/c   X.. ... ...
"""

# x/a admits y/a only.
ONLY_YA_TO_XA = HEADER + """
x/a   ... ... ...
x/b   X.. ... ...
x/c   X.. ... ...
y/a   ... ... ...
y/b   X.. ... ...
y/c   X.. ... ...
z/a   X.. ... ...
z/b   X.. ... ...
z/c   X.. ... ...
"""

# x/a admits pod=b outside x: y/b and z/b.
ONLY_YB_ZB_TO_XA = HEADER + """
x/a   ... ... ...
x/b   X.. ... ...
x/c   X.. ... ...
y/a   X.. ... ...
y/b   ... ... ...
y/c   X.. ... ...
z/a   X.. ... ...
z/b   ... ... ...
z/c   X.. ... ...
"""

# x/a admits pod in (b, c) outside x.
ONLY_BC_OUTSIDE_X_TO_XA = HEADER + """
x/a   ... ... ...
x/b   X.. ... ...
x/c   X.. ... ...
y/a   X.. ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   X.. ... ...
z/b   ... ... ...
z/c   ... ... ...
"""

# x/a admits everyone but x/c (namespace not x, or pod=b).
ALL_BUT_XC_TO_XA = HEADER + """
x/a   ... ... ...
x/b   ... ... ...
x/c   X.. ... ...
y/a   ... ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   ... ... ...
z/b   ... ... ...
z/c   ... ... ...
"""

# x/a admits everyone; x/b and x/c admit nobody.
ONLY_XA_OPEN_IN_X = HEADER + """
x/a   .XX ... ...
x/b   ..X ... ...
x/c   .X. ... ...
y/a   .XX ... ...
y/b   .XX ... ...
y/c   .XX ... ...
z/a   .XX ... ...
z/b   .XX ... ...
z/c   .XX ... ...
"""

# The pods of x admit the pods of x only.
ONLY_X_TO_X = HEADER + """
x/a   ... ... ...
x/b   ... ... ...
x/c   ... ... ...
y/a   XXX ... ...
y/b   XXX ... ...
y/c   XXX ... ...
z/a   XXX ... ...
z/b   XXX ... ...
z/c   XXX ... ...
"""

# x/a sends nothing.
NOTHING_FROM_XA = HEADER + """
x/a   .XX XXX XXX
x/b   ... ... ...
x/c   ... ... ...
y/a   ... ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   ... ... ...
z/b   ... ... ...
z/c   ... ... ...
"""

# x/a sends to y/a only.
XA_ONLY_TO_YA = HEADER + """
x/a   .XX .XX XXX
x/b   ... ... ...
x/c   ... ... ...
y/a   ... ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   ... ... ...
z/b   ... ... ...
z/c   ... ... ...
"""

# x/a sends to y/b only (an ipBlock of y/b's IP).
XA_ONLY_TO_YB = HEADER + """
x/a   .XX X.X XXX
x/b   ... ... ...
x/c   ... ... ...
y/a   ... ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   ... ... ...
z/b   ... ... ...
z/c   ... ... ...
"""

# x/a sends to x/b only.
XA_ONLY_TO_XB = HEADER + """
x/a   ..X XXX XXX
x/b   ... ... ...
x/c   ... ... ...
y/a   ... ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   ... ... ...
z/b   ... ... ...
z/c   ... ... ...
"""

# x/a sends anywhere but x/b.
XA_NOT_TO_XB = HEADER + """
x/a   .X. ... ...
x/b   ... ... ...
x/c   ... ... ...
y/a   ... ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   ... ... ...
z/b   ... ... ...
z/c   ... ... ...
"""

# x/a sends anywhere but namespace y.
XA_NOT_TO_Y = HEADER + """
x/a   ... XXX ...
x/b   ... ... ...
x/c   ... ... ...
y/a   ... ... ...
y/b   ... ... ...
y/c   ... ... ...
z/a   ... ... ...
z/b   ... ... ...
z/c   ... ... ...
"""

# x/a admits x/b only and sends nothing (port 81: its egress allows port 80 only).
XB_TO_XA_AND_XA_SENDS_NOTHING = HEADER + """
x/a   .XX XXX XXX
x/b   ... ... ...
x/c   X.. ... ...
y/a   X.. ... ...
y/b   X.. ... ...
y/c   X.. ... ...
z/a   X.. ... ...
z/b   X.. ... ...
z/c   X.. ... ...
"""

# x/a sends to y/a only; y/a admits x/a only; y/b admits x/a only (which cannot send to it).
CLIENT_SIDE_EGRESS = HEADER + """
x/a   .XX .XX XXX
x/b   ... XX. ...
x/c   ... XX. ...
y/a   ... .X. ...
y/b   ... X.. ...
y/c   ... XX. ...
z/a   ... XX. ...
z/b   ... XX. ...
z/c   ... XX. ...
"""

# ---------------------------------------------------------------- policies (upstream names)

DENY_INGRESS = netpol("x", "deny-ingress", """
    podSelector: {}
    policyTypes: [Ingress]
    ingress: []
""")

DENY_ALL = netpol("x", "deny-all", """
    podSelector: {}
    policyTypes: [Ingress, Egress]
    ingress: []
    egress: []
""")

X_A_ALLOWS_X_B = netpol("x", "x-a-allows-x-b", """
    podSelector: {matchLabels: {pod: a}}
    policyTypes: [Ingress]
    ingress:
    - from:
      - podSelector: {matchLabels: {pod: b}}
""")


def _allow_from_ns_y_to_a(name: str, ports: str = "") -> str:
    """x/a admits namespace y (by its kubernetes.io/metadata.name label), on `ports` (YAML) if given."""
    ports = textwrap.indent(textwrap.dedent(ports).strip("\n"), "      ") if ports else ""
    return netpol("x", name, """
    podSelector: {matchLabels: {pod: a}}
    policyTypes: [Ingress]
    ingress:
    - from:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
""" + ports)


# x/a admits y/a: namespaceSelector and podSelector in ONE peer (AND).
ALLOW_Y_A = netpol("x", "allow-ns-y-pod-a-via-namespace-pod-selector", """
    podSelector: {matchLabels: {pod: a}}
    policyTypes: [Ingress]
    ingress:
    - from:
      - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
        podSelector: {matchLabels: {pod: a}}
""")


def _ports_81(protocol: str) -> str:
    return _allow_from_ns_y_to_a("allow-client-a-via-ns-selector", f"""
      ports:
      - port: 81
        protocol: {protocol}
    """)


ALLOW_ALL_INGRESS_X = netpol("x", "allow-all", """
    podSelector: {}
    policyTypes: [Ingress]
    ingress:
    - {}
""")

SCENARIOS: list[Scenario] = [
    Scenario("should support a 'default-deny-ingress' policy", [
        Step("deny all ingress in x", [DENY_INGRESS], [Check(80, "TCP", DENY_INGRESS_X)]),
    ]),
    Scenario("should support a 'default-deny-all' policy", [
        Step("deny all ingress and egress in x", [DENY_ALL], [Check(80, "TCP", DENY_ALL_X)]),
    ]),
    Scenario("should enforce policy to allow traffic from pods within server namespace based on PodSelector", [
        Step("x/a allows pod=b", [X_A_ALLOWS_X_B], [Check(80, "TCP", ONLY_XB_TO_XA)]),
    ]),
    Scenario("should enforce policy to allow ingress traffic for a target", [
        Step("deny all ingress in x, allow all to x/a", [
            netpol("x", "deny-all", """
                podSelector: {}
                policyTypes: [Ingress]
                ingress: []
            """),
            netpol("x", "allow-all-to-a", """
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Ingress]
                ingress:
                - from:
                  - podSelector: {}
                    namespaceSelector: {}
            """),
        ], [Check(80, "TCP", ONLY_XA_OPEN_IN_X)]),
    ]),
    Scenario("should enforce policy to allow ingress traffic from pods in all namespaces", [
        Step("x/a allows namespaceSelector {}", [netpol("x", "allow-from-another-ns", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - namespaceSelector: {matchLabels: {}}
        """)], [Check(80, "TCP", ALL_OPEN)]),
    ]),
    Scenario("should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector", [
        Step("x/a allows namespace y", [_allow_from_ns_y_to_a("allow-client-a-via-ns-selector")],
             [Check(80, "TCP", ONLY_Y_TO_XA)]),
    ]),
    Scenario("should enforce policy based on PodSelector with MatchExpressions", [
        Step("x/a allows pod in (b)", [netpol("x", "x-a-allows-x-b", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - podSelector:
                  matchExpressions: [{key: pod, operator: In, values: [b]}]
        """)], [Check(80, "TCP", ONLY_XB_TO_XA)]),
    ]),
    Scenario("should enforce policy based on NamespaceSelector with MatchExpressions", [
        Step("x/a allows namespace in (y)", [netpol("x", "allow-ns-y-match-selector", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - namespaceSelector:
                  matchExpressions: [{key: kubernetes.io/metadata.name, operator: In, values: [y]}]
        """)], [Check(80, "TCP", ONLY_Y_TO_XA)]),
    ]),
    Scenario("should enforce policy based on PodSelector or NamespaceSelector", [
        Step("x/a allows namespace notin (x) OR pod=b", [netpol("x", "allow-ns-y-match-selector", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - namespaceSelector:
                  matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]
              - podSelector: {matchLabels: {pod: b}}
        """)], [Check(80, "TCP", ALL_BUT_XC_TO_XA)]),
    ]),
    Scenario("should enforce policy based on PodSelector and NamespaceSelector", [
        Step("x/a allows namespace notin (x) AND pod=b", [netpol("x", "allow-ns-y-podselector-and-nsselector", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - namespaceSelector:
                  matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]
                podSelector: {matchLabels: {pod: b}}
        """)], [Check(80, "TCP", ONLY_YB_ZB_TO_XA)]),
    ]),
    Scenario("should enforce policy based on Multiple PodSelectors and NamespaceSelectors", [
        Step("x/a allows namespace notin (x) AND pod in (b, c)", [netpol("x", "allow-ns-y-z-pod-b-c", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - namespaceSelector:
                  matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [x]}]
                podSelector:
                  matchExpressions: [{key: pod, operator: In, values: [b, c]}]
        """)], [Check(80, "TCP", ONLY_BC_OUTSIDE_X_TO_XA)]),
    ]),
    Scenario("should enforce policy based on any PodSelectors", [
        Step("x/a allows pod=b OR pod=c", [netpol("x", "allow-ns-x-pod-b-c", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - podSelector: {matchLabels: {pod: b}}
              - podSelector: {matchLabels: {pod: c}}
        """)], [Check(80, "TCP", ONLY_XB_XC_TO_XA)]),
    ]),
    Scenario("should enforce policy to allow traffic only from a pod in a different namespace based on "
             "PodSelector and NamespaceSelector", [
        Step("x/a allows namespace y AND pod=a", [ALLOW_Y_A], [Check(80, "TCP", ONLY_YA_TO_XA)]),
    ]),
    Scenario("should enforce policy based on Ports", [
        Step("x/a allows namespace y on TCP 81", [_ports_81("TCP")], [
            Check(81, "TCP", ONLY_Y_TO_XA),
            Check(80, "TCP", NOTHING_TO_XA, ours=True),
        ]),
    ]),
    Scenario("should enforce multiple, stacked policies with overlapping podSelectors", [
        Step("x/a allows namespace y on 81", [_ports_81("TCP")], [
            Check(81, "TCP", ONLY_Y_TO_XA),
            Check(80, "TCP", NOTHING_TO_XA),
        ]),
        Step("a second policy allows namespace y on 80", [
            _ports_81("TCP"),
            _allow_from_ns_y_to_a("allow-client-a-via-ns-selector-80", """
              ports:
              - port: 80
                protocol: TCP
            """),
        ], [Check(80, "TCP", ONLY_Y_TO_XA), Check(81, "TCP", ONLY_Y_TO_XA, ours=True)]),
    ]),
    Scenario("should support allow-all policy", [
        Step("every pod of x allows everything", [ALLOW_ALL_INGRESS_X], [
            Check(80, "TCP", ALL_OPEN), Check(81, "TCP", ALL_OPEN),
            Check(80, "UDP", ALL_OPEN, ours=True), Check(81, "SCTP", ALL_OPEN, ours=True),
        ]),
    ]),
    Scenario("should allow ingress access on one named port", [
        Step("every pod of x allows serve-81-tcp", [netpol("x", "allow-all", """
            podSelector: {}
            policyTypes: [Ingress]
            ingress:
            - ports:
              - port: serve-81-tcp
        """)], [
            Check(81, "TCP", ALL_OPEN),
            Check(80, "TCP", DENY_INGRESS_X),
            Check(81, "UDP", DENY_INGRESS_X, ours=True),  # the name is a TCP port: UDP 81 is not it
        ]),
    ]),
    Scenario("should allow ingress access from namespace on one named port", [
        Step("x/a allows namespace y on serve-80-tcp", [
            _allow_from_ns_y_to_a("allow-client-a-via-ns-selector-80", """
              ports:
              - port: serve-80-tcp
                protocol: TCP
            """),
        ], [Check(80, "TCP", ONLY_Y_TO_XA), Check(81, "TCP", NOTHING_TO_XA)]),
    ]),
    Scenario("should allow egress access on one named port", [
        Step("every pod of x may send to serve-80-tcp", [netpol("x", "allow-egress", """
            podSelector: {}
            policyTypes: [Egress]
            egress:
            - ports:
              - port: serve-80-tcp
        """)], [
            Check(80, "TCP", ALL_OPEN),
            Check(81, "TCP", DENY_EGRESS_X),
            Check(80, "UDP", DENY_EGRESS_X, ours=True),
        ]),
    ]),
    Scenario("should enforce updated policy", [
        Step("allow all ingress in x", [ALLOW_ALL_INGRESS_X.replace("allow-all", "allow-all-mutate-to-deny-all")],
             [Check(81, "TCP", ALL_OPEN)]),
        Step("the same policy updated to deny all", [netpol("x", "allow-all-mutate-to-deny-all", """
            podSelector: {}
            policyTypes: [Ingress]
            ingress: []
        """)], [Check(81, "TCP", DENY_INGRESS_X)]),
    ]),
    Scenario("should allow ingress access from updated namespace", [
        Step("x/a allows namespaces ns2=updated: none yet", [netpol("x", "allow-client-a-via-ns-selector", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - namespaceSelector: {matchLabels: {ns2: updated}}
        """)], [Check(80, "TCP", NOTHING_TO_XA)]),
        Step("namespace y labelled ns2=updated", [netpol("x", "allow-client-a-via-ns-selector", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - namespaceSelector: {matchLabels: {ns2: updated}}
        """)], [Check(80, "TCP", ONLY_Y_TO_XA)], namespace_labels={"y": {"ns2": "updated"}}),
    ]),
    Scenario("should allow ingress access from updated pod", [
        Step("x/a allows pod=b,pod2=updated: none yet", [netpol("x", "allow-client-a-via-pod-selector", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - podSelector: {matchLabels: {pod: b, pod2: updated}}
        """)], [Check(80, "TCP", NOTHING_TO_XA)]),
        Step("x/b labelled pod2=updated", [netpol("x", "allow-client-a-via-pod-selector", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - from:
              - podSelector: {matchLabels: {pod: b, pod2: updated}}
        """)], [Check(80, "TCP", ONLY_XB_TO_XA)], pod_labels={"x/b": {"pod2": "updated"}}),
    ]),
    Scenario("should deny ingress from pods on other namespaces", [
        Step("pods of x allow podSelector {} (their own namespace)", [netpol("x", "deny-empty-policy", """
            podSelector: {}
            policyTypes: [Ingress]
            ingress:
            - from:
              - podSelector: {matchLabels: {}}
        """)], [Check(80, "TCP", ONLY_X_TO_X)]),
    ]),
    Scenario("should deny ingress access to updated pod", [
        Step("deny ingress to target=isolated: selects nothing yet",
             [netpol("x", "deny-ingress-via-label-selector", """
                podSelector: {matchLabels: {target: isolated}}
                policyTypes: [Ingress]
                ingress: []
             """)], [Check(80, "TCP", ALL_OPEN)]),
        Step("x/a labelled target=isolated", [netpol("x", "deny-ingress-via-label-selector", """
            podSelector: {matchLabels: {target: isolated}}
            policyTypes: [Ingress]
            ingress: []
        """)], [Check(80, "TCP", NOTHING_TO_XA)], pod_labels={"x/a": {"target": "isolated"}}),
    ]),
    Scenario("should deny egress from pods based on PodSelector", [
        Step("x/a may send nothing", [netpol("x", "deny-egress-pod-a", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Egress]
            egress: []
        """)], [Check(80, "TCP", NOTHING_FROM_XA)]),
    ]),
    Scenario("should deny egress from all pods in a namespace", [
        Step("no pod of x may send", [netpol("x", "deny-egress-ns-x", """
            podSelector: {}
            policyTypes: [Egress]
            egress: []
        """)], [Check(80, "TCP", DENY_EGRESS_X)]),
    ]),
    Scenario("should work with Ingress, Egress specified together", [
        Step("x/a admits pod=b, sends on port 80 only; policyTypes [Egress, Ingress]",
             [netpol("x", "allow-client-a-via-pod-selector", """
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress, Ingress]
                ingress:
                - from:
                  - podSelector: {matchLabels: {pod: b}}
                egress:
                - ports:
                  - port: 80
             """)], [Check(80, "TCP", ONLY_XB_TO_XA), Check(81, "TCP", XB_TO_XA_AND_XA_SENDS_NOTHING)]),
    ], nca_skip="policyTypes [Egress, Ingress]: NCA 2.1.0 only accepts [Ingress, Egress] (spec rule 11, §J)"),
    Scenario("should support denying of egress traffic on the client side (even if the server explicitly allows "
             "this traffic)", [
        Step("x/a may send to y/a only; y/a and y/b admit x/a only", [
            netpol("x", "allow-to-ns-y-pod-a", """
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to:
                  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
                    podSelector: {matchLabels: {pod: a}}
            """),
            netpol("y", "allow-from-xa-on-ya-match-selector", """
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Ingress]
                ingress:
                - from:
                  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}
                    podSelector: {matchLabels: {pod: a}}
            """),
            netpol("y", "allow-from-xa-on-yb-match-selector", """
                podSelector: {matchLabels: {pod: b}}
                policyTypes: [Ingress]
                ingress:
                - from:
                  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}
                    podSelector: {matchLabels: {pod: a}}
            """),
        ], [Check(80, "TCP", CLIENT_SIDE_EGRESS)]),
    ]),
    Scenario("should enforce egress policy allowing traffic to a server in a different namespace based on "
             "PodSelector and NamespaceSelector", [
        Step("x/a may send to y/a only", [netpol("x", "allow-to-ns-y-pod-a", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Egress]
            egress:
            - to:
              - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}
                podSelector: {matchLabels: {pod: a}}
        """)], [Check(80, "TCP", XA_ONLY_TO_YA)]),
    ]),
    Scenario("should enforce ingress policy allowing any port traffic to a server on a specific protocol", [
        Step("x/a admits TCP (any port)", [netpol("x", "allow-ingress-by-proto", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - ports:
              - protocol: TCP
        """)], [
            Check(80, "TCP", ALL_OPEN),
            Check(80, "UDP", NOTHING_TO_XA),
            Check(81, "TCP", ALL_OPEN, ours=True),
            Check(81, "SCTP", NOTHING_TO_XA, ours=True),
        ]),
    ]),
    Scenario("should enforce multiple ingress policies with ingress allow-all policy taking precedence", [
        Step("pods of x admit port 80 only", [netpol("x", "allow-ingress-port-80", """
            podSelector: {}
            policyTypes: [Ingress]
            ingress:
            - ports:
              - port: 80
        """)], [Check(81, "TCP", DENY_INGRESS_X)]),
        Step("plus an allow-all ingress policy", [netpol("x", "allow-ingress-port-80", """
            podSelector: {}
            policyTypes: [Ingress]
            ingress:
            - ports:
              - port: 80
        """), netpol("x", "allow-ingress", """
            podSelector: {}
            policyTypes: [Ingress]
            ingress:
            - {}
        """)], [Check(81, "TCP", ALL_OPEN)]),
    ]),
    Scenario("should enforce multiple egress policies with egress allow-all policy taking precedence", [
        Step("pods of x send to port 80 only", [netpol("x", "allow-egress-port-80", """
            podSelector: {}
            policyTypes: [Egress]
            egress:
            - ports:
              - port: 80
        """)], [Check(81, "TCP", DENY_EGRESS_X), Check(80, "TCP", ALL_OPEN, ours=True)]),
        Step("plus an allow-all egress policy", [netpol("x", "allow-egress-port-80", """
            podSelector: {}
            policyTypes: [Egress]
            egress:
            - ports:
              - port: 80
        """), netpol("x", "allow-egress", """
            podSelector: {}
            policyTypes: [Egress]
            egress:
            - {}
        """)], [Check(81, "TCP", ALL_OPEN)]),
    ]),
    Scenario("should stop enforcing policies after they are deleted", [
        Step("deny all in x", [DENY_ALL], [Check(80, "TCP", DENY_ALL_X)]),
        Step("the policy deleted", [], [Check(80, "TCP", ALL_OPEN)]),
    ]),
    Scenario("should allow egress access to server in CIDR block", [
        Step("x/a may send to y/b's IP/32", [netpol("x", "allow-client-a-via-cidr-egress-rule", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Egress]
            egress:
            - to:
              - ipBlock: {cidr: IP(y/b)/32}
        """)], [Check(80, "TCP", XA_ONLY_TO_YB)]),
    ], nca_skip="ipBlock matching a pod IP: NCA never matches pods by ipBlock (spec rule 24, §J)"),
    Scenario("should enforce except clause while egress access to server in CIDR block", [
        Step("x/a may send to the /4 around x/b except x/b", [netpol("x", "allow-client-a-via-cidr-egress-rule", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Egress]
            egress:
            - to:
              - ipBlock: {cidr: CIDR4(x/b), except: [IP(x/b)/32]}
        """)], [Check(80, "TCP", XA_NOT_TO_XB)]),
    ], nca_skip="ipBlock matching a pod IP: NCA never matches pods by ipBlock (spec rule 24, §J)"),
    Scenario("should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed", [
        Step("x/a may send to the /4 around x/b except x/b", [netpol("x", "allow-client-a-via-cidr-egress-rule", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Egress]
            egress:
            - to:
              - ipBlock: {cidr: CIDR4(x/b), except: [IP(x/b)/32]}
        """)], [Check(80, "TCP", XA_NOT_TO_XB)]),
        Step("the policy updated (same name) to x/b's IP/32 only", [
            netpol("x", "allow-client-a-via-cidr-egress-rule", """
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: IP(x/b)/32}
            """)], [Check(80, "TCP", XA_ONLY_TO_XB)]),
        Step("(podnet) both as separate policies: the union allows x/b again (rule 25)", [
            netpol("x", "allow-client-a-via-cidr-egress-rule", """
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: CIDR4(x/b), except: [IP(x/b)/32]}
            """),
            netpol("x", "allow-client-a-to-x-b", """
                podSelector: {matchLabels: {pod: a}}
                policyTypes: [Egress]
                egress:
                - to:
                  - ipBlock: {cidr: IP(x/b)/32}
            """)], [Check(80, "TCP", ALL_OPEN)]),
    ], nca_skip="ipBlock matching a pod IP: NCA never matches pods by ipBlock (spec rule 24, §J)"),
    Scenario("should enforce policies to check ingress and egress policies can be controlled independently based "
             "on PodSelector", [
        Step("x/a allows all egress", [netpol("x", "allow-egress-for-target", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Egress]
            egress:
            - {}
        """)], [Check(80, "TCP", ALL_OPEN)]),
        Step("plus deny all ingress to x/a", [netpol("x", "allow-egress-for-target", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Egress]
            egress:
            - {}
        """), netpol("x", "deny-ingress-via-label-selector", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress: []
        """)], [Check(80, "TCP", NOTHING_TO_XA)]),
    ]),
    Scenario("should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support "
             "SCTP", [
        Step("deny ingress in x, x/a admits SCTP 81", [DENY_INGRESS, netpol("x", "allow-only-sctp-ingress-on-port-81", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - ports:
              - port: 81
                protocol: SCTP
        """)], [Check(81, "TCP", DENY_INGRESS_X), Check(81, "SCTP", ONLY_XA_OPEN_IN_X, ours=True)]),
    ]),
    Scenario("should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't "
             "support SCTP", [
        Step("x/a admits SCTP 80", [netpol("x", "allow-only-sctp-ingress-on-port-80", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - ports:
              - port: 80
                protocol: SCTP
        """)], [Check(81, "TCP", NOTHING_TO_XA), Check(80, "SCTP", ALL_OPEN, ours=True),
                Check(80, "TCP", NOTHING_TO_XA, ours=True)]),
    ]),
    Scenario("should not allow access by TCP when a policy specifies only UDP", [
        Step("x/a admits UDP 81", [netpol("x", "allow-only-udp-ingress-on-port-81", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Ingress]
            ingress:
            - ports:
              - port: 81
                protocol: UDP
        """)], [Check(81, "TCP", NOTHING_TO_XA), Check(81, "UDP", ALL_OPEN, ours=True)]),
    ]),
    Scenario("should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns "
             "label", [
        Step("x/a allows kubernetes.io/metadata.name=y",
             [_allow_from_ns_y_to_a("allow-client-a-via-ns-selector-for-immutable-ns-label")],
             [Check(80, "TCP", ONLY_Y_TO_XA)]),
    ]),
    Scenario("should enforce policy based on NamespaceSelector with MatchExpressions using default ns label", [
        Step("x/a may send to namespaces notin (y)", [netpol("x", "allow-ns-y-match-selector-for-immutable-ns-label", """
            podSelector: {matchLabels: {pod: a}}
            policyTypes: [Egress]
            egress:
            - to:
              - namespaceSelector:
                  matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [y]}]
        """)], [Check(80, "TCP", XA_NOT_TO_Y)]),
    ]),
    # ---- UDP (Netpol [LinuxOnly], "NetworkPolicy between server and client using UDP")
    Scenario("UDP: should support a 'default-deny-ingress' policy", [
        Step("deny all ingress in x", [DENY_INGRESS], [Check(80, "UDP", DENY_INGRESS_X)]),
    ]),
    Scenario("UDP: should enforce policy based on Ports", [
        Step("x/a allows namespace y on UDP 81", [_ports_81("UDP")], [
            Check(81, "UDP", ONLY_Y_TO_XA), Check(81, "TCP", NOTHING_TO_XA, ours=True)]),
    ]),
    Scenario("UDP: should enforce policy to allow traffic only from a pod in a different namespace based on "
             "PodSelector and NamespaceSelector", [
        Step("x/a allows namespace y AND pod=a", [ALLOW_Y_A], [Check(80, "UDP", ONLY_YA_TO_XA)]),
    ]),
    # ---- SCTP (Netpol [Feature:SCTPConnectivity], "NetworkPolicy between server and client using SCTP")
    Scenario("SCTP: should support a 'default-deny-ingress' policy", [
        Step("deny all ingress in x", [DENY_INGRESS], [Check(80, "SCTP", DENY_INGRESS_X)]),
    ]),
    Scenario("SCTP: should enforce policy based on Ports", [
        Step("x/a allows namespace y on SCTP 81", [_ports_81("SCTP")], [
            Check(81, "SCTP", ONLY_Y_TO_XA), Check(81, "TCP", NOTHING_TO_XA, ours=True),
            Check(81, "UDP", NOTHING_TO_XA, ours=True)]),
    ]),
    Scenario("SCTP: should enforce policy to allow traffic only from a pod in a different namespace based on "
             "PodSelector and NamespaceSelector", [
        Step("x/a allows namespace y AND pod=a", [ALLOW_Y_A], [Check(80, "SCTP", ONLY_YA_TO_XA)]),
    ]),
]
