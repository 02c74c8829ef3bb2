"""The simulator and the DNS server read one Corefile the same way.

The cluster's Corefile is the kube-system/coredns ConfigMap. The server (podnet.dns, as it runs
in the DNS pods) reads it through ControlSocketState and answers through its server blocks; the
simulator (semantics ClusterDNS, what `podnet dig -f` asks) predicts those answers from the same
ConfigMap. Each case is a Corefile where the two once disagreed: both are built from it and must
give the same configuration, the same answers, or the same refusal to start.
"""

from __future__ import annotations

import argparse
import asyncio
import textwrap

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from podnet.cli import dig
from podnet.dns.server import ControlSocketState, DnsServer
from podnet.errors import PodnetError
from podnet.semantics.corefile import CorefileError
from podnet.semantics.dns import ClusterDNS, dns_view
from tests.conftest import cluster_of

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.50, ports: [{name: http, port: 80}]}
"""


def with_corefile(corefile: str) -> str:
    body = textwrap.indent(textwrap.dedent(corefile).strip() + "\n", " " * 4)
    return f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: coredns, namespace: kube-system}}
data:
  Corefile: |
{body}---
{SERVICE}"""


def cluster_with(corefile: str):
    return cluster_of(with_corefile(corefile))


def running_server(cluster) -> DnsServer:
    """The server as a DNS pod runs it: the Corefile from the ConfigMap of the live state."""
    state = ControlSocketState("/nonexistent")  # never polled: the state is set here
    state.cluster = dns_view(cluster)
    server = DnsServer(state)
    server.configure(state.corefile())
    return server


def served(server: DnsServer, name: str, qtype: str, port: int | None = None) -> tuple:
    """The answer of the server's blocks on `port` (53 when it has blocks there: the port the
    kube-dns Service sends pods to; else its only one)."""
    query = dns.message.make_query(name, qtype)
    port = port or (53 if 53 in server.blocks else next(iter(server.blocks)))
    out = asyncio.run(server.answer(query.to_wire(), port, False, ("10.244.1.5", 4242)))
    return as_sets(dns.message.from_wire(out))


def predicted(cluster, name: str, qtype: str) -> tuple:
    answer = ClusterDNS(cluster).answer(name, qtype)
    return as_sets(answer.to_message(dns.message.make_query(name, qtype)))


def as_sets(response: dns.message.Message) -> tuple:
    def section(rrsets):
        return {(r.name.to_text().lower(), dns.rdatatype.to_text(r.rdtype), r.ttl, rd.to_text().lower())
                for r in rrsets for rd in r}
    return (dns.rcode.to_text(response.rcode()), bool(response.flags & dns.flags.AA),
            section(response.answer), section(response.authority))


def dig_json(tmp_path, *argv: str) -> int:
    path = tmp_path / "cluster.yaml"
    parser = argparse.ArgumentParser()
    dig.add_parser(parser.add_subparsers(dest="command"))
    return dig.run(parser.parse_args(["dig", *argv, "-o", "json", "-f", str(path)]))


# --- the zones come from the server block's keys when the kubernetes line names none

ZONE_FROM_KEY = """
example.org:53 {
    errors
    kubernetes {
       ttl 7
    }
}
"""


def test_zone_from_the_server_block_key_is_what_both_serve():
    cluster = cluster_with(ZONE_FROM_KEY)
    server = running_server(cluster)
    [[block]] = server.blocks.values()
    assert ClusterDNS(cluster).plugin == block.config.kubernetes
    assert ClusterDNS(cluster).plugin.zones == ("example.org.",)


@pytest.mark.parametrize("name,qtype,rcode", [
    ("web.default.svc.example.org.", "A", "NOERROR"),  # the zone of the key
    ("nope.default.svc.example.org.", "A", "NXDOMAIN"),
    ("example.org.", "SOA", "NOERROR"),
    ("web.default.svc.cluster.local.", "A", "REFUSED"),  # no server block serves cluster.local
    ("50.0.96.10.in-addr.arpa.", "PTR", "REFUSED"),
])
def test_zone_from_the_server_block_key_answers_agree(name, qtype, rcode):
    cluster = cluster_with(ZONE_FROM_KEY)
    got = served(running_server(cluster), name, qtype)
    assert got == predicted(cluster, name, qtype)
    assert got[0] == rcode


def test_dig_predicts_the_zone_of_the_server_block_key(tmp_path, capsys):
    (tmp_path / "cluster.yaml").write_text(with_corefile(ZONE_FROM_KEY))
    assert dig_json(tmp_path, "web.default.svc.example.org") == 0
    out = capsys.readouterr().out
    assert '"rcode": "NOERROR"' in out and '"data": "10.96.0.50"' in out and '"ttl": 7' in out
    assert dig_json(tmp_path, "web.default.svc.cluster.local") == 0
    assert '"rcode": "REFUSED"' in capsys.readouterr().out


def test_a_second_block_on_the_port_is_served_too():
    cluster = cluster_with("""
        example.org:53 {
            kubernetes
        }
        .:53 {
            errors
        }
    """)
    name = "web.default.svc.cluster.local."
    assert served(running_server(cluster), name, "A") == predicted(cluster, name, "A")
    assert predicted(cluster, name, "A")[0] == "SERVFAIL"  # matched by `.`, answered by no plugin


# --- several server blocks: each name goes to the block with the most specific zone holding it

SEVERAL_BLOCKS = {
    "a kubernetes block per zone, each its own ttl": """
        cluster.local:53 {
            kubernetes cluster.local {
               ttl 7
            }
        }
        .:53 {
            kubernetes cluster.local in-addr.arpa ip6.arpa {
               ttl 9
            }
        }
    """,
    "a second kubernetes block for another zone": """
        .:53 {
            kubernetes cluster.local in-addr.arpa ip6.arpa
        }
        example.org:53 {
            kubernetes example.org
        }
    """,
    "a more specific block without a kubernetes plugin": """
        .:53 {
            kubernetes cluster.local in-addr.arpa ip6.arpa
        }
        svc.cluster.local:53 {
            errors
        }
    """,
    "the kubernetes plugin on a port pods do not reach": """
        .:5353 {
            kubernetes cluster.local
        }
        .:53 {
            errors
        }
    """,
    "a block whose longest zone is longer but does not hold the name": """
        verylongzone.example.com:53 local:53 {
            errors
        }
        cluster.local:53 {
            kubernetes cluster.local
        }
    """,
}
SEVERAL_BLOCK_QUESTIONS = [("web.default.svc.cluster.local.", "A"), ("50.0.96.10.in-addr.arpa.", "PTR"),
                           ("web.default.svc.example.org.", "A"), ("cluster.local.", "SOA"), ("local.", "SOA")]


@pytest.mark.parametrize("corefile", SEVERAL_BLOCKS.values(), ids=SEVERAL_BLOCKS.keys())
@pytest.mark.parametrize("name,qtype", SEVERAL_BLOCK_QUESTIONS)
def test_several_server_blocks_choose_alike(corefile, name, qtype):
    cluster = cluster_with(corefile)
    assert served(running_server(cluster), name, qtype) == predicted(cluster, name, qtype)


def test_the_most_specific_block_answers_with_its_own_plugin():
    cluster = cluster_with(SEVERAL_BLOCKS["a kubernetes block per zone, each its own ttl"])
    by_name = {name: predicted(cluster, name, qtype) for name, qtype in SEVERAL_BLOCK_QUESTIONS[:2]}
    assert {ttl for _, _, ttl, _ in by_name["web.default.svc.cluster.local."][2]} == {7}
    assert {ttl for _, _, ttl, _ in by_name["50.0.96.10.in-addr.arpa."][2]} == {9}
    assert predicted(cluster_with(SEVERAL_BLOCKS["a block whose longest zone is longer but does not hold the name"]),
                     "web.default.svc.cluster.local.", "A")[0] == "NOERROR"


# --- no kubernetes block: the server has no cluster names to give

@pytest.mark.parametrize("corefile,name,rcode", [
    (".:53 {\n    errors\n}", "web.default.svc.cluster.local.", "SERVFAIL"),  # the chain ends
    (".:53 {\n    errors\n}", "50.0.96.10.in-addr.arpa.", "SERVFAIL"),
    ("example.org:53 {\n    errors\n}", "web.default.svc.cluster.local.", "REFUSED"),  # no block serves it
])
def test_without_a_kubernetes_block_neither_answers_cluster_names(corefile, name, rcode):
    cluster = cluster_with(corefile)
    got = served(running_server(cluster), name, "A")
    assert got == predicted(cluster, name, "A")
    assert got[0] == rcode
    assert ClusterDNS(cluster).hosts() == []


# --- ttl: 0..3600, anything else stops CoreDNS from starting (plugin/kubernetes setup.go)

@pytest.mark.parametrize("ttl", ["0", "3600"])
def test_a_ttl_in_range_is_the_ttl_of_both(ttl):
    cluster = cluster_with(f"""
        .:53 {{
            kubernetes cluster.local {{
               ttl {ttl}
            }}
        }}
    """)
    name = "web.default.svc.cluster.local."
    got = served(running_server(cluster), name, "A")
    assert got == predicted(cluster, name, "A")
    assert {ttl_ for _, _, ttl_, _ in got[2]} == {int(ttl)}


@pytest.mark.parametrize("ttl", ["4000", "-1", "30s"])
def test_a_ttl_out_of_range_stops_the_server_and_the_prediction(tmp_path, ttl):
    corefile = f"""
        .:53 {{
            kubernetes cluster.local {{
               ttl {ttl}
            }}
        }}
    """
    cluster = cluster_with(corefile)
    with pytest.raises(CorefileError) as server_error:
        running_server(cluster)
    with pytest.raises(CorefileError) as sim_error:
        ClusterDNS(cluster)
    assert server_error.value.what == sim_error.value.what
    assert (server_error.value.line, sim_error.value.line) == (3, 3)
    assert f"ttl must be an integer in 0..3600, got '{ttl}'" in str(sim_error.value)
    (tmp_path / "cluster.yaml").write_text(with_corefile(corefile))
    with pytest.raises(PodnetError, match="configmap kube-system/coredns: Corefile:3: kubernetes: ttl must be"):
        dig_json(tmp_path, "web.default.svc.cluster.local")
