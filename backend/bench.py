"""``att3d bench``: medians of the inference stages, in seconds, as one JSON object.

Every generate key is measured twice in the same run, sparse extraction (the default) and the dense
reference, and reported with their ratio (``*_vs_dense``), so a figure from a loaded machine still
says how much the sparse path saves. On CUDA every timing synchronises the device before reading
the clock. ``serve_ready`` and ``http_overhead_128`` start an ``att3d serve`` on the same model and
device (skip them with ``--no-service``).
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from blender_att3d.wire.types import MeshData

from .fileio import atomic_write_text

PROMPTS = ["a red cube wearing a party hat", "a blue sphere on a plate", "a green cone with a ring",
           "a yellow torus"]
TRACKED = ["a red sphere", "a yellow sphere", "a blue cube", "a green cube"]


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _times(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        _sync()
        t = time.perf_counter()
        fn()
        _sync()
        ts.append(time.perf_counter() - t)
    return ts


def _converged(chain: Any) -> float:
    """The worst tracked state of a chain: its share of vertices on the surface (held states, which
    show a neighbour's own surface, aside: a pop, see backend.chain)."""
    return round(min(float(c) for p in chain.pieces for c, held in zip(p.on_surface, p.held) if not held), 4)


def _median(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    return statistics.median(_times(fn, repeats, warmup))


def run_bench(model: str = "demo", device: str = "auto", repeats: int = 5, quiet: bool = False,
              service: bool = True, dense_512: bool = True, partial_out: str | Path | None = None) -> dict[str, Any]:
    """The timings (see the module's docstring). ``partial_out``: a JSON file rewritten with the keys measured
    so far before each next one, ``"complete": true`` at the end: a run stopped by a time limit (a lent
    GPU machine's) still leaves what it measured."""
    from .chain_quality import chain_quality
    from .engine import Engine
    from .export import export_mesh
    from .mesh import density_lattice, extract_surface, field_colors, marching_cubes, resolve_mc, simplify
    from .texture import bake_texture

    def log(msg: str) -> None:
        if partial_out is not None:
            atomic_write_text(partial_out, json.dumps({**res, "complete": False, "next": msg}) + "\n")
        if not quiet:
            print(f"bench: {msg}", file=sys.stderr, flush=True)

    engine = Engine.load(model, device=device)
    pipe = engine.pipeline
    cfg = pipe.model.config
    pipe.embed(PROMPTS)  # warms the on-disk embedding cache
    one = pipe.embed(PROMPTS[0])
    mod = pipe.modulate(one)
    res: dict[str, Any] = {"model": pipe.model_id, "device": str(pipe.device), "torch": torch.__version__,
                           "threads": torch.get_num_threads(),
                           "parameters": sum(p.numel() for p in pipe.model.parameters()),
                           "repeats": repeats}
    if pipe.device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(pipe.device)
    log("mapping")
    res["mapping"] = _median(lambda: pipe.modulate(one), repeats)
    log("lattice_128")
    res["lattice_128"] = _median(lambda: density_lattice(pipe.model, mod, 128), repeats)
    vol = density_lattice(pipe.model, mod, 128, tensor=True)  # on the device: --mc auto marches it there
    log("marching_cubes_128")
    res["marching_cubes_128"] = _median(lambda: marching_cubes(vol, cfg.iso_density, cfg.bound), repeats)
    res["marching_cubes_method"] = resolve_mc("auto", pipe.device)
    # where generate_glb_128's time goes: surface (sparse), vertex colours, GLB file
    log("surface_128")
    res["surface_128"] = _median(lambda: extract_surface(pipe.model, mod, 128), repeats)
    verts, _ = extract_surface(pipe.model, mod, 128)
    res["colours_128"] = _median(lambda: field_colors(pipe.model, mod, verts), repeats)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.glb"
        for n in (128, 256, 512):
            # 512³ dense is ~60× the 128³ lattice: once, without a warm-up
            plans = [("", "auto", repeats, 1), ("_dense", "dense", repeats, 1)]
            if n == 512:
                plans = [("", "auto", max(1, repeats // 2), 1)] + ([("_dense", "dense", 1, 0)] if dense_512 else [])
            for suffix, extract, reps, warm in plans:
                key = f"generate_glb_{n}{suffix}"
                log(key)
                def run(n: int = n, e: str = extract) -> Any:
                    return export_mesh(engine.generate(PROMPTS[0], n, extract=e), out)

                res[key] = _median(run, reps, warm)
                if n == 128 and not suffix:
                    res["glb_bytes"] = out.stat().st_size
                    res["export_glb_128"] = _median(partial(export_mesh, engine.generate(PROMPTS[0], n), out),
                                                    reps, warm)
            if f"generate_glb_{n}_dense" in res:
                res[f"generate_glb_{n}_vs_dense"] = round(res[f"generate_glb_{n}"] / res[f"generate_glb_{n}_dense"], 4)
    log("texture_1024")
    mesh = engine.generate(PROMPTS[0], 128)
    verts, faces = simplify(mesh.positions, mesh.faces, 20000)
    low = MeshData(verts, faces, field_colors(pipe.model, mod, verts))
    res["texture_faces"] = int(len(faces))
    res["texture_1024"] = _median(lambda: bake_texture(low, lambda p: field_colors(pipe.model, mod, p), 1024),
                                  max(1, repeats // 2))
    # 4 keyframes, 5 meshes per segment + the last keyframe = 16 steps. The chains are timed in
    # interleaved rounds (the CPU is shared and noisy: their ratios are what to read):
    # * chain16_consistent: the bench prompts (their topology changes at almost every step) as keyframe
    #   pieces for shape keys, with states in between where the surface moves (the default cap, 10 per
    #   segment); chain16_steps_only: the same without states in between (max_states = steps);
    # * chain16_independent: the same 16 steps as independent meshes (a mesh sequence: the floor);
    # * chain16_tracked: keyframes of one topology, every step between them tracked.
    keys, tracked_keys = list(enumerate(PROMPTS)), list(enumerate(TRACKED))
    chains = {"chain16_consistent": lambda: engine.chain(keys, steps=5, resolution=128),
              "chain16_steps_only": lambda: engine.chain(keys, steps=5, resolution=128, max_states=5),
              "chain16_independent": lambda: engine.chain(keys, steps=5, resolution=128, consistent=False),
              "chain16_tracked": lambda: engine.chain(tracked_keys, steps=5, resolution=128)}
    log("chain16 (warm-up)")
    for fn in chains.values():
        fn()
    rounds = max(3, repeats // 2)
    times: dict[str, list[float]] = {k: [] for k in chains}
    for r in range(rounds):
        log(f"chain16 round {r + 1}/{rounds}")
        for key in list(chains)[:: 1 if r % 2 else -1]:
            times[key].extend(_times(chains[key], 1, 0))
    for key, ts in times.items():
        res[key] = statistics.median(ts)
    for key in ("chain16_consistent", "chain16_steps_only", "chain16_tracked"):
        res[f"{key}_vs_independent"] = round(res[key] / res["chain16_independent"], 4)
    seq = chains["chain16_consistent"]()
    res["chain16_vertices"] = [int(len(p.positions[0])) for p in seq.pieces]
    res["chain16_converged"] = _converged(seq)
    res["chain16_held"] = sum(int(h) for p in seq.pieces for h in p.held)
    # the states a shape-key chain stores, those added in between, and the largest vertex move between
    # neighbouring stored states (voxels): what one shape key's linear blend spans
    res["chain16_states"] = sum(len(p.times) for p in seq.pieces)
    res["chain16_inserted_states"] = seq.meta["inserted_states"]
    res["chain16_max_move_voxels"] = seq.meta["max_move_voxels"]
    res["chain16_steps_only_max_move_voxels"] = chains["chain16_steps_only"]().meta["max_move_voxels"]
    tracked = chains["chain16_tracked"]()
    res["chain16_tracked_pieces"] = len(tracked.pieces)
    res["chain16_tracked_converged"] = _converged(tracked)
    res["chain16_tracked_max_move_voxels"] = tracked.meta["max_move_voxels"]
    log("chain16_quality")
    # how faithful the chain is (backend.chain_quality): keyframes vs the direct meshes, every state
    q = chain_quality(pipe, seq, PROMPTS, resolution=128)
    res["chain16_quality"] = {k: v for k, v in q.items() if k not in ("keyframes", "states")}
    if service:
        res.update(service_bench(engine, model, device, repeats, log))
    if partial_out is not None:
        atomic_write_text(partial_out, json.dumps({**res, "complete": True}) + "\n")
    return res


def service_bench(engine: Any, model: str, device: str, repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    """``serve_ready``: median seconds from starting ``att3d serve`` to its ready line (3 starts);
    ``http_overhead_128``: median latency of ``POST /v1/generate`` at 128³ over the median of the same
    request in-process (the same Engine the service runs, on this process's model), interleaved rounds."""
    from blender_att3d.wire.routes import GENERATE

    from .service.bench import _Service

    out: dict[str, Any] = {}
    starts = []
    for i in range(3):
        log(f"serve_ready {i + 1}/3")
        t = time.perf_counter()
        svc = _Service(model, device)
        starts.append(time.perf_counter() - t)
        if i < 2:
            svc.stop()
    out["serve_ready"] = statistics.median(starts)
    try:
        body = json.dumps({"prompt": PROMPTS[0], "resolution": 128}).encode()

        def http() -> None:
            status, data, _ = svc.request("POST", GENERATE, body)
            assert status == 200, data[:200]

        def local() -> None:
            engine.generate(PROMPTS[0], 128)

        http()  # warm-up: the service loads its text encoder on its own thread after the ready line
        local()
        t_http: list[float] = []
        t_local: list[float] = []
        for i in range(max(3, repeats)):
            log(f"http_overhead_128 round {i + 1}")
            for fn, acc in ((http, t_http), (local, t_local))[:: 1 if i % 2 else -1]:
                acc.extend(_times(fn, 1, 0))
        out["http_generate_128"] = statistics.median(t_http)
        out["inprocess_generate_128"] = statistics.median(t_local)
        out["http_overhead_128"] = round(out["http_generate_128"] / out["inprocess_generate_128"], 4)
    finally:
        svc.stop()
    return out
