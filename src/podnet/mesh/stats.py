"""The mesh's golden metrics per workload, as `linkerd viz stat` shows them: success rate,
requests per second and latency percentiles of the requests each workload's proxies took in
(inbound), and the TCP bytes of its connections.

The inputs are samples of each proxy's counters (Envoy's, read by the supervisor: `sample`
names them) at two moments; what happened between them is the difference. A workload's rate
sums its pods'; its percentiles come from the summed latency histograms, interpolated within a
bucket as Prometheus' histogram_quantile does. A failure is a 5xx answer (Linkerd's
classification: a 4xx is the server's considered answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Envoy's counters this reads (the inbound HTTP connection manager and TCP proxy of mesh/envoy.py)
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
REQUESTS = "http.inbound_http.downstream_rq_"
LATENCY = "http.inbound_http.downstream_rq_time"
TCP_READ, TCP_WRITE = "tcp.inbound.downstream_cx_rx_bytes_total", "tcp.inbound.downstream_cx_tx_bytes_total"
UPTIME = "server.uptime"
STATS_FILTER = r"^(http\.inbound_http\.downstream_rq_(\dxx|time)|tcp\.inbound\.downstream_cx_(rx|tx)_bytes_total|server\.uptime)$"


@dataclass
class Sample:
    """One proxy's counters at one moment (`at`: seconds, monotonic on the reader's clock)."""
    at: float
    uptime: float
    requests: dict[str, int] = field(default_factory=dict)  # by class: "2xx" → count
    buckets: list[tuple[float, int]] = field(default_factory=list)  # (upper bound ms, cumulative count)
    tcp_read: int = 0
    tcp_write: int = 0

    @classmethod
    def from_envoy(cls, at: float, stats: Mapping[str, Any]) -> Sample:
        """From Envoy's /stats?format=json&histogram_buckets=cumulative answer."""
        sample = cls(at, 0.0)
        for entry in stats.get("stats") or []:
            name, value = entry.get("name"), entry.get("value")
            if name == UPTIME:
                sample.uptime = float(value or 0)
            elif name and name.startswith(REQUESTS) and name[len(REQUESTS):] in CLASSES:
                sample.requests[name[len(REQUESTS):]] = int(value or 0)
            elif name == TCP_READ:
                sample.tcp_read = int(value or 0)
            elif name == TCP_WRITE:
                sample.tcp_write = int(value or 0)
            for histogram in entry.get("histograms") or []:
                if histogram.get("name") == LATENCY:
                    sample.buckets = [(float(b["upper_bound"]), int(b.get("cumulative") or 0))
                                      for b in histogram.get("buckets") or []]
        return sample

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "uptime": self.uptime, "requests": self.requests, "buckets": self.buckets,
                "tcpRead": self.tcp_read, "tcpWrite": self.tcp_write}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sample:
        return cls(float(data["at"]), float(data["uptime"]), dict(data.get("requests") or {}),
                   [(float(b), int(c)) for b, c in data.get("buckets") or []], int(data.get("tcpRead") or 0),
                   int(data.get("tcpWrite") or 0))


def start_of(sample: Sample) -> Sample:
    """The proxy's counters when it started: all zero, `uptime` seconds before the sample."""
    return Sample(sample.at - sample.uptime, 0.0, {}, [(bound, 0) for bound, _ in sample.buckets])


@dataclass
class WorkloadStat:
    name: str  # the Deployment (or pod)
    namespace: str
    meshed: int
    pods: int
    seconds: float = 0.0  # the window the figures cover
    total: int = 0
    failures: int = 0
    buckets: list[tuple[float, int]] = field(default_factory=list)
    tcp_read: int = 0
    tcp_write: int = 0

    @property
    def success_rate(self) -> float | None:
        return None if not self.total else 1 - self.failures / self.total

    @property
    def rps(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        return quantile(self.buckets, q)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "meshed": f"{self.meshed}/{self.pods}",
                "successRate": self.success_rate, "rps": round(self.rps, 3), "windowSeconds": round(self.seconds, 1),
                "latencyMs": {f"p{int(q * 100)}": self.percentile(q) for q in (0.5, 0.95, 0.99)},
                "requests": self.total, "failures": self.failures,
                "tcpReadBytes": self.tcp_read, "tcpWriteBytes": self.tcp_write}


def quantile(buckets: list[tuple[float, int]], q: float) -> float | None:
    """The q-quantile of cumulative buckets (ms), linear within the bucket it falls in; in the
    first bucket, its bound (Envoy counts whole milliseconds: under 1 ms is all it can say)."""
    if not buckets or not buckets[-1][1]:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0
    for index, (bound, count) in enumerate(buckets):
        if count >= rank:
            if count == lower_count or index == 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return buckets[-1][0]


def add(stat: WorkloadStat, before: Sample, after: Sample) -> None:
    """What one proxy did between two samples, added to its workload's figures."""
    if after.uptime < before.uptime or after.at <= before.at or \
            abs((after.at - after.uptime) - (before.at - before.uptime)) > 3.0:  # the proxy restarted: count from its start
        before = start_of(after)
    total = sum(after.requests.get(c, 0) - before.requests.get(c, 0) for c in CLASSES)
    stat.total += total
    stat.failures += after.requests.get("5xx", 0) - before.requests.get("5xx", 0)
    stat.seconds = max(stat.seconds, after.at - before.at)
    earlier = dict(before.buckets)
    delta = [(bound, count - earlier.get(bound, 0)) for bound, count in after.buckets]
    if not stat.buckets:
        stat.buckets = delta
    else:
        stat.buckets = [(bound, count + dict(delta).get(bound, 0)) for bound, count in stat.buckets]
    stat.tcp_read += after.tcp_read - before.tcp_read
    stat.tcp_write += after.tcp_write - before.tcp_write


def baseline(history: Iterable[Sample], now: Sample, window: float) -> Sample:
    """The sample to count from for the `window` seconds before `now`: the oldest one within the
    window (the proxy's start counts as one: all zero); if none is, the last one before it (the
    figures then cover more than the window: WorkloadStat.seconds says how much)."""
    started = now.at - now.uptime  # (Envoy's uptime in whole seconds: a few seconds' slack)
    same_run = [s for s in history if s.at < now.at and abs((s.at - s.uptime) - started) <= 3.0]
    start = start_of(now)
    within = [s for s in [*same_run, start] if s.at >= now.at - window]
    if within:
        return min(within, key=lambda s: s.at)
    return max([*same_run, start], key=lambda s: s.at)


def workload_of(pod: Mapping[str, Any], kind: str) -> str:
    """The Deployment a pod belongs to (its ReplicaSet's owner: the ReplicaSet's name less its
    hash), its other owner's name, or the pod itself (kind "pod")."""
    metadata = pod.get("metadata") or {}
    if kind == "pod":
        return metadata.get("name", "")
    owners = [o for o in metadata.get("ownerReferences") or [] if o.get("controller")]
    if not owners:
        return metadata.get("name", "")
    owner = owners[0]
    if owner.get("kind") == "ReplicaSet" and "pod-template-hash" in (metadata.get("labels") or {}):
        return owner["name"].rsplit("-", 1)[0]
    return owner.get("name", "")


def render(stats: list[WorkloadStat], kind: str) -> list[list[str]]:
    rows = [["NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_READ", "TCP_WRITE"]]
    for stat in stats:
        rate = stat.success_rate
        rows.append([f"{kind}/{stat.name}", f"{stat.meshed}/{stat.pods}", "-" if rate is None else f"{rate:.2%}",
                     f"{stat.rps:.1f}rps", *(_ms(stat.percentile(q)) for q in (0.5, 0.95, 0.99)),
                     _bytes(stat.tcp_read), _bytes(stat.tcp_write)])
    return rows


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value <= 1:
        return "≤1ms"  # (Envoy's resolution)
    return f"{value:.1f}ms" if value < 10 else f"{value:.0f}ms"


def _bytes(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024
    return str(count)
