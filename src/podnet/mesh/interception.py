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

import zlib

from podnet.semantics.meshcapture import (  # noqa: F401  (the capture's reading of the annotations)
    ANNOTATION, INBOUND_PASSTHROUGH_SOURCE, INBOUND_PORT, NEVER_CAPTURED_INBOUND, OUTBOUND_PORT, PROXY_GID, PROXY_UID,
    STATUS_PORT, TUNNEL_PORT, Interception, InterceptionError, interception_of)

TABLE = "podnet-mesh"
# Each pod's proxy runs as a uid of its own in group 1337 (the capture lets that group's traffic
# through, as Istio's rules do): the kernel limits inotify instances per user (128 by default,
# each Envoy holds one per watched file), which would cap a host at ~20 proxies sharing uid 1337.
PROXY_UID_BASE = 1_337_000_000


def proxy_uid(key: str) -> int:
    """The uid of the proxy of `key` (cluster/namespace/pod): stable, and apart from the others."""
    return PROXY_UID_BASE + zlib.crc32(key.encode()) % 100_000_000


def _set(values) -> str:
    return "{ " + ", ".join(str(v) for v in values) + " }"


def _intervals(ranges) -> str:
    """Port ranges as an nft set of intervals, those that overlap or touch merged (nft refuses a
    set whose intervals overlap); a range of one is the port."""
    merged: list[list[int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return _set(f"{first}-{last}" if last > first else first for first, last in merged)


def ruleset(capture: Interception) -> str:
    """The nft script that puts `capture` in place in a pod's namespace: the old table (if any)
    removed and the new one added in one transaction."""
    inbound = [f"tcp dport {TUNNEL_PORT} return"]
    if capture.skip_inbound:
        inbound.append(f"tcp dport {_intervals(capture.skip_inbound)} return")
    if capture.include_inbound is None:
        excluded = sorted({*NEVER_CAPTURED_INBOUND, capture.status_port, *capture.exclude_inbound})
        inbound += [f"tcp dport {_set(excluded)} return", f"meta l4proto tcp redirect to :{INBOUND_PORT}"]
    elif capture.include_inbound:
        inbound += [f"tcp dport {_set(sorted(capture.include_inbound))} redirect to :{INBOUND_PORT}"]
    outbound = []
    if capture.exclude_outbound_ports:
        outbound.append(f"tcp dport {_set(sorted(capture.exclude_outbound_ports))} return")
    if capture.skip_outbound:
        outbound.append(f"tcp dport {_intervals(capture.skip_outbound)} return")
    outbound += [
        f'oifname "lo" ip saddr {INBOUND_PASSTHROUGH_SOURCE} return',
        f'oifname "lo" ip daddr != 127.0.0.1 meta skuid {PROXY_UID} tcp dport != {TUNNEL_PORT} redirect to :{INBOUND_PORT}',
        # (each pod's proxy runs as a uid of its own in group 1337: not the proxy only when neither says so)
        f'oifname "lo" meta skuid != {PROXY_UID} meta skgid != {PROXY_GID} return',
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
