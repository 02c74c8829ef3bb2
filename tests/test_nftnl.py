"""podnet.proxy.nftnl without privileges: what it compiles, how, and what it leaves to nft.
(tests/test_nftnl_root.py loads the same transactions through nft and netlink and compares.)"""

from __future__ import annotations

import struct

import pytest

from podnet.proxy import nftables, nftnl
from podnet.proxy.loader import RecordingRunner
from podnet.proxy.model import Endpoint, ServicePort
from podnet.proxy.node import NftablesProxier


def test_concatenated_keys_pad_every_field_to_four_bytes():
    # `nft --debug=netlink` prints 10.96.0.10 . udp . 53 as the host-order words 0a00600a 00000011 00003500
    assert nftnl.element_key("10.96.0.10 . udp . 53") == bytes.fromhex("0a60000a" "11000000" "00350000")
    assert nftnl.element_key("sctp . 30000") == bytes.fromhex("84000000" "75300000")
    assert nftnl.element_key("10.96.0.1") == bytes([10, 96, 0, 1])  # a single field: no padding


@pytest.mark.parametrize("line", [
    "add table ip kube-proxy",  # full syncs: nft's job
    "add chain ip kube-proxy services { type nat hook prerouting priority dstnat ; policy accept ; }",
    "add rule ip kube-proxy x counter",
    "add rule ip kube-proxy x ip saddr 10.0.0.0/0 drop",
    "add rule ip kube-proxy x ip6 saddr ::1 drop",
    "add rule ip6 kube-proxy x drop",
    "add rule ip kube-proxy x meta l4proto icmp drop",
    "add rule ip kube-proxy x numgen inc mod 2 0 drop",
    "add element ip kube-proxy service-ips { 10.96.0.300 . tcp . 80 : goto x }",
    "add element ip kube-proxy service-ips { 10.96.0.3 . tcp . 80 : continue }",
    "add set ip kube-proxy s { type ipv4_addr; }",
])
def test_anything_outside_the_subset_is_left_to_nft(line):
    with pytest.raises(nftnl.Unsupported):
        nftnl.compile_transaction(line + "\n")


def test_a_batch_is_framed_and_only_its_last_message_asks_for_an_ack():
    messages = nftnl.compile_transaction("add chain ip kube-proxy a\nadd rule ip kube-proxy a goto b\n"
                                         "delete element ip kube-proxy cluster-ips { 10.96.0.1 , 10.96.0.2 }\n")
    data = nftnl.batch(messages, first_seq=100)
    headers, offset = [], 0
    while offset < len(data):
        length, kind, flags, seq = struct.unpack_from("=IHHI", data, offset)
        headers.append((kind, flags, seq))
        offset += length
    assert offset == len(data)
    assert [h[0] for h in headers] == [0x10, 0xA03, 0xA06, 0xA0E, 0x11]
    assert [h[2] for h in headers] == [100, 101, 102, 103, 104]
    assert [bool(h[1] & nftnl.NLM_F_ACK) for h in headers] == [False, False, False, True, False]
    assert headers[2][1] & nftnl.NLM_F_APPEND and headers[1][1] & nftnl.NLM_F_CREATE


def test_every_incremental_transaction_of_the_renderer_compiles():
    eps = tuple(Endpoint(f"10.244.{i}.2", 8080) for i in range(1, 4))
    ports = [ServicePort("default", "web", "http", "TCP", "10.96.0.10", 80, cluster_endpoints=eps, affinity_timeout=60),
             ServicePort("default", "lb", "", "UDP", "10.96.0.30", 53, node_port=30053, external_ips=("192.168.1.200",),
                         cluster_endpoints=eps, local_endpoints=eps[:1], external_local=True, internal_local=True),
             ServicePort("default", "none", "", "SCTP", "10.96.0.40", 9, node_port=30009)]
    state = nftables.TableState()
    _, state, _ = nftables.transaction(state, ports, "10.244.0.0/16", "10.96.0.0/12", full=True)
    changed = [ServicePort(**{**ports[0].__dict__, "affinity_timeout": 30, "cluster_endpoints": eps[1:]}), ports[2]]
    text, _, rewritten = nftables.transaction(state, changed, "10.244.0.0/16", "10.96.0.0/12", full=False)
    assert rewritten == 2
    assert len(nftnl.compile_transaction(text)) == len(text.splitlines())


def test_the_proxier_uses_netlink_only_with_the_real_tools():
    assert NftablesProxier("n", "10.244.0.0/16", "10.96.0.0/12", RecordingRunner()).loader is None
    assert NftablesProxier("n", "10.244.0.0/16", "10.96.0.0/12").loader is not None


def test_a_long_element_list_is_split_into_messages_under_the_attribute_limit():
    entries = " , ".join(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256} . tcp . 80 : goto service-x" for i in range(5000))
    messages = nftnl.compile_transaction(f"add element ip kube-proxy service-ips {{ {entries} }}\n")
    assert len(messages) > 1 and all(len(attrs) < 65535 for _, _, attrs, _ in messages)
    assert sum(attrs.count(b"service-x\0") for _, _, attrs, _ in messages) == 5000


class _Answers:
    """A socket that answers from a list (what the kernel queued)."""

    def __init__(self, *answers: bytes):
        self.answers = list(answers)

    def recv(self, _size: int) -> bytes:
        return self.answers.pop(0)


def _error(seq: int, code: int, reason: str = "") -> bytes:
    tlvs = b""
    if reason:
        text = reason.encode() + b"\0"
        tlvs = struct.pack("=HH", 4 + len(text), nftnl.NLMSGERR_ATTR_MSG) + text + b"\0" * (-len(text) % 4)
    body = struct.pack("=i", code) + struct.pack("=IHHII", 16, 0, 0, seq, 0) + tlvs
    flags = nftnl.NLM_F_ACK_TLVS if reason else 0
    return struct.pack("=IHHII", 16 + len(body), nftnl.NLMSG_ERROR, flags, seq, 0) + body


def test_answers_of_an_earlier_batch_are_not_taken_for_this_ones():
    messages = nftnl.compile_transaction("add chain ip kube-proxy a\nadd chain ip kube-proxy b\n")
    stale = _error(7, -2)  # an ENOENT left over from a batch at seq 7
    assert nftnl.Loader._answers(_Answers(stale + _error(52, 0)), messages, first=50) == []


def test_a_refusal_names_the_line_and_the_kernels_reason():
    messages = nftnl.compile_transaction("add chain ip kube-proxy a\nadd rule ip kube-proxy a goto nowhere\n")
    errors = nftnl.Loader._answers(_Answers(_error(52, -2, "Chain not found"), _error(52, 0)), messages, first=50)
    assert errors == ["No such file or directory (ENOENT) - Chain not found: add rule ip kube-proxy a goto nowhere"]


def test_a_change_the_compiler_does_not_know_goes_to_nft_f_whole():
    """A firewall chain (loadBalancerSourceRanges: an anonymous interval set) is not compiled:
    that sync's whole text goes to `nft -f`, the next ones through netlink again."""
    runner = RecordingRunner()
    proxier = NftablesProxier("n", "10.244.0.0/16", "10.96.0.0/12", runner, netlink=True)
    batches: list[str] = []
    proxier.loader.send = lambda messages: batches.append(messages)
    eps = (Endpoint("10.244.1.2", 8080),)
    web = ServicePort("default", "web", "", "TCP", "10.96.0.10", 80, cluster_endpoints=eps)
    guarded = ServicePort("default", "lb", "", "TCP", "10.96.0.30", 80, external_ips=("192.168.1.200",),
                          load_balancer_ips=("192.168.1.200",), firewall_sources=("203.0.113.0/24",),
                          cluster_endpoints=eps)
    proxier.sync([web])  # full: nft -f
    proxier.sync([web, guarded])  # writes a firewall chain: nft -f
    assert len(runner.inputs("nft")) == 2 and not batches
    assert "ip saddr != { 203.0.113.0/24 } drop" in runner.inputs("nft")[1]
    proxier.sync([ServicePort(**{**web.__dict__, "cluster_endpoints": eps + (Endpoint("10.244.2.2", 8080),)}), guarded])
    assert len(runner.inputs("nft")) == 2 and len(batches) == 1  # back to netlink
