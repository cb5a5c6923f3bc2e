"""The mapping network ``m`` (paper §3.1, Eq. 4–5, App. B.1.3): text tokens → point-encoder parameters.

Hypernetwork (default): ``v = SiLU(SN-Linear_bias(flatten(c)))``, ``w = reshape(SN-Linear_nobias(v))``.
Concatenation: a single shared grid, and ``v`` is concatenated to every point's features.
Attention: self-attention layers over the tokens, then one hypernetwork per grid level.
Spectral norm is on every linear layer of the mapping network (App. B.1.5: without it, training
is numerically unstable).

The grid's scale at initialisation (``grid_scale``, the gain on the hypernetwork's output): spectral
norm sets the largest singular value of the ``[P, v]`` output layer to 1, and a tall random matrix's
singular values all lie close to its largest, so ``‖W v‖ ≈ ‖v‖``: each of the P grid values gets an RMS
of ``‖v‖/√P`` — 6e-4 for the paper's grid (P = 1.0 M, MiniLM tokens), far below what the NeRF MLP
reads colour from (a run at gain 1 learnt shapes and left every object brown). :func:`auto_grid_scale`
(``grid_scale = 0``) multiplies by ``√(P/v)``, the gain that makes the layer variance-preserving (grid
values with v's own RMS, as a fan-in-initialised layer gives), at every grid size;
:func:`calibrate_grid_scale` then sets the gain from the run's prompts so that the grid values start
at the RMS that gives every point a unit-norm feature vector (``1/√features_out``), whatever the text
encoder's scale. The resolved gain is stored in the model's config.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn_linear(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, bias=bias)
    spectral_norm(layer)  # parametrizes `layer` in place (and returns it)
    return layer


def auto_grid_scale(n_params: int, v_dim: int) -> float:
    """``√(P / v)``: the gain that makes a spectral-normed ``[P, v]`` output layer variance-preserving."""
    return math.sqrt(n_params / v_dim)


def grid_target_rms(features_out: int) -> float:
    """The grid values' RMS at initialisation: ``1/√features_out``, so that every point's feature vector
    (the NeRF MLP's input) has unit norm. 0.22 for the paper's 5 levels × 4 features."""
    return 1.0 / math.sqrt(features_out)


@dataclass
class Modulation:
    """What the mapping network gives for a batch of prompts.

    ``params``: per-prompt point-encoder parameters, flat ``[B, P]`` (None for the concatenation
    variant, whose grid is shared). ``v``: the task vector ``[B, v_dim]`` used by the environment
    map (and concatenated to point features by the concatenation variant).
    """

    params: torch.Tensor | None
    v: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.v.shape[0]

    def select(self, index: torch.Tensor | list[int]) -> Modulation:
        index = torch.as_tensor(index, device=self.v.device)
        return Modulation(None if self.params is None else self.params[index], self.v[index])

    def detach(self) -> Modulation:
        return Modulation(None if self.params is None else self.params.detach(), self.v.detach())


@dataclass
class OutputLayer:
    """One spectral-normed output layer of a hypernetwork, as finetuning folds an offset into it:
    ``params[:, start:stop] = gain · linear(v)``."""

    linear: nn.Linear
    v: torch.Tensor  # [B, v_dim], the layer's input
    gain: float
    start: int
    stop: int


class HyperMapping(nn.Module):
    """Eq. 4–5: flatten the tokens, one SN-linear to ``v``, one SN-linear (no bias) to ``w``.

    ``grid_scale`` multiplies ``w`` (0 = :func:`auto_grid_scale`; see the module's docstring).
    ``sizes``: the point encoder's parameters per level (read by the per-level variants only).
    """

    def __init__(self, n_tokens: int, token_dim: int, n_params: int, v_dim: int = 32,
                 grid_scale: float = 0.0, sizes: Sequence[int] = ()) -> None:
        super().__init__()
        self.to_v = sn_linear(n_tokens * token_dim, v_dim, bias=True)
        self.to_w = sn_linear(v_dim, n_params, bias=False)
        self.grid_scale = float(grid_scale) or auto_grid_scale(n_params, v_dim)

    def task_vector(self, tokens: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(self.to_v(tokens.flatten(1)))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> Modulation:
        v = self.task_vector(tokens)
        return Modulation(self.to_w(v) * self.grid_scale, v)

    def output_layers(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> list[OutputLayer]:
        v = self.task_vector(tokens)
        return [OutputLayer(self.to_w, v, self.grid_scale, 0, self.to_w.out_features)]


class ConcatMapping(nn.Module):
    """Concatenation: only ``v`` depends on the prompt; the point encoder's grid is shared (so
    ``grid_scale``, taken for a common constructor, has nothing to scale)."""

    def __init__(self, n_tokens: int, token_dim: int, n_params: int, v_dim: int = 32,
                 grid_scale: float = 0.0, sizes: Sequence[int] = ()) -> None:
        super().__init__()
        self.to_v = sn_linear(n_tokens * token_dim, v_dim, bias=True)
        self.grid_scale = 1.0

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> Modulation:
        return Modulation(None, nn.functional.silu(self.to_v(tokens.flatten(1))))


class _SNSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = sn_linear(dim, 3 * dim)
        self.out = sn_linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :].bool()
        y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return x + self.out(y.transpose(1, 2).reshape(b, n, d))


class AttentionMapping(nn.Module):
    """Self-attention layers over the tokens, then one hypernetwork per grid level (App. B.1.3: "a
    series of self-attention layers to process text embeddings before feeding into the hypernetworks
    for each multi-resolution grid level"): level l has its own ``to_v`` and ``to_w`` (Eq. 4–5).
    ``to_v`` gives the task vector ``v`` of the environment map.

    Each level's output layer is spectral-normed on its own, so its gain is ``grid_scale·√(P_l/P)``:
    every level starts at the same RMS as the single hypernetwork's grid would.
    """

    def __init__(self, n_tokens: int, token_dim: int, n_params: int, v_dim: int = 32,
                 grid_scale: float = 0.0, sizes: Sequence[int] = (), layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        sizes = list(sizes) or [n_params]
        if sum(sizes) != n_params:
            raise ValueError(f"level sizes {sizes} do not add up to {n_params} parameters")
        while token_dim % heads:
            heads -= 1
        self.blocks = nn.ModuleList(_SNSelfAttention(token_dim, heads) for _ in range(layers))
        self.to_v = sn_linear(n_tokens * token_dim, v_dim, bias=True)
        self.levels = nn.ModuleList(HyperMapping(n_tokens, token_dim, n, v_dim, 1.0) for n in sizes)
        self.sizes = sizes
        self.grid_scale = float(grid_scale) or auto_grid_scale(n_params, v_dim)

    def level_gain(self, level: int) -> float:
        return self.grid_scale * math.sqrt(self.sizes[level] / sum(self.sizes))

    def attend(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is not None and not mask.any(dim=1).all():
            mask = mask.clone()
            mask[:, 0] = True  # an all-padding row would make softmax undefined
        for block in self.blocks:
            tokens = block(tokens, mask)
        return tokens

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> Modulation:
        tokens = self.attend(tokens, mask)
        w = [hyper(tokens).params * self.level_gain(i) for i, hyper in enumerate(self.levels)]
        return Modulation(torch.cat(w, dim=1), nn.functional.silu(self.to_v(tokens.flatten(1))))

    def output_layers(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> list[OutputLayer]:
        tokens = self.attend(tokens, mask)
        out, start = [], 0
        for i, (hyper, n) in enumerate(zip(self.levels, self.sizes)):
            h = cast(HyperMapping, hyper)  # (a ModuleList hands out plain Modules to the type checker)
            out.append(OutputLayer(h.to_w, h.task_vector(tokens), self.level_gain(i), start, start + n))
            start += n
        return out


@torch.no_grad()
def calibrate_grid_scale(mapping: nn.Module, tokens: torch.Tensor, mask: torch.Tensor | None,
                         target: float, batch: int = 64) -> float:
    """Set ``mapping.grid_scale`` so that the grid values of these prompts' tokens have RMS ``target``
    at initialisation (measured in eval mode: the spectral norms' power iterations are left as they
    are); returns the new gain. The concatenation variant has no per-prompt grid: left unchanged."""
    m = cast(Any, mapping)  # every mapping has a float grid_scale (nn.Module hides attribute types)
    if isinstance(mapping, ConcatMapping):
        return float(m.grid_scale)
    was_training = mapping.training
    mapping.eval()
    try:
        total, count = 0.0, 0
        for i in range(0, len(tokens), batch):
            params = mapping(tokens[i:i + batch], None if mask is None else mask[i:i + batch]).params
            total += float(params.double().pow(2).sum())
            count += params.numel()
    finally:
        mapping.train(was_training)
    rms = math.sqrt(total / max(count, 1))
    if rms > 0 and math.isfinite(rms):
        m.grid_scale *= target / rms
    return float(m.grid_scale)


MAPPINGS: dict[str, type[nn.Module]] = {
    "hyper": HyperMapping,
    "concat": ConcatMapping,
    "attention": AttentionMapping,
}
