"""``att3d bench-interpolation --world shapes``: the paper's Fig. 18/19 with numbers, without confounds.

Every variant continues the **same weights** (the preset pins them by the SHA-256 of their
``model.safetensors``, not by a name such as ``demo`` that changes meaning when a new model ships)
with the **same recipe** (the one demo v2 was trained with: the v1 preset plus grid TV; the same
teacher, pinned by hash too) and the same steps; only the interpolant settings differ. The baseline,
``none``, is a plain continuation under those identical settings.

Variants (``VARIANTS``): ``none``; ``latent_random``, the set-up of the v2 campaign (Eq. 8, random
pairs of the whole seen split, α ~ Beta(κ, κ) only); and, each change alone and then together,
``latent_ends`` (a share of every batch at α ∈ {0, 1}), ``latent_nearest`` (partners among each
prompt's nearest prompts by text embedding), ``latent_ends_nearest``, ``latent_ends_nearest_anchor``
(+ an anchor holding the pair prompts' modulations near the start's), and the other targets on the
endpoint-keeping recipe (``loss_ends_nearest`` Eq. 10, ``guidance_ends_nearest`` Eq. 11) and Fig. 19's
opposite κ order (``latent_ends_nearest_small_first``). κ follows the paper's proportions: κ = 2 for
the first half of the steps, then 0.5 (Fig. 19's "small first" the other way round).

While a variant trains, its **endpoints** — ``n_endpoints`` seen prompts, evenly spread, the four
season trees among them — are measured every ``eval_every`` steps (GT R-precision over every world
prompt, occupancy IoU, volume ratio: :func:`.metrics.evaluate`) into ``OUT/<run>/endpoints.jsonl``;
the start is measured once (``OUT/start.json``). At the end, each variant is measured on pairs of
unseen prompts that differ in colour, shape or accessory (:mod:`.interpolation_metrics`), on the
four-season chain, and on single unseen prompts. ``OUT/<run>/result.json`` holds each run,
``OUT/bench.json`` and ``OUT/bench.png`` the comparison (runs of one variant with other seeds,
``--seed N`` → ``OUT/<variant>_s<N>``, are averaged), and the command prints per variant whether the
paper's claim holds on this world: cleaner (less mottled), more evenly spread in-betweens than
``none``, with the endpoints kept (R-precision and IoU no more than 0.02 below ``none``'s, the volume
no more than 5 % further from the true one; :data:`ENDPOINT_TOLERANCE`).

Sizes (``--size``; presets ``training/configs/shapes/interp_bench_{tiny,small,gpu}.toml``): ``tiny``
trains a tiny fresh model for a few steps (tests), ``small`` a few hundred CPU steps from the pinned
start, ``gpu`` time-limited runs at batch 32 (``--variant NAME`` trains and measures one,
``--summarize`` compares what is there).
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.fileio import atomic_write_json
from training.config import read_config_file

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "shapes"
SIZE_NAMES = ("tiny", "small", "gpu")
#: the κ schedules of Fig. 19, as (κ before the switch, κ after)
KAPPA = {"large_first": (2.0, 0.5), "small_first": (0.5, 2.0)}
_ENDS = {"endpoint_share": 0.5}
_NEAREST = {"partners": "nearest", "neighbours": 16}
VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"mode": "amortized"},
    "latent_random": {"mode": "interpolation", "target": "latent", "kappa": "large_first"},
    "latent_ends": {"mode": "interpolation", "target": "latent", "kappa": "large_first", **_ENDS},
    "latent_nearest": {"mode": "interpolation", "target": "latent", "kappa": "large_first", **_NEAREST},
    "latent_ends_nearest": {"mode": "interpolation", "target": "latent", "kappa": "large_first", **_ENDS, **_NEAREST},
    "latent_ends_nearest_anchor": {"mode": "interpolation", "target": "latent", "kappa": "large_first", **_ENDS,
                                   **_NEAREST, "anchor": 1.0},
    "loss_ends_nearest": {"mode": "interpolation", "target": "loss", "kappa": "large_first", **_ENDS, **_NEAREST},
    "guidance_ends_nearest": {"mode": "interpolation", "target": "guidance", "kappa": "large_first", **_ENDS,
                              **_NEAREST},
    "latent_ends_nearest_small_first": {"mode": "interpolation", "target": "latent", "kappa": "small_first", **_ENDS,
                                        **_NEAREST},
}
#: what `att3d bench-interpolation` runs without --variant (the rest: --variant NAME)
DEFAULT_VARIANTS = ("none", "latent_random", "latent_ends", "latent_nearest", "latent_ends_nearest",
                    "latent_ends_nearest_anchor")
_INTERP_KEYS = ("endpoint_share", "partners", "neighbours", "anchor")
#: the endpoints are kept when, against `none`, R-precision and IoU are no more than 0.02 lower and
#: the volume is no more than 5 % further from the true one (``endpoints_within_tolerance``: every
#: change within these bounds either way, the issue's literal reading)
ENDPOINT_TOLERANCE = {"r_precision": 0.02, "iou": 0.02, "volume_ratio": 0.05}
SEASON_CHAIN = tuple(f"a tree in the {s}" for s in ("spring", "summer", "fall", "winter"))


def read_size(name: str) -> dict[str, Any]:
    if name not in SIZE_NAMES:
        raise ValueError(f"unknown size {name!r}; choose from {', '.join(SIZE_NAMES)}")
    d = read_config_file(PRESET_DIR / f"interp_bench_{name}.toml")
    return {"overrides": list(d.get("overrides", {}).get("set", [])), **d["bench"]}


def run_dir_name(variant: str, seed: int = 0) -> str:
    return variant if seed == 0 else f"{variant}_s{seed}"


def variant_overrides(name: str, size: dict[str, Any], guidance_scale: float, seed: int = 0) -> list[str]:
    """The ``section.key=value`` overrides of one variant at one size (over the bench's base recipe)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    v = VARIANTS[name]
    out = list(size["overrides"]) + [f"run.mode={v['mode']}", f"run.seed={seed}"]
    if v["mode"] == "interpolation":
        before, after = KAPPA[v["kappa"]]
        switch = int(size["steps"]) // 2  # the paper's proportions: half the steps at each κ
        out += [f"interpolation.target={v['target']}", "interpolation.random_pairs=true",
                f"interpolation.kappa=[[{switch}, {before}], [1e12, {after}]]",
                # Eq. 11's ω1, ω2 at the recipe's guidance scale (the paper's 100 is its CFG)
                f"interpolation.scale1={guidance_scale}", f"interpolation.scale2={guidance_scale}"]
        out += [f"interpolation.{k}={json.dumps(v[k])}" for k in _INTERP_KEYS if k in v]
    return out


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pinned_start(size: dict[str, Any], init: str | None = None) -> tuple[str, str | None]:
    """The start every variant continues: ``init`` (a model folder) or the preset's, checked against
    the preset's ``init_sha256`` → (folder, its weights' SHA-256). ``""`` = a fresh model (tiny)."""
    from backend.model import resolve_model_path

    from . import demo

    want = size.get("init_sha256") or None
    name = init or size.get("init", "")
    if not name:
        return "", None
    folder = demo.SHIP_DIR if name == "demo" else Path(name)
    if (folder / "model" / "config.json").is_file():  # a run folder
        folder = folder / "model"
    folder = resolve_model_path(folder)
    got = file_sha256(folder / "model.safetensors")
    if want and got != want:
        raise ValueError(f"the bench starts from weights with sha256 {want[:12]}… (the preset's init_sha256); "
                         f"{folder} holds {got[:12]}…. Pass --init with that model (demo v2: "
                         "`git show <commit>:backend/models/demo/model.safetensors`, the commit before v3 shipped) "
                         "or change the preset knowingly")
    return str(folder), got


def pinned_teacher(size: dict[str, Any], teacher: str | None = None) -> tuple[str, str]:
    """The teacher folder, checked against the preset's ``teacher_sha256`` (its UNet's weights)."""
    from .teacher import resolve_teacher

    folder = resolve_teacher(teacher or "shipped")
    got = file_sha256(folder / "unet" / "diffusion_pytorch_model.safetensors")
    want = size.get("teacher_sha256") or None
    if want and got != want:
        raise ValueError(f"the bench's teacher has sha256 {want[:12]}… (the preset's teacher_sha256); {folder} "
                         f"holds {got[:12]}…. Pass --teacher with that teacher or change the preset knowingly")
    return str(folder), got


def endpoint_prompts(n: int) -> list[int]:
    """The endpoints watched while training: ``n`` seen prompts of the 50 % split, evenly spread, the
    four plain season trees among them."""
    from .metrics import pick_prompts
    from .world import get_world

    world = get_world()
    seasons = [world.index(t) for t in SEASON_CHAIN]
    rest = [i for i in world.split(0.5)["seen"] if i not in seasons]
    return sorted(set(seasons) | set(pick_prompts(rest, max(n - len(seasons), 1))))


def measure_endpoints(model: Any, prompts: list[int], size: dict[str, Any], device: str,
                      encoder=None) -> dict[str, Any]:
    """GT R-precision (over the size's gallery), IoU and volume ratio of ``prompts``."""
    from .metrics import evaluate

    queries = None if size["gallery"] == "all" else prompts
    r = evaluate(model, prompts=prompts, max_prompts=0, device=device, encoder=encoder, progress=False,
                 per_prompt=False, queries=queries, surface=0, grid=size.get("grid", 64))
    return {k: r[k] for k in ("r_precision", "iou", "volume_ratio", "n_prompts")}


def _endpoint_hook(path: Path, prompts: list[int], size: dict[str, Any], device: str) -> Callable:
    """The training hook that logs the endpoints every ``eval_every`` steps (one JSON line each)."""
    every = int(size.get("eval_every", 0))
    cache: dict[str, Any] = {}

    def hook(trainer, step: int, loss: float) -> None:
        if not every or step % every or not trainer.is_main:
            return
        from backend.text_encoder import TextEncoder

        model = trainer.model
        if "enc" not in cache:
            cache["enc"] = TextEncoder(model.config.text_encoder, model.config.max_length)
        m = measure_endpoints(model, prompts, size, device, cache["enc"])
        model.train()  # evaluate() switched it to eval mode
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, **m}) + "\n")

    return hook


def read_endpoint_log(path: Path) -> list[dict[str, Any]]:
    """The endpoint log, the last line per step (a resumed run measures again from its checkpoint)."""
    if not path.is_file():
        return []
    rows: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[int(r["step"])] = r
    return [rows[k] for k in sorted(rows)]


def measure_start(out: Path, size: dict[str, Any], init: str, device: str) -> dict[str, Any]:
    """The endpoints of the shared start (measured once per bench folder)."""
    path = out / "start.json"
    if path.is_file():
        return json.loads(path.read_text())
    prompts = endpoint_prompts(int(size["n_endpoints"]))
    res = {"step": 0, "init": init, **measure_endpoints(init, prompts, size, device)} if init else {"step": 0}
    atomic_write_json(path, res)
    return res


def season_chain(model: Any, size: dict[str, Any], device: str) -> dict[str, Any]:
    """The four-season chain (spring → summer → fall → winter) measured as colour pairs are."""
    from .interpolation_metrics import evaluate_interpolation, season_pairs
    from .world import get_world

    pairs = season_pairs(get_world())
    queries = None if size["gallery"] == "all" else sorted({k for _, a, b in pairs for k in (a, b)})
    r = evaluate_interpolation(model, split="all", fraction=0.5, pairs=pairs, steps=size["alpha_steps"],
                               resolution=size["resolution"], device=device, progress=False, queries=queries,
                               grid=size.get("grid", 64))
    return {k: r[k] for k in ("midpoint_mottling", "smoothness", "endpoint_retrieved", "endpoint_iou")}


def run_variant(out: str | Path, name: str, size: str = "small", teacher: str | None = None,
                device: str = "cpu", resume: bool = False, progress: bool = True, seed: int = 0,
                init: str | None = None, time_limit_s: float | None = None) -> dict[str, Any]:
    """Train one variant into ``OUT/<name>[_s<seed>]`` (resumable) and measure it into its ``result.json``;
    ``time_limit_s`` replaces the preset's."""
    from . import demo
    from .interpolation_metrics import evaluate_interpolation, pick_pairs
    from .metrics import evaluate, pick_prompts
    from .world import get_world

    S = read_size(size)
    overrides = variant_overrides(name, S, 0.0, seed)  # checks the name before anything is loaded
    start, start_sha = pinned_start(S, init)
    teacher_dir, teacher_sha = pinned_teacher(S, teacher)
    out = Path(out)
    rdir = out / run_dir_name(name, seed)
    done = rdir / "result.json"
    if resume and done.is_file():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    measure_start(out, S, start, device)
    base = demo.demo_config("t", recipe="v1")
    scale = float(base["guidance"]["scale"])
    overrides = variant_overrides(name, S, scale, seed) + [f"run.device={device}"]
    limit = time_limit_s if time_limit_s is not None else S.get("time_limit_s")
    if limit:
        overrides.append(f"run.time_limit_s={limit}")
    ends = endpoint_prompts(int(S["n_endpoints"]))
    log = rdir / "endpoints.jsonl"
    resuming = resume and rdir.exists()
    if not resuming and log.is_file():
        log.unlink()
    t0 = time.perf_counter()
    r = demo.train_demo(teacher_dir, rdir, S["steps"], resume=resuming, fraction=0.5, progress=progress,
                        recipe="v1", batch_size=S["batch"], init=start, overrides=overrides,
                        hook=_endpoint_hook(log, ends, S, device))
    train_s = time.perf_counter() - t0
    model = rdir / "model"
    world = get_world()
    unseen = [i for i in world.split(0.5)["unseen"] if i < world.n_base]
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
    final_ends = measure_endpoints(str(model), ends, S, device)
    curve = [r_ for r_ in read_endpoint_log(log) if r_["step"] != r.step]
    res = {"variant": name, **VARIANTS[name], "seed": seed, "size": size, "steps": r.step, "stopped": r.stopped,
           "frames_per_prompt": r.frames_per_prompt, "train_seconds": train_s,
           "start": {"path": Path(start).name if start else "", "sha256": start_sha},
           "teacher": {"path": Path(teacher_dir).name, "sha256": teacher_sha},
           "endpoints": final_ends, "endpoint_curve": curve + [{"step": r.step, **final_ends}],
           "seasons": season_chain(str(model), S, device),
           "interpolation": {k: v for k, v in interp.items() if k != "pairs"}, "single": single,
           "command": f"att3d bench-interpolation --size {size} --out OUT --variant {name} --seed {seed}"}
    atomic_write_json(done, res)
    return res


def summarize(out: str | Path) -> dict[str, Any]:
    """Compare every measured variant in ``OUT`` (seeds averaged): ``bench.json``, ``bench.png`` and
    the claim per variant."""
    out = Path(out)
    res = [json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))]
    if not res:
        raise ValueError(f"{out}: no measured variant (no */result.json)")
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in res:
        runs.setdefault(r["variant"], []).append(_row(r))
    rows = {name: _mean_rows(rs) for name, rs in runs.items()}
    claim = _claim(rows)
    start = out / "start.json"
    summary = {"variants": rows, "claim": claim, "tolerance": ENDPOINT_TOLERANCE,
               "start": json.loads(start.read_text()) if start.is_file() else None,
               "curves": {f"{r['variant']}/seed{r.get('seed', 0)}": r.get("endpoint_curve", []) for r in res}}
    atomic_write_json(out / "bench.json", summary)
    _plot(summary, out / "bench.png")
    return {**summary, "json": str(out / "bench.json"), "png": str(out / "bench.png")}


def _row(r: dict[str, Any]) -> dict[str, Any]:
    i, s = r["interpolation"], r["single"]
    e = r.get("endpoints", {})
    row = {"steps": r["steps"], "frames_per_prompt": r["frames_per_prompt"], "seeds": 1,
           "midpoint_mottling": i["midpoint_mottling"],
           "color_mottling": i["by_kind"]["color"]["midpoint_mottling"], "shape_smoothness": i["shape_smoothness"],
           "color_smoothness": i["by_kind"]["color"]["smoothness"], "midpoint_realism": i["midpoint_realism"],
           "pair_endpoint_iou": i["endpoint_iou"], "pair_endpoint_retrieved": i["endpoint_retrieved"],
           "endpoint_r_precision": e.get("r_precision", float("nan")), "endpoint_iou": e.get("iou", float("nan")),
           "endpoint_volume": e.get("volume_ratio", float("nan")),
           "season_mottling": r.get("seasons", {}).get("midpoint_mottling", float("nan")),
           "r_precision": s["r_precision"], "iou": s["iou"], "volume_ratio": s.get("volume_ratio", float("nan"))}
    for k, v in s.get("surface", {}).items():
        row[f"surface_{k}"] = v
    return row


def _mean_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "seeds"}
    out["seeds"] = len(rows)
    return out


def _claim(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per interpolant variant, against ``none``: cleaner midpoints (lower mottling), more even shape
    morphs (lower largest/mean step), endpoints kept (:data:`ENDPOINT_TOLERANCE`)."""
    base = rows.get("none")
    out: dict[str, Any] = {}
    if base is None:
        return out
    tol = ENDPOINT_TOLERANCE
    for name, r in rows.items():
        if name == "none":
            continue
        cleaner = r["midpoint_mottling"] < base["midpoint_mottling"]
        smoother = r["shape_smoothness"] < base["shape_smoothness"]
        d = {"r_precision": r["endpoint_r_precision"] - base["endpoint_r_precision"],
             "iou": r["endpoint_iou"] - base["endpoint_iou"],
             "volume_ratio": r["endpoint_volume"] / base["endpoint_volume"] - 1}
        # worse is what counts: lower R-precision or IoU, a volume further from the true one (a fat
        # model that slims towards it keeps its endpoints; one that shrinks past it does not)
        vol_err, base_err = abs(math.log(r["endpoint_volume"])), abs(math.log(base["endpoint_volume"]))
        ends_ok = (d["r_precision"] >= -tol["r_precision"] and d["iou"] >= -tol["iou"]
                   and vol_err <= base_err + math.log(1 + tol["volume_ratio"]))
        within = all(abs(d[k]) <= tol[k] for k in d)
        out[name] = {"cleaner_midpoints": cleaner, "smoother_morphs": smoother, "endpoints_kept": ends_ok,
                     "endpoints_within_tolerance": within, "endpoint_change": d,
                     "holds": cleaner and smoother and ends_ok}
    return out


def claim_lines(summary: dict[str, Any]) -> list[str]:
    rows, claim = summary["variants"], summary["claim"]
    keys = ("midpoint_mottling", "shape_smoothness", "season_mottling", "endpoint_r_precision", "endpoint_iou",
            "endpoint_volume", "r_precision", "iou")
    width = max(20, *(len(n) + 2 for n in rows))
    lines = [f"{'variant':<{width}}" + "".join(f"{k:>21}" for k in keys) + "  seeds"]
    for name, r in rows.items():
        lines.append(f"{name:<{width}}" + "".join(f"{r[k]:21.3f}" for k in keys) + f"  {r['seeds']}")

    def yes(b: bool) -> str:
        return "yes" if b else "no"

    for name, c in claim.items():
        d = c["endpoint_change"]
        lines.append(f"{name}: cleaner midpoints {yes(c['cleaner_midpoints'])}, smoother morphs "
                     f"{yes(c['smoother_morphs'])}, endpoints kept {yes(c['endpoints_kept'])}"
                     f"{'' if c.get('endpoints_within_tolerance', True) else ' (not all within ±tolerance)'} "
                     f"(R-prec {d['r_precision']:+.3f}, IoU {d['iou']:+.3f}, volume {d['volume_ratio']:+.1%})"
                     f" -> the paper's claim {'holds' if c['holds'] else 'does not hold'} here")
    return lines


def _plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["variants"]
    keys = ("midpoint_mottling", "shape_smoothness", "season_mottling", "endpoint_r_precision", "endpoint_iou",
            "endpoint_volume")
    curves = summary.get("curves", {})
    fig, axes = plt.subplots(2, len(keys), figsize=(3.0 * len(keys), 6.4))
    names = list(rows)
    for ax, k in zip(axes[0], keys):
        ax.bar(range(len(names)), [rows[n][k] for n in names], color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=6)
        ax.set_title(k + (" (lower is better)" if k.endswith(("mottling", "smoothness")) else ""), fontsize=8)
    start = summary.get("start") or {}
    for ax, k in zip(axes[1][:3], ("r_precision", "iou", "volume_ratio")):
        for run, pts in curves.items():
            name = run.split("/")[0]
            xs = [0] + [p["step"] for p in pts]
            ys = [start.get(k, float("nan"))] + [p[k] for p in pts]
            ax.plot(xs, ys, marker="o", ms=3, color=f"C{names.index(name)}", label=run,
                    ls="-" if run.endswith("seed0") else "--")
        ax.set_title(f"endpoints: {k} over steps", fontsize=8)
        ax.set_xlabel("step", fontsize=7)
    axes[1][0].legend(fontsize=5)
    for ax in axes[1][3:]:
        ax.axis("off")
    fig.suptitle("Interpolant training on the Shapes world (paper Fig. 18/19), from one pinned start", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def run_bench(out: str | Path, size: str = "small", variants: list[str] | None = None, teacher: str | None = None,
              device: str = "cpu", resume: bool = False, progress: bool = True, seed: int = 0,
              init: str | None = None, time_limit_s: float | None = None) -> dict[str, Any]:
    """Every default (or the named) variant in turn, then :func:`summarize`."""
    for name in variants or list(DEFAULT_VARIANTS):
        if progress:
            print(f"[bench-interpolation] {name}", file=sys.stderr)
        run_variant(out, name, size, teacher, device, resume, progress, seed, init, time_limit_s)
    return summarize(out)
