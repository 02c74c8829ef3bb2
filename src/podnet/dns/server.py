"""The cluster DNS server: asyncio (uvloop when installed) on UDP and TCP, CoreDNS's side ports
(health :8080, ready :8181, prometheus :9153), forward, loop detection and reload.

State comes from a `StateSource`: in a podnet cluster, the supervisor's control socket (a long
poll on its generation number, the way CoreDNS watches the API server: a change is served
as soon as the supervisor makes it); standalone, manifests computed once. Each new state builds new Engines off the event loop, then swaps them in: the
next query is answered from the new state.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import logging
import os
import random
import secrets
import socket
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype

from podnet.api.store import ObjectStore, load_store
from podnet.config import ClusterConfig, load_config
from podnet.controlplane import Cluster, compute
from podnet.controlplane.system import corefile as kubeadm_corefile
from podnet.dns import wire
from podnet.dns.engine import Engine, Forwarding
from podnet.dns.metrics import Metrics
from podnet.host.control import LiveCluster
from podnet.host.started import signal_started
from podnet.semantics import corefile as corefile_mod
from podnet.semantics.corefile import serving_block
from podnet.semantics.dns import corefile_text, dns_view

try:
    import uvloop  # the event loop matters at 100,000 queries per second
except ImportError:  # a dependency, but the server runs (slower) on asyncio's own loop without it
    uvloop = None

log = logging.getLogger("podnet.dns")
# the longest one watch waits for a change: short enough that stopping (which waits for the
# executor's threads) is quick, long enough that an idle server asks rarely
WATCH_WAIT = 2.0
RETRY_INTERVAL = 0.25  # seconds before asking again when the supervisor did not answer
FORWARD_TIMEOUT = 2.0
TCP_IDLE = 10.0


# -- where the cluster and the Corefile come from ---------------------------------------------

class StaticState:
    """A cluster computed once (standalone: benchmarks, tests) and a Corefile from a file."""

    def __init__(self, cluster: Cluster | None, corefile_path: str | None):
        self.cluster = dns_view(cluster) if cluster is not None else None  # all a rebuild reads
        self.corefile_path = corefile_path
        self.generation = 1

    def poll(self) -> bool:
        return False

    follows = False  # nothing ever changes: no thread need wait for it

    def corefile(self) -> str:
        if self.corefile_path:
            return Path(self.corefile_path).read_text()
        return kubeadm_corefile(self.cluster.config) if self.cluster is not None else ".:53 {\n    errors\n}\n"


class ControlSocketState:
    """The live cluster from podnet's supervisor; the Corefile from the kube-system/coredns
    ConfigMap (what the pod's /etc/coredns/Corefile volume holds in Kubernetes)."""

    def __init__(self, socket_path: str):
        self.live = LiveCluster(socket_path)
        self.cluster: Cluster | None = None

    follows = True  # `wait` blocks until the supervisor's state changes

    @property
    def generation(self) -> int:
        return self.live.generation

    def poll(self) -> bool:
        """Fetch the state if it changed since the last look (blocking: run it off the loop)."""
        cluster = self.live.poll()
        if cluster is None:
            return False
        self.cluster = dns_view(cluster)  # all a rebuild reads
        return True

    def wait(self, timeout: float) -> bool:
        """As poll, but as soon as the state changes within `timeout` seconds."""
        cluster = self.live.wait(timeout)
        if cluster is None:
            return False
        self.cluster = dns_view(cluster)
        return True

    def corefile(self) -> str:
        return (corefile_text(self.cluster) if self.cluster else None) or ""


# -- the server ---------------------------------------------------------------------------------

class Block:
    """One server block at run time: its config, metrics and the engine of the current state."""

    def __init__(self, config, cluster: Cluster | None):
        self.config = config
        self.metrics = Metrics(f"dns://:{config.port}", config.zones[0] if config.zones else ".")
        self.metrics.plugins = plugin_names(config)
        self.engine = Engine(config, cluster, self.metrics, _hosts_file(config))


def plugin_names(config) -> list[str]:
    names = ["errors", "health", "ready", "kubernetes", "prometheus", "forward", "cache", "loop", "reload",
             "hosts", "log", "loadbalance"]
    return [n for n in names if getattr(config, n, None) not in (None, False)]


def _hosts_file(config) -> str:
    hosts = config.hosts
    if hosts is None:
        return ""
    try:  # without a file argument CoreDNS reads /etc/hosts (in a pod: the pod's own)
        return Path(hosts.file or "/etc/hosts").read_text()
    except OSError as exc:
        log.error("plugin/hosts: %s", exc)
        return ""


class DnsServer:
    def __init__(self, state, port_override: int | None = None, host: str = "0.0.0.0"):
        self.state = state
        self.port_override = port_override
        self.host = host
        self.blocks: dict[int, list[Block]] = {}
        self.corefile_text = ""
        self.configs: list = []
        self.transports: list = []
        self.protocols: list[UdpListener] = []
        self.servers: list[asyncio.AbstractServer] = []
        self.ready = False
        self.loop_probe: bytes | None = None
        self.loop_name = ""
        self.loop_hits = 0

    # -- configuration ----------------------------------------------------------------------------

    def configure(self, text: str) -> None:
        """Parse the Corefile (raises CorefileError naming the line) and build the blocks."""
        configs = corefile_mod.load(text)
        if self.port_override is not None:
            configs = [_with_port(c, self.port_override) for c in configs]
        self.corefile_text, self.configs = text, configs
        self._rebuild()

    def _rebuild(self) -> None:
        self._install(self._build_blocks())

    def _build_blocks(self) -> dict[int, list[Block]]:
        """Engines for the current state and config: the slow part, safe off the loop thread."""
        blocks: dict[int, list[Block]] = {}
        for config in self.configs:
            blocks.setdefault(config.port, []).append(Block(config, self.state.cluster))
        return blocks

    def _install(self, blocks: dict[int, list[Block]]) -> None:
        """Swap the new engines in (on the loop thread: no query is half-way through)."""
        for port, group in blocks.items():
            for block in group:
                old = next((b for b in self.blocks.get(port, []) if b.config.zones == block.config.zones), None)
                if old is not None:  # counters survive a new state and a reload, as CoreDNS's registry does
                    if block.engine.same_answers(old.engine):
                        block.engine.adopt(old.engine)  # nothing the answers depend on changed
                    else:
                        old.engine.retire()
                    old.metrics.plugins = block.metrics.plugins
                    block.metrics = block.engine.metrics = old.metrics
        self.blocks = blocks
        for listener in self.protocols:
            group = blocks.get(listener.port) or []
            for block in group:
                block.metrics.deferred = True  # the listener's thread counts on the hot tables
            # everything through the loop when loop detection is on or the port has several zones
            simple = len(group) == 1 and self.loop_probe is None and not group[0].engine.log_queries
            listener.hot = group[0].engine.hot_udp if simple else None
            listener.send_barrier()  # after the swap: the retired engines' entries settle behind it

    def block_for(self, port: int, data: bytes) -> Block | None:
        group = self.blocks.get(port)
        if not group:
            return None
        if len(group) == 1:
            return group[0]
        try:
            name = dns.message.from_wire(data).question[0].name.to_text().lower()
        except Exception:
            return group[-1]
        return serving_block(group, name, lambda b: b.config.zones)

    # -- serving ----------------------------------------------------------------------------------

    async def start(self) -> None:
        for port in sorted(self.blocks):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((self.host, port))
            listener = UdpListener(self, port, sock)
            self.transports.append(listener)
            self.protocols.append(listener)
            self.servers.append(await asyncio.start_server(
                lambda r, w, p=port: self._tcp(r, w, p), self.host, port, reuse_address=True))
        for config in self.configs[:1]:
            if config.health:
                self.servers.append(await _http(self, config.health.addr, 8080, self._health))
            if config.ready:
                self.servers.append(await _http(self, config.ready, 8181, self._ready))
            if config.prometheus:
                self.servers.append(await _http(self, config.prometheus, 9153, self._metrics))
        self._install(self.blocks)
        for block in (b for group in self.blocks.values() for b in group):
            if block.config.loop and block.config.forward is not None:
                asyncio.create_task(self._loop_probe(block))

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), TCP_IDLE), "big")
                data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
                out = await self.answer(data, port, True, peer)
                if out is None:
                    continue
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def answer(self, data: bytes, port: int, tcp: bool, peer) -> bytes | None:
        block = self.block_for(port, data)
        if block is None:
            return wire.error_response(data, dns.rcode.REFUSED)
        out = block.engine.respond(data, tcp, peer)
        if isinstance(out, Forwarding):
            return await self.forward(block, out)
        return out

    def note_loop(self, data: bytes) -> None:
        if self.loop_probe is not None and self.loop_probe in data.lower():
            self.loop_hits += 1
            if self.loop_hits > 2:
                port = next(iter(self.blocks), 53)
                print(f"[FATAL] plugin/loop: Loop ({self.host}:{port} -> :{port}) detected for zone \".\", see "
                      f"https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {self.loop_name}\"",
                      file=sys.stderr, flush=True)
                os._exit(1)  # CoreDNS exits: a loop would otherwise eat every query it is sent

    # -- forward ----------------------------------------------------------------------------------

    async def forward(self, block: Block, request: Forwarding) -> bytes | None:
        engine = block.engine
        started = time.perf_counter()
        cached = engine.cached_forward(request.data, request.tcp)
        if cached is not None:
            return cached
        upstreams = _upstreams(block.config.forward)
        if not upstreams:  # e.g. a resolv.conf without nameservers: still a request
            block.metrics.observe("tcp" if request.tcp else "udp", _qtype(request), "SERVFAIL", "forward",
                                  time.perf_counter() - started)
            return _servfail(request)
        policy = block.config.forward.policy
        if policy == "random":
            random.shuffle(upstreams)
        query_bytes = request.data
        for ip, port in upstreams[:3]:
            to = f"{ip}:{port}"
            block.metrics.forward_requests[to] += 1
            try:
                if block.config.forward.force_tcp or request.tcp:
                    reply = await _tcp_exchange(query_bytes, ip, port)
                else:
                    reply = await _udp_exchange(query_bytes, ip, port)
                    if reply and reply[2] & 0x02 and not block.config.forward.prefer_udp:  # truncated: TCP
                        reply = await _tcp_exchange(query_bytes, ip, port)
                response = dns.message.from_wire(reply)
            except (OSError, asyncio.TimeoutError, dns.exception.DNSException) as exc:
                log.warning("plugin/forward: %s: %s", to, exc)
                continue
            block.metrics.forward_responses[(to, dns.rcode.to_text(response.rcode()))] += 1
            engine.store_forward(request, response)
            if engine.cache_enabled:
                engine.cap_ttls(response)
                reply = response.to_wire()
            block.metrics.observe("tcp" if request.tcp else "udp", _qtype(request), dns.rcode.to_text(response.rcode()),
                                  "forward", time.perf_counter() - started)
            return reply
        block.metrics.observe("tcp" if request.tcp else "udp", _qtype(request), "SERVFAIL", "forward",
                              time.perf_counter() - started)  # no upstream answered: still a request
        return _servfail(request)

    async def _loop_probe(self, block: Block) -> None:
        """plugin/loop: ask ourselves, through forward, a name only we would know; if it comes
        back to us, the forwarder points at this server and every query would loop."""
        zone = block.config.zones[0].rstrip(".")
        name = f"{secrets.randbelow(10**19)}.{secrets.randbelow(10**19)}.{zone}".strip(".") + "."
        self.loop_name = name
        # matched against raw queries: the name in wire form (length-prefixed labels)
        self.loop_probe = b"".join(bytes((len(p),)) + p for p in name.lower().encode().rstrip(b".").split(b"."))
        self._install(self.blocks)  # every datagram through the general path while probing
        query = dns.message.make_query(name, "HINFO")
        for _ in range(3):
            await self.forward(block, Forwarding(query, query.to_wire(), False, 512))
            await asyncio.sleep(0.5)
        self.loop_probe = None  # no loop: stop looking
        self._install(self.blocks)

    # -- state and reload -------------------------------------------------------------------------

    async def watch(self) -> None:
        """Follow the cluster state; reload a changed Corefile when `reload` is configured."""
        loop = asyncio.get_running_loop()
        next_reload = time.monotonic() + self._reload_interval()
        while True:
            wait = min(WATCH_WAIT, max(0.0, next_reload - time.monotonic()))
            try:
                if self.state.follows:
                    changed = await loop.run_in_executor(None, self.state.wait, wait)
                else:
                    changed = await asyncio.sleep(wait, False)
            except Exception as exc:  # the supervisor may be busy or restarting: keep serving
                log.warning("cluster state: %s", exc)
                changed = False
                await asyncio.sleep(RETRY_INTERVAL)
            if changed:
                self._install(await loop.run_in_executor(None, self._build_blocks))
                self.ready = True
            if self.configs and any(c.reload for c in self.configs) and time.monotonic() >= next_reload:
                next_reload = time.monotonic() + self._reload_interval()
                await self._reload()

    def _reload_interval(self) -> float:
        config = next((c for c in self.configs if c.reload), None)
        if config is None:
            return 3600.0
        return max(2.0, config.reload.interval_seconds + random.uniform(-1, 1) * config.reload.jitter_seconds)

    async def _reload(self) -> None:
        try:
            text = self.state.corefile()
        except OSError as exc:
            log.error("plugin/reload: %s", exc)
            return
        if text == self.corefile_text:
            return
        try:
            configs = corefile_mod.load(text)
        except corefile_mod.CorefileError as exc:
            for block in (b for g in self.blocks.values() for b in g):
                block.metrics.reload_failed += 1
            print(f"[ERROR] Restart failed: {exc}", file=sys.stderr, flush=True)
            self.corefile_text = text  # do not retry the same broken text every interval
            return
        if self.port_override is not None:
            configs = [_with_port(c, self.port_override) for c in configs]
        if {c.port for c in configs} != set(self.blocks):
            print("[ERROR] plugin/reload: the new Corefile listens on other ports; restart to apply",
                  file=sys.stderr, flush=True)
            return
        self.corefile_text, self.configs = text, configs
        self._rebuild()
        print("[INFO] Reloading complete", file=sys.stdout, flush=True)

    # -- side ports -------------------------------------------------------------------------------

    def _health(self, path: str) -> tuple[int, str]:
        return (200, "OK") if path == "/health" else (404, "404 page not found\n")

    def _ready(self, path: str) -> tuple[int, str]:
        if path != "/ready":
            return 404, "404 page not found\n"
        return (200, "OK") if self.ready else (503, "kubernetes\n")

    def _metrics(self, path: str) -> tuple[int, str]:
        if path != "/metrics":
            return 404, "404 page not found\n"
        for block in (b for g in self.blocks.values() for b in g):
            block.metrics.absorb_all(block.engine.entries(), block.engine.cache_enabled)
        return 200, "".join(b.metrics.render() for g in self.blocks.values() for b in g[:1])


class UdpListener:
    """The hot path: a thread of its own per UDP port, blocking in recvfrom.

    A memoised question (the hot table: the query's bytes after its ID -> the answer's) is
    answered on that thread with a dict look-up and one sendto; everything else (first sight of
    a question, forward, several zones on the port, loop detection, the query log) is handed to
    the event loop, which owns the engines. Measured against the loop reading the socket itself,
    this is ~10% more queries per second on one core: the thread sleeps in recvfrom instead of
    paying an epoll wake-up and an EAGAIN per short burst.

    Counting across the two threads: the listener is the only writer of `Entry.udp`; the loop
    answers handed-over queries with respond(hot=False) and reads the counters without resetting
    them (Metrics.absorb). An entry dropped from the tables stays in its Metrics' graveyard until
    a barrier datagram, sent to this socket after the drop, comes back through the listener:
    every datagram before it, including one that found the entry just before the drop, is done.
    """

    MAX_DATAGRAM = 65535
    BACKLOG = 4096  # handed-over queries waiting for the loop; beyond, drop (as a full socket buffer)
    BARRIER = b"\xff\xffpodnet-barrier:"

    def __init__(self, server: DnsServer, port: int, sock: socket.socket):
        self.server, self.port, self.sock = server, port, sock
        self.hot = None  # the port's only engine's hot UDP table, when it has just one block
        self.loop = asyncio.get_running_loop()
        self.handed: collections.deque = collections.deque()
        self.scheduled = False
        self.closed = False
        self.barriers = 0
        host = sock.getsockname()[0]
        self.barrier_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.barrier_sock.bind(("127.0.0.1" if host == "0.0.0.0" else host, 0))
        self.barrier_to = ("127.0.0.1" if host == "0.0.0.0" else host, port)
        self.barrier_from = self.barrier_sock.getsockname()
        self.barrier_sock.setblocking(False)
        self.thread = threading.Thread(target=self._serve, name=f"podnet-dns-udp-{port}", daemon=True)
        self.thread.start()

    # -- the listener's thread --------------------------------------------------------------------

    def _serve(self) -> None:
        recvfrom, sendto, size = self.sock.recvfrom, self.sock.sendto, self.MAX_DATAGRAM
        handed, call = self.handed, self.loop.call_soon_threadsafe
        while True:
            try:
                data, addr = recvfrom(size)
            except OSError:
                if self.closed:
                    return
                continue  # e.g. an ICMP error queued by a client that went away
            if self.closed:
                return
            hot = self.hot
            if hot is not None:
                hit = hot.get(data[2:])
                if hit is not None:
                    hit[1].udp += 1
                    try:
                        sendto(data[:2] + hit[0], addr)
                    except OSError:
                        pass  # a full send buffer: UDP drops, as the kernel would
                    continue
            if len(handed) >= self.BACKLOG:
                continue
            handed.append((data, addr))
            if not self.scheduled:
                self.scheduled = True
                try:
                    call(self._answer_handed)
                except RuntimeError:  # the loop is closed: the server is going away
                    return

    # -- the loop's side --------------------------------------------------------------------------

    def _answer_handed(self) -> None:
        self.scheduled = False  # first: a datagram handed over from now on schedules another call
        handed = self.handed
        for _ in range(64):  # then yield to TCP, health and state updates
            if not handed:
                break
            data, addr = handed.popleft()
            self.answer(data, addr)
        if handed and not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._answer_handed)

    def answer(self, data: bytes, addr) -> None:
        if addr == self.barrier_from and data.startswith(self.BARRIER):
            self._settle(int(data[len(self.BARRIER):]))
            return
        server = self.server
        if server.loop_probe is not None:
            server.note_loop(data)
        block = server.block_for(self.port, data)
        try:
            out = block.engine.respond(data, False, addr, hot=False) if block else \
                wire.error_response(data, dns.rcode.REFUSED)
        except Exception:  # one bad query must never take the server down
            log.exception("answering a query failed")
            out = wire.error_response(data, dns.rcode.SERVFAIL)
        if isinstance(out, Forwarding):
            asyncio.ensure_future(self._forward(block, out, addr))
        elif out is not None:
            self.send(out, addr)
        self.send_barrier()  # the answer may have dropped entries (the memo's size limit)

    def send(self, out: bytes, addr) -> None:
        try:
            self.sock.sendto(out, addr)
        except OSError:
            pass

    async def _forward(self, block: Block, request: Forwarding, addr) -> None:
        out = await self.server.forward(block, request)
        if out is not None:
            self.send(out, addr)

    def _metrics(self) -> list[Metrics]:
        return [b.metrics for b in self.server.blocks.get(self.port, [])]

    def send_barrier(self) -> None:
        """After entries left the tables: a barrier through the socket, so they can be settled."""
        metrics = [m for m in self._metrics() if m.unmarked()]
        if not metrics:
            return
        self.barriers += 1
        for m in metrics:
            m.mark(self.barriers)
        try:
            self.barrier_sock.sendto(self.BARRIER + str(self.barriers).encode(), self.barrier_to)
        except OSError:
            pass  # lost: the entries stay in the graveyard (still counted) until a later barrier

    def _settle(self, barrier: int) -> None:
        for m in self._metrics():
            m.settle(barrier)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread out of recvfrom
        except OSError:
            pass
        self.thread.join(timeout=2)
        self.sock.close()
        self.barrier_sock.close()


async def _http(server: DnsServer, addr: str, default_port: int, handler):
    host, port = corefile_mod.address_port(addr, default_port)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass
            parts = request.decode("latin-1").split()
            status, body = handler(parts[1].split("?")[0] if len(parts) > 1 else "/")
            kind = "text/plain; version=0.0.4; charset=utf-8" if "# TYPE" in body else "text/plain; charset=utf-8"
            data = body.encode()
            writer.write(f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: {kind}\r\n"
                         f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
            await writer.drain()
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, host or "0.0.0.0", port, reuse_address=True)


def _with_port(config, port: int):
    return replace(config, port=port)


def _upstreams(forward) -> list[tuple[str, int]]:
    upstreams = list(forward.upstreams)
    for path in forward.paths:  # a resolv.conf: its nameservers (inside the pod: the node's file)
        try:
            for line in Path(path).read_text().splitlines():
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    upstreams.append((words[1], 53))
        except OSError as exc:
            log.error("plugin/forward: %s", exc)
    return upstreams


def _qtype(request: Forwarding) -> str:
    return dns.rdatatype.to_text(request.query.question[0].rdtype) if request.query.question else "other"


def _servfail(request: Forwarding) -> bytes:
    response = dns.message.make_response(request.query)
    response.set_rcode(dns.rcode.SERVFAIL)
    return response.to_wire()


async def _udp_exchange(data: bytes, ip: str, port: int) -> bytes:
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, reply, addr):
            if reply[:2] == data[:2] and not future.done():
                future.set_result(reply)

        def error_received(self, exc):
            if not future.done():
                future.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(Client, remote_addr=(ip, port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(future, FORWARD_TIMEOUT)
    finally:
        transport.close()


async def _tcp_exchange(data: bytes, ip: str, port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), FORWARD_TIMEOUT)
    try:
        writer.write(len(data).to_bytes(2, "big") + data)
        await writer.drain()
        size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), FORWARD_TIMEOUT), "big")
        return await asyncio.wait_for(reader.readexactly(size), FORWARD_TIMEOUT)
    finally:
        writer.close()


# -- the command line ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """coredns's flags where they make sense: -conf, -dns.port; plus -f/--config to serve
    manifests standalone. In a podnet cluster PODNET_CONTROL_SOCKET names the supervisor."""
    parser = argparse.ArgumentParser(prog="podnet-dns", description=main.__doc__)
    parser.add_argument("-conf", dest="conf", help="Corefile to load (standalone; in a cluster, the ConfigMap's)")
    parser.add_argument("-dns.port", dest="port", type=int, help="override the port of every server block")
    parser.add_argument("-f", dest="files", action="append", help="manifests to serve (standalone)")
    parser.add_argument("--config", help="cluster config for -f")
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(message)s")
    control = os.environ.get("PODNET_CONTROL_SOCKET")
    if control:
        state = ControlSocketState(control)
        state.poll()
    else:
        # no name for the full cluster here: only the state's DNS view of it stays in memory
        state = StaticState(_cluster_from_files(args.files, args.config) if args.files else _default_cluster(),
                            args.conf)
    server = DnsServer(state, args.port, args.host)
    try:
        server.configure(state.corefile())
    except corefile_mod.CorefileError as exc:
        print(f"[FATAL] {exc}", file=sys.stderr)
        return 1
    server.ready = state.cluster is not None
    if uvloop is not None:
        uvloop.install()
    gc.collect()
    gc.freeze()  # the cluster's objects are long-lived: the collector need not rescan them

    async def run() -> None:
        await server.start()
        signal_started()  # listening: kubelet may probe now (podnet.host.started)
        print(f".:{','.join(str(p) for p in sorted(server.blocks))}\nCoreDNS-{'1.12.0'} (podnet)", flush=True)
        await server.watch()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def _default_cluster() -> Cluster:
    return compute(ObjectStore(), ClusterConfig())


def _cluster_from_files(files: list[str], config_path: str | None) -> Cluster:
    """-f: the manifests computed once, as `podnet get -f` computes them; warnings on stderr."""
    cluster = compute(load_store(files), load_config(config_path))
    for warning in cluster.warnings:
        print(warning, file=sys.stderr)
    return cluster


if __name__ == "__main__":
    sys.exit(main())
