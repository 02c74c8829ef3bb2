"""The second half of the upstream NetworkPolicy e2e scenarios on the kernel, with a cluster of
its own so it runs beside tests/test_netpol_root.py (see tests/netpol_live.py)."""

from __future__ import annotations

import pytest

from tests import netpol_cases as cases
from tests.netpol_live import HALF, check_step, running_model

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    yield from running_model(tmp_path_factory)


@pytest.mark.parametrize("si,ti", [pytest.param(si, ti, id=f"{s.id}[{ti}]")
                                   for si, s in enumerate(cases.SCENARIOS) if si >= HALF
                                   for ti, _ in enumerate(s.steps)])
def test_e2e_scenario_on_the_kernel(model, si, ti):
    check_step(model, cases, si, ti)
