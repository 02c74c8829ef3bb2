"""What a restarted supervisor needs to take over the running pods: running.json and its log.

The supervisor is crash-only: whatever a SIGKILL would lose that the pods' world depends on
is in the state directory, so `podnet up --name NAME` on a cluster whose supervisor died
starts one that re-adopts the pods instead of making them again (no pod restarted, no
address changed). manifests.yaml (state.py) holds the applied objects and host-local's
store (ipam/) the addresses; this record holds the rest:

- pods: each running sandbox — its namespace, its pause process and its containers' processes
  by pid and start time (podnet.linux.adopted: a pid alone could be another process after a
  reuse), each container's argv, environment, log, restart count, last exit and when it was
  seen, and kubelet's back-off (its entry, podnet.crashloop, and when the restart is due:
  monotonic times, the system's clock since boot, which a new supervisor reads alike);
- bodies: the running pods as computed (name, node, address), fed back as the carried-over pods
  of the first computation, as after an apply; terminating: the pods being deleted, and
  graceDeadlines: when each one's grace period ends (a successor goes on with what is left);
- containerState: kubelet's probe results, so readiness (and EndpointSlices) stay as they were
  until the new prober says otherwise;
- apart, in apimeta.json and apimeta.log (a journal): the API server's fields of every object
  (uids, creationTimestamps, resourceVersions, generations, condition times, pod start times),
  what the controllers last said (no event is said twice) and the state's generation, which a
  successor counts on from (above it: watchers hold one the dead supervisor served and must see
  the next change as one);
- and, apart in events.json (written when the store changed), the events and their counter.

The kernel's rules (kube-proxy's, NetworkPolicy's, portmap's) are not recorded: they stayed in
the node namespaces, and the new supervisor syncs them again from the computed cluster.

Both are journals (durable.py), kept the way etcd keeps its data: a snapshot (running.json,
apimeta.json) and a log of each change since (running.log, apimeta.log) — a write costs the line
of what it changed, not a record of every pod and object. The supervisor writes when what the record is made of
changed (podnet.linux.counted: at 10,000 pods, building it to compare would hold the lock ~0.1 s
every round). A missing record means no supervisor ever ran to the end of `up`; an unreadable one
(cut short by hand, another version) is refused with one clear error: nothing is adopted from a
record that may be wrong. Only a log's last line may be torn (a crash in the middle of its
append): that change is lost, as an unanswered write is.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from podnet.crashloop import BackOff
from podnet.linux.adopted import AdoptedProcess, start_time
from podnet.linux.runtime import Container, PodSandbox
from podnet.linux.supervisor.durable import VERSION, Journal, RecordError, atomic_write, read_journal

RECORD = "running.json"
EVENTS = "events.json"
META, META_LOG = "apimeta.json", "apimeta.log"
RECORD_LOG = "running.log"
class ProcessIds:
    """The start time of each process we know, read once from /proc (a pid stays one process
    while it runs, and a Popen's pid is not reused before we have waited for it)."""

    def __init__(self):
        self._known: dict[int, int | None] = {}

    def entry(self, process) -> dict[str, int] | None:
        if process is None or process.poll() is not None:
            return None
        if isinstance(process, AdoptedProcess):
            return {"pid": process.pid, "started": process.started}
        if process.pid not in self._known:
            self._known[process.pid] = start_time(process.pid)
        started = self._known[process.pid]
        return None if started is None else {"pid": process.pid, "started": started}

    def forget_except(self, pids: set[int]) -> None:
        self._known = {pid: started for pid, started in self._known.items() if pid in pids}


def _process(entry: dict[str, int] | None) -> AdoptedProcess | None:
    return None if entry is None else AdoptedProcess(int(entry["pid"]), int(entry["started"]))


def sandbox_record(sandbox: PodSandbox, ids: ProcessIds) -> dict[str, Any]:
    return {
        "namespace": sandbox.namespace, "name": sandbox.name, "netns": sandbox.netns,
        "hostNetwork": sandbox.host_network, "terminating": sandbox.terminating,
        "pause": ids.entry(sandbox.pause),
        "containers": [{
            "name": c.name, "argv": c.argv, "env": c.env, "log": str(c.log), "restartPolicy": c.restart_policy,
            "workdir": c.workdir, "waiting": list(c.waiting) if c.waiting else None, "backoffAt": c.backoff_at,
            "image": c.image, "process": ids.entry(c.process), "restarts": c.restarts, "lastExit": c.last_exit,
            "nextStart": c.next_start, "note": c.note, "startedAt": c.started_at, "finishedAt": c.finished_at,
            "backoff": [c.backoff.window, c.backoff.updated] if c.backoff else None,
            "logStarts": c.log_starts, "sidecar": c.sidecar, "held": c.held,
        } for c in sandbox.containers],
    }


def adopted_sandbox(entry: dict[str, Any], pod) -> PodSandbox:
    """The sandbox a record describes, its processes adopted (those gone are seen as exited,
    with kubelet's unknown exit code: the runtime's reap applies restartPolicy to them)."""
    pause = _process(entry["pause"]) or AdoptedProcess.ended()  # gone: reap makes the sandbox again
    sandbox = PodSandbox(entry["namespace"], entry["name"], entry["netns"], pause,
                         host_network=bool(entry["hostNetwork"]), pod=pod, terminating=bool(entry["terminating"]))
    for c in entry["containers"]:
        container = Container(c["name"], list(c["argv"]), dict(c["env"]), Path(c["log"]), c["restartPolicy"],
                              workdir=c["workdir"], waiting=tuple(c["waiting"]) if c["waiting"] else None,
                              backoff_at=float(c["backoffAt"]), image=c["image"], restarts=int(c["restarts"]),
                              last_exit=c["lastExit"], next_start=float(c["nextStart"]), note=c["note"],
                              started_at=c["startedAt"], finished_at=float(c.get("finishedAt") or 0.0),
                              backoff=BackOff(*map(float, c["backoff"])) if c.get("backoff") else None,
                              log_starts=[int(n) for n in c.get("logStarts") or ()],
                              sidecar=bool(c.get("sidecar")), held=bool(c.get("held")), pod_ref=sandbox.ref)
        container.process = _process(c["process"])
        if container.process is None and not container.waiting and c["lastExit"] is None and not container.held:
            # it ran when last recorded, or was about to start: an end nobody saw
            container.process = AdoptedProcess.ended()
        sandbox.containers.append(container)
    return sandbox


def write_events(directory: Path, events: dict[str, Any]) -> None:
    """The event store (events.json, apart: events come more often than anything else changes)."""
    atomic_write(directory / EVENTS, json.dumps(events))


def read_events(directory: Path) -> dict[str, Any] | None:
    """The event store as last written; None if there is none or it cannot be read (events are
    a history: a restarted supervisor without them says so in its log and goes on)."""
    try:
        saved = json.loads((directory / EVENTS).read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise RecordError(f"{directory / EVENTS}: not a whole record ({exc})") from None
    return saved if isinstance(saved, dict) else None


def write(directory: Path, record: dict[str, Any]) -> None:
    """running.json as a whole (and no change logged after it)."""
    Journal(directory, RECORD, RECORD_LOG).snapshot(record)


def read(directory: Path) -> dict[str, Any] | None:
    """The record as last written: running.json with the changes logged after it applied (`seq`:
    the last one's number, which a successor's journal counts on from); None if there is none;
    RecordError if it cannot be trusted."""
    saved = read_journal(directory, RECORD, RECORD_LOG)
    if saved is None:
        return None
    record = keyed(saved["state"])
    for change in saved["changes"]:
        apply_pods_change(record, change)
    return {"version": VERSION, "seq": saved["seq"], **listed(record)}


def keyed(record: dict[str, Any]) -> dict[str, Any]:
    """A record with its pods and bodies by pod ref (as the supervisor holds it between writes)."""
    out = dict(record)
    for part, ref in (("pods", _sandbox_ref), ("bodies", _body_ref)):
        if part in record:
            out[part] = {ref(entry): entry for entry in record[part]}
    return out


def listed(record: dict[str, Any]) -> dict[str, Any]:
    """A keyed record as running.json holds it: pods and bodies as lists, by ref."""
    out = dict(record)
    for part in ("pods", "bodies"):
        if part in record:
            out[part] = [record[part][ref] for ref in sorted(record[part])]
    return out


def pods_change(before: dict[str, Any], after: dict[str, Any], refs: Collection[str] | None = None) -> dict[str, Any]:
    """A line of running.log: what differs between two keyed records, by pod ref for the pods'
    processes, their bodies and their containers' states (None: gone), whole for the rest
    (small: the pods being deleted). `refs`: the only pods that can differ (those changed since,
    counted.py); by default any."""
    change: dict[str, Any] = {}
    for part in ("pods", "bodies", "containerState"):
        old, new = before[part], after[part]
        moved = {}
        for ref in (old.keys() | new.keys()) if refs is None else refs:
            entry, was = new.get(ref), old.get(ref)
            if entry is not was and entry != was:
                moved[ref] = entry
        if moved:
            change[part] = moved
    for part in ("graceDeadlines", "terminating"):
        if before[part] != after[part]:
            change[part] = after[part]
    return change


def apply_pods_change(record: dict[str, Any], change: dict[str, Any]) -> None:
    """A keyed record with a running.log line's change made."""
    for part in ("pods", "bodies", "containerState"):
        for ref, entry in (change.get(part) or {}).items():
            if entry is None:
                record.setdefault(part, {}).pop(ref, None)
            else:
                record.setdefault(part, {})[ref] = entry
    for part in ("graceDeadlines", "terminating"):
        if part in change:
            record[part] = change[part]


def _sandbox_ref(entry: dict[str, Any]) -> str:
    return f"{entry['namespace']}/{entry['name']}"


def _body_ref(body: dict[str, Any]) -> str:
    return f"{body['metadata']['namespace']}/{body['metadata']['name']}"


def read_meta(directory: Path) -> dict[str, Any] | None:
    return read_journal(directory, META, META_LOG)


def read_saved(directory: Path) -> dict[str, Any] | None:
    """What a restarted supervisor adopts from: the record (read), with the API fields'
    snapshot and journal (read_meta) under "meta"; None if there is no record."""
    saved = read(directory)
    if saved is None:
        return None
    meta = read_meta(directory)
    if meta is None:
        raise RecordError(f"{directory / META} is missing: the pods cannot be re-adopted: "
                          "remove the cluster with `podnet down`")
    return {**saved, "meta": meta}
