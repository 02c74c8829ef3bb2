"""The HTTP request `curl URL -H 'Name: value' --resolve HOST:PORT:ADDR` sends, for `podnet trace`.

Users reach an ingress controller the way its documentation tells them to: `curl -H 'Host: h'
http://LB-IP/` or `curl --resolve h:80:LB-IP http://h/`. `trace` takes the same options, so
what it follows is the request as sent. The two options mean different things, as in curl:

- `--resolve` decides where the connection goes (no DNS query for that host and port); the
  Host header and the TLS server name (SNI) stay the URL's host;
- `-H 'Host: h'` changes only the header nginx routes by; the connection still goes to the
  URL's host and SNI stays the URL's host (none at all when that host is an address).

curl's syntax, from its manual and lib/hostip.c / lib/http.c:

- `-H 'Name: value'` adds a header; `-H 'Name;'` sends it empty; `-H 'Name:'` removes one curl
  would send by itself (`-H 'Host:'` sends no Host at all). A line with neither `:` nor `;`
  is not a header (curl sends nothing for it; podnet says so instead).
- `--resolve [+]HOST:PORT:ADDR[,ADDR]...`: HOST `*` matches any host (curl 7.64.0); an entry
  for the host itself wins over `*`; for the same HOST:PORT the last one given wins;
  `-HOST:PORT` drops an earlier entry. Of several addresses curl connects to the first that
  answers; the trace follows the first. podnet's clusters are IPv4, so ADDR is IPv4.
- The Host header curl sends is the URL's host, with `:PORT` only when the port is not the
  scheme's default. SNI is the URL's host unless that is an IP address (then none is sent).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any
from urllib.parse import urlsplit

from podnet.errors import UsageError

METHOD = "GET"
DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 9110 token characters: what a header name may be made of
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_HOST = re.compile(r"\*|[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?")


@dataclass(frozen=True)
class Header:
    name: str
    value: str
    given: bool  # given with -H (False: one curl sends by itself)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value}


@dataclass(frozen=True)
class ResolveEntry:
    """One --resolve HOST:PORT:ADDR[,ADDR]... as given."""

    host: str  # lower case; "*" for any host
    port: int
    addresses: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class HttpRequest:
    url: str
    scheme: str
    host: str  # the URL's host, lower case (a name or an IPv4 address)
    port: int  # the port connected to: the URL's, or the scheme's default
    target: str  # path and query as sent on the request line
    headers: tuple[Header, ...]  # in the order sent; Host first
    resolved_by: ResolveEntry | None  # the --resolve entry that decides the address, if any

    @property
    def host_is_address(self) -> bool:
        return bool(_IPV4.fullmatch(self.host))

    @property
    def sni(self) -> str | None:
        """The TLS server name curl sends: the URL's host, never the Host header."""
        return None if self.scheme != "https" or self.host_is_address else self.host

    def host_headers(self) -> list[str]:
        return [h.value for h in self.headers if h.name.lower() == "host"]

    @property
    def host_header(self) -> str | None:
        hosts = self.host_headers()
        return hosts[0] if hosts else None

    @property
    def host_given(self) -> bool:
        return any(h.given for h in self.headers if h.name.lower() == "host")

    def describe(self) -> str:
        hosts = self.host_headers()
        host = ("no Host header (-H 'Host:' removed it)" if not hosts else
                ", ".join(f"Host: {h}" for h in hosts) + (" (-H)" if self.host_given else ""))
        others = [f"{h.name}: {h.value}" for h in self.headers if h.name.lower() != "host"]
        return f"{METHOD} {self.url}, {host}" + (f", {', '.join(others)}" if others else "")

    def to_json(self, address: str | None, resolved: str) -> dict[str, Any]:
        return {"method": METHOD, "url": self.url, "host": self.host_header,
                "headers": [h.to_json() for h in self.headers], "sni": self.sni,
                "address": address, "port": self.port, "resolved_by": resolved}


def http_request(url: str, headers: list[str] | tuple[str, ...] = (),
                 resolve: list[str] | tuple[str, ...] = ()) -> HttpRequest:
    """The request curl sends for `curl URL -H ... --resolve ...`; a UsageError names the bad option."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UsageError(f"DST {url}: only http:// and https:// URLs")
    try:
        explicit_port = parts.port
    except ValueError:
        raise UsageError(f"DST {url}: the port is not a number between 0 and 65535") from None
    host = parts.hostname or ""
    if not host:
        raise UsageError(f"DST {url}: the URL has no host")
    if host.startswith("[") or ":" in host:
        raise UsageError(f"DST {url}: podnet's clusters are IPv4 only")
    if _IPV4.fullmatch(host):
        _ipv4(host, f"DST {url}")
    port = explicit_port or DEFAULT_PORTS[scheme]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_host = host + (f":{explicit_port}" if explicit_port and explicit_port != DEFAULT_PORTS[scheme] else "")
    sent = [Header("Host", default_host, False)]
    for text in headers:
        sent = _apply_header(sent, text)
    entries = [_resolve_entry(text) for text in resolve]
    return HttpRequest(url, scheme, host, port, target, tuple(sent), _resolve_for(entries, host, port))


def _apply_header(sent: list[Header], text: str) -> list[Header]:
    """curl's -H: `Name: value` replaces curl's own header of that name or adds one; `Name:`
    removes curl's own; `Name;` sends the header empty."""
    option = f"-H {text!r}"
    if text.startswith("@"):
        raise UsageError(f"{option}: headers from a file are not read; give each as -H 'Name: value'")
    colon, semicolon = text.find(":"), text.find(";")
    if colon < 0 and semicolon < 0:
        raise UsageError(f"{option}: not a header; write -H 'Name: value' (-H 'Name:' removes one curl "
                         "sends itself, -H 'Name;' sends it empty)")
    if colon >= 0 and (semicolon < 0 or colon < semicolon):
        name, value, empty = text[:colon], text[colon + 1:].strip(), False
        removal = value == ""
    else:
        name, rest = text[:semicolon], text[semicolon + 1:]
        if rest.strip():
            raise UsageError(f"{option}: `Name;` sends an empty header and takes nothing after the ';'")
        value, empty, removal = "", True, False
    if not _TOKEN.fullmatch(name):
        raise UsageError(f"{option}: {name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~, "
                         "no spaces)")
    if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7f for c in value):
        raise UsageError(f"{option}: the value has control characters")
    kept = [h for h in sent if h.given or h.name.lower() != name.lower()]  # a given header replaces curl's own
    if removal:
        return kept
    return kept + [Header(name, value if not empty else "", True)]


def _resolve_entry(text: str) -> ResolveEntry:
    option = f"--resolve {text!r}"
    syntax = "write HOST:PORT:ADDR[,ADDR]... (HOST may be *), as curl takes it"
    body = text[1:] if text.startswith(("+", "-")) else text
    if text.startswith("-"):
        host, _, port = body.partition(":")
        if not host or not port or ":" in port:
            raise UsageError(f"{option}: a removal is -HOST:PORT")
        return ResolveEntry(_resolve_host(host, option), _resolve_port(port, option), (), text)
    fields = body.split(":", 2)
    if len(fields) != 3 or not all(fields):
        raise UsageError(f"{option}: {syntax}")
    host, port, addresses = fields
    parsed = tuple(_ipv4(a.strip().strip("[]"), option) for a in addresses.split(","))
    return ResolveEntry(_resolve_host(host, option), _resolve_port(port, option), parsed, text)


def _resolve_host(host: str, option: str) -> str:
    if not _HOST.fullmatch(host):
        raise UsageError(f"{option}: {host!r} is not a host name (or * for any host)")
    return host.lower()


def _resolve_port(port: str, option: str) -> int:
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"{option}: port {port!r} is not a number between 0 and 65535")
    return int(port)


def _ipv4(text: str, option: str) -> str:
    try:
        return str(IPv4Address(text))
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not an IPv4 address (podnet's clusters are IPv4 only)") from None


def _resolve_for(entries: list[ResolveEntry], host: str, port: int) -> ResolveEntry | None:
    """curl's DNS cache after loading --resolve: the last entry for HOST:PORT (a removal clears
    it), else the last for *:PORT."""
    cache: dict[tuple[str, int], ResolveEntry | None] = {}
    for entry in entries:
        cache[(entry.host, entry.port)] = entry if entry.addresses else None
    return cache.get((host, port)) or cache.get(("*", port))
