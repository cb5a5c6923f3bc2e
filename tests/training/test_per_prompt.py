"""The per-prompt baseline: one freshly initialised model per prompt, each scored against the whole set."""
from __future__ import annotations

import json

import torch
from conftest import PROMPTS, tiny_config

from backend.model import load_model
from training.train import train


def test_per_prompt_baseline(tmp_path):
    cfg = tiny_config(run={"mode": "per_prompt", "steps": 2}, prompts={"list": PROMPTS[:2]})
    r = train(cfg, tmp_path / "pp", progress=False)
    assert len(r.per_prompt) == 2
    models = [load_model(p["model"])[0] for p in r.per_prompt]
    w0, w1 = (next(m.nerf.parameters()) for m in models)
    assert not torch.equal(w0, w1)  # freshly (differently) initialised per prompt
    evals = sorted((tmp_path / "pp" / "per_prompt").glob("*/evals.jsonl"))
    assert len(evals) == 2
    last = json.loads(evals[0].read_text().splitlines()[-1])
    assert last["frames_per_prompt"] == 2 * 2


def test_per_prompt_and_finetune_evaluations_score_against_the_whole_set(tmp_path, monkeypatch):
    """A per-prompt model (or a finetuned one) is scored with the whole prompt set as CLIP query set,
    like the amortized model: a query set of its own prompt alone would make R-precision always 1."""
    import training.evaluate as ev

    calls = []

    class FakeScorer:
        def __init__(self, *a, **kw):
            pass

    def fake_evaluate(model, encoder, prompts, queries, scorer, ec, device):
        calls.append((list(prompts), list(queries)))
        return {"r_precision": 0.5, "r_probability": 0.25, "n_queries": len(queries)}

    monkeypatch.setattr(ev, "ClipScorer", FakeScorer)
    monkeypatch.setattr(ev, "evaluate_prompts", fake_evaluate)
    cfg = tiny_config(run={"mode": "per_prompt", "steps": 1}, prompts={"list": PROMPTS, "split": "seen",
                                                                       "seen_fraction": 0.67},
                      eval={"clip_model": "fake"})
    r = train(cfg, tmp_path / "pp", progress=False)
    assert len(r.per_prompt) == 2
    assert calls and all(len(p) == 1 and sorted(q) == sorted(PROMPTS) for p, q in calls)
    recs = [json.loads(l) for f in sorted((tmp_path / "pp" / "per_prompt").glob("*/evals.jsonl"))
            for l in f.read_text().splitlines()]
    assert {r["split"] for r in recs} == {"seen"} and {r["n_queries"] for r in recs} == {3}

    calls.clear()
    base = train(tiny_config(run={"steps": 1}), tmp_path / "base", progress=False)
    ft = tiny_config(run={"mode": "finetune", "steps": 1}, eval={"clip_model": "fake"},
                     finetune={"init": str(base.model_dir), "prompt": PROMPTS[1]})
    train(ft, tmp_path / "ft", progress=False)
    assert calls and all(p == [PROMPTS[1]] and sorted(q) == sorted(PROMPTS) for p, q in calls)
