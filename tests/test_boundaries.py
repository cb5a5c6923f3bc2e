"""The import structure, checked on the source with ``ast`` (imports inside functions included; the
walker is tests/import_graph.py):

* no import cycles among the project's modules (backend/, training/ and blender_att3d/ together);
* ``backend/`` and ``training/`` import nothing from the add-on package but ``blender_att3d.wire``;
* ``blender_att3d/wire/`` imports only the standard library, numpy and itself (no bpy, no torch);
* in the rest of the add-on, only the embedded client (``client/embedded.py``) imports ``backend``;
* ``backend/`` never imports ``training/``; no bpy in either, no torch in the add-on;
* no pickles, and files are replaced only by the atomic writer (``blender_att3d/wire/fileio.py``, which
  ``backend/fileio.py`` re-exports): ARCHITECTURE.md;
* in ``backend/``, only ``backend/engine.py`` checks prompts and resolutions (its requests, checked once
  when made, are what every caller runs); the rules are ``blender_att3d/wire/limits.py``'s. The add-on
  (the client side) may check too, before sending: a prompt field's error at once, and the HTTP
  client against the server's own limits without a round trip.
"""
from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest
from import_graph import ROOT, find_cycle, import_graph, imported_modules, under


def sources(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path):
    pkg = tmp_path / "backend" / "service"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from blender_att3d.client import http\n\nfrom ..inference import y\n")
    found = {m for _, m in imported_modules(pkg / "x.py", tmp_path)}
    assert {"blender_att3d.client", "blender_att3d.client.http", "backend.inference", "backend.inference.y"} <= found


def test_cycle_finder_sees_imports_inside_functions(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "b.py").write_text(textwrap.dedent("""
        def later():
            from .. import a
            return a
    """))
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert find_cycle(graph) in (["pkg.a", "pkg.sub.b", "pkg.a"], ["pkg.sub.b", "pkg.a", "pkg.sub.b"])
    (pkg / "sub" / "b.py").write_text("import pkg.sub\n")
    assert find_cycle(import_graph(tmp_path, ["pkg"])) is None


def test_cycle_finder_sees_cycles_across_packages(tmp_path):
    for pkg, body in (("lower", "def f():\n    import upper.b\n"), ("upper", "from lower.a import f\n")):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
        (tmp_path / pkg / ("a.py" if pkg == "lower" else "b.py")).write_text(body)
    cycle = find_cycle(import_graph(tmp_path, ["lower", "upper"]))
    assert cycle is not None and set(cycle) == {"lower.a", "upper.b"}


def test_no_import_cycles_in_the_project_lazy_imports_included():
    graph = import_graph()
    # the walk reaches all three packages and sees imports inside functions
    assert {"backend.mesh", "training.loop", "training.modes", "blender_att3d.operators.run",
            "blender_att3d.builders.chain"} <= set(graph)
    assert "blender_att3d.live" in graph["blender_att3d.properties"]  # the update callbacks' lazy import
    assert "backend.renderer" in graph["backend.model"]  # ATT3D.render's lazy import
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


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


def test_backend_never_imports_training():
    # backend/cli.py finds training's subcommands by name (PLUGINS, importlib): `att3d generate` and the
    # service run without the training package's dependencies
    bad = [f"{p.relative_to(ROOT)}:{line}: {m}" for p in sources("backend") for line, m in imported_modules(p)
           if under(m, "training")]
    assert not bad, "imports go one way, training -> backend:\n" + "\n".join(bad)


BLENDER_MODULES = ("bpy", "bpy_extras", "bmesh", "mathutils", "addon_utils", "gpu")


@pytest.mark.parametrize("folder", ["backend", "training"])
def test_backend_and_training_never_import_blender(folder):
    bad = [f"{p.relative_to(ROOT)}:{line}: {m}" for p in sources(folder) for line, m in imported_modules(p)
           if m.split(".")[0] in BLENDER_MODULES]
    assert not bad, f"{folder}/ must run without Blender:\n" + "\n".join(bad)


def test_the_add_on_never_imports_torch():
    # the embedded client reaches torch only through ``backend`` (checked above), never by itself
    bad = [f"{p.relative_to(ROOT)}:{line}: {m}" for p in sources("blender_att3d") for line, m in imported_modules(p)
           if under(m, "torch")]
    assert not bad, "the add-on must import without torch:\n" + "\n".join(bad)


def test_no_pickles():
    """Weights, checkpoints and caches are safetensors + JSON: no pickle module, no torch.save/torch.load."""
    bad = []
    for p in sources("backend", "training", "blender_att3d"):
        bad += [f"{p.relative_to(ROOT)}:{line}: {m}" for line, m in imported_modules(p)
                if m.split(".")[0] in ("pickle", "dill", "joblib", "cloudpickle")]
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr in ("save", "load")
                    and isinstance(node.value, ast.Name) and node.value.id == "torch"):
                bad.append(f"{p.relative_to(ROOT)}:{node.lineno}: torch.{node.attr}")
    assert not bad, "no pickles: use safetensors and JSON (written by backend/fileio.py):\n" + "\n".join(bad)


def test_files_are_replaced_only_by_the_atomic_writer():
    """Every write that replaces a file goes through the atomic writer (temp file, fsync, rename):
    blender_att3d/wire/fileio.py, which backend/fileio.py re-exports, so the add-on (the batch's .blend
    and exports, any export operator) uses the same code. The one exception is the backend set-up,
    a script run by path from Blender's Python, which moves whole environment folders into place."""
    allowed = {ROOT / "blender_att3d" / "wire" / "fileio.py", ROOT / "blender_att3d" / "lifecycle" / "setup_backend.py"}
    bad = [f"{p.relative_to(ROOT)}:{node.lineno}: os.{node.attr}"
           for p in sources("backend", "training", "blender_att3d") if p not in allowed
           for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
           if isinstance(node, ast.Attribute) and node.attr in ("replace", "rename", "renames")
           and isinstance(node.value, ast.Name) and node.value.id == "os"]
    assert not bad, "write through wire/fileio.py (atomic_write_*, atomic_output, atomic_files, " \
        "write_folder_atomically):\n" + "\n".join(bad)



CHECKS = ("check_prompt", "check_resolution")


def check_uses(path: Path, root: Path = ROOT) -> list[str]:
    """Where ``path`` names the prompt or resolution check: a call, an attribute, an import."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [node.id] if isinstance(node, ast.Name) else [node.attr] if isinstance(node, ast.Attribute) else \
            [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
        found += [f"{path.relative_to(root)}:{node.lineno}: {n}" for n in names if n in CHECKS]
    return found


def test_only_the_engine_checks_prompts_and_resolutions_in_the_backend(tmp_path):
    engine = ROOT / "backend" / "engine.py"
    bad = [use for p in sources("backend") if p != engine for use in check_uses(p)]
    assert not bad, "check requests in backend/engine.py (make an engine request), not here:\n" + "\n".join(bad)
    # the engine does check both, with the protocol's rules
    assert {u.rsplit(" ", 1)[1] for u in check_uses(engine)} == set(CHECKS)
    limits = ast.parse((ROOT / "blender_att3d" / "wire" / "limits.py").read_text(encoding="utf-8"))
    assert set(CHECKS) <= {n.name for n in limits.body if isinstance(n, ast.FunctionDef)}
    # the walk finds each way of reaching them: an import under another name, an attribute
    probe = tmp_path / "x.py"
    probe.write_text("from blender_att3d.wire import check_prompt as cp\nimport blender_att3d.wire.limits as lim\n"
                     "lim.check_resolution(32)\n")
    assert [u.split(": ")[1] for u in check_uses(probe, tmp_path)] == ["check_prompt", "check_resolution"]
