"""blender_att3d.lifecycle.local_backend: the forgiving Python field, finding a backend without being told
(the field, the add-on's own, ``att3d`` on PATH, this checkout) and asking an interpreter what it has."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from blender_att3d.lifecycle import local_backend
from blender_att3d.lifecycle.local_backend import LocalBackend, NoBackend, find, normalize_python_field, probe
from blender_att3d.lifecycle.setup_backend import STAMP


def make_venv(root: Path) -> Path:
    """A folder shaped like a virtual environment, its bin/python this test's interpreter."""
    (root / "bin").mkdir(parents=True)
    py = root / "bin" / "python"
    py.symlink_to(sys.executable)
    return py


@pytest.mark.parametrize("typed", ["{py}", " {py} ", "'{py}'", '"{py}"', "{venv}", "{venv}/bin", "{venv}/bin/",
                                   "'{venv}' "])
def test_the_python_field_forgives(tmp_path, typed):
    venv = tmp_path / "my env"
    py = make_venv(venv)
    found = normalize_python_field(typed.format(py=py, venv=venv))
    assert found == LocalBackend(python=str(py), source="the Python field")


def test_the_python_field_expands_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    py = make_venv(tmp_path / "venvs" / "att3d")
    assert normalize_python_field("~/venvs/att3d").python == str(py)
    monkeypatch.setenv("ATT3D_VENV", str(tmp_path / "venvs" / "att3d"))
    assert normalize_python_field("$ATT3D_VENV/bin/python").python == str(py)


def test_the_python_field_says_what_is_wrong_in_one_sentence(tmp_path):
    assert normalize_python_field("  ") is None
    with pytest.raises(ValueError, match=r"^There is no file or folder at /nowhere/python$"):
        normalize_python_field("/nowhere/python")
    with pytest.raises(ValueError, match=r"is a folder without a Python interpreter in it \(expected bin/python"):
        normalize_python_field(str(tmp_path))
    text = tmp_path / "notes.txt"
    text.write_text("hi")
    with pytest.raises(ValueError, match=r"notes.txt is not a program: pick the Python interpreter"):
        normalize_python_field(str(text))


def test_the_att3d_command_itself_is_fine_too(tmp_path):
    script = tmp_path / "bin" / "att3d"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\n")
    script.chmod(0o755)
    assert normalize_python_field(str(script)) == LocalBackend(att3d=str(script), source="the Python field")


def test_find_order(tmp_path, monkeypatch):
    """The field wins; then the add-on's backend; then att3d on PATH; then this checkout."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    root = tmp_path / "user"
    # nothing but this checkout
    assert find("", root) == LocalBackend(python=sys.executable, source="this checkout", source_checkout=True)
    # att3d on PATH: its interpreter read from the script's first line (pip / pipx install)
    pipx = tmp_path / "pipx" / "venvs" / "att3d"
    py = make_venv(pipx)
    (pipx / "bin" / "att3d").write_text(f"#!{py}\nfrom backend.cli import main\n")
    (pipx / "bin" / "att3d").chmod(0o755)
    onpath = tmp_path / "local-bin"
    onpath.mkdir()
    (onpath / "att3d").symlink_to(pipx / "bin" / "att3d")
    monkeypatch.setenv("PATH", str(onpath))
    got = find("", root)
    assert got.python == str(py) and got.source == "att3d on PATH" and got.detail == str(onpath / "att3d")
    # a backend the add-on set up (complete: its record exists)
    own = local_backend.backend_folder(root)
    own_py = make_venv(own)
    assert find("", root).source == "att3d on PATH"  # no record yet: a half-made folder is not used
    (own / STAMP).write_text(json.dumps({"python": str(own_py), "torch": "2.13.0+cpu", "torch_variant": "cpu",
                                         "model": "demo", "training_prompts": 992}))
    got = find("", root)
    assert got.python == str(own_py) and got.source == "set up by the add-on"
    assert got.detail == "torch 2.13.0 CPU, model demo (992 training prompts)"
    # the field wins over everything, and a wrong field is an error, not a silent fallback
    other = make_venv(tmp_path / "other")
    assert find(str(other), root).python == str(other)
    with pytest.raises(ValueError, match="There is no file"):
        find("/nowhere", root)


def test_no_backend_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(local_backend, "checkout_root", lambda: None)  # an installed extension
    with pytest.raises(NoBackend, match=r"^No ATT3D backend yet: click Set Up Local Backend in the add-on's "
                       r"preferences \(Edit > Preferences > Add-ons > ATT3D\)$"):
        find("", tmp_path)


def test_probe_a_real_backend_interpreter():
    info = probe(LocalBackend(python=sys.executable))
    assert info["backend"] is True and info["torch"] and info["python"].startswith("3.")
    assert local_backend.probe_text(info).startswith(f"Python {info['python']} with att3d ")


def fake(tmp_path: Path, body: str) -> str:
    p = tmp_path / "fake-python"
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)
    return str(p)


@pytest.mark.parametrize("body, message", [
    ('echo \'ATT3D_PROBE {"python": "3.11.7", "att3d": null, "backend": false, "torch": "2.13.0", '
     '"executable": "x"}\'', "(Python 3.11.7) has no att3d package: install the att3d wheel into it, or use Set "
                            "Up Local Backend"),
    ('echo \'ATT3D_PROBE {"python": "3.12.1", "att3d": "0.1.0", "backend": true, "torch": null, '
     '"executable": "x"}\'', "has att3d but not PyTorch"),
    ('echo \'ATT3D_PROBE {"python": "3.8.10", "att3d": "0.1.0", "backend": true, "torch": "2.0", '
     '"executable": "x"}\'', "is Python 3.8.10; the backend needs Python 3.11 or newer"),
    ("echo 'bash: syntax error' >&2; exit 2", "is not a Python interpreter that works here (bash: syntax error)"),
])
def test_probe_says_what_an_interpreter_lacks(tmp_path, body, message):
    with pytest.raises(ValueError) as e:
        probe(LocalBackend(python=fake(tmp_path, body)))
    assert message in str(e.value)


def test_probe_a_file_that_is_not_a_program(tmp_path):
    p = tmp_path / "python"
    p.write_text("not a program")
    p.chmod(0o644)
    with pytest.raises(ValueError, match=r"is not a program \(Permission denied\): pick the Python interpreter"):
        probe(LocalBackend(python=str(p)))


def test_a_stamp_without_a_python_is_no_backend(tmp_path):
    own = local_backend.backend_folder(tmp_path)
    own.mkdir(parents=True)
    (own / STAMP).write_text("{not json")
    assert local_backend.addon_backend(tmp_path) is None
    assert local_backend.addon_backend(None) is None
    assert os.fspath(local_backend.stamp_path(tmp_path)) == os.fspath(own / STAMP)


def test_the_installer_and_the_finder_need_neither_bpy_nor_torch():
    """They run inside Blender's own Python (no torch) and headless (no bpy)."""
    import subprocess

    code = ("import sys; sys.modules['bpy'] = None; sys.modules['torch'] = None\n"
            "import blender_att3d.lifecycle.setup_backend, blender_att3d.lifecycle.local_backend\n"
            "import blender_att3d.lifecycle.setup_job\n"
            "print('OK')")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(root),
                       env={**os.environ, "PYTHONPATH": str(root)})
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stderr
