"""Amortized training (paper Alg. 1): one model for all prompts. Each step samples ``run.batch_size``
prompts of this rank's shard, one camera + light + shading each, and guides every render towards its
prompt (", front/side/back/overhead view" appended to the guidance prompt, never to the mapping
input). The other single-model modes derive from this one and replace what they change."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backend.cameras import Cameras
from backend.model import ATT3D, ModelConfig, build_model, load_model, resolve_model_path
from backend.text_encoder import TextEncoder

from ..config import TrainConfig
from ..guidance import Guidance
from ..prompts import PromptSet
from ..render_step import RenderStep


@dataclass
class Batch:
    """One step's inputs: what the mapping network reads, what is rendered, what the guidance reads."""

    prompts: list[str]  # per image, a label of what it is (logs, hooks)
    tokens: torch.Tensor  # [B, L, D] mapping-network input
    mask: torch.Tensor  # [B, L]
    cams: Cameras
    views: list[str | None]  # the view label appended to each guidance prompt (None: not appended)
    conds: list[torch.Tensor]  # classifier-free guidance terms [B, L', D'] (diffusion guidance)
    weights: list[torch.Tensor | float] | None  # their weights; None = guidance.scale
    shown: list[str]  # per image, the one prompt it should show (reconstruction renders its ground truth)

    def scalars(self) -> dict[str, float]:
        """Per-step values the loop logs beside the loss."""
        return {}


def shard(n_items: int, rank: int, world: int) -> list[int]:
    """The items this rank trains on: every ``world``-th (all of them when there are too few)."""
    return list(range(rank, n_items, world)) if n_items >= world else list(range(n_items))


def run_name(path: str | Path) -> str:
    """A portable name for a model, run or checkpoint folder (no machine path): ``run/step_0001000``
    for a checkpoint, the folder's name otherwise."""
    p = Path(path).resolve()
    if p.name == "model":
        p = p.parent
    if p.parent.name == "checkpoints":
        return f"{p.parent.parent.name}/{p.name}"
    return p.name


def load_init(model: ATT3D, path: str, device: torch.device, auto_gain: bool = True) -> dict[str, Any]:
    """``run.init``: copy the weights of a model (or run / checkpoint) folder of the same architecture
    into ``model``, with their grid gain when ``auto_gain`` (else it must match); returns what the
    provenance records of it: its name and the SHA-256 of its weights (never the path on this
    machine), and what it had trained on."""
    init, _, record = load_recorded(path, device)
    # the backend runs the same weights; an auto gain (model.grid_scale = 0) is the one they trained with
    diff = architecture_differences(init.config, model.config, {"backend"} | ({"grid_scale"} if auto_gain else set()))
    if diff:
        raise ValueError(f"run.init {path}: another architecture ({'; '.join(diff)})")
    model.mapping.grid_scale = init.mapping.grid_scale
    model.config = replace(model.config, grid_scale=init.config.grid_scale)
    model.load_state_dict(init.state_dict())
    return record


def architecture_differences(theirs: ModelConfig, ours: ModelConfig, free: set[str]) -> list[str]:
    """What keeps weights of ``theirs`` from loading into ``ours`` (``free``: fields that may differ),
    one ``"field: theirs there, ours here"`` each."""
    a, b = asdict(theirs), asdict(ours)
    return [f"{k}: {a.get(k)!r} there, {b[k]!r} here" for k in b if a.get(k) != b[k] and k not in free]


def load_recorded(path: str | Path, device: torch.device | str = "cpu") -> tuple[ATT3D, dict[str, Any], dict[str, Any]]:
    """A model, run or checkpoint folder's model, its config, and what a provenance records of it:
    its name and the SHA-256 of its weights (never the path on this machine), and what it had
    trained on."""
    import hashlib

    inner = Path(path) / "model"  # a run or checkpoint folder holds its model there
    folder = resolve_model_path(inner if (inner / "config.json").is_file() else path)
    model, cfg = load_model(folder, device)
    prov = cfg.get("provenance", {})
    digest = hashlib.sha256()
    with open(folder / "model.safetensors", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return model, cfg, {"name": prov.get("name") if prov.get("name") == "demo" else run_name(path),
                        "sha256": digest.hexdigest(), "step": prov.get("step"),
                        "frames_per_prompt": prov.get("frames_per_prompt"), "prompt_set": prov.get("prompt_set"),
                        "guidance": prov.get("guidance"), "init": prov.get("init")}


class Amortized:
    """The mode the loop drives: prompts, model and trainable parameters, each step's batch, and the
    model a checkpoint or the run folder holds."""

    name = "amortized"
    #: evaluations score CLIP R-precision of each prompt (interpolation has no one prompt per render)
    scores_prompts = True

    def __init__(self, config: TrainConfig, prompt_set: PromptSet, rank: int = 0, world: int = 1,
                 queries: Sequence[str] = ()) -> None:
        """``queries``: more prompts for the CLIP query set of the evaluations."""
        self.config = config
        self.prompt_set = prompt_set
        self.prompts: list[str] = list(prompt_set.prompts)  # what the mapping network reads, encoded once
        self.queries = list(queries)
        self.init_record: dict[str, Any] | None = None  # provenance of run.init
        self.shard = shard(self.n_items, rank, world)
        self._focus: torch.Tensor | None = None  # positions in the shard of prompts.focus's items

    @property
    def n_items(self) -> int:
        """What a step samples from (prompts here); rendered frames per prompt count these."""
        return len(self.prompts)

    def item_text(self, item: int) -> str:
        """The text of item ``item`` (what ``prompts.focus`` phrases are looked for in)."""
        return self.prompts[item]

    def encode(self, encoder: TextEncoder, device: torch.device) -> None:
        self.encoder = encoder
        emb = encoder(self.prompts)
        self.tokens, self.mask = emb.tokens.to(device), emb.mask.to(device)
        self.index = {p: i for i, p in enumerate(self.prompts)}

    def setup(self, guidance: Guidance, encoder: TextEncoder, device: torch.device) -> list[nn.Parameter]:
        """Encode the prompts, build the model; → the parameters the optimizer trains."""
        self.guidance, self.device = guidance, device
        self.encode(encoder, device)
        if self.prompt_set.held_out:  # into the embedding cache: evaluations need not reload the encoder
            encoder(self.prompt_set.held_out)
        if encoder is not guidance.encoder:  # (a mapping encoder of its own: freed before the teacher's loads)
            encoder.release()
        # every (prompt, view) guidance embedding once, then the (large) text encoders are released
        guidance.precompute(self.prompts)
        encoder.release()
        self.arch = replace(self.config.model, text_encoder=encoder.encoder_id, token_dim=encoder.dim,
                            max_length=encoder.max_length, clip_skip=encoder.clip_skip)
        self.model = build_model(self.arch, self.config.run.seed).to(device).train()
        if self.config.run.init:
            self.init_record = load_init(self.model, self.config.run.init, device, not self.config.model.grid_scale)
        elif not self.config.model.grid_scale:  # auto: the grid starts at a readable RMS for these prompts
            self.model.calibrate_grid(self.tokens, self.mask)
        return list(self.model.parameters())

    def render_step(self) -> RenderStep:
        return RenderStep(self.model, self.config.render, self.config.regularizers)

    def sample_cameras(self, generator: torch.Generator) -> tuple[torch.Tensor, Cameras, list[str | None]]:
        """→ (indices into the shard, cameras, view labels) of one step; draws from ``generator``."""
        b = self.config.run.batch_size
        pick = torch.randint(0, len(self.shard), (b,), generator=generator)
        pc = self.config.prompts
        if pc.focus_share > 0:  # rows spread over the batch from the focus prompts (drawn only then: older runs
            # unchanged); spread, not the first rows, so that an interpolation batch's endpoint rows (its first)
            # and its in-between rows both get some
            if self._focus is None:
                self._focus = torch.tensor([k for k, i in enumerate(self.shard)
                                            if any(f in self.item_text(i) for f in pc.focus)], dtype=torch.long)
                if not len(self._focus):
                    raise ValueError(f"prompts.focus: no prompt of this run contains any of {pc.focus}")
            n = int(round(pc.focus_share * b))
            rows = torch.linspace(0, b - 1, n).round().long() if n > 1 else torch.zeros(n, dtype=torch.long)
            pick[rows] = self._focus[torch.randint(0, len(self._focus), (n,), generator=generator)]
        cams = self.config.camera.sample(b, generator, device=self.device)
        views = cams.view_labels if self.config.guidance.view_prompts else [None] * b
        return pick, cams, views

    def batch(self, step: int, generator: torch.Generator) -> Batch:
        pick, cams, views = self.sample_cameras(generator)
        prompts = [self.prompts[self.shard[int(i)]] for i in pick]
        idx = torch.tensor([self.index[p] for p in prompts], device=self.device)
        g = self.guidance
        return Batch(prompts, self.tokens[idx], self.mask[idx], cams, views,
                     conds=[g.embed(g.prompts_for(prompts, views))], weights=None, shown=prompts)

    # -- what is saved ---------------------------------------------------------------------------
    def export_model(self) -> ATT3D:
        """The model a checkpoint's and the run's model folder hold."""
        return self.model

    def checkpoint_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """More safetensors files for a checkpoint (file name → tensors)."""
        return {}

    def load_checkpoint(self, path: Path, data: dict[str, Any]) -> None:
        """Restore the trained weights from a checkpoint (:func:`training.checkpoint.load_checkpoint`)."""
        model, _ = load_model(data["model_dir"], self.device)
        self.model.mapping.grid_scale = model.mapping.grid_scale  # (not a tensor of the state dict)
        self.model.config = replace(self.model.config, grid_scale=model.config.grid_scale)
        self.model.load_state_dict(model.state_dict())
