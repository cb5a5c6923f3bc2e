"""GLB files (blender_att3d.wire.glb): valid for the Khronos validator, linear COLOR_0, Y-up, chains
as pieces with colour morph targets and visibility."""
import numpy as np
import pytest
from gltf_check import assert_valid, glb_json, read_accessor

from blender_att3d.wire import glb
from blender_att3d.wire.types import MeshData, SequenceData, SequencePiece


def _tetra(scale=1.0, colour=(0.5, 0.2, 0.9)):
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) * scale
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.uint32)
    return pos, faces, np.tile(np.asarray(colour, np.float32), (4, 1))


def _accessor(path, gltf, index):
    return read_accessor(path, gltf, index)


def test_mesh_glb_is_valid_y_up_with_linear_colours(tmp_path):
    pos, faces, col = _tetra()
    path = tmp_path / "m.glb"
    path.write_bytes(glb.mesh_glb(MeshData(pos, faces, col), name="Tetra"))
    assert_valid(path)
    gltf = glb_json(path)
    attrs = gltf["meshes"][0]["primitives"][0]["attributes"]
    assert _accessor(path, gltf, attrs["POSITION"])[3] == pytest.approx([0, 1, 0])  # Blender's +Z is glTF's +Y
    assert _accessor(path, gltf, attrs["POSITION"])[2] == pytest.approx([0, 0, -1])  # +Y (back) is −Z
    assert _accessor(path, gltf, attrs["COLOR_0"])[0] == pytest.approx([0.2140, 0.0331, 0.7874], abs=1e-4)
    assert gltf["nodes"][0]["name"] == "Tetra" and "translation" not in gltf["nodes"][0]


def test_textured_mesh_glb_has_its_png_and_no_vertex_colours(tmp_path):
    pos, faces, col = _tetra()
    tex = np.zeros((4, 8, 3), np.uint8)
    tex[:2] = (255, 0, 0)
    uvs = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float32)
    path = tmp_path / "t.glb"
    path.write_bytes(glb.mesh_glb(MeshData(pos, faces, col, uvs=uvs, texture=tex)))
    assert_valid(path)
    gltf = glb_json(path)
    attrs = gltf["meshes"][0]["primitives"][0]["attributes"]
    assert "COLOR_0" not in attrs and "TEXCOORD_0" in attrs
    assert gltf["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"] == {"index": 0}
    import io

    from PIL import Image

    view = gltf["bufferViews"][gltf["images"][0]["bufferView"]]
    data = path.read_bytes()
    (json_len,) = np.frombuffer(data[12:16], np.uint32)
    png = data[20 + json_len + 8 + view["byteOffset"]:][:view["byteLength"]]
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), tex)
    # uv (0, 1) in Blender (top-left of the image) is glTF's (0, 0)
    assert _accessor(path, gltf, attrs["TEXCOORD_0"])[2] == pytest.approx([0, 0])


def test_chain_glb_pieces_morph_and_swap(tmp_path):
    pa, fa, ca = _tetra(1.0, (1, 0, 0))
    pb, fb, cb = _tetra(2.0, (0, 0, 1))
    pieces = [SequencePiece(fa, [0, 0.5, 1.0], [pa, pa * 1.2, pa * 1.5], [ca, ca * 0.5, cb], 0),
              SequencePiece(fb[:, ::-1], [1.0, 1.5, 2.0], [pb * 0.75, pb * 0.9, pb], [cb, cb, cb], 2)]
    seq = SequenceData([0.0, 1.0, 2.0], ["a", "m", "b"], pieces=pieces)
    path = tmp_path / "c.glb"
    path.write_bytes(glb.sequence_glb(seq, seconds=[0.0, 2.0, 4.0], name="Chain"))
    assert_valid(path)
    gltf = glb_json(path)
    root = gltf["nodes"][0]
    assert root["name"] == "Chain" and root["children"] == [1, 2]
    assert "scale" not in gltf["nodes"][1] and gltf["nodes"][2]["scale"] == [0, 0, 0]  # shown at t = 0: piece 0
    anim = gltf["animations"][0]
    by = {(c["target"]["node"], c["target"]["path"]): anim["samplers"][c["sampler"]] for c in anim["channels"]}
    scale1 = by[(1, "scale")]
    assert _accessor(path, gltf, scale1["input"]).ravel().tolist() == [0, 2]  # piece 0 shows on [0, 2)
    assert _accessor(path, gltf, scale1["output"])[:, 0].tolist() == [1, 0] and scale1["interpolation"] == "STEP"
    assert _accessor(path, gltf, by[(2, "scale")]["output"])[:, 0].tolist() == [0, 1]
    w = by[(2, "weights")]
    assert _accessor(path, gltf, w["input"]).ravel().tolist() == [2, 3, 4]
    # piece 1's base is its key (state 2); at t = 2 (state 0) target 0 is fully on
    assert _accessor(path, gltf, w["output"]).reshape(3, 2).tolist() == [[1, 0], [0, 1], [0, 0]]
    prim = gltf["meshes"][1]["primitives"][0]
    base_col = _accessor(path, gltf, prim["attributes"]["COLOR_0"])
    assert base_col[0] == pytest.approx([0, 0, 1])
    prim0 = gltf["meshes"][0]["primitives"][0]
    dcol = _accessor(path, gltf, prim0["targets"][1]["COLOR_0"])  # piece 0, state 2: red → blue
    assert (base0 := _accessor(path, gltf, prim0["attributes"]["COLOR_0"]))[0] + dcol[0] == pytest.approx([0, 0, 1])
    assert base0[0] == pytest.approx([1, 0, 0])
    assert _accessor(path, gltf, prim0["targets"][1]["POSITION"])[1] == pytest.approx([0.5, 0, 0])


def test_chain_glb_needs_pieces():
    with pytest.raises(ValueError, match="consistent"):
        glb.sequence_glb(SequenceData([0.0, 1.0], ["a", "b"], meshes=[]))


def test_vertex_normals_sum_the_area_weighted_normals_of_the_faces_around_each_vertex():
    pos, faces, _ = _tetra()
    pos = np.vstack([pos, [[5.0, 5.0, 5.0]]]).astype(np.float32)  # a vertex no face uses: +Z
    got = glb.vertex_normals(pos, faces)
    want = np.zeros((5, 3))
    for a, b, c in faces.astype(int):
        n = np.cross(pos[b] - pos[a], pos[c] - pos[a])  # twice the area along the face normal
        for v in (a, b, c):
            want[v] += n
    want[:4] /= np.linalg.norm(want[:4], axis=1, keepdims=True)
    want[4] = [0, 0, 1]
    np.testing.assert_allclose(got, want, atol=1e-6)
    # the tetrahedron's corner at the origin sees three faces of area ½: its normal leans (−1, −1, −1)
    np.testing.assert_allclose(got[0], -np.ones(3) / np.sqrt(3), atol=1e-6)
