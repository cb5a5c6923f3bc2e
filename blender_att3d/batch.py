"""Headless batch: prompts (and a prompt chain) -> a .blend, optionally exported meshes.

Usage (the ``bpy`` module, or Blender itself)::

    python -m blender_att3d.batch --prompts prompts.txt [--chain chain.txt] --out scene.blend \
        [--export-dir DIR --format glb|obj|usd] [--model demo] [--resolution N] \
        [--origin base|center] [--height METRES] [--spacing METRES] [--no-camera] \
        [--backend auto|embedded|local|remote] [--python PY] [--url URL --token-file FILE]
    blender -b -P blender_att3d/batch.py -- --prompts prompts.txt --out scene.blend

Backends, as in the add-on: ``embedded`` runs the model in this Python (needs torch); ``local``
starts ``att3d serve`` for the batch and stops it at the end (``--python``, else the backend the
add-on set up, else ``att3d`` on PATH, else this checkout); ``remote`` talks to a running server
(``--url``, ``--token-file`` or ``ATT3D_TOKEN``). ``auto`` (default): embedded when torch imports
here, else local: Blender's own Python, which has no torch, works through a local server.

The scene: every object with its origin at its bottom centre (``--origin``), scaled to ``--height``
if given, on a grid whose cells fit the objects (never overlapping, ``--spacing`` apart), the chain
last; a camera framing them all and a sun (``--camera``, on by default), so opening the .blend and
rendering (F12) gives a lit, framed image; the frame range is the chain's. Exports sit at the
origin, upright, in metres; GLB colours are ``COLOR_0`` (linear, what viewers show).

Runs synchronously through the same placement and mesh-building code as the add-on's UI
(:func:`blender_att3d.placement.place_generated` and :func:`blender_att3d.placement.build_chain_objects`,
which use :mod:`blender_att3d.builders`), and never imports the UI modules. Progress goes to stderr.

Prompts file (``--prompts``, UTF-8), any of
  * text: one prompt per line; blank lines and lines starting with ``#`` are ignored;
  * JSON (``.json``, or starting with ``[``): ``["a red cube", "a blue sphere"]`` or
    ``[{"prompt": "a red cube", "name": "Hero", "location": [0, 2, 0]}, …]`` (name and location optional;
    the location is the object's origin in metres, the others fill the grid);
  * CSV (``.csv``, or a first row of these column names): a ``prompt`` column, optional ``name`` and
    ``location`` (``"0, 2, 0"``) or ``x``, ``y``, ``z``; comma, semicolon or tab separated.
  Anything else (a CSV without a prompt column, JSON of another shape, an unknown field) is one line
  and exit 2, before anything is generated.

Chain file (``--chain``), either
  * text, one keyframe per line: ``FRAME<TAB>PROMPT`` (any whitespace after the frame number), blank
    lines and ``#`` comments ignored, e.g. ``1<TAB>a red cube`` / ``48<TAB>a blue sphere``; or
  * JSON: ``[[1, "a red cube"], [48, "a blue sphere"]]`` or
    ``{"keyframes": [{"frame": 1, "prompt": "a red cube"}, ...], "steps": 4}``.
  At least two keyframes on distinct frames. Keyframe k lands on its frame, the ``--steps`` meshes
  between two keyframes are spaced linearly between their frames.

Exit codes: 0 done; 2 bad arguments or input files (missing, unreadable, empty, malformed: one
line on stderr); 1 the backend or Blender failed, or a file could not be written (a full disk: one
line naming the file). Every file (the ``.blend``, each export) is written to a temporary file in
the same folder and renamed when complete, so a failed run never leaves a partial file and an
earlier file of the same name stays as it was.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = ("glb", "obj", "usd")


def _log(msg: str) -> None:
    print(f"att3d batch: {msg}", file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2 (argparse's own convention)
        self.exit(2, f"att3d batch: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    from .choices import DEFAULT_RESOLUTION

    ap = _Parser(prog="python -m blender_att3d.batch", description="Prompts -> .blend (headless)")
    ap.add_argument("--prompts", help="prompts file: text (one per line), JSON or CSV with a 'prompt' column "
                                      "(optional name, location; see the module docs)")
    ap.add_argument("--chain", help="chain file: 'FRAME<TAB>PROMPT' lines or JSON (see the module docs)")
    ap.add_argument("--out", required=True, help="the .blend to write")
    ap.add_argument("--export-dir", help="also export every result into this folder, each at the origin (a "
                    "chain: one animated GLB, or one file per step in OBJ/USD or for a mesh sequence)")
    ap.add_argument("--format", choices=FORMATS, default="glb", help="export format (default glb)")
    ap.add_argument("--model", default="demo", help="model name or folder (default demo)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--resolution", type=int, default=DEFAULT_RESOLUTION,
                    help=f"marching-cubes resolution (default {DEFAULT_RESOLUTION}, as in the add-on)")
    ap.add_argument("--texture", action="store_true", help="bake textures instead of vertex colours")
    ap.add_argument("--steps", type=int, default=None, help="chain meshes per segment (default 4)")
    ap.add_argument("--chain-mode", choices=("shape_keys", "sequence"), default="shape_keys")
    ap.add_argument("--max-states", type=int, default=None,
                    help="shape keys: at most this many stored states per segment (default: the backend's, 2 × steps)")
    ap.add_argument("--interpolation", choices=("linear", "ease", "constant"), default="linear",
                    help="the chain's position curve between keyframes (default linear)")
    ap.add_argument("--origin", choices=("base", "center"), default="base",
                    help="each object's origin: the bottom centre (default; objects rest on the ground) or centre")
    ap.add_argument("--height", type=float, default=0.0,
                    help="scale every result to this height in metres (default 0: as generated, about 1)")
    ap.add_argument("--spacing", type=float, default=0.5, help="gap between neighbouring objects on the grid "
                    "(metres, default 0.5); cells are as large as the objects in them")
    ap.add_argument("--camera", action=argparse.BooleanOptionalAction, default=True,
                    help="add a camera framing every object and a light, so the .blend renders as is (default on)")
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="embedded (torch in this Python), local (a server the batch starts and stops), remote "
                    "(--url); auto: embedded when torch imports here, else local")
    ap.add_argument("--python", help="local backend: the Python with att3d (or its environment's folder)")
    ap.add_argument("--url", help="remote backend: the server's URL, e.g. http://gpu-box:8765")
    ap.add_argument("--token-file", help="remote backend: a file holding its token (default: ATT3D_TOKEN, or the "
                    "token file of a server on this computer)")
    ap.add_argument("--client", help="MODULE:FACTORY returning a Client (tests, custom transports)")
    return ap


BACKENDS = ("auto", "embedded", "local", "remote")


def _installed_addon_backends() -> list[str]:
    """Extension folders where the add-on may have set a backend up (Blender's user extensions)."""
    try:
        import bpy

        root = bpy.utils.user_resource("EXTENSIONS")
    except Exception:
        return []
    return [str(p.parent) for p in sorted(Path(root, ".user").glob("*/att3d/backend"))] if root else []


def find_local_backend(python: str | None):
    """The local backend of a batch: ``--python``, else one the add-on set up, else ``att3d`` on
    PATH, else this checkout. ValueError / LookupError with one sentence."""
    from .lifecycle import local_backend

    if python:
        return local_backend.find(python)
    for user_root in _installed_addon_backends():
        found = local_backend.addon_backend(user_root)
        if found is not None:
            return found
    try:
        return local_backend.find("")
    except local_backend.NoBackend:
        raise LookupError("no local backend found: pass --python with the Python of an environment that has att3d, "
                          "or set one up in the add-on's preferences (Set Up Local Backend)") from None


def _token(args: argparse.Namespace) -> str | None:
    if not args.token_file:
        return None
    try:
        token = Path(args.token_file).expanduser().read_text(encoding="utf-8").strip()
    except OSError as e:
        raise InputError(f"cannot read the token file {args.token_file}: {e.strerror or e}") from None
    if not token:
        raise InputError(f"the token file {args.token_file} is empty")
    return token


class InputError(ValueError):
    """A bad backend option (exit status 2)."""


#: how the batch words a backend setting that cannot work (in its options' terms)
_IN_OPTIONS = {"python": "--python: {}", "url": "--backend remote needs --url (the server's address, e.g. "
               "http://gpu-box:8765)"}


def _online(url: str) -> str | None:
    try:
        import bpy
    except ImportError:
        return None
    if bpy.app.online_access:
        return None
    return (f"Blender's online access is off, so it may not reach {url}: run Blender with --online-mode (or allow "
            "online access in its preferences)")


def resolve_backend(args: argparse.Namespace):
    """The backend options as resolved :class:`~blender_att3d.client.BackendSettings`; InputError when
    they are wrong. Fast: checks paths and files, starts nothing."""
    from .client.settings import BackendSettings, BadSetting

    settings = BackendSettings(mode=args.backend, model=args.model, device=args.device, python=args.python or "",
                               url=args.url or "", token=(_token(args) or "") if args.backend == "remote" else "")
    try:
        return settings.resolve(find_local=find_local_backend, online=_online)
    except BadSetting as e:
        raise InputError(_IN_OPTIONS.get(e.setting, "{}").format(e)) from None


def load_client(spec: str | None, model: str, device: str, args: argparse.Namespace | None = None):
    """The batch's client: a ``--client`` factory, else the ``--backend`` (see the module docs)."""
    if spec:
        mod_name, _, attr = spec.partition(":")
        factory = getattr(importlib.import_module(mod_name), attr or "make")
        return factory(model=model, device=device)
    from .client import BackendSettings, make_client

    if args is None:
        return make_client(BackendSettings(mode="embedded", model=model, device=device))
    settings = resolve_backend(args)
    t0 = time.perf_counter()
    client = make_client(settings, on_stage=lambda text: _log(f"backend: {text}"))
    where = {"embedded": "in this Python", "remote": f"at {settings.url}"}.get(
        settings.mode, f"a local server ({settings.python or settings.att3d})")
    _log(f"backend: {settings.mode}, {where}, ready in {time.perf_counter() - t0:.1f} s")
    return client


@contextmanager
def at_origin(obj):
    """``obj`` (with its children) moved to the world origin for the time of an export."""
    saved = tuple(obj.location)
    obj.location = (0.0, 0.0, 0.0)
    try:
        yield obj
    finally:
        obj.location = saved


def export_objects(objs: Sequence[Any], path: Path, fmt: str) -> Path:
    """Export ``objs`` (with their children) to ``path`` in ``fmt`` (glb | obj | usd) with Blender's
    exporters, where they are (see :func:`export_result` for files at the origin)."""
    import bpy

    view_layer = bpy.context.view_layer
    for o in list(view_layer.objects.selected):
        if o is not None:
            o.select_set(False)
    todo = list(objs)
    for o in objs:
        todo += list(o.children_recursive)
    for o in todo:
        o.select_set(True)
    view_layer.objects.active = objs[0]
    from .wire import fileio

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    with fileio.writing(path), fileio.atomic_files(path.parent) as tmp:  # an OBJ's MTL, a USD's textures: all or none
        out = tmp / path.name
        if fmt == "glb":
            kw: dict[str, Any] = dict(filepath=str(out), export_format="GLB", use_selection=True,
                                      export_morph=True, export_animations=True, export_apply=False)
            rna = bpy.ops.export_scene.gltf.get_rna_type().properties
            if "export_vertex_color" in rna:
                kw["export_vertex_color"] = "MATERIAL"
            bpy.ops.export_scene.gltf(**kw)
        elif fmt == "obj":
            bpy.ops.wm.obj_export(filepath=str(out), export_selected_objects=True, export_colors=True,
                                  export_materials=True)
        else:
            kw = dict(filepath=str(out), selected_objects_only=True)
            rna = bpy.ops.wm.usd_export.get_rna_type().properties
            if "convert_world_material" in rna:  # 4.2+: else the scene's world becomes a dome light + textures/
                kw["convert_world_material"] = False
            bpy.ops.wm.usd_export(**kw)
        if not out.exists():
            raise RuntimeError(f"the {fmt} exporter wrote nothing to {path}")
    return path


def export_result(obj: Any, data: Any, path: Path, fmt: str) -> Path:
    """One generated object into ``path``, at the origin: GLB with :mod:`.wire.glb` from ``data`` (the
    placed mesh: COLOR_0 the object's linear colours, or its texture), OBJ and USD with Blender's
    exporters."""
    if fmt == "glb":
        from .wire import glb

        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, glb.mesh_glb(data, name=obj.name))
        return path
    with at_origin(obj):
        return export_objects([obj], path, fmt)


def _write_atomic(path: Path, data: bytes) -> None:
    from .wire import fileio

    with fileio.writing(path):
        fileio.atomic_write_bytes(path, data)


def export_chain(obj: Any, seq: Any, frames: Sequence[float], export_dir: Path, fmt: str, fps: float) -> list[Path]:
    """Export a built chain at the origin. ``seq`` is the placed chain (:func:`.sizing.fit_sequence`),
    ``frames`` its steps' frames.

    Shape keys in GLB: one file, :func:`.chain_io.chain_glb_bytes` (what the add-on's Export writes:
    keyframe pieces with position, normal and colour morph targets, one animation timed to the scene,
    frame f at (f − frame_start) / fps, and what its Import needs to rebuild a live chain).
    Otherwise one file per step, ``..._000``, ``..._001`` ...: a mesh sequence's step objects, or a
    shape-key chain's visible piece evaluated at the step's frame (OBJ and USD keep no such animation).
    """
    import bpy

    base = f"chain_{_slug(obj.name)}"
    export_dir.mkdir(parents=True, exist_ok=True)
    if obj.get("att3d_pieces") is not None:  # shape keys
        if fmt == "glb":
            from .chain_io import export_chain_glb

            return [export_chain_glb(obj, bpy.context.scene, export_dir / f"{base}.glb")]
        scene, paths = bpy.context.scene, []
        current = scene.frame_current
        with at_origin(obj):
            for i, f in enumerate(frames):
                scene.frame_set(int(np.floor(f)), subframe=float(f - np.floor(f)))
                shown = [o for o in obj.children if not o.hide_viewport]
                paths.append(export_objects(shown, export_dir / f"{base}_{i:03d}.{fmt}", fmt))
        scene.frame_set(current)
        return paths
    from .builders.objects import PROP_CHAIN_POSITION

    steps = sorted(obj.children, key=lambda o: float(o.get(PROP_CHAIN_POSITION, 0.0)))
    paths = []
    with at_origin(obj):
        for i, step in enumerate(steps):
            if fmt == "glb":
                from .wire import glb

                path = export_dir / f"{base}_{i:03d}.glb"
                _write_atomic(path, glb.mesh_glb(seq.mesh(i), name=step.name))
                paths.append(path)
                continue
            ad = step.animation_data
            drivers = [d for d in (ad.drivers if ad is not None else [])
                       if d.data_path in ("hide_viewport", "hide_render")]
            hidden = step.hide_viewport, step.hide_render
            for d in drivers:  # else the position's drivers hide it again while the exporter evaluates
                d.mute = True
            step.hide_viewport = step.hide_render = False
            try:
                paths.append(export_objects([step], export_dir / f"{base}_{i:03d}.{fmt}", fmt))
            finally:
                for d in drivers:
                    d.mute = False
                step.hide_viewport, step.hide_render = hidden
    return paths


def save_blend_atomic(out: Path) -> Path:
    """Save the current file to ``out`` via a temporary file in the same folder + rename: a failed
    save (a full disk) leaves the earlier ``out`` as it was, and says so in one line."""
    import bpy

    from .wire import fileio

    out = out.resolve()
    with fileio.writing(out), fileio.atomic_output(out) as tmp:
        bpy.ops.wm.save_as_mainfile(filepath=str(tmp), check_existing=False, copy=True)
        if tmp.is_file() and not blend_is_complete(tmp):  # cut short without a word (a full disk)
            raise RuntimeError("Blender wrote an incomplete file")
    return out


_ZSTD_MAGIC, _SEEKABLE_MAGIC = b"\x28\xb5\x2f\xfd", b"\xb1\xea\x92\x8f"


def blend_is_complete(path: Path) -> bool:
    """Whether the .blend at ``path`` is whole: an uncompressed one ends with its ENDB block, a
    compressed one (zstd, Blender's seekable format: the default in 5.0) with a seek table whose
    frames add up to the file's size."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if head.startswith(b"BLENDER"):  # the last block: ENDB and its header's rest (4.2: 20 bytes, 5.0: 28)
            f.seek(max(0, size - 64))
            tail = f.read()
            at = tail.rfind(b"ENDB")
            return at >= 0 and len(tail) - at - 4 in (16, 20, 28)
        if not head.startswith(_ZSTD_MAGIC) or size < 17:
            return False
        f.seek(size - 9)
        frames, descriptor, magic = struct.unpack("<IB4s", f.read(9))
        entry = 12 if descriptor & 0x80 else 8
        table = 8 + frames * entry + 9  # skippable frame header, entries, footer
        if magic != _SEEKABLE_MAGIC or table > size:
            return False
        f.seek(size - table + 8)
        entries = f.read(frames * entry)
    compressed = sum(struct.unpack_from("<I", entries, i * entry)[0] for i in range(frames))
    return compressed + table == size


def run(args: argparse.Namespace, client=None, log: Callable[[str], None] = _log) -> dict[str, Any]:
    """The batch itself (inputs already checked). Returns a summary dict.

    Every result is generated first; then they are laid out on a grid sized from their real
    footprints (:func:`.sizing.grid_positions`: never overlapping), the chain last; the camera and
    light frame them all; the frame range is the chain's. A local server the batch started stops
    with it.
    """
    from .inputs import parse_chain_file, parse_prompts_file

    prompts = parse_prompts_file(args.prompts) if args.prompts else []
    chain = parse_chain_file(args.chain) if args.chain else None
    if client is not None:
        return _run(args, client, prompts, chain, log)
    client = load_client(args.client, args.model, args.device, args)
    try:
        return _run(args, client, prompts, chain, log)
    finally:
        pid = getattr(client, "pid", None)
        client.close()
        if pid is not None:
            log(f"stopped the local backend (pid {pid})")


def _run(args: argparse.Namespace, client, prompts: list[Any], chain, log: Callable[[str], None]) -> dict[str, Any]:
    import bpy

    from .builders.staging import add_light, frame_camera
    from .inputs import check_batch
    from .keyframes import step_frames
    from .naming import chain_name
    from .placement import build_chain_objects, place_generated
    from .sizing import Fit, fit_mesh, fit_sequence, footprint, grid_positions

    steps = check_batch(prompts, chain, args.steps, args.resolution, getattr(client, "limits", None), args.max_states)
    fit = Fit(args.origin.upper(), float(args.height))
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    summary: dict[str, Any] = {"objects": [], "exports": [], "chain": None}
    color_mode = "TEXTURE" if args.texture else "VERTEX"
    results = []
    for i, item in enumerate(prompts):
        t0 = time.perf_counter()
        log(f"[{i + 1}/{len(prompts)}] generating '{item.prompt}'" + (f" as '{item.name}'" if item.name else ""))
        data = client.generate(item.prompt, resolution=args.resolution, texture=args.texture)
        results.append((item, data, fit_mesh(data, fit)[0]))
        log(f"[{i + 1}/{len(prompts)}] {data.n_vertices:,} vertices in {time.perf_counter() - t0:.2f} s")
    seq = placed_seq = None
    if chain is not None:
        keys = chain["keyframes"]
        mode = "SHAPE_KEYS" if args.chain_mode == "shape_keys" else "SEQUENCE"
        log(f"chain: {len(keys)} keyframes, {steps} steps per segment, as {mode.lower().replace('_', ' ')}")
        t0 = time.perf_counter()
        seq = client.chain([(k, p) for k, (_, p) in enumerate(keys)], steps=steps, resolution=args.resolution,
                           consistent=(mode == "SHAPE_KEYS"),
                           max_states=args.max_states if mode == "SHAPE_KEYS" else None)
        placed_seq = fit_sequence(seq, fit)[0]
        log(f"chain: {len(seq)} steps in {time.perf_counter() - t0:.2f} s")
    # objects the prompts file places itself keep their location; the others (and the chain) share the grid
    feet = [footprint([placed.positions]) for item, _, placed in results if item.location is None]
    if placed_seq is not None:
        feet.append(footprint([p for piece in placed_seq.pieces for p in piece.positions]
                              or [m.positions for m in placed_seq.meshes]))
    grid = iter(grid_positions(feet, args.spacing))
    spots = [item.location if item.location is not None else next(grid) for item, _, _ in results]
    if placed_seq is not None:
        spots.append(next(grid))
    bounds: list[np.ndarray] = []
    objects = []
    for (item, data, placed), spot in zip(results, spots):
        obj = place_generated(data, item.prompt, args.resolution, color_mode, spot, scene.name, fit=fit,
                              name=item.name)
        objects.append((obj, placed))
        summary["objects"].append(obj.name)
        if len(placed.positions):
            bounds.append(placed.positions + np.asarray(spot, np.float32))
    if placed_seq is not None:
        assert seq is not None and chain is not None
        key_frames = [f for f, _ in chain["keyframes"]]
        name = chain_name(seq.prompts[0], seq.prompts[-1])
        obj = build_chain_objects(seq, key_frames, mode, args.interpolation.upper(), "batch", args.resolution,
                                  spots[-1], scene.name, name=name, fit=fit)
        summary["chain"] = obj.name
        frames = step_frames(seq.steps, key_frames)
        for p in ([p for piece in placed_seq.pieces for p in piece.positions]
                  or [m.positions for m in placed_seq.meshes]):
            if len(p):
                bounds.append(p + np.asarray(spots[-1], np.float32))
        log(f"chain: '{obj.name}' on frames {scene.frame_start}–{scene.frame_end}")
    if args.camera and bounds:
        pts = np.concatenate(bounds)
        frame_camera(scene, pts.min(0), pts.max(0))
        add_light(scene)
    if args.export_dir:
        exp = Path(args.export_dir)
        for i, (obj, placed) in enumerate(objects):
            path = exp / f"{i:03d}_{_slug(obj.name)}.{args.format}"
            summary["exports"].append(str(export_result(obj, placed, path, args.format)))
        if placed_seq is not None:
            fps = scene.render.fps / scene.render.fps_base
            summary["exports"] += [str(p) for p in export_chain(bpy.data.objects[summary["chain"]], placed_seq,
                                                                frames, exp, args.format, fps)]
    scene.frame_set(scene.frame_start)
    out = save_blend_atomic(Path(args.out))
    summary["out"] = str(out)
    log(f"wrote {out} ({len(summary['objects'])} objects{', 1 chain' if chain else ''}"
        f"{', a camera and a light' if args.camera and bounds else ''})")
    return summary


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_") or "object"


def main(argv: Sequence[str] | None = None, client=None) -> int:
    from .client.base import BackendError
    from .inputs import InputFileError, check_batch, parse_chain_file, parse_prompts_file

    args = parser().parse_args(argv)
    try:
        if not args.prompts and not args.chain:
            raise InputFileError("nothing to do: give --prompts FILE and/or --chain FILE")
        prompts = parse_prompts_file(args.prompts) if args.prompts else []
        check_batch(prompts, parse_chain_file(args.chain) if args.chain else None, args.steps, args.resolution,
                    max_states=args.max_states)
        if not (args.height >= 0 and np.isfinite(args.height)):
            raise InputFileError(f"--height must be 0 (as generated) or a positive number of metres, got {args.height}")
        if not (args.spacing >= 0 and np.isfinite(args.spacing)):
            raise InputFileError(f"--spacing must be 0 or a positive number of metres, got {args.spacing}")
        out = Path(args.out)
        if out.suffix.lower() != ".blend":
            raise InputFileError(f"--out must be a .blend file, got {out}")
        if not out.resolve().parent.is_dir():
            raise InputFileError(f"the output folder does not exist: {out.resolve().parent}")
        if client is None and not args.client:
            resolve_backend(args)  # bad backend options: one line, exit 2, before any work
    except (InputFileError, InputError) as e:
        print(f"att3d batch: error: {e}", file=sys.stderr, flush=True)
        return 2
    try:
        run(args, client=client)
    except InputFileError as e:  # against the backend's own limits, still before generating anything
        print(f"att3d batch: error: {e}", file=sys.stderr, flush=True)
        return 2
    except (BackendError, RuntimeError, OSError, ValueError) as e:
        if os.environ.get("ATT3D_DEBUG"):
            import traceback

            traceback.print_exc()
        print(f"att3d batch: error: {' '.join(str(e).split()) or type(e).__name__}", file=sys.stderr, flush=True)
        return 1
    return 0


def module_crashes_on_exit() -> bool:
    """True in the Blender 4.2 *Python module* (``pip install bpy``, not the Blender application),
    which crashes while finalising the interpreter once its glTF exporter has run."""
    import bpy

    return not bpy.app.binary_path and bpy.app.version < (4, 3, 0)


def exit_process(code: int) -> None:
    """Exit with ``code``. Where :func:`module_crashes_on_exit`, a successful batch would end in
    status 139: there, run the exit handlers (they stop any backend we started), flush, and leave
    without finalising."""
    if module_crashes_on_exit():
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _script_argv() -> list[str]:
    """Arguments after ``--`` (``blender -b -P batch.py -- ARGS``), else everything after the script."""
    argv = sys.argv
    return argv[argv.index("--") + 1:] if "--" in argv else argv[1:]


if __name__ == "__main__":
    if __package__:  # python -m blender_att3d.batch
        exit_process(main(_script_argv()))
    # blender -b -P blender_att3d/batch.py -- ARGS  (or python blender_att3d/batch.py ARGS)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from blender_att3d.batch import exit_process as _exit_process
    from blender_att3d.batch import main as _main

    _exit_process(_main(_script_argv()))
