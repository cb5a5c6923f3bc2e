"""`make test-fast` installs what the tests need, as `make test` does (issue 26): on a fresh checkout
the glTF validator tests failed until `make tools` was run by hand."""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("target", ["test-fast", "test-main"])
def test_the_test_targets_install_the_gltf_validator_first(tmp_path, target):
    if shutil.which("make") is None:
        pytest.fail("make is not installed")
    # a fresh checkout: no .venv, no .tools (dry run: nothing is executed)
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    r = subprocess.run(["make", "-n", target], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "npm install --prefix .tools" in out and "gltf-validator@" in out
    assert out.index("npm install --prefix .tools") < out.index("-m pytest -q")
