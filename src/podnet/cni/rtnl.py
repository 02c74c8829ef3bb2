"""The `Netlink` Protocol on a bare rtnetlink socket: struct-packed messages, stdlib only.

This is the executable's backend. A CNI plugin is a short-lived process whose run time is
mostly interpreter start-up and imports; pyroute2 alone takes ~120 ms to import, ten times
the reference plugin's whole ADD. The messages are the ones `ip link/addr/route` send.
"""

from __future__ import annotations

import os
import struct
from _socket import socket as _socket_type  # the C module: `socket` costs ~6 ms to import
from podnet.cni.addr import Address, Interface, Network
from podnet.cni.netlink import IFF_PROMISC, IFF_UP, Link, LinkExists, NetlinkError, RouteEntry, guard_node_netns, netns_exists
from podnet.cni.nsenter import entered, netns_path, write_sysctl

AF_NETLINK, SOCK_RAW, NETLINK_ROUTE = 16, 3, 0
AF_UNSPEC, AF_INET, AF_INET6, AF_BRIDGE = 0, 2, 10, 7

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_SETLINK = 16, 17, 18, 19
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x200, 0x400, 0x800
NLA_F_NESTED = 0x8000

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK, IFLA_MASTER, IFLA_TXQLEN = 1, 3, 4, 5, 10, 13
IFLA_PROTINFO, IFLA_OPERSTATE, IFLA_LINKINFO, IFLA_NET_NS_FD = 12, 16, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
VETH_INFO_PEER = 1
IFLA_BRPORT_MODE = 4  # hairpin
IF_OPER_UP = 6
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_TABLE = 1, 4, 5, 15
RT_TABLE_MAIN, RTPROT_BOOT, RTN_UNICAST = 254, 3, 1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")


def _attr(kind: int, data: bytes) -> bytes:
    size = _RTATTR.size + len(data)
    return _RTATTR.pack(size, kind) + data + b"\0" * ((4 - size % 4) % 4)


def _str(kind: int, text: str) -> bytes:
    return _attr(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("=I", value))


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def _attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    out = {}
    while offset + 4 <= len(data):
        size, kind = _RTATTR.unpack_from(data, offset)
        if size < 4:
            break
        out[kind & ~NLA_F_NESTED] = data[offset + 4: offset + size]
        offset += (size + 3) & ~3
    return out


class _Socket:
    def __init__(self) -> None:
        self.sock = _socket_type(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def request(self, kind: int, flags: int, body: bytes) -> list[tuple[int, bytes]]:
        """Send one message; return the (type, payload) replies up to the ACK or DONE."""
        self.seq += 1
        seq = self.seq
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags | NLM_F_REQUEST, seq, 0) + body)
        replies = []
        while True:
            data = self.sock.recv(1 << 16)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, mtype, _, mseq, _ = _NLMSGHDR.unpack_from(data, offset)
                payload = data[offset + _NLMSGHDR.size: offset + length]
                offset += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return replies
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return replies
                replies.append((mtype, payload))
                if not flags & NLM_F_DUMP and not flags & NLM_F_ACK:
                    return replies

    def close(self) -> None:
        self.sock.close()


def _link_from(payload: bytes) -> Link:
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(payload)
    attrs = _attrs(payload, _IFINFOMSG.size)
    kind, hairpin = "", None
    if IFLA_LINKINFO in attrs:
        info = _attrs(attrs[IFLA_LINKINFO])
        kind = info.get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode()
        if info.get(IFLA_INFO_SLAVE_KIND, b"").rstrip(b"\0") == b"bridge" and IFLA_INFO_SLAVE_DATA in info:
            mode = _attrs(info[IFLA_INFO_SLAVE_DATA]).get(IFLA_BRPORT_MODE)
            hairpin = bool(mode[0]) if mode else None
    mac = attrs.get(IFLA_ADDRESS, b"")
    u32 = lambda key: struct.unpack("=I", attrs[key][:4])[0] if key in attrs else 0  # noqa: E731
    return Link(name=attrs[IFLA_IFNAME].rstrip(b"\0").decode(), index=index, kind=kind,
                mac=":".join("%02x" % b for b in mac), mtu=u32(IFLA_MTU), up=bool(flags & IFF_UP),
                oper_up=attrs.get(IFLA_OPERSTATE, b"\0")[0] == IF_OPER_UP, promisc=bool(flags & IFF_PROMISC),
                master=u32(IFLA_MASTER), peer=u32(IFLA_LINK), hairpin=hairpin)


class RawNetlink:
    def __init__(self, node_netns: str | None, allow_host: bool = False) -> None:
        guard_node_netns(node_netns, allow_host)
        self.node_netns = node_netns
        self._sockets: dict[str | None, _Socket] = {}
        self._open(None)

    def _open(self, netns: str | None) -> _Socket:
        key = None if netns is None else netns_path(netns)
        sock = self._sockets.get(key)
        if sock is None:
            with entered(self.node_netns if key is None else key):
                sock = _Socket()
            self._sockets[key] = sock
        return sock

    def _get(self, sock: _Socket, name: str) -> Link | None:
        try:
            replies = sock.request(RTM_GETLINK, 0, _IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, name))
        except NetlinkError as exc:
            if exc.errno == 19:
                return None
            raise
        return _link_from(replies[0][1])

    def _index(self, sock: _Socket, name: str) -> int:
        link = self._get(sock, name)
        if link is None:
            raise NetlinkError(19, f"link {name} not found")
        return link.index

    def link(self, name: str, netns: str | None = None) -> Link | None:
        return self._get(self._open(netns), name)

    def create_bridge(self, name: str, mtu: int) -> None:
        body = _IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, name)
        if mtu:
            body += _u32(IFLA_MTU, mtu)
        body += _attr(IFLA_LINKINFO, _str(IFLA_INFO_KIND, "bridge"))
        try:
            self._open(None).request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, body)
        except NetlinkError as exc:
            if exc.errno == 17:
                raise LinkExists(name, None) from None
            raise

    def create_veth(self, host_name: str, netns: str, ifname: str, mtu: int, mac: str) -> None:
        fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            # txqlen 0 on both ends, as the reference (v1.1.1) makes them; veths have no qdisc anyway
            peer = (_IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, ifname) + _u32(IFLA_NET_NS_FD, fd)
                    + _u32(IFLA_TXQLEN, 0))
            body = _IFINFOMSG.pack(AF_UNSPEC, 0, 0, 0, 0) + _str(IFLA_IFNAME, host_name) + _u32(IFLA_TXQLEN, 0)
            if mtu:
                peer += _u32(IFLA_MTU, mtu)
                body += _u32(IFLA_MTU, mtu)
            if mac:
                peer += _attr(IFLA_ADDRESS, _mac_bytes(mac))
            info = _str(IFLA_INFO_KIND, "veth") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
            body += _attr(IFLA_LINKINFO, info)
            try:
                self._open(None).request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK, body)
            except NetlinkError as exc:
                if exc.errno != 17:
                    raise
                if self.link(ifname, netns) is not None:
                    raise LinkExists(ifname, netns) from None
                raise LinkExists(host_name, None) from None
        finally:
            os.close(fd)

    def set_link(self, name: str, netns: str | None = None, *, up: bool | None = None,
                 master: int | None = None, mac: str | None = None, promisc: bool | None = None,
                 hairpin: bool | None = None) -> None:
        sock = self._open(netns)
        index = self._index(sock, name)
        flags = change = 0
        if up is not None:
            change |= IFF_UP
            flags |= IFF_UP if up else 0
        if promisc is not None:
            change |= IFF_PROMISC
            flags |= IFF_PROMISC if promisc else 0
        body = b""
        if master is not None:
            body += _u32(IFLA_MASTER, master)
        if mac is not None:
            body += _attr(IFLA_ADDRESS, _mac_bytes(mac))
        # master before hairpin (only ports have it), and up last, as `ip link` would
        if body or change:
            sock.request(RTM_NEWLINK, NLM_F_ACK, _IFINFOMSG.pack(AF_UNSPEC, 0, index, flags, change) + body)
        if hairpin is not None:
            protinfo = _attr(IFLA_PROTINFO | NLA_F_NESTED, _attr(IFLA_BRPORT_MODE, bytes([1 if hairpin else 0])))
            sock.request(RTM_SETLINK, NLM_F_ACK, _IFINFOMSG.pack(AF_BRIDGE, 0, index, 0, 0) + protinfo)

    def delete_link(self, name: str, netns: str | None = None) -> bool:
        sock = self._open(netns)
        link = self._get(sock, name)
        if link is None:
            return False
        try:
            sock.request(RTM_DELLINK, NLM_F_ACK, _IFINFOMSG.pack(AF_UNSPEC, 0, link.index, 0, 0))
        except NetlinkError as exc:
            if exc.errno == 19:
                return False
            raise
        return True

    def addresses(self, name: str, netns: str | None = None) -> list[Interface]:
        sock = self._open(netns)
        index = self._index(sock, name)
        out = []
        for _, payload in sock.request(RTM_GETADDR, NLM_F_DUMP, _IFADDRMSG.pack(AF_UNSPEC, 0, 0, 0, 0)):
            family, prefixlen, _, _, ifindex = _IFADDRMSG.unpack_from(payload)
            if ifindex != index:
                continue
            attrs = _attrs(payload, _IFADDRMSG.size)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw:
                out.append(Interface(Address.from_packed(raw), prefixlen))
        return out

    def _address(self, kind: int, flags: int, name: str, address: Interface, netns: str | None) -> None:
        sock = self._open(netns)
        index = self._index(sock, name)
        packed = address.ip.packed
        body = _IFADDRMSG.pack(AF_INET, address.network.prefixlen, 0, 0, index)
        body += _attr(IFA_LOCAL, packed) + _attr(IFA_ADDRESS, packed)
        if kind == RTM_NEWADDR and address.network.prefixlen < 31:
            body += _attr(IFA_BROADCAST, address.network.broadcast_address.packed)
        sock.request(kind, flags | NLM_F_ACK, body)

    def add_address(self, name: str, address: Interface, netns: str | None = None) -> None:
        self._address(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, name, address, netns)

    def del_address(self, name: str, address: Interface, netns: str | None = None) -> None:
        self._address(RTM_DELADDR, 0, name, address, netns)

    def routes(self, netns: str | None = None) -> list[RouteEntry]:
        out = []
        for _, payload in self._open(netns).request(RTM_GETROUTE, NLM_F_DUMP, _RTMSG.pack(AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)):
            _, dst_len, _, _, table, _, _, rtype, _ = _RTMSG.unpack_from(payload)
            attrs = _attrs(payload, _RTMSG.size)
            if RTA_TABLE in attrs:
                table = struct.unpack("=I", attrs[RTA_TABLE])[0]
            if table != RT_TABLE_MAIN or rtype != RTN_UNICAST:
                continue
            dst = Address.from_packed(attrs[RTA_DST]) if RTA_DST in attrs else Address(0)
            gw = Address.from_packed(attrs[RTA_GATEWAY]) if RTA_GATEWAY in attrs else None
            oif = struct.unpack("=I", attrs[RTA_OIF])[0] if RTA_OIF in attrs else 0
            out.append(RouteEntry(dst=Network(dst, dst_len), gw=gw, oif=oif))
        return out

    def add_route(self, name: str, dst: Network, gw: Address | None, netns: str | None = None) -> None:
        """Like the reference's RouteAddEcmp: append (a second interface may add the same
        destination), scope universe, proto boot, main table."""
        sock = self._open(netns)
        index = self._index(sock, name)
        body = _RTMSG.pack(AF_INET, dst.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST, 0)
        if dst.prefixlen:
            body += _attr(RTA_DST, dst.network_address.packed)
        if gw is not None:
            body += _attr(RTA_GATEWAY, gw.packed)
        body += _u32(RTA_OIF, index)
        sock.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_APPEND | NLM_F_ACK, body)

    def sysctl(self, key: str, value: str, netns: str | None = None) -> bool:
        with entered(self.node_netns if netns is None else netns):
            return write_sysctl(key, value)

    def netns_exists(self, netns: str) -> bool:
        return netns_exists(netns)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
