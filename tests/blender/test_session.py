"""session.get_client: settings -> make_client(mode, **settings), cached, errors readable."""
import types

import pytest


@pytest.fixture
def factory(monkeypatch, bpy_module):
    import blender_att3d.client as client_pkg
    from blender_att3d.lifecycle import session

    calls = []

    def make_client(mode, **kw):
        calls.append((mode, kw))
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
    # automatic: torch and att3d import in this Python, so the backend runs in-process
    assert factory == [("embedded", {"model": "demo", "device": "auto"})]
    session.get_client(_prefs(mode="SUBPROCESS", python_path=f" '{sys.executable}' ", device="CUDA"))
    assert factory[-2] == ("closed",)
    mode, kw = factory[-1]
    assert mode == "subprocess" and callable(kw.pop("on_stage"))  # the start names its stages
    assert kw == {"model": "demo", "device": "cuda", "python": sys.executable}
    session.get_client(_prefs(mode="REMOTE", url="http://127.0.0.1:8765", token="s3cret"))
    assert factory[-1] == ("remote", {"model": "demo", "url": "http://127.0.0.1:8765", "token": "s3cret"})


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

    def boom(mode, **kw):
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

    def make_client(mode, **kw):
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
    s = session.current_settings(_prefs(mode="SUBPROCESS", python_path=f' "{venv}" ', device="CPU"))
    assert s["mode"] == "subprocess" and s["python"] == str(py) and s["device"] == "cpu"
    assert s["backend_source"] == "the Python field"
    monkeypatch.setattr(session, "get_prefs", lambda: pytest.fail("read the preferences off the main thread"))
    session.client_for(s)
    mode, kw = factory[-1]
    assert mode == "subprocess" and kw["python"] == str(py) and kw["device"] == "cpu"


def test_a_wrong_python_field_is_one_sentence_at_once(factory, tmp_path):
    from blender_att3d.client.base import BackendUnavailable
    from blender_att3d.lifecycle import session

    with pytest.raises(BackendUnavailable, match=r"^The Python field: There is no file or folder at /nowhere/py$"):
        session.current_settings(_prefs(mode="SUBPROCESS", python_path="/nowhere/py"))
    with pytest.raises(BackendUnavailable, match="is a folder without a Python interpreter"):
        session.current_settings(_prefs(mode="AUTO", python_path=str(tmp_path)))
    assert factory == []


def test_loopback():
    from blender_att3d.lifecycle import session

    assert session.is_loopback_url("http://127.0.0.1:8765")
    assert session.is_loopback_url("http://localhost:1/x")
    assert session.is_loopback_url("http://[::1]:80")
    assert not session.is_loopback_url("https://att3d.example.com")
    assert not session.is_loopback_url("http://10.0.0.5:8765")

