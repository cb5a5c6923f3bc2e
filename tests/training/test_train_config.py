"""Configs: presets load, dotted overrides, unknown keys and bad types are clear errors."""
from __future__ import annotations

import pytest

from training.config import CONFIG_DIR, TrainConfig, load_config, to_toml


@pytest.mark.parametrize("preset", sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
def test_presets_load(preset):
    cfg = load_config(preset=preset)
    assert isinstance(cfg, TrainConfig)


def test_expected_presets_exist():
    names = {p.stem for p in CONFIG_DIR.glob("*.toml")}
    assert {"smoke", "df415_if", "df415_sd", "pig_interp"} <= names


def test_overrides_and_types(tmp_path):
    cfg = load_config(preset="smoke", overrides=["run.steps=7", "guidance.scale=50", "model.resolutions=[4, 6]",
                                                 "run.lr=1e-2", "prompts.set=pig", "camera.distance=[2, 2.5]"])
    assert cfg.run.steps == 7 and cfg.guidance.scale == 50.0 and isinstance(cfg.guidance.scale, float)
    assert cfg.model.resolutions == [4, 6] and cfg.run.lr == 1e-2 and cfg.prompts.set == "pig"
    assert cfg.camera.distance == (2.0, 2.5)
    # the written TOML reads back to the same config
    f = tmp_path / "c.toml"
    f.write_text(to_toml(cfg))
    assert load_config(f).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("override, message", [
    ("run.stpes=3", "did you mean run.steps"),
    ("rnu.steps=3", "did you mean \\[run\\]"),
    ("steps=3", "section.key=value"),
    ("run.steps=abc", "expected int"),
    ("run.mode=bogus", "run.mode"),
    ("model.bogus=1", "unknown config key model.bogus"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(preset="smoke", overrides=[override])


def test_unknown_preset_and_file(tmp_path):
    with pytest.raises(ValueError, match="unknown preset"):
        load_config(preset="nope")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nsteps = 3\n[guidence]\nscale = 1\n")
    with pytest.raises(ValueError, match="did you mean \\[guidance\\]"):
        load_config(bad)


def test_yaml_config_equals_toml(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[run]\nsteps = 5\nlr = 1e-3\n[guidance]\nscale = 50\n[model]\nresolutions = [4, 6]\n')
    yml = tmp_path / "c.yaml"
    yml.write_text("run:\n  steps: 5\n  lr: 1e-3\nguidance:\n  scale: 50\nmodel:\n  resolutions: [4, 6]\n")
    a, b = load_config(toml), load_config(yml, ["run.seed=3"])
    assert b.run.lr == 1e-3 and b.run.steps == 5 and b.guidance.scale == 50.0 and b.run.seed == 3
    b.run.seed = 0
    assert a.to_dict() == b.to_dict()
    bad = tmp_path / "bad.yml"
    bad.write_text("run:\n  stpes: 3\n")
    with pytest.raises(ValueError, match="did you mean run.steps"):
        load_config(bad)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "lr.yaml").write_text("run:\n  lr: fast\n")
    with pytest.raises(ValueError, match="expected float"):
        load_config(tmp_path / "lr.yaml")


@pytest.mark.parametrize("override, message", [
    ("guidance.kind=diffusion", "guidance.kind 'diffusion': choose from pixel, latent, reconstruction, tiny-pixel"),
    ("guidance.weighting=snr", "guidance.weighting 'snr': choose from one_minus_alpha_bar"),
    ("guidance.dtype=fp8", "guidance.dtype 'fp8': choose from auto, float32"),
    ("render.normals=analytic", "render.normals 'analytic': choose from autograd, finite_difference"),
    ("prompts.split=held_out", "prompts.split 'held_out': choose from all, seen, unseen"),
    ("interpolation.target=alpha", "interpolation.target 'alpha': choose from latent, loss, guidance"),
    ("run.mode=3", "run.mode 3: choose from amortized"),
])
def test_choices_are_checked_with_the_field_and_its_choices(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(preset="smoke", overrides=[override])


def test_choices_of_a_config_built_in_python_are_validated():
    cfg = load_config(preset="smoke")
    cfg.interpolation.target = "bogus"
    with pytest.raises(ValueError, match="interpolation.target 'bogus': choose from latent, loss, guidance"):
        cfg.validate()


def test_every_mode_has_a_module():
    import typing

    from training.config import Mode
    from training.modes import MODES

    assert set(MODES) | {"per_prompt"} == set(typing.get_args(Mode))
