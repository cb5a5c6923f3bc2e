"""*Set Up Local Backend* from Blender: :mod:`.setup_backend` in a subprocess of Blender's own
Python, its progress lines read into :class:`SetupRun` for the preferences to draw, Cancel, and the
result (no bpy: the operators in :mod:`.operators.setup` drive it).

Everything lands in the extension's own folder (``extension_path_user``): the environment in
``backend/``, the log beside it, the backend's caches in ``cache/``; pip's download cache is off so
nothing is written anywhere else (downloads go through the system's temporary folder only).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import setup_backend
from .local_backend import SETUP_LOG, backend_folder

TORCH_ITEMS = [
    ("AUTO", "Automatic", "Detect the GPU: NVIDIA CUDA, AMD ROCm, Apple (Metal), else CPU"),
    ("CPU", "CPU", "PyTorch for the CPU only (smallest download)"),
    ("CUDA", "NVIDIA CUDA", "PyTorch with CUDA, for NVIDIA GPUs"),
    ("ROCM", "AMD ROCm", "PyTorch with ROCm, for AMD GPUs on Linux"),
    ("APPLE", "Apple (Metal)", "PyTorch for macOS, with Metal on Apple silicon"),
]


INDEX_ITEMS = [
    ("PIP", "pip's Configured Index", "Where pip installs from on this computer (its pip.conf or PIP_INDEX_URL): "
     "PyPI unless a mirror is configured"),
    ("CUSTOM", "Custom URL", "A package index (a mirror) you type below, e.g. https://mirror.example/simple"),
]
TORCH_INDEX_ITEMS = [
    ("PYTORCH", "PyTorch's Index", "download.pytorch.org, with the build for this machine (CPU-only, CUDA, ROCm); "
     "when it cannot be reached, pip's configured index, and the set-up says so"),
    ("PIP", "pip's Configured Index", "Where pip installs from on this computer (PyPI unless a mirror is "
     "configured)"),
    ("CUSTOM", "Custom URL", "A PyTorch wheel index (a mirror of download.pytorch.org/whl/...) you type below"),
]


@dataclass(frozen=True)
class Indexes:
    """Where the set-up takes its packages from, as the preferences say it."""

    index: str = "PIP"  # PIP | CUSTOM: att3d's dependencies
    index_url: str = ""
    torch_index: str = "PYTORCH"  # PYTORCH | PIP | CUSTOM
    torch_index_url: str = ""

    def args(self) -> tuple[str | None, str | None]:
        """(``--index-url``, ``--torch-index``) for the installer, None where it decides; SetupError
        (one sentence) for a custom index without a usable URL."""
        index = _url(self.index_url, "Package Index") if self.index == "CUSTOM" else None
        torch = {"PYTORCH": None, "PIP": "default"}.get(self.torch_index)
        if self.torch_index == "CUSTOM":
            torch = _url(self.torch_index_url, "PyTorch Index")
        return index, torch


def _url(text: str, what: str) -> str:
    url = (text or "").strip().strip("'\"")
    if not url:
        raise setup_backend.SetupError(f"{what}: type the mirror's URL (e.g. https://mirror.example/simple), or "
                                       "choose pip's configured index", setup_backend.EXIT_BAD_INPUT)
    if not url.startswith(("http://", "https://", "file:")):
        raise setup_backend.SetupError(f"{what}: {url!r} is not a package index URL (it starts with https://, "
                                       "http:// or file:)", setup_backend.EXIT_BAD_INPUT)
    return url


def installer_args(user_root: str | os.PathLike, torch: str = "auto", indexes: Indexes = Indexes()) -> list[str]:
    """The installer's command line for the add-on's own backend (``python setup_backend.py ...``)."""
    root = Path(user_root)
    index, torch_index = indexes.args()
    return [sys.executable, str(Path(setup_backend.__file__).resolve()), "--dest", str(backend_folder(root)),
            "--torch", torch.lower(), "--log", str(root / SETUP_LOG), "--cache-dir", str(root / "cache"),
            "--pip-cache", "off", *(["--index-url", index] if index else []),
            *(["--torch-index", torch_index] if torch_index else [])]


def plan_for(user_root: str | os.PathLike, torch: str = "auto", indexes: Indexes = Indexes()) -> setup_backend.Plan:
    """What the set-up would do (the commands the preferences show); SetupError when it cannot."""
    root = Path(user_root)
    index, torch_index = indexes.args()
    return setup_backend.make_plan(backend_folder(root), torch.lower(), log=str(root / SETUP_LOG),
                                   cache_dir=str(root / "cache"), pip_cache="off", index_url=index,
                                   torch_index=torch_index)


class SetupRun:
    """One run of the installer; its state is read by the preferences' draw() (any thread writes)."""

    def __init__(self, user_root: str | os.PathLike, torch: str = "auto", indexes: Indexes = Indexes()) -> None:
        self.user_root = Path(user_root)
        self.args = installer_args(user_root, torch, indexes)
        self.dest = backend_folder(self.user_root)
        self.log = self.user_root / SETUP_LOG
        self.percent = 0
        self.stage = "starting"
        self.detail = ""
        #: what the set-up decided on the way (e.g. PyTorch from pip's index: its own could not be reached)
        self.notes: list[str] = []
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.cancelled = False
        self.returncode: int | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self.done = threading.Event()
        self._stdout: list[str] = []
        self._other: list[str] = []
        kw: dict[str, Any] = {}
        if os.name == "nt":
            kw["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            kw["start_new_session"] = True  # Blender's Ctrl-C does not reach it; Cancel does
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONIOENCODING"] = "utf-8"
        try:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                                         bufsize=1, env=env, **kw)
        except OSError as e:
            self.error = f"Could not run the installer with {sys.executable}: {e.strerror or e}"
            self._finish(None)
            return
        threading.Thread(target=self._read_stdout, daemon=True, name="att3d-setup-stdout").start()
        threading.Thread(target=self._read_stderr, daemon=True, name="att3d-setup-stderr").start()

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self._stdout.append(line.rstrip("\n"))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            p = setup_backend.parse_progress(line)
            if p is not None:
                self.percent, self.stage, self.detail = p
                if p[1] == "checking" and setup_backend.NOTE_MARK in p[2] and p[2] not in self.notes:
                    self.notes.append(p[2])
            elif line.startswith("att3d setup: error:"):
                self.error = line.removeprefix("att3d setup: error:").strip()
            elif line.strip():
                self._other = (self._other + [line.strip()])[-5:]
        self._finish(self.proc.wait())

    def _finish(self, rc: int | None) -> None:
        self.returncode = rc
        if rc == 0:
            try:
                self.result = json.loads(self._stdout[-1])
            except (IndexError, ValueError):
                self.error = "the installer finished without saying where the backend is"
        elif rc == setup_backend.EXIT_CANCELLED or self.cancelled:
            self.cancelled = True
            self.error = None
        elif rc is not None and not self.error:
            self.error = f"the installer stopped (status {rc}): {' | '.join(self._other[-2:]) or 'no message'}"
        if rc != 0:  # never leave a half-built environment, even if the installer was killed hard
            partial = setup_backend.partial_dir(self.dest)
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)
        self.finished = time.monotonic()
        self.done.set()

    def cancel(self) -> None:
        """Ask the installer to stop; it removes what it built (and :meth:`_finish` checks)."""
        if not self.running:
            return
        self.cancelled = True
        self.stage, self.detail = "cancelling", "removing what was installed"
        try:
            if os.name == "nt":
                self.proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
            else:
                self.proc.send_signal(signal.SIGTERM)
        except OSError:
            pass

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def progress_text(self) -> str:
        detail = f": {self.detail}" if self.detail and self.detail != "done" else ""
        return f"{self.stage[:1].upper()}{self.stage[1:]}{detail} ({self.elapsed():.0f} s)"

    def end_text(self) -> str:
        """The clear end state: ready (with what), cancelled, or the error."""
        if self.running:
            return self.progress_text()
        if self.result is not None:
            notes = "".join(f" — {n[:1].upper()}{n[1:]}" for n in self.result.get("notes") or [])
            return f"{setup_backend.ready_text(self.result)}, in {self.elapsed():.0f} s{notes}"
        if self.cancelled:
            return "Set-up cancelled: nothing was installed"
        return f"Set-up failed: {self.error}"


#: the run the preferences show (one at a time)
current: SetupRun | None = None


def running() -> bool:
    return current is not None and current.running


def remove_backend(user_root: str | os.PathLike) -> bool:
    """Delete the add-on's backend, its partial leftovers and its log; True if anything was there."""
    root = Path(user_root)
    dest = backend_folder(root)
    found = False
    for p in (dest, setup_backend.partial_dir(dest), dest.with_name(f".{dest.name}.old")):
        if p.exists():
            shutil.rmtree(p, ignore_errors=True)
            found = True
    log = root / SETUP_LOG
    if log.exists():
        log.unlink()
    return found
