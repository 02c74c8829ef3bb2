"""Writing credentials so that no one sees half a file or a moment of wrong permissions."""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data`: written beside it under a temporary name with `mode` from the
    start (a key is never readable by others, not even for a moment), synced, then renamed —
    a kill leaves the old file or the new one, never part of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, mode)  # O_CREAT's mode is masked by the umask; an existing file keeps its own
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
