"""SPDY/3.1 framing, the part Kubernetes port-forwarding speaks (sans I/O: bytes in, frames out).

kubectl (client-go) since 1.31 tunnels port-forward's SPDY session through a WebSocket
(subprotocol `SPDY/3.1+portforward.k8s.io`); the session is the one kubelet's streaming server
serves, framed as draft-mbelshe-httpbis-spdy-00 says. No Python library for SPDY is kept up
(SPDY was retired for HTTP/2), so this module does the framing: control frames SYN_STREAM,
SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE and DATA frames. Header
blocks are zlib-compressed with the spec's dictionary, one compression context per direction
for the whole session (so a `FrameReader` and a `FrameWriter` each live as long as their
session). The peer (Go's spdystream) writes a frame in several small writes, so the reader
takes any split of the byte stream. Flow control (WINDOW_UPDATE) is read and ignored, as
spdystream does: back-pressure comes from the transport underneath.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, UNSUPPORTED_VERSION, CANCEL, INTERNAL_ERROR = 1, 2, 3, 4, 5, 6
# GOAWAY status codes
GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, GOAWAY_INTERNAL_ERROR = 0, 1, 2

MAX_DATA_LENGTH = (1 << 24) - 1
MAX_FRAME_LENGTH = 1 << 24  # a control frame's header block, too: what a 24-bit length holds

# The header compression dictionary of SPDY/3 (draft-mbelshe-httpbis-spdy-00, 2.6.10.1): these
# words, each preceded by its length as a 32-bit big-endian integer, then the text after them.
_DICTIONARY_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language "
    "accept-ranges age allow authorization cache-control connection content-base content-encoding "
    "content-language content-length content-location content-md5 content-range content-type date "
    "etag expect expires from host if-match if-modified-since if-none-match if-range "
    "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
    "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
    "user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK"] + "version HTTP/1.1 url public set-cookie keep-alive origin".split()
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) + _DICTIONARY_TAIL.encode()

Headers = dict[str, list[str]]  # lower-case names; a value list is sent NUL-separated


class SpdyError(Exception):
    """The peer broke the framing: the session cannot go on (answer GOAWAY PROTOCOL_ERROR)."""


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    associated_to: int
    priority: int
    headers: Headers
    fin: bool
    unidirectional: bool


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers
    fin: bool


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...]  # (flags, id, value)


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool


Frame = SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate | Data


def _header_block(headers: Headers) -> bytes:
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        key, value = name.lower().encode(), "\0".join(values).encode()
        out.append(struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value)
    return b"".join(out)


def _parse_header_block(block: bytes) -> Headers:
    def take(at: int, size: int) -> bytes:
        if at + size > len(block):
            raise SpdyError("header block truncated")
        return block[at:at + size]

    (count,) = struct.unpack(">I", take(0, 4))
    at, headers = 4, {}
    for _ in range(count):
        (size,) = struct.unpack(">I", take(at, 4))
        name = take(at + 4, size).decode("latin-1")
        at += 4 + size
        (size,) = struct.unpack(">I", take(at, 4))
        value = take(at + 4, size).decode("latin-1")
        at += 4 + size
        if name != name.lower() or not name:
            raise SpdyError(f"header name {name!r} is not lower case")
        if name in headers:
            raise SpdyError(f"header {name!r} given twice")
        headers[name] = value.split("\0")
    return headers


class FrameReader:
    """Bytes as they arrive (any split) to frames; one per session and direction."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            (length,) = struct.unpack(">I", b"\0" + self._buffer[5:8])
            if len(self._buffer) < 8 + length:
                break
            head, payload = bytes(self._buffer[:8]), bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            frames.append(self._frame(head, payload))
        return frames

    def _headers(self, compressed: bytes) -> Headers:
        try:
            block = self._inflate.decompress(compressed, MAX_FRAME_LENGTH)
        except zlib.error as exc:
            raise SpdyError(f"header block does not decompress: {exc}") from None
        return _parse_header_block(block)

    def _frame(self, head: bytes, payload: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:
            (stream_id,) = struct.unpack(">I", head[:4])
            return Data(stream_id, payload, bool(flags & FLAG_FIN))
        version, kind = struct.unpack(">HH", head[:4])
        if version & 0x7FFF != VERSION:
            raise SpdyError(f"SPDY version {version & 0x7FFF} (this speaks {VERSION})")
        fin = bool(flags & FLAG_FIN)

        def need(size: int) -> None:
            if len(payload) < size:
                raise SpdyError(f"control frame {kind} too short ({len(payload)} bytes)")

        if kind == SYN_STREAM:
            need(10)
            stream_id, associated, priority = struct.unpack(">IIB", payload[:9])
            return SynStream(stream_id & 0x7FFFFFFF, associated & 0x7FFFFFFF, priority >> 5,
                             self._headers(payload[10:]), fin, bool(flags & FLAG_UNIDIRECTIONAL))
        if kind == SYN_REPLY:
            need(4)
            return SynReply(struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF, self._headers(payload[4:]), fin)
        if kind == HEADERS:
            need(4)
            return HeadersFrame(struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF, self._headers(payload[4:]), fin)
        if kind == RST_STREAM:
            need(8)
            stream_id, status = struct.unpack(">II", payload[:8])
            return RstStream(stream_id & 0x7FFFFFFF, status)
        if kind == SETTINGS:
            need(4)
            (count,) = struct.unpack(">I", payload[:4])
            need(4 + 8 * count)
            entries = []
            for i in range(count):
                flag_id, value = struct.unpack(">II", payload[4 + 8 * i:12 + 8 * i])
                entries.append((flag_id >> 24, flag_id & 0xFFFFFF, value))
            return Settings(tuple(entries))
        if kind == PING:
            need(4)
            return Ping(struct.unpack(">I", payload[:4])[0])
        if kind == GOAWAY:
            need(8)
            last, status = struct.unpack(">II", payload[:8])
            return GoAway(last & 0x7FFFFFFF, status)
        if kind == WINDOW_UPDATE:
            need(8)
            stream_id, delta = struct.unpack(">II", payload[:8])
            return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        raise SpdyError(f"unknown control frame type {kind}")


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


@dataclass
class FrameWriter:
    """Frames to bytes; one per session and direction (the header compression is stateful)."""

    _deflate: object = field(default_factory=lambda: zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=DICTIONARY))

    def _compressed(self, headers: Headers) -> bytes:
        return self._deflate.compress(_header_block(headers)) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def syn_stream(self, stream_id: int, headers: Headers, *, fin: bool = False, associated_to: int = 0,
                   priority: int = 0) -> bytes:
        payload = struct.pack(">IIBB", stream_id, associated_to, priority << 5, 0) + self._compressed(headers)
        return _control(SYN_STREAM, FLAG_FIN if fin else 0, payload)

    def syn_reply(self, stream_id: int, headers: Headers | None = None, *, fin: bool = False) -> bytes:
        return _control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + self._compressed(headers or {}))

    def headers(self, stream_id: int, headers: Headers, *, fin: bool = False) -> bytes:
        return _control(HEADERS, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + self._compressed(headers))

    @staticmethod
    def data(stream_id: int, data: bytes = b"", *, fin: bool = False) -> bytes:
        if len(data) > MAX_DATA_LENGTH:
            raise ValueError(f"a DATA frame holds at most {MAX_DATA_LENGTH} bytes")
        return struct.pack(">II", stream_id & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data

    @staticmethod
    def rst_stream(stream_id: int, status: int) -> bytes:
        return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    @staticmethod
    def ping(ping_id: int) -> bytes:
        return _control(PING, 0, struct.pack(">I", ping_id))

    @staticmethod
    def goaway(last_good_stream_id: int, status: int = GOAWAY_OK) -> bytes:
        return _control(GOAWAY, 0, struct.pack(">II", last_good_stream_id, status))

    @staticmethod
    def settings(entries: tuple[tuple[int, int, int], ...] = ()) -> bytes:
        body = b"".join(struct.pack(">II", (flags << 24) | ident, value) for flags, ident, value in entries)
        return _control(SETTINGS, 0, struct.pack(">I", len(entries)) + body)

    @staticmethod
    def window_update(stream_id: int, delta: int) -> bytes:
        return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))
