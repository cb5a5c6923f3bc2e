"""The environment map (App. B.1.4): background colour from the ray direction and the task vector ``v``.

Directions get a sinusoidal encoding with frequencies 2^0 … 2^(L−1) (L = 8), are concatenated with
``v``, and one spectral-normed linear layer with a sigmoid gives the colour (no hidden layer).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sinusoidal_encoding(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    freqs = 2.0 ** torch.arange(n_freqs, device=x.device, dtype=x.dtype)
    xf = x[..., None, :] * freqs[:, None]  # [..., L, 3]
    return torch.cat([x, torch.sin(xf).flatten(-2), torch.cos(xf).flatten(-2)], dim=-1)


class EnvironmentMap(nn.Module):
    def __init__(self, v_dim: int = 32, n_freqs: int = 8) -> None:
        super().__init__()
        self.n_freqs = n_freqs
        self.linear = spectral_norm(nn.Linear(3 + 6 * n_freqs + v_dim, 3))

    def forward(self, directions: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``directions`` ``[B, N, 3]`` (unit), ``v`` ``[B, v_dim]`` → colours ``[B, N, 3]``."""
        enc = sinusoidal_encoding(directions, self.n_freqs)
        vv = v[:, None, :].expand(-1, enc.shape[1], -1)
        return torch.sigmoid(self.linear(torch.cat([enc, vv], dim=-1)))
