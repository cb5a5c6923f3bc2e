"""Honest closeness to the training prompts (issues 14, 26): far is a warning that names the words
new to the model and offers the nearest known prompts as buttons that put them in the prompt field,
close a check mark, and a model that does not list its training prompts ("far": null) shows as
unknown, never as a check; Check Backend shows the model, the device, how many prompts it knows and
a few of them."""
import json
import types

import pytest
from conftest import ROOT
from fakes import FakeClient

from blender_att3d.wire.types import Neighbors, ServerInfo


class UnknownPromptsClient(FakeClient):
    """A model without provenance.prompts: the service answers far=null."""

    def nearest(self, prompt, k=5):
        return Neighbors.from_dict({"neighbors": [], "distance": None, "far": None, "known_prompts": 0,
                                    "message": "this model does not list its training prompts"})

    def info(self):
        return ServerInfo.from_dict({"model": "mystery", "device": "cpu", "training_prompts": 0,
                                     "training_prompts_known": False})


def _draw(bpy, panel):
    """What ``panel`` shows: labels (text, icon) and operator buttons (idname, text, properties)."""
    from test_ui import Layout

    log = []

    class Recording(Layout):
        def operator(self, idname, text="", icon="NONE", **k):
            props = super().operator(idname, **k)
            self.log.append(("button", idname, text, props))
            return props

    panel.draw(types.SimpleNamespace(layout=Recording(log, bpy)), bpy.context)
    return log


def _labels(bpy, panel):
    return [(e[1], e[2]) for e in _draw(bpy, panel) if e[0] == "label"]


@pytest.mark.parametrize("prompt, icon, text", [
    ("a red cube", "CHECKMARK", "Close to what the model was trained on (every word is one it knows)"),
    ("a far zebra", "ERROR", "Far from what the model was trained on (new to it: 'far', 'zebra')"),
])
def test_far_and_close_in_the_operator_and_the_panel(bpy_module, scene, prompt, icon, text):
    from blender_att3d import jobs, live, panels

    bpy = bpy_module
    scene.att3d.prompt = prompt
    assert bpy.ops.att3d.check_prompt(synchronous=True) == {"FINISHED"}
    assert jobs.status["nearest"] == (icon, text)
    head, detail = text[:-1].split(" (", 1)
    labels = _labels(bpy, panels.ATT3D_PT_main)
    assert (head, icon) in labels and (detail[0].upper() + detail[1:], "BLANK1") in labels
    buttons = [e for e in _draw(bpy, panels.ATT3D_PT_main) if e[0] == "button" and e[1] == "att3d.use_prompt"]
    if icon == "ERROR":  # the nearest known prompts, as buttons that put them in the field
        assert [(b[2], b[3].prompt) for b in buttons] == [(p, p) for p in ("a red cube", "a blue sphere",
                                                                           "a green cone")]
        assert ("Known prompts to try:", "BLANK1") in labels
    else:
        assert buttons == [] and live.prompt_suggestions(prompt) == []


def test_a_suggestion_click_puts_it_in_the_prompt_field(bpy_module, scene):
    from blender_att3d import live

    bpy = bpy_module
    scene.att3d.prompt = "a far zebra"
    live.check_prompt_sync(scene.att3d.prompt)
    suggestion = live.prompt_suggestions(scene.att3d.prompt)[1]
    assert bpy.ops.att3d.use_prompt(prompt=suggestion) == {"FINISHED"}
    assert scene.att3d.prompt == "a blue sphere"
    live.check_prompt_sync(scene.att3d.prompt)  # (the field's update schedules this where timers run)
    assert live.prompt_warning(scene.att3d.prompt) is None
    with pytest.raises(RuntimeError, match="prompt is empty"):
        bpy.ops.att3d.use_prompt(prompt="  ")
    assert scene.att3d.prompt == "a blue sphere"  # a bad one leaves the field as it was


def test_an_older_server_without_word_lists_still_warns(bpy_module, scene):
    """A server from before the word measure sends far and neighbours with distances only."""
    from blender_att3d import jobs, live

    jobs.nearest_cache["a castle"] = Neighbors.from_dict({"far": True, "distance": 0.9,
                                                          "neighbors": [{"prompt": "a red cube", "distance": 0.9}]})
    jobs.nearest_cache["a red cube"] = Neighbors.from_dict({"far": False, "distance": 0.0,
                                                            "neighbors": [{"prompt": "a red cube", "distance": 0.0}]})
    assert not jobs.nearest_cache["a castle"].words_measured
    assert live.prompt_closeness("a castle") == ("ERROR", "Far from what the model was trained on")
    assert live.prompt_suggestions("a castle") == ["a red cube"]
    assert live.prompt_closeness("a red cube") == ("CHECKMARK", "Close to what the model was trained on")


def test_unknown_is_unknown_never_a_check_mark(bpy_module, scene):
    from blender_att3d import jobs, live, panels
    from blender_att3d.lifecycle import session

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
    from blender_att3d import jobs, panels
    from blender_att3d.lifecycle import session

    bpy = bpy_module

    class Demo(FakeClient):
        def info(self):
            return ServerInfo.from_dict({
                "model": "demo", "device": "cuda:0", "version": "0.1.0", "training_prompts": 992,
                "training_prompts_known": True, "versions": {"att3d": "0.1.0", "torch": "2.13.0"},
                "training_prompt_examples": ["a red sphere", "a blue cube on a black plate", "a pink torus",
                                             "a green cone", "a black capsule"]})

    session.set_override(Demo())
    assert bpy.ops.att3d.check_backend(synchronous=True) == {"FINISHED"}
    assert jobs.status["backend"] == ("CHECKMARK", "Backend OK: model demo on cuda:0, trained on 992 prompts, "
                                                   "att3d 0.1.0")
    labels = [t for t, _ in _labels(bpy, panels.ATT3D_PT_backend)]
    assert "att3d 0.1.0, torch 2.13.0" in labels
    assert "Trained on, e.g.: 'a red sphere'; 'a blue cube on a black plate'; 'a pink torus'" in labels


class DemoWordsClient(FakeClient):
    """The service's measure (backend/nearest.py) over the shipped demo's own 1056 training prompts,
    without its text encoder (no torch in Blender's Python): the verdicts and the words named are the
    service's; only the order of suggestions for unknown words may differ (no word vectors)."""

    def __init__(self):
        super().__init__()
        from backend.nearest import PromptIndex, training_prompts

        config = json.loads((ROOT / "backend" / "models" / "demo" / "config.json").read_text())
        self.index = PromptIndex(training_prompts(config))

    def nearest(self, prompt, k=5):
        return Neighbors.from_dict({"prompt": prompt, **self.index.query(prompt, k)})


def test_what_an_artist_sees_with_the_demo(bpy_module, scene):
    from blender_att3d import panels
    from blender_att3d.lifecycle import session

    bpy = bpy_module
    session.set_override(DemoWordsClient())

    def shown(prompt):
        scene.att3d.prompt = prompt
        assert bpy.ops.att3d.check_prompt(synchronous=True) == {"FINISHED"}
        log = _draw(bpy, panels.ATT3D_PT_main)
        return ([(e[1], e[2]) for e in log if e[0] == "label"],
                [e[2] for e in log if e[0] == "button" and e[1] == "att3d.use_prompt"])

    for known in ("a black sphere", "a tree in the winter"):  # demo v3 trained on the seasonal trees
        labels, buttons = shown(known)
        assert ("Close to what the model was trained on", "CHECKMARK") in labels and buttons == []
        assert ("Every word is one it knows", "BLANK1") in labels
    for prompt, words in (("a snowman in the winter", "'snowman'"), ("a medieval castle", "'medieval', 'castle'")):
        labels, buttons = shown(prompt)
        assert ("Far from what the model was trained on", "ERROR") in labels
        assert (f"New to it: {words}", "BLANK1") in labels
        assert len(buttons) == 3 and all(b in demo_training_prompts() for b in buttons), buttons
        assert bpy.ops.att3d.use_prompt(prompt=buttons[0]) == {"FINISHED"}
        labels, buttons = shown(scene.att3d.prompt)  # the suggestion is one the model knows
        assert ("Close to what the model was trained on", "CHECKMARK") in labels and buttons == []


def demo_training_prompts():
    config = json.loads((ROOT / "backend" / "models" / "demo" / "config.json").read_text())
    return set(config["provenance"]["prompts"])
