"""The binary mesh payload: round trips (mesh, sequences, with and without texture) and rejects."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blender_att3d.wire import payload
from blender_att3d.wire.types import MeshData, SequenceData, SequencePiece


def mesh(v: int = 20, f: int = 30, texture: bool = False, seed: int = 0) -> MeshData:
    rng = np.random.default_rng(seed)
    return MeshData(rng.normal(size=(v, 3)).astype(np.float32), rng.integers(0, v, size=(f, 3)),
                    rng.random((v, 3), dtype=np.float32),
                    uvs=rng.random((v, 2), dtype=np.float32) if texture else None,
                    texture=rng.integers(0, 256, (16, 8, 3), dtype=np.uint8) if texture else None,
                    meta={"prompt": "a red cube → ✓", "resolution": 32})


def same_mesh(a: MeshData, b: MeshData, atol: float = 0.0) -> None:
    assert np.array_equal(a.positions, b.positions) and a.positions.dtype == np.float32
    assert np.array_equal(a.faces, b.faces) and b.faces.dtype == np.uint32
    assert np.allclose(a.colors, b.colors, atol=atol, rtol=0) and b.colors.dtype == np.float32
    for x, y in ((a.uvs, b.uvs), (a.texture, b.texture)):
        assert (x is None) == (y is None)
        if x is not None:
            assert np.array_equal(x, y) and x.dtype == y.dtype
    assert a.meta == b.meta


@pytest.mark.parametrize("texture", [False, True])
def test_mesh_round_trip(texture):
    m = mesh(texture=texture)
    data = payload.encode_mesh(m)
    assert data[:4] == b"A3DM" and struct.unpack_from("<H", data, 4)[0] == 1
    back = payload.decode(data)
    assert isinstance(back, MeshData)
    same_mesh(m, back)
    back.positions[0, 0] = 42.0  # decoded arrays are writable copies


def test_u8_colours_are_compact_and_close():
    m = mesh(v=1000, f=10)
    f32, u8 = payload.encode_mesh(m), payload.encode_mesh(m, colors="u8")
    assert len(f32) - len(u8) >= 1000 * 9
    same_mesh(m, payload.decode(u8), atol=0.5 / 255 + 1e-7)


def test_header_alignment():
    data = payload.encode_mesh(mesh(v=3, f=1))
    header, body = payload.read_header(data)
    assert (len(data) - len(body)) % 8 == 0
    assert all(a["offset"] % 8 == 0 for a in header["arrays"].values())


def test_empty_mesh():
    m = MeshData(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)))
    back = payload.decode(payload.encode_mesh(m))
    assert back.positions.shape == (0, 3) and back.faces.shape == (0, 3)


@pytest.mark.parametrize("colors", ["f32", "u8"])
def test_consistent_sequence_round_trip(colors):
    """Keyframe pieces (each its own faces, states and key) come back as they went."""
    rng = np.random.default_rng(1)

    def piece(times, key, n_v, n_f):
        return SequencePiece(rng.integers(0, n_v, (n_f, 3)), times,
                             [rng.normal(size=(n_v, 3)).astype(np.float32) for _ in times],
                             [rng.random((n_v, 3), dtype=np.float32) for _ in times], key)

    pieces = [piece([0.0, 0.25, 0.5], 0, 10, 12), piece([0.5, 0.75, 1.0], 2, 7, 9)]
    seq = SequenceData([0.0, 0.5, 1.0], ["a", "a → b @ 0.50", "b"], meta={"model": "m"}, pieces=pieces)
    back = payload.decode(payload.encode_sequence(seq, colors))
    assert isinstance(back, SequenceData) and back.consistent and len(back.pieces) == 2
    assert back.steps == seq.steps and back.prompts == seq.prompts and back.meta == seq.meta
    for a, b in zip(pieces, back.pieces):
        assert np.array_equal(a.faces, b.faces) and a.times == b.times and a.key == b.key
        for i in range(3):
            assert np.array_equal(a.positions[i], b.positions[i])
            assert np.allclose(a.colors[i], b.colors[i], atol=0.5 / 255 + 1e-7 if colors == "u8" else 0)
    # step 1 (0.5) is where the pieces meet: the later one shows it
    assert back.mesh(1).meta["prompt"] == "a → b @ 0.50" and np.array_equal(back.mesh(1).positions,
                                                                             pieces[1].positions[0])
    assert np.array_equal(back.mesh(0).positions, pieces[0].positions[0])


def test_single_topology_sequence_is_one_piece():
    rng = np.random.default_rng(2)
    faces = rng.integers(0, 10, (12, 3))
    pos = [rng.normal(size=(10, 3)).astype(np.float32) for _ in range(3)]
    seq = SequenceData([0.0, 0.5, 1.0], ["a", "m", "b"], faces, pos, [rng.random((10, 3)) for _ in range(3)])
    back = payload.decode(payload.encode(seq))
    assert len(back.pieces) == 1 and back.pieces[0].times == [0.0, 0.5, 1.0]
    assert np.array_equal(back.mesh(2).positions, pos[2])


def test_a_consistent_sequence_without_pieces_is_refused():
    data = payload.encode(SequenceData([0.0, 1.0], ["a", "b"], np.zeros((1, 3)), [np.zeros((3, 3))] * 2,
                                       [np.zeros((3, 3))] * 2))
    header, _ = payload.read_header(data)
    header.pop("pieces")
    js = json.dumps(header).encode()
    js += b" " * ((-(12 + len(js))) % 8)
    forged = data[:8] + struct.pack("<I", len(js)) + js + data[12 + struct.unpack_from("<I", data, 8)[0]:]
    with pytest.raises(payload.PayloadError, match="without its pieces"):
        payload.decode(forged)


@pytest.mark.parametrize("texture", [False, True])
def test_inconsistent_sequence_round_trip(texture):
    meshes = [mesh(v=5 + i, f=3 + i, texture=texture, seed=i) for i in range(3)]
    seq = SequenceData([0.0, 1.0, 2.0], ["a", "b", "c"], None, meshes=meshes)
    back = payload.decode(payload.encode(seq))
    assert not back.consistent and len(back.meshes) == 3
    for a, b in zip(meshes, back.meshes):
        same_mesh(a, b)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"XXXX" + d[4:], "not an ATT3D payload"),
    (lambda d: d[:4] + struct.pack("<H", 99) + d[6:], "version 99"),
    (lambda d: d[:10], "too short"),
    (lambda d: d[:-5], "truncated"),
    (lambda d: d[:8] + struct.pack("<I", 1 << 30) + d[12:], "truncated"),
    (lambda d: d[:12] + b"#" + d[13:], "corrupt"),
])
def test_rejects_bad_payloads(mutate, message):
    with pytest.raises(payload.PayloadError, match=message):
        payload.decode(mutate(payload.encode_mesh(mesh())))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data):
    try:
        payload.decode(data)
    except payload.PayloadError:
        pass


@settings(max_examples=40, deadline=None)
@given(v=st.integers(0, 50), f=st.integers(0, 50), texture=st.booleans(), seed=st.integers(0, 2**16))
def test_round_trip_property(v, f, texture, seed):
    f = f if v else 0
    m = mesh(v=v, f=f, texture=texture and v > 0, seed=seed)
    same_mesh(m, payload.decode(payload.encode(m)))
