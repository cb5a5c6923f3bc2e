"""Autograd normals differentiate the point encoder twice (the loss of a lit render differentiates
the normals, which are a gradient w.r.t. the points). CUDA's grid_sampler_3d has no second
derivative, so the renderer's autograd normals take a gather-based lookup (``twice_differentiable``):
the same values and first derivatives as grid_sample, and second derivatives on every device."""
import torch

from backend.point_encoder import sample_dense, twice_differentiable


def _inputs(seed: int = 0, outside: float = 1.1):
    g = torch.Generator().manual_seed(seed)
    grid = torch.randn(2, 4, 7, 7, 7, generator=g, dtype=torch.float64)
    u = (torch.rand(2, 300, 3, generator=g, dtype=torch.float64) * 2 - 1) * outside  # some outside the box
    u[0, :8] = torch.tensor([[(c >> i) & 1 for i in range(3)] for c in range(8)], dtype=torch.float64) * 2 - 1
    return grid, u


def test_gather_lookup_equals_grid_sample_in_values_and_gradients():
    grid, u = _inputs()
    with torch.no_grad():
        want = sample_dense(grid, u)  # grid_sample: nothing needs a gradient
    grid_a, u_a = grid.clone().requires_grad_(True), u.clone().requires_grad_(True)
    with twice_differentiable():
        got = sample_dense(grid_a, u_a)  # the gather path
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    weights = torch.randn(got.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ga, ua = torch.autograd.grad((got * weights).sum(), (grid_a, u_a))
    grid_b, u_b = grid.clone().requires_grad_(True), u.clone().requires_grad_(True)
    ref = torch.nn.functional.grid_sample(grid_b, u_b[:, :, None, None, :], align_corners=True)[:, :, :, 0, 0]
    gb, ub = torch.autograd.grad((ref.transpose(1, 2) * weights).sum(), (grid_b, u_b))
    torch.testing.assert_close(ga, gb)
    inside = (u.abs() < 1).all(-1)  # (grid_sample's gradient is zero at the border; ours one-sided)
    torch.testing.assert_close(ua[inside], ub[inside])


def test_second_derivative_through_the_normals():
    grid, u = _inputs(2, outside=0.95)
    grid.requires_grad_(True)
    u.requires_grad_(True)
    with twice_differentiable():
        density = sample_dense(grid, u).sum(-1)
    (normal,) = torch.autograd.grad(density.sum(), u, create_graph=True)
    loss = normal.pow(2).sum()
    (g_grid,) = torch.autograd.grad(loss, grid)
    # finite differences of the loss along a random grid direction agree with the second derivative
    d = torch.randn(grid.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    eps = 1e-6

    def loss_at(g):
        uu = u.detach().requires_grad_(True)
        with twice_differentiable():
            (nn,) = torch.autograd.grad(sample_dense(g, uu).sum(), uu)
        return nn.pow(2).sum()

    numeric = (loss_at(grid.detach() + eps * d) - loss_at(grid.detach() - eps * d)) / (2 * eps)
    torch.testing.assert_close((g_grid * d).sum(), numeric, rtol=1e-5, atol=1e-6)


def _op_names(t: torch.Tensor) -> set[str]:
    seen, names, todo = set(), set(), [t.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        todo += [f for f, _ in fn.next_functions]
    return names


def test_a_lit_training_render_with_autograd_normals_has_no_grid_sampler_in_its_graph():
    """The op CUDA cannot differentiate twice must not be in the graph of a lit training render, nor
    ``prod`` over the 3 axes: its backward (twice, here) runs cumulative-product scans over an axis of
    3, which took 1.7 s of a 1.8 s paper-size training step on an H200 (torch 2.11)."""
    from backend.model import ModelConfig, build_model
    from backend.renderer import render_rays

    model = build_model(ModelConfig(resolutions=[5, 9], v_dim=8, max_length=4, token_dim=16), seed=0)
    mod = model.modulate(torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(0)))
    g = torch.Generator().manual_seed(1)
    origins = torch.tensor([[[0.0, -2.5, 0.3]]]).expand(1, 16, 3)
    dirs = torch.nn.functional.normalize(torch.randn(1, 16, 3, generator=g) * 0.1 + torch.tensor([0, 1.0, 0]), dim=-1)
    out = render_rays(lambda p: model.field(mod, p), origins, dirs, n_samples=16,
                      shading=torch.ones(1, dtype=torch.long), light=torch.tensor([[0.0, -3.0, 3.0]]),
                      ambient=torch.tensor([0.3]), normals="autograd", generator=g)
    loss = out["rgb"].mean()
    names = _op_names(loss)
    assert not any("GridSampler" in n or n.startswith("ProdBackward") for n in names), sorted(names)
    loss.backward()  # through the normals' second derivative
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_first_order_gradients_keep_grid_sample():
    """Outside the renderer's autograd normals (e.g. a chain's Newton steps) the fast lookup stays."""
    grid, u = _inputs()
    u.requires_grad_(True)
    out = sample_dense(grid, u)
    assert any("GridSampler" in n for n in _op_names(out.sum()))
