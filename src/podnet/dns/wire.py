"""Just enough of the DNS wire format to answer a query from a precomputed response.

The cluster zone is a pure function of the cluster state, so every answer can be built once
(with dnspython) and served many times: a response to the lowercased question, kept without its
ID (the hot table sends it after the query's own ID), with the query's own ID, RD bit and
question bytes spliced in. Owner names that repeat the question are compression pointers to it,
so the answer echoes the query's case, as CoreDNS does. Anything this module does not recognise
as a plain one-question query goes to the slow path (dnspython).
"""

from __future__ import annotations

from typing import NamedTuple

HEADER = 12
MAX_NAME = 255
OPT = 41
MIN_UDP = 512
MAX_UDP = 4096  # EDNS sizes above this are treated alike (our answers never need more)


class Question(NamedTuple):
    end: int  # offset just past QTYPE/QCLASS
    key: bytes  # the cache key: the lowercased question and how big the answer may be (memo_key)
    qtype: int
    limit: int  # bytes the response may take (UDP: 512 or the EDNS size; TCP: 65535)
    edns: bool


def parse_question(data: bytes, tcp: bool) -> Question | None:
    """The question of a standard query with QDCOUNT 1, no answer/authority records and at
    most one additional record (an EDNS OPT), or None (→ slow path)."""
    n = len(data)
    if n < HEADER + 5 or data[2] & 0xF8 or data[4:10] != b"\x00\x01\x00\x00\x00\x00":
        return None  # a response, another opcode, or not exactly one question
    arcount = (data[10] << 8) | data[11]
    if arcount > 1:
        return None
    i = HEADER
    while True:
        if i >= n:
            return None
        length = data[i]
        if length == 0:
            break
        if length > 63:  # a pointer (or a reserved label type) in a question: slow path
            return None
        i += length + 1
        if i - HEADER >= MAX_NAME:  # the labels so far plus the root byte still to come
            return None
    end = i + 5
    if end > n:
        return None
    qtype = (data[i + 1] << 8) | data[i + 2]
    limit = 65535 if tcp else MIN_UDP
    edns = False
    if arcount == 1:
        # the OPT record: root name (one zero byte), TYPE 41, CLASS = UDP payload size
        if end + 11 > n or data[end] != 0 or data[end + 1:end + 3] != b"\x00\x29":
            return None
        edns = True
        if not tcp:
            limit = min(max((data[end + 3] << 8) | data[end + 4], MIN_UDP), MAX_UDP)
        if end + 11 != n or data[end + 5:end + 11] != b"\x00\x00\x00\x00\x00\x00":
            return None  # extended RCODE, EDNS version > 0, the DO bit, or options: slow path
    elif end != n:
        return None
    # the name alone is lowercased: QTYPE 65 (HTTPS) must not become 97
    key = memo_key(data[HEADER:i + 1].lower() + data[i + 1:end], limit, edns, tcp)
    return Question(end, key, qtype, limit, edns)


_PLAIN = b"\x01\x00\x00\x01\x00\x00\x00\x00\x00"  # flags RD, QDCOUNT 1, no AN/NS, ARCOUNT's high byte


def memo_key(question: bytes, limit: int, edns: bool, tcp: bool) -> bytes:
    """What the answer depends on, spelled as the usual client's query after its ID: flags RD
    alone, `question` (name lowercased), EDNS as a bare OPT carrying the size limit. For such a
    query (glibc's, dnsperf's) the key equals data[2:], the hot table's key, so both tables can
    hold one bytes object. Over TCP (limit 65535 either way) a trailing b"T" keeps it apart."""
    if edns:
        return b"".join((_PLAIN, b"\x01", question, b"\x00\x00\x29", limit.to_bytes(2, "big"), b"\x00" * 6,
                         b"T" if tcp else b""))
    return b"".join((_PLAIN, b"\x00", question, b"T" if tcp else b""))


def splice(template: bytes, query: bytes, question_end: int) -> bytes:
    """The response: `template` (a response to the same question, from its flags on: without
    the ID) with the query's ID, its RD bit and its question (case as sent)."""
    return b"".join((query[:2], bytes(((template[0] & 0xFE) | (query[2] & 0x01),)), template[1:HEADER - 2],
                     query[HEADER:question_end], template[question_end - 2:]))


def query_id(data: bytes) -> int | None:
    return ((data[0] << 8) | data[1]) if len(data) >= 2 else None


def error_response(data: bytes, rcode: int) -> bytes | None:
    """A header-only reply (FORMERR, NOTIMP, REFUSED …) echoing the query's ID, opcode and RD,
    for queries too broken for dnspython; None when not even a header is there (dropped, as
    CoreDNS drops what it cannot parse) or when it is itself a response."""
    if len(data) < HEADER or data[2] & 0x80:
        return None
    flags = 0x8000 | ((data[2] & 0x79) << 8) | rcode  # QR, the opcode and RD as sent
    return data[:2] + flags.to_bytes(2, "big") + b"\x00" * 8
