"""Interpolation amortization (paper §3.2.2, App. B.1.14): one model for a continuum of prompts
between the two of each pair. Every paper equation of the mode is here:

- the mapping network reads ``c' = (1−α)c1 + αc2`` (Eq. 8 on its own tokens) with
  ``α ~ Dir(κ) = Beta(κ, κ)`` and a κ schedule (κ = 2 for 5000 steps, then 0.5);
- ``interpolation.target`` (``[interpolation]`` in ``training/config.py``) says what the guidance is
  asked for:

  - ``latent`` (Eq. 8): guidance on the interpolated embedding ``(1−α)e1 + αe2``;
  - ``loss`` (Eq. 10): guidance on prompt 2 with probability α, ``c' = (1−Z)c1 + Z c2, Z ~ Bern(α)``
    — the one-sample estimate of Eq. 9's ``L = (1−α)L1 + αL2`` at the cost of one guidance pass;
  - ``guidance`` (Eq. 11): ``ε̂ = ε_u + (1−α)ω1(ε_1 − ε_u) + αω2(ε_2 − ε_u)`` (the paper writes
    ``ε_prompt i`` for the guidance direction ``ε_i − ε_u``: plain CFG on prompt 1 at α = 0, on
    prompt 2 at α = 1), as two CFG terms whose sum the guidance takes (``training.guidance.sds.cfg``).

Reconstruction guidance renders Eq. 10's pick whatever the target (there is no ground truth between
two prompts). Rendered frames per prompt count pairs.

What keeps the endpoints (issue 25; each off by default, so older configs train as they did): the
equations alone never train a prompt itself — Beta(κ, κ) never draws α ∈ {0, 1} — and a blend of two
unrelated objects, pushed by SDS, pulls both of them through the shared weights. So
``endpoint_share`` of every batch is drawn at α ∈ {0, 1}; ``partners = "nearest"`` pairs a prompt
with one of its nearest prompts by text embedding (related prompts, as the paper's chains are); and
``anchor`` adds ``λ · mean((m(c) − m₀(c))²) / mean(m₀(c)²)`` over the batch's pair prompts, ``m₀`` the
warm start's mapping network (frozen; no teacher calls).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from backend.mapping_network import Modulation

from ..config import TrainConfig
from ..prompts import PromptSet
from .amortized import Amortized, Batch


def sample_beta(kappa: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """α ~ Beta(κ, κ) = Dir(κ, κ), reproducibly from a torch generator."""
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    return torch.from_numpy(np.random.default_rng(seed).beta(kappa, kappa, size=n)).float()


def kappa_at(schedule: Sequence[Sequence[float]], step: int) -> float:
    """κ of a ``[[until_step, κ], ...]`` schedule (the last κ holds afterwards)."""
    if not schedule:
        return 1.0
    for until, k in schedule:
        if step <= until:
            return float(k)
    return float(schedule[-1][1])


def make_pairs(prompts: Sequence[str], pairs: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    if pairs:
        out = []
        for p in pairs:
            if len(p) != 2:
                raise ValueError(f"interpolation.pairs: each pair needs two prompts, got {p!r}")
            out.append((str(p[0]), str(p[1])))
        return out
    if len(prompts) < 2:
        raise ValueError("interpolation needs at least two prompts")
    return [(prompts[i], prompts[i + 1]) for i in range(len(prompts) - 1)]


def nearest_partners(tokens: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """``[n, min(k, n−1)]``: each prompt's nearest other prompts by cosine similarity of their
    mask-averaged token embeddings (the mapping network's own input), nearest first."""
    m = mask.to(tokens.dtype).unsqueeze(-1)
    pooled = (tokens * m).sum(1) / m.sum(1).clamp_min(1)
    pooled = torch.nn.functional.normalize(pooled.float(), dim=-1)
    sim = pooled @ pooled.T
    sim.fill_diagonal_(-float("inf"))
    return sim.topk(min(k, len(sim) - 1), dim=1).indices


def anchor_loss(mod: Modulation, ref: Modulation) -> torch.Tensor:
    """How far the modulations moved from the warm start's: mean squared change over the warm start's
    mean square, for the grid parameters and the task vector alike (a scale-free number: 0.01 = 10 % RMS)."""
    def rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2).mean() / (b ** 2).mean().clamp_min(1e-12)

    loss = rel(mod.v, ref.v)
    if mod.params is not None and ref.params is not None:
        loss = loss + rel(mod.params, ref.params)
    return loss


@dataclass
class InterpolationBatch(Batch):
    alpha: torch.Tensor | None = None  # [B] interpolation coefficients
    kappa: float = 1.0  # the concentration they were drawn with
    z: torch.Tensor | None = None  # [B] Eq. 10's Z ~ Bern(α): True = prompt 2
    anchor_index: torch.Tensor | None = None  # the pair prompts the anchor term holds (indices into tokens)

    def scalars(self) -> dict[str, float]:
        return {"kappa": self.kappa}


class Interpolation(Amortized):
    name = "interpolation"
    scores_prompts = False

    def __init__(self, config: TrainConfig, prompt_set: PromptSet, rank: int = 0, world: int = 1,
                 queries: Sequence[str] = ()) -> None:
        ic = config.interpolation
        if ic.random_pairs and ic.pairs:
            raise ValueError("interpolation: give either pairs or random_pairs = true, not both")
        if ic.random_pairs and len(prompt_set.prompts) < 2:
            raise ValueError("interpolation.random_pairs needs at least two prompts")
        self.random_pairs = ic.random_pairs
        self.pairs = [] if ic.random_pairs else make_pairs(prompt_set.prompts, ic.pairs)
        super().__init__(config, prompt_set, rank, world, queries)
        if not ic.random_pairs:
            self.prompts = list(dict.fromkeys([p for pair in self.pairs for p in pair]))
        self.partners: torch.Tensor | None = None  # [n, k] with partners = "nearest"
        self.anchor_mapping: nn.Module | None = None  # the warm start's mapping network, frozen

    def setup(self, guidance, encoder, device) -> list[nn.Parameter]:
        params = super().setup(guidance, encoder, device)
        ic = self.config.interpolation
        if self.random_pairs and ic.partners == "nearest":
            self.partners = nearest_partners(self.tokens, self.mask, ic.neighbours).cpu()
        if ic.anchor > 0:
            self.anchor_mapping = copy.deepcopy(self.model.mapping).requires_grad_(False).eval()
        return params

    def anchor_terms(self, batch: Batch, mod_fn) -> dict[str, torch.Tensor]:
        """The anchor term of ``batch`` (``{}`` when off): ``mod_fn(tokens, mask)`` is the trained
        mapping (called inside the module the loop differentiates)."""
        idx = getattr(batch, "anchor_index", None)
        if self.anchor_mapping is None or idx is None:
            return {}
        tokens, mask = self.tokens[idx], self.mask[idx]
        with torch.no_grad():
            ref = self.anchor_mapping(tokens, mask)
        return {"anchor": self.config.interpolation.anchor * anchor_loss(mod_fn(tokens, mask), ref)}

    @property
    def n_items(self) -> int:
        """Pairs of a fixed list; prompts when pairs are drawn at random."""
        return len(self.prompts) if self.random_pairs else len(self.pairs)

    def item_text(self, item: int) -> str:
        return self.prompts[item] if self.random_pairs else " → ".join(self.pairs[item])

    def draw_pairs(self, pick: torch.Tensor, generator: torch.Generator) -> list[tuple[str, str]]:
        """The step's pairs: the picked ones of the list, or (random pairs) each picked prompt of the
        shard with a different prompt of the whole set."""
        if not self.random_pairs:
            return [self.pairs[self.shard[int(i)]] for i in pick]
        n = len(self.prompts)
        if self.partners is not None:  # one of the prompt's nearest
            col = torch.randint(0, self.partners.shape[1], (len(pick),), generator=generator)
            return [(self.prompts[self.shard[i]], self.prompts[int(self.partners[self.shard[i], c])])
                    for i, c in zip(pick.tolist(), col.tolist())]
        other = torch.randint(0, n - 1, (len(pick),), generator=generator)
        out = []
        for i, j in zip(pick.tolist(), other.tolist()):
            a = self.shard[i]
            out.append((self.prompts[a], self.prompts[j + (j >= a)]))  # j skips a: never a prompt with itself
        return out

    def batch(self, step: int, generator: torch.Generator) -> InterpolationBatch:
        ic, b = self.config.interpolation, self.config.run.batch_size
        pick, cams, views = self.sample_cameras(generator)
        pairs = self.draw_pairs(pick, generator)
        first, second = [p for p, _ in pairs], [q for _, q in pairs]
        kappa = kappa_at(ic.kappa, step)
        alpha = sample_beta(kappa, b, generator)
        if ic.endpoint_share > 0:  # these rows are plain prompts: α = 0 (the first) or 1 (the second)
            n_end = int(round(ic.endpoint_share * b))
            alpha[:n_end] = (torch.rand(n_end, generator=generator) < 0.5).float()
        # the mapping network's input, c' = (1−α)c1 + αc2 (Eq. 8)
        i1 = torch.tensor([self.index[p] for p in first], device=self.device)
        i2 = torch.tensor([self.index[q] for q in second], device=self.device)
        a = alpha.to(self.device).view(b, 1, 1)
        tokens, mask = (1 - a) * self.tokens[i1] + a * self.tokens[i2], self.mask[i1] | self.mask[i2]
        z = torch.rand(b, generator=generator) < alpha  # Eq. 10: Z ~ Bern(α), drawn for every target
        shown = [q if zz else p for p, q, zz in zip(first, second, z.tolist())]
        g = self.guidance
        e1, e2 = g.embed(g.prompts_for(first, views)), g.embed(g.prompts_for(second, views))
        weights = None
        if ic.target == "latent":  # Eq. 8: guidance on the interpolated embedding
            ag = alpha.to(e1.device, e1.dtype).view(b, 1, 1)
            conds = [(1 - ag) * e1 + ag * e2]
        elif ic.target == "loss":  # Eq. 10: guidance on prompt 2 with probability α
            conds = [torch.where(z.to(e1.device).view(b, 1, 1), e2, e1)]
        else:  # Eq. 11: ε̂ = ε_u + (1−α)ω1(ε_1 − ε_u) + αω2(ε_2 − ε_u)
            conds, weights = [e1, e2], [(1 - alpha) * ic.scale1, alpha * ic.scale2]
        anchor_index = torch.cat([i1, i2]).unique() if self.anchor_mapping is not None else None
        return InterpolationBatch([f"{p} → {q}" for p, q in pairs], tokens, mask, cams, views, conds, weights, shown,
                                  alpha=alpha, kappa=kappa, z=z, anchor_index=anchor_index)
