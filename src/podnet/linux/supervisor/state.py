"""A running cluster's state on disk: the one reader and writer of its files.

The state directory (ClusterLayout.state_dir, /run/podnet/<cluster>) holds:

    cluster.yaml      the cluster config (`podnet up --config`, with its --name)
    manifests.yaml    the admitted objects as a kubectl `List`; apply and delete rewrite it
    ready             written once every pod was started: the seconds that took
    supervisor.log    the supervisor's log (supervisor.out: its stdout and stderr)
    supervisor.sock   the control socket (ClusterLayout.socket_path)
    running.json      what a restarted supervisor re-adopts the running pods from (record.py)
    events.json       the event store, for the same (record.py)
    watchdog.pid      the watchdog's pid and start time (watchdog.py)

and, beside it, `.<cluster>.failed`: why a supervisor gave up, kept outside because the state
directory goes with the teardown. Files are replaced atomically (a temporary file in the same
directory, fsync, rename), so a crash leaves the old manifests or the new, never half of them.

Other parts keep their own files in the directory: the network builder (network.plan),
teardown's record of the cluster's namespaces (netns), host-local (ipam/) and the runtime
(logs/, hostnet/, nginx/).
"""

from __future__ import annotations

import json

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from podnet.config import ClusterConfig, parse_config
from podnet.host.layout import ClusterLayout

CONFIG = "cluster.yaml"
MANIFESTS = "manifests.yaml"
READY = "ready"
LOG = "supervisor.log"
OUT = "supervisor.out"
FILE_MODE = 0o644
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def documents_text(bodies: list[dict[str, Any]]) -> str:
    """Objects as one kubectl `List`: manifests.yaml, and the documents of an apply or delete."""
    # libyaml's emitter when there is one: ten times faster, and what manifests.yaml holds must be
    # written on every apply (1,000 policies: 0.3 s with the pure-Python one)
    return yaml.dump({"apiVersion": "v1", "kind": "List", "items": bodies}, Dumper=_DUMPER, sort_keys=False)


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` all at once: readers see the old file or the new one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


class ClusterState:
    def __init__(self, layout: ClusterLayout, directory: Path | None = None):
        self.layout = layout
        self.directory = directory or layout.state_dir  # another directory: for tests
        # each saved input's JSON, by the input (held, so its id is not reused): an apply changes
        # a few of thousands, and only those are written out again (inputs are replaced, never
        # changed in place: reconcile.change_request)
        self._texts: dict[int, tuple[dict[str, Any], str]] = {}

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
        text = (self.directory / MANIFESTS).read_text()
        try:  # written by save_manifests: JSON (a YAML document too)
            return json.loads(text).get("items") or []
        except ValueError:  # `podnet up`'s first writing, as YAML
            return yaml.safe_load(text).get("items") or []

    def save_manifests(self, bodies: list[dict[str, Any]]) -> None:
        """After every apply and delete, every input: as JSON, which is YAML too and written
        about thirty times faster than libyaml writes YAML (10,000 pods' inputs: 2 s → 70 ms),
        each input's text made once (a write among them: 30 ms → 3 ms)."""
        texts = {}
        for body in bodies:
            known = self._texts.get(id(body))
            texts[id(body)] = known if known is not None and known[0] is body else (body, json.dumps(body))
        self._texts = texts
        items = ", ".join(texts[id(body)][1] for body in bodies)
        atomic_write(self.directory / MANIFESTS, f'{{"apiVersion": "v1", "kind": "List", "items": [{items}]}}')

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
