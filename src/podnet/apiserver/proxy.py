"""services/proxy and pods/proxy: an HTTP request relayed to a pod from inside the cluster, as
kube-apiserver's proxy subresources do (`kubectl get --raw /api/v1/namespaces/NS/services/
web:80/proxy/`, the URLs `kubectl cluster-info` prints).

The API server runs on the host; the connection is made from the control-plane node's network
namespace (podnet.host.netns.socket_in_netns), which routes to every pod. A Service is reached
through one of its ready endpoints, chosen at random, as kube-apiserver's service proxy picks
one (it does not go through the ClusterIP). The request goes as HTTP/1.0 with the connection
closed after it, so the answer needs no chunked decoding; hop-by-hop headers are dropped both
ways.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

from aiohttp import web

from podnet.apiserver.errors import ApiError
from podnet.host.netns import socket_in_netns

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "authorization", "content-length"}
CONNECT_TIMEOUT = 10.0
ANSWER_TIMEOUT = 60.0


def split_target(text: str) -> tuple[str, str, str]:
    """'[scheme:]name[:port]' → (scheme, name, port) as the proxy URLs spell them."""
    parts = text.split(":")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2 and parts[0] in ("http", "https"):
        return parts[0], parts[1], ""
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return "", parts[0], ""


def service_endpoint(service: dict[str, Any], slices: list[dict[str, Any]], port: str) -> tuple[str, int]:
    """A ready endpoint (address, target port) of `service` for the port named or numbered `port`."""
    name = service["metadata"]["name"]
    ports = (service.get("spec") or {}).get("ports") or []
    chosen = next((p for p in ports if port in (str(p.get("port")), p.get("name") or "")), None) if port else \
        (ports[0] if len(ports) == 1 else None)
    if chosen is None:
        raise ApiError(503, f'no endpoints available for service "{name}"' if not ports else
                       f'no port "{port}" on service "{name}"' if port else
                       f'service "{name}" has several ports: name one ({name}:PORT)', "ServiceUnavailable")
    candidates = []
    for slice_ in slices:
        slice_port = next((p.get("port") for p in slice_.get("ports") or []
                           if (p.get("name") or "") == (chosen.get("name") or "")), None)
        if slice_port is None:
            continue
        for endpoint in slice_.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready", True):
                candidates += [(address, int(slice_port)) for address in endpoint.get("addresses") or []]
    if not candidates:
        raise ApiError(503, f'no endpoints available for service "{name}"', "ServiceUnavailable")
    return random.choice(candidates)


async def relay(request: web.Request, netns: str, address: str, port: int, path: str) -> web.Response:
    """The request to http://address:port/path, made from `netns`, and its answer."""
    loop = asyncio.get_running_loop()
    sock = await asyncio.to_thread(socket_in_netns, netns, socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (address, port)), CONNECT_TIMEOUT)
    except (OSError, asyncio.TimeoutError) as exc:
        sock.close()
        raise ApiError(503, f"error trying to reach service: dial tcp {address}:{port}: {exc or 'i/o timeout'}",
                       "ServiceUnavailable") from None
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        body = await request.read()
        query = f"?{request.query_string}" if request.query_string else ""
        lines = [f"{request.method} {path or '/'}{query} HTTP/1.0", f"Host: {address}:{port}"]
        lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        lines += [f"Content-Length: {len(body)}"] if body else []
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
    except (OSError, asyncio.TimeoutError) as exc:
        raise ApiError(503, f"error trying to reach service: {exc or 'timeout'}", "ServiceUnavailable") from None
    finally:
        writer.close()
    head, _, content = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split()[1])
    except (IndexError, ValueError):
        raise ApiError(502, f"the pod answered something that is not HTTP: {status_line[:80]!r}", "BadGateway") from None
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        if key and key.strip().lower() not in HOP_BY_HOP:
            headers[key.strip()] = value.strip()
    return web.Response(status=status, body=content, headers=headers)
