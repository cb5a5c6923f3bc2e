"""Atomic, durable writes: every file and folder the project writes goes through here.

A reader (or a process killed mid-write, a full disk, a power cut) sees the old content or the new
one, never half of one. The implementation is :mod:`blender_att3d.wire.fileio` (standard library
only), so the add-on's own writes (its batch's .blend and exports) use the same code.
"""
from __future__ import annotations

from blender_att3d.wire.fileio import (
    WriteFailed,
    atomic_files,
    atomic_output,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    fsync_tree,
    is_disk_full,
    is_temporary,
    remove_stale_temporaries,
    write_error_text,
    write_folder_atomically,
    writing,
)

__all__ = ["WriteFailed", "atomic_files", "atomic_output", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "fsync_tree", "is_disk_full", "is_temporary", "remove_stale_temporaries",
           "write_error_text", "write_folder_atomically", "writing"]
