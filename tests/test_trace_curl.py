"""`podnet trace` speaks curl: -H and --resolve as curl takes them, URLs to the controller's
addresses, and nginx's reading of the Host header (sim/curl.py, semantics/nginxhost.py)."""

import json
import shlex

import pytest

from podnet.api import fields
from podnet.cli.trace import EXAMPLES
from podnet.errors import UsageError
from podnet.semantics.nginxhost import host_header_problem, valid_host
from podnet.sim.curl import http_request
from podnet.sim.trace import Tracer
from tests.conftest import cluster_of, run_cli
from tests.test_trace import INGRESS_APP, SHOP, TWO_NODES, pod, service

# INGRESS_APP plus an Ingress whose rule names no host: nginx's catch-all server `_` serves it
CATCH_ALL_APP = INGRESS_APP + pod("d", "node2", labels="{app: fallback}") + service(
    "fallback", "{selector: {app: fallback}, ports: [{port: 80, targetPort: 8080}]}") + """
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: anyhost}
spec:
  rules:
  - http:
      paths: [{path: /fallback, pathType: Prefix, backend: {service: {name: fallback, port: {number: 80}}}}]
"""


@pytest.fixture(scope="module")
def cluster():
    return cluster_of(CATCH_ALL_APP, TWO_NODES)


@pytest.fixture(scope="module")
def tracer(cluster):
    return Tracer(cluster)


@pytest.fixture(scope="module")
def controller(cluster):
    svc = cluster.get("Service", "ingress-nginx", "ingress-nginx-controller")
    node_ports = {p["name"]: p["nodePort"] for p in svc.spec["ports"]}
    return {"lb": fields.load_balancer_ips(svc)[0], "http_node_port": node_ports["http"]}


def node_ip(cluster, name):
    node = cluster.get("Node", "", name)
    return next(a["address"] for a in node.status["addresses"] if a["type"] == "InternalIP")


def nginx_route(result):
    return next(h for h in result.hops if h.at.startswith("ingress-nginx/") and h.action == "route")


def without_resolve(result):
    return [h for h in result.hops if h.action != "resolve"]


# --- the request curl sends ------------------------------------------------------------------

@pytest.mark.parametrize("url, headers, host_headers", [
    ("http://shop.example.com/api", [], ["shop.example.com"]),                       # curl's own Host
    ("http://shop.example.com:80/api", [], ["shop.example.com"]),                    # default port left out
    ("http://shop.example.com:8080/api", [], ["shop.example.com:8080"]),             # other ports kept
    ("http://192.168.1.200/", ["Host: shop.example.com"], ["shop.example.com"]),     # -H replaces curl's own
    ("http://192.168.1.200/", ["Host:   spaced.example.com  "], ["spaced.example.com"]),  # value trimmed
    ("http://192.168.1.200/", ["Host:"], []),                                        # `Name:` removes it
    ("http://192.168.1.200/", ["Host;"], [""]),                                      # `Name;` sends it empty
    ("http://192.168.1.200/", ["Host: a", "Host: b"], ["a", "b"]),                   # both given, both sent
])
def test_host_header_as_curl_sends_it(url, headers, host_headers):
    assert http_request(url, headers).host_headers() == host_headers


def test_other_headers_are_carried_in_order_after_host():
    request = http_request("http://h/", ["X-Request-Id: 7", "Accept: text/plain", "X-Empty;"])
    assert [(h.name, h.value) for h in request.headers] == [
        ("Host", "h"), ("X-Request-Id", "7"), ("Accept", "text/plain"), ("X-Empty", "")]


@pytest.mark.parametrize("url, headers, sni", [
    ("https://secure.example.com/", [], "secure.example.com"),
    ("https://secure.example.com/", ["Host: other.example.com"], "secure.example.com"),  # Host is not SNI
    ("https://192.168.1.200/", ["Host: secure.example.com"], None),                      # no SNI for an address
    ("http://secure.example.com/", [], None),
])
def test_sni_is_the_urls_host_never_the_host_header(url, headers, sni):
    assert http_request(url, headers).sni == sni


@pytest.mark.parametrize("resolve, url, address", [
    (["h:80:10.0.0.1"], "http://h/", "10.0.0.1"),
    (["H:80:10.0.0.1"], "http://h/", "10.0.0.1"),                         # host names ignore case
    (["h:443:10.0.0.1"], "http://h/", None),                              # another port: not used
    (["h:443:10.0.0.1"], "https://h/", "10.0.0.1"),
    (["h:80:10.0.0.1", "h:80:10.0.0.2"], "http://h/", "10.0.0.2"),        # the last for HOST:PORT wins
    (["*:80:10.0.0.9"], "http://anything/", "10.0.0.9"),                  # * matches any host
    (["*:80:10.0.0.9", "h:80:10.0.0.1"], "http://h/", "10.0.0.1"),        # the host's own entry beats *
    (["h:80:10.0.0.1", "-h:80"], "http://h/", None),                      # -HOST:PORT drops it
    (["+h:80:10.0.0.1,10.0.0.2"], "http://h/", "10.0.0.1"),               # the first of several
    (["h:8080:10.0.0.1"], "http://h:8080/", "10.0.0.1"),
])
def test_resolve_entries_as_curl_applies_them(resolve, url, address):
    entry = http_request(url, resolve=resolve).resolved_by
    assert (entry.addresses[0] if entry else None) == address


@pytest.mark.parametrize("headers, resolve, option, phrase", [
    (["Host shop.example.com"], [], "-H 'Host shop.example.com'", "not a header"),
    (["Bad Name: x"], [], "-H 'Bad Name: x'", "not a header name"),
    ([": x"], [], "-H ': x'", "not a header name"),
    (["@headers.txt"], [], "-H '@headers.txt'", "from a file"),
    (["X-A; junk"], [], "-H 'X-A; junk'", "empty header"),
    ([], ["shop.example.com:80"], "--resolve 'shop.example.com:80'", "HOST:PORT:ADDR"),
    ([], ["shop.example.com:http:192.168.1.200"], "--resolve 'shop.example.com:http:192.168.1.200'",
     "not a number"),
    ([], ["shop.example.com:80:192.168.1.300"], "--resolve 'shop.example.com:80:192.168.1.300'",
     "not an IPv4 address"),
    ([], ["shop.example.com:80:[::1]"], "--resolve 'shop.example.com:80:[::1]'", "IPv4"),
    ([], ["shop/x:80:192.168.1.200"], "--resolve 'shop/x:80:192.168.1.200'", "not a host name"),
    ([], ["-shop.example.com"], "--resolve '-shop.example.com'", "-HOST:PORT"),
])
def test_bad_options_are_one_clear_error_naming_option_and_value(headers, resolve, option, phrase):
    with pytest.raises(UsageError) as caught:
        http_request("http://shop.example.com/", headers, resolve)
    assert str(caught.value).startswith(option + ":") and phrase in str(caught.value)
    assert caught.value.exit_code == 2


# --- nginx and the Host header -----------------------------------------------------------------

@pytest.mark.parametrize("host, valid", [
    ("shop.example.com", True), ("SHOP.example.com.", True), ("shop.example.com:8080", True),
    ("192.168.1.200", True), ("[::1]:80", True), ("x:not-a-port", True),   # nginx ignores what follows ':'
    ("", False), (".", False), (":80", False), ("a..b", False), ("a/b", False), ("a\\b", False),
    ("a b", False),
])
def test_nginx_validates_the_host_header(host, valid):
    assert valid_host(host) is valid


def test_nginx_wants_exactly_one_host_header():
    assert "without \"Host\"" in host_header_problem([])
    assert "duplicate" in host_header_problem(["a", "b"])
    assert host_header_problem(["a"]) is None


# --- traces ------------------------------------------------------------------------------------

def test_host_header_to_the_load_balancer_ip_equals_the_trace_by_name(tracer, controller):
    by_name = tracer.trace("external", "http://shop.example.com/api/items")
    by_ip = tracer.trace("external", f"http://{controller['lb']}/api/items", headers=["Host: shop.example.com"])
    assert by_ip.verdict == by_name.verdict == "delivered"
    assert by_ip.destination == by_name.destination and by_ip.ingress == by_name.ingress
    assert by_ip.endpoints == by_name.endpoints
    assert [h.to_json() for h in without_resolve(by_ip)] == [h.to_json() for h in without_resolve(by_name)]
    assert by_name.request["resolved_by"] == "ingress" and by_ip.request["resolved_by"] == "url"


def test_resolve_to_the_load_balancer_ip_equals_the_trace_by_name(tracer, controller):
    by_name = tracer.trace("external", "http://shop.example.com/api/items")
    pinned = tracer.trace("external", "http://shop.example.com/api/items",
                          resolve=[f"shop.example.com:80:{controller['lb']}"])
    assert pinned.to_json()["ingress"] == by_name.to_json()["ingress"]
    assert without_resolve(pinned) == without_resolve(by_name)
    resolve_hop = next(h for h in pinned.hops if h.action == "resolve")
    assert "--resolve" in resolve_hop.detail and "no DNS query" in resolve_hop.detail


def test_an_address_without_host_header_is_answered_by_the_catch_all_server(tracer, controller):
    rule_for_a_host = tracer.trace("external", f"http://{controller['lb']}/api/items")
    assert rule_for_a_host.verdict == "dropped" and "404" in rule_for_a_host.reason
    route = nginx_route(rule_for_a_host)
    assert f"host {controller['lb']}" in route.detail and "server _" in route.detail
    hostless_rule = tracer.trace("external", f"http://{controller['lb']}/fallback")
    assert hostless_rule.verdict == "delivered" and hostless_rule.destination["pod"] == "default/d"
    assert hostless_rule.ingress["ingress"] == "default/anyhost" and hostless_rule.ingress["host"] == ""


def test_a_node_address_and_the_controllers_node_port_reach_nginx(tracer, cluster, controller):
    address = node_ip(cluster, "node1")
    url = f"http://{address}:{controller['http_node_port']}/api/items"
    r = tracer.trace("external", url, headers=["Host: shop.example.com"])
    assert r.verdict == "delivered" and r.destination["pod"] == "default/a"
    assert any(h.action == "service" and "NodePort" in h.detail for h in r.hops)
    assert r.ingress["ingress"] == "default/site"
    by_resolve = tracer.trace("external", f"http://shop.example.com:{controller['http_node_port']}/api/items",
                              resolve=[f"shop.example.com:{controller['http_node_port']}:{address}"])
    assert by_resolve.ingress == r.ingress and by_resolve.destination == r.destination


def test_resolve_to_an_address_that_is_not_the_controller_is_an_ordinary_connection(tracer, cluster):
    # node1's own address: nothing listens on its port 80
    r = tracer.trace("external", "http://shop.example.com/api", resolve=[f"shop.example.com:80:{node_ip(cluster, 'node1')}"])
    assert r.ingress is None and r.verdict == "dropped" and "connection refused" in r.reason
    assert not any(h.at.startswith("ingress-nginx/") and h.action == "route" for h in r.hops)


def test_https_routes_by_host_and_names_the_sni(tracer, controller):
    by_name = tracer.trace("external", "https://secure.example.com/", resolve=[f"secure.example.com:443:{controller['lb']}"])
    assert by_name.verdict == "delivered" and by_name.request["sni"] == "secure.example.com"
    assert any(h.action == "tls" and "SNI secure.example.com" in h.detail for h in by_name.hops)
    by_address = tracer.trace("external", f"https://{controller['lb']}/", headers=["Host: secure.example.com"])
    assert by_address.verdict == "delivered" and by_address.ingress == by_name.ingress
    assert by_address.request["sni"] is None
    assert any(h.action == "tls" and "no SNI" in h.detail and "-k" in h.detail for h in by_address.hops)


def test_the_wrong_scheme_for_the_controllers_port_is_refused(tracer, controller):
    plain_to_tls = tracer.trace("external", f"http://{controller['lb']}:443/", headers=["Host: secure.example.com"])
    assert plain_to_tls.verdict == "dropped" and "400" in plain_to_tls.reason and "HTTPS port" in plain_to_tls.reason
    tls_to_plain = tracer.trace("external", f"https://{controller['lb']}:80/")
    assert tls_to_plain.verdict == "dropped" and "TLS handshake fails" in tls_to_plain.reason


@pytest.mark.parametrize("headers, phrase", [
    (["Host:"], 'without "Host"'),
    (["Host: shop.example.com", "Host: secure.example.com"], "duplicate host header"),
    (["Host: shop..example.com"], "invalid host header"),
    (["Host;"], "invalid host header"),
])
def test_nginx_answers_400_to_a_host_header_it_cannot_use(tracer, controller, headers, phrase):
    r = tracer.trace("external", f"http://{controller['lb']}/api", headers=headers)
    assert r.verdict == "dropped" and "400" in r.reason and phrase in r.reason and r.ingress is None
    assert not any(h.at.startswith("ingress-nginx/") and h.action == "route" for h in r.hops)


def test_json_carries_the_request_as_sent(tracer, controller):
    out = tracer.trace("external", f"http://{controller['lb']}/api/items?x=1",
                       headers=["Host: shop.example.com", "X-Trace: yes"]).to_json()
    assert out["request"] == {
        "method": "GET", "url": f"http://{controller['lb']}/api/items?x=1", "host": "shop.example.com",
        "headers": [{"name": "Host", "value": "shop.example.com"}, {"name": "X-Trace", "value": "yes"}],
        "sni": None, "address": controller["lb"], "port": 80, "resolved_by": "url"}
    assert out["ingress"]["upstream_path"] == "/api/items?x=1"
    assert "request" not in tracer.trace("external", f"{controller['lb']}:80").to_json()


def test_curl_options_need_a_url(tracer, controller):
    with pytest.raises(UsageError, match="-H/--header goes with an http:// or https:// URL"):
        tracer.trace("external", f"{controller['lb']}:80", headers=["Host: shop.example.com"])
    with pytest.raises(UsageError, match="--resolve goes with"):
        tracer.trace("external", "default/a", port=8080, resolve=["h:80:10.0.0.1"])


# --- the command line ---------------------------------------------------------------------------

def test_cli_host_header_and_resolve_as_curl_takes_them(capsys):
    code, out, err = run_cli(capsys, "trace", "external", "http://192.168.1.200/api", "-H", "Host: shop.example.com",
                             "-f", SHOP, "-o", "json")
    assert code == 0, err
    result = json.loads(out)
    assert result["verdict"] == "delivered" and result["ingress"]["ingress"] == "shop/shop"
    assert result["request"]["host"] == "shop.example.com"
    code, out, _ = run_cli(capsys, "trace", "external", "http://shop.example.com/api",
                           "--resolve", "shop.example.com:80:192.168.1.200", "-f", SHOP)
    assert code == 0 and out.startswith("request: GET http://shop.example.com/api (Host: shop.example.com) → "
                                        "192.168.1.200:80 (--resolve)")


@pytest.mark.parametrize("argv, message", [
    (["-H", "Host shop.example.com"], "-H 'Host shop.example.com': not a header"),
    (["--resolve", "shop.example.com:80"], "--resolve 'shop.example.com:80': write HOST:PORT:ADDR"),
])
def test_cli_bad_syntax_exits_2_naming_the_option_and_value(capsys, argv, message):
    code, out, err = run_cli(capsys, "trace", "external", "http://shop.example.com/api", *argv, "-f", SHOP)
    assert code == 2 and out == "" and err.strip().startswith(message) and len(err.strip().splitlines()) == 1


def test_cli_help_shows_curl_style_examples(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "trace", "--help")
    out = capsys.readouterr().out
    assert "-H 'Host: shop.example.com'" in out and "--resolve shop.example.com:80:192.168.1.200" in out
    assert "-H 'NAME: VALUE', --header" in out and "--resolve HOST:PORT:ADDR" in out


def test_every_example_in_the_help_runs_as_written(capsys):
    commands = [shlex.split(line.strip()) for line in EXAMPLES.splitlines() if line.strip().startswith("podnet trace")]
    assert any("--resolve" in argv for argv in commands) and any("-H" in argv for argv in commands)
    for argv in commands:
        argv = [SHOP if a == "examples/shop" else a for a in argv[1:]]
        code, out, err = run_cli(capsys, *argv, "-o", "json")
        assert code == 0, (argv, err)
        result = json.loads(out)
        if any(a.startswith("http://192.168.1.") for a in argv):  # to the controller's addresses: nginx routes
            assert any(h["at"].startswith("ingress-nginx/") and h["action"] == "route" for h in result["hops"]), argv
