"""Build the installable extension zip: ``python -m blender_att3d.build --out dist``.

Stages ``blender_att3d/`` (the add-on code) with the repository's ``blender_manifest.toml`` at its
root, then runs Blender's own extension tool (``blender_ext.py build`` and ``validate``, shipped
inside the ``bpy`` package) on it. Prints the zip's path; exit code 1 on failure.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
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


def stage(dest: Path) -> Path:
    """Copy the add-on and the manifest into ``dest`` (the future zip root)."""
    def ignore(folder, names):
        return [n for n in names if n in _SKIP_DIRS or n.endswith((".pyc", ".pyo"))]

    shutil.copytree(PKG, dest, ignore=ignore)
    shutil.copy2(MANIFEST, dest / "blender_manifest.toml")
    return dest


def run_ext(tool: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)


def build(out: Path, validate: bool = True) -> Path:
    tool = find_blender_ext()
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="att3d-ext-") as tmp:
        src = stage(Path(tmp) / "att3d")
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
    args = ap.parse_args(argv)
    path = build(Path(args.out), validate=not args.no_validate)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
