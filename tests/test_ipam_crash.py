"""The host-local store when the process writing it dies between its steps.

A reservation is two writes after the exclusive create: the owner into the address file, then
the address into last_reserved_ip.N. A crash (the process killed: here an exception no handler
of the store catches, raised at the chosen write, as SIGKILL would stop it there) leaves an
address file without an owner, or an empty cursor. Either way the address stays held — a
restarted plugin never hands it out again — and CNI GC (what a restarted supervisor runs with
the attachments it re-adopted) releases it, so the store ends up holding exactly the addresses
of the live attachments.
"""

from __future__ import annotations

import os
import types

import pytest

import podnet.cni.store as store_module
from podnet.cni import hostlocal
from podnet.cni.addr import ip_address
from podnet.cni.store import DiskStore
from tests.test_cni_unit import ipam


class Killed(BaseException):
    """The process dies here (no `except Exception` of the store's sees it)."""


def dying_at_write(monkeypatch, nth: int) -> None:
    """The store's `nth` os.write (1: the owner, 2: the cursor) is where the process dies."""
    calls = {"n": 0}

    def write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == nth:
            raise Killed
        return os.write(fd, data)

    monkeypatch.setattr(store_module, "os", types.SimpleNamespace(**{**vars(os), "write": write}))


@pytest.mark.parametrize("dies_at", [1, 2], ids=["before-the-owner", "before-the-cursor"])
def test_a_reservation_cut_short_is_never_handed_out_twice_and_gc_releases_it(tmp_path, monkeypatch, dies_at):
    pool = ipam(subnet="10.99.0.0/29")  # .2 - .6
    hostlocal.allocate(pool, DiskStore(str(tmp_path), "net"), "c1", "eth0")  # .2
    dying_at_write(monkeypatch, dies_at)
    with pytest.raises(Killed):
        hostlocal.allocate(pool, DiskStore(str(tmp_path), "net"), "c2", "eth0")  # was taking .3
    monkeypatch.undo()
    restarted = DiskStore(str(tmp_path), "net")  # a new process: only the files
    assert ip_address("10.99.0.3") in restarted.reserved_addresses()
    if dies_at == 2:
        assert restarted.last_reserved(0) is None  # the cursor was emptied, not written
    got = hostlocal.allocate(pool, restarted, "c3", "eth0")
    assert str(got[0].address.ip) == "10.99.0.4"  # neither c1's nor the half-made one
    # the restarted supervisor's GC: c2 never ran (its ADD died), c1 and c3 do
    assert hostlocal.gc(restarted, (("c1", "eth0"), ("c3", "eth0"))) == [ip_address("10.99.0.3")]
    assert {str(a): o for a, o in restarted.reserved().items()} == {"10.99.0.2": ("c1", "eth0"),
                                                                    "10.99.0.4": ("c3", "eth0")}
    # and what comes next never collides with a held address
    more = [str(hostlocal.allocate(pool, restarted, f"n{i}", "eth0")[0].address.ip) for i in range(3)]
    assert sorted(more) == ["10.99.0.3", "10.99.0.5", "10.99.0.6"]
