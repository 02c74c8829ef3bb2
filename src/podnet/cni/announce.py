"""A gratuitous ARP from the container's interface, once its bridge port forwards.

A pod recreated with an address an earlier pod had (podnet's addresses are deterministic: a
Deployment deleted and applied again gets its pods' names and addresses back) has a new MAC,
while the node and the other pods on the bridge still hold the old one in their neighbour
tables: until those entries are given up, every packet to the new pod goes to a MAC nobody has
(measured: the shop's recreated frontends stayed 0/1 for over 12 s, their probes timing out).
The interface's `arp_notify` does not help, as the kernel announces the addresses it has when
the link comes up, and the addresses are added after. So ADD sends, once the host end is
operationally up, one gratuitous ARP per IPv4 address in reply form (`arping -A`: sender and
target both the pod's address and MAC, to the broadcast MAC), which Linux neighbours holding the
address take over their entry. Best effort: a failure is not an ADD failure.

Built on `_socket` (the C module): `socket` costs ~6 ms to import on the plugin's path.
"""

from __future__ import annotations

from _socket import AF_PACKET, SOCK_RAW, socket as _socket_type

from podnet.cni.nsenter import entered

ETH_P_ARP = 0x0806
_BROADCAST = b"\xff" * 6
# Ethernet type ARP; ARP over Ethernet (1) for IPv4 (0x0800), 6-byte MACs, 4-byte addresses, reply (2)
_ARP_HEADER = bytes.fromhex("0806" "0001" "0800" "06" "04" "0002")


def gratuitous_arp_frame(mac: str, address: bytes) -> bytes:
    """The Ethernet frame announcing that IPv4 `address` (4 bytes) is at `mac` ("aa:bb:…")."""
    hardware = bytes.fromhex(mac.replace(":", ""))
    return _BROADCAST + hardware + _ARP_HEADER + hardware + address + hardware + address


def announce(netns: str, ifname: str, mac: str, addresses: list[bytes]) -> bool:
    """Send the frames from `ifname` in `netns`; False if that was not possible."""
    try:
        with entered(netns):
            sock = _socket_type(AF_PACKET, SOCK_RAW, 0)  # made inside: it sends from this netns
        try:
            sock.bind((ifname, ETH_P_ARP))
            for address in addresses:
                sock.send(gratuitous_arp_frame(mac, address))
        finally:
            sock.close()
    except OSError:
        return False
    return True
