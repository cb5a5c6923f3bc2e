"""The layering, checked on the source with ``ast`` (imports inside functions included):

* ``backend/`` and ``training/`` import nothing from the add-on package but ``blender_att3d.wire``;
* ``blender_att3d/wire/`` imports only the standard library, numpy and itself (no bpy, no torch);
* in the rest of the add-on, only the embedded client (``client/embedded.py``) imports ``backend``.
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``; ``from m import n`` yields ``m.n``
    too, since ``n`` may be a submodule (``from blender_att3d import client``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path, monkeypatch):
    pkg = tmp_path / "backend" / "service"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from blender_att3d.client import http\n\nfrom ..inference import y\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = {m for _, m in imported_modules(pkg / "x.py")}
    assert {"blender_att3d.client", "blender_att3d.client.http", "backend.inference", "backend.inference.y"} <= found


@pytest.mark.parametrize("folder", ["backend", "training"])
def test_backend_and_training_import_only_the_wire_from_the_add_on(folder):
    bad = [f"{p.relative_to(ROOT)}:{line}: {m}" for p in sources(folder) for line, m in imported_modules(p)
           if under(m, "blender_att3d") and not under(m, "blender_att3d.wire")]
    assert not bad, "only blender_att3d.wire may be imported from the add-on package:\n" + "\n".join(bad)


def test_the_wire_needs_only_the_standard_library_and_numpy():
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    bad = [f"{p.relative_to(ROOT)}:{line}: {m}" for p in sources("blender_att3d/wire")
           for line, m in imported_modules(p)
           if not under(m, "blender_att3d.wire") and m.split(".")[0] not in allowed]
    assert not bad, "blender_att3d/wire must import only the standard library and numpy:\n" + "\n".join(bad)


def test_only_the_embedded_client_imports_the_backend():
    # client/__init__.py probes ``importlib.import_module("backend.inference")`` to choose a transport:
    # a probe by name, not an import of the backend's code into the add-on.
    allowed = {ROOT / "blender_att3d" / "client" / "embedded.py"}
    bad = [f"{p.relative_to(ROOT)}:{line}: {m}" for p in sources("blender_att3d") if p not in allowed
           for line, m in imported_modules(p) if under(m, "backend")]
    assert not bad, "the add-on calls the backend in-process only through client/embedded.py:\n" + "\n".join(bad)
