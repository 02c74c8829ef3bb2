"""host-local IPAM semantics, the pure part: which address comes next in a range.

The reference host-local plugin hands out addresses in order from rangeStart (the first
address after the gateway), skipping reserved ones, resuming after the last one it reserved
and wrapping round to the start. The on-disk store (one file per address, a lock) belongs to
the CNI plugin; this allocator is what both it and the offline control plane use.

Addresses are whatever the caller uses, as long as they behave like ipaddress's (int(), +,
ordering, hashing): the control plane passes ipaddress objects, podnet-cni its own
podnet.cni.addr ones (the executable does not import ipaddress: it costs a run ~2.5 ms).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs the executable ~3 ms
if TYPE_CHECKING:
    from ipaddress import IPv4Address, IPv4Network


class RangeFull(Exception):
    pass


class RangeAllocator:
    """A plain class, not a dataclass: podnet-cni's ADD imports it, and dataclasses' import
    costs a plugin run ~10 ms."""

    def __init__(self, subnet: IPv4Network, gateway: IPv4Address | None = None,
                 range_start: IPv4Address | None = None, range_end: IPv4Address | None = None,
                 reserved: set[IPv4Address] | None = None, last_reserved: IPv4Address | None = None) -> None:
        self.subnet = subnet
        self.gateway = subnet.network_address + 1 if gateway is None else gateway
        self.range_start = subnet.network_address + 1 if range_start is None else range_start
        # never the broadcast address
        self.range_end = subnet.broadcast_address - 1 if range_end is None else range_end
        self.reserved: set[IPv4Address] = set() if reserved is None else reserved
        self.last_reserved = last_reserved

    def __repr__(self) -> str:
        return (f"RangeAllocator({self.subnet}, gateway={self.gateway}, {self.range_start}-{self.range_end}, "
                f"{len(self.reserved)} reserved, last={self.last_reserved})")

    @property
    def size(self) -> int:
        return int(self.range_end) - int(self.range_start) + 1

    def usable(self, address: IPv4Address) -> bool:
        return self.range_start <= address <= self.range_end and address != self.gateway

    def reserve(self, address: IPv4Address) -> bool:
        """Claim a specific address; False if taken or not usable."""
        if not self.usable(address) or address in self.reserved:
            return False
        self.reserved.add(address)
        self.last_reserved = address
        return True

    def release(self, address: IPv4Address) -> None:
        self.reserved.discard(address)

    def allocate(self) -> IPv4Address:
        """The next free address after the last reserved one, wrapping to rangeStart."""
        start = int(self.range_start)
        span = self.size
        first = 0 if self.last_reserved is None else (int(self.last_reserved) - start + 1) % span
        for step in range(span):
            candidate = self.range_start + (first + step) % span
            if candidate != self.gateway and candidate not in self.reserved:
                self.reserved.add(candidate)
                self.last_reserved = candidate
                return candidate
        raise RangeFull(f"no free address in {self.range_start}-{self.range_end}")
