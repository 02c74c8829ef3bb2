"""AdminNetworkPolicy and BaselineAdminNetworkPolicy scenarios on the upstream e2e model.

The model is tests/netpol_cases.py's: namespaces x, y, z labelled ns=<name>, pods a, b, c
labelled pod=<name>, each serving 80 and 81 over TCP, UDP and SCTP on named ports
`serve-<port>-<proto>`. The scenarios follow the network-policy-api conformance suite's themes
(conformance/tests: deny and allow across tenants, Pass to NetworkPolicy and to the baseline,
priorities, rule order, ports of every protocol, named ports, egress to networks, subjects and
peers following labels), written for this model. Each truth table is written from the API's
rules (docs in podnet.semantics.adminpolicy) as a predicate over (source, destination) — which
pairs are blocked — not from podnet; the diagonal is always allowed (a pod reaches itself).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from tests.netpol_cases import HEADER, PODS, Check, Scenario, Step, netpol


def anp(name: str, priority: int, spec: str) -> str:
    """An AdminNetworkPolicy; `spec` is the YAML of its spec without the priority."""
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (f"apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\n"
            f"metadata:\n  name: {name}\nspec:\n  priority: {priority}\n{body}\n")


def banp(spec: str) -> str:
    """The BaselineAdminNetworkPolicy (its name is always `default`)."""
    body = textwrap.indent(textwrap.dedent(spec).strip("\n"), "  ")
    return (f"apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\n"
            f"metadata:\n  name: default\nspec:\n{body}\n")


def ns(ref: str) -> str:
    return ref.split("/")[0]


def pod(ref: str) -> str:
    return ref.split("/")[1]


def blocked_when(blocked: Callable[[str, str], bool]) -> str:
    """The truth table in which exactly the pairs `blocked(src, dst)` are blocked (never a pod to itself)."""
    rows = []
    for src in PODS:
        marks = "".join("." if src == dst or not blocked(src, dst) else "X" for dst in PODS)
        rows.append(f"{src}   {marks[0:3]} {marks[3:6]} {marks[6:9]}")
    return HEADER + "\n".join(rows) + "\n"


OPEN = blocked_when(lambda s, d: False)


def tcp80(blocked: Callable[[str, str], bool]) -> list[Check]:
    return [Check(80, "TCP", blocked_when(blocked))]


SUBJECT_X = "subject: {namespaces: {matchLabels: {ns: x}}}"

DENY_Y_TO_X = anp("deny-y-to-x", 10, f"""
    {SUBJECT_X}
    ingress:
    - {{name: deny-from-y, action: Deny, from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]}}
""")

NP_DENY_INGRESS_X = netpol("x", "deny-ingress", "podSelector: {}\npolicyTypes: [Ingress]\n")

ALLOW_Z_TO_X = anp("allow-z-to-x", 5, f"""
    {SUBJECT_X}
    ingress:
    - {{action: Allow, from: [{{namespaces: {{matchLabels: {{ns: z}}}}}}]}}
""")

PASS_Y_DENY_REST = anp("pass-y-deny-rest", 10, f"""
    {SUBJECT_X}
    ingress:
    - {{name: pass-from-y, action: Pass, from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]}}
    - {{name: deny-the-rest, action: Deny, from: [{{namespaces: {{}}}}]}}
""")

PASS_Y = anp("pass-y", 10, f"""
    {SUBJECT_X}
    ingress:
    - {{action: Pass, from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]}}
""")

BASELINE_Z_ONLY_TO_X = banp(f"""
    {SUBJECT_X}
    ingress:
    - {{name: allow-z, action: Allow, from: [{{namespaces: {{matchLabels: {{ns: z}}}}}}]}}
    - {{name: deny-the-rest, action: Deny, from: [{{namespaces: {{}}}}]}}
""")

NP_FROM_Y_TO_X = netpol("x", "from-y", """
    podSelector: {}
    policyTypes: [Ingress]
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
""")

NP_FROM_YA_TO_X = netpol("x", "from-y-a", """
    podSelector: {}
    policyTypes: [Ingress]
    ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: a}}}]}]
""")


def deny_all_to_x(priority: int) -> str:
    return anp("deny-all-to-x", priority, f"""
        {SUBJECT_X}
        ingress:
        - {{action: Deny, from: [{{namespaces: {{}}}}]}}
    """)


def allow_z_to_x(priority: int) -> str:
    return anp("allow-z", priority, f"""
        {SUBJECT_X}
        ingress:
        - {{action: Allow, from: [{{namespaces: {{matchLabels: {{ns: z}}}}}}]}}
    """)


SCENARIOS: list[Scenario] = [
    Scenario("ANP Deny: ingress from one namespace to another, then the ANP deleted", [
        Step("deny y -> x", [DENY_Y_TO_X],
             tcp80(lambda s, d: ns(s) == "y" and ns(d) == "x") + [
                 Check(81, "UDP", blocked_when(lambda s, d: ns(s) == "y" and ns(d) == "x"), ours=True)]),
        Step("ANP deleted", [], [Check(80, "TCP", OPEN)]),
    ]),
    Scenario("ANP Allow wins over a NetworkPolicy that denies", [
        Step("NetworkPolicy denies all ingress to x", [NP_DENY_INGRESS_X], tcp80(lambda s, d: ns(d) == "x")),
        Step("ANP allows z -> x", [NP_DENY_INGRESS_X, ALLOW_Z_TO_X],
             tcp80(lambda s, d: ns(d) == "x" and ns(s) != "z")),
    ]),
    Scenario("ANP Deny wins over a NetworkPolicy that allows", [
        Step("NetworkPolicy admits everyone to x; ANP denies pods b", [
            netpol("x", "allow-all", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{}]\n"),
            anp("deny-b", 10, f"""
                {SUBJECT_X}
                ingress:
                - {{action: Deny, from: [{{pods: {{namespaceSelector: {{}}, podSelector: {{matchLabels: {{pod: b}}}}}}}}]}}
            """)],
             tcp80(lambda s, d: ns(d) == "x" and pod(s) == "b")),
    ]),
    Scenario("ANP Pass hands the connection to the NetworkPolicies", [
        Step("y passed to a NetworkPolicy admitting y/a; the rest denied", [PASS_Y_DENY_REST, NP_FROM_YA_TO_X],
             tcp80(lambda s, d: ns(d) == "x" and s != "y/a")),
        Step("the NetworkPolicy deleted: what is passed is allowed", [PASS_Y_DENY_REST],
             tcp80(lambda s, d: ns(d) == "x" and ns(s) != "y")),
    ]),
    Scenario("Pass falls through to the baseline, unless a NetworkPolicy isolates the pod", [
        Step("baseline admits z only; y is passed to it and denied", [PASS_Y, BASELINE_Z_ONLY_TO_X],
             tcp80(lambda s, d: ns(d) == "x" and ns(s) != "z")),
        Step("a NetworkPolicy admitting y isolates x: the baseline is no longer asked",
             [PASS_Y, BASELINE_Z_ONLY_TO_X, NP_FROM_Y_TO_X],
             tcp80(lambda s, d: ns(d) == "x" and ns(s) != "y")),
    ]),
    Scenario("Priority: the lower number is tried first", [
        Step("deny-all at 10 before allow-z at 20", [deny_all_to_x(10), allow_z_to_x(20)],
             tcp80(lambda s, d: ns(d) == "x")),
        Step("allow-z moved to 5", [deny_all_to_x(10), allow_z_to_x(5)],
             tcp80(lambda s, d: ns(d) == "x" and ns(s) != "z")),
    ]),
    Scenario("Rule order within one ANP: the first matching rule decides", [
        Step("allow y/a, then deny y", [anp("order", 10, f"""
            {SUBJECT_X}
            ingress:
            - {{action: Allow, from: [{{pods: {{namespaceSelector: {{matchLabels: {{ns: y}}}}, podSelector: {{matchLabels: {{pod: a}}}}}}}}]}}
            - {{action: Deny, from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]}}
        """)], tcp80(lambda s, d: ns(d) == "x" and ns(s) == "y" and pod(s) != "a")),
    ]),
    Scenario("ANP egress: one pod denied a namespace", [
        Step("x/a may not reach z", [anp("x-a-not-to-z", 10, """
            subject: {pods: {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}}
            egress:
            - {action: Deny, to: [{namespaces: {matchLabels: {ns: z}}}]}
        """)], tcp80(lambda s, d: s == "x/a" and ns(d) == "z")),
    ]),
    Scenario("ANP egress to networks: pod addresses match CIDRs too", [
        Step("y denied z/b and x/c by address", [anp("deny-addresses", 10, """
            subject: {namespaces: {matchLabels: {ns: y}}}
            egress:
            - {action: Deny, to: [{networks: ["IP(z/b)/32", "IP(x/c)/32"]}]}
        """)], tcp80(lambda s, d: ns(s) == "y" and d in ("z/b", "x/c"))),
        Step("an Allow of 0.0.0.0/0 at a lower number overrides it", [
            anp("deny-addresses", 10, """
                subject: {namespaces: {matchLabels: {ns: y}}}
                egress:
                - {action: Deny, to: [{networks: ["IP(z/b)/32", "IP(x/c)/32"]}]}
            """),
            anp("allow-everything", 5, """
                subject: {namespaces: {matchLabels: {ns: y}}}
                egress:
                - {action: Allow, to: [{networks: [0.0.0.0/0]}]}
            """)], [Check(80, "TCP", OPEN)]),
    ]),
    Scenario("Ports: portNumber and portRange over TCP, UDP and SCTP", [
        Step("y -> x denied on UDP/80 and SCTP/81-82 only", [anp("ports", 10, f"""
            {SUBJECT_X}
            ingress:
            - action: Deny
              from: [{{namespaces: {{matchLabels: {{ns: y}}}}}}]
              ports: [{{portNumber: {{protocol: UDP, port: 80}}}}, {{portRange: {{protocol: SCTP, start: 81, end: 82}}}}]
        """)], [
            Check(80, "TCP", OPEN),
            Check(81, "TCP", OPEN),
            Check(80, "UDP", blocked_when(lambda s, d: ns(s) == "y" and ns(d) == "x")),
            Check(81, "UDP", OPEN),
            Check(80, "SCTP", OPEN),
            Check(81, "SCTP", blocked_when(lambda s, d: ns(s) == "y" and ns(d) == "x")),
        ]),
    ]),
    Scenario("namedPort resolves on the destination pod, in its own protocol", [
        Step("z -> x denied on serve-81-tcp; z -> y on serve-80-udp", [
            anp("named-in", 10, f"""
                {SUBJECT_X}
                ingress:
                - {{action: Deny, from: [{{namespaces: {{matchLabels: {{ns: z}}}}}}], ports: [{{namedPort: serve-81-tcp}}]}}
            """),
            anp("named-out", 20, """
                subject: {namespaces: {matchLabels: {ns: z}}}
                egress:
                - {action: Deny, to: [{namespaces: {matchLabels: {ns: y}}}], ports: [{namedPort: serve-80-udp}]}
            """)], [
            Check(81, "TCP", blocked_when(lambda s, d: ns(s) == "z" and ns(d) == "x")),
            Check(80, "TCP", OPEN),
            Check(81, "UDP", OPEN),
            Check(80, "UDP", blocked_when(lambda s, d: ns(s) == "z" and ns(d) == "y")),
        ]),
    ]),
    Scenario("The subject follows pod labels", [
        Step("nobody is locked", [anp("locked", 10, """
            subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {state: locked}}}}
            ingress:
            - {action: Deny, from: [{namespaces: {}}]}
        """)], [Check(80, "TCP", OPEN)]),
        Step("y/b labelled state=locked", [anp("locked", 10, """
            subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {state: locked}}}}
            ingress:
            - {action: Deny, from: [{namespaces: {}}]}
        """)], tcp80(lambda s, d: d == "y/b"), pod_labels={"y/b": {"state": "locked"}}),
        Step("the label removed", [anp("locked", 10, """
            subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {state: locked}}}}
            ingress:
            - {action: Deny, from: [{namespaces: {}}]}
        """)], [Check(80, "TCP", OPEN)]),
    ]),
    Scenario("Peers follow namespace labels", [
        Step("no namespace is env=dev", [anp("no-dev", 10, f"""
            {SUBJECT_X}
            ingress:
            - {{action: Deny, from: [{{namespaces: {{matchLabels: {{env: dev}}}}}}]}}
        """)], [Check(80, "TCP", OPEN)]),
        Step("z labelled env=dev", [anp("no-dev", 10, f"""
            {SUBJECT_X}
            ingress:
            - {{action: Deny, from: [{{namespaces: {{matchLabels: {{env: dev}}}}}}]}}
        """)], tcp80(lambda s, d: ns(s) == "z" and ns(d) == "x"), namespace_labels={"z": {"env": "dev"}}),
        Step("y labelled env=dev as well", [anp("no-dev", 10, f"""
            {SUBJECT_X}
            ingress:
            - {{action: Deny, from: [{{namespaces: {{matchLabels: {{env: dev}}}}}}]}}
        """)], tcp80(lambda s, d: ns(s) in ("y", "z") and ns(d) == "x"),
            namespace_labels={"z": {"env": "dev"}, "y": {"env": "dev"}}),
    ]),
    Scenario("Baseline egress, until a NetworkPolicy takes over", [
        Step("the baseline denies z's egress", [banp("""
            subject: {namespaces: {matchLabels: {ns: z}}}
            egress:
            - {action: Deny, to: [{namespaces: {}}]}
        """)], tcp80(lambda s, d: ns(s) == "z")),
        Step("a NetworkPolicy lets z reach y: NetworkPolicy decides, not the baseline", [banp("""
            subject: {namespaces: {matchLabels: {ns: z}}}
            egress:
            - {action: Deny, to: [{namespaces: {}}]}
        """), netpol("z", "to-y", """
            podSelector: {}
            policyTypes: [Egress]
            egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}]}]
        """)], tcp80(lambda s, d: ns(s) == "z" and ns(d) != "y")),
    ]),
]
