"""Set Up Local Backend behind a mirror, from the preferences (issue 26, item 4): the package index and
the PyTorch index to use are offered (pip's configured index a choice, what it is shown), reach the
installer's command line, and a custom index without a URL is one sentence before anything runs."""
import types

import pytest
from test_ui import Layout


def _prefs(**kw):
    from blender_att3d import preferences

    base = dict(mode="LOCAL", python_path="", setup_torch="CPU", show_setup_commands=False, prestart=True,
                setup_index="PIP", setup_index_url="", setup_torch_index="PYTORCH", setup_torch_index_url="",
                model="demo", device="AUTO", url="", token="", resolution=64,
                bl_rna=preferences.ATT3D_AddonPreferences.bl_rna)
    base.update(kw)
    return types.SimpleNamespace(**base)


@pytest.fixture
def no_backend_yet(monkeypatch, tmp_path, addon):
    """The extension's own folder, without a backend in it: the set-up is offered."""
    from blender_att3d import preferences
    from blender_att3d.lifecycle import local_backend, session

    monkeypatch.setattr(session, "user_root", lambda: str(tmp_path))
    monkeypatch.setattr(session, "online_access_message", lambda what: None)
    monkeypatch.setattr(local_backend, "att3d_on_path", lambda: None)
    monkeypatch.setattr(local_backend, "checkout_root", lambda: None)
    monkeypatch.setitem(preferences._pip_index, "label", "pip's configured index (https://mirror.studio.example/simple)")
    return tmp_path


@pytest.mark.parametrize("index, torch_index", [("PIP", "PYTORCH"), ("CUSTOM", "PIP"), ("PIP", "CUSTOM")])
def test_the_preferences_offer_the_indexes(bpy_module, no_backend_yet, index, torch_index):
    from blender_att3d import preferences

    log = []
    prefs = _prefs(setup_index=index, setup_torch_index=torch_index)
    preferences.draw_local(prefs, Layout(log, bpy_module))
    props = [e[1] for e in log if e[0] == "prop"]
    assert "setup_index" in props and "setup_torch_index" in props
    assert ("setup_index_url" in props) == (index == "CUSTOM")
    assert ("setup_torch_index_url" in props) == (torch_index == "CUSTOM")
    assert ("operator", "att3d.setup_backend") in log
    assert ("label", "Here, pip's configured index (https://mirror.studio.example/simple)", "INFO") in log
    cls = preferences.ATT3D_AddonPreferences.bl_rna.properties
    assert [i.identifier for i in cls["setup_index"].enum_items] == ["PIP", "CUSTOM"]
    assert [i.identifier for i in cls["setup_torch_index"].enum_items] == ["PYTORCH", "PIP", "CUSTOM"]
    assert cls["setup_index"].default == "PIP" and cls["setup_torch_index"].default == "PYTORCH"


class CapturedRun:
    """Set-up runs, replaced: what the installer would have been asked to do."""

    runs: list = []

    def __init__(self, user_root, torch="auto", indexes=None):
        from blender_att3d.lifecycle import setup_job

        self.args = setup_job.installer_args(user_root, torch, indexes)
        CapturedRun.runs.append(self)
        self.running = False
        self.result, self.cancelled, self.notes = {"python": "x", "torch": "2.13.0", "torch_variant": "cpu"}, False, []

    def wait(self, timeout=None):
        return True

    def end_text(self):
        return "Backend ready: fake"


@pytest.mark.parametrize("choices, flags", [
    ({}, []),
    ({"setup_torch_index": "PIP"}, ["--torch-index", "default"]),
    ({"setup_index": "CUSTOM", "setup_index_url": " https://mirror.studio.example/simple "},
     ["--index-url", "https://mirror.studio.example/simple"]),
    ({"setup_torch_index": "CUSTOM", "setup_torch_index_url": "https://mirror.studio.example/whl/cpu"},
     ["--torch-index", "https://mirror.studio.example/whl/cpu"]),
])
def test_set_up_passes_the_chosen_indexes_to_the_installer(bpy_module, no_backend_yet, monkeypatch, choices, flags):
    from blender_att3d.lifecycle import session, setup_job

    monkeypatch.setattr(session, "get_prefs", lambda: _prefs(**choices))
    monkeypatch.setattr(setup_job, "plan_for", lambda *args: None)  # (the wheel the extension zip carries)
    monkeypatch.setattr(setup_job, "SetupRun", CapturedRun)
    CapturedRun.runs.clear()
    try:
        assert bpy_module.ops.att3d.setup_backend(synchronous=True) == {"FINISHED"}
    finally:
        setup_job.current = None
    args = CapturedRun.runs[-1].args
    tail = args[args.index("off") + 1:]  # after --pip-cache off: the index options
    assert tail == flags


@pytest.mark.parametrize("choices, message", [
    ({"setup_index": "CUSTOM"}, "Set-up: Package Index: type the mirror's URL (e.g. https://mirror.example/simple), "
                                "or choose pip's configured index"),
    ({"setup_torch_index": "CUSTOM", "setup_torch_index_url": "mirror.example/whl"},
     "Set-up: PyTorch Index: 'mirror.example/whl' is not a package index URL (it starts with https://, http:// or "
     "file:)"),
])
def test_a_custom_index_without_a_usable_url_is_one_sentence(bpy_module, no_backend_yet, monkeypatch, choices,
                                                            message):
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session, setup_job

    monkeypatch.setattr(session, "get_prefs", lambda: _prefs(**choices))
    monkeypatch.setattr(setup_job, "SetupRun", CapturedRun)
    CapturedRun.runs.clear()
    with pytest.raises(RuntimeError, match="Set-up: "):
        bpy_module.ops.att3d.setup_backend(synchronous=True)
    assert jobs.status[jobs.BACKEND] == ("ERROR", message)
    assert not CapturedRun.runs and setup_job.current is None


def test_a_note_of_the_set_up_is_shown_while_it_runs_and_after(bpy_module, no_backend_yet):
    from blender_att3d import preferences
    from blender_att3d.lifecycle import setup_job

    note = ("the PyTorch index https://download.pytorch.org/whl/cpu cannot be reached (timed out): PyTorch comes "
            "from pip's configured index (https://mirror.studio.example/simple) instead")
    run = types.SimpleNamespace(running=True, percent=12, notes=[note], log="/x/backend-setup.log",
                                progress_text=lambda: "Installing PyTorch (CPU): 120 MB written (40 s)")
    setup_job.current = run
    try:
        log = []
        preferences.draw_setup(_prefs(), Layout(log, bpy_module), str(no_backend_yet))
    finally:
        setup_job.current = None
    assert ("progress", 0.12, "Installing PyTorch (CPU): 120 MB written (40 s) 12%") in log
    assert ("label", "The PyTorch index https://download.pytorch.org/whl/cpu cannot be reached (timed out): PyTorch "
            "comes from pip's configured index (https://mirror.studio.example/simple) instead", "INFO") in log
