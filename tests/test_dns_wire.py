"""podnet.dns.wire, case by case: which packets the fast path takes (and with which cache key and
size limit), what splice() keeps from the template and from the query, and error_response()."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from podnet.dns import wire


def header(qid=0x1234, flags=0x0100, qd=1, an=0, ns=0, ar=0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


NAME = b"\x03Web\x07Default\x03svc\x07cluster\x05local\x00"
A_IN = b"\x00\x01\x00\x01"


def opt(payload=1232, ext_rcode=0, version=0, flags=0, rdata=b"") -> bytes:
    return b"\x00\x00\x29" + struct.pack("!HBBHH", payload, ext_rcode, version, flags, len(rdata)) + rdata


def name_of(wire_length: int) -> bytes:
    """A name whose wire form (length bytes, labels and the root byte) is `wire_length` long."""
    out, left = b"", wire_length - 1
    while left:
        n = min(63, left - 1)
        out += bytes((n,)) + b"a" * n
        left -= n + 1
    return out + b"\x00"


# -- parse_question: (rule, packet, tcp, expected limit, edns) — None: the slow path ------------

FAST = [
    ("a plain UDP query: 512 bytes", header() + NAME + A_IN, False, 512, False),
    ("over TCP: 65535", header() + NAME + A_IN, True, 65535, False),
    ("RD clear is still a plain query", header(flags=0) + NAME + A_IN, False, 512, False),
    ("EDNS 4096", header(ar=1) + NAME + A_IN + opt(4096), False, 4096, True),
    ("EDNS 1232", header(ar=1) + NAME + A_IN + opt(1232), False, 1232, True),
    ("EDNS below 512 counts as 512", header(ar=1) + NAME + A_IN + opt(100), False, 512, True),
    ("EDNS above 4096 counts as 4096", header(ar=1) + NAME + A_IN + opt(65000), False, 4096, True),
    ("EDNS over TCP: 65535", header(ar=1) + NAME + A_IN + opt(4096), True, 65535, True),
    ("the root name", header() + b"\x00" + b"\x00\x02\x00\x01", False, 512, False),
    ("a name of exactly 255 bytes", header() + name_of(255) + A_IN, False, 512, False),
]

SLOW = [
    ("shorter than a header and a root question", header() + b"\x00\x00\x01"),
    ("empty", b""),
    ("a response (QR)", header(flags=0x8100) + NAME + A_IN),
    ("opcode NOTIFY", header(flags=0x2000) + NAME + A_IN),
    ("opcode IQUERY", header(flags=0x0800) + NAME + A_IN),
    ("QDCOUNT 0", header(qd=0) + b"\x00" * 5),
    ("QDCOUNT 2", header(qd=2) + NAME + A_IN + NAME + A_IN),
    ("an answer record", header(an=1) + NAME + A_IN),
    ("an authority record", header(ns=1) + NAME + A_IN),
    ("two additional records", header(ar=2) + NAME + A_IN + opt() + opt()),
    ("a compression pointer in the question", header() + b"\xc0\x0c" + A_IN),
    ("a pointer after a label", header() + b"\x03web\xc0\x0c" + A_IN),
    ("the reserved label type 0x40", header() + b"\x41" + b"a" + b"\x00" + A_IN),
    ("the reserved label type 0x80", header() + b"\x81" + b"a" + b"\x00" + A_IN),
    ("a name cut off", header() + b"\x03Web\x07Defa"),
    ("a name without its root byte", header() + b"\x03web"),
    ("no type and class", header() + NAME),
    ("half a type", header() + NAME + b"\x00"),
    ("trailing bytes after the question", header() + NAME + A_IN + b"x"),
    ("a name of 256 bytes", header() + name_of(256) + A_IN),
    ("a name far too long", header() + (b"\x3f" + b"a" * 63) * 5 + b"\x00" + A_IN),
    ("an additional record that is not OPT", header(ar=1) + NAME + A_IN + b"\x00\x00\x01\x00\x01" + b"\x00" * 6),
    ("an OPT with a non-root owner", header(ar=1) + NAME + A_IN + b"\x01a\x00\x00\x29\x10\x00" + b"\x00" * 6),
    ("an OPT cut short", header(ar=1) + NAME + A_IN + opt()[:7]),
    ("an OPT with the DO bit", header(ar=1) + NAME + A_IN + opt(flags=0x8000)),
    ("EDNS version 1", header(ar=1) + NAME + A_IN + opt(version=1)),
    ("an extended RCODE", header(ar=1) + NAME + A_IN + opt(ext_rcode=1)),
    ("an OPT with an option (a cookie)", header(ar=1) + NAME + A_IN + opt(rdata=b"\x00\x0a\x00\x08" + b"c" * 8)),
    ("bytes after the OPT", header(ar=1) + NAME + A_IN + opt() + b"x"),
]


@pytest.mark.parametrize("rule,data,tcp,limit,edns", FAST, ids=[r[0] for r in FAST])
def test_the_fast_path_takes_plain_queries(rule, data, tcp, limit, edns):
    question = wire.parse_question(data, tcp)
    assert question is not None, rule
    assert question.limit == limit and question.edns == edns
    name_end = data.index(b"\x00", wire.HEADER) if data[wire.HEADER] else wire.HEADER
    assert question.end == name_end + 5
    assert question.qtype == struct.unpack("!H", data[name_end + 1:name_end + 3])[0]
    name = data[wire.HEADER:name_end + 1].lower() + data[name_end + 1:question.end]
    assert question.key == wire.memo_key(name, limit, edns, tcp)


@pytest.mark.parametrize("rule,data", SLOW, ids=[r[0] for r in SLOW])
def test_everything_else_takes_the_slow_path(rule, data):
    for tcp in (False, True):
        assert wire.parse_question(data, tcp) is None, rule


def test_the_key_ignores_case_and_id_but_not_type_size_or_edns():
    key = wire.parse_question(header(qid=1) + NAME + A_IN, False).key
    assert wire.parse_question(header(qid=2) + NAME.lower() + A_IN, False).key == key
    assert wire.parse_question(header(qid=2, flags=0) + NAME.upper() + A_IN, False).key == key
    others = [header() + NAME + b"\x00\x1c\x00\x01", header(ar=1) + NAME + A_IN + opt(512)]
    assert all(wire.parse_question(o, False).key != key for o in others)
    assert wire.parse_question(header() + NAME + A_IN, True).key != key
    # only the name is lowercased: QTYPE 65 (HTTPS, 0x0041 -- an "A" byte) is not QTYPE 97
    https, type97 = (wire.parse_question(header() + NAME + qtype + b"\x00\x01", False).key
                     for qtype in (b"\x00\x41", b"\x00\x61"))
    assert https != type97


@pytest.mark.parametrize("rule,data,tcp,shared", [
    ("RD, lower case, no EDNS", header() + NAME.lower() + A_IN, False, True),
    ("RD, lower case, a plain OPT", header(ar=1) + NAME.lower() + A_IN + opt(1232), False, True),
    ("upper case", header() + NAME + A_IN, False, False),
    ("RD clear", header(flags=0) + NAME.lower() + A_IN, False, False),
    ("AD set (dig)", header(flags=0x0120) + NAME.lower() + A_IN, False, False),
    ("an OPT size above 4096 counts as 4096", header(ar=1) + NAME.lower() + A_IN + opt(65000), False, False),
    ("over TCP", header() + NAME.lower() + A_IN, True, False),
])
def test_the_usual_query_is_its_own_key(rule, data, tcp, shared):
    """The key is spelled as the usual query after its ID, so the hot table can share it."""
    assert (wire.parse_question(data, tcp).key == data[2:]) == shared, rule


def test_the_fast_path_agrees_with_dnspython_on_real_queries():
    for name, qtype, kw in [("Web.Default.svc.cluster.local", "A", {}), ("_http._tcp.x.y.svc.cluster.local", "SRV", {}),
                            ("1.0.96.10.in-addr.arpa", "PTR", {"use_edns": 0, "payload": 4096})]:
        query = dns.message.make_query(name, qtype, **kw)
        question = wire.parse_question(query.to_wire(), False)
        assert question is not None and question.qtype == query.question[0].rdtype
        assert question.edns == (query.edns >= 0)


# -- splice -------------------------------------------------------------------------------------

def _template(name: str = "web.default.svc.cluster.local", qtype: str = "A") -> bytes:
    canonical = dns.message.make_query(name, qtype)
    canonical.id, canonical.flags = 0, 0
    response = dns.message.make_response(canonical)
    response.flags |= dns.flags.AA
    response.answer.append(dns.rrset.from_text(name + ".", 30, "IN", "A", "10.96.0.5"))
    return response.to_wire()[2:]  # templates are kept without the ID


@pytest.mark.parametrize("rule,qid,rd,name,template_rd", [
    ("the query's ID", 0xBEEF, True, "web.default.svc.cluster.local", False),
    ("RD clear stays clear", 0x0001, False, "web.default.svc.cluster.local", False),
    ("RD clear stays clear with a template that has RD", 0x0001, False, "web.default.svc.cluster.local", True),
    ("RD set with a template that has RD", 0x0002, True, "web.default.svc.cluster.local", True),
    ("the question's case, and the answer owner's through the pointer", 0x7777, True, "WEB.default.SVC.Cluster.local",
     False),
])
def test_splice_takes_id_rd_and_question_from_the_query(rule, qid, rd, name, template_rd):
    query = dns.message.make_query(name, "A", id=qid)
    if not rd:
        query.flags &= ~dns.flags.RD
    data = query.to_wire()
    end = wire.parse_question(data, False).end
    template = bytearray(_template())
    template[0] |= 0x01 if template_rd else 0
    out = dns.message.from_wire(wire.splice(bytes(template), data, end))
    assert out.id == qid, rule
    assert bool(out.flags & dns.flags.RD) == rd and out.flags & dns.flags.AA and out.flags & dns.flags.QR
    assert out.question[0].name.to_text() == name + "."
    assert out.answer[0].name.to_text() == name + "." and out.answer[0][0].to_text() == "10.96.0.5"


def test_splice_keeps_the_templates_rcode_and_flags_byte():
    template = bytearray(_template())  # from the flags on: template[i] is the response's byte i + 2
    template[1] = (template[1] & 0xF0) | dns.rcode.NXDOMAIN
    data = dns.message.make_query("web.default.svc.cluster.local", "A").to_wire()
    end = wire.parse_question(data, False).end
    out = wire.splice(bytes(template), data, end)
    assert out[3] == template[1] and out[4:wire.HEADER] == template[2:wire.HEADER - 2]
    assert out[wire.HEADER:end] == data[wire.HEADER:end] and out[end:] == template[end - 2:]


# -- error_response and query_id ----------------------------------------------------------------

@pytest.mark.parametrize("rule,data,rcode,flags", [
    ("FORMERR echoes the ID and RD", header(flags=0x0100) + b"\x03ab", dns.rcode.FORMERR, 0x8101),
    ("RD clear", header(flags=0x0000) + b"junk", dns.rcode.FORMERR, 0x8001),
    ("the opcode is echoed (NOTIFY -> NOTIMP)", header(flags=0x2100), dns.rcode.NOTIMP, 0xA104),
    ("AA, TC and the query's rcode bits are not echoed", header(flags=0x0707), dns.rcode.REFUSED, 0x8105),
    ("SERVFAIL from just a header", header(), dns.rcode.SERVFAIL, 0x8102),
])
def test_error_response_is_a_bare_header(rule, data, rcode, flags):
    out = wire.error_response(data, rcode)
    assert out is not None and len(out) == wire.HEADER, rule
    qid, got_flags, *counts = struct.unpack("!HHHHHH", out)
    assert qid == 0x1234 and got_flags == flags and counts == [0, 0, 0, 0], rule
    parsed = dns.message.from_wire(out)
    assert parsed.rcode() == rcode and parsed.opcode() == dns.opcode.from_flags(struct.unpack("!H", data[2:4])[0])


@pytest.mark.parametrize("rule,data", [
    ("nothing", b""),
    ("less than a header", b"\x12\x34\x01\x00\x00\x01"),
    ("eleven bytes", header()[:11]),
    ("a response is never answered", header(flags=0x8000)),
    ("a response with an error is never answered", header(flags=0x8183)),
])
def test_error_response_drops_what_is_not_a_query_header(rule, data):
    assert wire.error_response(data, dns.rcode.FORMERR) is None, rule


@pytest.mark.parametrize("data,qid", [(b"", None), (b"\x12", None), (b"\x12\x34", 0x1234), (header(qid=7), 7)])
def test_query_id(data, qid):
    assert wire.query_id(data) == qid
