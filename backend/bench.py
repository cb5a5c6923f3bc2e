"""``att3d bench``: medians of the inference stages, in seconds, as one JSON object."""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

PROMPTS = ["a red cube wearing a party hat", "a blue sphere on a plate", "a green cone with a ring",
           "a yellow torus"]


def _median(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def run_bench(model: str = "demo", device: str = "auto", repeats: int = 5, quiet: bool = False) -> dict[str, Any]:
    from .chain_quality import chain_quality
    from .export import export_mesh
    from .inference import Pipeline
    from .mesh import density_lattice, marching_cubes

    def log(msg: str) -> None:
        if not quiet:
            print(f"bench: {msg}", file=sys.stderr)

    pipe = Pipeline(model, device=device)
    cfg = pipe.model.config
    pipe.embed(PROMPTS)  # warms the on-disk embedding cache
    one = pipe.embed(PROMPTS[0])
    mod = pipe.modulate(one)
    res: dict[str, Any] = {"model": pipe.model_id, "device": str(pipe.device), "torch": torch.__version__,
                           "threads": torch.get_num_threads(),
                           "parameters": sum(p.numel() for p in pipe.model.parameters()),
                           "repeats": repeats}
    log("mapping")
    res["mapping"] = _median(lambda: pipe.modulate(one), repeats)
    log("lattice_128")
    res["lattice_128"] = _median(lambda: density_lattice(pipe.model, mod, 128), repeats)
    vol = density_lattice(pipe.model, mod, 128)
    log("marching_cubes_128")
    res["marching_cubes_128"] = _median(lambda: marching_cubes(vol, cfg.iso_density, cfg.bound), repeats)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.glb"
        log("generate_glb_128")
        res["generate_glb_128"] = _median(lambda: export_mesh(pipe.generate(PROMPTS[0], 128), out), repeats)
        res["glb_bytes"] = out.stat().st_size
    log("chain16_consistent")
    # 4 keyframes, 5 meshes per segment + the last keyframe = 16 meshes on one set of faces.
    res["chain16_consistent"] = _median(lambda: pipe.chain(PROMPTS, steps=5, resolution=128, consistent=True),
                                        max(1, repeats // 2))
    seq = pipe.chain(PROMPTS, steps=5, resolution=128, consistent=True)
    res["chain16_vertices"] = [int(len(p.vertices[0])) for p in seq.pieces]
    log("chain16_quality")
    # how faithful the chain is (backend.chain_quality): keyframes vs the direct meshes, every state
    q = chain_quality(pipe, seq, PROMPTS, resolution=128)
    res["chain16_quality"] = {k: v for k, v in q.items() if k not in ("keyframes", "states")}
    return res
