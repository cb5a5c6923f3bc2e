"""The training loops (paper Alg. 1, §3.2, App. B.1): amortized, interpolation, per-prompt baseline
and finetuning, with checkpoints, exact resume, TensorBoard, previews and evaluations.

Python API (stable)::

    from training.train import train
    from training.config import load_config, config_from_dict

    cfg = config_from_dict({"guidance": {"kind": "pixel", "model": "/path/to/teacher"},
                            "prompts": {"list": ["a red cube", "a blue sphere"]},
                            "model": {"resolutions": [9, 14, 22], "v_dim": 16},
                            "run": {"steps": 2000, "batch_size": 16}})
    result = train(cfg, "runs/shapes")            # → TrainResult; the model is result.model_dir
    train(cfg, "runs/shapes", resume=True)        # continues from the last checkpoint

Budget is counted in rendered frames per prompt: ``step × batch × world_size / #prompts``.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from backend.cameras import Cameras, orbit_cameras
from backend.device import pick_device
from backend.mapping_network import Modulation
from backend.model import ATT3D, build_model, load_model, save_model
from backend.text_encoder import TextEncoder

from . import checkpoint as ckpt
from .config import TrainConfig, to_toml
from .guidance import ReconstructionGuidance, build_guidance
from .prompts import PromptSet, load_prompt_set, prompt_hash


class TrainingError(RuntimeError):
    """A run that cannot go on (non-finite losses, incompatible resume, …); one line for the CLI."""


@dataclass
class TrainResult:
    out: Path
    model_dir: Path | None
    step: int
    losses: list[float] = field(default_factory=list)  # the losses of the steps run by this call
    skipped: int = 0  # non-finite steps skipped
    frames_per_prompt: float = 0.0
    seconds: float = 0.0
    stopped: str = "done"  # done | signal
    checkpoint: Path | None = None
    per_prompt: list[dict] = field(default_factory=list)


# -- distributed -------------------------------------------------------------------------------------

def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) of an initialised process group, else (0, 1, 0)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return 0, 1, 0


def init_distributed(device: str = "auto") -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1): NCCL on GPUs, gloo on CPU."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return True




def _all_reduce(x: torch.Tensor, op: str = "sum") -> torch.Tensor:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(x, op={"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}[op])
    return x


# -- the differentiable step (the part DistributedDataParallel wraps) ---------------------------------

class RenderStep(nn.Module):
    """tokens → ``m(c)`` (+ a learnable offset when finetuning) → rendered images."""

    def __init__(self, model: ATT3D, height: int, width: int, n_samples: int, use_env: bool,
                 offset: nn.Parameter | None = None, normals: str = "autograd") -> None:
        super().__init__()
        self.normals = normals
        self.model = model
        self.offset = offset
        self.size = (height, width)
        self.n_samples = n_samples
        self.use_env = use_env

    def modulation(self, tokens: torch.Tensor, mask: torch.Tensor) -> Modulation:
        if self.offset is None:
            return self.model.modulate(tokens, mask)
        with torch.no_grad():  # finetuning: the mapping network is frozen, only the offset learns
            base = self.model.modulate(tokens, mask)
        return Modulation(base.params + self.offset, base.v)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, cams: Cameras,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mod = self.modulation(tokens, mask)
        out = self.model.render(mod, cams, self.size[0], self.size[1], n_samples=self.n_samples, stratified=True,
                                use_env=self.use_env, normals=self.normals, generator=generator)
        return out.rgb, out.opacity


# -- helpers ---------------------------------------------------------------------------------------

def slug(text: str, n: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n] or "prompt"


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


def image_grid(images: torch.Tensor, cols: int) -> np.ndarray:
    imgs = (images.detach().float().clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
    n, h, w, _ = imgs.shape
    rows = math.ceil(n / cols)
    sheet = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = imgs[i]
    return sheet


# -- the trainer -------------------------------------------------------------------------------------

class Trainer:
    def __init__(self, config: TrainConfig, out: str | os.PathLike, *,
                 prompts: Sequence[str] | PromptSet | None = None, targets: Callable | None = None,
                 guidance: nn.Module | None = None, progress: bool = True,
                 hook: Callable[[Trainer, int, float], None] | None = None, queries: Sequence[str] = ()) -> None:
        """``prompts``: a list or a :class:`PromptSet` replacing ``config.prompts``; ``queries``: more
        prompts for the CLIP query set of the evaluations (the per-prompt baseline passes its whole set)."""
        self.config = config.validate()
        self.out = Path(out)
        self.rank, self.world, self.local_rank = dist_info()
        self.is_main = self.rank == 0
        self.device = pick_device(config.run.device, self.local_rank)
        if config.run.threads > 0:
            torch.set_num_threads(config.run.threads)
        self.progress = progress and self.is_main
        self.hook = hook
        self._stop: str | None = None
        run, rc = config.run, config.render

        # prompts
        self.extra_queries = list(queries)
        if isinstance(prompts, PromptSet):
            self.prompt_set = prompts
        elif prompts is not None:
            self.prompt_set = PromptSet("python", list(prompts))
        else:
            p = config.prompts
            self.prompt_set = load_prompt_set(p.set or None, prompts=p.list, split=p.split,
                                              seen_fraction=p.seen_fraction, seed=p.split_seed, key=p.key)
        if config.run.mode == "finetune":
            one = config.finetune.prompt or self.prompt_set.prompts[0]
            self.extra_queries += self.prompt_set.prompts + self.prompt_set.held_out  # scored against the set
            self.prompt_set = PromptSet(f"finetune:{slug(one)}", [one])
        self.prompts = self.prompt_set.prompts
        if config.run.mode == "interpolation":
            self.pairs = make_pairs(self.prompts, config.interpolation.pairs)
            self.prompts = list(dict.fromkeys([p for pair in self.pairs for p in pair]))
        # each rank trains on its own shard of the prompts (all of them when there are too few)
        n_items = len(self.pairs) if config.run.mode == "interpolation" else len(self.prompts)
        self.shard = list(range(self.rank, n_items, self.world)) if n_items >= self.world else list(range(n_items))

        # guidance and text encoders
        self.guidance = guidance if guidance is not None else build_guidance(config.guidance, self.device, targets)
        self.reconstruction = isinstance(self.guidance, ReconstructionGuidance)
        enc_id = config.model.text_encoder
        if enc_id == "guidance":
            enc = getattr(self.guidance, "encoder", None)
            if enc is None:
                raise ValueError("model.text_encoder = \"guidance\" needs a guidance with a text encoder "
                                 "(reconstruction has none): name one in model.text_encoder")
            self.encoder = enc
        else:
            self.encoder = TextEncoder(enc_id, config.model.max_length or None)
        emb = self.encoder(self.prompts)
        self.tokens, self.mask = emb.tokens.to(self.device), emb.mask.to(self.device)
        self.index = {p: i for i, p in enumerate(self.prompts)}
        if not self.reconstruction and hasattr(self.guidance, "precompute"):
            # every (prompt, view) guidance embedding once, then the (large) text encoder is released
            self.guidance.precompute(self.prompts)

        # model
        if config.run.mode == "finetune":
            if not config.finetune.init:
                raise ValueError("finetune.init: give the amortized model folder to finetune")
            self.model, base_cfg = load_model(config.finetune.init, self.device)
            self.arch = self.model.config
            if self.arch.text_encoder != self.encoder.encoder_id or self.arch.token_dim != self.encoder.dim:
                self.encoder = TextEncoder(self.arch.text_encoder, self.arch.max_length)
                emb = self.encoder(self.prompts)
                self.tokens, self.mask = emb.tokens.to(self.device), emb.mask.to(self.device)
            if self.arch.mapping == "concat":
                raise ValueError("finetuning trains an offset on the grid parameters; the concat mapping has none")
            self.model.requires_grad_(False).eval()  # no power iterations: the mapping stays fixed
            self.offset = nn.Parameter(torch.zeros(1, self.model.point_encoder.n_params, device=self.device))
            params = [self.offset]
            self.init_record = None
        else:
            self.arch = replace(config.model, text_encoder=self.encoder.encoder_id, token_dim=self.encoder.dim,
                                max_length=self.encoder.max_length)
            self.model = build_model(self.arch, run.seed).to(self.device).train()
            self.init_record = self._load_init(run.init) if run.init else None
            self.offset = None
            params = list(self.model.parameters())
        self.step_module = RenderStep(self.model, rc.height, rc.width, rc.n_samples, rc.use_env, self.offset,
                                      rc.normals)
        self.ddp = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DDP(self.step_module, device_ids=ids, find_unused_parameters=not rc.use_env)
        self.optimizer = torch.optim.Adam(params, lr=run.lr, betas=(run.beta1, run.beta2), eps=run.eps)
        self.sampler = config.camera
        self.gen = torch.Generator().manual_seed(run.seed * 1000003 + self.rank)
        self.dgen = torch.Generator(device=self.device).manual_seed(run.seed * 1000003 + 7919 + self.rank)
        self.step = 0
        self.skipped = 0
        self.bad_in_a_row = 0
        self.losses: list[float] = []
        self.writer = None
        self.t0 = time.perf_counter()

    def _load_init(self, path: str) -> dict[str, Any]:
        """Copy the weights of a model (or run / checkpoint) folder of the same architecture into the
        fresh model; returns what the provenance records of it."""
        from dataclasses import asdict

        inner = Path(path) / "model"  # a run or checkpoint folder holds its model there
        init, cfg = load_model(inner if (inner / "config.json").is_file() else path, self.device)
        theirs, ours = asdict(init.config), asdict(self.arch)
        diff = [f"{k}: {theirs[k]!r} there, {ours[k]!r} here" for k in ours if theirs.get(k) != ours[k]]
        if diff:
            raise ValueError(f"run.init {path}: another architecture ({'; '.join(diff)})")
        self.model.load_state_dict(init.state_dict())
        prov = cfg.get("provenance", {})
        return {"path": str(path), "step": prov.get("step"), "frames_per_prompt": prov.get("frames_per_prompt"),
                "prompt_set": prov.get("prompt_set"), "guidance": prov.get("guidance"), "init": prov.get("init")}

    # -- bookkeeping ---------------------------------------------------------------------------
    @property
    def frames_per_prompt(self) -> float:
        n = len(self.pairs) if self.config.run.mode == "interpolation" else len(self.prompts)
        return self.step * self.config.run.batch_size * self.world / max(1, n)

    def provenance(self) -> dict[str, Any]:
        c = self.config
        return {"name": self.out.name, "trainer": "att3d training", "mode": c.run.mode, "step": self.step,
                "frames_per_prompt": self.frames_per_prompt, "world_size": self.world,
                "guidance": {"kind": c.guidance.kind, "model": c.guidance.model, "scale": c.guidance.scale},
                "prompt_set": self.prompt_set.record(), "prompts": self.prompts[:10000],
                "init": self.init_record, "config": c.to_dict()}

    def rng_state(self) -> dict[str, torch.Tensor]:
        mine = {"cpu": self.gen.get_state(), "device": self.dgen.get_state().cpu(), "torch": torch.get_rng_state()}
        import torch.distributed as dist

        if self.world > 1:
            gathered: list = [None] * self.world
            dist.all_gather_object(gathered, {k: v.numpy().tobytes() for k, v in mine.items()})
            return {f"rank{r}.{k}": torch.frombuffer(bytearray(b), dtype=torch.uint8)
                    for r, d in enumerate(gathered) for k, b in d.items()}
        return {f"rank0.{k}": v for k, v in mine.items()}

    def save_checkpoint(self) -> Path | None:
        rng = self.rng_state()  # collective: every rank takes part
        if not self.is_main:
            return None
        state = {"mode": self.config.run.mode, "prompt_sha256": prompt_hash(self.prompts), "skipped": self.skipped,
                 "bad_in_a_row": self.bad_in_a_row, "world_size": self.world,
                 "frames_per_prompt": self.frames_per_prompt}
        model = self.folded_model() if self.offset is not None else self.model
        self.last_checkpoint = ckpt.save_checkpoint(self.out, self.step, model, self.optimizer, rng, state,
                                                    self.provenance(), self.config.run.keep_checkpoints)
        if self.offset is not None:
            from safetensors.torch import save_file

            save_file({"offset": self.offset.detach().cpu().contiguous()}, str(self.last_checkpoint / "offset.safetensors"))
        return self.last_checkpoint

    def resume(self) -> bool:
        path = ckpt.find_latest(self.out)
        if path is None:
            return False
        data = ckpt.load_checkpoint(path)
        st = data["state"]
        if st.get("mode") != self.config.run.mode:
            raise TrainingError(f"{path}: a {st.get('mode')} run; this config is {self.config.run.mode}")
        if st.get("prompt_sha256") != prompt_hash(self.prompts):
            raise TrainingError(f"{path}: trained on a different prompt set (sha256 mismatch); use a new --out")
        if self.offset is not None:
            from safetensors.torch import load_file

            self.offset.data.copy_(load_file(str(path / "offset.safetensors"))["offset"].to(self.device))
        else:
            model, _ = load_model(data["model_dir"], self.device)
            self.model.load_state_dict(model.state_dict())
        ckpt.optimizer_from_flat(self.optimizer, data["optimizer"], st["optimizer"])
        rng = data["rng"]
        if f"rank{self.rank}.cpu" in rng:
            self.gen.set_state(rng[f"rank{self.rank}.cpu"])
            self.dgen.set_state(rng[f"rank{self.rank}.device"].to(self.dgen.get_state().device))
            torch.set_rng_state(rng[f"rank{self.rank}.torch"])
        else:
            print(f"att3d train: {path} was written by {st.get('world_size')} processes; rank {self.rank} gets a "
                  f"fresh random stream", file=sys.stderr)
            self.gen.manual_seed(self.config.run.seed * 1000003 + self.rank + 104729 * st["step"])
        self.step = int(st["step"])
        self.skipped = int(st.get("skipped", 0))
        self.bad_in_a_row = int(st.get("bad_in_a_row", 0))
        self.last_checkpoint = path
        return True

    # -- one step ---------------------------------------------------------------------------------
    def batch(self) -> dict[str, Any]:
        """Sample prompts (or pairs and α), cameras, and the guidance conditioning of one step."""
        c, b = self.config, self.config.run.batch_size
        pick = torch.randint(0, len(self.shard), (b,), generator=self.gen)
        cams = self.sampler.sample(b, self.gen, device=self.device)
        views = cams.view_labels if self.config.guidance.view_prompts else [None] * b
        out: dict[str, Any] = {"cams": cams, "views": views}
        if c.run.mode != "interpolation":
            prompts = [self.prompts[self.shard[int(i)]] for i in pick]
            idx = torch.tensor([self.index[p] for p in prompts], device=self.device)
            out.update(prompts=prompts, tokens=self.tokens[idx], mask=self.mask[idx])
            if not self.reconstruction:
                out["conds"] = [self.guidance.embed(self.guidance.prompts_for(prompts, views))]
                out["weights"] = None
            return out
        pairs = [self.pairs[self.shard[int(i)]] for i in pick]
        kappa = kappa_at(c.interpolation.kappa, self.step)
        alpha = sample_beta(kappa, b, self.gen)
        i1 = torch.tensor([self.index[p] for p, _ in pairs], device=self.device)
        i2 = torch.tensor([self.index[q] for _, q in pairs], device=self.device)
        a = alpha.to(self.device).view(b, 1, 1)
        out.update(prompts=[f"{p} → {q}" for p, q in pairs], alpha=alpha, kappa=kappa,
                   tokens=(1 - a) * self.tokens[i1] + a * self.tokens[i2], mask=self.mask[i1] | self.mask[i2])
        z = (torch.rand(b, generator=self.gen) < alpha)  # loss interpolation: Z ~ Bern(α)
        out["z"] = z
        if self.reconstruction:
            out["target_prompts"] = [q if zz else p for (p, q), zz in zip(pairs, z.tolist())]
            return out
        g = self.guidance
        e1 = g.embed(g.prompts_for([p for p, _ in pairs], views))
        e2 = g.embed(g.prompts_for([q for _, q in pairs], views))
        target, ic = c.interpolation.target, c.interpolation
        if target == "latent":  # Eq. 8: guidance on the interpolated embedding
            ag = alpha.to(e1.device, e1.dtype).view(b, 1, 1)
            out.update(conds=[(1 - ag) * e1 + ag * e2], weights=None)
        elif target == "loss":  # Eq. 10: guidance prompt 2 with probability α
            zz = z.to(e1.device).view(b, 1, 1)
            out.update(conds=[torch.where(zz, e2, e1)], weights=None)
        else:  # Eq. 11: ε̂ = ε_u + (1−α)ω1(ε_1 − ε_u) + αω2(ε_2 − ε_u)
            out.update(conds=[e1, e2], weights=[(1 - alpha) * ic.scale1, alpha * ic.scale2])
        return out

    def train_step(self) -> tuple[float, float, int]:
        """One optimizer step: → (loss, gradient norm, non-finite SDS elements). Skips non-finite steps."""
        batch = self.batch()
        module = self.ddp or self.step_module
        rgb, _ = module(batch["tokens"], batch["mask"], batch["cams"], self.dgen)
        if self.reconstruction:
            names = batch.get("target_prompts", batch["prompts"])
            target = self.guidance.targets(names, batch["cams"], rgb.shape[-2], rgb.shape[-1])
            out = self.guidance(rgb, target)
        else:
            out = self.guidance(rgb, batch["conds"], batch["weights"], generator=self.gen)
        loss = out.loss
        ok = torch.tensor([1.0 if bool(torch.isfinite(loss)) else 0.0], device=self.device)
        _all_reduce(ok, "min")
        self.optimizer.zero_grad(set_to_none=True)
        gnorm = float("nan")
        if ok.item() > 0:
            loss.backward()
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            clip = self.config.run.grad_clip_norm
            gn = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
            gnorm = float(gn)
            if math.isfinite(gnorm):
                self.optimizer.step()
            else:
                ok.zero_()
        self.step += 1
        lv = float(loss.detach())
        if ok.item() > 0:
            self.bad_in_a_row = 0
        else:
            self.skipped += 1
            self.bad_in_a_row += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.last_batch = batch
        return lv, gnorm, out.nonfinite

    # -- evaluation and previews -------------------------------------------------------------------
    @torch.no_grad()
    def preview(self) -> Path | None:
        if not self.is_main:
            return None
        from PIL import Image

        prompts = self.prompts[:8]
        n = len(prompts)
        az = [0.0, 90.0, 180.0, 270.0]
        cams = orbit_cameras(az * n, 20.0, 2.5, 1.1, device=self.device)
        idx = torch.arange(n, device=self.device).repeat_interleave(len(az))
        rc = self.config.render
        was_training = self.model.training
        self.model.eval()  # no spectral-norm power iterations: rank 0 must not drift from the others
        try:
            mod = self.step_module.modulation(self.tokens[idx], self.mask[idx])
            out = self.model.render(mod, cams, rc.height, rc.width, n_samples=max(rc.n_samples, 32),
                                    stratified=False, use_env=rc.use_env)
        finally:
            self.model.train(was_training)
        path = self.out / "previews" / f"step_{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_grid(out.rgb, len(az))).save(path)
        return path

    def evaluate(self) -> list[dict]:
        """Quality at the current budget (CLIP R-precision/probability when eval.clip_model is set)."""
        if not self.is_main:
            return []
        recs = []
        base = {"step": self.step, "frames_per_prompt": self.frames_per_prompt, "mode": self.config.run.mode,
                "loss": float(np.mean(self.losses[-50:])) if self.losses else None, "time": time.time()}
        ec = self.config.eval
        if ec.clip_model and self.config.run.mode != "interpolation":
            from .evaluate import ClipScorer, evaluate_prompts

            self._scorer = getattr(self, "_scorer", None) or ClipScorer(ec.clip_model, self.device)
            queries = list(dict.fromkeys(self.prompts + self.prompt_set.held_out + self.extra_queries
                                         + self._distractors()))
            splits = [("seen" if self.prompt_set.held_out or self.prompt_set.split == "seen" else "all", self.prompts)]
            if self.prompt_set.held_out:
                splits.append(("unseen", self.prompt_set.held_out))
            for name, ps in splits:
                ps = ps[:ec.max_prompts] if ec.max_prompts else ps
                model = self.folded_model() if self.offset is not None else self.model
                res = evaluate_prompts(model, self.encoder, ps, queries, self._scorer, ec, self.device)
                recs.append({**base, "split": name, "r_precision": res["r_precision"],
                             "r_probability": res["r_probability"], "n_prompts": len(ps),
                             "n_queries": res["n_queries"]})
        else:
            recs.append({**base, "split": "seen"})
        with open(self.out / "evals.jsonl", "a") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        if self.writer is not None:
            for r in recs:
                for k in ("r_precision", "r_probability"):
                    if k in r:
                        self.writer.add_scalar(f"eval/{r['split']}/{k}", r[k], self.step)
        return recs

    def _distractors(self) -> list[str]:
        from .prompts import read_prompt_library, read_text_prompts

        d = self.config.eval.distractors
        if not d:
            return []
        return read_prompt_library(d) if d.endswith(".json") else read_text_prompts(d)

    # -- finetuning result ---------------------------------------------------------------------------
    def folded_model(self) -> ATT3D:
        """The finetuned model as a normal model folder: the offset δ folded into ``to_w``.

        ``w = s W v`` (spectral-normed, no bias; ``s`` the ``grid_scale``) becomes ``s W' v`` with
        ``W' = W + δ v*ᵀ / (s ‖v*‖²)`` (v* the finetuned prompt's task vector), which gives exactly
        ``w* + δ`` for that prompt (other prompts move by ``δ (v·v*)/‖v*‖²``). The stored spectral-norm vectors are set so that, in
        eval mode, the normalised weight is exactly ``W'`` — the folder is for inference; finetune
        again from the amortized model rather than from it.
        """
        model = copy.deepcopy(self.model).eval()
        with torch.no_grad():
            tokens, mask = self.tokens[:1], self.mask[:1]
            v = model.modulate(tokens, mask).v[0]
            lin = model.mapping.to_w
            w_eff = lin.weight.detach().clone()  # normalised weight as used at inference
            s = model.mapping.grid_scale
            w_new = w_eff + torch.outer(self.offset.detach()[0], v) / (s * v.dot(v).clamp_min(1e-12))
            par = lin.parametrizations.weight
            par.original.copy_(w_new)
            sn = par[0]
            vb = torch.nn.functional.normalize(torch.randn(w_new.shape[1], generator=torch.Generator().manual_seed(0)).to(w_new), dim=0)
            for _ in range(50):
                ub = torch.nn.functional.normalize(w_new @ vb, dim=0)
                vb = torch.nn.functional.normalize(w_new.t() @ ub, dim=0)
            ub = w_new @ vb
            ub = ub / ub.dot(ub)  # uᵀ W' v = 1  →  W'/σ = W'
            sn._u.copy_(ub)
            sn._v.copy_(vb)
        return model

    # -- the loop --------------------------------------------------------------------------------------
    def _install_signals(self):
        if threading_main():
            def handler(signum, frame):
                self._stop = signal.Signals(signum).name
            old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
            return old
        return {}

    def run(self, resume: bool = False) -> TrainResult:
        c = self.config
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.toml").write_text(to_toml(c))
            (self.out / "prompts.txt").write_text("\n".join(self.prompts) + "\n")
        resumed = self.resume() if resume else False
        if self.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.out / "logs"), purge_step=self.step if resumed else None)
            except ImportError:
                self.writer = None
        if self.is_main and not resumed:
            self.evaluate()  # the budget-0 point of the quality curve
        old = self._install_signals()
        from tqdm import tqdm

        bar = tqdm(total=c.run.steps, initial=self.step, desc=f"train {c.run.mode}", disable=not self.progress,
                   file=sys.stderr, dynamic_ncols=True, unit="step")
        metrics = open(self.out / "metrics.jsonl", "a") if self.is_main else None
        t_start = time.perf_counter()
        stopped = "done"
        try:
            while self.step < c.run.steps:
                loss, gnorm, nonfinite = self.train_step()
                self.losses.append(loss)
                if self.hook is not None:
                    self.hook(self, self.step, loss)
                if self.bad_in_a_row >= c.run.max_nonfinite:
                    path = self.save_checkpoint() or getattr(self, "last_checkpoint", None)
                    raise TrainingError(f"{self.bad_in_a_row} non-finite losses in a row at step {self.step}; "
                                        f"the last good weights are in {path}. Lower run.lr or guidance.scale, or "
                                        f"set guidance.grad_clip / run.grad_clip_norm")
                if self.is_main:
                    bar.update(1)
                    if self.step % c.run.log_every == 0 or self.step == c.run.steps:
                        rec = {"step": self.step, "loss": loss, "grad_norm": gnorm, "frames_per_prompt": self.frames_per_prompt,
                               "skipped": self.skipped, "nonfinite_sds": nonfinite, "time": time.perf_counter() - t_start}
                        if "kappa" in self.last_batch:
                            rec["kappa"] = self.last_batch["kappa"]
                        metrics.write(json.dumps(rec) + "\n")
                        metrics.flush()
                        bar.set_postfix(loss=f"{loss:.4g}", fpp=f"{self.frames_per_prompt:.0f}")
                        if self.writer is not None:
                            for k in ("loss", "grad_norm", "frames_per_prompt", "skipped"):
                                if rec[k] is not None and math.isfinite(rec[k]):
                                    self.writer.add_scalar(f"train/{k}", rec[k], self.step)
                    if c.run.preview_every and self.step % c.run.preview_every == 0:
                        self.preview()
                if c.run.eval_every and self.step % c.run.eval_every == 0:
                    self.evaluate()
                stop = torch.tensor([1.0 if self._stop else 0.0], device=self.device)
                _all_reduce(stop, "max")
                if stop.item() > 0:
                    stopped = "signal"
                    self.save_checkpoint()
                    break
                if c.run.checkpoint_every and self.step % c.run.checkpoint_every == 0 and self.step < c.run.steps:
                    self.save_checkpoint()
        finally:
            bar.close()
            if metrics:
                metrics.close()
            for s, h in old.items():
                signal.signal(s, h)
        model_dir = None
        if stopped == "done":
            if not (c.run.eval_every and self.step % c.run.eval_every == 0):
                self.evaluate()
            self.save_checkpoint()
            if self.is_main:
                model = self.folded_model() if self.offset is not None else self.model
                model_dir = save_model(model, self.out / "model", self.provenance())
                self.preview()
        if self.writer is not None:
            self.writer.close()
        return TrainResult(self.out, model_dir, self.step, self.losses, self.skipped, self.frames_per_prompt,
                           time.perf_counter() - self.t0, stopped, getattr(self, "last_checkpoint", None))


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


# -- the public entry point -------------------------------------------------------------------------

def train(config: TrainConfig, out: str | os.PathLike, *, prompts: Sequence[str] | None = None,
          resume: bool = False, targets: Callable | None = None, guidance: nn.Module | None = None,
          progress: bool = True, hook: Callable | None = None) -> TrainResult:
    """Train per ``config`` into the run folder ``out``; the model folder is ``out/model``.

    ``prompts`` (a Python list) replaces ``config.prompts``; ``targets`` is the ground-truth renderer
    of reconstruction guidance, ``targets(prompts, cams, H, W) → [B, 3, H, W]``; ``guidance`` an
    already built guidance module (reuse one across runs); ``resume`` continues from the last
    checkpoint in ``out`` (same step, weights, optimizer and random streams). Under torchrun the
    process group is joined here (NCCL on GPUs, gloo on CPU); only rank 0 writes.
    """
    init_distributed(config.run.device)
    if config.run.mode == "per_prompt":
        return _train_per_prompt(config, Path(out), prompts=prompts, resume=resume, targets=targets,
                                 guidance=guidance, progress=progress, hook=hook)
    trainer = Trainer(config, out, prompts=prompts, targets=targets, guidance=guidance, progress=progress, hook=hook)
    return trainer.run(resume=resume)


def _train_per_prompt(config: TrainConfig, out: Path, **kw) -> TrainResult:
    """The per-prompt baseline: the same architecture and renderer, one freshly initialised model per
    prompt (seed ``run.seed + i``), ``run.steps`` steps each. Models go to ``out/per_prompt/NNN-slug``,
    evaluations to each sub-run's ``evals.jsonl`` (``att3d plot`` averages them per budget)."""
    prompts = kw.pop("prompts")
    if prompts is None:
        p = config.prompts
        ps = load_prompt_set(p.set or None, prompts=p.list, split=p.split, seen_fraction=p.seen_fraction,
                             seed=p.split_seed, key=p.key)
    else:
        ps = PromptSet("python", list(prompts))
    prompts = ps.prompts
    # Each model is scored against the whole set (seen and held-out prompts), as the amortized model is:
    # a query set of its one prompt would make every R-precision 1.
    queries = ps.prompts + ps.held_out
    guidance = kw.pop("guidance") or build_guidance(config.guidance, pick_device(config.run.device, dist_info()[2]),
                                                     kw.get("targets"))
    resume = kw.pop("resume")
    t0 = time.perf_counter()
    results = []
    for i, prompt in enumerate(prompts):
        sub = out / "per_prompt" / f"{i:04d}-{slug(prompt)}"
        if resume and (sub / "model" / "config.json").is_file():
            results.append({"prompt": prompt, "model": str(sub / "model"), "skipped": True})
            continue
        cfg = copy.deepcopy(config)
        cfg.run.mode = "amortized"
        cfg.run.seed = config.run.seed + i
        one = PromptSet(f"{ps.name}[{i}]", [prompt], [], ps.split)
        r = Trainer(cfg, sub, prompts=one, guidance=guidance, queries=queries, **kw).run(resume=resume)
        results.append({"prompt": prompt, "model": str(r.model_dir), "frames_per_prompt": r.frames_per_prompt,
                        "losses": r.losses[-1:] if r.losses else []})
        if r.stopped != "done":
            return TrainResult(out, None, r.step, r.losses, r.skipped, r.frames_per_prompt,
                               time.perf_counter() - t0, r.stopped, r.checkpoint, results)
    if dist_info()[0] == 0:
        (out / "per_prompt.json").write_text(json.dumps(results, indent=2) + "\n")
    return TrainResult(out, None, config.run.steps, [], 0, config.run.steps * config.run.batch_size * dist_info()[1],
                       time.perf_counter() - t0, "done", None, results)
