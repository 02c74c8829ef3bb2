"""The Corefile parser: syntax, every plugin's arguments and defaults, and errors naming the line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.config import ClusterConfig
from podnet.controlplane.system import corefile
from podnet.semantics.corefile import (
    Cache, CorefileError, Directive, Forward, Health, Hosts, Reload, address_port, duration, load, parse,
    server_config,
)
from podnet.semantics.dns import KubernetesPlugin, kubeadm_plugin

# kubeadm's Corefile template (cmd/kubeadm/app/phases/addons/dns/manifests.go, recent releases) rendered for
# cluster.local and the node's /etc/resolv.conf (indentation aside).
KUBEADM = """\
.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload
    loadbalance
}
"""
KUBEADM_K8S = KubernetesPlugin(zones=("cluster.local.", "in-addr.arpa.", "ip6.arpa."), pods="insecure", ttl=30,
                               fallthrough=("in-addr.arpa.", "ip6.arpa."))


def one(body: str, key: str = ".:53"):
    """The ServerConfig of a single block with `body` as its directives."""
    (config,) = load(f"{key} {{\n{body}\n}}\n")
    return config


def error(text: str) -> str:
    with pytest.raises(CorefileError) as info:
        load(text)
    return str(info.value)


def test_kubeadm_corefile_parses_to_its_typed_values():
    (config,) = load(KUBEADM)
    assert (config.zones, config.port, config.line) == ((".",), 53, 1)
    assert config.errors and config.loop and config.loadbalance and not config.log
    assert config.health == Health(":8080", 5.0)
    assert config.ready == ":8181" and config.prometheus == ":9153"
    assert config.kubernetes == KUBEADM_K8S
    assert config.forward == Forward(".", (), ("/etc/resolv.conf",), max_concurrent=1000)
    assert config.cache == Cache(ttl=30, zones=(".",), success_ttl=30, denial_ttl=30,
                                 success_disabled=("cluster.local.",), denial_disabled=("cluster.local.",))
    assert config.reload == Reload(30.0, 15.0)
    assert config.hosts is None and config.bind == ()


def test_podnets_own_corefile_matches_kubeadm_without_forward():
    (config,) = load(corefile(ClusterConfig()))
    assert config.kubernetes == KUBEADM_K8S == kubeadm_plugin("cluster.local")
    assert config.forward is None
    assert config.cache == Cache(ttl=30, zones=(".",), success_ttl=30, denial_ttl=30)
    assert (config.health, config.ready, config.prometheus) == (Health(":8080", 5.0), ":8181", ":9153")


def test_syntax_tree_keeps_names_arguments_blocks_and_lines():
    tree = parse(KUBEADM)
    (server,) = tree.servers
    assert server.keys == (".:53",) and tree.source == "Corefile"
    assert server.directives[1] == Directive("health", (), (Directive("lameduck", ("5s",), (), 4),), 3)
    assert [d.name for d in server.directives] == ["errors", "health", "ready", "kubernetes", "prometheus",
                                                   "forward", "cache", "loop", "reload", "loadbalance"]
    assert server.directives[3].args == ("cluster.local", "in-addr.arpa", "ip6.arpa")


@pytest.mark.parametrize("key, zones, port", [
    (".", (".",), 53),  # default port 53
    (".:53", (".",), 53),
    ("dns://.:53", (".",), 53),  # dns:// transport prefix
    ("cluster.local:1053", ("cluster.local.",), 1053),
    ("Example.ORG.", ("example.org.",), 53),  # FQDN, lowercase
    ("a.example b.example:53", ("a.example.", "b.example."), 53),  # several keys
    ("a.example, b.example", ("a.example.", "b.example."), 53),  # comma-separated keys
    (":5353", (".",), 5353),  # no zone: the root
])
def test_server_keys_give_zones_and_port(key, zones, port):
    (server,) = parse(f"{key} {{\n  whoami\n}}").servers
    assert (server.zones, server.port) == (zones, port)


@pytest.mark.parametrize("name, text, rule", [
    ("comment at line end", ". { # a comment }\n whoami # also { here\n}", "whoami"),
    ("comment mid token", ". {\n whoami#comment\n}", "whoami"),
    ("open brace on the next line for a server", ".\n{\n whoami\n}", "whoami"),
    ("CRLF line ends", ".:53 {\r\n whoami\r\n}\r\n", "whoami"),
])
def test_comments_and_layout(name, text, rule):
    (server,) = parse(text).servers
    assert [d.name for d in server.directives] == [rule]


def test_quoted_strings_keep_spaces_braces_and_escaped_quotes():
    (server,) = parse('. {\n log . "{remote} \\"{name}\\" # }"\n hosts {\n  "10.0.0.1" "web.example"\n }\n}').servers
    assert server.directives[0].args == (".", '{remote} "{name}" # }')
    assert server.directives[1].block[0] == Directive("10.0.0.1", ("web.example",), (), 4)


def test_several_server_blocks_each_with_their_own_plugins():
    configs = load("cluster.local:53 {\n kubernetes\n}\n\n.:53 {\n forward . 8.8.8.8\n cache\n}\n"
                   ".:5353 {\n whoami\n}\n")
    assert [(c.zones, c.port, c.line) for c in configs] == [(("cluster.local.",), 53, 1), ((".",), 53, 5),
                                                            ((".",), 5353, 9)]
    assert configs[0].kubernetes.zones == ("cluster.local.",) and configs[0].forward is None
    assert configs[1].forward.upstreams == (("8.8.8.8", 53),) and configs[1].kubernetes is None
    assert configs[2].whoami and configs[2].cache is None


def test_empty_corefile_has_no_servers():
    assert load("# nothing\n\n") == []


# ---------------------------------------------------------------------------------------------
# Plugins: arguments and defaults


@pytest.mark.parametrize("body, field, value", [
    ("errors", "errors", True),
    ("errors stdout", "errors", True),
    ("health", "health", Health(":8080", 0.0)),  # default address :8080, no lameduck
    ("health 127.0.0.1:9000 {\n lameduck 1m30s\n}", "health", Health("127.0.0.1:9000", 90.0)),
    ("health { lameduck 500ms }", "health", Health(":8080", 0.5)),  # a one-line block
    ("ready", "ready", ":8181"),
    ("ready [::1]:8181", "ready", "[::1]:8181"),
    ("prometheus", "prometheus", "localhost:9153"),  # CoreDNS's metrics default listens on localhost
    ("prometheus 0.0.0.0:9253", "prometheus", "0.0.0.0:9253"),
    ("loop", "loop", True),
    ("reload", "reload", Reload(30.0, 15.0)),
    ("reload 1m", "reload", Reload(60.0, 15.0)),
    ("reload 10s 5s", "reload", Reload(10.0, 5.0)),
    ("log", "log", True),
    ("log . {common}", "log", True),
    ("log example.org {\n class denial error\n}", "log", True),
    ("loadbalance", "loadbalance", True),
    ("loadbalance round_robin", "loadbalance", True),
    ("bind 127.0.0.1 ::1\nbind lo", "bind", ("127.0.0.1", "::1", "lo")),  # bind lines add up
    ("cancel", "cancel_seconds", 5.0),
    ("cancel 2s", "cancel_seconds", 2.0),
    ("bufsize", "bufsize", 1232),
    ("bufsize 512", "bufsize", 512),
    ("debug", "debug", True),
    ("whoami", "whoami", True),
    ("any", "any", True),
    ("minimal", "minimal", True),
])
def test_plugin_arguments_and_defaults(body, field, value):
    assert getattr(one(body), field) == value


def test_absent_plugins_are_none_or_false():
    config = one("whoami")
    assert (config.errors, config.loop, config.log, config.loadbalance, config.debug) == (False,) * 5
    assert (config.health, config.ready, config.kubernetes, config.prometheus, config.forward, config.cache,
            config.reload, config.hosts, config.cancel_seconds, config.bufsize) == (None,) * 10


@pytest.mark.parametrize("body, expected", [
    # the plugin's own defaults: zones of the server block, pods disabled, ttl 5, no fallthrough
    ("kubernetes", KubernetesPlugin(zones=("cluster.local.", "10.in-addr.arpa."), pods="disabled", ttl=5,
                                    fallthrough=None)),
    ("kubernetes Cluster.Local {\n pods verified\n ttl 0\n endpoint_pod_names\n fallthrough\n}",
     KubernetesPlugin(zones=("cluster.local.",), pods="verified", ttl=0, fallthrough=(), endpoint_pod_names=True)),
    ("kubernetes c.local {\n ttl 3600\n namespaces a b\n noendpoints\n ignore empty_service\n kubeconfig f\n"
     " labels a=b\n apiserver x\n endpoint https://x\n tls a b c\n}",  # accepted and ignored
     KubernetesPlugin(zones=("c.local.",), pods="disabled", ttl=3600, fallthrough=None)),
])
def test_kubernetes_plugin(body, expected):
    assert one(body, key="cluster.local 10.in-addr.arpa").kubernetes == expected


@pytest.mark.parametrize("body, expected", [
    ("forward . 8.8.8.8 1.1.1.1:5353 dns://9.9.9.9 dns://[2001:db8::1]:54 ::1",
     Forward(".", (("8.8.8.8", 53), ("1.1.1.1", 5353), ("9.9.9.9", 53), ("2001:db8::1", 54), ("::1", 53)))),
    ("forward example.org /etc/resolv.conf ./resolv 10.0.0.1",
     Forward("example.org.", (("10.0.0.1", 53),), ("/etc/resolv.conf", "./resolv"))),
    ("forward . 8.8.8.8 {\n max_concurrent 10\n policy sequential\n health_check 1s\n expire 1m\n force_tcp\n"
     " max_fails 0\n except a.example b.example\n}",
     Forward(".", (("8.8.8.8", 53),), policy="sequential", max_concurrent=10, force_tcp=True, max_fails=0,
             expire_seconds=60.0, health_check_seconds=1.0, except_zones=("a.example.", "b.example."))),
    ("forward . 8.8.8.8 {\n prefer_udp\n policy round_robin\n}",
     Forward(".", (("8.8.8.8", 53),), policy="round_robin", prefer_udp=True)),
])
def test_forward_plugin(body, expected):
    assert one(body).forward == expected


@pytest.mark.parametrize("body, expected", [
    ("cache", Cache(ttl=3600, zones=("example.org.",))),  # 3600 success, 1800 denial, caps 9984
    ("cache 30 a.example", Cache(ttl=30, zones=("a.example.",), success_ttl=30, denial_ttl=30)),
    ("cache . {\n success 5000 60 10\n denial 100\n prefetch 10 1m 10%\n serve_stale 1h verify\n keepttl\n}",
     Cache(zones=(".",), success_cap=5000, success_ttl=60, success_minttl=10, denial_cap=100, prefetch=10,
           serve_stale_seconds=3600.0, keepttl=True)),
    ("cache {\n serve_stale\n disable denial\n}", Cache(zones=("example.org.",), serve_stale_seconds=3600.0,
                                                          denial_disabled=("example.org.",))),
])
def test_cache_plugin(body, expected):
    assert one(body, key="example.org").cache == expected


@pytest.mark.parametrize("body, expected", [
    ("hosts", Hosts((), None, zones=("example.org.",))),  # ttl 3600, reverse on, no fallthrough
    ("hosts /etc/hosts.extra a.example {\n 10.0.0.1 web.a.example WWW.a.example\n fd00::1 v6.a.example\n"
     " ttl 60\n no_reverse\n reload 0\n fallthrough\n}",
     Hosts((("10.0.0.1", ("web.a.example.", "www.a.example.")), ("fd00::1", ("v6.a.example.",))),
           "/etc/hosts.extra", ttl=60, reverse=False, fallthrough=(), zones=("a.example.",), reload_seconds=0.0)),
])
def test_hosts_plugin(body, expected):
    assert one(body, key="example.org").hosts == expected


@pytest.mark.parametrize("text, seconds", [
    ("0", 0.0), ("5s", 5.0), ("1m30s", 90.0), ("500ms", 0.5), ("1.5h", 5400.0), ("2h45m", 9900.0),
    ("100us", 1e-4), ("1µs", 1e-6), ("10ns", 1e-8),
])
def test_duration_is_gos_parse_duration(text, seconds):
    assert duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "-5s", "5 s", "5d", "1m30", "1.2.3s"])
def test_duration_rejects(text):
    with pytest.raises(ValueError):
        duration(text)


@pytest.mark.parametrize("addr, expected", [
    (":8080", ("", 8080)), ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::]:9153", ("::", 9153)),
    ("localhost", ("localhost", 1)), ("::1", ("::1", 1)), ("[::1]", ("::1", 1)),
])
def test_address_port(addr, expected):
    assert address_port(addr, 1) == expected


@pytest.mark.parametrize("addr", [":0", ":65536", ":http", "[::1", "[::1]x"])
def test_address_port_rejects(addr):
    with pytest.raises(ValueError):
        address_port(addr, 53)


# ---------------------------------------------------------------------------------------------
# Errors: exactly one, naming the line


@pytest.mark.parametrize("text, message", [
    ("# header\n.:53 {\n    errors\n    kuberntes\n}", "Corefile:4: unknown plugin 'kuberntes'"),
    (".:53 {\n errors\n}\n}\n", "Corefile:4: unexpected '}'"),  # a close without an open
    (".:53 {\n errors\n health {\n  lameduck 5s\n", "Corefile:4: missing '}' for the block opened at line 3"),
    (".:53 {\n errors\n", "Corefile:2: missing '}' for the block opened at line 1"),
    (".:53\n errors\n", "Corefile:2: expected '{' after the server keys of line 1"),
    (".:53", "Corefile:1: expected '{' after the server keys"),
    ("{\n}", "Corefile:1: unexpected '{': a server block starts with its zones"),
    (". {\n health\n {\n lameduck 5s\n }\n}", "Corefile:3: unexpected '{': a block opens on the line of its directive"),
    ('. {\n log "unterminated\n}\n', "Corefile:2: unterminated quoted string"),
    (". {\n cache x\n}", "Corefile:2: cache: TTL must be a positive integer, got 'x'"),
    (". {\n cache 0\n}", "Corefile:2: cache: TTL must be a positive integer, got '0'"),
    (". {\n cache 30s\n}", "Corefile:2: cache: TTL must be a positive integer, got '30s'"),
    (". {\n cache {\n  success 0\n }\n}", "Corefile:3: cache: success capacity must be a positive integer, got '0'"),
    (". {\n cache {\n  prefetch\n }\n}", "Corefile:3: cache: prefetch takes AMOUNT [[DURATION] [PERCENTAGE%]]"),
    (". {\n cache {\n  disable all\n }\n}", "Corefile:3: cache: disable takes success or denial, then zones"),
    (". {\n health {\n  lameduck\n }\n}", "Corefile:3: health: lameduck takes 1 argument, got 0"),
    (". {\n health {\n  lameduck 5\n }\n}",
     "Corefile:3: health: lameduck must be a duration such as 5s or 1m30s, got '5'"),
    (". {\n reload 1x\n}", "Corefile:2: reload: interval must be a duration such as 5s or 1m30s, got '1x'"),
    (". {\n reload 1s\n}", "Corefile:2: reload: interval must be at least 2s, got '1s'"),
    (". {\n reload 10s 500ms\n}", "Corefile:2: reload: jitter must be at least 1s, got '500ms'"),
    (". {\n reload 10s 6s\n}", "Corefile:2: reload: jitter must not be more than half the interval"),
    (". {\n errors\n cache\n loop\n cache 30\n}",
     "Corefile:5: plugin cache: this plugin can only be used once per Server Block"),
    (". {\n hosts\n hosts\n}", "Corefile:3: plugin hosts: this plugin can only be used once per Server Block"),
    (". {\n forward . 1.1.1.1\n forward . 8.8.8.8\n}",
     "Corefile:3: plugin forward: this plugin can only be used once per Server Block"),
    (". {\n kubernetes {\n  pods secure\n }\n}",
     "Corefile:3: kubernetes: pods must be disabled, insecure or verified, got 'secure'"),
    (". {\n kubernetes {\n  ttl 3601\n }\n}", "Corefile:3: kubernetes: ttl must be an integer in 0..3600, got '3601'"),
    (". {\n kubernetes {\n  podz insecure\n }\n}", "Corefile:3: kubernetes: unknown property 'podz'"),
    (". {\n forward .\n}", "Corefile:2: forward: needs FROM and at least one upstream (TO)"),
    (". {\n forward\n}", "Corefile:2: forward: needs FROM and TO..."),
    (". {\n forward . dns.google\n}", "Corefile:2: forward: not an IP address or file: 'dns.google'"),
    (". {\n forward . 8.8.8.8:99999\n}", "Corefile:2: forward: not an IP address or file: '8.8.8.8:99999'"),
    (". {\n forward . tls://1.1.1.1\n}", "Corefile:2: forward: only plain DNS upstreams are supported, got 'tls://1.1.1.1'"),
    (". {\n forward . 1.1.1.1 {\n  policy fastest\n }\n}",
     "Corefile:3: forward: policy must be random, round_robin or sequential, got 'fastest'"),
    (". {\n forward . 1.1.1.1 {\n  force_tcp\n  prefer_udp\n }\n}",
     "Corefile:2: forward: force_tcp and prefer_udp are mutually exclusive"),
    (". {\n hosts {\n  10.0.0.1\n }\n}", "Corefile:3: hosts: inline entry for 10.0.0.1 needs host names"),
    (". {\n hosts {\n  webserver 10.0.0.1\n }\n}", "Corefile:3: hosts: unknown property 'webserver'"),
    (". {\n hosts {\n  ttl 0\n }\n}", "Corefile:3: hosts: ttl must be an integer in 1..65535, got '0'"),
    (". {\n health :80 :81\n}", "Corefile:2: health: takes at most 1 argument, got 2"),
    (". {\n ready :http\n}", "Corefile:2: ready: bad port 'http' in address ':http'"),
    (". {\n loop now\n}", "Corefile:2: loop: takes no arguments, got 1"),
    (". {\n loop {\n  x\n }\n}", "Corefile:3: loop: takes no block"),
    (". {\n loadbalance weighted\n}", "Corefile:2: loadbalance: only round_robin is supported, got 'weighted'"),
    (". {\n bufsize 100\n}", "Corefile:2: bufsize: size must be an integer in 512..4096, got '100'"),
    (". {\n bind\n}", "Corefile:2: bind: needs at least one address or interface"),
    (". {\n log {\n  class everything\n }\n}",
     "Corefile:3: log: class must be all, denial, error or success, got 'everything'"),
    (". {\n errors /var/log/errors\n}", "Corefile:2: errors: errors are written to stdout only, got '/var/log/errors'"),
    (".:53a {\n}", "Corefile:1: bad port '53a' in server key '.:53a'"),
    (".:" + "9" * 5000 + " {\n}", "Corefile:1: bad port '" + "9" * 5000 + "' in server key '.:" + "9" * 5000 + "'"),
    (".:0 {\n}", "Corefile:1: bad port '0' in server key '.:0'"),
    ("\n\nexample.org:70000 {\n}", "Corefile:3: bad port '70000' in server key 'example.org:70000'"),
    ("a.example:53 a.example:54 {\n}", "Corefile:1: the keys of one server block must share a port, got [53, 54]"),
    ("tls://.:853 {\n}", "Corefile:1: transport tls:// is not supported in server key 'tls://.:853'"),
    ("10.0.0.0/8 {\n}", "Corefile:1: reverse zones from a CIDR are not supported: '10.0.0.0/8'"),
    ("bad..zone {\n}", "Corefile:1: bad zone in server key 'bad..zone': 'bad..zone' is not a domain name"),
    (".:53 {\n}\n\n.:53 {\n}", "Corefile:4: zone . on port 53 is already served by the block at line 1"),
    (". {\n import common\n}", "Corefile:2: import is not supported"),
    ("import snippets/*\n", "Corefile:1: import is not supported"),
    (". {\n bind {$BIND_ADDR}\n}", "Corefile:2: environment substitution is not supported: '{$BIND_ADDR}'"),
])
def test_errors_name_the_line(text, message):
    assert error(text) == message


def test_error_carries_source_and_line():
    with pytest.raises(CorefileError) as info:
        load(". {\n\n kuberntes\n}", source="kube-system/coredns")
    assert str(info.value) == "kube-system/coredns:3: unknown plugin 'kuberntes'"
    assert (info.value.source, info.value.line, info.value.what) == ("kube-system/coredns", 3,
                                                                      "unknown plugin 'kuberntes'")
    assert isinstance(info.value, ValueError)


def test_server_config_of_a_parsed_block():
    (block,) = parse("example.org:1053 {\n whoami\n}").servers
    assert server_config(block).zones == ("example.org.",) and server_config(block).port == 1053


_WORDS = st.sampled_from(["{", "}", "\n", " ", "#", '"', ".:53", ".", "cache", "30", "x", "kubernetes", "pods",
                          "insecure", "forward", "1.1.1.1", "/etc/resolv.conf", "health", "lameduck", "5s",
                          "import", "{$X}", "ttl", "hosts", "10.0.0.1", "reload", "bind", "log", "\\", ":99999"])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_WORDS, max_size=40).map("".join),
                 st.lists(_WORDS, max_size=40).map(" ".join)))
def test_random_text_raises_only_corefile_errors(text):
    try:
        load(text)
    except CorefileError as e:
        assert str(e).startswith("Corefile:")
