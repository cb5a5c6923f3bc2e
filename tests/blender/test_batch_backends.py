"""Batch on the add-on's backends: ``--backend auto|embedded|local|remote``, ``--python``, ``--url``,
``--token-file``. ``blender -b -P blender_att3d/batch.py`` runs with Blender's own Python, which has
no torch: the batch process here blocks ``import torch`` to be that Python, and must then work
through a local server it starts and stops (or a remote one)."""
import json
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, run_python

SCRIPT = str(ROOT / "blender_att3d" / "batch.py")


def batch_without_torch(args, timeout=300):
    """``blender -b -P batch.py -- ARGS`` in a Python where torch does not import."""
    code = (
        "import runpy, sys\n"
        "sys.modules['torch'] = None  # Blender's own Python: no PyTorch\n"
        f"sys.argv = [{SCRIPT!r}, '--', *{list(map(str, args))!r}]\n"
        f"runpy.run_path({SCRIPT!r}, run_name='__main__')\n"
    )
    return run_python(code, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def prompts(tmp_path):
    p = tmp_path / "prompts.txt"
    p.write_text("a red cube\na blue sphere\n")
    return p


@pytest.mark.slow  # starts a backend process
def test_auto_without_torch_uses_a_local_server_it_starts_and_stops(tmp_path, prompts, tiny_model_dir):
    out = tmp_path / "scene.blend"
    r = batch_without_torch(["--prompts", prompts, "--out", out, "--model", tiny_model_dir, "--device", "cpu",
                             "--resolution", "16", "--python", sys.executable])
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.exists() and out.stat().st_size > 1000
    err = r.stderr
    assert f"backend: local, a local server ({sys.executable}), ready in" in err
    assert "backend: loading the model" in err  # the start names its stages
    assert "[2/2] generating 'a blue sphere'" in err
    pid = int(re.search(r"stopped the local backend \(pid (\d+)\)", err).group(1))
    assert not _alive(pid), "the batch left its server running"


@pytest.mark.slow  # starts a backend process
@pytest.mark.parametrize("command", [["serve"], ["studio", "--num-cpus", "2", "--replicas", "1"]], ids=["serve",
                                                                                                     "studio"])
def test_remote_backend_with_a_token_file(tmp_path, prompts, tiny_model_dir, command):
    """The add-on's remote mode against `att3d serve`, and against `att3d studio` (Ray Serve) unchanged."""
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-for-the-batch-test\n")
    token_file.chmod(0o600)
    server = subprocess.Popen([sys.executable, "-m", "backend.cli", *command, "--model", str(tiny_model_dir),
                               "--device", "cpu", "--port", "0", "--token-file", str(token_file)],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=str(ROOT),
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = server.stdout.readline()
        assert line.startswith("ATT3D_READY "), line
        url = json.loads(line[len("ATT3D_READY "):])["url"]
        out = tmp_path / "scene.blend"
        r = batch_without_torch(["--prompts", prompts, "--out", out, "--resolution", "16", "--backend", "remote",
                                 "--url", url, "--token-file", token_file])
        assert r.returncode == 0, r.stderr[-3000:]
        assert out.exists() and f"backend: remote, at {url}" in r.stderr
        token_file.write_text("a-wrong-token-of-enough-length\n")
        r = batch_without_torch(["--prompts", prompts, "--out", tmp_path / "b.blend", "--backend", "remote",
                                 "--url", url, "--token-file", token_file])
        assert r.returncode == 1 and "rejected the token" in r.stderr and not (tmp_path / "b.blend").exists()
    finally:
        server.terminate()
        assert server.wait(60) == 0


@pytest.mark.parametrize("extra, message", [
    (["--backend", "remote"], "--backend remote needs --url"),
    (["--backend", "local", "--python", "/nowhere/bin/python"], "--python: There is no file or folder at /nowhere"),
    (["--backend", "remote", "--url", "http://127.0.0.1:9", "--token-file", "/nowhere/token"],
     "cannot read the token file /nowhere/token"),
    (["--backend", "telepathy"], "argument --backend: invalid choice"),
])
def test_bad_backend_options_are_one_line_and_exit_2(tmp_path, prompts, extra, message):
    out = tmp_path / "scene.blend"
    r = run_python(["-m", "blender_att3d.batch", "--prompts", str(prompts), "--out", str(out), *extra])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("att3d batch: error:"), r.stderr
    assert message in lines[0]
    assert not out.exists()


def test_embedded_without_torch_says_to_use_a_local_server(tmp_path, prompts):
    r = batch_without_torch(["--prompts", prompts, "--out", tmp_path / "s.blend", "--backend", "embedded"])
    assert r.returncode == 1, r.stderr
    assert "--backend local" in r.stderr and "preferences" not in r.stderr
