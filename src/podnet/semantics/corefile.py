"""The Corefile, as CoreDNS reads it: a Caddyfile of server blocks, then typed plugin settings.

`parse` is the syntax (caddyfile v1's lexer and parser as CoreDNS vendors them): whitespace-
separated tokens, `"..."` quoting (only `\\"` is an escape), `#` to the end of the line, a server
block `KEY... {` (the `{` may be on a later line), and per directive one line of arguments with an
optional `{` on that same line opening a block of sub-directives, one per line. `server_config`
turns one block into a frozen `ServerConfig`, checking what each plugin's setup.go checks.
Every problem is one `CorefileError` naming the line. Left out: `import`, snippets, `{$ENV}`,
brace-less single server blocks, transports other than dns://, and CIDR reverse-zone keys.

Pure (text in, frozen values out): the DNS server (podnet.dns) runs what it reads, and the
simulator (semantics/dns.ClusterDNS) predicts its answers from the same values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Iterator, TypeVar

from podnet.errors import PodnetError

__all__ = ["Cache", "ClusterServer", "Corefile", "CorefileError", "Directive", "Forward", "Health", "Hosts",
           "KubernetesPlugin", "Reload", "ServerBlock", "ServerConfig", "address_port", "cluster_server", "duration",
           "in_zone", "is_reverse", "kubeadm_plugin", "load", "parse", "server_config", "serving_block"]


class CorefileError(PodnetError, ValueError):
    """A Corefile CoreDNS would refuse to start with: the server exits, the simulator reports it."""

    def __init__(self, source: str, line: int, what: str):
        super().__init__(f"{source}:{line}: {what}")
        self.source, self.line, self.what = source, line, what


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    block: tuple[Directive, ...]
    line: int


@dataclass(frozen=True)
class ServerBlock:
    keys: tuple[str, ...]
    zones: tuple[str, ...]  # FQDN, lowercase, "." for the root
    port: int
    directives: tuple[Directive, ...]
    line: int
    source: str = "Corefile"


@dataclass(frozen=True)
class Corefile:
    servers: tuple[ServerBlock, ...]
    source: str


# Plugins CoreDNS lets appear more than once in a block (log rules and bind addresses add up).
REPEATABLE = frozenset({"log", "bind"})
PLUGINS = frozenset({"errors", "health", "ready", "kubernetes", "prometheus", "forward", "cache", "loop",
                     "reload", "hosts", "log", "loadbalance", "bind", "cancel", "bufsize", "debug", "whoami",
                     "any", "minimal"})
DNS_PORT = 53
REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")


# ---------------------------------------------------------------------------------------------
# Syntax


@dataclass(frozen=True)
class _Token:
    text: str
    line: int
    quoted: bool

    @property
    def brace(self) -> str | None:
        return self.text if not self.quoted and self.text in ("{", "}") else None


def _tokens(text: str, source: str) -> list[_Token]:
    tokens, i, line, n = [], 0, 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
            i += 1
        elif ch.isspace():
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch == '"':
            start, i, chars = line, i + 1, []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] == '"':
                    i += 1
                line += text[i] == "\n"
                chars.append(text[i])
                i += 1
            if i >= n:
                raise CorefileError(source, start, "unterminated quoted string")
            tokens.append(_Token("".join(chars), start, True))
            i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] != "#":
                i += 1
            tokens.append(_Token(text[start:i], line, False))
    for token in tokens:
        if "{$" in token.text:
            raise CorefileError(source, token.line, f"environment substitution is not supported: {token.text!r}")
    return tokens


def parse(text: str, source: str = "Corefile") -> Corefile:
    tokens = _tokens(text, source)
    last_line = text.count("\n") + (not text.endswith("\n"))
    servers: list[ServerBlock] = []
    served: dict[tuple[str, int], int] = {}
    i = 0
    while i < len(tokens):
        first = tokens[i]
        keys: list[_Token] = []
        while i < len(tokens) and tokens[i].brace != "{":
            token = tokens[i]
            if token.brace == "}":
                raise CorefileError(source, token.line, "unexpected '}'")
            if token.text == "import" and not token.quoted:
                raise CorefileError(source, token.line, "import is not supported")
            if keys and token.line != keys[-1].line and not keys[-1].text.endswith(","):
                raise CorefileError(source, token.line, f"expected '{{' after the server keys of line {first.line}")
            keys.append(token)
            i += 1
        if i == len(tokens):
            raise CorefileError(source, first.line, "expected '{' after the server keys")
        if not keys:
            raise CorefileError(source, tokens[i].line, "unexpected '{': a server block starts with its zones")
        opened = tokens[i]
        directives, i = _block(tokens, i + 1, opened, source, last_line, top=True)
        zones, port = _server_keys(keys, source)
        for zone in zones:
            if (zone, port) in served:
                raise CorefileError(source, first.line, f"zone {zone} on port {port} is already served by the "
                                                        f"block at line {served[zone, port]}")
            served[zone, port] = first.line
        key_texts = tuple(k for t in keys for k in t.text.split(",") if k)
        servers.append(ServerBlock(key_texts, zones, port, directives, first.line, source))
    return Corefile(tuple(servers), source)


def _block(tokens: list[_Token], i: int, opened: _Token, source: str, last_line: int,
           top: bool) -> tuple[tuple[Directive, ...], int]:
    """The directives after `opened` up to its `}`; returns them and the index past the `}`."""
    directives: list[Directive] = []
    while i < len(tokens):
        name = tokens[i]
        if name.brace == "}":
            return tuple(directives), i + 1
        if name.brace == "{":
            raise CorefileError(source, name.line, "unexpected '{': a block opens on the line of its directive")
        if name.text == "import":
            raise CorefileError(source, name.line, "import is not supported")
        if top and name.text not in PLUGINS:
            raise CorefileError(source, name.line, f"unknown plugin {name.text!r}")
        i += 1
        args: list[str] = []
        while i < len(tokens) and tokens[i].line == name.line and tokens[i].brace is None:
            args.append(tokens[i].text)
            i += 1
        block: tuple[Directive, ...] = ()
        if i < len(tokens) and tokens[i].brace == "{" and tokens[i].line == name.line:
            block, i = _block(tokens, i + 1, tokens[i], source, last_line, top=False)
        directives.append(Directive(name.text, tuple(args), block, name.line))
    raise CorefileError(source, last_line, f"missing '}}' for the block opened at line {opened.line}")


def _server_keys(keys: list[_Token], source: str) -> tuple[tuple[str, ...], int]:
    zones, ports = [], set()
    for token in keys:
        for key in filter(None, token.text.split(",")):
            zone, port = _server_key(key, source, token.line)
            zones.append(zone)
            ports.add(port)
    if len(ports) > 1:
        raise CorefileError(source, keys[0].line, f"the keys of one server block must share a port, got {sorted(ports)}")
    return tuple(zones), ports.pop()


def _server_key(key: str, source: str, line: int) -> tuple[str, int]:
    rest = key
    if "://" in key:
        scheme, rest = key.split("://", 1)
        if scheme.lower() != "dns":
            raise CorefileError(source, line, f"transport {scheme}:// is not supported in server key {key!r}")
    zone, colon, port_text = rest.partition(":")
    port = _port(port_text) if colon else DNS_PORT
    if port is None:
        raise CorefileError(source, line, f"bad port {port_text!r} in server key {key!r}")
    if "/" in zone:
        raise CorefileError(source, line, f"reverse zones from a CIDR are not supported: {key!r}")
    try:
        return _zone(zone or "."), port
    except ValueError as e:
        raise CorefileError(source, line, f"bad zone in server key {key!r}: {e}") from None


def _int(text: str) -> int | None:
    """A non-negative decimal integer (ASCII digits only, as Go's strconv.Atoi), else None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


def _port(text: str) -> int | None:
    number = _int(text)
    return number if number is not None and 0 < number < 65536 else None


_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


def _zone(name: str) -> str:
    """FQDN, lowercase; "." for the root."""
    name = name.lower()
    name = "" if name == "." else name[:-1] if name.endswith(".") else name
    if name and not all(_LABEL.fullmatch(label) for label in name.split(".")) or len(name) > 253:
        raise ValueError(f"{name!r} is not a domain name")
    return name + "."


# ---------------------------------------------------------------------------------------------
# Values


_DURATION = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> float:
    """Seconds in Go's time.ParseDuration syntax ("1m30s", "500ms", "0"); negative is rejected."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r}")
    return total


def address_port(addr: str, default: int) -> tuple[str, int]:
    """(host, port) of ":8080", "127.0.0.1:8080", "[::]:9153", "localhost" or a bare IPv6."""
    host, port = addr, ""
    if addr.startswith("["):
        host, sep, port = addr[1:].partition("]")
        if not sep or (port and not port.startswith(":")):
            raise ValueError(f"bad address {addr!r}")
        port = port[1:]
    elif addr.count(":") == 1:
        host, _, port = addr.partition(":")
    if port == "":
        return host, default
    number = _port(port)
    if number is None:
        raise ValueError(f"bad port {port!r} in address {addr!r}")
    return host, number


# ---------------------------------------------------------------------------------------------
# Typed configuration


@dataclass(frozen=True)
class Health:
    addr: str = ":8080"
    lameduck_seconds: float = 0.0


@dataclass(frozen=True)
class Forward:
    from_zone: str
    upstreams: tuple[tuple[str, int], ...]  # (IP, port)
    paths: tuple[str, ...] = ()  # resolv.conf-style files, as given: the server reads them
    policy: str = "random"  # random | round_robin | sequential
    max_concurrent: int = 0  # 0: unlimited
    force_tcp: bool = False
    prefer_udp: bool = False
    max_fails: int = 2
    expire_seconds: float = 10.0
    health_check_seconds: float = 0.5
    except_zones: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cache:
    ttl: int = 3600
    zones: tuple[str, ...] = (".",)
    success_cap: int = 9984
    success_ttl: int = 3600
    denial_cap: int = 9984
    denial_ttl: int = 1800  # half the maximum unless a TTL is given (CoreDNS)
    success_minttl: int = 5
    denial_minttl: int = 5
    prefetch: int = 0  # AMOUNT; 0: off
    serve_stale_seconds: float | None = None
    success_disabled: tuple[str, ...] = ()  # zones not cached (kubeadm: the cluster domain)
    denial_disabled: tuple[str, ...] = ()
    keepttl: bool = False


@dataclass(frozen=True)
class KubernetesPlugin:
    """The options of CoreDNS's kubernetes plugin that change answers; defaults are kubeadm's."""

    zones: tuple[str, ...] = ("cluster.local.", "in-addr.arpa.", "ip6.arpa.")
    pods: str = "insecure"  # disabled | insecure | verified
    ttl: int = 30
    fallthrough: tuple[str, ...] | None = REVERSE_ZONES  # None: never; (): every zone
    endpoint_pod_names: bool = False

    @property
    def primary_zone(self) -> str:
        """The first zone that is not a reverse zone: where PTR targets live ("." without zones)."""
        return next((z for z in self.zones if not is_reverse(z)), self.zones[0] if self.zones else ".")


def kubeadm_plugin(domain: str) -> KubernetesPlugin:
    domain = domain.lower()
    return KubernetesPlugin(zones=(domain if domain.endswith(".") else domain + ".", *REVERSE_ZONES))


_REVERSE_SUFFIXES = tuple("." + z for z in REVERSE_ZONES)


def in_zone(lname: str, zone: str) -> bool:
    """Whether a lowercase FQDN is `zone` or below it (CoreDNS's plugin.Zones matching)."""
    return zone == "." or lname == zone or lname.endswith("." + zone)


def is_reverse(lname: str) -> bool:
    """Whether a lowercase FQDN is a reverse zone or below one."""
    return lname in REVERSE_ZONES or lname.endswith(_REVERSE_SUFFIXES)


@dataclass(frozen=True)
class Reload:
    interval_seconds: float = 30.0
    jitter_seconds: float = 15.0


@dataclass(frozen=True)
class Hosts:
    entries: tuple[tuple[str, tuple[str, ...]], ...]  # (IP, FQDNs) from inline lines
    file: str | None  # None: not given (CoreDNS then reads /etc/hosts)
    ttl: int = 3600
    reverse: bool = True
    fallthrough: tuple[str, ...] | None = None  # None: never; (): every zone
    zones: tuple[str, ...] = (".",)
    reload_seconds: float = 5.0


@dataclass(frozen=True)
class ServerConfig:
    zones: tuple[str, ...]
    port: int
    line: int
    errors: bool = False
    health: Health | None = None
    ready: str | None = None
    kubernetes: KubernetesPlugin | None = None
    prometheus: str | None = None
    forward: Forward | None = None
    cache: Cache | None = None
    loop: bool = False
    reload: Reload | None = None
    hosts: Hosts | None = None
    log: bool = False
    loadbalance: bool = False
    bind: tuple[str, ...] = ()
    cancel_seconds: float | None = None
    bufsize: int | None = None
    debug: bool = False
    whoami: bool = False
    any: bool = False
    minimal: bool = False


class _Checker:
    """Reads one directive's arguments, raising CorefileError at the right line."""

    def __init__(self, source: str, directive: Directive):
        self.source, self.d = source, directive

    def fail(self, what: str, line: int | None = None) -> CorefileError:
        return CorefileError(self.source, line or self.d.line, f"{self.d.name}: {what}")

    def _count(self, d: Directive | None, ok: bool, n: int, at_most: str) -> tuple[str, ...]:
        d = d or self.d
        if not ok:
            what = f"{d.name} takes" if d is not self.d else "takes"
            count = "no arguments" if n == 0 else f"{at_most}{n} argument{'s' * (n != 1)}"
            raise self.fail(f"{what} {count}, got {len(d.args)}", d.line)
        return d.args

    def at_most(self, n: int, d: Directive | None = None) -> tuple[str, ...]:
        return self._count(d, len((d or self.d).args) <= n, n, "at most ")

    def exactly(self, n: int, d: Directive) -> tuple[str, ...]:
        return self._count(d, len(d.args) == n, n, "")

    def integer(self, text: str, what: str, low: int = 1, high: int = 2**31 - 1, line: int | None = None) -> int:
        number = _int(text)
        if number is None or not low <= number <= high:
            kind = "a positive integer" if (low, high) == (1, 2**31 - 1) else f"an integer in {low}..{high}"
            raise self.fail(f"{what} must be {kind}, got {text!r}", line)
        return number

    def seconds(self, text: str, what: str, line: int | None = None) -> float:
        try:
            return duration(text)
        except ValueError:
            raise self.fail(f"{what} must be a duration such as 5s or 1m30s, got {text!r}", line) from None

    def address(self, text: str, default: int) -> str:
        try:
            address_port(text, default)
        except ValueError as e:
            raise self.fail(str(e)) from None
        return text

    def zones(self, names: tuple[str, ...], line: int | None = None) -> tuple[str, ...]:
        try:
            return tuple(_zone(n) for n in names)
        except ValueError as e:
            raise self.fail(str(e), line) from None

    def options(self, known: set[str]) -> Iterator[Directive]:
        for sub in self.d.block:
            if sub.name not in known:
                raise self.fail(f"unknown property {sub.name!r}", sub.line)
            if sub.block:
                raise self.fail(f"{sub.name} takes no block", sub.line)
            yield sub



def _forward(c: _Checker) -> Forward:
    d = c.d
    if len(d.args) < 2:
        raise c.fail("needs FROM and at least one upstream (TO)" if d.args else "needs FROM and TO...")
    upstreams, paths = [], []
    for to in d.args[1:]:
        if to.startswith(("/", ".")) or ("/" in to and "://" not in to):
            paths.append(to)
            continue
        rest = to[6:] if to.startswith("dns://") else to
        if "://" in rest:
            raise c.fail(f"only plain DNS upstreams are supported, got {to!r}")
        try:
            host, port = address_port(rest, DNS_PORT)
            upstreams.append((str(ipaddress.ip_address(host)), port))
        except ValueError:
            raise c.fail(f"not an IP address or file: {to!r}") from None
    if len(upstreams) + len(paths) > 15:
        raise c.fail("at most 15 upstreams")
    opts: dict = {}
    for sub in c.options({"max_concurrent", "policy", "health_check", "expire", "prefer_udp", "force_tcp",
                          "max_fails", "except"}):
        if sub.name in ("prefer_udp", "force_tcp"):
            c.exactly(0, sub)
            opts[sub.name] = True
        elif sub.name == "except":
            opts["except_zones"] = c.zones(sub.args, sub.line)
        elif sub.name == "policy":
            (policy,) = c.exactly(1, sub)
            if policy not in ("random", "round_robin", "sequential"):
                raise c.fail(f"policy must be random, round_robin or sequential, got {policy!r}", sub.line)
            opts["policy"] = policy
        elif sub.name in ("max_concurrent", "max_fails"):
            opts[sub.name] = c.integer(c.exactly(1, sub)[0], sub.name, low=0, line=sub.line)
        else:  # health_check DURATION [no_rec] [domain NAME]: only the interval is read
            if not sub.args:
                raise c.fail(f"{sub.name} needs a duration", sub.line)
            opts[sub.name + "_seconds"] = c.seconds(sub.args[0], sub.name, sub.line)
    if opts.get("force_tcp") and opts.get("prefer_udp"):
        raise c.fail("force_tcp and prefer_udp are mutually exclusive")
    return Forward(c.zones(d.args[:1])[0], tuple(upstreams), tuple(paths), **opts)


def _cache(c: _Checker, block_zones: tuple[str, ...]) -> Cache:
    args, opts = c.d.args, {}
    # CoreDNS takes a first argument that is not an integer for a zone, so `cache 30s` silently
    # caches a zone "30s.": here zones need a dot ("local." not "local") and the rest is a TTL.
    if args and "." not in args[0]:
        ttl = c.integer(args[0], "TTL")
        args, opts = args[1:], {"ttl": ttl, "success_ttl": ttl, "denial_ttl": ttl}
    zones = c.zones(args) or block_zones
    for sub in c.options({"success", "denial", "prefetch", "serve_stale", "disable", "keepttl"}):
        if sub.name == "keepttl":
            opts["keepttl"] = not c.exactly(0, sub)
        elif sub.name == "disable":  # disable success|denial [ZONES...]
            if not sub.args or sub.args[0] not in ("success", "denial"):
                raise c.fail("disable takes success or denial, then zones", sub.line)
            opts[sub.args[0] + "_disabled"] = c.zones(sub.args[1:], sub.line) or zones
        elif sub.name in ("success", "denial"):
            if not 1 <= len(sub.args) <= 3:
                raise c.fail(f"{sub.name} takes CAPACITY [TTL [MINTTL]]", sub.line)
            opts[sub.name + "_cap"] = c.integer(sub.args[0], f"{sub.name} capacity", line=sub.line)
            if len(sub.args) > 1:
                opts[sub.name + "_ttl"] = c.integer(sub.args[1], f"{sub.name} TTL", line=sub.line)
            if len(sub.args) > 2:
                opts[sub.name + "_minttl"] = c.integer(sub.args[2], f"{sub.name} MINTTL", low=0, line=sub.line)
        elif sub.name == "prefetch":  # AMOUNT [[DURATION] [PERCENTAGE%]]
            if not 1 <= len(sub.args) <= 3:
                raise c.fail("prefetch takes AMOUNT [[DURATION] [PERCENTAGE%]]", sub.line)
            opts["prefetch"] = c.integer(sub.args[0], "prefetch amount", line=sub.line)
            for extra in sub.args[1:]:
                if extra.endswith("%"):
                    c.integer(extra[:-1], "prefetch percentage", low=0, high=100, line=sub.line)
                else:
                    c.seconds(extra, "prefetch duration", sub.line)
        else:  # serve_stale [DURATION] [immediate|verify]
            c.at_most(2, sub)
            opts["serve_stale_seconds"] = c.seconds(sub.args[0], "serve_stale", sub.line) if sub.args else 3600.0
            if len(sub.args) > 1 and sub.args[1] not in ("immediate", "verify"):
                raise c.fail(f"serve_stale refresh mode must be immediate or verify, got {sub.args[1]!r}", sub.line)
    return Cache(zones=zones, **opts)


def _kubernetes(c: _Checker, block_zones: tuple[str, ...]) -> KubernetesPlugin:
    opts: dict = dict(pods="disabled", ttl=5, fallthrough=None, endpoint_pod_names=False)  # the plugin's own
    ignored = {"kubeconfig", "namespaces", "labels", "noendpoints", "ignore", "apiserver", "endpoint", "tls"}
    for sub in c.options({"pods", "fallthrough", "ttl", "endpoint_pod_names"} | ignored):
        if sub.name == "pods":
            (mode,) = c.exactly(1, sub)
            if mode not in ("disabled", "insecure", "verified"):
                raise c.fail(f"pods must be disabled, insecure or verified, got {mode!r}", sub.line)
            opts["pods"] = mode
        elif sub.name == "ttl":
            opts["ttl"] = c.integer(c.exactly(1, sub)[0], "ttl", low=0, high=3600, line=sub.line)
        elif sub.name == "fallthrough":
            opts["fallthrough"] = c.zones(sub.args, sub.line)
        elif sub.name == "endpoint_pod_names":
            opts["endpoint_pod_names"] = not c.exactly(0, sub)
        elif sub.name == "ignore" and sub.args != ("empty_service",):
            raise c.fail("ignore takes empty_service", sub.line)
    return KubernetesPlugin(zones=c.zones(c.d.args) or block_zones, **opts)


def _hosts(c: _Checker, block_zones: tuple[str, ...]) -> Hosts:
    args, entries, opts = c.d.args, [], {}
    for sub in c.d.block:
        if sub.block:
            raise c.fail(f"{sub.name} takes no block", sub.line)
        if sub.name in ("ttl", "no_reverse", "reload", "fallthrough"):
            if sub.name == "ttl":
                opts["ttl"] = c.integer(c.exactly(1, sub)[0], "ttl", high=65535, line=sub.line)
            elif sub.name == "no_reverse":
                opts["reverse"] = bool(c.exactly(0, sub))
            elif sub.name == "reload":
                opts["reload_seconds"] = c.seconds(c.exactly(1, sub)[0], "reload", sub.line)
            else:
                opts["fallthrough"] = c.zones(sub.args, sub.line)
            continue
        try:  # an inline hosts-file line: IP NAME...
            ip = str(ipaddress.ip_address(sub.name))
        except ValueError:
            raise c.fail(f"unknown property {sub.name!r}", sub.line) from None
        if not sub.args:
            raise c.fail(f"inline entry for {ip} needs host names", sub.line)
        entries.append((ip, c.zones(sub.args, sub.line)))
    return Hosts(tuple(entries), args[0] if args else None, zones=c.zones(args[1:]) or block_zones, **opts)


def _reload(c: _Checker) -> Reload:
    args = c.at_most(2)
    interval = c.seconds(args[0], "interval") if args else 30.0
    jitter = c.seconds(args[1], "jitter") if len(args) > 1 else 15.0
    if interval < 2:
        raise c.fail(f"interval must be at least 2s, got {args[0]!r}")
    if jitter < 1:
        raise c.fail(f"jitter must be at least 1s, got {args[1]!r}")
    if jitter > interval / 2:
        raise c.fail("jitter must not be more than half the interval")
    return Reload(interval, jitter)


# Plugins whose directive takes no `{ }` block here.
_NO_BLOCK = PLUGINS - {"errors", "health", "kubernetes", "forward", "cache", "hosts", "log"}
_DEFAULT_ADDR = {"ready": (":8181", 8181), "prometheus": ("localhost:9153", 9153)}  # metrics: localhost


def server_config(block: ServerBlock) -> ServerConfig:
    values: dict = {}
    seen: set[str] = set()
    for d in block.directives:
        c, name = _Checker(block.source, d), d.name
        if name in seen and name not in REPEATABLE:
            raise CorefileError(block.source, d.line, f"plugin {name}: this plugin can only be used once per Server Block")
        seen.add(name)
        if name in _NO_BLOCK and d.block:
            raise c.fail("takes no block", d.block[0].line)
        if name == "errors":
            if c.at_most(1) and d.args[0] != "stdout":
                raise c.fail(f"errors are written to stdout only, got {d.args[0]!r}")
            list(c.options({"consolidate", "stacktrace"}))
            values[name] = True
        elif name == "health":
            addr = c.address(c.at_most(1)[0], 8080) if d.args else ":8080"
            lameduck = 0.0
            for sub in c.options({"lameduck"}):
                lameduck = c.seconds(c.exactly(1, sub)[0], "lameduck", sub.line)
            values[name] = Health(addr, lameduck)
        elif name in _DEFAULT_ADDR:
            default, port = _DEFAULT_ADDR[name]
            values[name] = c.address(c.at_most(1)[0], port) if d.args else default
        elif name == "kubernetes":
            values[name] = _kubernetes(c, block.zones)
        elif name == "forward":
            values[name] = _forward(c)
        elif name == "cache":
            values[name] = _cache(c, block.zones)
        elif name == "reload":
            values[name] = _reload(c)
        elif name == "hosts":
            values[name] = _hosts(c, block.zones)
        elif name == "log":  # log [NAMES...] [FORMAT] { class all|denial|error|success... }
            for sub in c.options({"class"}):
                if not sub.args or set(sub.args) - {"all", "denial", "error", "success"}:
                    raise c.fail(f"class must be all, denial, error or success, got {' '.join(sub.args)!r}", sub.line)
            values[name] = True
        elif name == "loadbalance":
            if c.at_most(1) and d.args[0] != "round_robin":
                raise c.fail(f"only round_robin is supported, got {d.args[0]!r}")
            values[name] = True
        elif name == "bind":
            if not d.args:
                raise c.fail("needs at least one address or interface")
            values[name] = values.get(name, ()) + d.args
        elif name == "cancel":
            values["cancel_seconds"] = c.seconds(c.at_most(1)[0], "timeout") if d.args else 5.0
        elif name == "bufsize":
            values[name] = c.integer(c.at_most(1)[0], "size", 512, 4096) if d.args else 1232
        else:  # loop, debug, whoami, any, minimal
            c.at_most(0)
            values[name] = True
    return ServerConfig(block.zones, block.port, block.line, **values)


def load(text: str, source: str = "Corefile") -> list[ServerConfig]:
    return [server_config(block) for block in parse(text, source).servers]


B = TypeVar("B")  # a server block, as the parser or the server holds it


def serving_block(blocks: Sequence[B], name: str, zones_of: Callable[[B], Iterable[str]]) -> B | None:
    """The server block CoreDNS hands a query for `name` to, among the blocks on one port: the one
    with the most specific zone holding the name (dnsserver walks the name's labels from the left
    and takes the first zone it finds). None: no block serves the name, the answer is REFUSED.
    The DNS server and the simulator both pick with this rule."""
    lname = name.lower()
    best, best_length = None, -1
    for block in blocks:
        for zone in zones_of(block):
            if len(zone) > best_length and in_zone(lname, zone.lower()):
                best, best_length = block, len(zone)
    return best


@dataclass(frozen=True)
class ClusterServer:
    """The server blocks of the cluster's DNS pods on the port pods query (53, the kube-dns
    Service's targetPort), in Corefile order."""

    blocks: tuple[ServerConfig, ...]

    def block_for(self, name: str) -> ServerConfig | None:
        return serving_block(self.blocks, name, lambda b: b.zones)


def cluster_server(text: str, source: str = "Corefile") -> ClusterServer | None:
    """The server blocks of `text` that pods reach; None without any server block (nothing
    listens). Raises CorefileError where the server would refuse to start."""
    configs = load(text, source)
    if not configs:
        return None
    return ClusterServer(tuple(c for c in configs if c.port == DNS_PORT))
