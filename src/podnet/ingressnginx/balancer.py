"""nginx's endpoints without a reload: the document the Lua balancer balances over, and its delivery.

ingress-nginx does not write endpoints into nginx.conf: its controller POSTs the backends to a
Lua handler on 127.0.0.1:10246 (`/configuration/backends`), nginx keeps them in a shared dict,
and `balancer_by_lua` picks a peer per request, so a pod coming or going changes nothing nginx
has to re-read. podnet does the same with Debian's lua-nginx-module (libnginx-mod-http-lua) and
a small balancer of its own (lua/podnet_balancer.lua): the document is one line per upstream,
`NAME IP:PORT …`, in the order `IngressController.upstreams()` gives, so the controller can tell
with a string compare whether nginx has the current endpoints. ExternalName backends are not in
it: nginx resolves those names itself (nginxconf).
"""

from __future__ import annotations

import http.client
import ipaddress
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"
# Debian's lua-nginx-module (libnginx-mod-http-lua) and the devel kit it needs, loaded by nginx.conf
LUA_MODULES = ("/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so")
CONFIGURATION_PORT = 10246   # ingress-nginx's --status-port: the Lua configuration endpoint
BACKENDS_PATH = "/configuration/backends"
SHARED_DICT = "podnet_backends"


def missing_modules() -> list[str]:
    """The Lua module files this host lacks (then nginx.conf cannot load: `apt-get install
    libnginx-mod-http-lua`)."""
    return [module for module in LUA_MODULES if not Path(module).exists()]


def is_ip_endpoint(address: str) -> bool:
    """"10.244.1.5:8080" or "[fd00::5]:8080": a pod endpoint (not an ExternalName's DNS name)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def document(upstreams: Mapping[str, Sequence[str]]) -> str:
    """The balancer's document: each upstream with at least one IP endpoint, one line."""
    lines = []
    for name, addresses in upstreams.items():
        endpoints = [address for address in addresses if is_ip_endpoint(address)]
        if endpoints:
            lines.append(" ".join([name, *endpoints]))
    return "".join(line + "\n" for line in lines)


def post(listen: str, text: str, timeout: float = 5.0) -> None:
    """Give nginx (its configuration server on `listen`, "127.0.0.1:10246") the document `text`.

    Retried until `timeout` while nginx is still starting (connection refused); raises OSError
    when nginx does not take it.
    """
    host, port = listen.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
            try:
                connection.request("POST", BACKENDS_PATH, body=text.encode(),
                                   headers={"Content-Type": "text/plain"})
                response = connection.getresponse()
                answer = response.read().decode(errors="replace").strip()
            finally:
                connection.close()
        except ConnectionRefusedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
            continue
        if response.status != 201:
            raise OSError(f"nginx refused the backends ({response.status}): {answer}")
        return
