"""podnet-cni without privileges: the fake kernel (FakeNetlink) and host-local stores in memory
or in a temporary directory. Each case is named after the rule it proves."""

from __future__ import annotations

import copy
import ipaddress
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.cni import addr, bridge, config, hostlocal, main, spec
from podnet.cni.addr import ip_address, ip_interface, ip_network
from podnet.cni.record import Record
from podnet.cni.netlink import FakeNetlink, NetlinkError
from podnet.cni.spec import CniError, Result
from podnet.cni.store import DiskStore, MemoryStore
from podnet.naming import host_veth_name as pod_veth_name

SRC = str(Path(__file__).resolve().parents[1] / "src")

POD = "/run/netns/pod1"
POD2 = "/run/netns/pod2"


def conf_dict(**overrides) -> dict:
    conf = {
        "cniVersion": "1.0.0", "name": "testnet", "type": "bridge", "bridge": "cni0",
        "isGateway": True, "ipMasq": False, "hairpinMode": True, "mtu": 1400,
        "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]},
    }
    ipam = overrides.pop("ipam", None)
    conf.update(overrides)
    if ipam is not None:
        conf["ipam"] = ipam
    return conf


def netconf(**overrides) -> config.NetConf:
    return config.from_dict(conf_dict(**overrides))


def ipam(**fields) -> config.IPAMConf:
    conf = config.from_dict(conf_dict(ipam={"type": "host-local", **fields}))
    assert conf.ipam is not None
    return conf.ipam


def allocate_n(ipam_conf, store, n, prefix="c") -> list[str]:
    return [str(hostlocal.allocate(ipam_conf, store, f"{prefix}{i}", "eth0")[0].address.ip) for i in range(n)]


@pytest.fixture
def kernel():
    return FakeNetlink(existing_netns=(POD, POD2))


@pytest.fixture
def store():
    return MemoryStore()


def add(kernel, store, conf=None, cid="c1", netns=POD, ifname="eth0", args=None) -> Result:
    return bridge.add(conf or netconf(), cid, netns, ifname, node_netns="node", args=args, netlink=kernel, store=store)


def expect_error(code: int, fn, *args, match: str = "", **kwargs) -> CniError:
    with pytest.raises(CniError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    assert match in info.value.msg + " " + info.value.details
    return info.value


# --- allocation: host-local's "which address" ---------------------------------------------------

@pytest.mark.parametrize("fields, expected", [
    # the gateway (.1) is never handed out, so the first address is .2
    ({"subnet": "10.99.0.0/24"}, ["10.99.0.2", "10.99.0.3", "10.99.0.4"]),
    # a custom gateway at the top: allocation starts at .1
    ({"subnet": "10.99.0.0/24", "gateway": "10.99.0.254"}, ["10.99.0.1", "10.99.0.2", "10.99.0.3"]),
    # rangeStart/rangeEnd bound the pool
    ({"subnet": "10.99.0.0/24", "rangeStart": "10.99.0.100", "rangeEnd": "10.99.0.102"},
     ["10.99.0.100", "10.99.0.101", "10.99.0.102"]),
    # a gateway inside the range is skipped
    ({"subnet": "10.99.0.0/24", "rangeStart": "10.99.0.9", "gateway": "10.99.0.10"},
     ["10.99.0.9", "10.99.0.11", "10.99.0.12"]),
    # several ranges in one set act as exclusions: the ring goes from one range to the next
    ({"ranges": [[{"subnet": "10.99.0.0/24", "rangeStart": "10.99.0.5", "rangeEnd": "10.99.0.6"},
                  {"subnet": "10.99.1.0/24", "rangeStart": "10.99.1.7", "rangeEnd": "10.99.1.8"}]]},
     ["10.99.0.5", "10.99.0.6", "10.99.1.7", "10.99.1.8"]),
])
def test_allocation_order(fields, expected, store):
    assert allocate_n(ipam(**fields), store, len(expected)) == expected


def test_round_robin_resumes_after_last_reserved_and_wraps(store):
    pool = ipam(subnet="10.99.0.0/29")  # .1 gateway, .2-.6 usable, .7 broadcast
    assert allocate_n(pool, store, 3) == ["10.99.0.2", "10.99.0.3", "10.99.0.4"]
    hostlocal.release(store, "c0", "eth0")  # .2 free again, but not reused until the ring comes round
    assert allocate_n(pool, store, 2, "d") == ["10.99.0.5", "10.99.0.6"]
    assert allocate_n(pool, store, 1, "e") == ["10.99.0.2"]  # round to the beginning


def test_range_exhausted(store):
    pool = ipam(subnet="10.99.0.0/29")
    allocate_n(pool, store, 5)
    expect_error(spec.INTERNAL, hostlocal.allocate, pool, store, "late", "eth0",
                 match="no IP addresses available in range set: 10.99.0.1-10.99.0.6")


def test_duplicate_allocation_is_refused(store):
    pool = ipam(subnet="10.99.0.0/24")
    hostlocal.allocate(pool, store, "c1", "eth0")
    expect_error(spec.INTERNAL, hostlocal.allocate, pool, store, "c1", "eth0",
                 match="10.99.0.2 has been allocated to c1, duplicate allocation is not allowed")
    # the same container on another interface is another attachment
    assert str(hostlocal.allocate(pool, store, "c1", "eth1")[0].address) == "10.99.0.3/24"


@pytest.mark.parametrize("requested, message", [
    ("10.99.0.1", "requested ip 10.99.0.1 is subnet's gateway"),
    ("10.98.0.7", "failed to allocate all requested IPs: 10.98.0.7"),
    ("10.99.0.2", "requested IP address 10.99.0.2 is not available in range set 10.99.0.1-10.99.0.254"),
])
def test_requested_ip_errors(requested, message, store):
    hostlocal.allocate(ipam(subnet="10.99.0.0/24"), store, "holder", "eth0")  # holds .2
    conf = config.from_dict(conf_dict(), {"IP": requested})
    expect_error(spec.INTERNAL, hostlocal.allocate, conf.ipam, store, "c9", "eth0", match=message)
    assert set(store.owners) == {ip_address("10.99.0.2")}  # nothing half-reserved


def test_requested_ip_is_granted(store):
    conf = config.from_dict(conf_dict(runtimeConfig={"ips": ["10.99.0.77/24"]}))
    assert str(hostlocal.allocate(conf.ipam, store, "c1", "eth0")[0].address) == "10.99.0.77/24"


def test_two_range_sets_give_two_addresses_and_roll_back_together(store):
    pool = ipam(ranges=[[{"subnet": "10.99.0.0/24"}], [{"subnet": "10.98.0.0/30"}]])
    got = hostlocal.allocate(pool, store, "c1", "eth0")
    assert [str(i.address) for i in got] == ["10.99.0.2/24", "10.98.0.2/30"]
    # the second set is now full: the first set's address must not stay reserved
    expect_error(spec.INTERNAL, hostlocal.allocate, pool, store, "c2", "eth0", match="range 1")
    assert len(store.owners) == 2


# --- the on-disk store --------------------------------------------------------------------------

def test_disk_store_writes_host_locals_format(tmp_path):
    store = DiskStore(str(tmp_path), "testnet")
    hostlocal.allocate(ipam(subnet="10.99.0.0/24"), store, "abc123", "eth0")
    net = tmp_path / "testnet"
    assert sorted(os.listdir(net)) == ["10.99.0.2", "last_reserved_ip.0", "lock"]
    assert (net / "10.99.0.2").read_bytes() == b"abc123\r\neth0"
    assert (net / "last_reserved_ip.0").read_bytes() == b"10.99.0.2"
    assert oct((net / "10.99.0.2").stat().st_mode & 0o777) == "0o644"
    hostlocal.release(store, "abc123", "eth0")
    assert sorted(os.listdir(net)) == ["last_reserved_ip.0", "lock"]  # last_reserved stays


def test_restart_never_reuses_a_held_address(tmp_path):
    pool = ipam(subnet="10.99.0.0/29")
    first = DiskStore(str(tmp_path), "testnet")
    allocate_n(pool, first, 4)  # .2-.5
    hostlocal.release(first, "c1", "eth0")  # .3 free
    (tmp_path / "testnet" / "last_reserved_ip.0").unlink()  # even with the cursor lost
    again = DiskStore(str(tmp_path), "testnet")  # a new process: nothing remembered in memory
    assert allocate_n(pool, again, 2, "new") == ["10.99.0.3", "10.99.0.6"]


def test_files_from_before_ifnames_are_released_by_container_id(tmp_path):
    store = DiskStore(str(tmp_path), "testnet")
    (tmp_path / "testnet" / "10.99.0.9").write_bytes(b"oldcontainer")
    assert hostlocal.release(store, "oldcontainer", "eth0") == [ip_address("10.99.0.9")]


def test_concurrent_adds_from_threads_never_collide(tmp_path):
    pool = ipam(subnet="10.99.0.0/24")
    got, errors = [], []

    def worker(i):
        try:
            got.append(hostlocal.allocate(pool, DiskStore(str(tmp_path), "testnet"), f"t{i}", "eth0")[0].address)
        except Exception as exc:  # pragma: no cover - shown in the assertion
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(got)) == 40
    assert {str(a.ip) for a in got} == {f"10.99.0.{i}" for i in range(2, 42)}


def _process_worker(args):
    data_dir, i = args
    return str(hostlocal.allocate(ipam(subnet="10.99.0.0/24"), DiskStore(data_dir, "testnet"), f"p{i}", "eth0")[0].address)


def test_concurrent_adds_from_processes_never_collide(tmp_path):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        got = pool.map(_process_worker, [(str(tmp_path), i) for i in range(24)])
    assert len(set(got)) == 24


def test_lock_timeout_is_try_again_later(tmp_path, monkeypatch):
    import fcntl

    from podnet.cni import store as store_module

    monkeypatch.setattr(store_module, "LOCK_TIMEOUT", 0.05)
    store = DiskStore(str(tmp_path), "testnet")
    fd = os.open(tmp_path / "testnet" / "lock", os.O_RDONLY | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        expect_error(spec.TRY_AGAIN_LATER, hostlocal.allocate, ipam(subnet="10.99.0.0/24"), store, "c", "eth0")
    finally:
        os.close(fd)


def test_gc_releases_attachments_not_listed(tmp_path):
    store = DiskStore(str(tmp_path), "testnet")
    pool = ipam(subnet="10.99.0.0/24")
    for cid, ifname in [("a", "eth0"), ("a", "eth1"), ("b", "eth0")]:
        hostlocal.allocate(pool, store, cid, ifname)
    (tmp_path / "testnet" / "10.99.0.50").write_bytes(b"a")  # old format, container a still valid
    conf = config.from_dict(conf_dict(cniVersion="1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "a", "ifname": "eth0"}]}))
    released = bridge.gc(conf, store=store)
    assert released == [ip_address("10.99.0.3"), ip_address("10.99.0.4")]
    assert sorted(store.reserved()) == [ip_address("10.99.0.2"), ip_address("10.99.0.50")]


# --- ADD / DEL / CHECK on the fake kernel ----------------------------------------------------------

GOLDEN_ADD_RESULT = """\
{
    "cniVersion": "1.0.0",
    "interfaces": [
        {
            "name": "cni0",
            "mac": "0a:58:00:00:00:01"
        },
        {
            "name": "vethd0f631ca",
            "mac": "0a:58:00:00:00:02"
        },
        {
            "name": "eth0",
            "mac": "0a:58:00:00:00:03",
            "sandbox": "/run/netns/pod1"
        }
    ],
    "ips": [
        {
            "interface": 2,
            "address": "10.99.0.2/24",
            "gateway": "10.99.0.1"
        }
    ],
    "routes": [
        {
            "dst": "0.0.0.0/0"
        }
    ],
    "dns": {}
}"""


def test_golden_add_result(kernel, store):
    assert spec.dumps(add(kernel, store).to_dict()) == GOLDEN_ADD_RESULT


def test_add_result_for_old_versions_carries_ip_version(kernel, store):
    out = add(kernel, store, netconf(cniVersion="0.4.0")).to_dict()
    assert out["ips"] == [{"version": "4", "interface": 2, "address": "10.99.0.2/24", "gateway": "10.99.0.1"}]


def test_add_result_uses_config_dns(kernel, store):
    out = add(kernel, store, netconf(dns={"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]})).to_dict()
    assert out["dns"] == {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}


def test_add_builds_the_bridge_veth_addresses_and_routes(kernel, store):
    add(kernel, store)
    node, pod = kernel.state(None), kernel.state(POD)
    assert node["cni0"].kind == "bridge" and node["cni0"].up and node["cni0"].mtu == 1400
    host = node["vethd0f631ca"]
    assert host.master == node["cni0"].index and host.hairpin is True and host.oper_up and host.mtu == 1400
    assert pod["eth0"].peer == host.index and pod["eth0"].up
    assert kernel.addresses("cni0") == [ip_interface("10.99.0.1/24")]
    assert kernel.addresses("eth0", POD) == [ip_interface("10.99.0.2/24")]
    assert (ip_network("0.0.0.0/0"), ip_address("10.99.0.1")) in [(r.dst, r.gw) for r in kernel.routes(POD)]
    assert kernel.namespaces[None].sysctls["net/ipv4/ip_forward"] == "1"
    assert kernel.namespaces[POD].sysctls == {"net/ipv6/conf/eth0/accept_dad": "0", "net/ipv4/conf/eth0/arp_notify": "1"}


def test_second_pod_reuses_bridge_and_gateway(kernel, store):
    add(kernel, store)
    second = add(kernel, store, cid="c2", netns=POD2)
    assert str(second.ips[0].address) == "10.99.0.3/24"
    assert kernel.addresses("cni0") == [ip_interface("10.99.0.1/24")]


def test_is_default_gateway_adds_a_default_route(kernel, store):
    conf = netconf(isGateway=False, isDefaultGateway=True, ipam={"type": "host-local", "subnet": "10.99.0.0/24"})
    result = add(kernel, store, conf)
    assert [(str(r.dst), str(r.gw)) for r in result.routes] == [("0.0.0.0/0", "10.99.0.1")]


def test_bridge_with_another_address_needs_force_address(kernel, store):
    kernel.create_bridge("cni0", 0)
    kernel.add_address("cni0", ip_interface("10.50.0.1/24"))
    expect_error(spec.INTERNAL, add, kernel, store, match="already has an IP address different from 10.99.0.1/24")
    assert store.owners == {} and "eth0" not in kernel.namespaces[POD].links  # rolled back
    add(kernel, store, netconf(forceAddress=True))
    assert kernel.addresses("cni0") == [ip_interface("10.99.0.1/24")]


def test_name_taken_by_a_non_bridge(kernel, store):
    kernel.create_veth("cni0", POD2, "x", 0, "")
    expect_error(spec.INTERNAL, add, kernel, store, match='"cni0" already exists but is not a bridge')


def test_add_into_missing_netns_is_container_unknown(kernel, store):
    expect_error(spec.UNKNOWN_CONTAINER, add, kernel, store, netns="/run/netns/gone")
    assert kernel.calls == []  # nothing was touched


def test_existing_container_interface_fails_without_side_effects(kernel, store):
    add(kernel, store)
    expect_error(spec.INTERNAL, add, kernel, store, cid="c2", match="container veth name provided (eth0) already exists")
    assert len(store.owners) == 1


@pytest.mark.parametrize("method", ["set_link", "sysctl", "add_address", "add_route", "link"])
def test_failure_after_the_veth_was_made_undoes_it(kernel, store, method):
    add(kernel, store, cid="warmup", netns=POD2)  # the bridge and its address exist already
    before_node = set(kernel.namespaces[None].links)
    create_veth = kernel.create_veth

    def create_veth_then_arm(*args, **kwargs):  # the next call of `method` fails
        create_veth(*args, **kwargs)
        kernel.fail[method] = NetlinkError(5, "injected")

    kernel.create_veth = create_veth_then_arm  # type: ignore[method-assign]
    err = expect_error(spec.INTERNAL, add, kernel, store)
    assert "Input/output error" in err.msg or "injected" in err.msg
    assert set(kernel.namespaces[None].links) == before_node  # the host end is gone
    assert "eth0" not in kernel.namespaces[POD].links  # and the container end
    assert [o for o in store.owners.values() if o[0] == "c1"] == []  # and the address


def test_del_is_idempotent_and_tolerates_what_is_gone(kernel, store):
    conf = netconf()
    add(kernel, store)
    for _ in range(2):
        bridge.delete(conf, "c1", POD, "eth0", node_netns="node", netlink=kernel, store=store)
    assert "eth0" not in kernel.namespaces[POD].links and store.owners == {}
    assert "cni0" in kernel.namespaces[None].links  # the bridge stays
    add(kernel, store, cid="c2")
    kernel.remove_netns(POD)  # the runtime deleted the netns first
    bridge.delete(conf, "c2", POD, "eth0", node_netns="node", netlink=kernel, store=store)
    bridge.delete(conf, "c2", "", "eth0", node_netns="node", netlink=kernel, store=store)
    assert store.owners == {}


def check(kernel, store, prev, conf=None, **kw):
    conf = conf or netconf()
    return bridge.check(conf, kw.pop("cid", "c1"), kw.pop("netns", POD), "eth0", node_netns="node",
                        prev_result=prev, netlink=kernel, store=store)


def test_check_passes_right_after_add(kernel, store):
    check(kernel, store, add(kernel, store))


def _edited(result: Result, path: str, old: str, new: str) -> Result:
    data = result.to_dict()
    text = json.dumps(data).replace(old, new) if path == "*" else None
    return Result.from_dict(json.loads(text))


@pytest.mark.parametrize("old, new, message", [
    ("10.99.0.2/24", "10.99.0.9/24", "Failed to match addr 10.99.0.9/24 on interface eth0"),
    ('"dst": "0.0.0.0/0"', '"dst": "10.1.0.0/16"', "Expected Route {Dst:10.1.0.0/16 GW:<nil>} not found"),
    ('"mac": "0a:58:00:00:00:03"', '"mac": "0a:58:00:00:00:99"', "Interface eth0 Mac 0a:58:00:00:00:99 doesn't match"),
    ('"mac": "0a:58:00:00:00:02"', '"mac": "0a:58:00:00:00:98"', "Interface vethd0f631ca Mac doesn't match"),
    ('"mac": "0a:58:00:00:00:01"', '"mac": "0a:58:00:00:00:97"', "Bridge interface cni0 Mac doesn't match"),
    ("/run/netns/pod1", "/run/netns/other", "Sandbox in prevResult /run/netns/other doesn't match"),
    ("vethd0f631ca", "vethdeadbeef", "Interface name vethdeadbeef not found"),
])
def test_check_reports_each_mismatch(kernel, store, old, new, message):
    result = add(kernel, store)
    expect_error(spec.INTERNAL, check, kernel, store, _edited(result, "*", old, new), match=message)


def test_check_compares_configuration_with_the_kernel(kernel, store):
    result = add(kernel, store)
    expect_error(spec.INTERNAL, check, kernel, store, result, netconf(hairpinMode=False), match="hairpin mode true")
    expect_error(spec.INTERNAL, check, kernel, store, result, netconf(hairpinMode=False, promiscMode=True),
                 match="configured Promisc Mode true doesn't match current state: false")
    expect_error(spec.INTERNAL, check, kernel, store, result, netconf(mtu=9000), match="MTU 1400")


def test_check_needs_the_reservation_and_prev_result(kernel, store):
    result = add(kernel, store)
    expect_error(spec.INTERNAL, check, kernel, store, result, cid="other",
                 match="host-local: Failed to find address added by container other")
    expect_error(spec.INVALID_CONFIG, check, kernel, store, None, match="Required prevResult missing")
    store.owners.clear()
    store.owners[ip_address("10.99.0.5")] = ("c1", "eth0")
    expect_error(spec.INTERNAL, check, kernel, store, result, match="10.99.0.2 is not reserved for c1/eth0")


def test_pure_l2_without_ipam(kernel, store):
    result = add(kernel, store, netconf(ipam={}))
    assert result.ips == () and kernel.state(POD)["eth0"].up


def test_status(kernel, store):
    conf = netconf(cniVersion="1.1.0", ipam={"type": "host-local", "subnet": "10.99.0.0/30"})
    bridge.status(conf, node_netns="node", netlink=kernel, store=store)
    hostlocal.allocate(conf.ipam, store, "only", "eth0")  # .2 is the only address of a /30
    expect_error(spec.NOT_AVAILABLE, bridge.status, conf, node_netns="node", netlink=kernel, store=store,
                 match="no IP addresses available in range set 0")


# --- veth names -----------------------------------------------------------------------------------

def test_host_veth_names():
    k8s = {"K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": "web-0"}
    assert bridge.host_veth_name("c1", "eth0", k8s) == pod_veth_name("default", "web-0")
    names = {bridge.host_veth_name("c1", "eth0"), bridge.host_veth_name("c1", "eth1"),
             bridge.host_veth_name("c2", "eth0"), bridge.host_veth_name("c1", "eth1", k8s),
             bridge.host_veth_name("c1", "eth0", k8s)}
    assert len(names) == 5
    assert all(n.startswith("veth") and len(n) == 12 <= 15 for n in names)
    assert bridge.host_veth_name("c1") == bridge.host_veth_name("c1")  # deterministic


# --- configuration validation ----------------------------------------------------------------------

@pytest.mark.parametrize("overrides, code, message", [
    ({"cniVersion": "9.9.9"}, spec.INCOMPATIBLE_VERSION, "incompatible CNI versions"),
    ({"cniVersion": "0.2.0"}, spec.INCOMPATIBLE_VERSION, "incompatible CNI versions"),
    ({"name": ""}, spec.INVALID_CONFIG, "missing network name"),
    ({"name": "bad/name"}, spec.INVALID_CONFIG, "invalid characters found in network name"),
    ({"bridgee": "cni0"}, spec.UNSUPPORTED_FIELD, "unsupported field bridgee=\"cni0\""),
    ({"ipMasq": True}, spec.UNSUPPORTED_FIELD, "unsupported field ipMasq=true"),
    ({"vlan": 100}, spec.UNSUPPORTED_FIELD, "unsupported field vlan=100"),
    ({"type": "macvlan"}, spec.UNSUPPORTED_FIELD, "unsupported field type=\"macvlan\""),
    ({"plugins": []}, spec.UNSUPPORTED_FIELD, "unsupported field plugins"),
    ({"mtu": 10}, spec.INVALID_CONFIG, "invalid mtu 10"),
    ({"isGateway": "yes"}, spec.INVALID_CONFIG, "isGateway must be true or false"),
    ({"hairpinMode": True, "promiscMode": True}, spec.INVALID_CONFIG, "cannot set hairpin mode and promiscuous mode"),
    ({"bridge": "a-very-long-bridge-name"}, spec.INVALID_CONFIG, "invalid bridge name"),
    ({"ipam": {"type": "dhcp"}}, spec.UNSUPPORTED_FIELD, "ipam.type"),
    ({"ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "exclude": []}}, spec.UNSUPPORTED_FIELD, "ipam.exclude"),
    ({"ipam": {"type": "host-local"}}, spec.INVALID_CONFIG, "no IP ranges specified"),
    ({"ipam": {"type": "host-local", "subnet": "10.99.0.0/31"}}, spec.INVALID_CONFIG, "too small to allocate from"),
    ({"ipam": {"type": "host-local", "subnet": "10.99.0.5/24"}}, spec.INVALID_CONFIG, "Network has host bits set"),
    ({"ipam": {"type": "host-local", "subnet": "fd00::/64"}}, spec.UNSUPPORTED_FIELD, "IPv4 addresses only"),
    ({"ipam": {"type": "host-local", "subnet": "nonsense"}}, spec.INVALID_CONFIG, "invalid subnet"),
    ({"ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "gateway": "10.98.0.1"}}, spec.INVALID_CONFIG,
     "gateway 10.98.0.1 not in network 10.99.0.0/24"),
    ({"ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "rangeStart": "10.98.0.1"}}, spec.INVALID_CONFIG,
     "10.98.0.1 not in network 10.99.0.0/24"),
    ({"ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "rangeStart": "10.99.0.9", "rangeEnd": "10.99.0.8"}},
     spec.INVALID_CONFIG, "10.99.0.9 is in network 10.99.0.0/24 but after end 10.99.0.8"),
    ({"ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}, {"subnet": "10.99.0.0/25"}]]}},
     spec.INVALID_CONFIG, "overlap"),
    ({"ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}], [{"subnet": "10.99.0.0/24"}]]}},
     spec.INVALID_CONFIG, "range set 0 overlaps with 1"),
    ({"ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": "relative"}}, spec.INVALID_CONFIG, "absolute"),
    ({"ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "routes": [{"dst": "0.0.0.0/0", "mtu": 1}]}},
     spec.UNSUPPORTED_FIELD, "routes[0].mtu"),
    ({"dns": {"nameserver": ["x"]}}, spec.UNSUPPORTED_FIELD, "dns.nameserver"),
    ({"runtimeConfig": {"mac": "01:00:00:00:00:01"}}, spec.INVALID_CONFIG, "multicast"),
    ({"args": {"cni": {"mac": "zz"}}}, spec.INVALID_CONFIG, "invalid MAC"),
    ({"prevResult": {"ips": [{"address": "nope"}]}}, spec.DECODING_FAILURE, "failed to decode prevResult"),
])
def test_config_validation(overrides, code, message):
    expect_error(code, config.from_dict, conf_dict(**overrides), match=message)


def test_config_accepts_runtime_and_list_level_keys():
    conf = config.from_dict(conf_dict(cniVersion="1.1.0", cniVersions=["1.0.0", "1.1.0"], disableCheck=False,
                                      runtimeConfig={"mac": "0A:58:0A:00:00:01"}, capabilities={"mac": True},
                                      vlan=0, ipMasq=False, preserveDefaultVlan=True,
                                      **{"cni.dev/valid-attachments": []}))
    assert conf.mac == "0a:58:0a:00:00:01" and conf.valid_attachments == ()


def test_legacy_range_defaults():
    (r,) = ipam(subnet="10.99.0.0/29").range_sets[0].ranges
    assert (str(r.gateway), str(r.range_start), str(r.range_end)) == ("10.99.0.1", "10.99.0.1", "10.99.0.6")


def test_resolv_conf(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# comment\nnameserver 10.96.0.10\nsearch a.svc b.svc\noptions ndots:5\ndomain x\n")
    dns = config.parse_resolv_conf(str(path))
    assert dns.to_dict() == {"nameservers": ["10.96.0.10"], "domain": "x", "search": ["a.svc", "b.svc"],
                             "options": ["ndots:5"]}


# --- the executable: environment, stdin, exit status, error JSON ----------------------------------

def env(command="ADD", **extra) -> dict:
    base = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c1", "CNI_NETNS": POD, "CNI_IFNAME": "eth0",
            "CNI_PATH": "/usr/lib/cni"}
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def run(environ, conf=None, kernel=None, store=None, raw=None) -> tuple[int, dict]:
    stdin = raw if raw is not None else json.dumps(conf if conf is not None else conf_dict()).encode()
    status, out = main.run(environ, stdin, netlink=kernel, store=store)
    return status, (json.loads(out) if out else {})


@pytest.mark.parametrize("environ, code, message", [
    (env(CNI_COMMAND=None), spec.INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing"),
    (env("FOO"), spec.INVALID_ENVIRONMENT, "unknown CNI_COMMAND: FOO"),
    (env(CNI_CONTAINERID=None, CNI_NETNS=None), spec.INVALID_ENVIRONMENT,
     "required env variables [CNI_CONTAINERID,CNI_NETNS] missing"),
    (env("DEL", CNI_IFNAME=None), spec.INVALID_ENVIRONMENT, "required env variables [CNI_IFNAME] missing"),
    (env(CNI_CONTAINERID="-bad"), spec.INVALID_ENVIRONMENT, "invalid characters in containerID"),
    (env(CNI_IFNAME="abcdefghijklmnopq"), spec.INVALID_ENVIRONMENT, "interface name is too long"),
    (env(CNI_IFNAME="a/b"), spec.INVALID_ENVIRONMENT, "interface name contains"),
    (env(CNI_ARGS="FOO=bar"), spec.INVALID_ENVIRONMENT, 'ARGS: unknown args ["FOO=bar"]'),
    (env(CNI_ARGS="novalue"), spec.INVALID_ENVIRONMENT, "ARGS: invalid pair"),
])
def test_environment_errors(environ, code, message):
    status, out = run(environ)
    assert status == 1 and out["code"] == code and message in out["msg"], out


def test_error_json_shape():
    status, out = run(env(), raw=b"{bad")
    assert status == 1
    assert set(out) == {"cniVersion", "code", "msg"} and out["code"] == spec.DECODING_FAILURE
    status, out = run(env(), conf_dict(cniVersion="7.0.0"))
    assert out["code"] == spec.INCOMPATIBLE_VERSION and "plugin supports" in out["details"]


def test_command_version_gates(kernel, store):
    assert run(env("CHECK"), conf_dict(cniVersion="0.3.1"), kernel, store)[1]["msg"] == "config version does not allow CHECK"
    assert run(env("GC"), conf_dict(), kernel, store)[1]["code"] == spec.INCOMPATIBLE_VERSION
    assert run(env("STATUS"), conf_dict(), kernel, store)[1]["code"] == spec.INCOMPATIBLE_VERSION


def test_executable_add_check_del_gc_status_on_fakes(kernel, store):
    status, result = run(env(CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;FOO=1"),
                         kernel=kernel, store=store)
    assert status == 0 and result["interfaces"][1]["name"] == pod_veth_name("default", "web")
    assert run(env("CHECK"), conf_dict(prevResult=result), kernel, store) == (0, {})
    assert run(env("STATUS"), conf_dict(cniVersion="1.1.0"), kernel, store) == (0, {})
    assert run(env("GC"), conf_dict(cniVersion="1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "c1", "ifname": "eth0"}]}), kernel, store) == (0, {})
    assert len(store.owners) == 1
    assert run(env("DEL", CNI_NETNS=None), conf_dict(prevResult=result), kernel, store) == (0, {})
    assert run(env("DEL"), conf_dict(prevResult=result), kernel, store) == (0, {})
    assert store.owners == {}


def test_version_echoes_the_requested_version():
    status, out = run({"CNI_COMMAND": "VERSION"}, raw=b'{"cniVersion":"0.4.0"}')
    assert status == 0 and out == {"cniVersion": "0.4.0", "supportedVersions": list(spec.SUPPORTED_VERSIONS)}
    assert run({"CNI_COMMAND": "VERSION"}, raw=b"")[1]["cniVersion"] == spec.CURRENT_VERSION


def test_stdin_failure_is_io_error(monkeypatch, capsys):
    class Broken:
        buffer = property(lambda self: (_ for _ in ()).throw(OSError(5, "EIO")))

        def isatty(self):
            return False

    monkeypatch.setattr("sys.stdin", Broken())
    monkeypatch.setenv("CNI_COMMAND", "ADD")
    assert main.main() == 1
    assert json.loads(capsys.readouterr().out)["code"] == spec.IO_FAILURE


def test_the_executable_refuses_the_hosts_namespace(monkeypatch):
    from podnet.cni import netlink as netlink_module

    monkeypatch.setattr(netlink_module, "current_is_host", lambda: True)
    monkeypatch.delenv(bridge.ALLOW_HOST_ENV, raising=False)
    expect_error(spec.INVALID_ENVIRONMENT, bridge.open_netlink, None, "raw", match="host's network namespace")


# --- the installed executable ----------------------------------------------------------------

def test_installed_launcher_answers_version_without_the_callers_environment(tmp_path):
    from podnet.cni import install

    path = install.install(str(tmp_path / "bin"))
    assert os.access(path, os.X_OK) and open(path).readline().endswith(" -IS\n")
    proc = subprocess.run([path], input="{}", capture_output=True, text=True, timeout=30,
                          env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"})  # no PYTHONPATH
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


# What a run of the executable must not import: each costs it a millisecond or more, or (the
# second row) a few tenths of one. None is loaded by `python -IS` itself.
SLOW_MODULES = ("re", "json", "dataclasses", "typing", "ctypes", "hashlib", "threading", "inspect", "enum", "socket",
                "ipaddress", "functools", "collections", "contextlib", "encodings.ascii")

# VERSION, ADD, CHECK and DEL through main.run in a fresh `python -IS`, on the fake kernel and a
# real on-disk store, after importing the raw netlink backend and setns as the executable does.
_PLUGIN_RUN = """
import sys
sys.path.insert(0, sys.argv[1])
import podnet.cni.main, podnet.cni.rtnl
from podnet.cni import jsonio, nsenter
from podnet.cni.netlink import FakeNetlink
from podnet.cni.store import DiskStore
nsenter._libc_setns()
kernel, store = FakeNetlink(existing_netns=("/run/netns/pod1",)), DiskStore(sys.argv[2], "testnet")
conf = {"cniVersion": "1.0.0", "name": "testnet", "type": "bridge", "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "routes": [{"dst": "0.0.0.0/0"}]}}
env = {"CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/pod1", "CNI_IFNAME": "eth0"}
assert podnet.cni.main.run({"CNI_COMMAND": "VERSION"}, b"{}")[0] == 0
status, out = podnet.cni.main.run(dict(env, CNI_COMMAND="ADD"), jsonio.dumps(conf).encode(), netlink=kernel, store=store)
assert status == 0, out
"""
_PLUGIN_RUN_AFTER_ADD = """
conf["prevResult"] = jsonio.loads(out)
for command in ("CHECK", "DEL"):
    status, out = podnet.cni.main.run(dict(env, CNI_COMMAND=command), jsonio.dumps(conf).encode(), netlink=kernel, store=store)
    assert status == 0, (command, out)
print(" ".join(m for m in sys.argv[3:] if m in sys.modules))
"""


def test_a_plugin_run_imports_nothing_slow(tmp_path):
    """What the executable imports for VERSION/ADD/CHECK/DEL stays off the modules that cost a
    run milliseconds each (re, json, dataclasses, typing, ctypes, hashlib/OpenSSL, threading)
    and the ones podnet.cni.addr and .record replace (ipaddress with functools, collections'
    named tuples, contextlib)."""
    preloaded = subprocess.run([sys.executable, "-IS", "-c", "import sys; print(' '.join(sys.modules))"],
                               capture_output=True, text=True, timeout=30).stdout.split()
    assert not set(SLOW_MODULES) & set(preloaded)  # else this test could not tell
    proc = subprocess.run([sys.executable, "-IS", "-c", _PLUGIN_RUN + _PLUGIN_RUN_AFTER_ADD, SRC, str(tmp_path),
                           *SLOW_MODULES], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []


def test_the_launcher_exits_without_the_interpreters_teardown(tmp_path):
    """main_and_exit: the answer is flushed before os._exit, and the status is main()'s."""
    from podnet.cni import install

    path = install.install(str(tmp_path / "bin"))
    assert "main_and_exit()" in open(path).read()
    proc = subprocess.run([path], input="{bad", capture_output=True, text=True, timeout=30,
                          env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": POD, "CNI_IFNAME": "eth0",
                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == spec.DECODING_FAILURE
    # stdin that cannot be read (opened write-only): the IO error JSON still reaches the runtime
    fd = os.open(tmp_path / "write-only", os.O_WRONLY | os.O_CREAT)
    try:
        proc = subprocess.run([path], stdin=fd, capture_output=True, text=True, timeout=30,
                              env={"CNI_COMMAND": "ADD", "PATH": "/usr/bin:/bin"})
    finally:
        os.close(fd)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == spec.IO_FAILURE, proc


def test_an_interface_is_in_its_network_as_with_ipaddress():
    from podnet.cni import addr

    iface = addr.ip_interface("10.22.0.5/16")
    assert iface in iface.network and ipaddress.ip_interface("10.22.0.5/16") in ipaddress.ip_network("10.22.0.0/16")
    assert iface not in addr.ip_network("10.23.0.0/16")
    assert iface._replace(prefixlen=24) == addr.ip_interface("10.22.0.5/24")


# --- podnet.cni.addr against the stdlib's ipaddress ---------------------------------------------

def _stdlib_prints_mapped_as_dotted() -> bool:
    """Newer Pythons print ::ffff:1.2.3.4 as such; 3.11 (and podnet.cni.addr) as ::ffff:102:304."""
    return str(ipaddress.IPv6Address("::ffff:1.2.3.4")) != "::ffff:102:304"


def _outcome(module, function: str, value, **kwargs) -> tuple:
    """What parsing `value` gives: the error message, or the parts of the value we rely on."""
    try:
        parsed = getattr(module, function)(value, **kwargs)
    except ValueError as exc:
        return ("error", str(exc))
    ip = {"ip_address": lambda: parsed, "ip_interface": lambda: parsed.ip, "ip_network": lambda: parsed.network_address}[function]()
    if ip.version == 6 and int(ip) >> 32 == 0xFFFF and _stdlib_prints_mapped_as_dotted():
        text = None  # the one spelling that depends on the Python version
    else:
        text = str(parsed)
    out = ("ok", ip.version, int(ip), text, ip.packed)
    if function == "ip_interface":
        network = parsed.network
        out += (str(network) if text else None, int(network.network_address), network.prefixlen)
    if function == "ip_network":
        out += (parsed.prefixlen, int(parsed.broadcast_address), int(parsed.netmask))
    return out


def _same_as_stdlib(value) -> None:
    for function, kwargs in (("ip_address", {}), ("ip_interface", {}), ("ip_network", {"strict": False}),
                             ("ip_network", {"strict": True})):
        assert _outcome(addr, function, value, **kwargs) == _outcome(ipaddress, function, value, **kwargs), \
            (function, kwargs, value)


def _v6_spellings(value: int, draw) -> str:
    """One of the many ways to write an IPv6 address: leading zeros, upper case, "::" for any
    run of zero groups, an IPv4 tail."""
    groups = [value >> shift & 0xFFFF for shift in range(112, -1, -16)]
    words = [draw(st.sampled_from(["%x", "%X", "%04x", "%02x"])) % g for g in groups]
    if draw(st.booleans()):  # the low 32 bits as a dotted quad
        words[6:] = [str(ipaddress.IPv4Address(value & 0xFFFFFFFF))]
    zero_runs = [(i, j) for i in range(len(words)) for j in range(i + 1, len(words) + 1)
                 if all(groups[k] == 0 for k in range(i, j)) and (j <= 6 or len(words) == 8)]
    if zero_runs and draw(st.booleans()):
        i, j = draw(st.sampled_from(zero_runs))
        return ":".join(words[:i]) + "::" + ":".join(words[j:])
    return ":".join(words)


@st.composite
def address_texts(draw) -> str:
    if draw(st.booleans()):
        text = str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
    else:
        value = draw(st.integers(0, 2**128 - 1) | st.sampled_from([0, 1, 0xFFFF << 32 | 0x0A000001, 0xFE80 << 112]))
        text = _v6_spellings(value, draw)
        if draw(st.integers(0, 5)) == 0:
            text += "%" + draw(st.sampled_from(["eth0", "1", "a%b", ""]))
    suffix = draw(st.sampled_from(["", "/", "/{n}", "/{n}", "/0{n}", "/{mask}", "/{hostmask}", "/-1", "/1/2"]))
    n = draw(st.integers(0, 130))
    mask = str(ipaddress.IPv4Address((2**32 - 1) ^ (2**32 - 1) >> min(n, 32)))
    hostmask = str(ipaddress.IPv4Address((2**32 - 1) >> min(n, 32)))
    return text + suffix.format(n=n, mask=mask, hostmask=hostmask)


@st.composite
def mangled(draw) -> str:
    """A valid spelling with one character inserted, deleted or replaced."""
    text = draw(address_texts())
    at = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from(list("0123456789afAF:./% x")) | st.characters())
    how = draw(st.sampled_from(["insert", "delete", "replace"]))
    if how == "insert":
        return text[:at] + char + text[at:]
    return text[:at] + ("" if how == "delete" else char) + text[at + 1:]


@settings(max_examples=400)
@given(address_texts())
def test_addr_parses_and_prints_what_ipaddress_does(text):
    _same_as_stdlib(text)


@settings(max_examples=400)
@given(mangled() | st.text(alphabet="0123456789abcdefABCDEF:./%", max_size=45) | st.text(max_size=12))
def test_addr_refuses_what_ipaddress_refuses_with_its_message(text):
    _same_as_stdlib(text)


@pytest.mark.filterwarnings("ignore:__int__ returned non-int:DeprecationWarning")  # ipaddress keeps True as is
@given(st.integers(-2, 2**129) | st.booleans() | st.none() | st.floats(allow_nan=False) | st.lists(st.integers(), max_size=2))
def test_addr_takes_the_other_json_values_as_ipaddress_does(value):
    _same_as_stdlib(value)  # ints are addresses (IPv4 below 2**32); anything else is read as its str()


@pytest.mark.parametrize("text, expected", [
    ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  # the first of two equally long zero runs
    ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),  # the longest run, not the first
    ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  # a single zero group stays
    ("0:0:0:0:0:0:0:0", "::"),
    ("FE80::0001", "fe80::1"),
    ("::ffff:10.0.0.1", "::ffff:a00:1"),
    ("fe80::1%eth0", "fe80::1%eth0"),
])
def test_addr_ipv6_text_is_compressed_as_ipaddress_prints_it(text, expected):
    assert str(ip_address(text)) == expected
    if "ffff" not in text or not _stdlib_prints_mapped_as_dotted():
        assert str(ipaddress.ip_address(text)) == expected


@settings(max_examples=200)
@given(st.lists(address_texts() | mangled(), min_size=2, max_size=4))
def test_addr_equality_order_and_containment_agree_with_ipaddress(texts):
    for function in ("ip_address", "ip_interface"):
        ours, theirs = [], []
        for text in texts:
            try:
                theirs.append(getattr(ipaddress, function)(text))
            except ValueError:
                continue
            ours.append(getattr(addr, function)(text))
        for (a, b), (x, y) in zip(((a, b) for a in ours for b in ours), ((x, y) for x in theirs for y in theirs)):
            assert (a == b) == (x == y) and ((hash(a) == hash(b)) or a != b)
            if function == "ip_address":
                try:
                    expected = (x < y, x <= y, x > y, x >= y)
                except TypeError:
                    with pytest.raises(TypeError):
                        a < b  # noqa: B015 - IPv4 and IPv6 addresses have no order
                    continue
                assert (a < b, a <= b, a > b, a >= b) == expected
            else:
                assert (a.ip in b.network) == (x.ip in y.network)
                assert (a == a.ip, a == a.network) == (x == x.ip, x == x.network) == (False, False)


def test_addr_arithmetic_packing_and_values():
    gateway = ip_address("10.99.0.1")
    assert gateway + 1 == ip_address("10.99.0.2") and gateway - 1 == ip_address("10.99.0.0")
    assert int(gateway) == 0x0A630001 and gateway.packed == bytes([10, 99, 0, 1])
    assert addr.Address.from_packed(bytes([10, 99, 0, 1])) == gateway
    assert addr.Address.from_packed(ipaddress.IPv6Address("fe80::1").packed) == ip_address("fe80::1")
    assert {ip_address("10.0.0.1"), ip_address("10.0.0.1")} == {ip_address("10.0.0.1")}
    assert ip_address("fe80::1%eth0") != ip_address("fe80::1")  # the scope counts, as in ipaddress
    assert ip_address("10.0.0.1") != ip_address("::a00:1")  # same value, other version
    interface = addr.Interface(gateway, 24)
    assert str(interface) == "10.99.0.1/24" and interface == ip_interface("10.99.0.1/255.255.255.0")
    assert str(interface.network) == "10.99.0.0/24" and interface.network.broadcast_address == ip_address("10.99.0.255")
    assert addr.Network(ip_address("10.99.0.0"), 24) == ip_network("10.99.0.0/24") == interface.network
    with pytest.raises(ValueError, match="has host bits set"):
        addr.Network(gateway, 24)
    with pytest.raises(ValueError, match="10.99.0.1/24 has host bits set"):
        ip_network("10.99.0.1/24")
    for bad in (lambda: addr.Interface(gateway, 33), lambda: ip_address("255.255.255.255") + 1,
                lambda: addr.Address.from_packed(b"\0" * 5)):
        with pytest.raises(ValueError):
            bad()
    assert repr(interface) == "Interface('10.99.0.1/24')" and repr(gateway) == "Address('10.99.0.1')"
    for value in (interface, ip_interface("fe80::1%eth0/64"), interface.network, gateway):
        assert pickle.loads(pickle.dumps(value)) == value == copy.deepcopy(value)


# --- podnet.cni.record ----------------------------------------------------------------------------

class _Pair(Record):
    __slots__ = ("left", "right")
    _defaults = {"right": None}


class _OtherPair(Record):
    __slots__ = ("left", "right")


def test_records_are_frozen_values():
    pair = _Pair(1, right=(2, 3))
    assert pair == _Pair(left=1, right=(2, 3)) and hash(pair) == hash(_Pair(1, (2, 3)))
    assert _Pair(1) == _Pair(1, None) and _Pair(1) != _Pair(2)
    assert pair != _OtherPair(1, (2, 3)) and pair != (1, (2, 3))  # not a tuple, unlike a named tuple
    assert pair._replace(right=4) == _Pair(1, 4) and pair.right == (2, 3)
    assert repr(pair) == "_Pair(left=1, right=(2, 3))"
    assert pickle.loads(pickle.dumps(pair)) == pair and copy.deepcopy(pair) == pair
    with pytest.raises(AttributeError, match="frozen"):
        pair.left = 5  # type: ignore[misc]
    for bad in (lambda: _Pair(), lambda: _Pair(1, 2, 3), lambda: _Pair(1, left=1), lambda: _Pair(1, other=2),
                lambda: pair._replace(other=1)):
        with pytest.raises(TypeError):
            bad()
