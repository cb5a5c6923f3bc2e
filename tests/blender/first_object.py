"""A new artist's whole path, run in a fresh process by test_first_object.py: Blender (its own Python:
no torch) and the extension zip, nothing else. Install the zip, enable it, try Generate (told to set
a backend up), Set Up Local Backend (refused while online access is off, then done for real), Generate,
check prompts near and far, Check Backend, Restart Backend, Remove Backend, disable. Prints one
``RESULT {json}`` line with what it saw and the time of each step."""
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.modules["torch"] = None  # Blender's own Python has no PyTorch: `import torch` fails here
os.environ.pop("ATT3D_CACHE", None)  # as for an artist: the add-on keeps its caches in its own folder
zip_path, work = Path(sys.argv[1]), Path(sys.argv[2])
import bpy  # noqa: E402, I001 (bpy first: addon_utils only imports once bpy is loaded)
import addon_utils  # noqa: E402

out: dict = {"steps": []}


@contextmanager
def step(name):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        out["steps"].append([name, round(time.perf_counter() - t0, 2)])


def error_of(fn):
    """The message of the error an operator reported (bpy.ops raises it as RuntimeError)."""
    try:
        fn()
    except RuntimeError as e:
        return str(e).removeprefix("Error: ").strip()
    return None


prefs = bpy.context.preferences
repo_dir = work / "repo"
repo_dir.mkdir(parents=True, exist_ok=True)
prefs.extensions.repos.new(name="att3d_test", module="att3d_test", custom_directory=str(repo_dir), source="USER")
with step("install the extension zip (Install from Disk)"):
    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="att3d_test", enable_on_install=False)
name = "bl_ext.att3d_test.att3d"
with step("enable the add-on"):
    addon_utils.enable(name, default_set=True, handle_error=None)
mods = {m: sys.modules[f"{name}.{m}"] for m in ("jobs",)}
mods.update({m: sys.modules[f"{name}.lifecycle.{m}"] for m in ("session", "setup_job", "local_backend")})
jobs, session = mods["jobs"], mods["session"]
p = prefs.addons[name].preferences
out["defaults"] = [p.mode, p.python_path, p.prestart]
user_root = Path(bpy.utils.extension_path_user(name, create=True))
out["wheel_in_extension"] = sorted(x.name for x in (repo_dir / "att3d" / "backend_wheel").glob("*.whl"))

with step("Generate before any set-up"):
    out["generate_before"] = error_of(lambda: bpy.ops.att3d.generate(prompt="a red cube", synchronous=True))

prefs.system.use_online_access = False
with step("Set Up Local Backend with online access off"):
    out["setup_offline"] = error_of(lambda: bpy.ops.att3d.setup_backend(synchronous=True))
out["offline_left_nothing"] = not (user_root / "backend").exists()

prefs.system.use_online_access = True  # the artist allows it (Preferences > System > Network)
with step("Set Up Local Backend"):
    out["setup_error"] = error_of(lambda: bpy.ops.att3d.setup_backend(synchronous=True))
run = mods["setup_job"].current
out["setup_status"] = list(jobs.status.get("backend", ("", "")))
out["setup_stages"] = run.stage if run else None
backend_dir = user_root / "backend"
out["backend_dir_inside_user_dir"] = str(backend_dir.resolve()).startswith(
    str(Path(os.environ["BLENDER_USER_RESOURCES"]).resolve()))
out["stamp"] = json.loads((backend_dir / "att3d-backend.json").read_text()) if backend_dir.exists() else None
out["log_exists"] = (user_root / "backend-setup.log").exists()
out["no_partial_left"] = not (user_root / ".backend.partial").exists()
found = mods["local_backend"].find(p.python_path, str(user_root))
out["found"] = [found.source, found.python]

with step("Generate (the first: starts the backend)"):
    out["generate_error"] = error_of(lambda: bpy.ops.att3d.generate(prompt="a purple cube wearing a red party hat",
                                                                    synchronous=True))
out["objects"] = [o.name for o in bpy.data.objects]
out["main_status"] = list(jobs.status.get("main", ("", "")))
out["timings"] = [[k, round(v, 3)] for k, v in jobs.timings.get("main", [])]
client = session.cached_client()
out["server_python"] = getattr(client, "python", None)
with step("Generate again (the backend is warm)"):
    bpy.ops.att3d.generate(prompt="a green torus", synchronous=True)
out["timings_second"] = [[k, round(v, 3)] for k, v in jobs.timings.get("main", [])]

closeness = {}
for prompt in ("a medieval castle", "a purple cube wearing a red party hat"):
    bpy.context.scene.att3d.prompt = prompt
    with step(f"Check Prompt '{prompt}'"):
        bpy.ops.att3d.check_prompt(synchronous=True)
    closeness[prompt] = list(jobs.status.get("nearest", ("", "")))
out["closeness"] = closeness

with step("Check Backend"):
    bpy.ops.att3d.check_backend(synchronous=True)
out["check_status"] = list(jobs.status.get("backend", ("", "")))
out["check_lines"] = jobs.backend_info.lines()
old_pid = getattr(session.cached_client(), "pid", None)
with step("Restart Backend"):
    out["restart_error"] = error_of(lambda: bpy.ops.att3d.restart_backend(synchronous=True))
new_client = session.cached_client()
out["restarted"] = old_pid is not None and getattr(new_client, "pid", None) not in (None, old_pid)

with step("Remove Backend"):
    bpy.ops.att3d.remove_backend("EXEC_DEFAULT", synchronous=True)
out["removed"] = not backend_dir.exists() and not (user_root / "backend-setup.log").exists()
out["server_stopped"] = new_client is not None and (new_client.proc is None or new_client.proc.poll() is not None)
out["generate_after_remove"] = error_of(lambda: bpy.ops.att3d.generate(prompt="a red cube", synchronous=True))
addon_utils.disable(name, default_set=True, handle_error=None)
out["torch_imported"] = bool(sys.modules.get("torch"))
print("RESULT " + json.dumps(out))
