"""Interpolation quality on the Shapes world (``att3d eval-interpolation --world shapes --model M``).

An interpolation has no single true answer, but it has measurable failures (paper Fig. 16/18):
a midpoint more mottled than its ends (a dissolve), change bunched into one step (popping), and
endpoints that get worse when interpolants are trained. For pairs of prompts that differ in one
thing — the colour, the shape, or the accessory — the model is evaluated along α = 0, 1/K, …, 1 of
the mapping input ``(1 − α) c₁ + α c₂`` (what ``att3d interpolate`` and the add-on's chains use):

* ``midpoint_mottling``: the midpoint mesh's colour variation across edges over the mean of the two
  endpoints' (:func:`surface.color_variation`, each plus a floor of 0.002 — about what marching
  cubes of the true SDF shows — so that perfectly uniform ends do not divide by zero; 1 = as clean
  as the ends, the dissolve of an untrained interpolant is > 1);
* ``smoothness``: how evenly the change is spread along α: the largest step's change over the mean
  step's (1 = perfectly even; K = everything happens in one step). A step's change is
  ``1 − IoU`` of the occupancies (shape and accessory pairs) or the mean |Δ| of the albedo renders
  from the four evaluation views (colour pairs);
* ``midpoint_realism``: the midpoint's distance to the nearest ground-truth render of any world
  prompt over the endpoints' distance to their own nearest (1 = the midpoint looks as much like
  some object of the world as the endpoints do);
* ``endpoint_iou`` / ``endpoint_retrieved``: the endpoints' GT occupancy IoU and whether their
  nearest GT render is their own prompt (α = 0 and 1 are single prompts: interpolant training must
  not make them worse).

Besides the pairs, the four-season chain of the paper's Fig. 3 ("a tree in the spring" → summer →
fall → winter, three consecutive pairs measured like colour pairs) is reported apart
(``season_chain``).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .world import EVAL_AZIMUTHS, ShapesWorld, eval_cameras, get_world

PAIR_KINDS = ("color", "shape", "accessory")
DEFAULT_STEPS = 8
MOTTLING_FLOOR = 0.002
DEFAULT_PAIRS_PER_KIND = 6
RESOLUTION = 96
OCC_GRID = 64
EVAL_SIZE = 32
EVAL_SAMPLES = 64


def differs_in(world: ShapesWorld, i: int, j: int) -> str | None:
    """Which one thing prompts ``i`` and ``j`` differ in (``color`` / ``shape`` / ``accessory``), else None."""
    a, b = world.prompts[i], world.prompts[j]
    same_acc = (a.accessory, a.accessory_color) == (b.accessory, b.accessory_color)
    diff = [a.color != b.color, a.shape != b.shape, not same_acc]
    if sum(diff) != 1:
        return None
    return PAIR_KINDS[diff.index(True)]


def pick_pairs(world: ShapesWorld, indices: Sequence[int], per_kind: int = DEFAULT_PAIRS_PER_KIND,
               seed: int = 0) -> list[tuple[str, int, int]]:
    """``per_kind`` pairs of each kind among ``indices``, drawn reproducibly, no prompt used twice
    within a kind (so the pairs spread over the world)."""
    rng = np.random.default_rng(seed)
    pool = sorted(set(int(i) for i in indices))
    by_key: dict[tuple[str, Any], list[int]] = {}
    for i in pool:
        p = world.prompts[i]
        acc = (p.accessory, p.accessory_color)
        by_key.setdefault(("color", (p.shape, acc)), []).append(i)
        by_key.setdefault(("shape", (p.color, acc)), []).append(i)
        by_key.setdefault(("accessory", (p.shape, p.color)), []).append(i)
    out = []
    for kind in PAIR_KINDS:
        groups = [g for (k, _), g in by_key.items() if k == kind and len(g) >= 2]
        rng.shuffle(groups)
        used: set[int] = set()
        picked = 0
        for g in groups:
            cand = [i for i in g if i not in used]
            rng.shuffle(cand)
            for a in cand:
                b = next((j for j in cand if j != a and j not in used and differs_in(world, a, j) == kind), None)
                if b is not None:
                    out.append((kind, a, b))
                    used.update((a, b))
                    picked += 1
                    break
            if picked >= per_kind:
                break
    return out


def season_pairs(world: ShapesWorld) -> list[tuple[str, int, int]]:
    """The four-season chain of the paper's Fig. 3 as consecutive pairs: spring → summer → fall → winter
    (kind ``season``; measured as colour pairs are: the tree's season is its colour)."""
    from .world import SEASONS

    idx = [world.index(f"a tree in the {s}") for s in SEASONS]
    return [("season", a, b) for a, b in zip(idx, idx[1:])]


def _ratio_max_mean(changes: Sequence[float]) -> float:
    c = np.asarray(changes, dtype=np.float64)
    return float(c.max() / c.mean()) if len(c) and c.mean() > 1e-12 else float("nan")


@torch.no_grad()
def evaluate_interpolation(model: Any, *, split: str = "unseen", fraction: float | str | None = None,
                           pairs_per_kind: int = DEFAULT_PAIRS_PER_KIND, steps: int = DEFAULT_STEPS,
                           resolution: int = RESOLUTION, device: str = "cpu", encoder=None,
                           world_seed: int = 0, seed: int = 0, progress: bool = True,
                           pairs: Sequence[tuple[str, int, int]] | None = None,
                           queries: Sequence[int] | None = None, grid: int = 64,
                           seasons: bool = True) -> dict[str, Any]:
    """The interpolation measures of the module docstring for ``model`` (folder, name or ``ATT3D``).

    ``pairs``: explicit ``(kind, i, j)`` pairs instead of :func:`pick_pairs` (which come with the
    four-season chain, :func:`season_pairs`, when ``seasons``: reported apart, as ``by_kind["season"]``
    and ``season_chain``, and left out of the overall means so they stay comparable with models
    measured before the trees); ``queries``: the world
    prompts whose GT renders the realism and retrieval compare with (default: all; a subset must hold
    every pair's prompts — quick checks); ``grid``: the occupancy grid of the endpoints' IoU."""
    from tqdm import tqdm

    from backend.text_encoder import TextEncoder

    from .metrics import _load, _query_set, _trained_split, lattice_and_mesh
    from .surface import color_variation
    from .world import parse_fraction

    t0 = time.perf_counter()
    world = get_world(world_seed)
    model, cfg = _load(model, device)
    model.eval()
    prov = cfg.get("provenance", {}) if isinstance(cfg, dict) else {}
    frac = parse_fraction(fraction if fraction is not None else _trained_split(prov))
    pool = list(range(len(world))) if split == "all" else world.split(frac)[split]
    pool = [i for i in pool if i < world.n_base]  # the trees are measured by their season chain
    pairs = list(pairs) if pairs is not None else (pick_pairs(world, pool, pairs_per_kind, seed)
                                                   + (season_pairs(world) if seasons else []))
    arch = model.config
    encoder = encoder or TextEncoder(arch.text_encoder, arch.max_length)
    ends = sorted({i for _, i, _ in pairs} | {j for _, _, j in pairs})
    qidx, gt = _query_set(world, ends, queries, progress, device)
    gt = gt.reshape(len(qidx), -1)
    qpos = {q: k for k, q in enumerate(qidx)}
    cams = eval_cameras(1).to(device)
    nv = len(EVAL_AZIMUTHS)
    alphas = [k / steps for k in range(steps + 1)]
    occ_idx = np.linspace(0, resolution - 1, OCC_GRID).round().astype(int)
    rows = []
    for kind, i, j in tqdm(pairs, desc="interpolations", disable=not progress, file=sys.stderr, leave=False):
        emb = encoder([world.texts[i], world.texts[j]])
        tok, mask = emb.tokens.to(device), emb.mask.to(device)
        occs, imgs, variation, nearest = [], [], [], []
        for a in alphas:
            mod = model.modulate((1 - a) * tok[:1] + a * tok[1:], mask[:1] | mask[1:])
            vol, v, f, c = lattice_and_mesh(model, mod, resolution)
            occs.append(vol[np.ix_(occ_idx, occ_idx, occ_idx)] > arch.iso_density)
            variation.append(color_variation(f, c) if len(f) else float("nan"))
            modb = type(mod)(None if mod.params is None else mod.params.expand(nv, -1), mod.v.expand(nv, -1))
            img = model.render(modb, cams, EVAL_SIZE, EVAL_SIZE, n_samples=EVAL_SAMPLES, stratified=False,
                               use_env=False).albedo.clamp(0, 1).cpu().reshape(-1)
            imgs.append(img)
            nearest.append(((gt - img[None]) ** 2).mean(-1))
        if kind in ("color", "season"):
            changes = [float((imgs[k + 1] - imgs[k]).abs().mean()) for k in range(steps)]
        else:
            changes = []
            for k in range(steps):
                union = (occs[k] | occs[k + 1]).sum()
                changes.append(float(1 - (occs[k] & occs[k + 1]).sum() / union) if union else 0.0)
        mid = steps // 2
        ends_var = np.nanmean([variation[0], variation[-1]]) + MOTTLING_FLOOR
        d_end = [float(nearest[0][qpos[i]]), float(nearest[-1][qpos[j]])]
        rows.append({"kind": kind, "prompt_a": world.texts[i], "prompt_b": world.texts[j],
                     "midpoint_mottling": float((variation[mid] + MOTTLING_FLOOR) / ends_var),
                     "smoothness": _ratio_max_mean(changes),
                     "midpoint_realism": float(nearest[mid].min() / max(np.mean(d_end), 1e-12)),
                     "endpoint_retrieved": float(np.mean([qidx[int(nearest[0].argmin())] == i,
                                                          qidx[int(nearest[-1].argmin())] == j])),
                     "changes": changes, "color_variation": variation})
    # the endpoints' GT occupancy IoU, as `att3d eval --world shapes` measures it
    from .metrics import evaluate

    gt_ends = evaluate(model, prompts=ends, max_prompts=0, device=device, encoder=encoder, progress=False,
                       queries=qidx if queries is not None else None, surface=0, grid=grid)
    iou = {r["index"]: r["iou"] for r in gt_ends["per_prompt"]}
    for r, (_, i, j) in zip(rows, pairs):
        r["endpoint_iou"] = float(np.mean([iou[i], iou[j]]))

    keys = ("midpoint_mottling", "smoothness", "midpoint_realism", "endpoint_iou", "endpoint_retrieved")

    def mean(rs, k):
        vals = [r[k] for r in rs if r[k] == r[k]]
        return float(np.mean(vals)) if vals else float("nan")

    kinds = [k for k in (*PAIR_KINDS, "season") if any(r["kind"] == k for r in rows)]
    by_kind = {kind: {k: mean([r for r in rows if r["kind"] == kind], k) for k in keys} for kind in kinds}
    main = [r for r in rows if r["kind"] != "season"] or rows  # a season-only run reports the seasons
    out = {"world": "shapes", "split": split, "split_fraction": frac, "steps": steps, "resolution": resolution,
           "n_pairs": len(main), **{k: mean(main, k) for k in keys}, "by_kind": by_kind,
           "shape_smoothness": mean([r for r in main if r["kind"] in ("shape", "accessory")], "smoothness"),
           "pairs": rows, "model": prov.get("name", ""), "seconds": time.perf_counter() - t0}
    season = [r for r in rows if r["kind"] == "season"]
    if season:
        out["season_chain"] = {"prompts": [season[0]["prompt_a"]] + [r["prompt_b"] for r in season],
                               **{k: mean(season, k) for k in keys},
                               "mottling_per_step": [r["midpoint_mottling"] for r in season]}
    return out


def format_report(result: dict[str, Any]) -> str:
    """The interpolation measures per kind of pair, readable."""
    keys = ("midpoint_mottling", "smoothness", "midpoint_realism", "endpoint_iou", "endpoint_retrieved")
    lines = [f"{result.get('model') or 'model'}: {result['n_pairs']} {result['split']} pairs, α in "
             f"{result['steps']} steps, {result['resolution']}³, {result['seconds']:.0f} s",
             f"  {'pairs':<10}" + "".join(f"{k:>20}" for k in keys)]
    for kind, v in result["by_kind"].items():
        lines.append(f"  {kind:<10}" + "".join(f"{v[k]:20.3f}" for k in keys))
    lines.append(f"  {'all':<10}" + "".join(f"{result[k]:20.3f}" for k in keys))
    lines.append(f"  shape morphs (shape and accessory pairs): smoothness {result['shape_smoothness']:.3f} "
                 "(largest step / mean step; 1 = even)")
    if "season_chain" in result:
        sc = result["season_chain"]
        lines.append(f"  four seasons ({' → '.join(p.removeprefix('a tree in the ') for p in sc['prompts'])}): "
                     f"midpoint mottling {sc['midpoint_mottling']:.3f} (per step "
                     + ", ".join(f"{m:.2f}" for m in sc["mottling_per_step"])
                     + f"), smoothness {sc['smoothness']:.3f}, seasons retrieved {sc['endpoint_retrieved']:.2f}")
    return "\n".join(lines)
