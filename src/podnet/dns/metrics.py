"""CoreDNS's Prometheus metrics (plugin/metrics, plugin/cache, plugin/forward), in text format.

Counting sits on the hot path, so it is plain dict and list arithmetic; rendering happens on a
scrape. Names and labels are CoreDNS 1.12's, so dashboards written for CoreDNS read them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict

# plugin/metrics/vars: the request duration buckets CoreDNS uses (seconds)
DURATION_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
                    1.024, 2.048, 4.096, 8.192)
VERSION = "1.12.0"


class Metrics:
    def __init__(self, server: str = "dns://:53", zone: str = "."):
        self.server, self.zone = server, zone
        self.requests: dict[tuple[str, str], int] = defaultdict(int)  # (proto, type)
        self.responses: dict[tuple[str, str], int] = defaultdict(int)  # (rcode, plugin)
        self.durations: dict[str, list[int]] = {}  # type -> bucket counts (+Inf last)
        self.duration_sums: dict[str, float] = defaultdict(float)
        self.cache_hits: dict[str, int] = defaultdict(int)  # success | denial
        self.cache_misses = 0
        self.cache_entries: dict[str, int] = {"success": 0, "denial": 0}
        self.forward_requests: dict[str, int] = defaultdict(int)  # to
        self.forward_responses: dict[tuple[str, str], int] = defaultdict(int)  # (to, rcode)
        self.reload_failed = 0
        self.plugins: list[str] = []
        # Entries dropped from the tables while another thread may still be counting on one of
        # them (the UDP listener's, one datagram behind): counted again at each scrape until the
        # listener confirms it has moved on (`settle`). [entries, cache_enabled, barrier or None]
        self.graveyard: list[list] = []
        self.deferred = False  # whether a listener thread counts (then bury keeps entries here)

    def observe(self, proto: str, qtype: str, rcode: str, plugin: str, seconds: float) -> None:
        self.requests[(proto, qtype)] += 1
        self.responses[(rcode, plugin)] += 1
        self.observe_duration(qtype, seconds)

    def observe_duration(self, qtype: str, seconds: float) -> None:
        buckets = self.durations.get(qtype)
        if buckets is None:
            buckets = self.durations[qtype] = [0] * (len(DURATION_BUCKETS) + 1)
        buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sums[qtype] += seconds

    def absorb(self, entries, cache_enabled: bool) -> None:
        """Add what memoised answers counted on the hot path (engine.Entry) since last time."""
        for e in entries:
            udp, tcp = e.udp, e.tcp  # read once: another thread may be adding to udp
            du, dt = udp - e.udp_seen, tcp - e.tcp_seen
            n = du + dt
            if not n:
                continue
            e.udp_seen, e.tcp_seen = udp, tcp
            for proto, count in (("udp", du), ("tcp", dt)):
                if count:
                    self.requests[(proto, e.qtype)] += count
            self.responses[(e.rcode, e.plugin)] += n
            buckets = self.durations.get(e.qtype)
            if buckets is None:
                buckets = self.durations[e.qtype] = [0] * (len(DURATION_BUCKETS) + 1)
            buckets[0] += n  # hot-table answers: one dict look-up, far below the first bound
            self.duration_sums[e.qtype] += e.seconds
            if cache_enabled:
                self.cache_hits["denial" if e.denial else "success"] += n
            e.seconds = 0.0  # written by the loop thread only (TCP hot hits)

    def bury(self, entries, cache_enabled: bool) -> None:
        """Entries leaving the tables: counted now, and kept (when a listener thread counts too)
        until `settle` says no datagram can still be counting on them."""
        entries = list(entries)
        self.absorb(entries, cache_enabled)
        if self.deferred and entries:
            self.graveyard.append([entries, cache_enabled, None])

    def absorb_all(self, live, cache_enabled: bool) -> None:
        """A scrape: the live entries and the buried ones not yet settled."""
        self.absorb(live, cache_enabled)
        for entries, enabled, _ in self.graveyard:
            self.absorb(entries, enabled)

    def unmarked(self) -> bool:
        return any(item[2] is None for item in self.graveyard)

    def mark(self, barrier: int) -> None:
        """The listener sent barrier number `barrier` after these entries left its tables."""
        for item in self.graveyard:
            if item[2] is None:
                item[2] = barrier

    def settle(self, barrier: int) -> None:
        """Barrier `barrier` came back: the listener has finished every datagram before it."""
        keep = []
        for item in self.graveyard:
            if item[2] is not None and item[2] <= barrier:
                self.absorb(item[0], item[1])
            else:
                keep.append(item)
        self.graveyard = keep

    def render(self) -> str:
        s, z = self.server, self.zone
        out = ["# HELP coredns_build_info A metric with a constant '1' value labeled by version, revision, and goversion "
               "from which CoreDNS was built.", "# TYPE coredns_build_info gauge",
               f'coredns_build_info{{goversion="python",revision="podnet",version="{VERSION}"}} 1',
               "# HELP coredns_plugin_enabled A metric that indicates whether a plugin is enabled on per server and "
               "zone basis.", "# TYPE coredns_plugin_enabled gauge"]
        out += [f'coredns_plugin_enabled{{name="{p}",server="{s}",zone="{z}"}} 1' for p in self.plugins]
        out += ["# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.",
                "# TYPE coredns_dns_requests_total counter"]
        out += [f'coredns_dns_requests_total{{family="1",proto="{proto}",server="{s}",type="{t}",view="",zone="{z}"}} {n}'
                for (proto, t), n in sorted(self.requests.items())]
        out += ["# HELP coredns_dns_responses_total Counter of response status codes.",
                "# TYPE coredns_dns_responses_total counter"]
        out += [f'coredns_dns_responses_total{{plugin="{plugin}",rcode="{rcode}",server="{s}",view="",zone="{z}"}} {n}'
                for (rcode, plugin), n in sorted(self.responses.items())]
        out += ["# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took "
                "per zone.", "# TYPE coredns_dns_request_duration_seconds histogram"]
        for t, buckets in sorted(self.durations.items()):
            labels = f'server="{s}",type="{t}",view="",zone="{z}"'
            total = 0
            for bound, n in zip(DURATION_BUCKETS, buckets):
                total += n
                out.append(f'coredns_dns_request_duration_seconds_bucket{{{labels},le="{bound:g}"}} {total}')
            total += buckets[-1]
            out += [f'coredns_dns_request_duration_seconds_bucket{{{labels},le="+Inf"}} {total}',
                    f"coredns_dns_request_duration_seconds_sum{{{labels}}} {self.duration_sums[t]:.9f}",
                    f"coredns_dns_request_duration_seconds_count{{{labels}}} {total}"]
        out += ["# HELP coredns_cache_entries The number of elements in the cache.", "# TYPE coredns_cache_entries gauge"]
        out += [f'coredns_cache_entries{{server="{s}",type="{t}",view="",zones="{z}"}} {n}'
                for t, n in sorted(self.cache_entries.items())]
        out += ["# HELP coredns_cache_hits_total The count of cache hits.", "# TYPE coredns_cache_hits_total counter"]
        out += [f'coredns_cache_hits_total{{server="{s}",type="{t}",view="",zones="{z}"}} {n}'
                for t, n in sorted(self.cache_hits.items())]
        out += ["# HELP coredns_cache_misses_total The count of cache misses. Deprecated, derive misses from cache "
                "hits/requests counters.", "# TYPE coredns_cache_misses_total counter",
                f'coredns_cache_misses_total{{server="{s}",view="",zones="{z}"}} {self.cache_misses}']
        out += ["# HELP coredns_forward_requests_total Counter of requests made per upstream.",
                "# TYPE coredns_forward_requests_total counter"]
        out += [f'coredns_forward_requests_total{{to="{to}"}} {n}' for to, n in sorted(self.forward_requests.items())]
        out += ["# HELP coredns_forward_responses_total Counter of responses received per upstream.",
                "# TYPE coredns_forward_responses_total counter"]
        out += [f'coredns_forward_responses_total{{rcode="{rc}",to="{to}"}} {n}'
                for (to, rc), n in sorted(self.forward_responses.items())]
        out += ["# HELP coredns_reload_failed_total Counter of the number of failed reload attempts.",
                "# TYPE coredns_reload_failed_total counter", f"coredns_reload_failed_total {self.reload_failed}"]
        return "\n".join(out) + "\n"
