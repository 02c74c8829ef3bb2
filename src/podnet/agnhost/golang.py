"""The bits of Go's standard library whose *output* agnhost users see, reproduced exactly.

agnhost is a Go program; tests and people read its log lines, its error strings and its JSON.
So the log prefix, time.Duration parsing and printing, time.Time's %v, error texts
("dial tcp 10.0.0.1:80: connect: connection refused"), json.Marshal's escaping and key order
and url.ParseQuery's rules live here, once. Only cheap modules are imported: this is on the
start-up path of every agnhost container (300 pods start at once).
"""

from __future__ import annotations

import errno as _errno
import os
import signal
import socket
import time

_START_NS = time.monotonic_ns()

# Where the servers bind. A container binds to every address of its network namespace (""),
# which inside a pod is the pod's own interfaces. Tests set 127.0.0.1 so nothing listens on
# the host's interfaces.
BIND_ENV = "PODNET_AGNHOST_BIND_ADDRESS"


def bind_address() -> str:
    return os.environ.get(BIND_ENV, "")


# ---------------------------------------------------------------------------------------------
# log: "2006/01/02 15:04:05 message" on stderr, one write per line (threads must not interleave).

def log(msg: str) -> None:
    line = time.strftime("%Y/%m/%d %H:%M:%S ", time.localtime()) + msg
    if not line.endswith("\n"):
        line += "\n"
    data = line.encode("utf-8", "surrogateescape")
    try:
        while data:
            data = data[os.write(2, data):]
    except OSError:
        pass


def fatal(msg: str, code: int = 1) -> None:
    """log.Fatal: log, then exit at once with status 1 (no cleanup, as Go's os.Exit)."""
    log(msg)
    os._exit(code)


def stdout(text: str) -> None:
    """fmt.Print to stdout, unbuffered (podnet captures it; os._exit would lose a buffer)."""
    data = text.encode("utf-8", "surrogateescape")
    try:
        while data:
            data = data[os.write(1, data):]
    except OSError:
        pass


def stderr(text: str) -> None:
    data = text.encode("utf-8", "surrogateescape")
    try:
        while data:
            data = data[os.write(2, data):]
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# time

def now_string() -> str:
    """time.Now() printed with %v: "2024-05-01 12:00:00.123456789 +0000 UTC m=+0.004211037"."""
    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    tm = time.localtime(secs)
    text = time.strftime("%Y-%m-%d %H:%M:%S", tm)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    off = tm.tm_gmtoff or 0
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    zone = tm.tm_zone or ""
    text += f" {sign}{off // 3600:02d}{off % 3600 // 60:02d} {zone}"
    mono = time.monotonic_ns() - _START_NS
    return text + f" m=+{mono // 1_000_000_000}.{mono % 1_000_000_000:09d}"


_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
          "m": 60_000_000_000, "h": 3_600_000_000_000}


class GoError(Exception):
    """An error whose str() is exactly the text Go would print."""


def parse_duration(text: str) -> int:
    """time.ParseDuration, in nanoseconds. Raises GoError with Go's message."""
    orig, s = text, text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise GoError(f'time: invalid duration "{orig}"')
    exact = 0
    while s:
        i = 0
        while i < len(s) and s[i].isdigit():
            i += 1
        whole, s = s[:i], s[i:]
        frac = ""
        if s.startswith("."):
            j = 1
            while j < len(s) and s[j].isdigit():
                j += 1
            frac, s = s[1:j], s[j:]
            if not whole and not frac:
                raise GoError(f'time: invalid duration "{orig}"')
        elif not whole:
            raise GoError(f'time: invalid duration "{orig}"')
        j = 0
        while j < len(s) and s[j] != "." and not s[j].isdigit():
            j += 1
        unit, s = s[:j], s[j:]
        if not unit:
            raise GoError(f'time: missing unit in duration "{orig}"')
        if unit not in _UNITS:
            raise GoError(f'time: unknown unit "{unit}" in duration "{orig}"')
        scale = _UNITS[unit]
        exact += int(whole or "0") * scale
        if frac:
            exact += int(int(frac) * scale / 10 ** len(frac))
        if exact > (1 << 63) - 1:
            raise GoError(f'time: invalid duration "{orig}"')
    return -exact if neg else exact


def format_duration(ns: int) -> str:
    """time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)

    def frac(v: int, prec: int) -> str:
        whole, rest = divmod(v, 10 ** prec)
        digits = f"{rest:0{prec}d}".rstrip("0")
        return f"{whole}.{digits}" if digits else str(whole)

    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{frac(u, 3)}µs"
        return f"{sign}{frac(u, 6)}ms"
    secs = u // 1_000_000_000
    text = frac(u % 60_000_000_000, 9) + "s"
    minutes = secs // 60
    if minutes:
        text = f"{minutes % 60}m" + text
        if minutes // 60:
            text = f"{minutes // 60}h" + text
    return sign + text


# ---------------------------------------------------------------------------------------------
# errors and addresses

def errno_text(err: BaseException) -> str:
    """syscall.Errno.Error(): "connection refused", "no route to host" … (glibc's text, lower-cased
    first letter, which is how Go's table reads)."""
    if isinstance(err, OSError) and err.errno:
        text = os.strerror(err.errno)
    else:
        text = str(err)
    return text[:1].lower() + text[1:] if text else text


def is_timeout(err: BaseException) -> bool:
    return isinstance(err, TimeoutError) or (isinstance(err, OSError) and err.errno in (
        _errno.ETIMEDOUT, _errno.EAGAIN))


def unmap(ip: str) -> str:
    """Go prints an IPv4 peer of a dual-stack socket as plain IPv4."""
    if ip.startswith("::ffff:") and "." in ip:
        return ip[7:]
    return ip


def join_host_port(host: str, port: int | str) -> str:
    """net.JoinHostPort."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def addr_string(sockaddr) -> str:
    """A socket address as Go's net.Addr.String() prints it: "10.0.0.1:80", "[::1]:80"."""
    if not sockaddr:
        return ""
    return join_host_port(unmap(sockaddr[0]), sockaddr[1])


def split_host_port(hostport: str) -> tuple[str, str]:
    """net.SplitHostPort, with Go's error texts."""
    def err(why: str) -> GoError:
        return GoError(f"address {hostport}: {why}")

    i = hostport.rfind(":")
    if i < 0:
        raise err("missing port in address")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise err("missing ']' in address")
        if end + 1 == len(hostport):
            raise err("missing port in address")
        if end + 1 != i:
            if hostport[end + 1] == ":":
                raise err("too many colons in address")
            raise err("missing port in address")
        host = hostport[1:end]
        if "[" in hostport[1:] or "]" in hostport[end + 1:]:
            raise err("unexpected '[' in address")
    else:
        host = hostport[:i]
        if ":" in host:
            raise err("too many colons in address")
        if "[" in hostport or "]" in hostport:
            raise err("unexpected '[' in address" if "[" in hostport else "unexpected ']' in address")
    return host, hostport[i + 1:]


def _is_ip(host: str) -> int:
    """socket family of an IP literal, or 0."""
    base = host.split("%", 1)[0]
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, base)
            return family
        except OSError:
            continue
    return 0


def _nameserver() -> str:
    try:
        with open("/etc/resolv.conf") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return join_host_port(parts[1], 53)
    except OSError:
        pass
    return ""


def resolve(network: str, host: str, port: str) -> tuple[int, str, int]:
    """net.Resolve{TCP,UDP}Addr: (family, ip, port). An IP literal is used as given; a name is
    looked up (first IPv4 address, as Go prefers). Raises GoError with Go's message."""
    p = port
    digits = p[1:] if p[:1] in "+-" else p
    if p == "":
        num = 0
    elif digits.isdigit() and digits.isascii():
        num = int(p)
        if num < 0 or num > 65535:
            raise GoError(f"address {port}: invalid port")
    else:
        try:
            num = socket.getservbyname(p, "udp" if network.startswith("udp") else "tcp")
        except OSError:
            raise GoError(f"lookup {network}/{p}: unknown port") from None
    if host == "":
        return 0, "", num
    family = _is_ip(host)
    if family:
        return family, host, num
    try:
        infos = socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)
    except socket.gaierror:
        ns = _nameserver()
        raise GoError(f"lookup {host}" + (f" on {ns}" if ns else "") + ": no such host") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr[0], num


# ---------------------------------------------------------------------------------------------
# encoding/json.Marshal for strings, lists and maps of them (sorted keys, HTML-safe escaping)

_JSON_ESC = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f",
             "<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _json_str(s: str) -> str:
    out = ['"']
    for ch in s:
        esc = _JSON_ESC.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":  # an undecodable byte (surrogateescape): Go writes U+FFFD
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def json_marshal(value) -> str:
    if isinstance(value, str):
        return _json_str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ",".join(_json_str(k) + ":" + json_marshal(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_marshal(v) for v in value) + "]"
    raise TypeError(f"cannot marshal {type(value).__name__}")


def go_quote(s: str) -> str:
    """strconv.Quote / %q, for the printable-ASCII-and-UTF-8 strings agnhost quotes."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch < " " or ch == "\x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def format_map(m: dict[str, str]) -> str:
    """fmt's %v of a map[string]string: map[k1:v1 k2:v2] (sorted)."""
    return "map[" + " ".join(f"{k}:{m[k]}" for k in sorted(m)) + "]"


# ---------------------------------------------------------------------------------------------
# net/url

_HEX = "0123456789abcdefABCDEF"


def unescape(s: str, query: bool = True) -> str:
    """url.QueryUnescape (query=True: '+' is a space) / url.PathUnescape. Raises GoError."""
    if "%" not in s and not (query and "+" in s):
        return s
    out = bytearray()
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch == "%":
            esc = s[i:i + 3]
            if len(esc) < 3 or esc[1] not in _HEX or esc[2] not in _HEX:
                raise GoError(f'invalid URL escape {go_quote(esc)}')
            out.append(int(esc[1:], 16))
            i += 3
            continue
        if ch == "+" and query:
            out.append(0x20)
        else:
            out += ch.encode("utf-8", "surrogateescape")
        i += 1
    return out.decode("utf-8", "surrogateescape")


def parse_query(raw: str) -> dict[str, list[str]]:
    """url.ParseQuery: '&'-separated; pairs with ';' or bad escapes are dropped (Go returns the
    first error and keeps the rest, and every caller here ignores the error)."""
    values: dict[str, list[str]] = {}
    for part in raw.split("&"):
        if not part or ";" in part:
            continue
        key, _, value = part.partition("=")
        try:
            key, value = unescape(key), unescape(value)
        except GoError:
            continue
        values.setdefault(key, []).append(value)
    return values


_PATH_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~$&+,/:;=@")


def escape_path(path: str) -> str:
    """url.URL.EscapedPath for a path Go built itself."""
    out = []
    for b in path.encode("utf-8", "surrogateescape"):
        out.append(chr(b) if b in _PATH_SAFE else f"%{b:02X}")
    return "".join(out)


def clean_path(p: str) -> str:
    """path.Clean."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    parts: list[str] = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(seg)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


# ---------------------------------------------------------------------------------------------
# signals: a Go program either handles a signal (signal.Notify) or dies of it

def signal_pipe(*signums: int) -> int:
    """Deliver the given signals to a pipe; returns its read end for next_signal.

    The kernel may deliver a process signal to any thread, and only the main thread runs
    Python's handlers, so a main thread blocked in a read would never hear of a signal a server
    thread took. The wakeup fd is written by the C-level handler in whichever thread caught it."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    for signum in signums:
        signal.signal(signum, _ignore)
    return r


def _ignore(signum, frame) -> None:
    pass


def next_signal(fd: int) -> int:
    return os.read(fd, 1)[0]


def die_on_sigint() -> None:
    """Go's default: SIGINT ends the process (Python would raise KeyboardInterrupt instead)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hostname() -> str:
    return socket.gethostname()
