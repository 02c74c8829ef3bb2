"""The bridge plugin's semantics: ADD, DEL, CHECK, GC and STATUS, with rollback.

In-process API (what podnet's node agent calls; the executable runs exactly this code):

    add(conf, container_id, netns, ifname, *, node_netns, args=None, netlink=None, store=None) -> Result
    delete(conf, container_id, netns, ifname, *, node_netns, netlink=None, store=None) -> None
    check(conf, container_id, netns, ifname, *, node_netns, prev_result=None, netlink=None, store=None) -> None
    gc(conf, *, valid_attachments=None, store=None) -> list[Address]
    status(conf, *, node_netns, netlink=None, store=None) -> None

`conf` is a `podnet.cni.config.NetConf` (`config.parse(text)` or `config.from_dict(obj)`);
`netns` is the pod's namespace (CNI_NETNS: a path, or a name under /run/netns); `node_netns`
is the node's namespace name, where the bridge and host veth ends live (None only for the
executable, which `ip netns exec` already put there). Failures raise `spec.CniError`.
`netlink` (a `netlink.Netlink`) and `store` (a `store.Store`) default to the kernel and to
host-local's files under ipam.dataDir; tests pass `FakeNetlink` and `MemoryStore`.

Host-side veth names are "veth" + 8 hex characters, derived, not random: from
K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS via podnet.naming.host_veth_name (so the node
agent and the plugin agree on the name without asking each other), otherwise from the
container ID. An extra interface of the same container (CNI_IFNAME other than eth0) hashes
its ifname in too, so names never collide.

Semantics follow containernetworking/plugins' bridge + host-local, with these guarantees:
ADD undoes everything it made (veth pair, address reservation) when a later step fails;
"already exists" is success for the bridge, its address and forwarding; DEL succeeds on
whatever is left (interface, netns or reservation already gone) and may be repeated; CHECK
re-derives the state from the kernel and the store and compares it with prevResult.
"""

from __future__ import annotations

import os
import time

from podnet.cni import hostlocal
from podnet.cni.addr import Address, Interface as IPInterface, ip_network
from podnet.cni.announce import announce
from podnet.cni.config import NetConf
from podnet.cni.spec import (
    DNS, INTERNAL, INVALID_CONFIG, INVALID_ENVIRONMENT, NOT_AVAILABLE, UNKNOWN_CONTAINER,
    CniError, Interface, IPConfig, Result, Route,
)
from podnet.cni.store import DiskStore
from podnet.naming import host_veth_name as pod_veth_name, veth_name

TYPE_CHECKING = False  # not typing's: importing typing costs the executable ~3 ms
if TYPE_CHECKING:
    from podnet.cni.netlink import Netlink
    from podnet.cni.store import Store

DEFAULT_IFNAME = "eth0"
# Poll for the host veth's carrier (the reference sleeps 0/50/500/1000/1000 ms between looks;
# finer steps here, the same 2.5 s in all).
OPER_UP_WAITS = (0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 0.5)
BACKEND_ENV = "PODNET_CNI_NETLINK"  # "raw" (default) or "pyroute2"
ALLOW_HOST_ENV = "PODNET_CNI_ALLOW_HOST_NETNS"


def host_veth_name(container_id: str, ifname: str = DEFAULT_IFNAME, args: dict | None = None) -> str:
    args = args or {}
    namespace, pod = args.get("K8S_POD_NAMESPACE"), args.get("K8S_POD_NAME")
    if namespace and pod:
        if ifname == DEFAULT_IFNAME:
            return pod_veth_name(namespace, pod)
        return veth_name(f"{namespace}/{pod}/{ifname}")
    return veth_name(container_id if ifname == DEFAULT_IFNAME else f"{container_id}/{ifname}")


def open_netlink(node_netns: str | None, backend: str | None = None) -> "Netlink":
    backend = backend or os.environ.get(BACKEND_ENV) or "raw"
    allow_host = os.environ.get(ALLOW_HOST_ENV, "") in ("1", "true")
    try:
        if backend == "pyroute2":
            import sys  # the backends load lazily: a plugin run pays only for the one it uses

            if sys.flags.no_site:  # the installed launcher runs with -S; pyroute2 is in site-packages
                import site  # -S skipped site; pyroute2 lives in site-packages

                site.main()
            from podnet.cni.netlink import Pyroute2Netlink  # pyroute2: ~120 ms, only when asked for

            return Pyroute2Netlink(node_netns, allow_host=allow_host)
        if backend == "raw":
            from podnet.cni.rtnl import RawNetlink  # the default backend, loaded with the choice

            return RawNetlink(node_netns, allow_host=allow_host)
    except PermissionError as exc:
        raise CniError(INVALID_ENVIRONMENT, "refusing to run in the host's network namespace", str(exc)) from None
    except OSError as exc:
        raise CniError(INTERNAL, f"failed to open netlink in node namespace {node_netns}", str(exc)) from None
    raise CniError(INVALID_ENVIRONMENT, f"unknown netlink backend {backend!r}", f"{BACKEND_ENV}: raw or pyroute2")


# The two context managers are classes, not @contextmanager: contextlib costs a plugin run ~0.4 ms.

class _netlink:
    """`with _netlink(node_netns, given) as nl`: the caller's backend, or a new one for the node
    that is closed at the end."""

    def __init__(self, node_netns: str | None, given: "Netlink | None") -> None:
        self.node_netns, self.given = node_netns, given
        self.opened: "Netlink | None" = None

    def __enter__(self) -> "Netlink":
        if self.given is not None:
            return self.given
        self.opened = open_netlink(self.node_netns)
        return self.opened

    def __exit__(self, *exc_info: object) -> None:
        if self.opened is not None:
            self.opened.close()
            self.opened = None


class _step:
    """`with _step(what)`: kernel errors (OSError) become error JSON (code 999) that says which
    step failed."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, OSError):
            raise CniError(INTERNAL, f"{self.what}: {exc.strerror or exc}") from None


def _store(conf: NetConf, given: "Store | None") -> "Store":
    assert conf.ipam is not None
    return given if given is not None else DiskStore(conf.ipam.data_dir, conf.name)


def _require_netns(nl: "Netlink", netns: str, node_netns: str | None) -> None:
    if not nl.netns_exists(netns):
        raise CniError(UNKNOWN_CONTAINER, f"failed to open netns {netns!r}", "no such network namespace")
    from podnet.cni.nsenter import netns_path, same_netns  # off the plugin's start-up path (bench/cni.py)

    node = netns_path(node_netns) if node_netns else "/proc/thread-self/ns/net"
    try:
        if same_netns(netns_path(netns), node):
            raise CniError(INVALID_ENVIRONMENT, "plugin's netns and netns from CNI_NETNS should not be the same", "CNI_NETNS")
    except OSError:
        pass  # fakes: the namespaces are not files


# --- ADD -------------------------------------------------------------------------------------

def _ensure_bridge(nl: "Netlink", conf: NetConf):
    from podnet.cni.netlink import LinkExists  # off the plugin's start-up path

    with _step(f'failed to create bridge "{conf.bridge}"'):
        created = True
        try:
            nl.create_bridge(conf.bridge, conf.mtu)
        except LinkExists:
            created = False
        bridge = nl.link(conf.bridge)
        if bridge is None:
            raise CniError(INTERNAL, f'failed to create bridge "{conf.bridge}": could not lookup "{conf.bridge}"')
        if bridge.kind != "bridge":
            raise CniError(INTERNAL, f'failed to create bridge "{conf.bridge}": "{conf.bridge}" already exists but is not a bridge')
        if conf.promisc_mode and not bridge.promisc:
            nl.set_link(conf.bridge, promisc=True)
        nl.sysctl(f"net/ipv6/conf/{conf.bridge}/accept_ra", "0")  # we own this interface's routes
        if not bridge.up:
            nl.set_link(conf.bridge, up=True)
    return bridge, created


def _ensure_gateway_address(nl: "Netlink", conf: NetConf, address: IPInterface, own_mac: str) -> None:
    with _step("failed to set bridge addr"):
        current = [a for a in nl.addresses(conf.bridge) if a.version == 4]
        if address in current:
            return
        for other in current:
            if not conf.force_address:
                raise CniError(INTERNAL, f'failed to set bridge addr: "{conf.bridge}" already has an IP address '
                               f"different from {address}")
            nl.del_address(conf.bridge, other)
        nl.add_address(conf.bridge, address)
        # Pin the bridge's MAC to the one it had before this port joined: otherwise it follows
        # the lowest port MAC as pods come and go.
        nl.set_link(conf.bridge, mac=own_mac)


def _gateways_and_routes(conf: NetConf, ipcs: list[IPConfig]) -> tuple[list[IPConfig], list[Route]]:
    assert conf.ipam is not None
    routes = list(conf.ipam.routes)
    ips = []
    for ipc in ipcs:
        gateway = ipc.gateway
        if gateway is None and conf.is_gateway:
            gateway = ipc.address.network.network_address + 1
        ips.append(IPConfig(address=ipc.address, gateway=gateway, interface=2))
        if conf.is_default_gateway and not any(r.dst.prefixlen == 0 and r.gw is not None for r in routes):
            routes.append(Route(dst=ip_network("0.0.0.0/0"), gw=gateway))
    return ips, routes


def _configure_container(nl: "Netlink", conf: NetConf, netns: str, ifname: str,
                         ips: list[IPConfig], routes: list[Route]) -> None:
    with _step(f'failed to configure "{ifname}" in {netns}'):
        if conf.enable_dad:
            nl.sysctl(f"net/ipv6/conf/{ifname}/enhanced_dad", "1", netns)
            nl.sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "1", netns)
        else:
            nl.sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "0", netns)
        nl.sysctl(f"net/ipv4/conf/{ifname}/arp_notify", "1", netns)
        nl.set_link(ifname, netns, up=True)
        v4gw = next((ipc.gateway for ipc in ips if ipc.gateway is not None), None)
        for ipc in ips:
            nl.add_address(ifname, ipc.address, netns)
        for route in routes:
            nl.add_route(ifname, route.dst, route.gw or v4gw, netns)


def _wait_oper_up(nl: "Netlink", name: str):
    link = None
    for pause in OPER_UP_WAITS:
        if pause:
            time.sleep(pause)
        link = nl.link(name)
        if link is None:
            raise CniError(INTERNAL, f'failed to lookup "{name}"')
        if link.oper_up:
            return link
    raise CniError(INTERNAL, f"bridge port in error state: {name} is not operationally up")


def add(conf: NetConf, container_id: str, netns: str, ifname: str, *, node_netns: str | None,
        args: dict | None = None, netlink: "Netlink | None" = None, store: "Store | None" = None) -> Result:
    """Attach the container: a veth pair with `ifname` in `netns` and its peer on the bridge,
    an address from host-local, routes, the gateway address on the bridge."""
    from podnet.cni.netlink import LinkExists  # off the plugin's start-up path

    with _netlink(node_netns, netlink) as nl:
        _require_netns(nl, netns, node_netns)
        bridge, created = _ensure_bridge(nl, conf)
        host_name = host_veth_name(container_id, ifname, args)
        undo: list = []
        try:
            with _step("failed to make veth pair"):
                try:
                    nl.create_veth(host_name, netns, ifname, conf.mtu, conf.mac)
                except LinkExists as exc:
                    if exc.netns is not None:
                        raise CniError(INTERNAL, f"container veth name provided ({ifname}) already exists") from None
                    raise CniError(INTERNAL, f"host veth name ({host_name}) already exists",
                                   "another attachment of this pod/container is still present on the node; DEL it first") from None
            undo.append(lambda: nl.delete_link(ifname, netns))  # one end takes the other with it
            with _step(f"failed to connect {host_name!r} to bridge {conf.bridge}"):
                nl.sysctl(f"net/ipv6/conf/{host_name}/accept_ra", "0")
                nl.set_link(host_name, master=bridge.index)
                nl.set_link(host_name, hairpin=conf.hairpin_mode)
                nl.set_link(host_name, up=True)
                if created:
                    # Pin the new bridge's MAC once its first port is in (the reference does so
                    # only when it gets a gateway address): else it follows the lowest port MAC
                    # and CHECK of an older pod's prevResult fails. (Pinned before any port
                    # joins, the kernel would leave the bridge's operstate UNKNOWN.)
                    nl.set_link(conf.bridge, mac=bridge.mac)
            ips: list[IPConfig] = []
            routes: list[Route] = []
            dns = DNS()
            if conf.ipam is not None:
                store_ = _store(conf, store)
                allocated = hostlocal.allocate(conf.ipam, store_, container_id, ifname)
                undo.append(lambda: hostlocal.release(store_, container_id, ifname))
                if conf.ipam.resolv_conf:
                    from podnet.cni.config import parse_resolv_conf  # only ADD with a resolv.conf reads it

                    dns = parse_resolv_conf(conf.ipam.resolv_conf)
                ips, routes = _gateways_and_routes(conf, allocated)
                _configure_container(nl, conf, netns, ifname, ips, routes)
                if conf.is_gateway:
                    for ipc in ips:
                        if ipc.gateway is not None:
                            _ensure_gateway_address(nl, conf, IPInterface(ipc.gateway, ipc.address.network.prefixlen),
                                                   bridge.mac)
                    if any(ipc.gateway is not None for ipc in ips):
                        if not nl.sysctl("net/ipv4/ip_forward", "1"):
                            raise CniError(INTERNAL, "failed to enable forwarding")
            else:
                with _step(f'failed to set "{ifname}" up'):
                    nl.set_link(ifname, netns, up=True)
            with _step("failed to read back the interfaces"):
                host = _wait_oper_up(nl, host_name)
                bridge = nl.link(conf.bridge)
                container = nl.link(ifname, netns)
            assert bridge is not None and container is not None
            ipv4 = [ipc.address.ip.packed for ipc in ips if ipc.address.version == 4]
            if ipv4:  # the port forwards now: neighbours holding these addresses learn the new MAC
                announce(netns, ifname, container.mac, ipv4)
        except BaseException:
            for step in reversed(undo):
                try:
                    step()
                except Exception:  # noqa: BLE001 - best effort: report the original failure
                    pass
            raise
    return Result(
        cni_version=conf.cni_version,
        interfaces=(Interface(bridge.name, bridge.mac), Interface(host.name, host.mac),
                    Interface(container.name, container.mac, sandbox=netns)),
        ips=tuple(ips),
        routes=tuple(routes),
        dns=conf.dns if conf.dns else dns,
    )


# --- DEL -------------------------------------------------------------------------------------

def delete(conf: NetConf, container_id: str, netns: str, ifname: str, *, node_netns: str | None,
           netlink: "Netlink | None" = None, store: "Store | None" = None) -> None:
    """Detach: the container's interface (taking the host end with it), then the address.
    Whatever is already gone is fine; the bridge and forwarding stay, as with the reference."""
    if netns:
        from podnet.cni.netlink import netns_exists  # off the plugin's start-up path

        if netlink is not None and netlink.netns_exists(netns) or netlink is None and netns_exists(netns):
            with _netlink(node_netns, netlink) as nl, _step(f'failed to delete "{ifname}"'):
                nl.delete_link(ifname, netns)
    if conf.ipam is not None:
        hostlocal.release(_store(conf, store), container_id, ifname)


# --- CHECK -----------------------------------------------------------------------------------

def _fail(msg: str) -> CniError:
    return CniError(INTERNAL, msg)


def check(conf: NetConf, container_id: str, netns: str, ifname: str, *, node_netns: str | None,
          prev_result: Result | None = None, netlink: "Netlink | None" = None,
          store: "Store | None" = None) -> None:
    """Compare the attachment in the kernel and the store with prevResult (the ADD result);
    raise CniError naming the first difference."""
    prev = prev_result or conf.prev_result
    with _netlink(node_netns, netlink) as nl:
        if not nl.netns_exists(netns):
            raise _fail(f"failed to open netns {netns!r}: no such network namespace")
        if conf.ipam is not None:
            held = hostlocal.holds(_store(conf, store), container_id, ifname)
            if not held:
                raise _fail(f"host-local: Failed to find address added by container {container_id}")
        if prev is None:
            raise CniError(INVALID_CONFIG, "Required prevResult missing")
        with _step("CHECK failed to read the kernel's state"):
            _check_links(nl, conf, netns, ifname, prev)
            _check_addresses_and_routes(nl, netns, ifname, prev)
        if conf.ipam is not None:
            for ipc in prev.ips:
                if any(ipc.address.ip in rs for rs in conf.ipam.range_sets) and ipc.address.ip not in held:
                    raise _fail(f"host-local: {ipc.address.ip} is not reserved for {container_id}/{ifname}")


def _check_links(nl: "Netlink", conf: NetConf, netns: str, ifname: str, prev: Result) -> None:
    br_entry = next((i for i in prev.interfaces if i.name == conf.bridge), None)
    cont_entry = next((i for i in prev.interfaces if i.name == ifname and i.sandbox == netns), None)
    if br_entry is None:
        raise _fail(f"CNI created bridge {conf.bridge} in host namespace was not found")
    if br_entry.sandbox:
        raise _fail(f"Interface {br_entry.name} should not be in sandbox")
    bridge = nl.link(conf.bridge)
    if bridge is None:
        raise _fail(f"Interface name {conf.bridge} not found")
    if bridge.kind != "bridge":
        raise _fail(f"Interface {conf.bridge} does not have link type of bridge")
    if br_entry.mac and br_entry.mac != bridge.mac:
        raise _fail(f"Bridge interface {conf.bridge} Mac doesn't match: {br_entry.mac}")
    if bridge.promisc != conf.promisc_mode:
        raise _fail(f"Bridge interface {conf.bridge} configured Promisc Mode {str(conf.promisc_mode).lower()} "
                    f"doesn't match current state: {str(bridge.promisc).lower()}")
    if cont_entry is None:
        sandbox = next((i.sandbox for i in prev.interfaces if i.name == ifname), "")
        raise _fail(f"Sandbox in prevResult {sandbox} doesn't match configured netns: {netns}")
    container = nl.link(ifname, netns)
    if container is None:
        raise _fail(f"Interface name {ifname} not found")
    if container.kind != "veth":
        raise _fail(f"Error: Container interface {ifname} not of type veth")
    if cont_entry.mac and cont_entry.mac != container.mac:
        raise _fail(f"Interface {ifname} Mac {cont_entry.mac} doesn't match container Mac: {container.mac}")
    if conf.mtu and container.mtu != conf.mtu:
        raise _fail(f"Interface {ifname} MTU {container.mtu} doesn't match configured mtu {conf.mtu}")
    host = None
    for entry in prev.interfaces:
        if entry.name in (conf.bridge, ifname):
            continue
        candidate = nl.link(entry.name)
        if candidate is None:
            raise _fail(f"Interface name {entry.name} not found")
        if candidate.kind != "veth":
            continue  # not ours
        if candidate.index != container.peer or candidate.peer != container.index or candidate.master != bridge.index:
            continue
        if entry.mac and entry.mac != candidate.mac:
            raise _fail(f"Interface {entry.name} Mac doesn't match: {entry.mac} not found")
        host = candidate
        break
    if host is None:
        raise _fail(f"CNI veth created for bridge {conf.bridge} was not found")
    if bool(host.hairpin) != conf.hairpin_mode:
        raise _fail(f"Interface {host.name} hairpin mode {str(bool(host.hairpin)).lower()} doesn't match "
                    f"configured hairpinMode {str(conf.hairpin_mode).lower()}")


def _check_addresses_and_routes(nl: "Netlink", netns: str, ifname: str, prev: Result) -> None:
    addresses = nl.addresses(ifname, netns)
    table = nl.routes(netns)
    for ipc in prev.ips:
        if ipc.address not in addresses:
            raise _fail(f"Failed to match addr {ipc.address} on interface {ifname}")
        if not any(r.dst == ipc.address.network for r in table):
            raise _fail(f"Failed to find Gateway {ipc.gateway} for interface {ifname}")
    for route in prev.routes:
        found = any(r.dst == route.dst and (route.gw is None or r.gw == route.gw) for r in table)
        if not found:
            gw = route.gw if route.gw is not None else "<nil>"
            raise _fail(f"Expected Route {{Dst:{route.dst} GW:{gw}}} not found in routing table")


# --- GC and STATUS (spec 1.1) -------------------------------------------------------------------

def gc(conf: NetConf, *, valid_attachments: tuple[tuple[str, str], ...] | None = None,
       store: "Store | None" = None) -> list[Address]:
    """Release the reservations of every attachment not in cni.dev/valid-attachments. Interfaces
    need no collecting: a pod's veth pair goes away with its namespace."""
    valid = valid_attachments if valid_attachments is not None else conf.valid_attachments
    if valid is None:
        raise CniError(INVALID_CONFIG, "GC needs cni.dev/valid-attachments")
    if conf.ipam is None:
        return []
    return hostlocal.gc(_store(conf, store), valid)


def status(conf: NetConf, *, node_netns: str | None, netlink: "Netlink | None" = None,
           store: "Store | None" = None) -> None:
    """Can ADD succeed now? Code 50 if the store is unusable, every range set is exhausted, or
    the bridge's name is taken by something that is not a bridge."""
    if conf.ipam is not None:
        try:
            free = hostlocal.free_addresses(conf.ipam, _store(conf, store))
        except (CniError, OSError) as exc:
            raise CniError(NOT_AVAILABLE, "IPAM store unavailable", str(exc)) from None
        for index, count in enumerate(free):
            if count <= 0:
                raise CniError(NOT_AVAILABLE, f"no IP addresses available in range set {index}: "
                               f"{conf.ipam.range_sets[index]}")
    with _netlink(node_netns, netlink) as nl:
        bridge = nl.link(conf.bridge)
        if bridge is not None and bridge.kind != "bridge":
            raise CniError(NOT_AVAILABLE, f'"{conf.bridge}" already exists but is not a bridge')
