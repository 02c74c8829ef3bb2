"""The prober `podnet probe` runs inside one source pod: connection attempts to many destinations.

Run as `python -m podnet.linux.connect` in the pod's namespaces (through the supervisor's `exec`
argv, as `podnet dig --from` runs podnet.dns.probe). Reads one JSON document on stdin,
{"protocol": "TCP"|"UDP"|"SCTP"|"ICMP", "timeout": seconds, "attempts": n, "targets": [[ip, port], ...]},
and prints one JSON list, an outcome per target in the same order.

What counts as a connection is the upstream e2e model's (agnhost connect, as cyclonus runs it):
TCP and SCTP: the handshake completes; UDP: a datagram "hostname\\n" gets any reply (agnhost
serve-hostname --udp and netexec --udp-port both answer it); ICMP (the port is ignored): an echo
request gets its echo reply, as ping's (one raw socket for every target: the prober runs as root
in the pod's namespace). Outcomes: "connected", "refused"
(a reset, or ICMP port unreachable: the packet reached a host that listens on nothing there),
"timeout" (no answer: dropped), "unreachable" (no route, ICMP host/net unreachable; for ICMP,
"refused" is any other destination unreachable, as ICMP port unreachable from kube-proxy) or
"error: <reason>". A failed attempt is tried again, up to `attempts` in all, each with its own
timeout (a loaded machine may be slow to accept; a drop stays a drop).

All attempts of one source are in flight together on non-blocking sockets (a window of
MAX_IN_FLIGHT), so a pod's row costs about one timeout, not one per destination. Only the
standard library, and nothing else of podnet: this starts once per source pod.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import struct
import sys
import time

MAX_IN_FLIGHT = 256
UDP_PAYLOAD = b"hostname\n"  # agnhost connect's default --udp-data, answered by serve-hostname and netexec

CONNECTED, REFUSED, TIMEOUT, UNREACHABLE = "connected", "refused", "timeout", "unreachable"
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH}


def outcome_of(code: int) -> str:
    if code == 0:
        return CONNECTED
    if code == errno.ECONNREFUSED:
        return REFUSED
    if code == errno.ETIMEDOUT:
        return TIMEOUT
    if code in _UNREACHABLE:
        return UNREACHABLE
    return f"error: {os.strerror(code)}"


class _Attempt:
    __slots__ = ("index", "ip", "port", "sock", "deadline", "resend_at", "left")

    def __init__(self, index: int, ip: str, port: int, attempts: int):
        self.index, self.ip, self.port, self.left = index, ip, port, attempts
        self.sock: socket.socket | None = None
        self.deadline = self.resend_at = 0.0


def _open(attempt: _Attempt, protocol: str, timeout: float, now: float) -> int | None:
    """Start one attempt; an error code when it ended at once, None while in flight."""
    family = socket.AF_INET6 if ":" in attempt.ip else socket.AF_INET
    try:
        if protocol == "UDP":
            sock = socket.socket(family, socket.SOCK_DGRAM)
        elif protocol == "SCTP":
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
        else:
            sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        return exc.errno or errno.EPROTONOSUPPORT
    sock.setblocking(False)
    attempt.sock = sock
    attempt.deadline = now + timeout
    attempt.resend_at = now + timeout / 2
    if protocol == "UDP":
        try:
            sock.connect((attempt.ip, attempt.port))  # no packet: it only fixes the peer
            sock.send(UDP_PAYLOAD)
        except OSError as exc:
            return exc.errno or errno.EIO
        return None
    code = sock.connect_ex((attempt.ip, attempt.port))
    if code in (errno.EINPROGRESS, errno.EAGAIN):
        return None
    return code


def _close(attempt: _Attempt, selector: selectors.BaseSelector) -> None:
    if attempt.sock is not None:
        try:
            selector.unregister(attempt.sock)
        except (KeyError, ValueError):
            pass
        attempt.sock.close()
        attempt.sock = None


def _finish_udp(sock: socket.socket) -> int | None:
    try:
        sock.recv(2048)
        return 0
    except BlockingIOError:
        return None
    except OSError as exc:
        return exc.errno or errno.EIO


ECHO_REQUEST, ECHO_REPLY, DESTINATION_UNREACHABLE = 8, 0, 3
_ICMP_UNREACHABLE_CODES = {0, 1}  # net, host unreachable (a route's answer); the rest: refused


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(ident: int, sequence: int) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, sequence)
    payload = b"podnet probe"
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, _checksum(header + payload), ident, sequence) + payload


def _icmp_answer(packet: bytes, ident: int) -> tuple[int, str, str] | None:
    """(sequence, outcome, the address it is about) of one ICMP packet a raw socket received, if
    it answers our requests: a reply's source, an error's quoted destination."""
    start = (packet[0] & 0x0F) * 4
    if len(packet) < start + 8:
        return None
    kind, code = packet[start], packet[start + 1]
    if kind == ECHO_REPLY:
        their_ident, sequence = struct.unpack("!HH", packet[start + 4:start + 8])
        return (sequence, CONNECTED, socket.inet_ntoa(packet[12:16])) if their_ident == ident else None
    if kind == DESTINATION_UNREACHABLE:  # the request's IP header and first 8 bytes follow
        inner = start + 8
        if len(packet) < inner + 20:
            return None
        quoted = inner + (packet[inner] & 0x0F) * 4
        if len(packet) < quoted + 8 or packet[quoted] != ECHO_REQUEST:
            return None
        their_ident, sequence = struct.unpack("!HH", packet[quoted + 4:quoted + 8])
        if their_ident != ident:
            return None
        return sequence, UNREACHABLE if code in _ICMP_UNREACHABLE_CODES else REFUSED, socket.inet_ntoa(packet[inner + 16:inner + 20])
    return None


def _probe_icmp(targets: list[tuple[str, int]], timeout: float, attempts: int) -> list[str]:
    """Echo requests to every target's address (its port is ignored), `attempts` rounds: a target
    without its reply is asked again in the next round, each round waiting `timeout`."""
    if len(targets) > 0xFFFF:
        raise ValueError("more ICMP targets than sequence numbers")
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    except OSError as exc:
        return [outcome_of(exc.errno or errno.EPERM)] * len(targets)
    ident = int.from_bytes(os.urandom(2), "big")  # probers sharing a namespace tell theirs apart
    results: list[str | None] = [None] * len(targets)
    with sock:
        sock.setblocking(False)
        for _ in range(max(1, attempts)):
            asked = [i for i, r in enumerate(results) if r != CONNECTED]
            if not asked:
                break
            for i in asked:
                try:
                    sock.sendto(_echo_request(ident, i), (targets[i][0], 0))
                    results[i] = TIMEOUT
                except OSError as exc:
                    results[i] = outcome_of(exc.errno or errno.EIO)
            deadline = time.monotonic() + timeout
            waiting = {i for i in asked if results[i] == TIMEOUT}
            with selectors.DefaultSelector() as selector:
                selector.register(sock, selectors.EVENT_READ)
                while waiting and (left := deadline - time.monotonic()) > 0:
                    if not selector.select(left):
                        continue
                    while True:
                        try:
                            packet, _ = sock.recvfrom(65535)
                        except BlockingIOError:
                            break
                        answer = _icmp_answer(packet, ident)
                        if answer is None or answer[0] not in waiting:
                            continue
                        sequence, outcome, about = answer
                        if about != targets[sequence][0]:
                            continue  # another prober's (a raw socket sees the namespace's every ICMP packet)
                        results[sequence] = outcome
                        waiting.discard(sequence)
    return [r or TIMEOUT for r in results]


def probe(protocol: str, targets: list[tuple[str, int]], timeout: float, attempts: int = 2) -> list[str]:
    """An outcome per target, all attempted concurrently."""
    protocol = protocol.upper()
    if protocol == "ICMP":
        return _probe_icmp(targets, timeout, attempts)
    results: list[str | None] = [None] * len(targets)
    waiting = [_Attempt(i, ip, int(port), max(1, attempts)) for i, (ip, port) in enumerate(targets)]
    waiting.reverse()  # popped from the end: first target first
    selector = selectors.DefaultSelector()
    in_flight: dict[int, _Attempt] = {}
    event = selectors.EVENT_READ if protocol == "UDP" else selectors.EVENT_WRITE

    def end(attempt: _Attempt, code: int | None, outcome: str | None = None) -> None:
        _close(attempt, selector)
        in_flight.pop(attempt.index, None)
        outcome = outcome or outcome_of(code or 0)
        attempt.left -= 1
        if outcome != CONNECTED and attempt.left > 0:
            waiting.append(attempt)  # again, with a timeout of its own
        else:
            results[attempt.index] = outcome

    while waiting or in_flight:
        now = time.monotonic()
        while waiting and len(in_flight) < MAX_IN_FLIGHT:
            attempt = waiting.pop()
            code = _open(attempt, protocol, timeout, now)
            if code is None:
                in_flight[attempt.index] = attempt
                selector.register(attempt.sock, event, attempt)
            else:
                end(attempt, code)
        if not in_flight:
            continue
        wake = min(a.resend_at if protocol == "UDP" else a.deadline for a in in_flight.values())
        for key, _mask in selector.select(max(0.0, wake - time.monotonic())):
            attempt = key.data
            if protocol == "UDP":
                code = _finish_udp(attempt.sock)
                if code is not None:
                    end(attempt, code)
            else:
                end(attempt, attempt.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        now = time.monotonic()
        for attempt in list(in_flight.values()):
            if now >= attempt.deadline:
                end(attempt, None, TIMEOUT)
            elif protocol == "UDP" and now >= attempt.resend_at:
                attempt.resend_at = attempt.deadline  # a lost datagram is sent once more
                try:
                    attempt.sock.send(UDP_PAYLOAD)
                except OSError as exc:
                    end(attempt, exc.errno or errno.EIO)
    selector.close()
    return [r or TIMEOUT for r in results]


def main() -> int:
    request = json.load(sys.stdin)
    outcomes = probe(request["protocol"], [(ip, port) for ip, port in request["targets"]],
                     float(request["timeout"]), int(request.get("attempts", 2)))
    json.dump(outcomes, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
