"""kube-proxy's iptables mode: its chain layout and names, as iptables-restore input.

nat table (pkg/proxy/iptables): PREROUTING and OUTPUT jump to KUBE-SERVICES, which matches
each ClusterIP / LoadBalancer IP / externalIP and port and jumps to the service port's chain,
and ends with KUBE-NODEPORTS for packets to the node's own addresses. KUBE-SVC-<hash> (all
endpoints) and KUBE-SVL-<hash> (this node's, for a Local traffic policy) pick an endpoint
with `statistic --mode random --probability 1/n, 1/(n-1), …, 1` so each gets an equal share,
and KUBE-SEP-<hash> DNATs to it. KUBE-EXT-<hash> handles NodePort / LoadBalancer / externalIP
traffic (masquerade for policy Cluster; short-circuit pods and the node for Local).
KUBE-MARK-MASQ sets 0x4000 and KUBE-POSTROUTING masquerades marked packets. The filter
table's KUBE-SERVICES rejects ClusterIPs without endpoints and KUBE-EXTERNAL-SERVICES rejects
or drops external frontends without (local) endpoints. loadBalancerSourceRanges: KUBE-SERVICES
sends a LoadBalancer IP to KUBE-FW-<hash>, which passes the allowed sources on to KUBE-EXT;
the others are not DNATed, so the filter table's KUBE-PROXY-FIREWALL drops them. Every rule carries a comment naming
its Service, so `iptables -t nat -L | grep web` shows a Service's rules as the seeds show them.

Each sync writes both tables with one `iptables-restore --noflush`: the chains it declares
(`:CHAIN`) are flushed and rewritten; the others stay as they are. KUBE-SERVICES and its
peers are always rewritten; a service port's own chains only when that port changed
(kube-proxy's partial sync); chains of removed ports are deleted (`-X`).

A full sync also writes kube-proxy's canary, KUBE-PROXY-CANARY, into the mangle, nat and filter
tables (NewProxier's `ipt.Monitor`). Upstream's canary is an empty chain, so only `-X` takes it;
podnet's holds one RETURN rule, so a flush (`iptables -t nat -F`) empties it too, and the node's
kube-proxy (podnet.proxy.canary) notices either and syncs everything again.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

from podnet.proxy.model import MASQ_MARK, Endpoint, ServicePort

NEW = "-m conntrack --ctstate NEW "
JUMPS = {  # (table, built-in chain, kube chain, comment, match): what kube-proxy ensures with `iptables -I`
    ("nat", "PREROUTING", "KUBE-SERVICES", "kubernetes service portals", ""),
    ("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals", ""),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules", ""),
    ("filter", "FORWARD", "KUBE-SERVICES", "kubernetes service portals", ""),
    ("filter", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals", ""),
    ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", "kubernetes externally-visible service portals", ""),
    ("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", "kubernetes externally-visible service portals", ""),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", NEW),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", NEW),
    ("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", "kubernetes load balancer firewall", NEW),
}
NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL")
CANARY = "KUBE-PROXY-CANARY"
CANARY_TABLES = ("mangle", "nat", "filter")  # kube-proxy's iptablesCanaryTables order


def canary_lines() -> tuple[str, str]:
    """The canary chain's declaration (which flushes it) and its one rule, for iptables-restore."""
    return (f":{CANARY} - [0:0]",
            f"-A {CANARY} {_c('kube-proxy canary: a full resync follows when this rule is gone')} -j RETURN")


def port_proto_hash(port_ref: str, protocol: str, endpoint: str = "") -> str:
    """kube-proxy's portProtoHash / servicePortEndpointChainName: 16 base32 chars of sha256."""
    return base64.b32encode(hashlib.sha256((port_ref + protocol + endpoint).encode()).digest()).decode()[:16]


def chain_names(sp: ServicePort) -> tuple[str, str, str]:
    h = port_proto_hash(sp.port_ref, sp.proto)
    return f"KUBE-SVC-{h}", f"KUBE-SVL-{h}", f"KUBE-EXT-{h}"


def firewall_chain(sp: ServicePort) -> str:
    return f"KUBE-FW-{port_proto_hash(sp.port_ref, sp.proto)}"


def endpoint_chain(sp: ServicePort, ep: Endpoint) -> str:
    return f"KUBE-SEP-{port_proto_hash(sp.port_ref, sp.proto, ep.address)}"


def _c(text: str) -> str:
    return f'-m comment --comment "{text}"'


@dataclass
class PortRules:
    """One ServicePort's contribution: its own chains, and its lines in the shared chains."""
    chains: dict[str, list[str]] = field(default_factory=dict)  # nat chain -> rules ("-A …")
    services: list[str] = field(default_factory=list)  # nat KUBE-SERVICES
    nodeports: list[str] = field(default_factory=list)  # nat KUBE-NODEPORTS
    filter_services: list[str] = field(default_factory=list)
    filter_external: list[str] = field(default_factory=list)
    filter_firewall: list[str] = field(default_factory=list)  # filter KUBE-PROXY-FIREWALL


def port_rules(sp: ServicePort, pod_subnet: str) -> PortRules:
    svc_chain, local_chain, ext_chain = chain_names(sp)
    proto = sp.proto
    match = f"-m {proto} -p {proto}"
    out = PortRules()
    name = sp.port_ref

    def dispatch(chain: str, endpoints: tuple[Endpoint, ...]) -> list[str]:
        rules = []
        if sp.affinity_timeout:
            for ep in endpoints:
                sep = endpoint_chain(sp, ep)
                rules.append(f"-A {chain} {_c(f'{name} -> {ep.address}')} -m recent --name {sep} --mask 255.255.255.255 "
                             f"--rsource --rcheck --seconds {sp.affinity_timeout} --reap -j {sep}")
        n = len(endpoints)
        for i, ep in enumerate(endpoints):
            left = n - i
            chance = f"-m statistic --mode random --probability {1 / left:.10f} " if left > 1 else ""
            rules.append(f"-A {chain} {_c(f'{name} -> {ep.address}')} {chance}-j {endpoint_chain(sp, ep)}")
        return rules

    if sp.uses_cluster_chain:
        out.chains[svc_chain] = [
            f"-A {svc_chain} {_c(f'{name} cluster IP')} {match} -d {sp.cluster_ip}/32 --dport {sp.port} "
            f"! -s {pod_subnet} -j KUBE-MARK-MASQ", *dispatch(svc_chain, sp.cluster_endpoints)]
    if sp.uses_local_chain:
        out.chains[local_chain] = dispatch(local_chain, sp.local_endpoints)
    used = set(sp.cluster_endpoints if sp.uses_cluster_chain else ()) | set(sp.local_endpoints if sp.uses_local_chain else ())
    for ep in sorted(used, key=lambda e: (e.ip, e.port)):
        sep = endpoint_chain(sp, ep)
        recent = f"-m recent --name {sep} --mask 255.255.255.255 --rsource --set " if sp.affinity_timeout else ""
        out.chains[sep] = [f"-A {sep} {_c(name)} -s {ep.ip}/32 -j KUBE-MARK-MASQ",
                           f"-A {sep} {_c(name)} {match} {recent}-j DNAT --to-destination {ep.address}"]

    internal_chain = local_chain if sp.internal_local else svc_chain
    if sp.internal_endpoints:
        out.services.append(f"-A KUBE-SERVICES {_c(f'{name} cluster IP')} {match} -d {sp.cluster_ip}/32 "
                            f"--dport {sp.port} -j {internal_chain}")
    else:
        verdict = "DROP" if sp.cluster_endpoints else "REJECT"
        why = "has no local endpoints" if sp.cluster_endpoints else "has no endpoints"
        out.filter_services.append(f"-A KUBE-SERVICES {_c(f'{name} {why}')} {match} -d {sp.cluster_ip}/32 "
                                   f"--dport {sp.port} -j {verdict}")
    if sp.has_external:
        if sp.cluster_endpoints:
            if sp.external_local:
                rules = [f"-A {ext_chain} {_c('pod traffic for ' + name + ' external destinations')} -s {pod_subnet} -j {svc_chain}",
                         f"-A {ext_chain} {_c('masquerade LOCAL traffic for ' + name + ' external destinations')} "
                         "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                         f"-A {ext_chain} {_c('route LOCAL traffic for ' + name + ' external destinations')} "
                         f"-m addrtype --src-type LOCAL -j {svc_chain}"]
                if sp.local_endpoints:
                    rules.append(f"-A {ext_chain} -j {local_chain}")
            else:
                rules = [f"-A {ext_chain} {_c('masquerade traffic for ' + name + ' external destinations')} -j KUBE-MARK-MASQ",
                         f"-A {ext_chain} -j {svc_chain}"]
            out.chains[ext_chain] = rules
        external_verdict = None if sp.external_endpoints else ("DROP" if sp.cluster_endpoints else "REJECT")
        why = "has no local endpoints" if sp.cluster_endpoints else "has no endpoints"
        if sp.uses_firewall and sp.cluster_endpoints:
            # loadBalancerSourceRanges: allowed sources go on to KUBE-EXT; the others are not
            # DNATed and so still match KUBE-PROXY-FIREWALL's drop for the LoadBalancer IP
            fw = firewall_chain(sp)
            out.chains[fw] = [f"-A {fw} {_c(f'{name} loadbalancer IP')} -s {source} -j {ext_chain}"
                              for source in sp.firewall_sources]
            out.filter_firewall += [f"-A KUBE-PROXY-FIREWALL {_c(f'{name} traffic not accepted by {fw}')} {match} "
                                    f"-d {ip}/32 --dport {sp.port} -j DROP" for ip in sp.load_balancer_ips]
        for ip in sp.external_ips:
            if sp.cluster_endpoints:
                if sp.uses_firewall and ip in sp.load_balancer_ips:
                    out.services.append(f"-A KUBE-SERVICES {_c(f'{name} loadbalancer IP')} {match} -d {ip}/32 "
                                        f"--dport {sp.port} -j {firewall_chain(sp)}")
                    continue
                out.services.append(f"-A KUBE-SERVICES {_c(f'{name} external IP')} {match} -d {ip}/32 "
                                    f"--dport {sp.port} -j {ext_chain}")
            if external_verdict:
                out.filter_external.append(f"-A KUBE-EXTERNAL-SERVICES {_c(f'{name} {why}')} {match} -d {ip}/32 "
                                           f"--dport {sp.port} -j {external_verdict}")
        if sp.node_port:
            if sp.cluster_endpoints:
                out.nodeports.append(f"-A KUBE-NODEPORTS {_c(name)} {match} --dport {sp.node_port} -j {ext_chain}")
            if external_verdict:
                out.filter_external.append(f"-A KUBE-EXTERNAL-SERVICES {_c(f'{name} {why}')} -m addrtype --dst-type LOCAL "
                                           f"{match} --dport {sp.node_port} -j {external_verdict}")
    return out


@dataclass
class TablesState:
    ports: dict[tuple[str, str, str, str], tuple[ServicePort, PortRules]] = field(default_factory=dict)


def restore_input(old: TablesState, desired: list[ServicePort], pod_subnet: str, full: bool,
                  cache: dict[ServicePort, PortRules] | None = None, listing: str = "") -> tuple[str, TablesState, int]:
    """iptables-restore --noflush input for both tables, the state after it, ports rewritten.

    A full sync is given `listing` (iptables-save of the node): service chains found there
    that are not wanted are deleted, and missing jumps from the built-in chains are added."""
    cache = cache if cache is not None else {}
    new = TablesState()
    rewrite: list[PortRules] = []
    for sp in desired:
        key = (sp.namespace, sp.name, sp.port_name, sp.protocol)
        previous = old.ports.get(key)
        if previous is not None and not full and previous[0] == sp:
            new.ports[key] = previous
            continue
        rules = cache.get(sp)
        if rules is None:
            rules = cache[sp] = port_rules(sp, pod_subnet)
        new.ports[key] = (sp, rules)
        rewrite.append(rules)
    kept_chains = {c for _, rules in new.ports.values() for c in rules.chains}
    dead = sorted({c for _, rules in old.ports.values() for c in rules.chains} - kept_chains)
    if full:  # whatever an earlier proxy left behind
        dead = sorted(set(stale_chains(_table(listing, "nat"), new)))
    jumps = {"nat": [], "filter": []}
    if full:
        for table, builtin, chain, comment, extra in sorted(JUMPS):
            rule = f"{builtin} {extra}{_c(comment)} -j {chain}"
            if f"-A {rule}" not in _table(listing, table):
                jumps[table].append(f"-I {rule}")

    everything = [rules for _, rules in new.ports.values()]
    nat = ["*nat"]
    nat += [f":{c} - [0:0]" for c in NAT_CHAINS]
    nat += [f":{c} - [0:0]" for rules in rewrite for c in rules.chains]
    nat += [f":{c} - [0:0]" for c in dead]  # declared (so flushed) before -X
    canary = canary_lines() if full else ()
    nat += canary[:1]
    nat += jumps["nat"]
    nat += [line for rules in everything for line in rules.services]
    nat.append(f"-A KUBE-SERVICES {_c('kubernetes service nodeports; NOTE: this must be the last rule in this chain')} "
               "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")
    nat += [line for rules in everything for line in rules.nodeports]
    nat += [f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}",
            f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
            f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}",
            f"-A KUBE-POSTROUTING {_c('kubernetes service traffic requiring SNAT')} -j MASQUERADE --random-fully"]
    nat += [line for rules in rewrite for chain in rules.chains.values() for line in chain]
    nat += [f"-X {c}" for c in dead]
    nat += canary[1:]
    nat.append("COMMIT")
    filt = ["*filter", *(f":{c} - [0:0]" for c in FILTER_CHAINS), *canary[:1], *jumps["filter"]]
    filt += [line for rules in everything for line in rules.filter_services]
    filt += [line for rules in everything for line in rules.filter_external]
    filt += [line for rules in everything for line in rules.filter_firewall]
    filt += canary[1:]
    filt.append("COMMIT")
    mangle = ["*mangle", *canary, "COMMIT"] if full else []
    return "\n".join(nat + filt + mangle) + "\n", new, len(rewrite)


def _table(listing: str, table: str) -> str:
    """One table's part of iptables-save output."""
    out, inside = [], False
    for line in listing.splitlines():
        if line.startswith("*"):
            inside = line[1:].strip() == table
        elif inside:
            out.append(line)
    return "\n".join(out)


def stale_chains(listing: str, state: TablesState) -> list[str]:
    """Per-service KUBE- chains in `iptables-save -t nat` output that `state` does not own."""
    owned = {c for _, rules in state.ports.values() for c in rules.chains} | set(NAT_CHAINS) | {CANARY}
    found = [line[1:].split()[0] for line in listing.splitlines() if line.startswith(":KUBE-")]
    return [c for c in found if c not in owned]
