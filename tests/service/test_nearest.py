"""backend.nearest: pooling, calibration, far flags, unknown training prompts."""
from __future__ import annotations

import numpy as np
import torch

from backend.nearest import DEFAULT_THRESHOLD, PromptIndex, index_cache_file, pooled, training_prompts


class Emb:
    def __init__(self, tokens, mask):
        self.tokens, self.mask = tokens, mask


def fake_embed(table):
    def embed(prompts):
        vecs = torch.tensor(np.stack([table[p] for p in prompts]), dtype=torch.float32)
        tokens = torch.zeros(len(prompts), 4, vecs.shape[1])
        tokens[:, 0] = vecs
        tokens[:, 1] = vecs  # two real tokens, two padding
        mask = torch.tensor([[True, True, False, False]] * len(prompts))
        return Emb(tokens, mask)
    return embed


def test_pooled_ignores_padding():
    t = torch.tensor([[[3.0, 4.0], [3.0, 4.0], [100.0, 0.0]]])
    m = torch.tensor([[True, True, False]])
    assert np.allclose(pooled(t, m), [[0.6, 0.8]])


def test_calibrated_index():
    rng = np.random.default_rng(0)
    base = rng.normal(size=8)
    table = {f"p{i}": base + 0.1 * rng.normal(size=8) for i in range(8)}
    table["near"] = table["p3"] + 0.01 * rng.normal(size=8)
    table["far"] = -base
    idx = PromptIndex(fake_embed(table), [f"p{i}" for i in range(8)])
    assert idx.calibrated and 0 < idx.threshold < 1
    near = idx.query("near", k=3)
    assert near["neighbors"][0]["prompt"] == "p3" and near["far"] is False and len(near["neighbors"]) == 3
    assert near["distance"] == near["neighbors"][0]["distance"]
    assert [n["distance"] for n in near["neighbors"]] == sorted(n["distance"] for n in near["neighbors"])
    far = idx.query("far")
    assert far["far"] is True and far["distance"] > 1.5 and "far from the 8 training prompts" in far["message"]


def test_small_sets_use_the_default_threshold():
    table = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0]), "q": np.array([1.0, 1.0])}
    idx = PromptIndex(fake_embed(table), ["a", "b"])
    assert not idx.calibrated and idx.threshold == DEFAULT_THRESHOLD
    r = idx.query("q", k=10)
    assert len(r["neighbors"]) == 2 and r["calibrated"] is False


def test_unknown_training_prompts_are_said_so():
    idx = PromptIndex(fake_embed({}), None)
    r = idx.query("anything")
    assert r["far"] is None and r["known_prompts"] == 0 and "does not list its training prompts" in r["message"]
    assert training_prompts({"provenance": {}}) is None
    assert training_prompts({"provenance": {"prompts": ["a  b", "a b", " "]}}) == ["a b"]


def test_real_encoder(engine):
    r = engine.nearest("a  red cube", k=2)
    assert r["prompt"] == "a red cube" and r["neighbors"][0]["prompt"] == "a red cube" and not r["far"]


def test_the_index_is_cached_in_one_file(tmp_path):
    """The demo's 992 prompts take most of a minute to embed on a busy CPU: a warm start reads them
    back from one file instead, and anything wrong with that file only costs the time again."""
    rng = np.random.default_rng(1)
    table = {f"p{i}": rng.normal(size=8) for i in range(12)}
    table["q"] = table["p5"] + 0.01
    calls = []

    def embed(prompts):
        calls.append(list(prompts))
        return fake_embed(table)(prompts)

    prompts = [f"p{i}" for i in range(12)]
    f = index_cache_file(tmp_path, "minilm", 32, prompts)
    a = PromptIndex(embed, prompts, cache_file=f)
    assert f.is_file() and not a.from_cache and calls
    calls.clear()
    b = PromptIndex(embed, prompts, cache_file=f)
    assert b.from_cache and calls == []  # no training prompt embedded again
    assert np.array_equal(a.vectors, b.vectors) and b.threshold == a.threshold
    assert b.query("q") == a.query("q") and calls == [["q"], ["q"]]  # the queries only
    assert index_cache_file(tmp_path, "minilm", 32, prompts[:-1]) != f  # another list, another file
    assert index_cache_file(tmp_path, "minilm", 77, prompts) != f
    f.write_bytes(b"not an npz")
    calls.clear()
    c = PromptIndex(embed, prompts, cache_file=f)
    assert not c.from_cache and calls and np.allclose(c.vectors, a.vectors)
