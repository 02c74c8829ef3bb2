"""kubelet's CrashLoopBackOff: when a container that exited is started again. Pure; the runtime
(podnet.linux.runtime) applies it, the record (podnet.linux.supervisor.record) keeps its state.

Read from kubelet: `kuberuntime_manager.go` doBackOff and client-go's `flowcontrol.Backoff`,
as kubelet.go sets it up (KubeletCrashLoopBackOffMax, 1.32). kubelet keeps one entry per
container: a window and `lastUpdate`, the time it last restarted the container after an exit.
When the container exits at `finished`:

- no entry, or the entry is stale — the container ran more than RESET_AFTER (600 s) between
  its last restart and this exit — and it starts again at once (IsInBackOffSince is false);
  the entry is then made anew with the initial window;
- otherwise it waits until `finished` + window (kubelet: in back-off while now - FinishedAt <
  window; the pod shows CrashLoopBackOff meanwhile), and when restarted the window doubles,
  capped at the maximum.

So a container crashing over and over starts again at once, then after 10 s, 20 s, 40 s … 300 s,
300 s. The maximum is KubeletConfiguration's `crashLoopBackOff.maxContainerRestartPeriod`
(podnet's cluster config: `kubelet.crashLoopBackOff.maxContainerRestartPeriod`, 1 s to 300 s,
default 300 s), and the initial window is the smaller of 10 s and that maximum. The reset is
not client-go's default 2 × maximum: kubelet replaces it (HasExpiredFunc) with a fixed 600 s,
which is 2 × 300 s — a container that ran 10 minutes is counted healthy, whatever the cap.
There is no jitter (kubelet's NewBackOff has none).

Times are seconds on one clock (the runtime uses time.monotonic(), which is the system's since
boot, so a restarted supervisor reads the same clock from the record).
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_WINDOW = 10.0  # kubelet's containerBackOffPeriod
MAX_WINDOW = 300.0  # kubelet's MaxContainerBackOff, the default maxContainerRestartPeriod
RESET_AFTER = 600.0  # kubelet's HasExpiredFunc: running longer than this since the last restart resets


@dataclass(frozen=True)
class BackOff:
    """kubelet's back-off entry for one container (flowcontrol's backoffEntry)."""

    window: float  # seconds the container waits after its next exit (unless the entry is stale by then)
    updated: float  # when kubelet last restarted the container after an exit (lastUpdate)


def initial_window(max_period: float) -> float:
    """The first wait: 10 s, or the maximum if that is smaller (kubelet.go's newCrashLoopBackOff)."""
    return min(INITIAL_WINDOW, max_period)


def stale(entry: BackOff, finished: float) -> bool:
    """Whether the container ran long enough since its last restart for kubelet to start over."""
    return finished - entry.updated > RESET_AFTER


def restart_at(entry: BackOff | None, finished: float) -> float:
    """When kubelet starts again a container that exited at `finished` (restartPolicy allowing):
    at once without a live entry, else once its window has passed since the exit."""
    if entry is None or stale(entry, finished):
        return finished
    return finished + entry.window


def restarted(entry: BackOff | None, finished: float, now: float, max_period: float = MAX_WINDOW) -> BackOff:
    """The entry once kubelet restarts at `now` the container that exited at `finished`
    (flowcontrol's Next): made anew, or its window doubled up to `max_period`."""
    if entry is None or stale(entry, finished):
        return BackOff(initial_window(max_period), now)
    return BackOff(min(entry.window * 2, max_period), now)
