"""Prompt sets: files, threestudio's prompt library, compositional splits, hashes."""
from __future__ import annotations

from pathlib import Path

import pytest

from training.prompts import (
    PIG_ACTIVITIES,
    PIG_THEMES,
    animal_prompts,
    load_prompt_set,
    pig_prompts,
    prompt_hash,
    read_text_prompts,
    split_seen,
)

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT.parent / "shared" / "data" / "threestudio_prompt_library.json"


def test_pig_split_is_the_wrapped_diagonal():
    seen, unseen = pig_prompts()
    assert len(seen) + len(unseen) == 56
    assert len(unseen) == 8 and len(seen) == 48
    assert not set(seen) & set(unseen)
    for i, act in enumerate(PIG_ACTIVITIES):
        assert f"a pig {act} {PIG_THEMES[i % 7]}" in unseen
    assert "a pig riding a bicycle made out of gold" in unseen
    assert "a pig riding a bicycle carved out of wood" in seen
    ps = load_prompt_set("pig", split="seen")
    assert ps.prompts == seen and ps.held_out == unseen
    assert len(load_prompt_set("pig").prompts) == 56


def test_animal_set_and_splits():
    allp = animal_prompts()
    assert len(allp) == 2520 and len(set(allp)) == 2520
    for frac, n_seen in [(0.125, 315), (0.5, 1260)]:
        a = load_prompt_set("animals", split="seen", seen_fraction=frac, seed=3)
        b = load_prompt_set("animals", split="seen", seen_fraction=frac, seed=3)
        u = load_prompt_set("animals", split="unseen", seen_fraction=frac, seed=3)
        assert a.prompts == b.prompts  # deterministic
        assert len(a.prompts) == n_seen and len(u.prompts) == 2520 - n_seen
        assert not set(a.prompts) & set(u.prompts)
        assert set(a.prompts) | set(u.prompts) == set(allp)
        assert u.held_out == a.prompts
    other = load_prompt_set("animals", split="seen", seen_fraction=0.125, seed=4)
    assert other.prompts != load_prompt_set("animals", split="seen", seen_fraction=0.125, seed=3).prompts
    # homogeneous: every animal appears among the 12.5 % seen prompts
    seen = load_prompt_set("animals", split="seen", seen_fraction=0.125, seed=0).prompts
    assert all(any(p.startswith(a + " ") for p in seen) for a in ["a squirrel", "an orangutan", "a bear"])


def test_text_file_comments_blank_lines_duplicates(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# my prompts\n\na red cube\n  a blue   sphere \na red cube\n   # indented comment\nA red cube\n")
    assert read_text_prompts(f) == ["a red cube", "a blue sphere", "A red cube"]
    ps = load_prompt_set(str(f))
    assert ps.sha256 == prompt_hash(["a red cube", "a blue sphere", "A red cube"])
    assert ps.record()["count"] == 3


def test_hash_depends_on_content_and_order():
    assert prompt_hash(["a", "b"]) != prompt_hash(["b", "a"])
    assert prompt_hash(["a", "b"]) == prompt_hash(["a", "b"])
    assert len(prompt_hash(["a"])) == 64


def test_prompt_library_json(tmp_path):
    if not LIBRARY.is_file():
        pytest.skip(f"shared data folder absent: {LIBRARY} (the DF415 prompt library)")
    ps = load_prompt_set(str(LIBRARY), key="dreamfusion")
    assert len(ps) == 415
    assert ps.prompts[0] == "a 20-sided die made out of glass"
    assert load_prompt_set(str(LIBRARY)).prompts == ps.prompts  # all lists = the only list
    with pytest.raises(ValueError, match="no prompt list"):
        load_prompt_set(str(LIBRARY), key="nope")
    seen = load_prompt_set(str(LIBRARY), key="dreamfusion", split="seen", seen_fraction=0.5)
    assert len(seen) == 208 and len(seen.held_out) == 207


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_prompt_set(str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="split"):
        load_prompt_set("pig", split="train")
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ValueError, match="empty"):
        load_prompt_set(str(tmp_path / "empty.txt"))
    with pytest.raises(ValueError):
        split_seen(["a"], 0.0)
    assert load_prompt_set(["x", "y", "x"]).prompts == ["x", "y"]
