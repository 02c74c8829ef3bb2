"""Noticing rules changed behind a table owner's back: kube-proxy's canary, made cheap.

kube-proxy (iptables mode) keeps an empty chain KUBE-PROXY-CANARY in the mangle, nat and
filter tables and polls it every syncPeriod (pkg/util/iptables Monitor); once it is gone —
someone ran `iptables -F … -X` — it forces a full resync ("IPTables canary deleted"). Its
nftables mode has no canary: it rewrites the whole table after any error and periodically.
podnet asks the same question of every table it owns (kube-proxy's in each mode, the
NetworkPolicy tables), each supervisor round, at a cost that does not grow with the table:

- the node's nf_tables generation (NFT_MSG_GETGEN: one netlink round trip) moves with every
  commit in the namespace — nft, iptables-nft, podnet's own loads. Unmoved since the last
  check that passed: nothing can have changed, and that is the whole check;
- moved: each watched chain's rules are counted (one filtered GETRULE dump per chain) and
  compared with what the owner loaded. The watched chains are a table's fixed part — its
  base chains and their helpers, iptables' canaries — never the per-Service or per-policy
  ones, so the cost is the same with 10 Services or 10,000.

A deleted table, a flushed table (nft keeps chains and sets, empties every chain), a chain
flushed or given a rule by hand, and iptables' canaries deleted or flushed in any of the
three tables (upstream polls only mangle's: kubernetes#129128) are all caught. A rule
deleted from one Service's chain is not; the owners' periodic full resync covers that, as
upstream's does.

Reading the kernel is behind `RuleCounter` (netlink here, a dict in tests), and `Canary`
holds the decision: unit tests drive it with `FakeKernel`.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass
from typing import Protocol

from podnet.proxy.nftnl import (NEWRULE, NFNL_SUBSYS_NFTABLES, NLM_F_REQUEST, NLMSG_ERROR,
                                netfilter_socket, string_attribute)

NLMSG_DONE = 3
NLM_F_MULTI, NLM_F_DUMP = 0x2, 0x300
GETTABLE, GETCHAIN, GETRULE, NEWGEN, GETGEN = 1, 4, 7, 15, 16
NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 1, 3
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_GEN_ID = 1, 2, 1
FAMILIES = {"inet": 1, "ip": 2, "bridge": 7}  # NFPROTO_*
ANSWER_TIMEOUT = 10.0  # seconds; the kernel answers at once, this only guards against a bug
FULL_RESYNC_PERIOD = 3600.0  # seconds: kube-proxy's sync runner rewrites everything hourly; so do the owners


@dataclass(frozen=True)
class Watched:
    """A table's fixed chains and how many rules each holds when the owner's load held."""
    family: str
    table: str
    chains: tuple[tuple[str, int], ...]

    @property
    def name(self) -> str:
        return f"{self.family} {self.table}"


class RuleCounter(Protocol):
    def generation(self) -> int: ...

    def rules(self, family: str, table: str, chain: str) -> int: ...

    def exists(self, family: str, table: str, chain: str | None = None) -> bool: ...

    def close(self) -> None: ...


class Canary:
    """Whether the kernel still holds an owner's watched chains; `check` says why not."""

    def __init__(self, counter: RuleCounter):
        self.counter = counter
        self._verified: tuple[int, tuple[Watched, ...]] | None = None  # (generation, what was found intact)

    def check(self, watched: list[Watched]) -> str | None:
        """None if every watched chain holds its rules; otherwise what changed, one line."""
        wanted = tuple(watched)
        generation = self.counter.generation()  # read first: a commit during the counting moves it again
        if self._verified == (generation, wanted):
            return None
        for w in wanted:
            for chain, count in w.chains:
                found = self.counter.rules(w.family, w.table, chain)
                if found != count:
                    self._verified = None
                    return self._why(w, chain, count, found)
        self._verified = (generation, wanted)
        return None

    def _why(self, w: Watched, chain: str, count: int, found: int) -> str:
        if found == 0 and not self.counter.exists(w.family, w.table):
            return f"table {w.name} was deleted"
        if found == 0 and not self.counter.exists(w.family, w.table, chain):
            return f"chain {chain} of table {w.name} was deleted"
        what = "flushed" if found == 0 else "changed"
        return f"chain {chain} of table {w.name} holds {found} rules, not the {count} loaded ({what})"

    def close(self) -> None:
        self.counter.close()


class FakeKernel:
    """A RuleCounter over a dict {(family, table): {chain: rule count}}; `commit()` after a change."""

    def __init__(self, tables: dict[tuple[str, str], dict[str, int]] | None = None):
        self.tables = tables if tables is not None else {}
        self.gen = 1
        self.reads = 0  # rule counts asked for

    def commit(self) -> None:
        self.gen += 1

    def load(self, watched: list[Watched]) -> None:
        for w in watched:
            self.tables[(w.family, w.table)] = dict(w.chains)
        self.commit()

    def generation(self) -> int:
        return self.gen

    def rules(self, family: str, table: str, chain: str) -> int:
        self.reads += 1
        return self.tables.get((family, table), {}).get(chain, 0)

    def exists(self, family: str, table: str, chain: str | None = None) -> bool:
        chains = self.tables.get((family, table))
        return chains is not None and (chain is None or chain in chains)

    def close(self) -> None:
        """Nothing held."""


class NetlinkRuleCounter:
    """Asks nf_tables in one network namespace over a netfilter netlink socket of its own
    (opened on first use, in the namespace; closed by `close`, since it holds the namespace)."""

    def __init__(self, netns: str | None):
        self.netns = netns
        self._sock: socket.socket | None = None
        self._seq = 0

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = netfilter_socket(self.netns)
            sock.settimeout(ANSWER_TIMEOUT)
            self._sock = sock
        return self._sock

    def _ask(self, kind: int, flags: int, family: int, attrs: bytes = b"") -> list[tuple[int, bytes]]:
        """One request; its answers as (message type, payload after the nfgenmsg header) until
        the last one. An error answer raises OSError with the kernel's errno."""
        self._seq += 1
        seq = self._seq
        header = struct.pack(">BBH", family, 0, 0)
        message = struct.pack("=IHHII", 16 + len(header) + len(attrs), (NFNL_SUBSYS_NFTABLES << 8) | kind,
                              NLM_F_REQUEST | flags, seq, 0) + header + attrs
        try:
            sock = self._socket()
            sock.send(message)
            answers: list[tuple[int, bytes]] = []
            while True:
                data = sock.recv(1 << 16)
                offset = 0
                while offset + 16 <= len(data):
                    length, kind_, mflags, mseq = struct.unpack_from("=IHHI", data, offset)
                    body = data[offset + 16:offset + length]
                    offset += max((length + 3) & ~3, 16)
                    if mseq != seq:
                        continue  # a stale answer to an earlier request: not ours
                    if kind_ == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", body)
                        if code:
                            raise OSError(-code, f"nf_tables: {errno.errorcode.get(-code, code)}")
                        return answers
                    if kind_ == NLMSG_DONE:
                        return answers
                    answers.append((kind_ & 0xFF, body[4:]))
                    if not mflags & NLM_F_MULTI:
                        return answers
        except OSError as exc:
            if exc.errno not in (errno.ENOENT,):
                self.close()  # a fresh socket next time: no stale answer is read as a new one
            raise

    def generation(self) -> int:
        for kind, body in self._ask(GETGEN, 0, socket.AF_UNSPEC):
            if kind == NEWGEN:
                offset = 0
                while offset + 4 <= len(body):
                    length, attr = struct.unpack_from("=HH", body, offset)
                    if attr & 0x3FFF == NFTA_GEN_ID:
                        return struct.unpack_from(">I", body, offset + 4)[0]
                    offset += max((length + 3) & ~3, 4)
        raise OSError(errno.EPROTO, "nf_tables gave no generation")

    def rules(self, family: str, table: str, chain: str) -> int:
        """The rules of one chain (0 if it or its table does not exist: the dump is empty)."""
        answers = self._ask(GETRULE, NLM_F_DUMP, FAMILIES[family],
                            string_attribute(NFTA_RULE_TABLE, table) + string_attribute(NFTA_RULE_CHAIN, chain))
        return sum(1 for kind, _ in answers if kind == NEWRULE)

    def exists(self, family: str, table: str, chain: str | None = None) -> bool:
        try:
            if chain is None:
                self._ask(GETTABLE, 0, FAMILIES[family], string_attribute(NFTA_TABLE_NAME, table))
            else:
                self._ask(GETCHAIN, 0, FAMILIES[family], string_attribute(NFTA_CHAIN_TABLE, table) + string_attribute(NFTA_CHAIN_NAME, chain))
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
