"""Build the att3d wheel and the installable extension zip that carries it.

    python -m blender_att3d.build --out dist               # dist/att3d-*.whl and dist/att3d-*.zip
    python -m blender_att3d.build --out dist --wheel-only  # dist/att3d-*.whl (``make wheel``)

The wheel (``pip wheel`` of this checkout) holds the backend with the shipped demo model and the
Shapes teacher as package data; :func:`check_wheel` refuses one without them. The extension stages
``blender_att3d/`` (the add-on code) with the repository's ``blender_manifest.toml`` at its root and
the wheel in ``backend_wheel/`` (not in the manifest's ``wheels``: Blender would install it into its
own Python, and the backend needs torch; *Set Up Local Backend* installs it into a separate
environment instead), then runs Blender's own extension tool (``blender_ext.py build`` and
``validate``, shipped inside the ``bpy`` package) on it. Prints the paths; exit code 1 on failure.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PKG = Path(__file__).resolve().parent
ROOT = PKG.parent
MANIFEST = ROOT / "blender_manifest.toml"
_SKIP_DIRS = {"__pycache__", ".pytest_cache"}


def find_blender_ext() -> Path:
    """``blender_ext.py`` inside the installed bpy package (found without importing bpy)."""
    env = os.environ.get("ATT3D_BLENDER_EXT")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.origin:
        raise SystemExit("error: cannot find Blender's extension tool: install bpy "
                         "(pip install 'att3d[test]') or set ATT3D_BLENDER_EXT to blender_ext.py")
    hits = sorted(glob.glob(str(Path(spec.origin).parent / "*" / "scripts" / "addons_core" / "bl_pkg" / "cli"
                                / "blender_ext.py")))
    if not hits:
        raise SystemExit(f"error: no blender_ext.py under {Path(spec.origin).parent}")
    return Path(hits[-1])


#: what the wheel must carry besides code: the shipped demo model and the Shapes teacher
WHEEL_DATA = ("backend/models/demo/config.json", "backend/models/demo/model.safetensors",
              "training/shapes/weights/teacher/unet/diffusion_pytorch_model.safetensors",
              "training/shapes/weights/teacher/unet/config.json",
              "training/shapes/weights/teacher/scheduler/scheduler_config.json")
WHEEL_DIR = "backend_wheel"  # setup_backend.WHEEL_DIR inside the extension


def check_wheel(path: Path) -> Path:
    """``path`` if it is an att3d wheel with the backend, the add-on's wire protocol and the data."""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
    needed = ["backend/cli.py", "backend/service/server.py", "blender_att3d/wire/payload.py", *WHEEL_DATA]
    missing = [n for n in needed if n not in names]
    if missing:
        raise SystemExit(f"error: {path.name} lacks {', '.join(missing)}")
    return path


def _newest_setuptools_env() -> dict[str, str]:
    """The environment for an offline build: the newest setuptools this Python can see goes first.

    Without build isolation pip builds with the setuptools imported first, and a venv's own bundled
    copy (65.5 in Python 3.11's venvs, too old for this pyproject's license field) can shadow a newer
    one further down ``sys.path`` (the 4.2 LTS test venv, which adds the main venv's packages).
    """
    from importlib.metadata import distributions

    def version(d) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", d.version)[:3])

    found = [d for d in distributions() if (d.metadata["Name"] or "").lower() == "setuptools"]
    env = dict(os.environ)
    if found:
        best = max(found, key=version)
        env["PYTHONPATH"] = os.pathsep.join([str(best.locate_file("")), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def build_wheel(out: Path) -> Path:
    """``pip wheel`` of this checkout into ``out`` (no dependencies, no build isolation: offline)."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # setuptools copies the packages into build/lib and never removes from it: a module deleted since
    # the last build would still go into the wheel
    shutil.rmtree(ROOT / "build" / "lib", ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="att3d-wheel-") as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-q", "-w", tmp, str(ROOT)], capture_output=True, text=True,
                           env=_newest_setuptools_env())
        if r.returncode != 0:
            raise SystemExit(f"error: building the wheel failed:\n{r.stdout}{r.stderr}")
        built = sorted(Path(tmp).glob("att3d-*.whl"))
        if not built:
            raise SystemExit("error: pip wheel wrote no att3d wheel")
        for old in out.glob("att3d-*.whl"):
            old.unlink()
        dest = out / built[0].name
        shutil.move(str(built[0]), dest)
    return check_wheel(dest)


def stage(dest: Path, wheel: Path | None = None) -> Path:
    """Copy the add-on, the manifest and (when given) the wheel into ``dest`` (the future zip root)."""
    def ignore(folder, names):
        return [n for n in names if n in _SKIP_DIRS or n == WHEEL_DIR or n.endswith((".pyc", ".pyo"))]

    shutil.copytree(PKG, dest, ignore=ignore)
    shutil.copy2(MANIFEST, dest / "blender_manifest.toml")
    if wheel is not None:
        (dest / WHEEL_DIR).mkdir()
        shutil.copy2(wheel, dest / WHEEL_DIR / wheel.name)
    return dest


def run_ext(tool: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)


def build(out: Path, validate: bool = True, wheel: Path | None | bool = True) -> Path:
    """The extension zip in ``out``; ``wheel``: True builds the att3d wheel into ``out`` first, a path
    bundles that one, False/None builds a client-only zip."""
    tool = find_blender_ext()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if wheel is True:
        wheel = build_wheel(out)
    with tempfile.TemporaryDirectory(prefix="att3d-ext-") as tmp:
        src = stage(Path(tmp) / "att3d", check_wheel(Path(wheel)) if wheel else None)
        r = run_ext(tool, "build", "--source-dir", str(src), "--output-dir", str(out))
        if r.returncode != 0:
            raise SystemExit(f"error: extension build failed:\n{r.stdout}{r.stderr}")
    zips = sorted(out.glob("att3d-*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips:
        raise SystemExit(f"error: the build wrote no zip into {out}")
    zpath = zips[-1]
    if validate:
        r = run_ext(tool, "validate", str(zpath))
        if r.returncode != 0:
            raise SystemExit(f"error: {zpath} does not validate:\n{r.stdout}{r.stderr}")
    return zpath


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m blender_att3d.build", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="dist", help="output folder (default: dist)")
    ap.add_argument("--no-validate", action="store_true", help="skip 'blender_ext.py validate'")
    ap.add_argument("--wheel-only", action="store_true", help="build only the att3d wheel (make wheel)")
    ap.add_argument("--wheel", help="bundle this att3d wheel instead of building one")
    ap.add_argument("--no-wheel", action="store_true", help="a client-only zip, without the backend's wheel")
    args = ap.parse_args(argv)
    if args.wheel_only:
        print(build_wheel(Path(args.out)))
        return 0
    wheel: Path | bool = False if args.no_wheel else Path(args.wheel) if args.wheel else True
    path = build(Path(args.out), validate=not args.no_validate, wheel=wheel)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
