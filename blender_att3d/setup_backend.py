"""Set up a local ATT3D backend without a terminal: a Python environment with PyTorch and att3d.

    python -m blender_att3d.setup_backend --dest DIR [--torch auto|cpu|cuda|rocm|apple]
    python path/to/setup_backend.py --dest DIR ...      (how the add-on runs it, from Blender's Python)

Standard library only, no bpy, no torch: it runs inside Blender's own Python, and the add-on's
*Set Up Local Backend* button runs exactly this in a subprocess. Steps:

1. checks: the torch choice, the destination (writable, not someone else's folder), the att3d
   wheel (the one inside the extension, or ``dist/`` of a checkout after ``make wheel``), and that
   the package indexes answer;
2. ``python -m venv`` into ``.<name>.partial`` beside DIR;
3. ``pip install torch==VERSION`` from the index for the machine (CPU, NVIDIA CUDA, AMD ROCm; Apple
   uses the default wheels, with Metal);
4. ``pip install att3d-….whl[serve,mesh]`` (its dependencies from the package index);
5. a check in the new environment: load the demo model, index its training prompts, generate a
   16³ object;
6. rename the folder to DIR (fixing the paths the environment's scripts hold) and write
   ``DIR/att3d-backend.json``.

Progress goes to stderr as ``att3d setup: [ 42%] STAGE: detail`` lines, everything (commands and
pip's whole output) to a log file (``--log``, default ``DIR-setup.log`` beside DIR). The LAST
stdout line is a JSON object: ``python`` and ``att3d`` (both inside DIR), ``torch``, ``device``,
``model``, ``training_prompts``, ``log``, ``commands`` … . Errors are one ``att3d setup: error:``
line, exit status 2 for bad input (unknown torch choice, unwritable folder, no network), 1 for a
failed install, 130 when cancelled (SIGTERM / SIGINT / Ctrl-Break). In every failure the partial
folder is removed: DIR either holds a complete backend or does not exist.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: the PyTorch release the project is tested with (the Makefile installs the same)
TORCH_VERSION = "2.13.0"
TORCH_CHOICES = ("auto", "cpu", "cuda", "rocm", "apple")
#: where each build of torch comes from; None: the ordinary package index (Apple's wheels there
#: include Metal). Override with --torch-index URL, or "default" for pip's own configured index.
TORCH_INDEX: dict[str, str | None] = {
    "cpu": "https://download.pytorch.org/whl/cpu",
    "cuda": "https://download.pytorch.org/whl/cu128",
    "rocm": "https://download.pytorch.org/whl/rocm6.4",
    "apple": None,
}
TORCH_LABEL = {"cpu": "CPU", "cuda": "NVIDIA CUDA", "rocm": "AMD ROCm", "apple": "Apple (Metal)"}
PYPI = "https://pypi.org/simple"
EXTRAS = "serve,mesh"
#: written last into DIR: a folder with it is a complete backend, one without it is not ours
STAMP = "att3d-backend.json"
#: where the extension zip carries the att3d wheel (``make extension`` puts it there)
WHEEL_DIR = Path(__file__).resolve().parent / "backend_wheel"
ENV_TORCH_INDEX = "ATT3D_TORCH_INDEX"
ENV_REUSE_SITE = "ATT3D_SETUP_REUSE_SITE"
EXIT_BAD_INPUT, EXIT_FAILED, EXIT_CANCELLED = 2, 1, 130

# Stages and the share of the bar each one ends at (measured here: venv 6 s, torch 64 s, att3d and
# its dependencies 120 s, the check 15–60 s; the bar follows pip's own "Collecting" lines inside).
STAGES = (("checking", 2), ("creating the environment", 6), ("installing PyTorch", 50),
          ("installing att3d and its dependencies", 85), ("checking the backend", 98), ("finishing", 100))

# Run in the new environment: the backend really loads, knows its prompts and makes a mesh.
CHECK_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
print("stage: loading the model", file=sys.stderr, flush=True)
from backend.service.engine import Engine
engine = Engine.load("demo", device=sys.argv[1])
engine.warm(lambda stage: print("stage: " + stage, file=sys.stderr, flush=True))
print("stage: generating a test object", file=sys.stderr, flush=True)
mesh = engine.generate("a red cube", 16)
info = engine.info()
import torch
cuda = getattr(torch.version, "cuda", None)
hip = getattr(torch.version, "hip", None)
print(json.dumps({"torch": torch.__version__, "cuda": cuda, "hip": hip, "device": info["device"],
                  "model": info["model"], "training_prompts": info.get("training_prompts", 0),
                  "att3d_version": info.get("version"), "test_vertices": int(mesh.n_vertices),
                  "check_s": round(time.perf_counter() - t0, 2)}))
"""


class SetupError(Exception):
    """A failure with a one-sentence message for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class SetupCancelled(SetupError):
    def __init__(self) -> None:
        super().__init__("cancelled; nothing was installed", EXIT_CANCELLED)


ProgressFn = Callable[[int, str, str], None]  # (percent, stage, detail)


# -- what to install ------------------------------------------------------------------------------

def detect_torch() -> tuple[str, str]:
    """(torch build, why) for this machine: Apple on macOS, CUDA where ``nvidia-smi`` finds a GPU,
    ROCm where ``rocminfo`` does (or /opt/rocm exists), else CPU."""
    system = platform.system()
    if system == "Darwin":
        return "apple", "macOS"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            r = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=15)
            gpus = [ln for ln in r.stdout.splitlines() if ln.startswith("GPU ")]
            if r.returncode == 0 and gpus:
                return "cuda", gpus[0].split(" (UUID")[0]
        except (OSError, subprocess.SubprocessError):
            pass
    if system == "Linux":
        rocminfo = shutil.which("rocminfo") or ("/opt/rocm/bin/rocminfo" if Path("/opt/rocm/bin/rocminfo").exists()
                                                 else None)
        if rocminfo:
            try:
                r = subprocess.run([rocminfo], capture_output=True, text=True, timeout=15)
                if r.returncode == 0 and re.search(r"Name:\s+gfx\d", r.stdout):
                    return "rocm", "an AMD GPU (rocminfo)"
            except (OSError, subprocess.SubprocessError):
                pass
    return "cpu", "no NVIDIA or AMD GPU found"


def resolve_torch(choice: str) -> tuple[str, str]:
    """The torch build for ``choice`` (``auto`` detects it) and why; SetupError for a build this
    platform does not have."""
    choice = (choice or "auto").strip().lower()
    if choice not in TORCH_CHOICES:
        raise SetupError(f"unknown torch choice {choice!r}: use one of {', '.join(TORCH_CHOICES)}", EXIT_BAD_INPUT)
    if choice == "auto":
        return detect_torch()
    system = platform.system()
    if system == "Darwin" and choice in ("cuda", "rocm"):
        raise SetupError(f"PyTorch has no {TORCH_LABEL[choice]} build for macOS: use --torch apple (or cpu)",
                         EXIT_BAD_INPUT)
    if choice == "rocm" and system != "Linux":
        raise SetupError("PyTorch's ROCm builds are for Linux only: use --torch cpu (or cuda on an NVIDIA GPU)",
                         EXIT_BAD_INPUT)
    if choice == "apple" and system != "Darwin":
        raise SetupError("--torch apple is for macOS: use cpu, cuda or rocm here", EXIT_BAD_INPUT)
    return choice, "chosen"


def find_wheel(explicit: str | None = None) -> Path:
    """The att3d wheel to install: ``explicit``, else the one inside the extension, else ``dist/``
    of the checkout this file is in (``make wheel``)."""
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file() or p.suffix != ".whl":
            raise SetupError(f"no att3d wheel at {p}: pass the path of an att3d-*.whl file", EXIT_BAD_INPUT)
        return p.resolve()
    for folder in (WHEEL_DIR, Path(__file__).resolve().parents[1] / "dist"):
        hits = sorted(folder.glob("att3d-*.whl"), key=lambda p: p.stat().st_mtime)
        if hits:
            return hits[-1]
    raise SetupError("no att3d wheel found (the extension zip carries one; in a checkout run `make wheel`, "
                     "or pass --wheel)", EXIT_BAD_INPUT)


def venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_script(folder: Path, name: str) -> Path:
    return folder / ("Scripts" if os.name == "nt" else "bin") / (name + (".exe" if os.name == "nt" else ""))


def partial_dir(dest: Path) -> Path:
    """Where the environment is built before it is renamed to ``dest`` (fixed, so a later run can
    clear what a killed one left)."""
    return dest.with_name(f".{dest.name}.partial")


@dataclass
class Plan:
    dest: Path
    torch: str  # cpu | cuda | rocm | apple
    torch_reason: str
    torch_spec: str
    torch_index: str | None  # None: pip's configured index
    index_url: str | None  # for att3d's dependencies; None: pip's configured index
    wheel: Path
    base_python: str
    log: Path
    pip_cache: str | None  # None: pip's own cache; "off": none; else a folder
    cache_dir: str | None  # ATT3D_CACHE for the check (the add-on's cache folder)
    device: str
    replace: bool
    reuse_site: str | None
    commands: list[list[str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def _pip_options(plan: Plan) -> list[str]:
    opts = ["--disable-pip-version-check", "--no-input", "--progress-bar", "off"]
    if plan.pip_cache == "off":
        opts.append("--no-cache-dir")
    elif plan.pip_cache:
        opts += ["--cache-dir", plan.pip_cache]
    return opts


def make_plan(dest: str | os.PathLike, torch: str = "auto", wheel: str | None = None,
              torch_version: str = TORCH_VERSION, torch_index: str | None = None, index_url: str | None = None,
              base_python: str | None = None, log: str | None = None, pip_cache: str | None = None,
              cache_dir: str | None = None, device: str = "auto", replace: bool = False,
              reuse_site: str | None = None) -> Plan:
    """Everything the install will do, with the exact commands (the add-on shows them)."""
    d = Path(os.path.expanduser(str(dest).strip().strip("'\""))).absolute()
    variant, reason = resolve_torch(torch)
    t_index = torch_index if torch_index is not None else os.environ.get(ENV_TORCH_INDEX)
    t_index = TORCH_INDEX[variant] if t_index is None else (None if t_index.strip() in ("", "default") else t_index)
    reuse = reuse_site if reuse_site is not None else os.environ.get(ENV_REUSE_SITE) or None
    plan = Plan(dest=d, torch=variant, torch_reason=reason, torch_spec=f"torch=={torch_version}", torch_index=t_index,
                index_url=index_url, wheel=find_wheel(wheel), base_python=base_python or sys.executable,
                log=Path(log).expanduser().absolute() if log else d.with_name(f"{d.name}-setup.log"),
                pip_cache=pip_cache, cache_dir=cache_dir, device=device, replace=replace, reuse_site=reuse)
    plan.commands = commands_for(plan, d)
    return plan


def commands_for(plan: Plan, env: Path) -> list[list[str]]:
    """The commands that build the environment at ``env``: venv, torch, att3d with its dependencies."""
    py = str(venv_python(env))
    pip = [py, "-m", "pip", "install", *_pip_options(plan)]
    return [
        [plan.base_python, "-m", "venv", "--prompt", plan.dest.name, str(env)],
        pip + [plan.torch_spec] + (["--index-url", plan.torch_index] if plan.torch_index else []),
        pip + [f"{plan.wheel}[{EXTRAS}]"] + (["--index-url", plan.index_url] if plan.index_url else []),
    ]


def describe(plan: Plan) -> str:
    """The plan in a few lines (``--dry-run``, the add-on's preferences)."""
    lines = [f"PyTorch: {TORCH_LABEL[plan.torch]} ({plan.torch_reason}), {plan.torch_spec}"
             + (f" from {plan.torch_index}" if plan.torch_index else " from the package index"),
             f"att3d: {plan.wheel.name} with its dependencies from {plan.index_url or 'the package index'}",
             f"into {plan.dest}; log: {plan.log}", "commands:"]
    lines += ["  " + " ".join(_quote(a) for a in c) for c in plan.commands]
    return "\n".join(lines)


def _quote(arg: str) -> str:
    return f'"{arg}"' if (not arg or any(c in arg for c in " []*?&;'")) else arg


# -- checks -----------------------------------------------------------------------------------------

def read_stamp(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("python") else None


def check_dest(plan: Plan) -> None:
    """``dest`` must be new, empty, or (with ``replace``) a backend of ours; its folder writable."""
    d = plan.dest
    if d.exists() and not d.is_dir():
        raise SetupError(f"{d} is a file, not a folder: choose a new folder", EXIT_BAD_INPUT)
    if d.is_dir() and any(d.iterdir()):
        stamp = read_stamp(d)
        if stamp is None:
            raise SetupError(f"{d} already exists and is not an ATT3D backend: choose a new or empty folder",
                             EXIT_BAD_INPUT)
        if not plan.replace:
            raise SetupError(f"{d} already holds an ATT3D backend (torch {stamp.get('torch', '?')}): remove it "
                             "first, or pass --replace", EXIT_BAD_INPUT)
    for path, what in ((d, "the backend"), (plan.log, "the log file")):
        _check_writable(path, what)


def _check_writable(path: Path, what: str) -> None:
    """``path`` can be created: its nearest existing folder is a folder we may write to (nothing is
    created here: a refused set-up leaves nothing behind)."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise SetupError(f"cannot write {what} to {path}: {folder} is a file, not a folder; choose another folder",
                         EXIT_BAD_INPUT)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SetupError(f"cannot write {what} to {path}: {folder} is not writable; choose a folder you can write "
                         "to", EXIT_BAD_INPUT)


def _index_probe_url(index: str, project: str) -> str:
    return index.rstrip("/") + f"/{project}/"


def check_network(plan: Plan, timeout: float = 15.0) -> None:
    """Every package index the install needs answers (a few KB), before anything is downloaded."""
    probes = []
    if plan.torch_index:
        probes.append((plan.torch_index, "torch"))
    probes.append((plan.index_url or os.environ.get("PIP_INDEX_URL") or PYPI, "pip"))
    for index, project in probes:
        if index.startswith("file:"):
            path = Path(urllib.request.url2pathname(index[5:].lstrip("/") if os.name == "nt" else index[5:]))
            if not path.exists():
                raise SetupError(f"the package index {index} does not exist", EXIT_BAD_INPUT)
            continue
        url = _index_probe_url(index, project)
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "text/html"}),
                                        timeout=timeout) as r:
                r.read(1024)
        except urllib.error.HTTPError as e:
            if e.code >= 500 or e.code in (401, 403, 407):
                raise SetupError(f"the package index {index} refused the request (HTTP {e.code}); try again later "
                                 "or use another index", EXIT_BAD_INPUT) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SetupError(f"cannot reach the package index {index} ({reason}): the set-up downloads PyTorch and "
                             "the backend's packages (1–3 GB), so connect this computer to the internet, or pass "
                             "--index-url / --torch-index with a mirror you can reach", EXIT_BAD_INPUT) from None


# -- running -------------------------------------------------------------------------------------------

class _Runner:
    """Runs the commands with their output in the log, progress from their lines, and cancel."""

    def __init__(self, plan: Plan, progress: ProgressFn, cancel: threading.Event) -> None:
        self.plan, self.progress, self.cancel = plan, progress, cancel
        self.proc: subprocess.Popen | None = None
        self.log = open(plan.log, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.tail: list[str] = []

    def close(self) -> None:
        self.log.close()

    def write_log(self, text: str) -> None:
        self.log.write(text if text.endswith("\n") else text + "\n")
        self.log.flush()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        env.update(PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8", PIP_NO_INPUT="1")
        if self.plan.cache_dir:
            env["ATT3D_CACHE"] = self.plan.cache_dir
        return env

    def run(self, cmd: Sequence[str], stage: str, start: int, end: int,
            on_line: Callable[[str], str | None] | None = None) -> str:
        """Run ``cmd``; the bar moves from ``start`` towards ``end`` with its output. Returns stdout."""
        if self.cancel.is_set():
            raise SetupCancelled()
        self.write_log(f"\n$ {' '.join(_quote(a) for a in cmd)}")
        self.progress(start, stage, "")
        kw: dict[str, Any] = {}
        if os.name == "nt":
            kw["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        try:
            self.proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env(), text=True, encoding="utf-8",
                                         errors="replace", bufsize=1, **kw)
        except OSError as e:
            raise SetupError(f"could not run {cmd[0]}: {e.strerror or e}") from None
        out: list[str] = []
        steps, shown = 0, start
        self.tail = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.write_log(line)
            out.append(line)
            if line.strip():
                self.tail = (self.tail + [line.strip()])[-12:]
            detail = on_line(line) if on_line else _pip_detail(line)
            if detail:
                steps += 1
                frac = 1.0 - (0.85 if on_line is None else 0.6) ** steps
                if line.startswith("Installing collected packages"):
                    frac = max(frac, 0.9)
                shown = max(shown, int(start + (end - start) * min(frac, 0.95)))  # the bar never goes back
                self.progress(shown, stage, detail)
        rc = self.proc.wait()
        self.proc = None
        if self.cancel.is_set():
            raise SetupCancelled()
        if rc != 0:
            raise SetupError(f"{stage} failed (exit status {rc}): {_error_lines(self.tail)}; the whole output is in "
                             f"{self.plan.log}")
        self.progress(end, stage, "done")
        return "\n".join(out)

    def stop(self) -> None:
        self.cancel.set()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.terminate()
            except OSError:
                pass


_PIP_MILESTONES = ("Collecting ", "Downloading ", "Processing ", "Installing collected packages", "Requirement already")


def _pip_detail(line: str) -> str | None:
    """A short detail for the progress line from one line of pip's output (None: not worth one)."""
    s = line.strip()
    return s[:100] if s.startswith(_PIP_MILESTONES) else None


def _error_lines(tail: list[str]) -> str:
    errs = [ln for ln in tail if ln.startswith(("ERROR", "error:", "Traceback")) or "Error" in ln.split(":")[0]]
    pick = errs[-2:] if errs else tail[-2:]
    return " | ".join(pick)[:400] or "no output"


def _rewrite_paths(folder: Path, old: str, new: str) -> int:
    """After the rename: the environment's scripts and config still name the partial folder."""
    n = 0
    targets = [folder / "pyvenv.cfg"]
    scripts = folder / ("Scripts" if os.name == "nt" else "bin")
    if scripts.is_dir():
        targets += [p for p in scripts.iterdir() if p.is_file() and not p.is_symlink()]
    old_b, new_b = old.encode(), new.encode()
    for p in targets:
        try:
            data = p.read_bytes()
        except OSError:
            continue
        if old_b in data and (p.name == "pyvenv.cfg" or data[:2] == b"#!" or p.suffix in ("", ".sh", ".csh", ".fish",
                                                                                         ".bat", ".ps1", ".nu")):
            if b"\0" in data[:4096]:  # a binary launcher: leave it, regenerated below
                continue
            p.write_bytes(data.replace(old_b, new_b))
            n += 1
    return n


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def install(plan: Plan, progress: ProgressFn | None = None, cancel: threading.Event | None = None,
            runner_hook: Callable[[_Runner], None] | None = None) -> dict[str, Any]:
    """Do the install; returns what the JSON line says. Raises SetupError (nothing left behind)."""
    progress = progress or (lambda pct, stage, detail: None)
    cancel = cancel or threading.Event()
    t0 = time.monotonic()
    progress(0, "checking", "the destination and the package indexes")
    check_dest(plan)
    tmp = partial_dir(plan.dest)
    _remove(tmp)  # what a killed run left
    check_network(plan)
    try:
        for folder in (plan.dest.parent, plan.log.parent):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SetupError(f"cannot create {plan.dest.parent}: {e.strerror or e}; choose a folder you can write to",
                         EXIT_BAD_INPUT) from None
    runner = _Runner(plan, progress, cancel)
    if runner_hook is not None:
        runner_hook(runner)
    runner.write_log(f"== att3d setup {time.strftime('%Y-%m-%d %H:%M:%S')}\n{describe(plan)}")
    old: Path | None = None
    moved = False  # the new environment is at dest: a failure from here on removes it there
    try:
        cmds = commands_for(plan, tmp)
        py = str(venv_python(tmp))
        dest_s, tmp_s = str(plan.dest), str(tmp)
        runner.run(cmds[0], "creating the environment", STAGES[0][1], STAGES[1][1])
        if plan.reuse_site:  # tests and shared labs: packages already installed elsewhere count as installed
            site = _site_packages(tmp)
            (site / "_att3d_reuse_site.pth").write_text(str(Path(plan.reuse_site).resolve()) + "\n", encoding="utf-8")
        runner.run(cmds[1], f"installing PyTorch ({TORCH_LABEL[plan.torch]})", STAGES[1][1], STAGES[2][1])
        if plan.reuse_site:  # another att3d may be visible there: this wheel's own copy goes into the environment
            runner.run([py, "-m", "pip", "install", *_pip_options(plan), "--no-deps", "--force-reinstall",
                        str(plan.wheel)], "installing att3d", STAGES[2][1], STAGES[2][1] + 3)
        runner.run(cmds[2], "installing att3d and its dependencies", STAGES[2][1] + (3 if plan.reuse_site else 0),
                   STAGES[3][1])

        def check_line(line: str) -> str | None:
            return line[7:].strip() if line.startswith("stage: ") else None

        out = runner.run([py, "-c", CHECK_SCRIPT, plan.device], "checking the backend", STAGES[3][1], STAGES[4][1],
                         on_line=check_line)
        try:
            check = json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])
        except (IndexError, ValueError):
            raise SetupError(f"the backend check printed no result; see {plan.log}") from None
        if cancel.is_set():
            raise SetupCancelled()
        progress(STAGES[4][1], "finishing", "moving the environment into place")
        if plan.dest.exists():
            if any(plan.dest.iterdir()):  # --replace: keep the old one until the new one is in place
                old = plan.dest.with_name(f".{plan.dest.name}.old")
                _remove(old)
                os.replace(plan.dest, old)
            else:
                plan.dest.rmdir()
        os.replace(tmp, plan.dest)
        moved = True
        _rewrite_paths(plan.dest, tmp_s, dest_s)
        if os.name == "nt":  # the console-script launchers embed their interpreter's path: make them anew
            runner.run([str(venv_python(plan.dest)), "-m", "pip", "install", *_pip_options(plan), "--no-deps",
                        "--force-reinstall", "--no-index", str(plan.wheel)], "finishing", STAGES[4][1], 99)
        if old is not None:
            _remove(old)
            old = None
        result = {"python": str(venv_python(plan.dest)), "att3d": str(venv_script(plan.dest, "att3d")),
                  "dest": dest_s, **check, "torch_variant": plan.torch, "torch_label": TORCH_LABEL[plan.torch],
                  "wheel": plan.wheel.name, "log": str(plan.log), "commands": plan.commands,
                  "seconds": round(time.monotonic() - t0, 1), "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        tmp_stamp = plan.dest / (STAMP + ".tmp")
        tmp_stamp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_stamp, plan.dest / STAMP)
        runner.write_log(f"== done in {result['seconds']} s: {ready_text(result)}")
        progress(100, "finishing", ready_text(result))
        return result
    except BaseException as e:
        if isinstance(e, KeyboardInterrupt):
            e = SetupCancelled()
        runner.write_log(f"== failed: {e}")
        _remove(tmp)
        if moved:
            _remove(plan.dest)
        if old is not None and old.exists():  # put the previous backend back
            os.replace(old, plan.dest)
        if isinstance(e, SetupError):
            raise e from None
        raise
    finally:
        runner.close()


def _site_packages(env: Path) -> Path:
    if os.name == "nt":
        return env / "Lib" / "site-packages"
    hits = sorted((env / "lib").glob("python3*/site-packages"))
    if not hits:
        raise SetupError(f"the new environment at {env} has no site-packages folder")
    return hits[0]


def ready_text(result: dict[str, Any]) -> str:
    """"Backend ready: torch 2.13.0 CPU, model demo (992 training prompts)"."""
    variant = result.get("torch_label") or TORCH_LABEL.get(str(result.get("torch_variant")), "")
    torch_v = str(result.get("torch", "?")).split("+")[0]
    n = result.get("training_prompts")
    prompts = f" ({n} training prompts)" if n else ""
    return f"Backend ready: torch {torch_v} {variant}, model {result.get('model', '?')}{prompts}"


# -- command line ---------------------------------------------------------------------------------------

PROGRESS_RE = re.compile(r"^att3d setup: \[\s*(\d+)%\] (.+?)(?:: (.*))?$")


def format_progress(percent: int, stage: str, detail: str) -> str:
    return f"att3d setup: [{percent:3d}%] {stage}" + (f": {detail}" if detail else "")


def parse_progress(line: str) -> tuple[int, str, str] | None:
    """(percent, stage, detail) of one progress line, or None."""
    m = PROGRESS_RE.match(line.rstrip("\n"))
    return (int(m.group(1)), m.group(2), m.group(3) or "") if m else None


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2
        self.exit(EXIT_BAD_INPUT, f"att3d setup: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m blender_att3d.setup_backend",
                 description="Set up a local ATT3D backend (a Python environment with PyTorch and att3d) in DIR.")
    ap.add_argument("--dest", required=True, help="the backend's folder (created; must be new or empty)")
    ap.add_argument("--torch", default="auto", help=f"PyTorch build: {' | '.join(TORCH_CHOICES)} (default auto)")
    ap.add_argument("--torch-version", default=TORCH_VERSION, help=f"default {TORCH_VERSION}")
    ap.add_argument("--torch-index", help="package index for torch (default: the PyTorch index of the build; "
                    f"'default': pip's configured index; env {ENV_TORCH_INDEX})")
    ap.add_argument("--index-url", help="package index for att3d's dependencies (default: pip's configured index)")
    ap.add_argument("--wheel", help="the att3d wheel (default: the one inside the extension, or dist/)")
    ap.add_argument("--python", help="the Python to base the environment on (default: this one)")
    ap.add_argument("--log", help="log file (default: DIR-setup.log beside DIR)")
    ap.add_argument("--pip-cache", help="pip's download cache: a folder, or 'off' (default: pip's own)")
    ap.add_argument("--cache-dir", help="ATT3D_CACHE for the check (where the backend keeps its caches)")
    ap.add_argument("--device", default="auto", help="device for the check: auto | cpu | cuda (default auto)")
    ap.add_argument("--replace", action="store_true", help="replace a backend already in DIR (kept until the new "
                    "one works)")
    ap.add_argument("--reuse-site", help=f"a site-packages folder whose packages count as installed (shared labs, "
                    f"tests; env {ENV_REUSE_SITE})")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the commands, install nothing")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    last: list[Any] = [None, None, 0.0]

    def progress(pct: int, stage: str, detail: str) -> None:
        # one line per step of the bar or new stage (pip's "already satisfied" lines alone are dozens)
        now = time.monotonic()
        if (pct, stage) == tuple(last[:2]) and now - last[2] < 2.0:
            return
        last[:] = [pct, stage, now]
        print(format_progress(pct, stage, detail), file=sys.stderr, flush=True)

    cancel = threading.Event()
    runner_ref: list[_Runner] = []

    def on_signal(signum, frame) -> None:
        cancel.set()
        for r in runner_ref:
            r.stop()

    handled = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGBREAK] if hasattr(signal, "SIGBREAK") else [])
    for s in handled:
        signal.signal(s, on_signal)
    try:
        plan = make_plan(args.dest, args.torch, args.wheel, args.torch_version, args.torch_index, args.index_url,
                         args.python, args.log, args.pip_cache, args.cache_dir, args.device, args.replace,
                         args.reuse_site)
        if args.dry_run:
            print(describe(plan), file=sys.stderr)
            print(json.dumps({"dry_run": True, **plan.as_dict()}))
            return 0
        result = install(plan, progress, cancel, runner_ref.append)
    except SetupError as e:
        print(f"att3d setup: error: {e}", file=sys.stderr, flush=True)
        return e.code
    print(ready_text(result), file=sys.stderr, flush=True)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
