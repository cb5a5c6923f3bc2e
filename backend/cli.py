"""The ``att3d`` command line. Errors are one line on stderr and exit code 2, never a traceback.

Subcommands of other packages (training, the service) register themselves through
``register(subparsers)`` functions imported lazily, so ``att3d generate`` never imports them.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from blender_att3d.wire.options import DEFAULT_SMOOTH, EXTRACT_METHODS, MC_METHODS

# Modules that add subcommands: each has ``register(subparsers) -> None``.
PLUGINS = ("backend.service.cli", "backend.studio.cli", "training.cli", "training.shapes.cli")


MAX_REPEATS = 1000


class CLIError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (``att3d generate: error: …``) and exit code 2 like every
    other error of this command line, rather than the usage block and then the message."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def quiet_libraries() -> None:
    """``--quiet``: no progress bars from the libraries either (transformers' "Loading weights",
    the hub's downloads). The environment variable covers a later import, the call an earlier one."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _writable_output(path: str, suffixes: tuple[str, ...] | None = None) -> Path:
    p = Path(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise CLIError(f"unsupported output format {p.suffix or '(none)'!r} for {path}; "
                       f"use one of {', '.join(suffixes)}")
    parent = p.parent if str(p.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create the folder for {path}: {e.strerror or e}") from None
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CLIError(f"cannot write {path}: permission denied")
    if p.is_dir():
        raise CLIError(f"{path} is a folder, expected a file name")
    return p


class _Bar:
    """The engine's one progress callback as the command line's bar (stderr, percent, the step's
    message), with the command's own steps around it (loading the model, writing the file)."""

    def __init__(self, quiet: bool, first: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, desc=first, disable=quiet, leave=False, file=sys.stderr,
                        bar_format="{desc:<28.28} {bar} {percentage:3.0f}% [{elapsed}]")

    def __call__(self, fraction: float, message: str) -> bool:
        self.bar.n = round(100 * min(1.0, max(0.0, fraction)))
        self.bar.set_description_str(message, refresh=False)
        self.bar.refresh()
        return False  # never asks to stop (Ctrl-C does)

    def close(self) -> None:
        self.bar.close()


#: the CLI flag of each request field whose errors the CLI names by its flag
FLAGS = {"simplify": "--simplify", "texture": "--texture", "smooth": "--smooth", "max_states": "--max-states"}


def request(make, **fields):
    """An engine request (:mod:`backend.engine`: the one check of the inputs) made from the arguments,
    before any work; a bad input is one line naming its flag where the field has one."""
    from .engine import InvalidInput

    try:
        return make(**fields)
    except InvalidInput as e:
        raise CLIError(f"{FLAGS[e.field]}: {e}" if e.field in FLAGS else str(e)) from None


def cmd_generate(args: argparse.Namespace) -> int:
    from .engine import Engine, Generate
    from .export import FORMATS, export_mesh

    req = request(Generate, prompt=args.prompt, resolution=args.resolution, simplify=args.simplify,
                  texture=False if args.texture is None else args.texture, mc=args.mc, extract=args.extract,
                  unwrap=args.unwrap, smooth=args.smooth)
    out = _writable_output(args.out, FORMATS)
    preview = _writable_output(args.preview, (".png",)) if args.preview else None
    bar = _Bar(args.quiet, "loading the model")
    t0 = time.perf_counter()
    engine = Engine.load(args.model, device=args.device)
    mesh = engine.run(req, bar)
    if len(mesh.faces) == 0:
        raise CLIError(f"the model produced no surface for {req.prompt!r} (empty density field)")
    bar(1.0, "writing the file")
    export_mesh(mesh, out)
    if preview:
        bar(1.0, "rendering the preview")
        from PIL import Image

        Image.fromarray(engine.preview(req, mesh)).save(preview)
    bar.close()
    print(f"wrote {out} ({mesh.n_vertices} vertices, {len(mesh.faces)} faces) in "
          f"{time.perf_counter() - t0:.2f} s" + (f"; preview {preview}" if preview else ""))
    return 0


def parse_frames(text: str) -> list[float]:
    """``--frames 1,48,96`` → [1.0, 48.0, 96.0]."""
    try:
        frames = [float(f) for f in text.split(",")]
    except ValueError:
        raise CLIError(f"--frames must be scene frame numbers separated by commas (e.g. 1,48,96), got {text!r}") \
            from None
    if not all(math.isfinite(f) for f in frames):
        raise CLIError(f"--frames must be finite frame numbers, got {text!r}")
    return frames


def interpolate_timing(args: argparse.Namespace) -> tuple[list[float], float, float] | None:
    """(key frames, fps, start frame) of ``att3d interpolate --frames … --fps …``, checked; None without
    ``--frames`` (one step per second)."""
    from blender_att3d.wire.timing import check_scene_timing

    if args.frames is None:
        if args.fps is not None or args.frame_start is not None:
            raise CLIError("--fps and --frame-start time the chain's keyframes: give --frames too")
        return None
    if args.fps is None:
        raise CLIError("--frames needs --fps (the scene's frame rate)")
    start = 1.0 if args.frame_start is None else args.frame_start
    try:
        return check_scene_timing(parse_frames(args.frames), len(args.prompts), args.fps, start)
    except ValueError as e:
        raise CLIError(f"--frames/--fps/--frame-start: {e}") from None


def cmd_interpolate(args: argparse.Namespace) -> int:
    from blender_att3d.wire.timing import scene_seconds, step_frames

    from .engine import Chain, Engine
    from .export import export_mesh, export_sequence_glb

    if len(args.prompts) < 2:
        raise CLIError("interpolate needs at least two prompts")
    req = request(Chain, keyframes=list(enumerate(args.prompts)), steps=args.steps, resolution=args.resolution,
                  consistent=args.consistent, max_states=args.max_states)
    timing = interpolate_timing(args)
    out = Path(args.out)
    _writable_output(str(out / "x.glb"))
    bar = _Bar(args.quiet, "loading the model")
    engine = Engine.load(args.model, device=args.device)
    seq = engine.run(req, bar)
    bar.close()
    # when each step plays: on its scene frame with --frames (a keyframe on frame f at (f − start) / fps
    # seconds, where Blender's glTF importer puts it back on frame f), else one step per second
    frames: list[float] | None = None
    seconds = [float(i) for i in range(len(seq.steps))]
    if timing:
        frames = step_frames(seq.steps, timing[0])
        seconds = scene_seconds(frames, timing[1], timing[2])
    files = []
    for i, pos in enumerate(seq.steps):
        f = out / f"step_{i:03d}.{args.format}"
        export_mesh(seq.mesh(i), f)
        files.append({"file": f.name, "position": pos, "prompt": seq.prompts[i], "seconds": seconds[i],
                      **({"frame": frames[i]} if frames else {})})
    if args.consistent:
        export_sequence_glb(seq, out / "sequence.glb", seconds=seconds)
    manifest = {"prompts": req.prompts, "steps_per_segment": req.steps, "consistent": req.consistent,
                "resolution": req.resolution, "model": engine.pipeline.model_id,
                **({"frames": timing[0], "fps": timing[1], "frame_start": timing[2]} if timing else {}),
                **({k: seq.meta[k] for k in ("max_states", "inserted_states", "max_move_voxels")} if args.consistent
                   else {}),
                "steps": files}
    (out / "sequence.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(files)} meshes to {out}" +
          (f" (sequence.glb: {len(seq.pieces)} keyframe pieces with morph targets, "
           f"{sum(len(p.times) for p in seq.pieces)} states, {seq.meta['inserted_states']} of them in between; "
           f"largest vertex move between states {seq.meta['max_move_voxels']:.2f} voxels)" if args.consistent else ""))
    return 0


def cmd_init_model(args: argparse.Namespace) -> int:
    from .model import ModelConfig, build_model, save_model

    cfg: dict = {}
    if args.preset == "tiny":
        cfg.update(resolutions=[8, 12, 16], v_dim=8)
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise CLIError(f"config file {path} not found")
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
        cfg.update(data.get("architecture", data))
    for kv in args.set or []:
        key, _, value = kv.partition("=")
        try:
            cfg[key] = json.loads(value)
        except json.JSONDecodeError:
            cfg[key] = value
    try:
        config = ModelConfig.from_dict(cfg)
    except (TypeError, ValueError) as e:
        raise CLIError(f"bad model config: {e}") from None
    folder = save_model(build_model(config, args.seed), args.dir,
                        {"name": Path(args.dir).name, "note": "randomly initialised (att3d init-model)",
                         "seed": args.seed})
    print(f"wrote a randomly initialised model to {folder}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench

    if not 1 <= args.repeats <= MAX_REPEATS:
        raise CLIError(f"--repeats must be in 1–{MAX_REPEATS}, got {args.repeats}")

    result = run_bench(args.model, device=args.device, repeats=args.repeats, quiet=args.quiet or args.json,
                       service=not args.no_service, dense_512=not args.no_dense_512,
                       partial_out=args.partial)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """What ``make demo`` runs: the shipped demo model, or a bundle it creates if none ships yet."""
    from .model import SHIPPED_DIR

    out = Path(args.out)
    model = "demo"
    if not (SHIPPED_DIR / "demo").is_dir():
        model = str(out / "random-model")
        print("no shipped demo model yet: using a randomly initialised bundle", file=sys.stderr)
        cmd_init_model(argparse.Namespace(dir=model, preset="paper", config=None, set=None, seed=0))
    ns = argparse.Namespace(prompt=args.prompt, model=model, out=str(out / "demo.glb"), resolution=args.resolution,
                            preview=str(out / "demo.png"), simplify=None, texture=None, device=args.device,
                            quiet=args.quiet, extract="auto", mc="auto", unwrap="box", smooth=DEFAULT_SMOOTH)
    rc = cmd_generate(ns)
    if rc == 0 and args.chain:
        _demo_chain(model, args.chain, out / "seasons.glb", args.device, args.quiet, args.resolution)
    return rc


#: the chain `make demo` writes (`out/seasons.glb`): the paper's Fig. 3 tree through the seasons
DEMO_CHAIN = ("a tree in the spring", "a tree in the summer", "a tree in the fall", "a tree in the winter")
#: its timing: in-betweens per season change, seconds per change
DEMO_CHAIN_STEPS, DEMO_CHAIN_SECONDS = 6, 2.0


def _demo_chain(model: str, prompts: Sequence[str], path: Path, device: str, quiet: bool,
                resolution: int) -> Path:
    """A timed, vertex-coloured chain GLB of ``prompts`` (consistent topology: one keyframe piece per
    prompt, morph targets between), :data:`DEMO_CHAIN_SECONDS` per change of prompt."""
    from .engine import Engine
    from .export import export_sequence_glb

    seq = Engine.load(model, device=device).chain(list(enumerate(prompts)), steps=DEMO_CHAIN_STEPS,
                                             resolution=resolution)
    seconds = np.asarray(seq.steps, np.float64) * DEMO_CHAIN_SECONDS  # chain position k = prompt k
    export_sequence_glb(seq, path, seconds=seconds.tolist(), name="seasons")
    if not quiet:
        print(f"wrote {path}: {' → '.join(prompts)}, {len(seq.steps)} stored states over {seconds[-1]:.0f} s")
    return path


def build_parser() -> argparse.ArgumentParser:
    from blender_att3d.wire import limits as lim

    p = Parser(prog="att3d", description="Amortized text-to-3D: one network, many prompts.")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp, model_default: str | None = "demo"):
        sp.add_argument("--model", default=model_default, help="model folder or shipped name (default: demo)")
        sp.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
        # also after the command (`att3d generate ... -q`); SUPPRESS keeps a --quiet given before it
        sp.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bars")

    g = sub.add_parser("generate", help="prompt → mesh file (GLB/OBJ/PLY)")
    g.add_argument("prompt")
    common(g)
    g.add_argument("--out", required=True, help="output file: .glb, .obj or .ply")
    g.add_argument("--resolution", type=int, default=lim.DEFAULT_RESOLUTION,
                   help=f"marching-cubes lattice size (16–512, default {lim.DEFAULT_RESOLUTION})")
    g.add_argument("--preview", help="also write a turntable preview PNG")
    g.add_argument("--simplify", type=int, help=f"simplify to about this many faces ({lim.MIN_SIMPLIFY}–"
                                                f"{lim.MAX_SIMPLIFY})")
    g.add_argument("--texture", type=int, nargs="?", const=lim.TEXTURE_SIZE,
                   help=f"bake a UV texture of this size ({lim.MIN_TEXTURE_SIZE}–{lim.MAX_TEXTURE_SIZE}, "
                        f"default {lim.TEXTURE_SIZE})")
    g.add_argument("--extract", choices=EXTRACT_METHODS, default="auto",
                   help="sparse: evaluate the density only where the surface can be; dense: at every lattice "
                        "node (the reference, the same mesh); auto (default): sparse from 96³, dense below")
    g.add_argument("--mc", choices=MC_METHODS, default="auto",
                   help="marching cubes: skimage (scikit-image), pymcubes, torch (on the model's device); "
                        "auto (default): torch on a GPU, skimage on the CPU")
    g.add_argument("--unwrap", choices=["box", "xatlas"], default="box",
                   help="UV charts for --texture: box (default, 0.1 s) or xatlas (rounder charts, seconds)")
    g.add_argument("--smooth", type=int, default=DEFAULT_SMOOTH, metavar="N",
                   help="Taubin smoothing of the extracted surface, N iterations (0–100; volume-preserving; "
                        f"default {DEFAULT_SMOOTH}; 0: the raw marching-cubes surface)")
    g.set_defaults(func=cmd_generate)

    i = sub.add_parser("interpolate", help="a chain of prompts → a sequence of meshes")
    i.add_argument("prompts", nargs="+")
    common(i)
    i.add_argument("--steps", type=int, default=8, help="meshes per segment between consecutive prompts")
    i.add_argument("--out", required=True, help="output folder")
    i.add_argument("--resolution", type=int, default=lim.DEFAULT_RESOLUTION,
                   help=f"marching-cubes lattice size (16–512, default {lim.DEFAULT_RESOLUTION})")
    i.add_argument("--frames", metavar="F1,F2,…",
                   help="the scene frame of each prompt, comma-separated and increasing: sequence.glb then plays "
                        "keyframe f at (f − frame start) / fps seconds, so Blender's importer puts it on frame f "
                        "(default: one step per second)")
    i.add_argument("--fps", type=float, help="the scene's frames per second (with --frames)")
    i.add_argument("--frame-start", type=float, metavar="S",
                   help="the scene's first frame, played at 0 s (with --frames; default 1)")
    i.add_argument("--max-states", type=int, metavar="N",
                   help="with --consistent: chain positions stored per segment at most; states in between go where "
                        "the surface moves (at least --steps; default twice --steps)")
    i.add_argument("--consistent", action="store_true",
                   help="also write sequence.glb: one topology per keyframe (exact there), morphing to the "
                        "middle of each segment (morph targets, per-step colours, visibility swaps)")
    i.add_argument("--format", choices=["glb", "obj", "ply"], default="glb")
    i.set_defaults(func=cmd_interpolate)

    m = sub.add_parser("init-model", help="write a randomly initialised model folder")
    m.add_argument("dir")
    m.add_argument("--preset", choices=["paper", "tiny"], default="paper")
    m.add_argument("--config", help="JSON or TOML file with architecture keys")
    m.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one architecture key")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_init_model)

    b = sub.add_parser("bench", help="inference timings (medians) as JSON")
    common(b)
    b.add_argument("--json", action="store_true", help="one JSON object on one line")
    b.add_argument("--repeats", type=int, default=5)
    b.add_argument("--no-service", action="store_true", help="skip serve_ready and http_overhead_128")
    b.add_argument("--no-dense-512", action="store_true", help="skip the dense 512³ reference (slow on a CPU)")
    b.add_argument("--partial", metavar="FILE", help="rewrite FILE with the keys measured so far before each "
                   "next one (\"complete\": true at the end): a run cut short keeps them")
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("demo", help="generate a demo asset into a folder (what `make demo` runs)")
    d.add_argument("--out", default="out")
    d.add_argument("--prompt", default="a red cube wearing a blue party hat")
    d.add_argument("--resolution", type=int, default=lim.DEFAULT_RESOLUTION)
    d.add_argument("--device", default="auto")
    d.add_argument("--chain", nargs="*", default=list(DEMO_CHAIN), metavar="PROMPT",
                   help="also write OUT/seasons.glb, a timed chain through these prompts (default: a tree through "
                        "the four seasons; none: skip it)")
    d.set_defaults(func=cmd_demo)

    for name in PLUGINS:
        try:
            mod = importlib.import_module(name)
        except ImportError as e:
            if e.name and name.startswith(e.name):
                continue  # that part is not installed / not written
            raise
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "quiet", False):
        quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("att3d: interrupted", file=sys.stderr)
        return 130
    # (ModelFolderError is a ValueError: importing it here would import torch before every command)
    except (CLIError, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"att3d: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"att3d: error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
