"""A process another supervisor started: what a restarted supervisor holds for each one it re-adopts.

A supervisor that is SIGKILLed leaves its pods running (every sandbox and container is started
in a session of its own); a new supervisor takes them over, as a restarted kubelet finds its
containers again through the runtime. It is not their parent (they were handed to init), so
it cannot wait for them: `AdoptedProcess` offers the part of subprocess.Popen the runtime uses
(pid, poll, wait, returncode) by looking at /proc. A pid alone could name another process
after a reuse, so the record holds the process's start time too (field 22 of /proc/PID/stat,
in clock ticks since boot): a process is the same one only if both match.

Its exit code is lost with its parent. kubelet, finding a container gone whose status it cannot
read, reports it as ContainerStatusUnknown with exit code 137 and treats it as failed; so does
this (restartPolicy OnFailure restarts it too).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

UNKNOWN_EXIT = 137  # kubelet's exit code for a container whose end nobody saw
POLL = 0.02  # seconds between looks while waiting for an adopted process to end


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone or a zombie
    (a zombie has ended: its parent, or init, has yet to collect it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or parentheses itself
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of the whole line: starttime


class AdoptedProcess:
    """A process known by pid and start time, observed through /proc (not a child of ours)."""

    def __init__(self, pid: int, started: int):
        self.pid, self.started = pid, started
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and start_time(self.pid) != self.started:
            self.returncode = UNKNOWN_EXIT
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
            time.sleep(POLL)
        return self.returncode

    @classmethod
    def ended(cls) -> "AdoptedProcess":
        """A process that had ended, or never started, when the record was written (pid 0:
        nothing to signal; the runtime never signals a pid of 0, its own process group)."""
        process = cls(0, -1)
        process.returncode = UNKNOWN_EXIT
        return process

    def __repr__(self) -> str:
        return f"AdoptedProcess(pid={self.pid}, started={self.started})"
