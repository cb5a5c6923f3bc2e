"""The chain timings behind docs/results/chain_speed.json (docs/chains.md, *Cost*).

    PYTHONPATH=<checkout> python docs/results/chain_times.py ROUNDS [THREADS] [--steps-only]

att3d bench's 16-step chain (``cons``), the same steps as a mesh sequence (``ind``) and the tracked
chain (``trk``), in ROUNDS interleaved rounds after a warm-up, on the CPU with THREADS torch threads
(default 1): one JSON line of medians, CPU time of this process and wall time, and the ratios to the
mesh sequence. ``--steps-only``: no states in between (``max_states = steps``), where the checkout has
the option. Run it on two checkouts in alternating processes: the CPU is shared, so read the ratios.
"""
from __future__ import annotations

import inspect
import json
import statistics
import sys
import time

import torch

from backend.bench import PROMPTS, TRACKED
from backend.inference import Pipeline


def main() -> None:
    rounds = int(sys.argv[1])
    torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 1)
    pipe = Pipeline("demo", device="cpu")
    has_cap = "max_states" in inspect.signature(pipe.chain).parameters
    kw = {"max_states": 5} if has_cap and "--steps-only" in sys.argv else {}
    runs = {"cons": lambda: pipe.chain(PROMPTS, steps=5, resolution=128, **kw),
            "ind": lambda: pipe.chain(PROMPTS, steps=5, resolution=128, consistent=False),
            "trk": lambda: pipe.chain(TRACKED, steps=5, resolution=128, **kw)}
    for fn in runs.values():
        fn()
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    wall: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for k in list(runs)[:: 1 if r % 2 else -1]:
            c, w = time.process_time(), time.perf_counter()
            runs[k]()
            cpu[k].append(time.process_time() - c)
            wall[k].append(time.perf_counter() - w)
    mc = {k: round(statistics.median(v), 3) for k, v in cpu.items()}
    mw = {k: round(statistics.median(v), 3) for k, v in wall.items()}
    print(json.dumps({"cpu": mc, "wall": mw,
                      "cpu_ratio": {k: round(mc[k] / mc["ind"], 3) for k in ("cons", "trk")},
                      "wall_ratio": {k: round(mw[k] / mw["ind"], 3) for k in ("cons", "trk")}}))


if __name__ == "__main__":
    main()
