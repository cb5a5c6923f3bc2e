"""Which local backend the add-on starts, found without the user typing anything (no bpy, no torch).

In order: the interpreter typed into the *Python* field (forgiving: ``~``, quotes, a venv folder or
its ``bin/`` are all fine), the backend *Set Up Local Backend* made in the extension's own folder,
``att3d`` on ``PATH`` (``pip install`` / ``pipx install`` of the wheel), and, in a source checkout,
this Python with the checkout. :func:`find` says which one it took (:attr:`LocalBackend.source`);
:func:`probe` asks an interpreter, in well under a second, whether it has att3d and PyTorch.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .setup_backend import STAMP, read_stamp, ready_text, venv_python

#: the add-on's own backend lives in ``extension_path_user(__package__) / BACKEND_DIR``
BACKEND_DIR = "backend"
SETUP_LOG = "backend-setup.log"


class NoBackend(LookupError):
    """No local backend was found; the message says what to do."""


@dataclass(frozen=True)
class LocalBackend:
    """A local backend: an interpreter that runs ``-m backend.cli serve``, or an ``att3d`` command."""

    python: str = ""
    att3d: str = ""
    source: str = ""  # "the Python field", "set up by the add-on", "att3d on PATH", "this checkout"
    detail: str = ""  # e.g. "torch 2.13.0 CPU, model demo" (from the set-up's record)
    source_checkout: bool = False

    @property
    def command(self) -> str:
        return self.python or self.att3d

    def describe(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.source}: {self.command}{detail}"


def _strip(text: str) -> str:
    s = (text or "").strip()
    while len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        s = s[1:-1].strip()
    return s


def _interpreter_in(folder: Path) -> Path | None:
    """The Python inside a venv / conda folder or its ``bin`` / ``Scripts`` folder."""
    names = ("python.exe", "python3.exe") if os.name == "nt" else ("python3", "python")
    for sub in ("bin", "Scripts", ""):
        for n in names:
            p = folder / sub / n if sub else folder / n
            if p.is_file():
                return p
    return None


def _is_att3d_script(p: Path) -> bool:
    return p.name.lower() in ("att3d", "att3d.exe", "att3d-script.py")


def normalize_python_field(text: str) -> LocalBackend | None:
    """What the *Python* field points at, or None when it is empty; ValueError with one sentence.

    Forgiving: surrounding quotes and spaces go, ``~`` and ``$VARS`` expand, a virtual environment's
    folder or its ``bin/`` stand for the interpreter inside, and the ``att3d`` command itself works too.
    """
    s = _strip(text)
    if not s:
        return None
    p = Path(os.path.expandvars(os.path.expanduser(s)))
    if not p.exists():
        raise ValueError(f"There is no file or folder at {p}")
    if p.is_dir():
        found = _interpreter_in(p)
        if found is None:
            raise ValueError(f"{p} is a folder without a Python interpreter in it (expected bin/python inside a "
                             "virtual environment)")
        p = found
    if not os.access(p, os.X_OK):
        raise ValueError(f"{p} is not a program: pick the Python interpreter (bin/python of the environment)")
    if _is_att3d_script(p):
        return LocalBackend(att3d=str(p), source="the Python field")
    return LocalBackend(python=str(p), source="the Python field")


def backend_folder(user_root: str | os.PathLike) -> Path:
    return Path(user_root) / BACKEND_DIR


def addon_backend(user_root: str | os.PathLike | None) -> LocalBackend | None:
    """The backend *Set Up Local Backend* made (complete: its record is written last), or None."""
    if not user_root:
        return None
    folder = backend_folder(user_root)
    stamp = read_stamp(folder)
    if stamp is None:
        return None
    py = venv_python(folder)
    detail = ready_text(stamp).removeprefix("Backend ready: ")
    return LocalBackend(python=str(py), source="set up by the add-on", detail=detail)


def _python_of_script(script: Path) -> Path | None:
    """The interpreter an ``att3d`` console script runs with (its ``#!`` line; on Windows the
    ``python.exe`` beside ``att3d.exe``)."""
    real = script.resolve()
    if os.name == "nt":
        p = real.parent / "python.exe"
        return p if p.is_file() else None
    try:
        with open(real, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode("utf-8", "replace").split()
    if not parts:
        return None
    if Path(parts[0]).name == "env" and len(parts) > 1:  # "#!/usr/bin/env python3"
        found = shutil.which(parts[1])
        return Path(found) if found else None
    p = Path(parts[0])
    return p if p.is_file() else None


def att3d_on_path() -> LocalBackend | None:
    """``att3d`` on PATH (pip / pipx install of the wheel): its interpreter when it can be read."""
    found = shutil.which("att3d")
    if not found:
        return None
    py = _python_of_script(Path(found))
    if py is not None:
        return LocalBackend(python=str(py), source="att3d on PATH", detail=found)
    return LocalBackend(att3d=found, source="att3d on PATH")


def checkout_root() -> Path | None:
    """The source checkout holding ``backend/`` next to this package (development), or None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "backend" / "cli.py").is_file() else None


def find(python_field: str = "", user_root: str | os.PathLike | None = None) -> LocalBackend:
    """The local backend to use (see the module's docstring for the order).

    ValueError: the *Python* field is set but wrong (one sentence). NoBackend: nothing found.
    """
    configured = normalize_python_field(python_field)
    if configured is not None:
        return configured
    for found in (addon_backend(user_root), att3d_on_path()):
        if found is not None:
            return found
    if checkout_root() is not None:
        return LocalBackend(python=sys.executable, source="this checkout", source_checkout=True)
    raise NoBackend("No ATT3D backend yet: click Set Up Local Backend in the add-on's preferences "
                    "(Edit > Preferences > Add-ons > ATT3D)")


PROBE_SCRIPT = (
    "import sys, json, importlib.util, importlib.metadata as md\n"
    "def v(n):\n"
    "    try:\n"
    "        return md.version(n)\n"
    "    except Exception:\n"
    "        return None\n"
    "try:\n"
    "    cli = importlib.util.find_spec('backend.cli') is not None\n"
    "except Exception:\n"
    "    cli = False\n"
    "print('ATT3D_PROBE ' + json.dumps({'python': sys.version.split()[0], 'att3d': v('att3d'), 'backend': cli,\n"
    "      'torch': v('torch'), 'executable': sys.executable}))\n"
)


def probe_env(backend: LocalBackend) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONSTARTUP")}
    root = checkout_root()
    if root is not None:  # as the SubprocessClient runs it: the checkout first
        env["PYTHONPATH"] = os.pathsep.join([str(root)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                          if p])
    return env


def probe(backend: LocalBackend, timeout: float = 20.0) -> dict[str, Any]:
    """Ask the backend's interpreter what it has (no torch import: well under a second).

    Returns ``{"python", "att3d", "torch", "executable"}``; ValueError with one sentence when it
    cannot serve (not a program, not Python, no att3d, no torch).
    """
    if not backend.python:  # an att3d command we could not see inside: it answers --help or not
        try:
            r = subprocess.run([backend.att3d, "--help"], capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as e:
            raise ValueError(f"{backend.att3d} does not run: {getattr(e, 'strerror', None) or e}") from None
        if r.returncode != 0 or "att3d" not in r.stdout:
            raise ValueError(f"{backend.att3d} is not a working att3d command")
        return {"att3d": "?", "torch": "?", "python": "?", "executable": backend.att3d}
    py = backend.python
    try:
        r = subprocess.run([py, "-c", PROBE_SCRIPT], capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, env=probe_env(backend))
    except subprocess.TimeoutExpired:
        raise ValueError(f"{py} did not answer within {timeout:.0f} s") from None
    except OSError as e:
        why = e.strerror or str(e)
        if isinstance(e, PermissionError):
            raise ValueError(f"{py} is not a program ({why}): pick the Python interpreter of the environment") \
                from None
        raise ValueError(f"{py} does not run ({why})") from None
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("ATT3D_PROBE ")), None)
    if line is None:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1][:160]
        raise ValueError(f"{py} is not a Python interpreter that works here ({last})")
    info = json.loads(line.removeprefix("ATT3D_PROBE "))
    if tuple(int(x) for x in info["python"].split(".")[:2]) < (3, 11):
        raise ValueError(f"{py} is Python {info['python']}; the backend needs Python 3.11 or newer")
    if not info.get("backend"):
        raise ValueError(f"{py} (Python {info['python']}) has no att3d package: install the att3d wheel into it, "
                         "or use Set Up Local Backend")
    if not info.get("torch"):
        raise ValueError(f"{py} has att3d but not PyTorch: install torch into it, or use Set Up Local Backend")
    return info


def probe_text(info: dict[str, Any]) -> str:
    """One line for the preferences: what the interpreter has."""
    att3d = info.get("att3d") or ("checkout" if info.get("backend") else "?")
    return f"Python {info.get('python', '?')} with att3d {att3d} and torch {info.get('torch', '?')}"


def stamp_path(user_root: str | os.PathLike) -> Path:
    return backend_folder(user_root) / STAMP
