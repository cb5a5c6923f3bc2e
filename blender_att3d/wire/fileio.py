"""Atomic file writes with the standard library only (the add-on, its batch and the wire's users):
a temporary file in the target's folder, flushed to disk, then renamed over the target. A failed
write (a full disk, a kill) leaves the earlier file intact and no partial file under the final name.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (permissions as a plain write would give: 0666 less the
    umask); the folder must exist. Returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
