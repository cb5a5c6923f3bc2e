"""The chain measures behind docs/results/chain_quality.json (docs/chains.md, *Cost*).

    PYTHONPATH=<checkout> python docs/results/chain_quality.py

:func:`backend.chain_quality.chain_quality` (what ``att3d bench`` reports as ``chain16_quality``) of
att3d bench's chain and of its tracked chain at 128³, one JSON line each, and of the bench chain
without states in between where the checkout has ``max_states``.
"""
from __future__ import annotations

import inspect
import json

import torch

from backend.bench import PROMPTS, TRACKED, _converged
from backend.chain_quality import chain_quality
from backend.inference import Pipeline


def main() -> None:
    torch.set_num_threads(1)
    pipe = Pipeline("demo", device="cpu")
    variants: list[tuple[str, list[str], dict]] = [("bench", PROMPTS, {}), ("tracked", TRACKED, {})]
    if "max_states" in inspect.signature(pipe.chain).parameters:
        variants.append(("bench_steps_only", PROMPTS, {"max_states": 5}))
    for name, prompts, kw in variants:
        seq = pipe.chain(prompts, steps=5, resolution=128, **kw)
        q = chain_quality(pipe, seq, prompts, resolution=128)
        print(json.dumps({"name": name, "pieces": len(seq.pieces), "states": sum(len(p.times) for p in seq.pieces),
                          "converged": _converged(seq), "held": sum(int(h) for p in seq.pieces for h in p.held),
                          **{k: seq.meta.get(k) for k in ("max_move_voxels", "inserted_states")},
                          **{k: v for k, v in q.items() if k not in ("keyframes", "states")}}))


if __name__ == "__main__":
    main()
