import numpy as np
import pytest
import trimesh

from backend.inference import CancelledError, chain_schedule


def test_chain_schedule_positions():
    s = chain_schedule([0, 10, 30], 2)
    assert [x[2] for x in s] == [0, 5, 10, 20, 30]
    assert [(k, a) for k, a, _ in s] == [(0, 0), (0, 0.5), (1, 0), (1, 0.5), (1, 1.0)]
    with pytest.raises(ValueError):
        chain_schedule([0], 2)


def test_generate_is_closed_and_coloured(engine):
    mesh = engine.generate("a red cube", resolution=48)
    tm = trimesh.Trimesh(mesh.positions, mesh.faces, process=False)
    assert tm.is_watertight and tm.volume > 0
    assert mesh.colors.shape == mesh.positions.shape
    assert ((mesh.colors >= 0) & (mesh.colors <= 1)).all()
    assert mesh.meta["prompt"] == "a red cube" and mesh.meta["model"] == "tiny"


def test_blend_endpoints_equal_the_prompts(engine):
    a = engine.generate("a red cube", resolution=32)  # both smoothed by default, as the add-on gets them
    b0 = engine.blend("a red cube", "a blue sphere", 0.0, resolution=32)
    np.testing.assert_allclose(a.positions, b0.positions, atol=1e-5)
    raw = engine.blend("a red cube", "a blue sphere", 0.0, resolution=32, smooth=0)
    np.testing.assert_allclose(engine.generate("a red cube", resolution=32, smooth=0).positions, raw.positions,
                               atol=1e-5)
    assert raw.positions.shape != b0.positions.shape or np.abs(raw.positions - b0.positions).max() > 1e-4
    with pytest.raises(ValueError, match="alpha"):
        engine.blend("a", "b", 1.5)


def test_consistent_chain_is_exact_at_keyframes_and_on_every_isosurface(pipeline, engine):
    """Keyframe pieces: each piece's key state is the directly generated mesh of its keyframe (the
    low-passed density's surface, which Generate's default smoothing starts from); its other states
    lie on their own isosurfaces of that field; neighbouring pieces meet at the segment's middle."""
    from backend.chain_quality import ON_SURFACE_VOXELS, surface_distance

    prompts = ["a red cube", "a blue sphere", "a green cone"]
    seq = pipeline.chain(prompts, steps=4, resolution=40, consistent=True)
    assert seq.consistent and len(seq.steps) == 9 and len(seq.pieces) == 3
    assert [p.times for p in seq.pieces] == [[0, 0.25, 0.5], [0.5, 0.75, 1, 1.25, 1.5], [1.5, 1.75, 2]]
    assert [p.key for p in seq.pieces] == [0, 2, 2]
    emb = pipeline.embed(prompts)
    voxel = 2 * pipeline.model.config.bound / 39
    for k, piece in enumerate(seq.pieces):
        direct = pipeline.mesh(pipeline.modulate(pipeline.embed(prompts[k])), 40, lowpass=True)  # no Taubin
        assert np.array_equal(piece.positions[piece.key], direct.positions)
        assert np.array_equal(piece.faces, direct.faces)
        np.testing.assert_allclose(piece.colors[piece.key], direct.colors, atol=1e-6)
        for j, t in enumerate(piece.times):
            seg = min(int(t), len(prompts) - 2)
            mod = pipeline.chain_modulation(emb, seg, t - seg)
            dist = surface_distance(pipeline.model, mod, piece.positions[j], resolution=40)
            assert (dist <= ON_SURFACE_VOXELS * voxel).mean() >= 0.99, (k, t)
            assert np.isfinite(piece.positions[j]).all()
            assert piece.positions[j].shape == piece.positions[0].shape
    assert not np.allclose(seq.pieces[0].colors[0], seq.pieces[0].colors[-1])  # colours follow the prompts
    # a step is shown by the later piece where two meet
    assert np.array_equal(seq.mesh(2).positions, seq.pieces[1].positions[0])
    assert np.array_equal(seq.mesh(4).positions, seq.pieces[1].positions[2])


def test_odd_steps_meet_at_the_segment_middle(pipeline):
    seq = pipeline.chain(["a red cube", "a blue sphere"], steps=3, resolution=24)
    assert seq.steps == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert [p.times for p in seq.pieces] == [pytest.approx([0, 1 / 3, 0.5]), pytest.approx([0.5, 2 / 3, 1])]


def test_chain_can_be_cancelled(pipeline):
    calls = []

    def progress(frac, msg):
        calls.append(frac)
        return len(calls) >= 2

    with pytest.raises(CancelledError):
        pipeline.chain(["a red cube", "a blue sphere"], steps=4, resolution=32, progress=progress)
    assert len(calls) == 2


def test_generate_with_simplify_and_texture(engine, tmp_path):
    mesh = engine.generate("a red cube", resolution=48, simplify=300, texture=128)
    assert len(mesh.faces) <= 330
    assert mesh.texture.shape == (128, 128, 3) and mesh.uvs.shape == (len(mesh.positions), 2)
    # the texture holds the field's colours: sampled at each vertex's UV it gives the vertex colour
    h, w = mesh.texture.shape[:2]
    rows = np.clip(((1 - mesh.uvs[:, 1]) * h).astype(int), 0, h - 1)
    cols = np.clip((mesh.uvs[:, 0] * w).astype(int), 0, w - 1)
    sampled = mesh.texture[rows, cols] / 255
    assert np.median(np.abs(sampled - mesh.colors).max(1)) < 0.03


@pytest.fixture(scope="module")
def demo():
    from backend.inference import Pipeline

    return Pipeline("demo", device="cpu")


@pytest.mark.slow  # the demo model: three chains at 48³ (~10 s)
def test_states_in_between_go_where_the_blend_misses_the_surface_up_to_the_cap(demo):
    """A cone → torus chain: its pieces' linear blends miss the surface in between; the states added
    there lie on their own isosurfaces, leave the steps and keyframes as they were, respect the cap,
    and leave no blend (of states moving more than a voxel apart) more than half a voxel off."""
    from backend.chain import segment_alpha
    from backend.chain_quality import ON_SURFACE_VOXELS, surface_distance

    prompts = ["a red cone", "a blue torus"]  # (a sphere → cube's blends stay within half a voxel)
    voxel = 2 * demo.model.config.bound / 47
    plain = demo.chain(prompts, steps=2, resolution=48, max_states=2)
    # the steps (0, 0.5, 1) and the middles where neighbouring pieces meet; none in between
    assert plain.meta["inserted_states"] == 0
    assert {t for p in plain.pieces for t in p.times} <= {0, 0.25, 0.5, 0.75, 1}
    # (a cap the refinement does not reach: demo v3.2 stores 11 positions here)
    refined = demo.chain(prompts, steps=2, resolution=48, max_states=12)
    assert refined.meta["inserted_states"] >= 1 and refined.meta["max_states"] == 12
    assert refined.steps == plain.steps
    emb = demo.embed(prompts)
    for p, q in zip(refined.pieces, plain.pieces):
        assert set(q.times) <= set(p.times) and p.times[p.key] == q.times[q.key]
        assert np.array_equal(p.positions[p.key], q.positions[q.key])
        for j, (t, v) in enumerate(zip(p.times, p.positions)):
            if j == p.key or p.held[j]:
                # marching cubes' own mesh (the same as plain's), or a held state: its anchor's surface
                # where tracking failed (a pop between true surfaces at the swap; backend.chain)
                continue
            mod = demo.chain_modulation(emb, *segment_alpha(t, [0, 1]))
            assert (surface_distance(demo.model, mod, v, resolution=48) <= ON_SURFACE_VOXELS * voxel).mean() >= 0.99, t
        for (t0, v0), (t1, v1) in zip(zip(p.times, p.positions), zip(p.times[1:], p.positions[1:])):
            if np.linalg.norm(v1 - v0, axis=1).max() > voxel:
                mod = demo.chain_modulation(emb, *segment_alpha((t0 + t1) / 2, [0, 1]))
                assert np.quantile(surface_distance(demo.model, mod, (v0 + v1) / 2, resolution=48), 0.99) <= 0.5 * voxel
    assert len({t for p in refined.pieces for t in p.times if t < 1}) <= 12
    moves = [np.linalg.norm(b - a, axis=1).max() / voxel for p in refined.pieces
             for a, b in zip(p.positions, p.positions[1:])]
    assert refined.meta["max_move_voxels"] == pytest.approx(max(moves), abs=1e-3)
    assert refined.meta["max_move_voxels"] < plain.meta["max_move_voxels"]
    from backend.engine import Engine

    with pytest.raises(ValueError, match=r"at least steps \(2\)"):  # the engine's check (the pipeline checks nothing)
        Engine(demo).chain(list(enumerate(prompts)), steps=2, resolution=48, max_states=1)
