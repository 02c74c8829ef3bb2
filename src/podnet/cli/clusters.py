"""podnet get clusters: the running clusters, one name a line, as `kind get clusters`.

Not a kind of object (no cluster holds the others), so the entry point hands `get clusters`
here before `get` parses resource types; it asks only which supervisors answer on this machine."""

from __future__ import annotations

import os
import sys

from podnet.errors import PodnetError, UsageError
from podnet.host.control import running_clusters

HELP = """usage: podnet get clusters

Lists the running podnet clusters, one name a line (as `kind get clusters`).

examples:
  podnet get clusters
"""


def run_get_clusters(argv: list[str]) -> int:
    """`podnet get clusters ARGV…` (as kind's, it takes no arguments but --help)."""
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(HELP)
        return 0
    if argv:
        raise UsageError(f"error: unknown argument {argv[0]!r}: `podnet get clusters` takes none")
    if os.geteuid() != 0:
        raise PodnetError("podnet get clusters asks each running cluster's supervisor, which needs root")
    names = running_clusters()
    if not names:
        print("No podnet clusters found.", file=sys.stderr)  # kind: "No kind clusters found."
    for name in names:
        print(name)
    return 0
