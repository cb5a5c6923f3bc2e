"""The amortization benchmark's bookkeeping: results → curves → the paper's claim (no training here)."""
import json

import pytest

from training.shapes.amortization_bench import SIZES, amortization_claim, claim_lines, plot, summarize


def _rec(run, split, step, fpp, r, iou):
    return {"run": run, "split": split, "step": step, "frames_per_prompt": fpp, "r_precision": r, "iou": iou,
            "color_error": 0.1, "shape_acc": 1.0, "color_acc": 1.0, "accessory_acc": 1.0, "n_prompts": 2}


def test_claim_finds_where_amortized_matches_the_per_prompt_final(tmp_path):
    recs = [_rec("amortized_12.5%", "seen", 100, 5.0, 0.2, 0.5),
            _rec("amortized_12.5%", "seen", 200, 10.0, 0.7, 0.7),
            _rec("amortized_12.5%", "seen", 300, 15.0, 0.9, 0.8),
            _rec("amortized_12.5%", "unseen", 300, 15.0, 0.9, 0.9),
            _rec("amortized_50%", "seen", 100, 1.0, 0.1, 0.6), _rec("amortized_50%", "seen", 200, 2.0, 0.3, 0.9)]
    # two per-prompt runs, averaged per step: final r 0.6, iou 0.65 at 40 frames
    recs += [_rec("per_prompt_000", "own", 20, 20.0, 0.0, 0.5), _rec("per_prompt_001", "own", 20, 20.0, 1.0, 0.3),
             _rec("per_prompt_000", "own", 40, 40.0, 1.0, 0.7), _rec("per_prompt_001", "own", 40, 40.0, 0.2, 0.6)]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    s = summarize(path)
    assert [p["r_precision"] for p in s["curves"]["per-prompt"]] == [0.5, 0.6]
    c = s["claim"]
    assert c["per_prompt_final"] == pytest.approx({"frames_per_prompt": 40.0, "r_precision": 0.6, "iou": 0.65})
    a = c["amortized_12.5%"]  # r 0.7 ≥ 0.6 and iou 0.7 ≥ 0.65 first at 10 frames = 1/4 of 40
    assert a["r_precision"]["frames_per_prompt"] == 10.0 and a["iou"]["fraction_of_per_prompt"] == 0.25
    assert a["within_quarter"] is True
    b = c["amortized_50%"]  # its r-precision never reaches 0.6
    assert b["r_precision"]["frames_per_prompt"] is None and b["r_precision"]["best"] == 0.3
    assert b["iou"]["frames_per_prompt"] == 2.0 and b["within_quarter"] is False
    lines = claim_lines(c)
    assert lines[0].startswith("per-prompt final (40 frames/prompt)")
    assert any("amortized_50% (seen)" in l and "never matched" in l and "within 1/4: no" in l for l in lines)
    png = plot(s, tmp_path / "bench.png")
    assert png.stat().st_size > 1000


def test_claim_is_empty_without_a_baseline_and_sizes_reach_a_quarter():
    assert amortization_claim({"amortized_12.5% (seen)": []}) == {}
    assert claim_lines({}) == ["no per-prompt baseline results yet"]
    for name, S in SIZES.items():  # the 12.5 % run (248 prompts) must get to 1/4 of the baseline's frames
        assert S["amortized_steps"] * S["batch"] / 248 >= S["pp_steps"] * S["pp_batch"] / 4 or name == "tiny", name
