"""The cluster DNS, case by case, as the Kubernetes DNS specification 1.1.0 and CoreDNS's kubernetes
plugin (kubeadm's Corefile) define it; pods' resolv.conf as kubelet writes it; glibc's search list.

Expected records are zone-file lines. `{ip:NS/POD}` is that pod's address, `{dash:NS/POD}` the
same with dashes (an endpoint's name when it has no hostname), `{serial}` the SOA serial.
Multi-record answers are compared as sets (kubeadm's `loadbalance` plugin shuffles them).
"""

from __future__ import annotations

import argparse
import gc
import json
import re

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from podnet.cli import dig
from podnet.errors import UsageError
from podnet.semantics.dns import DNS_KINDS, ClusterDNS, DnsAnswer, Record, ResolvConf, dns_view, resolv_conf
from tests.conftest import cluster_of

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"

CLUSTER = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: web}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: data}}
---
# web/api: a ClusterIP Service with two named ports in front of pod api-a
apiVersion: v1
kind: Pod
metadata: {{name: api-a, namespace: web, labels: {{app: api}}}}
spec:
  containers:
  - name: app
    image: {AGNHOST}
    args: [netexec, --http-port=8080]
    ports: [{{name: http, containerPort: 8080}}, {{name: dns, containerPort: 5353, protocol: UDP}}]
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: web}}
spec:
  clusterIP: 10.96.10.10
  selector: {{app: api}}
  ports:
  - {{name: http, port: 80, targetPort: http}}
  - {{name: dns, port: 53, targetPort: dns, protocol: UDP}}
---
# web/plain: the same pod behind one unnamed port
apiVersion: v1
kind: Service
metadata: {{name: plain, namespace: web}}
spec:
  clusterIP: 10.96.10.11
  selector: {{app: api}}
  ports: [{{port: 8080}}]
---
# data/redis: a StatefulSet and its headless governing Service (pods get hostnames)
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: redis, namespace: data}}
spec:
  serviceName: redis
  replicas: 2
  selector: {{matchLabels: {{app: redis}}}}
  template:
    metadata: {{labels: {{app: redis}}}}
    spec:
      containers:
      - name: redis
        image: redis:7.2
        ports: [{{name: redis, containerPort: 6379}}]
---
apiVersion: v1
kind: Service
metadata: {{name: redis, namespace: data}}
spec:
  clusterIP: None
  selector: {{app: redis}}
  ports: [{{name: redis, port: 6379}}]
---
# data/cache: a headless Service over pods without hostnames
apiVersion: v1
kind: Pod
metadata: {{name: cache-a, namespace: data, labels: {{app: cache}}}}
spec:
  containers: [{{name: memcached, image: memcached:1.6, ports: [{{name: memcache, containerPort: 11211}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: cache-b, namespace: data, labels: {{app: cache}}}}
spec:
  containers: [{{name: memcached, image: memcached:1.6, ports: [{{name: memcache, containerPort: 11211}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: cache, namespace: data}}
spec:
  clusterIP: None
  selector: {{app: cache}}
  ports: [{{name: memcache, port: 11211, targetPort: memcache}}]
---
# data/warming: a pod whose readiness gate is not open, behind two headless Services
apiVersion: v1
kind: Pod
metadata: {{name: warm-a, namespace: data, labels: {{app: warm}}}}
spec:
  readinessGates: [{{conditionType: example.com/warmed-up}}]
  containers: [{{name: app, image: {AGNHOST}, args: [netexec], ports: [{{name: http, containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: warming, namespace: data}}
spec:
  clusterIP: None
  selector: {{app: warm}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: warming-all, namespace: data}}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector: {{app: warm}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
# ExternalName Services: a name outside, a name inside the cluster zone, an IP literal
apiVersion: v1
kind: Service
metadata: {{name: billing, namespace: web}}
spec: {{type: ExternalName, externalName: billing.example.com}}
---
apiVersion: v1
kind: Service
metadata: {{name: alias, namespace: web}}
spec: {{type: ExternalName, externalName: api.web.svc.cluster.local}}
---
apiVersion: v1
kind: Service
metadata: {{name: literal, namespace: web}}
spec: {{type: ExternalName, externalName: 10.1.2.3}}
---
# clients, one per dnsPolicy
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: data}}
spec:
  containers: [{{name: c, image: busybox:1.36, command: [sleep, infinity]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: hostnet, namespace: web}}
spec:
  hostNetwork: true
  containers: [{{name: c, image: busybox:1.36, command: [sleep, infinity]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: hostnet-cluster, namespace: web}}
spec:
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  containers: [{{name: c, image: busybox:1.36, command: [sleep, infinity]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: node-dns, namespace: web}}
spec:
  dnsPolicy: Default
  containers: [{{name: c, image: busybox:1.36, command: [sleep, infinity]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: custom, namespace: web}}
spec:
  dnsPolicy: "None"
  dnsConfig:
    nameservers: [192.0.2.1]
    searches: [ns1.svc.cluster-domain.example, my.dns.search.suffix]
    options: [{{name: ndots, value: "2"}}, {{name: edns0}}]
  containers: [{{name: c, image: busybox:1.36, command: [sleep, infinity]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: tuned, namespace: web}}
spec:
  dnsConfig:
    searches: [extra.example]
    options: [{{name: ndots, value: "2"}}, {{name: edns0}}]
  containers: [{{name: c, image: busybox:1.36, command: [sleep, infinity]}}]
"""


@pytest.fixture(scope="module")
def cluster():
    return cluster_of(CLUSTER)


@pytest.fixture(scope="module")
def server(cluster):
    return ClusterDNS(cluster)


def expand(line: str, cluster, server) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "{serial}":
            return str(server.serial)
        ns, name = m.group(2).split("/")
        ip = cluster.get("Pod", ns, name).status["podIP"]
        return ip if m.group(1) == "ip" else ip.replace(".", "-")

    return re.sub(r"\{(ip|dash):([^}]+)\}|\{serial\}", sub, line)


def lines(records) -> set[str]:
    return {r.text() for r in records}


SOA = "cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. {serial} 7200 1800 86400 30"
Z = "svc.cluster.local."

# (rule, qname, qtype, rcode, answer lines, additional lines or None to skip the check)
ANSWERS = [
    # --- Services with a ClusterIP (spec 2.3)
    ("clusterip_service_has_an_a_record_for_its_cluster_ip",
     f"api.web.{Z}", "A", "NOERROR", [f"api.web.{Z} 30 IN A 10.96.10.10"], []),
    ("kubernetes_service_is_at_the_first_service_address",
     f"kubernetes.default.{Z}", "A", "NOERROR", [f"kubernetes.default.{Z} 30 IN A 10.96.0.1"], []),
    ("two_ports_still_give_one_a_record",
     f"api.web.{Z}", "A", "NOERROR", [f"api.web.{Z} 30 IN A 10.96.10.10"], []),
    ("srv_for_a_named_port_targets_the_service_name_with_its_a_record_additional",
     f"_http._tcp.api.web.{Z}", "SRV", "NOERROR",
     [f"_http._tcp.api.web.{Z} 30 IN SRV 0 100 80 api.web.{Z}"], [f"api.web.{Z} 30 IN A 10.96.10.10"]),
    ("srv_protocol_label_selects_the_udp_port",
     f"_dns._udp.api.web.{Z}", "SRV", "NOERROR",
     [f"_dns._udp.api.web.{Z} 30 IN SRV 0 100 53 api.web.{Z}"], [f"api.web.{Z} 30 IN A 10.96.10.10"]),
    ("srv_with_the_wrong_protocol_does_not_exist",
     f"_http._udp.api.web.{Z}", "SRV", "NXDOMAIN", [], []),
    ("srv_without_port_labels_lists_every_port_weight_split_evenly",
     f"api.web.{Z}", "SRV", "NOERROR",
     [f"api.web.{Z} 30 IN SRV 0 50 80 api.web.{Z}", f"api.web.{Z} 30 IN SRV 0 50 53 api.web.{Z}"],
     [f"api.web.{Z} 30 IN A 10.96.10.10"]),
    ("unnamed_port_has_no_named_srv_record",
     f"_http._tcp.plain.web.{Z}", "SRV", "NXDOMAIN", [], []),
    ("unnamed_port_appears_only_in_the_portless_srv_query",
     f"plain.web.{Z}", "SRV", "NOERROR", [f"plain.web.{Z} 30 IN SRV 0 100 8080 plain.web.{Z}"], None),
    ("srv_owner_name_answers_a_with_the_cluster_ip_coredns",
     f"_http._tcp.api.web.{Z}", "A", "NOERROR", [f"_http._tcp.api.web.{Z} 30 IN A 10.96.10.10"], []),
    ("endpoint_name_under_a_clusterip_service_is_the_pod_address_coredns",
     f"{{dash:web/api-a}}.api.web.{Z}", "A", "NOERROR", [f"{{dash:web/api-a}}.api.web.{Z} 30 IN A {{ip:web/api-a}}"], []),
    ("clusterip_ptr_names_the_service",
     "10.10.96.10.in-addr.arpa.", "PTR", "NOERROR", [f"10.10.96.10.in-addr.arpa. 30 IN PTR api.web.{Z}"], []),
    # --- headless Services (spec 2.4)
    ("headless_service_has_one_a_per_ready_endpoint",
     f"redis.data.{Z}", "A", "NOERROR",
     [f"redis.data.{Z} 30 IN A {{ip:data/redis-0}}", f"redis.data.{Z} 30 IN A {{ip:data/redis-1}}"], []),
    ("statefulset_pod_hostname_has_its_own_a_record",
     f"redis-0.redis.data.{Z}", "A", "NOERROR", [f"redis-0.redis.data.{Z} 30 IN A {{ip:data/redis-0}}"], []),
    ("headless_srv_one_per_endpoint_targeting_its_hostname_with_a_records_additional",
     f"_redis._tcp.redis.data.{Z}", "SRV", "NOERROR",
     [f"_redis._tcp.redis.data.{Z} 30 IN SRV 0 50 6379 redis-0.redis.data.{Z}",
      f"_redis._tcp.redis.data.{Z} 30 IN SRV 0 50 6379 redis-1.redis.data.{Z}"],
     [f"redis-0.redis.data.{Z} 30 IN A {{ip:data/redis-0}}", f"redis-1.redis.data.{Z} 30 IN A {{ip:data/redis-1}}"]),
    ("headless_without_hostnames_srv_targets_the_dashed_ip",
     f"_memcache._tcp.cache.data.{Z}", "SRV", "NOERROR",
     [f"_memcache._tcp.cache.data.{Z} 30 IN SRV 0 50 11211 {{dash:data/cache-a}}.cache.data.{Z}",
      f"_memcache._tcp.cache.data.{Z} 30 IN SRV 0 50 11211 {{dash:data/cache-b}}.cache.data.{Z}"],
     [f"{{dash:data/cache-a}}.cache.data.{Z} 30 IN A {{ip:data/cache-a}}",
      f"{{dash:data/cache-b}}.cache.data.{Z} 30 IN A {{ip:data/cache-b}}"]),
    ("headless_without_hostnames_a_record_set",
     f"cache.data.{Z}", "A", "NOERROR",
     [f"cache.data.{Z} 30 IN A {{ip:data/cache-a}}", f"cache.data.{Z} 30 IN A {{ip:data/cache-b}}"], []),
    ("dashed_ip_endpoint_name_resolves",
     f"{{dash:data/cache-b}}.cache.data.{Z}", "A", "NOERROR",
     [f"{{dash:data/cache-b}}.cache.data.{Z} 30 IN A {{ip:data/cache-b}}"], []),
    ("not_ready_endpoints_are_not_published_nxdomain",
     f"warming.data.{Z}", "A", "NXDOMAIN", [], []),
    ("publish_not_ready_addresses_publishes_every_endpoint",
     f"warming-all.data.{Z}", "A", "NOERROR", [f"warming-all.data.{Z} 30 IN A {{ip:data/warm-a}}"], []),
    ("headless_endpoint_ptr_names_hostname_service_namespace",
     "{rev:data/redis-1}", "PTR", "NOERROR", [f"{{rev:data/redis-1}} 30 IN PTR redis-1.redis.data.{Z}"], []),
    ("endpoint_ptr_one_per_service_selecting_the_pod",
     "{rev:web/api-a}", "PTR", "NOERROR",
     [f"{{rev:web/api-a}} 30 IN PTR {{dash:web/api-a}}.api.web.{Z}",
      f"{{rev:web/api-a}} 30 IN PTR {{dash:web/api-a}}.plain.web.{Z}"], []),
    # --- ExternalName (spec 2.5)
    ("externalname_a_query_gets_the_cname_alone_without_upstream",
     f"billing.web.{Z}", "A", "NOERROR", [f"billing.web.{Z} 30 IN CNAME billing.example.com."], []),
    ("externalname_cname_query",
     f"billing.web.{Z}", "CNAME", "NOERROR", [f"billing.web.{Z} 30 IN CNAME billing.example.com."], []),
    ("externalname_inside_the_zone_is_chased",
     f"alias.web.{Z}", "A", "NOERROR",
     [f"alias.web.{Z} 30 IN CNAME api.web.{Z}", f"api.web.{Z} 30 IN A 10.96.10.10"], []),
    ("externalname_ip_literal_has_no_record_coredns",
     f"literal.web.{Z}", "A", "NXDOMAIN", [], []),
    ("externalname_has_no_srv",
     f"billing.web.{Z}", "SRV", "NOERROR", [], []),
    # port and protocol labels (or an endpoint label) in front of an ExternalName: no such name,
    # whatever the type (CoreDNS findServices skips ExternalName Services for them)
    ("externalname_with_port_and_protocol_labels_is_nxdomain",
     f"_http._tcp.billing.web.{Z}", "A", "NXDOMAIN", [], []),
    ("externalname_with_port_and_protocol_labels_has_no_cname",
     f"_http._tcp.billing.web.{Z}", "CNAME", "NXDOMAIN", [], []),
    ("externalname_with_port_and_protocol_labels_has_no_srv",
     f"_http._tcp.billing.web.{Z}", "SRV", "NXDOMAIN", [], []),
    ("externalname_in_the_zone_with_port_labels_is_not_chased",
     f"_http._tcp.alias.web.{Z}", "A", "NXDOMAIN", [], []),
    ("externalname_with_an_endpoint_label_is_nxdomain",
     f"x.billing.web.{Z}", "CNAME", "NXDOMAIN", [], []),
    # --- pod records, pods insecure
    ("pods_insecure_answers_any_dashed_ip_in_an_existing_namespace",
     "1-2-3-4.data.pod.cluster.local.", "A", "NOERROR", ["1-2-3-4.data.pod.cluster.local. 30 IN A 1.2.3.4"], []),
    ("pod_record_of_a_real_pod",
     "{dash:data/client}.data.pod.cluster.local.", "A", "NOERROR",
     ["{dash:data/client}.data.pod.cluster.local. 30 IN A {ip:data/client}"], []),
    ("pod_record_in_a_missing_namespace_is_nxdomain",
     "1-2-3-4.nope.pod.cluster.local.", "A", "NXDOMAIN", [], []),
    ("pod_label_that_is_not_an_ip_is_nxdomain",
     "client.data.pod.cluster.local.", "A", "NXDOMAIN", [], []),
    # --- schema version (spec 2.2)
    ("dns_version_txt_is_the_schema_version",
     "dns-version.cluster.local.", "TXT", "NOERROR", ['dns-version.cluster.local. 28800 IN TXT "1.1.0"'], []),
    # --- NODATA vs NXDOMAIN
    ("aaaa_for_an_ipv4_service_is_nodata",
     f"api.web.{Z}", "AAAA", "NOERROR", [], []),
    ("aaaa_for_a_headless_service_is_nodata",
     f"redis.data.{Z}", "AAAA", "NOERROR", [], []),
    ("other_type_on_an_existing_name_is_nodata",
     f"api.web.{Z}", "MX", "NOERROR", [], []),
    ("txt_on_an_existing_name_is_nodata",
     f"api.web.{Z}", "TXT", "NOERROR", [], []),
    ("namespace_subtree_is_nodata_when_the_namespace_exists",
     f"data.{Z}", "A", "NOERROR", [], []),
    ("namespace_subtree_is_nxdomain_when_it_does_not",
     f"nope.{Z}", "A", "NXDOMAIN", [], []),
    ("svc_subtree_is_nodata", Z, "A", "NOERROR", [], []),
    ("pod_subtree_is_nodata", "pod.cluster.local.", "A", "NOERROR", [], []),
    ("namespace_pod_subtree_is_nodata", "data.pod.cluster.local.", "A", "NOERROR", [], []),
    ("zone_apex_a_is_nodata", "cluster.local.", "A", "NOERROR", [], []),
    ("missing_service_is_nxdomain", f"nope.web.{Z}", "A", "NXDOMAIN", [], []),
    ("missing_endpoint_is_nxdomain", f"redis-9.redis.data.{Z}", "A", "NXDOMAIN", [], []),
    ("second_label_from_the_zone_must_be_svc_or_pod", "foo.bar.cluster.local.", "A", "NXDOMAIN", [], []),
    ("too_many_labels_is_nxdomain", f"a.b.c.api.web.{Z}", "A", "NXDOMAIN", [], []),
    ("txt_elsewhere_is_nxdomain_even_on_an_empty_non_terminal_coredns",
     f"data.{Z}", "TXT", "NXDOMAIN", [], []),
    # --- case, the zone itself
    ("names_match_case_insensitively_and_the_answer_echoes_the_query",
     "API.Web.SVC.cluster.LOCAL.", "A", "NOERROR", ["API.Web.SVC.cluster.LOCAL. 30 IN A 10.96.10.10"], []),
    ("zone_soa_is_coredns_soa", "cluster.local.", "SOA", "NOERROR", [SOA], []),
    # SOA only at the apex; below it NODATA with the SOA as authority, existing name or not
    # (CoreDNS handler.go answers SOA questions below the apex without a look-up)
    ("soa_of_a_service_is_nodata", f"api.web.{Z}", "SOA", "NOERROR", [], []),
    ("soa_of_the_svc_subtree_is_nodata", Z, "SOA", "NOERROR", [], []),
    ("soa_of_a_namespace_is_nodata", f"web.{Z}", "SOA", "NOERROR", [], []),
    ("soa_of_a_missing_service_is_nodata_not_looked_up", f"nope.web.{Z}", "SOA", "NOERROR", [], []),
    ("soa_of_a_malformed_name_is_nodata_not_looked_up", "foo.bar.cluster.local.", "SOA", "NOERROR", [], []),
    ("zone_ns_is_the_dns_service_with_its_address_additional",
     "cluster.local.", "NS", "NOERROR", [f"cluster.local. 30 IN NS kube-dns.kube-system.{Z}"],
     [f"kube-dns.kube-system.{Z} 30 IN A 10.96.0.10"]),
    ("ns_dns_name_is_the_dns_server", "ns.dns.cluster.local.", "A", "NOERROR",
     ["ns.dns.cluster.local. 30 IN A 10.96.0.10"], []),
]


def _reverse(cluster, ns_pod: str) -> str:
    ip = cluster.get("Pod", *ns_pod.split("/")).status["podIP"]
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa."


@pytest.mark.parametrize("rule,qname,qtype,rcode,answer,additional", ANSWERS, ids=[a[0] for a in ANSWERS])
def test_answer(cluster, server, rule, qname, qtype, rcode, answer, additional):
    def x(text: str) -> str:
        text = re.sub(r"\{rev:([^}]+)\}", lambda m: _reverse(cluster, m.group(1)), text)
        return expand(text, cluster, server)

    got = server.answer(x(qname), qtype)
    assert got.rcode == rcode
    assert lines(got.answers) == {x(line) for line in answer}
    assert len(got.answers) == len(answer)
    if additional is not None:
        assert lines(got.additional) == {x(line) for line in additional}
    if rcode == "NXDOMAIN" or not answer:
        assert [r.text() for r in got.authority] == [x(SOA)], "negative answers carry the zone SOA"
    assert got.authoritative


def test_names_outside_the_cluster_zones_end_in_servfail_without_an_upstream(server):
    got = server.answer("www.example.com.", "A")
    assert got.rcode == "SERVFAIL" and not got.answers and not got.authority and not got.authoritative


def test_reverse_names_without_a_record_fall_through_to_servfail(server, cluster):
    assert server.answer("250.250.250.10.in-addr.arpa.", "PTR").rcode == "SERVFAIL"
    assert server.answer(_reverse(cluster, "data/client"), "PTR").rcode == "SERVFAIL", "a pod behind no Service"


def test_a_configured_upstream_answers_outside_names_and_completes_externalname(cluster):
    def upstream(name, qtype):
        return DnsAnswer("NOERROR", (Record(name, qtype, 300, "192.0.2.80"),), authoritative=False)

    server = ClusterDNS(cluster, upstream=upstream)
    assert lines(server.answer("www.example.com.", "A").answers) == {"www.example.com. 300 IN A 192.0.2.80"}
    assert lines(server.answer(f"billing.web.{Z}", "A").answers) == {
        f"billing.web.{Z} 30 IN CNAME billing.example.com.", "billing.example.com. 300 IN A 192.0.2.80"}


def test_negative_answer_soa_echoes_the_query_case(server):
    got = server.answer("Nope.Web.SVC.Cluster.Local.", "A")
    assert got.rcode == "NXDOMAIN"
    assert got.authority[0].name == "Cluster.Local." and got.authority[0].data.startswith("ns.dns.Cluster.Local. ")


def test_answers_leave_nothing_behind(cluster, server):
    """A server answers millions of queries: negative answers (raised internally) must not
    accumulate tracebacks or frames."""
    resolv = _resolv(cluster, "data/client")
    for _ in range(20):
        server.lookup("www.example.com", "A", resolv)
    gc.collect()
    before = len(gc.get_objects())
    for _ in range(300):
        server.answer(f"nope.web.{Z}", "A")
        server.lookup("www.example.com", "A", resolv)
    gc.collect()
    assert len(gc.get_objects()) - before < 50


def test_same_cluster_same_serial(cluster, server):
    assert ClusterDNS(cluster).serial == server.serial


def test_the_dns_view_of_a_cluster_answers_the_same(cluster, server):
    """What the DNS server keeps to rebuild from: only the kinds ClusterDNS reads, same answers."""
    view = dns_view(cluster)
    assert {o.kind for o in view.objects.values()} <= DNS_KINDS < {o.kind for o in cluster.objects.values()}
    slim = ClusterDNS(view)
    assert (slim.serial, slim.server_ips, slim.plugin) == (server.serial, server.server_ips, server.plugin)
    for rule, qname, qtype, *_ in ANSWERS:
        name = expand(re.sub(r"\{rev:([^}]+)\}", lambda m: _reverse(cluster, m.group(1)), qname), cluster, server)
        assert slim.answer(name, qtype) == server.answer(name, qtype), rule


def test_answer_becomes_a_wire_response(server):
    query = dns.message.make_query(f"_redis._tcp.redis.data.{Z}", "SRV")
    response = server.answer(f"_redis._tcp.redis.data.{Z}", "SRV").to_message(query)
    wire = dns.message.from_wire(response.to_wire())
    assert wire.rcode() == dns.rcode.NOERROR and wire.id == query.id
    assert sum(len(r) for r in wire.answer) == 2 and sum(len(r) for r in wire.additional) == 2
    negative = server.answer(f"nope.web.{Z}", "A").to_message(dns.message.make_query(f"nope.web.{Z}", "A"))
    assert negative.rcode() == dns.rcode.NXDOMAIN and negative.authority[0].rdtype == dns.rdatatype.SOA


# --- resolv.conf, as kubelet writes it for each dnsPolicy


def _resolv(cluster, ns_pod: str, node=None) -> ResolvConf:
    return resolv_conf(cluster.get("Pod", *ns_pod.split("/")), cluster, node)


def test_resolv_conf_cluster_first_is_the_default_policy(cluster):
    assert _resolv(cluster, "data/client").render() == (
        "search data.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n")


def test_resolv_conf_cluster_first_appends_the_node_search_list_and_drops_its_servers_and_options(cluster):
    node = ResolvConf.parse("nameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n")
    got = _resolv(cluster, "data/client", node)
    assert got.nameservers == ("10.96.0.10",)
    assert got.searches == ("data.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example")
    assert got.options == ("ndots:5",)


def test_resolv_conf_cluster_first_on_the_host_network_falls_back_to_default(cluster):
    assert _resolv(cluster, "web/hostnet").render() == "", "podnet nodes have no resolver file: empty"
    node = ResolvConf.parse("nameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n")
    assert _resolv(cluster, "web/hostnet", node).render() == (
        "search corp.example\nnameserver 192.0.2.53\noptions timeout:2\n")


def test_resolv_conf_cluster_first_with_host_net_gets_cluster_dns(cluster):
    assert _resolv(cluster, "web/hostnet-cluster").render() == (
        "search web.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n")


def test_resolv_conf_default_is_the_node_file(cluster):
    assert _resolv(cluster, "web/node-dns").render() == ""
    node = ResolvConf.parse("nameserver 192.0.2.53\nsearch corp.example.\noptions timeout:2\n")
    got = _resolv(cluster, "web/node-dns", node)
    assert (got.nameservers, got.searches, got.options) == (("192.0.2.53",), ("corp.example",), ("timeout:2",))


def test_resolv_conf_none_takes_dns_config_only(cluster):
    assert _resolv(cluster, "web/custom").render() == (
        "search ns1.svc.cluster-domain.example my.dns.search.suffix\n"
        "nameserver 192.0.2.1\n"
        "options ndots:2 edns0\n")


def test_resolv_conf_dns_config_merges_searches_appended_options_by_name(cluster):
    node = ResolvConf.parse("nameserver 192.0.2.53\nsearch corp.example\n")
    got = _resolv(cluster, "web/tuned", node)
    assert got.searches == ("web.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "extra.example")
    assert set(got.options) == {"ndots:2", "edns0"} and got.ndots == 2


def test_resolv_conf_keeps_three_nameservers_and_warns():
    cluster = cluster_of("""
        apiVersion: v1
        kind: Pod
        metadata: {name: many}
        spec:
          dnsConfig: {nameservers: [192.0.2.1, 192.0.2.2, 192.0.2.3]}
          containers: [{name: c, image: busybox:1.36}]
    """)
    got = resolv_conf(cluster.get("Pod", "default", "many"), cluster)
    assert got.nameservers == ("10.96.0.10", "192.0.2.1", "192.0.2.2")
    assert got.warnings and got.warnings[0].startswith("Nameserver limits were exceeded")


# --- the search list: glibc res_search with ndots (resolver in pod data/client, ndots:5)

SEARCHES = [
    ("short_name_is_found_with_the_first_suffix", "redis", ["redis.data.svc.cluster.local."],
     "redis.data.svc.cluster.local."),
    ("name_dot_namespace_takes_two_tries", "redis.data",
     ["redis.data.data.svc.cluster.local.", "redis.data.svc.cluster.local."], "redis.data.svc.cluster.local."),
    ("name_namespace_svc_takes_three_tries", "redis.data.svc",
     ["redis.data.svc.data.svc.cluster.local.", "redis.data.svc.svc.cluster.local.",
      "redis.data.svc.cluster.local."], "redis.data.svc.cluster.local."),
    ("four_dots_still_walks_the_whole_list_first", "redis.data.svc.cluster.local",
     ["redis.data.svc.cluster.local.data.svc.cluster.local.", "redis.data.svc.cluster.local.svc.cluster.local.",
      "redis.data.svc.cluster.local.cluster.local.", "redis.data.svc.cluster.local."], "redis.data.svc.cluster.local."),
    ("trailing_dot_means_only_the_name_itself", "redis.data.svc.cluster.local.",
     ["redis.data.svc.cluster.local."], "redis.data.svc.cluster.local."),
    ("five_dots_reach_ndots_so_the_name_goes_first", "redis-0.redis.data.svc.cluster.local",
     ["redis-0.redis.data.svc.cluster.local."], "redis-0.redis.data.svc.cluster.local."),
    ("cross_namespace_short_name_needs_the_namespace", "api.web",
     ["api.web.data.svc.cluster.local.", "api.web.svc.cluster.local."], "api.web.svc.cluster.local."),
    ("outside_name_tries_every_suffix_then_itself", "www.example.com",
     ["www.example.com.data.svc.cluster.local.", "www.example.com.svc.cluster.local.",
      "www.example.com.cluster.local.", "www.example.com."], None),
    ("other_namespace_short_name_is_not_found", "api",
     ["api.data.svc.cluster.local.", "api.svc.cluster.local.", "api.cluster.local.", "api."], None),
]


@pytest.mark.parametrize("rule,name,tried,answered", SEARCHES, ids=[s[0] for s in SEARCHES])
def test_search_list(cluster, server, rule, name, tried, answered):
    got = server.lookup(name, "A", _resolv(cluster, "data/client"))
    assert got.tried == tried
    assert got.qname_answered == answered
    assert got.final.positive == (answered is not None)


def test_search_keeps_going_after_nodata_and_reports_nodata(cluster, server):
    """glibc: 'On a NO_DATA error, keep trying' (res_query.c); the NODATA is what is reported."""
    got = server.lookup("redis", "AAAA", _resolv(cluster, "data/client"))
    assert got.tried == ["redis.data.svc.cluster.local.", "redis.svc.cluster.local.", "redis.cluster.local.", "redis."]
    assert got.final.nodata and got.qname_answered is None


def test_search_with_five_dots_reports_the_as_is_answer_when_nothing_matches(cluster, server):
    got = server.lookup("a.b.c.d.e.f", "A", _resolv(cluster, "data/client"))
    assert got.tried[0] == "a.b.c.d.e.f." and len(got.tried) == 4
    assert got.final.rcode == "SERVFAIL", "glibc returns the as-is query's error when it went first"


def test_search_follows_the_pods_own_ndots(cluster, server):
    got = server.lookup("api.web", "A", _resolv(cluster, "web/tuned"))
    assert got.tried == ["api.web.web.svc.cluster.local.", "api.web.svc.cluster.local."]
    got = server.lookup("api.web.svc", "A", _resolv(cluster, "web/tuned"))  # 2 dots >= ndots:2: as is first
    assert got.tried[0] == "api.web.svc." and got.qname_answered == "api.web.svc.cluster.local."


def test_no_nameserver_means_connection_refused_after_one_try(cluster, server):
    got = server.lookup("api.web", "A", _resolv(cluster, "web/node-dns"))
    assert got.tried == ["api.web."] and got.error and "refused" in got.error and got.final.rcode == "SERVFAIL"


def test_a_nameserver_that_is_not_the_cluster_dns_times_out(cluster, server):
    got = server.lookup("api", "A", _resolv(cluster, "web/custom"))
    assert got.error and "timed out" in got.error
    assert got.tried == ["api.ns1.svc.cluster-domain.example.", "api."]


# --- podnet dig


def dig_run(capsys, *argv):
    parser = argparse.ArgumentParser()
    dig.add_parser(parser.add_subparsers(dest="command"))
    code = dig.run(parser.parse_args(["dig", *argv]))
    return code, *capsys.readouterr()


@pytest.fixture(scope="module")
def cluster_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dns") / "cluster.yaml"
    path.write_text(CLUSTER)
    return str(path)


def test_dig_text_looks_like_dig(capsys, cluster_file):
    code, out, _ = dig_run(capsys, f"api.web.{Z}", "-f", cluster_file)
    assert code == 0
    assert ";; ->>HEADER<<- opcode: QUERY, status: NOERROR" in out
    assert f";; ANSWER SECTION:\napi.web.{Z} 30 IN A 10.96.10.10\n" in out
    assert f";; tried: api.web.{Z}\n" in out


def test_dig_from_a_pod_walks_its_search_list(capsys, cluster_file):
    code, out, _ = dig_run(capsys, "redis-0.redis", "--from", "data/client", "-f", cluster_file)
    assert f";; tried: redis-0.redis.data.{Z}\n" in out and f"redis-0.redis.data.{Z} 30 IN A " in out
    assert ";; resolv.conf: search data.svc.cluster.local svc.cluster.local cluster.local; nameserver 10.96.0.10" in out


def test_dig_json_is_the_design_contract(capsys, cluster_file):
    code, out, _ = dig_run(capsys, "api.web", "--from", "data/client", "-o", "json", "-f", cluster_file)
    assert json.loads(out) == {
        "rcode": "NOERROR",
        "answers": [{"name": f"api.web.{Z}", "type": "A", "ttl": 30, "data": "10.96.10.10"}],
        "tried": ["api.web.data.svc.cluster.local.", f"api.web.{Z}"],
    }


def test_dig_json_nxdomain_and_srv(capsys, cluster_file):
    _, out, _ = dig_run(capsys, f"nope.web.{Z}", "-o", "json", "-f", cluster_file)
    assert json.loads(out) == {"rcode": "NXDOMAIN", "answers": [], "tried": [f"nope.web.{Z}"]}
    _, out, _ = dig_run(capsys, f"_http._tcp.api.web.{Z}", "srv", "-o", "json", "-f", cluster_file)
    assert json.loads(out)["answers"] == [
        {"name": f"_http._tcp.api.web.{Z}", "type": "SRV", "ttl": 30, "data": f"0 100 80 api.web.{Z}"}]


def test_dig_reverse_flag(capsys, cluster_file):
    _, out, _ = dig_run(capsys, "-x", "10.96.10.10", "-o", "json", "-f", cluster_file)
    assert json.loads(out)["answers"][0]["data"] == f"api.web.{Z}"


def test_dig_no_server_reachable_exits_9_with_the_reason(capsys, cluster_file):
    code, out, _ = dig_run(capsys, "api.web", "--from", "web/node-dns", "-f", cluster_file)
    assert code == 9 and "connection refused" in out


def test_dig_unknown_pod_and_bad_type_are_usage_errors(capsys, cluster_file):
    with pytest.raises(UsageError, match='pod "data/nope" not found'):
        dig_run(capsys, "api", "--from", "data/nope", "-f", cluster_file)
    with pytest.raises(UsageError, match='unknown record type "BOGUS"'):
        dig_run(capsys, "api", "BOGUS", "-f", cluster_file)
    with pytest.raises(UsageError, match="-x needs an IP address"):
        dig_run(capsys, "-x", "api", "-f", cluster_file)


def test_dig_help_has_examples():
    parser = argparse.ArgumentParser()
    dig.add_parser(parser.add_subparsers(dest="command"))
    assert dig.EXAMPLES.startswith("examples:")


# --- the Corefile's kubernetes block


def test_corefile_options_come_from_the_coredns_configmap():
    cluster = cluster_of("""
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: coredns, namespace: kube-system}
        data:
          Corefile: |
            .:53 {
                errors
                kubernetes cluster.local in-addr.arpa ip6.arpa {
                   pods verified
                   ttl 10
                }
                forward . /etc/resolv.conf
            }
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec: {containers: [{name: c, image: busybox:1.36}]}
    """)
    server = ClusterDNS(cluster)
    assert (server.plugin.pods, server.plugin.ttl, server.plugin.fallthrough) == ("verified", 10, None)
    ip = cluster.get("Pod", "default", "p").status["podIP"]
    dashed = ip.replace(".", "-")
    assert lines(server.answer(f"{dashed}.default.pod.cluster.local.", "A").answers) == {
        f"{dashed}.default.pod.cluster.local. 10 IN A {ip}"}
    assert server.answer("1-2-3-4.default.pod.cluster.local.", "A").rcode == "NXDOMAIN", "verified: real pods only"
    assert server.answer(f"{dashed}.kube-system.pod.cluster.local.", "A").rcode == "NXDOMAIN", "...in that namespace"
    assert server.answer("9.9.9.10.in-addr.arpa.", "PTR").rcode == "NXDOMAIN", "no fallthrough: NXDOMAIN"


def test_pods_disabled_has_no_pod_records(cluster):
    from podnet.semantics.dns import KubernetesPlugin

    server = ClusterDNS(cluster, plugin=KubernetesPlugin(pods="disabled"))
    assert server.answer("1-2-3-4.data.pod.cluster.local.", "A").rcode == "NXDOMAIN"
    assert server.answer("pod.cluster.local.", "A").rcode == "NOERROR"


def test_endpoint_pod_names_names_endpoints_after_their_pods(cluster):
    from podnet.semantics.dns import KubernetesPlugin

    server = ClusterDNS(cluster, plugin=KubernetesPlugin(endpoint_pod_names=True))
    assert lines(server.answer(f"cache-a.cache.data.{Z}", "A").answers) == {
        expand(f"cache-a.cache.data.{Z} 30 IN A {{ip:data/cache-a}}", cluster, server)}
    assert server.answer(f"redis-0.redis.data.{Z}", "A").positive, "a hostname still wins"


def test_a_dns_pod_address_as_nameserver_reaches_the_server(cluster, server):
    coredns = next(p for p in cluster.of_kind("Pod", "kube-system") if p.labels.get("k8s-app") == "kube-dns")
    resolv = ResolvConf(nameservers=(coredns.status["podIP"],), searches=("web.svc.cluster.local",))
    got = server.lookup("api", "A", resolv)
    assert got.qname_answered == f"api.web.{Z}" and got.server == coredns.status["podIP"]


def test_an_endpointslice_port_without_a_protocol_is_tcp_for_srv():
    """discovery/v1 EndpointPort.protocol defaults to TCP (as ServiceTable reads it): a slice a
    user wrote for a selector-less headless Service serves _http._tcp like a controller's."""
    cluster = cluster_of("""
        apiVersion: v1
        kind: Service
        metadata: {name: ext, namespace: default}
        spec: {clusterIP: None, ports: [{name: http, port: 8080}]}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata: {name: ext-1, namespace: default, labels: {kubernetes.io/service-name: ext}}
        addressType: IPv4
        ports: [{name: http, port: 8080}]
        endpoints: [{addresses: [10.1.2.3]}]
    """)
    got = ClusterDNS(cluster).answer("_http._tcp.ext.default.svc.cluster.local.", "SRV")
    assert got.rcode == "NOERROR" and [r.type for r in got.answers] == ["SRV"]
