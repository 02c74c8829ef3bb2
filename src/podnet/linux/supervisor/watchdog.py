"""The supervisor's watchdog: a small parent that starts it again when it dies unexpectedly.

    python -m podnet.linux.supervisor.watchdog --name NAME [--adopt]   (started by `podnet up`)

It runs the supervisor as its child, in its own process group (so `podnet up`, interrupted,
stops both at once), and waits. When the supervisor dies by a signal (SIGKILL, an OOM kill, a
crash) once the cluster was up — its record exists (record.py) — another one re-adopts the
running pods: at once, and if it dies again soon, with back-off (RESTART_FIRST doubling to
RESTART_MAX, starting over after a supervisor ran STABLE seconds), as systemd's Restart= does. The successor is ready beforehand:
once the cluster is up, the watchdog keeps a standby supervisor (--standby: its interpreter
started, its modules imported — most of a start's time — waiting on its stdin), and tells it
to adopt; without one (it died), it starts one with --adopt. The standby holds nothing else:
the end of the watchdog (its stdin closes) or a SIGKILL ends it.

Every other end is the supervisor's own and is passed on, never restarted: exit 0 (`down`, or
SIGTERM: it removed the cluster), a non-zero exit (a failed start or adoption: it said why in
its failure note). SIGTERM to the watchdog (`podnet down`) is passed to the supervisor, which
then stops and removes the cluster, and the watchdog ends with it. Its pid and start time are
in watchdog.pid in the state directory, for `down` and for `podnet up` restarting a cluster.
Deliberately small: it imports none of the supervisor, so nothing that crashes a supervisor
takes it along.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from podnet.host.layout import ClusterLayout
from podnet.linux.adopted import start_time
from podnet.linux.supervisor.durable import atomic_write
from podnet.linux.supervisor.state import ClusterState

log = logging.getLogger("podnet.watchdog")
PIDFILE = "watchdog.pid"
RECORD = "running.json"  # record.RECORD, not imported: the watchdog (and the CLI) load nothing of the supervisor
RESTART_FIRST, RESTART_MAX = 0.1, 30.0  # seconds before following a supervisor that died again (systemd: 100 ms)
STABLE = 60.0  # a supervisor that ran this long resets the back-off
STANDBY_POLL = 0.1  # seconds between looks for the record, before a standby is started


def watchdog_pid(state: ClusterState) -> int | None:
    """The cluster's watchdog if it runs (the pid in watchdog.pid, with the same start time)."""
    try:
        pid, started = (int(field) for field in (state.directory / PIDFILE).read_text().split())
    except (OSError, ValueError):
        return None
    return pid if start_time(pid) == started else None


def supervisor_argv(name: str, mode: str) -> list[str]:
    """build: the cluster; adopt: its running pods; standby: wait (imports done) for "adopt"."""
    return [sys.executable, "-m", "podnet.linux.supervisor", "--name", name, *([f"--{mode}"] if mode != "build" else [])]


class Watchdog:
    """Runs `command(mode)` (the supervisor's argv; mode "build", "adopt" or "standby") until it
    ends by itself; `stop()` (from a signal handler) passes SIGTERM on. `state` says where the
    record and the pid file are."""

    def __init__(self, state: ClusterState, command: Callable[[str], list[str]]):
        self.state, self.command = state, command
        self.child: subprocess.Popen | None = None
        self.standby: subprocess.Popen | None = None
        self.stopping = False
        self.restarts = 0

    def stop(self, *_args) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)  # the supervisor stops and removes the cluster

    def _start(self, mode: str) -> subprocess.Popen:
        child = subprocess.Popen(self.command(mode), stdin=subprocess.DEVNULL)
        self.child = child
        if self.stopping:  # SIGTERM came while it was being started
            child.send_signal(signal.SIGTERM)
        return child

    def _take_over(self) -> bool:
        """Tell the standby to adopt the pods; whether it could be told (it may have died)."""
        standby, self.standby = self.standby, None
        if standby is None or standby.poll() is not None:
            return False
        try:
            standby.stdin.write(b"adopt\n")
            standby.stdin.close()
        except OSError:
            return False
        self.child = standby
        if self.stopping:
            standby.send_signal(signal.SIGTERM)
        return True

    def run(self, adopt: bool = False) -> int:
        """The exit code to end with: the supervisor's own, or 128 + the signal that killed it
        when there was nothing to re-adopt."""
        pidfile = self.state.directory / PIDFILE
        atomic_write(pidfile, f"{os.getpid()} {start_time(os.getpid())}\n")
        delay = 0.0  # the first death is followed at once; deaths in a row wait RESTART_FIRST, doubling
        try:
            self._start("adopt" if adopt else "build")
            while True:
                began = time.monotonic()
                code = None
                while code is None:
                    try:
                        code = self.child.wait(timeout=STANDBY_POLL)
                    except subprocess.TimeoutExpired:
                        if self.standby is None and not self.stopping and (self.state.directory / RECORD).exists():
                            # imports done beforehand: a successor that only has to adopt
                            self.standby = subprocess.Popen(self.command("standby"), stdin=subprocess.PIPE)
                if self.stopping or code >= 0 or not (self.state.directory / RECORD).exists():
                    log.info("supervisor ended (%s); the watchdog ends too",
                             f"exit {code}" if code >= 0 else f"signal {-code}")
                    return code if code >= 0 else 128 - code
                delay = 0.0 if time.monotonic() - began >= STABLE else delay
                log.warning("supervisor (pid %d) died by signal %d: another re-adopts the pods in %.1fs",
                            self.child.pid, -code, delay)
                deadline = time.monotonic() + delay
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.02)
                if self.stopping:
                    return 0
                if not self._take_over():
                    self._start("adopt")
                delay = min(RESTART_MAX, delay * 2) if delay else RESTART_FIRST
                self.restarts += 1
        finally:
            if self.standby is not None and self.standby.poll() is None:
                self.standby.kill()
                self.standby.wait()
            pidfile.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podnet.linux.supervisor.watchdog")
    parser.add_argument("--name", required=True)
    parser.add_argument("--adopt", action="store_true", help="the first supervisor re-adopts the running pods")
    args = parser.parse_args(argv)
    state = ClusterState(ClusterLayout(args.name))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s watchdog: %(message)s",
                        handlers=[logging.FileHandler(state.log_path)])
    watchdog = Watchdog(state, lambda mode: supervisor_argv(args.name, mode))
    signal.signal(signal.SIGTERM, watchdog.stop)
    signal.signal(signal.SIGINT, watchdog.stop)
    return watchdog.run(args.adopt)


if __name__ == "__main__":
    sys.exit(main())
