"""The mapping network ``m`` (paper §3.1, Eq. 4–5, App. B.1.3): text tokens → point-encoder parameters.

Hypernetwork (default): ``v = SiLU(SN-Linear_bias(flatten(c)))``, ``w = reshape(SN-Linear_nobias(v))``.
Concatenation: a single shared grid, and ``v`` is concatenated to every point's features.
Attention: self-attention layers over the tokens, then the hypernetwork.
Spectral norm is on every linear layer of the mapping network (App. B.1.5: without it, training
is numerically unstable).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn_linear(n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(n_in, n_out, bias=bias)
    spectral_norm(layer)  # parametrizes `layer` in place (and returns it)
    return layer


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


class HyperMapping(nn.Module):
    """Eq. 4–5: flatten the tokens, one SN-linear to ``v``, one SN-linear (no bias) to ``w``.

    ``grid_scale`` multiplies ``w``. Spectral norm keeps ``‖w‖ ≤ ‖v‖``, so a grid of 10⁵ cells gets
    values of a few 0.01 and the NeRF MLP has to grow large input weights before the grid can set
    colours, which Adam does slowly; a fixed gain (the Lipschitz bound stays finite) avoids that.
    """

    def __init__(self, n_tokens: int, token_dim: int, n_params: int, v_dim: int = 32,
                 grid_scale: float = 1.0) -> None:
        super().__init__()
        self.to_v = sn_linear(n_tokens * token_dim, v_dim, bias=True)
        self.to_w = sn_linear(v_dim, n_params, bias=False)
        self.grid_scale = float(grid_scale)

    def task_vector(self, tokens: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(self.to_v(tokens.flatten(1)))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> Modulation:
        v = self.task_vector(tokens)
        return Modulation(self.to_w(v) * self.grid_scale, v)


class ConcatMapping(nn.Module):
    """Concatenation: only ``v`` depends on the prompt; the point encoder's grid is shared (so
    ``grid_scale``, taken for a common constructor, has nothing to scale)."""

    def __init__(self, n_tokens: int, token_dim: int, n_params: int, v_dim: int = 32,
                 grid_scale: float = 1.0) -> None:
        super().__init__()
        self.to_v = sn_linear(n_tokens * token_dim, v_dim, bias=True)

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


class AttentionMapping(HyperMapping):
    """Self-attention layers over the tokens before the hypernetwork (App. B.1.3)."""

    def __init__(self, n_tokens: int, token_dim: int, n_params: int, v_dim: int = 32,
                 grid_scale: float = 1.0, layers: int = 2, heads: int = 4) -> None:
        super().__init__(n_tokens, token_dim, n_params, v_dim, grid_scale)
        while token_dim % heads:
            heads -= 1
        self.blocks = nn.ModuleList(_SNSelfAttention(token_dim, heads) for _ in range(layers))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> Modulation:
        if mask is not None and not mask.any(dim=1).all():
            mask = mask.clone()
            mask[:, 0] = True  # an all-padding row would make softmax undefined
        for block in self.blocks:
            tokens = block(tokens, mask)
        return super().forward(tokens, mask)


MAPPINGS: dict[str, type[nn.Module]] = {
    "hyper": HyperMapping,
    "concat": ConcatMapping,
    "attention": AttentionMapping,
}
