"""The netlink path of incremental nftables syncs (podnet.proxy.nftnl) against nft itself, in
real namespaces (root only): the same transactions loaded through `nft -f` in one namespace
and through the compiled batch in another leave tables that `nft list table` prints alike.

Each test makes two namespaces of its own with unique names and removes them in a finally.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest

from podnet.proxy import nftables, nftnl
from podnet.proxy.loader import LoadError
from podnet.proxy.model import Endpoint, ServicePort
from podnet.proxy.node import NftablesProxier

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

POD_SUBNET, SERVICE_SUBNET = "10.244.0.0/16", "10.96.0.0/12"


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, text=True, capture_output=True, check=True, timeout=60).stdout


@pytest.fixture
def pair():
    """Two fresh namespaces: (through nft, through netlink)."""
    tag = secrets.token_hex(3)
    names = (f"nl{tag}-nft", f"nl{tag}-batch")
    try:
        for name in names:
            sh("ip", "netns", "add", name)
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        assert not set(names) & set(sh("ip", "netns", "list").split())


def listing(netns: str) -> str:
    return sh("ip", "netns", "exec", netns, "nft", "list", "table", nftables.FAMILY, nftables.TABLE)


def eps(*ips: str, port: int = 8080) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(ip, port) for ip in ips)


def sp(name: str, vip: str, *endpoints: Endpoint, **fields) -> ServicePort:
    return ServicePort("default", name, fields.pop("port_name", "http"), fields.pop("protocol", "TCP"), vip,
                       fields.pop("port", 80), cluster_endpoints=endpoints, **fields)


BASE = [
    sp("web", "10.96.0.10", *eps("10.244.1.2", "10.244.2.2", "10.244.3.2")),
    sp("dns", "10.96.0.53", *eps("10.244.1.5", port=53), protocol="UDP", port=53, port_name="dns"),
    sp("empty", "10.96.0.20"),
    sp("lb", "10.96.0.30", *eps("10.244.1.7", "10.244.2.7"), node_port=30080, external_ips=("192.168.1.200",),
       local_endpoints=eps("10.244.1.7"), external_local=True),
]

# Each step is a whole desired state; the proxier turns the difference into one transaction.
STEPS = [
    # one endpoint replaced, one added
    [BASE[0].__class__(**{**BASE[0].__dict__, "cluster_endpoints": eps("10.244.1.2", "10.244.2.9", "10.244.3.2", "10.244.4.2")}),
     *BASE[1:]],
    # a Service gains endpoints (reject -> dispatch), another loses them all (dispatch -> reject)
    [sp("web", "10.96.0.10"), BASE[1], sp("empty", "10.96.0.20", *eps("10.244.5.5")), BASE[3]],
    # affinity appears; SCTP; a Local internal policy; the LoadBalancer loses its local endpoint
    [sp("web", "10.96.0.10", *eps("10.244.1.2", "10.244.2.2"), affinity_timeout=300),
     sp("sctp", "10.96.0.40", *eps("10.244.1.9", port=9999), protocol="SCTP", port=9999, port_name="",
        local_endpoints=eps("10.244.1.9", port=9999), internal_local=True),
     sp("lb", "10.96.0.30", *eps("10.244.1.7", "10.244.2.7"), node_port=30080, external_ips=("192.168.1.200",),
        external_local=True)],
    # the affinity timeout changes (the set is replaced); everything else goes away
    [sp("web", "10.96.0.10", *eps("10.244.1.2", "10.244.2.2"), affinity_timeout=60)],
    [],
]


def test_incremental_syncs_through_netlink_leave_the_table_nft_would(pair):
    by_nft_ns, by_batch_ns = pair
    by_nft = NftablesProxier(by_nft_ns, POD_SUBNET, SERVICE_SUBNET, netlink=False)
    by_batch = NftablesProxier(by_batch_ns, POD_SUBNET, SERVICE_SUBNET)
    assert by_batch.loader is not None and by_nft.loader is None
    sent: list[str] = []
    real_load = by_batch.loader.load

    def load(text: str) -> None:
        sent.append(text)
        try:
            real_load(text)
        except nftnl.Unsupported as exc:  # would fall back to nft -f: not what this test is about
            pytest.fail(f"not compiled: {exc}")
    by_batch.loader.load = load
    try:
        for proxier in (by_nft, by_batch):
            proxier.sync(BASE)  # full: nft -f for both
        assert sent == []
        assert listing(by_nft_ns) == listing(by_batch_ns)
        for step, ports in enumerate(STEPS):
            for proxier in (by_nft, by_batch):
                proxier.sync(ports)
            assert len(sent) == step + 1, "the incremental sync did not go through netlink"
            assert listing(by_batch_ns) == listing(by_nft_ns), f"step {step}:\n{sent[-1]}"
    finally:
        by_batch.cleanup()
        by_nft.cleanup()


def test_prefixes_and_every_statement_encode_as_nft_does(pair):
    by_nft_ns, by_batch_ns = pair
    skeleton = "\n".join(nftables.skeleton(SERVICE_SUBNET)) + "\n"
    rules = [f"ip saddr != 10.{n}.0.0/{n} jump mark-for-masquerade" for n in range(1, 33)]
    rules += [f"ip daddr 10.{n}.3.0/{n} goto reject-chain" for n in range(8, 33, 3)]
    rules += ["ip daddr 10.96.0.10 udp dport 53 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
              "ip daddr 10.96.0.10 sctp sport 9 drop", "fib saddr type local jump mark-for-masquerade",
              "fib daddr type local goto reject-chain", "numgen random mod 7 0 goto reject-chain",
              "meta l4proto udp dnat to 10.244.1.0:53", "meta l4proto sctp dnat to 10.244.1.1:65535",
              "ip saddr @affinity-t goto reject-chain", "update @affinity-t { ip saddr }", "return", "accept"]
    text = ("add set ip kube-proxy affinity-t { type ipv4_addr; flags dynamic,timeout; timeout 10800s; }\n"
            "add chain ip kube-proxy t\n" + "".join(f"add rule ip kube-proxy t {rule}\n" for rule in rules) +
            "add element ip kube-proxy service-ips { 10.96.0.10 . tcp . 80 : goto t , 10.96.0.11 . sctp . 9 : goto t }\n"
            "add element ip kube-proxy service-nodeports { udp . 30053 : goto t }\n"
            "add element ip kube-proxy no-endpoint-services { 10.96.0.12 . tcp . 443 : drop }\n"
            "add element ip kube-proxy no-endpoint-nodeports { tcp . 30443 : goto reject-chain }\n"
            "add element ip kube-proxy cluster-ips { 10.96.0.10 , 10.96.0.11 }\n")
    for ns in pair:
        sh("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=skeleton)
    sh("ip", "netns", "exec", by_nft_ns, "nft", "-f", "-", stdin=text)
    loader = nftnl.Loader(by_batch_ns)
    try:
        loader.load(text)
        assert listing(by_batch_ns) == listing(by_nft_ns)
        deletions = ("delete element ip kube-proxy service-ips { 10.96.0.11 . sctp . 9 , 10.96.0.10 . tcp . 80 }\n"
                     "delete element ip kube-proxy cluster-ips { 10.96.0.11 }\n"
                     "delete element ip kube-proxy service-nodeports { udp . 30053 }\n"
                     "flush chain ip kube-proxy t\ndelete chain ip kube-proxy t\n"
                     "delete set ip kube-proxy affinity-t\n")
        sh("ip", "netns", "exec", by_nft_ns, "nft", "-f", "-", stdin=deletions)
        loader.load(deletions)
        assert listing(by_batch_ns) == listing(by_nft_ns)
    finally:
        loader.close()


def test_a_refused_batch_names_the_line_and_applies_nothing(pair):
    _, ns = pair
    sh("ip", "netns", "exec", ns, "nft", "-f", "-", stdin="\n".join(nftables.skeleton(SERVICE_SUBNET)) + "\n")
    before = listing(ns)
    loader = nftnl.Loader(ns)
    try:
        with pytest.raises(LoadError, match=r"No such file or directory.*add rule ip kube-proxy nowhere"):
            loader.load("add chain ip kube-proxy fresh\nadd rule ip kube-proxy fresh goto reject-chain\n"
                        "add rule ip kube-proxy nowhere goto reject-chain\n"
                        "add element ip kube-proxy cluster-ips { 10.96.0.99 }\n")
        assert listing(ns) == before
        loader.load("add chain ip kube-proxy fresh\n")  # the socket still works after a refusal
        assert "chain fresh" in listing(ns)
    finally:
        loader.close()
