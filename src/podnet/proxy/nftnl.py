"""An incremental kube-proxy sync as one nf_tables netlink batch, without `nft` in between.

Why: with 10,000 Services the table holds 110,000 chains, and nft 1.0.6 reads every chain of
the table back from the kernel before it runs any transaction (0.45 s of the 0.75 s a
one-Service change took; bench/proxy.py). Our proxier knows what the table holds, so for the
small transactions of incremental syncs it compiles the very text it would have given `nft -f`
into netlink messages and sends them itself, as one batch: all of it applies or none does.

Only the statements podnet's renderer (nftables.py) writes into incremental syncs are
compiled: add/flush/delete chain, add rule with the matches and statements of service,
endpoint and external chains, add/delete element in the verdict maps and the ClusterIP set,
add/delete of affinity sets. Anything else raises Unsupported and the caller hands the text
to `nft -f`: full syncs (the skeleton uses far more of nft's language), and changes that
write a loadBalancerSourceRanges firewall chain (its anonymous interval set).
Expressions are encoded as nft 1.0.6 encodes them (`nft --debug=netlink` shows them); the
root tests load the same transactions through both and compare `nft list table`.

pyroute2 (our netlink library elsewhere) is not used here: its nftables layer commits a batch
without reading the kernel's answers, and the dozen attributes needed are plain TLVs.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from podnet.host.netns import socket_in_netns
from podnet.proxy.loader import LoadError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE, NLM_F_APPEND = 0x1, 0x4, 0x400, 0x800
NLM_F_ACK_TLVS = 0x200  # in an error answer: extended-ACK attributes follow
NLMSGERR_ATTR_MSG = 1
NLA_F_NESTED = 0x8000
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33
SOL_NETLINK, NETLINK_EXT_ACK, NETLINK_CAP_ACK = 270, 11, 10
ELEMENTS_PER_MESSAGE_BYTES = 32_000  # netlink attribute lengths are 16 bits
ANSWER_TIMEOUT = 30.0  # seconds; the kernel answers every batch, this only guards against a bug

# nf_tables message types (linux/netfilter/nf_tables.h, enum nf_tables_msg_types)
NEWCHAIN, DELCHAIN, NEWRULE, DELRULE, NEWSET, DELSET, NEWSETELEM, DELSETELEM = 3, 5, 6, 8, 9, 11, 12, 14
FAMILIES = {"ip": socket.AF_INET}
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
VERDICTS = {"drop": 0, "accept": 1, "return": -5}
JUMP, GOTO = -3, -4
REG_VERDICT, REG_1, REG_2 = 0, 1, 2
NETWORK_HEADER, TRANSPORT_HEADER = 1, 2
IP_FIELDS = {"saddr": 12, "daddr": 16}
PORT_FIELDS = {"sport": 0, "dport": 2}
CMP_EQ, CMP_NEQ = 0, 1
META_L4PROTO = 16
NG_RANDOM = 1
FIB_RESULT_ADDRTYPE, FIB_F_SADDR, FIB_F_DADDR = 3, 1, 2
RTN_TYPES = {"unicast": 1, "local": 2, "broadcast": 3, "anycast": 4, "multicast": 5}
NAT_DNAT, NAT_RANGE_PROTO_SPECIFIED = 1, 2
LOOKUP_F_INV = 1
DYNSET_OP_UPDATE = 1
SET_TIMEOUT, SET_EVAL = 0x10, 0x20
TYPE_IPADDR = 7  # nft's datatype id of ipv4_addr
UDATA_SET_KEYBYTEORDER, BYTEORDER_BIG_ENDIAN = 0, 2


class Unsupported(ValueError):
    """A line outside the subset compiled here: the transaction goes to `nft -f` instead."""


# --- netlink attributes ---------------------------------------------------------------------

def attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _nest(kind: int, *parts: bytes) -> bytes:
    return attribute(kind | NLA_F_NESTED, b"".join(parts))


def string_attribute(kind: int, text: str) -> bytes:
    return attribute(kind, text.encode() + b"\0")


def _u32(kind: int, value: int) -> bytes:
    return attribute(kind, struct.pack(">I", value))


def _value(kind: int, data: bytes) -> bytes:
    return _nest(kind, attribute(1, data))  # NFTA_DATA_VALUE


def _verdict(kind: int, code: int, chain: str | None = None) -> bytes:
    inner = attribute(1, struct.pack(">i", code)) + (string_attribute(2, chain) if chain else b"")  # NFTA_VERDICT_CODE / _CHAIN
    return _nest(kind, _nest(2, inner))  # NFTA_DATA_VERDICT


# --- expressions (one NFTA_LIST_ELEM each) -------------------------------------------------------

def _expr(name: str, *data: bytes) -> bytes:
    return _nest(1, string_attribute(1, name), _nest(2, *data))  # NFTA_EXPR_NAME, NFTA_EXPR_DATA


def _payload(base: int, offset: int, length: int) -> bytes:
    return _expr("payload", _u32(1, REG_1), _u32(2, base), _u32(3, offset), _u32(4, length))


def _cmp(op: int, data: bytes) -> bytes:
    return _expr("cmp", _u32(1, REG_1), _u32(2, op), _value(3, data))


def _bitwise(mask: bytes) -> bytes:
    return _expr("bitwise", _u32(1, REG_1), _u32(2, REG_1), _u32(3, len(mask)),
                 _value(4, mask), _value(5, bytes(len(mask))))


def _meta_l4proto() -> bytes:
    return _expr("meta", _u32(2, META_L4PROTO), _u32(1, REG_1))


def _immediate_verdict(code: int, chain: str | None = None) -> bytes:
    return _expr("immediate", _u32(1, REG_VERDICT), _verdict(2, code, chain))


def _immediate_data(register: int, data: bytes) -> bytes:
    return _expr("immediate", _u32(1, register), _value(2, data))


def _lookup(set_name: str, invert: bool) -> bytes:
    return _expr("lookup", string_attribute(1, set_name), _u32(2, REG_1), *([_u32(5, LOOKUP_F_INV)] if invert else []))


# --- values ----------------------------------------------------------------------------------

def _ipv4(text: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET, text)
    except OSError:
        raise Unsupported(f"not an IPv4 address: {text!r}") from None


def _int(text: str, limit: int) -> int:
    if not text.isdigit() or int(text) > limit:
        raise Unsupported(f"not a number up to {limit}: {text!r}")
    return int(text)


def _proto(text: str) -> int:
    if text not in PROTOCOLS:
        raise Unsupported(f"unknown protocol {text!r}")
    return PROTOCOLS[text]


def _address_match(field: str, value: str, op: int) -> list[bytes]:
    """`ip saddr|daddr [!=] ADDR[/LEN]`: for a prefix of whole bytes nft loads and compares
    just those bytes; otherwise all four, masked."""
    address, _, length = value.partition("/")
    prefix = _int(length, 32) if length else 32
    if prefix == 0:
        raise Unsupported("a /0 prefix")
    mask = (((1 << prefix) - 1) << (32 - prefix)).to_bytes(4, "big")
    network = bytes(a & m for a, m in zip(_ipv4(address), mask))
    if prefix % 8 == 0:
        return [_payload(NETWORK_HEADER, IP_FIELDS[field], prefix // 8), _cmp(op, network[:prefix // 8])]
    return [_payload(NETWORK_HEADER, IP_FIELDS[field], 4), _bitwise(mask), _cmp(op, network)]


# --- rules -----------------------------------------------------------------------------------

def rule_expressions(rule: str) -> bytes:
    """The NFTA_RULE_EXPRESSIONS of one rule body in nft syntax (the subset podnet writes)."""
    words = rule.split()
    exprs: list[bytes] = []
    i = 0

    def take(n: int) -> list[str]:
        nonlocal i
        if i + n > len(words):
            raise Unsupported(f"rule ends early: {rule!r}")
        taken, i = words[i:i + n], i + n
        return taken

    while i < len(words):
        word = words[i]
        if word == "ip" and i + 1 < len(words) and words[i + 1] in IP_FIELDS:
            _, field = take(2)
            op = CMP_NEQ if words[i:i + 1] == ["!="] else CMP_EQ
            if op == CMP_NEQ:
                take(1)
            (value,) = take(1)
            if value.startswith("@"):
                exprs += [_payload(NETWORK_HEADER, IP_FIELDS[field], 4), _lookup(value[1:], op == CMP_NEQ)]
            else:
                exprs += _address_match(field, value, op)
        elif word in PROTOCOLS and i + 1 < len(words) and words[i + 1] in PORT_FIELDS:
            proto, field, port = take(3)
            exprs += [_meta_l4proto(), _cmp(CMP_EQ, bytes([PROTOCOLS[proto]])),
                      _payload(TRANSPORT_HEADER, PORT_FIELDS[field], 2), _cmp(CMP_EQ, struct.pack(">H", _int(port, 65535)))]
        elif word == "meta" and words[i + 1:i + 2] == ["l4proto"]:
            _, _, proto = take(3)
            exprs += [_meta_l4proto(), _cmp(CMP_EQ, bytes([_proto(proto)]))]
        elif word == "fib":
            _, field, kind, rtn = take(4)
            if field not in ("saddr", "daddr") or kind != "type" or rtn not in RTN_TYPES:
                raise Unsupported(f"fib {field} {kind} {rtn}")
            flags = FIB_F_SADDR if field == "saddr" else FIB_F_DADDR
            exprs += [_expr("fib", _u32(1, REG_1), _u32(2, FIB_RESULT_ADDRTYPE), _u32(3, flags)),
                      _cmp(CMP_EQ, struct.pack("=I", RTN_TYPES[rtn]))]
        elif word == "numgen":
            _, kind, mod, modulus, value = take(5)
            if kind != "random" or mod != "mod":
                raise Unsupported(f"numgen {kind} {mod}")
            exprs += [_expr("numgen", _u32(1, REG_1), _u32(2, _int(modulus, 1 << 31)), _u32(3, NG_RANDOM), _u32(4, 0)),
                      _cmp(CMP_EQ, struct.pack("=I", _int(value, 1 << 31)))]
        elif word == "dnat":
            _, to, target = take(3)
            address, _, port = target.partition(":")
            if to != "to" or not port:
                raise Unsupported(f"dnat {to} {target}")
            exprs += [_immediate_data(REG_1, _ipv4(address)), _immediate_data(REG_2, struct.pack(">H", _int(port, 65535))),
                      _expr("nat", _u32(1, NAT_DNAT), _u32(2, socket.AF_INET), _u32(3, REG_1), _u32(5, REG_2),
                            _u32(7, NAT_RANGE_PROTO_SPECIFIED))]
        elif word == "update":
            _, target, *key = take(6)
            if not target.startswith("@") or key != ["{", "ip", "saddr", "}"]:
                raise Unsupported(f"update {target} {' '.join(key)}")
            exprs += [_payload(NETWORK_HEADER, IP_FIELDS["saddr"], 4),
                      _expr("dynset", string_attribute(1, target[1:]), _u32(3, DYNSET_OP_UPDATE), _u32(4, REG_1))]
        elif word in ("jump", "goto"):
            _, chain = take(2)
            exprs.append(_immediate_verdict(JUMP if word == "jump" else GOTO, chain))
        elif word in VERDICTS:
            take(1)
            exprs.append(_immediate_verdict(VERDICTS[word]))
        else:
            raise Unsupported(f"{word!r} in rule {rule!r}")
    return _nest(4, *exprs)  # NFTA_RULE_EXPRESSIONS


# --- set elements --------------------------------------------------------------------------------

def element_key(key: str) -> bytes:
    """A set key as the kernel stores it: an IPv4 address, a protocol or a port; in a
    concatenation (`a . b . c`) every field takes a multiple of 4 bytes."""
    fields = key.split(" . ")
    out = b""
    for field in fields:
        if field in PROTOCOLS:
            data = bytes([PROTOCOLS[field]])
        elif field.isdigit():
            data = struct.pack(">H", _int(field, 65535))
        else:
            data = _ipv4(field)
        out += data + b"\0" * (-len(data) % 4 if len(fields) > 1 else 0)
    return out


def _element(entry: str, with_data: bool) -> bytes:
    key, sep, verdict = entry.partition(" : ")
    if with_data != bool(sep):
        raise Unsupported(f"element {entry!r}")
    parts = [_value(1, element_key(key.strip()))]  # NFTA_SET_ELEM_KEY
    if sep:
        words = verdict.split()
        if len(words) == 2 and words[0] in ("jump", "goto"):
            parts.append(_verdict(2, JUMP if words[0] == "jump" else GOTO, words[1]))  # NFTA_SET_ELEM_DATA
        elif len(words) == 1 and words[0] in VERDICTS:
            parts.append(_verdict(2, VERDICTS[words[0]]))
        else:
            raise Unsupported(f"element verdict {verdict!r}")
    return _nest(1, *parts)


def _affinity_set(definition: str) -> list[bytes]:
    """`{ type ipv4_addr; flags dynamic,timeout; timeout Ns; }`, the only set syncs add."""
    words = definition.replace(";", " ; ").split()
    timeout = words[8] if len(words) == 11 else ""
    if words != ["{", "type", "ipv4_addr", ";", "flags", "dynamic,timeout", ";", "timeout", timeout, ";", "}"] \
            or not timeout.endswith("s"):
        raise Unsupported(f"set {definition!r}")
    seconds = _int(timeout[:-1], 1 << 31)
    return [_u32(3, SET_TIMEOUT | SET_EVAL), _u32(4, TYPE_IPADDR), _u32(5, 4),
            attribute(11, struct.pack(">Q", seconds * 1000)),  # NFTA_SET_TIMEOUT, in ms
            attribute(13, struct.pack("=BBI", UDATA_SET_KEYBYTEORDER, 4, BYTEORDER_BIG_ENDIAN))]  # NFTA_SET_USERDATA


# --- transactions ------------------------------------------------------------------------------

def compile_transaction(text: str) -> list[tuple[int, int, bytes, str]]:
    """Each line of an `nft -f` transaction as (message type, flags, attributes, line)."""
    messages = []
    set_ids = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        verb, _, rest = line.partition(" ")
        kind, _, rest = rest.partition(" ")
        family, _, rest = rest.partition(" ")
        table, _, rest = rest.partition(" ")
        name, _, body = rest.partition(" ")
        if family not in FAMILIES or not table or not name:
            raise Unsupported(line)
        t = string_attribute(1, table)
        if kind == "chain" and not body:
            if verb == "add":
                messages.append((NEWCHAIN, NLM_F_CREATE, t + string_attribute(3, name), line))
            elif verb == "flush":
                messages.append((DELRULE, 0, t + string_attribute(2, name), line))
            elif verb == "delete":
                messages.append((DELCHAIN, 0, t + string_attribute(3, name), line))
            else:
                raise Unsupported(line)
        elif kind == "rule" and verb == "add" and body:
            messages.append((NEWRULE, NLM_F_CREATE | NLM_F_APPEND, t + string_attribute(2, name) + rule_expressions(body), line))
        elif kind == "element" and verb in ("add", "delete") and body.startswith("{ ") and body.endswith(" }"):
            encoded = [_element(e, with_data=verb == "add" and " : " in e) for e in body[2:-2].split(" , ")]
            for chunk in _chunks(encoded, ELEMENTS_PER_MESSAGE_BYTES):  # an attribute holds < 64 KiB
                messages.append((NEWSETELEM if verb == "add" else DELSETELEM, NLM_F_CREATE if verb == "add" else 0,
                                 t + string_attribute(2, name) + _nest(3, *chunk), line))
        elif kind == "set" and verb == "add" and body:
            set_ids += 1
            messages.append((NEWSET, NLM_F_CREATE, t + string_attribute(2, name) + b"".join(_affinity_set(body)) + _u32(10, set_ids), line))
        elif kind == "set" and verb == "delete" and not body:
            messages.append((DELSET, 0, t + string_attribute(2, name), line))
        else:
            raise Unsupported(line)
    return messages


def _chunks(items: list[bytes], limit: int) -> list[list[bytes]]:
    out: list[list[bytes]] = [[]]
    size = 0
    for item in items:
        if out[-1] and size + len(item) > limit:
            out.append([])
            size = 0
        out[-1].append(item)
        size += len(item)
    return out


def _message(kind: int, flags: int, seq: int, family: int, attrs: bytes, res_id: int = 0) -> bytes:
    header = struct.pack(">BBH", family, 0, res_id)  # nfgenmsg: family, version 0, res_id (big endian)
    return struct.pack("=IHHII", 16 + len(header) + len(attrs), kind, flags, seq, 0) + header + attrs


def batch(messages: list[tuple[int, int, bytes, str]], first_seq: int) -> bytes:
    """The messages between BATCH_BEGIN and BATCH_END; the last asks for an ACK, so that a
    batch the kernel took answers once, and one it refused answers with its error(s)."""
    out = [_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first_seq, socket.AF_UNSPEC, b"", NFNL_SUBSYS_NFTABLES)]
    for n, (kind, flags, attrs, _) in enumerate(messages):
        ack = NLM_F_ACK if n == len(messages) - 1 else 0
        out.append(_message((NFNL_SUBSYS_NFTABLES << 8) | kind, NLM_F_REQUEST | flags | ack, first_seq + 1 + n,
                            socket.AF_INET, attrs))
    out.append(_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, first_seq + 1 + len(messages), socket.AF_UNSPEC, b"",
                        NFNL_SUBSYS_NFTABLES))
    return b"".join(out)


def netfilter_socket(netns: str | None) -> socket.socket:
    """A bound netfilter netlink socket in the named network namespace (this one when None);
    it keeps that namespace alive until closed."""
    if netns:
        sock = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    else:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


class Loader:
    """A netfilter netlink socket in one network namespace, sending compiled transactions.
    One sync at a time uses it (the node proxy's thread); a socket that failed is closed and
    the next batch opens a fresh one, so no stale answer is ever read as a new one."""

    def __init__(self, netns: str | None):
        self.netns = netns
        self._sock: socket.socket | None = None
        self._seq = 1

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = netfilter_socket(self.netns)
            # errors carry only the refused message's header, plus the kernel's reason text
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            sock.settimeout(ANSWER_TIMEOUT)
            self._sock = sock
        return self._sock

    def load(self, text: str) -> None:
        """Apply the transaction `text` (compiled here; Unsupported if it cannot be) as one
        batch. If the kernel refuses any line, nothing of it is applied and LoadError names
        every line refused, with the kernel's reason."""
        self.send(compile_transaction(text))

    def send(self, messages: list[tuple[int, int, bytes, str]]) -> int:
        """Send compiled messages as one batch and wait for the kernel's answer; the batch's
        size in bytes."""
        if not messages:
            return 0
        first, self._seq = self._seq, self._seq + len(messages) + 2
        data = batch(messages, first)
        try:
            sock = self._socket()
            if len(data) + 32 > sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, len(data) + 65536)
            # room for an error per message, should the kernel refuse them all
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, max(1 << 20, 256 * len(messages)))
            sock.send(data)
            errors = self._answers(sock, messages, first)
        except (OSError, TimeoutError) as exc:
            self.close()
            if isinstance(exc, TimeoutError):
                raise LoadError(f"nf_tables did not answer a batch of {len(messages)} messages") from None
            raise LoadError(f"netlink batch of {len(messages)} messages: {exc}") from exc
        if errors:
            raise LoadError("nf_tables refused the transaction, nothing of it applied: " + "; ".join(errors))
        return len(data)

    @staticmethod
    def _answers(sock: socket.socket, messages: list[tuple[int, int, bytes, str]], first: int) -> list[str]:
        """Read answers until the last message's ACK (the kernel sends it whether or not the
        batch applied) or an error about the batch itself; the errors, one line each."""
        last = first + len(messages)
        errors: list[str] = []
        while True:
            reply = sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(reply):
                length, kind, flags, seq = struct.unpack_from("=IHHI", reply, offset)
                if kind == NLMSG_ERROR and first <= seq <= last + 1:
                    (code,) = struct.unpack_from("=i", reply, offset + 16)
                    if code:
                        line = messages[seq - first - 1][3] if first < seq <= last else "the batch"
                        reason = _ext_ack_message(reply[offset:offset + length], flags)
                        errors.append(f"{os.strerror(-code)} ({errno.errorcode.get(-code, code)})"
                                      f"{f' - {reason}' if reason else ''}: {line}")
                    if seq == last or (code and not first < seq <= last):
                        return errors
                offset += max((length + 3) & ~3, 16)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _ext_ack_message(answer: bytes, flags: int) -> str:
    """The kernel's reason text (NLMSGERR_ATTR_MSG) of an error answer, if it gave one. With
    NETLINK_CAP_ACK the answer is: header, error code, the refused message's header, TLVs."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    offset = 16 + 4 + 16
    while offset + 4 <= len(answer):
        length, kind = struct.unpack_from("=HH", answer, offset)
        if length < 4:
            break
        if kind & 0x3FFF == NLMSGERR_ATTR_MSG:
            return answer[offset + 4:offset + length].rstrip(b"\0").decode(errors="replace")
        offset += (length + 3) & ~3
    return ""
