"""Python's garbage collector, kept off the path of writes and requests.

The supervisor and the API server hold a cluster's objects for as long as they run (10,000 pods:
millions of Python objects). A full collection visits all of them, ~0.3-0.4 s with the
interpreter held, and it came every few writes; both processes call Collector.round each round
of their loops instead.
"""

from __future__ import annotations

import gc
import time

FULL_COLLECTION_EVERY, QUIET_FOR = 600.0, 10.0  # seconds
COLLECTION_AT_LEAST_EVERY = 3600.0  # seconds: busy or not, what was frozen is looked at again


class Collector:
    """Python's garbage collector, kept off the write path. Its full collection visits every
    object the process holds: at 10,000 pods ~0.4 s with the interpreter held, and it came every
    few writes (each leaves some objects behind that live on), so one write in eight waited it
    out. What has lived through a round is long-lived by nature (the computed cluster, the
    records): each round freezes it (gc.freeze, out of the collector's sight; the young
    collections stay, for what a round makes and drops). The cyclic garbage that could be frozen
    with it is little (measured: ~10 objects in 40 writes): a full collection takes it every
    FULL_COLLECTION_EVERY seconds, once the cluster has been quiet (no change) for QUIET_FOR, and
    at least every COLLECTION_AT_LEAST_EVERY seconds however busy it is (what was frozen does not
    grow without bound). The API server's process keeps its watch cache alike."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.generation, self.changed_at = None, clock()
        self.collected_at = clock()

    def round(self, generation: int) -> None:
        now = self.clock()
        if generation != self.generation:
            self.generation, self.changed_at = generation, now
        quiet = now - self.changed_at >= QUIET_FOR
        if now - self.collected_at >= (FULL_COLLECTION_EVERY if quiet else COLLECTION_AT_LEAST_EVERY):
            gc.unfreeze()
            gc.collect()
            self.collected_at = now
        gc.freeze()
