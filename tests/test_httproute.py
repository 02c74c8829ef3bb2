"""Gateway API HTTPRoutes attached to Services (GAMMA) and Linkerd's retry and timeout
annotations: semantics/httproute.py's rules, the proxies' routes rendered from them in the same
order (mesh/envoy.py), `trace` choosing the same rule, and admission against the upstream schema."""

from __future__ import annotations

import pytest

from podnet.api.objects import KubeObject
from podnet.errors import InvalidInput
from podnet.mesh import envoy
from podnet.semantics import httproute
from podnet.semantics.httproute import Request
from podnet.sim.trace import Tracer
from tests.conftest import cluster_of

SERVICES = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec: {containers: [{name: web, image: busybox, command: [sleep, "1000"]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: shop, labels: {app: api, version: v1}}
spec: {containers: [{name: api, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-2, namespace: shop, labels: {app: api, version: v2}}
spec: {containers: [{name: api, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec]}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop, annotations: {retry.linkerd.io/http: "5xx,429", retry.linkerd.io/limit: "3"}}
spec: {selector: {app: api}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: api-v1, namespace: shop}
spec: {selector: {app: api, version: v1}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: api-v2, namespace: shop}
spec: {selector: {app: api, version: v2}, ports: [{port: 80, targetPort: 8080}]}
"""
ROUTES = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: split, namespace: shop, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: api-v2, port: 80}]
    timeouts: {request: 1500ms}
  - backendRefs: [{name: api-v1, port: 80, weight: 90}, {name: api-v2, port: 80, weight: 10}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: exact, namespace: shop, creationTimestamp: "2026-01-03T00:00:00Z", annotations: {retry.linkerd.io/http: "503"}}
spec:
  parentRefs: [{group: "", kind: Service, name: api, sectionName: http}]
  rules:
  - matches: [{path: {type: Exact, value: /v2/admin}, method: POST, headers: [{name: X-Team, value: ops}]}]
    backendRefs: [{name: api-v1, port: 80}]
"""


@pytest.fixture(scope="module")
def cluster():
    return cluster_of(SERVICES + ROUTES)


def rules(cluster):
    svc = cluster.get("Service", "shop", "api")
    return httproute.rules_of(httproute.attached(cluster.of_kind("HTTPRoute"), svc, svc.spec["ports"][0], "shop"), svc)


def test_rules_come_in_gateway_apis_order_of_precedence(cluster):
    ordered = [(r.route, r.index, r.match.path_type, r.match.path) for r in rules(cluster)]
    assert ordered == [("shop/exact", 0, "Exact", "/v2/admin"), ("shop/split", 0, "PathPrefix", "/v2"),
                       ("shop/split", 1, "PathPrefix", "/")]


@pytest.mark.parametrize("request_, chosen", [
    (Request("POST", "/v2/admin", {"x-team": "ops"}), ("shop/exact", 0)),
    (Request("POST", "/v2/admin", {"x-team": "dev"}), ("shop/split", 0)),  # the header does not match
    (Request("GET", "/v2/admin", {"x-team": "ops"}), ("shop/split", 0)),  # nor the method
    (Request("GET", "/v2"), ("shop/split", 0)),
    (Request("GET", "/v2/x"), ("shop/split", 0)),
    (Request("GET", "/v2x"), ("shop/split", 1)),  # a prefix matches whole path elements
    (Request("GET", "/"), ("shop/split", 1)),
])
def test_a_request_takes_the_first_rule_that_matches(cluster, request_, chosen):
    rule = httproute.choose(rules(cluster), request_)
    assert (rule.route, rule.index) == chosen


def test_weights_timeouts_and_retries(cluster):
    exact, prefix, default = rules(cluster)
    assert [(b.service, share) for b, share in httproute.weighted(default.backends)] == [("api-v1", 0.9), ("api-v2", 0.1)]
    assert prefix.timeout == 1.5 and default.timeout is None
    # the route's own retry annotation replaces all of the Service's; without one, the Service's hold
    assert exact.retry == httproute.Retry((503,), 1, None)
    assert default.retry.statuses == (429, *range(500, 600)) and default.retry.limit == 3


def test_consumer_routes_in_the_clients_namespace_replace_the_producers():
    consumer = ROUTES.replace("name: split, namespace: shop", "name: mine, namespace: other").replace(
        "kind: Service, name: api, port: 80}", "kind: Service, name: api, namespace: shop, port: 80}")
    cluster = cluster_of(SERVICES + consumer)
    svc = cluster.get("Service", "shop", "api")
    routes, port = cluster.of_kind("HTTPRoute"), svc.spec["ports"][0]
    assert [r.name for r in httproute.attached(routes, svc, port, "other")] == ["mine"]
    assert [r.name for r in httproute.attached(routes, svc, port, "shop")] == ["exact"]


def test_a_parent_ref_names_a_service_with_the_core_group_and_its_port():
    svc = cluster_of(SERVICES).get("Service", "shop", "api")
    port = svc.spec["ports"][0]

    def route(ref):
        return KubeObject("HTTPRoute", "shop", "r", {"metadata": {"name": "r", "namespace": "shop"},
                                                    "spec": {"parentRefs": [{"kind": "Service", "name": "api", **ref}]}})

    assert httproute.attaches(route({"group": ""}), svc, port)
    assert not httproute.attaches(route({}), svc, port)  # a parentRef's group defaults to gateway.networking.k8s.io
    assert httproute.attaches(route({"group": "", "sectionName": "http"}), svc, port)
    assert not httproute.attaches(route({"group": "", "sectionName": "grpc"}), svc, port)
    assert not httproute.attaches(route({"group": "", "port": 81}), svc, port)


def test_linkerds_retry_codes():
    assert httproute.retry_of({"retry.linkerd.io/http": "gateway-error,429"}, "x").statuses == (429, 502, 503, 504)
    assert httproute.retry_of({"retry.linkerd.io/http": "5XX", "retry.linkerd.io/limit": "0"}, "x") == \
        httproute.Retry(tuple(range(500, 600)), 1, None)  # (a limit of 0 reads as unset: one retry)


def test_an_annotation_that_cannot_be_read_is_ignored_and_said_not_the_end_of_every_proxy(tmp_path):
    broken = SERVICES.replace('retry.linkerd.io/http: "5xx,429"', 'retry.linkerd.io/http: "4xx"')
    cluster = cluster_of(broken)
    svc = cluster.get("Service", "shop", "api")
    [rule] = httproute.default_rules(svc, 80)
    assert rule.retry is None and "'4xx' is not a status code" in rule.problem
    envoy.resources(cluster, cluster.get("Pod", "shop", "web"), envoy.ProxyFiles(str(tmp_path)), [])  # renders


def test_a_regular_expression_re2_would_refuse_leaves_its_route_out():
    lookahead = ROUTES.replace("matches: [{path: {type: PathPrefix, value: /v2}}]",
                               'matches: [{path: {type: RegularExpression, value: "/(?!admin).*"}}]')
    cluster = cluster_of(SERVICES + lookahead)
    assert "lookaround" in httproute.route_problem(cluster.get("HTTPRoute", "shop", "split"))
    assert {r.route for r in rules(cluster)} == {"shop/exact"}
    result = Tracer(cluster).trace("shop/web", "http://api.shop/x")
    assert any("is left out" in h.detail for h in result.hops)


@pytest.mark.parametrize("annotations, problem", [
    ({"retry.linkerd.io/http": "5xx,abc"}, "'abc' is not a status code"),
    ({"retry.linkerd.io/http": "504-500"}, "'504-500' is not a status code"),
    ({"retry.linkerd.io/http": "5xx", "retry.linkerd.io/limit": "many"}, "not a number of retries"),
    ({"retry.linkerd.io/http": "5xx", "retry.linkerd.io/timeout": "soon"}, "is not a duration"),
])
def test_bad_annotations_are_named(annotations, problem):
    with pytest.raises(httproute.RouteError, match=problem):
        httproute.retry_of(annotations, "Service shop/api")


def test_the_proxys_routes_are_the_rules_in_the_same_order(cluster, tmp_path):
    web = cluster.get("Pod", "shop", "web")
    rendered = envoy.resources(cluster, web, envoy.ProxyFiles(str(tmp_path)), [])
    chain = next(c for c in rendered["lds.json"]["resources"][0]["filter_chains"]
                 if c["filter_chain_match"]["prefix_ranges"][0]["address_prefix"] == cluster.get("Service", "shop", "api").spec["clusterIP"])
    routes = chain["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert [r["name"] for r in routes] == [r.describe() for r in rules(cluster)]
    assert routes[0]["match"]["path"] == "/v2/admin" and routes[1]["match"] == {"path_separated_prefix": "/v2"}
    assert routes[0]["match"]["headers"][0] == {"name": ":method", "string_match": {"exact": "POST"}}
    assert routes[1]["route"]["timeout"] == "1.5s" and routes[2]["route"]["timeout"] == "0s"
    assert routes[2]["route"]["weighted_clusters"]["clusters"] == [
        {"name": "outbound|80||api-v1.shop.svc.cluster.local", "weight": 90},
        {"name": "outbound|80||api-v2.shop.svc.cluster.local", "weight": 10}]
    retry = routes[2]["route"]["retry_policy"]
    assert retry["num_retries"] == 3 and retry["retriable_status_codes"][:2] == [429, 500]
    # TCP ports stay connections; every Service cluster sets failing endpoints aside
    tcp = next(c for c in rendered["lds.json"]["resources"][0]["filter_chains"]
               if c["filter_chain_match"]["prefix_ranges"][0]["address_prefix"] == cluster.get("Service", "shop", "api-v1").spec["clusterIP"])
    assert tcp["filters"][0]["name"] == "envoy.filters.network.tcp_proxy"
    assert all(c.get("outlier_detection") == envoy.OUTLIER_DETECTION for c in rendered["cds.json"]["resources"]
               if c["name"].startswith("outbound|"))


def test_trace_takes_the_rule_the_proxy_takes(cluster):
    tracer = Tracer(cluster)
    routed = tracer.trace("shop/web", "http://api.shop/v2/x")
    route = next(h for h in routed.hops if h.action == "mesh-route")
    assert "HTTPRoute shop/split rule 0 takes GET /v2/x: api-v2:80 100%; timeout 1.5s" in route.detail
    assert {f.backend.name for f in routed.fates} == {"shop/api-2"}
    split = tracer.trace("shop/web", "http://api.shop/")
    assert "api-v1:80 90%, api-v2:80 10%" in next(h for h in split.hops if h.action == "mesh-route").detail
    assert {f.backend.name for f in split.fates} == {"shop/api-1", "shop/api-2"}


def test_admission_checks_an_httproute_against_the_upstream_schema():
    bad = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: HTTPRoute
metadata: {name: bad, namespace: shop}
spec:
  parentRefs: [{kind: Service, name: api}]
  rules:
  - matches: [{path: {type: Regexy, value: /x}}]
    backendRefs: [{name: api, port: 80, wieght: 1}]
"""
    with pytest.raises(InvalidInput) as caught:
        cluster_of(bad)
    text = str(caught.value)
    assert 'spec.rules[0].matches[0].path.type: Unsupported value: "Regexy"' in text
    assert "spec.rules[0].backendRefs[0].wieght: unknown field" in text
    good = cluster_of(SERVICES + ROUTES.replace("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"))
    assert isinstance(good.get("HTTPRoute", "shop", "split"), KubeObject)
