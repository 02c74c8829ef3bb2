"""The API server process: `python -m podnet.apiserver --cluster NAME --port PORT` (the
supervisor starts it, podnet.linux.supervisor.apiserver).

It fills its caches from the supervisor first, then listens with TLS on 127.0.0.1:PORT on the
host (on the socket the supervisor passes it, --listen-fd, which outlives its restarts) and on the control-plane node's address, port 6443, inside that node's network namespace —
where `default/kubernetes` (10.96.0.1:443) sends pods — until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys

from podnet.apiserver import podstreams
from podnet.apiserver.backend import Supervisor
from podnet.apiserver.server import ApiServer, listening, run, tls_context
from podnet.errors import PodnetError
from podnet.controlplane.system import APISERVER_PORT
from podnet.host.layout import ClusterLayout
from podnet.host.netns import socket_in_netns
from podnet.pki.authority import ClusterCredentials

log = logging.getLogger("podnet.apiserver")


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


async def serve(layout: ClusterLayout, port: int, listen_fd: int | None = None) -> None:
    credentials = ClusterCredentials(layout.pki_dir)
    server = ApiServer(Supervisor(layout.socket_path), credentials.sa_pub_path.read_bytes(),
                       f"127.0.0.1:{port}", layout.cluster)
    server.signing_key = credentials.sa_key_path.read_bytes()
    podstreams.register(server)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stopping.set)
    for attempt in range(120):  # the first look: which node is the control plane
        try:
            await server.follower.sync()
            break
        except (PodnetError, OSError, ValueError) as exc:  # the supervisor is being restarted
            if attempt == 119:
                raise
            log.warning("the supervisor does not answer yet (%s): retrying", exc)
            await asyncio.sleep(0.5)
    if listen_fd is not None:  # the supervisor's, kept open across our restarts (linux.supervisor.apiserver)
        host = socket.socket(fileno=listen_fd)
        host.setblocking(False)
        listeners = [host]
    else:
        listeners = [listening(socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("127.0.0.1", port))]
    inside = control_plane_address(server, layout)
    if inside is not None:
        netns, address = inside
        server.proxy_netns = netns
        listeners.append(listening(socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM), (address, APISERVER_PORT)))
    log.info("serving on https://127.0.0.1:%d%s", port,
             f" and https://{inside[1]}:{APISERVER_PORT} in {inside[0]}" if inside else "")
    await run(server, tls_context(credentials), listeners)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podnet.apiserver")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--listen-fd", type=int, help="an inherited socket listening on 127.0.0.1:PORT")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s apiserver %(message)s", stream=sys.stderr)
    asyncio.run(serve(ClusterLayout(args.cluster), args.port, args.listen_fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
