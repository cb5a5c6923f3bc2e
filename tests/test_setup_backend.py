"""``python -m blender_att3d.setup_backend``: the installer *Set Up Local Backend* runs.

The fast tests drive it with stand-in interpreters (shell scripts that create, fail or hang) and
indexes on disk, so nothing reaches the network: bad input is one sentence with exit status 2,
a failure or a cancel removes the partial folder (and puts a replaced backend back). The slow test
installs for real (torch from pip's configured index, att3d's dependencies from the package index,
pip's cache reused) and generates with the result.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blender_att3d.lifecycle import setup_backend

ROOT = Path(__file__).resolve().parents[1]


def run_setup(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    e.pop(setup_backend.ENV_TORCH_INDEX, None)
    e.pop(setup_backend.ENV_REUSE_SITE, None)
    return subprocess.run([sys.executable, "-m", "blender_att3d.setup_backend", *args], capture_output=True,
                          text=True, timeout=timeout, env=e, cwd=str(ROOT))


@pytest.fixture(autouse=True)
def hermetic_pip(request, monkeypatch, tmp_path):
    """pip's configuration of this computer stays out of the fast tests (its index would be asked):
    no config files, and pip's configured index is a folder on disk. The slow real install keeps
    the real configuration (it takes the torch wheel on this disk through it)."""
    if request.node.get_closest_marker("slow"):
        return
    for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONSTRAINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    (tmp_path / "pip-index").mkdir()
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "pip-index").as_uri())


@pytest.fixture
def offline(tmp_path):
    """Options that keep an install off the network: a package index on disk, torch from it too, a
    stand-in wheel (the installer only checks that it is a .whl file)."""
    index = tmp_path / "index"
    index.mkdir()
    wheel = tmp_path / "att3d-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    return ["--index-url", index.as_uri(), "--torch-index", "default", "--wheel", str(wheel)]


def fake_python(tmp_path: Path, body: str) -> Path:
    """A stand-in base interpreter: ``python -m venv --prompt NAME DIR`` runs ``body`` with DIR as $5."""
    p = tmp_path / "fake-python"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return p


def one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("att3d setup: error:")]
    assert len(lines) == 1, r.stderr
    return lines[0].removeprefix("att3d setup: error: ")


def nothing_left(tmp_path: Path, dest: Path) -> None:
    """Neither the backend nor its partial (or previous) folder is there."""
    assert not dest.exists()
    assert not list(dest.parent.glob(f".{dest.name}.*"))


def test_unknown_torch_choice(tmp_path, offline):
    dest = tmp_path / "new" / "backend"
    r = run_setup("--dest", str(dest), "--torch", "tpu", *offline)
    assert r.returncode == 2
    assert one_error_line(r) == "unknown torch choice 'tpu': use one of auto, cpu, cuda, rocm, apple"
    assert not (tmp_path / "new").exists()  # not even its folder


@pytest.mark.parametrize("choice, message", [("apple", "--torch apple is for macOS"),
                                             ("rocm", None)])
def test_a_build_this_platform_lacks(tmp_path, offline, choice, message):
    import platform

    r = run_setup("--dest", str(tmp_path / "b"), "--torch", choice, "--dry-run", *offline)
    if platform.system() == "Linux" and choice == "rocm":
        assert r.returncode == 0  # ROCm is Linux's
        return
    assert r.returncode == 2 and message in one_error_line(r)


def test_unwritable_folder(tmp_path, offline):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    r = run_setup("--dest", str(blocker / "backend"), "--torch", "cpu", *offline)
    assert r.returncode == 2
    assert one_error_line(r) == (f"cannot write the backend to {blocker / 'backend'}: {blocker} is a file, not a "
                                 "folder; choose another folder")
    assert blocker.read_text() == "x"


def test_no_network_is_one_sentence_before_anything_is_written(tmp_path, offline):
    dest = tmp_path / "backend"
    opts = offline[2:]  # an index nobody answers on (a closed port on this computer)
    r = run_setup("--dest", str(dest), "--torch", "cpu", "--index-url", "http://127.0.0.1:9/simple", *opts)
    assert r.returncode == 2
    msg = one_error_line(r)
    assert msg.startswith("cannot reach the package index http://127.0.0.1:9/simple (")
    assert msg.endswith("connect this computer to the internet, or choose a package index you can reach (the "
                        "add-on's preferences: Package Index and PyTorch Index; the command line: --index-url / "
                        "--torch-index)")
    nothing_left(tmp_path, dest)
    assert not (tmp_path / "backend-setup.log").exists()


def test_a_folder_that_is_not_a_backend_is_left_alone(tmp_path, offline):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "thesis.txt").write_text("precious")
    r = run_setup("--dest", str(dest), "--torch", "cpu", *offline)
    assert r.returncode == 2 and one_error_line(r) == (f"{dest} already exists and is not an ATT3D backend: "
                                                       "choose a new or empty folder")
    assert (dest / "thesis.txt").read_text() == "precious"


def test_a_broken_interpreter_path(tmp_path, offline):
    dest = tmp_path / "backend"
    r = run_setup("--dest", str(dest), "--torch", "cpu", "--python", str(tmp_path / "no" / "python"), *offline)
    assert r.returncode == 1
    assert one_error_line(r) == f"could not run {tmp_path / 'no' / 'python'}: No such file or directory"
    nothing_left(tmp_path, dest)


PIP_FAILS = """mkdir -p "$5/bin" "$5/lib/python3.11/site-packages"
cat > "$5/bin/python" <<'EOF'
#!/bin/sh
echo "Looking in indexes: somewhere"
echo "ERROR: Could not find a version that satisfies the requirement torch==9.9 (from versions: none)"
echo "ERROR: No matching distribution found for torch==9.9"
exit 1
EOF
chmod +x "$5/bin/python"
"""


def test_a_failed_install_removes_the_partial_folder_and_keeps_the_log(tmp_path, offline):
    dest = tmp_path / "backend"
    py = fake_python(tmp_path, PIP_FAILS)
    r = run_setup("--dest", str(dest), "--torch", "cpu", "--torch-version", "9.9", "--python", str(py), *offline)
    assert r.returncode == 1
    log = tmp_path / "backend-setup.log"
    assert one_error_line(r) == ("installing PyTorch (CPU) failed (exit status 1): ERROR: Could not find a version "
                                 "that satisfies the requirement torch==9.9 (from versions: none) | ERROR: No matching "
                                 f"distribution found for torch==9.9; the whole output is in {log}")
    nothing_left(tmp_path, dest)
    text = log.read_text()
    assert "torch==9.9" in text and "== failed:" in text


def test_replace_keeps_the_old_backend_when_the_new_one_fails(tmp_path, offline):
    dest = tmp_path / "backend"
    dest.mkdir()
    stamp = {"python": str(dest / "bin" / "python"), "torch": "2.13.0+cpu"}
    (dest / setup_backend.STAMP).write_text(json.dumps(stamp))
    r = run_setup("--dest", str(dest), "--torch", "cpu", *offline)
    assert r.returncode == 2 and "already holds an ATT3D backend (torch 2.13.0+cpu)" in one_error_line(r)
    r = run_setup("--dest", str(dest), "--torch", "cpu", "--replace", "--python",
                  str(fake_python(tmp_path, PIP_FAILS)), *offline)
    assert r.returncode == 1
    assert json.loads((dest / setup_backend.STAMP).read_text()) == stamp  # the old one, untouched
    assert not setup_backend.partial_dir(dest).exists() and not (tmp_path / ".backend.old").exists()


def test_cancel_leaves_nothing_half_installed(tmp_path, offline):
    dest = tmp_path / "backend"
    hangs = fake_python(tmp_path, 'mkdir -p "$5/bin"; echo half > "$5/bin/half-written"\nexec sleep 120\n')
    e = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "blender_att3d.setup_backend", "--dest", str(dest), "--torch",
                             "cpu", "--python", str(hangs), *offline], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e, cwd=str(ROOT))
    partial = setup_backend.partial_dir(dest)
    deadline = time.monotonic() + 60
    while not (partial / "bin" / "half-written").exists():  # the environment is half made
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # what the add-on's Cancel does
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and time.monotonic() - t0 < 10
    assert "att3d setup: error: cancelled; nothing was installed" in err
    assert "creating the environment" in err  # the progress lines named the stage
    nothing_left(tmp_path, dest)


def test_dry_run_shows_the_exact_commands(tmp_path, offline):
    dest = tmp_path / "backend"
    r = run_setup("--dest", str(dest), "--torch", "cuda", "--dry-run", "--wheel", offline[-1])
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout.strip().splitlines()[-1])
    assert plan["torch"] == "cuda" and plan["torch_index"] == setup_backend.TORCH_INDEX["cuda"]
    py = str(dest / "bin" / "python")
    assert plan["commands"][0] == [sys.executable, "-m", "venv", "--prompt", "backend", str(dest)]
    assert plan["commands"][1][:3] == [py, "-m", "pip"] and plan["commands"][1][-3:] == [
        "torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cu128"]
    assert plan["commands"][2][-1] == f"{offline[-1]}[serve,mesh]"
    assert f'"{offline[-1]}[serve,mesh]"' in r.stderr  # shown quoted, ready to paste into a shell
    assert not dest.exists()


@pytest.mark.parametrize("tools, expected", [
    ({"nvidia-smi": 'echo "GPU 0: NVIDIA GeForce RTX 4090 (UUID: GPU-1234)"'},
     ("cuda", "GPU 0: NVIDIA GeForce RTX 4090")),
    ({"nvidia-smi": "exit 9", "rocminfo": 'echo "  Name:    gfx1100"'}, ("rocm", "an AMD GPU (rocminfo)")),
    ({}, ("cpu", "no NVIDIA or AMD GPU found")),
])
def test_auto_detects_the_torch_build(tmp_path, monkeypatch, tools, expected):
    monkeypatch.setattr(setup_backend.platform, "system", lambda: "Linux")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert setup_backend.detect_torch() == expected


def test_progress_lines_parse():
    line = setup_backend.format_progress(42, "installing PyTorch (CPU)", "Collecting torch==2.13.0")
    assert line == "att3d setup: [ 42%] installing PyTorch (CPU): Collecting torch==2.13.0"
    assert setup_backend.parse_progress(line) == (42, "installing PyTorch (CPU)", "Collecting torch==2.13.0")
    assert setup_backend.parse_progress("att3d setup: [100%] finishing") == (100, "finishing", "")
    assert setup_backend.parse_progress("Collecting torch") is None


@pytest.mark.slow
def test_a_real_install_then_att3d_generate(tmp_path):
    """The whole installer for real (CPU torch 2.13.0 from pip's configured index, which takes the
    build on this disk; att3d's dependencies from the package index, pip's cache reused), then the
    console script from its JSON line makes a mesh."""
    dest = tmp_path / "att3d backend"  # a space in the path, as on many desktops
    from blender_att3d.build import build_wheel

    whl = build_wheel(tmp_path / "dist")
    r = run_setup("--dest", str(dest), "--torch", "cpu", "--torch-index", "default", "--wheel", str(whl),
                  "--cache-dir", str(tmp_path / "cache"), timeout=1800)
    assert r.returncode == 0, r.stderr[-4000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert Path(result["python"]) == dest / "bin" / "python" and Path(result["att3d"]) == dest / "bin" / "att3d"
    assert result["torch"].startswith("2.13.0") and result["torch_variant"] == "cpu" and result["device"] == "cpu"
    assert result["model"] == "demo" and result["training_prompts"] == 1056
    assert json.loads((dest / setup_backend.STAMP).read_text())["python"] == result["python"]
    assert not setup_backend.partial_dir(dest).exists()
    script = (dest / "bin" / "att3d").read_text()  # renamed into place: it names the final interpreter
    assert str(dest / "bin" / "python") in script and ".partial" not in script
    stages = [setup_backend.parse_progress(ln) for ln in r.stderr.splitlines()]
    names = [s[1] for s in stages if s]
    for stage in ("checking", "creating the environment", "installing PyTorch (CPU)",
                  "installing att3d and its dependencies", "checking the backend", "finishing"):
        assert stage in names
    assert [s[0] for s in stages if s] == sorted(s[0] for s in stages if s)  # the bar only moves forward
    out = tmp_path / "cube.glb"
    g = subprocess.run([result["att3d"], "--quiet", "generate", "a red cube", "--resolution", "32", "--out",
                        str(out)], capture_output=True, text=True, timeout=600,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, cwd=str(tmp_path))
    assert g.returncode == 0, g.stderr
    assert out.read_bytes()[:4] == b"glTF" and out.stat().st_size > 10_000
