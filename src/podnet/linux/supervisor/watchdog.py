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

from podnet.host.layout import ClusterLayout
from podnet.linux.adopted import start_time
from podnet.linux.supervisor.state import ClusterState, atomic_write

log = logging.getLogger("podnet.watchdog")
PIDFILE = "watchdog.pid"
RECORD = "running.json"  # record.RECORD, not imported: the watchdog loads nothing of the supervisor
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podnet.linux.supervisor.watchdog")
    parser.add_argument("--name", required=True)
    parser.add_argument("--adopt", action="store_true", help="the first supervisor re-adopts the running pods")
    args = parser.parse_args(argv)
    state = ClusterState(ClusterLayout(args.name))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s watchdog: %(message)s",
                        handlers=[logging.FileHandler(state.log_path)])
    atomic_write(state.directory / PIDFILE, f"{os.getpid()} {start_time(os.getpid())}\n")
    child: subprocess.Popen | None = None
    stopping = False

    def stop(*_args) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # the supervisor stops and removes the cluster

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    adopt, delay = args.adopt, RESTART_FIRST
    while True:
        began = time.monotonic()
        child = subprocess.Popen(supervisor_argv(args.name, adopt), stdin=subprocess.DEVNULL)
        if stopping:  # SIGTERM came while it was being started
            child.send_signal(signal.SIGTERM)
        code = child.wait()
        if stopping or code >= 0 or not (state.directory / RECORD).exists():
            log.info("supervisor ended (%s); the watchdog ends too", f"exit {code}" if code >= 0 else f"signal {-code}")
            (state.directory / PIDFILE).unlink(missing_ok=True)
            return code if code >= 0 else 128 - code
        delay = RESTART_FIRST if time.monotonic() - began >= STABLE else delay
        log.warning("supervisor (pid %d) died by signal %d: starting one that re-adopts the pods in %.1fs",
                    child.pid, -code, delay)
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
        if stopping:
            (state.directory / PIDFILE).unlink(missing_ok=True)
            return 0
        adopt, delay = True, min(RESTART_MAX, delay * 2)


if __name__ == "__main__":
    sys.exit(main())
