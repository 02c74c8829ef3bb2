"""A container's program tells the runtime that it has started.

A container runtime reports a container started once its entrypoint runs; kubelet's first
probe follows right after (plus initialDelaySeconds). podnet's stand-ins for images (CoreDNS,
the ingress controller) are Python programs whose interpreter start-up a compiled binary does
not have: probed the moment the process is spawned, they would fail their first readiness
probe and wait a whole periodSeconds (10 s for CoreDNS). So the runtime gives them a file to
touch once they run (PODNET_STARTED_FILE), and the prober counts the container started from
then (podnet.linux.runtime.started_file, podnet.linux.prober).
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
