import math

import numpy as np
import pytest
import torch
from torch.nn.utils import parametrize

from backend.cameras import CameraSampler, orbit_cameras, view_label
from backend.mapping_network import MAPPINGS
from backend.model import ModelConfig, build_model
from backend.renderer import render

SMALL = dict(resolutions=[6, 10], features=4, v_dim=8, max_length=4, token_dim=16)


@pytest.mark.parametrize("variant", sorted(MAPPINGS))
def test_every_mapping_linear_is_spectral_normed(variant):
    model = build_model(ModelConfig(mapping=variant, **SMALL))
    linears = [m for m in model.mapping.modules() if isinstance(m, torch.nn.Linear)]
    assert linears, "the mapping network has no linear layers?"
    for lin in linears:
        assert parametrize.is_parametrized(lin, "weight"), f"{lin} is not spectral-normed"
    model.train()
    for lin in linears:  # after power iterations the top singular value is 1
        for _ in range(30):
            w = lin.weight
        assert torch.linalg.matrix_norm(w.detach(), ord=2) == pytest.approx(1.0, rel=0.05)


def test_hyper_mapping_shapes_follow_eq_4_5():
    cfg = ModelConfig(**SMALL)
    model = build_model(cfg)
    assert model.mapping.to_v.in_features == 4 * 16 and model.mapping.to_v.out_features == 8
    assert model.mapping.to_v.bias is not None and model.mapping.to_w.bias is None
    n = 4 * (6 ** 3 + 10 ** 3)
    assert model.mapping.to_w.out_features == n
    mod = model.modulate(torch.randn(3, 4, 16))
    assert mod.params.shape == (3, n) and mod.v.shape == (3, 8)


@pytest.mark.parametrize("variant", sorted(MAPPINGS))
def test_prompts_in_a_batch_are_independent(variant):
    model = build_model(ModelConfig(mapping=variant, **SMALL)).eval()
    tokens = torch.randn(3, 4, 16)
    pts = torch.rand(3, 500, 3) * 2 - 1
    with torch.no_grad():
        d_all, c_all = model.field(model.modulate(tokens), pts)
        tokens2 = tokens.clone()
        tokens2[1:] = torch.randn(2, 4, 16) * 5  # change the other prompts only
        d_b, c_b = model.field(model.modulate(tokens2), pts)
        d_one, c_one = model.field(model.modulate(tokens[:1]), pts[:1])
    torch.testing.assert_close(d_all[0], d_b[0])
    torch.testing.assert_close(d_all[0], d_one[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_all[0], c_one[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(d_all[1], d_b[1])


def test_gradients_do_not_leak_between_prompts():
    model = build_model(ModelConfig(**SMALL))
    tokens = torch.randn(2, 4, 16)
    mod = model.modulate(tokens)
    params = mod.params.detach().requires_grad_(True)
    from backend.mapping_network import Modulation

    d, _ = model.field(Modulation(params, mod.v), torch.rand(2, 200, 3) - 0.5)
    d[0].sum().backward()
    assert params.grad[0].abs().sum() > 0
    assert params.grad[1].abs().sum() == 0


def test_density_bias_makes_an_initial_blob():
    from backend.mesh import density_lattice, marching_cubes

    model = build_model(ModelConfig()).eval()
    with torch.no_grad():
        mod = model.modulate(torch.randn(1, 32, 384))
    vol = density_lattice(model, mod, 64)
    verts, faces = marching_cubes(vol, model.config.iso_density, 1.0)
    r = np.linalg.norm(verts, axis=1)
    assert len(faces) > 100
    assert abs(verts.mean(0)).max() < 0.02  # centred
    assert r.std() / r.mean() < 0.05  # round
    assert 0.15 < r.mean() < 0.45  # softplus(10(1−2r) + ~0) = 5 near r ≈ 0.25
    assert vol[0, 0, 0] < 1e-3  # nothing in the corners


def test_render_analytic_sphere_matches_expected_image():
    radius, size = 0.5, 64
    red = torch.tensor([0.9, 0.1, 0.1])

    def field(p):
        inside = (p.norm(dim=-1) < radius).float()
        return 1e4 * inside, red.expand(*p.shape[:-1], 3)

    cams = orbit_cameras([0.0, 90.0], elevation=0.0, distance=2.5, focal=1.0)
    out = render(field, cams, size, size, n_samples=512, stratified=False, bg_color=1.0)
    # Expected: a disc of angular radius asin(r/d) around the image centre.
    j, i = np.meshgrid(np.arange(size) + 0.5 - size / 2, np.arange(size) + 0.5 - size / 2, indexing="ij")
    ang = np.arctan(np.hypot(i, j) / size)  # focal = 1 image width
    expected = ang < math.asin(radius / 2.5)
    got = out.opacity[0, 0].numpy() > 0.5
    assert (got != expected).mean() < 0.01
    rgb = out.rgb[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(rgb[expected & got].mean(0), red.numpy(), atol=0.02)
    np.testing.assert_allclose(rgb[~expected & ~got].mean(0), [1, 1, 1], atol=1e-3)
    depth = out.depth[0, 0, size // 2, size // 2].item()
    assert depth == pytest.approx(2.0, abs=0.02)  # the front of the sphere


def test_lambertian_shading_darkens_the_side_away_from_the_light():
    def field(p):
        return 1e3 * torch.sigmoid((0.5 - p.norm(dim=-1)) * 50), torch.ones(*p.shape[:-1], 3)

    cams = orbit_cameras([0.0], elevation=0.0, distance=2.5)
    cams.light = torch.tensor([[5.0, -2.5, 0.0]])  # to the camera's right
    cams.shading = torch.tensor([2])
    cams.ambient = torch.tensor([0.1])
    out = render(field, cams, 32, 32, n_samples=256, stratified=False)
    assert out.normal is not None
    row = out.rgb[0, 0, 16]
    assert row[20] > row[11] + 0.3  # right side lit, left side dark


def test_lit_shading_without_a_light_is_a_clear_error():
    from backend.renderer import render_rays

    origins, dirs = torch.zeros(1, 4, 3), torch.nn.functional.normalize(torch.randn(1, 4, 3), dim=-1)
    with pytest.raises(ValueError, match="lit shading needs a `light` position and an `ambient` level"):
        render_rays(lambda p: (p.norm(dim=-1), torch.ones(*p.shape[:-1], 3)), origins, dirs,
                    shading=torch.tensor([1]))


def test_the_shared_grid_is_the_concat_variants_only():
    from backend.point_encoder import PointEncoder

    shared = PointEncoder([4], 2, 1.0, shared=True)
    assert shared.levels(None, 3)[0].shape == (3, 2, 4, 4, 4)  # one grid for every prompt
    with pytest.raises(ValueError, match="no grid parameters given, and this point encoder has no shared grid"):
        PointEncoder([4], 2, 1.0).levels(None, 1)


def test_finite_difference_normals_match_autograd_normals_and_shading():
    def field(p):
        return 1e3 * torch.sigmoid((0.5 - p.norm(dim=-1)) * 50), torch.ones(*p.shape[:-1], 3)

    cams = orbit_cameras([0.0, 120.0], elevation=10.0, distance=2.5)
    cams.light = torch.tensor([[5.0, -2.5, 0.0], [0.0, 0.0, 4.0]])
    cams.shading = torch.tensor([2, 1])
    cams.ambient = torch.tensor([0.1, 0.3])
    exact = render(field, cams, 24, 24, n_samples=128, stratified=False)
    fd = render(field, cams, 24, 24, n_samples=128, stratified=False, normals="finite_difference", fd_eps=1e-3)
    hit = exact.opacity[:, 0] > 0.99
    cos = (exact.normal * fd.normal).sum(1)[hit] / (exact.normal.norm(dim=1) * fd.normal.norm(dim=1))[hit]
    assert cos.min() > 0.99
    assert (exact.rgb - fd.rgb).abs().max() < 0.03
    # differentiable, first order: a field parameter gets a gradient through the shading
    scale = torch.tensor(50.0, requires_grad=True)
    out = render(lambda p: (1e3 * torch.sigmoid((0.5 - p.norm(dim=-1)) * scale), torch.ones(*p.shape[:-1], 3)),
                 cams, 8, 8, n_samples=32, stratified=False, normals="finite_difference")
    out.rgb.sum().backward()
    assert scale.grad is not None and torch.isfinite(scale.grad)
    with pytest.raises(ValueError, match="normals mode"):
        render(field, cams, 4, 4, normals="sobel")


def test_camera_sampler_ranges_and_view_labels():
    cams = CameraSampler().sample(2000, torch.Generator().manual_seed(0))
    d = cams.eye.norm(dim=-1)
    assert d.min() >= 2.0 and d.max() <= 3.0
    assert cams.focal.min() >= 0.7 and cams.focal.max() <= 1.35
    ld = cams.light.norm(dim=-1)
    assert ld.min() >= 1.0 - 1e-5 and ld.max() <= 3.0 + 1e-5
    cos = torch.nn.functional.cosine_similarity(cams.light, cams.eye, dim=-1)
    assert cos.min() >= math.cos(math.pi / 4) - 1e-4
    labels = set(cams.view_labels)
    assert labels == {"front", "side", "back", "overhead"}
    assert view_label(0, 0) == "front" and view_label(180, 10) == "back" and view_label(90, 0) == "side"
    assert view_label(30, 80) == "overhead"
    # the camera looks at the origin
    fwd = -cams.c2w[:, :, 2]
    torch.testing.assert_close(fwd, -torch.nn.functional.normalize(cams.eye, dim=-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", [dict(mapping="concat"), dict(hash_resolutions=[20, 31], hash_table_log2=10),
                                  dict()])
def test_fast_lattice_equals_pointwise_density(arch):
    """The separable lattice path gives exactly the model's density at lattice points."""
    from backend.mesh import density_lattice

    cfg = ModelConfig(resolutions=[6, 10, 14], v_dim=8, max_length=4, token_dim=16, grid_scale=1.0, **arch)
    model = build_model(cfg).eval()
    with torch.no_grad():
        mod = model.modulate(torch.randn(1, 4, 16) * 3)
        mod.params.mul_(1000) if mod.params is not None else model.point_encoder.shared.data.normal_()
        vol = density_lattice(model, mod, 20, max_points=1000)  # several slabs
        c = torch.linspace(-1, 1, 20)
        idx = torch.randint(0, 20, (500, 3))
        pts = c[idx][None]
        d = model.density(mod, pts)[0].numpy()
    np.testing.assert_allclose(vol[idx[:, 0], idx[:, 1], idx[:, 2]], d, rtol=1e-4, atol=1e-4)
    assert vol.std() > 0.1  # the test field is not trivial


def test_hash_levels_change_features_and_stay_inside_the_box():
    from backend.point_encoder import sample_hash

    table = torch.randn(2, 256, 4)
    u = torch.rand(2, 100, 3) * 2 - 1
    f = sample_hash(table, u, 33)
    assert f.shape == (2, 100, 4)
    assert not torch.allclose(f[0], sample_hash(table[1:], u[:1], 33)[0])
    assert sample_hash(table, torch.full((2, 3, 3), 1.5), 33).abs().max() == 0


@pytest.mark.parametrize("variant", ["hyper", "attention"])
def test_grid_scale_multiplies_the_hypernetwork_grid_and_nothing_else(variant):
    tokens = torch.randn(2, 4, 16)
    plain = build_model(ModelConfig(mapping=variant, grid_scale=1.0, **SMALL)).eval()
    scaled = build_model(ModelConfig(mapping=variant, grid_scale=32.0, **SMALL)).eval()
    with torch.no_grad():
        a, b = plain.modulate(tokens), scaled.modulate(tokens)
    torch.testing.assert_close(b.v, a.v)  # same seed, same weights: only w is scaled
    torch.testing.assert_close(b.params, 32.0 * a.params)


@pytest.mark.parametrize("variant", ["hyper", "attention"])
def test_auto_grid_scale_is_variance_preserving_and_stored(variant):
    """grid_scale = 0 (the default) resolves to √(P/v) when built: the grid values get v's RMS at every
    grid size (spectral norm alone gives them ‖v‖/√P), and the resolved number is the config's."""
    tokens = torch.randn(4, 4, 16, generator=torch.Generator().manual_seed(0))
    for res in ([6, 10], [9, 14, 22]):
        model = build_model(ModelConfig(mapping=variant, **{**SMALL, "resolutions": res})).eval()
        n = model.point_encoder.n_params
        assert ModelConfig().grid_scale == 0.0 and model.config.grid_scale == pytest.approx(math.sqrt(n / 8))
        with torch.no_grad():
            if variant == "hyper":
                pairs = [(model.modulate(tokens).params, model.mapping.task_vector(tokens))]
            else:  # each level against its own hypernetwork's v, without its √(P_l/P) share of the gain
                t = model.mapping.attend(tokens, None)
                pairs = [(h.to_w(h.task_vector(t)) * model.mapping.grid_scale, h.task_vector(t))
                         for h in model.mapping.levels]
        for w, v in pairs:
            ratio = float(w.pow(2).mean().sqrt() / v.pow(2).mean().sqrt() * math.sqrt(w.shape[1] / n))
            assert 0.6 < ratio < 1.5, (res, ratio)


@pytest.mark.parametrize("variant", ["hyper", "attention"])
def test_calibrate_grid_sets_the_target_rms_for_any_token_scale(variant):
    for token_scale in (0.05, 1.0, 20.0):
        tokens = torch.randn(6, 4, 16) * token_scale
        model = build_model(ModelConfig(mapping=variant, **SMALL))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        gain = model.calibrate_grid(tokens)
        assert model.config.grid_scale == gain == model.mapping.grid_scale
        with torch.no_grad():
            rms = model.eval().modulate(tokens).params.pow(2).mean().sqrt()
        assert float(rms) == pytest.approx(1 / math.sqrt(model.point_encoder.out_dim), rel=1e-3)
        for k, v in model.state_dict().items():  # no weight (nor spectral-norm vector) moved
            assert torch.equal(v, before[k]), k


def test_attention_mapping_has_one_hypernetwork_per_level():
    """App. B.1.3: self-attention over the tokens, then a hypernetwork (to_v, to_w) for each grid level;
    every level starts at about the same RMS, whatever its size (spectral norm alone: ∝ 1/√P_l, 5× apart here)."""
    model = build_model(ModelConfig(mapping="attention", **{**SMALL, "resolutions": [4, 8, 12], "v_dim": 32})).eval()
    sizes = model.point_encoder.sizes
    assert [h.to_w.out_features for h in model.mapping.levels] == sizes
    assert len({id(h.to_v) for h in model.mapping.levels}) == 3
    tokens = torch.randn(8, 4, 16)
    with torch.no_grad():
        levels = torch.split(model.modulate(tokens).params, sizes, dim=1)
    rms = [float(x.pow(2).mean().sqrt()) for x in levels]
    assert max(rms) / min(rms) < 2.0, rms
    # each level's grid depends on its own hypernetwork only
    with torch.no_grad():
        w = model.mapping.levels[1].to_v.parametrizations.weight.original
        w.add_(torch.randn_like(w))  # (a plain rescale would be undone by the spectral norm)
        moved = torch.split(model.modulate(tokens).params, sizes, dim=1)
    assert torch.equal(moved[0], levels[0]) and torch.equal(moved[2], levels[2])
    assert not torch.allclose(moved[1], levels[1])


def test_distortion_is_the_mip_nerf_360_double_sum_and_prefers_one_thin_surface():
    from backend.renderer import distortion

    g = torch.Generator().manual_seed(0)
    s_samples = 16
    s = (torch.arange(s_samples) + 0.5) / s_samples
    w = torch.rand(3, 5, s_samples, generator=g) / s_samples
    brute = (w[..., :, None] * w[..., None, :] * (s[:, None] - s[None, :]).abs()).sum((-1, -2))
    brute = brute + (w * w).sum(-1) / (3 * s_samples)
    assert torch.allclose(distortion(w, s, 1 / s_samples)[..., 0], brute, atol=1e-6)
    thin = torch.zeros(s_samples)
    thin[8] = 0.9
    soft = torch.full((s_samples,), 0.9 / s_samples)
    assert distortion(thin, s, 1 / s_samples) < 0.2 * distortion(soft, s, 1 / s_samples)
