"""Which of a meshed pod's connections its capture sends through its proxy, from the pod's
annotations (Istio's `traffic.sidecar.istio.io/*`, Linkerd's `config.linkerd.io/skip-*-ports`):
the one reading of them, which the capture's nft table (mesh/interception.py renders it) and
the simulator's `trace` both follow."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

PROXY_UID = PROXY_GID = 1337
OUTBOUND_PORT, INBOUND_PORT = 15001, 15006
TUNNEL_PORT, STATUS_PORT = 15008, 15020
NEVER_CAPTURED_INBOUND = (15090, 15021)  # Envoy's metrics, the proxy's health (with the status port)
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"  # what the proxy connects to the app from
ANNOTATION = "traffic.sidecar.istio.io/"
LINKERD_SKIP_INBOUND = "config.linkerd.io/skip-inbound-ports"  # never through the proxy (Linkerd's)
LINKERD_SKIP_OUTBOUND = "config.linkerd.io/skip-outbound-ports"


class InterceptionError(ValueError):
    pass


@dataclass(frozen=True)
class Interception:
    include_inbound: tuple[int, ...] | None = None  # None: every port ("*")
    exclude_inbound: tuple[int, ...] = ()
    include_outbound_ranges: tuple[str, ...] | None = None  # None: every address ("*")
    exclude_outbound_ranges: tuple[str, ...] = ()
    include_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    status_port: int = STATUS_PORT
    # Linkerd's skip-inbound-ports / skip-outbound-ports, as inclusive ranges (never through the proxy)
    skip_inbound: tuple[tuple[int, int], ...] = ()
    skip_outbound: tuple[tuple[int, int], ...] = ()


def interception_of(annotations: Mapping[str, str] | None) -> Interception:
    """A pod's capture as its annotations ask for it; InterceptionError names a bad one."""
    annotations = annotations or {}

    def ports(name: str) -> tuple[int, ...]:
        values = _items(annotations, name)
        try:
            found = tuple(int(v) for v in values)
        except ValueError:
            found = ()
        if len(found) != len(values) or any(not 0 < p < 65536 for p in found):
            raise InterceptionError(f"annotation {ANNOTATION}{name}: {annotations[ANNOTATION + name]!r} is not a "
                                    "comma-separated list of ports")
        return found

    def ranges(name: str) -> tuple[str, ...]:
        values = _items(annotations, name)
        try:
            networks = tuple(ipaddress.ip_network(v, strict=False) for v in values)
        except ValueError:
            networks = None
        if networks is None or any(n.version != 4 for n in networks):  # (podnet's pods are IPv4 only)
            raise InterceptionError(f"annotation {ANNOTATION}{name}: {annotations[ANNOTATION + name]!r} is not a "
                                    "comma-separated list of IPv4 CIDRs")
        return tuple(str(n) for n in networks)

    include_inbound = annotations.get(ANNOTATION + "includeInboundPorts", "*").strip()
    include_ranges = annotations.get(ANNOTATION + "includeOutboundIPRanges", "*").strip()
    status = annotations.get("status.sidecar.istio.io/port", str(STATUS_PORT))
    if not status.isdigit() or not 0 < int(status) < 65536:
        raise InterceptionError(f"annotation status.sidecar.istio.io/port: {status!r} is not a port")
    return Interception(
        include_inbound=None if include_inbound == "*" else ports("includeInboundPorts"),
        exclude_inbound=ports("excludeInboundPorts"),
        include_outbound_ranges=None if include_ranges == "*" else ranges("includeOutboundIPRanges"),
        exclude_outbound_ranges=ranges("excludeOutboundIPRanges"),
        include_outbound_ports=ports("includeOutboundPorts"),
        exclude_outbound_ports=ports("excludeOutboundPorts"),
        status_port=int(status),
        skip_inbound=skipped_inbound(annotations),
        skip_outbound=port_ranges(annotations.get(LINKERD_SKIP_OUTBOUND, "")),
    )


def within(port: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    """Whether `port` is in one of the inclusive ranges (port_ranges)."""
    return any(first <= port <= last for first, last in ranges)


def skipped_inbound(annotations: Mapping[str, str] | None) -> tuple[tuple[int, int], ...]:
    """The ports Linkerd's skip-inbound-ports keeps from the pod's proxy."""
    return port_ranges((annotations or {}).get(LINKERD_SKIP_INBOUND, ""))


def port_ranges(text: str, names: Mapping[str, int] | None = None) -> tuple[tuple[int, int], ...]:
    """Linkerd's port lists ("25,587,4000-4100", and on a pod its container ports' names) as
    inclusive ranges; an item that is none of these is left out, as Linkerd warns and goes on."""
    out = []
    for item in (i.strip() for i in (text or "").split(",")):
        if re.fullmatch(r"\d+(-\d+)?", item):
            low, _, high = item.partition("-")
            first, last = int(low), int(high or low)
            if 0 < first <= last < 65536:
                out.append((first, last))
        elif names and item in names:
            out.append((names[item], names[item]))
    return tuple(out)


def _items(annotations: Mapping[str, str], name: str) -> list[str]:
    text = annotations.get(ANNOTATION + name, "")
    return [item.strip() for item in text.split(",") if item.strip() and item.strip() != "*"]


def captures_outbound(capture: Interception, address: str, port: int) -> bool:
    """Whether the app's TCP connection to address:port goes to the proxy's outbound port (the
    order of mesh/interception.py's rules: excluded ports, loopback, excluded ranges, then
    included ports, then included ranges)."""
    if port in capture.exclude_outbound_ports or within(port, capture.skip_outbound) or address == "127.0.0.1":
        return False
    target = ipaddress.ip_address(address)
    if any(target in ipaddress.ip_network(r) for r in capture.exclude_outbound_ranges):
        return False
    if port in capture.include_outbound_ports or capture.include_outbound_ranges is None:
        return True
    return any(target in ipaddress.ip_network(r) for r in capture.include_outbound_ranges)


def captures_inbound(capture: Interception, port: int) -> bool:
    """Whether a TCP connection arriving for the pod's `port` goes to the proxy's inbound port."""
    if port == TUNNEL_PORT or within(port, capture.skip_inbound):
        return False
    if capture.include_inbound is None:
        return port not in {*NEVER_CAPTURED_INBOUND, capture.status_port, *capture.exclude_inbound}
    return port in capture.include_inbound
