"""NetworkPolicy semantics (podnet.semantics.networkpolicy) and reachability matrices.

- The upstream e2e suite (tests/netpol_cases.py): every scenario's complete 9×9 truth table,
  checked against the matrix and against `PolicyEngine.evaluate` pair by pair.
- One table-driven case per rule of docs/specs/networkpolicy.md (rule numbers in ids).
- A property test: the fast matrix equals `evaluate` for every pair of random small clusters.
- IBM's network-config-analyzer 2.1.0 as an independent oracle on the e2e scenarios where it
  implements the same semantics (spec §J lists where it does not); skipped when not installed.
- The `podnet matrix` command: table, json (DESIGN.md contract), csv, html, --diff.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podnet.api.objects import KubeObject
from podnet.semantics.networkpolicy import (
    EGRESS,
    PolicyEngine,
    compile_policy,
    default_policy_types,
)
from podnet.semantics.reachability import Matrix, bits_of, diff, indices_of, reachability
from tests import netpol_cases as cases
from tests.conftest import cluster_of

ROOT = Path(__file__).resolve().parent.parent
E2E_NAMESPACES = list(cases.NAMESPACES)

# ---------------------------------------------------------------- helpers


def substitute(text: str, engine: PolicyEngine) -> str:
    """IP(ns/pod) → the pod's IP; CIDR4(ns/pod) → the /4 around it (upstream's makeLargeCIDRForIP)."""
    def ip(ref: str) -> str:
        return str(engine.endpoint(ref).ip)

    text = re.sub(r"CIDR4\(([\w-]+/[\w-]+)\)",
                  lambda m: str(ipaddress.ip_network(f"{ip(m.group(1))}/4", strict=False)), text)
    return re.sub(r"IP\(([\w-]+/[\w-]+)\)", lambda m: ip(m.group(1)), text)


@functools.lru_cache(maxsize=None)
def model_engine(pod_labels: str = "{}", namespace_labels: str = "{}") -> PolicyEngine:
    return PolicyEngine(cluster_of(cases.model_yaml(json.loads(pod_labels), json.loads(namespace_labels))))


@functools.lru_cache(maxsize=None)
def step_engine(scenario: int, step: int) -> PolicyEngine:
    s = cases.SCENARIOS[scenario].steps[step]
    labels = json.dumps(s.pod_labels, sort_keys=True), json.dumps(s.namespace_labels, sort_keys=True)
    base = model_engine(*labels)  # pod IPs do not depend on policies
    text = cases.model_yaml(s.pod_labels, s.namespace_labels)
    if s.policies:
        text += "---\n" + "---\n".join(substitute(p, base) for p in s.policies)
    return PolicyEngine(cluster_of(text))


def table_of(matrix: Matrix) -> dict[tuple[str, str], bool]:
    return {(src, dst): matrix.allowed(src, dst) for src in cases.PODS for dst in cases.PODS}


def mismatch_report(engine: PolicyEngine, expected, actual, port: int, protocol: str) -> str:
    lines = ["expected:", cases.render(expected), "computed:", cases.render(actual), "differences:"]
    for pair in [(s, d) for s in cases.PODS for d in cases.PODS]:
        if expected[pair] != actual[pair]:
            verdict = engine.evaluate(engine.endpoint(pair[0]), engine.endpoint(pair[1]), port, protocol)
            lines.append(f"  {pair[0]} -> {pair[1]}: expected {'allowed' if expected[pair] else 'blocked'}; "
                         f"{verdict.reason}")
    return "\n".join(lines)


# ---------------------------------------------------------------- the upstream e2e scenarios

E2E_CHECKS = [
    pytest.param(si, ti, ci, id=f"{s.id}[{ti}]-{c.protocol}{c.port}{'-ours' if c.ours else ''}")
    for si, s in enumerate(cases.SCENARIOS)
    for ti, step in enumerate(s.steps)
    for ci, c in enumerate(step.checks)
]


def test_at_least_forty_upstream_scenarios_with_complete_tables():
    assert len(cases.SCENARIOS) >= 40
    assert len({s.title for s in cases.SCENARIOS}) == len(cases.SCENARIOS)
    for s in cases.SCENARIOS:
        for step in s.steps:
            assert step.checks and any(not c.ours for c in step.checks)
            for check in step.checks:
                assert len(cases.grid(check.expected)) == 81


@pytest.mark.parametrize("si,ti,ci", E2E_CHECKS)
def test_e2e_truth_table(si, ti, ci):
    step = cases.SCENARIOS[si].steps[ti]
    check = step.checks[ci]
    engine = step_engine(si, ti)
    expected = cases.grid(check.expected)
    matrix = reachability(engine, check.port, check.protocol, namespaces=E2E_NAMESPACES)
    assert matrix.pods == [*cases.PODS, "external"]
    actual = table_of(matrix)
    assert actual == expected, f"{step.title}\n" + mismatch_report(engine, expected, actual, check.port, check.protocol)
    pairwise = {(s, d): engine.evaluate(engine.endpoint(s), engine.endpoint(d), check.port, check.protocol).allowed
                for s in cases.PODS for d in cases.PODS}
    assert pairwise == expected, f"{step.title}\n" + mismatch_report(engine, expected, pairwise, check.port,
                                                                    check.protocol)


def test_e2e_model_is_upstreams():
    engine = model_engine()
    xa = engine.pod("x", "a")
    assert dict(xa.labels) == {"pod": "a"}
    assert dict(xa.namespace_labels) == {"ns": "x", "kubernetes.io/metadata.name": "x"}
    names = {(p.name, p.protocol, p.port) for p in xa.named_ports}
    assert names == {(f"serve-{port}-{proto.lower()}", proto, port) for port in (80, 81)
                     for proto in ("TCP", "UDP", "SCTP")}


# ---------------------------------------------------------------- one rule at a time

# A small lab: x/a, x/b, x/c and y/a, y/b on pinned nodes; y/h1, y/h2 in the host network.
# Named port "http" means 8080 on x/a, 9090 on x/b and UDP 8080 on y/a; x/c has no ports.
LAB = """
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x, team: blue}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {app: a}}
spec:
  nodeName: node1
  containers:
  - name: c
    image: agnhost
    ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {app: b}}
spec:
  nodeName: node2
  containers:
  - name: c
    image: agnhost
    ports: [{name: http, containerPort: 9090}]
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: x, labels: {app: c}}
spec:
  nodeName: node2
  containers: [{name: c, image: agnhost}]
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: y, labels: {app: a}}
spec:
  nodeName: node2
  containers:
  - name: c
    image: agnhost
    ports: [{name: http, containerPort: 8080, protocol: UDP}]
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: y, labels: {app: b}}
spec:
  nodeName: node3
  containers:
  - name: c
    image: agnhost
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: h1, namespace: y, labels: {app: a}}
spec:
  nodeName: node1
  hostNetwork: true
  containers: [{name: c, image: agnhost}]
---
apiVersion: v1
kind: Pod
metadata: {name: h2, namespace: y, labels: {app: a}}
spec:
  nodeName: node2
  hostNetwork: true
  containers: [{name: c, image: agnhost}]
"""


def pol(namespace: str, spec: str, name: str = "p") -> str:
    return cases.netpol(namespace, name, spec)


DENY_ALL_XA = pol("x", """
    podSelector: {matchLabels: {app: a}}
    policyTypes: [Ingress, Egress]
""")

INGRESS_XA = "podSelector: {matchLabels: {app: a}}\npolicyTypes: [Ingress]\ningress:\n"
EGRESS_XA = "podSelector: {matchLabels: {app: a}}\npolicyTypes: [Egress]\negress:\n"


def ingress_xa(rules: str) -> str:
    return pol("x", INGRESS_XA + textwrap.indent(textwrap.dedent(rules).strip("\n"), ""))


def egress_xa(rules: str) -> str:
    return pol("x", EGRESS_XA + textwrap.indent(textwrap.dedent(rules).strip("\n"), ""))


# (rule, what it shows, policies, src, dst, port, protocol, allowed)
RULE_CASES = [
    ("1", "no policy: open", "", "x/a", "x/b", 8080, "TCP", True),
    ("1", "no policy: external reaches a pod", "", "external", "x/a", 1, "UDP", True),
    ("2", "an egress-only policy leaves ingress open",
     pol("x", "podSelector: {matchLabels: {app: b}}\npolicyTypes: [Egress]"), "y/a", "x/b", 9090, "TCP", True),
    ("2", "an egress-only policy isolates egress",
     pol("x", "podSelector: {matchLabels: {app: b}}\npolicyTypes: [Egress]"), "x/b", "x/a", 8080, "TCP", False),
    ("2", "a policy of y never isolates pods of x",
     pol("y", "podSelector: {}\npolicyTypes: [Ingress]"), "x/b", "x/a", 8080, "TCP", True),
    ("3", "union: an allow-all policy wins over a narrower one",
     ingress_xa("- ports: [{port: 1}]") + "---\n" + pol("x", INGRESS_XA + "- {}", "allow-all"),
     "y/b", "x/a", 8080, "TCP", True),
    ("4", "both ends must allow: the source's egress denies",
     pol("x", "podSelector: {matchLabels: {app: b}}\npolicyTypes: [Egress]") + "---\n"
     + pol("x", INGRESS_XA + "- {}", "allow-all"), "x/b", "x/a", 8080, "TCP", False),
    ("6", "ingress: [] with policyTypes [Ingress] denies all", pol("x", INGRESS_XA.rstrip() + " []"),
     "x/b", "x/a", 8080, "TCP", False),
    ("6", "no egress list with policyTypes [Egress] denies all egress",
     pol("x", "podSelector: {matchLabels: {app: a}}\npolicyTypes: [Egress]"), "x/a", "external", 443, "TCP", False),
    ("7", "a policy that selects no pod has no effect",
     pol("x", "podSelector: {matchLabels: {app: nobody}}\npolicyTypes: [Ingress, Egress]"),
     "x/b", "x/a", 8080, "TCP", True),
    ("8", "podSelector only picks pods of the policy's namespace",
     pol("x", "podSelector: {matchLabels: {app: a}}\npolicyTypes: [Ingress]"), "x/b", "y/a", 8080, "UDP", True),
    ("9", "egress rules and no policyTypes: Ingress is isolated too",
     pol("x", "podSelector: {matchLabels: {app: a}}\negress:\n- to: [{ipBlock: {cidr: 1.2.3.4/32}}]"),
     "y/b", "x/a", 8080, "TCP", False),
    ("9", "egress rules and no policyTypes: Egress is isolated",
     pol("x", "podSelector: {matchLabels: {app: a}}\negress:\n- to: [{ipBlock: {cidr: 1.2.3.4/32}}]"),
     "x/a", "x/b", 9090, "TCP", False),
    ("9", "egress: [] and no policyTypes does not isolate egress",
     pol("x", "podSelector: {matchLabels: {app: a}}\ningress: [{}]\negress: []"), "x/a", "x/b", 9090, "TCP", True),
    ("9", "no policyTypes and no rules: ingress deny-all",
     pol("x", "podSelector: {matchLabels: {app: a}}"), "y/b", "x/a", 8080, "TCP", False),
    ("9", "no policyTypes and no rules: egress stays open",
     pol("x", "podSelector: {matchLabels: {app: a}}"), "x/a", "y/b", 8080, "TCP", True),
    ("10", "policyTypes [Egress] ignores an ingress list",
     pol("x", "podSelector: {matchLabels: {app: a}}\npolicyTypes: [Egress]\n"
              "ingress: [{from: [{podSelector: {matchLabels: {app: nobody}}}]}]\negress: [{}]"),
     "y/b", "x/a", 8080, "TCP", True),
    ("10", "policyTypes [Ingress] ignores an egress list",
     pol("x", "podSelector: {matchLabels: {app: a}}\npolicyTypes: [Ingress]\ningress: [{}]\n"
              "egress: [{to: [{ipBlock: {cidr: 1.1.1.1/32}}]}]"), "x/a", "x/b", 9090, "TCP", True),
    ("11", "[Egress, Ingress] is [Ingress, Egress]",
     pol("x", "podSelector: {matchLabels: {app: a}}\npolicyTypes: [Egress, Ingress]\negress: [{}]"),
     "y/b", "x/a", 8080, "TCP", False),
    ("12", "a rule needs its peer AND its port: both match", ingress_xa("- from: [{podSelector: {matchLabels: {app: b}}}]\n  ports: [{port: 8080}]"),
     "x/b", "x/a", 8080, "TCP", True),
    ("12", "a rule needs its peer AND its port: wrong port", ingress_xa("- from: [{podSelector: {matchLabels: {app: b}}}]\n  ports: [{port: 8080}]"),
     "x/b", "x/a", 8081, "TCP", False),
    ("12", "a rule needs its peer AND its port: wrong peer", ingress_xa("- from: [{podSelector: {matchLabels: {app: b}}}]\n  ports: [{port: 8080}]"),
     "x/c", "x/a", 8080, "TCP", False),
    ("13", "no from: every peer, external too", ingress_xa("- ports: [{port: 8080}]"), "external", "x/a", 8080, "TCP", True),
    ("13", "from: [] is no from", ingress_xa("- from: []\n  ports: [{port: 8080}]"), "192.0.2.7", "x/a", 8080, "TCP", True),
    ("14", "no ports: every port of every protocol", ingress_xa("- from: [{podSelector: {matchLabels: {app: b}}}]"),
     "x/b", "x/a", 5000, "SCTP", True),
    ("15", "the empty rule allows all egress", egress_xa("- {}"), "x/a", "external", 443, "TCP", True),
    ("16", "rules are ORed", ingress_xa("- from: [{podSelector: {matchLabels: {app: b}}}]\n  ports: [{port: 1}]\n"
                                        "- from: [{podSelector: {matchLabels: {app: c}}}]"), "x/c", "x/a", 8080, "TCP", True),
    ("16", "rules are ORed, each still ANDs peer and port",
     ingress_xa("- from: [{podSelector: {matchLabels: {app: b}}}]\n  ports: [{port: 1}]\n"
                "- from: [{podSelector: {matchLabels: {app: c}}}]"), "x/b", "x/a", 8080, "TCP", False),
    ("17", "podSelector peer: the policy's namespace only",
     ingress_xa("- from: [{podSelector: {matchLabels: {app: b}}}]"), "y/b", "x/a", 8080, "TCP", False),
    ("18", "namespaceSelector alone: every pod there",
     ingress_xa("- from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]"),
     "y/b", "x/a", 8080, "TCP", True),
    ("18", "namespaceSelector alone: not the policy's own namespace",
     ingress_xa("- from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]"),
     "x/b", "x/a", 8080, "TCP", False),
    ("19", "both selectors in one entry: AND (namespace matches, pod does not)",
     ingress_xa("- from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}, "
                "podSelector: {matchLabels: {app: b}}}]"), "y/a", "x/a", 8080, "TCP", False),
    ("19", "both selectors in one entry: AND (both match)",
     ingress_xa("- from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}, "
                "podSelector: {matchLabels: {app: b}}}]"), "y/b", "x/a", 8080, "TCP", True),
    ("19", "two entries: OR",
     ingress_xa("- from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}, "
                "{podSelector: {matchLabels: {app: b}}}]"), "y/a", "x/a", 8080, "TCP", True),
    ("19", "two entries: OR, neither matches",
     ingress_xa("- from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}, "
                "{podSelector: {matchLabels: {app: b}}}]"), "x/c", "x/a", 8080, "TCP", False),
    ("20", "namespaceSelector {} with podSelector: that pod in any namespace",
     ingress_xa("- from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: b}}}]"),
     "y/b", "x/a", 8080, "TCP", True),
    ("20", "podSelector {} without namespaceSelector: own namespace only",
     ingress_xa("- from: [{podSelector: {}}]"), "y/b", "x/a", 8080, "TCP", False),
    ("20", "podSelector {} without namespaceSelector: every pod of the namespace",
     ingress_xa("- from: [{podSelector: {}}]"), "x/c", "x/a", 8080, "TCP", True),
    ("21", "namespaceSelector matches namespace labels (x has team=blue)",
     ingress_xa("- from: [{namespaceSelector: {matchLabels: {team: blue}}}]"), "x/b", "x/a", 8080, "TCP", True),
    ("21", "namespaceSelector never matches pod labels",
     ingress_xa("- from: [{namespaceSelector: {matchLabels: {app: b}}}]"), "x/b", "x/a", 8080, "TCP", False),
    ("21", "kubernetes.io/metadata.name exists though y was declared without labels",
     ingress_xa("- from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: y}}}]"),
     "y/a", "x/a", 8080, "TCP", True),
    ("22", "NotIn matches an absent key",
     ingress_xa("- from: [{podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [db]}]}}]"),
     "x/b", "x/a", 8080, "TCP", True),
    ("22", "DoesNotExist matches an absent key",
     ingress_xa("- from: [{podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]"),
     "x/b", "x/a", 8080, "TCP", True),
    ("22", "In requires the key",
     ingress_xa("- from: [{podSelector: {matchExpressions: [{key: tier, operator: In, values: [db]}]}}]"),
     "x/b", "x/a", 8080, "TCP", False),
    ("22", "Exists requires the key",
     ingress_xa("- from: [{podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}]"),
     "x/b", "x/a", 8080, "TCP", False),
    ("23", "ipBlock: inside cidr", egress_xa("- to: [{ipBlock: {cidr: 192.168.1.0/24, except: [192.168.1.100/32]}}]"),
     "x/a", "192.168.1.50", 5432, "TCP", True),
    ("23", "ipBlock: inside an except", egress_xa("- to: [{ipBlock: {cidr: 192.168.1.0/24, except: [192.168.1.100/32]}}]"),
     "x/a", "external", 5432, "TCP", False),
    ("23", "ipBlock: outside cidr", egress_xa("- to: [{ipBlock: {cidr: 192.168.1.0/24}}]"),
     "x/a", "8.8.8.8", 53, "UDP", False),
    ("24", "ipBlock matches a destination pod's IP", egress_xa("- to: [{ipBlock: {cidr: IP(x/b)/32}}]"),
     "x/a", "x/b", 9090, "TCP", True),
    ("24", "ipBlock of another pod's IP", egress_xa("- to: [{ipBlock: {cidr: IP(x/b)/32}}]"),
     "x/a", "x/c", 9090, "TCP", False),
    ("24", "ipBlock matches a source pod's IP", ingress_xa("- from: [{ipBlock: {cidr: IP(y/a)/32}}]"),
     "y/a", "x/a", 8080, "TCP", True),
    ("24", "ipBlock except removes a source pod", ingress_xa("- from: [{ipBlock: {cidr: 10.244.0.0/16, except: [IP(y/b)/32]}}]"),
     "y/b", "x/a", 8080, "TCP", False),
    ("25", "an address in an except is still allowed by another peer",
     egress_xa("- to: [{ipBlock: {cidr: 10.0.0.0/8, except: [IP(x/b)/32]}}, {podSelector: {matchLabels: {app: b}}}]"),
     "x/a", "x/b", 9090, "TCP", True),
    ("26", "selector peers never match an external address",
     ingress_xa("- from: [{namespaceSelector: {}}]"), "external", "x/a", 8080, "TCP", False),
    ("26", "selector peers never match a node",
     ingress_xa("- from: [{namespaceSelector: {}}]"), "node/node2", "x/a", 8080, "TCP", False),
    ("26", "egress to external needs an ipBlock or an empty to",
     egress_xa("- to: [{namespaceSelector: {}}]"), "x/a", "external", 80, "TCP", False),
    ("26", "egress by namespaceSelector {} reaches every pod", egress_xa("- to: [{namespaceSelector: {}}]"),
     "x/a", "y/b", 80, "TCP", True),
    ("27", "protocol defaults to TCP: TCP", ingress_xa("- ports: [{port: 8080}]"), "y/b", "x/a", 8080, "TCP", True),
    ("27", "protocol defaults to TCP: not UDP", ingress_xa("- ports: [{port: 8080}]"), "y/b", "x/a", 8080, "UDP", False),
    ("27", "{protocol: TCP}: every TCP port", ingress_xa("- ports: [{protocol: TCP}]"), "y/b", "x/a", 31337, "TCP", True),
    ("27", "{protocol: TCP}: no UDP port", ingress_xa("- ports: [{protocol: TCP}]"), "y/b", "x/a", 53, "UDP", False),
    ("28", "SCTP matches SCTP", ingress_xa("- ports: [{protocol: SCTP, port: 8080}]"), "y/b", "x/a", 8080, "SCTP", True),
    ("28", "SCTP is not TCP", ingress_xa("- ports: [{protocol: SCTP, port: 8080}]"), "y/b", "x/a", 8080, "TCP", False),
    ("28", "UDP is not TCP", ingress_xa("- ports: [{protocol: UDP, port: 8080}]"), "y/b", "x/a", 8080, "TCP", False),
    ("29", "endPort: first port", ingress_xa("- ports: [{port: 8000, endPort: 8080}]"), "y/b", "x/a", 8000, "TCP", True),
    ("29", "endPort: last port (inclusive)", ingress_xa("- ports: [{port: 8000, endPort: 8080}]"), "y/b", "x/a", 8080, "TCP", True),
    ("29", "endPort: one past", ingress_xa("- ports: [{port: 8000, endPort: 8080}]"), "y/b", "x/a", 8081, "TCP", False),
    ("29", "endPort: one before", ingress_xa("- ports: [{port: 8000, endPort: 8080}]"), "y/b", "x/a", 7999, "TCP", False),
    ("29", "endPort: only its protocol", ingress_xa("- ports: [{port: 8000, endPort: 8080}]"), "y/b", "x/a", 8050, "UDP", False),
    ("30", "named port on the destination (x/a: http=8080)",
     pol("x", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{ports: [{port: http}]}]"), "y/b", "x/a", 8080, "TCP", True),
    ("30", "named port is per pod (x/a: http is not 9090)",
     pol("x", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{ports: [{port: http}]}]"), "y/b", "x/a", 9090, "TCP", False),
    ("30", "named port is per pod (x/b: http=9090)",
     pol("x", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{ports: [{port: http}]}]"), "y/b", "x/b", 9090, "TCP", True),
    ("30", "named port is per pod (x/b: http is not 8080)",
     pol("x", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{ports: [{port: http}]}]"), "y/b", "x/b", 8080, "TCP", False),
    ("30", "a pod without that name is isolated, not opened",
     pol("x", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{ports: [{port: http}]}]"), "y/b", "x/c", 8080, "TCP", False),
    ("30", "a name of the other protocol does not resolve (y/a: http is UDP)",
     pol("y", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{ports: [{port: http}]}]"), "x/a", "y/a", 8080, "TCP", False),
    ("30", "a name with its own protocol resolves (y/a: UDP http)",
     pol("y", "podSelector: {}\npolicyTypes: [Ingress]\ningress: [{ports: [{port: http, protocol: UDP}]}]"),
     "x/a", "y/a", 8080, "UDP", True),
    ("30", "egress: a named port resolves on the peer (x/b: http=9090)", egress_xa("- ports: [{port: http}]"),
     "x/a", "x/b", 9090, "TCP", True),
    ("30", "egress: not on the source (x/a's http=8080 means nothing for x/b)", egress_xa("- ports: [{port: http}]"),
     "x/a", "x/b", 8080, "TCP", False),
    ("30", "egress: a named port never matches a non-pod", egress_xa("- ports: [{port: http}]"),
     "x/a", "external", 8080, "TCP", False),
    ("33", "self traffic is always allowed", DENY_ALL_XA, "x/a", "x/a", 8080, "TCP", True),
    ("34", "from its own node: allowed though isolated", DENY_ALL_XA, "node/node1", "x/a", 8080, "TCP", True),
    ("34", "from another node: blocked", DENY_ALL_XA, "node/node2", "x/a", 8080, "TCP", False),
    ("34", "to its own node: allowed though isolated", DENY_ALL_XA, "x/a", "node/node1", 10250, "TCP", True),
    ("34", "to another node: blocked", DENY_ALL_XA, "x/a", "node/node3", 10250, "TCP", False),
    ("34", "from its own node's cni0 address: allowed", DENY_ALL_XA, "10.244.1.1", "x/a", 8080, "TCP", True),
    ("34", "from a hostNetwork pod on its node: allowed", DENY_ALL_XA, "y/h1", "x/a", 8080, "TCP", True),
    ("34", "from a hostNetwork pod on another node: blocked", DENY_ALL_XA, "y/h2", "x/a", 8080, "TCP", False),
    ("36", "a hostNetwork pod is not selected for ingress",
     pol("y", "podSelector: {}\npolicyTypes: [Ingress, Egress]"), "x/a", "y/h2", 80, "TCP", True),
    ("36", "a hostNetwork pod is not selected for egress",
     pol("y", "podSelector: {}\npolicyTypes: [Ingress, Egress]"), "y/h2", "x/b", 9090, "TCP", True),
    ("36", "the same policy isolates ordinary pods",
     pol("y", "podSelector: {}\npolicyTypes: [Ingress, Egress]"), "y/a", "x/b", 9090, "TCP", False),
    ("36", "a hostNetwork pod is not matched by a podSelector peer",
     ingress_xa("- from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: a}}}]"), "y/h2", "x/a", 80, "TCP", False),
    ("36", "a hostNetwork pod is matched by an ipBlock of its node's IP",
     ingress_xa("- from: [{ipBlock: {cidr: 192.168.1.12/32}}]"), "y/h2", "x/a", 80, "TCP", True),
]


@functools.lru_cache(maxsize=None)
def lab_engine(policies: str) -> PolicyEngine:
    base = lab_base()
    text = LAB + ("---\n" + substitute(policies, base) if policies else "")
    return PolicyEngine(cluster_of(text))


@functools.lru_cache(maxsize=None)
def lab_base() -> PolicyEngine:
    return PolicyEngine(cluster_of(LAB))


@pytest.mark.parametrize("rule,what,policies,src,dst,port,protocol,allowed",
                         [pytest.param(*c, id=f"rule{c[0]}-{c[1]}") for c in RULE_CASES])
def test_rule(rule, what, policies, src, dst, port, protocol, allowed):
    engine = lab_engine(policies)
    verdict = engine.evaluate(engine.endpoint(src), engine.endpoint(dst), port, protocol)
    assert verdict.allowed is allowed, f"rule {rule}: {what}: {verdict.reason}"
    # The matrix agrees wherever both ends are in it (pods and the external client).
    names = {"external"} | {ref for ref in engine.pods}
    if src in names and dst in names:
        matrix = reachability(engine, port, protocol)
        assert matrix.allowed(src, dst) is allowed


def test_lab_placement():
    engine = lab_base()
    assert engine.pod("x", "a").node == "node1" and str(engine.pod("y", "h2").ip) == "192.168.1.12"
    assert engine.pod("y", "h1").host_network and not engine.pod("y", "h1").is_policy_pod


# ---------------------------------------------------------------- compiled form and explanations


def _policy(spec: dict, namespace: str = "x", name: str = "p") -> KubeObject:
    return KubeObject("NetworkPolicy", namespace, name, {"metadata": {"name": name, "namespace": namespace},
                                                         "spec": spec})


@pytest.mark.parametrize("spec,types", [
    ({}, ("Ingress",)),
    ({"ingress": [{}]}, ("Ingress",)),
    ({"egress": []}, ("Ingress",)),
    ({"egress": [{}]}, ("Ingress", "Egress")),
    ({"policyTypes": []}, ("Ingress",)),
    ({"policyTypes": ["Egress"], "ingress": [{}]}, ("Egress",)),
    ({"policyTypes": ["Egress", "Ingress"]}, ("Ingress", "Egress")),
])
def test_policy_types_defaulting(spec, types):
    assert default_policy_types(spec) == types
    assert compile_policy(_policy({"podSelector": {}, **spec})).policy_types == types


def test_compiled_policy_is_plain_data():
    compiled = compile_policy(_policy({
        "podSelector": {"matchLabels": {"app": "db"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}},
                      {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
             "ports": [{"port": 5432}, {"port": "metrics", "protocol": "UDP"}, {"port": 8000, "endPort": 8100}]},
            {},
        ],
        "egress": [{"to": [{"podSelector": {}}]}],  # ignored: not in policyTypes
    }))
    assert compiled.ref == "x/p" and compiled.egress == () and not compiled.isolates(EGRESS)
    first, second = compiled.ingress
    assert second.peers is None and second.ports is None
    selectors, block = first.peers
    assert selectors.namespace_selector.is_empty and str(selectors.pod_selector) == "app=web"
    assert str(block.ip_block.cidr) == "10.0.0.0/8" and [str(e) for e in block.ip_block.excepts] == ["10.1.0.0/16"]
    assert [str(p) for p in first.ports] == ["TCP/5432", "UDP/metrics", "TCP/8000-8100"]
    assert (first.ports[1].name, first.ports[2].end_port) == ("metrics", 8100)
    assert str(first) == ("ingress[0]: from pods {app=web} in every namespace or ipBlock 10.0.0.0/8 except "
                          "10.1.0.0/16 on TCP/5432, UDP/metrics, TCP/8000-8100")
    hash(compiled)  # frozen all the way down: usable as a key by the data plane


def test_verdict_names_isolating_policies_and_the_allowing_rule():
    engine = lab_engine(ingress_xa("- ports: [{port: 1}]") + "---\n"
                        + pol("x", INGRESS_XA + "- from: [{podSelector: {matchLabels: {app: c}}}]\n- {}", "second"))
    denied_pods = engine.evaluate(engine.pod("x", "b"), engine.pod("x", "a"), 8080, "TCP")
    assert denied_pods.allowed  # the second policy's rule 1 allows all
    assert [str(r) for r in denied_pods.ingress.allowed_by] == ["x/second ingress[1]"]
    assert denied_pods.ingress.policies == ("x/p", "x/second")
    assert "allowed by x/second ingress[1]" in denied_pods.reason
    assert "not isolated" in str(denied_pods.egress)

    engine = lab_engine(ingress_xa("- ports: [{port: 1}]") + "---\n" + pol("x", INGRESS_XA.rstrip() + " []", "deny"))
    verdict = engine.evaluate(engine.pod("x", "b"), engine.pod("x", "a"), 8080, "TCP")
    assert not verdict.allowed and verdict.egress.allowed and not verdict.ingress.allowed
    assert verdict.reason == "blocked: ingress to x/a: isolated by x/deny, x/p; no rule allows TCP/8080 from x/b"
    assert json.loads(json.dumps(verdict.to_dict()))["ingress"]["policies"] == ["x/deny", "x/p"]


def test_exceptions_are_explained():
    engine = lab_engine(DENY_ALL_XA)
    xa = engine.pod("x", "a")
    assert engine.evaluate(xa, xa, 1, "TCP").exception.startswith("self traffic")
    from_node = engine.evaluate(engine.node("node1"), xa, 8080, "TCP")
    assert "its own node node1" in from_node.ingress.exception and "not a pod" in from_node.egress.exception
    host = engine.evaluate(engine.pod("y", "h2"), engine.pod("x", "b"), 9090, "TCP")
    assert "hostNetwork pod" in host.egress.exception


def test_endpoints_by_address():
    engine = lab_base()
    xb = engine.pod("x", "b")
    assert engine.endpoint_for_ip(str(xb.ip)) == xb
    assert engine.endpoint_for_ip("192.168.1.11") == engine.node("node1")
    assert engine.endpoint_for_ip("10.244.2.1") == engine.node("node2")  # cni0
    assert engine.endpoint("external") == engine.endpoint_for_ip("192.168.1.100")
    assert engine.endpoint("203.0.113.9").kind == "external"
    with pytest.raises(KeyError):
        engine.endpoint("x/nope")
    with pytest.raises(ValueError):
        engine.evaluate(xb, xb, 80, "GRE")  # a packet is TCP, UDP, SCTP or ICMP


# ---------------------------------------------------------------- the matrix object


def test_bitset_helpers():
    assert bits_of([0, 3, 9], 10) == 0b1000001001
    assert indices_of(0b1000001001) == [0, 3, 9]
    assert indices_of(0) == []


def test_matrix_json_is_designs_contract():
    engine = step_engine(0, 0)  # default-deny-ingress in x
    document = reachability(engine, 80, "tcp", namespaces=["x", "y"]).to_json()
    assert list(document) == ["port", "protocol", "pods", "allowed"]
    assert document["port"] == 80 and document["protocol"] == "TCP"
    assert document["pods"] == ["x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "external"]
    assert set(document["allowed"]) == set(document["pods"])
    assert all(list(row) == document["pods"] for row in document["allowed"].values())
    assert document["allowed"]["y/a"]["x/a"] is False and document["allowed"]["x/a"]["y/a"] is True
    assert document["allowed"]["external"]["x/b"] is False and document["allowed"]["x/b"]["external"] is True


def test_matrix_leaves_out_pods_without_an_ip():
    text = cases.model_yaml() + """---
apiVersion: v1
kind: Pod
metadata: {name: stuck, namespace: x}
spec:
  nodeSelector: {disk: none}
  containers: [{name: c, image: agnhost}]
"""
    matrix = reachability(cluster_of(text), 80, "TCP", namespaces=["x"])
    assert matrix.pods == ["x/a", "x/b", "x/c", "external"]


def test_diff_lists_exactly_what_opens_and_closes():
    before = reachability(step_engine(0, 0), 80, "TCP", namespaces=E2E_NAMESPACES)  # deny ingress in x
    si = next(i for i, s in enumerate(cases.SCENARIOS) if s.title.startswith("should enforce policy to allow ingress "
                                                                              "traffic for a target"))
    after = reachability(step_engine(si, 0), 80, "TCP", namespaces=E2E_NAMESPACES)  # … plus allow-all to x/a
    change = diff(before, after)
    assert change.closed == [] and change.added_pods == [] and change.removed_pods == []
    # Every pod, in any namespace, may now reach x/a; the external client still may not (not a pod).
    assert change.opened == [(src, "x/a") for src in cases.PODS if src != "x/a"]
    back = diff(after, before)
    assert back.opened == [] and back.closed == change.opened


def test_diff_reports_pods_on_one_side_only():
    old = reachability(model_engine(), 80, "TCP", namespaces=["x"])
    new = reachability(model_engine(), 80, "TCP", namespaces=["x", "y"])
    change = diff(old, new)
    assert change.added_pods == ["y/a", "y/b", "y/c"] and change.opened == [] and change.closed == []


# ---------------------------------------------------------------- property: matrix == evaluate

LABEL_VALUES = {"app": ["a", "b"], "tier": ["web", "db"]}
NAMED_PORTS = [("http", 80, "TCP"), ("http", 81, "TCP"), ("web", 80, "TCP"), ("dns", 80, "UDP"),
               ("dns", 81, "TCP"), ("s", 81, "SCTP")]
CIDRS = {
    "10.244.0.0/16": ["10.244.1.0/24", "10.244.2.0/25"],
    "10.244.1.0/24": ["10.244.1.0/28", "10.244.1.2/32"],
    "0.0.0.0/0": ["10.0.0.0/8", "192.168.1.100/32"],
    "192.168.1.0/24": ["192.168.1.100/32", "192.168.1.11/32"],
}


def _selector(draw, keys=("app", "tier")) -> dict:
    out: dict = {}
    labels = {k: draw(st.sampled_from(LABEL_VALUES.get(k, ["prod", "dev"]))) for k in keys if draw(st.booleans())}
    if labels and draw(st.booleans()):
        out["matchLabels"] = labels
    if draw(st.integers(0, 3)) == 0:
        key = draw(st.sampled_from(keys))
        op = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        expr = {"key": key, "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = draw(st.lists(st.sampled_from(LABEL_VALUES.get(key, ["prod", "dev"])),
                                           min_size=1, max_size=2, unique=True))
        out["matchExpressions"] = [expr]
    return out


@st.composite
def random_cluster(draw):
    namespaces = draw(st.lists(st.sampled_from(["n1", "n2", "n3"]), min_size=1, max_size=3, unique=True))
    docs = []
    for ns in namespaces:
        labels = {"env": draw(st.sampled_from(["prod", "dev"]))} if draw(st.booleans()) else {}
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
    pods = []
    for i in range(draw(st.integers(1, 7))):
        ns = draw(st.sampled_from(namespaces))
        labels = {k: draw(st.sampled_from(v)) for k, v in LABEL_VALUES.items() if draw(st.booleans())}
        host = draw(st.integers(0, 5)) == 0
        spec: dict = {"nodeName": draw(st.sampled_from(["node1", "node2", "node3"])),
                      "containers": [{"name": "c", "image": "agnhost"}]}
        if host:
            spec["hostNetwork"] = True
        else:
            ports, names = [], set()
            for name, number, proto in draw(st.lists(st.sampled_from(NAMED_PORTS), max_size=3, unique=True)):
                if name not in names:
                    names.add(name)
                    ports.append({"name": name, "containerPort": number, "protocol": proto})
            if ports:
                spec["containers"][0]["ports"] = ports
        pods.append(f"{ns}/p{i}")
        docs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": f"p{i}", "namespace": ns, "labels": labels}, "spec": spec})

    def peer() -> dict:
        kind = draw(st.sampled_from(["pod", "ns", "both", "ip", "podip"]))
        if kind == "ip":
            cidr = draw(st.sampled_from(sorted(CIDRS)))
            block = {"cidr": cidr}
            excepts = draw(st.lists(st.sampled_from(CIDRS[cidr]), max_size=2, unique=True))
            if excepts:
                block["except"] = excepts
            return {"ipBlock": block}
        if kind == "podip":
            return {"ipBlock": {"cidr": f"IP({draw(st.sampled_from(pods))})/32"}}
        out = {}
        if kind in ("pod", "both"):
            out["podSelector"] = _selector(draw)
        if kind in ("ns", "both"):
            out["namespaceSelector"] = _selector(draw, ("env", "kubernetes.io/metadata.name")) \
                if draw(st.booleans()) else {"matchLabels": {"kubernetes.io/metadata.name": draw(st.sampled_from(namespaces))}}
        return out

    def port() -> dict:
        out: dict = {}
        protocol = draw(st.sampled_from([None, "TCP", "UDP", "SCTP"]))
        if protocol:
            out["protocol"] = protocol
        value = draw(st.sampled_from([None, 80, 81, "http", "web", "dns", "s", "range"]))
        if value == "range":
            out["port"], out["endPort"] = 79, draw(st.sampled_from([80, 81]))
        elif value is not None:
            out["port"] = value
        return out

    def rules(direction: str):
        choice = draw(st.integers(0, 4))
        if choice == 0:
            return None
        if choice == 1:
            return []
        out = []
        for _ in range(draw(st.integers(1, 2))):
            rule: dict = {}
            shape = draw(st.integers(0, 3))
            if shape in (1, 3):
                rule["from" if direction == "ingress" else "to"] = [peer() for _ in range(draw(st.integers(1, 2)))]
            if shape in (2, 3):
                rule["ports"] = [port() for _ in range(draw(st.integers(1, 2)))]
            out.append(rule)
        return out

    for i in range(draw(st.integers(0, 4))):
        spec = {"podSelector": _selector(draw)}
        types = draw(st.sampled_from([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"], ["Egress", "Ingress"]]))
        if types:
            spec["policyTypes"] = types
        for direction in ("ingress", "egress"):
            value = rules(direction)
            if value is not None:
                spec[direction] = value
        docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": f"np{i}", "namespace": draw(st.sampled_from(namespaces))}, "spec": spec})
    return yaml.safe_dump_all(docs, sort_keys=False)


def assert_matrix_is_evaluate(engine: PolicyEngine, port: int, protocol: str):
    """The matrix, checked pair by pair against `evaluate` (also the admin tiers' tests use it)."""
    matrix = reachability(engine, port, protocol)
    for src in matrix.pods:
        for dst in matrix.pods:
            verdict = engine.evaluate(engine.endpoint(src), engine.endpoint(dst), port, protocol)
            assert matrix.allowed(src, dst) == verdict.allowed, \
                f"{src} -> {dst} {protocol}/{port}: matrix {matrix.allowed(src, dst)}, {verdict.reason}"
    return matrix


@settings(max_examples=int(os.environ.get("PODNET_HYPOTHESIS_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(random_cluster())
def test_matrix_equals_evaluate_on_random_clusters(text):
    pods_only = "---\n".join(d for d in text.split("---\n") if "kind: NetworkPolicy" not in d)
    base = PolicyEngine(cluster_of(pods_only))
    engine = PolicyEngine(cluster_of(substitute(text, base)))
    for protocol in ("TCP", "UDP", "SCTP"):
        for port in (80, 81):
            matrix = assert_matrix_is_evaluate(engine, port, protocol)
            # A namespace filter only drops rows and columns: policies elsewhere still count.
            some = sorted({ref.split("/")[0] for ref in matrix.pods if "/" in ref})[:1]
            narrow = reachability(engine, port, protocol, namespaces=some)
            assert all(narrow.allowed(s, d) == matrix.allowed(s, d) for s in narrow.pods for d in narrow.pods)


# ---------------------------------------------------------------- IBM network-config-analyzer as an oracle


def nca_binary() -> str | None:
    """$PODNET_NCA, or .venv-nca/bin/nca (`make install`), or `nca` on PATH; None if none is there."""
    for candidate in (os.environ.get("PODNET_NCA"), str(ROOT / ".venv-nca" / "bin" / "nca"), shutil.which("nca")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def nca_input(engine: PolicyEngine) -> str:
    """Namespaces x, y, z, their pods (as computed, with IPs) and every policy, for NCA."""
    cluster = engine.cluster
    objects = [o.body for o in cluster.of_kind("Namespace") if o.name in E2E_NAMESPACES]
    objects += [o.body for ns in E2E_NAMESPACES for o in cluster.of_kind("Pod", ns)]
    objects += [o.body for o in cluster.of_kind("NetworkPolicy")]
    return yaml.safe_dump_all(objects, sort_keys=False)


NCA_LINE = re.compile(r"^(?P<src>\S+) => (?P<dst>\S+) : (?P<conn>.+)$")
NCA_GROUP = re.compile(r"protocols:(?P<protocols>[A-Z]+(?:,[A-Z]+)*)(?:,dst_ports:(?P<ports>[0-9,\-]+))?")


def nca_allows(conn: str, port: int, protocol: str) -> bool:
    """NCA's connection text: "All connections" or groups like {protocols:TCP,UDP,dst_ports:80-90,443}."""
    conn = conn.strip()
    if conn == "All connections":
        return True
    for group in re.findall(r"\{([^}]*)\}", conn):
        m = NCA_GROUP.match(group)
        if not m:
            raise AssertionError(f"unknown NCA connection syntax: {conn!r}")
        if protocol not in m.group("protocols").split(","):
            continue
        if not m.group("ports"):
            return True
        for item in m.group("ports").split(","):
            low, _, high = item.partition("-")
            if int(low) <= port <= int(high or low):
                return True
    return False


def _nca_endpoint(text: str, external_ip: ipaddress.IPv4Address) -> str | None:
    if "/" in text and not re.match(r"^[0-9.]+/\d+$", text):
        return text  # ns/pod
    if re.match(r"^[0-9.]+(-[0-9.]+)?$", text):
        low, _, high = text.partition("-")
        if ipaddress.ip_address(low) <= external_ip <= ipaddress.ip_address(high or low):
            return "external"
        return None
    if re.match(r"^[0-9.]+/\d+$", text):
        return "external" if external_ip in ipaddress.ip_network(text) else None
    return None


def run_nca(binary: str, engine: PolicyEngine, workdir: Path) -> list[tuple[str, str, str]]:
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "resources.yaml"
    source.write_text(nca_input(engine))
    result = subprocess.run([binary, "--connectivity", "-r", str(source), "-o", "txt_no_fw_rules",
                             "--output_endpoints", "pods"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    external = engine.cluster.config.networking.external_ip
    edges = []
    for line in result.stdout.splitlines():
        m = NCA_LINE.match(line.strip())
        if not m:
            continue
        src, dst = _nca_endpoint(m.group("src"), external), _nca_endpoint(m.group("dst"), external)
        if src and dst:
            edges.append((src, dst, m.group("conn")))
    return edges


NCA_STEPS = [(si, ti) for si, s in enumerate(cases.SCENARIOS) for ti in range(len(s.steps))]


@pytest.fixture(scope="module")
def nca_results(tmp_path_factory):
    if os.environ.get("PODNET_NCA") == "skip":
        pytest.skip("PODNET_NCA=skip: the comparison with IBM network-config-analyzer was turned off")
    binary = nca_binary()
    if binary is None:
        # `make install` puts NCA in .venv-nca; a run without it must not pass as if it had compared.
        pytest.fail("IBM network-config-analyzer is not installed: `make install` should have put it in .venv-nca "
                    "(or set PODNET_NCA to its nca command, or PODNET_NCA=skip to run without the comparison)")
    base = tmp_path_factory.mktemp("nca")
    wanted = [(si, ti) for si, ti in NCA_STEPS if cases.SCENARIOS[si].nca_skip is None]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(run_nca, binary, step_engine(*key), base / f"s{key[0]}-{key[1]}")
                   for key in wanted}
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.parametrize("si,ti", [pytest.param(si, ti, id=f"{cases.SCENARIOS[si].id}[{ti}]") for si, ti in NCA_STEPS])
def test_nca_agrees(si, ti, nca_results):
    scenario = cases.SCENARIOS[si]
    if scenario.nca_skip:
        pytest.skip(scenario.nca_skip)
    engine = step_engine(si, ti)
    edges = nca_results[(si, ti)]
    endpoints = [*cases.PODS, "external"]
    for check in scenario.steps[ti].checks:
        ours = reachability(engine, check.port, check.protocol, namespaces=E2E_NAMESPACES)
        theirs = {(s, d) for s, d, conn in edges if nca_allows(conn, check.port, check.protocol)}
        differences = [
            f"{s} -> {d}: podnet {'allowed' if ours.allowed(s, d) else 'blocked'}, NCA "
            f"{'allowed' if (s, d) in theirs else 'blocked'}"
            for s in endpoints for d in endpoints
            if s != d and ours.allowed(s, d) != ((s, d) in theirs)  # NCA leaves out self pairs (rule 33)
        ]
        assert not differences, f"{check.protocol}/{check.port}:\n" + "\n".join(differences)


def test_nca_connection_syntax():
    assert nca_allows("All connections", 1, "SCTP")
    assert nca_allows("{protocols:TCP,dst_ports:80-90}", 85, "TCP")
    assert not nca_allows("{protocols:TCP,dst_ports:80-90}", 85, "UDP")
    assert nca_allows("{protocols:UDP}", 53, "UDP")
    assert nca_allows("{protocols:TCP,UDP,dst_ports:53,80}", 80, "UDP")
    assert not nca_allows("{protocols:TCP,UDP,dst_ports:53,80}", 81, "TCP")
    external = ipaddress.ip_address("192.168.1.100")
    assert _nca_endpoint("0.0.0.0-255.255.255.255", external) == "external"
    assert _nca_endpoint("10.0.0.0-10.244.1.2", external) is None
    assert _nca_endpoint("x/a", external) == "x/a"


# ---------------------------------------------------------------- podnet matrix


def run_matrix(capsys, *argv):
    from podnet.cli import matrix as command

    parser = argparse.ArgumentParser(prog="podnet")
    sub = parser.add_subparsers(dest="command")
    command.add_parser(sub)
    code = command.run(parser.parse_args(["matrix", *argv]))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def e2e_dir(tmp_path):
    """The model plus default-deny-ingress in x, as a directory."""
    (tmp_path / "model.yaml").write_text(cases.model_yaml())
    (tmp_path / "policy.yaml").write_text(cases.DENY_INGRESS)
    return tmp_path


def test_cli_table_groups_by_namespace(capsys, e2e_dir):
    code, out, _ = run_matrix(capsys, "-f", str(e2e_dir), "-n", "x,y", "-n", "z")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("TCP/80: rows connect to columns")
    assert lines[2].split() == ["x", "y", "z"]
    assert lines[3].split() == ["a", "b", "c"] * 3 + ["ext"]
    rows = {line.split()[0]: "".join(line.split()[1:]) for line in lines[4:]}
    expected = cases.grid(cases.DENY_INGRESS_X)
    for src in cases.PODS:
        assert rows[src][:9] == "".join("." if expected[(src, dst)] else "X" for dst in cases.PODS)
    assert rows["external"] == "XXX" + "." * 7


def test_cli_json_csv_and_port_protocol(capsys, e2e_dir):
    code, out, _ = run_matrix(capsys, "-f", str(e2e_dir), "-n", "x", "-p", "81", "--protocol", "udp", "-o", "json")
    document = json.loads(out)
    assert document["port"] == 81 and document["protocol"] == "UDP"
    assert document["pods"] == ["x/a", "x/b", "x/c", "external"]
    assert document["allowed"]["x/a"]["x/b"] is False
    code, out, _ = run_matrix(capsys, "-f", str(e2e_dir), "-n", "x", "-o", "csv")
    lines = out.splitlines()
    assert lines[0] == "from \\ to,x/a,x/b,x/c,external"
    assert lines[1] == "x/a,true,false,false,true"


def test_cli_html_is_one_self_contained_page(capsys, e2e_dir):
    code, out, _ = run_matrix(capsys, "-f", str(e2e_dir), "-o", "html")
    assert out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")
    assert "<style>" in out and "<script" not in out and "<link" not in out and "http" not in out.replace("http-", "")
    assert 'title="y/a → x/a: blocked"' in out and 'title="x/a → y/a: allowed"' in out
    assert "kube-system" in out  # every namespace by default


def test_cli_diff_lists_opened_and_closed(capsys, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for d in (old, new):
        d.mkdir()
        (d / "model.yaml").write_text(cases.model_yaml())
    (old / "policy.yaml").write_text(cases.DENY_INGRESS)
    (new / "policy.yaml").write_text(cases.X_A_ALLOWS_X_B)
    code, out, _ = run_matrix(capsys, "--diff", str(old), str(new), "-n", "x,y,z")
    lines = out.splitlines()
    opened = sorted(line for line in lines if line.startswith("+ "))
    closed = sorted(line for line in lines if line.startswith("- "))
    # Before: nobody reaches x; after: only x/a is isolated, and x/b may reach it.
    expected_opened = sorted(f"+ {src} -> {dst}" for dst in ("x/b", "x/c") for src in [*cases.PODS, "external"]
                             if src != dst) + ["+ x/b -> x/a"]
    assert opened == sorted(expected_opened) and closed == []
    assert f"{len(expected_opened)} connection(s) opened, 0 closed" in lines[0]
    code, out, _ = run_matrix(capsys, "--diff", str(new), str(old), "-n", "x", "-o", "json")
    document = json.loads(out)
    assert document["opened"] == [] and ["x/b", "x/a"] in document["closed"]
    code, out, _ = run_matrix(capsys, "--diff", str(new), str(old), "-n", "x", "-o", "csv")
    assert out.splitlines()[0] == "change,from,to" and "closed,x/b,x/a" in out.splitlines()


def test_cli_help_has_examples():
    from podnet.cli import matrix as command

    assert command.EXAMPLES.startswith("examples:")
    assert "--diff" in command.EXAMPLES and "-o html" in command.EXAMPLES


def test_cli_refuses_bad_port(capsys, e2e_dir):
    from podnet.errors import UsageError

    with pytest.raises(UsageError):
        run_matrix(capsys, "-f", str(e2e_dir), "-p", "70000")


def test_engine_resolves_compiled_policies_to_pods_for_a_data_plane():
    engine = step_engine(next(i for i, s in enumerate(cases.SCENARIOS)
                              if s.title.startswith("should enforce policy based on PodSelector and NamespaceSelector")), 0)
    (policy,) = engine.policies
    assert [ep.ref for ep in engine.selected_pods(policy)] == ["x/a"]
    (rule,) = policy.ingress
    assert [ep.ref for ep in engine.peer_pods(rule.peers[0])] == ["y/b", "z/b"]
