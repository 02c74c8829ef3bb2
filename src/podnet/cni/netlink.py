"""What the bridge plugin needs from the kernel, as a small Protocol, with its implementations.

    Netlink          the Protocol: links, addresses, routes and sysctls in the node's namespace
                     (netns=None) or in a container's (netns=CNI_NETNS path or /run/netns name)
    Pyroute2Netlink  pyroute2 (what the node agent already has loaded)
    FakeNetlink      in memory, for unprivileged tests; failures can be injected per method
    podnet.cni.rtnl.RawNetlink  the same on a bare rtnetlink socket (stdlib only): the
                     executable's backend, because importing pyroute2 alone takes ~120 ms

Every backend is bound to one node namespace when it is made and refuses the host's own
namespace (the sandbox rule) unless explicitly allowed.
"""

from __future__ import annotations

import os

from podnet.cni.addr import Address, Interface, Network, ip_address, ip_interface, ip_network
from podnet.cni.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object  # the Protocols are for type checkers; `typing` costs the executable ~3 ms

from podnet.cni.nsenter import current_is_host, entered, netns_path, write_sysctl

IFF_UP = 0x1
IFF_PROMISC = 0x100


class Link(Record):
    """A link as the plugin sees it. name, mac: str; index, mtu: int; kind: "bridge", "veth",
    ... ("" for links without linkinfo, e.g. lo); up: administratively (IFF_UP); oper_up:
    operstate UP; promisc: bool; master: ifindex of the bridge it is a port of (0: none);
    peer: a veth's peer's ifindex (in the peer's namespace); hairpin: bool, bridge ports only
    (None otherwise)."""

    __slots__ = ("name", "index", "kind", "mac", "mtu", "up", "oper_up", "promisc", "master", "peer", "hairpin")
    _defaults = {"master": 0, "peer": 0, "hairpin": None}


class RouteEntry(Record):
    """dst: addr.Network; gw: addr.Address | None; oif: int."""

    __slots__ = ("dst", "gw", "oif")


class NetlinkError(OSError):
    pass


class LinkExists(NetlinkError):
    def __init__(self, name: str, netns: str | None) -> None:
        super().__init__(17, f"{name} already exists" + (f" in {netns}" if netns else ""))
        self.name, self.netns = name, netns


class Netlink(Protocol):
    def link(self, name: str, netns: str | None = None) -> Link | None: ...
    def create_bridge(self, name: str, mtu: int) -> None: ...
    def create_veth(self, host_name: str, netns: str, ifname: str, mtu: int, mac: str) -> None: ...
    def set_link(self, name: str, netns: str | None = None, *, up: bool | None = None,
                 master: int | None = None, mac: str | None = None, promisc: bool | None = None,
                 hairpin: bool | None = None) -> None: ...
    def delete_link(self, name: str, netns: str | None = None) -> bool: ...
    def addresses(self, name: str, netns: str | None = None) -> list[Interface]: ...
    def add_address(self, name: str, address: Interface, netns: str | None = None) -> None: ...
    def del_address(self, name: str, address: Interface, netns: str | None = None) -> None: ...
    def routes(self, netns: str | None = None) -> list[RouteEntry]: ...
    def add_route(self, name: str, dst: Network, gw: Address | None, netns: str | None = None) -> None: ...
    def sysctl(self, key: str, value: str, netns: str | None = None) -> bool: ...
    def netns_exists(self, netns: str) -> bool: ...
    def close(self) -> None: ...


def guard_node_netns(node_netns: str | None, allow_host: bool) -> None:
    """The plugin's "host" is a node namespace; touching the real host's needs explicit consent."""
    if node_netns is None and not allow_host and current_is_host():
        raise PermissionError(
            "podnet-cni works inside a node's network namespace (ip netns exec <node> podnet-cni, "
            "or node_netns=... in-process); refusing to touch the host's own namespace "
            "(set PODNET_CNI_ALLOW_HOST_NETNS=1 to run it as an ordinary host plugin)")


def netns_exists(netns: str) -> bool:
    return os.path.exists(netns_path(netns))


# --- the fake ------------------------------------------------------------------------------

class _FakeLink:
    def __init__(self, name: str, index: int, kind: str, mac: str, mtu: int = 1500) -> None:
        self.name, self.index, self.kind, self.mac, self.mtu = name, index, kind, mac, mtu
        self.up = self.promisc = self.hairpin = False
        self.master = 0
        self.peer: tuple[str | None, str] | None = None  # (namespace key, name) of the veth peer


class _FakeNamespace:
    def __init__(self) -> None:
        self.links: dict[str, _FakeLink] = {}
        self.addresses: dict[str, list] = {}
        self.routes: list[RouteEntry] = []
        self.sysctls: dict[str, str] = {}
        self.next_index = 2  # 1 is lo


class FakeNetlink:
    """Kernel semantics the plugin relies on: names unique per namespace, deleting one veth end
    deletes both, an address brings its subnet route, deleting a link drops its addresses and
    routes, a veth is operationally up when both ends are up. `fail["method"] = exc` makes the
    next call of that method raise."""

    def __init__(self, node_netns: str | None = "node", existing_netns: tuple[str, ...] = ()) -> None:
        self.node_netns = node_netns
        self.namespaces: dict[str | None, _FakeNamespace] = {None: _FakeNamespace()}
        for name in existing_netns:
            self.add_netns(name)
        self.fail: dict[str, BaseException] = {}
        self.calls: list[str] = []
        self._mac = 0

    # test helpers
    def add_netns(self, netns: str) -> None:
        self.namespaces[netns_path(netns)] = _FakeNamespace()

    def remove_netns(self, netns: str) -> None:
        ns = self.namespaces.pop(netns_path(netns))
        for name in list(ns.links):
            self._drop_peer(ns.links[name])

    def _maybe_fail(self, method: str) -> None:
        self.calls.append(method)
        if method in self.fail:
            raise self.fail.pop(method)

    def _ns(self, netns: str | None) -> _FakeNamespace:
        key = None if netns is None else netns_path(netns)
        if key not in self.namespaces:
            raise NetlinkError(2, f"network namespace {netns} does not exist")
        return self.namespaces[key]

    def _new_mac(self) -> str:
        self._mac += 1
        return "0a:58:00:00:%02x:%02x" % (self._mac >> 8 & 0xFF, self._mac & 0xFF)

    def _find(self, name: str, netns: str | None) -> _FakeLink:
        link = self._ns(netns).links.get(name)
        if link is None:
            raise NetlinkError(19, f"link {name} not found")
        return link

    def _oper_up(self, link: _FakeLink) -> bool:
        if not link.up:
            return False
        if link.kind == "veth" and link.peer is not None:
            ns_key, peer_name = link.peer
            peer = self.namespaces.get(ns_key, _FakeNamespace()).links.get(peer_name)
            return bool(peer and peer.up)
        return True

    def link(self, name: str, netns: str | None = None) -> Link | None:
        self._maybe_fail("link")
        found = self._ns(netns).links.get(name)
        if found is None:
            return None
        peer = 0
        if found.peer is not None:
            ns_key, peer_name = found.peer
            peer = self.namespaces[ns_key].links[peer_name].index
        return Link(name=found.name, index=found.index, kind=found.kind, mac=found.mac, mtu=found.mtu,
                    up=found.up, oper_up=self._oper_up(found), promisc=found.promisc, master=found.master,
                    peer=peer, hairpin=found.hairpin if found.master else None)

    def _add(self, netns: str | None, name: str, kind: str, mtu: int, mac: str = "") -> _FakeLink:
        ns = self._ns(netns)
        link = _FakeLink(name=name, index=ns.next_index, kind=kind, mac=mac or self._new_mac(), mtu=mtu or 1500)
        ns.next_index += 1
        ns.links[name] = link
        ns.addresses[name] = []
        return link

    def create_bridge(self, name: str, mtu: int) -> None:
        self._maybe_fail("create_bridge")
        if name in self._ns(None).links:
            raise LinkExists(name, None)
        self._add(None, name, "bridge", mtu)

    def create_veth(self, host_name: str, netns: str, ifname: str, mtu: int, mac: str) -> None:
        self._maybe_fail("create_veth")
        key = netns_path(netns)
        if ifname in self._ns(key).links:
            raise LinkExists(ifname, netns)
        if host_name in self._ns(None).links:
            raise LinkExists(host_name, None)
        host = self._add(None, host_name, "veth", mtu)
        cont = self._add(key, ifname, "veth", mtu, mac)
        host.peer, cont.peer = (key, ifname), (None, host_name)

    def set_link(self, name: str, netns: str | None = None, *, up: bool | None = None,
                 master: int | None = None, mac: str | None = None, promisc: bool | None = None,
                 hairpin: bool | None = None) -> None:
        self._maybe_fail("set_link")
        link = self._find(name, netns)
        if up is not None:
            link.up = up
        if master is not None:
            link.master = master
        if mac is not None:
            link.mac = mac
        if promisc is not None:
            link.promisc = promisc
        if hairpin is not None:
            if not link.master:
                raise NetlinkError(95, f"{name} is not a bridge port")
            link.hairpin = hairpin

    def _drop(self, ns: _FakeNamespace, link: _FakeLink) -> None:
        ns.links.pop(link.name, None)
        ns.addresses.pop(link.name, None)
        ns.routes[:] = [r for r in ns.routes if r.oif != link.index]
        for other in ns.links.values():
            if other.master == link.index:
                other.master = 0

    def _drop_peer(self, link: _FakeLink) -> None:
        if link.peer is not None:
            ns_key, peer_name = link.peer
            ns = self.namespaces.get(ns_key)
            if ns is not None and peer_name in ns.links:
                self._drop(ns, ns.links[peer_name])

    def delete_link(self, name: str, netns: str | None = None) -> bool:
        self._maybe_fail("delete_link")
        ns = self._ns(netns)
        link = ns.links.get(name)
        if link is None:
            return False
        self._drop(ns, link)
        self._drop_peer(link)
        return True

    def addresses(self, name: str, netns: str | None = None) -> list:
        self._maybe_fail("addresses")
        self._find(name, netns)
        return list(self._ns(netns).addresses[name])

    def add_address(self, name: str, address: Interface, netns: str | None = None) -> None:
        self._maybe_fail("add_address")
        link = self._find(name, netns)
        ns = self._ns(netns)
        if address in ns.addresses[name]:
            raise NetlinkError(17, f"address {address} exists on {name}")
        ns.addresses[name].append(address)
        ns.routes.append(RouteEntry(dst=address.network, gw=None, oif=link.index))

    def del_address(self, name: str, address: Interface, netns: str | None = None) -> None:
        self._maybe_fail("del_address")
        link = self._find(name, netns)
        ns = self._ns(netns)
        ns.addresses[name].remove(address)
        ns.routes[:] = [r for r in ns.routes if not (r.oif == link.index and r.dst == address.network and r.gw is None)]

    def routes(self, netns: str | None = None) -> list[RouteEntry]:
        self._maybe_fail("routes")
        return list(self._ns(netns).routes)

    def add_route(self, name: str, dst: Network, gw: Address | None, netns: str | None = None) -> None:
        self._maybe_fail("add_route")
        link = self._find(name, netns)
        ns = self._ns(netns)
        entry = RouteEntry(dst=dst, gw=gw, oif=link.index)
        if entry in ns.routes:
            raise NetlinkError(17, f"route {dst} via {gw} exists")
        if gw is not None and not any(gw in a.network for a in ns.addresses[name]):
            raise NetlinkError(101, f"gateway {gw} unreachable")
        ns.routes.append(entry)

    def sysctl(self, key: str, value: str, netns: str | None = None) -> bool:
        self._maybe_fail("sysctl")
        self._ns(netns).sysctls[key] = value
        return True

    def netns_exists(self, netns: str) -> bool:
        return netns_path(netns) in self.namespaces

    def close(self) -> None:
        pass

    # for assertions
    def state(self, netns: str | None = None) -> dict:
        ns = self._ns(netns)
        return {name: self.link(name, netns)._replace(mac="*") for name in ns.links}  # type: ignore[type-var]


# --- pyroute2 ------------------------------------------------------------------------------

class Pyroute2Netlink:
    """pyroute2's IPRoute, one per namespace, each created inside its namespace by setns on
    this thread (IPRoute(netns=...) forks a helper process per socket: ~8 ms each)."""

    def __init__(self, node_netns: str | None, allow_host: bool = False) -> None:
        guard_node_netns(node_netns, allow_host)
        from pyroute2 import IPRoute  # deferred: ~120 ms to import

        self._IPRoute = IPRoute
        self.node_netns = node_netns
        self._sockets: dict[str | None, object] = {}
        self._node = self._open(None)

    def _open(self, netns: str | None):
        key = None if netns is None else netns_path(netns)
        ipr = self._sockets.get(key)
        if ipr is None:
            where = self.node_netns if key is None else key
            with entered(where):
                ipr = self._IPRoute(groups=0)
            self._sockets[key] = ipr
        return ipr

    def _index(self, ipr, name: str) -> int | None:
        found = ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def link(self, name: str, netns: str | None = None) -> Link | None:
        from pyroute2.netlink.exceptions import NetlinkError as P2Error  # pyroute2 only with the pyroute2 backend

        ipr = self._open(netns)
        try:
            msgs = ipr.link("get", ifname=name)
        except P2Error as exc:
            if exc.code == 19:
                return None
            raise NetlinkError(exc.code, str(exc)) from None
        msg = msgs[0]
        info = msg.get_attr("IFLA_LINKINFO")
        kind, hairpin = "", None
        if info is not None:
            kind = info.get_attr("IFLA_INFO_KIND") or ""
            slave = info.get_attr("IFLA_INFO_SLAVE_DATA")
            if info.get_attr("IFLA_INFO_SLAVE_KIND") == "bridge" and slave is not None:
                mode = slave.get_attr("IFLA_BRPORT_MODE")
                hairpin = bool(mode) if mode is not None else None
        return Link(name=msg.get_attr("IFLA_IFNAME"), index=msg["index"], kind=kind,
                    mac=msg.get_attr("IFLA_ADDRESS") or "", mtu=msg.get_attr("IFLA_MTU") or 0,
                    up=bool(msg["flags"] & IFF_UP), oper_up=msg.get_attr("IFLA_OPERSTATE") == "UP",
                    promisc=bool(msg["flags"] & IFF_PROMISC), master=msg.get_attr("IFLA_MASTER") or 0,
                    peer=msg.get_attr("IFLA_LINK") or 0, hairpin=hairpin)

    def _call(self, fn, *args, exists: tuple[str, str | None] | None = None, **kwargs):
        from pyroute2.netlink.exceptions import NetlinkError as P2Error  # pyroute2 only with the pyroute2 backend

        try:
            return fn(*args, **kwargs)
        except P2Error as exc:
            if exc.code == 17 and exists is not None:
                raise LinkExists(*exists) from None
            raise NetlinkError(exc.code, f"{exc} ({os.strerror(exc.code)})") from None

    def create_bridge(self, name: str, mtu: int) -> None:
        extra = {"mtu": mtu} if mtu else {}
        self._call(self._node.link, "add", ifname=name, kind="bridge", exists=(name, None), **extra)

    def create_veth(self, host_name: str, netns: str, ifname: str, mtu: int, mac: str) -> None:
        fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            peer: dict = {"ifname": ifname, "net_ns_fd": fd, "txqlen": 0}
            extra: dict = {"txqlen": 0}
            if mtu:
                peer["mtu"] = extra["mtu"] = mtu
            if mac:
                peer["address"] = mac
            try:
                self._call(self._node.link, "add", ifname=host_name, kind="veth", peer=peer,
                           exists=(host_name, None), **extra)
            except LinkExists:
                if self.link(ifname, netns) is not None:
                    raise LinkExists(ifname, netns) from None
                raise
        finally:
            os.close(fd)

    def set_link(self, name: str, netns: str | None = None, *, up: bool | None = None,
                 master: int | None = None, mac: str | None = None, promisc: bool | None = None,
                 hairpin: bool | None = None) -> None:
        ipr = self._open(netns)
        index = self._index(ipr, name)
        if index is None:
            raise NetlinkError(19, f"link {name} not found")
        if master is not None:
            self._call(ipr.link, "set", index=index, master=master)
        if mac is not None:
            self._call(ipr.link, "set", index=index, address=mac)
        if promisc is not None:
            self._call(ipr.link, "set", index=index, flags=IFF_PROMISC if promisc else 0, change=IFF_PROMISC)
        if up is not None:
            self._call(ipr.link, "set", index=index, state="up" if up else "down")
        if hairpin is not None:
            self._call(ipr.brport, "set", index=index, mode=1 if hairpin else 0)

    def delete_link(self, name: str, netns: str | None = None) -> bool:
        ipr = self._open(netns)
        index = self._index(ipr, name)
        if index is None:
            return False
        self._call(ipr.link, "del", index=index)
        return True

    def addresses(self, name: str, netns: str | None = None) -> list:
        ipr = self._open(netns)
        index = self._index(ipr, name)
        if index is None:
            raise NetlinkError(19, f"link {name} not found")
        out = []
        for msg in ipr.get_addr(index=index):
            addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            out.append(ip_interface(f"{addr}/{msg['prefixlen']}"))
        return out

    def add_address(self, name: str, address: Interface, netns: str | None = None) -> None:
        ipr = self._open(netns)
        index = self._index(ipr, name)
        extra = {}
        if address.network.prefixlen < 31:
            extra["broadcast"] = str(address.network.broadcast_address)
        self._call(ipr.addr, "add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen, **extra)

    def del_address(self, name: str, address: Interface, netns: str | None = None) -> None:
        ipr = self._open(netns)
        index = self._index(ipr, name)
        self._call(ipr.addr, "del", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)

    def routes(self, netns: str | None = None) -> list[RouteEntry]:
        ipr = self._open(netns)
        out = []
        for msg in ipr.get_routes(family=2, table=254):
            if msg["type"] != 1:  # unicast only
                continue
            dst = msg.get_attr("RTA_DST") or "0.0.0.0"
            gw = msg.get_attr("RTA_GATEWAY")
            out.append(RouteEntry(dst=ip_network(f"{dst}/{msg['dst_len']}"),
                                  gw=ip_address(gw) if gw else None, oif=msg.get_attr("RTA_OIF") or 0))
        return out

    def add_route(self, name: str, dst: Network, gw: Address | None, netns: str | None = None) -> None:
        ipr = self._open(netns)
        index = self._index(ipr, name)
        spec: dict = {"dst": str(dst), "oif": index, "table": 254, "proto": 3}
        if gw is not None:
            spec["gateway"] = str(gw)
        self._call(ipr.route, "append", **spec)

    def sysctl(self, key: str, value: str, netns: str | None = None) -> bool:
        with entered(self.node_netns if netns is None else netns):
            return write_sysctl(key, value)

    def netns_exists(self, netns: str) -> bool:
        return netns_exists(netns)

    def close(self) -> None:
        for ipr in self._sockets.values():
            ipr.close()  # type: ignore[attr-defined]
        self._sockets.clear()
