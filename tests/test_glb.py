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
    # every channel samples the position track where it crosses a stored state: t = 0, 1, 2, 3, 4
    assert _accessor(path, gltf, w["input"]).ravel().tolist() == [0, 1, 2, 3, 4]
    # piece 1's base is its key (state 2, position 2); before position 1 its first state holds
    assert _accessor(path, gltf, w["output"]).reshape(5, 2).tolist() == [[1, 0], [1, 0], [1, 0], [0, 1], [0, 0]]
    prim = gltf["meshes"][1]["primitives"][0]
    base_col = _accessor(path, gltf, prim["attributes"]["COLOR_0"])
    assert base_col[0] == pytest.approx([0, 0, 1])
    prim0 = gltf["meshes"][0]["primitives"][0]
    dcol = _accessor(path, gltf, prim0["targets"][1]["COLOR_0"])  # piece 0, state 2: red → blue
    assert (base0 := _accessor(path, gltf, prim0["attributes"]["COLOR_0"]))[0] + dcol[0] == pytest.approx([0, 0, 1])
    assert base0[0] == pytest.approx([1, 0, 0])
    assert _accessor(path, gltf, prim0["targets"][1]["POSITION"])[1] == pytest.approx([0.5, 0, 0])


def test_chain_glb_needs_pieces():
    with pytest.raises(ValueError, match="at least one piece"):
        glb.sequence_glb(SequenceData([0.0, 1.0], ["a", "b"], meshes=[]))


def _two_piece_chain():
    pa, fa, ca = _tetra(1.0, (1, 0, 0))
    pb, fb, cb = _tetra(2.0, (0, 0, 1))
    pieces = [SequencePiece(fa, [0, 0.5, 1.0], [pa, pa * 1.2, pa * 1.5], [ca, ca * 0.5, cb], 0),
              SequencePiece(fb[:, ::-1], [1.0, 1.5, 2.0], [pb * 0.75, pb * 0.9, pb], [cb, cb, cb], 2)]
    return SequenceData([0.0, 1.0, 2.0], ["a", "m", "b"], pieces=pieces)


def test_chain_glb_follows_a_position_track_and_plays_keyframes_on_their_frames(tmp_path):
    """The add-on's timing: an eased position curve sampled once a frame, scene frame f at
    (f − frame_start) / fps; the keyframe on frame 96 at 24 fps plays at (96 − 1) / 24 s."""
    seq = _two_piece_chain()
    frames = np.arange(1, 97, dtype=np.float64)
    u = (frames - 1) / 95
    positions = 2 * (3 * u ** 2 - 2 * u ** 3)  # ease in and out over the chain: 0 at frame 1, 2 at frame 96
    track = ((frames - 1) / 24, positions)
    path = tmp_path / "eased.glb"
    path.write_bytes(glb.sequence_glb(seq, track=track, name="Eased", extras={"att3d_chain": {"x": 1}}))
    assert_valid(path)
    gltf = glb_json(path)
    assert gltf["nodes"][0]["extras"] == {"att3d_chain": {"x": 1}}
    anim = gltf["animations"][0]
    by = {(c["target"]["node"], c["target"]["path"]): anim["samplers"][c["sampler"]] for c in anim["channels"]}
    w = by[(2, "weights")]
    t = _accessor(path, gltf, w["input"]).ravel()
    out = _accessor(path, gltf, w["output"]).reshape(len(t), 2)
    assert t[-1] == pytest.approx(95 / 24) and out[-1].tolist() == [0, 0]  # the last keyframe: piece 1's own mesh
    # a sample where the eased curve crosses each stored state (here position 1.5: state 1 fully on)
    crossing = np.flatnonzero(np.isclose(out[:, 1], 1.0))
    assert len(crossing) == 1 and 1 < t[crossing[0]] * 24 + 1 < 96
    # the swap: piece 1 shows from the first sample at position >= 1
    scale = by[(2, "scale")]
    switch = _accessor(path, gltf, scale["input"]).ravel()[1]
    assert np.interp(switch, *track) == pytest.approx(1.0, abs=1e-6)


def test_chain_glb_reads_back_exactly(tmp_path):
    seq = _two_piece_chain()
    data = glb.sequence_glb(seq, seconds=[0.0, 2.0, 4.0], extras={"att3d_chain": {
        "pieces": [{"times": p.times, "key": p.key} for p in seq.pieces], "prompts": ["a", "b"], "steps": seq.steps,
        "labels": seq.prompts}})
    back, info = glb.chain_from_glb(data)
    assert info["prompts"] == ["a", "b"] and back.prompts == ["a", "m", "b"]
    for p, q in zip(seq.pieces, back.pieces):
        assert q.times == p.times and q.key == p.key and np.array_equal(q.faces, p.faces)
        for a, b in zip(p.positions, q.positions):
            np.testing.assert_allclose(b, a, atol=1e-6)
        for a, b in zip(p.colors, q.colors):
            np.testing.assert_allclose(b, np.clip(a, 0, 1), atol=1e-5)


def test_chain_glb_reader_says_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="not a GLB"):
        glb.chain_from_glb(b"PK\x03\x04 a zip")
    plain = glb.mesh_glb(MeshData(*_tetra()))
    with pytest.raises(ValueError, match="not an ATT3D prompt chain.*glTF 2.0"):
        glb.chain_from_glb(plain)
    with pytest.raises(ValueError, match="not a complete"):
        glb.chain_from_glb(plain[:-40])


def test_mesh_sequence_glb_shows_one_step_at_a_time(tmp_path):
    meshes = [MeshData(*_tetra(s)) for s in (1.0, 1.5, 2.0)]
    path = tmp_path / "seq.glb"
    path.write_bytes(glb.sequence_glb(SequenceData([0.0, 0.5, 1.0], ["a", "m", "b"], meshes=meshes),
                                      seconds=[0.0, 1.0, 2.0]))
    assert_valid(path)
    gltf = glb_json(path)
    anim = gltf["animations"][0]
    scales = {c["target"]["node"]: anim["samplers"][c["sampler"]] for c in anim["channels"]}
    assert sorted(scales) == [1, 2, 3] and all(c["target"]["path"] == "scale" for c in anim["channels"])
    for node, (t0, t1) in zip((1, 2, 3), ((None, 1.0), (1.0, 2.0), (2.0, None))):
        t = _accessor(path, gltf, scales[node]["input"]).ravel().tolist()
        v = _accessor(path, gltf, scales[node]["output"])[:, 0].tolist()
        on = [tt for tt, vv in zip(t, v) if vv == 1]
        assert on[0] == (t0 or 0.0) and (t1 is None or t1 in t)


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
