"""``att3d bench-interpolation --world shapes``: the paper's Fig. 18/19 with numbers.

The same model is trained on from the same start with each kind of interpolant (App. B.1.14):
none (plain amortized training, the baseline whose chains "just dissolve between the endpoints"),
latent (Eq. 8), loss (Eq. 10) and guidance (Eq. 11) interpolation, and latent interpolation with
the opposite κ schedule (Fig. 19: "large → small" focuses on the midpoint first, then the
endpoints; "small → large" the other way round). Every variant shares the v2 demo recipe's surface
priors and everything else; pairs are drawn at random from the 50 % seen split.

Each variant is then measured on pairs of unseen prompts that differ in colour, shape or accessory
(:mod:`.interpolation_metrics`: midpoint mottling, smoothness along α, midpoint realism, endpoint
fidelity) and on single unseen prompts (:func:`.metrics.evaluate`: GT R-precision, IoU, surface).
``OUT/<variant>/result.json`` holds each, ``OUT/bench.json`` and ``OUT/bench.png`` the comparison,
and the command prints, per variant, whether the paper's claim holds on this world: interpolants
give cleaner (less mottled), more evenly spread in-betweens than none, without hurting the endpoints.

Sizes (``--size``; presets ``training/configs/shapes/interp_bench_{tiny,small,gpu}.toml``): ``tiny``
trains a tiny fresh model for a few steps (tests), ``small`` a few hundred CPU steps from the shipped
demo, ``gpu`` time-limited runs at batch 32 from the shipped demo (a lent GPU runs the variants in
parallel: ``--variant NAME`` trains and measures one, ``--summarize`` compares what is there).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from backend.fileio import atomic_write_json
from training.config import read_config_file

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "shapes"
SIZE_NAMES = ("tiny", "small", "gpu")
#: the κ schedules of Fig. 19, as (κ before the switch, κ after)
KAPPA = {"large_first": (2.0, 0.5), "small_first": (0.5, 2.0)}
VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"mode": "amortized"},
    "latent": {"mode": "interpolation", "target": "latent", "kappa": "large_first"},
    "loss": {"mode": "interpolation", "target": "loss", "kappa": "large_first"},
    "guidance": {"mode": "interpolation", "target": "guidance", "kappa": "large_first"},
    "latent_small_first": {"mode": "interpolation", "target": "latent", "kappa": "small_first"},
}


def read_size(name: str) -> dict[str, Any]:
    if name not in SIZE_NAMES:
        raise ValueError(f"unknown size {name!r}; choose from {', '.join(SIZE_NAMES)}")
    d = read_config_file(PRESET_DIR / f"interp_bench_{name}.toml")
    return {"overrides": list(d.get("overrides", {}).get("set", [])), **d["bench"]}


def variant_overrides(name: str, size: dict[str, Any], guidance_scale: float) -> list[str]:
    """The ``section.key=value`` overrides of one variant at one size (over the v2 recipe)."""
    v = VARIANTS[name]
    out = list(size["overrides"]) + [f"run.mode={v['mode']}"]
    if v["mode"] == "interpolation":
        before, after = KAPPA[v["kappa"]]
        out += [f"interpolation.target={v['target']}", "interpolation.random_pairs=true",
                f"interpolation.kappa=[[{size['kappa_switch']}, {before}], [1e12, {after}]]",
                # Eq. 11's ω1, ω2 at the recipe's guidance scale (the paper's 100 is its CFG)
                f"interpolation.scale1={guidance_scale}", f"interpolation.scale2={guidance_scale}"]
    return out


def run_variant(out: str | Path, name: str, size: str = "small", teacher: str | None = None,
                device: str = "cpu", resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train one variant into ``OUT/<name>`` (resumable) and measure it into ``OUT/<name>/result.json``."""
    from . import demo
    from .interpolation_metrics import evaluate_interpolation, pick_pairs
    from .metrics import evaluate, pick_prompts
    from .teacher import resolve_teacher
    from .world import get_world

    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    S = read_size(size)
    rdir = Path(out) / name
    done = rdir / "result.json"
    if resume and done.is_file():
        return json.loads(done.read_text())
    scale = float(demo.demo_config("t", recipe="v2")["guidance"]["scale"])
    overrides = variant_overrides(name, S, scale) + [f"run.device={device}"]
    if S.get("time_limit_s"):
        overrides.append(f"run.time_limit_s={S['time_limit_s']}")
    init = str(demo.SHIP_DIR) if S.get("init") == "demo" else ""
    t0 = time.perf_counter()
    r = demo.train_demo(str(resolve_teacher(teacher or "shipped")), rdir, S["steps"], resume=resume and rdir.exists(),
                        fraction=0.5, progress=progress, recipe="v2", batch_size=S["batch"], init=init,
                        overrides=overrides)
    train_s = time.perf_counter() - t0
    model = rdir / "model"
    world = get_world()
    unseen = world.split(0.5)["unseen"]
    pairs = pick_pairs(world, unseen, S["pairs"])
    scored = pick_prompts(unseen, S["n_eval"])
    # the retrieval gallery: every world prompt, or (quick sizes) just the prompts measured here
    queries = None if S["gallery"] == "all" else sorted({k for _, a, b in pairs for k in (a, b)} | set(scored))
    interp = evaluate_interpolation(str(model), split="unseen", fraction=0.5, pairs=pairs,
                                    steps=S["alpha_steps"], resolution=S["resolution"], device=device,
                                    progress=progress, queries=queries, grid=S.get("grid", 64))
    single = evaluate(str(model), prompts=scored, device=device, progress=progress, surface=S["n_surface"],
                      surface_resolution=S.get("surface_resolution", 128), per_prompt=False, queries=queries,
                      max_prompts=0, grid=S.get("grid", 64))
    res = {"variant": name, **VARIANTS[name], "size": size, "steps": r.step, "stopped": r.stopped,
           "frames_per_prompt": r.frames_per_prompt, "train_seconds": train_s,
           "interpolation": {k: v for k, v in interp.items() if k != "pairs"}, "single": single}
    atomic_write_json(done, res)
    return res


def summarize(out: str | Path) -> dict[str, Any]:
    """Compare every measured variant in ``OUT``: ``bench.json``, ``bench.png`` and the claim per variant."""
    out = Path(out)
    res = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))}
    if not res:
        raise ValueError(f"{out}: no measured variant (no */result.json)")
    rows = {name: _row(r) for name, r in res.items()}
    claim = _claim(rows)
    summary = {"variants": rows, "claim": claim}
    atomic_write_json(out / "bench.json", summary)
    _plot(rows, out / "bench.png")
    return {**summary, "json": str(out / "bench.json"), "png": str(out / "bench.png")}


def _row(r: dict[str, Any]) -> dict[str, Any]:
    i, s = r["interpolation"], r["single"]
    row = {"steps": r["steps"], "frames_per_prompt": r["frames_per_prompt"],
           "midpoint_mottling": i["midpoint_mottling"], "shape_smoothness": i["shape_smoothness"],
           "color_smoothness": i["by_kind"]["color"]["smoothness"], "midpoint_realism": i["midpoint_realism"],
           "endpoint_iou": i["endpoint_iou"], "endpoint_retrieved": i["endpoint_retrieved"],
           "r_precision": s["r_precision"], "iou": s["iou"]}
    for k, v in s.get("surface", {}).items():
        row[f"surface_{k}"] = v
    return row


def _claim(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per interpolant variant, against ``none``: cleaner midpoints (lower mottling), more even shape
    morphs (lower largest/mean step), endpoints no worse (IoU within 0.02, retrieval within 0.05)."""
    base = rows.get("none")
    out: dict[str, Any] = {}
    if base is None:
        return out
    for name, r in rows.items():
        if name == "none":
            continue
        cleaner = r["midpoint_mottling"] < base["midpoint_mottling"]
        smoother = r["shape_smoothness"] < base["shape_smoothness"]
        ends_ok = (r["endpoint_iou"] >= base["endpoint_iou"] - 0.02
                   and r["endpoint_retrieved"] >= base["endpoint_retrieved"] - 0.05)
        out[name] = {"cleaner_midpoints": cleaner, "smoother_morphs": smoother, "endpoints_kept": ends_ok,
                     "holds": cleaner and smoother and ends_ok}
    return out


def claim_lines(summary: dict[str, Any]) -> list[str]:
    rows, claim = summary["variants"], summary["claim"]
    keys = ("midpoint_mottling", "shape_smoothness", "color_smoothness", "endpoint_iou", "endpoint_retrieved",
            "r_precision", "iou")
    lines = [f"{'variant':<20}" + "".join(f"{k:>19}" for k in keys)]
    for name, r in rows.items():
        lines.append(f"{name:<20}" + "".join(f"{r[k]:19.3f}" for k in keys))
    def yes(b: bool) -> str:
        return "yes" if b else "no"

    for name, c in claim.items():
        lines.append(f"{name}: cleaner midpoints {yes(c['cleaner_midpoints'])}, smoother morphs "
                     f"{yes(c['smoother_morphs'])}, endpoints kept {yes(c['endpoints_kept'])}"
                     f" -> the paper's claim {'holds' if c['holds'] else 'does not hold'} here")
    return lines


def _plot(rows: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("midpoint_mottling", "shape_smoothness", "color_smoothness", "endpoint_iou", "r_precision")
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2))
    names = list(rows)
    for ax, k in zip(axes, keys):
        ax.bar(range(len(names)), [rows[n][k] for n in names], color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(k + (" (lower is better)" if k.endswith(("mottling", "smoothness")) else ""), fontsize=8)
    fig.suptitle("Interpolant training on the Shapes world (paper Fig. 18/19)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def run_bench(out: str | Path, size: str = "small", variants: list[str] | None = None, teacher: str | None = None,
              device: str = "cpu", resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Every (or the named) variant in turn, then :func:`summarize`."""
    for name in variants or list(VARIANTS):
        if progress:
            print(f"[bench-interpolation] {name}", file=sys.stderr)
        run_variant(out, name, size, teacher, device, resume, progress)
    return summarize(out)
