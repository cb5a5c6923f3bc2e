"""The add-on's atomic writes (blender_att3d.wire.fileio): all or nothing, usual permissions."""
import errno
import os

import pytest

from blender_att3d.wire import fileio


def test_atomic_write_replaces_whole_files_with_the_usual_permissions(tmp_path):
    path = tmp_path / "a.glb"
    fileio.atomic_write_bytes(path, b"first")
    fileio.atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second" and os.listdir(tmp_path) == ["a.glb"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "a.glb"
    path.write_bytes(b"earlier")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        fileio.atomic_write_bytes(path, b"x" * 1000)
    assert path.read_bytes() == b"earlier" and os.listdir(tmp_path) == ["a.glb"]
