"""`trace` through the mesh (simulator only): the source pod's capture and proxy (its endpoint
choice, kube-proxy bypassed), mutual TLS with both identities, NetworkPolicy on the port used on
the wire, the server's capture and PeerAuthentication mode, AuthorizationPolicy's decision and
the rule that made it, delivery to the app. The kernel's side of the same cases:
tests/test_mesh_up_root.py."""

from __future__ import annotations

import pytest

from podnet.sim.trace import Tracer
from tests.conftest import cluster_of

BASE = """
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      serviceAccountName: api
      containers:
      - name: api
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: [netexec, --http-port=8080]
        ports: [{containerPort: 8080, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec: {selector: {app: api}, ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy, namespace: shop, labels: {app: legacy, sidecar.istio.io/inject: "false"}}
spec: {containers: [{name: legacy, image: nginx, ports: [{containerPort: 80}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: shop}
spec: {selector: {app: legacy}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}%s}
spec: {containers: [{name: web, image: python:3.12, command: [sleep, "1000"]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: shop, labels: {app: plain, sidecar.istio.io/inject: "false"}}
spec: {containers: [{name: plain, image: python:3.12, command: [sleep, "1000"]}]}
"""
STRICT = """
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: STRICT}}
"""
ONLY_ECHO = """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/shop/sa/default"]}}]
    to: [{operation: {methods: [GET], paths: ["/echo"]}}]
"""
NO_WEB_INGRESS = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: plain}}}], ports: [{port: 8080}]}]
"""


def tracer(*extra: str, web_annotations: str = "") -> Tracer:
    return Tracer(cluster_of(BASE % web_annotations + "".join(extra)))


def actions(result) -> list[str]:
    return [h.action for h in result.hops]


def test_a_meshed_request_goes_proxy_to_proxy_in_mutual_tls():
    result = tracer(STRICT, ONLY_ECHO).trace("shop/web", "http://api/echo")
    assert result.verdict == "delivered" and len(result.fates) == 2 and all(f.delivered for f in result.fates)
    assert [a for a in actions(result) if a not in ("encapsulate", "decapsulate", "route", "bridge")] == [
        "resolve", "intercept", "proxy", "mtls", "egress-allow", "ingress-allow", "receive", "intercept",
        "authz-allow", "deliver", "serve"]
    mtls = next(h for h in result.hops if h.action == "mtls")
    assert "client spiffe://cluster.local/ns/shop/sa/default, server spiffe://cluster.local/ns/shop/sa/api" in mtls.detail
    assert ":8080" in mtls.detail  # the endpoint's own port: no Service address on the wire
    assert not any(h.action in ("service", "dnat") for h in result.hops)  # kube-proxy is bypassed
    allow = next(h for h in result.hops if h.action == "authz-allow")
    assert "ALLOW shop/api rule 0" in allow.detail


def test_authorization_decides_by_method_and_path_and_says_which_rule():
    result = tracer(ONLY_ECHO).trace("shop/web", "http://api/hostname")
    assert result.verdict == "dropped" and "authz-deny" in actions(result)
    assert 'RBAC: access denied' in result.reason and "no ALLOW rule matched" in result.reason


def test_a_plaintext_client_is_refused_under_strict_and_has_no_principal_otherwise():
    refused = tracer(STRICT).trace("shop/plain", "api.shop:80")
    assert refused.verdict == "dropped" and "refuse" in actions(refused) and "STRICT" in refused.reason
    assert "intercept" in actions(refused) and "mtls" not in actions(refused)
    taken = tracer().trace("shop/plain", "api.shop:80")  # PERMISSIVE: in, and no policy to ask
    assert taken.verdict == "delivered" and "authz-allow" in actions(taken)
    denied = tracer(ONLY_ECHO).trace("shop/plain", "http://api/echo")  # the rule needs a principal
    assert denied.verdict == "dropped" and "plaintext: no principal" in denied.reason


def test_to_a_workload_without_a_proxy_the_proxy_speaks_plaintext():
    result = tracer(STRICT).trace("shop/web", "legacy.shop:80")
    assert result.verdict == "delivered" and "plaintext" in actions(result) and "authz-allow" not in actions(result)


def test_networkpolicy_judges_the_port_on_the_wire():
    result = tracer(NO_WEB_INGRESS).trace("shop/web", "http://api/echo")
    assert result.verdict == "dropped" and "ingress-deny" in actions(result)
    assert tracer(NO_WEB_INGRESS).trace("shop/plain", "http://api/echo").verdict == "delivered"


@pytest.mark.parametrize("annotation, captured", [
    ("", True),
    (", annotations: {traffic.sidecar.istio.io/excludeOutboundPorts: '80'}", False),
    (", annotations: {traffic.sidecar.istio.io/excludeOutboundIPRanges: '10.96.0.0/12'}", False),
    (", annotations: {traffic.sidecar.istio.io/includeOutboundIPRanges: '10.244.0.0/16'}", False),
])
def test_the_capture_follows_the_pods_annotations(annotation, captured):
    result = tracer(STRICT, web_annotations=annotation).trace("shop/web", "api.shop:80")
    assert ("proxy" in actions(result)) is captured
    if not captured:  # kube-proxy's way, in plaintext: STRICT refuses it at the server's proxy
        assert "service" in actions(result) and result.verdict == "dropped" and "refuse" in actions(result)


MYSQL = """
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}, annotations: {config.linkerd.io/opaque-ports: mysql}}
    spec:
      serviceAccountName: db
      containers: [{name: db, image: mysql:8.4, ports: [{containerPort: 3306, name: mysql}]}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {selector: {app: db}, ports: [{name: mysql, port: 3306, targetPort: mysql}]}
"""
ONLY_WEB_TO_DB = """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/default"]}}], to: [{operation: {ports: ["3306"]}}]}]
"""
DB_ONLY_3306 = """
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{ports: [{port: 3306}]}]
"""


def test_an_opaque_port_is_reached_through_the_servers_tunnel_port_and_networkpolicy_sees_that_port():
    result = tracer(MYSQL).trace("shop/web", "db.shop:3306")
    assert result.verdict == "delivered"
    mtls = next(h for h in result.hops if h.action == "mtls")
    assert ":15008 in mutual TLS" in mtls.detail and "port 3306 is opaque" in mtls.detail
    assert [a for a in actions(result) if a in ("mtls", "ingress-allow", "tunnel", "authz-allow", "deliver", "serve")] \
        == ["mtls", "ingress-allow", "tunnel", "authz-allow", "deliver", "serve"]
    assert "intercept" not in actions(result)[actions(result).index("mtls"):]  # the tunnel port is never captured
    # a policy that opens 3306 alone shuts the meshed client out: the wire carries 15008
    blocked = tracer(MYSQL, DB_ONLY_3306).trace("shop/web", "db.shop:3306")
    assert blocked.verdict == "dropped" and "ingress-deny" in actions(blocked) and "15008" in blocked.reason
    # a client without a proxy comes to 3306 itself, taken as plaintext at once (no TLS detection)
    plain = tracer(MYSQL, DB_ONLY_3306).trace("shop/plain", "db.shop:3306")
    assert plain.verdict == "delivered" and "no TLS detection" in next(
        h for h in plain.hops if h.action == "intercept" and h.at.startswith("shop/db")).detail


def test_a_denied_client_of_an_opaque_port_is_told_a_server_that_speaks_first_greets_it():
    """Envoy checks a connection's authorization on the client's first bytes: trace's denial on
    an opaque port (where servers that speak first live) says what such a server's client sees."""
    allowed = tracer(MYSQL, ONLY_WEB_TO_DB).trace("shop/web", "db.shop:3306")
    assert "authz-allow" in actions(allowed) and "tunnel" in actions(allowed)
    result = tracer(MYSQL, ONLY_WEB_TO_DB).trace("shop/plain", "db.shop:3306")  # no principal: denied
    deny = next(h for h in result.hops if h.action == "authz-deny")
    assert "speaks first" in deny.detail and result.verdict == "dropped" and "greeting reaches" in result.reason
    http = tracer(ONLY_ECHO).trace("shop/web", "http://api/hostname")  # (a request is checked before the app)
    assert http.verdict == "dropped"


SKIPPED = """
---
apiVersion: v1
kind: Pod
metadata: {name: skip, namespace: shop, labels: {app: skip}, annotations: {config.linkerd.io/skip-inbound-ports: "8080"}}
spec: {containers: [{name: skip, image: registry.k8s.io/e2e-test-images/agnhost:2.53, args: [netexec, --http-port=8080], ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: skip, namespace: shop}
spec: {selector: {app: skip}, ports: [{name: tcp, port: 8080}]}
"""
UNDECLARED = """
---
apiVersion: v1
kind: Pod
metadata: {name: pg, namespace: shop, labels: {app: pg}, annotations: {config.linkerd.io/opaque-ports: "5432"}}
spec: {serviceAccountName: pg, containers: [{name: pg, image: postgres:16}]}
---
apiVersion: v1
kind: Service
metadata: {name: pg, namespace: shop}
spec: {ports: [{name: pg, port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: pg-1, namespace: shop, labels: {kubernetes.io/service-name: pg}}
addressType: IPv4
ports: [{name: pg, port: 5432}]
endpoints: [{addresses: ["%s"], targetRef: {kind: Pod, namespace: shop, name: pg}}]
"""


def test_a_port_kept_from_the_servers_proxy_is_reached_in_plaintext():
    """Linkerd's skip-inbound-ports: the server's capture leaves the port to the app, and clients'
    proxies speak plaintext to it (Linkerd's destination gives the address no identity)."""
    result = tracer(SKIPPED).trace("shop/web", "skip.shop:8080")
    plain = next(h for h in result.hops if h.action == "plaintext")
    assert "skip-inbound-ports" in plain.detail and "mtls" not in actions(result)
    assert result.verdict == "delivered" and "intercept" not in actions(result)[actions(result).index("plaintext"):]


def test_an_opaque_port_the_servers_proxy_does_not_know_is_not_tunnelled():
    """Only a port the server's proxy has a tunnel chain for (one its containers, Services or
    policies name) goes through the tunnel: a hand-made endpoint's undeclared port does not."""
    address = tracer(UNDECLARED % "10.244.1.50").cluster.get("Pod", "shop", "pg").status["podIP"]
    result = tracer(UNDECLARED % address).trace("shop/web", "pg.shop:5432")
    mtls = next(h for h in result.hops if h.action == "mtls")
    assert ":5432 in mutual TLS" in mtls.detail and "tunnel" not in actions(result)
