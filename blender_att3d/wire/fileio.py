"""Atomic, durable writes: every file and folder the project writes goes through here (standard
library only, so the add-on and the backend share it; ``backend/fileio.py`` re-exports it).

A reader (or a process killed mid-write, a full disk, a power cut) sees the old content or the new
one, never half of one: data goes to a hidden temporary sibling, is flushed to disk (``fsync``),
then renamed over the target, and the parent folder is synced so the rename itself survives. A write
that fails removes its temporary; :func:`write_error_text` says why in one line (a full disk named
as such, with the space left).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: errors of a disk that has no room left (a quota counts as one; so does a file-size limit)
DISK_FULL_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if e)
#: below this much free space a failed write is probably the disk being full
NEARLY_FULL_BYTES = 256 * 2**20
#: a writer we cannot see into (Blender's own) that leaves less than this free may have been cut
#: short without saying so: Blender 5.0 saved a 4 KB .blend onto a full disk without an error
FULL_AFTER_WRITE_BYTES = 256 * 1024


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not every platform can open a folder (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file under ``folder`` (and the folders themselves) to disk."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(root))


def _write_all(f: Any, data: bytes) -> None:
    """The one place file bytes are written (tests make it fail as a full disk does)."""
    f.write(data)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically and durably; the folder must exist. The file gets the
    permissions a plain write would give (0666 less the umask: exports others may read), or
    ``mode`` (e.g. ``0o600`` for a secret), set before it becomes visible."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # created 0600 when a mode is asked for: a secret is never readable by others, not even briefly
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666 if mode is None else 0o600)
    try:
        if mode is not None and hasattr(os, "fchmod"):  # not on Windows before Python 3.13
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, mode: int | None = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def temporary_name(path: Path) -> Path:
    """A hidden sibling of ``path`` with the same extension (exporters choose their format by it),
    which :func:`is_temporary` recognises."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(3)}{path.suffix}")


def _check_room_left(folder: Path) -> None:
    """After a writer we cannot see into: a disk left (nearly) full means it may have been cut short."""
    free = free_bytes(folder)
    if free is not None and free < FULL_AFTER_WRITE_BYTES:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (the disk filled up while it was written)")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """For writers that take a file name (Blender's save and exporters): ``with atomic_output(p) as
    tmp: write(tmp)``; ``tmp`` is flushed and renamed to ``p`` when the block ends, or removed (with
    the ``tmp@`` / ``tmp1`` files Blender's own writer may leave) when it raises. A block that
    writes nothing to ``tmp``, or leaves the disk full, is an error: ``p`` stays as it was."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise OSError(errno.EIO, f"nothing was written to {tmp.name}")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _check_room_left(path.parent)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "@"), tmp.with_name(tmp.name + "1")):
            try:
                leftover.unlink()
            except OSError:
                pass
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_files(folder: str | os.PathLike) -> Iterator[Path]:
    """For writers that make several files beside each other (an OBJ and its MTL, a USD and its
    textures): ``with atomic_files(folder) as tmp: write(tmp / name)``; when the block ends, every
    file (and folder) written into ``tmp`` replaces its namesake in ``folder``, each atomically; when
    it raises (or the disk is left full), nothing in ``folder`` changes."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".files.tmp-", dir=folder))
    try:
        yield tmp
        fsync_tree(tmp)
        _check_room_left(folder)
        for p in sorted(tmp.iterdir()):
            target = folder / p.name
            if p.is_dir() and target.is_dir():
                _swap_dir_in(p, target)
            else:
                os.replace(p, target)
        _fsync_dir(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_dir_in(new: Path, target: Path) -> None:
    """Put folder ``new`` where folder ``target`` is: the old one moves aside first (a folder cannot be
    renamed over a non-empty one), then goes."""
    old = target.with_name(f".{target.name}.old.{os.getpid()}")
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def write_folder_atomically(folder: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Build a folder with ``write(tmp)`` in a temporary sibling, flush it, then swap it into place,
    so a reader (or a kill mid-write) sees the old folder or the new one, never half of one."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        write(tmp)
        fsync_tree(tmp)
        if folder.exists():
            _swap_dir_in(tmp, folder)
        else:
            os.replace(tmp, folder)
        _fsync_dir(folder.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary of this module's writers."""
    n = path.name
    return n.startswith(".") and (n.endswith(".tmp") or ".tmp-" in n or ".old." in n)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete what a killed writer left in ``folder`` (hidden temporaries, see :func:`is_temporary`).
    Call it only where no other writer can be at work. Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if is_temporary(p):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} bytes"  # pragma: no cover


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free space on the disk that holds ``path`` (its nearest existing folder), or None."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def is_disk_full(e: BaseException) -> bool:
    """``e`` says the disk is full: an OSError with ENOSPC (or a quota, a size limit), or an error of
    a writer that only passes the system's message on (Blender's "No space left on device")."""
    if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
        return True
    text = str(e)
    return any(os.strerror(n) in text for n in DISK_FULL_ERRNOS) or "[Errno 28]" in text


def write_error_text(path: str | os.PathLike, e: BaseException, existed: bool | None = None) -> str:
    """One line for a write of ``path`` that failed with ``e``: the reason (a full disk named as such,
    with the space left, also where the writer said something else: Blender 4.2 reports a save into
    a full disk as "No such file or directory") and that the earlier file is unchanged (``existed``:
    whether there was one; None: look)."""
    path = Path(path)
    if existed is None:
        existed = path.exists()
    free = free_bytes(path.parent)
    if is_disk_full(e) or (free is not None and free < FULL_AFTER_WRITE_BYTES):
        why = "the disk is full" + (f" ({_size(free)} free)" if free is not None else "")
    else:
        why = " ".join((e.strerror if isinstance(e, OSError) and e.strerror else str(e)).split()) or type(e).__name__
        why = why.removeprefix("Error: ").rstrip(".")
        if free is not None and free < NEARLY_FULL_BYTES:
            why += f"; only {_size(free)} free on that disk: it may be full"
    kept = "the earlier file is unchanged" if existed else "nothing was left there"
    return f"could not write {path}: {why}; {kept}"


class WriteFailed(OSError):
    """A file could not be written; the message is one line (:func:`write_error_text`). An OSError,
    so code that already handles a failed write (``except OSError``) reports it as it is."""


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Around any write of ``path`` (this module's writers, Blender's save or exporters): a failure
    (an OSError, or the RuntimeError of a writer that only passes the system's message on) becomes
    a :class:`WriteFailed` with one clear line, e.g. for an operator's report."""
    path = Path(path)
    existed = path.exists()
    try:
        yield
    except WriteFailed:
        raise
    except (OSError, RuntimeError) as e:
        raise WriteFailed(write_error_text(path, e, existed)) from e
