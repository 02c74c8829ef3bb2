"""Field selectors (`--field-selector`, `?fieldSelector=`): the fields each kind can be selected
by, as the API server registers them (metadata.name and metadata.namespace for every kind, plus
each kind's own: a pod's spec.nodeName and status.phase, an event's involvedObject fields …),
and the terms `key=value`, `key==value`, `key!=value`, comma-separated, all of which must hold.
An unknown field is refused with the API server's words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from podnet.errors import UsageError

Getter = Callable[[Mapping[str, Any]], Any]


def _path(*keys: str) -> Getter:
    def get(body: Mapping[str, Any]) -> Any:
        value: Any = body
        for key in keys:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value
    return get


COMMON: dict[str, Getter] = {"metadata.name": _path("metadata", "name"),
                             "metadata.namespace": _path("metadata", "namespace")}
BY_KIND: dict[str, dict[str, Getter]] = {
    "Pod": {"spec.nodeName": _path("spec", "nodeName"), "spec.restartPolicy": _path("spec", "restartPolicy"),
            "spec.schedulerName": _path("spec", "schedulerName"),
            "spec.serviceAccountName": _path("spec", "serviceAccountName"),
            "spec.hostNetwork": lambda b: str(bool((b.get("spec") or {}).get("hostNetwork"))).lower(),
            "status.phase": _path("status", "phase"), "status.podIP": _path("status", "podIP"),
            "status.nominatedNodeName": _path("status", "nominatedNodeName")},
    "Event": {"involvedObject.kind": _path("involvedObject", "kind"),
              "involvedObject.namespace": _path("involvedObject", "namespace"),
              "involvedObject.name": _path("involvedObject", "name"),
              "involvedObject.uid": _path("involvedObject", "uid"),
              "involvedObject.apiVersion": _path("involvedObject", "apiVersion"),
              "involvedObject.resourceVersion": _path("involvedObject", "resourceVersion"),
              "involvedObject.fieldPath": _path("involvedObject", "fieldPath"),
              "reason": _path("reason"), "reportingComponent": _path("reportingComponent"),
              "source": _path("source", "component"), "type": _path("type")},
    "Node": {"spec.unschedulable": lambda b: str(bool((b.get("spec") or {}).get("unschedulable"))).lower()},
    "Namespace": {"status.phase": _path("status", "phase")},
    "Secret": {"type": _path("type")},
    "ReplicaSet": {"status.replicas": lambda b: str((b.get("status") or {}).get("replicas", 0))},
}


def selectable(kind: str) -> dict[str, Getter]:
    return {**COMMON, **BY_KIND.get(kind, {})}


def parse(text: str | None, kind: str, plural: str | None = None) -> Callable[[Mapping[str, Any]], bool]:
    """The predicate of a field selector for objects of `kind`; UsageError for a field the kind
    cannot be selected by."""
    fields = selectable(kind)
    terms = []
    for term in (text or "").split(","):
        if not term.strip():
            continue
        negate = "!=" in term
        key, _, value = term.partition("!=" if negate else "==" if "==" in term else "=")
        key = key.strip()
        if key not in fields:
            raise UsageError(f'field label "{key}" not supported for {plural or kind} '
                             f"(supported: {', '.join(fields)})")
        terms.append((fields[key], value.strip(), negate))
    if not terms:
        return lambda body: True
    return lambda body: all((_text(get(body)) == value) != negate for get, value, negate in terms)


def _text(value: Any) -> str:
    return "" if value is None else str(value)
