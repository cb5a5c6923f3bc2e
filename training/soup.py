"""Model soups: one model whose weights are a weighted mean of runs that started from the same weights.

Runs fine-tuned from one warm start stay in one basin of the loss, so the mean of their weights is a
model of its own, often better than each (Wortsman et al., 2022, "Model soups"). Demo v3.2 is such a
soup: v3.1 and a run continued from it that drew pyramids better and cones worse; their mean drew
pyramids better than either and kept nearly all of v3.1's cones (the model card has the figures).

    att3d train-demo --soup runs/v31 runs/v32 runs/v33 --out runs/v34     # equal weights
    att3d train-demo --soup runs/v31:2 runs/v32 runs/v33 --out runs/v34   # v31 counts twice

The soup's extraction level starts at the ingredients' weighted mean; calibrate it (``att3d
calibrate-iso --model runs/v34/model --write``) before measuring or shipping it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from backend.model import save_model

#: what differs between runs of one architecture without making their weights incompatible
_FREE = {"backend", "iso_density"}


def parse_ingredient(text: str) -> tuple[str, float]:
    """``PATH`` or ``PATH:WEIGHT`` → (path, weight > 0)."""
    path, sep, weight = text.rpartition(":")
    if not sep or not path or "/" in weight or "\\" in weight:
        return text, 1.0
    try:
        w = float(weight)
    except ValueError:
        raise ValueError(f"--soup {text}: the weight after ':' is not a number") from None
    if not w > 0:
        raise ValueError(f"--soup {text}: a weight must be positive")
    return path, w


def make_soup(ingredients: Sequence[tuple[str, float]], out: str | Path) -> Path:
    """Write ``out/model``: the weighted mean of the ingredients' weights (model, run or checkpoint
    folders of one architecture). The provenance is the first ingredient's (the trainer, prompts and
    guidance they share) with ``soup`` listing every ingredient by name, weights hash and weight."""
    from training.modes.amortized import architecture_differences, load_recorded, run_name

    if len(ingredients) < 2:
        raise ValueError("a soup needs at least two models")
    if (Path(out) / "model").exists():  # never over a run's own model
        raise ValueError(f"--out {out}: it already holds a model; choose a new folder")
    models, records = [], []
    prov: dict = {}
    for path, weight in ingredients:
        if not Path(path).exists():
            raise ValueError(f"--soup {path}: no such model, run or checkpoint folder")
        m, cfg, rec = load_recorded(path)
        if models and (diff := architecture_differences(m.config, models[0].config, _FREE)):
            raise ValueError(f"--soup {path}: another architecture than {ingredients[0][0]} ({'; '.join(diff)})")
        if not models:  # the first run's provenance: the trainer, prompts and guidance they share
            prov = dict(cfg.get("provenance", {}))
        models.append(m)
        records.append({**rec, "weight": weight})
    total = sum(w for _, w in ingredients)
    shares = [w / total for _, w in ingredients]
    states = [m.state_dict() for m in models]
    mean: dict[str, torch.Tensor] = {}
    for key, value in states[0].items():
        if not value.is_floating_point():
            mean[key] = value
            continue
        v = sum(s * st[key].double() for s, st in zip(shares, states))
        if key.endswith(("._u", "._v")):
            # spectral norm's power-iteration vectors are unit vectors; their mean is shorter, which would
            # shrink σ's estimate u·Wv and scale the layer up
            v = v / v.norm().clamp_min(1e-12)
        mean[key] = v.to(value.dtype)
    soup = models[0]
    soup.load_state_dict(mean)
    level = sum(s * m.config.iso_density for s, m in zip(shares, models))
    soup.config = replace(soup.config, iso_density=round(float(level), 3))
    prov.update(name=run_name(out), step=None, frames_per_prompt=None, init=None, soup=records)
    return save_model(soup, Path(out) / "model", prov)
