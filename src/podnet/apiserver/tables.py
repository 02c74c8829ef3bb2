"""meta.k8s.io/v1 Table: what `kubectl get` asks for (Accept: application/json;as=Table;v=v1;
g=meta.k8s.io) and prints. The columns and cells are podnet's one copy of kubectl's printers
(podnet.output.columns, which `podnet get` prints too); the wide columns have priority 1, which
kubectl shows with -o wide. Each row carries the object's metadata (PartialObjectMetadata), or
the whole object with includeObject=Object, from which kubectl takes NAMESPACE for -A and the
labels for --show-labels.
"""

from __future__ import annotations

from typing import Any

from podnet.api.objects import KubeObject
from podnet.output import columns
from podnet.output.events import row as event_row

_EVENT_COLUMNS = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
_DESCRIPTIONS = {"NAME": "Name must be unique within a namespace.",
                 "AGE": "CreationTimestamp is a timestamp representing the server time when this object was created."}


def wants_table(accept: str) -> bool:
    compact = accept.replace(" ", "")
    return "as=Table" in compact and "g=meta.k8s.io" in compact


def _definitions(headers: list[str], wide: list[str]) -> list[dict[str, Any]]:
    return [{"name": name.title() if name.isupper() else name, "type": "string",
             "format": "name" if name == "NAME" else "", "description": _DESCRIPTIONS.get(name, name.lower()),
             "priority": 1 if index >= len(headers) else 0}
            for index, name in enumerate(headers + wide)]


def _row_object(body: dict[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return body
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": body.get("metadata") or {}}


def table(kind: str, bodies: list[dict[str, Any]], resource_version: str, include: str = "Metadata",
          with_definitions: bool = True, extra_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    rows = []
    if kind == "Event":
        headers, wide = _EVENT_COLUMNS, []
        for body in bodies:
            rows.append({"cells": event_row(body), "object": _row_object(body, include)})
    else:
        headers, wide, printer = columns.COLUMNS.get(kind) or (["NAME", "AGE"], [], _name_age)
        for body in bodies:
            metadata = body.get("metadata") or {}
            obj = KubeObject(kind, metadata.get("namespace") or "", metadata.get("name") or "", body)
            rows.append({"cells": printer(obj, True), "object": _row_object(body, include)})
    for row in rows:
        if row["object"] is None:
            del row["object"]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version, **(extra_metadata or {})},
            "columnDefinitions": _definitions(headers, wide) if with_definitions else [], "rows": rows}


def _name_age(obj: KubeObject, wide: bool) -> list[str]:
    return [obj.name, columns._age(obj)]
