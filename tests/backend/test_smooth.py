"""Optional Taubin smoothing of extracted meshes (``att3d generate --smooth N``, ``extract_mesh(smooth=N)``)."""
import numpy as np
import pytest
import trimesh

from backend.cli import main
from backend.mesh import (
    LOWPASS_MAX_RESOLUTION,
    MAX_SMOOTH,
    check_smooth,
    density_lattice,
    extract_mesh,
    field_colors,
    lowpass_lattice,
    marching_cubes,
    taubin_smooth,
)
from training.shapes.surface import dihedral_angles_deg, mesh_volume


@pytest.fixture(scope="module")
def demo_pipeline():
    from backend.inference import Pipeline

    return Pipeline("demo", device="cpu")


def _lattice(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = np.linspace(-1, 1, n, dtype=np.float32)
    return np.meshgrid(c, c, c, indexing="ij")


@pytest.fixture(scope="module")
def noisy_sphere():
    x, y, z = _lattice(64)
    noise = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    return marching_cubes(0.6 - np.sqrt(x * x + y * y + z * z) + 0.01 * noise, 0.0, 1.0)


@pytest.fixture(scope="module")
def thin_ring():
    """A torus whose tube is two voxels thick (radius 0.06 at 64³, a voxel is 0.032)."""
    x, y, z = _lattice(64)
    return marching_cubes(0.06 - np.sqrt((np.sqrt(x * x + y * y) - 0.6) ** 2 + z * z), 0.0, 1.0)


def _components(v: np.ndarray, f: np.ndarray) -> int:
    return len(trimesh.Trimesh(v, f, process=False).split(only_watertight=False))


@pytest.mark.parametrize("iterations", [5, 20, MAX_SMOOTH])
def test_a_noisy_sphere_gets_smoother_and_keeps_its_volume(noisy_sphere, iterations):
    v, f = noisy_sphere
    s = taubin_smooth(v, f, iterations)
    assert s.shape == v.shape and s.dtype == v.dtype and np.isfinite(s).all()
    assert mesh_volume(s, f) == pytest.approx(mesh_volume(v, f), rel=0.02)
    assert dihedral_angles_deg(s, f).mean() < 0.7 * dihedral_angles_deg(v, f).mean()


def test_zero_iterations_is_the_mesh_itself(noisy_sphere):
    v, f = noisy_sphere
    before = v.copy()
    assert taubin_smooth(v, f, 0) is v
    np.testing.assert_array_equal(v, before)
    s = taubin_smooth(v, f, 3)
    np.testing.assert_array_equal(v, before)  # never in place
    assert not np.array_equal(s, v)


@pytest.mark.parametrize("iterations", [10, MAX_SMOOTH])
def test_a_thin_ring_survives(thin_ring, iterations):
    v, f = thin_ring
    s = taubin_smooth(v, f, iterations)
    assert _components(s, f) == _components(v, f) == 1
    assert mesh_volume(s, f) == pytest.approx(mesh_volume(v, f), rel=0.03)
    # the tube keeps its thickness: vertices stay about 0.06 from the core circle
    tube = np.sqrt((np.linalg.norm(s[:, :2], axis=1) - 0.6) ** 2 + s[:, 2] ** 2)
    assert tube.mean() == pytest.approx(0.06, rel=0.1)


def test_lonely_vertices_and_empty_meshes_stay():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5]], np.float32)
    f = np.array([[0, 1, 2]])
    s = taubin_smooth(v, f, 4)
    np.testing.assert_array_equal(s[3], v[3])
    assert np.isfinite(s).all()
    empty = np.zeros((0, 3), np.float32)
    assert taubin_smooth(empty, np.zeros((0, 3), np.int64), 5) is empty


@pytest.mark.parametrize("bad", [-1, MAX_SMOOTH + 1, 2.0, True, "3", None])
def test_check_smooth_refuses(bad):
    with pytest.raises(ValueError, match="smooth must be a whole number"):
        check_smooth(bad)


def test_extract_mesh_smooth_zero_is_bit_for_bit_and_colours_follow_the_smoothed_vertices(pipeline):
    mod = pipeline.modulate(pipeline.embed("a red cube"))
    plain = extract_mesh(pipeline.model, mod, 32)
    off = extract_mesh(pipeline.model, mod, 32, smooth=0)
    assert len(plain.faces) > 0
    for a, b in ((plain.positions, off.positions), (plain.faces, off.faces), (plain.colors, off.colors)):
        np.testing.assert_array_equal(a, b)
    # smoothing: marching cubes of the low-passed density, then Taubin; colours at the final positions
    on = pipeline.mesh(mod, 32, smooth=5)
    cfg = pipeline.model.config
    lv, lf = marching_cubes(lowpass_lattice(pipeline.model, mod, 32), cfg.iso_density, cfg.bound)
    np.testing.assert_array_equal(on.faces, lf)
    assert np.isfinite(on.positions).all() and not np.array_equal(on.positions, lv)
    np.testing.assert_allclose(on.positions, taubin_smooth(lv, lf, 5))
    np.testing.assert_allclose(on.colors, field_colors(pipeline.model, mod, on.positions), atol=1e-6)


def test_the_lowpassed_lattice_is_the_blurred_coarse_lattice_and_smooths_the_demo(demo_pipeline):
    """48 nodes across the demo's box, blurred by σ LOWPASS_SIGMA; on the lattice asked for by trilinear
    interpolation. At 128³ it takes the lumps out of a real prompt's surface without moving it."""
    from scipy.ndimage import gaussian_filter

    from backend.mesh import LOWPASS_SIGMA, lowpass_coarse

    model = demo_pipeline.model
    mod = demo_pipeline.modulate(demo_pipeline.embed("a red cube wearing a blue party hat"))
    coarse = lowpass_coarse(model, mod).numpy()
    assert coarse.shape == (48, 48, 48)
    np.testing.assert_allclose(coarse, gaussian_filter(density_lattice(model, mod, 48), LOWPASS_SIGMA / (2 / 47),
                                                       truncate=3.0, mode="nearest"), atol=1e-4)
    np.testing.assert_allclose(lowpass_lattice(model, mod, 48), coarse, atol=1e-6)
    fine = lowpass_lattice(model, mod, 95)  # node 2k of 95 is node k of 48
    np.testing.assert_allclose(fine[::2, ::2, ::2], coarse, atol=1e-4)
    level = model.config.iso_density
    raw = marching_cubes(density_lattice(model, mod, 128), level, 1.0)
    low = marching_cubes(lowpass_lattice(model, mod, 128), level, 1.0)
    assert dihedral_angles_deg(*low).mean() < 0.8 * dihedral_angles_deg(*raw).mean()
    assert mesh_volume(*low) == pytest.approx(mesh_volume(*raw), rel=0.1)


def test_above_the_lowpass_limit_smoothing_is_taubin_on_the_sparse_mesh(pipeline):
    mod = pipeline.modulate(pipeline.embed("a red cube"))
    n = LOWPASS_MAX_RESOLUTION + 1
    raw = extract_mesh(pipeline.model, mod, n)
    on = extract_mesh(pipeline.model, mod, n, smooth=3)
    np.testing.assert_array_equal(on.faces, raw.faces)
    np.testing.assert_allclose(on.positions, taubin_smooth(raw.positions, raw.faces, 3))


@pytest.mark.parametrize("value", ["-1", "101", "1.5", "many"])
@pytest.mark.parametrize("command", ["generate", "eval"])
def test_bad_smooth_is_exit_2_and_one_line(capsys, tiny_model_dir, tmp_path, command, value):
    if command == "generate":
        argv = ["generate", "a cube", "--out", str(tmp_path / "a.glb"), "--model", str(tiny_model_dir)]
    else:
        argv = ["eval", "--world", "shapes", "--model", str(tiny_model_dir)]
    try:
        code = main(["--quiet", *argv, "--smooth", value])
    except SystemExit as e:  # argparse's own refusal of a non-integer
        code = e.code
    _, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and "--smooth" in err and "Traceback" not in err
    assert not (tmp_path / "a.glb").exists()


def test_the_artist_facing_paths_smooth_by_default(pipeline, tiny_model_dir, tmp_path):
    """`att3d generate` without --smooth and the service's generate (what the add-on and the batch get)
    apply the default smoothing (the low-passed density, DEFAULT_SMOOTH Taubin iterations); --smooth 0
    is the raw surface."""
    from gltf_check import first_primitive

    from backend.engine import Engine
    from blender_att3d.wire.options import DEFAULT_SMOOTH

    assert DEFAULT_SMOOTH > 0
    mod = pipeline.modulate(pipeline.embed("a red cube"))
    raw = extract_mesh(pipeline.model, mod, 48)
    want = extract_mesh(pipeline.model, mod, 48, smooth=DEFAULT_SMOOTH)
    got = Engine(pipeline).generate("a red cube", resolution=48)
    np.testing.assert_allclose(got.positions, want.positions, atol=1e-5)
    assert main(["--quiet", "generate", "a red cube", "--out", str(tmp_path / "d.glb"), "--model", str(tiny_model_dir),
                 "--resolution", "48", "--device", "cpu"]) == 0
    assert main(["--quiet", "generate", "a red cube", "--out", str(tmp_path / "r.glb"), "--model", str(tiny_model_dir),
                 "--resolution", "48", "--device", "cpu", "--smooth", "0"]) == 0
    smoothed, plain = (first_primitive(tmp_path / f)["POSITION"] for f in ("d.glb", "r.glb"))
    assert len(smoothed) == len(want.positions) and len(plain) == len(raw.positions)
    from backend.export import Z_UP_TO_Y_UP

    for glb, mesh in ((plain, raw), (smoothed, want)):  # --smooth 0 wrote the raw mesh, the default the smoothed
        np.testing.assert_allclose(np.sort(glb, axis=0), np.sort(mesh.positions @ Z_UP_TO_Y_UP.T, axis=0), atol=1e-5)
