"""A container's program tells the runtime that it has started.

A container runtime reports a container started once its entrypoint runs; kubelet's first
probe follows right after (plus initialDelaySeconds). podnet's stand-ins for images (CoreDNS,
the ingress controller) are Python programs whose interpreter start-up a compiled binary does
not have: probed the moment the process is spawned, they would fail their first readiness
probe and wait a whole periodSeconds (10 s for CoreDNS). So the runtime gives them a file to
touch once they listen (PODNET_STARTED_FILE), and the prober holds a container's probes until
then (podnet.linux.runtime.program_started, podnet.linux.prober): kubelet's rules are
unchanged — initialDelaySeconds still counts from the process's start, periodSeconds and the
thresholds are as given — only the first attempt is not spent on an interpreter still loading.
A program that never says so is probed after runtime.STARTED_GRACE anyway.
"""

from __future__ import annotations

import os
from pathlib import Path

STARTED_ENV = "PODNET_STARTED_FILE"


def signal_started() -> None:
    """Say this container's program runs (once; children do not inherit the duty)."""
    path = os.environ.pop(STARTED_ENV, None)
    if path:
        try:
            Path(path).touch()
        except OSError:
            pass  # the runtime falls back to probing after its grace period
