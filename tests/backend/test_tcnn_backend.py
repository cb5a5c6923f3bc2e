"""``model.backend = "tcnn"``: the hash levels through tiny-cuda-nn's Python API, tested on the CPU against a
stand-in (tests/tcnn_standin.py: tiny-cuda-nn's HashGrid written in PyTorch from its grid.h), checking the
encoding config passed, the parameter layout (weights interchangeable with the PyTorch backend) and that
gradients reach the mapping network."""
from __future__ import annotations

import sys

import pytest
import tcnn_standin
import torch

from backend.model import ModelConfig, build_model, load_model, save_model
from backend.point_encoder import hash_level_size
from backend.point_encoder_tcnn import encoding_config, use_tcnn

# level 12: 12³ = 1728 ≤ 2¹¹ (dense indexing, table 1728); levels 20 and 40: hashed into 2048 entries
ARCH = dict(resolutions=[5, 8], hash_resolutions=[12, 20, 40], hash_table_log2=11, features=4, v_dim=8,
            max_length=4, token_dim=16)


@pytest.fixture
def standin(monkeypatch):
    mod = tcnn_standin.module()
    monkeypatch.setitem(sys.modules, "tinycudann", mod)
    return mod


def _pair(mapping="hyper"):
    """The same weights with either backend."""
    a = build_model(ModelConfig(mapping=mapping, backend="torch", **ARCH), seed=4)
    b = build_model(ModelConfig(mapping=mapping, backend="tcnn", **ARCH), seed=4)
    b.load_state_dict(a.state_dict())
    return a, b


def test_hash_level_sizes_are_tiny_cuda_nns(standin):
    model = build_model(ModelConfig(backend="tcnn", **ARCH))
    assert model.point_encoder.hash_sizes == [1728, 2048, 2048] == [hash_level_size(r, 2048) for r in (12, 20, 40)]
    pts = torch.rand(1, 10, 3) * 2 - 1
    with torch.no_grad():
        model.field(model.modulate(torch.randn(1, 4, 16)), pts)
    # one one-level HashGrid per hash level, with the model's resolution, table and features
    assert standin.Encoding.configs == [encoding_config(r, 11, 4) for r in (12, 20, 40)]
    assert standin.Encoding.configs[0] == {"otype": "HashGrid", "n_levels": 1, "n_features_per_level": 4,
                                           "log2_hashmap_size": 11, "base_resolution": 12, "per_level_scale": 1.0,
                                           "interpolation": "Linear"}
    # the encodings' own parameters are the size of a prompt's table, and never the model's
    enc = model.point_encoder._tcnn.encodings
    assert [e.params.numel() for e in enc] == [n * 4 for n in model.point_encoder.hash_sizes]
    assert not any("tcnn" in k or k.endswith(".params") for k in model.state_dict())


@pytest.mark.parametrize("mapping", ["hyper", "attention"])
def test_tcnn_features_density_and_gradients_equal_the_torch_backend(standin, mapping):
    a, b = _pair(mapping)
    tokens = torch.randn(3, 4, 16)
    pts = torch.rand(3, 300, 3) * 2.2 - 1.1  # some outside the box: zero features in both
    outs = []
    for model in (a, b):
        mod = model.modulate(tokens)
        mod.params.retain_grad()
        dens, rgb = model.field(mod, pts)
        (dens.sum() + rgb.square().sum()).backward()
        outs.append((model.features(mod, pts).detach(), dens.detach(), rgb.detach(), mod.params.grad,
                     {k: p.grad.clone() for k, p in model.mapping.named_parameters() if p.grad is not None}))
    (fa, da, ca, ga, pa), (fb, db, cb, gb, pb) = outs
    assert fa.shape == (3, 300, 4 * 5) and fa[..., 8:].abs().sum() > 0  # the hash features are not all zero
    # (float rounding of the shifted positions: a few 1e-6 on features of RMS ~0.2)
    torch.testing.assert_close(fb, fa, rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(db, da, rtol=1e-4, atol=5e-5)
    torch.testing.assert_close(cb, ca, rtol=1e-4, atol=2e-5)
    # the gradient reaches every per-prompt table entry it should, and through them the mapping network
    torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-7)
    n_dense = sum(4 * r ** 3 for r in ARCH["resolutions"])
    assert gb[:, n_dense:].abs().sum() > 0
    assert pa.keys() == pb.keys() and any("to_w" in k for k in pa) and any("to_v" in k for k in pa)
    for k in pa:
        assert pb[k].abs().sum() > 0, k
        torch.testing.assert_close(pb[k], pa[k], rtol=1e-3, atol=1e-5)


def test_a_model_trained_with_one_backend_loads_in_the_other(standin, tmp_path, monkeypatch):
    a, b = _pair()
    with torch.no_grad():  # "train" the tcnn model: move its weights
        for p in b.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    b.eval()  # (no power iterations from here on: the folder stores the spectral norms' vectors)
    tokens, pts = torch.randn(2, 4, 16), torch.rand(2, 200, 3) * 2 - 1
    with torch.no_grad():
        want = b.field(b.modulate(tokens), pts)[0]
    assert b.point_encoder._tcnn is not None  # (through the tiny-cuda-nn stand-in)
    save_model(b, tmp_path / "m")
    monkeypatch.setitem(sys.modules, "tinycudann", None)  # the same folder on a machine without tiny-cuda-nn
    loaded, cfg = load_model(tmp_path / "m")
    assert cfg["architecture"]["backend"] == "tcnn" and loaded.point_encoder.backend == "auto"
    with torch.no_grad():
        got = loaded.field(loaded.modulate(tokens), pts)[0]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert loaded.point_encoder._tcnn is None  # (it ran the PyTorch levels)


def test_backend_choice(standin, monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_tcnn("auto", cuda) and not use_tcnn("auto", cpu) and not use_tcnn("torch", cuda)
    assert use_tcnn("tcnn", cpu)  # (asked for explicitly; the real tiny-cuda-nn needs CUDA)
    # auto on the CPU: the PyTorch levels, no encoding built
    model = build_model(ModelConfig(backend="auto", **ARCH))
    with torch.no_grad():
        model.field(model.modulate(torch.randn(1, 4, 16)), torch.rand(1, 5, 3))
    assert model.point_encoder._tcnn is None and standin.Encoding.configs == []
    monkeypatch.setitem(sys.modules, "tinycudann", None)  # not importable
    assert not use_tcnn("auto", cuda)
    with pytest.raises(RuntimeError, match="tinycudann does not import"):
        use_tcnn("tcnn", cpu)
    with pytest.raises(ValueError, match="unknown point-encoder backend"):
        build_model(ModelConfig(backend="cuda", **ARCH))
