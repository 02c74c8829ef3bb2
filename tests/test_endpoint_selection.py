"""Which endpoints receive new connections, and what the EndpointSlice controller publishes of
a pod being deleted: one rule (semantics.services.usable_endpoints) read by kube-proxy's
rules, `trace` and the ingress controller's upstreams."""

from __future__ import annotations

import pytest

from podnet.proxy.model import service_ports
from podnet.semantics.ingress import IngressController
from podnet.semantics.services import Backend, usable_endpoints
from podnet.sim.trace import Tracer
from tests.conftest import cluster_of

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
DELETED = "deletionTimestamp: '2030-01-01T00:00:30Z', deletionGracePeriodSeconds: 30, "


def backend(name, ready, serving, terminating):
    return Backend(f"10.0.0.{ord(name[-1]) - 96}", 80, f"default/{name}", "node1", ready, serving, terminating)


# (endpoints as (name, ready, serving, terminating), the names that get new connections)
RULE = [
    ([("a", True, True, False), ("b", True, True, False)], ["a", "b"]),
    # a pod being deleted leaves the ready set at once: new connections go to the others
    ([("a", True, True, False), ("b", False, True, True)], ["a"]),
    # not ready and not terminating: never a target
    ([("a", False, False, False), ("b", True, True, False)], ["b"]),
    # no ready endpoint left: the serving-terminating ones take new connections (KEP-1669)
    ([("a", False, True, True), ("b", False, True, True)], ["a", "b"]),
    # ... but not a terminating one that no longer serves
    ([("a", False, True, True), ("b", False, False, True)], ["a"]),
    # not ready and not terminating does not count as a fallback either
    ([("a", False, True, False)], []),
    ([("a", False, False, True)], []),
    # publishNotReadyAddresses: published ready while terminating, and kube-proxy reads it as ready
    ([("a", True, True, True), ("b", False, True, True)], ["a"]),
    ([], []),
]


@pytest.mark.parametrize("endpoints, chosen", RULE, ids=[
    "all-ready", "terminating-leaves-the-ready-set", "not-ready-never", "fallback-to-serving-terminating",
    "fallback-skips-not-serving", "not-ready-is-no-fallback", "terminating-not-serving-never",
    "published-ready-while-terminating", "none"])
def test_new_connections_go_to_ready_endpoints_else_to_serving_terminating_ones(endpoints, chosen):
    backends = [backend(*e) for e in endpoints]
    assert [b.pod.split("/")[1] for b in usable_endpoints(backends)] == chosen


def pod(name, extra_metadata="", ready=True, node="node1"):
    status = "" if ready else "\nstatus: {conditions: [{type: Ready, status: 'False'}]}"
    return f"""
---
apiVersion: v1
kind: Pod
metadata: {{{extra_metadata}name: {name}, namespace: default, labels: {{app: web}}}}
spec:
  nodeName: {node}
  containers: [{{name: c, image: {AGNHOST}, args: [netexec, --http-port=8080], ports: [{{containerPort: 8080}}]}}]
{status}"""


SERVICE_AND_INGRESS = f"""
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{selector: {{app: web}}, ports: [{{port: 80, targetPort: 8080}}]}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: web, namespace: default}}
spec:
  ingressClassName: nginx
  rules:
  - host: web.test
    http:
      paths:
      - {{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: default}}
spec:
  nodeName: node2
  containers: [{{name: c, image: {AGNHOST}, args: [pause]}}]
"""
CONFIG = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nnodes: 2\n"


def endpoint_conditions(cluster):
    [slice_] = [s for s in cluster.of_kind("EndpointSlice", "default") if s.labels.get("kubernetes.io/service-name") == "web"]
    return {e["targetRef"]["name"]: e["conditions"] for e in slice_.body["endpoints"]}


@pytest.mark.parametrize("ready", [True, False], ids=["ready", "not-ready"])
def test_a_pod_being_deleted_is_published_not_ready_serving_as_its_readiness_and_terminating(ready):
    cluster = cluster_of(pod("a") + pod("b", DELETED, ready=ready) + SERVICE_AND_INGRESS, CONFIG)
    assert endpoint_conditions(cluster) == {
        "a": {"ready": True, "serving": True, "terminating": False},
        "b": {"ready": False, "serving": ready, "terminating": True},
    }
    # the legacy Endpoints leave it out altogether (the endpoints controller's ShouldPodBeInEndpoints)
    subsets = cluster.get("Endpoints", "default", "web").body["subsets"]
    assert [a["targetRef"]["name"] for s in subsets for a in s.get("addresses", []) + s.get("notReadyAddresses", [])] == ["a"]


def chosen_everywhere(cluster):
    """The pods new connections go to, as kube-proxy on each node programs them, as `trace`
    says (to the Service from a pod) and as the ingress controller's upstream lists them."""
    ips = {p.status["podIP"]: p.name for p in cluster.of_kind("Pod", "default")}
    proxies = {node.name: sorted(e.pod.split("/")[1] for port in service_ports(cluster, node.name)
                                 if port.service == "default/web" for e in port.cluster_endpoints)
               for node in cluster.nodes}
    traced = sorted(name.split("/")[1] for name in Tracer(cluster).trace("default/client", "web", 80, "TCP").endpoints)
    routed = IngressController(cluster).route("http://web.test/")
    upstream = sorted(ips[address.split(":")[0]] for address in routed.endpoints)
    return proxies, traced, upstream


@pytest.mark.parametrize("pods, chosen, upstreams", [
    (pod("a") + pod("b", DELETED), ["a"], ["a"]),
    (pod("a", DELETED) + pod("b", DELETED, ready=False), ["a"], []),
    (pod("a", DELETED, ready=False) + pod("b", DELETED, ready=False), [], []),
], ids=["ready-left", "only-terminating-serving", "nothing-serves"])
def test_kube_proxy_trace_and_the_ingress_controller_send_new_connections_to_the_same_pods(pods, chosen, upstreams):
    """kube-proxy and `trace` share the rule (ready, else serving-terminating); ingress-nginx
    takes the ready endpoints only (getEndpointsFromSlices), so with only terminating pods left
    the Service still reaches them and the Ingress answers 503."""
    cluster = cluster_of(pods + SERVICE_AND_INGRESS, CONFIG)
    proxies, traced, upstream = chosen_everywhere(cluster)
    assert proxies == {"node1": chosen, "node2": chosen}
    assert upstream == upstreams
    if chosen:
        assert traced == chosen
    else:
        result = Tracer(cluster).trace("default/client", "web", 80, "TCP")
        assert result.verdict == "dropped" and "no ready endpoints" in result.reason
    if not upstreams:
        assert IngressController(cluster).route("http://web.test/").status == 503
