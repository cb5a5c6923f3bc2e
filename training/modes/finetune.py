"""Finetuning one prompt from an amortized model (paper App. B.1.13): "we only finetune an offset to the
output and detach all prior weights that only embed text tokens". The mapping network (it only embeds
text) is detached and a zero-initialised offset δ on its output (the grid parameters) is trained,
``m(c*) + δ``; the NeRF MLP and the environment map go on training as in per-prompt training
(``finetune.freeze = "text"``, the default). ``finetune.freeze = "all"`` trains δ alone. The optimizer
starts fresh. The run's model folder is a normal one, with δ folded into the mapping's output layer(s)
(:func:`fold_offset`); each checkpoint also keeps the raw δ (``offset.safetensors``)."""
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
from backend.text_encoder import TextEncoder, encoder_for

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
    """The finetuned model as a normal model folder: the offset δ folded into the output layer(s).

    Each output layer ``w = s W v`` (spectral-normed, no bias; ``s`` its gain; the attention variant has
    one per grid level) becomes ``s W' v`` with ``W' = W + δ v*ᵀ / (s ‖v*‖²)`` (v* the finetuned prompt's
    input to that layer, from ``tokens``/``mask`` ``[1, L, D]``), which gives exactly ``w* + δ`` for that
    prompt (other prompts move by ``δ (v·v*)/‖v*‖²``). The stored spectral-norm vectors are set so that,
    in eval mode, the normalised weight is exactly ``W'`` — the folder is for inference; finetune again
    from the amortized model rather than from it.
    """
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        for layer in model.mapping.output_layers(tokens, mask):
            v = layer.v[0]
            lin = layer.linear
            w_eff = lin.weight.detach().clone()  # normalised weight as used at inference
            delta = offset.detach()[0, layer.start:layer.stop]
            w_new = w_eff + torch.outer(delta, v) / (layer.gain * v.dot(v).clamp_min(1e-12))
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
        if self.arch.text_encoder != encoder.encoder_id or self.arch.token_dim != encoder.dim or \
                self.arch.clip_skip != encoder.clip_skip:
            self.encode(encoder_for(self.arch), device)  # the model's own
        if self.arch.mapping == "concat":
            raise ValueError("finetuning trains an offset on the grid parameters; the concat mapping has none")
        # the mapping network only embeds text: detached, in eval mode (no power iterations), for both choices
        self.model.requires_grad_(False).eval()
        self.offset = nn.Parameter(torch.zeros(1, self.model.point_encoder.n_params, device=device))
        if self.config.finetune.freeze == "all":
            return [self.offset]
        rest = [self.model.nerf, self.model.env]
        for module in rest:
            module.requires_grad_(True).train()
        return [self.offset] + [p for module in rest for p in module.parameters()]

    def render_step(self) -> RenderStep:
        return OffsetRenderStep(self.model, self.config.render, self.offset, self.config.regularizers)

    def export_model(self) -> ATT3D:
        return fold_offset(self.model, self.offset, self.tokens[:1], self.mask[:1])

    def checkpoint_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        return {OFFSET_FILE: {"offset": self.offset.detach().cpu().contiguous()}}

    def load_checkpoint(self, path: Path, data: dict[str, Any]) -> None:
        """δ from its raw file; the NeRF MLP and environment map (trained with ``freeze = "text"``) from the
        checkpoint's model folder, whose mapping holds the folded δ and is not read."""
        self.offset.data.copy_(load_file(str(Path(path) / OFFSET_FILE))["offset"].to(self.device))
        if self.config.finetune.freeze == "text":
            saved, _ = load_model(data["model_dir"], self.device)
            self.model.nerf.load_state_dict(saved.nerf.state_dict())
            self.model.env.load_state_dict(saved.env.state_dict())
