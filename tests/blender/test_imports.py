"""The add-on's import structure: the headless batch never reaches a UI module, and the bpy-free
helpers import without bpy. The import graph is read from the source with ``ast`` by the walker the
project-wide cycle test uses (tests/import_graph.py; that test is in tests/test_boundaries.py).
"""
from __future__ import annotations

import textwrap

from conftest import run_python
from import_graph import closure, import_graph

PACKAGE = "blender_att3d"
# Modules that exist for the interactive UI: the headless batch must not import any of them.
UI_MODULES = ("addon", "operators", "panels", "properties", "preferences", "live", "jobs")


def test_batch_imports_no_ui_module():
    graph = import_graph(packages=[PACKAGE])
    reached = closure(graph, "blender_att3d.batch")
    ui = {m for m in reached for u in UI_MODULES if m == f"{PACKAGE}.{u}" or m.startswith(f"{PACKAGE}.{u}.")}
    assert not ui, f"the headless batch reaches UI modules: {sorted(ui)}"
    assert {"blender_att3d.placement", "blender_att3d.builders.chain", "blender_att3d.inputs"} <= reached


def test_bpy_free_modules_import_without_bpy():
    code = textwrap.dedent("""
        import sys
        sys.modules["bpy"] = None  # any `import bpy` now raises ImportError
        import blender_att3d.naming, blender_att3d.keyframes, blender_att3d.inputs, blender_att3d.colors
        import blender_att3d.choices, blender_att3d.lifecycle.session, blender_att3d.wire
        from blender_att3d.lifecycle import session
        assert session.get_prefs() is None and session.user_dir() is None
        assert "torch" not in sys.modules
        print("OK")
    """)
    r = run_python(code, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr
