"""The operation layer (backend/engine.py): a request checks its inputs once, when it is made, naming the
field; Engine.run sequences the steps (embed → modulate → extract) with one progress callback, numbered
and cancellable; every caller's path checks a prompt exactly once in the backend."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backend import engine as engine_mod
from backend.engine import GENERATE_STEPS, Blend, Chain, Generate, InvalidInput, Nearest
from backend.progress import CancelledError
from blender_att3d.wire.options import DEFAULT_SMOOTH
from blender_att3d.wire.types import MeshData, Neighbors, SequenceData, ServerInfo


@pytest.mark.parametrize("make, field, message", [
    (lambda: Generate("   "), "prompt", "the prompt is empty"),
    (lambda: Generate("a cube", 8), "resolution", "resolution must be an integer in 16–512, got 8"),
    (lambda: Generate("a cube", texture=0), "texture", "the texture size must be an integer in 64–4096"),
    (lambda: Generate("a cube", texture="yes"), "texture", "texture must be true or false"),
    (lambda: Generate("a cube", simplify=2), "simplify", "simplify must be a face count"),
    (lambda: Generate("a cube", mc="fast"), "mc", "mc must be one of"),
    (lambda: Generate("a cube", extract="some"), "extract", "extract must be one of"),
    (lambda: Generate("a cube", unwrap="smart"), "unwrap", "unwrap must be one of"),
    (lambda: Generate("a cube", smooth=101), "smooth", "smooth must be a whole number"),
    (lambda: Blend("a", "b", 1.5), "alpha", "alpha must be a number in [0, 1]"),
    (lambda: Blend("a", "\x00", 0.5), "prompt_b", "control character"),
    (lambda: Chain([(0, "a")]), "keyframes", "a chain needs 2–64 keyframes, got 1"),
    (lambda: Chain([(0, "a"), (0, "b")]), "keyframes", "strictly increasing"),
    (lambda: Chain([(0, "a"), (1, "b")], 1000), "steps", "that chain has 1001 meshes"),
    (lambda: Chain([(0, "a"), (1, "b")], consistent="yes"), "consistent", "consistent must be true or false"),
    (lambda: Nearest("a", 0), "k", "k must be an integer in 1–50"),
])
def test_a_request_checks_its_inputs_when_made_naming_the_field(make, field, message):
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        make()
    assert e.value.field == field and isinstance(e.value, ValueError)


def test_a_request_holds_its_inputs_normalised_and_stays_valid():
    g = Generate("  a  red   cube ", np.int64(64), texture=True)
    assert (g.prompt, g.resolution, g.texture) == ("a red cube", 64, 1024) and type(g.resolution) is int
    assert dataclasses.replace(g, resolution=16).texture == 1024  # a copy is checked again, and passes
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.prompt = "   "  # type: ignore[misc]
    c = Chain([(0, " a "), (2.5, "b")], np.int64(2))
    assert c.keyframes == ((0.0, "a"), (2.5, "b")) and c.positions == [0.0, 2.5] and c.prompts == ["a", "b"]


def test_generate_runs_its_numbered_steps_with_one_progress_callback(engine, pipeline):
    reports: list[tuple[float, str]] = []
    mesh = engine.run(Generate("a red cube", 32), lambda f, m: reports.append((f, m)) and False)
    messages = [m for _, m in reports]
    firsts = [messages.index(m) for _, m in GENERATE_STEPS]
    assert firsts == sorted(firsts) and messages[-1] == "done"  # 1. encode, 2. grid, 3. mesh, in order
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    # the steps are the pipeline's, in this order: the same mesh
    direct = pipeline.mesh(pipeline.modulate(pipeline.embed("a red cube")), 32, smooth=DEFAULT_SMOOTH)
    assert isinstance(mesh, MeshData) and np.array_equal(mesh.positions, direct.positions)
    assert np.array_equal(mesh.faces, direct.faces) and mesh.meta["prompt"] == "a red cube"
    assert mesh.meta["model"] == "tiny" and mesh.meta["resolution"] == 32


def test_a_progress_answer_of_true_stops_it_between_steps(engine):
    seen = []

    def stop_at_the_grid(frac, msg):
        seen.append(msg)
        return msg == GENERATE_STEPS[1][1]

    with pytest.raises(CancelledError):
        engine.run(Generate("a red cube", 32), stop_at_the_grid)
    assert seen == [GENERATE_STEPS[0][1], GENERATE_STEPS[1][1]]


def test_every_operation_answers_in_the_wires_types(engine):
    seq = engine.run(Chain([(0, "a red cube"), (1, "a blue sphere")], 2, 24))
    assert isinstance(seq, SequenceData) and seq.consistent and len(seq.steps) == 3
    assert seq.meta["steps_per_segment"] == 2 and seq.meta["converged"] == [p.on_surface for p in seq.pieces]
    assert all(len(p.on_surface) == len(p.held) == len(p.times) for p in seq.pieces)
    loose = engine.run(Chain([(0, "a red cube"), (1, "a blue sphere")], 2, 24, consistent=False))
    assert [type(m) for m in loose.meshes] == [MeshData] * 3 and loose.meshes[1].meta["chain_position"] == 0.5
    assert isinstance(engine.run(Blend("a red cube", "a blue sphere", 0.25, 24)), MeshData)
    near = engine.run(Nearest("a red cube", 1))
    assert isinstance(near, Neighbors) and near.far is False and near.neighbors[0].prompt == "a red cube"
    info = engine.info()
    assert isinstance(info, ServerInfo) and info.model == "tiny" and ServerInfo.from_dict(info.as_dict()) == info
    with pytest.raises(TypeError, match="not a request"):
        engine.run({"prompt": "a red cube"})


@pytest.fixture
def prompt_checks(monkeypatch):
    """How often the backend checks a prompt (the engine's one reference to the wire's check)."""
    calls = []
    real = engine_mod.check_prompt

    def counting(prompt, *a):
        calls.append(prompt)
        return real(prompt, *a)

    monkeypatch.setattr(engine_mod, "check_prompt", counting)
    return calls


def test_each_path_checks_a_prompt_once(engine, prompt_checks, tiny_model_dir, tmp_path):
    from backend.cli import main
    from backend.service.app import OPERATIONS
    from backend.service.schemas import GenerateRequest

    engine.generate("a red cube", 24)  # the embedded client's path
    assert prompt_checks == ["a red cube"]
    prompt_checks.clear()
    body = GenerateRequest(prompt="a  red cube", resolution=24)  # the service: the route's body ...
    OPERATIONS["generate"](engine, body.request(), lambda f, m: False)  # ... then the worker's job
    assert prompt_checks == ["a  red cube"]
    prompt_checks.clear()
    assert main(["-q", "generate", "a red cube", "--model", str(tiny_model_dir), "--resolution", "24",
                 "--out", str(tmp_path / "a.glb")]) == 0
    assert prompt_checks == ["a red cube"]
