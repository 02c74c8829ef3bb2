"""Files of a cluster's state that survive a crash: replaced whole, or journalled.

`atomic_write` replaces a file at once (a temporary file in the same directory, fsync, rename,
fsync of the directory): a reader, or a crash, sees the old content or the new, never half.

A `Journal` keeps what changes at every write the way etcd keeps its data: a snapshot (written
by atomic_write) and a log of each change since, one line appended and fsynced per change, so a
write costs the line of what it changed, not a file of everything (10,000 pods: the applied
objects are ~3 MB, the supervisor's record more). Once a log outgrows its snapshot, a new
snapshot replaces both. Lines are numbered (`seq`) and a snapshot says the number of the last
change it holds, so a crash between writing a snapshot and emptying the log replays nothing
twice. Only a log's last line may be torn (a crash in the middle of its append): that change is
lost, as an unanswered write is; a torn line before others means the files cannot be trusted,
and reading them is refused with one clear error.

The supervisor's record (record.py: running.json, apimeta.json and their logs) and the applied
objects (state.py: manifests.yaml and manifests.log) are journals.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from podnet.errors import PodnetError

VERSION = 2
COMPACT_AT = 1 << 20  # bytes of log before a new snapshot, at least (else: once it outgrows the snapshot)
FILE_MODE = 0o600  # root's alone: the records hold Secrets (applied ones, and containers' env resolved from them)


class RecordError(PodnetError):
    pass


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


class Journal:
    """A snapshot file and a log of the changes since: each line one change, numbered (`seq`);
    a snapshot says the number of the last change it holds, so a crash between writing a
    snapshot and emptying the log replays nothing twice."""

    def __init__(self, directory: Path, snapshot: str, log: str):
        self.directory = directory
        self.snapshot_path, self.log_path = directory / snapshot, directory / log
        self.seq = 0
        self._log = None
        self._logged = 0  # bytes appended since the snapshot
        self._snapshot_size = 0

    def snapshot(self, state: dict[str, Any]) -> None:
        """All of it: a new snapshot, then an empty log."""
        text = json.dumps({"version": VERSION, "seq": self.seq, **state})
        atomic_write(self.snapshot_path, text)
        self.close()
        atomic_write(self.log_path, "")
        self._logged, self._snapshot_size = 0, len(text.encode())

    def append(self, change: dict[str, Any]) -> None:
        """One change, on its line, on disk when this returns. A line that could not be written
        whole (a full disk) is cut off again: the next one starts on a line of its own."""
        line = (json.dumps({"seq": self.seq + 1, **change}) + "\n").encode()
        if self._log is None:
            self._log = open(os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE), "ab")
        at = self._log.tell()
        try:
            self._log.write(line)
            self._log.flush()
            os.fsync(self._log.fileno())
        except BaseException:
            self.close()
            _cut(self.log_path, at)
            raise
        self.seq += 1
        self._logged += len(line)

    @property
    def due(self) -> bool:
        """Whether the log has outgrown its snapshot (a new snapshot is worth its writing)."""
        return self._logged > max(COMPACT_AT, self._snapshot_size)

    def continue_from(self, seq: int) -> None:
        """Go on from a journal as read (read_journal: the last change's `seq`): a torn last
        line, the append a crash cut short, is cut off, so the next line is one of its own;
        the sizes found tell when a new snapshot is due."""
        self.close()
        self.seq = seq
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            data = b""
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            _cut(self.log_path, whole)
        self._logged = whole
        try:
            self._snapshot_size = self.snapshot_path.stat().st_size
        except FileNotFoundError:
            self._snapshot_size = 0

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _cut(path: Path, size: int) -> None:
    """`path` ends at `size` bytes, on disk."""
    with open(path, "r+b") as file:
        file.truncate(size)
        os.fsync(file.fileno())


def read_journal(directory: Path, snapshot: str, log: str,
                 consequence: str = "the pods cannot be re-adopted") -> dict[str, Any] | None:
    """The snapshot with the log's changes after it: {"seq", "state": the snapshot's fields,
    "changes": the logged changes in order}; None if there is no snapshot. `consequence`: what an
    unreadable journal means, for its error."""
    path = directory / snapshot
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        saved = json.loads(text)
    except ValueError as exc:
        raise RecordError(f"{path}: not a whole record ({exc}); {consequence}: "
                          "remove the cluster with `podnet down`") from None
    if not isinstance(saved, dict) or saved.get("version") != VERSION:
        raise RecordError(f"{path}: version {saved.get('version') if isinstance(saved, dict) else None!r}, "
                          f"this podnet reads version {VERSION}; {consequence}: "
                          "remove the cluster with `podnet down`")
    seq = int(saved.pop("seq", 0))
    saved.pop("version")
    try:
        lines = (directory / log).read_text().splitlines()
    except FileNotFoundError:
        lines = []
    changes = []
    for number, line in enumerate(lines, 1):
        try:
            change = json.loads(line)
        except ValueError:
            if number == len(lines):
                break  # the append a crash cut short: that change was never answered
            raise RecordError(f"{directory / log}:{number}: not a whole line; {consequence}: "
                              "remove the cluster with `podnet down`") from None
        if change["seq"] > seq:
            changes.append(change)
            seq = change["seq"]
    return {"seq": seq, "state": saved, "changes": changes}
