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
import math
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
WHEEL_DIR = Path(__file__).resolve().parents[1] / "backend_wheel"
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
from backend.engine import Engine
engine = Engine.load("demo", device=sys.argv[1])
engine.warm(lambda stage: print("stage: " + stage, file=sys.stderr, flush=True))
print("stage: generating a test object", file=sys.stderr, flush=True)
mesh = engine.generate("a red cube", 16)
info = engine.info().as_dict()
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
    for folder in (WHEEL_DIR, Path(__file__).resolve().parents[2] / "dist"):
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
class PipIndex:
    """Where pip looks for packages when no index is passed: its configuration (``pip config list``:
    its files and ``PIP_*`` variables). No ``index_url``: PyPI, pip's default."""

    index_url: str | None = None
    extra_index_urls: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)

    def sources(self) -> list[str]:
        """Every place pip may take a package from, its main index first."""
        return [self.index_url or PYPI, *self.extra_index_urls, *self.find_links]

    def label(self) -> str:
        """"pip's configured index (https://mirror/simple)", or pip's default, PyPI."""
        extra = self.extra_index_urls + self.find_links
        more = f" and {len(extra)} more source{'s' if len(extra) > 1 else ''}" if extra else ""
        if self.index_url:
            return f"pip's configured index ({self.index_url}{more})"
        return f"pip's configured index (PyPI{more})"


#: pip's configuration keys and their precedence for ``pip install`` (later wins)
_PIP_SCOPES = ("global", "user", "site", "install", ":env:")
_PIP_LINE = re.compile(r"^(?P<scope>[^.\s]+)\.(?P<key>[\w-]+)\s*=\s*'?(?P<value>.*?)'?\s*$")


def pip_index(timeout: float = 30.0) -> PipIndex:
    """pip's configured index as this Python's ``pip config list`` reports it (config files and
    ``PIP_*`` variables: the same the new environment's pip reads); where this Python has no pip,
    the ``PIP_*`` variables alone. (Never the ``--python`` given for the environment: that one is
    only run to make it.)"""
    found: dict[str, tuple[int, str]] = {}
    lines: list[str] = []
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL,
                           env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")})
        if r.returncode == 0:
            lines = r.stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        pass
    if not lines:  # no pip to ask: its environment variables still apply
        lines = [f":env:.{k[4:].lower().replace('_', '-')}='{v}'" for k, v in os.environ.items()
                 if k in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS")]
    for line in lines:
        m = _PIP_LINE.match(line.strip())
        if not m:
            continue
        key = m.group("key").replace("_", "-")
        rank = _PIP_SCOPES.index(m.group("scope")) if m.group("scope") in _PIP_SCOPES else 0
        if key in ("index-url", "extra-index-url", "find-links") and rank >= found.get(key, (-1, ""))[0]:
            found[key] = (rank, m.group("value"))

    def many(key: str) -> list[str]:
        return found[key][1].split() if key in found else []

    index = found.get("index-url", (0, ""))[1].strip() or None
    return PipIndex(index if index and index.rstrip("/") != PYPI else None, many("extra-index-url"),
                    many("find-links"))


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
    pip: PipIndex = field(default_factory=lambda: PipIndex())
    torch_fallback: bool = True  # the PyTorch index cannot be reached: take torch from pip's index
    notes: list[str] = field(default_factory=list)  # what the set-up decided on the way, for the artist
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
              reuse_site: str | None = None, torch_fallback: bool = True, pip: PipIndex | None = None) -> Plan:
    """Everything the install will do, with the exact commands (the add-on shows them).

    ``index_url``: where att3d's dependencies come from (None: pip's configured index);
    ``torch_index``: where torch comes from (None: PyTorch's own index for the build; ``"default"``:
    pip's configured index); ``torch_fallback``: when PyTorch's index cannot be reached, take torch
    from pip's index instead, saying so. ``pip``: pip's configured index (default: asked)."""
    d = Path(os.path.expanduser(str(dest).strip().strip("'\""))).absolute()
    variant, reason = resolve_torch(torch)
    t_index = torch_index if torch_index is not None else os.environ.get(ENV_TORCH_INDEX)
    t_index = TORCH_INDEX[variant] if t_index is None else (None if t_index.strip() in ("", "default") else t_index)
    reuse = reuse_site if reuse_site is not None else os.environ.get(ENV_REUSE_SITE) or None
    plan = Plan(dest=d, torch=variant, torch_reason=reason, torch_spec=f"torch=={torch_version}", torch_index=t_index,
                index_url=index_url, wheel=find_wheel(wheel), base_python=base_python or sys.executable,
                log=Path(log).expanduser().absolute() if log else d.with_name(f"{d.name}-setup.log"),
                pip_cache=pip_cache, cache_dir=cache_dir, device=device, replace=replace, reuse_site=reuse,
                pip=pip if pip is not None else pip_index(), torch_fallback=torch_fallback)
    if plan.index_url is not None and not plan.index_url.strip():
        plan.index_url = None
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
    lines = [f"PyTorch: {TORCH_LABEL[plan.torch]} ({plan.torch_reason}), {plan.torch_spec} from "
             f"{plan.torch_index or plan.pip.label()}"
             + (" (pip's index if it cannot be reached)" if plan.torch_index and plan.torch_fallback else ""),
             f"att3d: {plan.wheel.name} with its dependencies from {plan.index_url or plan.pip.label()}",
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


def unreachable(index: str, project: str, timeout: float = 15.0) -> str | None:
    """Why the package index (or find-links folder / page) ``index`` cannot serve ``project``, or None
    when it answers. A few KB; nothing is downloaded."""
    if index.startswith("file:") or "://" not in index:  # a folder on this computer
        raw = index[5:] if index.startswith("file:") else index
        path = Path(urllib.request.url2pathname(raw.lstrip("/") if os.name == "nt" and raw.startswith("/") else raw))
        return None if path.exists() else "it does not exist"
    url = _index_probe_url(index, project)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "text/html"}),
                                    timeout=timeout) as r:
            r.read(1024)
    except urllib.error.HTTPError as e:
        if e.code >= 500 or e.code in (401, 403, 407):
            return f"it refused the request: HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        return str(getattr(e, "reason", e))
    return None


#: the words of the note that says PyTorch comes from pip's index (the add-on keeps that note)
NOTE_MARK = "cannot be reached"
#: what to tell someone whose package index cannot be reached: the preferences first, then the flags
CHOOSE_INDEX = ("connect this computer to the internet, or choose a package index you can reach (the add-on's "
                "preferences: Package Index and PyTorch Index; the command line: --index-url / --torch-index)")


def _first_answer(sources: list[str], project: str, timeout: float) -> tuple[bool, str]:
    """(whether one of ``sources`` answers, why the first one does not)."""
    first_why = ""
    for src in sources:
        why = unreachable(src, project, timeout)
        if why is None:
            return True, ""
        first_why = first_why or why
    return False, first_why


def check_network(plan: Plan, timeout: float = 15.0, say: Callable[[str], None] | None = None) -> None:
    """Every package index the install needs answers (a few KB each), before anything is downloaded.

    When PyTorch's index cannot be reached (a studio proxy, a mirror) but pip's configured index
    can, torch comes from pip's index instead (unless ``torch_fallback`` is off): the plan changes,
    and ``say`` and :attr:`Plan.notes` tell why."""
    deps_sources = [plan.index_url] if plan.index_url else plan.pip.sources()
    ok, why = _first_answer(deps_sources, "pip", timeout)
    if not ok:
        where = deps_sources[0] if len(deps_sources) == 1 else plan.pip.label()
        raise SetupError(f"cannot reach the package index {where} ({why}): the set-up downloads PyTorch and the "
                         f"backend's packages (1–3 GB), so {CHOOSE_INDEX}", EXIT_BAD_INPUT)
    if plan.torch_index:
        why = unreachable(plan.torch_index, "torch", timeout)
        if why is None:
            return
        if not plan.torch_fallback:
            raise SetupError(f"cannot reach the PyTorch index {plan.torch_index} ({why}): {CHOOSE_INDEX}",
                             EXIT_BAD_INPUT)
        # torch from where the other packages come from (pip's configured index, or the one given)
        fallback = plan.index_url
        label = fallback or plan.pip.label()
        note = f"the PyTorch index {plan.torch_index} {NOTE_MARK} ({why}): PyTorch comes from {label} instead"
        if platform.system() == "Linux" and plan.torch in ("cpu", "rocm"):
            note += (" (its Linux build: a larger download with CUDA libraries, and it runs on the CPU all the same)"
                     if plan.torch == "cpu" else " (it has no ROCm build: this one runs on the CPU)")
        plan.torch_index = fallback
        plan.notes.append(note)
        plan.commands = commands_for(plan, plan.dest)
        if say is not None:
            say(note)
    else:
        ok, why = _first_answer(plan.pip.sources(), "torch", timeout)
        if not ok:
            raise SetupError(f"cannot reach the package index {plan.pip.label()} for PyTorch ({why}): {CHOOSE_INDEX}",
                             EXIT_BAD_INPUT)


# -- running -------------------------------------------------------------------------------------------

#: pip's temporary folder, inside the environment being built (so its downloads can be counted), removed
#: after every pip step
PIP_TMP = ".pip-tmp"
#: how often the bar follows the bytes a pip step has written
MONITOR_S = 1.0
#: about how many bytes a pip step writes (downloads + installed files): the bar's scale, not a limit
TORCH_BYTES = {"cpu": 1.2e9, "cuda": 7e9, "rocm": 14e9, "apple": 0.6e9}
DEPS_BYTES = 0.6e9
VENV_BYTES = 23e6  # a virtual environment with pip in it (measured: 23 MB, 17 s on a busy 2-core machine)


def torch_bytes(plan: Plan) -> float:
    """What the torch step writes, about: from pip's index (PyPI) Linux's torch carries CUDA."""
    if plan.torch_index is None and platform.system() == "Linux" and plan.torch in ("cpu", "rocm"):
        return TORCH_BYTES["cuda"]
    return TORCH_BYTES[plan.torch]


def _bytes_fraction(n: float, expect: float) -> float:
    """How far a step is that wrote ``n`` of about ``expect`` bytes: steady up to 0.9, then slower."""
    if expect <= 0:
        return 0.0
    if n <= expect:
        return 0.9 * n / expect
    return 0.9 + 0.05 * (1.0 - math.exp(-(n - expect) / expect))


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


_DOWNLOAD_RE = re.compile(r"^\s*Downloading \S+.*\(([\d.]+) (bytes|kB|MB|GB)\)\s*$")
_UNITS = {"bytes": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
#: what a downloaded wheel writes, downloaded and unpacked, per byte of its size (torch's CPU wheel: about
#: 0.2 GB that unpacks to 0.8 GB)
WRITTEN_PER_DOWNLOADED = 4.0


def announced_bytes(line: str) -> float:
    """The size pip announces for a download it starts ("Downloading torch-….whl (199.7 MB)"), else 0."""
    m = _DOWNLOAD_RE.match(line)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0


class _Bar:
    """One step's share of the bar: it only moves forward. A step whose bytes are followed moves mostly
    with them (pip's few lines come in bursts: alone they left the bar still for a minute while
    torch downloaded); another with its output lines."""

    #: of a followed step's share: how much pip's lines move the bar (the rest: the bytes written)
    LINES_SHARE = 0.3

    def __init__(self, start: int, end: int, bytes_followed: bool = False) -> None:
        self.start, self.end, self.shown = start, end, start
        self.detail, self.written = "", 0
        self.announced = 0.0  # the sizes of the downloads pip announced
        self.bytes_followed = bytes_followed
        self.lines_frac = self.bytes_frac = 0.0

    def expect(self, estimate: float) -> float:
        """The bytes the step will write: from what pip announced once it did, else ``estimate``."""
        return self.announced * WRITTEN_PER_DOWNLOADED if self.announced else estimate

    def advance(self, lines_frac: float | None = None, detail: str | None = None, written: int | None = None,
                bytes_frac: float | None = None) -> int:
        if detail:
            self.detail = detail
        if written is not None:
            self.written = max(self.written, written)
        if lines_frac is not None:
            self.lines_frac = max(self.lines_frac, lines_frac)
        if bytes_frac is not None:
            self.bytes_frac = max(self.bytes_frac, bytes_frac)
        frac = self.lines_frac
        if self.bytes_followed:
            frac = self.LINES_SHARE * self.lines_frac + (1 - self.LINES_SHARE) * self.bytes_frac
        self.shown = max(self.shown, int(self.start + (self.end - self.start) * min(frac, 0.95)))
        return self.shown

    def text(self) -> str:
        if not self.written:
            return self.detail
        return f"{self.detail} ({_mb(self.written)} written)" if self.detail else f"{_mb(self.written)} written"


class _Written:
    """Bytes under ``root``: pip's downloads in ``live`` (summed afresh: files grow there) and the files
    it installed (a folder whose entries did not change is not listed again)."""

    def __init__(self, root: Path, live: Path) -> None:
        self.root, self.live = str(root), str(live)
        self._dirs: dict[str, tuple[int, int, list[str]]] = {}

    def total(self) -> int:
        return self._tree(self.root, False)

    def _tree(self, path: str, live: bool) -> int:
        live = live or path == self.live
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return 0
        cached = None if live else self._dirs.get(path)
        if cached is not None and cached[0] == mtime:
            files, subdirs = cached[1], cached[2]
        else:
            files, subdirs = 0, []
            try:
                with os.scandir(path) as entries:
                    for e in entries:
                        try:
                            if e.is_dir(follow_symlinks=False):
                                subdirs.append(e.path)
                            elif e.is_file(follow_symlinks=False):
                                files += e.stat(follow_symlinks=False).st_size
                        except OSError:
                            pass
            except OSError:
                return 0
            if not live:
                self._dirs[path] = (mtime, files, subdirs)
        return files + sum(self._tree(d, live) for d in subdirs)


class _Runner:
    """Runs the commands with their output in the log, progress from their lines, and cancel."""

    def __init__(self, plan: Plan, progress: ProgressFn, cancel: threading.Event) -> None:
        self.plan, self.progress, self.cancel = plan, progress, cancel
        self.proc: subprocess.Popen | None = None
        self.log = open(plan.log, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.tail: list[str] = []
        self._lock = threading.Lock()

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
            on_line: Callable[[str], str | None] | None = None, watch: Path | None = None,
            expect_bytes: float = 0.0) -> str:
        """Run ``cmd``; the bar moves from ``start`` towards ``end`` with its output. Returns stdout.

        ``watch`` (a pip step): the environment being installed into. pip prints nothing while it
        downloads (a torch wheel: minutes), so the bar also follows the bytes written under it —
        pip's downloads (its temporary folder is put there) and the files it installs — against
        ``expect_bytes``, every :data:`MONITOR_S` seconds."""
        if self.cancel.is_set():
            raise SetupCancelled()
        self.write_log(f"\n$ {' '.join(_quote(a) for a in cmd)}")
        self._say(start, stage, "")
        kw: dict[str, Any] = {}
        if os.name == "nt":
            kw["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        env = self.env()
        written = None
        if watch is not None:
            pip_tmp = watch / PIP_TMP
            pip_tmp.mkdir(parents=True, exist_ok=True)
            env.update(TMPDIR=str(pip_tmp), TEMP=str(pip_tmp), TMP=str(pip_tmp))
            written = _Written(watch, pip_tmp)
        try:
            self.proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, text=True, encoding="utf-8",
                                         errors="replace", bufsize=1, **kw)
        except OSError as e:
            raise SetupError(f"could not run {cmd[0]}: {e.strerror or e}") from None
        bar = _Bar(start, end, bytes_followed=written is not None)
        done = threading.Event()
        if written is not None:
            threading.Thread(target=self._follow_bytes, args=(written, bar, stage, expect_bytes, done), daemon=True,
                             name="att3d-setup-bytes").start()
        out: list[str] = []
        steps = 0
        self.tail = []
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                self.write_log(line)
                out.append(line)
                if line.strip():
                    self.tail = (self.tail + [line.strip()])[-12:]
                bar.announced += announced_bytes(line)
                detail = on_line(line) if on_line else _pip_detail(line)
                if detail:
                    steps += 1
                    frac = 1.0 - (0.85 if on_line is None else 0.6) ** steps
                    if line.startswith("Installing collected packages"):
                        frac = max(frac, 0.9)
                    self._advance(bar, stage, lines_frac=frac, detail=detail)
            rc = self.proc.wait()
        finally:
            done.set()
            if watch is not None:
                _remove(watch / PIP_TMP)  # never moved into place with the environment
        self.proc = None
        if self.cancel.is_set():
            raise SetupCancelled()
        if rc != 0:
            raise SetupError(f"{stage} failed (exit status {rc}): {_error_lines(self.tail)}; the whole output is in "
                             f"{self.plan.log}")
        self._say(end, stage, "done")
        return "\n".join(out)

    def _say(self, percent: int, stage: str, detail: str) -> None:
        with self._lock:  # the output reader and the byte counter both report
            self.progress(percent, stage, detail)

    def _advance(self, bar: _Bar, stage: str, **kw: Any) -> None:
        """Move ``bar`` (:meth:`_Bar.advance`'s arguments) and report it, as one step under the lock: the
        reader and the byte counter computing apart could report 50 % and then 47 %."""
        with self._lock:
            self.progress(bar.advance(**kw), stage, bar.text())

    def _follow_bytes(self, written: _Written, bar: _Bar, stage: str, expect: float, done: threading.Event) -> None:
        base = written.total()
        while not done.wait(MONITOR_S):
            n = max(0, written.total() - base)
            self._advance(bar, stage, written=n, bytes_frac=_bytes_fraction(n, bar.expect(expect)))

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
    check_network(plan, say=lambda note: progress(STAGES[0][1], "checking", note))
    try:
        for folder in (plan.dest.parent, plan.log.parent):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SetupError(f"cannot create {plan.dest.parent}: {e.strerror or e}; choose a folder you can write to",
                         EXIT_BAD_INPUT) from None
    runner = _Runner(plan, progress, cancel)
    if runner_hook is not None:
        runner_hook(runner)
    runner.write_log(f"== att3d setup {time.strftime('%Y-%m-%d %H:%M:%S')}\n{describe(plan)}"
                     + "".join(f"\nnote: {n}" for n in plan.notes))
    old: Path | None = None
    moved = False  # the new environment is at dest: a failure from here on removes it there
    try:
        cmds = commands_for(plan, tmp)
        py = str(venv_python(tmp))
        dest_s, tmp_s = str(plan.dest), str(tmp)
        runner.run(cmds[0], "creating the environment", STAGES[0][1], STAGES[1][1], watch=tmp,
                   expect_bytes=VENV_BYTES)
        if plan.reuse_site:  # tests and shared labs: packages already installed elsewhere count as installed
            site = _site_packages(tmp)
            (site / "_att3d_reuse_site.pth").write_text(str(Path(plan.reuse_site).resolve()) + "\n", encoding="utf-8")
        runner.run(cmds[1], f"installing PyTorch ({TORCH_LABEL[plan.torch]})", STAGES[1][1], STAGES[2][1],
                   watch=tmp, expect_bytes=torch_bytes(plan))
        if plan.reuse_site:  # another att3d may be visible there: this wheel's own copy goes into the environment
            runner.run([py, "-m", "pip", "install", *_pip_options(plan), "--no-deps", "--force-reinstall",
                        str(plan.wheel)], "installing att3d", STAGES[2][1], STAGES[2][1] + 3)
        runner.run(cmds[2], "installing att3d and its dependencies", STAGES[2][1] + (3 if plan.reuse_site else 0),
                   STAGES[3][1], watch=tmp, expect_bytes=DEPS_BYTES)

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
                  "wheel": plan.wheel.name, "log": str(plan.log), "commands": plan.commands, "notes": plan.notes,
                  "torch_index": plan.torch_index or plan.pip.label(),
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
    ap.add_argument("--no-torch-fallback", action="store_true", help="when the PyTorch index cannot be reached, "
                    "stop (default: take torch from pip's configured index, or --index-url, and say so)")
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
                         args.reuse_site, torch_fallback=not args.no_torch_fallback)
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
