"""A meshed pod's traffic capture: the nft table that sends its TCP through its proxy.

Istio's conventions, as istio-iptables lays them out in REDIRECT mode, in one nft table per pod
network namespace, loaded in one transaction (the old table, if any, replaced with it):

- inbound: every TCP connection to the pod goes to the proxy's inbound port 15006, except the
  ports that are never captured (15008, the HBONE tunnel; 15090, Envoy's metrics; 15021, the
  proxy's health; 15020, the agent's status port, which kubelet's rewritten probes reach in
  plaintext) and those the pod excludes (`traffic.sidecar.istio.io/excludeInboundPorts`), or
  only the ports it includes (`includeInboundPorts`, `*` by default);
- outbound: every TCP connection the pod opens goes to the proxy's outbound port 15001, except
  the proxy's own (uid 1337: the proxy connects where it was asked to), the app's to itself
  over loopback, 127.0.0.1, the ports and address ranges the pod excludes
  (`excludeOutboundPorts`, `excludeOutboundIPRanges`), or only those it includes
  (`includeOutboundIPRanges`, `*` by default; `includeOutboundPorts`); the proxy's connection to
  its own pod address (a Service that resolved to itself) goes through inbound;
- UDP and everything else are not captured.

The proxy finds where a connection was going with SO_ORIGINAL_DST (a redirect keeps it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

PROXY_UID = PROXY_GID = 1337
OUTBOUND_PORT, INBOUND_PORT = 15001, 15006
TUNNEL_PORT, STATUS_PORT = 15008, 15020
NEVER_CAPTURED_INBOUND = (15090, 15021)  # Envoy's metrics, the proxy's health (with the status port)
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"  # what the proxy connects to the app from
TABLE = "podnet-mesh"
ANNOTATION = "traffic.sidecar.istio.io/"


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
    )


def _items(annotations: Mapping[str, str], name: str) -> list[str]:
    text = annotations.get(ANNOTATION + name, "")
    return [item.strip() for item in text.split(",") if item.strip() and item.strip() != "*"]


def _set(values) -> str:
    return "{ " + ", ".join(str(v) for v in values) + " }"


def ruleset(capture: Interception) -> str:
    """The nft script that puts `capture` in place in a pod's namespace: the old table (if any)
    removed and the new one added in one transaction."""
    inbound = [f"tcp dport {TUNNEL_PORT} return"]
    if capture.include_inbound is None:
        excluded = sorted({*NEVER_CAPTURED_INBOUND, capture.status_port, *capture.exclude_inbound})
        inbound += [f"tcp dport {_set(excluded)} return", f"meta l4proto tcp redirect to :{INBOUND_PORT}"]
    elif capture.include_inbound:
        inbound += [f"tcp dport {_set(sorted(capture.include_inbound))} redirect to :{INBOUND_PORT}"]
    outbound = []
    if capture.exclude_outbound_ports:
        outbound.append(f"tcp dport {_set(sorted(capture.exclude_outbound_ports))} return")
    outbound += [
        f'oifname "lo" ip saddr {INBOUND_PASSTHROUGH_SOURCE} return',
        f'oifname "lo" ip daddr != 127.0.0.1 meta skuid {PROXY_UID} tcp dport != {TUNNEL_PORT} redirect to :{INBOUND_PORT}',
        f'oifname "lo" meta skuid != {PROXY_UID} return',
        f"meta skuid {PROXY_UID} return",
        f'oifname "lo" ip daddr != 127.0.0.1 meta skgid {PROXY_GID} tcp dport != {TUNNEL_PORT} redirect to :{INBOUND_PORT}',
        f'oifname "lo" meta skgid != {PROXY_GID} return',
        f"meta skgid {PROXY_GID} return",
        "ip daddr 127.0.0.1 return",
    ]
    if capture.exclude_outbound_ranges:
        outbound.append(f"ip daddr {_set(capture.exclude_outbound_ranges)} return")
    if capture.include_outbound_ports:
        outbound.append(f"tcp dport {_set(sorted(capture.include_outbound_ports))} redirect to :{OUTBOUND_PORT}")
    if capture.include_outbound_ranges is None:
        outbound.append(f"meta l4proto tcp redirect to :{OUTBOUND_PORT}")
    elif capture.include_outbound_ranges:
        outbound.append(f"ip daddr {_set(capture.include_outbound_ranges)} meta l4proto tcp redirect to :{OUTBOUND_PORT}")
    lines = [f"table ip {TABLE}", f"delete table ip {TABLE}", f"table ip {TABLE} {{",
             "  chain inbound {", "    type nat hook prerouting priority dstnat; policy accept;",
             "    meta l4proto != tcp return", *(f"    {rule}" for rule in inbound), "  }",
             "  chain outbound {", "    type nat hook output priority -100; policy accept;",
             "    meta l4proto != tcp return", *(f"    {rule}" for rule in outbound), "  }", "}"]
    return "\n".join(lines) + "\n"
