import math

import numpy as np
import pytest
import torch
import trimesh

from backend.chain import NeighborMean, settle_on_isosurface
from backend.export import export_mesh
from backend.mesh import marching_cubes
from blender_att3d.wire.types import MeshData


def sphere_volume(n: int, radius: float, bound: float = 1.0) -> np.ndarray:
    c = np.linspace(-bound, bound, n, dtype=np.float32)
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    return radius - np.sqrt(x * x + y * y + z * z)  # positive inside, like a density above its level


def test_marching_cubes_sphere_area_and_volume_within_2_percent():
    r = 0.6
    verts, faces = marching_cubes(sphere_volume(128, r), 0.0, 1.0)
    tm = trimesh.Trimesh(verts, faces, process=False)
    assert tm.is_watertight
    assert tm.volume > 0, "faces must wind outward"
    assert tm.area == pytest.approx(4 * math.pi * r * r, rel=0.02)
    assert tm.volume == pytest.approx(4 / 3 * math.pi * r ** 3, rel=0.02)
    # vertices are in world units, centred
    np.testing.assert_allclose(verts.mean(0), 0, atol=5e-3)


def test_marching_cubes_empty_field_gives_empty_mesh():
    verts, faces = marching_cubes(np.zeros((16, 16, 16), np.float32), 1.0, 1.0)
    assert verts.shape == (0, 3) and faces.shape == (0, 3)


def test_surface_touching_the_box_is_still_closed():
    verts, faces = marching_cubes(sphere_volume(32, 1.3), 0.0, 1.0)
    assert trimesh.Trimesh(verts, faces, process=False).is_watertight


def _tall_mesh():
    """A box twice as tall (Z) as wide, red on top, blue at the bottom."""
    box = trimesh.creation.box(extents=[0.5, 0.5, 1.0])
    colors = np.where(box.vertices[:, 2:3] > 0, [[1.0, 0, 0]], [[0, 0, 1.0]]).astype(np.float32)
    return MeshData(box.vertices.astype(np.float32), box.faces.astype(np.int64), colors)


def test_glb_round_trip_keeps_colours_and_is_y_up(tmp_path):
    from gltf_check import assert_valid, first_primitive

    mesh = _tall_mesh()
    path = export_mesh(mesh, tmp_path / "m.glb")
    assert_valid(path)
    prim = first_primitive(path)
    ext = prim["POSITION"].max(0) - prim["POSITION"].min(0)
    assert ext[1] == pytest.approx(1.0) and ext[0] == pytest.approx(0.5) and ext[2] == pytest.approx(0.5)
    cols = prim["COLOR_0"][:, :3]  # linear, as glTF defines COLOR_0 (pure red and blue are the same)
    top = prim["POSITION"][:, 1] > 0  # glTF +Y is our +Z
    np.testing.assert_allclose(cols[top].mean(0), [1, 0, 0], atol=0.01)
    np.testing.assert_allclose(cols[~top].mean(0), [0, 0, 1], atol=0.01)


@pytest.mark.parametrize("suffix", [".obj", ".ply"])
def test_obj_and_ply_export(tmp_path, suffix):
    path = export_mesh(_tall_mesh(), tmp_path / f"m{suffix}")
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.faces) == 12
    tall_axis = np.argmax(loaded.bounds[1] - loaded.bounds[0])
    assert tall_axis == (1 if suffix == ".obj" else 2)


def test_unknown_export_format_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unsupported output format '.stl'"):
        export_mesh(_tall_mesh(), tmp_path / "m.stl")


class _SphereField:
    """A stand-in model whose density is a sphere of a given radius (level 5 at the surface)."""

    class config:
        iso_density = 5.0
        bound = 1.0

    def __init__(self, radius):
        self.radius = radius

    def density(self, mod, x):
        return 5.0 + 40.0 * (self.radius - x.norm(dim=-1))


def test_settle_on_isosurface_moves_vertices_onto_the_new_surface():
    from backend.mapping_network import Modulation

    verts, faces = marching_cubes(sphere_volume(48, 0.5), 0.0, 1.0)
    mod = Modulation(None, torch.zeros(1, 2))
    new, ok = settle_on_isosurface(_SphereField(0.62), mod, verts, NeighborMean(faces, len(verts)), 2 / 47)
    assert ok.all()
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), 0.62, atol=2e-3)
    assert trimesh.Trimesh(new, faces, process=False).is_watertight


def test_projection_fallback_keeps_the_mesh_valid():
    from backend.mapping_network import Modulation

    class Flat(_SphereField):
        def density(self, mod, x):  # no surface anywhere, zero gradient
            return torch.zeros(x.shape[:-1]) + 0 * x.sum(-1)

    verts, faces = marching_cubes(sphere_volume(24, 0.5), 0.0, 1.0)
    new, ok = settle_on_isosurface(Flat(0.5), Modulation(None, torch.zeros(1, 2)), verts,
                                   NeighborMean(faces, len(verts)), 2 / 23)
    assert not ok.any()
    assert np.isfinite(new).all() and new.shape == verts.shape


class _CountingSphere(_SphereField):
    calls = 0

    def density(self, mod, x):
        type(self).calls += 1
        return super().density(mod, x)


@pytest.mark.parametrize("radius, evaluations, on_surface", [
    (0.5, 1, True),     # already on the surface: one evaluation, nothing moves, done
    (0.6, 5, True),     # 0.1 away: four steps of at most 2/64, then done (the field is linear)
    (0.9, 2, False),    # 0.4 away, more than the five steps left can cover: given up after one
])
def test_settling_ends_early_when_done_or_hopeless(radius, evaluations, on_surface):
    from backend.mapping_network import Modulation

    verts, faces = marching_cubes(sphere_volume(48, 0.5), 0.0, 1.0)
    verts = (verts / np.linalg.norm(verts, axis=1, keepdims=True) * 0.5).astype(np.float32)
    field = _CountingSphere(radius)
    _CountingSphere.calls = 0
    new, ok = settle_on_isosurface(field, Modulation(None, torch.zeros(1, 2)), verts,
                                   NeighborMean(faces, len(verts)), 2 / 47)
    assert _CountingSphere.calls == evaluations
    assert bool(ok.all()) is on_surface
    if on_surface:
        np.testing.assert_allclose(np.linalg.norm(new, axis=1), radius, atol=0.1 * 2 / 47)


class _CapSphere(_SphereField):
    """A sphere of radius 0.5 with a cap raised towards +z (up to 0.62); records the points of each call."""

    def __init__(self):
        self.sizes = []

    def density(self, mod, x):
        self.sizes.append(x.shape[-2])
        r = x.norm(dim=-1)
        return 5.0 + 40.0 * (0.5 + 0.12 * (x[..., 2] / r).clamp_min(0) ** 2 - r)


def test_settled_vertices_stay_put_and_are_not_evaluated_again():
    from backend.mapping_network import Modulation

    verts, faces = marching_cubes(sphere_volume(48, 0.5), 0.0, 1.0)
    verts = (verts / np.linalg.norm(verts, axis=1, keepdims=True) * 0.5).astype(np.float32)
    before = verts.copy()
    field = _CapSphere()
    new, ok = settle_on_isosurface(field, Modulation(None, torch.zeros(1, 2)), verts,
                                   NeighborMean(faces, len(verts)), 2 / 47, relax=0)
    np.testing.assert_array_equal(verts, before)  # the input is not written to
    assert ok.all()
    unit = new / np.linalg.norm(new, axis=1, keepdims=True)
    target = 0.5 + 0.12 * np.clip(unit[:, 2], 0, None) ** 2
    np.testing.assert_allclose(np.linalg.norm(new, axis=1), target, atol=0.1 * 2 / 47)
    lower = before[:, 2] < -0.01  # on the surface from the start: never moved
    np.testing.assert_array_equal(new[lower], before[lower])
    assert field.sizes[0] == len(verts)
    assert 0 < max(field.sizes[1:]) <= (~lower).sum()  # later steps evaluate only the moving vertices


def test_texture_bake_reproduces_the_colour_field(tmp_path):
    from backend.texture import bake_texture

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    mesh = MeshData(sphere.vertices.astype(np.float32), sphere.faces.astype(np.int64),
                    np.zeros((len(sphere.vertices), 3), np.float32))

    def color_fn(p):  # red above z = 0, green below
        return np.where(p[:, 2:3] > 0, [[1.0, 0, 0]], [[0, 1.0, 0]]).astype(np.float32)

    baked = bake_texture(mesh, color_fn, 256)
    assert baked.texture.shape == (256, 256, 3) and baked.uvs.shape == (len(baked.positions), 2)
    path = export_mesh(baked, tmp_path / "t.glb")
    loaded = trimesh.load(path, force="mesh")
    # sample the texture at each vertex's UV: top vertices are red, bottom ones green
    uv = loaded.visual.uv
    img = np.asarray(loaded.visual.material.baseColorTexture.convert("RGB"))
    h, w = img.shape[:2]
    px = img[np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1), np.clip((uv[:, 0] * w).astype(int), 0, w - 1)]
    up = loaded.vertices[:, 1] > 0.05
    down = loaded.vertices[:, 1] < -0.05
    assert (px[up, 0] > 200).mean() > 0.95 and (px[down, 1] > 200).mean() > 0.95


def test_simplify_reduces_faces_and_keeps_the_shape():
    from backend.mesh import simplify

    verts, faces = marching_cubes(sphere_volume(96, 0.6), 0.0, 1.0)
    v, f = simplify(verts, faces, 2000)
    assert 1500 < len(f) <= 2200
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 0.6, atol=0.02)


def test_sequence_glb_has_morph_targets_that_decode_to_each_step(tmp_path):
    from gltf_check import assert_valid, glb_json, read_accessor

    from backend.export import Z_UP_TO_Y_UP, export_sequence_glb
    from blender_att3d.wire.glb import srgb_to_linear
    from blender_att3d.wire.types import SequenceData

    verts, faces = marching_cubes(sphere_volume(24, 0.5), 0.0, 1.0)
    steps = [verts * s for s in (1.0, 1.2, 0.8)]
    cols = [np.full_like(verts, c) for c in (0.1, 0.5, 0.9)]
    seq = SequenceData([0.0, 0.5, 1.0], ["a", "m", "b"], faces, steps, cols)  # one topology: one piece
    path = export_sequence_glb(seq, tmp_path / "s.glb")
    assert_valid(path)
    gltf = glb_json(path)
    prim = gltf["meshes"][0]["primitives"][0]
    assert len(prim["targets"]) == 2 and gltf["animations"][0]["channels"][0]["target"]["path"] == "weights"
    base = read_accessor(path, gltf, prim["attributes"]["POSITION"])
    base_col = read_accessor(path, gltf, prim["attributes"]["COLOR_0"])
    for i in (1, 2):
        np.testing.assert_allclose(base + read_accessor(path, gltf, prim["targets"][i - 1]["POSITION"]),
                                   steps[i] @ Z_UP_TO_Y_UP.T, atol=1e-6)
        np.testing.assert_allclose(base_col + read_accessor(path, gltf, prim["targets"][i - 1]["COLOR_0"]),
                                   srgb_to_linear(cols[i]), atol=1e-6)
    np.testing.assert_array_equal(read_accessor(path, gltf, prim["indices"]).reshape(-1, 3), faces)
    # trimesh (an independent reader) still loads the base mesh
    assert len(trimesh.load(path, force="mesh").faces) == len(faces)


def test_neighbor_mean_is_the_one_ring_mean_and_its_rows_agree():
    verts, faces = marching_cubes(sphere_volume(24, 0.5), 0.0, 1.0)
    op = NeighborMean(faces, len(verts))
    x = torch.from_numpy(verts)
    # the one-ring by hand: each vertex's distinct edge neighbours
    ring = [set() for _ in verts]
    for a, b, c in faces:
        ring[a] |= {b, c}
        ring[b] |= {a, c}
        ring[c] |= {a, b}
    expected = np.stack([verts[sorted(r)].mean(0) for r in ring])
    np.testing.assert_allclose(op(x).numpy(), expected, atol=1e-6)
    rows = torch.tensor([5, 0, len(verts) - 1, 17])
    np.testing.assert_allclose(op.rows(rows)(x).numpy(), expected[rows.numpy()], atol=1e-6)
    assert op.rows(torch.tensor([], dtype=torch.long))(x).shape == (0, 3)


def test_a_settled_fold_is_not_on_the_surface():
    """Faces that end facing into the object take their corners off the surface, even on it."""
    from backend.mapping_network import Modulation

    verts, faces = marching_cubes(sphere_volume(48, 0.5), 0.0, 1.0)
    op = NeighborMean(faces, len(verts))
    flipped = faces.copy()
    top = np.nonzero(verts[faces].mean(1)[:, 2] > 0.45)[0]  # a cap of faces wound the wrong way
    flipped[top] = flipped[top][:, ::-1]
    mod = Modulation(None, torch.zeros(1, 2))
    _, ok = settle_on_isosurface(_SphereField(0.55), mod, verts, NeighborMean(flipped, len(verts)), 2 / 47)
    assert not ok[np.unique(faces[top])].any()
    assert ok.mean() > 0.9  # the rest are fine
    _, ok = settle_on_isosurface(_SphereField(0.55), mod, verts, op, 2 / 47)
    assert ok.all()
