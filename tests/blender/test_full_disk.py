"""A full disk while the batch writes its .blend or its exports (issue 26, item 6): one clear line,
exit status 1, no partial file under the final name, the earlier file intact.

Two ways: a write that fails with ENOSPC half-way (the add-on's own writer made to fail, in this
process), and a really full filesystem (a small tmpfs in a user namespace, where the kernel allows
one) that Blender's own .blend writer and exporters run into.
"""
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import HERE, ROOT


def _prompts(tmp_path, text="a red cube\na blue ball\n"):
    p = tmp_path / "prompts.txt"
    p.write_text(text)
    return p


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def glb_disk_full(monkeypatch):
    """The second file the add-on's writer writes gets half its bytes down, then the disk is full."""
    from blender_att3d.wire import fileio

    real, n = fileio._write_all, [0]

    def write(f, data):
        n[0] += 1
        if n[0] < 2:
            return real(f, data)
        f.write(data[: len(data) // 2])
        f.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio, "_write_all", write)


def test_a_full_disk_while_exporting_glbs(bpy_module, addon, tmp_path, fake, glb_disk_full, capsys):
    from blender_att3d import batch

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "001_Blue_ball.glb").write_bytes(b"the earlier export")
    (tmp_path / "scene.blend").write_bytes(b"the earlier scene")
    code = batch.main(["--prompts", str(_prompts(tmp_path)), "--out", str(tmp_path / "scene.blend"),
                       "--resolution", "24", "--export-dir", str(exp)], client=fake)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith(f"att3d batch: error: could not write {exp / '001_Blue_ball.glb'}: the disk is full (")
    assert err[-1].endswith("free); the earlier file is unchanged")
    assert not [ln for ln in err if "Traceback" in ln]
    files = _tree(tmp_path)
    assert files["exp/001_Blue_ball.glb"] == b"the earlier export"  # intact, no partial one under its name
    assert files["exp/000_Red_cube.glb"][:4] == b"glTF"  # written before the disk filled up, complete
    assert files["scene.blend"] == b"the earlier scene"  # the run stopped before saving
    assert sorted(files) == ["exp/000_Red_cube.glb", "exp/001_Blue_ball.glb", "prompts.txt", "scene.blend"]


def test_a_full_disk_while_the_add_on_exports_a_chain(bpy_module, scene, fake, tmp_path, monkeypatch):
    """File > Export ATT3D Prompt Chain onto a full disk: the operator's one line names the file and
    the full disk, the earlier export stays, no temporary is left."""
    from test_chain import _build_animator_chain

    from blender_att3d.wire import fileio

    bpy = bpy_module
    _build_animator_chain(bpy, scene, fake)
    old = tmp_path / "chain.glb"
    old.write_bytes(b"an earlier export")

    def full(f, data):
        f.write(data[: len(data) // 3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fileio, "_write_all", full)
    with pytest.raises(RuntimeError) as e:
        bpy.ops.att3d.export_chain(filepath=str(old))
    line = str(e.value).strip()
    assert line.startswith(f"Error: Could not export 'Chain 1': could not write {old}: the disk is full ("), line
    assert line.endswith("free); the earlier file is unchanged") and "Traceback" not in line
    assert _tree(tmp_path) == {"chain.glb": b"an earlier export"}


def test_a_full_disk_in_blenders_own_exporter(bpy_module, addon, tmp_path, fake, monkeypatch, capsys):
    """OBJ comes from Blender's exporter (C code): it writes into a temporary folder, so a failure
    there (here: the exporter raising as it does on a full disk) leaves the earlier OBJ + MTL."""
    from blender_att3d import batch

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "000_Red_cube.obj").write_text("earlier obj")
    (exp / "000_Red_cube.mtl").write_text("earlier mtl")
    class Ops:  # bpy.ops.wm with an exporter that writes half a file, then fails as on a full disk
        def __getattr__(self, name):
            return getattr(real_wm, name)

        @staticmethod
        def obj_export(filepath, **kw):
            Path(filepath).write_text("v 0 0")
            raise RuntimeError("Error: No space left on device\n")

    real_wm = bpy_module.ops.wm
    monkeypatch.setattr(bpy_module.ops, "wm", Ops())
    code = batch.main(["--prompts", str(_prompts(tmp_path, "a red cube\n")), "--out", str(tmp_path / "s.blend"),
                       "--resolution", "16", "--export-dir", str(exp), "--format", "obj"], client=fake)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith(f"att3d batch: error: could not write {exp / '000_Red_cube.obj'}: the disk is full")
    assert _tree(exp) == {"000_Red_cube.mtl": b"earlier mtl", "000_Red_cube.obj": b"earlier obj"}
    assert not [p for p in exp.iterdir() if p.name.startswith(".")]


def _user_namespaces() -> str | None:
    """Why a small tmpfs cannot be mounted here, or None when it can."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare/mount are not installed"
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "mount", "-t", "tmpfs", "-o",
                            "size=1m", "tmpfs", d], capture_output=True, text=True)
    return None if r.returncode == 0 else f"no unprivileged user namespaces here ({r.stderr.strip()[:100]})"


def _batch(*args: str) -> list[str]:
    return [sys.executable, "-m", "blender_att3d.batch", *args, "--client", "fakes:make"]


def _run_batch(tmp_path: Path, args: list[str]) -> None:
    e = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
         "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    r = subprocess.run(_batch(*args), capture_output=True, text=True, timeout=300, env=e, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-2000:]


def _on_a_full_disk(tmp_path: Path, earlier: Path, leave: int, args: list[str]) -> dict:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    e = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]),
         "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(HERE / "full_disk.py"),
                        "--mount", str(mnt), "--earlier", str(earlier), "--leave", str(leave), "--",
                        *_batch(*[a.replace("MNT", str(mnt)) for a in args])],
                       capture_output=True, text=True, timeout=600, env=e, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def full_disk_possible():
    why = _user_namespaces()
    if why:
        pytest.skip(f"a really full disk needs a small tmpfs: {why}; the ENOSPC tests above cover the writer")


@pytest.mark.slow  # several Blender processes
def test_a_really_full_disk_while_saving_the_blend_and_exporting(tmp_path, full_disk_possible):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    _run_batch(tmp_path, ["--prompts", str(_prompts(tmp_path)), "--out", str(earlier / "scene.blend"),
                          "--resolution", "24", "--export-dir", str(earlier / "exp")])
    old = {p: hashlib.sha256((earlier / p).read_bytes()).hexdigest()
           for p in ("scene.blend", "exp/000_Red_cube.glb", "exp/001_Blue_ball.glb")}
    other = tmp_path / "other.txt"
    other.write_text("a green cone\na yellow torus\n")
    # 1. the .blend does not fit (no exports): Blender's own writer hits the full disk
    res = _on_a_full_disk(tmp_path, earlier, 4096, ["--prompts", str(other), "--out", "MNT/scene.blend",
                                                    "--resolution", "48"])
    last = res["stderr"].strip().splitlines()[-1]
    assert res["rc"] == 1, res["stderr"][-2000:]
    assert last.startswith(f"att3d batch: error: could not write {tmp_path / 'mnt' / 'scene.blend'}: "), last
    assert re.search(r": the disk is full \([\d.]+ (bytes|KB) free\)", last) and \
        last.endswith("; the earlier file is unchanged"), last
    assert res["after"] == res["before"] and {p: res["after"][p] for p in old} == old  # nothing new, nothing half
    # 2. the GLBs do not fit: same line for the export, the earlier exports intact
    shutil.rmtree(tmp_path / "mnt")
    res = _on_a_full_disk(tmp_path, earlier, 4096, ["--prompts", str(_prompts(tmp_path, "a red cube\na blue ball\n")),
                                                    "--out", "MNT/scene.blend", "--resolution", "96",
                                                    "--export-dir", "MNT/exp"])
    last = res["stderr"].strip().splitlines()[-1]
    assert res["rc"] == 1, res["stderr"][-2000:]
    assert last.startswith(f"att3d batch: error: could not write {tmp_path / 'mnt' / 'exp' / '000_Red_cube.glb'}: "
                           "the disk is full ("), last
    assert res["after"] == res["before"] and {p: res["after"][p] for p in old} == old
