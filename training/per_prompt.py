"""The per-prompt baseline (paper §4, Fig. 6): the same architecture and renderer, one freshly
initialised model per prompt (seed ``run.seed + i``), ``run.steps`` amortized steps each on its one
prompt. Models go to ``OUT/per_prompt/NNNN-slug/``, evaluations to each sub-run's ``evals.jsonl``
(``att3d plot`` averages them per budget)."""
from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from backend.device import pick_device
from backend.fileio import atomic_write_text

from .config import TrainConfig
from .distributed import dist_info
from .guidance import Guidance, build_guidance
from .loop import Trainer, TrainResult, run_prompt_set
from .prompts import PromptSet, slug


def train_per_prompt(config: TrainConfig, out: Path, *, prompts: Sequence[str] | None = None, resume: bool = False,
                     targets: Callable | None = None, guidance: Guidance | None = None, progress: bool = True,
                     hook: Callable | None = None) -> TrainResult:
    """Train one model per prompt; on ``resume`` prompts whose model folder exists are skipped."""
    ps = run_prompt_set(prompts, config)
    # Each model is scored against the whole set (seen and held-out prompts), as the amortized model is:
    # a query set of its one prompt would make every R-precision 1.
    queries = ps.prompts + ps.held_out
    guidance = guidance or build_guidance(config.guidance, pick_device(config.run.device, dist_info()[2]), targets)
    t0 = time.perf_counter()
    results = []
    for i, prompt in enumerate(ps.prompts):
        sub = out / "per_prompt" / f"{i:04d}-{slug(prompt)}"
        if resume and (sub / "model" / "config.json").is_file():
            results.append({"prompt": prompt, "model": str(sub / "model"), "skipped": True})
            continue
        cfg = copy.deepcopy(config)
        cfg.run.mode = "amortized"
        cfg.run.seed = config.run.seed + i
        one = PromptSet(f"{ps.name}[{i}]", [prompt], [], ps.split)
        r = Trainer(cfg, sub, prompts=one, targets=targets, guidance=guidance, progress=progress, hook=hook,
                    queries=queries).run(resume=resume)
        results.append({"prompt": prompt, "model": str(r.model_dir), "frames_per_prompt": r.frames_per_prompt,
                        "losses": r.losses[-1:] if r.losses else []})
        if r.stopped != "done":
            return TrainResult(out, None, r.step, r.losses, r.skipped, r.frames_per_prompt,
                               time.perf_counter() - t0, r.stopped, r.checkpoint, results)
    rank, world, _ = dist_info()
    if rank == 0:
        atomic_write_text(out / "per_prompt.json", json.dumps(results, indent=2) + "\n")
    return TrainResult(out, None, config.run.steps, [], 0, config.run.steps * config.run.batch_size * world,
                       time.perf_counter() - t0, "done", None, results)
