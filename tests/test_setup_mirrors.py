"""Set Up Local Backend behind a mirror (issue 26, item 4): pip's configured index is read and offered;
when PyTorch's own index cannot be reached the set-up says so and takes torch from pip's index; the
bar moves while pip downloads (it prints nothing then), so it never sits still for long.

No network: the "mirror" is an HTTP server on loopback started here, serving a stand-in torch wheel
slowly; the unreachable PyTorch index is a closed port on this computer.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from blender_att3d.lifecycle import setup_backend

ROOT = Path(__file__).resolve().parents[1]
CLOSED = "http://127.0.0.1:9/whl/cpu"  # nothing answers on the discard port
WHEEL = "torch-2.13.0-py3-none-any.whl"


def stand_in_torch(size: int) -> bytes:
    """A wheel named torch 2.13.0 holding ``size`` random bytes (not importable as torch)."""
    files = {"att3d_stand_in_torch/blob.bin": os.urandom(size),
             "torch-2.13.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0\n",
             "torch-2.13.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: att3d-test\nRoot-Is-Purelib: true\n"
                                             b"Tag: py3-none-any\n"}
    record = "".join(f"{name},sha256={hashlib.sha256(data).hexdigest()},{len(data)}\n" for name, data in files.items())
    files["torch-2.13.0.dist-info/RECORD"] = (record + "torch-2.13.0.dist-info/RECORD,,\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


class Mirror:
    """A package index on loopback: /simple/torch/ lists the stand-in wheel, served at ``rate`` bytes/s."""

    def __init__(self, wheel: bytes, rate: float) -> None:
        self.wheel, self.rate, self.requests = wheel, rate, []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirror.requests.append(self.path)
                if self.path.rstrip("/") == "/simple/torch":
                    digest = hashlib.sha256(mirror.wheel).hexdigest()
                    body = f'<html><body><a href="/files/{WHEEL}#sha256={digest}">{WHEEL}</a></body></html>'.encode()
                    self._send(body, "text/html")
                elif self.path.rstrip("/") in ("/simple", "/simple/pip"):
                    self._send(b"<html><body></body></html>", "text/html")
                elif self.path == f"/files/{WHEEL}":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(mirror.wheel)))
                    self.end_headers()
                    chunk = 64 * 1024
                    for i in range(0, len(mirror.wheel), chunk):
                        self.wfile.write(mirror.wheel[i:i + chunk])
                        time.sleep(chunk / mirror.rate)
                else:
                    self.send_error(404)

            def _send(self, body: bytes, ctype: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pip_env(tmp_path, monkeypatch):
    """This computer's pip configuration out of the way: none of its files, none of its variables."""
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT", "PIP_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv(setup_backend.ENV_TORCH_INDEX, raising=False)
    monkeypatch.delenv(setup_backend.ENV_REUSE_SITE, raising=False)
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def stand_in_att3d(tmp_path: Path) -> Path:
    """The installer only checks that the wheel is a .whl file; pip refuses this one later."""
    wheel = tmp_path / "att3d-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    return wheel


def test_pips_configured_index_is_read_from_its_files_and_variables(tmp_path, monkeypatch, pip_env):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://mirror.studio.example/simple\n"
                    "find-links = /srv/wheels\n[install]\nextra-index-url = https://b.example/simple "
                    "https://c.example/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    found = setup_backend.pip_index()
    assert found == setup_backend.PipIndex("https://mirror.studio.example/simple",
                                           ["https://b.example/simple", "https://c.example/simple"], ["/srv/wheels"])
    assert found.label() == "pip's configured index (https://mirror.studio.example/simple and 3 more sources)"
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.example/simple")  # a variable wins over the files
    assert setup_backend.pip_index().index_url == "https://env.example/simple"
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_INDEX_URL")
    assert setup_backend.pip_index() == setup_backend.PipIndex()
    assert setup_backend.PipIndex().label() == "pip's configured index (PyPI)"


def test_the_plan_says_where_each_part_comes_from(tmp_path, monkeypatch, pip_env):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.studio.example/simple")
    plan = setup_backend.make_plan(tmp_path / "backend", "cpu", wheel=str(stand_in_att3d(tmp_path)))
    text = setup_backend.describe(plan)
    assert "from https://download.pytorch.org/whl/cpu (pip's index if it cannot be reached)" in text
    assert "with its dependencies from pip's configured index (https://mirror.studio.example/simple)" in text
    plan = setup_backend.make_plan(tmp_path / "backend", "cpu", wheel=str(stand_in_att3d(tmp_path)),
                                   torch_index="default", index_url="https://other.example/simple")
    assert plan.torch_index is None and plan.commands[1][-1] == "torch==2.13.0"  # pip's own choice of index
    assert plan.commands[2][-2:] == ["--index-url", "https://other.example/simple"]


def _run_streaming(args: list[str], env: dict, timeout: float = 300) -> tuple[int, list[tuple[float, str]], str]:
    """Run the installer; its stderr lines with the time each arrived."""
    proc = subprocess.Popen([sys.executable, "-m", "blender_att3d.setup_backend", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    lines: list[tuple[float, str]] = []

    def read():
        for line in proc.stderr:
            lines.append((time.monotonic(), line.rstrip("\n")))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    out = proc.stdout.read()  # (not communicate(): it would read stderr too, taking lines from the thread)
    proc.wait(timeout)
    t.join(10)
    return proc.returncode, lines, out


@pytest.mark.slow  # makes a virtual environment and installs into it (about 35 s)
def test_pytorch_index_unreachable_torch_comes_from_pips_index_and_the_bar_keeps_moving(tmp_path, pip_env):
    """A studio mirror: PyTorch's index does not answer, pip's configured index does. The set-up says
    so, installs torch from the mirror (a 24 MB stand-in served at 3 MB/s: pip prints nothing for
    8 s), and its bar moves all the while."""
    mirror = Mirror(stand_in_torch(24 * 2**20), rate=3 * 2**20)
    try:
        env = {**pip_env, "PIP_INDEX_URL": mirror.url}
        dest = tmp_path / "backend"
        rc, lines, _ = _run_streaming(["--dest", str(dest), "--torch", "cpu", "--torch-index", CLOSED, "--wheel",
                                       str(stand_in_att3d(tmp_path)), "--pip-cache", "off"], env)
    finally:
        mirror.close()
    progress = [(t, setup_backend.parse_progress(ln)) for t, ln in lines if setup_backend.parse_progress(ln)]
    notes = [p[2] for _, p in progress if p[1] == "checking" and "cannot be reached" in p[2]]
    assert notes and notes[0].startswith(f"the PyTorch index {CLOSED} cannot be reached (")
    assert f"PyTorch comes from pip's configured index ({mirror.url}) instead" in notes[0]
    assert f"/files/{WHEEL}" in mirror.requests  # torch came from the mirror
    # the torch step: from its first line to its "done", a line at least every 3 s, the bar moving
    torch = [(t, p) for t, p in progress if p[1] == "installing PyTorch (CPU)"]
    assert torch[-1][1][2] == "done", torch[-3:]
    times = [t for t, _ in torch]
    assert times[-1] - times[0] > 6  # the download took its time
    assert max(b - a for a, b in zip(times, times[1:])) < 3.0
    percents = [p[0] for _, p in torch]
    assert percents == sorted(percents) and len(set(percents)) >= 8, percents
    changes = [t for (t, p), (_, q) in zip(torch, torch[1:]) if q[0] != p[0]]
    assert max(b - a for a, b in zip([times[0], *changes], [*changes, times[-1]])) < 4.0, percents
    assert any("MB written" in p[2] for _, p in torch)
    # then the stand-in att3d wheel is refused: a clean failure, nothing left
    errors = [ln for _, ln in lines if ln.startswith("att3d setup: error:")]
    assert rc == 1 and len(errors) == 1 and "installing att3d and its dependencies failed" in errors[0]
    assert not dest.exists() and not setup_backend.partial_dir(dest).exists()
    log = (tmp_path / "backend-setup.log").read_text()
    assert f"note: the PyTorch index {CLOSED} cannot be reached" in log


def test_without_the_fallback_an_unreachable_pytorch_index_is_one_sentence(tmp_path, pip_env):
    mirror = Mirror(b"", rate=1e9)
    try:
        env = {**pip_env, "PIP_INDEX_URL": mirror.url}
        r = subprocess.run([sys.executable, "-m", "blender_att3d.setup_backend", "--dest", str(tmp_path / "b"),
                            "--torch", "cpu", "--torch-index", CLOSED, "--no-torch-fallback", "--wheel",
                            str(stand_in_att3d(tmp_path))], capture_output=True, text=True, env=env, cwd=str(ROOT),
                           timeout=120)
    finally:
        mirror.close()
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("att3d setup: error:")]
    assert r.returncode == 2 and len(errors) == 1
    assert errors[0].startswith(f"att3d setup: error: cannot reach the PyTorch index {CLOSED} (")
    assert "the add-on's preferences: Package Index and PyTorch Index" in errors[0]
    assert not (tmp_path / "b").exists()


def test_nothing_reachable_names_pips_index(tmp_path, pip_env):
    env = {**pip_env, "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}
    r = subprocess.run([sys.executable, "-m", "blender_att3d.setup_backend", "--dest", str(tmp_path / "b"),
                        "--torch", "cpu", "--torch-index", CLOSED, "--wheel", str(stand_in_att3d(tmp_path))],
                       capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=120)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("att3d setup: error:")]
    assert r.returncode == 2 and len(errors) == 1
    assert errors[0].startswith("att3d setup: error: cannot reach the package index http://127.0.0.1:9/simple (")


def test_the_bar_follows_the_bytes_pip_announces():
    assert setup_backend.announced_bytes("  Downloading http://h/files/torch-2.13.0-py3-none-any.whl (40.0 MB)") == 40e6
    assert setup_backend.announced_bytes("Downloading torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl (899.7 MB)") \
        == pytest.approx(899.7e6)
    assert setup_backend.announced_bytes("Collecting torch==2.13.0") == 0
    fr = [setup_backend._bytes_fraction(n, 100.0) for n in (0, 50, 100, 200, 1000)]
    assert fr == sorted(fr) and fr[0] == 0 and fr[2] == pytest.approx(0.9) and fr[-1] < 0.95
    assert json.dumps(fr)  # plain floats


@pytest.mark.slow  # makes a virtual environment and installs into it (about 40 s)
def test_the_add_ons_set_up_run_keeps_the_note_and_its_bar_moves(tmp_path, monkeypatch, pip_env):
    """What the preferences show, from the add-on's runner of the installer: the note that PyTorch
    comes from pip's index, a bar that moves during the download, and the failure's one sentence."""
    from blender_att3d.lifecycle import setup_job

    wheel = stand_in_att3d(tmp_path)
    real_args = setup_job.installer_args
    monkeypatch.setattr(setup_job, "installer_args", lambda *a: real_args(*a) + ["--wheel", str(wheel)])
    mirror = Mirror(stand_in_torch(24 * 2**20), rate=3 * 2**20)
    monkeypatch.setenv("PIP_INDEX_URL", mirror.url)
    try:
        run = setup_job.SetupRun(tmp_path / "ext", "cpu", setup_job.Indexes(torch_index="CUSTOM",
                                                                           torch_index_url=CLOSED))
        seen = []
        while run.running:
            seen.append((time.monotonic(), run.stage, run.percent))
            time.sleep(0.25)
    finally:
        mirror.close()
    assert run.notes and run.notes[0].startswith(f"the PyTorch index {CLOSED} cannot be reached (")
    torch = [(t, pct) for t, stage, pct in seen if stage == "installing PyTorch (CPU)"]
    changes = [t for (t, a), (_, b) in zip(torch, torch[1:]) if b != a]
    assert len(changes) >= 5 and max(b - a for a, b in zip(changes, changes[1:])) < 4.0, torch
    assert run.result is None and run.end_text().startswith("Set-up failed: installing att3d and its dependencies "
                                                            "failed (exit status 1): ")
    assert not (tmp_path / "ext" / "backend").exists()


def test_a_finished_set_up_says_where_pytorch_came_from():
    from blender_att3d.lifecycle import setup_job

    run = setup_job.SetupRun.__new__(setup_job.SetupRun)
    run.done, run.started, run.finished, run.cancelled = threading.Event(), 0.0, 312.0, False
    run.done.set()
    run.result = {"torch": "2.13.0", "torch_variant": "cpu", "model": "demo", "training_prompts": 992,
                  "notes": ["the PyTorch index https://download.pytorch.org/whl/cpu cannot be reached (timed out): "
                            "PyTorch comes from pip's configured index (https://mirror.example/simple) instead"]}
    assert run.end_text() == (
        "Backend ready: torch 2.13.0 CPU, model demo (992 training prompts), in 312 s — The PyTorch index "
        "https://download.pytorch.org/whl/cpu cannot be reached (timed out): PyTorch comes from pip's configured "
        "index (https://mirror.example/simple) instead")
