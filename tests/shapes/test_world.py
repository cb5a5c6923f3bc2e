"""The Shapes world: sizes, determinism, splits, and ground-truth renders of known scenes."""
import json

import pytest
import torch

from training.shapes import world as W


@pytest.fixture(scope="module")
def world():
    return W.get_world(0)


def test_sizes_and_prompts(world):
    assert len(W.SHAPES) >= 8 and len(W.COLORS) >= 8 and len(W.ACCESSORIES) >= 5
    per_main = len(W.ACCESSORIES) * len(W.ACCESSORY_COLORS) + 1
    assert world.n_base == len(W.SHAPES) * len(W.COLORS) * per_main == 1984
    assert len(world) == 1984 + len(W.SEASONS) * per_main == 2108  # + the seasonal trees
    assert len(set(world.texts)) == len(world)  # all distinct
    assert "a red cube wearing a blue party hat" in world.texts
    assert "a green torus on a black plate" in world.texts
    assert world.texts[world.index("a red cube")] == "a red cube"
    with pytest.raises(ValueError):
        world.index("a red dragon")


def test_the_article_an_artist_writes(world):
    assert "an orange sphere" in world.texts and "an orange cube with blue ears" in world.texts
    assert not any(t.startswith("a orange") for t in world.texts)
    assert "a red sphere wearing a yellow party hat" in world.texts  # "a" before consonants stays


def test_the_seasonal_tree(world):
    """The paper's Fig. 3 prompts: a trunk and a canopy whose season changes them."""
    for season in W.SEASONS:
        p = world.prompts[world.index(f"a tree in the {season}")]
        assert (p.shape, p.color, p.accessory) == ("tree", season, W.NONE)
    assert "a tree in the fall with a blue ball on top" in world.texts
    probe = torch.tensor([[0.0, 0.0, -0.30 * W.SCALE],  # the trunk
                          [0.0, -0.2 * W.SCALE, W.CANOPY_Z * W.SCALE],  # the canopy's front
                          [0.0, 0.0, (W.CANOPY_Z + 0.2) * W.SCALE]])  # the canopy's top
    colours = {}
    for season in W.SEASONS:
        sdf, col = world.scene(f"a tree in the {season}").sdf_and_color(probe)
        assert (sdf < 0).all(), season  # all three points are inside the tree
        assert torch.allclose(col[0], torch.tensor(W.TRUNK_COLOR))
        colours[season] = col
    assert torch.allclose(colours["summer"][1], torch.tensor(W.TREE_SEASONS["summer"][1]))  # full green
    assert colours["fall"][1, 0] > 0.8 and colours["fall"][1, 2] < 0.1  # orange-red
    assert torch.allclose(colours["winter"][2], torch.tensor(W.SNOW_COLOR))  # snow on top
    assert not torch.allclose(colours["winter"][1], torch.tensor(W.TREE_SEASONS["summer"][1]))  # bare below it
    spring = world.scene("a tree in the spring")
    assert sum(part.color == W.BLOSSOM_COLOR for part in spring.parts) >= 8  # pink blossom
    # the crown shrinks in winter: a point inside the summer crown lies outside the winter one
    edge = torch.tensor([[0.29 * W.SCALE, 0.0, W.CANOPY_Z * W.SCALE]])
    assert world.scene("a tree in the summer").sdf(edge) < 0 < world.scene("a tree in the winter").sdf(edge)


def test_deterministic_for_a_seed(world):
    other = W.ShapesWorld(0)
    assert other.texts == world.texts and other.prompt_hash == world.prompt_hash
    for f in W.SPLIT_FRACTIONS:
        assert other.split(f) == world.split(f)
    assert W.ShapesWorld(1).split(0.125) != world.split(0.125)  # the seed matters
    # scenes are pure functions of the prompt
    pts = torch.rand(1, 500, 3) * 2 - 1
    a = world.scene(7).field(pts[0])
    b = other.scene(7).field(pts[0])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("fraction, n_seen, n_trees", [(0.125, 248, 19), (0.5, 992, 64), ("12.5%", 248, 19),
                                                       ("50", 992, 64)])
def test_split_sizes_disjoint_stratified(world, fraction, n_seen, n_trees):
    sp = world.split(fraction)
    seen, unseen = set(sp["seen"]), set(sp["unseen"])
    assert len(seen) == n_seen + n_trees and len(seen) + len(unseen) == len(world)
    assert not seen & unseen
    trees = [world.prompts[i] for i in seen if i >= world.n_base]
    assert len(trees) == n_trees and {p.color for p in trees} == set(W.SEASONS)
    assert {f"a tree in the {s}" for s in W.SEASONS} <= {p.text for p in trees}  # the season chain is seen
    ps = [world.prompts[i] for i in seen if i < world.n_base]
    assert {p.shape for p in ps} == set(W.SHAPES)
    assert {p.color for p in ps} == set(W.COLORS)
    assert {p.accessory for p in ps} == set(W.ACCESSORIES) | {W.NONE}
    assert {p.accessory_color for p in ps if p.accessory_color} == set(W.ACCESSORY_COLORS)
    # stratified: every (shape, colour) cell is seen about equally often
    counts = {}
    for p in ps:
        counts[(p.shape, p.color)] = counts.get((p.shape, p.color), 0) + 1
    assert len(counts) == 64 and max(counts.values()) - min(counts.values()) <= 1


def test_small_split_nested_in_large(world):
    assert set(world.split(0.125)["seen"]) <= set(world.split(0.5)["seen"])


def test_the_first_1984_prompts_split_as_before_the_trees(world):
    """Models trained before the trees keep their seen/unseen prompts (a few of the old split's indices)."""
    assert world.split(0.5)["seen"][:3] == [1, 3, 4] and world.split(0.125)["seen"][:3] == [4, 28, 30]
    assert len([i for i in world.split(0.5)["seen"] if i < world.n_base]) == 992


def test_bad_split(world):
    with pytest.raises(ValueError):
        world.split(0.3)


@pytest.mark.slow
def test_objects_fit_the_box(world):
    pts = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, 41)] * 3, indexing="ij"), -1).reshape(-1, 3)
    for i in range(0, len(world), 97):
        inside = pts[world.scene(i).sdf(pts) < 0]
        assert len(inside) > 100
        assert inside.abs().max() < 0.85, world.texts[i]
        assert inside.mean(0).abs().max() < 0.3  # roughly centred (a plate pulls it down)


def test_front_faces_minus_y(world):
    """Ears are on the sides (±X), the torus' hole faces the front (−Y): a ray along Y passes."""
    torus = world.scene(world.index("a red torus"))
    assert torus.sdf(torch.tensor([[0.0, 0.0, 0.0]])) > 0  # the hole
    assert torus.sdf(torch.tensor([[0.3, 0.0, 0.0]])) < 0  # the ring, in the XZ plane
    ears = world.scene(world.index("a red sphere with blue ears"))
    _, col = ears.sdf_and_color(torch.tensor([[0.33, 0.0, 0.40], [-0.33, 0.0, 0.40]]))
    assert torch.allclose(col, torch.tensor(W.COLORS["blue"]).expand(2, 3))


def test_export(world, tmp_path):
    files = world.export(tmp_path)
    assert [f.name for f in files] == ["prompts.txt", "splits.json", "scenes.json"]
    assert (tmp_path / "prompts.txt").read_text().splitlines() == world.texts
    sp = json.loads((tmp_path / "splits.json").read_text())
    assert sp["splits"]["12.5%"]["seen"] == world.split(0.125)["seen"]
    sc = json.loads((tmp_path / "scenes.json").read_text())
    assert sc["scenes"][5]["prompt"] == world.texts[5] and sc["scenes"][5]["parts"]


def test_red_sphere_renders_red_and_round(world):
    from backend.cameras import orbit_cameras

    scene = world.scene(world.index("a red sphere"))
    r = W.render_scenes([scene], orbit_cameras([30.0], elevation=10.0, distance=2.0), 48, n_samples=64)
    mask = r.opacity[0, 0] > 0.5
    n = mask.sum().item()
    # a disc: the mask fills its bounding circle (area ≈ π r², r from the extent)
    ys, xs = mask.nonzero(as_tuple=True)
    cy, cx = ys.float().mean(), xs.float().mean()
    radius = ((xs.max() - xs.min() + 1) + (ys.max() - ys.min() + 1)).float() / 4
    assert abs(cx - 23.5) < 1.0 and abs(cy - 23.5) < 1.0  # centred
    assert abs(n - torch.pi * radius ** 2) / n < 0.08
    gy, gx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    dist = ((gx - cx) ** 2 + (gy - cy) ** 2).sqrt()
    assert mask[dist < radius - 1].all()  # the disc is filled
    assert not mask[dist > radius + 1].any()  # and nothing sticks out
    # sphere radius 0.4·1.12 at distance 2, focal 1 → about 48·0.448/2/1 ≈ 11 px (perspective: a bit more)
    assert 9 < radius < 14
    rgb = r.rgb[0][:, mask].mean(1)
    assert torch.allclose(rgb, torch.tensor(W.COLORS["red"]), atol=0.03)
    assert torch.allclose(r.rgb[0][:, ~mask].mean(1), torch.ones(3), atol=0.02)  # white background


def test_lit_render_has_normals_and_shading(world):
    cams = W.camera_sampler().sample(4, generator=torch.Generator().manual_seed(0))
    cams.shading[:] = 2
    scenes = world.scenes([world.index("a blue cube"), world.index("a yellow cone with a red ball on top")] * 2)
    r = W.render_scenes(scenes, cams, 24, n_samples=48)
    assert torch.isfinite(r.rgb).all()
    lit = r.rgb[0][:, r.opacity[0, 0] > 0.5]
    assert lit[2].mean() > lit[0].mean() + 0.2  # still blue
    assert lit.std(1).max() > 0.02  # faces shaded differently

