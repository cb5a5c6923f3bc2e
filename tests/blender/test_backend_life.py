"""The backend's life in the add-on (issue 14): started ahead of time, named stages with the time
since the click, the forgiving Python field checked as it changes, and messages that never repeat
themselves."""
import sys
import threading
import time
import types

import pytest
from fakes import FakeClient


def _prefs(**kw):
    base = dict(mode="LOCAL", model="demo", device="AUTO", python_path=sys.executable, url="", token="",
                prestart=True)
    base.update(kw)
    return types.SimpleNamespace(**base)


class SlowStart(FakeClient):
    """A backend whose start takes a while and names its stages, like a local server."""


@pytest.fixture
def starting(monkeypatch, bpy_module, scene):
    """make_client that takes ``release`` to finish starting, naming two stages on the way."""
    import blender_att3d.client as client_pkg
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session

    release = threading.Event()
    made = []

    def make_client(settings, on_stage=None):
        on_stage and on_stage("loading the model")
        assert release.wait(10), "never released"
        on_stage and on_stage("indexing the training prompts")
        made.append(SlowStart())
        return made[-1]

    monkeypatch.setattr(client_pkg, "make_client", make_client, raising=False)
    monkeypatch.setattr(jobs, "headless", lambda: False)
    session.set_override(None)
    session.close()
    yield types.SimpleNamespace(release=release, made=made)
    release.set()
    jobs.cancel_all()
    session.close()


def test_the_backend_starts_ahead_and_the_first_generate_waits_for_it_naming_its_stages(
        bpy_module, scene, starting, monkeypatch):
    from blender_att3d import jobs
    from blender_att3d.lifecycle import prestart, session

    bpy = bpy_module
    monkeypatch.setattr(session, "get_prefs", lambda: _prefs())
    assert prestart.prestart() is True  # what enabling the add-on or loading a file does
    assert jobs.busy(jobs.BACKEND) and jobs.active(jobs.BACKEND).label == "Starting the backend"
    assert prestart.prestart() is False  # already starting: not twice
    # the artist clicks Generate while it starts: the job waits for that start and says so
    assert bpy.ops.att3d.generate(prompt="a teapot") == {"FINISHED"}
    job = jobs.active(jobs.MAIN)
    deadline = time.monotonic() + 10
    while job.message != "loading the model":
        assert time.monotonic() < deadline, job.message
        time.sleep(0.02)
    from blender_att3d.panels import progress_text

    assert progress_text(job).startswith("Generating 'a teapot': loading the model — ")
    starting.release.set()
    jobs.wait(jobs.BACKEND)
    jobs.wait(jobs.MAIN)
    assert len(starting.made) == 1  # one backend, started once, used by both
    assert jobs.status[jobs.BACKEND][0] == "CHECKMARK" and "(started in " in jobs.status[jobs.BACKEND][1]
    assert jobs.status[jobs.MAIN] == ("CHECKMARK", "Made 'Teapot' (222 vertices)") or \
        jobs.status[jobs.MAIN][1].startswith("Made 'Teapot'")
    stages = [s for s, _ in jobs.timings[jobs.MAIN]]
    assert stages[0] == "loading the model" and stages[-2:] == ["building the Blender object", "total from the click"]
    assert "step 1/3" in stages  # the work's own stages follow
    total = dict(jobs.timings[jobs.MAIN])["total from the click"]
    assert total == pytest.approx(sum(t for s, t in jobs.timings[jobs.MAIN][:-1]), abs=0.3)
    # a second generate finds it ready: no start-up stage
    assert bpy.ops.att3d.generate(prompt="a cup") == {"FINISHED"}
    jobs.wait(jobs.MAIN)
    assert "loading the model" not in dict(jobs.timings[jobs.MAIN])


def test_no_start_ahead_when_asked_not_to_or_headless(bpy_module, scene, starting, monkeypatch):
    from blender_att3d import jobs
    from blender_att3d.lifecycle import prestart, session

    monkeypatch.setattr(session, "get_prefs", lambda: _prefs(prestart=False))
    assert prestart.prestart() is False and not jobs.busy(jobs.BACKEND)
    monkeypatch.setattr(session, "get_prefs", lambda: _prefs())
    monkeypatch.setattr(jobs, "headless", lambda: True)  # blender -b: timers never fire
    assert prestart.prestart() is False and not starting.made
    # with no backend anywhere, the start ahead says what to do instead of failing later
    monkeypatch.setattr(jobs, "headless", lambda: False)
    monkeypatch.setattr(session, "get_prefs", lambda: _prefs(python_path="/nowhere/python"))
    assert prestart.prestart() is False
    assert jobs.status[jobs.BACKEND] == ("INFO", "The Python field: There is no file or folder at /nowhere/python")


def test_start_ahead_is_hooked_to_loading_files(bpy_module, addon):
    from blender_att3d.lifecycle import prestart

    assert prestart.on_load_post in bpy_module.app.handlers.load_post


def test_restart_backend_button(bpy_module, scene, monkeypatch):
    import blender_att3d.client as client_pkg
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session

    made = []
    monkeypatch.setattr(client_pkg, "make_client", lambda mode, **kw: made.append(FakeClient()) or made[-1],
                        raising=False)
    monkeypatch.setattr(session, "get_prefs", lambda: _prefs())
    session.set_override(None)
    session.close()
    try:
        assert bpy_module.ops.att3d.check_backend(synchronous=True) == {"FINISHED"}
        assert bpy_module.ops.att3d.restart_backend(synchronous=True) == {"FINISHED"}
        assert len(made) == 2 and session.cached_client() is made[1]
        assert jobs.status[jobs.BACKEND][1].startswith("Restarted in ")
    finally:
        session.close()


def test_the_python_field_is_checked_as_it_changes(bpy_module, tmp_path):
    from pathlib import Path

    from blender_att3d import preferences

    venv = Path(sys.executable).parents[1]  # this test's own environment: it has att3d and torch
    for typed, icon, start in [
        (f"'{venv}' ", "CHECKMARK", "Python 3."),
        ("/nowhere/python", "ERROR", "There is no file or folder at /nowhere/python"),
        (str(tmp_path), "ERROR", f"{tmp_path} is a folder without a Python interpreter"),
    ]:
        preferences._python_changed(types.SimpleNamespace(python_path=typed), None)  # headless: checked now
        text, got_icon, sentence = preferences.python_check["result"]
        assert text == typed and got_icon == icon and sentence.startswith(start), sentence
        assert "\n" not in sentence and sentence.count(": ") <= 1  # one plain sentence


def _messages():
    """What the add-on says in the usual failures, as the artist reads it (status / report)."""
    import subprocess

    from blender_att3d import jobs
    from blender_att3d.client.base import BackendUnavailable
    from blender_att3d.client.http import SubprocessClient

    out = []
    tmp = __import__("tempfile").mkdtemp()
    fake = f"{tmp}/python"
    with open(fake, "w") as f:
        f.write("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'backend'\" >&2\nexit 1\n")
    subprocess.run(["chmod", "+x", fake], check=True)
    for kw in ({"python": "/nonexistent/python3"}, {"python": fake, "start_timeout": 20}):
        try:
            SubprocessClient(**kw)
        except BackendUnavailable as e:
            out.append(jobs.describe_error(e))
    from blender_att3d.lifecycle import session

    for prefs in (_prefs(python_path="/nowhere/py"), _prefs(mode="REMOTE", url="")):
        try:
            session.current_settings(prefs)
        except BackendUnavailable as e:
            out.append(jobs.describe_error(e))
    return out


def test_no_message_repeats_itself(bpy_module):
    msgs = _messages()
    assert len(msgs) == 4, msgs
    for m in msgs:
        assert m.count("preferences") <= 1, m
        parts = [p.strip() for p in m.replace(" — ", "; ").split(";")]
        assert len(parts) == len(set(parts)), m
    assert "check the Python interpreter in the add-on preferences" in msgs[0]  # never started: it is the cause
    assert msgs[1].endswith("'ModuleNotFoundError: No module named 'backend'' — this Python has no att3d: use Set "
                            "Up Local Backend, or pick the Python of an environment with att3d and PyTorch in the "
                            "add-on preferences")
