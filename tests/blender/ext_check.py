"""Run in a fresh process by test_extension.py: install the built zip from a local repository,
enable it as ``bl_ext.<repo>.att3d``, use it, disable it. Prints one JSON line with what it saw."""
import json
import os
import sys
import zipfile
from pathlib import Path

zip_path, work = Path(sys.argv[1]), Path(sys.argv[2])
import bpy  # noqa: E402, I001 (bpy first: addon_utils only imports once bpy is loaded)
import addon_utils  # noqa: E402

out = {"torch_before": "torch" in sys.modules}
prefs = bpy.context.preferences
repo_dir = work / "repo"
repo_dir.mkdir(parents=True, exist_ok=True)
repo = prefs.extensions.repos.new(name="att3d_test", module="att3d_test", custom_directory=str(repo_dir),
                                  source="USER")
try:  # Blender's own "Install from Disk" into that repository
    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="att3d_test", enable_on_install=False)
    out["installed_with"] = "package_install_files"
except Exception as e:  # fall back to unpacking the zip where the repository keeps packages
    out["install_error"] = str(e)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(repo_dir / "att3d")
    out["installed_with"] = "unzip"
out["installed_files"] = sorted(p.name for p in (repo_dir / "att3d").iterdir())
name = "bl_ext.att3d_test.att3d"
mod = addon_utils.enable(name, default_set=True, handle_error=None)
out["enabled"] = mod is not None and name in prefs.addons
out["panel"] = hasattr(bpy.types, "ATT3D_PT_main")
out["scene_prop"] = hasattr(bpy.context.scene, "att3d")
p = prefs.addons[name].preferences
out["prefs"] = [p.mode, p.model, p.device]
user = bpy.utils.extension_path_user(name, create=True)
out["user_dir_inside"] = str(Path(user).resolve()).startswith(str(Path(os.environ["BLENDER_USER_RESOURCES"]).resolve()))
bc = sys.modules[name + ".lifecycle.session"]
cache = bc.current_settings().cache_dir  # where the backend's caches go (ATT3D_CACHE / cache_dir)
out["cache_under_user_dir"] = bool(cache) and Path(user).resolve() in Path(cache).resolve().parents
# generate through the installed copy with a fake client
sys.path.insert(0, str(Path(__file__).parent))
from fakes import FakeClient  # noqa: E402

sys.modules[name + ".lifecycle.session"].set_override(FakeClient())
bpy.ops.att3d.generate(prompt="a red cube", synchronous=True)
out["generated"] = [o.name for o in bpy.data.objects]
bpy.ops.att3d.check_backend(synchronous=True)
out["status"] = sys.modules[name + ".jobs"].status.get("backend")
out["torch_after"] = "torch" in sys.modules
addon_utils.disable(name, default_set=True, handle_error=None)
out["disabled"] = name not in prefs.addons
out["panel_after"] = hasattr(bpy.types, "ATT3D_PT_main")
try:
    bpy.ops.att3d.generate.poll()
    out["op_after"] = True
except AttributeError:  # "could not be found": unregistered
    out["op_after"] = False
out["scene_prop_after"] = hasattr(bpy.types.Scene, "att3d")
print("RESULT " + json.dumps(out))
