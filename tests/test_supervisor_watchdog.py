"""The supervisor's watchdog (no root), with a stand-in for the supervisor: a script that dies
by a signal or exits as told, and says each time it was started and whether to adopt."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

from podnet.host.layout import ClusterLayout
from podnet.linux.adopted import start_time
from podnet.linux.supervisor import record
from podnet.linux.supervisor import watchdog as watchdog_module
from podnet.linux.supervisor.state import ClusterState
from podnet.linux.supervisor.watchdog import PIDFILE, RECORD, Watchdog, watchdog_pid

# One line per start in `starts`: its mode ("build", "adopt"), "standby" when a standby waits and
# "promoted" when it is told to adopt; then the next of `ends` for an active one: "kill" (SIGKILL
# to itself, as an OOM kill, once a standby waits), "killnow" (at once), "wait" (until SIGTERM,
# then exit 0, as the supervisor stops), or an exit code.
STAND_IN = r"""
import os, signal, sys, time
starts, ends, mode = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # before it says it started: the test may stop it then
def say(line):
    with open(starts, "a") as out:
        out.write(line + "\n")
def lines():
    return open(starts).read().split()
if mode == "standby":
    say("standby")
    if sys.stdin.readline().strip() != "adopt":
        sys.exit(0)
    mode = "promoted"
say(mode)
active = [line for line in lines() if line != "standby"]
end = ends[min(len(active), len(ends)) - 1]
if end == "kill":  # (a deadline: no test hangs if no standby comes)
    deadline = time.monotonic() + 60
    while lines().count("standby") <= lines().count("promoted") and time.monotonic() < deadline:
        time.sleep(0.01)
if end == "killafterdead":  # once the standby (DEAD_STANDBY) has ended: there is none to tell
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            pid = open(starts + ".dead").read().strip()
            if not pid or open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0] in "ZX":
                break
        except (OSError, IndexError):
            if os.path.exists(starts + ".dead"):
                break  # gone, and waited for
        time.sleep(0.01)
if end in ("kill", "killnow", "killafterdead"):
    os.kill(os.getpid(), signal.SIGKILL)
if end == "wait":
    while True:
        time.sleep(0.05)
sys.exit(int(end))
"""


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setattr(watchdog_module, "RESTART_FIRST", 0.01)
    monkeypatch.setattr(watchdog_module, "STANDBY_POLL", 0.01)
    state = ClusterState(ClusterLayout("wd"), tmp_path / "wd")
    state.directory.mkdir()
    (state.directory / RECORD).write_text("{}")  # the cluster was up: there is something to adopt
    return state


# a standby that says its pid and ends before it is told anything
DEAD_STANDBY = "import os, sys; open(sys.argv[1] + '.dead.tmp', 'w').write(str(os.getpid())); " \
               "os.rename(sys.argv[1] + '.dead.tmp', sys.argv[1] + '.dead')"


def watched(state, tmp_path, ends: str, standby: list[str] | None = None) -> Watchdog:
    starts = tmp_path / "starts"

    def command(mode: str) -> list[str]:
        if mode == "standby" and standby is not None:
            return standby
        return [sys.executable, "-c", STAND_IN, str(starts), ends, mode]
    return Watchdog(state, command)


def starts(tmp_path) -> list[str]:
    return [line for line in (tmp_path / "starts").read_text().split() if line != "standby"]


def test_a_supervisor_killed_by_a_signal_is_followed_by_its_standby(state, tmp_path):
    assert watched(state, tmp_path, "kill,kill,0").run() == 0
    assert starts(tmp_path) == ["build", "promoted", "promoted"]
    assert not (state.directory / PIDFILE).exists()


def test_without_a_standby_a_supervisor_is_started_to_adopt(state, tmp_path):
    # the standby died (here: it ends at once): a new supervisor adopts instead
    dead = [sys.executable, "-c", DEAD_STANDBY, str(tmp_path / "starts")]
    assert watched(state, tmp_path, "killafterdead,0", standby=dead).run() == 0
    assert starts(tmp_path) == ["build", "adopt"]


def test_the_standby_goes_with_the_watchdog(state, tmp_path):
    watchdog = watched(state, tmp_path, "kill,0")
    assert watchdog.run() == 0
    assert watchdog.standby is None or watchdog.standby.poll() is not None


@pytest.mark.parametrize("code", [0, 1])
def test_an_end_of_the_supervisors_own_is_passed_on(state, tmp_path, code):
    # 0: down (or SIGTERM) removed the cluster; 1: a failed start or adoption said why
    assert watched(state, tmp_path, str(code)).run() == code
    assert starts(tmp_path) == ["build"]


def test_nothing_is_restarted_before_the_cluster_was_up(state, tmp_path):
    (state.directory / RECORD).unlink()
    assert watched(state, tmp_path, "killnow,0").run() == 128 + signal.SIGKILL
    assert starts(tmp_path) == ["build"]


def test_stop_passes_sigterm_to_the_supervisor_and_ends_with_it(state, tmp_path):
    watchdog = watched(state, tmp_path, "wait")
    answer = []
    thread = threading.Thread(target=lambda: answer.append(watchdog.run(adopt=True)))
    thread.start()
    try:
        # the supervisor said it started (its SIGTERM handler is in place then), not only its standby
        while not (tmp_path / "starts").exists() or "adopt" not in starts(tmp_path):
            thread.join(0.01)
        assert watchdog_pid(state) == os.getpid()  # its pid file names it, with its start time
        assert (state.directory / PIDFILE).read_text().split() == [str(os.getpid()), str(start_time(os.getpid()))]
        watchdog.stop()
        thread.join(60)
    finally:
        watchdog.stop()
    assert answer == [0] and starts(tmp_path) == ["adopt"]
    assert watchdog_pid(state) is None


def test_a_stale_pid_file_names_no_watchdog(state):
    (state.directory / PIDFILE).write_text(f"{os.getpid()} {start_time(os.getpid()) + 1}\n")
    assert watchdog_pid(state) is None


def test_the_watchdog_names_the_record_the_supervisor_writes():
    assert RECORD == record.RECORD  # one name, kept twice so the watchdog and the CLI load no supervisor
