"""kube-proxy's rules as podnet renders them (nftables, iptables), on fakes: no root needed.

The rules are followed like a packet would follow them (a small walker over the rendered
chains), and what they reach is compared with the simulator's ServiceTable.translate, so the
kernel rules and `podnet trace` cannot drift apart.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network
import textwrap
import time
from pathlib import Path

import pytest

from podnet.proxy import iptables, nftables
from podnet.proxy.loader import LoadError, RecordingRunner
from podnet.proxy.model import Endpoint, ServicePort, service_ports
from podnet.proxy.node import NodeProxy, cleanup_leftovers, make_proxier
from podnet.semantics.services import ServiceTable, affinity_timeout
from tests.conftest import cluster_of

POD_SUBNET, SERVICE_SUBNET = "10.244.0.0/16", "10.96.0.0/12"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

MANIFESTS = textwrap.dedent("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 3
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
          - {name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.47, args: [netexec, --http-port=8080],
             ports: [{containerPort: 8080, name: http}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      type: LoadBalancer
      selector: {app: web}
      ports: [{name: http, port: 80, targetPort: http}, {name: dns, port: 53, protocol: UDP, targetPort: 8081}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: sticky}
    spec:
      sessionAffinity: ClientIP
      sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
      selector: {app: web}
      ports: [{port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: local}
    spec:
      type: NodePort
      externalTrafficPolicy: Local
      selector: {app: web}
      ports: [{port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: itp}
    spec:
      internalTrafficPolicy: Local
      selector: {app: web}
      ports: [{port: 80, targetPort: 8080}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: empty}
    spec:
      type: NodePort
      selector: {app: nobody}
      ports: [{port: 80, protocol: SCTP}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: headless}
    spec:
      clusterIP: None
      selector: {app: web}
      ports: [{port: 80}]
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: ext}
    spec:
      type: ExternalName
      externalName: example.com
""")
FOUR_NODES = "kind: Cluster\napiVersion: podnet.dev/v1alpha1\nname: t\nnodes: 4\n"


@pytest.fixture(scope="module")
def cluster():
    return cluster_of(MANIFESTS, FOUR_NODES)


def by_ref(ports: list[ServicePort]) -> dict[str, ServicePort]:
    return {p.port_ref: p for p in ports}


def node_without_web(cluster) -> str:
    busy = {p.spec["nodeName"] for p in cluster.of_kind("Pod") if p.labels.get("app") == "web"}
    return next(n.name for n in cluster.nodes if n.name not in busy)


def node_with_web(cluster) -> str:
    return next(p.spec["nodeName"] for p in cluster.of_kind("Pod") if p.labels.get("app") == "web")


# -- the model: what each node programs ---------------------------------------------------------

def test_headless_and_external_name_services_get_no_rules(cluster):
    refs = by_ref(service_ports(cluster, "node1"))
    assert not any(r.startswith(("default/headless", "default/ext")) for r in refs)
    assert {"default/web:http", "default/web:dns", "default/sticky", "default/local", "default/empty"} <= set(refs)


def test_local_endpoints_are_the_nodes_own(cluster):
    busy = node_with_web(cluster)
    idle = node_without_web(cluster)
    assert by_ref(service_ports(cluster, idle))["default/local"].local_endpoints == ()
    here = by_ref(service_ports(cluster, busy))["default/local"]
    pods = {p.name: p for p in cluster.of_kind("Pod")}
    assert here.local_endpoints and all(pods[e.pod.split("/")[1]].spec["nodeName"] == busy for e in here.local_endpoints)
    assert len(here.cluster_endpoints) == 3


# -- nftables ---------------------------------------------------------------------------------

def full_nft(ports):
    return nftables.transaction(nftables.TableState(), ports, POD_SUBNET, SERVICE_SUBNET, True)


def test_nft_table_is_kube_proxys_layout(cluster):
    text, _, rewritten = full_nft(service_ports(cluster, "node1"))
    assert text.startswith("add table ip kube-proxy\ndelete table ip kube-proxy\n")
    assert "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips" in text
    assert "meta l4proto . th dport vmap @service-nodeports" in text
    assert "type ipv4_addr . inet_proto . inet_service : verdict" in text
    web = by_ref(service_ports(cluster, "node1"))["default/web:http"]
    chain = f"service-{nftables.port_chain_base(web)}"
    assert re.match(r"service-[A-Z2-7]{8}-default/web/tcp/http$", chain)
    assert f"{web.cluster_ip} . tcp . 80 : goto {chain}" in text
    assert f"add rule ip kube-proxy {chain} numgen random mod 3 0 goto endpoint-" in text
    assert f"add rule ip kube-proxy {chain} numgen random mod 2 0 goto endpoint-" in text
    assert "vmap {" not in text  # no anonymous sets (their kernel cost grows quadratically)
    for ep in web.cluster_endpoints:
        assert f"meta l4proto tcp dnat to {ep.ip}:{ep.port}" in text
        assert f"ip saddr {ep.ip} jump mark-for-masquerade" in text  # hairpin
    assert f"ip daddr {web.cluster_ip} tcp dport 80 ip saddr != {POD_SUBNET} jump mark-for-masquerade" in text
    assert rewritten == len(service_ports(cluster, "node1"))


def test_nft_no_endpoints_rejects_and_local_policy_without_local_endpoint_drops(cluster):
    idle = node_without_web(cluster)
    ports = by_ref(service_ports(cluster, idle))
    text, _, _ = full_nft(list(ports.values()))
    empty, local = ports["default/empty"], ports["default/local"]
    assert f"{empty.cluster_ip} . sctp . 80 : goto reject-chain" in text
    assert f"sctp . {empty.node_port} : goto reject-chain" in text
    assert f"tcp . {local.node_port} : drop" in text  # eTP Local, nothing on this node
    assert f"tcp . {local.node_port} : goto external-" in text  # ...but pods are short-circuited


def test_nft_affinity_uses_a_timeout_set_per_endpoint(cluster):
    sticky = by_ref(service_ports(cluster, "node1"))["default/sticky"]
    rules = nftables.port_rules(sticky, POD_SUBNET)
    assert len(rules.sets) == 3 and all("timeout 60s" in d for d in rules.sets.values())
    chain = rules.chains[f"service-{nftables.port_chain_base(sticky)}"]
    assert sum(r.startswith("ip saddr @affinity-") for r in chain) == 3
    assert any("update @affinity-" in r for name, rs in rules.chains.items() if name.startswith("endpoint-") for r in rs)


def test_nft_affinity_timeout_change_replaces_the_sets_after_emptying_every_chain_using_them(cluster):
    ports = service_ports(cluster, "node1")
    _, state, _ = full_nft(ports)
    sticky = by_ref(ports)["default/sticky"]
    longer = ServicePort(**{**sticky.__dict__, "affinity_timeout": 120})
    text, _, rewritten = nftables.transaction(state, [longer if p is sticky else p for p in ports],
                                              POD_SUBNET, SERVICE_SUBNET, False)
    lines = text.splitlines()
    assert rewritten == 1
    for name in nftables.port_rules(sticky, POD_SUBNET).sets:
        users = [c for c, rules in nftables.port_rules(longer, POD_SUBNET).chains.items()
                 if any(f"@{name} " in f"{r} " for r in rules)]
        assert len(users) == 2  # the service chain's stickiness rule and the endpoint's update
        deleted = lines.index(f"delete set ip kube-proxy {name}")
        assert all(lines.index(f"flush chain ip kube-proxy {c}") < deleted for c in users)
        assert f"add set ip kube-proxy {name} {{ type ipv4_addr; flags dynamic,timeout; timeout 120s; }}" in lines


def test_nft_partial_sync_rewrites_only_what_changed(cluster):
    ports = service_ports(cluster, "node1")
    _, state, _ = full_nft(ports)
    text, state2, rewritten = nftables.transaction(state, ports, POD_SUBNET, SERVICE_SUBNET, False)
    assert (text, rewritten) == ("", 0)
    web = by_ref(ports)["default/web:http"]
    fewer = ServicePort(**{**web.__dict__, "cluster_endpoints": web.cluster_endpoints[:2]})
    changed = [fewer if p is web else p for p in ports]
    text, _, rewritten = nftables.transaction(state2, changed, POD_SUBNET, SERVICE_SUBNET, False)
    assert rewritten == 1
    assert "default/web/tcp/http" in text and "default/sticky" not in text and "kube-dns" not in text
    gone = f"endpoint-{nftables.endpoint_chain_base(web, web.cluster_endpoints[2])}"
    assert f"delete chain ip kube-proxy {gone}" in text
    assert "numgen random mod 2 0 goto" in text and "numgen random mod 3" not in text
    assert text.index(f"flush chain ip kube-proxy {gone}") < text.index(f"delete chain ip kube-proxy {gone}")


def test_nft_removed_service_loses_its_chains_elements_and_cluster_ip(cluster):
    ports = service_ports(cluster, "node1")
    _, state, _ = full_nft(ports)
    sticky = by_ref(ports)["default/sticky"]
    text, _, _ = nftables.transaction(state, [p for p in ports if p is not sticky], POD_SUBNET, SERVICE_SUBNET, False)
    assert f"delete element ip kube-proxy service-ips {{ {sticky.cluster_ip} . tcp . 80 }}" in text
    assert f"delete element ip kube-proxy cluster-ips {{ {sticky.cluster_ip} }}" in text
    assert text.count("delete set ip kube-proxy affinity-") == 3
    assert f"delete chain ip kube-proxy service-{nftables.port_chain_base(sticky)}" in text


# -- a walker over the rendered rules, compared with the simulator ----------------------------

CLIENTS = {"pod": "10.244.9.9", "external": "192.168.1.100"}


def firewall_admits(rule: str, client: str) -> bool:
    """Whether `ip saddr != { a, b } drop` lets `client` through."""
    sources = rule.split("{")[1].split("}")[0].replace(",", " ").split()
    return any(IPv4Address(client) in IPv4Network(s) for s in sources)


def walk_nft(rules_by_port, sp: ServicePort, frontend: str, source: str, ip: str = "") -> set[str]:
    """The endpoints an nft packet can reach: the firewall of a LoadBalancer IP first, then
    follow the map element to chains, take every numgen branch, honour the `ip saddr POD` /
    `fib saddr type local` short-circuits."""
    chains = {name: r for rules in rules_by_port for name, r in rules.chains.items()}
    elements = {k: v for rules in rules_by_port for k, v in rules.elements.items()}
    if frontend == "cluster":
        verdict = elements.get((nftables.SERVICE_IPS, f"{sp.cluster_ip} . {sp.proto} . {sp.port}"))
    elif frontend == "lb":
        firewall = elements.get((nftables.FIREWALL_IPS, f"{ip} . {sp.proto} . {sp.port}"))
        if firewall:
            (rule,) = chains[firewall.split()[1]]
            if not firewall_admits(rule, CLIENTS[source]):
                return set()
        verdict = elements.get((nftables.SERVICE_IPS, f"{ip} . {sp.proto} . {sp.port}"))
    else:
        verdict = elements.get((nftables.SERVICE_NODEPORTS, f"{sp.proto} . {sp.node_port}"))
    reached: set[str] = set()

    def follow(chain: str) -> None:
        for rule in chains[chain]:
            if rule.startswith(f"ip saddr {POD_SUBNET} goto ") and source == "pod":
                return follow(rule.split()[-1])
            if rule.startswith("fib saddr type local goto ") and source == "local":
                return follow(rule.split()[-1])
            if rule.startswith("goto "):
                return follow(rule.split()[-1])
            if "numgen random" in rule:  # one branch of the random choice; the others follow
                follow(rule.split()[-1])
                continue
            if " dnat to " in rule:
                reached.add(rule.split()[-1])
                return

    if verdict and verdict.startswith("goto "):
        follow(verdict.split()[1])
    return reached


@pytest.mark.parametrize("source", ["pod", "external"])
def test_rules_reach_what_the_simulator_predicts(source):
    compared = lb_compared = 0
    texts = [(e.name, e.read_text()) for e in sorted(EXAMPLES.glob("**/*.yaml")) if "cluster" not in e.name]
    for name, text in texts + [("GUARDED (loadBalancerSourceRanges)", GUARDED)]:
        try:
            cluster = cluster_of(text, FOUR_NODES)
        except Exception:
            continue
        table = ServiceTable(cluster)
        for node in cluster.nodes:
            ports = service_ports(cluster, node.name, table)
            rules = [nftables.port_rules(sp, POD_SUBNET) for sp in ports]
            for sp in ports:
                cases = [("cluster", sp.cluster_ip, sp.port)] if source == "pod" else []
                if sp.node_port:
                    cases.append(("nodeport", str(node.ip), sp.node_port))
                cases += [("lb", ip, sp.port) for ip in sp.load_balancer_ips]
                for frontend, ip, number in cases:
                    fe = table.frontend(ip, number, sp.protocol, frozenset({str(node.ip)}))
                    predicted = table.translate(fe, CLIENTS[source], node.name, source)
                    expect = {f"{b.ip}:{b.port}" for b in predicted.candidates}
                    got = walk_nft(rules, sp, frontend, source, ip)
                    assert got == expect, (name, node.name, sp.port_ref, frontend, source)
                    compared += 1
                    lb_compared += frontend == "lb"
    assert compared >= 20 and lb_compared >= 8


def test_walker_sees_local_policy_from_outside(cluster):
    idle, busy = node_without_web(cluster), node_with_web(cluster)
    for node, want_local in ((idle, False), (busy, True)):
        ports = service_ports(cluster, node)
        rules = [nftables.port_rules(sp, POD_SUBNET) for sp in ports]
        local = by_ref(ports)["default/local"]
        outside = walk_nft(rules, local, "nodeport", "external")
        assert outside == {e.address for e in local.local_endpoints}
        assert bool(outside) == want_local
        assert walk_nft(rules, local, "nodeport", "pod") == {e.address for e in local.cluster_endpoints}


# -- iptables ---------------------------------------------------------------------------------

def test_iptables_layout_statistic_and_comments(cluster):
    ports = service_ports(cluster, "node1")
    text, _, _ = iptables.restore_input(iptables.TablesState(), ports, POD_SUBNET, True)
    web = by_ref(ports)["default/web:http"]
    svc, _, ext = iptables.chain_names(web)
    assert re.match(r"KUBE-SVC-[A-Z2-7]{16}$", svc)
    assert f'-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d {web.cluster_ip}/32 --dport 80 -j {svc}' in text
    probabilities = re.findall(rf"-A {svc} .*?--probability (\S+)", text)
    assert probabilities == ["0.3333333333", "0.5000000000"]
    assert len(re.findall(rf"-A {svc} .* -j KUBE-SEP-", text)) == 3
    assert f"-A KUBE-SERVICES -m comment --comment \"default/web:http external IP\" -m tcp -p tcp -d {web.external_ips[0]}/32 --dport 80 -j {ext}" in text
    assert "-j MASQUERADE --random-fully" in text and "-j MARK --or-mark 0x4000" in text
    nat = text.split("*filter")[0]
    assert nat.index("-j KUBE-NODEPORTS") > nat.rindex("-A KUBE-SERVICES -m comment --comment \"default/")
    assert '-A KUBE-SERVICES -m comment --comment "default/empty has no endpoints"' in text
    # jumps from the built-in chains, once
    assert '-I PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in text
    listing = "*nat\n-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\nCOMMIT\n"
    again, _, _ = iptables.restore_input(iptables.TablesState(), ports, POD_SUBNET, True, listing=listing)
    assert "-I PREROUTING" not in again and "-I OUTPUT" in again


def test_iptables_partial_sync_declares_only_changed_chains_and_deletes_dead_ones(cluster):
    ports = service_ports(cluster, "node1")
    _, state, _ = iptables.restore_input(iptables.TablesState(), ports, POD_SUBNET, True)
    web = by_ref(ports)["default/web:http"]
    fewer = ServicePort(**{**web.__dict__, "cluster_endpoints": web.cluster_endpoints[:1]})
    text, _, rewritten = iptables.restore_input(state, [fewer if p is web else p for p in ports], POD_SUBNET, False)
    assert rewritten == 1
    svc, _, _ = iptables.chain_names(web)
    declared = [line for line in text.splitlines() if line.startswith(":KUBE-S")]
    sticky_svc = iptables.chain_names(by_ref(ports)["default/sticky"])[0]
    assert f":{svc} - [0:0]" in declared and f":{sticky_svc} - [0:0]" not in declared
    dead = [iptables.endpoint_chain(web, ep) for ep in web.cluster_endpoints[1:]]
    assert all(f"-X {c}" in text for c in dead)
    assert not re.search(rf"-A {svc} .*--probability", text)  # one endpoint left: no statistic match


def test_iptables_full_sync_sweeps_stale_chains_of_an_earlier_proxy(cluster):
    listing = "*nat\n:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n:KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]\nCOMMIT\n"
    text, _, _ = iptables.restore_input(iptables.TablesState(), service_ports(cluster, "node1"), POD_SUBNET, True,
                                        listing=listing)
    assert "-X KUBE-SVC-AAAAAAAAAAAAAAAA" in text and "-X KUBE-SEP-BBBBBBBBBBBBBBBB" in text


# -- the node's proxy: one transaction per sync, rate-limited, retried ------------------------

def test_node_proxy_syncs_once_per_change_and_cleans_other_modes_first(cluster):
    run = RecordingRunner()
    proxy = NodeProxy("t", "node1", "podnet-t.node-node1", "nftables", POD_SUBNET, SERVICE_SUBNET, run=run)
    proxy.sync_now(cluster)
    tools = [next(a for a in argv if a in ("nft", "iptables-save", "iptables-restore")) for argv, _ in run.calls]
    assert tools[:-1] == ["iptables-save", "nft"]  # leftovers: iptables chains, the userspace table
    assert run.calls[-1][0][:4] == ["ip", "netns", "exec", "podnet-t.node-node1"]
    assert "add table ip kube-proxy" in run.calls[-1][1]
    before = len(run.calls)
    proxy.sync_now(cluster)
    assert len(run.calls) == before  # nothing changed: nothing loaded


def test_node_proxy_rate_limits_and_takes_the_latest_state(cluster):
    run = RecordingRunner()
    proxy = NodeProxy("t", "node1", None, "nftables", POD_SUBNET, SERVICE_SUBNET, run=run, min_sync_interval=0.3)
    ports = service_ports(cluster, "node1")
    proxy.sync_now(cluster)
    loads = len(run.inputs("nft"))
    for n in range(1, 8):
        proxy.update_ports(ports[:-n])
    assert proxy.wait_synced(60)
    assert len(run.inputs("nft")) - loads <= 2
    assert len(proxy.proxier.state.ports) == len(ports) - 7
    proxy.stop(cleanup=False)


def test_a_change_is_pending_until_its_sync_ran(cluster):
    """What the live `trace` reads of kube-proxy: a change waiting out the rate limit is pending."""
    run = RecordingRunner()
    proxy = NodeProxy("t", "node1", None, "nftables", POD_SUBNET, SERVICE_SUBNET, run=run, min_sync_interval=2.0)
    proxy.sync_now(cluster)
    assert not proxy.pending
    proxy.update_ports(service_ports(cluster, "node1")[:-1])  # within 2 s of the last sync: it waits
    assert proxy.pending
    assert proxy.wait_synced(60) and not proxy.pending
    proxy.stop(cleanup=False)


def test_failed_sync_is_reported_retried_and_followed_by_a_full_rewrite(cluster):
    run = RecordingRunner()
    said = []  # what the supervisor is told (its events and log)
    proxy = NodeProxy("t", "node1", None, "nftables", POD_SUBNET, SERVICE_SUBNET, run=run, min_sync_interval=0.05,
                      report=lambda node, error: said.append((node, error)))
    proxy.sync_now(cluster)
    assert said == []  # a good sync after good ones says nothing
    run.fail = {"nft"}
    proxy.update_ports(service_ports(cluster, "node1")[:-1])
    deadline = time.monotonic() + 60  # however loaded: the loop ends at the second failure
    while proxy.status.failures < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.status.failures >= 2 and "refused" in proxy.status.last_error
    run.fail = set()
    assert proxy.wait_synced(60)
    assert proxy.status.last_error is None
    assert run.inputs("nft")[-1].startswith("add table ip kube-proxy\ndelete table ip kube-proxy")
    assert len(said) >= 3 and said[-1] == ("node1", None)  # refused at least twice, then held again
    assert all(node == "node1" and "refused" in error for node, error in said[:-1])
    proxy.stop(cleanup=False)


def test_ipvs_and_unknown_modes_are_refused_clearly():
    with pytest.raises(ValueError, match="IP_VS"):
        make_proxier("ipvs", None, POD_SUBNET, SERVICE_SUBNET)
    with pytest.raises(ValueError, match="unknown proxyMode"):
        make_proxier("ebpf", None, POD_SUBNET, SERVICE_SUBNET)


def test_cleanup_leftovers_removes_kube_chains_and_their_jumps():
    listing = textwrap.dedent("""\
        *nat
        :PREROUTING ACCEPT [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-SVC-X - [0:0]
        -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
        -A KUBE-SERVICES -j KUBE-SVC-X
        COMMIT
        """)
    run = RecordingRunner(replies={"iptables-save": listing})
    cleanup_leftovers(None, keep="nftables", run=run)
    restore = run.inputs("iptables-restore")[0]
    assert '-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in restore
    assert "-X KUBE-SERVICES" in restore and "-X KUBE-SVC-X" in restore
    assert not any("delete table ip kube-proxy" in s for s in run.inputs("nft"))
    assert any("delete table ip podnet-userspace" in s for s in run.inputs("nft"))


def test_loader_errors_name_the_command():
    run = RecordingRunner(fail={"nft"})
    with pytest.raises(LoadError, match="nft"):
        run(["nft", "-f", "-"], "x")


def test_endpoint_addresses():
    assert Endpoint("10.244.1.2", 8080).address == "10.244.1.2:8080"


def test_udp_conntrack_entries_of_removed_endpoints_are_cleared(cluster):
    run = RecordingRunner()
    proxy = NodeProxy("t", "node1", None, "nftables", POD_SUBNET, SERVICE_SUBNET, run=run)
    ports = service_ports(cluster, "node1")
    proxy._sync(ports)
    dns_udp = by_ref(ports)["default/web:dns"]
    gone = dns_udp.cluster_endpoints[0]
    fewer = ServicePort(**{**dns_udp.__dict__, "cluster_endpoints": dns_udp.cluster_endpoints[1:],
                           "serving_ips": tuple(ip for ip in dns_udp.serving_ips if ip != gone.ip)})
    run.calls.clear()
    proxy._sync([fewer if p is dns_udp else p for p in ports])
    deletes = [argv for argv, _ in run.calls if argv[0] == "conntrack"]
    assert deletes == [["conntrack", "-D", "-p", "udp", "--orig-dst", dns_udp.cluster_ip, "--dport", "53",
                        "--reply-src", gone.ip]]


def test_udp_flows_to_a_terminating_endpoint_that_still_serves_are_kept_until_it_stops_serving():
    """kube-proxy clears a UDP endpoint's conntrack entries only when it stops serving: a pod
    being deleted (not ready, serving, terminating) takes no new flow but keeps its own."""
    pods = "".join(f"""
    ---
    apiVersion: v1
    kind: Pod
    metadata: {{name: {name}, labels: {{app: dns}}{deleted}}}
    spec:
      nodeName: node1
      containers: [{{name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.47, args: [netexec, --udp-port=53]}}]
    """ for name, deleted in (("a", ""), ("b", "{}")))
    service = """
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: dns}
    spec: {selector: {app: dns}, ports: [{port: 53, protocol: UDP}]}
    """

    def ports(b_deleted: str | None):
        text = textwrap.dedent(pods.replace("{}", b_deleted or "") + service)
        return service_ports(cluster_of(text), "node1")

    run = RecordingRunner()
    proxy = NodeProxy("t", "node1", None, "nftables", POD_SUBNET, SERVICE_SUBNET, run=run)
    proxy._sync(ports(None))
    terminating = ports(", deletionTimestamp: '2030-01-01T00:00:30Z'")
    [port] = [p for p in terminating if p.service == "default/dns"]
    assert len(port.cluster_endpoints) == 1 and len(port.serving_ips) == 2  # no new flows, but it serves
    run.calls.clear()
    proxy._sync(terminating)
    assert [argv for argv, _ in run.calls if argv[0] == "conntrack"] == []
    # the pod's processes are gone: it no longer serves, and its flows are cleared
    ready_ip = port.cluster_endpoints[0].ip
    [leaving_ip] = [ip for ip in port.serving_ips if ip != ready_ip]
    stopped = ServicePort(**{**port.__dict__, "serving_ips": (ready_ip,)})
    run.calls.clear()
    proxy._sync([stopped if p is port else p for p in terminating])
    assert [argv for argv, _ in run.calls if argv[0] == "conntrack"] == [
        ["conntrack", "-D", "-p", "udp", "--orig-dst", port.cluster_ip, "--dport", "53", "--reply-src", leaving_ip]]


# -- loadBalancerSourceRanges: kube-proxy's LoadBalancer firewall -------------------------------

GUARDED = textwrap.dedent("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers:
          - {name: c, image: registry.k8s.io/e2e-test-images/agnhost:2.47, args: [netexec, --http-port=8080]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: office}
    spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80, targetPort: 8080}],
           loadBalancerSourceRanges: [192.168.1.96/28, 203.0.113.0/24]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: nodes}
    spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80, targetPort: 8080}],
           loadBalancerSourceRanges: [192.168.1.8/29, 010.0.0.0/8, "2001:db8::/32"]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: anyone}
    spec: {type: LoadBalancer, selector: {app: web}, ports: [{port: 80, targetPort: 8080}],
           loadBalancerSourceRanges: [10.0.0.0/8, 0.0.0.0/0]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: nobody}
    spec: {type: LoadBalancer, selector: {app: nobody}, ports: [{port: 80}], loadBalancerSourceRanges: [10.0.0.0/8]}
""")


@pytest.fixture(scope="module")
def guarded():
    return cluster_of(GUARDED, FOUR_NODES)


def test_firewall_sources_are_parsed_as_kube_proxy_does(guarded):
    ports = by_ref(service_ports(guarded, "node1"))
    office, nodes, anyone = ports["default/office"], ports["default/nodes"], ports["default/anyone"]
    assert office.firewall_sources == ("192.168.1.96/28", "203.0.113.0/24") and office.uses_firewall
    # sloppy IPv4 ("010."), IPv6 ranges left to an IPv6 proxy, and the LoadBalancer IPs too because
    # a range holds node1's own address (192.168.1.11)
    assert nodes.firewall_sources == ("192.168.1.8/29", "10.0.0.0/8", *nodes.load_balancer_ips)
    assert nodes.load_balancer_ips and nodes.load_balancer_ips == nodes.external_ips
    assert not anyone.uses_firewall  # a /0 lets everyone in


def test_without_endpoints_nftables_mode_still_firewalls_and_iptables_mode_rejects_everyone(guarded):
    nobody = by_ref(service_ports(guarded, "node1"))["default/nobody"]
    (lb,) = nobody.load_balancer_ips
    nft = nftables.port_rules(nobody, POD_SUBNET)
    assert nft.elements[(nftables.FIREWALL_IPS, f"{lb} . tcp . 80")].startswith("goto firewall-")
    assert nft.elements[(nftables.NO_ENDPOINT_SERVICES, f"{lb} . tcp . 80")] == nftables.REJECT
    ipt = iptables.port_rules(nobody, POD_SUBNET)
    assert not ipt.filter_firewall and not [c for c in ipt.chains if c.startswith("KUBE-FW-")]
    for mode, verdict in (("nftables", "drop"), ("iptables", "reject")):
        table = ServiceTable(cluster_of(GUARDED, FOUR_NODES + f"networking: {{proxyMode: {mode}}}\n"))
        assert table.translate(table.frontend(lb, 80, "TCP"), "192.168.1.100", "node1", "external").verdict == verdict


def test_nft_firewall_chain_drops_other_sources_before_dnat(guarded):
    office = by_ref(service_ports(guarded, "node1"))["default/office"]
    rules = nftables.port_rules(office, POD_SUBNET)
    chain = f"firewall-{nftables.port_chain_base(office)}"
    assert rules.chains[chain] == ("ip saddr != { 192.168.1.96/28, 203.0.113.0/24 } drop",)
    (lb,) = office.load_balancer_ips
    assert rules.elements[(nftables.FIREWALL_IPS, f"{lb} . tcp . 80")] == f"goto {chain}"
    assert (nftables.FIREWALL_IPS, f"{office.cluster_ip} . tcp . 80") not in rules.elements
    skeleton = "\n".join(nftables.skeleton(SERVICE_SUBNET))
    assert "filter-prerouting { type filter hook prerouting priority -110" in skeleton
    assert "filter-output { type filter hook output priority -110" in skeleton
    assert "firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips" in skeleton


def test_iptables_firewall_chain_passes_allowed_sources_and_the_filter_table_drops_the_rest(guarded):
    office = by_ref(service_ports(guarded, "node1"))["default/office"]
    rules = iptables.port_rules(office, POD_SUBNET)
    fw, ext = iptables.firewall_chain(office), iptables.chain_names(office)[2]
    (lb,) = office.load_balancer_ips
    assert rules.chains[fw] == [f'-A {fw} -m comment --comment "default/office loadbalancer IP" -s {src} -j {ext}'
                                for src in ("192.168.1.96/28", "203.0.113.0/24")]
    assert f"-d {lb}/32 --dport 80 -j {fw}" in "\n".join(rules.services)
    assert rules.filter_firewall == [f'-A KUBE-PROXY-FIREWALL -m comment --comment "default/office traffic not accepted '
                                     f'by {fw}" -m tcp -p tcp -d {lb}/32 --dport 80 -j DROP']
    text, _, _ = iptables.restore_input(iptables.TablesState(), [office], POD_SUBNET, True)
    assert '-I INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" ' \
           "-j KUBE-PROXY-FIREWALL" in text


@pytest.mark.parametrize("client, allowed", [("192.168.1.100", True), ("192.168.1.50", False), ("203.0.113.9", True)])
def test_simulator_and_rules_agree_on_who_passes_the_firewall(guarded, client, allowed):
    table = ServiceTable(guarded)
    office_svc = guarded.get("Service", "default", "office")
    (lb,) = office_svc.body["status"]["loadBalancer"]["ingress"]
    for node in guarded.nodes:
        office = by_ref(service_ports(guarded, node.name, table))["default/office"]
        rules = nftables.port_rules(office, POD_SUBNET)
        fw_verdict = rules.elements[(nftables.FIREWALL_IPS, f"{lb['ip']} . tcp . 80")]
        (rule,) = rules.chains[fw_verdict.split()[1]]
        passes = firewall_admits(rule, client)
        predicted = table.translate(table.frontend(lb["ip"], 80, "TCP"), client, node.name, "external")
        assert passes == allowed == (predicted.verdict == "dnat"), (node.name, predicted.reason)
        if not allowed:
            assert "loadBalancerSourceRanges" in predicted.reason and client in predicted.reason


@pytest.mark.parametrize("spec, timeout", [
    ({"sessionAffinity": "ClientIP"}, 10800),  # the API default, read where defaulting has not run
    ({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}, 60),
    ({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": None}}}, 10800),
    ({"sessionAffinity": "None", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}, None),
    ({}, None),
])
def test_one_affinity_timeout_rule(spec, timeout):
    assert affinity_timeout(spec) == timeout


def test_the_proxy_and_the_simulator_pin_clients_for_the_same_time(cluster):
    table = ServiceTable(cluster)
    compared = {}
    for sp in service_ports(cluster, "node1", table):
        translation = table.translate(table.frontend(sp.cluster_ip, sp.port, sp.protocol), "10.244.1.99", "node1", "pod")
        if translation.verdict == "dnat":
            assert translation.affinity_timeout == sp.affinity_timeout, sp.name
            compared[sp.name] = sp.affinity_timeout
    assert compared["sticky"] == 60 and compared["web"] is None
