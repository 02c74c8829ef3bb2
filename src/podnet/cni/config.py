"""The network configuration a runtime hands the plugin on stdin, parsed once into frozen
dataclasses and checked loudly.

Accepted: the reference `bridge` plugin's keys with `ipam.type: host-local` (flat `subnet`/
`rangeStart`/`rangeEnd`/`gateway` or `ranges`, `routes`, `dataDir`, `resolvConf`), the spec's
runtime-inserted keys (`cniVersion`, `name`, `prevResult`, `runtimeConfig`, `args`,
`cni.dev/*`) and the list-level keys a hand-written single-plugin file may carry. Everything
else is refused with error code 2 naming the key and value, where the reference plugins would
silently ignore a typo; a bridge feature podnet does not implement (VLANs, ipMasq via iptables,
MAC spoof check, ...) is refused the same way when it is switched on, so a config never means
more than what the plugin does. Invalid values are code 7, a bad version code 1.
"""

from __future__ import annotations

import os

from podnet.cni import jsonio
from podnet.cni.addr import Address, Network, ip_address, ip_network
from podnet.cni.record import Record
from podnet.cni.spec import (
    DECODING_FAILURE, DNS, INCOMPATIBLE_VERSION, INVALID_CONFIG, SUPPORTED_VERSIONS,
    UNSUPPORTED_FIELD, CniError, Result, Route, validate_network_name,
)

DEFAULT_BRIDGE = "cni0"
DEFAULT_DATA_DIR = "/var/lib/cni/networks"
PLUGIN_TYPES = ("podnet-cni", "bridge")  # "bridge" too, so the reference's configs run unchanged

_RUNTIME_KEYS = {"cniVersion", "name", "type", "prevResult", "runtimeConfig", "args", "capabilities",
                 "cniVersions", "disableCheck", "disableGC", "loadOnlyInlinedPlugins", "dns", "ipam"}
# key -> the value that means "off"; anything else is a feature podnet-cni does not implement
_UNIMPLEMENTED_BRIDGE_KEYS = {"ipMasq": False, "ipMasqBackend": None, "vlan": 0, "vlanTrunk": None,
                              "macspoofchk": False, "disableContainerInterface": False,
                              "portIsolation": False}
_BRIDGE_KEYS = {"bridge", "isGateway", "isDefaultGateway", "forceAddress", "mtu", "hairpinMode",
                "promiscMode", "enabledad", "preserveDefaultVlan"}
_IPAM_KEYS = {"type", "subnet", "rangeStart", "rangeEnd", "gateway", "ranges", "routes", "dataDir",
              "resolvConf"}
_RANGE_KEYS = {"subnet", "rangeStart", "rangeEnd", "gateway"}


# Frozen records (podnet.cni.record: compared by value, cheap to import); fields and types in
# each docstring. Addresses are podnet.cni.addr's, all IPv4.

def _is_ipv4(address: object) -> bool:
    return isinstance(address, Address) and address.version == 4


class Range(Record):
    """One host-local range: addresses rangeStart..rangeEnd of subnet, never the gateway.
    subnet: Network; range_start, range_end, gateway: Address."""

    __slots__ = ("subnet", "range_start", "range_end", "gateway")

    def __contains__(self, address: object) -> bool:
        return _is_ipv4(address) and self.range_start <= address <= self.range_end  # type: ignore[operator]

    def __str__(self) -> str:
        return f"{self.range_start}-{self.range_end}"


class RangeSet(Record):
    """A pool of ranges that together yield one address (host-local's `ranges` inner list).
    ranges: tuple[Range, ...]."""

    __slots__ = ("ranges",)

    def range_for(self, address: Address) -> Range | None:
        return next((r for r in self.ranges if address in r), None)

    def __contains__(self, address: object) -> bool:
        return _is_ipv4(address) and self.range_for(address) is not None  # type: ignore[arg-type]

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


class IPAMConf(Record):
    """type: str; range_sets: tuple[RangeSet, ...]; routes: tuple[Route, ...]; data_dir,
    resolv_conf: str; requested_ips: tuple[Address, ...] (CNI_ARGS IP=, args.cni.ips,
    runtimeConfig.ips)."""

    __slots__ = ("type", "range_sets", "routes", "data_dir", "resolv_conf", "requested_ips")
    _defaults = {"range_sets": (), "routes": (), "data_dir": DEFAULT_DATA_DIR, "resolv_conf": "", "requested_ips": ()}


class NetConf(Record):
    """One plugin configuration. cni_version, name, type, bridge: str; is_gateway,
    is_default_gateway, force_address, hairpin_mode, promisc_mode, enable_dad: bool; mtu: int
    (0: the kernel's default); mac: str, the requested container MAC (CNI_ARGS MAC=,
    args.cni.mac, runtimeConfig.mac); ipam: IPAMConf | None (None: pure L2, `"ipam": {}`, no
    addresses); dns: DNS; prev_result: Result | None; valid_attachments: tuple[tuple[str, str],
    ...] | None, GC's (containerID, ifname); raw: str, the stdin text, for error messages."""

    __slots__ = ("cni_version", "name", "type", "bridge", "is_gateway", "is_default_gateway", "force_address",
                 "mtu", "hairpin_mode", "promisc_mode", "enable_dad", "mac", "ipam", "dns", "prev_result",
                 "valid_attachments", "raw")
    _defaults = {"bridge": DEFAULT_BRIDGE, "is_gateway": False, "is_default_gateway": False, "force_address": False,
                 "mtu": 0, "hairpin_mode": False, "promisc_mode": False, "enable_dad": False, "mac": "", "ipam": None,
                 "dns": DNS(), "prev_result": None, "valid_attachments": None, "raw": ""}


def _fail(code: int, msg: str, details: str = "") -> CniError:
    return CniError(code, msg, details)


def _bool(obj: dict, key: str, where: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise _fail(INVALID_CONFIG, f"{where}{key} must be true or false, not {jsonio.dumps(value)}")
    return value


def _str(obj: dict, key: str, where: str, default: str = "") -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise _fail(INVALID_CONFIG, f"{where}{key} must be a string, not {jsonio.dumps(value)}")
    return value


def _unsupported(key: str, value: object, why: str) -> CniError:
    return _fail(UNSUPPORTED_FIELD, f"unsupported field {key}={jsonio.dumps(value)}", why)


def _ipv4(text: object, what: str) -> Address:
    try:
        address = ip_address(text)  # type: ignore[arg-type]
    except ValueError:
        raise _fail(INVALID_CONFIG, f"invalid {what} {jsonio.dumps(text)}") from None
    if address.version != 4:
        raise _unsupported(what, text, "podnet-cni allocates IPv4 addresses only")
    return address


def _subnet(text: object) -> Network:
    try:
        network = ip_network(text, strict=False)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise _fail(INVALID_CONFIG, f"invalid subnet {jsonio.dumps(text)}") from None
    if network.version != 4:
        raise _unsupported("subnet", text, "podnet-cni allocates IPv4 addresses only")
    if network.prefixlen > 30:
        raise _fail(INVALID_CONFIG, f"invalid range set: Network {text} too small to allocate from")
    given = ip_address(str(text).split("/")[0])
    if given != network.network_address:
        raise _fail(INVALID_CONFIG, "invalid range set: Network has host bits set. For a subnet mask of "
                    f"length {network.prefixlen} the network address is {network.network_address}")
    return network


def parse_range(obj: object, where: str) -> Range:
    """host-local's Range.Canonicalize: gateway defaults to .1, rangeStart to .1 (the gateway is
    skipped while allocating), rangeEnd to the last address before broadcast."""
    if not isinstance(obj, dict):
        raise _fail(INVALID_CONFIG, f"{where} must be an object")
    for key in obj:
        if key not in _RANGE_KEYS:
            raise _unsupported(f"{where}.{key}", obj[key], "host-local ranges take subnet, rangeStart, "
                               "rangeEnd and gateway")
    if "subnet" not in obj:
        raise _fail(INVALID_CONFIG, f"{where}: missing subnet")
    subnet = _subnet(obj["subnet"])
    gateway = _ipv4(obj["gateway"], "gateway") if obj.get("gateway") else subnet.network_address + 1
    if gateway not in subnet:
        raise _fail(INVALID_CONFIG, f"invalid range set: gateway {gateway} not in network {subnet}")
    start = _ipv4(obj["rangeStart"], "rangeStart") if obj.get("rangeStart") else subnet.network_address + 1
    end = _ipv4(obj["rangeEnd"], "rangeEnd") if obj.get("rangeEnd") else subnet.broadcast_address - 1
    for address in (start, end):
        if address not in subnet:
            raise _fail(INVALID_CONFIG, f"invalid range set: {address} not in network {subnet}")
    if start > end:
        raise _fail(INVALID_CONFIG, f"invalid range set: {start} is in network {subnet} but after end {end}")
    return Range(subnet=subnet, range_start=start, range_end=end, gateway=gateway)


def _overlaps(a: Range, b: Range) -> bool:
    return a.range_start <= b.range_end and b.range_start <= a.range_end


def parse_route(obj: object, where: str) -> Route:
    if not isinstance(obj, dict) or "dst" not in obj:
        raise _fail(INVALID_CONFIG, f"{where} must be an object with dst")
    for key in obj:
        if key not in ("dst", "gw"):
            raise _unsupported(f"{where}.{key}", obj[key], "routes take dst and gw")
    try:
        dst = ip_network(obj["dst"], strict=False)
    except (ValueError, TypeError):
        raise _fail(INVALID_CONFIG, f"{where}: invalid dst {jsonio.dumps(obj['dst'])}") from None
    if dst.version != 4:
        raise _unsupported(f"{where}.dst", obj["dst"], "podnet-cni configures IPv4 only")
    gw = _ipv4(obj["gw"], f"{where}.gw") if obj.get("gw") else None
    return Route(dst=dst, gw=gw)


def parse_dns(obj: object, where: str = "dns") -> DNS:
    if obj is None:
        return DNS()
    if not isinstance(obj, dict):
        raise _fail(INVALID_CONFIG, f"{where} must be an object")
    for key in obj:
        if key not in ("nameservers", "domain", "search", "options"):
            raise _unsupported(f"{where}.{key}", obj[key], "dns takes nameservers, domain, search, options")
    lists = {}
    for key in ("nameservers", "search", "options"):
        value = obj.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(INVALID_CONFIG, f"{where}.{key} must be a list of strings")
        lists[key] = tuple(value)
    return DNS(domain=_str(obj, "domain", f"{where}."), **lists)


def parse_resolv_conf(path: str) -> DNS:
    """host-local's resolvConf: nameserver, domain, search and options lines of a resolv.conf."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise _fail(INVALID_CONFIG, f"cannot read resolvConf {path}", str(exc)) from None
    servers, search, options, domain = [], [], [], ""
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        if fields[0] == "nameserver":
            servers.append(fields[1])
        elif fields[0] == "domain":
            domain = fields[1]
        elif fields[0] == "search":
            search = fields[1:]
        elif fields[0] == "options":
            options.extend(fields[1:])
    return DNS(nameservers=tuple(servers), domain=domain, search=tuple(search), options=tuple(options))


def _requested_ips(conf: dict, cni_args: dict) -> tuple[Address, ...]:
    found: list[Address] = []
    if cni_args.get("IP"):
        found.append(_ipv4(cni_args["IP"], "CNI_ARGS IP"))
    args = conf.get("args") or {}
    cni = args.get("cni") if isinstance(args, dict) else None
    for text in (cni or {}).get("ips") or []:
        found.append(_ipv4(str(text).split("/")[0], "args.cni.ips"))
    for entry in (conf.get("runtimeConfig") or {}).get("ips") or []:
        found.append(_ipv4(str(entry).split("/")[0], "runtimeConfig.ips"))
    return tuple(found)


def parse_ipam(conf: dict, cni_args: dict) -> IPAMConf | None:
    obj = conf.get("ipam")
    if obj is None or obj == {}:
        return None
    if not isinstance(obj, dict):
        raise _fail(INVALID_CONFIG, "ipam must be an object")
    ipam_type = _str(obj, "type", "ipam.")
    if not ipam_type:
        return None  # the reference treats an untyped ipam as "no IPAM" too
    if ipam_type != "host-local":
        raise _unsupported("ipam.type", ipam_type, "podnet-cni does host-local IPAM in-process; "
                           "it does not delegate to other IPAM plugins")
    for key in obj:
        if key not in _IPAM_KEYS:
            raise _unsupported(f"ipam.{key}", obj[key], f"host-local takes {', '.join(sorted(_IPAM_KEYS))}")
    sets: list[RangeSet] = []
    runtime_ranges = (conf.get("runtimeConfig") or {}).get("ipRanges") or []
    raw_sets = list(runtime_ranges)
    if obj.get("subnet"):
        raw_sets.append([{k: obj[k] for k in _RANGE_KEYS if k in obj}])
    raw_sets.extend(obj.get("ranges") or [])
    for i, raw in enumerate(raw_sets):
        if not isinstance(raw, list) or not raw:
            raise _fail(INVALID_CONFIG, f"invalid range set {i}: empty range set")
        ranges = tuple(parse_range(r, f"ipam.ranges[{i}][{j}]") for j, r in enumerate(raw))
        for a in range(len(ranges)):
            for b in range(a + 1, len(ranges)):
                if _overlaps(ranges[a], ranges[b]):
                    raise _fail(INVALID_CONFIG, f"invalid range set {i}: subnets {ranges[a]} and {ranges[b]} overlap")
        sets.append(RangeSet(ranges))
    if not sets:
        raise _fail(INVALID_CONFIG, "no IP ranges specified")
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            if any(_overlaps(a, b) for a in sets[i].ranges for b in sets[j].ranges):
                raise _fail(INVALID_CONFIG, f"range set {i} overlaps with {j}")
    routes = obj.get("routes") or []
    if not isinstance(routes, list):
        raise _fail(INVALID_CONFIG, "ipam.routes must be a list")
    data_dir = _str(obj, "dataDir", "ipam.") or DEFAULT_DATA_DIR
    if not os.path.isabs(data_dir):
        raise _fail(INVALID_CONFIG, f"ipam.dataDir must be an absolute path, not {data_dir!r}")
    return IPAMConf(
        type=ipam_type,
        range_sets=tuple(sets),
        routes=tuple(parse_route(r, f"ipam.routes[{i}]") for i, r in enumerate(routes)),
        data_dir=data_dir,
        resolv_conf=_str(obj, "resolvConf", "ipam."),
        requested_ips=_requested_ips(conf, cni_args),
    )


def _mac(conf: dict, cni_args: dict) -> str:
    mac = cni_args.get("MAC", "")
    args = conf.get("args")
    if isinstance(args, dict) and isinstance(args.get("cni"), dict) and args["cni"].get("mac"):
        mac = args["cni"]["mac"]
    runtime = conf.get("runtimeConfig")
    if isinstance(runtime, dict) and runtime.get("mac"):
        mac = runtime["mac"]
    if mac:
        parts = str(mac).split(":")
        if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts):
            raise _fail(INVALID_CONFIG, f"invalid MAC address {mac!r}")
        if int(parts[0], 16) & 1:
            raise _fail(INVALID_CONFIG, f"MAC address {mac!r} is a multicast address")
    return str(mac).lower()


def _valid_attachments(conf: dict) -> tuple[tuple[str, str], ...] | None:
    raw = conf.get("cni.dev/valid-attachments")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise _fail(INVALID_CONFIG, "cni.dev/valid-attachments must be a list")
    out = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("containerID"), str):
            raise _fail(INVALID_CONFIG, "cni.dev/valid-attachments entries need containerID and ifname")
        out.append((entry["containerID"], str(entry.get("ifname", ""))))
    return tuple(out)


def parse(text: str | bytes, cni_args: dict | None = None) -> NetConf:
    """Decode and validate one plugin configuration (the stdin of ADD/DEL/CHECK/GC/STATUS)."""
    cni_args = cni_args or {}
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        conf = jsonio.loads(text)
    except ValueError as exc:
        raise _fail(DECODING_FAILURE, f"error unmarshall network config: {exc}") from None
    if not isinstance(conf, dict):
        raise _fail(DECODING_FAILURE, "error unmarshall network config: not a JSON object")
    return from_dict(conf, cni_args, raw=text)


def from_dict(conf: dict, cni_args: dict | None = None, raw: str = "") -> NetConf:
    cni_args = cni_args or {}
    name = conf.get("name")
    validate_network_name(name if isinstance(name, str) else "")
    version = conf.get("cniVersion", "")
    if not isinstance(version, str) or version not in SUPPORTED_VERSIONS:
        raise _fail(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                    f"config is {jsonio.dumps(version)}, plugin supports {list(SUPPORTED_VERSIONS)}")
    if "plugins" in conf:
        raise _unsupported("plugins", "[...]", "this is a network configuration list; a runtime hands "
                           "each plugin its own object, with name and cniVersion inserted")
    plugin_type = _str(conf, "type", "")
    if plugin_type not in PLUGIN_TYPES:
        raise _unsupported("type", plugin_type, f"podnet-cni implements {' / '.join(PLUGIN_TYPES)}")
    for key, value in conf.items():
        if key in _RUNTIME_KEYS or key in _BRIDGE_KEYS or key.startswith("cni.dev/"):
            continue
        if key in _UNIMPLEMENTED_BRIDGE_KEYS:
            if value in (_UNIMPLEMENTED_BRIDGE_KEYS[key], None):
                continue
            why = ("podnet programs masquerading in the node's nftables ruleset, not per container"
                   if key.startswith("ipMasq") else "not implemented by podnet-cni")
            raise _unsupported(key, value, why)
        raise _unsupported(key, value, "not a bridge/host-local configuration key")
    mtu = conf.get("mtu", 0)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not (mtu == 0 or 68 <= mtu <= 65535):
        raise _fail(INVALID_CONFIG, f"invalid mtu {jsonio.dumps(mtu)}: 68-65535, or 0 for the kernel's default")
    bridge = _str(conf, "bridge", "", DEFAULT_BRIDGE) or DEFAULT_BRIDGE
    if len(bridge.encode()) > 15 or "/" in bridge or " " in bridge:
        raise _fail(INVALID_CONFIG, f"invalid bridge name {bridge!r}: at most 15 characters, no '/' or spaces")
    hairpin, promisc = _bool(conf, "hairpinMode", ""), _bool(conf, "promiscMode", "")
    if hairpin and promisc:
        raise _fail(INVALID_CONFIG, "cannot set hairpin mode and promiscuous mode at the same time")
    is_default_gateway = _bool(conf, "isDefaultGateway", "")
    _bool(conf, "preserveDefaultVlan", "") if "preserveDefaultVlan" in conf else None
    prev = conf.get("prevResult")
    return NetConf(
        cni_version=version,
        name=name,  # type: ignore[arg-type]
        type=plugin_type,
        bridge=bridge,
        is_gateway=_bool(conf, "isGateway", "") or is_default_gateway,
        is_default_gateway=is_default_gateway,
        force_address=_bool(conf, "forceAddress", ""),
        mtu=mtu,
        hairpin_mode=hairpin,
        promisc_mode=promisc,
        enable_dad=_bool(conf, "enabledad", ""),
        mac=_mac(conf, cni_args),
        ipam=parse_ipam(conf, cni_args),
        dns=parse_dns(conf.get("dns")),
        prev_result=Result.from_dict(prev) if prev is not None else None,
        valid_attachments=_valid_attachments(conf),
        raw=raw,
    )
