"""AdminNetworkPolicy and BaselineAdminNetworkPolicy on the kernel (root only): tests/anp_cases.py's
scenarios on the upstream e2e model as a real cluster of its own (tests/netpol_live.py), each step
measured by real connections against its truth table, asked of the live `podnet matrix`, and
checked with `podnet probe --compare`, which must find no disagreement."""

from __future__ import annotations

import pytest

from tests import anp_cases
from tests.netpol_live import check_step, running_model

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    yield from running_model(tmp_path_factory)


@pytest.mark.parametrize("si,ti", [pytest.param(si, ti, id=f"{s.id}[{ti}]")
                                   for si, s in enumerate(anp_cases.SCENARIOS) for ti, _ in enumerate(s.steps)])
def test_admin_scenario_on_the_kernel(model, si, ti):
    check_step(model, anp_cases, si, ti)
