"""Honest closeness to the training prompts (issue 14): far is a warning, close a check mark, and a
model that does not list its training prompts ("far": null) shows as unknown, never as a check;
Check Backend shows the model, the device, how many prompts it knows and a few of them."""
import types

import pytest
from fakes import FakeClient


class UnknownPromptsClient(FakeClient):
    """A model without provenance.prompts: the service answers far=null."""

    def nearest(self, prompt, k=5):
        return {"neighbors": [], "distance": None, "far": None, "known_prompts": 0,
                "message": "this model does not list its training prompts"}

    def info(self):
        return {"model": "mystery", "device": "cpu", "training_prompts": 0, "training_prompts_known": False}


def _labels(bpy, panel):
    from test_ui import Layout

    log = []
    panel.draw(types.SimpleNamespace(layout=Layout(log, bpy)), bpy.context)
    return [(e[1], e[2]) for e in log if e[0] == "label"]


@pytest.mark.parametrize("prompt, icon, text", [
    ("a red cube", "CHECKMARK", "Close to the training prompts (nearest: 'a red cube')"),
    ("a far zebra", "ERROR", "Far from what the model was trained on; closest: 'a red cube'"),
])
def test_far_and_close_in_the_operator_and_the_panel(bpy_module, scene, prompt, icon, text):
    from blender_att3d import jobs, panels

    bpy = bpy_module
    scene.att3d.prompt = prompt
    assert bpy.ops.att3d.check_prompt(synchronous=True) == {"FINISHED"}
    assert jobs.status["nearest"] == (icon, text)
    assert (text, icon) in _labels(bpy, panels.ATT3D_PT_main)


def test_unknown_is_unknown_never_a_check_mark(bpy_module, scene):
    from blender_att3d import jobs, live, panels, session

    bpy = bpy_module
    session.set_override(UnknownPromptsClient())
    scene.att3d.prompt = "a medieval castle"
    assert bpy.ops.att3d.check_prompt(synchronous=True) == {"FINISHED"}
    assert jobs.status["nearest"] == ("QUESTION", live.UNKNOWN)
    assert live.prompt_warning("a medieval castle") is None
    labels = _labels(bpy, panels.ATT3D_PT_main)
    assert (live.UNKNOWN, "QUESTION") in labels
    assert not any(icon == "CHECKMARK" for _, icon in labels)
    # Check Backend says so too
    assert bpy.ops.att3d.check_backend(synchronous=True) == {"FINISHED"}
    assert jobs.status["backend"] == ("CHECKMARK", "Backend OK: model mystery on cpu, training prompts unknown")
    labels = [t for t, _ in _labels(bpy, panels.ATT3D_PT_backend)]
    assert "This model does not list its training prompts: closeness to them cannot be told" in labels


def test_check_backend_shows_model_device_prompt_count_and_examples(bpy_module, scene):
    from blender_att3d import jobs, panels, session

    bpy = bpy_module

    class Demo(FakeClient):
        def info(self):
            return {"model": "demo", "device": "cuda:0", "version": "0.1.0", "training_prompts": 992,
                    "training_prompts_known": True, "versions": {"att3d": "0.1.0", "torch": "2.13.0"},
                    "training_prompt_examples": ["a red sphere", "a blue cube on a black plate", "a pink torus",
                                                 "a green cone", "a black capsule"]}

    session.set_override(Demo())
    assert bpy.ops.att3d.check_backend(synchronous=True) == {"FINISHED"}
    assert jobs.status["backend"] == ("CHECKMARK", "Backend OK: model demo on cuda:0, trained on 992 prompts, "
                                                   "att3d 0.1.0")
    labels = [t for t, _ in _labels(bpy, panels.ATT3D_PT_backend)]
    assert "att3d 0.1.0, torch 2.13.0" in labels
    assert "Trained on, e.g.: 'a red sphere'; 'a blue cube on a black plate'; 'a pink torus'" in labels
