"""kubelet's CrashLoopBackOff (podnet.crashloop) as kubelet's doBackOff and client-go's
flowcontrol.Backoff behave: a table of crash histories, then properties over any history."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from podnet.crashloop import BackOff, initial_window, restart_at, restarted


def waits(run_times: list[float], max_period: float = 300.0) -> list[float]:
    """A container that runs `run_times[i]` seconds each time it starts (t = 0 first), and is
    restarted the moment kubelet allows: how long it waited after each exit."""
    entry, now, found = None, 0.0, []
    for ran in run_times:
        finished = now + ran
        start = restart_at(entry, finished)
        found.append(start - finished)
        entry = restarted(entry, finished, start, max_period)
        now = start
    return found


@pytest.mark.parametrize("run_times, max_period, expected", [
    pytest.param([1] * 9, 300, [0, 10, 20, 40, 80, 160, 300, 300, 300], id="at-once-then-10s-doubling-to-5m"),
    pytest.param([1] * 5, 10, [0, 10, 10, 10, 10], id="a-10s-cap-waits-10s-each-time"),
    pytest.param([1] * 5, 3, [0, 3, 3, 3, 3], id="a-cap-under-10s-is-the-first-wait-too"),
    pytest.param([1] * 5, 45, [0, 10, 20, 40, 45], id="the-doubling-stops-at-the-cap"),
    pytest.param([1, 1, 1, 601, 1, 1], 300, [0, 10, 20, 0, 10, 20],
                 id="ten-minutes-running-since-the-last-restart-starts-over"),
    pytest.param([1, 1, 1, 600, 1], 300, [0, 10, 20, 40, 80], id="exactly-ten-minutes-is-not-more"),
    pytest.param([1, 1, 601, 1], 10, [0, 10, 0, 10],
                 id="the-reset-is-600s-whatever-the-cap-as-kubelet-hard-codes-it"),
])
def test_the_waits_of_a_crash_history(run_times, max_period, expected):
    assert waits(run_times, max_period) == expected


def test_the_window_counts_from_the_exit_not_from_the_restart():
    """kubelet: in back-off while now - FinishedAt < window."""
    entry = BackOff(window=20.0, updated=100.0)
    assert restart_at(entry, 105.0) == 125.0
    assert restart_at(entry, 700.0) == 720.0  # 600 s since the restart: not yet stale
    assert restart_at(entry, 700.5) == 700.5  # more: stale, at once


def test_initial_window_is_10s_or_the_cap():
    assert [initial_window(m) for m in (300, 10, 1)] == [10, 10, 1]


# whole seconds (kubelet counts nanoseconds): the sums stay exact
histories = st.lists(st.integers(min_value=0, max_value=2000), min_size=1, max_size=30)
caps = st.integers(min_value=1, max_value=300)


@given(histories, caps)
def test_no_wait_exceeds_the_cap_and_the_first_exit_never_waits(run_times, max_period):
    found = waits(run_times, max_period)
    assert found[0] == 0
    assert all(0 <= wait <= max_period for wait in found)


@given(histories, caps)
def test_each_wait_is_none_the_initial_window_or_double_the_last_capped(run_times, max_period):
    found = waits(run_times, max_period)
    for before, ran, wait in zip(found, run_times[1:], found[1:]):
        if ran > 600:  # ran longer than kubelet's reset since its last restart
            assert wait == 0
        elif before == 0:
            assert wait == initial_window(max_period)
        else:
            assert wait == min(before * 2, max_period)
