"""The supervisor's watchdog: a small parent that starts it again when it dies unexpectedly.

    python -m podnet.linux.supervisor.watchdog --name NAME [--adopt]   (started by `podnet up`)

It runs the supervisor as its child, in its own process group (so `podnet up`, interrupted,
stops both at once), and waits. When the supervisor dies by a signal (SIGKILL, an OOM kill, a
crash) once the cluster was up — its record exists (record.py) — the watchdog starts a new one
with --adopt, which re-adopts the running pods; with back-off (RESTART_FIRST doubling to
RESTART_MAX, starting over after a supervisor ran STABLE seconds), as systemd's Restart= does.

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
from podnet.linux.supervisor.state import ClusterState, atomic_write

log = logging.getLogger("podnet.watchdog")
PIDFILE = "watchdog.pid"
RECORD = "running.json"  # record.RECORD, not imported: the watchdog (and the CLI) load nothing of the supervisor
RESTART_FIRST, RESTART_MAX = 0.1, 30.0  # seconds before starting a supervisor that died again (systemd: 100 ms)
STABLE = 60.0  # a supervisor that ran this long resets the back-off


def watchdog_pid(state: ClusterState) -> int | None:
    """The cluster's watchdog if it runs (the pid in watchdog.pid, with the same start time)."""
    try:
        pid, started = (int(field) for field in (state.directory / PIDFILE).read_text().split())
    except (OSError, ValueError):
        return None
    return pid if start_time(pid) == started else None


def supervisor_argv(name: str, adopt: bool) -> list[str]:
    return [sys.executable, "-m", "podnet.linux.supervisor", "--name", name, *(["--adopt"] if adopt else [])]


class Watchdog:
    """Runs `command(adopt)` (the supervisor's argv) until it ends by itself; `stop()` (from a
    signal handler) passes SIGTERM on. `state` says where the record and the pid file are."""

    def __init__(self, state: ClusterState, command: Callable[[bool], list[str]]):
        self.state, self.command = state, command
        self.child: subprocess.Popen | None = None
        self.stopping = False
        self.restarts = 0

    def stop(self, *_args) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)  # the supervisor stops and removes the cluster

    def run(self, adopt: bool = False) -> int:
        """The exit code to end with: the supervisor's own, or 128 + the signal that killed it
        when there was nothing to re-adopt."""
        pidfile = self.state.directory / PIDFILE
        atomic_write(pidfile, f"{os.getpid()} {start_time(os.getpid())}\n")
        delay = RESTART_FIRST
        try:
            while True:
                began = time.monotonic()
                self.child = subprocess.Popen(self.command(adopt), stdin=subprocess.DEVNULL)
                if self.stopping:  # SIGTERM came while it was being started
                    self.child.send_signal(signal.SIGTERM)
                code = self.child.wait()
                if self.stopping or code >= 0 or not (self.state.directory / RECORD).exists():
                    log.info("supervisor ended (%s); the watchdog ends too",
                             f"exit {code}" if code >= 0 else f"signal {-code}")
                    return code if code >= 0 else 128 - code
                delay = RESTART_FIRST if time.monotonic() - began >= STABLE else delay
                log.warning("supervisor (pid %d) died by signal %d: starting one that re-adopts the pods in %.1fs",
                            self.child.pid, -code, delay)
                deadline = time.monotonic() + delay
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.02)
                if self.stopping:
                    return 0
                adopt, delay = True, min(RESTART_MAX, delay * 2)
                self.restarts += 1
        finally:
            pidfile.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podnet.linux.supervisor.watchdog")
    parser.add_argument("--name", required=True)
    parser.add_argument("--adopt", action="store_true", help="the first supervisor re-adopts the running pods")
    args = parser.parse_args(argv)
    state = ClusterState(ClusterLayout(args.name))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s watchdog: %(message)s",
                        handlers=[logging.FileHandler(state.log_path)])
    watchdog = Watchdog(state, lambda adopt: supervisor_argv(args.name, adopt))
    signal.signal(signal.SIGTERM, watchdog.stop)
    signal.signal(signal.SIGINT, watchdog.stop)
    return watchdog.run(args.adopt)


if __name__ == "__main__":
    sys.exit(main())
