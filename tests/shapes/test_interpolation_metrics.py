"""Interpolation measures on models whose in-betweens are known: a pop (all the change in one step),
a cross-fade (change spread evenly) and a mottled cross-fade (a noisy midpoint). The measures must
tell them apart; and the whole `att3d bench-interpolation` runs at its tiny size."""
from __future__ import annotations

import json

import pytest
import torch

from backend.mapping_network import Modulation
from backend.model import ModelConfig
from backend.text_encoder import TextEmbedding
from training.shapes.interpolation_metrics import evaluate_interpolation, pick_pairs
from training.shapes.world import get_world


class _InterpolationOracle(torch.nn.Module):
    """Reads one-hot prompt embeddings; an interpolated embedding ``(1−α)e_i + αe_j`` shows the GT
    scenes of i and j mixed as ``mode`` says."""

    def __init__(self, world, mode: str):
        super().__init__()
        self.world, self.mode = world, mode
        self.config = ModelConfig(iso_density=100.0)

    def __call__(self, prompts):  # the text encoder
        tok = torch.zeros(len(prompts), 1, len(self.world))
        for k, p in enumerate(prompts):
            tok[k, 0, self.world.index(p)] = 1.0
        return TextEmbedding(tok, torch.ones(len(prompts), 1, dtype=torch.bool))

    def modulate(self, tokens, mask):
        return Modulation(tokens.reshape(tokens.shape[0], -1), torch.zeros(tokens.shape[0], 1))

    def _parts(self, w):
        nz = torch.nonzero(w > 1e-6).flatten().tolist()
        return [(int(k), float(w[k])) for k in nz]

    def field(self, mod, pts):
        dens, cols = [], []
        for b in range(pts.shape[0]):
            parts = self._parts(mod.params[b])
            if self.mode == "pop":  # the prompt with the larger weight, prompt 2 from α = 0.5 on
                parts = [max(parts, key=lambda kw: (kw[1], kw[0] == parts[-1][0]))]
                parts = [(parts[0][0], 1.0)]
            d = sum(w * self.world.scene(k).field(pts[b:b + 1])[0] for k, w in parts)
            c = sum(w * self.world.scene(k).field(pts[b:b + 1])[1] for k, w in parts)
            if self.mode == "mottled" and len(parts) == 2:
                a = parts[1][1]
                noise = torch.sin(40 * pts[b:b + 1]).prod(-1, keepdim=True)  # fine, fixed colour noise
                c = (c + 1.2 * a * (1 - a) * noise).clamp(0, 1)
            dens.append(d)
            cols.append(c)
        return torch.cat(dens), torch.cat(cols)

    def density(self, mod, pts):
        return self.field(mod, pts)[0]

    def render(self, mod, cams, h, w, n_samples=64, stratified=False, use_env=False, **kw):
        from backend.renderer import render

        return render(lambda p: self.field(mod, p), cams, h, w, radius=1.0, n_samples=n_samples,
                      stratified=False, need_normals=False)


@pytest.fixture(scope="module")
def color_pair():
    world = get_world()
    pairs = [p for p in pick_pairs(world, range(len(world)), per_kind=1) if p[0] == "color"]
    queries = sorted({pairs[0][1], pairs[0][2]} | set(range(0, len(world), 496)))
    return world, pairs, queries


def _measure(world, pairs, queries, mode):
    oracle = _InterpolationOracle(world, mode)
    return evaluate_interpolation(oracle, pairs=pairs, steps=4, resolution=24, encoder=oracle, progress=False,
                                  queries=queries, fraction=0.5, grid=24)


@pytest.mark.slow
def test_a_pop_bunches_all_change_into_one_step(color_pair):
    world, pairs, queries = color_pair
    pop = _measure(world, pairs, queries, "pop")
    fade = _measure(world, pairs, queries, "linear")
    assert pop["by_kind"]["color"]["smoothness"] == pytest.approx(4.0, rel=1e-3)  # one of 4 steps holds it all
    assert fade["by_kind"]["color"]["smoothness"] < 1.3  # a cross-fade spreads it evenly
    assert pop["endpoint_retrieved"] == fade["endpoint_retrieved"] == 1.0  # endpoints are the prompts


@pytest.mark.slow
def test_a_mottled_midpoint_is_measured_as_mottled(color_pair):
    world, pairs, queries = color_pair
    fade = _measure(world, pairs, queries, "linear")
    mottled = _measure(world, pairs, queries, "mottled")
    assert fade["midpoint_mottling"] < 1.2
    assert mottled["midpoint_mottling"] > 2 * fade["midpoint_mottling"]
    assert json.dumps(mottled)  # the result is plain JSON


@pytest.mark.slow
def test_bench_interpolation_runs_end_to_end_at_the_tiny_size(tmp_path, capsys):
    from backend.cli import main

    out = tmp_path / "bi"
    assert main(["bench-interpolation", "--size", "tiny", "--out", str(out), "--variant", "none",
                 "--variant", "guidance_ends_nearest", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "guidance_ends_nearest: cleaner midpoints" in text and "the paper's claim" in text
    summary = json.loads((out / "bench.json").read_text())
    assert set(summary["variants"]) == {"none", "guidance_ends_nearest"}
    assert set(summary["claim"]) == {"guidance_ends_nearest"}
    res = json.loads((out / "guidance_ends_nearest" / "result.json").read_text())
    assert res["mode"] == "interpolation" and res["target"] == "guidance" and res["steps"] == 4
    assert res["interpolation"]["n_pairs"] == 3 and (out / "bench.png").stat().st_size > 10_000
    cfg = (out / "guidance_ends_nearest" / "train_config.toml").read_text()
    assert 'target = "guidance"' in cfg and "random_pairs = true" in cfg
    # measured variants are kept on --resume; --summarize only compares
    assert main(["bench-interpolation", "--size", "tiny", "--out", str(out), "--summarize"]) == 0
    assert main(["bench-interpolation", "--size", "tiny", "--out", str(tmp_path / "empty"), "--summarize"]) == 2
    assert "no measured variant" in capsys.readouterr().err
