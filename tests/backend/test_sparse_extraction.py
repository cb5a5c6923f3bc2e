"""Sparse mesh extraction (``backend.sparse_lattice``): its density bound holds at every point of a
block, its node densities are the lattice's, and its mesh is the dense path's (same closed
components, vertices within 0.1 voxel) on the demo model's thin parts: the torus, the ring, the
plate, the ears. PyMCubes and the PyTorch marching cubes give the same surface as scikit-image."""
import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial import cKDTree

from backend import sparse_lattice as sl
from backend.mesh import density_lattice, extract_surface, marching_cubes
from backend.model import ModelConfig, build_model
from backend.progress import CancelledError

SMALL = dict(resolutions=[5, 9, 12], v_dim=8, max_length=4, token_dim=16)
THIN = ["a yellow torus", "a red cube with a red ring around it", "a blue sphere on a black plate",
        "a pink cone with green ears"]


def _random_model(mapping: str, hash_resolutions: list[int]):
    cfg = ModelConfig(mapping=mapping, hash_resolutions=hash_resolutions, hash_table_log2=8, **SMALL)
    model = build_model(cfg, seed=3).eval()
    with torch.no_grad():
        mod = model.modulate(torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(0)) * 3)
        if mod.params is None:  # the concatenation variant's shared grid: give it values worth reading
            model.point_encoder.shared.normal_(generator=torch.Generator().manual_seed(1))
        else:  # grids of a few units (whatever the mapping's gain): densities that cross the level often
            mod.params.mul_(3.0 / mod.params.std())
    return model, mod


VARIANTS = [("hyper", []), ("concat", []), ("attention", []), ("hyper", [16, 27])]
IDS = ["hyper", "concat", "attention", "hash"]


@pytest.mark.parametrize(("mapping", "hash_resolutions"), VARIANTS, ids=IDS)
def test_block_bounds_hold_at_random_points_inside_every_block(mapping, hash_resolutions):
    model, mod = _random_model(mapping, hash_resolutions)
    grid = sl.BlockGrid(33, 4, model.config.bound)
    lo, hi = sl.block_bounds(model, mod, grid)
    assert lo.shape == hi.shape == (grid.nb,) * 3
    first, last = (torch.from_numpy(grid.world(p.astype(np.float64))).float() for p in grid.real_nodes())
    g = torch.Generator().manual_seed(0)
    idx = torch.stack(torch.meshgrid(*(torch.arange(grid.nb),) * 3, indexing="ij"), -1).reshape(-1, 3)
    per = 24
    t = torch.rand(len(idx), per, 3, generator=g)
    t[:, :8] = torch.tensor([[(c >> i) & 1 for i in range(3)] for c in range(8)], dtype=torch.float32)  # corners too
    pts = first[idx][:, None] + t * (last[idx] - first[idx])[:, None]
    with torch.no_grad():
        d = model.density(mod, pts.reshape(1, -1, 3)).reshape(len(idx), per)
    lo_b, hi_b = lo[tuple(idx.T)], hi[tuple(idx.T)]
    slack = 1e-4 * (1 + d.abs())
    assert (d >= lo_b[:, None] - slack).all(), "a density below its block's lower bound"
    assert (d <= hi_b[:, None] + slack).all(), "a density above its block's upper bound"


@pytest.mark.parametrize(("mapping", "hash_resolutions"), VARIANTS, ids=IDS)
def test_block_node_densities_are_the_lattice_densities(mapping, hash_resolutions):
    model, mod = _random_model(mapping, hash_resolutions)
    n = 30  # n + 1 is not a multiple of s: the last blocks hold padding nodes
    grid = sl.BlockGrid(n, 4, model.config.bound)
    everything = torch.ones((grid.nb,) * 3, dtype=torch.bool)
    everything[0, 1, 2] = everything[3, 3, 3] = False  # some blocks read faces their neighbours do not own
    blocks, values = sl.block_densities(model, mod, grid, everything)
    vol = np.pad(density_lattice(model, mod, n), ((1, grid.nb * grid.s - n),) * 3)  # padded with 0
    s = grid.s
    want = np.stack([vol[bx * s:bx * s + s + 1, by * s:by * s + s + 1, bz * s:bz * s + s + 1]
                     for bx, by, bz in blocks.tolist()])
    np.testing.assert_allclose(values.numpy(), want, rtol=1e-5, atol=1e-4)


def _same_surface(dense: tuple[np.ndarray, np.ndarray], sparse: tuple[np.ndarray, np.ndarray], voxel: float,
                  other_table: float = 0.0):
    """``other_table``: the share of a component's volume a marching cubes with another table may enclose
    differently: it cuts the same polygons into other triangles, and splits the cells whose corners
    alternate otherwise (the same vertices, other faces; ≈ 0.2 % on a torus 5 voxels thick)."""
    a, b = (trimesh.Trimesh(v, f, process=False) for v, f in (dense, sparse))
    assert len(a.faces) > 100
    assert a.is_watertight and b.is_watertight
    assert b.volume > 0, "faces must wind outward"
    parts_a, parts_b = a.split(only_watertight=True), b.split(only_watertight=True)
    assert len(parts_a) == len(parts_b), "the same closed components"
    vols_a, vols_b = (sorted(round(p.volume / voxel ** 3) for p in parts) for parts in (parts_a, parts_b))
    for va, vb in zip(vols_a, vols_b):
        assert abs(va - vb) <= max(1, other_table * va), (vols_a, vols_b)
    a_to_b, b_to_a = cKDTree(b.vertices).query(a.vertices)[0], cKDTree(a.vertices).query(b.vertices)[0]
    if other_table:  # scikit-image (Lewiner) adds a vertex inside some ambiguous cells; no other vertex differs
        assert (a_to_b > 0.1 * voxel).sum() <= 1e-3 * len(a_to_b)
        a_to_b = a_to_b[:0]
    far = max(a_to_b.max(initial=0.0), b_to_a.max())
    assert far < 0.1 * voxel, f"a vertex {far / voxel:.3f} voxels from the other mesh"
    assert abs(len(a.faces) - len(b.faces)) <= 1e-3 * len(a.faces)


@pytest.fixture(scope="module")
def demo():
    from backend.inference import Pipeline

    return Pipeline("demo", device="cpu")


@pytest.mark.parametrize("prompt", THIN)
def test_sparse_mesh_is_the_dense_mesh_on_thin_parts(demo, prompt):
    mod = demo.modulate(demo.embed(prompt))
    n = 96
    dense = extract_surface(demo.model, mod, n, extract="dense")
    sparse = extract_surface(demo.model, mod, n, extract="sparse")
    _same_surface(dense, sparse, 2 * demo.model.config.bound / (n - 1))


def test_sparse_extraction_evaluates_a_small_part_of_the_lattice(demo):
    mod = demo.modulate(demo.embed("a yellow torus"))
    grid = sl.BlockGrid(256, sl.default_block_size(256), demo.model.config.bound)
    surface, _ = sl.surface_blocks(demo.model, mod, grid, demo.model.config.iso_density)
    assert surface.float().mean() < 0.1, f"{surface.float().mean():.0%} of the blocks evaluated"


@pytest.mark.parametrize(("mapping", "hash_resolutions"), VARIANTS, ids=IDS)
def test_sparse_equals_dense_on_random_models(mapping, hash_resolutions):
    model, mod = _random_model(mapping, hash_resolutions)
    vol = density_lattice(model, mod, 40)
    level = float(np.quantile(vol, 0.7))  # a busy surface: many small closed parts
    dense = extract_surface(model, mod, 40, level=level, extract="dense")
    sparse = extract_surface(model, mod, 40, level=level, extract="sparse")
    _same_surface(dense, sparse, 2 / 39)


def test_pymcubes_gives_the_surface_scikit_image_gives(demo):
    pytest.importorskip("mcubes")
    mod = demo.modulate(demo.embed("a green cone with a ring"))
    n = 80
    voxel = 2 * demo.model.config.bound / (n - 1)
    reference = extract_surface(demo.model, mod, n, extract="dense")
    for extract in ("dense", "sparse"):
        _same_surface(reference, extract_surface(demo.model, mod, n, extract=extract, mc="pymcubes"), voxel)


@pytest.mark.parametrize("prompt", THIN)
def test_torch_marching_cubes_gives_the_surface_scikit_image_gives(demo, prompt):
    mod = demo.modulate(demo.embed(prompt))
    n = 96
    voxel = 2 * demo.model.config.bound / (n - 1)
    reference = extract_surface(demo.model, mod, n, extract="dense", mc="skimage")
    for extract in ("dense", "sparse"):
        _same_surface(reference, extract_surface(demo.model, mod, n, extract=extract, mc="torch"), voxel, 5e-3)


@pytest.mark.parametrize(("mapping", "hash_resolutions"), VARIANTS, ids=IDS)
def test_torch_marching_cubes_on_busy_random_surfaces(mapping, hash_resolutions):
    model, mod = _random_model(mapping, hash_resolutions)
    level = float(np.quantile(density_lattice(model, mod, 40), 0.7))
    reference = extract_surface(model, mod, 40, level=level, extract="dense", mc="skimage")
    for extract in ("dense", "sparse"):
        _same_surface(reference, extract_surface(model, mod, 40, level=level, extract=extract, mc="torch"), 2 / 39,
                      5e-3)


def test_auto_marching_cubes_is_torch_on_a_gpu_and_scikit_image_on_a_cpu():
    from backend.mesh import resolve_mc

    assert resolve_mc("auto", "cpu") == "skimage"
    assert resolve_mc("auto", torch.device("cuda", 0)) == "torch"
    assert resolve_mc("pymcubes", "cuda") == "pymcubes"
    with pytest.raises(ValueError, match="mc must be one of auto, skimage, pymcubes, torch; got 'gpu'"):
        resolve_mc("gpu", "cpu")


def test_marching_cubes_in_slabs_is_one_call():
    c = np.linspace(-1, 1, 41, dtype=np.float32)
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    torus = 0.12 - np.sqrt((np.sqrt(x * x + y * y) - 0.6) ** 2 + z * z)
    for method in ("skimage", "pymcubes"):
        whole = marching_cubes(torus, 0.0, 1.0, method)
        _same_surface(whole, marching_cubes(torus, 0.0, 1.0, "torch"), 2 / 40, 5e-3)
        _same_surface(whole, marching_cubes(torch.from_numpy(torus), 0.0, 1.0), 2 / 40, 5e-3)  # auto: by device
        calls = []
        slabs = marching_cubes(torus, 0.0, 1.0, method, check=calls.append, slab_voxels=43 * 43 * 6)
        assert len(calls) > 5
        _same_surface(whole, slabs, 2 / 40)


def test_an_empty_field_gives_an_empty_mesh_both_ways():
    model, mod = _random_model("hyper", [])
    for extract in ("dense", "sparse"):
        v, f = extract_surface(model, mod, 32, level=1e9, extract=extract)
        assert v.shape == (0, 3) and f.shape == (0, 3)


def test_unknown_methods_are_refused():
    model, mod = _random_model("hyper", [])
    with pytest.raises(ValueError, match="extract must be one of auto, sparse, dense"):
        extract_surface(model, mod, 32, extract="fast")
    with pytest.raises(ValueError, match="mc must be one of auto, skimage, pymcubes, torch"):
        extract_surface(model, mod, 32, mc="mcubes")


@pytest.mark.parametrize("extract", ["sparse", "dense"])
def test_extraction_has_cancel_points_all_along(demo, extract):
    """Every step (bounds, node densities, marching cubes; lattice slabs) calls ``check`` between its
    chunks, so a cancelled job stops within one chunk (``backend.progress.Checkpoint`` turns a
    ``progress`` callback into these calls and raises CancelledError when it answers True)."""
    mod = demo.modulate(demo.embed("a yellow torus"))
    fractions = []
    extract_surface(demo.model, mod, 160, extract=extract, check=fractions.append)
    assert len(fractions) >= 10
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert max(np.diff([0.0] + fractions)) <= 0.3, "a long stretch without a cancel point"


def test_a_progress_callback_that_answers_true_stops_the_extraction(demo):
    from backend.mesh import extract_mesh

    mod = demo.modulate(demo.embed("a yellow torus"))
    seen = []

    def progress(frac: float, msg: str) -> bool:
        seen.append(frac)
        return len(seen) == 2  # stop at the second report

    with pytest.raises(CancelledError):
        extract_mesh(demo.model, mod, 128, progress=progress)
    assert len(seen) == 2
