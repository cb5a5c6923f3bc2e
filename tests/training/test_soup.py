"""Model soups (training/soup.py): the weighted mean of runs of one architecture, with its provenance."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from backend.model import ModelConfig, build_model, load_model, save_model

CFG = ModelConfig(resolutions=[6, 10], v_dim=4)


def _run(tmp_path, name: str, seed: int, iso: float, cfg: ModelConfig = CFG):
    """A run folder (``run/model``) of a model with its own weights, calibrated level and provenance."""
    model = build_model(replace(cfg, iso_density=iso), seed=seed)
    with torch.no_grad():  # make every parameter differ between the runs, the spectral-norm vectors too
        for i, t in enumerate(model.state_dict().values()):
            if t.is_floating_point():
                t.add_(0.01 * seed * (i + 1))
    save_model(model, tmp_path / name / "model",
               {"name": name, "step": 100 * seed, "prompts": ["a red cube"],
                "guidance": {"kind": "pixel", "model": str(tmp_path / "teacher"), "scale": 2.5}})
    return tmp_path / name


def test_a_soup_is_the_weighted_mean_of_its_runs(tmp_path):
    from training.soup import make_soup

    a, b = _run(tmp_path, "a", 1, 9.0), _run(tmp_path, "b", 2, 10.0)
    folder = make_soup([(str(a), 1.0), (str(b), 3.0)], tmp_path / "soup")
    soup, cfg = load_model(folder)
    ma, _ = load_model(a / "model")
    mb, _ = load_model(b / "model")
    sa, sb, ss = ma.state_dict(), mb.state_dict(), soup.state_dict()
    vectors = [k for k in ss if k.endswith(("._u", "._v"))]
    assert vectors, "the hypernetwork is spectral-normed: its power-iteration vectors are in the state"
    for k, v in ss.items():
        mean = 0.25 * sa[k] + 0.75 * sb[k]
        if k in vectors:  # renormalised: a mean of unit vectors is shorter
            torch.testing.assert_close(v, mean / mean.norm(), atol=1e-6, rtol=1e-5)
            assert abs(float(v.norm()) - 1) < 1e-5
        else:
            torch.testing.assert_close(v, mean, atol=1e-6, rtol=1e-5)
    assert cfg["architecture"]["iso_density"] == 9.75  # the weighted mean; calibrate-iso sets it
    prov = cfg["provenance"]
    assert prov["name"] == "soup" and prov["step"] is None and prov["init"] is None
    assert [(r["name"], r["weight"], r["step"]) for r in prov["soup"]] == [("a", 1.0, 100), ("b", 3.0, 200)]
    assert all(len(r["sha256"]) == 64 for r in prov["soup"]) and prov["soup"][0]["sha256"] != prov["soup"][1]["sha256"]
    assert prov["prompts"] == ["a red cube"]  # the first run's provenance (shared prompts, guidance)

    # what ships records the runs by name and hash, and no path of this machine
    from training.shapes.demo import portable_provenance

    shipped = json.dumps(portable_provenance(prov))
    assert str(tmp_path) not in shipped and '"model": "teacher"' in shipped


def test_soup_cli_and_its_errors(tmp_path, capsys):
    from backend.cli import main

    a, b = _run(tmp_path, "a", 1, 9.0), _run(tmp_path, "b", 2, 9.0)
    assert main(["train-demo", "--soup", str(a), f"{b}:2", "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "soup of 2 models" in out and "att3d calibrate-iso" in out
    _, cfg = load_model(tmp_path / "s" / "model")
    assert [r["weight"] for r in cfg["provenance"]["soup"]] == [1.0, 2.0]
    before = (tmp_path / "s" / "model" / "model.safetensors").read_bytes()

    other = _run(tmp_path, "wide", 3, 9.0, replace(CFG, hidden=16))
    cases = [
        ([str(a)], "at least two models"),
        ([str(a), str(tmp_path / "nope")], "no such model"),
        ([str(a), f"{b}:x"], "not a number"),
        ([str(a), f"{b}:0"], "must be positive"),
        ([str(a), str(other)], "another architecture"),
    ]
    for soup, message in cases:
        assert main(["train-demo", "--soup", *soup, "--out", str(tmp_path / "t")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "t").exists()
    # never over a model that is there: the first soup is left as it was
    assert main(["train-demo", "--soup", str(a), str(b), "--out", str(tmp_path / "s")]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert (tmp_path / "s" / "model" / "model.safetensors").read_bytes() == before
    assert main(["train-demo", "--soup", str(a), str(b), "--ship", str(a)]) == 2
    assert "one at a time" in capsys.readouterr().err


@pytest.mark.parametrize("text,expected", [("runs/v31", ("runs/v31", 1.0)), ("runs/v31:2", ("runs/v31", 2.0)),
                                           ("C:\\runs\\v31", ("C:\\runs\\v31", 1.0)), ("x:0.5", ("x", 0.5))])
def test_parse_ingredient(text, expected):
    from training.soup import parse_ingredient

    assert parse_ingredient(text) == expected
