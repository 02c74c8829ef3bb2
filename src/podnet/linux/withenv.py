"""`python -m podnet.linux.withenv PID -- ARGV…`: run ARGV with the environment the container's
process PID was started with laid over this one, as `kubectl exec` gets the container's env.

The environment is read from /proc/PID/environ, which only root (and the process's owner) can
read, and handed to ARGV by execve: it never appears on a command line, where every user on the
host could read it in /proc/*/cmdline or `ps` — the container's env holds values resolved from
Secrets. The supervisor's exec argv starts with this (`podnet exec`, the API server's exec,
`podnet probe`); nsenter, next in ARGV, passes the environment on into the pod.
"""

from __future__ import annotations

import os
import sys


def environment_of(pid: int) -> dict[str, str]:
    """The environment process `pid` started with."""
    with open(f"/proc/{pid}/environ", "rb") as handle:
        entries = handle.read().split(b"\0")
    found = {}
    for entry in entries:
        name, sep, value = entry.partition(b"=")
        if sep and name:
            found[os.fsdecode(name)] = os.fsdecode(value)
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print("usage: python -m podnet.linux.withenv PID -- ARGV...", file=sys.stderr)
        return 2
    try:
        environment = {**os.environ, **environment_of(int(argv[0]))}
    except OSError as exc:
        print(f"podnet: the container's process is gone ({exc.strerror}): is it running?", file=sys.stderr)
        return 126
    command = argv[2:]
    try:
        os.execvpe(command[0], command, environment)
    except OSError as exc:
        print(f"podnet: {command[0]}: {exc.strerror}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
