"""kube-proxy's old `userspace` mode: a listener per service port, and nftables only to steer.

For every ServicePort with endpoints, a listener in the node's namespace (0.0.0.0, a port the
kernel picks) accepts the traffic and forwards it itself: TCP connections are spliced both ways
to an endpoint, UDP datagrams go through per-client sessions that end after UDP_IDLE seconds
without traffic. SCTP is not proxied, as the userspace proxy never did it. The table
`ip podnet-userspace` only redirects the frontends (ClusterIP, externalIPs and LoadBalancer
IPs, NodePorts on the node's own addresses) to the listeners' ports, rejects the
frontends of Services without endpoints (drops them when only a Local traffic policy leaves
this node none), as kube-proxy does, and drops sources outside a Service's
loadBalancerSourceRanges before the redirect (nftables mode's firewall chains). It is replaced as a whole, in one `nft -f`, every sync.

ClusterIP traffic and external traffic (NodePort, external IPs) have a listener each, so each
uses its own endpoint list (`internal_endpoints`, `external_endpoints`). An endpoint is chosen
at random; with sessionAffinity a client IP keeps its endpoint while that is still an endpoint
and its last connection is younger than the timeout. A failed connect tries another endpoint
(up to len(CONNECT_TIMEOUTS) of them, with those timeouts), then gives the client up.

A UDP reply leaves the listener from the address its client's datagram arrived at (IP_PKTINFO
both ways), so conntrack can undo the redirect: a pod's datagram arrives at the bridge's address,
which the kernel would pick as the source anyway, but the node's own datagram to a ClusterIP is
redirected to 127.0.0.1, and a reply from the node's LAN address would reach the client's
connected socket from an address it never sent to (dropped: no answer).

Forwarding runs in one asyncio loop on a background thread; `sync()` and `cleanup()` may be
called from any other thread. Sockets are created in the node's namespace by a short-lived
thread (`socket_in_netns`) and keep it, so the loop thread never changes namespace.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import threading
import time
from dataclasses import dataclass

from podnet.host.netns import socket_in_netns
from podnet.proxy.canary import Watched
from podnet.proxy.loader import Runner, in_netns, run_command
from podnet.proxy.model import Endpoint, ServicePort
from podnet.proxy.nftables import firewall

log = logging.getLogger("podnet.proxy")
USERSPACE_TABLE = "podnet-userspace"  # the nft table of the redirects to the proxy
TABLE = f"ip {USERSPACE_TABLE}"
KINDS = ("internal", "external")  # ClusterIP traffic; NodePort and external-IP traffic
CONNECT_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)  # the userspace proxy's: one per endpoint tried
UDP_IDLE = 30.0  # seconds a UDP session lives without traffic
BUFFER = 65536
IP_PKTINFO = 8  # linux/in.h; Python 3.11's socket module has only IPV6_PKTINFO
_PKTINFO = struct.Struct("=i4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
NO_ENDPOINT = {"service-ips": "no-endpoint-services", "service-nodeports": "no-endpoint-nodeports"}
MAPS = {"service-ips": "ipv4_addr . inet_proto . inet_service : inet_service",  # frontend -> listener port
        "service-nodeports": "inet_proto . inet_service : inet_service",
        "no-endpoint-services": "ipv4_addr . inet_proto . inet_service : verdict",
        "no-endpoint-nodeports": "inet_proto . inet_service : verdict",
        "firewall-ips": "ipv4_addr . inet_proto . inet_service : verdict"}  # loadBalancerSourceRanges
_LOCAL = "fib daddr type local ip daddr != 127.0.0.0/8"
CHAINS = {
    "services": ["meta l4proto { tcp, udp } redirect to ip daddr . meta l4proto . th dport map @service-ips",
                 f"{_LOCAL} meta l4proto {{ tcp, udp }} redirect to meta l4proto . th dport map @service-nodeports"],
    "reject-chain": ["meta l4proto tcp reject with tcp reset", "reject"],
    "endpoints-check": ["ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
                        f"{_LOCAL} meta l4proto . th dport vmap @no-endpoint-nodeports"],
    "nat-prerouting": ["type nat hook prerouting priority dstnat; policy accept;", "jump services"],
    "nat-output": ["type nat hook output priority -100; policy accept;", "jump services"],
    "filter-input": ["type filter hook input priority -110; policy accept;", "ct state new jump endpoints-check"],
    "filter-forward": ["type filter hook forward priority -110; policy accept;", "ct state new jump endpoints-check"],
    "filter-output-post-dnat": ["type filter hook output priority -90; policy accept;", "ct state new jump endpoints-check"],
    "firewall-check": ["ip daddr . meta l4proto . th dport vmap @firewall-ips"],
    "filter-prerouting": ["type filter hook prerouting priority -110; policy accept;", "ct state new jump firewall-check"],
    "filter-output": ["type filter hook output priority -110; policy accept;", "ct state new jump firewall-check"],
}

# the table's fixed chains and their rule counts (a chain's first line may be its hook), for
# the canary check (podnet.proxy.canary); the per-Service firewall chains come and go
FIXED_CHAINS = tuple((name, sum(1 for rule in rules if not rule.startswith("type "))) for name, rules in CHAINS.items())


def endpoints_for(sp: ServicePort, kind: str) -> tuple[Endpoint, ...]:
    return sp.internal_endpoints if kind == "internal" else sp.external_endpoints


def frontends(sp: ServicePort, kind: str) -> list[tuple[str, str]]:
    """(map, key) of the frontends of one kind: `ip . proto . port` or `proto . nodePort`."""
    if kind == "internal":
        return [("service-ips", f"{sp.cluster_ip} . {sp.proto} . {sp.port}")] if sp.cluster_ip else []
    out = [("service-ips", f"{ip} . {sp.proto} . {sp.port}") for ip in sp.external_ips]
    return out + ([("service-nodeports", f"{sp.proto} . {sp.node_port}")] if sp.node_port else [])


def ruleset(ports: list[ServicePort], listener_ports: dict[tuple[str, str], int]) -> str:
    """The `nft -f` input replacing the table: frontends with a listener (keyed by
    (port_ref, kind)) are redirected to its port, those without endpoints rejected or dropped."""
    elements: dict[str, dict[str, str]] = {name: {} for name in MAPS}
    firewalls: dict[str, str] = {}  # chain -> its rule
    for sp in ports:
        if sp.protocol == "SCTP":
            continue
        if sp.uses_firewall:  # the same firewall as kube-proxy's nftables mode, before the redirect
            chain, firewalls[chain] = firewall(sp)
            for ip in sp.load_balancer_ips:
                elements["firewall-ips"].setdefault(f"{ip} . {sp.proto} . {sp.port}", f"goto {chain}")
        for kind in KINDS:
            port = listener_ports.get((sp.port_ref, kind))
            # no endpoint at all: reject; only a Local policy leaves this node none: drop
            verdict = "goto reject-chain" if not sp.cluster_endpoints else "drop"
            for name, key in frontends(sp, kind):
                if port is not None:
                    elements[name].setdefault(key, str(port))  # a frontend taken twice: first wins
                elif not endpoints_for(sp, kind):
                    elements[NO_ENDPOINT[name]].setdefault(key, verdict)
    lines = [f"table {TABLE}", f"delete table {TABLE}", f"table {TABLE} {{"]
    for name, entries in elements.items():
        lines += [f"\tmap {name} {{", f"\t\ttype {MAPS[name]}"]
        if entries:
            lines.append("\t\telements = { " + ", ".join(f"{k} : {v}" for k, v in entries.items()) + " }")
        lines.append("\t}")
    for name, rules in [*((c, [r]) for c, r in firewalls.items()), *CHAINS.items()]:
        lines += [f"\tchain {name} {{", *(f"\t\t{rule}" for rule in rules), "\t}"]
    return "\n".join(lines + ["}"]) + "\n"


@dataclass
class _Session:
    sock: socket.socket
    endpoint: Endpoint
    last: float
    local: str | None  # where the client's datagrams arrived (the redirect's address): replies leave from it


class _Listener:
    """One frontend kind of one ServicePort: its socket, endpoints and affinity table. Every
    method but the constructor runs on the loop; `endpoints` is replaced whole by sync()."""

    def __init__(self, proxier: UserspaceProxier, sp: ServicePort, kind: str, sock: socket.socket):
        self.proxier, self.kind, self.sock = proxier, kind, sock
        self.name, self.protocol = f"{sp.port_ref}/{kind}", sp.protocol
        self.port: int = sock.getsockname()[1]
        self.endpoints = endpoints_for(sp, kind)
        self.affinity_timeout = sp.affinity_timeout
        self.affinity: dict[str, tuple[Endpoint, float]] = {}  # client IP -> endpoint, last used
        self.tasks: set[asyncio.Task] = set()
        self.sessions: dict[tuple[str, int], _Session] = {}
        self.server: asyncio.AbstractServer | None = None
        self.reading = False  # the UDP socket is watched by the loop
        self.sweeper: asyncio.TimerHandle | None = None
        self.closed = False

    def choose(self, client_ip: str, tried: list[Endpoint]) -> Endpoint | None:
        now = time.monotonic()
        if self.affinity_timeout:
            pinned = self.affinity.get(client_ip)
            if pinned and pinned[0] in self.endpoints and pinned[0] not in tried \
                    and now - pinned[1] < self.affinity_timeout:
                return pinned[0]
        left = [ep for ep in self.endpoints if ep not in tried]
        return random.choice(left) if left else None

    def used(self, client_ip: str, ep: Endpoint) -> None:
        if self.affinity_timeout:
            self.affinity[client_ip] = (ep, time.monotonic())

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.protocol == "TCP":
            self.server = await asyncio.start_server(self._serve, sock=self.sock)
        else:
            self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            self.sock.setblocking(False)
            loop.add_reader(self.sock.fileno(), self._receive)
            self.reading = True
            self.sweeper = loop.call_later(UDP_IDLE / 6, self._sweep)

    async def close(self) -> None:
        self.closed = True
        if self.server:
            self.server.close()
        if self.reading:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.reading = False
            self.sock.close()
        if self.sweeper:
            self.sweeper.cancel()
        for addr in list(self.sessions):
            self._end_session(addr)
        for task in list(self.tasks):  # the Service port is gone: so are its connections
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # -- TCP ------------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.tasks.add(task)
        upstream = None
        try:
            if self.closed:  # accepted just before close(), started after it
                return
            upstream = await self._connect(writer.get_extra_info("peername")[0])
            if upstream is not None:
                await asyncio.gather(_pipe(reader, upstream[1]), _pipe(upstream[0], writer))
        except OSError as exc:  # a reset on either side, or no socket in the namespace
            log.debug("%s: connection ended: %s", self.name, exc)
        except asyncio.CancelledError:  # close(): ended on purpose (and 3.11's streams would log it)
            pass
        finally:
            self.tasks.discard(task)
            for w in (writer, upstream[1] if upstream else None):
                if w is not None:
                    w.close()

    async def _connect(self, client_ip: str):
        loop, tried = asyncio.get_running_loop(), []
        for timeout in CONNECT_TIMEOUTS:
            ep = self.choose(client_ip, tried)
            if ep is None:
                break
            tried.append(ep)
            sock = self.proxier.socket(socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (ep.ip, ep.port)), timeout)
            except (OSError, asyncio.TimeoutError) as exc:
                sock.close()
                log.info("%s: endpoint %s failed (%s), trying another", self.name, ep.address, exc or "timeout")
                continue
            self.used(client_ip, ep)
            return await asyncio.open_connection(sock=sock)
        log.warning("%s: no endpoint reachable for %s, closing its connection", self.name, client_ip)
        return None

    # -- UDP ------------------------------------------------------------------------------------

    def _receive(self) -> None:
        while True:
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(BUFFER, socket.CMSG_SPACE(_PKTINFO.size))
            except BlockingIOError:
                return
            except OSError as exc:  # an ICMP error for an earlier reply
                log.debug("%s: %s", self.name, exc)
                continue
            self.forward_datagram(data, addr, _arrived_at(ancillary))

    def forward_datagram(self, data: bytes, addr: tuple[str, int], local: str | None = None) -> None:
        session = self.sessions.get(addr)
        if session is None or session.endpoint not in self.endpoints:
            if session is not None:
                self._end_session(addr)
            ep = self.choose(addr[0], [])
            if ep is None:
                return
            sock = self.proxier.socket(socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.connect((ep.ip, ep.port))
            except OSError as exc:  # no route to it from the node, say
                sock.close()
                log.info("%s: endpoint %s: %s", self.name, ep.address, exc)
                return
            session = self.sessions[addr] = _Session(sock, ep, time.monotonic(), local)
            asyncio.get_running_loop().add_reader(sock.fileno(), self._reply, addr, session)
            self.used(addr[0], ep)
        session.last = time.monotonic()
        session.local = local or session.local
        try:
            session.sock.send(data)
        except OSError as exc:  # an ICMP error for an earlier datagram: start afresh next time
            log.info("%s: endpoint %s: %s", self.name, session.endpoint.address, exc)
            self._end_session(addr)

    def _reply(self, addr: tuple[str, int], session: _Session) -> None:
        try:
            data = session.sock.recv(BUFFER)
        except BlockingIOError:
            return
        except OSError:
            self._end_session(addr)
            return
        session.last = time.monotonic()
        if not self.reading:
            return
        source = [] if session.local is None else \
            [(socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(0, socket.inet_aton(session.local), bytes(4)))]
        try:
            self.sock.sendmsg([data], source, 0, addr)
        except OSError as exc:  # the client is gone
            log.debug("%s: reply to %s: %s", self.name, addr, exc)

    def _end_session(self, addr: tuple[str, int]) -> None:
        session = self.sessions.pop(addr, None)
        if session is not None:
            asyncio.get_running_loop().remove_reader(session.sock.fileno())
            session.sock.close()

    def _sweep(self) -> None:
        now = time.monotonic()
        for addr, session in list(self.sessions.items()):
            if now - session.last > UDP_IDLE:
                self._end_session(addr)
        self.sweeper = asyncio.get_running_loop().call_later(UDP_IDLE / 6, self._sweep)


def _arrived_at(ancillary: list[tuple[int, int, bytes]]) -> str | None:
    """The destination address of a received datagram (after the redirect), from IP_PKTINFO."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _PKTINFO.size:
            return socket.inet_ntoa(_PKTINFO.unpack(data[:_PKTINFO.size])[2])
    return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the half-close on; a reset ends both directions."""
    try:
        while data := await reader.read(BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()
        raise


class UserspaceProxier:
    def __init__(self, netns: str | None, run: Runner = run_command):
        self.netns, self.run = netns, run
        self._lock = threading.Lock()
        self._listeners: dict[tuple[str, str], _Listener] = {}  # (port_ref, kind) -> listener
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._retired: list[_Listener] = []  # superseded, closed after the next load
        self._warned: set[str] = set()

    def socket(self, kind: int) -> socket.socket:
        """An IPv4 socket in the node's namespace (here when netns is None)."""
        return socket_in_netns(self.netns, socket.AF_INET, kind) if self.netns else socket.socket(socket.AF_INET, kind)

    def listener_port(self, port_ref: str, kind: str = "internal") -> int | None:
        listener = self._listeners.get((port_ref, kind))
        return listener.port if listener else None

    def sync(self, ports: list[ServicePort]) -> int:
        """Make listeners and the table match `ports`; how many listeners were opened,
        closed or given new endpoints (NodeProxy's `last_rewritten`)."""
        with self._lock:
            desired: dict[tuple[str, str], ServicePort] = {}
            for sp in ports:
                if sp.protocol == "SCTP":
                    if sp.port_ref not in self._warned:
                        log.warning("%s: the userspace proxy does not proxy SCTP; skipped", sp.port_ref)
                        self._warned.add(sp.port_ref)
                    continue
                for kind in KINDS:
                    if endpoints_for(sp, kind) and frontends(sp, kind):
                        desired[(sp.port_ref, kind)] = sp
            changed = 0
            for key in [key for key in self._listeners if key not in desired]:
                self._retired.append(self._listeners.pop(key))
            for key, sp in desired.items():
                listener = self._listeners.get(key)
                if listener is None or listener.protocol != sp.protocol:
                    if listener is not None:
                        self._retired.append(listener)
                    self._call(self._open(sp, key[1]).start())
                    changed += 1
                elif (listener.endpoints, listener.affinity_timeout) != (endpoints_for(sp, key[1]), sp.affinity_timeout):
                    listener.endpoints, listener.affinity_timeout = endpoints_for(sp, key[1]), sp.affinity_timeout
                    changed += 1
            ports_now = {key: listener.port for key, listener in self._listeners.items()}
            self.run(in_netns(self.netns, ["nft", "-f", "-"]), ruleset(ports, ports_now))
            # closed once the table no longer points at them: a refused load keeps them serving
            changed += len(self._retired)
            while self._retired:
                self._call(self._retired.pop().close())
            return changed

    def watched(self) -> list[Watched]:
        """The table's fixed chains, for the canary check (podnet.proxy.canary)."""
        return [Watched("ip", USERSPACE_TABLE, FIXED_CHAINS)]

    def force_full(self) -> None:
        """Nothing to do: every sync replaces the table whole (the listeners stay)."""

    def close(self) -> None:
        """Nothing beyond what cleanup() ends (it runs on every stop of this mode)."""

    def cleanup(self) -> None:
        """Close every listener and connection, stop the loop, delete the table."""
        with self._lock:
            for listener in [*self._listeners.values(), *self._retired]:
                self._call(listener.close())
            self._listeners.clear()
            self._retired.clear()
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=5)
                self._loop.close()
                self._loop = self._thread = None
            # `table` first makes the delete succeed whether or not the table exists
            self.run(in_netns(self.netns, ["nft", "-f", "-"]), f"table {TABLE}\ndelete table {TABLE}\n")

    # -- the loop -------------------------------------------------------------------------------

    def _open(self, sp: ServicePort, kind: str) -> _Listener:
        sock = self.socket(socket.SOCK_STREAM if sp.protocol == "TCP" else socket.SOCK_DGRAM)
        try:
            sock.bind(("0.0.0.0", 0))
            if sp.protocol == "TCP":
                sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        listener = self._listeners[(sp.port_ref, kind)] = _Listener(self, sp, kind, sock)
        return listener

    def _call(self, coro):
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name=f"userspace-proxy:{self.netns}",
                                            daemon=True)
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)
