"""Request batching on a model replica, without Ray: generate jobs that arrive together share one
mapping-network pass and give the meshes one job at a time gives (to float rounding); a bad prompt in
a batch fails only its own job."""
from __future__ import annotations

import numpy as np
import pytest
from studio_harness import need_ray

from backend.engine import Generate, InvalidInput
from blender_att3d.wire.job_state import JobState

PROMPTS = ["a red cube", "a blue sphere", "a green cone"]


def test_modulations_in_one_pass_match_one_at_a_time(engine):
    together = engine.modulations([Generate(p) for p in PROMPTS])
    for prompt, mod in zip(PROMPTS, together):
        alone = engine.pipeline.modulate(engine.pipeline.embed(prompt))
        assert mod.v.shape == alone.v.shape and mod.params.shape == alone.params.shape
        np.testing.assert_allclose(mod.params.numpy(), alone.params.numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(mod.v.numpy(), alone.v.numpy(), rtol=0, atol=1e-5)


class Replica:
    """The model replica's batch code (``StudioModel._run_all``) on an engine of this process."""

    def __init__(self, engine) -> None:
        need_ray()  # a test dependency: without it this fails, saying how to install it
        from backend.service.app import OPERATIONS
        from backend.studio.deployments import StudioModel

        self.cls = StudioModel.func_or_class
        self.engine, self.operations, self.reports = engine, OPERATIONS, []

    def _progress(self, job_id):
        return lambda frac, msg: self.reports.append((job_id, frac, msg)) and False

    def run(self, specs):
        return self.cls._run_all(self, specs)

    def _run_one(self, spec, modulation):
        return self.cls._run_one(self, spec, modulation)


def test_a_batch_shares_the_mapping_pass_and_keeps_errors_apart(engine, monkeypatch):
    replica = Replica(engine)
    calls = []
    real = engine.modulations
    monkeypatch.setattr(engine, "modulations", lambda reqs: calls.append([r.prompt for r in reqs]) or real(reqs))
    specs = [{"id": f"j{i}", "kind": "generate", "params": Generate(p, 24)} for i, p in enumerate(PROMPTS)]
    outcomes = replica.run(specs)
    assert calls == [PROMPTS]  # one mapping pass for the three
    for prompt, out in zip(PROMPTS, outcomes):
        assert out.status == JobState.DONE
        alone = engine.generate(prompt, 24)
        assert out.result.meta == alone.meta and out.result.faces.shape[1] == 3
        assert abs(len(out.result.positions) - len(alone.positions)) <= 0.01 * len(alone.positions)
    assert {r[0] for r in replica.reports} == {"j0", "j1", "j2"}

    # a blank prompt never becomes a request (the ingress answers 422); a prompt the model then fails
    # on (here its encoder refuses it) fails its own job only: the batch runs the others one by one
    with pytest.raises(InvalidInput, match="prompt"):
        Generate("   ", 24)
    embed = engine.pipeline.embed

    def picky(prompts):
        if "a broken prompt" in ([prompts] if isinstance(prompts, str) else list(prompts)):
            raise ValueError("the text encoder cannot read this prompt")
        return embed(prompts)

    monkeypatch.setattr(engine.pipeline, "embed", picky)
    bad = [*specs[:2], {"id": "bad", "kind": "generate", "params": Generate("a broken prompt", 24)}]
    outcomes = replica.run(bad)
    assert [o.status for o in outcomes] == [JobState.DONE, JobState.DONE, JobState.ERROR]
    assert outcomes[2].error[0] == 400 and "prompt" in outcomes[2].error[1]
