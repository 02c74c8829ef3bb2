"""A running cluster's state on disk: the one reader and writer of its files.

The state directory (ClusterLayout.state_dir, /run/podnet/<cluster>) holds:

    cluster.yaml      the cluster config (`podnet up --config`, with its --name)
    manifests.yaml    the admitted objects as a kubectl `List` (JSON, a YAML document too), and
    manifests.log     each apply's and delete's change since: a journal (durable.py)
    ready             written once every pod was started: the seconds that took
    supervisor.log    the supervisor's log (supervisor.out: its stdout and stderr)
    supervisor.sock   the control socket (ClusterLayout.socket_path)
    running.json      what a restarted supervisor re-adopts the running pods from (record.py)
    events.json       the event store, for the same (record.py)
    watchdog.pid      the watchdog's pid and start time (watchdog.py)

and, beside it, `.<cluster>.failed`: why a supervisor gave up, kept outside because the state
directory goes with the teardown. Files are replaced atomically or journalled (durable.py), so a
crash leaves the applied objects as they were before a change or after it, never half of it.

Other parts keep their own files in the directory: the network builder (network.plan),
teardown's record of the cluster's namespaces (netns), host-local (ipam/) and the runtime
(logs/, hostnet/, nginx/).
"""

from __future__ import annotations


import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from podnet.api.kinds import object_key
from podnet.config import ClusterConfig, parse_config
from podnet.host.layout import ClusterLayout
from podnet.linux.supervisor.durable import Journal, atomic_write, read_journal

CONFIG = "cluster.yaml"
MANIFESTS, MANIFESTS_LOG = "manifests.yaml", "manifests.log"
READY = "ready"
LOG = "supervisor.log"
OUT = "supervisor.out"
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def documents_text(bodies: list[dict[str, Any]]) -> str:
    """Objects as one kubectl `List`: manifests.yaml, and the documents of an apply or delete."""
    # libyaml's emitter when there is one: ten times faster, and what manifests.yaml holds must be
    # written on every apply (1,000 policies: 0.3 s with the pure-Python one)
    return yaml.dump({"apiVersion": "v1", "kind": "List", "items": bodies}, Dumper=_DUMPER, sort_keys=False)


class ClusterState:
    def __init__(self, layout: ClusterLayout, directory: Path | None = None):
        self.layout = layout
        self.directory = directory or layout.state_dir  # another directory: for tests
        self._manifests = Journal(self.directory, MANIFESTS, MANIFESTS_LOG)

    @property
    def log_path(self) -> Path:
        return self.directory / LOG

    @property
    def out_path(self) -> Path:
        return self.directory / OUT

    @property
    def _failure_path(self) -> Path:
        return self.directory.parent / f".{self.layout.cluster}.failed"

    # -- written by `podnet up`, read by the supervisor ------------------------------------------

    def create(self, config: dict[str, Any], bodies: list[dict[str, Any]]) -> None:
        """A new state directory with the config and the manifests. FileExistsError if there is
        one: mkdir is atomic, so of two `up`s with one name exactly one gets past it."""
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self.directory.mkdir()
        # 0711: others may traverse (nginx's workers read their page below it); the control
        # socket itself is made with umask 077, so only root can talk to the cluster.
        os.chmod(self.directory, 0o711)
        atomic_write(self.directory / CONFIG, yaml.safe_dump(config, sort_keys=False))
        self.save_manifests(bodies)

    def config(self) -> ClusterConfig:
        path = self.directory / CONFIG
        return parse_config(path.read_text(), str(path))

    def manifests(self) -> list[dict[str, Any]]:
        """The applied objects, in the order they were first applied: the snapshot with the
        changes logged after it."""
        return self._read_manifests()[0]

    def resume_manifests(self) -> list[dict[str, Any]]:
        """The applied objects, for the one process that writes them (the supervisor): its
        journal goes on from the last change read (a torn last line cut off)."""
        items, seq = self._read_manifests()
        self._manifests.continue_from(seq)
        return items

    def _read_manifests(self) -> tuple[list[dict[str, Any]], int]:
        saved = read_journal(self.directory, MANIFESTS, MANIFESTS_LOG, "the applied objects cannot be read")
        if saved is None:
            raise FileNotFoundError(f"{self.directory / MANIFESTS}: no such file")
        items = saved["state"].get("items") or []
        if not saved["changes"]:
            return items, saved["seq"]
        by_key = {object_key(body): body for body in items}
        for change in saved["changes"]:
            for key, body in change["objects"]:
                if body is None:
                    by_key.pop(tuple(key), None)
                else:
                    by_key[tuple(key)] = body  # in its place, or last if it is new (as an apply merges)
        return list(by_key.values()), saved["seq"]

    def save_manifests(self, bodies: list[dict[str, Any]],
                       changed: Mapping[tuple[str, str, str], dict[str, Any] | None] | None = None) -> None:
        """Every applied object (`bodies`, in order), after an apply or a delete: a line of what
        changed (`changed`: by key, the object as applied, or None if deleted), or a new snapshot
        of all of them when the log has outgrown the last one or `changed` is not given. JSON,
        which is YAML too and written about thirty times faster than libyaml writes YAML."""
        if changed is None or self._manifests.due:
            self._manifests.snapshot({"apiVersion": "v1", "kind": "List", "items": bodies})
        else:
            self._manifests.append({"objects": [[list(key), body] for key, body in changed.items()]})

    # -- written by the supervisor, read by `podnet up` -----------------------------------------

    def mark_ready(self, seconds: float) -> None:
        atomic_write(self.directory / READY, f"{seconds:.3f}\n")

    def is_ready(self) -> bool:
        return (self.directory / READY).exists()

    def record_failure(self, reason: str) -> None:
        self._failure_path.write_text(reason + "\n")

    def take_failure(self) -> str | None:
        """Why the supervisor failed, if it said (read once: the note is removed)."""
        for path in (self._failure_path, self.directory / "failed"):
            if path.exists():
                reason = path.read_text().strip()
                path.unlink(missing_ok=True)
                return reason
        return None
