"""Quality against compute (the paper's Fig. 6): R-probability (or R-precision) against rendered
frames per prompt, seen (solid) and unseen (dashed), from the ``evals.jsonl`` of run folders.
A per-prompt baseline run (``run.mode = "per_prompt"``) is averaged over its prompts per budget.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path


def read_evals(run: str | Path) -> list[dict]:
    run = Path(run)
    files = [run / "evals.jsonl"] if (run / "evals.jsonl").is_file() else []
    files += sorted((run / "per_prompt").glob("*/evals.jsonl")) if (run / "per_prompt").is_dir() else []
    if not files:
        raise FileNotFoundError(f"{run}: no evals.jsonl (is it a training run folder?)")
    recs = []
    for f in files:
        for line in f.read_text().splitlines():
            if line.strip():
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError:
                    pass  # a line cut by a kill
    return recs


def curves(recs: list[dict], metric: str) -> dict[str, list[tuple[float, float]]]:
    """split → sorted (frames per prompt, mean metric) points."""
    acc: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in recs:
        if r.get(metric) is None:
            continue
        acc[r.get("split", "seen")][float(r["frames_per_prompt"])].append(float(r[metric]))
    return {s: sorted((x, sum(v) / len(v)) for x, v in pts.items()) for s, pts in acc.items()}


def plot_runs(runs: Sequence[str | Path], out: str | Path, metric: str = "r_probability",
              labels: Sequence[str] = (), title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = 0
    for i, run in enumerate(runs):
        recs = read_evals(run)
        label = labels[i] if i < len(labels) else Path(run).name
        if any(r.get("mode") == "per_prompt" for r in recs) or (Path(run) / "per_prompt").is_dir():
            label += " (per-prompt)"
        for split, pts in sorted(curves(recs, metric).items()):
            xs = [max(x, 1e-1) for x, _ in pts]
            ax.plot(xs, [y for _, y in pts], "--" if split == "unseen" else "-", marker="o", ms=3,
                    color=colors[i % len(colors)], label=f"{label}: {split}")
            drawn += 1
    if not drawn:
        raise ValueError(f"no {metric} in the evaluations of {', '.join(map(str, runs))} "
                         f"(train with eval.clip_model set, or plot metric=loss)")
    ax.set_xscale("log")
    ax.set_xlabel("rendered frames per prompt")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title or "quality vs compute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out
