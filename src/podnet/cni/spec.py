"""The CNI protocol itself: versions, error codes, the environment, result and error JSON.

Everything here is pure data and text; nothing touches the kernel. The result types are what
ADD returns and what CHECK/DEL receive back as `prevResult`, in the spec-1.0 shape
(interfaces, ips with an `interface` index, routes, dns). Older result versions (0.3.x, 0.4.0)
are produced by `Result.to_dict(version)` for runtimes that ask for them.
"""

from __future__ import annotations

from podnet.cni import jsonio
from podnet.cni.addr import ip_address, ip_interface, ip_network
from podnet.cni.record import Record

# Spec 0.1.0/0.2.0 results have another shape (ip4/ip6 objects); nobody needs them any more.
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT_VERSION = "1.1.0"

# Well-known error codes (SPEC.md "Error"), and the plugin-specific code the reference plugins
# use for every other failure.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
NOT_AVAILABLE_DEGRADED = 51
INTERNAL = 999

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS")


class CniError(Exception):
    """A failure the plugin reports as error JSON: {cniVersion, code, msg, details}."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_dict(self, version: str = CURRENT_VERSION) -> dict:
        out: dict = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"CniError({self.code}, {self.msg!r}, {self.details!r})"


def version_tuple(version: str) -> tuple[int, int, int]:
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise CniError(DECODING_FAILURE, f"invalid version {version!r}: expected MAJOR.MINOR.PATCH")
    return int(parts[0]), int(parts[1]), int(parts[2])


def require_version(version: str, minimum: str, command: str) -> None:
    """CHECK needs a 0.4.0+ config, GC and STATUS a 1.1.0+ one (as libcni's skel decides)."""
    if version_tuple(version) < version_tuple(minimum):
        raise CniError(INCOMPATIBLE_VERSION, f"config version does not allow {command}",
                       f"{command} needs cniVersion {minimum} or later, config is {version}")


# --- the environment ---------------------------------------------------------------------

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_CHARS = _ALNUM | frozenset("_.-")


def _valid_id(text: str) -> bool:
    """libcni's ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$ (without `re`: its import costs a run ~4 ms)."""
    return bool(text) and text[0] in _ALNUM and all(ch in _ID_CHARS for ch in text)


def validate_container_id(container_id: str) -> None:
    if not container_id:
        raise CniError(INVALID_ENVIRONMENT, "missing containerID")
    if not _valid_id(container_id):
        raise CniError(INVALID_ENVIRONMENT, "invalid characters in containerID", container_id)


def validate_ifname(ifname: str) -> None:
    """The kernel's rules (dev_valid_name): 1-15 bytes, not . or .., no '/', ':' or whitespace."""
    if not ifname:
        raise CniError(INVALID_ENVIRONMENT, "interface name is empty")
    if len(ifname.encode()) > 15:
        raise CniError(INVALID_ENVIRONMENT, "interface name is too long",
                       "interface name should be less than 16 characters")
    if ifname in (".", ".."):
        raise CniError(INVALID_ENVIRONMENT, "interface name is . or ..")
    if any(ch in "/:" or ch.isspace() for ch in ifname):
        raise CniError(INVALID_ENVIRONMENT, "interface name contains / or : or whitespace characters",
                       ifname)


def validate_network_name(name: str) -> None:
    if not name:
        raise CniError(INVALID_CONFIG, "missing network name")
    if not _valid_id(name):
        raise CniError(INVALID_CONFIG, "invalid characters found in network name", name)


# Keys the bridge and host-local plugins understand in CNI_ARGS, plus what kubelet always passes.
KNOWN_ARGS = frozenset({"IgnoreUnknown", "IP", "MAC", "K8S_POD_NAMESPACE", "K8S_POD_NAME",
                        "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"})


def parse_cni_args(text: str) -> dict[str, str]:
    """CNI_ARGS "K=V;K2=V2". Unknown keys are an error unless IgnoreUnknown is true (like
    types.LoadArgs in the reference plugins); they are then dropped."""
    args: dict[str, str] = {}
    if not text:
        return args
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep:
            raise CniError(INVALID_ENVIRONMENT, f"ARGS: invalid pair {pair!r}", "CNI_ARGS")
        args[key] = value
    ignore = args.get("IgnoreUnknown", "").lower() in ("1", "true")
    unknown = [f"{k}={v}" for k, v in args.items() if k not in KNOWN_ARGS]
    if unknown and not ignore:
        raise CniError(INVALID_ENVIRONMENT, f"ARGS: unknown args {jsonio.dumps(unknown)}",
                       "CNI_ARGS (set IgnoreUnknown=true to ignore unknown keys)")
    return {k: v for k, v in args.items() if k in KNOWN_ARGS}


class Invocation(Record):
    """One call of the plugin: the CNI_* environment, decoded and checked.
    command: str; container_id, netns, ifname: str; args: dict (CNI_ARGS); path: tuple[str, ...]"""

    __slots__ = ("command", "container_id", "netns", "ifname", "args", "path")
    _defaults = {"container_id": "", "netns": "", "ifname": "", "args": None, "path": ()}


# Which variables each command needs (SPEC.md "Parameters"); CNI_PATH is only needed by
# plugins that delegate, and podnet-cni does host-local in-process, so it is never required.
_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "VERSION": (), "GC": (), "STATUS": (),
}


def invocation_from_env(environ) -> Invocation:
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing", "CNI_COMMAND")
    if command not in _REQUIRED:
        raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}", "CNI_COMMAND")
    missing = [name for name in _REQUIRED[command] if not environ.get(name)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing",
                       ",".join(missing))
    inv = Invocation(
        command=command,
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        args=parse_cni_args(environ.get("CNI_ARGS", "")) if command in ("ADD", "DEL", "CHECK") else {},
        path=tuple(p for p in environ.get("CNI_PATH", "").split(":") if p),
    )
    if command in ("ADD", "DEL", "CHECK"):
        validate_container_id(inv.container_id)
        validate_ifname(inv.ifname)
    return inv


# --- results -------------------------------------------------------------------------------

# The result types are frozen records (podnet.cni.record: compared by value); addresses are
# podnet.cni.addr's Address, Interface (address/prefix) and Network.

class Interface(Record):
    """name: str; mac: str; sandbox: the CNI_NETNS path for interfaces inside the container."""
    __slots__ = ("name", "mac", "sandbox")
    _defaults = {"mac": "", "sandbox": ""}


class IPConfig(Record):
    """address: addr.Interface (with prefix length, e.g. 10.22.0.5/16); gateway: addr.Address |
    None; interface: int | None, an index into Result.interfaces."""
    __slots__ = ("address", "gateway", "interface")
    _defaults = {"gateway": None, "interface": None}


class Route(Record):
    """dst: addr.Network; gw: addr.Address | None."""
    __slots__ = ("dst", "gw")
    _defaults = {"gw": None}


class DNS(Record):
    """nameservers, search, options: tuple[str, ...]; domain: str."""
    __slots__ = ("nameservers", "domain", "search", "options")
    _defaults = {"nameservers": (), "domain": "", "search": (), "options": ()}

    def __bool__(self) -> bool:
        return bool(self.nameservers or self.domain or self.search or self.options)

    def to_dict(self) -> dict:
        out: dict = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


class Result(Record):
    """cni_version: str; interfaces: tuple[Interface, ...]; ips: tuple[IPConfig, ...];
    routes: tuple[Route, ...]; dns: DNS."""
    __slots__ = ("cni_version", "interfaces", "ips", "routes", "dns")
    _defaults = {"cni_version": CURRENT_VERSION, "interfaces": (), "ips": (), "routes": (), "dns": DNS()}

    def to_dict(self, version: str | None = None) -> dict:
        """The result JSON object for `version` (default: the result's own), with keys in the
        order the reference plugins print them."""
        version = version or self.cni_version
        legacy = version_tuple(version) < (1, 0, 0)
        out: dict = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = []
            for itf in self.interfaces:
                entry = {"name": itf.name}
                if itf.mac:
                    entry["mac"] = itf.mac
                if itf.sandbox:
                    entry["sandbox"] = itf.sandbox
                out["interfaces"].append(entry)
        if self.ips:
            out["ips"] = []
            for ipc in self.ips:
                entry = {}
                if legacy:
                    entry["version"] = "4" if ipc.address.version == 4 else "6"
                if ipc.interface is not None:
                    entry["interface"] = ipc.interface
                entry["address"] = str(ipc.address)
                if ipc.gateway is not None:
                    entry["gateway"] = str(ipc.gateway)
                out["ips"].append(entry)
        if self.routes:
            out["routes"] = []
            for route in self.routes:
                entry = {"dst": str(route.dst)}
                if route.gw is not None:
                    entry["gw"] = str(route.gw)
                out["routes"].append(entry)
        out["dns"] = self.dns.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: object, where: str = "prevResult") -> "Result":
        """Parse a (prev)result of any supported version; errors are decoding failures (6)."""
        try:
            if not isinstance(data, dict):
                raise ValueError("not an object")
            interfaces = tuple(
                Interface(name=str(i["name"]), mac=str(i.get("mac", "")), sandbox=str(i.get("sandbox", "")))
                for i in data.get("interfaces") or ())
            ips = tuple(
                IPConfig(address=ip_interface(i["address"]),
                         gateway=ip_address(i["gateway"]) if i.get("gateway") else None,
                         interface=int(i["interface"]) if i.get("interface") is not None else None)
                for i in data.get("ips") or ())
            routes = tuple(
                Route(dst=ip_network(r["dst"], strict=False), gw=ip_address(r["gw"]) if r.get("gw") else None)
                for r in data.get("routes") or ())
            dns_data = data.get("dns") or {}
            dns = DNS(nameservers=tuple(dns_data.get("nameservers") or ()),
                      domain=str(dns_data.get("domain") or ""),
                      search=tuple(dns_data.get("search") or ()),
                      options=tuple(dns_data.get("options") or ()))
            return cls(cni_version=str(data.get("cniVersion", CURRENT_VERSION)), interfaces=interfaces,
                       ips=ips, routes=routes, dns=dns)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CniError(DECODING_FAILURE, f"failed to decode {where}", str(exc)) from None


def dumps(obj: dict) -> str:
    """JSON as the reference plugins print it (4-space indent)."""
    return jsonio.dumps(obj, indent=4)


def version_dict(requested: str | None) -> dict:
    """VERSION's answer: the config's version echoed back (the spec asks for it) and what we speak."""
    version = requested if requested in SUPPORTED_VERSIONS else CURRENT_VERSION
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
