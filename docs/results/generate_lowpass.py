"""The default output's cost against the raw surface (README, *Speed*): docs/results/generate_lowpass.json.

    PYTHONPATH=<checkout> python docs/results/generate_lowpass.py

``Engine.generate`` (the mesh in memory, no file) of three demo prompts at 128³ and 256³, raw
(``smooth=0``) and default (the low-passed density, then 20 Taubin iterations), 5 alternating rounds
after a warm-up, 1 torch thread: one JSON line per resolution with the medians.
"""
import json
import statistics
import time

import torch

from backend.engine import Engine
from backend.inference import Pipeline

PROMPTS = ["a red cube wearing a blue party hat", "a yellow torus with pink ears", "a tree in the summer"]


def main() -> None:
    torch.set_num_threads(1)
    engine = Engine(Pipeline("demo", device="cpu"))
    for res in (128, 256):
        times: dict[int, list[float]] = {0: [], 20: []}
        for p in PROMPTS:
            engine.generate(p, res, smooth=0)
            engine.generate(p, res)
        for r in range(5):
            for smooth in ((0, 20) if r % 2 else (20, 0)):
                for p in PROMPTS:
                    t = time.perf_counter()
                    engine.generate(p, res, smooth=smooth)
                    times[smooth].append(time.perf_counter() - t)
        print(json.dumps({"resolution": res, "raw_median_s": round(statistics.median(times[0]), 3),
                          "default_median_s": round(statistics.median(times[20]), 3)}))


if __name__ == "__main__":
    main()
