"""The atomic writer shared by the add-on and the backend (``blender_att3d/wire/fileio.py``): a write
that fails half-way (a full disk) leaves no partial file under the final name, keeps the earlier
file, removes its temporary and says why in one line (issue 26, item 6)."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from blender_att3d.wire import fileio


@pytest.fixture
def disk_full_after_half(monkeypatch):
    """Every write puts down half of its bytes, then fails as a full disk does (ENOSPC)."""
    def write(f, data):
        f.write(data[: len(data) // 2])
        f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio, "_write_all", write)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_full_disk_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path, disk_full_after_half):
    target = tmp_path / "chair.glb"
    target.write_bytes(b"the earlier file")
    with pytest.raises(OSError) as e:
        fileio.atomic_write_bytes(target, b"x" * 100_000)
    assert _files(tmp_path) == {"chair.glb": b"the earlier file"}
    line = fileio.write_error_text(target, e.value)
    assert line.startswith(f"could not write {target}: the disk is full (")
    assert line.endswith(" free); the earlier file is unchanged") and "\n" not in line


def test_a_new_file_that_does_not_fit_is_not_left_half_written(tmp_path, disk_full_after_half):
    target = tmp_path / "new.json"
    with pytest.raises(OSError) as e:
        fileio.atomic_write_json(target, {"a": list(range(1000))})
    assert list(tmp_path.iterdir()) == []
    assert fileio.write_error_text(target, e.value).endswith("; nothing was left there")


def test_backend_writes_go_through_the_same_writer(tmp_path, disk_full_after_half):
    """backend/fileio.py is the same code: a model folder's file fails the same clean way."""
    from backend import fileio as backend_fileio

    assert backend_fileio.atomic_write_bytes is fileio.atomic_write_bytes
    target = tmp_path / "config.json"
    target.write_text("{}")
    with pytest.raises(OSError):
        backend_fileio.atomic_write_text(target, "x" * 10_000)
    assert _files(tmp_path) == {"config.json": b"{}"}


def test_atomic_output_for_writers_that_take_a_file_name(tmp_path):
    target = tmp_path / "scene.blend"
    target.write_bytes(b"earlier")
    seen = []
    with fileio.atomic_output(target) as tmp:
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.suffix == ".blend" and fileio.is_temporary(tmp)
        tmp.write_bytes(b"new")
    assert _files(tmp_path) == {"scene.blend": b"new"}
    # a writer that fails half-way, leaving its own temporary beside ours (Blender's "file@")
    with pytest.raises(RuntimeError, match="No space left on device"):
        with fileio.atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            tmp.with_name(tmp.name + "@").write_bytes(b"half")
            raise RuntimeError("Error: No space left on device")
    assert _files(tmp_path) == {"scene.blend": b"new"}
    # a writer that writes nothing (and says nothing) is an error too
    with pytest.raises(OSError, match="nothing was written"):
        with fileio.atomic_output(target):
            pass
    assert _files(tmp_path) == {"scene.blend": b"new"}


def test_atomic_files_replaces_a_set_of_files_all_or_none(tmp_path):
    (tmp_path / "cube.obj").write_text("old obj")
    (tmp_path / "cube.mtl").write_text("old mtl")
    with pytest.raises(OSError):
        with fileio.atomic_files(tmp_path) as tmp:
            (tmp / "cube.obj").write_text("new obj")
            raise OSError(errno.ENOSPC, "No space left on device")  # before the MTL was written
    assert _files(tmp_path) == {"cube.mtl": b"old mtl", "cube.obj": b"old obj"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with fileio.atomic_files(tmp_path) as tmp:
        (tmp / "cube.obj").write_text("new obj")
        (tmp / "cube.mtl").write_text("new mtl")
        (tmp / "textures").mkdir()
        (tmp / "textures" / "a.png").write_bytes(b"png")
    assert _files(tmp_path) == {"cube.mtl": b"new mtl", "cube.obj": b"new obj"}
    assert (tmp_path / "textures" / "a.png").read_bytes() == b"png"


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("Error: No space left on device\n"), "the disk is full"),
    (RuntimeError("Error: Python: Traceback (most recent call last):\n  ...\nOSError: [Errno 28] No space left on "
                  "device"), "the disk is full"),
    (OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), "the disk is full"),
    (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
])
def test_the_reason_in_one_line(tmp_path, error, expected):
    line = fileio.write_error_text(tmp_path / "a.glb", error, existed=False)
    assert line.startswith(f"could not write {tmp_path / 'a.glb'}: {expected}") and "\n" not in line


def test_a_writer_that_hides_the_full_disk_is_told_by_the_space_left(tmp_path, monkeypatch):
    """Blender 4.2 reports a save into a full disk as "No such file or directory", 5.0 may write a
    short file without a word: with (almost) no space left the line says the disk is full, with
    little left that it may be."""
    error = RuntimeError("Error: No such file or directory\n")
    monkeypatch.setattr(fileio, "free_bytes", lambda path: 12 * 1024)
    line = fileio.write_error_text(tmp_path / "scene.blend", error, existed=True)
    assert line == f"could not write {tmp_path / 'scene.blend'}: the disk is full (12.0 KB free); the earlier file " \
        "is unchanged"
    monkeypatch.setattr(fileio, "free_bytes", lambda path: 100 * 2**20)
    line = fileio.write_error_text(tmp_path / "scene.blend", error, existed=True)
    assert line == (f"could not write {tmp_path / 'scene.blend'}: No such file or directory; only 100.0 MB free on "
                    "that disk: it may be full; the earlier file is unchanged")
    monkeypatch.setattr(fileio, "free_bytes", lambda path: 50 * 2**30)
    assert fileio.write_error_text(tmp_path / "x", RuntimeError("Error: odd")).endswith(": odd; nothing was left there")


def test_a_writer_that_leaves_the_disk_full_is_not_trusted(tmp_path, monkeypatch):
    """Blender 5.0 saved a 4 KB .blend onto a full disk without an error: a file name writer that
    leaves (almost) no room is taken as cut short, and the earlier file stays."""
    target = tmp_path / "scene.blend"
    target.write_bytes(b"earlier")
    monkeypatch.setattr(fileio, "free_bytes", lambda path: 4096)
    with pytest.raises(OSError) as e:
        with fileio.atomic_output(target) as tmp:
            tmp.write_bytes(b"short")
    assert e.value.errno == errno.ENOSPC and _files(tmp_path) == {"scene.blend": b"earlier"}
    with pytest.raises(OSError):
        with fileio.atomic_files(tmp_path) as tmp:
            (tmp / "a.obj").write_text("short")
    assert _files(tmp_path) == {"scene.blend": b"earlier"}


def test_writing_turns_any_failed_write_into_one_line(tmp_path, disk_full_after_half):
    """What an operator or the batch reports: a WriteFailed with the one line (the export operator
    of the add-on writes through atomic_write_bytes inside writing(), and reports str(e))."""
    target = tmp_path / "chain.glb"
    target.write_bytes(b"earlier")
    with pytest.raises(fileio.WriteFailed) as e:
        with fileio.writing(target):
            fileio.atomic_write_bytes(target, b"glTF" * 10_000)
    assert str(e.value).startswith(f"could not write {target}: the disk is full (")
    assert str(e.value).endswith("; the earlier file is unchanged") and isinstance(e.value.__cause__, OSError)
    assert _files(tmp_path) == {"chain.glb": b"earlier"}
    with pytest.raises(fileio.WriteFailed, match=r": Permission denied; nothing was left there$"):
        with fileio.writing(tmp_path / "new.glb"):
            raise PermissionError(errno.EACCES, "Permission denied")
