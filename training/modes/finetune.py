"""Finetuning one prompt from an amortized model (paper App. B.1.13): only a zero-initialised offset
δ on the mapping output (the grid parameters) is trained, ``m(c*) + δ``; the rest is frozen and the
optimizer starts fresh. The run's model folder is a normal one, with δ folded into the mapping's last
layer (:func:`fold_offset`); each checkpoint also keeps the raw δ (``offset.safetensors``)."""
from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from backend.mapping_network import Modulation
from backend.model import ATT3D, load_model
from backend.text_encoder import TextEncoder

from ..config import RenderConfig, TrainConfig
from ..guidance import Guidance
from ..prompts import PromptSet, slug
from ..regularizers import RegularizerConfig
from ..render_step import RenderStep
from .amortized import Amortized

OFFSET_FILE = "offset.safetensors"


class OffsetRenderStep(RenderStep):
    """The render step with ``m(c) + δ``: the mapping network is frozen, only the offset learns."""

    def __init__(self, model: ATT3D, render: RenderConfig, offset: nn.Parameter,
                 regularizers: RegularizerConfig | None = None) -> None:
        super().__init__(model, render, regularizers)
        self.offset = offset

    def modulation(self, tokens: torch.Tensor, mask: torch.Tensor) -> Modulation:
        with torch.no_grad():
            base = self.model.modulate(tokens, mask)
        return Modulation(base.params + self.offset, base.v)


def fold_offset(model: ATT3D, offset: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> ATT3D:
    """The finetuned model as a normal model folder: the offset δ folded into ``to_w``.

    ``w = s W v`` (spectral-normed, no bias; ``s`` the ``grid_scale``) becomes ``s W' v`` with
    ``W' = W + δ v*ᵀ / (s ‖v*‖²)`` (v* the finetuned prompt's task vector, from ``tokens``/``mask``
    ``[1, L, D]``), which gives exactly ``w* + δ`` for that prompt (other prompts move by
    ``δ (v·v*)/‖v*‖²``). The stored spectral-norm vectors are set so that, in eval mode, the
    normalised weight is exactly ``W'`` — the folder is for inference; finetune again from the
    amortized model rather than from it.
    """
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        v = model.modulate(tokens, mask).v[0]
        lin = model.mapping.to_w
        w_eff = lin.weight.detach().clone()  # normalised weight as used at inference
        s = model.mapping.grid_scale
        w_new = w_eff + torch.outer(offset.detach()[0], v) / (s * v.dot(v).clamp_min(1e-12))
        par = lin.parametrizations.weight
        par.original.copy_(w_new)
        sn = par[0]
        start = torch.randn(w_new.shape[1], generator=torch.Generator().manual_seed(0)).to(w_new)
        vb = nn.functional.normalize(start, dim=0)
        for _ in range(50):
            ub = nn.functional.normalize(w_new @ vb, dim=0)
            vb = nn.functional.normalize(w_new.t() @ ub, dim=0)
        ub = w_new @ vb
        ub = ub / ub.dot(ub)  # uᵀ W' v = 1  →  W'/σ = W'
        sn._u.copy_(ub)
        sn._v.copy_(vb)
    return model


class Finetune(Amortized):
    name = "finetune"

    def __init__(self, config: TrainConfig, prompt_set: PromptSet, rank: int = 0, world: int = 1,
                 queries: Sequence[str] = ()) -> None:
        one = config.finetune.prompt or prompt_set.prompts[0]
        queries = list(queries) + prompt_set.prompts + prompt_set.held_out  # scored against the whole set
        super().__init__(config, PromptSet(f"finetune:{slug(one)}", [one]), rank, world, queries)

    def setup(self, guidance: Guidance, encoder: TextEncoder, device: torch.device) -> list[nn.Parameter]:
        self.guidance, self.device = guidance, device
        self.encode(encoder, device)
        guidance.precompute(self.prompts)
        if not self.config.finetune.init:
            raise ValueError("finetune.init: give the amortized model folder to finetune")
        self.model, _ = load_model(self.config.finetune.init, device)
        self.arch = self.model.config
        if self.arch.text_encoder != encoder.encoder_id or self.arch.token_dim != encoder.dim:
            self.encode(TextEncoder(self.arch.text_encoder, self.arch.max_length), device)  # the model's own
        if self.arch.mapping == "concat":
            raise ValueError("finetuning trains an offset on the grid parameters; the concat mapping has none")
        self.model.requires_grad_(False).eval()  # no power iterations: the mapping stays fixed
        self.offset = nn.Parameter(torch.zeros(1, self.model.point_encoder.n_params, device=device))
        return [self.offset]

    def render_step(self) -> RenderStep:
        return OffsetRenderStep(self.model, self.config.render, self.offset, self.config.regularizers)

    def export_model(self) -> ATT3D:
        return fold_offset(self.model, self.offset, self.tokens[:1], self.mask[:1])

    def checkpoint_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        return {OFFSET_FILE: {"offset": self.offset.detach().cpu().contiguous()}}

    def load_checkpoint(self, path: Path, data: dict[str, Any]) -> None:
        self.offset.data.copy_(load_file(str(Path(path) / OFFSET_FILE))["offset"].to(self.device))
