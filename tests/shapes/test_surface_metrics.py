"""Surface and colour measures against the analytic SDF: the true surface scores the floor, a
deliberately bumpy, fat, mottled or leaking one does not."""
from __future__ import annotations

import numpy as np
import pytest

from training.shapes.interpolation_metrics import _ratio_max_mean, differs_in, pick_pairs
from training.shapes.surface import floor_mesh, mesh_metrics, mesh_volume
from training.shapes.world import get_world

RES = 48


@pytest.fixture(scope="module")
def sphere():
    world = get_world()
    scene = world.scene("a red sphere")
    v, f, c = floor_mesh(scene, RES)
    return scene, v, f, c


def _vertex_normals(v, f):
    import trimesh

    return np.asarray(trimesh.Trimesh(v, f, process=False).vertex_normals)


def test_the_true_surface_scores_the_floor(sphere):
    scene, v, f, c = sphere
    m = mesh_metrics(v, f, c, scene, RES, true_volume=mesh_volume(v, f))
    assert m["normal_error_deg"] < 3.0 and m["roughness_deg"] < 8.0
    assert m["surface_distance"] < 0.1 and m["volume_ratio"] == pytest.approx(1.0)
    assert m["body_color_std"] < 1e-6 and m["accessory_leak"] == 0.0 and m["color_variation"] < 1e-6


def test_bumps_raise_the_normal_error_and_roughness(sphere):
    scene, v, f, c = sphere
    floor = mesh_metrics(v, f, c, scene, RES, true_volume=mesh_volume(v, f))
    voxel = 2.0 / (RES - 1)
    bump = 1.5 * voxel * np.sin(9 * v[:, 0]) * np.sin(9 * v[:, 1]) * np.sin(9 * v[:, 2] + 1)
    bumpy = (v + bump[:, None] * _vertex_normals(v, f)).astype(np.float32)
    m = mesh_metrics(bumpy, f, c, scene, RES, true_volume=mesh_volume(v, f))
    assert m["normal_error_deg"] > floor["normal_error_deg"] + 8
    assert m["roughness_deg"] > floor["roughness_deg"] + 2
    assert m["surface_distance"] > 0.25 > floor["surface_distance"]


def test_a_fat_object_has_a_volume_ratio_above_one(sphere):
    scene, v, f, c = sphere
    m = mesh_metrics(v * 1.15, f, c, scene, RES, true_volume=mesh_volume(v, f))
    assert m["volume_ratio"] == pytest.approx(1.15 ** 3, rel=1e-3)
    assert m["normal_error_deg"] < 3.0  # the same shape, only bigger


def test_mottled_colours_and_a_leaking_accessory_are_measured():
    world = get_world()
    scene = world.scene("a red sphere wearing a blue party hat")
    v, f, c = floor_mesh(scene, RES)
    tv = mesh_volume(v, f)
    clean = mesh_metrics(v, f, c, scene, RES, true_volume=tv)
    assert clean["body_color_std"] < 1e-6 and clean["accessory_leak"] == 0.0
    noisy = np.clip(c + np.random.default_rng(0).normal(0, 0.1, c.shape), 0, 1).astype(np.float32)
    m = mesh_metrics(v, f, noisy, scene, RES, true_volume=tv)
    assert m["body_color_std"] > 0.05 and m["color_variation"] > 0.05
    blue = np.asarray(scene.parts[1].color, np.float32)
    leaked = np.where((v[:, 0] > 0)[:, None], blue, c).astype(np.float32)  # half the body in the hat's blue
    m = mesh_metrics(v, f, leaked, scene, RES, true_volume=tv)
    assert 0.3 < m["accessory_leak"] < 0.7


def test_pairs_differ_in_exactly_one_thing_and_the_smoothness_ratio():
    world = get_world()
    pairs = pick_pairs(world, world.split(0.5)["unseen"], per_kind=4)
    assert [k for k, _, _ in pairs] == ["color"] * 4 + ["shape"] * 4 + ["accessory"] * 4
    for kind, i, j in pairs:
        assert differs_in(world, i, j) == kind
    assert differs_in(world, world.index("a red cube"), world.index("a blue sphere")) is None
    assert _ratio_max_mean([1, 1, 1, 1]) == pytest.approx(1.0)
    assert _ratio_max_mean([0, 0, 1, 0]) == pytest.approx(4.0)
