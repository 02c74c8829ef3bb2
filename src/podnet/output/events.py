"""Events as kubectl prints them: `kubectl get events` rows and the Events block of `describe`.

`get events` lists them oldest first by lastTimestamp (kubectl lists by name, which for
events is arbitrary; `kubectl events` and `--sort-by=.lastTimestamp` order by time, the order
anyone reads them in). In `describe`, Age is the last time with "(xN over AGE)" for an event
seen N times, as kubectl's describe prints it.
"""

from __future__ import annotations

from typing import Any

from podnet.output import age

HEADERS = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]


def ordered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: (age.parse(e.get("lastTimestamp")) or 0.0,
                                         int((e.get("metadata") or {}).get("resourceVersion") or 0)))


def object_text(event: dict[str, Any]) -> str:
    about = event.get("involvedObject") or {}
    return f"{str(about.get('kind', '')).lower()}/{about.get('name', '')}"


def row(event: dict[str, Any], now: float | None = None) -> list[str]:
    return [age.since(event.get("lastTimestamp"), now), event.get("type", ""), event.get("reason", ""),
            object_text(event), event.get("message", "")]


def about(events: list[dict[str, Any]], kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
    """The events whose involvedObject is this object."""
    return [e for e in events if (e.get("involvedObject") or {}).get("kind") == kind
            and ((e.get("involvedObject") or {}).get("namespace") or "") == (namespace or "")
            and (e.get("involvedObject") or {}).get("name") == name]


def describe_lines(events: list[dict[str, Any]] | None, now: float | None = None) -> list[str]:
    """The Events block of `kubectl describe`; None: events are not known (offline)."""
    if not events:
        return ["Events:  <none>"]
    rows = [["Type", "Reason", "Age", "From", "Message"], ["----", "------", "----", "----", "-------"]]
    for event in ordered(events):
        last = age.since(event.get("lastTimestamp"), now)
        count = int(event.get("count") or 1)
        shown = f"{last} (x{count} over {age.since(event.get('firstTimestamp'), now)})" if count > 1 else last
        rows.append([event.get("type", ""), event.get("reason", ""), shown,
                     (event.get("source") or {}).get("component", ""), event.get("message", "")])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["Events:"] + ["  " + "  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
