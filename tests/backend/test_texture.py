"""The box unwrap and the texture bake: charts inside the atlas and apart, the same surface, the
baked texture reading back the colour field at every vertex, both unwraps."""
import numpy as np
import pytest
import trimesh

from backend.texture import _rasterize, bake_texture, box_unwrap
from blender_att3d.wire.types import MeshData


def _torus_mesh(n: int = 3000):
    t = trimesh.creation.torus(major_radius=0.6, minor_radius=0.2, major_sections=64, minor_sections=32)
    return t.vertices.astype(np.float32), t.faces.astype(np.int64)


def test_box_unwrap_charts_lie_in_the_atlas_and_do_not_overlap():
    verts, faces = _torus_mesh()
    vmap, new_faces, uvs = box_unwrap(verts, faces, 512)
    assert new_faces.shape == faces.shape
    # the same surface: every new face is an old face, through vmap
    np.testing.assert_array_equal(vmap[new_faces], faces)
    assert uvs.min() >= 0 and uvs.max() <= 1
    # no texel is covered by faces of two different charts (no UV overlap between charts)
    tri = uvs[new_faces]
    area = 0.5 * ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
                  - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1]))
    assert (np.abs(area) > 0).all(), "degenerate UV triangles"
    ty, tx, fid, _ = _rasterize(uvs, new_faces, 512)
    chart_of_vertex = np.zeros(len(vmap), np.int64)
    # vertices of one chart are connected through faces; label charts by the union of their faces
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    e = np.concatenate([new_faces[:, [0, 1]], new_faces[:, [1, 2]]])
    _, chart_of_vertex = connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])),
                                                         shape=(len(vmap),) * 2), directed=False)
    chart = chart_of_vertex[new_faces[fid, 0]]
    texel = ty * 512 + tx
    order = np.lexsort((chart, texel))
    t, c = texel[order], chart[order]
    clash = (t[1:] == t[:-1]) & (c[1:] != c[:-1])
    assert not clash.any(), f"{clash.sum()} texels shared by two charts"
    assert len(np.unique(texel)) > 0.3 * 512 * 512, "the atlas is mostly empty"


@pytest.mark.parametrize("unwrap", ["box", "xatlas"])
def test_baked_texture_reads_back_the_colour_field_at_every_vertex(unwrap):
    if unwrap == "xatlas":
        pytest.importorskip("xatlas")
    verts, faces = _torus_mesh()
    mesh = MeshData(verts, faces, np.zeros_like(verts))

    def color_fn(p):  # smooth colours that vary across the surface
        return np.clip(0.5 + 0.5 * np.stack([np.sin(4 * p[:, 0]), np.cos(3 * p[:, 1]), p[:, 2] * 2], 1), 0, 1)

    baked = bake_texture(mesh, color_fn, 512, unwrap=unwrap)
    assert baked.texture.shape == (512, 512, 3) and baked.meta["unwrap"] == unwrap
    uv = baked.uvs
    px = np.clip((uv[:, 0] * 512).astype(int), 0, 511)
    py = np.clip(((1 - uv[:, 1]) * 512).astype(int), 0, 511)
    err = np.abs(baked.texture[py, px] / 255.0 - color_fn(baked.positions)).max(1)
    assert np.median(err) < 0.02 and np.quantile(err, 0.99) < 0.08
    # no background bleeds in: every texel has a colour of the field (the empty ones their neighbours')
    assert (baked.texture.reshape(-1, 3).max(1) > 0).all()


def test_bake_refuses_an_unknown_unwrap():
    verts, faces = _torus_mesh()
    with pytest.raises(ValueError, match="unwrap must be one of box, xatlas"):
        bake_texture(MeshData(verts, faces, np.zeros_like(verts)), lambda p: p, 64, unwrap="smart")
