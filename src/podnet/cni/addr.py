"""IP addresses, interfaces (an address with its prefix) and networks, IPv4 and IPv6: what
podnet-cni needs of the stdlib's `ipaddress`, as three small value classes on plain ints.

`import ipaddress` (with the functools and collections it pulls in) costs a plugin run about
2.5 ms. The parsers here accept exactly the text and ints that ipaddress's ip_address,
ip_interface and ip_network accept (packed bytes go through Address.from_packed): dotted quads without leading zeros, IPv4 prefixes as lengths, netmasks or
hostmasks, every IPv6 spelling (:: and an IPv4 tail) with an optional %scope, and ints; they
raise ValueError with ipaddress's messages. str() is ipaddress's text: IPv6 in lower case with
the first longest run of two or more zero groups as "::" (IPv4-mapped addresses too, as Python
3.11 prints them; newer versions print those as ::ffff:a.b.c.d). Equality and hashing follow
ipaddress, and so does the ordering of addresses (comparing an IPv4 and an IPv6 one is a
TypeError); an interface equals neither its address nor its network. Unlike ipaddress, an
Interface is not an Address, and interfaces and networks have no order: nothing here needs it. tests/test_cni_unit.py
checks all of this against ipaddress with hypothesis.
"""

from podnet.cni.record import Record

_BITS = {4: 32, 6: 128}
_HEX = frozenset("0123456789abcdefABCDEF")
_V4_PREFIX_OF_MASK = {(1 << 32) - (1 << (32 - n)): n for n in range(33)}  # 255.255.255.0 -> 24


class Address(Record):
    """value: int; version: 4 or 6; scope_id: str | None (IPv6 only, "fe80::1%eth0").
    `address + n` and `address - n` are addresses; int(address) is its value."""

    __slots__ = ("value", "version", "scope_id")

    def __init__(self, value: int, version: int = 4, scope_id: str | None = None) -> None:
        if version not in _BITS or not 0 <= value < 1 << _BITS[version]:
            raise ValueError(f"{value} is not an IPv{version} address")
        object.__setattr__(self, "value", int(value))
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "scope_id", scope_id if version == 6 else None)

    @classmethod
    def from_packed(cls, data: bytes) -> "Address":
        """4 or 16 bytes in network order, as netlink carries them."""
        if len(data) not in (4, 16):
            raise ValueError(f"{len(data)} bytes are not an IP address")
        return cls(int.from_bytes(data, "big"), 4 if len(data) == 4 else 6)

    @property
    def packed(self) -> bytes:
        return self.value.to_bytes(_BITS[self.version] // 8, "big")

    @property
    def max_prefixlen(self) -> int:
        return _BITS[self.version]

    def __int__(self) -> int:
        return self.value

    def __add__(self, other: object) -> "Address":
        if not isinstance(other, int):
            return NotImplemented
        return Address(self.value + other, self.version)

    def __sub__(self, other: object) -> "Address":
        if not isinstance(other, int):
            return NotImplemented
        return Address(self.value - other, self.version)

    def _before(self, other: object):
        """self < other, by value within one version (the scope does not count)."""
        if not isinstance(other, Address):
            return NotImplemented
        if other.version != self.version:
            raise TypeError(f"{self} and {other} are not of the same version")
        return self.value < other.value

    # the rest as functools.total_ordering derives them from < and ==, like ipaddress's
    def __lt__(self, other: object):
        return self._before(other)

    def __le__(self, other: object):
        before = self._before(other)
        return before if before is NotImplemented else before or self == other

    def __gt__(self, other: object):
        before = self._before(other)
        return before if before is NotImplemented else not before and self != other

    def __ge__(self, other: object):
        before = self._before(other)
        return before if before is NotImplemented else not before

    def __str__(self) -> str:
        if self.version == 4:
            return ".".join(str(self.value >> shift & 0xFF) for shift in (24, 16, 8, 0))
        text = _format_v6(self.value)
        return f"{text}%{self.scope_id}" if self.scope_id else text

    def __repr__(self) -> str:
        return f"Address('{self}')"


class Network(Record):
    """network_address: Address (no host bits set); prefixlen: int. `address in network`."""

    __slots__ = ("network_address", "prefixlen")

    def __init__(self, network_address: Address, prefixlen: int) -> None:
        _check_prefixlen(prefixlen, network_address)
        if network_address.value & ~_mask(prefixlen, network_address.version):
            raise ValueError(f"{network_address}/{prefixlen} has host bits set")
        object.__setattr__(self, "network_address", network_address)
        object.__setattr__(self, "prefixlen", prefixlen)

    @property
    def version(self) -> int:
        return self.network_address.version

    @property
    def netmask(self) -> Address:
        return Address(_mask(self.prefixlen, self.version), self.version)

    @property
    def broadcast_address(self) -> Address:
        host_bits = (1 << (self.network_address.max_prefixlen - self.prefixlen)) - 1
        return Address(self.network_address.value | host_bits, self.version)

    def __contains__(self, address: object) -> bool:
        """Addresses, and interfaces by their address (ipaddress's IPv4Interface is an
        address); a network is never "in" another."""
        if isinstance(address, Interface):
            address = address.ip
        return (isinstance(address, Address) and address.version == self.version
                and address.value & _mask(self.prefixlen, self.version) == self.network_address.value)

    def __str__(self) -> str:
        return f"{self.network_address}/{self.prefixlen}"

    def __repr__(self) -> str:
        return f"Network('{self}')"


class Interface(Record):
    """An address on a link: ip: Address; network: the Network it is in (10.22.0.5/16)."""

    __slots__ = ("ip", "network")

    def __init__(self, ip: Address, prefixlen: int) -> None:
        _check_prefixlen(prefixlen, ip)
        masked = ip.value & _mask(prefixlen, ip.version)
        # ipaddress keeps an IPv6 scope on the network only when the address was the network's
        network_address = ip if masked == ip.value else Address(masked, ip.version)
        object.__setattr__(self, "ip", ip)
        object.__setattr__(self, "network", Network(network_address, prefixlen))

    @property
    def version(self) -> int:
        return self.ip.version

    def _replace(self, **changes: object) -> "Interface":
        return Interface(changes.get("ip", self.ip), changes.get("prefixlen", self.network.prefixlen))  # type: ignore[arg-type]

    def __reduce__(self):  # built from (ip, prefixlen), not from its fields
        return Interface, (self.ip, self.network.prefixlen)

    def __str__(self) -> str:
        return f"{self.ip}/{self.network.prefixlen}"

    def __repr__(self) -> str:
        return f"Interface('{self}')"


def _check_prefixlen(prefixlen: int, address: Address) -> None:
    if not 0 <= prefixlen <= address.max_prefixlen:
        raise ValueError(f"{prefixlen} is not a valid IPv{address.version} prefix length")


def _mask(prefixlen: int, version: int) -> int:
    bits = _BITS[version]
    return (1 << bits) - (1 << (bits - prefixlen))


# --- parsing -------------------------------------------------------------------------------

def ip_address(value: object) -> Address:
    """ipaddress.ip_address: an IPv4 or IPv6 address from text or an int."""
    address = _address(value, 4) or _address(value, 6)
    if address is None:
        raise ValueError(f"{value!r} does not appear to be an IPv4 or IPv6 address")
    return address


def ip_interface(value: object) -> Interface:
    """ipaddress.ip_interface: "address[/prefix]" (no prefix: a single address), or an int."""
    for version in (4, 6):
        parsed = _with_prefix(value, version)
        if parsed is not None:
            return Interface(*parsed)
    raise ValueError(f"{value!r} does not appear to be an IPv4 or IPv6 interface")


def ip_network(value: object, strict: bool = True) -> Network:
    """ipaddress.ip_network: "address[/prefix]"; host bits set are a ValueError when strict,
    and cleared otherwise."""
    for version in (4, 6):
        parsed = _with_prefix(value, version)
        if parsed is not None:
            address, prefixlen = parsed
            interface = Interface(address, prefixlen)
            if strict and interface.network.network_address.value != address.value:
                raise ValueError(f"{address}/{prefixlen} has host bits set")
            return interface.network
    raise ValueError(f"{value!r} does not appear to be an IPv4 or IPv6 network")


def _address(value: object, version: int) -> Address | None:
    """One version's reading of `value`, or None. Anything not an int is read as its str(),
    as ipaddress does."""
    if isinstance(value, int):
        return Address(int(value), version) if 0 <= value < 1 << _BITS[version] else None
    text = str(value)
    if "/" in text:
        return None
    if version == 4:
        number = _parse_v4(text)
        return None if number is None else Address(number, 4)
    parsed = _parse_v6(text)
    return None if parsed is None else Address(parsed[0], 6, parsed[1])


def _with_prefix(value: object, version: int) -> tuple[Address, int] | None:
    if isinstance(value, int):
        address = _address(value, version)
        return None if address is None else (address, _BITS[version])
    parts = str(value).split("/")
    if len(parts) > 2:
        return None
    address = _address(parts[0], version)
    if address is None:
        return None
    prefixlen = _BITS[version] if len(parts) == 1 else _prefixlen(parts[1], version)
    return None if prefixlen is None else (address, prefixlen)


def _prefixlen(text: str, version: int) -> int | None:
    """A prefix length ("24", leading zeros allowed); for IPv4 also a netmask (255.255.255.0)
    or a hostmask (0.0.0.255), tried in that order."""
    if text.isascii() and text.isdigit():
        return int(text) if int(text) <= _BITS[version] else None
    if version != 4:
        return None
    mask = _parse_v4(text)
    if mask is None:
        return None
    found = _V4_PREFIX_OF_MASK.get(mask)
    return found if found is not None else _V4_PREFIX_OF_MASK.get(mask ^ 0xFFFFFFFF)


def _parse_v4(text: str) -> int | None:
    """Four decimal octets, each 0-255, no sign, no leading zero ("010" is refused)."""
    octets = text.split(".")
    if len(octets) != 4:
        return None
    value = 0
    for octet in octets:
        if not (octet.isascii() and octet.isdigit()) or len(octet) > 3 or (octet[0] == "0" and octet != "0"):
            return None
        number = int(octet)
        if number > 255:
            return None
        value = value << 8 | number
    return value


def _parse_v6(text: str) -> tuple[int, str | None] | None:
    """Eight groups of 1-4 hex digits; one "::" for a run of zero groups; an IPv4 address
    for the last two groups; then an optional non-empty %scope."""
    text, sep, scope = text.partition("%")
    if sep and (not scope or "%" in scope):
        return None
    parts = text.split(":")
    if len(parts) < 3:
        return None
    if "." in parts[-1]:
        tail = _parse_v4(parts.pop())
        if tail is None:
            return None
        parts += ["%x" % (tail >> 16), "%x" % (tail & 0xFFFF)]
    if len(parts) > 9:
        return None
    gaps = [i for i in range(1, len(parts) - 1) if not parts[i]]  # "::" inside, not at the ends
    if len(gaps) > 1:
        return None
    if gaps:
        head, tail_count = gaps[0], len(parts) - gaps[0] - 1
        if not parts[0]:  # "::x": the empty first part belongs to the "::"
            head -= 1
            if head:
                return None
        if not parts[-1]:  # "x::"
            tail_count -= 1
            if tail_count:
                return None
        skipped = 8 - head - tail_count
        if skipped < 1:
            return None
        groups = parts[:head] + ["0"] * skipped + (parts[len(parts) - tail_count:] if tail_count else [])
    else:
        if len(parts) != 8 or not parts[0] or not parts[-1]:
            return None
        groups = parts
    value = 0
    for group in groups:
        if not group or len(group) > 4 or not _HEX.issuperset(group):
            return None
        value = value << 16 | int(group, 16)
    return value, (scope if sep else None)


def _format_v6(value: int) -> str:
    groups = ["%x" % (value >> shift & 0xFFFF) for shift in range(112, -1, -16)]
    best_start, best_length, start = 0, 0, None  # the first longest run of "0" groups
    for index, group in enumerate(groups):
        if group != "0":
            start = None
            continue
        if start is None:
            start = index
        if index + 1 - start > best_length:
            best_start, best_length = start, index + 1 - start
    if best_length < 2:
        return ":".join(groups)
    return ":".join(groups[:best_start]) + "::" + ":".join(groups[best_start + best_length:])
