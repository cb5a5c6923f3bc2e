"""Headless Blender tests (the ``bpy`` 5.0.1 module, a declared test dependency).

bpy can be imported once per process: one session-wide import with the add-on registered by hand,
and ``read_factory_settings(use_empty=True)`` before every test. Tests that need a pristine Blender
(installing the built extension) run their own subprocess. ``BLENDER_USER_RESOURCES`` points to a
temporary folder so nothing touches the user's Blender configuration.
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
USER_RESOURCES = tempfile.mkdtemp(prefix="att3d-blender-user-")
atexit.register(shutil.rmtree, USER_RESOURCES, ignore_errors=True)
os.environ["BLENDER_USER_RESOURCES"] = USER_RESOURCES
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)
if str(HERE.parent) not in sys.path:  # tests/import_graph.py, shared with tests/test_boundaries.py
    sys.path.append(str(HERE.parent))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.blender)


_exit_status = {}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """The bpy 4.2 module crashes while the interpreter finalises once its glTF exporter has run;
    leave the way the batch entry point does, with pytest's own exit status."""
    if "bpy" in sys.modules and "code" in _exit_status:
        from blender_att3d.batch import exit_process, module_crashes_on_exit

        if module_crashes_on_exit():
            exit_process(_exit_status["code"])


def import_bpy():
    try:
        import bpy
    except ImportError as e:  # a declared test dependency: fail loudly, never skip
        pytest.fail(f"the Blender tests need the bpy module ({e}); install it with "
                    f"`pip install bpy==5.0.1` (Python 3.11), e.g. `pip install -e '.[test]'`", pytrace=False)
    return bpy


@pytest.fixture(scope="session")
def bpy_module():
    return import_bpy()


@pytest.fixture(scope="session")
def addon(bpy_module):
    import blender_att3d

    blender_att3d.register()
    yield sys.modules["blender_att3d"]
    blender_att3d.unregister()


@pytest.fixture
def fake():
    from fakes import FakeClient

    return FakeClient()


@pytest.fixture
def scene(bpy_module, addon, fake):
    """A fresh empty scene with the add-on registered and the fake client injected."""
    from blender_att3d import jobs
    from blender_att3d.lifecycle import session

    bpy = bpy_module
    bpy.ops.wm.read_factory_settings(use_empty=True)
    jobs.cancel_all()
    jobs.status.clear()
    jobs.nearest_cache.clear()
    session.set_override(fake)
    yield bpy.context.scene
    jobs.cancel_all()
    session.set_override(None)


def run_python(code_or_args, timeout=120, env=None, cwd=None):
    """Run the venv's Python in a subprocess (own bpy) with a private BLENDER_USER_RESOURCES."""
    import subprocess

    e = dict(os.environ)
    user = tempfile.mkdtemp(prefix="att3d-blender-user-")
    e["BLENDER_USER_RESOURCES"] = user
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), e.get("PYTHONPATH", "")])
    e.update(env or {})
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else list(code_or_args)
    try:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=e,
                              cwd=cwd or str(ROOT))
    finally:
        shutil.rmtree(user, ignore_errors=True)
