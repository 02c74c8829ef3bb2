"""The supervisor's process: start the cluster, then loop until `podnet down` (or a signal).

    python -m podnet.linux.supervisor --name NAME           (started by `podnet up`)
    python -m podnet.linux.supervisor --name NAME --adopt   (`podnet up` on a cluster whose supervisor died)
    python -m podnet.linux.supervisor --name NAME --standby (the watchdog's successor, waiting to adopt)

The loop is thin on purpose: the control socket answers in its own threads (server.py),
and every REAP_INTERVAL the main thread reaps containers (restartPolicy, back-off), retries
a node's failed NetworkPolicy sync (with back-off), checks that the nodes' kube-proxy and
NetworkPolicy rules were not changed behind podnet's back (resyncing those that were: kube-proxy's
canary, podnet.proxy.canary) and, when the prober reported a readiness
change, recomputes the cluster (core.Supervisor.recompute); then it writes the record a
restarted supervisor adopts the pods from (record.py), if it changed. With --adopt the
supervisor takes over the pods a dead one left running instead of building the cluster; if
that fails, nothing is torn down (the pods keep running; `podnet down` removes them).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from podnet.errors import PodnetError
from podnet.host.layout import ClusterLayout
from podnet.linux.supervisor import record
from podnet.linux.collector import Collector
from podnet.linux.supervisor.core import Supervisor
from podnet.linux.supervisor.server import handle, serving
from podnet.linux.supervisor.state import ClusterState

log = logging.getLogger("podnet.supervisor")
REAP_INTERVAL = 0.2


def step(supervisor: Supervisor, collector: Collector | None = None) -> None:
    """One round: reap, then recompute if readiness changed. Errors are logged, never
    raised: one pod's trouble must never take the cluster down."""
    try:
        supervisor.reap()
    except Exception:
        log.exception("reaping containers failed")
    try:
        supervisor.refresh_tokens()
    except Exception:
        log.exception("refreshing the pods' ServiceAccount tokens failed")
    try:
        supervisor.renew_mesh_certificates()
    except Exception:
        log.exception("renewing the mesh's certificates failed")
    try:
        supervisor.retry_policies()
    except Exception:
        log.exception("retrying a NetworkPolicy sync failed")
    try:
        supervisor.check_rules()  # kube-proxy's canary, and the NetworkPolicy tables'
    except Exception:
        log.exception("checking the nodes' rules failed")
    if supervisor.state_changed.is_set():
        supervisor.state_changed.clear()
        try:
            supervisor.recompute()
        except Exception:
            log.exception("recomputing after a readiness change failed")
    if supervisor.apiserver is not None and not supervisor.stopping.is_set():
        try:
            supervisor.apiserver.ensure()  # started again if it died (kubelet's back-off)
        except Exception:
            log.exception("starting the API server failed")
    try:
        supervisor.persist()
    except Exception:
        log.exception("writing the supervisor's record failed")
    if collector is not None:
        collector.round(supervisor.generation)


def run(supervisor: Supervisor, socket_path: Path | None = None, interval: float = REAP_INTERVAL,
        collector: Collector | None = None) -> None:
    """Answer the control socket and step until asked to stop. `collector`: the supervisor's
    process has one (a test running supervisors in its own process keeps its collector as it is)."""
    with serving(socket_path or supervisor.layout.socket_path, lambda message: handle(supervisor, message)):
        while not supervisor.stopping.wait(interval):
            step(supervisor, collector)
        supervisor.stop_watchers()  # a signal stopped us: the watches answer before the socket goes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m podnet.linux.supervisor")
    parser.add_argument("--name", required=True)
    parser.add_argument("--adopt", action="store_true", help="take over the pods a dead supervisor left running")
    parser.add_argument("--standby", action="store_true",
                        help="wait for a line 'adopt' on stdin, then --adopt (the watchdog's ready successor)")
    args = parser.parse_args(argv)
    if args.standby:
        if sys.stdin.readline().strip() != "adopt":
            return 0  # the watchdog ended: nothing to take over
        args.adopt = True
    layout = ClusterLayout(args.name)
    state = ClusterState(layout)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=[logging.FileHandler(state.log_path)])
    supervisor = Supervisor(layout, state)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: supervisor.stopping.set())
    started = time.monotonic()
    if args.adopt:
        return _adopt(supervisor, state, started)
    try:
        supervisor.start()
        state.mark_ready(time.monotonic() - started)
        log.info("cluster %s up in %.2fs", args.name, time.monotonic() - started)
        run(supervisor, collector=Collector())
    except Exception as exc:
        log.exception("supervisor failed")
        reason = str(exc) if isinstance(exc, PodnetError) else f"{type(exc).__name__}: {exc}"
        supervisor.stop()
        state.record_failure(reason)  # beside the state directory, which went with the teardown
        return 1
    supervisor.stop()
    log.info("cluster %s stopped", args.name)
    return 0


def _adopt(supervisor: Supervisor, state: ClusterState, started: float) -> int:
    """Take over the running pods, then loop as usual. A failure leaves everything as it was
    (no teardown: the pods run on, and `podnet down` removes them)."""
    try:
        saved = record.read_saved(state.directory)
        if saved is None:
            raise PodnetError(f"{state.directory / record.RECORD} is missing: the cluster's supervisor never "
                              "recorded its pods; remove the cluster with `podnet down`")
        adopted = supervisor.adopt(saved)
    except Exception as exc:
        log.exception("adopting the running pods failed")
        state.record_failure(str(exc) if isinstance(exc, PodnetError) else f"{type(exc).__name__}: {exc}")
        return 1
    log.info("cluster %s: %d pods re-adopted in %.2fs", supervisor.layout.cluster, len(adopted),
             time.monotonic() - started)
    run(supervisor, collector=Collector())
    supervisor.stop()
    log.info("cluster %s stopped", supervisor.layout.cluster)
    return 0
