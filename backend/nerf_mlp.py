"""The NeRF MLP ``ν`` (App. B.1.2, B.1.9): point features → density and albedo.

One hidden layer of 32 with SiLU. Density is ``softplus(raw + bias(x))`` with the density bias
``s (1 − ‖x‖ / r)`` (paper: ``10(1 − 2‖x‖)``, i.e. s = 10, r = 0.5), which makes a freshly
initialised model a soft blob of radius r instead of empty space; albedo is a sigmoid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NeRFMLP(nn.Module):
    def __init__(self, in_dim: int = 20, hidden: int = 32, bias_scale: float = 10.0,
                 bias_radius: float = 0.5) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_dim, hidden)
        self.out = nn.Linear(hidden, 4)
        self.bias_scale = float(bias_scale)
        self.bias_radius = float(bias_radius)

    def density_bias(self, points: torch.Tensor) -> torch.Tensor:
        return self.radial_density_bias(points.norm(dim=-1))

    def radial_density_bias(self, radius: torch.Tensor) -> torch.Tensor:
        """The density bias at points of norm ``radius`` (a lattice knows its norms without the points)."""
        return self.bias_scale * (1 - radius / self.bias_radius)

    def forward(self, features: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ density ``[..., N]`` (≥ 0) and albedo ``[..., N, 3]`` in (0, 1)."""
        raw = self.out(F.silu(self.hidden(features)))
        density = F.softplus(raw[..., 0] + self.density_bias(points))
        return density, torch.sigmoid(raw[..., 1:])

    def density_only(self, features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Density alone (one output row instead of four): what mesh extraction needs."""
        h = F.silu(self.hidden(features))
        raw = h @ self.out.weight[0] + self.out.bias[0]
        return F.softplus(raw + self.density_bias(points))

    def density_channels_first(self, features: torch.Tensor, radius: torch.Tensor,
                               constant: torch.Tensor | None = None) -> torch.Tensor:
        """Density from channel-first features ``[C, P]`` at points of norm ``radius`` ``[P]`` → ``[P]``.

        The same as :meth:`density_only`, as matrix products on the layout mesh extraction's lattice
        slabs come in (no transposes). ``constant``: features every point shares, following
        ``features`` in the MLP's input (the concatenation variant's ``v``), folded into the hidden
        bias once instead of being repeated per point.
        """
        w1: torch.Tensor = self.hidden.weight
        b1: torch.Tensor = self.hidden.bias
        if constant is not None:
            b1 = b1 + w1[:, features.shape[0]:] @ constant
            w1 = w1[:, : features.shape[0]]
        # in place where no backward needs the pre-activation: one [hidden, P] buffer fewer
        h = F.silu(torch.addmm(b1[:, None], w1, features), inplace=not torch.is_grad_enabled())
        raw = self.out.weight[0] @ h + self.out.bias[0]
        return F.softplus(raw + self.radial_density_bias(radius))
