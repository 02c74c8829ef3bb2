"""The API server process: `python -m podnet.apiserver --cluster NAME --port PORT` (the
supervisor starts it, podnet.linux.supervisor.apiserver).

It fills its caches from the supervisor first, then listens with TLS on 127.0.0.1:PORT on the
host and on the control-plane node's address, port 6443, inside that node's network namespace —
where `default/kubernetes` (10.96.0.1:443) sends pods — until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import ssl
import sys

from aiohttp import web

from podnet.apiserver import streams
from podnet.apiserver.server import ApiServer
from podnet.apiserver.backend import Supervisor
from podnet.controlplane.system import APISERVER_PORT
from podnet.host.layout import ClusterLayout
from podnet.host.netns import socket_in_netns
from podnet.pki.authority import ClusterCredentials

log = logging.getLogger("podnet.apiserver")
BACKLOG = 1024


def tls_context(credentials: ClusterCredentials) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(credentials.server_cert_path, credentials.server_key_path)
    context.load_verify_locations(credentials.ca_path)
    context.verify_mode = ssl.CERT_OPTIONAL  # a certificate, or else a bearer token (authn.py)
    context.set_alpn_protocols(["http/1.1"])
    return context


def _listening(sock: socket.socket, address: tuple[str, int]) -> socket.socket:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


def control_plane_address(server: ApiServer, layout: ClusterLayout) -> tuple[str, str] | None:
    """(the node's namespace, the address) that default/kubernetes' endpoints name."""
    slice_ = server.objects.get(("EndpointSlice", "default", "kubernetes"))
    addresses = [a for e in (slice_ or {}).get("endpoints") or [] for a in e.get("addresses") or []]
    if not addresses:
        return None
    for node in server.objects.list("Node"):
        if any(a.get("address") == addresses[0] for a in (node.get("status") or {}).get("addresses") or []):
            return layout.node_netns(node["metadata"]["name"]), addresses[0]
    return None


async def serve(layout: ClusterLayout, port: int) -> None:
    credentials = ClusterCredentials(layout.pki_dir)
    server = ApiServer(Supervisor(layout.socket_path), credentials.sa_pub_path.read_bytes(),
                       f"127.0.0.1:{port}", layout.cluster)
    streams.register(server)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stopping.set)
    followers = [asyncio.create_task(server.follower.follow_objects()),
                 asyncio.create_task(server.follower.follow_events())]
    await server.objects.synced.wait()
    context = tls_context(credentials)
    runner = web.AppRunner(server.app(), handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sockets = [_listening(socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("127.0.0.1", port))]
    inside = control_plane_address(server, layout)
    if inside is not None:
        netns, address = inside
        sockets.append(_listening(socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM), (address, APISERVER_PORT)))
    for sock in sockets:
        await web.SockSite(runner, sock, ssl_context=context).start()
    log.info("serving on https://127.0.0.1:%d%s", port,
             f" and https://{inside[1]}:{APISERVER_PORT} in {inside[0]}" if inside else "")
    await server.stopping.wait()
    server.follower.stopping.set()
    for task in followers:
        task.cancel()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podnet.apiserver")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s apiserver %(message)s", stream=sys.stderr)
    asyncio.run(serve(ClusterLayout(args.cluster), args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
