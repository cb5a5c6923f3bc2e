"""session.get_client: preferences -> resolved BackendSettings -> make_client(settings), cached, errors
readable; the preferences' old mode value (SUBPROCESS, 0.1) loads as LOCAL."""
import types

import pytest


@pytest.fixture
def factory(monkeypatch, bpy_module):
    import blender_att3d.client as client_pkg
    from blender_att3d.lifecycle import session

    calls = []

    def make_client(settings, on_stage=None):
        calls.append((settings, on_stage))
        return types.SimpleNamespace(close=lambda: calls.append(("closed",)))

    monkeypatch.setattr(client_pkg, "make_client", make_client, raising=False)
    session.set_override(None)
    session.close()
    yield calls
    session.close()


def _prefs(**kw):
    base = dict(mode="AUTO", model="demo", device="AUTO", python_path="", url="", token="")
    base.update(kw)
    return types.SimpleNamespace(**base)


def test_modes_and_cache(factory):
    import sys

    from blender_att3d.lifecycle import session

    c1 = session.get_client(_prefs())
    assert session.get_client(_prefs()) is c1  # cached while the settings stay the same
    # automatic: torch and att3d are in this Python, so the backend runs in-process
    (s, on_stage), = factory
    assert (s.mode, s.model, s.device, on_stage) == ("embedded", "demo", "auto", None)
    session.get_client(_prefs(mode="LOCAL", python_path=f" '{sys.executable}' ", device="CUDA"))
    assert factory[-2] == ("closed",)
    s, on_stage = factory[-1]
    assert callable(on_stage)  # the start names its stages
    assert (s.mode, s.model, s.device, s.python, s.source) == ("local", "demo", "cuda", sys.executable,
                                                               "the Python field")
    session.get_client(_prefs(mode="REMOTE", url="http://127.0.0.1:8765", token="s3cret"))
    s, _ = factory[-1]
    assert (s.mode, s.url, s.token) == ("remote", "http://127.0.0.1:8765", "s3cret")


def test_remote_needs_online_access_and_url(factory):
    from blender_att3d.client.base import BackendUnavailable
    from blender_att3d.lifecycle import session

    with pytest.raises(BackendUnavailable, match="Online access"):
        session.get_client(_prefs(mode="REMOTE", url="https://gpu.example.org"))
    with pytest.raises(BackendUnavailable, match="URL"):
        session.get_client(_prefs(mode="REMOTE"))
    assert factory == []


def test_start_failure_is_backend_unavailable(monkeypatch, bpy_module):
    import blender_att3d.client as client_pkg
    from blender_att3d.client.base import BackendUnavailable
    from blender_att3d.lifecycle import session

    def boom(settings, on_stage=None):
        raise OSError("python not found")

    monkeypatch.setattr(client_pkg, "make_client", boom, raising=False)
    session.set_override(None)
    session.close()
    with pytest.raises(BackendUnavailable, match="Could not start the embedded backend: python not found"):
        session.get_client(_prefs(mode="EMBEDDED"))


def test_check_backend_replaces_a_dead_client(monkeypatch, bpy_module, scene):
    """A backend that died after its one automatic restart stays failed for ordinary requests
    (a clear error each time); "Check Backend" drops it, starts a fresh one and says so."""
    from fakes import FakeClient

    import blender_att3d.client as client_pkg
    from blender_att3d import jobs
    from blender_att3d.client.base import BackendUnavailable
    from blender_att3d.lifecycle import session

    bpy = bpy_module
    made = []

    def make_client(settings, on_stage=None):
        dead = BackendUnavailable("it stopped (status -9) and was already restarted once")
        made.append(FakeClient(fail=dead) if not made else FakeClient())
        return made[-1]

    monkeypatch.setattr(client_pkg, "make_client", make_client, raising=False)
    session.set_override(None)
    session.close()
    try:
        with pytest.raises(RuntimeError, match="already restarted once"):
            bpy.ops.att3d.generate(prompt="a chair", synchronous=True)
        assert "already restarted once" in jobs.status["main"][1]
        with pytest.raises(RuntimeError, match="already restarted once"):
            bpy.ops.att3d.generate(prompt="a chair", synchronous=True)
        assert len(made) == 1  # no restart loop behind the user's back
        assert bpy.ops.att3d.check_backend(synchronous=True) == {"FINISHED"}
        assert len(made) == 2 and jobs.status["backend"][0] == "CHECKMARK"
        assert bpy.ops.att3d.generate(prompt="a chair", synchronous=True) == {"FINISHED"}
        assert made[1].calls[-1][0] == "generate"
    finally:
        session.close()


def test_settings_are_read_once_on_the_main_thread(factory, monkeypatch, tmp_path):
    """current_settings() reads the preferences and finds the backend; client_for() (worker thread)
    reads no Blender data."""
    from blender_att3d.lifecycle import session

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    s = session.current_settings(_prefs(mode="LOCAL", python_path=f' "{venv}" ', device="CPU"))
    assert (s.mode, s.python, s.device, s.source) == ("local", str(py), "cpu", "the Python field")
    monkeypatch.setattr(session, "get_prefs", lambda: pytest.fail("read the preferences off the main thread"))
    session.client_for(s)
    assert factory[-1][0] is s


def test_a_wrong_python_field_is_one_sentence_at_once(factory, tmp_path):
    from blender_att3d.client.base import BackendUnavailable
    from blender_att3d.lifecycle import session

    with pytest.raises(BackendUnavailable, match=r"^The Python field: There is no file or folder at /nowhere/py$"):
        session.current_settings(_prefs(mode="LOCAL", python_path="/nowhere/py"))
    with pytest.raises(BackendUnavailable, match="is a folder without a Python interpreter"):
        session.current_settings(_prefs(mode="AUTO", python_path=str(tmp_path)))
    assert factory == []


def test_loopback():
    from blender_att3d.client.settings import is_loopback_url

    assert is_loopback_url("http://127.0.0.1:8765")
    assert is_loopback_url("http://localhost:1/x")
    assert is_loopback_url("http://[::1]:80")
    assert not is_loopback_url("https://att3d.example.com")
    assert not is_loopback_url("http://10.0.0.5:8765")


def test_an_old_saved_local_server_preference_loads_as_local(bpy_module):
    """Blender saves an enum preference as its number: LOCAL keeps the number SUBPROCESS had (2), so
    preferences saved by 0.1 load as the local backend; the client's settings still read the old name."""
    from blender_att3d import preferences
    from blender_att3d.client.settings import MODES, BackendSettings

    numbers = {item[0]: item[4] for item in preferences.MODES}
    assert numbers == {"AUTO": 0, "EMBEDDED": 1, "LOCAL": 2, "REMOTE": 3}  # 0.1: AUTO, EMBEDDED, SUBPROCESS, REMOTE
    assert [item[0].lower() for item in preferences.MODES] == list(MODES)  # one name per mode
    assert BackendSettings(mode="SUBPROCESS").mode == BackendSettings(mode="subprocess").mode == "local"

