"""The extension zip: built and validated by Blender's own tool, installed, enabled, disabled."""
import json
import zipfile

import pytest
from conftest import HERE, run_python


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    from blender_att3d import build

    return build.build(tmp_path_factory.mktemp("dist"))


def test_zip_layout_and_validation(built_zip):
    from blender_att3d import build

    with zipfile.ZipFile(built_zip) as z:
        names = set(z.namelist())
    assert {"blender_manifest.toml", "__init__.py", "builders/geometry.py", "client/base.py", "wire/types.py",
            "setup_backend.py", "backend_wheel/att3d-0.1.0-py3-none-any.whl"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert "build.py" not in names and "bench.py" not in names
    r = build.run_ext(build.find_blender_ext(), "validate", str(built_zip))
    assert r.returncode == 0, r.stdout + r.stderr
    # the validator really checks: a broken manifest fails
    bad = built_zip.with_name("bad.zip")
    with zipfile.ZipFile(built_zip) as src, zipfile.ZipFile(bad, "w") as dst:
        for n in src.namelist():
            data = src.read(n)
            if n == "blender_manifest.toml":
                data = data.replace(b'id = "att3d"', b'id = "att3d-bad id"')
            dst.writestr(n, data)
    assert build.run_ext(build.find_blender_ext(), "validate", str(bad)).returncode != 0


def test_the_wheel_carries_the_backend_and_its_data(built_zip, tmp_path):
    """``make wheel``: the backend with the shipped demo model and the teacher; a wheel without them
    is refused rather than shipped."""
    from blender_att3d import build

    wheel = built_zip.parent / "att3d-0.1.0-py3-none-any.whl"  # built beside the zip, and inside it
    with zipfile.ZipFile(built_zip) as z:
        assert z.read("backend_wheel/" + wheel.name) == wheel.read_bytes()
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        demo = json.loads(z.read("backend/models/demo/config.json"))
    assert set(build.WHEEL_DATA) <= names and "backend/cli.py" in names
    assert len(demo["provenance"]["prompts"]) == 1056
    stripped = tmp_path / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(stripped, "w") as dst:
        for n in src.namelist():
            if "models/demo" not in n:
                dst.writestr(n, src.read(n))
    with pytest.raises(SystemExit, match="lacks backend/models/demo/config.json"):
        build.check_wheel(stripped)


@pytest.mark.slow  # builds the extension zip and wheel (~2 s)
def test_build_cli(tmp_path):
    r = run_python(["-m", "blender_att3d.build", "--out", str(tmp_path / "w"), "--wheel-only"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("att3d-0.1.0-py3-none-any.whl") and not list((tmp_path / "w").glob("*.zip"))
    r = run_python(["-m", "blender_att3d.build", "--out", str(tmp_path), "--wheel",
                    str(tmp_path / "w" / "att3d-0.1.0-py3-none-any.whl")])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("att3d-0.1.0.zip") and (tmp_path / "att3d-0.1.0.zip").exists()


def test_install_enable_use_disable(built_zip, tmp_path):
    r = run_python([str(HERE / "ext_check.py"), str(built_zip), str(tmp_path)])
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
    assert r.returncode == 0 and line, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(line[-1][7:])
    assert res["installed_with"] == "package_install_files", res
    assert "blender_manifest.toml" in res["installed_files"]
    assert res["enabled"] and res["panel"] and res["scene_prop"]
    assert res["prefs"] == ["AUTO", "demo", "AUTO"]
    assert res["user_dir_inside"] and res["cache_under_user_dir"]
    assert "Red cube" in res["generated"]
    assert res["status"][0] == "CHECKMARK"
    assert not res["torch_before"] and not res["torch_after"], "the add-on must not import torch"
    assert res["disabled"] and not res["panel_after"] and not res["scene_prop_after"] and not res["op_after"]
