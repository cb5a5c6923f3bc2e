import numpy as np
import pytest
import torch
import trimesh

from backend.inference import CancelledError, chain_schedule


def test_chain_schedule_positions():
    s = chain_schedule([0, 10, 30], 2)
    assert [x[2] for x in s] == [0, 5, 10, 20, 30]
    assert [(k, a) for k, a, _ in s] == [(0, 0), (0, 0.5), (1, 0), (1, 0.5), (1, 1.0)]
    with pytest.raises(ValueError):
        chain_schedule([0], 2)


def test_generate_is_closed_and_coloured(pipeline):
    mesh = pipeline.generate("a red cube", resolution=48)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert tm.is_watertight and tm.volume > 0
    assert mesh.colors.shape == mesh.vertices.shape
    assert ((mesh.colors >= 0) & (mesh.colors <= 1)).all()
    assert mesh.meta["prompt"] == "a red cube" and mesh.meta["model"] == "tiny"


def test_blend_endpoints_equal_the_prompts(pipeline):
    a = pipeline.generate("a red cube", resolution=32)
    b0 = pipeline.blend("a red cube", "a blue sphere", 0.0, resolution=32)
    np.testing.assert_allclose(a.vertices, b0.vertices, atol=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        pipeline.blend("a", "b", 1.5)


def test_consistent_chain_shares_faces_and_lies_on_each_isosurface(pipeline):
    seq = pipeline.chain(["a red cube", "a blue sphere"], steps=4, resolution=48, consistent=True)
    assert len(seq["vertices"]) == 5 and seq["faces"] is not None
    model = pipeline.model
    emb = pipeline.embed(["a red cube", "a blue sphere"])
    for i, (_k, a, _) in enumerate(chain_schedule([0, 1], 4)):
        tokens = (1 - a) * emb.tokens[:1] + a * emb.tokens[1:]
        with torch.no_grad():
            mod = model.modulate(tokens)
            d = model.density(mod, torch.from_numpy(seq["vertices"][i])[None])[0]
        assert seq["converged"][i] > 0.99
        assert (d - model.config.iso_density).abs().median() < 0.05 * model.config.iso_density
        assert np.isfinite(seq["vertices"][i]).all()
    assert not np.allclose(seq["colors"][0], seq["colors"][-1])


def test_chain_can_be_cancelled(pipeline):
    calls = []

    def progress(frac, msg):
        calls.append(frac)
        return len(calls) >= 2

    with pytest.raises(CancelledError):
        pipeline.chain(["a red cube", "a blue sphere"], steps=4, resolution=32, progress=progress)
    assert len(calls) == 2


def test_generate_with_simplify_and_texture(pipeline, tmp_path):
    mesh = pipeline.generate("a red cube", resolution=48, simplify=300, texture=128)
    assert len(mesh.faces) <= 330
    assert mesh.texture.shape == (128, 128, 3) and mesh.uvs.shape == (len(mesh.vertices), 2)
    # the texture holds the field's colours: sampled at each vertex's UV it gives the vertex colour
    h, w = mesh.texture.shape[:2]
    rows = np.clip(((1 - mesh.uvs[:, 1]) * h).astype(int), 0, h - 1)
    cols = np.clip((mesh.uvs[:, 0] * w).astype(int), 0, w - 1)
    sampled = mesh.texture[rows, cols] / 255
    assert np.median(np.abs(sampled - mesh.colors).max(1)) < 0.03
