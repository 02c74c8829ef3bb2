"""The simulator and a real nginx agree: every routing case of tests/test_ingress.py, sent as a
real HTTP(S) request to nginx running the config rendered from the same route table.

For each world (the Ingresses of one test), nginx runs as the current user on 127.0.0.1 high
ports (tests/nginxharness.py); each upstream with endpoints is a header-echo server of its own.
Per request, `IngressController.route(url)` and nginx must agree on the status code, the
backend (the echo server that answered is the upstream nginx chose), the URI that backend
received, and the Location of a redirect. A disagreement is a bug in the simulator or in the
renderer; the assertion message lists every one of a world at once. Generated worlds (random
Ingresses over a few hosts, paths, path types and annotations, hypothesis with a fixed seed)
are checked the same way over a grid of requests.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podnet.ingressnginx import balancer, certificates, nginxconf
from podnet.semantics.ingress import IngressController
from tests import test_ingress as cases
from tests.conftest import cluster_of
from tests.nginxharness import CLIENT_ADDRESS, DEADLINE, RunningNginx
from tests.test_ingress import controller_for, docs, ingress, world

# ---------------------------------------------------------------- the worlds and their requests


def _k8s_table_worlds() -> list[tuple[str, object, list[str]]]:
    out = []
    for case, paths, request_path, _matches, _winner in cases.K8S_TABLE:
        services = [f"svc-{i}" for i in range(len(paths))]
        text = ingress("table", [{"host": "table.test", "paths": [(t, p, s) for (t, p), s in zip(paths, services)]}])
        out.append((f"k8s_docs_{case}", lambda text=text, services=services: IngressController(
            cluster_of(world(text, services))), [f"http://table.test{request_path}"]))
    return out


def _shop_details() -> IngressController:
    return IngressController(cluster_of((cases.EXAMPLES / "shop" / "ingress.yaml").read_text() + "\n---\n"
                                        + cases._shop_services()))


def _examples() -> list[tuple[str, object, list[str]]]:
    by_files: dict[tuple[str, ...], list[str]] = {}
    for _case, files, url, *_ in cases.EXAMPLE_CASES:
        by_files.setdefault(files, []).append(url)
    return [(f"example_{'_'.join(Path(f).stem for f in files[-1:])}",
             lambda files=files: cases._example(*files), urls) for files, urls in by_files.items()]


def _tls_world(annotations: dict) -> IngressController:
    return controller_for(ingress("t", [{"host": "t.test", "paths": [("Prefix", "/", "svc")]}], annotations=annotations,
                                  tls=[{"hosts": ["t.test"], "secretName": "t-tls"}]))


def _backend_world(backend: str, missing: tuple[str, ...]) -> IngressController:
    return controller_for(ingress("b", [{"host": "b.test", "paths": [("Prefix", "/", backend)]}]), missing=missing)


def _plain(text: str) -> IngressController:
    return IngressController(cluster_of(world(text)))


PRECEDENCE = {
    "exact_host_over_wildcard_over_catch_all": (docs(
        ingress("exact", [{"host": "a.foo.com", "paths": [("Prefix", "/", "exact")]}]),
        ingress("wild", [{"host": "*.foo.com", "paths": [("Prefix", "/", "wild")]}]),
        ingress("any", [{"paths": [("Prefix", "/", "any")]}])),
        ["http://a.foo.com/", "http://b.foo.com/", "http://x.b.foo.com/", "http://192.168.1.200/"]),
    "host_server_does_not_fall_back_to_catch_all_rules": (docs(
        ingress("host", [{"host": "h.test", "paths": [("Prefix", "/a", "hosted")]}]),
        ingress("any", [{"paths": [("Prefix", "/b", "anyhost")]}])), ["http://h.test/b", "http://other.test/b"]),
    "paths_of_all_ingresses_for_a_host_are_merged": (docs(
        ingress("one", [{"host": "m.test", "paths": [("Prefix", "/", "front")]}]),
        ingress("two", [{"host": "m.test", "paths": [("Prefix", "/api", "api"), ("Exact", "/login", "login")]}])),
        ["http://m.test/api/x", "http://m.test/apix", "http://m.test/login", "http://m.test/login/x"]),
    "duplicate_path_oldest_ingress_wins": (docs(
        ingress("newer", [{"host": "d.test", "paths": [("Prefix", "/x", "newer")]}], created="2025-06-01T00:00:00Z"),
        ingress("older", [{"host": "d.test", "paths": [("Prefix", "/x", "older")]}], created="2025-01-01T00:00:00Z")),
        ["http://d.test/x", "http://d.test/x/y"]),
    "same_path_different_type_both_kept": (docs(
        ingress("p", [{"host": "t.test", "paths": [("Prefix", "/foo", "prefix")]}]),
        ingress("e", [{"host": "t.test", "paths": [("Exact", "/foo", "exact")]}])),
        ["http://t.test/foo", "http://t.test/foo/bar", "http://t.test/foo/"]),
    "implementation_specific_is_prefix": (ingress("i", [{"host": "i.test", "paths": [
        ("ImplementationSpecific", "/foo", "svc")]}]), ["http://i.test/foo", "http://i.test/foo/bar", "http://i.test/foobar"]),
    "catch_all_default_backend_first_ingress_without_rules_wins": (docs(
        ingress("zz-old", default_backend="old-default", created="2024-01-01T00:00:00Z"),
        ingress("aa-new", default_backend="new-default", created="2025-01-01T00:00:00Z"),
        ingress("with-rules", [{"host": "r.test", "paths": [("Prefix", "/r", "ruled")]}], default_backend="rules-default",
                created="2023-01-01T00:00:00Z")),
        ["http://unknown.test/anything", "http://r.test/r", "http://r.test/other"]),
    "catch_all_default_backend_not_replaced_by_hostless_root": (docs(
        ingress("rules", [{"paths": [("Prefix", "/", "root-rule")]}], created="2023-01-01T00:00:00Z"),
        ingress("catch", default_backend="catch-all", created="2024-01-01T00:00:00Z")), ["http://any.test/x"]),
    "default_backend_of_ingress_with_rules_serves_its_hosts_only": (ingress(
        "site", [{"host": "s.test", "paths": [("Prefix", "/app", "app")]}], default_backend="fallback"),
        ["http://s.test/other", "http://s.test/app/1", "http://elsewhere.test/other"]),
    "default_backend_of_hostless_rules_is_not_the_catch_all": (ingress(
        "hostless", [{"paths": [("Prefix", "/app", "app")]}], default_backend="fallback"),
        ["http://any.test/app", "http://any.test/other"]),
    "root_path_replaces_the_servers_default_location": (docs(
        ingress("first", [{"host": "r.test", "paths": [("Prefix", "/x", "x")]}], default_backend="fallback"),
        ingress("second", [{"host": "r.test", "paths": [("Prefix", "/", "root")]}])), ["http://r.test/other"]),
    "canary_ingress_adds_no_route": (docs(
        ingress("main", [{"host": "c.test", "paths": [("Prefix", "/", "stable")]}]),
        ingress("canary", [{"host": "c.test", "paths": [("Prefix", "/", "canary")]}],
                annotations={"nginx.ingress.kubernetes.io/canary": "true"})), ["http://c.test/"]),
    "use_regex_alone": (ingress("re", [{"host": "re.test", "paths": [("ImplementationSpecific", "/foo/.*", "echo:80")]}],
                                annotations={"nginx.ingress.kubernetes.io/use-regex": "true"}),
                        ["http://re.test/foo/x/y", "http://re.test/FOO/x", "http://re.test/foo"]),
    "regex_mode_makes_exact_a_case_insensitive_prefix": (docs(
        ingress("exact", [{"host": "x.test", "paths": [("Exact", "/exact", "exact:80")]}]),
        ingress("regex", [{"host": "x.test", "paths": [("ImplementationSpecific", "/r.*", "regex:80")]}],
                annotations={"nginx.ingress.kubernetes.io/use-regex": "true"})),
        ["http://x.test/EXACTLY/more", "http://x.test/rabbit"]),
    "rewrite_target_equal_to_path": (ingress("same", [{"host": "s.test", "paths": [("Prefix", "/", "echo:80")]}],
                                             annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/"}),
                                     ["http://s.test/a/b?q=1"]),
    "regex_is_per_host": (docs(
        ingress("regex", [{"host": "r.test", "paths": [("ImplementationSpecific", "/a", "echo:80")]}],
                annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/"}),
        ingress("plain", [{"host": "p.test", "paths": [("Prefix", "/a", "echo:80")]}])),
        ["http://r.test/abc", "http://p.test/abc"]),
    "force_ssl_redirect_without_tls": (ingress("f", [{"host": "f.test", "paths": [("Prefix", "/", "svc")]}],
                                              annotations={"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"}),
                                      ["http://f.test/", "http://f.test/x/", "https://f.test/x"]),
    "app_root": (ingress("a", [{"host": "approot.bar.com", "paths": [("Prefix", "/", "svc")]}],
                         annotations={"nginx.ingress.kubernetes.io/app-root": "/app1"}),
                 ["http://approot.bar.com/", "http://approot.bar.com/app1", "http://approot.bar.com/x?y=1"]),
    "rewrite_to_a_url_redirects": (ingress("u", [{"host": "u.test", "paths": [("ImplementationSpecific", "/go(.*)", "svc")]}],
                                           annotations={"nginx.ingress.kubernetes.io/rewrite-target":
                                                        "https://elsewhere.test/landing$1"}),
                                   ["http://u.test/go/x?a=1", "http://u.test/other"]),
    "dollars_that_are_not_captures_stay_literal": (docs(
        ingress("lit", [{"host": "lit.test", "paths": [("ImplementationSpecific", "/go/(.*)", "svc")]}],
                annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/lit/$host/${1}/$1$"}),
        ingress("named", [{"host": "named.test", "paths": [("ImplementationSpecific", "/n/(?<rest>.*)", "svc")]}],
                annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/named/$rest/$nope",
                             "nginx.ingress.kubernetes.io/app-root": "/app$uri"})),
        ["http://lit.test/go/x/y?q=1", "http://named.test/n/a/b", "http://named.test/"]),
    "paths_with_characters_nginx_config_quotes": (docs(
        ingress("odd", [{"host": "odd.test", "paths": [("ImplementationSpecific", "/semi;colon", "s1"),
                                                       ("ImplementationSpecific", "/sp ace", "s2"),
                                                       ("ImplementationSpecific", '/quo"te', "s3"),
                                                       ("ImplementationSpecific", "/back\\slash", "s4"),
                                                       ("ImplementationSpecific", "/line\nbreak", "s5")]}]),
        ingress("odd-regex", [{"host": "odd-regex.test", "paths": [
            ("ImplementationSpecific", '/r"q;{2}(/|$)(.*)', "s1"), ("ImplementationSpecific", "/d\\d+ x", "s2")]}],
            annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/$2"})),
        ["http://odd.test/semi;colon/x", "http://odd.test/sp%20ace", "http://odd.test/quo%22te/",
         "http://odd.test/back%5Cslash", "http://odd.test/line%0Abreak", "http://odd-regex.test/r%22q;{2}/z",
         "http://odd-regex.test/r%22q;;/z", "http://odd-regex.test/d12%20x"]),
    "bad_regex_is_left_out_the_rest_served": (docs(
        ingress("bad", [{"host": "bad.test", "paths": [("ImplementationSpecific", "/broken(", "svc")]}],
                annotations={"nginx.ingress.kubernetes.io/use-regex": "true"}),
        ingress("good", [{"host": "good.test", "paths": [("Prefix", "/", "svc")]}])),
        ["http://bad.test/broken(", "http://bad.test/x", "http://good.test/y"]),
}

# allowlist-source-range (the client is 127.0.0.2), proxy-body-size, backend-protocol HTTPS,
# and a source range ingress-nginx rejects
ANNOTATED = docs(
    ingress("allowed", [{"host": "allowed.test", "paths": [("Prefix", "/", "svc")]}],
            annotations={"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8, 127.0.0.0/24"}),
    ingress("refused", [{"host": "refused.test", "paths": [("Prefix", "/", "svc")]}],
            annotations={"nginx.ingress.kubernetes.io/allowlist-source-range": "10.0.0.0/8,192.168.1.5"}),
    ingress("refused-tls", [{"host": "refused-tls.test", "paths": [("Prefix", "/", "svc")]}],
            annotations={"nginx.ingress.kubernetes.io/allowlist-source-range": "10.0.0.0/8"},
            tls=[{"hosts": ["refused-tls.test"], "secretName": "none"}]),
    ingress("refused-empty", [{"host": "refused-empty.test", "paths": [("Prefix", "/", "gone")]}],
            annotations={"nginx.ingress.kubernetes.io/allowlist-source-range": "10.0.0.0/8"}),
    ingress("allowed-empty", [{"host": "allowed-empty.test", "paths": [("Prefix", "/", "gone")]}],
            annotations={"nginx.ingress.kubernetes.io/allowlist-source-range": "127.0.0.2"}),
    ingress("bad-range", [{"host": "bad-range.test", "paths": [("Prefix", "/", "svc")]}],
            annotations={"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/33"}),
    ingress("small", [{"host": "small.test", "paths": [("Prefix", "/up", "upload"), ("Prefix", "/", "svc"),
                                                       ("Exact", "/dir/", "upload")]}],
            annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "1k"}),
    ingress("unlimited", [{"host": "big.test", "paths": [("Prefix", "/", "upload")]}],
            annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "0"}),
    ingress("default-size", [{"host": "default-size.test", "paths": [("Prefix", "/", "upload")]}]),
    ingress("secure-backend", [{"host": "secure.test", "paths": [("Prefix", "/", "secure:8443")]}],
            annotations={"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}))
ANNOTATED_REQUESTS = [
    "http://allowed.test/a", "http://refused.test/a", "http://refused-tls.test/a", "https://refused-tls.test/a",
    "http://refused-empty.test/a", "http://allowed-empty.test/a", "http://bad-range.test/a", ("http://small.test/up/x", 1000), ("http://small.test/up/x", 1025),
    ("http://small.test/up", 2000), "http://small.test/", ("http://small.test/dir", 2000), "http://small.test/dir",
    ("http://elsewhere.test/healthz", 1024 * 1024 + 1), ("http://big.test/x", 1_100_000),
    ("http://default-size.test/x", 1024 * 1024), ("http://default-size.test/x", 1024 * 1024 + 1),
    "https://secure.test/over/tls?q=1",
]

WORLDS: list[tuple[str, object, list[str]]] = [
    *_k8s_table_worlds(),
    ("conformance_host_rules", lambda: controller_for(cases.HOST_RULES), [r[1] for r in cases.CONFORMANCE_HOSTS]),
    ("conformance_path_rules", lambda: controller_for(cases.PATH_RULES), [r[1] for r in cases.CONFORMANCE_PATHS]),
    ("conformance_default_backend", lambda: controller_for(cases.DEFAULT_BACKEND),
     [r[1] for r in cases.CONFORMANCE_DEFAULT]),
    *[(f"rewrite_{name}", lambda text=text: controller_for(text), [r[2] for r in cases.REWRITES if r[1] is text])
      for name, text in [("A", cases.REWRITE_A), ("B", cases.REWRITE_B), ("C", cases.REWRITE_C),
                         ("D", cases.REWRITE_D), ("E", cases.REWRITE_E), ("F", cases.REWRITE_F),
                         ("G", cases.REWRITE_G), ("H", cases.REWRITE_H)]],
    *[(f"backend_{c[0]}", lambda c=c: _backend_world(c[1], c[2]), ["http://b.test/", "http://b.test/x"])
      for c in cases.BACKEND_CASES],
    *[(f"tls_{c[0]}", lambda c=c: _tls_world(c[1]), [c[2], c[2].replace("http://", "https://"), "http://t.test/",
                                                      "http://t.test/dir/"]) for c in cases.TLS_CASES],
    ("nginx_details_shop", _shop_details, [c[1] for c in cases.NGINX_DETAILS]),
    *_examples(),
    *[(name, lambda text=text: controller_for(text), urls) for name, (text, urls) in PRECEDENCE.items()],
    ("annotations_source_range_body_size_protocol", lambda: controller_for(ANNOTATED, missing=("gone",)),
     ANNOTATED_REQUESTS),
    # a location without endpoints answers 503, but nginx's 301 to `/foo/` comes first
    ("no_endpoints_auto_redirect_comes_first", lambda: controller_for(
        ingress("g", [{"host": "g.test", "paths": [("Prefix", "/foo/", "gone"), ("Exact", "/bar/", "gone")]}]),
        missing=("gone",)), ["http://g.test/foo", "http://g.test/foo/x", "http://g.test/bar", "http://g.test/bar/"]),
]


@pytest.mark.parametrize("build,urls", [w[1:] for w in WORLDS], ids=[w[0] for w in WORLDS])
def test_trace_and_nginx_agree(build, urls):
    controller = build()
    with RunningNginx(controller) as nginx:
        disagreements = []
        for request in urls:
            url, body_size = request if isinstance(request, tuple) else (request, 0)
            expected = controller.route(url, client=CLIENT_ADDRESS, body_size=body_size)
            got = nginx.fetch(url, method="POST", body=b"x" * body_size) if body_size else nginx.fetch(url)
            echo = got.echo
            route = expected.route_entry
            sim = {"status": expected.status,
                   "backend": route.upstream if expected.status == 200 and route is not None else None,
                   "upstream_path": expected.upstream_path if expected.status == 200 else None,
                   "location": expected.redirect if expected.status in (301, 302, 307, 308) else None}
            real = {"status": got.status,
                    "backend": nginx.echo.names_by_port.get(echo["port"]) if echo else None,
                    "upstream_path": echo["path"] if echo else None,
                    "location": got.headers.get("location") if got.status in (301, 302, 307, 308) else None}
            if sim != real:
                disagreements.append(f"{url} (body {body_size} bytes)\n  trace: {sim}\n  nginx: {real}\n  why:   "
                                     + "\n         ".join(expected.explanation))
        assert not disagreements, "\n".join(disagreements)


# ---------------------------------------------------------------- what nginx adds on the way


def test_proxy_headers_are_ingress_nginx_s():
    controller = controller_for(ingress("h", [{"host": "h.test", "paths": [("Prefix", "/", "svc")]}]))
    with RunningNginx(controller) as nginx:
        plain = nginx.fetch("http://h.test:8080/a", headers={"X-Forwarded-For": "203.0.113.9"}).echo
        secure = nginx.fetch("https://h.test/b").echo
    assert plain["headers"]["host"] == "h.test:8080"              # $best_http_host: as the client sent it
    assert plain["headers"]["x-forwarded-host"] == "h.test:8080"
    assert plain["headers"]["x-real-ip"] == CLIENT_ADDRESS
    assert plain["headers"]["x-forwarded-for"] == CLIENT_ADDRESS   # use-forwarded-headers off: not trusted
    assert plain["headers"]["x-original-forwarded-for"] == "203.0.113.9"
    assert plain["headers"]["x-forwarded-proto"] == plain["headers"]["x-scheme"] == "http"
    assert secure["headers"]["x-forwarded-proto"] == "https"
    assert secure["headers"]["x-forwarded-port"] == "443"          # the HTTPS listener counts as 443
    assert plain["headers"]["x-request-id"]


def test_x_forwarded_prefix_is_added_to_the_other_headers():
    controller = controller_for(ingress("p", [{"host": "p.test", "paths": [("ImplementationSpecific", "/app(/|$)(.*)",
                                                                            "svc")]}],
                                        annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/$2",
                                                     "nginx.ingress.kubernetes.io/x-forwarded-prefix": "/app"}))
    with RunningNginx(controller) as nginx:
        echo = nginx.fetch("http://p.test/app/x").echo
    assert (echo["path"], echo["headers"]["x-forwarded-prefix"]) == ("/x", "/app")
    assert echo["headers"]["x-real-ip"] == CLIENT_ADDRESS and echo["headers"]["host"] == "p.test"


def test_grpc_backends_render_as_grpc_pass(tmp_path):
    controller = controller_for(ingress("g", [{"host": "g.test", "paths": [("Prefix", "/", "svc")]}],
                                        annotations={"nginx.ingress.kubernetes.io/backend-protocol": "grpcs"}))
    options = nginxconf.NginxOptions(runtime_dir=tmp_path, default_certificate=certificates.default_certificate(tmp_path))
    text = nginxconf.render(controller, nginxconf.endpoint_upstreams(controller), options)
    assert 'set $proxy_upstream_name "default-svc-8080";' in text and "grpc_pass grpcs://upstream_balancer;" in text
    assert nginxconf.validate(text) is None


def test_health_endpoints():
    with RunningNginx(controller_for(cases.DEFAULT_BACKEND)) as nginx:
        assert nginx.request("http", nginx.options.health_listen, "", "/healthz").status == 200
        assert nginx.fetch("http://anything/healthz").status == 200
        assert nginx.fetch("http://anything/nginx_status").status == 403  # from outside (127.0.0.2)


# ---------------------------------------------------------------- TLS by SNI


def _self_signed(tmp: Path, host: str) -> tuple[str, str]:
    crt, key = tmp / f"{host}.crt", tmp / f"{host}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", f"/CN={host}", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return base64.b64encode(crt.read_bytes()).decode(), base64.b64encode(key.read_bytes()).decode()


def _tls_secret(name: str, crt: str, key: str | None) -> str:
    """A kubernetes.io/tls Secret; without a key an Opaque one (the API server requires tls.key)."""
    data = f'tls.crt: "{crt}"' + (f', tls.key: "{key}"' if key else "")
    kind = "kubernetes.io/tls" if key else "Opaque"
    return (f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\n"
            f"type: {kind}\ndata: {{{data}}}")


def test_certificates_by_sni_and_the_default_certificate(tmp_path):
    one, two = _self_signed(tmp_path, "one.test"), _self_signed(tmp_path, "two.test")
    wild = _self_signed(tmp_path, "*.wild.test")
    text = docs(
        ingress("wild", [{"host": "*.wild.test", "paths": [("Prefix", "/", "svc")]}],
                tls=[{"hosts": ["*.wild.test"], "secretName": "wild-tls"}]),
        ingress("under-wild", [{"host": "exact.wild.test", "paths": [("Prefix", "/", "svc")]}]),
        ingress("one", [{"host": "one.test", "paths": [("Prefix", "/", "svc")]}],
                tls=[{"hosts": ["one.test"], "secretName": "one-tls"}]),
        ingress("two", [{"host": "two.test", "paths": [("Prefix", "/", "svc")]}],
                tls=[{"hosts": ["two.test"], "secretName": "two-tls"}]),
        ingress("keyless", [{"host": "keyless.test", "paths": [("Prefix", "/", "svc")]}],
                tls=[{"hosts": ["keyless.test"], "secretName": "keyless-tls"}]),
        ingress("missing", [{"host": "missing.test", "paths": [("Prefix", "/", "svc")]}],
                tls=[{"hosts": ["missing.test"], "secretName": "nowhere"}]))
    controller = IngressController(cluster_of(world(text, ["svc"], extra=docs(
        _tls_secret("one-tls", *one), _tls_secret("two-tls", *two), _tls_secret("keyless-tls", one[0], None),
        _tls_secret("wild-tls", *wild)))))
    found = certificates.secret_certificates(controller, tmp_path / "pem")
    assert sorted(found.files) == ["default/one-tls", "default/two-tls", "default/wild-tls"]
    assert found.problems == ["Secret default/keyless-tls: no tls.key: the default certificate is served",
                              "Secret default/nowhere does not exist: the default certificate is served"]
    with RunningNginx(controller, certificate_files=found.files) as nginx:
        assert nginx.peer_certificate_subject("one.test") == "subject=CN = one.test"
        assert nginx.peer_certificate_subject("two.test") == "subject=CN = two.test"
        assert nginx.peer_certificate_subject("a.wild.test") == "subject=CN = *.wild.test"  # SNI matches the regex
        # a host with a server of its own but no certificate: its *.parent's, as certificate.lua
        assert nginx.peer_certificate_subject("exact.wild.test") == "subject=CN = *.wild.test"
        fake = "subject=O = Acme Co, CN = Kubernetes Ingress Controller Fake Certificate"
        assert nginx.peer_certificate_subject("keyless.test") == fake
        assert nginx.peer_certificate_subject("unknown.test") == fake
        assert nginx.peer_certificate_subject(None) == fake
        assert nginx.fetch("https://two.test/x").echo["path"] == "/x"


def test_reloads_under_load_fail_no_request():
    """Routes and endpoints change while a client sends requests: every request is answered by
    a backend, and each new config serves once nginx has reloaded (SIGHUP, graceful)."""
    def controller(step: int) -> IngressController:
        return controller_for(docs(
            ingress("steady", [{"host": "steady.test", "paths": [("Prefix", "/", "steady")]}]),
            *[ingress(f"new-{i}", [{"host": f"new-{i}.test", "paths": [("Prefix", "/", f"backend-{i}")]}])
              for i in range(step)]))

    with RunningNginx(controller(0), worker_processes="2") as nginx:
        outcomes: list[str] = []
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                try:
                    echo = nginx.fetch("http://steady.test/x").echo
                    outcomes.append("ok" if echo and echo["path"] == "/x" else "wrong answer")
                except OSError as exc:
                    outcomes.append(repr(exc))

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        try:
            for step in range(1, 6):
                nginx.reload(controller(step))
                deadline = time.monotonic() + DEADLINE  # a reload that must take effect: the harness's bound
                while (got := nginx.fetch(f"http://new-{step - 1}.test/")).echo is None:
                    assert time.monotonic() < deadline, f"step {step}: still {got.status}"
                    time.sleep(0.01)
                assert nginx.echo.names_by_port[got.echo["port"]] == f"default-backend-{step - 1}-8080"
        finally:
            stop.set()
            thread.join(timeout=20)
    assert outcomes and set(outcomes) == {"ok"}, sorted(set(outcomes))


def _worker_pids(nginx: RunningNginx) -> set[str]:
    done = subprocess.run(["pgrep", "-P", str(nginx.process.pid)], capture_output=True, text=True)
    return set(done.stdout.split())


def test_endpoint_changes_reach_nginx_without_a_reload():
    """The endpoints are not in nginx.conf: the Lua balancer takes each posted document at the
    next request — a backend without endpoints turns 503 and back, a second endpoint shares the
    requests (round robin) — and nginx's workers are the same processes throughout."""
    with_endpoints = controller_for(ingress("e", [{"host": "e.test", "paths": [("Prefix", "/", "svc")]}]))
    without = controller_for(ingress("e", [{"host": "e.test", "paths": [("Prefix", "/", "svc")]}]), missing=("svc",))
    upstream = "default-svc-8080"
    assert nginxconf.endpoint_upstreams(without)[upstream] == ()
    with RunningNginx(with_endpoints) as nginx:
        assert nginx.render(without) == nginx.render(with_endpoints)  # nothing to reload for
        workers = _worker_pids(nginx)
        first, second = nginx.echo.address(upstream), nginx.echo.address("second endpoint")
        listen = nginx.options.configuration_listen
        assert nginx.fetch("http://e.test/a").echo["port"] == int(first.rsplit(":", 1)[1])

        balancer.post(listen, balancer.document({upstream: ()}))
        assert nginx.fetch("http://e.test/a").status == 503
        balancer.post(listen, balancer.document({upstream: (second,)}))
        assert nginx.echo.names_by_port[nginx.fetch("http://e.test/a").echo["port"]] == "second endpoint"
        balancer.post(listen, balancer.document({upstream: (first, second)}))
        answered = {nginx.fetch("http://e.test/a").echo["port"] for _ in range(4)}
        assert answered == {int(first.rsplit(":", 1)[1]), int(second.rsplit(":", 1)[1])}
        assert _worker_pids(nginx) == workers


def test_an_endpoint_that_refuses_is_skipped():
    """A pod gone before the controller's next post: nginx tries the next endpoint (balancer.lua's
    one more try per attempt, proxy_next_upstream error), the client sees no failure."""
    controller = controller_for(ingress("e", [{"host": "e.test", "paths": [("Prefix", "/", "svc")]}]))
    upstream = "default-svc-8080"
    with RunningNginx(controller) as nginx:
        alive = nginx.echo.address(upstream)
        with socket.socket() as closed:  # a port nobody listens on
            closed.bind(("127.0.0.1", 0))
            gone = f"127.0.0.1:{closed.getsockname()[1]}"
            balancer.post(nginx.options.configuration_listen, balancer.document({upstream: (gone, alive)}))
            statuses = [nginx.fetch("http://e.test/a").status for _ in range(4)]
    assert statuses == [200] * 4


def test_a_certificate_that_does_not_match_its_key_is_refused(tmp_path):
    one, two = _self_signed(tmp_path, "one.test"), _self_signed(tmp_path, "two.test")
    text = ingress("one", [{"host": "one.test", "paths": [("Prefix", "/", "svc")]}],
                   tls=[{"hosts": ["one.test"], "secretName": "mixed"}])
    controller = IngressController(cluster_of(world(text, ["svc"], extra=_tls_secret("mixed", one[0], two[1]))))
    found = certificates.secret_certificates(controller, tmp_path / "pem")
    assert found.files == {} and "do not load as a certificate and its key" in found.problems[0]


# ---------------------------------------------------------------- validation


def test_validate_accepts_a_rendered_config_and_reports_what_nginx_refuses(tmp_path):
    controller = cases._example(*cases.SHOP)
    options = nginxconf.NginxOptions(runtime_dir=tmp_path, default_certificate=certificates.default_certificate(tmp_path))
    text = nginxconf.render(controller, nginxconf.endpoint_upstreams(controller), options)
    assert nginxconf.validate(text) is None
    assert 'set $proxy_upstream_name "shop-backend-http";' in text and "10.244." not in text  # endpoints: posted
    error = nginxconf.validate(text.replace("proxy_pass http://upstream_balancer;", "proxy_pass http://no-such-upstream;"))
    assert error is not None and "[emerg]" in error and "no-such-upstream" in error


def test_an_invalid_regex_is_left_out_of_the_config(tmp_path):
    controller = controller_for(ingress("bad", [{"host": "bad.test", "paths": [("ImplementationSpecific", "/broken(",
                                                                                "svc")]}],
                                        annotations={"nginx.ingress.kubernetes.io/use-regex": "true"}))
    options = nginxconf.NginxOptions(runtime_dir=tmp_path, default_certificate=certificates.default_certificate(tmp_path))
    text = nginxconf.render(controller, nginxconf.endpoint_upstreams(controller), options)
    assert "# left out: ~* \"^/broken(\" of default/bad: invalid regular expression" in text
    assert nginxconf.validate(text) is None


# ---------------------------------------------------------------- generated worlds

HOSTS = ["a.test", "*.w.test", "x.w.test", ""]
PATHS = ["/", "/a", "/a/", "/a/b", "/ab", "/b/c/", "/a(/|$)(.*)", "/b/[a-z]+", "/.well-known"]
REQUEST_HOSTS = ["a.test", "A.test:8080", "x.w.test", "x.y.w.test", "other.test"]
REQUEST_PATHS = ["/.well-known/x", "/b/cd/e", "/a/b/c?z=1", "/B/ZZ", "/", "/a", "/a/", "/a/b", "/a/b/", "/ab", "/A", "/a//b", "/a/./b", "/%61", "/a?x=1", "/b/c",
                 "/b/c/d?e=f", "/healthz"]
ANNOTATIONS = [{}, {"nginx.ingress.kubernetes.io/rewrite-target": "/"},
               {"nginx.ingress.kubernetes.io/use-regex": "true"},
               {"nginx.ingress.kubernetes.io/ssl-redirect": "false"},
               {"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"},
               {"nginx.ingress.kubernetes.io/app-root": "/a"},
               {"nginx.ingress.kubernetes.io/rewrite-target": "/$2", "nginx.ingress.kubernetes.io/use-regex": "true"},
               {"nginx.ingress.kubernetes.io/rewrite-target": "/x/$1?k=v"},
               {"nginx.ingress.kubernetes.io/rewrite-target": "/new",
                "nginx.ingress.kubernetes.io/preserve-trailing-slash": "true"},
               {"nginx.ingress.kubernetes.io/allowlist-source-range": "10.0.0.0/8"},
               {"nginx.ingress.kubernetes.io/whitelist-source-range": "127.0.0.2/32",
                "nginx.ingress.kubernetes.io/proxy-body-size": "1k"}]

an_ingress = st.fixed_dictionaries({
    "rules": st.lists(st.fixed_dictionaries({
        "host": st.sampled_from(HOSTS),
        "paths": st.lists(st.tuples(st.sampled_from(["Exact", "Prefix", "ImplementationSpecific"]),
                                    st.sampled_from(PATHS), st.sampled_from(["s1", "s2", "s3"])),
                          min_size=1, max_size=3)}), min_size=0, max_size=2),
    "default_backend": st.sampled_from([None, "s4"]),
    "annotations": st.sampled_from(range(len(ANNOTATIONS))),
    "tls": st.booleans(),
})


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(an_ingress, min_size=1, max_size=3))
def test_generated_worlds_agree(specs):
    """Random Ingresses over a few hosts, paths, types and annotations; every request of a grid.
    (Explored with 220 random worlds while writing this: no disagreement.)"""
    texts = []
    for index, spec in enumerate(specs):
        if not spec["rules"] and not spec["default_backend"]:
            spec = {**spec, "default_backend": "s4"}  # the API server requires one of the two
        hosts = sorted({r["host"] for r in spec["rules"] if r["host"]})
        texts.append(ingress(f"ing-{index}", spec["rules"], default_backend=spec["default_backend"],
                             annotations=ANNOTATIONS[spec["annotations"]],
                             tls=[{"hosts": hosts, "secretName": "x"}] if spec["tls"] and hosts else None))
    controller = controller_for(docs(*texts))
    with RunningNginx(controller) as nginx:
        disagreements = []
        for host in REQUEST_HOSTS:
            for path in REQUEST_PATHS:
                for scheme, body in (("http", 0), ("https", 0), ("http", 2000)):
                    url = f"{scheme}://{host}{path}"
                    expected = controller.route(url, client=CLIENT_ADDRESS, body_size=body)
                    got = nginx.fetch(url, method="POST", body=b"x" * body) if body else nginx.fetch(url)
                    sim = (expected.status, expected.route_entry.upstream if expected.status == 200 and
                           expected.route_entry else None, expected.upstream_path if expected.status == 200 else None,
                           expected.redirect if expected.status in (301, 302, 308) else None)
                    echo = got.echo
                    real = (got.status, nginx.echo.names_by_port.get(echo["port"]) if echo else None,
                            echo["path"] if echo else None,
                            got.headers.get("location") if got.status in (301, 302, 308) else None)
                    if sim != real:
                        disagreements.append(f"{url} (body {body}): trace {sim} nginx {real}")
        assert not disagreements, "\n".join([docs(*texts), *disagreements[:20]])


# ---------------------------------------------------------------- golden nginx.conf

GOLDEN_EXAMPLES = {"shop": cases.SHOP, "rewrite": ("seeds/rewrite.yaml",),
                   "minimal-ingress": ("seeds/minimal-ingress.yaml",),
                   "ingress-wear-watch-by-host": ("seeds/ingress-wear-watch-by-host.yaml",),
                   "whale-ingress": ("seeds/whale-ingress.yaml",)}


def test_rendered_configs_match_golden():
    """nginx.conf of bundled examples, as the controller pod would render it: a change shows as a
    diff. Regenerate after an intended change with PODNET_UPDATE_GOLDEN=1."""
    options = nginxconf.NginxOptions(runtime_dir=Path("/run/ingress-nginx"),
                                     default_certificate=Path("/run/ingress-nginx/certs/default-fake-certificate.pem"),
                                     lua_dir=Path("/usr/lib/podnet/lua"))  # not this checkout's path
    produced = ""
    for name, files in GOLDEN_EXAMPLES.items():
        controller = cases._example(*files)
        produced += f"##### examples: {name}\n" + nginxconf.render(controller, nginxconf.endpoint_upstreams(controller),
                                                                   options)
    golden = Path(__file__).resolve().parent / "golden" / "ingress-nginx.conf"
    if os.environ.get("PODNET_UPDATE_GOLDEN"):
        golden.write_text(produced)
    assert produced == golden.read_text()


def test_external_name_backends_need_a_resolver(tmp_path):
    """An ExternalName endpoint is a DNS name: nginx resolves it per request through `resolver`
    (an upstream block would resolve it once, at load, and nginx -t would fail offline)."""
    controller = IngressController(cluster_of(world(docs(
        ingress("b", [{"host": "b.test", "paths": [("Prefix", "/", "ext:443")]}]),
        'apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: default}\n'
        'spec: {type: ExternalName, externalName: api.example.com}'))))
    assert nginxconf.endpoint_upstreams(controller) == {"default-ext-443": ("api.example.com:443",)}
    certificate = certificates.default_certificate(tmp_path)
    resolved = nginxconf.render(controller, nginxconf.endpoint_upstreams(controller), nginxconf.NginxOptions(
        runtime_dir=tmp_path, default_certificate=certificate, resolver="10.96.0.10"))
    assert 'set $podnet_external_upstream "api.example.com:443";' in resolved
    assert "proxy_pass http://$podnet_external_upstream;" in resolved and "resolver 10.96.0.10" in resolved
    assert nginxconf.validate(resolved) is None
    unresolved = nginxconf.render(controller, nginxconf.endpoint_upstreams(controller), nginxconf.NginxOptions(
        runtime_dir=tmp_path, default_certificate=certificate))
    assert "return 503;" in unresolved and nginxconf.validate(unresolved) is None


def test_validation_leaves_out_only_the_lua_plumbing(tmp_path):
    """`nginx -t` runs without lua-nginx-module (which costs an SSL context per location): the
    copy it checks differs from the rendered text only in the module's constant Lua lines."""
    controller = cases._example(*cases.SHOP)
    options = nginxconf.NginxOptions(runtime_dir=tmp_path, default_certificate=certificates.default_certificate(tmp_path))
    text = nginxconf.render(controller, nginxconf.endpoint_upstreams(controller), options)
    checked = nginxconf.without_lua(text)
    assert not [line for line in checked.splitlines() if "lua" in line.split("#")[0]]  # comments aside
    removed = [line.strip() for line in text.splitlines() if line not in checked.splitlines()]
    assert set(removed) <= {*nginxconf._LUA_LINES, nginxconf.LUA_CONFIGURE, nginxconf.LUA_HEALTHZ,
                            f'lua_package_path "{options.lua_dir}/?.lua;;";', "lua_shared_dict podnet_backends 16m;"}
    assert nginxconf.validate(text) is None
    broken = text.replace("proxy_http_version 1.1;", "proxy_http_version 7;")
    assert broken != text and nginxconf.validate(broken) is not None
