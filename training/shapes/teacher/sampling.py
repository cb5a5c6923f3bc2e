"""DDIM sampling of the teacher with classifier-free guidance (its report, and quick looks)."""
from __future__ import annotations

import torch

from .config import TeacherConfig


@torch.no_grad()
def sample(unet, tokens: torch.Tensor, null: torch.Tensor, guidance: float = 5.0, steps: int = 50,
           seed: int = 0, cfg: TeacherConfig | None = None, image_size: int = 32, eta: float = 0.0) -> torch.Tensor:
    """DDIM with classifier-free guidance; tokens ``[B, L, D]`` → images ``[B, 3, S, S]`` in [0, 1].
    ``cfg`` gives the noise schedule and prediction type (those of the teacher's training).
    ``eta`` = 0 is deterministic DDIM, 1 is DDPM-like ancestral sampling (more forgiving of an
    undertrained model's x0 estimates at high noise)."""
    from diffusers import DDIMScheduler

    cfg = cfg or TeacherConfig()
    sched = DDIMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                          prediction_type=cfg.prediction_type, clip_sample=True, set_alpha_to_one=True)
    sched.set_timesteps(steps)
    b = tokens.shape[0]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, image_size, image_size, generator=g)
    guided = guidance != 1.0  # CFG 1 is the conditional model alone: no unconditional pass needed
    cond = torch.cat([null.expand(b, -1, -1), tokens]).float() if guided else tokens.float()
    for t in sched.timesteps:
        out = unet(torch.cat([x, x]) if guided else x, t, encoder_hidden_states=cond).sample
        if guided:
            ou, oc = out.chunk(2)
            out = ou + guidance * (oc - ou)
        x = sched.step(out, t, x, eta=eta, generator=g).prev_sample
    return ((x + 1) / 2).clamp(0, 1)
