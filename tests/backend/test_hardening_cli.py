"""The command line and model folders under bad input: config.json values of the wrong type (one
line naming the field, exit 2), unbounded arguments, embedding-cache entries of the wrong shape,
--quiet, and the token's folder and file."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from backend.cli import main
from backend.model import ModelConfig, ModelFolderError, build_model, load_model, save_model

ROOT = Path(__file__).resolve().parents[2]
CFG = ModelConfig(resolutions=[6, 8], v_dim=4, max_length=4, token_dim=8)


@pytest.fixture
def folder(tmp_path):
    return save_model(build_model(CFG), tmp_path / "m", {"name": "m", "prompts": ["a"]})


def _edit(folder: Path, where: str, value) -> None:
    config = json.loads((folder / "config.json").read_text())
    *path, key = where.split(".")
    d = config
    for p in path:
        d = d[p]
    d[key] = value
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("where,value,message", [
    ("format_version", "2", "format_version: expected an integer, got the string '2'"),
    ("format_version", None, "format_version: expected an integer, got null"),
    ("format_version", [1], "format_version: expected an integer, got an array"),
    ("format_version", True, "format_version: expected an integer, got the boolean true"),
    ("format_version", 2, "format version 2 is newer than this att3d supports (1); upgrade att3d"),
    ("provenance", "x", "provenance: expected an object, got the string 'x'"),
    ("provenance", None, "provenance: expected an object, got null"),
    ("provenance.name", 7, "provenance.name: expected a string, got the number 7"),
    ("provenance.prompts", ["a", 3], "provenance.prompts[1]: expected a string, got the number 3"),
    ("architecture", [], "architecture: expected an object, got an array"),
    ("architecture.iso_density", "abc", "architecture.iso_density: expected a finite number, got the string 'abc'"),
    ("architecture.bound", "1", "architecture.bound: expected a finite number, got the string '1'"),
    ("architecture.v_dim", True, "architecture.v_dim: expected an integer, got the boolean true"),
    ("architecture.v_dim", 4.0, "architecture.v_dim: expected an integer, got the number 4.0"),
    ("architecture.resolutions", [6, "8"], "architecture.resolutions[1]: expected an integer, got the string '8'"),
    ("architecture.resolutions", 8, "architecture.resolutions: expected an array, got the number 8"),
    ("architecture.mapping", None, "architecture.mapping: expected a string, got null"),
    ("architecture.colour", 1, "unknown architecture keys: colour"),
    ("provenance.name", "\ud800", "holds text that is not valid Unicode (an unpaired surrogate U+D800)"),
])
def test_config_types_are_checked_at_load_naming_the_field(folder, where, value, message):
    _edit(folder, where, value)
    with pytest.raises(ModelFolderError) as e:
        load_model(folder)
    assert str(e.value) == f"{folder / 'config.json'}: {message}"


def test_a_bad_config_is_one_line_and_exit_2(folder, tmp_path, capsys):
    _edit(folder, "architecture.bound", "1")
    code = main(["--quiet", "generate", "a cube", "--model", str(folder), "--out", str(tmp_path / "a.glb")])
    err = capsys.readouterr().err
    assert code == 2 and err == f"att3d: error: {folder / 'config.json'}: architecture.bound: expected a finite " \
                                "number, got the string '1'\n"


def test_valid_configs_still_load(folder):
    _edit(folder, "architecture.bound", 1)  # an integer is a fine float
    _edit(folder, "provenance", {"name": "caf\u00e9 \u732b", "anything": {"else": [1, None]}})
    model, config = load_model(folder)
    assert model.config.bound == 1 and config["provenance"]["name"] == "café 猫"
    config = json.loads((folder / "config.json").read_text())
    del config["provenance"]  # optional
    (folder / "config.json").write_text(json.dumps(config))
    assert load_model(folder)[1]["provenance"] == {}


@pytest.mark.parametrize("args,message", [
    (["--texture", "1000000"], "--texture: the texture size must be an integer in 64–4096 pixels, got 1000000"),
    (["--texture", "0"], "--texture: the texture size must be an integer in 64–4096 pixels, got 0"),
    (["--simplify", "-1"], "--simplify: simplify must be a face count in 4–10000000 (or none), got -1"),
    (["--simplify", "2"], "--simplify: simplify must be a face count in 4–10000000 (or none), got 2"),
    (["--simplify", "100000000"], "--simplify: simplify must be a face count in 4–10000000"),
    (["--resolution", "100000"], "resolution must be an integer in 16–512, got 100000"),
])
def test_generate_arguments_are_bounded_before_any_work(args, message, tmp_path, capsys):
    code = main(["generate", "a cube", "--model", "no-model-needed", "--out", str(tmp_path / "a.glb"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"att3d: error: {message}") and err.count("\n") == 1, err


@pytest.mark.parametrize("argv,message", [
    (["interpolate", "a", "b", "--steps", "1000", "--out", "{tmp}/s"], "that chain has 1001 meshes"),
    (["interpolate", "a", "\u200b", "--out", "{tmp}/s"], "the prompt has no visible characters"),
    (["generate", "\x00", "--out", "{tmp}/a.glb"], "control character (U+0000"),
    (["bench", "--repeats", "0"], "--repeats must be in 1–1000"),
    (["generate", "a cube", "--out", "{tmp}/a.glb", "--texture", "abc"], "argument --texture: invalid int value"),
])
def test_more_bounds_and_argparse_errors_are_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main([a.replace("{tmp}", str(tmp_path)) for a in argv]))
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_quiet_silences_the_libraries_bars(tiny_model_dir, tmp_path):
    """A cold cache loads MiniLM: transformers draws its "Loading weights" bar unless --quiet, which
    also works after the command."""
    env = {**os.environ, "ATT3D_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    for argv in (["--quiet", "generate"], ["generate"]):
        extra = [] if argv[0] == "--quiet" else ["-q"]
        r = subprocess.run([sys.executable, "-m", "backend.cli", *argv, "a red cube", "--model", str(tiny_model_dir),
                            "--out", str(tmp_path / "a.glb"), "--resolution", "16", *extra], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stderr == "", r.stderr
        (tmp_path / "cache").exists() and __import__("shutil").rmtree(tmp_path / "cache")


def test_a_wrong_shape_cache_entry_is_a_miss_and_is_rewritten(tmp_path):
    from safetensors.torch import save_file

    from backend.text_encoder import TextEncoder

    enc = TextEncoder("minilm", cache_dir=tmp_path)
    good = enc(["a red cube"]).tokens[0]
    f = enc._cache_file("a red cube")
    for bad in ({"tokens": torch.zeros(5, 7), "mask": torch.ones(5, dtype=torch.uint8)},
                {"tokens": torch.full((32, 384), float("nan")), "mask": torch.ones(32, dtype=torch.uint8)},
                {"tokens": torch.zeros(32, 384)}):
        save_file(bad, str(f))
        e = TextEncoder("minilm", cache_dir=tmp_path)(["a red cube"])
        torch.testing.assert_close(e.tokens[0], good)  # recomputed, not an error
        from safetensors.torch import load_file

        assert load_file(str(f))["tokens"].shape == (32, 384)  # and rewritten


# -- token storage ----------------------------------------------------------------------------------

def test_an_open_data_folder_is_tightened_to_0700(tmp_path, monkeypatch):
    from backend.service import auth

    monkeypatch.delenv("ATT3D_TOKEN", raising=False)
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    monkeypatch.setenv("ATT3D_DATA_DIR", str(data))
    token, path = auth.resolve_token()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600
    data.chmod(0o755)  # loosened again later, the token reused: tightened again
    assert auth.resolve_token() == (token, path) and stat.S_IMODE(data.stat().st_mode) == 0o700


def test_a_symlinked_token_file_is_refused(tmp_path, monkeypatch):
    from backend.service import auth
    from blender_att3d.wire.token import read_default_token

    monkeypatch.delenv("ATT3D_TOKEN", raising=False)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    target = tmp_path / "elsewhere"
    target.write_text("t" * 40)
    target.chmod(0o600)
    (data / "token").symlink_to(target)
    monkeypatch.setenv("ATT3D_DATA_DIR", str(data))
    with pytest.raises(ValueError, match=r"the token file .*token is a symbolic link: refusing to follow it"):
        auth.resolve_token()
    with pytest.raises(ValueError, match="symbolic link"):
        auth.resolve_token(rotate=True)  # not overwritten through the link either
    assert target.read_text() == "t" * 40
    assert read_default_token() is None  # nor read by the add-on's client


def test_serve_with_a_symlinked_token_file_is_one_line_exit_2(tmp_path):
    (tmp_path / "token").symlink_to(tmp_path / "nowhere")
    r = subprocess.run([sys.executable, "-m", "backend.cli", "serve", "--model", "no-such-model"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "ATT3D_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "is a symbolic link" in r.stderr and r.stderr.count("\n") == 1, r.stderr
