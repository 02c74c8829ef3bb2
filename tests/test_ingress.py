"""Ingress routing: the Ingress spec's rules and ingress-nginx's (podnet.semantics.ingress).

Sources of the expected values (each table says which):
- kubernetes.io/docs/concepts/services-networking/ingress/ — the path-type "Examples" table and
  the hostname-wildcard table;
- kubernetes-sigs/ingress-controller-conformance features/{host_rules,path_rules,default_backend}.feature;
- kubernetes/ingress-nginx: docs/user-guide/ingress-path-matching.md, docs/examples/rewrite,
  the e2e tests, and the controller source (location.go, controller.go, template.go,
  internal/k8s/main.go), as summarised in docs/specs/ingress-nginx.md;
- the bundled examples' own comments.

Where ingress-nginx departs from the spec or the conformance suite, the case says so in its name
and asserts what ingress-nginx does (the sim must agree with the real nginx it will render).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from podnet.semantics.ingress import (
    BadRequest,
    IngressController,
    Route,
    RouteResult,
    default_ingress_class,
    host_matches,
    ingress_class_of,
    ingress_order,
    nginx_rewrite,
    normalize_uri,
    path_matches,
    spec_best_match,
)
from tests.conftest import cluster_of

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


# ---------------------------------------------------------------- building clusters

def _echo_pod(namespace: str) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: echo, namespace: {namespace}, labels: {{app: echo}}}}
spec:
  containers:
  - name: echo
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, --http-port=8080]
    ports: [{{name: http, containerPort: 8080}}]
"""


def _service(name: str, namespace: str) -> str:
    # every test Service selects the one echo pod; port "http" 8080, "web" 80, "alt" 4200
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: echo}}
  ports:
  - {{name: http, port: 8080, targetPort: 8080}}
  - {{name: web, port: 80, targetPort: 8080}}
  - {{name: alt, port: 4200, targetPort: 8080}}
"""


NGINX_CLASS = """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: nginx
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec: {controller: k8s.io/ingress-nginx}
"""


def world(ingresses: str, services: list[str] | tuple[str, ...] = (), namespace: str = "default",
          classes: str = NGINX_CLASS, extra: str = "") -> str:
    docs = [classes, _echo_pod(namespace)] if classes else [_echo_pod(namespace)]
    docs += [_service(name, namespace) for name in services]
    docs += [textwrap.dedent(ingresses), extra]
    return "\n---\n".join(d.strip("\n") for d in docs if d.strip())


def services_of(text: str) -> list[str]:
    """Every backend Service named by `ingress()` documents (so tests list their backends once)."""
    return sorted(set(re.findall(r'"service": \{"name": "([a-z0-9-]+)"', text)))


def controller_for(ingresses: str, missing: tuple[str, ...] = (), **kwargs) -> IngressController:
    names = [n for n in services_of(ingresses) if n not in missing]
    return IngressController(cluster_of(world(ingresses, names)), **kwargs)


def ingress(name: str, rules: list[dict] | None = None, default_backend: str | None = None,
            annotations: dict | None = None, tls: list[dict] | None = None, namespace: str = "default",
            created: str | None = None, spec_extra: dict | None = None) -> str:
    """An Ingress as YAML (flow style keeps the tables short). rules: {host, paths: [(type, path, svc)]}."""
    import json
    meta: dict = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = annotations
    if created:
        meta["creationTimestamp"] = created
    spec: dict = dict(spec_extra or {})
    if default_backend:
        spec["defaultBackend"] = {"service": _backend(default_backend)}
    if rules is not None:
        spec["rules"] = []
        for rule in rules:
            entry: dict = {}
            if rule.get("host"):
                entry["host"] = rule["host"]
            if rule.get("paths") is not None:
                entry["http"] = {"paths": [
                    {"path": p, "pathType": t, "backend": {"service": _backend(s)}} for t, p, s in rule["paths"]]}
            spec["rules"].append(entry)
    if tls is not None:
        spec["tls"] = tls
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}
    return json.dumps(body)


def _backend(ref: str) -> dict:
    name, _, port = ref.partition(":")
    port = port or "8080"
    return {"name": name, "port": {"number": int(port)} if port.isdigit() else {"name": port}}


def docs(*parts: str) -> str:
    return "\n---\n".join(parts)


# ================================================================ 1. Kubernetes docs: path types, Examples table

# kubernetes.io/docs/concepts/services-networking/ingress/#examples, every row. Multi-request
# rows are split per request. `winner` is the index of the path that serves the request.
K8S_TABLE = [
    # (case, paths, request, matches, winner)
    ("prefix_root_matches_every_path_root", [("Prefix", "/")], "/", True, 0),
    ("prefix_root_matches_every_path_deep", [("Prefix", "/")], "/aaa/bbb/ccc", True, 0),
    ("exact_foo_matches_foo", [("Exact", "/foo")], "/foo", True, 0),
    ("exact_foo_does_not_match_bar", [("Exact", "/foo")], "/bar", False, None),
    ("exact_foo_does_not_match_foo_slash", [("Exact", "/foo")], "/foo/", False, None),
    ("exact_foo_slash_does_not_match_foo", [("Exact", "/foo/")], "/foo", False, None),
    ("prefix_foo_matches_foo", [("Prefix", "/foo")], "/foo", True, 0),
    ("prefix_foo_matches_foo_slash", [("Prefix", "/foo")], "/foo/", True, 0),
    ("prefix_foo_slash_matches_foo", [("Prefix", "/foo/")], "/foo", True, 0),
    ("prefix_foo_slash_matches_foo_slash", [("Prefix", "/foo/")], "/foo/", True, 0),
    ("prefix_aaa_bb_does_not_match_aaa_bbb", [("Prefix", "/aaa/bb")], "/aaa/bbb", False, None),
    ("prefix_aaa_bbb_matches_aaa_bbb", [("Prefix", "/aaa/bbb")], "/aaa/bbb", True, 0),
    ("prefix_ignores_trailing_slash_of_path", [("Prefix", "/aaa/bbb/")], "/aaa/bbb", True, 0),
    ("prefix_matches_trailing_slash_of_request", [("Prefix", "/aaa/bbb")], "/aaa/bbb/", True, 0),
    ("prefix_matches_subpath", [("Prefix", "/aaa/bbb")], "/aaa/bbb/ccc", True, 0),
    ("prefix_does_not_match_string_prefix", [("Prefix", "/aaa/bbb")], "/aaa/bbbxyz", False, None),
    ("multiple_prefixes_longest_aaa_wins", [("Prefix", "/"), ("Prefix", "/aaa")], "/aaa/ccc", True, 1),
    ("multiple_prefixes_longest_aaa_bbb_wins", [("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")],
     "/aaa/bbb", True, 2),
    ("multiple_prefixes_root_catches_the_rest", [("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")],
     "/ccc", True, 0),
    ("prefix_aaa_does_not_match_ccc_default_backend", [("Prefix", "/aaa")], "/ccc", False, None),
    ("mixed_exact_preferred_over_prefix", [("Prefix", "/foo"), ("Exact", "/foo")], "/foo", True, 1),
]


@pytest.mark.parametrize("paths,request_path,matches,winner",
                         [row[1:] for row in K8S_TABLE], ids=[row[0] for row in K8S_TABLE])
def test_spec_path_matching_table(paths, request_path, matches, winner):
    assert (spec_best_match(paths, request_path) is not None) is matches
    assert spec_best_match(paths, request_path) == winner
    if len(paths) == 1:
        assert path_matches(paths[0][0], paths[0][1], request_path) is matches


# The same table through ingress-nginx. "direct": the winner serves it; "404": the default
# backend; "301": nginx's auto-redirect to the path with a trailing slash (the location is
# `/foo/` or `= /foo/` and nginx redirects `/foo` to it), after which the winner serves it.
# ingress-nginx differs from the spec on one row: Exact /foo/ is reached from /foo by that 301.
NGINX_OUTCOME = {
    "exact_foo_slash_does_not_match_foo": ("301", 0),   # spec: no match; nginx: 301 to /foo/
    "prefix_foo_slash_matches_foo": ("301", 0),
    "prefix_ignores_trailing_slash_of_path": ("301", 0),
}


@pytest.mark.parametrize("case,paths,request_path,matches,winner", K8S_TABLE, ids=[row[0] for row in K8S_TABLE])
def test_nginx_path_matching_table(case, paths, request_path, matches, winner):
    outcome, nginx_winner = NGINX_OUTCOME.get(case, ("direct" if matches else "404", winner))
    services = [f"svc-{i}" for i in range(len(paths))]
    text = ingress("table", [{"host": "table.test", "paths": [(t, p, s) for (t, p), s in zip(paths, services)]}])
    result = IngressController(cluster_of(world(text, services))).route(f"http://table.test{request_path}")
    if outcome == "404":
        assert (result.status, result.matched, result.backend) == (404, False, None)
    elif outcome == "301":
        assert result.status == 301 and result.matched
        assert result.redirect == f"http://table.test{request_path}/"
        assert result.backend == f"svc-{nginx_winner}:8080"
    else:
        assert (result.status, result.matched) == (200, True)
        assert result.backend == f"svc-{nginx_winner}:8080"
        assert (result.path_type, result.path) == paths[nginx_winner]
        assert result.upstream_path == request_path


# ================================================================ 2. Kubernetes docs: hostname wildcards

HOST_TABLE = [
    ("wildcard_matches_one_label", "*.foo.com", "bar.foo.com", True),
    ("wildcard_does_not_match_two_labels", "*.foo.com", "baz.baz.foo.com", False),
    ("wildcard_does_not_match_no_label", "*.foo.com", "foo.com", False),
    ("exact_host_matches", "foo.com", "foo.com", True),
    ("exact_host_does_not_match_subdomain", "foo.com", "bar.foo.com", False),
    ("empty_host_matches_any_host", "", "anything.example", True),
    ("host_match_is_case_insensitive", "foo.com", "FOO.com", True),
    ("host_port_is_ignored", "foo.com", "foo.com:8080", True),
]


@pytest.mark.parametrize("rule_host,request_host,expected", [r[1:] for r in HOST_TABLE], ids=[r[0] for r in HOST_TABLE])
def test_spec_host_matching_table(rule_host, request_host, expected):
    assert host_matches(rule_host, request_host) is expected


# ================================================================ 3. ingress-controller-conformance

HOST_RULES = docs(ingress("host-rules", [
    {"host": "*.foo.com", "paths": [("Prefix", "/", "wildcard-foo-com")]},
    {"host": "foo.bar.com", "paths": [("Prefix", "/", "foo-bar-com:http")]},
], tls=[{"hosts": ["foo.bar.com"], "secretName": "conformance-tls"}]))

# features/host_rules.feature. ingress-nginx redirects plain HTTP (308) for every host of an
# Ingress with a tls section (the hosts not listed get the default certificate), where the suite
# expects 200 over http: those rows assert the redirect, and the https request after it.
CONFORMANCE_HOSTS = [
    ("host_rule_sends_tls_traffic_to_backend", "https://foo.bar.com", 200, "foo-bar-com:http"),
    ("host_rule_http_is_redirected_to_https_by_ingress_nginx", "http://foo.bar.com", 308, "foo-bar-com:http"),
    ("host_rule_does_not_match_other_subdomain", "http://subdomain.bar.com", 404, None),
    ("wildcard_host_rule_matches_shared_suffix", "https://bar.foo.com", 200, "wildcard-foo-com:8080"),
    ("wildcard_host_http_is_redirected_to_https_by_ingress_nginx", "http://bar.foo.com", 308,
     "wildcard-foo-com:8080"),
    ("wildcard_host_rule_does_not_match_two_labels", "http://baz.bar.foo.com", 404, None),
    ("wildcard_host_rule_does_not_match_no_label", "http://foo.com", 404, None),
]


@pytest.mark.parametrize("url,status,backend", [r[1:] for r in CONFORMANCE_HOSTS],
                         ids=[r[0] for r in CONFORMANCE_HOSTS])
def test_conformance_host_rules(url, status, backend):
    result = controller_for(HOST_RULES).route(url)
    assert (result.status, result.backend) == (status, backend)
    if status == 308:  # lua_ingress.lua drops the trailing slash of the redirect (preserve-trailing-slash)
        assert result.redirect == url.replace("http://", "https://")


PATH_RULES = docs(ingress("path-rules", [
    {"host": "exact-path-rules", "paths": [("Exact", "/foo", "foo-exact")]},
    {"host": "prefix-path-rules", "paths": [("Prefix", "/foo", "foo-prefix"), ("Prefix", "/aaa/bbb",
                                                                                 "aaa-slash-bbb-prefix"),
                                            ("Prefix", "/aaa", "aaa-prefix")]},
    {"host": "mixed-path-rules", "paths": [("Prefix", "/foo", "foo-prefix"), ("Exact", "/foo", "foo-exact")]},
    {"host": "trailing-slash-path-rules", "paths": [("Prefix", "/aaa/bbb/", "aaa-slash-bbb-slash-prefix"),
                                                    ("Exact", "/foo/", "foo-slash-exact")]},
]))

# features/path_rules.feature, every scenario: (url, status, service, request path at the backend).
# Two scenarios meet nginx's trailing-slash auto-redirect (301) instead of the suite's answer.
CONFORMANCE_PATHS = [
    ("exact_matches_request", "http://exact-path-rules/foo", 200, "foo-exact", "/foo"),
    ("exact_does_not_match_trailing_slash", "http://exact-path-rules/foo/", 404, None, None),
    ("exact_is_case_sensitive", "http://exact-path-rules/FOO", 404, None, None),
    ("exact_does_not_match_other_label", "http://exact-path-rules/bar", 404, None, None),
    ("prefix_matches_request", "http://prefix-path-rules/foo", 200, "foo-prefix", "/foo"),
    ("prefix_ignores_request_trailing_slash", "http://prefix-path-rules/foo/", 200, "foo-prefix", "/foo/"),
    ("prefix_is_case_sensitive", "http://prefix-path-rules/FOO", 404, None, None),
    ("prefix_longest_path_multiple_labels", "http://prefix-path-rules/aaa/bbb", 200, "aaa-slash-bbb-prefix",
     "/aaa/bbb"),
    ("prefix_longest_path_subpath", "http://prefix-path-rules/aaa/bbb/ccc", 200, "aaa-slash-bbb-prefix",
     "/aaa/bbb/ccc"),
    ("prefix_matches_shorter_prefix", "http://prefix-path-rules/aaa/ccc", 200, "aaa-prefix", "/aaa/ccc"),
    ("prefix_matches_each_label_not_string_prefix", "http://prefix-path-rules/aaaccc", 404, None, None),
    ("mixed_prefers_exact", "http://mixed-path-rules/foo", 200, "foo-exact", "/foo"),
    ("prefix_with_trailing_slash_redirects_without_it_in_ingress_nginx", "http://trailing-slash-path-rules/aaa/bbb",
     301, "aaa-slash-bbb-slash-prefix", "/aaa/bbb/"),
    ("prefix_with_trailing_slash_matches_with_it", "http://trailing-slash-path-rules/aaa/bbb/", 200,
     "aaa-slash-bbb-slash-prefix", "/aaa/bbb/"),
    ("exact_with_trailing_slash_redirects_without_it_in_ingress_nginx", "http://trailing-slash-path-rules/foo",
     301, "foo-slash-exact", "/foo/"),
]


@pytest.mark.parametrize("url,status,service,upstream", [r[1:] for r in CONFORMANCE_PATHS],
                         ids=[r[0] for r in CONFORMANCE_PATHS])
def test_conformance_path_rules(url, status, service, upstream):
    result = controller_for(PATH_RULES).route(url)
    assert result.status == status
    assert result.backend == (f"{service}:8080" if service else None)
    assert result.upstream_path == upstream


DEFAULT_BACKEND = ingress("default-backend", default_backend="echo-service")

# features/default_backend.feature, every example row (method does not change routing).
CONFORMANCE_DEFAULT = [
    ("default_backend_get_my_host_root", "http://my-host/", "/"),
    ("default_backend_get_my_host_sub_path", "http://my-host/sub-path", "/sub-path"),
    ("default_backend_post_some_host_root", "http://some-host/", "/"),
    ("default_backend_put_no_host", "http:///resource", "/resource"),
    ("default_backend_delete_some_host", "http://some-host/resource", "/resource"),
    ("default_backend_patch_my_host", "http://my-host/resource", "/resource"),
]


@pytest.mark.parametrize("url,upstream", [r[1:] for r in CONFORMANCE_DEFAULT], ids=[r[0] for r in CONFORMANCE_DEFAULT])
def test_conformance_default_backend(url, upstream):
    result = controller_for(DEFAULT_BACKEND).route(url)
    assert (result.status, result.matched, result.ingress) == (200, True, "default/default-backend")
    assert (result.backend, result.upstream_path, result.path) == ("echo-service:8080", upstream, None)
    assert result.served_by == "default-backend"


# ================================================================ 4. rewrite-target and use-regex

def _rewrite_world(*ingresses: str) -> IngressController:
    return controller_for(docs(*ingresses))


REWRITE_A = ingress("rewrite", [{"host": "rewrite.bar.com", "paths": [
    ("ImplementationSpecific", "/something(/|$)(.*)", "http-svc:80")]}],
    annotations={"nginx.ingress.kubernetes.io/use-regex": "true",
                 "nginx.ingress.kubernetes.io/rewrite-target": "/$2"})
REWRITE_B = ingress("api", [{"host": "api.test", "paths": [("ImplementationSpecific", "/api(/|$)(.*)", "api:80")]}],
                    annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/$2"})
REWRITE_C = ingress("custom", [{"host": "c.test", "paths": [("ImplementationSpecific", "/foo/bar/(.+)", "echo:80")]}],
                    annotations={"nginx.ingress.kubernetes.io/use-regex": "true",
                                 "nginx.ingress.kubernetes.io/rewrite-target": "/new/backend/$1"})
REWRITE_D = ingress("simple-fanout-example", [{"host": "foo.bar.com", "paths": [
    ("ImplementationSpecific", "/foo", "service1:4200"), ("ImplementationSpecific", "/bar", "service2:8080")]}],
    annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/"})
REWRITE_E = docs(
    ingress("acme", [{"host": "e.test", "paths": [("ImplementationSpecific", "/.well-known/acme/challenge",
                                                   "acme:80")]}]),
    ingress("root-rewrite", [{"host": "e.test", "paths": [("ImplementationSpecific", "/", "echo:80")]}],
            annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/new/backend"}))
REWRITE_F = docs(
    ingress("plain", [{"host": "f.test", "paths": [("ImplementationSpecific", "/foo/bar/bar", "plain:80")]}]),
    ingress("regex", [{"host": "f.test", "paths": [("ImplementationSpecific", "/foo/bar/[a-z]{3}", "regex:80")]}],
            annotations={"nginx.ingress.kubernetes.io/use-regex": "true",
                         "nginx.ingress.kubernetes.io/rewrite-target": "/new/backend"}))
REWRITE_G = docs(
    ingress("plain", [{"host": "g.test", "paths": [("ImplementationSpecific", "/foo", "plain:80")]}]),
    ingress("regex", [{"host": "g.test", "paths": [("ImplementationSpecific", "/foo.+", "regex:80")]}],
            annotations={"nginx.ingress.kubernetes.io/use-regex": "true",
                         "nginx.ingress.kubernetes.io/rewrite-target": "/new/backend"}))
REWRITE_H = docs(
    ingress("test-ingress-1", [{"host": "test.com", "paths": [
        ("ImplementationSpecific", "/foo/bar", "service1:80"),
        ("ImplementationSpecific", "/foo/bar/", "service2:80")]}]),
    ingress("test-ingress-2", [{"host": "test.com", "paths": [("ImplementationSpecific", "/foo/bar/(.+)",
                                                              "service3:80")]}],
            annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/$1"}))

# docs/specs/ingress-nginx.md §4, every row of examples A–H: (world, url, backend, upstream path).
REWRITES = [
    ("capture_group_something_alone_is_root", REWRITE_A, "http://rewrite.bar.com/something", "http-svc:80", "/"),
    ("capture_group_something_slash_is_root", REWRITE_A, "http://rewrite.bar.com/something/", "http-svc:80", "/"),
    ("capture_group_keeps_rest", REWRITE_A, "http://rewrite.bar.com/something/new", "http-svc:80", "/new"),
    ("capture_group_keeps_query", REWRITE_A, "http://rewrite.bar.com/something/new/deep?x=1", "http-svc:80",
     "/new/deep?x=1"),
    ("regex_is_case_insensitive", REWRITE_A, "http://rewrite.bar.com/SOMETHING/new", "http-svc:80", "/new"),
    ("capture_group_regex_does_not_match_longer_word", REWRITE_A, "http://rewrite.bar.com/somethingelse", None, None),
    ("regex_is_anchored_at_start", REWRITE_A, "http://rewrite.bar.com/x/something/new", None, None),
    ("api_prefix_stripped_bare", REWRITE_B, "http://api.test/api", "api:80", "/"),
    ("api_prefix_stripped_slash", REWRITE_B, "http://api.test/api/", "api:80", "/"),
    ("api_prefix_stripped_deep", REWRITE_B, "http://api.test/api/v1/users", "api:80", "/v1/users"),
    ("api_prefix_stripped_query_kept", REWRITE_B, "http://api.test/api/v1/users?page=2", "api:80",
     "/v1/users?page=2"),
    ("api_prefix_does_not_match_apiv2", REWRITE_B, "http://api.test/apiv2", None, None),
    ("custom_prefix_one_group", REWRITE_C, "http://c.test/foo/bar/bar", "echo:80", "/new/backend/bar"),
    ("custom_prefix_group_spans_slashes", REWRITE_C, "http://c.test/foo/bar/a/b", "echo:80", "/new/backend/a/b"),
    ("custom_prefix_plus_needs_one_char", REWRITE_C, "http://c.test/foo/bar/", None, None),
    ("rewrite_to_root_replaces_whole_uri", REWRITE_D, "http://foo.bar.com/foo", "service1:4200", "/"),
    ("rewrite_to_root_case_insensitive", REWRITE_D, "http://foo.bar.com/FOO", "service1:4200", "/"),
    ("rewrite_to_root_drops_remainder", REWRITE_D, "http://foo.bar.com/foo/abc", "service1:4200", "/"),
    ("rewrite_fanout_second_path", REWRITE_D, "http://foo.bar.com/bar", "service2:8080", "/"),
    ("rewrite_on_root_does_not_hijack_longer_path", REWRITE_E, "http://e.test/.well-known/acme/challenge", "acme:80",
     "/.well-known/acme/challenge"),
    ("rewrite_on_root_applies_to_the_rest", REWRITE_E, "http://e.test/anything", "echo:80", "/new/backend"),
    ("longest_regex_string_wins_not_longest_match", REWRITE_F, "http://f.test/foo/bar/bar", "regex:80",
     "/new/backend"),
    ("longest_regex_string_wins_case_insensitive", REWRITE_F, "http://f.test/foo/bar/BAR", "regex:80",
     "/new/backend"),
    ("regex_mode_turns_plain_path_into_regex_exact_text", REWRITE_G, "http://g.test/foo", "plain:80", "/foo"),
    ("regex_mode_longer_regex_first", REWRITE_G, "http://g.test/foo/bar", "regex:80", "/new/backend"),
    ("path_matching_guide_service3_rewritten", REWRITE_H, "http://test.com/foo/bar/1", "service3:80", "/1"),
    ("path_matching_guide_service2", REWRITE_H, "http://test.com/foo/bar/", "service2:80", "/foo/bar/"),
    ("path_matching_guide_service1", REWRITE_H, "http://test.com/foo/bar", "service1:80", "/foo/bar"),
]


@pytest.mark.parametrize("text,url,backend,upstream", [r[1:] for r in REWRITES], ids=[r[0] for r in REWRITES])
def test_rewrite_and_regex_examples(text, url, backend, upstream):
    result = _rewrite_world(text).route(url)
    assert result.backend == backend
    assert result.upstream_path == upstream
    assert result.status == (200 if backend else 404)


def test_path_matching_guide_location_order():
    """ingress-path-matching.md: `^/foo/bar/.+` (here `(.+)`), then `^/foo/bar/`, then `^/foo/bar`."""
    server = next(s for s in _rewrite_world(REWRITE_H).servers() if s.host == "test.com")
    assert server.regex
    order = [r.location_path for r in server.routes]
    assert order[0] == "/foo/bar/(.+)"
    assert order.index("/foo/bar/") < order.index("/foo/bar") < order.index("/")
    assert all(r.modifier == "~*" for r in server.routes)


def test_use_regex_alone_matches_regex_without_rewrite():
    text = ingress("re", [{"host": "re.test", "paths": [("ImplementationSpecific", "/foo/.*", "echo:80")]}],
                   annotations={"nginx.ingress.kubernetes.io/use-regex": "true"})
    controller = controller_for(text)
    assert controller.route("http://re.test/foo/x/y").upstream_path == "/foo/x/y"  # no rewrite: unchanged
    assert controller.route("http://re.test/FOO/x").backend == "echo:80"
    assert controller.route("http://re.test/foo").status == 404


def test_regex_mode_makes_exact_a_case_insensitive_prefix():
    """buildLocation: with enforceRegex every location, Exact too, is `~* "^path"`."""
    text = docs(ingress("exact", [{"host": "x.test", "paths": [("Exact", "/exact", "exact:80")]}]),
                ingress("regex", [{"host": "x.test", "paths": [("ImplementationSpecific", "/r.*", "regex:80")]}],
                        annotations={"nginx.ingress.kubernetes.io/use-regex": "true"}))
    result = controller_for(text).route("http://x.test/EXACTLY/more")
    assert (result.backend, result.location) == ("exact:80", '~* "^/exact"')


def test_rewrite_target_equal_to_path_is_no_rewrite_and_no_regex():
    text = ingress("same", [{"host": "s.test", "paths": [("Prefix", "/", "echo:80")]}],
                   annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/"})
    controller = controller_for(text)
    assert not next(s for s in controller.servers() if s.host == "s.test").regex
    assert controller.route("http://s.test/a/b?q=1").upstream_path == "/a/b?q=1"


def test_regex_is_per_host_not_per_controller():
    text = docs(ingress("regex", [{"host": "r.test", "paths": [("ImplementationSpecific", "/a", "echo:80")]}],
                        annotations={"nginx.ingress.kubernetes.io/rewrite-target": "/"}),
                ingress("plain", [{"host": "p.test", "paths": [("Prefix", "/a", "echo:80")]}]))
    controller = controller_for(text)
    assert controller.route("http://r.test/abc").backend == "echo:80"   # regex host: ^/a matches /abc
    assert controller.route("http://p.test/abc").status == 404          # plain host: element-wise


def test_rewrite_oracle_of_the_spec():
    """docs/specs/ingress-nginx.md §3's Python model and nginx_rewrite agree."""
    def oracle(path_regex, target, uri):
        path, _, query = uri.partition("?")
        m = re.match(path_regex, path, re.IGNORECASE)
        if m is None:
            return None
        out = re.sub(r"\$(\d+)", lambda g: (m.group(int(g.group(1))) or ""), target)
        return out + ("?" + query if query else "")

    for uri in ["/something", "/something/", "/something/new", "/something/new/deep?x=1", "/SOMETHING/a"]:
        path, _, query = uri.partition("?")
        assert nginx_rewrite("/something(/|$)(.*)", "/$2", path, query) == oracle("/something(/|$)(.*)", "/$2", uri)


# ================================================================ 5. class selection

OTHER_CLASS = """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik}
spec: {controller: traefik.io/ingress-controller}
"""
NGINX_NOT_DEFAULT = """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
"""
OTHER_DEFAULT = """
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: traefik, annotations: {ingressclass.kubernetes.io/is-default-class: "true"}}
spec: {controller: traefik.io/ingress-controller}
"""

# (case, classes, ingress spec extra, annotations, watch_without_class, served)
CLASS_CASES = [
    ("ingress_class_name_of_our_controller", NGINX_NOT_DEFAULT, {"ingressClassName": "nginx"}, None, False, True),
    ("ingress_class_name_of_other_controller_ignored", docs(NGINX_NOT_DEFAULT, OTHER_CLASS),
     {"ingressClassName": "traefik"}, None, False, False),
    ("ingress_class_name_missing_class_ignored", NGINX_NOT_DEFAULT, {"ingressClassName": "nope"}, None, False, False),
    ("deprecated_annotation_nginx_served", OTHER_CLASS, {}, {"kubernetes.io/ingress.class": "nginx"}, False, True),
    ("deprecated_annotation_other_ignored", NGINX_CLASS, {}, {"kubernetes.io/ingress.class": "traefik"}, False, False),
    ("no_class_default_class_ours_served", NGINX_CLASS, {}, None, False, True),
    ("no_class_default_class_other_ignored", docs(NGINX_NOT_DEFAULT, OTHER_DEFAULT), {}, None, False, False),
    ("no_class_no_default_ignored_by_default", NGINX_NOT_DEFAULT, {}, None, False, False),
    ("no_class_watch_ingress_without_class_served", NGINX_NOT_DEFAULT, {}, None, True, True),
    ("annotation_beats_default_class", OTHER_DEFAULT, {}, {"kubernetes.io/ingress.class": "nginx"}, False, True),
    ("ingress_class_name_beats_default_class", docs(NGINX_CLASS, OTHER_CLASS), {"ingressClassName": "traefik"},
     None, False, False),
]


@pytest.mark.parametrize("classes,spec_extra,annotations,without_class,served", [c[1:] for c in CLASS_CASES],
                         ids=[c[0] for c in CLASS_CASES])
def test_ingress_class_selection(classes, spec_extra, annotations, without_class, served):
    text = ingress("web", [{"host": "c.test", "paths": [("Prefix", "/", "echo")]}], annotations=annotations,
                   spec_extra=spec_extra)
    controller = IngressController(cluster_of(world(text, ["echo"], classes=classes)),
                                   watch_ingress_without_class=without_class)
    assert [i.ref for i in controller.ingresses] == (["default/web"] if served else [])
    assert ("default/web" in controller.ignored) is not served
    assert controller.route("http://c.test/").status == (200 if served else 404)


def test_default_class_newest_wins_then_name():
    """DefaultIngressClass admission: several defaults → the newest, equal timestamps → lowest name."""
    cluster = cluster_of(docs(
        'apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: old, creationTimestamp: '
        '"2024-01-01T00:00:00Z", annotations: {ingressclass.kubernetes.io/is-default-class: "true"}}\n'
        'spec: {controller: k8s.io/ingress-nginx}',
        'apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: new, creationTimestamp: '
        '"2025-01-01T00:00:00Z", annotations: {ingressclass.kubernetes.io/is-default-class: "true"}}\n'
        'spec: {controller: example.com/other}',
        'apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: b, annotations: '
        '{ingressclass.kubernetes.io/is-default-class: "true"}}\nspec: {controller: k8s.io/ingress-nginx}'))
    classes = cluster.of_kind("IngressClass")
    assert default_ingress_class(classes).name == "new"
    untimed = [c for c in classes if c.name != "new" and c.name != "old"]
    assert default_ingress_class(untimed).name == "b"


def test_class_decision_explains_itself():
    cluster = cluster_of(world(ingress("web", [{"host": "c.test", "paths": [("Prefix", "/", "echo")]}]), ["echo"]))
    decision = ingress_class_of(cluster.get("Ingress", "default", "web"), cluster.of_kind("IngressClass"))
    assert decision.ours and "default IngressClass 'nginx'" in decision.reason


# ================================================================ 6. merging, precedence, default backends

def test_exact_host_over_wildcard_over_catch_all():
    text = docs(ingress("exact", [{"host": "a.foo.com", "paths": [("Prefix", "/", "exact")]}]),
                ingress("wild", [{"host": "*.foo.com", "paths": [("Prefix", "/", "wild")]}]),
                ingress("any", [{"paths": [("Prefix", "/", "any")]}]))
    controller = controller_for(text)
    assert controller.route("http://a.foo.com/").backend == "exact:8080"
    assert controller.route("http://b.foo.com/").backend == "wild:8080"
    assert controller.route("http://x.b.foo.com/").backend == "any:8080"
    assert controller.route("http://192.168.1.200/").backend == "any:8080"


def test_host_server_does_not_fall_back_to_catch_all_rules():
    """nginx picks the server first: a host with a server of its own never reaches `_`'s paths."""
    text = docs(ingress("host", [{"host": "h.test", "paths": [("Prefix", "/a", "hosted")]}]),
                ingress("any", [{"paths": [("Prefix", "/b", "anyhost")]}]))
    controller = controller_for(text)
    assert controller.route("http://h.test/b").status == 404
    assert controller.route("http://other.test/b").backend == "anyhost:8080"


def test_paths_of_all_ingresses_for_a_host_are_merged():
    text = docs(ingress("one", [{"host": "m.test", "paths": [("Prefix", "/", "front")]}]),
                ingress("two", [{"host": "m.test", "paths": [("Prefix", "/api", "api"),
                                                             ("Exact", "/login", "login")]}]))
    controller = controller_for(text)
    assert [controller.route(f"http://m.test{p}").backend for p in ["/api/x", "/apix", "/login", "/login/x"]] == \
        ["api:8080", "front:8080", "login:8080", "front:8080"]


def test_duplicate_path_oldest_ingress_wins():
    text = docs(ingress("newer", [{"host": "d.test", "paths": [("Prefix", "/x", "newer")]}],
                        created="2025-06-01T00:00:00Z"),
                ingress("older", [{"host": "d.test", "paths": [("Prefix", "/x", "older")]}],
                        created="2025-01-01T00:00:00Z"))
    controller = controller_for(text)
    assert controller.route("http://d.test/x").backend == "older:8080"
    assert any("already defines it (the oldest Ingress wins)" in w for w in controller.warnings)


def test_duplicate_path_equal_timestamps_reverse_name_wins():
    """sortIngressSlice: identical creationTimestamp → "ns/name" descending, so default/b before default/a."""
    text = docs(ingress("a", [{"host": "d.test", "paths": [("Prefix", "/x", "from-a")]}]),
                ingress("b", [{"host": "d.test", "paths": [("Prefix", "/x", "from-b")]}]))
    controller = controller_for(text)
    assert [i.name for i in ingress_order(controller.ingresses)] == ["b", "a"]
    assert controller.route("http://d.test/x").backend == "from-b:8080"
    [warning] = [w for w in controller.warnings if "already defines it" in w]
    assert "neither has a creationTimestamp" in warning and "on a cluster where they were created apart" in warning
    same_second = controller_for(docs(*[ingress(n, [{"host": "d.test", "paths": [("Prefix", "/x", f"from-{n}")]}],
                                                created="2025-01-01T00:00:00Z") for n in "ab"]))
    assert any("both were created in the same second" in w for w in same_second.warnings)


def test_same_path_different_type_both_kept():
    text = docs(ingress("p", [{"host": "t.test", "paths": [("Prefix", "/foo", "prefix")]}]),
                ingress("e", [{"host": "t.test", "paths": [("Exact", "/foo", "exact")]}]))
    controller = controller_for(text)
    assert controller.route("http://t.test/foo").backend == "exact:8080"
    assert controller.route("http://t.test/foo/bar").backend == "prefix:8080"
    locations = [r.location for r in controller.servers()[-1].routes]
    assert "= /foo" in locations and "/foo/" in locations


def test_implementation_specific_is_prefix_in_ingress_nginx():
    """internal/k8s SetDefaultNGINXPathType: ImplementationSpecific → Prefix (element-wise)."""
    controller = controller_for(ingress("i", [{"host": "i.test",
                                               "paths": [("ImplementationSpecific", "/foo", "svc")]}]))
    assert [controller.route(f"http://i.test{p}").status for p in ["/foo", "/foo/bar", "/foobar"]] == [200, 200, 404]
    assert controller.route("http://i.test/foo").path_type == "ImplementationSpecific"


def test_prefix_becomes_two_nginx_locations():
    controller = controller_for(ingress("p", [{"host": "p.test", "paths": [("Prefix", "/foo", "svc")]}]))
    server = next(s for s in controller.servers() if s.host == "p.test")
    assert [(r.location, r.path, r.default_backend) for r in server.routes] == [
        ("/foo/", "/foo", False), ("= /foo", "/foo", False), ("/", "/", True)]


def test_catch_all_default_backend_first_ingress_without_rules_wins():
    text = docs(ingress("zz-old", default_backend="old-default", created="2024-01-01T00:00:00Z"),
                ingress("aa-new", default_backend="new-default", created="2025-01-01T00:00:00Z"),
                ingress("with-rules", [{"host": "r.test", "paths": [("Prefix", "/r", "ruled")]}],
                        default_backend="rules-default", created="2023-01-01T00:00:00Z"))
    controller = controller_for(text)
    result = controller.route("http://unknown.test/anything")
    assert (result.ingress, result.backend, result.served_by) == ("default/zz-old", "old-default:8080",
                                                                  "default-backend")


def test_catch_all_default_backend_is_not_replaced_by_a_hostless_root_path():
    """createServers gives `_`'s root to the rule-less Ingress before any path is added, and a
    root that is no longer the controller default is not taken over (IsDefBackend is false)."""
    text = docs(ingress("rules", [{"paths": [("Prefix", "/", "root-rule")]}], created="2023-01-01T00:00:00Z"),
                ingress("catch", default_backend="catch-all", created="2024-01-01T00:00:00Z"))
    controller = controller_for(text)
    assert controller.route("http://any.test/x").backend == "catch-all:8080"
    assert any("spec.defaultBackend of Ingress default/catch holds it" in w for w in controller.warnings)


def test_default_backend_of_ingress_with_rules_serves_its_hosts_only():
    text = ingress("site", [{"host": "s.test", "paths": [("Prefix", "/app", "app")]}], default_backend="fallback")
    controller = controller_for(text)
    unmatched = controller.route("http://s.test/other")
    assert (unmatched.status, unmatched.backend, unmatched.ingress, unmatched.path) == (200, "fallback:8080",
                                                                                        "default/site", None)
    elsewhere = controller.route("http://elsewhere.test/other")
    assert elsewhere.status == 404  # `_` keeps the controller's 404
    assert any("kubernetes/ingress-nginx#8473" in line and "default/site" in line for line in elsewhere.explanation)


def test_default_backend_of_ingress_with_hostless_rules_is_not_the_catch_all():
    text = ingress("hostless", [{"paths": [("Prefix", "/app", "app")]}], default_backend="fallback")
    controller = controller_for(text)
    assert controller.route("http://any.test/app").backend == "app:8080"
    unmatched = controller.route("http://any.test/other")
    assert unmatched.status == 404
    assert any("uses it nowhere (its rules name no host)" in line for line in unmatched.explanation)


def test_root_path_replaces_the_servers_default_location():
    text = docs(ingress("first", [{"host": "r.test", "paths": [("Prefix", "/x", "x")]}], default_backend="fallback"),
                ingress("second", [{"host": "r.test", "paths": [("Prefix", "/", "root")]}]))
    result = controller_for(text).route("http://r.test/other")
    assert (result.backend, result.ingress, result.path) == ("root:8080", "default/second", "/")


def test_no_match_is_the_controllers_404():
    result = controller_for(ingress("x", [{"host": "x.test", "paths": [("Prefix", "/x", "x")]}])).route(
        "http://x.test/y")
    assert (result.matched, result.status, result.ingress, result.backend, result.served_by) == (
        False, 404, None, None, "controller")


def test_canary_ingress_adds_no_route():
    text = docs(ingress("main", [{"host": "c.test", "paths": [("Prefix", "/", "stable")]}]),
                ingress("canary", [{"host": "c.test", "paths": [("Prefix", "/", "canary")]}],
                        annotations={"nginx.ingress.kubernetes.io/canary": "true"}))
    controller = controller_for(text)
    assert controller.route("http://c.test/").backend == "stable:8080"
    assert any("canary" in w for w in controller.warnings)


# ================================================================ 7. the backend Service

BACKEND_CASES = [
    ("port_by_number", "svc:8080", (), 200, 8080),
    ("port_by_name", "svc:web", (), 200, 80),
    ("missing_service_is_503", "gone:8080", ("gone",), 503, None),
    ("missing_port_is_503", "svc:9999", (), 503, None),
    ("missing_port_name_is_503", "svc:nope", (), 503, None),
]


@pytest.mark.parametrize("backend,missing,status,port", [c[1:] for c in BACKEND_CASES],
                         ids=[c[0] for c in BACKEND_CASES])
def test_backend_service_resolution(backend, missing, status, port):
    text = ingress("b", [{"host": "b.test", "paths": [("Prefix", "/", backend)]}])
    controller = controller_for(text, missing=missing)
    result = controller.route("http://b.test/")
    assert (result.status, result.matched, result.backend) == (status, True, backend)
    assert (result.service_port or {}).get("port") == port
    if status == 200:
        assert result.service.ref == "default/svc"
        pod_ip = controller.cluster.get("Pod", "default", "echo").status["podIP"]
        assert result.endpoints == (f"{pod_ip}:8080",)


def test_ingress_port_matching_a_target_port_is_accepted():
    """controller.go serviceEndpoints: a Service port matches by number, name or targetPort."""
    text = docs(ingress("b", [{"host": "b.test", "paths": [("Prefix", "/", "tp:9376")]}]),
                'apiVersion: v1\nkind: Service\nmetadata: {name: tp, namespace: default}\n'
                'spec: {selector: {app: echo}, ports: [{name: a, port: 80, targetPort: 9376}]}')
    result = IngressController(cluster_of(world(text))).route("http://b.test/")
    assert (result.status, result.service_port["port"]) == (200, 80)
    assert result.endpoints[0].endswith(":9376")
    assert any("targetPort" in line for line in result.explanation)


def test_prefix_with_and_without_slash_is_a_duplicate_nginx_location():
    """Prefix /foo → `/foo/` and Prefix /foo/ → `/foo/`: nginx -t refuses duplicate locations."""
    controller = controller_for(ingress("d", [{"host": "d.test", "paths": [("Prefix", "/foo", "a"),
                                                                         ("Prefix", "/foo/", "b")]}]))
    assert any("duplicate location /foo/" in w for w in controller.warnings)


def test_strict_path_type_validation_is_warned():
    controller = controller_for(ingress("s", [{"host": "s.test", "paths": [("Prefix", "/api(/|$)(.*)", "a")]}]))
    assert any("strict-validate-path-type" in w for w in controller.warnings)


def test_backend_without_ready_endpoints_is_503():
    text = docs(ingress("b", [{"host": "b.test", "paths": [("Prefix", "/", "lonely")]}]),
                'apiVersion: v1\nkind: Service\nmetadata: {name: lonely, namespace: default}\n'
                'spec: {selector: {app: nobody}, ports: [{port: 8080}]}')
    result = IngressController(cluster_of(world(text))).route("http://b.test/")
    assert (result.status, result.service.ref, result.endpoints) == (503, "default/lonely", ())


def test_external_name_service_is_proxied_directly():
    text = docs(ingress("b", [{"host": "b.test", "paths": [("Prefix", "/", "ext:443")]}]),
                'apiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: default}\n'
                'spec: {type: ExternalName, externalName: api.example.com}')
    result = IngressController(cluster_of(world(text))).route("http://b.test/")
    assert (result.status, result.endpoints) == (200, ("api.example.com:443",))


# ================================================================ 8. TLS, redirects, nginx details

TLS_CASES = [
    ("http_to_tls_host_is_redirected_308", {}, "http://t.test/a?b=1", 308, "https://t.test/a?b=1"),
    ("https_to_tls_host_is_proxied", {}, "https://t.test/a", 200, None),
    ("ssl_redirect_false_serves_http", {"nginx.ingress.kubernetes.io/ssl-redirect": "false"}, "http://t.test/a",
     200, None),
]


@pytest.mark.parametrize("annotations,url,status,redirect", [c[1:] for c in TLS_CASES], ids=[c[0] for c in TLS_CASES])
def test_tls_redirect(annotations, url, status, redirect):
    text = ingress("t", [{"host": "t.test", "paths": [("Prefix", "/", "svc")]}], annotations=annotations,
                   tls=[{"hosts": ["t.test"], "secretName": "t-tls"}])
    result = controller_for(text).route(url)
    assert (result.status, result.redirect) == (status, redirect)
    assert result.route_entry.tls


def test_force_ssl_redirect_without_tls():
    text = ingress("f", [{"host": "f.test", "paths": [("Prefix", "/", "svc")]}],
                   annotations={"nginx.ingress.kubernetes.io/force-ssl-redirect": "true"})
    assert controller_for(text).route("http://f.test/").status == 308


def test_app_root_redirects_root_only():
    text = ingress("a", [{"host": "approot.bar.com", "paths": [("Prefix", "/", "svc")]}],
                   annotations={"nginx.ingress.kubernetes.io/app-root": "/app1"})
    controller = controller_for(text)
    root = controller.route("http://approot.bar.com/")
    assert (root.status, root.redirect) == (302, "http://approot.bar.com/app1")
    assert controller.route("http://approot.bar.com/app1").upstream_path == "/app1"


# (case, annotations, client, body size, status): the access phase and client_max_body_size
ACCESS_CASES = [
    ("source_range_includes_client", {"whitelist-source-range": "10.0.0.0/8"}, "10.1.2.3", 0, 200),
    ("source_range_excludes_client_403", {"whitelist-source-range": "10.0.0.0/8"}, "192.168.1.50", 0, 403),
    ("allowlist_is_the_newer_name", {"allowlist-source-range": "192.168.1.50"}, "192.168.1.50", 0, 200),
    ("allowlist_wins_over_whitelist", {"allowlist-source-range": "10.0.0.0/8",
                                       "whitelist-source-range": "192.168.1.0/24"}, "192.168.1.50", 0, 403),
    ("unknown_client_is_assumed_allowed", {"whitelist-source-range": "10.0.0.0/8"}, None, 0, 200),
    ("invalid_source_range_denies_the_location_503", {"whitelist-source-range": "10.0.0.0/33"}, "10.1.2.3", 0, 503),
    ("default_body_size_is_1m", {}, None, 1024 * 1024, 200),
    ("body_over_1m_is_413", {}, None, 1024 * 1024 + 1, 413),
    ("proxy_body_size_raises_the_limit", {"proxy-body-size": "8m"}, None, 2 * 1024 * 1024, 200),
    ("proxy_body_size_zero_is_unlimited", {"proxy-body-size": "0"}, None, 1 << 30, 200),
    ("proxy_body_size_lowers_the_limit", {"proxy-body-size": "1k"}, None, 1025, 413),
    ("invalid_proxy_body_size_keeps_the_default", {"proxy-body-size": "lots"}, None, 2 * 1024 * 1024, 413),
    ("body_size_is_checked_before_the_source_range", {"whitelist-source-range": "10.0.0.0/8",
                                                      "proxy-body-size": "1k"}, "192.168.1.50", 2000, 413),
]


@pytest.mark.parametrize("annotations,client,body_size,status", [c[1:] for c in ACCESS_CASES],
                         ids=[c[0] for c in ACCESS_CASES])
def test_source_ranges_and_body_size(annotations, client, body_size, status):
    text = ingress("a", [{"host": "a.test", "paths": [("Prefix", "/", "svc")]}],
                   annotations={f"nginx.ingress.kubernetes.io/{k}": v for k, v in annotations.items()})
    controller = controller_for(text)
    result = controller.route("http://a.test/x", client=client, body_size=body_size)
    assert result.status == status
    if status == 503 or "lots" in annotations.values():
        assert any(w.startswith("Ingress default/a: ") for w in controller.warnings)
    if client is None and annotations.get("whitelist-source-range"):
        assert any("not known here, assumed allowed" in line for line in result.explanation)


def test_no_endpoints_answers_503_before_the_source_ranges():
    """balancer.lua's rewrite() runs in nginx's rewrite phase (rewrite_by_lua), before the access
    phase's allow/deny: a client outside the ranges asking for a backend without endpoints gets
    ingress-nginx's 503, not 403."""
    text = ingress("a", [{"host": "a.test", "paths": [("Prefix", "/", "svc")]}],
                   annotations={"nginx.ingress.kubernetes.io/allowlist-source-range": "10.0.0.0/8"})
    without = controller_for(text, missing=("svc",)).route("http://a.test/x", client="192.168.1.50")
    assert without.status == 503 and not any("allowlist" in line for line in without.explanation)
    assert controller_for(text).route("http://a.test/x", client="192.168.1.50").status == 403


def test_backend_protocol_and_x_forwarded_prefix_are_carried_in_the_route():
    text = ingress("p", [{"host": "p.test", "paths": [("Prefix", "/", "svc")]}],
                   annotations={"nginx.ingress.kubernetes.io/backend-protocol": "https",
                                "nginx.ingress.kubernetes.io/x-forwarded-prefix": "/p"})
    route = controller_for(text).route("http://p.test/").route_entry
    assert (route.backend_protocol, route.x_forwarded_prefix) == ("HTTPS", "/p")
    controller = controller_for(ingress("f", [{"host": "f.test", "paths": [("Prefix", "/", "svc")]}],
                                        annotations={"nginx.ingress.kubernetes.io/backend-protocol": "FCGI"}))
    assert controller.route("http://f.test/").route_entry.backend_protocol == "HTTP"
    assert any("backend-protocol 'FCGI' is not modelled" in w for w in controller.warnings)


NGINX_DETAILS = [
    ("host_port_and_case_are_ignored", "http://SHOP.example.com:8080/api", 200, "backend:http", "/api"),
    ("slashes_are_merged_for_matching", "http://shop.example.com//api//cart", 200, "backend:http", "//api//cart"),
    ("dot_segments_resolved_for_matching", "http://shop.example.com/x/../api", 200, "backend:http", "/x/../api"),
    ("percent_escapes_decoded_for_matching", "http://shop.example.com/%61pi", 200, "backend:http", "/%61pi"),
    ("climbing_above_root_is_400", "http://shop.example.com/../api", 400, None, None),
    ("catch_all_healthz_answered_by_nginx", "http://unknown.test/healthz", 200, None, None),
    ("catch_all_nginx_status_forbidden", "http://unknown.test/nginx_status", 403, None, None),
]


@pytest.mark.parametrize("url,status,backend,upstream", [c[1:] for c in NGINX_DETAILS],
                         ids=[c[0] for c in NGINX_DETAILS])
def test_nginx_request_handling(url, status, backend, upstream):
    result = IngressController(cluster_of((EXAMPLES / "shop").joinpath("ingress.yaml").read_text()
                                          + "\n---\n" + _shop_services())).route(url)
    assert (result.status, result.backend, result.upstream_path) == (status, backend, upstream)


def _shop_services() -> str:
    return "\n---\n".join(p.read_text() for p in sorted((EXAMPLES / "shop").glob("*.yaml"))
                          if p.name != "ingress.yaml")


def test_normalize_uri():
    assert normalize_uri("/a//b/./c/../d/") == "/a/b/d/"
    assert normalize_uri("/a/.") == "/a/"
    with pytest.raises(BadRequest):
        normalize_uri("/a/../../b")
    with pytest.raises(BadRequest):
        normalize_uri("/%zz")


def test_only_http_urls():
    controller = controller_for(DEFAULT_BACKEND)
    with pytest.raises(ValueError):
        controller.route("ftp://x/")


# ================================================================ 9. the bundled examples

def _example(*names: str) -> IngressController:
    text = "\n---\n".join((EXAMPLES / name).read_text() for name in names)
    return IngressController(cluster_of(text))


SHOP = ("shop/00-namespaces.yaml", "shop/backend.yaml", "shop/frontend.yaml", "shop/redis.yaml",
        "shop/external.yaml", "shop/policies.yaml", "shop/ingress.yaml")

# (case, files, url, status, ingress, backend, upstream) — from each file's comments
EXAMPLE_CASES = [
    ("shop_api_to_backend", SHOP, "http://shop.example.com/api", 200, "shop/shop", "backend:http", "/api"),
    ("shop_api_subpath_to_backend", SHOP, "http://shop.example.com/api/cart", 200, "shop/shop", "backend:http",
     "/api/cart"),
    ("shop_apiary_to_frontend_element_wise", SHOP, "http://shop.example.com/apiary", 200, "shop/shop",
     "frontend:http", "/apiary"),
    ("shop_root_to_frontend", SHOP, "http://shop.example.com/", 200, "shop/shop", "frontend:http", "/"),
    ("shop_other_host_404", SHOP, "http://other.example.com/api", 404, None, None, None),
    ("basic_ingress_any_host_testpath", ("seeds/basic-ingress.yaml",), "http://anything/testpath/x", 200,
     "default/basic-ingress", "my-service:8080", "/testpath/x"),
    ("basic_ingress_testpathx_404", ("seeds/basic-ingress.yaml",), "http://anything/testpathx", 404, None, None, None),
    ("ingress_test_wear_prefix", ("seeds/ingress-test.yaml",), "http://wear.my-online-store.com/wear/shirts", 200,
     "default/ingress-test", "wear-service:80", "/wear/shirts"),
    ("ingress_test_other_host_404", ("seeds/ingress-test.yaml",), "http://watch.my-online-store.com/wear", 404,
     None, None, None),
    ("by_host_web_service_1", ("seeds/ingress-wear-watch-by-host.yaml",), "http://web-service-1.com/x", 200,
     "default/ingress-wear-watch", "wear-service:80", "/x"),
    ("by_host_web_service_2", ("seeds/ingress-wear-watch-by-host.yaml",), "http://web-service-2.com/", 200,
     "default/ingress-wear-watch", "returns-service:80", "/"),
    ("by_host_other_host_404", ("seeds/ingress-wear-watch-by-host.yaml",), "http://web-service-3.com/", 404,
     None, None, None),
    ("by_path_wear", ("seeds/ingress-wear-watch.yaml",), "http://any/wear", 200, "default/ingress-wear-watch",
     "wear-service:80", "/wear"),
    ("by_path_watch", ("seeds/ingress-wear-watch.yaml",), "http://any/watch/x", 200, "default/ingress-wear-watch",
     "watch-service:80", "/watch/x"),
    ("by_path_root_404", ("seeds/ingress-wear-watch.yaml",), "http://any/", 404, None, None, None),
    ("by_path_wearable_404", ("seeds/ingress-wear-watch.yaml",), "http://any/wearable", 404, None, None, None),
    ("wear_default_backend_everything", ("seeds/ingress-wear.yaml",), "http://whatever.host/any/path", 200,
     "default/ingress-wear", "wear-service:80", "/any/path"),
    ("minimal_rewrite_to_root", ("seeds/minimal-ingress.yaml",), "http://x/testpath/abc", 200,
     "default/minimal-ingress", "test:80", "/"),
    ("minimal_regex_case_insensitive", ("seeds/minimal-ingress.yaml",), "http://x/TestPath", 200,
     "default/minimal-ingress", "test:80", "/"),
    ("minimal_regex_string_prefix", ("seeds/minimal-ingress.yaml",), "http://x/testpathx", 200,
     "default/minimal-ingress", "test:80", "/"),
    ("test_ingress_pay_rewritten", ("seeds/test-ingress.yaml",), "http://x/PAY/x", 200, "critical-space/test-ingress",
     "pay-service:8282", "/"),
    ("test_ingress_payments_matches_regex", ("seeds/test-ingress.yaml",), "http://x/payments", 200,
     "critical-space/test-ingress", "pay-service:8282", "/"),
    ("whale_a", ("seeds/whale-ingress.yaml",), "http://a.whale.hey/", 200, "default/whale-ingress", "whale-svc-a:80",
     "/"),
    ("whale_b", ("seeds/whale-ingress.yaml",), "http://b.whale.hey/x", 200, "default/whale-ingress", "whale-svc-b:80",
     "/x"),
    ("whale_other_host_404", ("seeds/whale-ingress.yaml",), "http://c.whale.hey/", 404, None, None, None),
    ("rewrite_something_root", ("seeds/rewrite.yaml",), "http://rewrite.bar.com/something", 200, "default/rewrite",
     "http-svc:80", "/"),
    ("rewrite_something_new", ("seeds/rewrite.yaml",), "http://rewrite.bar.com/something/new", 200,
     "default/rewrite", "http-svc:80", "/new"),
    ("rewrite_something_new_deep", ("seeds/rewrite.yaml",), "http://rewrite.bar.com/something/new/deep", 200,
     "default/rewrite", "http-svc:80", "/new/deep"),
    ("rewrite_somethingelse_404", ("seeds/rewrite.yaml",), "http://rewrite.bar.com/somethingelse", 404, None, None,
     None),
]


@pytest.mark.parametrize("files,url,status,ingress_ref,backend,upstream", [c[1:] for c in EXAMPLE_CASES],
                         ids=[c[0] for c in EXAMPLE_CASES])
def test_bundled_examples(files, url, status, ingress_ref, backend, upstream):
    result = _example(*files).route(url)
    assert (result.status, result.ingress, result.backend, result.upstream_path) == (
        status, ingress_ref, backend, upstream)


def test_seed_controller_without_ingress_class_serves_nothing():
    """nginx-ingress-controller.yaml has no IngressClass and no Ingress: only the catch-all 404."""
    controller = _example("seeds/nginx-ingress-controller.yaml")
    assert controller.ingresses == [] and controller.route("http://x/").status == 404


def test_every_bundled_ingress_is_served_and_yields_routes():
    for path in sorted(EXAMPLES.glob("seeds/*ingress*.yaml")) + [EXAMPLES / "seeds" / "rewrite.yaml"]:
        controller = IngressController(cluster_of(path.read_text()))
        if "nginx-ingress-controller" in path.name:
            continue
        assert controller.ingresses and not controller.ignored, path.name
        assert any(not r.default_backend or r.service for r in controller.routes()), path.name


# ================================================================ 10. the route table and the JSON contract

def test_route_table_is_plain_frozen_data():
    controller = _example(*SHOP)
    routes = controller.routes()
    assert all(isinstance(r, Route) for r in routes)
    shop = [(r.host, r.location, r.path, r.path_type, r.ingress, r.backend, r.tls) for r in routes
            if r.host == "shop.example.com"]
    assert shop == [
        ("shop.example.com", "/api/", "/api", "Prefix", "shop/shop", "backend:http", False),
        ("shop.example.com", "= /api", "/api", "Prefix", "shop/shop", "backend:http", False),
        ("shop.example.com", "/", "/", "Prefix", "shop/shop", "frontend:http", False),
    ]
    with pytest.raises(AttributeError):
        routes[0].path = "/x"  # type: ignore[misc]
    assert [s.name for s in controller.servers()] == ["_", "shop.example.com"]


def test_route_to_json_contract():
    result = _example(*SHOP).route("http://shop.example.com/api/cart?id=1")
    assert isinstance(result, RouteResult)
    assert result.to_json() == {"ingress": "shop/shop", "host": "shop.example.com", "path": "/api",
                                "pathType": "Prefix", "backend": "backend:http",
                                "upstream_path": "/api/cart?id=1"}
    assert result.pathType == "Prefix"
    assert result.service.ref == "shop/backend" and result.service_port["name"] == "http"


def test_explanation_names_the_decisions():
    result = _example(*SHOP).route("http://shop.example.com/apiary")
    text = "\n".join(result.explanation)
    assert "server shop.example.com" in text
    assert "not matching: /api/, = /api" in text
    assert "longest matching prefix" in text and "frontend:http" in text
