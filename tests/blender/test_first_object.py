"""From a fresh Blender to the first object without a terminal (issue 14): the extension zip is
installed into a Blender whose Python has no torch, *Set Up Local Backend* installs a backend into
the extension's own folder for real (the installer, pip, the att3d wheel from the zip, the check,
the rename), and Generate makes an object through it. Runs on bpy 5.0.1 and, with
``make test-blender-lts``, on 4.2 LTS.

Installing torch twice is slow: here the new environment reuses the packages already installed in
this test environment (``ATT3D_SETUP_REUSE_SITE``: pip finds torch and the dependencies installed
and only installs the att3d wheel); ``tests/test_setup_backend.py`` installs everything for real.
"""
import importlib.util
import json
from pathlib import Path

import pytest
from conftest import HERE, run_python


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory):
    from blender_att3d import build

    return build.build(tmp_path_factory.mktemp("dist"), wheel=True)


def torch_site() -> str:
    """The site-packages folder that holds torch and the backend's dependencies here."""
    return str(Path(importlib.util.find_spec("torch").origin).parents[1])


@pytest.mark.slow
def test_a_new_user_gets_a_first_object_without_a_terminal(extension_zip, tmp_path):
    r = run_python([str(HERE / "first_object.py"), str(extension_zip), str(tmp_path)], timeout=1200,
                   env={"ATT3D_TORCH_INDEX": "default", "ATT3D_SETUP_REUSE_SITE": torch_site()})
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and line, r.stdout[-3000:] + r.stderr[-5000:]
    res = json.loads(line[-1][7:])
    print(json.dumps(res["steps"]), json.dumps(res["timings"]))  # the click-by-click times (pytest -s)
    assert res["defaults"] == ["AUTO", "", True] and res["wheel_in_extension"] == ["att3d-0.1.0-py3-none-any.whl"]
    # before any set-up: one sentence that says what to do, not a traceback about a module
    assert res["generate_before"].startswith("Backend unavailable: No ATT3D backend yet: click Set Up Local Backend")
    assert res["generate_before"].count("preferences") == 1
    assert res["setup_offline"].startswith("Online access is off: allow it in Preferences > System > Network")
    assert res["offline_left_nothing"]
    # the set-up: done, in the extension's own folder, with a clear end state
    assert res["setup_error"] is None, res["setup_error"]
    status_icon, status = res["setup_status"]
    assert status_icon == "CHECKMARK" and status.startswith("Backend ready: torch 2.13.0 CPU, model demo (1056 "
                                                            "training prompts), in "), status
    assert res["backend_dir_inside_user_dir"] and res["log_exists"] and res["no_partial_left"]
    stamp = res["stamp"]
    assert stamp["torch_variant"] == "cpu" and stamp["training_prompts"] == 1056 and stamp["test_vertices"] > 0
    assert res["found"][0] == "set up by the add-on" and res["found"][1] == stamp["python"]
    # the first object, through the local server the set-up made
    assert res["generate_error"] is None, res["generate_error"]
    assert "Purple cube wearing a red party hat" in res["objects"], res["objects"]
    assert res["server_python"] == stamp["python"]
    # every stage named, in order, with its time (a stage quicker than one poll of the server, e.g.
    # encoding a cached prompt, may pass unseen: its time counts in the next one)
    stages = [s for s, _ in res["timings"]]
    order = ["starting the backend", "loading the model", "loading the text encoder", "indexing the training prompts",
             "encoding the prompt", "building the grid", "extracting the mesh", "smoothing", "colouring",
             "receiving the result", "building the Blender object", "total from the click"]
    assert stages == [s for s in order if s in stages], stages
    assert {"starting the backend", "loading the model", "extracting the mesh", "building the Blender object"} \
        <= set(stages)
    total = dict(res["timings"])["total from the click"]
    assert abs(sum(t for s, t in res["timings"] if s != "total from the click") - total) < 0.5
    second = [s for s, _ in res["timings_second"]]
    assert second[-2:] == ["building the Blender object", "total from the click"]
    assert not {"starting the backend", "loading the model"} & set(second)  # warm: no start-up
    # honest closeness
    assert res["closeness"]["a medieval castle"][0] == "ERROR"
    assert res["closeness"]["a medieval castle"][1].startswith("Far from what the model was trained on")
    assert res["closeness"]["a purple cube wearing a red party hat"][0] == "CHECKMARK"
    # Check Backend: model, device, prompt count, examples
    assert res["check_status"] == ["CHECKMARK", "Backend OK: model demo on cpu, trained on 1056 prompts, att3d 0.1.0"]
    assert any(ln.startswith("Trained on, e.g.: 'a ") for ln in res["check_lines"])
    assert res["restart_error"] is None and res["restarted"]
    assert res["removed"] and res["server_stopped"]
    assert res["generate_after_remove"].startswith("Backend unavailable: No ATT3D backend yet")
    assert not res["torch_imported"]
