"""Mesh extraction's lattice fast path: the point encoder's separable lattice features and the NeRF
MLP's channel-first density compose to exactly the model's per-point density at every lattice point."""
import numpy as np
import pytest
import torch

from backend.mesh import density_lattice
from backend.model import ModelConfig, build_model

SMALL = dict(resolutions=[5, 9, 12], v_dim=8, max_length=4, token_dim=16)


def _model_and_modulation(mapping: str, hash_resolutions: list[int]):
    cfg = ModelConfig(mapping=mapping, hash_resolutions=hash_resolutions, hash_table_log2=8, grid_scale=1.0, **SMALL)
    model = build_model(cfg, seed=3).eval()
    with torch.no_grad():
        mod = model.modulate(torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0)) * 3)
        if mod.params is None:  # the concatenation variant's shared grid: give it values worth reading
            model.point_encoder.shared.normal_(generator=torch.Generator().manual_seed(1))
        else:
            mod.params.mul_(1000)
    return model, mod


@pytest.mark.parametrize("hash_resolutions", [[], [16, 27]], ids=["dense", "hash"])
@pytest.mark.parametrize("mapping", ["hyper", "concat", "attention"])
def test_dense_lattice_equals_per_point_density_everywhere(mapping, hash_resolutions):
    model, mod = _model_and_modulation(mapping, hash_resolutions)
    n = 17
    vol = density_lattice(model, mod, n, max_points=600)  # several slabs, the last one short
    c = torch.linspace(-1, 1, n)
    pts = torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1).reshape(1, -1, 3)  # [x, y, z] order
    with torch.no_grad():
        d = model.density(mod.select([0]), pts)[0].reshape(n, n, n).numpy()
    np.testing.assert_allclose(vol, d, rtol=1e-5, atol=1e-4)
    assert vol.std() > 0.1  # the test field is not trivial


@pytest.mark.parametrize("hash_resolutions", [[], [16]], ids=["dense", "hash"])
def test_point_encoder_lattice_slabs_are_its_features_channel_first(hash_resolutions):
    model, mod = _model_and_modulation("hyper", hash_resolutions)
    pe, n = model.point_encoder, 9
    c = torch.linspace(-1, 1, n)
    zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")
    pts = torch.stack([xx, yy, zz], -1).reshape(1, -1, 3)  # (z, y, x) order, as the slabs come
    with torch.no_grad():
        want = pe(mod.params[:1], pts)[0].T  # [C, n³]
        slabs = list(pe.lattice_slabs(mod.params[:1], n, rows=4))
    assert [(z0, z1) for z0, z1, _ in slabs] == [(0, 4), (4, 8), (8, 9)]
    got = torch.cat([f for _, _, f in slabs], dim=1)
    assert got.shape == (pe.out_dim, n ** 3)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_nerf_channel_first_density_matches_density_only_with_and_without_a_constant():
    from backend.nerf_mlp import NeRFMLP

    torch.manual_seed(0)
    nerf = NeRFMLP(in_dim=12, hidden=16)
    feats, pts, v = torch.randn(40, 8), torch.rand(40, 3) * 2 - 1, torch.randn(4)
    with torch.no_grad():
        full = torch.cat([feats, v.expand(40, 4)], dim=1)
        want = nerf.density_only(full, pts)
        got = nerf.density_channels_first(full.T, pts.norm(dim=-1))
        folded = nerf.density_channels_first(feats.T, pts.norm(dim=-1), constant=v)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(folded, want, rtol=1e-5, atol=1e-5)
    # with gradients on it stays differentiable (no in-place activation then)
    x = full.T.clone().requires_grad_(True)
    nerf.density_channels_first(x, pts.norm(dim=-1)).sum().backward()
    assert torch.isfinite(x.grad).all()
