"""`att3d eval` (CLIP R-precision / R-probability with a tiny random CLIP), the Shapes-world dispatch,
`att3d plot`, and `att3d train` from the command line."""
from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from backend.cli import main
from training.evaluate import r_scores


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny random CLIP with a real CLIP BPE tokenizer (start/end tokens where CLIP pools), so that
    different prompts get different text embeddings."""
    from tiny_pipelines import clip_tokenizer
    from transformers import CLIPConfig, CLIPModel

    root = tmp_path_factory.mktemp("clip")
    tok = clip_tokenizer()
    cfg = CLIPConfig(text_config=dict(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                      pad_token_id=tok.pad_token_id),
                     vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=32, patch_size=8),
                     projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(root)
    tok.save_pretrained(root)
    return root


def test_tiny_clip_tells_prompts_apart(tiny_clip):
    from training.evaluate import ClipScorer

    text = ClipScorer(str(tiny_clip)).text(["a red cube", "a blue sphere", "a green cone", "a red cube"])
    cos = text @ text.T
    assert cos[0, 3] == pytest.approx(1.0, abs=1e-5)  # the same prompt
    assert cos[0, 1] < 0.99 and cos[0, 2] < 0.99 and cos[1, 2] < 0.99


def test_r_precision_scores_the_right_prompt(tiny_clip):
    """evaluate_prompts end to end with the tiny CLIP's real text embeddings: renders that CLIP 'sees'
    as their own prompt score 1.0, renders seen as another prompt 0.0 (with every prompt embedded
    alike, both would be 1/3)."""
    from backend.text_encoder import TextEmbedding
    from training.config import EvalConfig
    from training.evaluate import ClipScorer, evaluate_prompts

    prompts = ["a red cube", "a blue sphere", "a green cone"]
    scorer = ClipScorer(str(tiny_clip))
    text = scorer.text(prompts)

    def encoder(chunk):  # token i+1 everywhere for the i-th prompt
        ids = torch.tensor([prompts.index(p) + 1.0 for p in chunk])
        return TextEmbedding(ids.view(-1, 1, 1).expand(-1, 2, 3).clone(), torch.ones(len(chunk), 2, dtype=torch.bool))

    class Model(torch.nn.Module):  # renders a flat image whose value is the prompt's number
        def modulate(self, tokens, mask):
            return tokens[:, 0, 0]

        def render(self, mod, cams, h, w, **kw):
            return types.SimpleNamespace(rgb=mod.view(-1, 1, 1, 1).expand(-1, 3, h, w) / 10)

    for shift, want in ((0, 1.0), (1, 0.0)):
        scorer.image = lambda rgb, s=shift: text[(torch.round(rgb[:, 0, 0, 0] * 10).long() - 1 + s) % 3]
        res = evaluate_prompts(Model(), encoder, prompts, prompts, scorer,
                               EvalConfig(azimuths=[0.0, 180.0], size=4, n_samples=2))
        assert res["r_precision"] == want, shift
        assert [r["r_precision"] for r in res["per_prompt"]] == [want] * 3
        assert (res["r_probability"] > 0.34) == (want == 1.0)


def test_r_scores_hand_checked():
    img = torch.eye(3)
    text = torch.eye(3)
    hit, prob = r_scores(img, text, torch.tensor([0, 1, 0]), logit_scale=100.0)
    assert hit.tolist() == [1.0, 1.0, 0.0]
    assert prob[0] == pytest.approx(1.0, abs=1e-6) and prob[2] == pytest.approx(0.0, abs=1e-6)
    _, p = r_scores(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0]), 1.0)
    assert p.item() == pytest.approx(torch.tensor([1.0, 0.0]).softmax(0)[0].item())


def test_eval_cli_json(tiny_model_dir, tiny_clip, tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\na blue sphere\na green cone\n")
    distract = tmp_path / "d.txt"
    distract.write_text("a purple hat\n")
    rc = main(["eval", "--model", str(tiny_model_dir), "--prompts", str(prompts), "--clip", str(tiny_clip),
               "--distractors", str(distract), "--views", "2", "--size", "16", "--samples", "8", "--json",
               "--device", "cpu"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n_prompts"] == 3 and res["n_queries"] == 4 and len(res["per_prompt"]) == 3
    assert 0 <= res["r_precision"] <= 1 and 0 < res["r_probability"] < 1
    mean = sum(r["r_probability"] for r in res["per_prompt"]) / 3
    assert res["r_probability"] == pytest.approx(mean)
    assert res["prompt_set"]["count"] == 3


def test_eval_unseen_split_of_pig(tiny_model_dir, tiny_clip, capsys):
    rc = main(["eval", "--model", str(tiny_model_dir), "--prompts", "pig", "--split", "unseen", "--clip",
               str(tiny_clip), "--views", "1", "--size", "8", "--samples", "4", "--json", "--device", "cpu"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["n_prompts"] == 8 and res["n_queries"] == 56


def test_eval_world_shapes_dispatches(tiny_model_dir, monkeypatch, capsys):
    calls = {}
    base = {"model": str(tiny_model_dir), "seasons": True}  # the season trees are always scored apart

    def evaluate(model, split="unseen", **kw):
        calls.update(model=model, split=split, **kw)
        return {"split": split, "score": 0.5}

    pkg = types.ModuleType("training.shapes")
    metrics = types.ModuleType("training.shapes.metrics")
    metrics.evaluate = evaluate
    metrics.format_report = lambda result: f"report of the {result['split']} split"
    pkg.metrics = metrics
    monkeypatch.setitem(sys.modules, "training.shapes", pkg)
    monkeypatch.setitem(sys.modules, "training.shapes.metrics", metrics)
    rc = main(["eval", "--world", "shapes", "--model", str(tiny_model_dir), "--split", "seen", "--json"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip()) == {"split": "seen", "score": 0.5}
    # --json keeps stdout machine-readable: no progress bars
    assert calls == {**base, "split": "seen", "progress": False}
    calls.clear()
    assert main(["eval", "--world", "shapes", "--model", str(tiny_model_dir), "--max-prompts", "3"]) == 0
    assert calls == {**base, "split": "unseen", "max_prompts": 3, "progress": True}
    assert capsys.readouterr().out.strip() == "report of the unseen split"  # without --json: the readable report
    calls.clear()
    assert main(["eval", "--world", "shapes", "--model", str(tiny_model_dir), "--surface-prompts", "0"]) == 0
    assert calls == {**base, "split": "unseen", "surface": 0, "progress": True}
    calls.clear()
    assert main(["eval", "--world", "shapes", "--model", str(tiny_model_dir), "--seen-fraction", "0.5"]) == 0
    assert calls == {**base, "split": "unseen", "fraction": 0.5, "progress": True}
    calls.clear()
    assert main(["eval", "--world", "shapes", "--model", str(tiny_model_dir), "--max-prompts", "0"]) == 0
    assert calls == {**base, "split": "unseen", "max_prompts": 0, "progress": True}  # all


def test_eval_errors(tiny_model_dir, capsys):
    assert main(["eval", "--model", str(tiny_model_dir)]) == 2
    assert "--prompts" in capsys.readouterr().err
    assert main(["eval", "--world", "moon", "--model", str(tiny_model_dir)]) == 2


def test_plot(tmp_path, capsys):
    amort, pp = tmp_path / "amortized", tmp_path / "pp"
    amort.mkdir()
    lines = [{"step": s, "frames_per_prompt": s * 4.0, "split": sp, "r_probability": 0.1 + 0.01 * s,
              "mode": "amortized"} for s in (0, 10, 20) for sp in ("seen", "unseen")]
    (amort / "evals.jsonl").write_text("\n".join(json.dumps(l) for l in lines) + "\n{truncated")
    for i in range(2):
        d = pp / "per_prompt" / f"{i:04d}-x"
        d.mkdir(parents=True)
        (d / "evals.jsonl").write_text("\n".join(json.dumps({"step": s, "frames_per_prompt": s * 8.0, "split": "all",
                                                             "r_probability": 0.05 * s + i, "mode": "amortized"})
                                                 for s in (0, 5)))
    from training.plot import curves, read_evals

    c = curves(read_evals(pp), "r_probability")
    assert c["all"] == [(0.0, 0.5), (40.0, 0.75)]  # averaged over the per-prompt models
    out = tmp_path / "fig.png"
    assert main(["plot", str(amort), str(pp), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert main(["plot", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_train_cli_smoke_preset_and_errors(tmp_path, capsys):
    out = tmp_path / "smoke"
    rc = main(["-q", "train", "--preset", "smoke", "--out", str(out), "run.steps=2", "run.checkpoint_every=1",
               "render.height=12", "render.width=12", "render.n_samples=6"])
    assert rc == 0, capsys.readouterr().err
    assert "att3d generate" in capsys.readouterr().out
    assert (out / "model" / "config.json").is_file()
    # a second run into the same folder must be explicit
    assert main(["-q", "train", "--preset", "smoke", "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["-q", "train", "--preset", "smoke", "--out", str(tmp_path / "x"), "run.bogus=1"]) == 2
    assert "unknown config key run.bogus" in capsys.readouterr().err
    glb = tmp_path / "m.glb"
    assert main(["-q", "generate", "a red cube", "--model", str(out / "model"), "--out", str(glb),
                 "--resolution", "16", "--device", "cpu"]) == 0


def test_train_cli_config_file_with_overrides(tmp_path, capsys):
    """`att3d train --config FILE key=value ...`: the file, then the overrides, recorded in the run."""
    conf = tmp_path / "recon.toml"
    conf.write_text('[run]\nsteps = 50\nbatch_size = 2\ndevice = "cpu"\npreview_every = 0\nthreads = 1\n'
                    '[prompts]\nlist = ["a red cube", "a blue sphere"]\n[guidance]\nkind = "reconstruction"\n'
                    '[model]\ntext_encoder = "minilm"\nresolutions = [6, 8]\nfeatures = 2\nv_dim = 4\nhidden = 8\n'
                    '[render]\nheight = 8\nwidth = 8\nn_samples = 4\n')
    out = tmp_path / "run"
    assert main(["-q", "train", "--config", str(conf), "--out", str(out), "run.steps=2", "run.seed=7"]) == 0, \
        capsys.readouterr().err
    from training.config import load_config

    recorded = load_config(out / "train_config.toml")
    assert recorded.run.steps == 2 and recorded.run.seed == 7 and recorded.guidance.kind == "reconstruction"
    assert main(["-q", "train", "--config", str(conf), "--preset", "smoke", "--out", str(tmp_path / "y")]) == 2
    assert main(["-q", "train", "--out", str(tmp_path / "z")]) == 2


def test_python_dash_m_training_is_att3d_train():
    """`torchrun ... -m training --config ...` runs `att3d train` (the subcommand may be left out)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=root, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--resume" in res.stdout and "section.key=value" in res.stdout
