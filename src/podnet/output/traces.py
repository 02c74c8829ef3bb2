"""The mesh's traces: the spans the proxies recorded (Zipkin JSON, one per line in each meshed
pod's file: mesh/pilot_agent.py), put together as each request's tree.

A request through two sidecars leaves two spans per hop: the client's proxy's (CLIENT) and
the server's proxy's (SERVER), which shares the client span's id (Envoy's Zipkin tracer: a
shared span context, as Zipkin's B3 does) or names it as its parent. An app that passes the
trace headers on (traceparent, x-b3-*, x-request-id) makes its own calls children of the
request it is serving: one trace across services.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str  # CLIENT | SERVER
    service: str  # the proxy's workload: app.namespace
    start_us: int
    duration_us: int
    tags: dict[str, str]
    children: list[Span] = field(default_factory=list)

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Span | None:
        try:
            return cls(str(raw["traceId"]), str(raw["id"]), raw.get("parentId"), str(raw.get("name", "")),
                       str(raw.get("kind", "")), str((raw.get("localEndpoint") or {}).get("serviceName", "")),
                       int(raw.get("timestamp", 0)), int(raw.get("duration", 0)),
                       {str(k): str(v) for k, v in (raw.get("tags") or {}).items()})
        except (KeyError, TypeError, ValueError):
            return None


@dataclass
class Trace:
    trace_id: str
    spans: list[Span]
    roots: list[Span]

    @property
    def start_us(self) -> int:
        return min(s.start_us for s in self.spans)

    @property
    def duration_us(self) -> int:
        return max(s.start_us + s.duration_us for s in self.spans) - self.start_us

    @property
    def services(self) -> list[str]:
        return sorted({s.service for s in self.spans})


def read_spans(directory: Path) -> list[Span]:
    """Every span of the cluster's span files (a torn last line is skipped)."""
    spans = []
    for path in sorted([*directory.glob("*.jsonl.1"), *directory.glob("*.jsonl")]):
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                span = Span.of(json.loads(line))
            except ValueError:
                continue
            if span is not None:
                spans.append(span)
    return spans


def traces(spans: Iterable[Span]) -> list[Trace]:
    """The spans by trace, each a tree (a SERVER span that shares its CLIENT span's id hangs
    under it), most recent first."""
    by_trace: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_trace[span.trace_id].append(span)
    out = []
    for trace_id, members in by_trace.items():
        members.sort(key=lambda s: (s.start_us, s.kind != "CLIENT"))
        clients = {s.span_id: s for s in members if s.kind == "CLIENT"}
        others = {s.span_id: s for s in members if s.kind != "CLIENT"}
        roots = []
        for span in members:
            span.children = []
        for span in members:
            if span.kind != "CLIENT" and span.span_id in clients:
                parent = clients[span.span_id]  # the same span seen from the server's side
            else:
                # (a shared id names the client's span and the server's: a call made while serving
                # a request hangs under the server's)
                parent = others.get(span.parent_id) or clients.get(span.parent_id) if span.parent_id else None
            if parent is not None and parent is not span:
                parent.children.append(span)
            else:
                roots.append(span)
        out.append(Trace(trace_id, members, roots))
    return sorted(out, key=lambda t: t.start_us, reverse=True)


def render(trace: Trace) -> str:
    lines = [f"trace {trace.trace_id}: {len(trace.spans)} spans, {len(trace.services)} workloads "
             f"({', '.join(trace.services)}), {trace.duration_us / 1000:.1f} ms"]

    def walk(span: Span, prefix: str, last: bool) -> None:
        status = span.tags.get("http.status_code", "")
        peer = span.tags.get("upstream_cluster.name") or span.tags.get("upstream_cluster") or ""
        detail = " ".join(part for part in (span.tags.get("http.method", ""), span.tags.get("http.url", "") or span.name,
                                            status and f"→ {status}", peer and f"[{peer}]") if part)
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{span.service} {span.kind.lower()}: {detail} "
                     f"({span.duration_us / 1000:.2f} ms)")
        for i, child in enumerate(span.children):
            walk(child, prefix + ("   " if last else "│  "), i == len(span.children) - 1)

    for i, root in enumerate(trace.roots):
        walk(root, "", i == len(trace.roots) - 1)
    return "\n".join(lines)
