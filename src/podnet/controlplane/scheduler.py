"""A scheduler with kube-scheduler's filters that matter offline, spreading pods evenly.

Filters: nodeName, nodeSelector, required node affinity, taints and tolerations, the node's
pod capacity (kubelet maxPods), and host ports. Among feasible nodes the least loaded wins,
ties going to the first in node order — deterministic, and even like the default spreading.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from podnet.api.objects import KubeObject
from podnet.controlplane.pods import DeclaredHostPort, declared_host_ports

AFFINITY_MISMATCH = "node(s) didn't match Pod's node affinity/selector"
NO_FREE_PORTS = "node(s) didn't have free ports for the requested pod ports"
TOO_MANY_PODS = "Too many pods"


@dataclass
class _NodeState:
    obj: KubeObject
    max_pods: int
    pods: int = 0
    host_ports: list[DeclaredHostPort] = field(default_factory=list)

    def ports_free(self, wanted: list[DeclaredHostPort]) -> bool:
        return not any(w.conflicts(used) for w in wanted for used in self.host_ports)


class Scheduler:
    def __init__(self, nodes: list[KubeObject], max_pods: dict[str, int]):
        self._nodes = [_NodeState(n, max_pods[n.name]) for n in nodes]
        self._by_name = {s.obj.name: s for s in self._nodes}
        self._static_cache: dict[str, tuple[list[_NodeState], Counter]] = {}

    def has_node(self, name: str) -> bool:
        return name in self._by_name

    def fits_host_ports(self, pod: KubeObject, node_name: str) -> bool:
        return self._by_name[node_name].ports_free(declared_host_ports(pod))

    def bind(self, pod: KubeObject, node_name: str) -> None:
        """Account for a pod that is already bound (spec.nodeName or a DaemonSet pod)."""
        state = self._by_name[node_name]
        state.pods += 1
        state.host_ports += declared_host_ports(pod)

    def count_bound(self, node_name: str, pods: int) -> None:
        """Account for `pods` already bound to the node that declare no host port (bind, counted)."""
        self._by_name[node_name].pods += pods

    def statically_feasible(self, pod_spec: dict[str, Any]) -> list[str]:
        return [s.obj.name for s in self._static(pod_spec)[0]]

    def schedule(self, pod: KubeObject) -> tuple[str | None, str]:
        """The chosen node, or None and the scheduler's message."""
        candidates, reasons = self._static(pod.spec)
        reasons = Counter(reasons)
        ports = declared_host_ports(pod)
        best: _NodeState | None = None
        for state in candidates:
            if state.pods >= state.max_pods:
                reasons[TOO_MANY_PODS] += 1
            elif ports and not state.ports_free(ports):
                reasons[NO_FREE_PORTS] += 1
            elif best is None or state.pods < best.pods:
                best = state
        if best is None:
            detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
            return None, f"0/{len(self._nodes)} nodes are available: {detail}."
        self.bind(pod, best.obj.name)
        return best.obj.name, ""

    def _static(self, spec: dict[str, Any]) -> tuple[list[_NodeState], Counter]:
        """Feasibility that depends only on the pod's spec and node labels, cached by signature."""
        constraints = [spec.get("nodeSelector"), (spec.get("affinity") or {}).get("nodeAffinity"), spec.get("tolerations")]
        signature = json.dumps(constraints, sort_keys=True) if any(constraints) else ""
        cached = self._static_cache.get(signature)
        if cached is None:
            feasible, reasons = [], Counter()
            for state in self._nodes:
                why = static_misfit(spec, state.obj)
                if why:
                    reasons[why] += 1
                else:
                    feasible.append(state)
            cached = self._static_cache[signature] = (feasible, reasons)
        return cached


def static_misfit(spec: dict[str, Any], node: KubeObject) -> str | None:
    labels = node.labels
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return AFFINITY_MISMATCH
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if terms and not any(_term_matches(term, node) for term in terms):
        return AFFINITY_MISMATCH
    for taint in node.spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not any(
            tolerates(t, taint) for t in spec.get("tolerations") or []
        ):
            shown = taint.get("key") + (f": {taint['value']}" if taint.get("value") else "")
            return f"node(s) had untolerated taint {{{shown}}}"
    return None


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    operator = toleration.get("operator") or "Equal"
    key = toleration.get("key") or ""
    if operator == "Exists":
        return key == "" or key == taint.get("key")
    return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def _term_matches(term: dict[str, Any], node: KubeObject) -> bool:
    labels = node.labels
    for expression in term.get("matchExpressions") or []:
        if not _expression_matches(expression, labels):
            return False
    for expression in term.get("matchFields") or []:
        if not _expression_matches(expression, {"metadata.name": node.name}):
            return False
    return bool(term.get("matchExpressions") or term.get("matchFields"))


def _expression_matches(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
    present = key in labels
    value = labels.get(key)
    if operator == "In":
        return present and value in values
    if operator == "NotIn":
        return not present or value not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and values:
        try:
            return int(value) > int(values[0]) if operator == "Gt" else int(value) < int(values[0])
        except ValueError:
            return False
    return False

