"""host-local IPAM, in-process: which address a container gets, kept in a `Store`.

Which address: podnet.ipam.RangeAllocator (rangeStart after the gateway, sequential from the
last reserved address, wrapping round). host-local walks a *set* of ranges as one ring
(last+1 to the end of its range, the following ranges, round to the first, back up to last);
that ring is cut here into segments, each one a RangeAllocator with no history, so the order
is the reference's exactly. Every operation runs under the store's lock and reads the held
addresses afresh, so concurrent ADDs never collide and a restart never reuses a held address.
"""

from __future__ import annotations

from podnet.cni.addr import Address, Interface
from podnet.cni.config import IPAMConf, Range, RangeSet
from podnet.cni.spec import INTERNAL, CniError, IPConfig
from podnet.cni.store import Store


def _segments(rangeset: RangeSet, last: Address | None) -> list[tuple[Range, Address, Address]]:
    """The ring of candidate addresses as (range, first, last) pieces in host-local's order."""
    ranges = rangeset.ranges
    home = next((i for i, r in enumerate(ranges) if last is not None and last in r), None)
    if home is None:
        return [(r, r.range_start, r.range_end) for r in ranges]
    r = ranges[home]
    pieces = []
    if last != r.range_end:
        pieces.append((r, last + 1, r.range_end))
    for step in range(1, len(ranges)):
        other = ranges[(home + step) % len(ranges)]
        pieces.append((other, other.range_start, other.range_end))
    pieces.append((r, r.range_start, last))
    return pieces


def _next_free(rangeset: RangeSet, last: Address | None, taken: set[Address]) -> tuple[Range, Address] | None:
    from podnet.ipam import RangeAllocator, RangeFull  # deferred: only ADD needs it

    for r, first, final in _segments(rangeset, last):
        allocator = RangeAllocator(subnet=r.subnet, gateway=r.gateway, range_start=first,
                                   range_end=final, reserved=taken)
        try:
            return r, allocator.allocate()
        except RangeFull:
            continue
    return None


def allocate(ipam: IPAMConf, store: Store, container_id: str, ifname: str) -> list[IPConfig]:
    """host-local ADD: one address per range set (a requested one where CNI_ARGS/args/
    runtimeConfig asked for it). All or nothing: on any failure nothing stays reserved."""
    results: list[IPConfig] = []
    requested = list(ipam.requested_ips)
    with store.lock():
        done: list[Address] = []
        try:
            for index, rangeset in enumerate(ipam.range_sets):
                wanted = next((a for a in requested if a in rangeset), None)
                if wanted is not None:
                    requested.remove(wanted)
                    r = rangeset.range_for(wanted)
                    assert r is not None
                    if wanted == r.gateway:
                        raise CniError(INTERNAL, f"failed to allocate for range {index}: requested ip {wanted} is subnet's gateway")
                    if not store.reserve(container_id, ifname, wanted, index):
                        raise CniError(INTERNAL, f"failed to allocate for range {index}: requested IP address "
                                       f"{wanted} is not available in range set {rangeset}")
                    address = wanted
                else:
                    held = [a for a in store.get_by_id(container_id, ifname) if a in rangeset]
                    if held:
                        raise CniError(INTERNAL, f"failed to allocate for range {index}: {held[0]} has been "
                                       f"allocated to {container_id}, duplicate allocation is not allowed")
                    taken = store.reserved_addresses()
                    last = store.last_reserved(index)
                    while True:
                        found = _next_free(rangeset, last, taken)
                        if found is None:
                            raise CniError(INTERNAL, f"failed to allocate for range {index}: no IP addresses "
                                           f"available in range set: {rangeset}")
                        r, address = found
                        if store.reserve(container_id, ifname, address, index):
                            break
                        taken.add(address)  # a file appeared that the listing missed
                done.append(address)
                results.append(IPConfig(address=Interface(address, r.subnet.prefixlen), gateway=r.gateway))
            if requested:
                raise CniError(INTERNAL, "failed to allocate all requested IPs: " + " ".join(map(str, requested)))
        except BaseException:
            for address in done:
                store.release(address)
            raise
    return results


def release(store: Store, container_id: str, ifname: str) -> list[Address]:
    """host-local DEL: drop every address the attachment holds; nothing held is fine."""
    with store.lock():
        return store.release_by_id(container_id, ifname)


def holds(store: Store, container_id: str, ifname: str) -> list[Address]:
    """host-local CHECK: the addresses the attachment holds."""
    with store.lock():
        return store.get_by_id(container_id, ifname)


def gc(store: Store, valid: tuple[tuple[str, str], ...]) -> list[Address]:
    """Spec 1.1 GC: release every address whose attachment is not in cni.dev/valid-attachments.
    Files from before ifnames were recorded name only a container: they stay if that container
    has any valid attachment."""
    keep = {(cid.strip(), ifname) for cid, ifname in valid}
    keep_ids = {cid for cid, _ in keep}
    released = []
    with store.lock():
        for address, (cid, ifname) in sorted(store.reserved().items()):
            alive = (cid in keep_ids) if not ifname else ((cid, ifname) in keep)
            if not alive:
                store.release(address)
                released.append(address)
    return released


def free_addresses(ipam: IPAMConf, store: Store) -> list[int]:
    """How many addresses each range set could still hand out (for STATUS)."""
    with store.lock():
        taken = store.reserved_addresses()
    counts = []
    for rangeset in ipam.range_sets:
        total = 0
        for r in rangeset.ranges:
            size = int(r.range_end) - int(r.range_start) + 1
            size -= sum(1 for a in taken if a in r)
            size -= 1 if (r.gateway in r and r.gateway not in taken) else 0
            total += size
        counts.append(total)
    return counts
