"""The add-on's import structure: no cycles among ``blender_att3d`` modules (imports inside functions
count: a lazy import only hides a cycle), the headless batch never reaches a UI module, and the
bpy-free helpers import without bpy. Read from the source with ``ast``; nothing is imported here.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

from conftest import ROOT, run_python

PACKAGE = "blender_att3d"
# Modules that exist for the interactive UI: the headless batch must not import any of them.
UI_MODULES = ("addon", "operators", "panels", "properties", "preferences", "live", "jobs")


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``root``."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``name`` imports anywhere in its file (functions included).

    ``from PKG import a, b`` depends on the submodules ``PKG.a``/``PKG.b``, and on ``PKG`` itself only
    for names that are not submodules (a package's ``__init__`` always runs first anyway).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            deps.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - (node.level - 1)])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names]
            deps.update(s for s in subs if s in known)
            if any(s not in known for s in subs):
                deps.add(mod)
    deps.discard(name)  # batch.py imports itself when run as a script (blender -b -P batch.py)
    return {d for d in deps if d in known}


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    known = module_files(root, package)
    return {name: imported_modules(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def test_no_import_cycles_lazy_imports_included():
    graph = import_graph()
    assert {"blender_att3d.operators", "blender_att3d.operators.run", "blender_att3d.builders.chain"} <= set(graph)
    assert "blender_att3d.live" in graph["blender_att3d.properties"]  # the update callbacks' import is seen
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


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
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert find_cycle(graph) in (["pkg.a", "pkg.sub.b", "pkg.a"], ["pkg.sub.b", "pkg.a", "pkg.sub.b"])
    (pkg / "sub" / "b.py").write_text("import pkg.sub\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None


def test_batch_imports_no_ui_module():
    graph = import_graph()
    reached = closure(graph, "blender_att3d.batch")
    ui = {m for m in reached for u in UI_MODULES if m == f"{PACKAGE}.{u}" or m.startswith(f"{PACKAGE}.{u}.")}
    assert not ui, f"the headless batch reaches UI modules: {sorted(ui)}"
    assert {"blender_att3d.placement", "blender_att3d.builders.chain", "blender_att3d.inputs"} <= reached


def test_bpy_free_modules_import_without_bpy():
    code = textwrap.dedent("""
        import sys
        sys.modules["bpy"] = None  # any `import bpy` now raises ImportError
        import blender_att3d.naming, blender_att3d.keyframes, blender_att3d.inputs, blender_att3d.colors
        import blender_att3d.choices, blender_att3d.session, blender_att3d.wire
        from blender_att3d import session
        assert session.get_prefs() is None and session.user_dir() is None
        assert "torch" not in sys.modules
        print("OK")
    """)
    r = run_python(code, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr
