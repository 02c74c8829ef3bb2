"""The kernel's network objects, and one small interface to read and change them per namespace.

`Netlink` is what the builder needs from the kernel: named namespaces, an observation of what
is in one (`observe`), and applying an ordered list of changes to one (`apply`, one batch).
Two implementations:

- `Pyroute2Netlink`: the real kernel, through pyroute2 on netlink sockets that live in the
  cluster's namespaces (opened from a thread that entered the namespace; see netns.py). It
  batches: all address, route, neighbour and FDB changes of one `apply` go to the kernel in
  a single sendmsg and their acknowledgements are read back together; sysctls of one `apply`
  are written in one visit to the namespace. Links are created one request at a time,
  because later requests need the index the kernel gives them.
- `FakeNetlink`: an in-memory kernel that records the resulting state and enforces the rules
  that matter for ordering (a master must exist, an onlink route needs an up device, a
  gateway must be on a connected network …), for unprivileged tests.

The value types (Link, Address, Route, Neighbour, FdbEntry, Sysctl, NetnsState) are plain
frozen data, shared by the plan (what should be), observations (what is) and changes.
Observations leave out what the kernel makes by itself (connected routes, link-local IPv6,
learned FDB entries, ARP cache), so a plan can be compared with what exists.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Protocol, Union

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ndmsg import states

from podnet.host import netns as _netns
from podnet.host.layout import NETNS_DIR

# ---- value types --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VethPeer:
    netns: str
    name: str


@dataclass(frozen=True)
class Vxlan:
    vni: int
    port: int
    local: str  # the underlay source address
    dev: str  # the underlay device (by name, in the same namespace)
    learning: bool = False  # flannel: no learning, no multicast group; static FDB entries only

    def __str__(self) -> str:
        return (f"id {self.vni} port {self.port} local {self.local} dev {self.dev}"
                + ("" if self.learning else " nolearning"))


@dataclass(frozen=True)
class Link:
    name: str
    kind: str  # "loopback" | "veth" | "bridge" | "vxlan" (observed: whatever the kernel says)
    mtu: int | None = None  # None: whatever the kernel picks
    mac: str | None = None  # None: whatever the kernel picks
    master: str | None = None  # a bridge in the same namespace
    up: bool = True
    peer: VethPeer | None = None  # veth: the other end (desired state only; not observed)
    vxlan: Vxlan | None = None

    @property
    def key(self) -> tuple:
        return ("link", self.name)

    def __str__(self) -> str:
        parts = [f"link {self.name} {self.kind}"]
        if self.vxlan:
            parts.append(str(self.vxlan))
        if self.mtu is not None:
            parts.append(f"mtu {self.mtu}")
        if self.mac:
            parts.append(f"mac {self.mac}")
        if self.master:
            parts.append(f"master {self.master}")
        parts.append("up" if self.up else "down")
        if self.peer:
            parts.append(f"peer {self.peer.netns}/{self.peer.name}")
        return " ".join(parts)


@dataclass(frozen=True)
class Address:
    dev: str
    cidr: str  # "192.168.1.11/24"

    @property
    def key(self) -> tuple:
        return ("address", self.dev, self.cidr)

    def __str__(self) -> str:
        return f"address {self.cidr} dev {self.dev}"


@dataclass(frozen=True)
class Route:
    """A unicast route in the main table (one per destination, as podnet uses them)."""

    dst: str  # "10.244.2.0/24"; "0.0.0.0/0" for a default route
    dev: str
    via: str | None = None
    onlink: bool = False  # the gateway is on the link even without a connected route

    @property
    def key(self) -> tuple:
        return ("route", self.dst)

    def __str__(self) -> str:
        dst = "default" if self.dst == "0.0.0.0/0" else self.dst
        via = f" via {self.via}" if self.via else ""
        return f"route {dst}{via} dev {self.dev}" + (" onlink" if self.onlink else "")


@dataclass(frozen=True)
class Neighbour:
    """A PERMANENT IPv4 neighbour (ARP) entry."""

    dev: str
    ip: str
    mac: str

    @property
    def key(self) -> tuple:
        return ("neighbour", self.dev, self.ip)

    def __str__(self) -> str:
        return f"neighbour {self.ip} lladdr {self.mac} dev {self.dev} permanent"


@dataclass(frozen=True)
class FdbEntry:
    """A static forwarding entry on a VXLAN device: frames for `mac` go to the VTEP `dst`
    (00:00:00:00:00:00 is the default entry: flood to dst)."""

    dev: str
    mac: str
    dst: str

    @property
    def key(self) -> tuple:
        return ("fdb", self.dev, self.mac, self.dst)

    def __str__(self) -> str:
        return f"fdb {self.mac} dst {self.dst} dev {self.dev} self permanent"


@dataclass(frozen=True)
class Sysctl:
    """A per-namespace sysctl (net.*). optional: skipped when the kernel does not have it
    (net.bridge.* exists only while br_netfilter is loaded)."""

    key_name: str
    value: str
    optional: bool = False

    @property
    def key(self) -> tuple:
        return ("sysctl", self.key_name)

    def __str__(self) -> str:
        return f"sysctl {self.key_name} = {self.value}" + (" (if present)" if self.optional else "")


Entry = Union[Address, Route, Neighbour, FdbEntry]
Item = Union[Link, Address, Route, Neighbour, FdbEntry, Sysctl]


@dataclass(frozen=True)
class NetnsState:
    """What is (observed) or should be (planned) in one network namespace."""

    name: str
    links: tuple[Link, ...] = ()
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()
    sysctls: tuple[Sysctl, ...] = ()

    def link(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)

    @property
    def entries(self) -> tuple[Entry, ...]:
        return self.addresses + self.routes + self.neighbours + self.fdb

    def lines(self) -> list[str]:
        return [str(item) for item in self.sysctls + self.links + self.entries]


@dataclass(frozen=True)
class Change:
    action: str  # "add" | "set" (links: make attributes so; entries: replace) | "delete"
    item: Item

    def __str__(self) -> str:
        return f"{self.action} {self.item}"


class KernelError(Exception):
    """A change the kernel refused."""

    def __init__(self, netns: str, change: Change | None, code: int, detail: str = ""):
        self.netns, self.change, self.code = netns, change, code
        reason = os.strerror(code) if code else ""
        if detail:
            reason = f"{reason} ({detail})" if reason else detail
        super().__init__(f"{netns}: {change if change else 'netlink'}: {reason}")


class Netlink(Protocol):
    def namespaces(self) -> list[str]:
        """Names of the named network namespaces."""

    def create_namespace(self, name: str) -> None:
        """A new empty namespace (only lo, down). FileExistsError if the name exists."""

    def delete_namespace(self, name: str) -> None:
        """Remove the name (its links go with the namespace). Absent: nothing to do."""

    def observe(self, netns: str, sysctls: Iterable[str] = ()) -> NetnsState:
        """Links, addresses, routes, PERMANENT neighbours, VXLAN FDB entries, and the values
        of the given sysctls (those that exist)."""

    def apply(self, netns: str, changes: Sequence[Change]) -> None:
        """Apply in order, as one batch. Deleting what is absent is not an error; anything
        else the kernel refuses raises KernelError (changes before it stay applied)."""

    def close(self) -> None:
        """Release sockets (an open socket keeps a deleted namespace alive, unnamed)."""


# ---- helpers --------------------------------------------------------------------------------------


def _category(item: Item) -> str:
    if isinstance(item, Link):
        return "link"
    if isinstance(item, Sysctl):
        return "sysctl"
    return "entry"


_GONE = (errno.ENOENT, errno.ENODEV, errno.ESRCH, errno.EADDRNOTAVAIL)


def normal_mac(mac: str | None) -> str | None:
    return mac.lower() if mac else mac


def _entry_sort(item: Item) -> tuple:
    return tuple(str(part) for part in item.key)


# ---- the fake -------------------------------------------------------------------------------------


@dataclass
class _FakeLink:
    link: Link
    index: int
    peer: tuple[str, str] | None = None  # (netns, name) of a veth's other end


@dataclass
class _FakeNs:
    links: dict[str, _FakeLink] = field(default_factory=dict)
    entries: dict[tuple, Entry] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    next_index: int = 2


class FakeNetlink:
    """An in-memory kernel. `log` records every applied change as (netns, change);
    `batches` counts apply() calls; `fail` makes a chosen change fail (fault injection)."""

    DEFAULT_SYSCTLS = {
        "net.ipv4.ip_forward": "0",
        "net.ipv4.conf.all.rp_filter": "0",
        "net.ipv4.conf.default.rp_filter": "0",
    }

    def __init__(self, br_netfilter: bool = True):
        self.ns: dict[str, _FakeNs] = {}
        self.br_netfilter = br_netfilter
        self.log: list[tuple[str, Change]] = []
        self.batches = 0
        self.fail = None  # Callable[[str, Change], bool] | None
        self.closed = False

    # namespaces
    def namespaces(self) -> list[str]:
        return sorted(self.ns)

    def create_namespace(self, name: str) -> None:
        if name in self.ns:
            raise FileExistsError(errno.EEXIST, "namespace exists", name)
        sysctls = dict(self.DEFAULT_SYSCTLS)
        if self.br_netfilter:
            sysctls["net.bridge.bridge-nf-call-iptables"] = "1"
        state = _FakeNs(sysctls=sysctls)
        state.links["lo"] = _FakeLink(Link("lo", "loopback", mtu=65536, mac="00:00:00:00:00:00", up=False), 1)
        self.ns[name] = state

    def delete_namespace(self, name: str) -> None:
        state = self.ns.pop(name, None)
        if state is None:
            return
        for fake in list(state.links.values()):
            if fake.peer and fake.peer[0] in self.ns:  # a veth dies with its peer
                self._remove_link(fake.peer[0], fake.peer[1])

    # observation
    def observe(self, netns: str, sysctls: Iterable[str] = ()) -> NetnsState:
        state = self._ns(netns)
        links = tuple(replace(f.link, peer=None) for f in sorted(state.links.values(), key=lambda f: f.index))
        entries = sorted(state.entries.values(), key=_entry_sort)
        return NetnsState(
            netns,
            links=links,
            addresses=tuple(e for e in entries if isinstance(e, Address)),
            routes=tuple(e for e in entries if isinstance(e, Route)),
            neighbours=tuple(e for e in entries if isinstance(e, Neighbour)),
            fdb=tuple(e for e in entries if isinstance(e, FdbEntry)),
            sysctls=tuple(Sysctl(k, state.sysctls[k]) for k in sysctls if k in state.sysctls),
        )

    def close(self) -> None:
        self.closed = True

    # changes
    def apply(self, netns: str, changes: Sequence[Change]) -> None:
        self._ns(netns)
        self.batches += 1
        for change in changes:
            if self.fail is not None and self.fail(netns, change):
                raise KernelError(netns, change, errno.EIO)
            try:
                self._apply(netns, change)
            except OSError as exc:
                if change.action == "delete" and exc.errno in _GONE:
                    continue
                raise KernelError(netns, change, exc.errno or errno.EINVAL) from None
            self.log.append((netns, change))

    def _ns(self, netns: str) -> _FakeNs:
        if netns not in self.ns:
            raise FileNotFoundError(errno.ENOENT, "no such network namespace", netns)
        return self.ns[netns]

    def _apply(self, netns: str, change: Change) -> None:
        item, action = change.item, change.action
        state = self.ns[netns]
        if isinstance(item, Sysctl):
            if item.key_name not in state.sysctls:
                if item.optional:
                    return
                raise OSError(errno.ENOENT, item.key_name)
            state.sysctls[item.key_name] = item.value
        elif isinstance(item, Link):
            {"add": self._add_link, "set": self._set_link, "delete": self._delete_link}[action](netns, item)
        else:
            if action == "delete":
                if item.key not in state.entries:
                    raise OSError(errno.ENOENT, str(item))
                del state.entries[item.key]
                return
            self._check_entry(state, item)
            if action == "add" and item.key in state.entries:
                raise OSError(errno.EEXIST, str(item))
            state.entries[item.key] = item

    def _check_entry(self, state: _FakeNs, item: Entry) -> None:
        link = state.links.get(item.dev)
        if link is None:
            raise OSError(errno.ENODEV, item.dev)
        if isinstance(item, Route):
            if not link.link.up:
                raise OSError(errno.ENETDOWN, item.dev)
            if item.via and not item.onlink:
                connected = [IPv4Interface(a.cidr).network for a in state.entries.values()
                             if isinstance(a, Address) and a.dev == item.dev]
                if not any(IPv4Address(item.via) in net for net in connected):
                    raise OSError(errno.ENETUNREACH, f"gateway {item.via} is not on {item.dev}")
        if isinstance(item, FdbEntry) and link.link.kind != "vxlan":
            raise OSError(errno.EOPNOTSUPP, item.dev)

    def _add_link(self, netns: str, link: Link) -> None:
        state = self.ns[netns]
        if link.name in state.links:
            raise OSError(errno.EEXIST, link.name)
        if link.kind not in ("veth", "bridge", "vxlan"):
            raise OSError(errno.EOPNOTSUPP, link.kind)
        if link.master and (link.master not in state.links or state.links[link.master].link.kind != "bridge"):
            raise OSError(errno.ENODEV, link.master)
        if link.kind == "vxlan" and (link.vxlan is None or link.vxlan.dev not in state.links):
            raise OSError(errno.ENODEV, link.vxlan.dev if link.vxlan else "vxlan without parameters")
        peer = None
        if link.kind == "veth":
            if link.peer is None or link.peer.netns not in self.ns:
                raise OSError(errno.EINVAL, "veth without a peer namespace")
            other = self.ns[link.peer.netns]
            if link.peer.name in other.links:
                raise OSError(errno.EEXIST, link.peer.name)
            other.links[link.peer.name] = _FakeLink(
                Link(link.peer.name, "veth", mtu=link.mtu or 1500, mac=self._mac(), up=False), other.next_index,
                (netns, link.name))
            other.next_index += 1
            peer = (link.peer.netns, link.peer.name)
        created = Link(link.name, link.kind, mtu=link.mtu or 1500, mac=normal_mac(link.mac) or self._mac(),
                       master=link.master, up=link.up, vxlan=link.vxlan)
        state.links[link.name] = _FakeLink(created, state.next_index, peer)
        state.next_index += 1

    def _set_link(self, netns: str, link: Link) -> None:
        state = self.ns[netns]
        fake = state.links.get(link.name)
        if fake is None:
            raise OSError(errno.ENODEV, link.name)
        if link.master and (link.master not in state.links or state.links[link.master].link.kind != "bridge"):
            raise OSError(errno.ENODEV, link.master)
        current = fake.link
        fake.link = replace(current, mtu=link.mtu if link.mtu is not None else current.mtu,
                            mac=normal_mac(link.mac) or current.mac,
                            master=link.master if link.master is not None else current.master, up=link.up)

    def _delete_link(self, netns: str, link: Link) -> None:
        if link.name not in self.ns[netns].links:
            raise OSError(errno.ENODEV, link.name)
        self._remove_link(netns, link.name)

    def _remove_link(self, netns: str, name: str) -> None:
        state = self.ns.get(netns)
        if state is None or name not in state.links:
            return
        fake = state.links.pop(name)
        for key, entry in list(state.entries.items()):
            if entry.dev == name:
                del state.entries[key]
        for other in state.links.values():
            if other.link.master == name:
                other.link = replace(other.link, master=None)
        if fake.peer:
            self._remove_link(*fake.peer)

    _counter = 0

    def _mac(self) -> str:
        FakeNetlink._counter += 1
        n = FakeNetlink._counter
        return "0a:00:" + ":".join(f"{(n >> s) & 0xff:02x}" for s in (24, 16, 8, 0))


# ---- the kernel, through pyroute2 ----------------------------------------------------------------

IFF_UP = 0x1
RTNH_F_ONLINK = 0x4
RTPROT_KERNEL = 2
RT_TABLE_MAIN = 254
RT_SCOPE_LINK = 253  # rtnetlink.h: a destination on the link itself
NUD_PERMANENT = 0x80
ARPHRD_LOOPBACK = 772
NLMSG_ERROR = 2
AF_BRIDGE = 7
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
BATCH_BYTES = 64 * 1024  # well under the socket's send buffer (a message must fit in it whole)


class Pyroute2Netlink:
    """The real kernel. One netlink socket per namespace, opened inside it and kept until
    close(); nothing here ever opens a socket in the host's own namespace."""

    def __init__(self, netns_dir: Path = NETNS_DIR):
        self.netns_dir = netns_dir
        self._iproute: dict[str, object] = {}
        self._raw: dict[str, socket.socket] = {}

    # namespaces
    def namespaces(self) -> list[str]:
        return _netns.list_netns(self.netns_dir)

    def create_namespace(self, name: str) -> None:
        _netns.create_netns(name, self.netns_dir)

    def delete_namespace(self, name: str) -> None:
        self._forget(name)
        _netns.delete_netns(name, self.netns_dir)

    def close(self) -> None:
        for name in list(set(self._iproute) | set(self._raw)):
            self._forget(name)

    def _forget(self, name: str) -> None:
        ipr = self._iproute.pop(name, None)
        if ipr is not None:
            ipr.close()
        raw = self._raw.pop(name, None)
        if raw is not None:
            raw.close()

    def __enter__(self) -> "Pyroute2Netlink":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _ipr(self, netns: str):
        if netns not in self._iproute:
            sock = _netns.socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_DGRAM, 0, self.netns_dir)
            self._iproute[netns] = IPRoute(use_socket=sock)
        return self._iproute[netns]

    def _raw_socket(self, netns: str) -> socket.socket:
        """A plain netlink socket for batches: pyroute2 compiles the requests, this sends them."""
        if netns not in self._raw:
            sock = _netns.socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW, 0, self.netns_dir)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # acks without a copy of the request
            sock.settimeout(10)
            sock.bind((0, 0))
            self._raw[netns] = sock
        return self._raw[netns]

    # observation
    def observe(self, netns: str, sysctls: Iterable[str] = ()) -> NetnsState:
        ipr = self._ipr(netns)
        raw_links = list(ipr.get_links())
        names = {msg["index"]: msg.get("ifname") for msg in raw_links}
        links = tuple(self._link_of(msg, names) for msg in sorted(raw_links, key=lambda m: m["index"]))
        addresses = sorted(
            (Address(names.get(m["index"], str(m["index"])), f"{m.get('address')}/{m['prefixlen']}")
             for m in ipr.get_addr(family=socket.AF_INET)), key=_entry_sort)
        routes = []
        for m in ipr.get_routes(family=socket.AF_INET, table=RT_TABLE_MAIN):
            if m["proto"] == RTPROT_KERNEL or m.get("table") not in (None, RT_TABLE_MAIN):
                continue
            dst = f"{m.get('dst') or '0.0.0.0'}/{m['dst_len']}"
            oif = m.get("oif")
            routes.append(Route(dst, names.get(oif, str(oif)), m.get("gateway"), bool(m["flags"] & RTNH_F_ONLINK)))
        neighbours = [
            Neighbour(names.get(m["ifindex"], str(m["ifindex"])), m.get("dst"), normal_mac(m.get("lladdr")))
            for m in ipr.get_neighbours(family=socket.AF_INET) if m["state"] & NUD_PERMANENT
        ]
        fdb = [
            FdbEntry(names.get(m["ifindex"], str(m["ifindex"])), normal_mac(m.get("lladdr")), m.get("dst"))
            for m in ipr.get_neighbours(family=AF_BRIDGE) if m.get("dst")
        ]
        values = _netns.read_sysctls(netns, sysctls, self.netns_dir)
        return NetnsState(netns, links, tuple(addresses), tuple(sorted(routes, key=_entry_sort)),
                          tuple(sorted(neighbours, key=_entry_sort)), tuple(sorted(fdb, key=_entry_sort)),
                          tuple(Sysctl(k, values[k]) for k in sysctls if k in values))

    @staticmethod
    def _link_of(msg, names: dict[int, str]) -> Link:
        info = msg.get("linkinfo")
        kind = info.get("kind") if info is not None else None
        if msg["ifi_type"] == ARPHRD_LOOPBACK:
            kind = "loopback"
        vxlan = None
        if kind == "vxlan":
            data = info.get("data")
            link_index = data.get("vxlan_link")
            vxlan = Vxlan(data.get("vxlan_id"), data.get("vxlan_port"), data.get("vxlan_local"),
                          names.get(link_index, str(link_index)), bool(data.get("vxlan_learning")))
        master = msg.get("master")
        return Link(msg.get("ifname"), kind or "unknown", mtu=msg.get("mtu"), mac=normal_mac(msg.get("address")),
                    master=names.get(master) if master else None, up=bool(msg["flags"] & IFF_UP), vxlan=vxlan)

    # changes
    def apply(self, netns: str, changes: Sequence[Change]) -> None:
        """Runs of entry changes go as one netlink batch, runs of sysctls in one visit to the
        namespace; links one request at a time (later requests need their index)."""
        run: list[Change] = []
        for change in [*changes, None]:
            kind = None if change is None else _category(change.item)
            if run and (kind != _category(run[0].item) or kind == "link"):
                {"entry": self._send_entries, "sysctl": self._sysctls, "link": self._links}[
                    _category(run[0].item)](netns, run)
                run = []
            if change is not None:
                run.append(change)

    def _links(self, netns: str, changes: Sequence[Change]) -> None:
        for change in changes:
            self._link(netns, change)

    def _sysctls(self, netns: str, changes: Sequence[Change]) -> None:
        present = _netns.read_sysctls(netns, [c.item.key_name for c in changes], self.netns_dir)
        values = {}
        for change in changes:
            item = change.item
            if item.key_name not in present:
                if item.optional:
                    continue
                raise KernelError(netns, change, errno.ENOENT)
            values[item.key_name] = item.value
        try:
            _netns.write_sysctls(netns, values, self.netns_dir)
        except OSError as exc:
            raise KernelError(netns, changes[0], exc.errno or errno.EINVAL) from None

    def _index(self, netns: str, name: str, change: Change) -> int:
        found = self._ipr(netns).link_lookup(ifname=name)
        if not found:
            raise KernelError(netns, change, errno.ENODEV)
        return found[0]

    def _link(self, netns: str, change: Change) -> None:
        ipr, link = self._ipr(netns), change.item
        try:
            if change.action == "delete":
                found = ipr.link_lookup(ifname=link.name)
                if found:
                    ipr.link("del", index=found[0])
                return
            if change.action == "add":
                spec: dict = {"ifname": link.name, "kind": link.kind}
                if link.mtu is not None:
                    spec["mtu"] = link.mtu
                if link.mac:
                    spec["address"] = link.mac
                if link.kind == "veth":
                    if link.peer is None:
                        raise KernelError(netns, change, errno.EINVAL, "a veth needs a peer")
                    fd = os.open(_netns.netns_path(link.peer.netns, self.netns_dir), os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        target = os.fstat(fd)
                        if (target.st_dev, target.st_ino) == _netns.own_netns_identity():
                            raise KernelError(netns, change, errno.EPERM, "the peer would be in the host's namespace")
                        peer = {"ifname": link.peer.name, "net_ns_fd": fd}
                        if link.mtu is not None:
                            peer["mtu"] = link.mtu
                        ipr.link("add", **spec, peer=peer)
                    finally:
                        os.close(fd)
                elif link.kind == "vxlan":
                    v = link.vxlan
                    ipr.link("add", **spec, vxlan_id=v.vni, vxlan_port=v.port, vxlan_local=v.local,
                             vxlan_link=self._index(netns, v.dev, change), vxlan_learning=int(v.learning))
                else:
                    ipr.link("add", **spec)
            attrs: dict = {"index": self._index(netns, link.name, change), "state": "up" if link.up else "down"}
            if change.action == "set":
                if link.mtu is not None:
                    attrs["mtu"] = link.mtu
                if link.mac:
                    attrs["address"] = link.mac
            if link.master:
                attrs["master"] = self._index(netns, link.master, change)
            ipr.link("set", **attrs)
        except NetlinkError as exc:
            if change.action == "delete" and exc.code in _GONE:
                return
            raise KernelError(netns, change, exc.code) from None

    def _send_entries(self, netns: str, changes: Sequence[Change]) -> None:
        """Compile the changes into netlink requests, send them in as few sendmsg calls as fit
        the socket buffer (one, for any cluster of sensible size), and match the kernel's
        acknowledgements to them by sequence number."""
        if not changes:
            return
        ipr = self._ipr(netns)
        index = {msg.get("ifname"): msg["index"] for msg in ipr.get_links()}
        requests: list[tuple[bytes, Change]] = []
        for change in changes:
            dev = index.get(change.item.dev)
            if dev is None:
                if change.action == "delete":
                    continue  # gone with its device
                raise KernelError(netns, change, errno.ENODEV)
            requests.append((self._compile(ipr, change, dev), change))
        sock = self._raw_socket(netns)
        chunk: list[tuple[bytes, Change]] = []
        size = 0
        for data, change in requests:
            if chunk and size + len(data) > BATCH_BYTES:
                self._send_chunk(netns, sock, chunk)
                chunk, size = [], 0
            chunk.append((data, change))
            size += len(data)
        self._send_chunk(netns, sock, chunk)

    @staticmethod
    def _compile(ipr, change: Change, dev: int) -> bytes:
        """The request as bytes: pyroute2 appends to `batch` instead of sending while it is set."""
        item = change.item
        command = {"add": "add", "set": "replace", "delete": "del"}[change.action]
        ipr.asyncore.batch = bytearray()
        try:
            if isinstance(item, Address):
                iface = IPv4Interface(item.cidr)
                ipr.addr("add" if command == "replace" else command, index=dev, address=str(iface.ip),
                         prefixlen=iface.network.prefixlen)
            elif isinstance(item, Route):
                net = IPv4Network(item.dst)
                spec: dict = {"dst_len": net.prefixlen, "oif": dev, "table": RT_TABLE_MAIN}
                if net.prefixlen:
                    spec["dst"] = str(net.network_address)
                if item.via:
                    spec["gateway"] = item.via
                else:  # a device route: scope link, as `ip route add DST dev DEV` makes it
                    spec["scope"] = RT_SCOPE_LINK
                if item.onlink:
                    spec["flags"] = RTNH_F_ONLINK
                ipr.route(command, **spec)
            elif isinstance(item, Neighbour):
                ipr.neigh(command, ifindex=dev, dst=item.ip, lladdr=item.mac, state=states["permanent"])
            elif isinstance(item, FdbEntry):
                ipr.fdb("append" if command == "add" else command, ifindex=dev, lladdr=item.mac, dst=item.dst)
            return bytes(ipr.asyncore.batch)
        finally:
            ipr.asyncore.batch = None

    @staticmethod
    def _send_chunk(netns: str, sock: socket.socket, chunk: Sequence[tuple[bytes, Change]]) -> None:
        if not chunk:
            return
        by_seq = {struct.unpack_from("IHHII", data)[3]: change for data, change in chunk}
        if len(by_seq) != len(chunk):
            raise KernelError(netns, None, errno.EINVAL, "two requests in one batch share a sequence number")
        sock.send(b"".join(data for data, _ in chunk))
        first_error: KernelError | None = None
        waiting = set(by_seq)
        while waiting:
            try:
                buffer = sock.recv(1 << 20)
            except socket.timeout:
                raise KernelError(netns, None, errno.ETIMEDOUT,
                                  f"no answer from the kernel for {len(waiting)} requests") from None
            offset = 0
            while offset + 16 <= len(buffer):
                length, kind, _flags, seq, _pid = struct.unpack_from("IHHII", buffer, offset)
                if kind == NLMSG_ERROR and seq in waiting:
                    waiting.discard(seq)
                    code = -struct.unpack_from("i", buffer, offset + 16)[0]
                    change = by_seq[seq]
                    if code and not (change.action == "delete" and code in _GONE) and first_error is None:
                        first_error = KernelError(netns, change, code)
                offset += max((length + 3) & ~3, 16)
        if first_error is not None:
            raise first_error
