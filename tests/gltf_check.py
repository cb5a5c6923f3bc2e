"""The Khronos glTF validator (npm ``gltf-validator``, run by Node) for the export tests.

``make tools`` (a dependency of ``make test``) installs it into ``.tools/``. Where Node is absent the
tests that need it skip, saying so; where Node is present but the validator is not installed they
fail, with the command that installs it.
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / ".tools" / "node_modules" / "gltf-validator"
SCRIPT = Path(__file__).resolve().parent / "tools" / "validate_gltf.js"
INSTALL = "npm install --prefix .tools gltf-validator@2.0.0-dev.3.10  (or: make tools)"


def validate(*paths: Path) -> list[dict]:
    """Validation reports (the validator's JSON) of glTF/GLB files."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: the Khronos glTF validator (npm gltf-validator) needs it")
    if not (VALIDATOR / "package.json").exists():
        pytest.fail(f"the Khronos glTF validator is not installed in {VALIDATOR.parent.parent}: {INSTALL}",
                    pytrace=False)
    r = subprocess.run([node, str(SCRIPT), str(VALIDATOR), *map(str, paths)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def assert_valid(*paths: Path, allow_warnings: bool = False) -> list[dict]:
    """Zero errors (and zero warnings unless allowed) for every file; returns the reports."""
    reports = validate(*paths)
    for path, rep in zip(paths, reports):
        issues = rep["issues"]
        bad = [m for m in issues["messages"] if m["severity"] == 0 or (m["severity"] == 1 and not allow_warnings)]
        assert not bad, f"{path.name}: {json.dumps(bad, indent=1)[:3000]}"
    return reports


def glb_json(path: Path) -> dict:
    """The JSON chunk of a GLB file."""
    data = Path(path).read_bytes()
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    assert magic == b"glTF" and version == 2
    length, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON"
    return json.loads(data[20:20 + length])


def read_accessor(path: Path, gltf: dict, index: int):
    """Accessor ``index`` of a GLB file as a numpy array ``[count, width]`` (tightly packed views)."""
    import numpy as np

    data = Path(path).read_bytes()
    (json_len,) = struct.unpack_from("<I", data, 12)
    binary = data[20 + json_len + 8:]
    acc = gltf["accessors"][index]
    view = gltf["bufferViews"][acc["bufferView"]]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
    dtype = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}[acc["componentType"]]
    out = np.frombuffer(binary, dtype, acc["count"] * width, view["byteOffset"] + acc.get("byteOffset", 0))
    return out.reshape(acc["count"], width)


def first_primitive(path: Path) -> dict:
    """``{attribute: array}`` of the first primitive of the first mesh of a GLB (plus ``indices``)."""
    gltf = glb_json(path)
    prim = gltf["meshes"][0]["primitives"][0]
    out = {name: read_accessor(path, gltf, i) for name, i in prim["attributes"].items()}
    if "indices" in prim:
        out["indices"] = read_accessor(path, gltf, prim["indices"]).reshape(-1, 3)
    return out
