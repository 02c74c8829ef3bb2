"""A stand-in for an image podnet does not have: `python -m podnet.agnhost.standin IMAGE
[--tcp PORT]… [--udp PORT]… [--sctp PORT]…`.

podnet cannot pull images (DESIGN.md), so an unknown image runs as a network endpoint that
serves what the pod declares: every TCP port speaks HTTP with agnhost netexec's handlers (a
tcpSocket probe is accepted, an httpGet probe gets netexec's 200s on any path (/healthz and
/readyz too: the stand-in counts as ready), /echo, /hostname
and /clientip answer), every UDP port answers netexec's UDP commands (`echo X`, `hostname`,
`clientip`), SCTP ports as netexec serves them (logged when the machine has no SCTP). The ports
come from podnet.images.standin_ports, the same list the simulator believes, so `trace` and the
kernel agree port by port. Part of agnhost's package because it is built from netexec's parts
and, like them, starts in every pod that needs it (standard library and agnhost only).
SIGTERM ends it at once with exit code 0.
"""

from __future__ import annotations

import os
import sys
import threading

from podnet.agnhost import gohttp
from podnet.agnhost.golang import GoError, bind_address, die_on_sigint, fatal, log, next_signal, signal_pipe
from podnet.agnhost.netexec import Netexec

USAGE = "usage: python -m podnet.agnhost.standin IMAGE [--tcp PORT]... [--udp PORT]... [--sctp PORT]..."


def netexec(port: int, udp: int = -1, sctp: int = -1) -> Netexec:
    """A netexec with its flags' defaults for one port."""
    return Netexec({"http-port": port, "udp-port": udp, "sctp-port": sctp, "tls-cert-file": "",
                    "tls-private-key-file": "", "http-override": "", "udp-listen-addresses": "",
                    "delay-shutdown": 0})


def parse(argv: list[str]) -> tuple[str, dict[str, list[int]]]:
    """(image, {"tcp": [...], "udp": [...], "sctp": [...]}); ValueError with the usage otherwise."""
    if not argv or argv[0].startswith("--"):
        raise ValueError(USAGE)
    ports: dict[str, list[int]] = {"tcp": [], "udp": [], "sctp": []}
    words = argv[1:]
    if len(words) % 2:
        raise ValueError(USAGE)
    for flag, value in zip(words[::2], words[1::2]):
        kind = flag.removeprefix("--")
        if kind not in ports or not value.isdigit() or not 0 < int(value) <= 65535:
            raise ValueError(f"bad argument {flag} {value}: {USAGE}")
        ports[kind].append(int(value))
    return argv[0], ports


def main(argv: list[str]) -> int:
    try:
        image, ports = parse(argv)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    term = signal_pipe(15)
    die_on_sigint()
    host = bind_address()
    served = [f"{p}/TCP" for p in ports["tcp"]] + [f"{p}/UDP" for p in ports["udp"]] + [f"{p}/SCTP" for p in ports["sctp"]]
    log(f"podnet stand-in for image {image}: serving {', '.join(served) or 'no port'}")
    for port in ports["udp"]:
        server = netexec(-1, udp=port)
        try:
            sock = gohttp.listen_udp(host, port)
        except GoError as err:
            fatal(f"Error occurred: failed to create listener for UDP address :{port}:{err}")
            return 1
        threading.Thread(target=server.serve_udp, args=(sock, ""), daemon=True).start()
    for port in ports["sctp"]:
        netexec(-1, sctp=port).start_sctp()
    for port in ports["tcp"]:
        server = netexec(port)
        server.ready = True  # a stand-in is a healthy endpoint: /healthz and /readyz answer 200 (its probes pass)
        try:
            sock = gohttp.listen_tcp(host, port)
        except GoError as err:
            fatal(str(err))
            return 1
        log(f"Started HTTP server on port {port}")
        gohttp.serve_in_thread(gohttp.Server(sock, server.handler()))
    next_signal(term)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
