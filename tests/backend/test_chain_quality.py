"""The chain measures (backend.chain_quality) on shapes whose answers are known."""
import numpy as np
import pytest
import trimesh

from backend.chain_quality import (
    chain_quality,
    chamfer,
    closest_points_on_triangles,
    inward_face_fraction,
    point_mesh_distance,
)


def test_closest_points_on_triangles_match_a_dense_search():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 200, 3))
    p = rng.normal(size=(200, 3)) * 2
    q = closest_points_on_triangles(p, a, b, c)
    u, v = np.meshgrid(np.linspace(0, 1, 301), np.linspace(0, 1, 301))
    keep = u + v <= 1
    u, v = u[keep], v[keep]
    for i in range(200):
        dense = a[i] + np.outer(u, b[i] - a[i]) + np.outer(v, c[i] - a[i])
        best = np.linalg.norm(dense - p[i], axis=1).min()
        assert best - 1e-3 <= np.linalg.norm(q[i] - p[i]) <= best + 1e-12


def test_chamfer_of_concentric_spheres_is_their_gap():
    s = trimesh.creation.icosphere(4)
    bigger = trimesh.creation.icosphere(3, radius=1.02)
    assert chamfer(s.vertices, s.faces, s.vertices, s.faces) == pytest.approx((0.0, 0.0), abs=1e-7)
    mean, haus = chamfer(s.vertices, s.faces, bigger.vertices, bigger.faces)
    assert 0.015 < mean < 0.021 and 0.019 < haus < 0.025  # a 0.02 gap (facets make it a little less)
    far = point_mesh_distance(np.array([[0.0, 0.0, 3.0]]), s.vertices, s.faces)
    assert far[0] == pytest.approx(2.0, abs=2e-3)


def test_inward_faces_are_found(pipeline, engine):
    mesh = engine.generate("a red cube", resolution=32)
    mod = pipeline.modulate(pipeline.embed("a red cube"))
    assert inward_face_fraction(pipeline.model, mod, mesh.positions, mesh.faces) < 0.02
    flipped = mesh.faces[:, ::-1]
    assert inward_face_fraction(pipeline.model, mod, mesh.positions, flipped) > 0.98


@pytest.mark.slow  # a 16-state chain at 64³ and its measures (~8 s)
def test_chain_quality_reports_exact_keyframes_and_every_state(pipeline):
    prompts = ["a red cube", "a blue sphere"]
    seq = pipeline.chain(prompts, steps=2, resolution=32)
    q = chain_quality(pipeline, seq, prompts, resolution=32, key_frames=[1, 25])
    assert [kf["chamfer_pct_diag"] for kf in q["keyframes"]] == [0.0, 0.0]
    assert q["max_inward_excess_pct"] == 0.0
    assert len(q["states"]) == 4 and q["min_on_surface_pct"] >= 99.0
    assert len(q["swap_gap_voxels"]) == 1 and q["swap_gap_voxels"][0] < 2
    # states at 0, 0.5, 1 on frames 1, 13, 25: every move spreads over 12 frames
    assert q["max_jump_per_frame_voxels"] == pytest.approx(q["max_jump_voxels"] / 12, abs=1e-3)
    # a chain whose keyframe mesh is not the direct one is caught
    seq.pieces[1].positions[seq.pieces[1].key] = seq.pieces[1].positions[seq.pieces[1].key] * 1.1
    bad = chain_quality(pipeline, seq, prompts, resolution=32)
    assert bad["keyframes"][1]["chamfer_pct_diag"] > 1.0


def test_plan_pieces_adds_topologies_only_where_tracking_fails():
    """Synthetic tracking that holds for one step from its anchor: the anchors 0 and 8 become
    0, 2, 4, 6, 8; each piece covers its anchor ± 1; tracked states are computed once."""
    from backend.chain import plan_pieces

    calls = []

    def extract(i):
        return np.full((4, 3), float(i), np.float32), np.array([[0, 1, 2]])

    def project(x, v, f, prep):
        calls.append((prep, x))
        ok = np.ones(4, bool) if abs(x - prep) <= 1 else np.zeros(4, bool)
        return v + 0.1, ok

    pieces = plan_pieces([0, 8], extract, project, prepare=lambda v, f: int(v[0, 0]))
    assert [p.anchor for p in pieces] == [0, 2, 4, 6, 8]
    assert [p.xs for p in pieces] == [[0, 1], [1, 2, 3], [3, 4, 5], [5, 6, 7], [7, 8]]
    assert [p.key for p in pieces] == [0, 1, 1, 1, 1]
    assert all(min(p.on_surface) == 1.0 and not any(p.held) for p in pieces)
    assert len(calls) == len(set(calls))  # nothing tracked twice
    assert np.allclose(pieces[1].vertices[0], 2 - 0.1 * 0 + 0.1)  # state 1 tracked from anchor 2


def test_plan_pieces_reports_progress_before_each_extraction_and_settle():
    """One report per piece of work, never going back, never far from the share of the work done
    (an extraction weighs EXTRACT_WORK settles), although three splits add work on the way."""
    from backend.chain import EXTRACT_WORK, plan_pieces

    events, reports = [], []

    def extract(i):
        events.append(EXTRACT_WORK)
        return np.full((4, 3), float(i), np.float32), np.array([[0, 1, 2]])

    def project(x, v, f, prep):
        events.append(1.0)
        return v + 0.1, np.full(4, abs(x - prep) <= 1)

    def tick(frac):
        reports.append((frac, len(events)))

    plan_pieces([0, 8], extract, project, prepare=lambda v, f: int(v[0, 0]), tick=tick)
    assert len(reports) == len(events) == 15  # 5 extractions, 10 settles
    fracs = [f for f, _ in reports]
    assert fracs == sorted(fracs) and fracs[0] == 0 and 0.8 <= fracs[-1] <= 0.95
    total = sum(events)
    for frac, n_before in reports:
        assert abs(frac - sum(events[:n_before]) / total) <= 0.2


def test_plan_pieces_meets_between_steps_and_keeps_a_failing_middle():
    from backend.chain import plan_pieces

    def project(x, v, f, prep):
        return v, np.array([abs(x - prep) < 0.4] * 3 + [True])  # 3 of 4 vertices lost beyond 0.4 steps

    pieces = plan_pieces([0, 3], lambda i: (np.full((4, 3), float(i), np.float32), np.array([[0, 1, 2]])),
                         project, prepare=lambda v, f: int(v[0, 0]))
    # every step becomes an anchor; neighbouring steps meet half-way, where each holds its own mesh
    assert [p.anchor for p in pieces] == [0, 1, 2, 3]
    assert [p.xs for p in pieces] == [[0, 0.5], [0.5, 1, 1.5], [1.5, 2, 2.5], [2.5, 3]]
    assert [p.on_surface for p in pieces] == [[1, 0.25], [0.25, 1, 0.25], [0.25, 1, 0.25], [0.25, 1]]
    assert [p.held for p in pieces] == [[False, True], [True, False, True], [True, False, True], [True, False]]
    assert all(np.array_equal(v, p.vertices[p.key]) for p in pieces for v in p.vertices)


def _anchor_meshes(i):
    return np.full((4, 3), float(i), np.float32), np.array([[0, 1, 2]])


def _moving_piece(held=False):
    """One piece over steps 0..1 whose vertex 0 moves along x = 4 x² voxels (the others stay)."""
    from backend.chain import PlannedPiece

    v0 = np.zeros((4, 3), np.float32)
    v1 = v0.copy()
    v1[0, 0] = 4.0
    return PlannedPiece(0, np.array([[0, 1, 2]]), [0.0, 1.0], [v0, v1], [1.0, 1.0], [False, held])


def _path_project(x, v, f, prep):
    out = v.copy()
    out[0, 0] = 4 * x * x
    return out, np.ones(len(v), bool)


def _path_miss(x, v):
    return abs(float(v[0, 0]) - 4 * x * x)


@pytest.mark.parametrize("miss_voxels, cap, xs", [
    (0.5, 10, [0, 0.5, 1]),           # blend 2 vs 1 at 0.5: stored; at 0.75 it misses by 0.25: enough
    (0.1, 10, [0, 0.5, 0.75, 1]),     # stricter: 0.75 too; then every blend is within 0.0625
    (0.1, 3, [0, 0.5, 1]),            # three positions per segment at most
    (2.0, 10, [0, 1]),                # the blend misses the middle by 1: within the tolerance
])
def test_refine_inserts_states_where_the_blend_misses_the_surface(miss_voxels, cap, xs):
    from backend.chain import refine_pieces

    piece = _moving_piece()
    ticks = []
    n = refine_pieces([piece], lambda x: 0, cap, _path_project, _path_miss, voxel=1.0, miss_voxels=miss_voxels,
                      tick=ticks.append)
    assert piece.xs == xs and n == len(xs) - 2
    assert [float(v[0, 0]) for v in piece.vertices] == [4 * x * x for x in xs]  # each on its own state
    assert len(piece.on_surface) == len(piece.held) == len(xs) and not any(piece.held)
    assert ticks and ticks == sorted(ticks) and ticks[0] == 0 and max(ticks) < 1


def test_refine_leaves_held_states_small_moves_and_failed_settles():
    from backend.chain import refine_pieces

    held = _moving_piece(held=True)
    assert refine_pieces([held], lambda x: 0, 10, _path_project, _path_miss, voxel=1.0) == 0
    small = _moving_piece()
    small.vertices[1][0, 0] = 0.9  # moves less than a voxel: the blend is not even tested
    tested = []
    assert refine_pieces([small], lambda x: 0, 10, _path_project, lambda x, v: tested.append(x) or 5.0,
                         voxel=1.0) == 0 and not tested
    failing = _moving_piece()
    assert refine_pieces([failing], lambda x: 0, 10, lambda x, v, f, p: (v, np.zeros(len(v), bool)), _path_miss,
                         voxel=1.0) == 0 and failing.xs == [0, 1]


def test_refine_gives_a_capped_segment_to_the_largest_move_first():
    from backend.chain import refine_pieces

    slow, fast = _moving_piece(), _moving_piece()
    slow.vertices[1][0, 0] = 2.0  # moves 2 voxels; the other 4
    n = refine_pieces([slow, fast], lambda x: 0, 3, lambda x, v, f, p: (v * 0 + 7, np.ones(len(v), bool)),
                      lambda x, v: 5.0, voxel=1.0)
    assert n == 1 and slow.xs == [0, 1] and fast.xs == [0, 0.5, 1]


def test_refine_stops_at_the_chain_s_total():
    from backend.chain import refine_pieces

    pieces = [_moving_piece(), _moving_piece()]  # 4 states in all
    n = refine_pieces(pieces, lambda x: 0, 10, _path_project, _path_miss, voxel=1.0, miss_voxels=0.1, max_total=5)
    assert n == 1 and sum(len(p.xs) for p in pieces) == 5


def test_refine_skips_the_test_where_the_estimate_is_well_within_the_tolerance():
    from backend.chain import refine_pieces

    for estimate, tested_expected, xs in ((0.2, [], [0, 1]),         # within half of 0.5: no test
                                          (0.3, [0.5], [0, 0.5, 1])):  # not: tested, and stored
        piece, tested, asked = _moving_piece(), [], []

        def miss(x, v, tested=tested):
            tested.append(x)
            return _path_miss(x, v)

        refine_pieces([piece], lambda x: 0, 3, _path_project, miss, voxel=1.0,
                      estimate=lambda x0, x1, v, asked=asked, e=estimate: asked.append((x0, x1)) or e)
        assert asked[0] == (0, 1) and tested == tested_expected and piece.xs == xs
