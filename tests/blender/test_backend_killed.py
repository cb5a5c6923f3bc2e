"""The local backend killed while it works on a Generate (the OOM killer, a crash; issue 26, item 6):
the add-on says so in one line, the job fails cleanly, the scene is untouched, and the next click
starts the backend again and works. A real ``att3d serve`` with a tiny model, killed by its pid."""
import os
import signal
import sys
import time
import types

import pytest


@pytest.fixture
def local_backend(monkeypatch, bpy_module, scene, tiny_model_dir):
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session

    prefs = types.SimpleNamespace(mode="LOCAL", model=str(tiny_model_dir), device="CPU",
                                  python_path=sys.executable, url="", token="", prestart=True)
    monkeypatch.setattr(session, "get_prefs", lambda: prefs)
    monkeypatch.setattr(jobs, "headless", lambda: False)  # the threaded path, as an artist clicks
    session.set_override(None)
    session.close()
    yield
    jobs.cancel_all()
    session.close()


def _wait(slot: str, timeout: float = 300) -> None:
    from blender_att3d import jobs

    deadline = time.monotonic() + timeout
    while jobs.busy(slot):
        assert time.monotonic() < deadline, jobs.active(slot).message
        time.sleep(0.02)
        jobs.poll()


@pytest.mark.slow  # starts a backend process, twice
def test_the_backend_killed_during_a_generate(bpy_module, local_backend):
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session

    bpy = bpy_module
    assert bpy.ops.att3d.generate(prompt="a red cube", resolution=16) == {"FINISHED"}
    _wait(jobs.MAIN)
    assert jobs.status[jobs.MAIN][0] == "CHECKMARK", jobs.status[jobs.MAIN]
    client = session.cached_client()
    first = client.pid
    before = sorted((o.name, o.data.name, len(o.data.vertices)) for o in bpy.data.objects)
    killed = []
    real_follow = client._follow

    def follow(*args, **kw):  # the server has taken the job: kill it, as the OOM killer would
        if not killed:
            os.kill(first, signal.SIGKILL)
            killed.append(first)
        return real_follow(*args, **kw)

    client._follow = follow
    assert bpy.ops.att3d.generate(prompt="a blue sphere", resolution=16) == {"FINISHED"}
    _wait(jobs.MAIN)
    del client._follow
    assert killed == [first]
    assert jobs.status[jobs.MAIN] == (
        "ERROR", "Backend unavailable: The ATT3D backend stopped while it worked on this job (killed by SIGKILL — "
        "the system does that when memory runs out). The job failed; the next one starts the backend again")
    assert sorted((o.name, o.data.name, len(o.data.vertices)) for o in bpy.data.objects) == before  # untouched
    # the next click starts the backend again and works
    assert bpy.ops.att3d.generate(prompt="a blue sphere", resolution=16) == {"FINISHED"}
    job = jobs.active(jobs.MAIN)
    _wait(jobs.MAIN)
    assert jobs.status[jobs.MAIN][0] == "CHECKMARK" and jobs.status[jobs.MAIN][1].startswith("Made 'Blue sphere'")
    assert any(stage.startswith("restarting the backend") for stage, _ in job.stages)  # it said what it waited for
    assert session.cached_client() is client and client.pid != first and client.restarts == 1
    assert "Blue sphere" in bpy.data.objects
