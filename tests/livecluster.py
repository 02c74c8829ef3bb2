"""Helpers for tests that drive a real cluster through the `podnet` command (root tests)."""

import os
import subprocess
import sys
from pathlib import Path


def podnet(*argv, check=True, timeout=90):
    """Run `podnet ARGV…` as a user would, with this test run's podnet on the path."""
    proc = subprocess.run([sys.executable, "-m", "podnet", *argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    if check and proc.returncode != 0:
        raise AssertionError(f"podnet {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def leftovers(name: str) -> list[str]:
    """What of cluster NAME is still on the host: namespaces, /etc/netns files, its state."""
    prefix = f"podnet-{name}."
    found = [n for n in os.listdir("/run/netns") if n.startswith(prefix)] if os.path.isdir("/run/netns") else []
    found += [str(p) for p in Path("/etc/netns").glob(f"{prefix}*")] if Path("/etc/netns").is_dir() else []
    if Path(f"/run/podnet/{name}").exists():
        found.append(f"/run/podnet/{name}")
    return found
