"""A cluster's kubeconfig, and keeping the user's kubeconfig file in step with it, as kind does.

`render` gives the cluster's own kubeconfig: cluster, user and context all named
`podnet-<cluster>` (kind's `kind-<cluster>`), credentials embedded as base64 PEM
(certificate-authority-data, client-certificate-data, client-key-data), so the file stands alone.

`merge` and `remove` edit the file kubectl would write to (`default_path`: client-go's rule, as
kind follows it — $KUBECONFIG's only entry, or of several the first that exists, else the last;
without $KUBECONFIG ~/.kube/config). They keep every other entry and field as they were,
take kubectl's own lock (`<file>.lock`, created exclusively: kubectl and kind honour it) and
replace the file atomically with mode 0600, so an interrupted `up` never leaves a half file.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from podnet.pki.files import atomic_write

PREFIX = "podnet-"
LOCK_TIMEOUT = 10.0  # seconds to wait for another writer's lock


class KubeconfigError(Exception):
    """The kubeconfig file cannot be read or written; the message names it and says why."""


def context_name(cluster: str) -> str:
    return f"{PREFIX}{cluster}"


def render(cluster: str, server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> dict[str, Any]:
    """The cluster's kubeconfig (current-context set to it)."""
    name = context_name(cluster)

    def data(pem: bytes) -> str:
        return base64.b64encode(pem).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"cluster": {"certificate-authority-data": data(ca_pem), "server": server}, "name": name}],
        "contexts": [{"context": {"cluster": name, "user": name}, "name": name}],
        "current-context": name,
        "preferences": {},
        "users": [{"name": name, "user": {"client-certificate-data": data(cert_pem),
                                          "client-key-data": data(key_pem)}}],
    }


def dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def default_path() -> Path:
    """The file kubectl writes a new context to (client-go's PathOptions.GetDefaultFilename)."""
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if not paths:
        return Path.home() / ".kube" / "config"
    if len(paths) == 1:
        return Path(paths[0])
    return next((Path(p) for p in paths if Path(p).exists()), Path(paths[-1]))


def _load(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise KubeconfigError(f"{path}: cannot read the kubeconfig: {error.strerror}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None)
        raise KubeconfigError(f"{where}: the kubeconfig is not valid YAML" + (f" ({problem})" if problem else "")
                              + "; it was left as it is") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise KubeconfigError(f"{path}: the kubeconfig is not a mapping (kind: Config); it was left as it is")
    for section in ("clusters", "contexts", "users"):
        if not isinstance(config.get(section) or [], list):
            raise KubeconfigError(f"{path}: {section} is not a list; the kubeconfig was left as it is")
    return config


def _write(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # through a symlink, as kubectl writes (a ~/.kube/config linked elsewhere stays a link)
        atomic_write(Path(os.path.realpath(path)), dump(config).encode(), 0o600)
    except OSError as error:
        raise KubeconfigError(f"{path}: cannot write the kubeconfig: {error.strerror}") from None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """client-go's lock: `<file>.lock` created exclusively, removed when done."""
    lock = path.with_name(path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            break
        except FileExistsError:
            if time.monotonic() >= deadline:
                raise KubeconfigError(f"{lock} exists: another program is writing the kubeconfig (if none is, "
                                      "remove the lock file)") from None
            time.sleep(0.05)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _replace(entries: list, new: list) -> list:
    """`entries` with those named like one of `new` replaced in place, the rest of `new` appended."""
    by_name = {entry.get("name"): entry for entry in new}
    kept = [by_name.pop(entry.get("name")) if isinstance(entry, dict) and entry.get("name") in by_name else entry
            for entry in entries]
    return kept + [entry for entry in new if entry.get("name") in by_name]


def merge(path: Path, config: dict[str, Any]) -> None:
    """Add (or replace) `config`'s clusters, users and contexts in the kubeconfig at `path`, and
    make its current-context the current one; everything else in the file stays."""
    with _locked(path):
        existing = _load(path)
        merged = dict(existing) or {"apiVersion": "v1", "kind": "Config", "preferences": {}}
        for section in ("clusters", "contexts", "users"):
            merged[section] = _replace(list(existing.get(section) or []), config.get(section) or [])
        if config.get("current-context"):
            merged["current-context"] = config["current-context"]
        _write(path, merged)


def remove(path: Path, cluster: str) -> bool:
    """Remove the cluster's `podnet-<cluster>` cluster, user and context from the kubeconfig at
    `path`, and its current-context if it pointed there (kubectl then has none, as after kind's
    delete). Whether anything was removed; a missing file is left missing."""
    if not path.exists():
        return False
    name = context_name(cluster)
    with _locked(path):
        config = _load(path)
        changed = False
        for section in ("clusters", "contexts", "users"):
            entries = list(config.get(section) or [])
            kept = [e for e in entries if not (isinstance(e, dict) and e.get("name") == name)]
            if len(kept) != len(entries):
                config[section] = kept
                changed = True
        if config.get("current-context") == name:
            config["current-context"] = ""
            changed = True
        if changed:
            _write(path, config)
        return changed
