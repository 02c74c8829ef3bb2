"""The mesh's observability without root: golden metrics from proxies' counters (mesh/stats.py:
windows, restarts, percentiles, grouping by Deployment) and traces put together from the
proxies' Zipkin spans (output/traces.py). The running cluster's side: tests/test_mesh_up_root.py."""

from __future__ import annotations

import json

import pytest

from podnet.mesh import stats
from podnet.mesh.stats import Sample, WorkloadStat
from podnet.output import traces

BOUNDS = (1.0, 2.0, 5.0, 10.0)


def sample(at: float, uptime: float, ok: int, failed: int, buckets: tuple[int, ...]) -> Sample:
    return Sample(at, uptime, {"2xx": ok, "4xx": 0, "5xx": failed}, list(zip(BOUNDS, buckets)), 100 * ok, 10 * ok)


def test_a_window_counts_what_happened_since_its_start():
    first, now = sample(100.0, 40.0, 10, 0, (10, 10, 10, 10)), sample(130.0, 70.0, 70, 30, (40, 80, 90, 100))
    stat = WorkloadStat("api", "shop", 1, 1)
    stats.add(stat, stats.baseline([first], now, 60.0), now)  # the proxy is 70 s old: the kept sample at 100 starts it
    assert (stat.total, stat.failures, stat.seconds) == (90, 30, 30.0)
    assert stat.rps == 3.0 and stat.success_rate == pytest.approx(60 / 90)
    assert stat.percentile(0.5) == 1.375  # the 45th of 90: 15 into the (1, 2] bucket's 40
    assert stat.percentile(0.25) == 1.0  # in the first bucket: under 1 ms is all Envoy can say
    assert stat.tcp_read == 6000


def test_a_younger_proxy_counts_from_its_start_and_a_restarted_one_from_its_new_start():
    young = sample(50.0, 20.0, 20, 0, (20, 20, 20, 20))
    stat = WorkloadStat("api", "shop", 1, 1)
    stats.add(stat, stats.baseline([], young, 60.0), young)
    assert (stat.total, stat.seconds) == (20, 20.0)
    before_restart, after_restart = sample(10.0, 500.0, 900, 0, (900,) * 4), sample(20.0, 5.0, 7, 0, (7,) * 4)
    stat = WorkloadStat("api", "shop", 1, 1)
    stats.add(stat, before_restart, after_restart)
    assert (stat.total, stat.seconds) == (7, 5.0)


def test_percentiles_interpolate_within_a_bucket_as_prometheus_does():
    buckets = [(1.0, 0), (2.0, 50), (5.0, 100)]
    assert stats.quantile(buckets, 0.5) == 2.0
    assert stats.quantile(buckets, 0.75) == 3.5
    assert stats.quantile([(1.0, 0)], 0.5) is None


def test_pods_are_grouped_by_their_deployment():
    pod = {"metadata": {"name": "api-5d8f-x2k", "labels": {"pod-template-hash": "5d8f"},
                        "ownerReferences": [{"kind": "ReplicaSet", "name": "api-5d8f", "controller": True}]}}
    assert stats.workload_of(pod, "deploy") == "api" and stats.workload_of(pod, "pod") == "api-5d8f-x2k"
    rows = stats.render([WorkloadStat("api", "shop", 2, 2, 10.0, 100, 1, [(1.0, 90), (2.0, 100)])], "deploy")
    assert rows[1][:7] == ["deploy/api", "2/2", "99.00%", "10.0rps", "≤1ms", "1.5ms", "1.9ms"]


def span(trace: str, span_id: str, kind: str, service: str, start: int, parent: str | None = None) -> str:
    raw = {"traceId": trace, "id": span_id, "kind": kind, "name": service, "timestamp": start, "duration": 1000,
           "localEndpoint": {"serviceName": service}, "tags": {"http.method": "GET", "http.status_code": "200"}}
    if parent:
        raw["parentId"] = parent
    return json.dumps(raw)


def test_a_request_through_three_services_is_one_tree(tmp_path):
    # web → front (shared span ids: the server's span has its client's id), front → api as a child
    (tmp_path / "shop_web.jsonl").write_text(span("t1", "a", "CLIENT", "web.shop", 100) + "\n")
    (tmp_path / "shop_front.jsonl").write_text(
        span("t1", "a", "SERVER", "front.shop", 200) + "\n" + span("t1", "b", "CLIENT", "front.shop", 300, "a") + "\n")
    (tmp_path / "shop_api.jsonl").write_text(span("t1", "b", "SERVER", "api.shop", 400) + "\n{torn")
    (tmp_path / "shop_other.jsonl").write_text(span("t2", "c", "CLIENT", "web.shop", 50) + "\n")
    found = traces.traces(traces.read_spans(tmp_path))
    assert [t.trace_id for t in found] == ["t1", "t2"]  # the most recent first
    [root] = found[0].roots
    assert (root.service, root.kind) == ("web.shop", "CLIENT")
    [front] = root.children
    [front_client] = front.children
    [api] = front_client.children
    assert (front.service, front_client.kind, api.service) == ("front.shop", "CLIENT", "api.shop")
    shown = traces.render(found[0])
    assert shown.splitlines()[0] == "trace t1: 4 spans, 3 workloads (api.shop, front.shop, web.shop), 1.3 ms"
    assert "         └─ api.shop server: GET api.shop → 200 (1.00 ms)" in shown


def test_a_sample_from_before_a_restart_is_no_baseline():
    old = sample(100.0, 100.0, 1000, 0, (1000,) * 4)  # the proxy started at 0
    now = sample(350.0, 200.0, 50, 0, (50,) * 4)  # it restarted at 150
    stat = WorkloadStat("api", "shop", 1, 1)
    stats.add(stat, stats.baseline([old], now, 300.0), now)
    assert (stat.total, stat.seconds) == (50, 200.0)
