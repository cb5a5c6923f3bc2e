"""The training loop every single-model mode runs: stepping (non-finite steps skipped), checkpoints
and exact resume, logging (metrics.jsonl, TensorBoard, a progress bar), SIGINT/SIGTERM, and the
schedule of previews and evaluations. What a step samples and how the guidance is asked comes from
the mode (``training/modes/``); the loop never asks which mode it runs.

Budget is counted in rendered frames per prompt: ``step × batch × world_size / #items`` (items:
prompts, or pairs for interpolation).
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.cameras import orbit_cameras
from backend.device import pick_device
from backend.fileio import atomic_write_text, remove_stale_temporaries
from backend.model import ATT3D, ModelConfig, save_model
from backend.text_encoder import TextEncoder

from . import checkpoint as ckpt
from .config import TrainConfig, to_toml
from .distributed import all_reduce, dist_info, gather_states, wrap_ddp
from .guidance import Guidance, build_guidance
from .images import image_grid
from .modes import MODES, Batch
from .prompts import PromptSet, load_prompt_set, prompt_hash, read_prompt_file


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
    stopped: str = "done"  # done | time (run.time_limit_s reached; finished like done) | signal
    checkpoint: Path | None = None
    per_prompt: list[dict] = field(default_factory=list)


def run_prompt_set(prompts: Sequence[str] | PromptSet | None, config: TrainConfig) -> PromptSet:
    """The prompts a run trains on: ``prompts`` (a list or a set) if given, else ``config.prompts``."""
    if isinstance(prompts, PromptSet):
        return prompts
    if prompts is not None:
        return PromptSet("python", list(prompts))
    p = config.prompts
    return load_prompt_set(p.set or None, prompts=p.list, split=p.split, seen_fraction=p.seen_fraction,
                           seed=p.split_seed, key=p.key)


def mapping_encoder(model: ModelConfig, guidance: Guidance, device: torch.device | str = "cpu") -> TextEncoder:
    """The mapping network's text encoder: ``model.text_encoder``, or the guidance's own (``"guidance"``).

    An encoder of its own (the IF preset's CLIP ViT-L/14 beside IF's T5, as the paper conditions the
    mapping network, App. B.1.3) runs on the training device in float32: the tokens the mapping network
    learns from are the same on a CPU and a GPU, and eight DDP ranks do not each embed every prompt on
    the host's cores (CLIP-L: 0.5 GB)."""
    if model.text_encoder != "guidance":
        return TextEncoder(model.text_encoder, model.max_length or None, device=device, dtype=torch.float32,
                           clip_skip=model.clip_skip)
    if guidance.encoder is None:
        raise ValueError("model.text_encoder = \"guidance\" needs a guidance with a text encoder "
                         "(reconstruction has none): name one in model.text_encoder")
    return guidance.encoder


def _install_signal_handlers(stop: Callable[[str], None]) -> dict:
    """SIGINT / SIGTERM call ``stop(name)`` (main thread only); returns the handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        stop(signal.Signals(signum).name)

    return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}


def _is_due(step: int, every: int) -> bool:
    return bool(every) and step % every == 0


class Trainer:
    """One run of a single-model mode in the run folder ``out``: ``Trainer(config, out).run(resume)``."""

    def __init__(self, config: TrainConfig, out: str | os.PathLike, *,
                 prompts: Sequence[str] | PromptSet | None = None, targets: Callable | None = None,
                 guidance: Guidance | None = None, progress: bool = True,
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
        run = config.run

        self.mode = MODES[run.mode](config, run_prompt_set(prompts, config), self.rank, self.world, queries)
        self.guidance = guidance if guidance is not None else build_guidance(config.guidance, self.device, targets)
        params = self.mode.setup(self.guidance, mapping_encoder(config.model, self.guidance, self.device), self.device)
        self.step_module = self.mode.render_step()
        # without the environment map its parameters get no gradient: DDP must not wait for them
        self.ddp = wrap_ddp(self.step_module, self.device, not config.render.use_env) if self.world > 1 else None
        self.optimizer = torch.optim.Adam(params, lr=run.lr, betas=(run.beta1, run.beta2), eps=run.eps)
        # CPU stream (prompts, cameras, α, SDS t and ε) and device stream (stratified ray samples)
        self.rng = torch.Generator().manual_seed(run.seed * 1000003 + self.rank)
        self.device_rng = torch.Generator(device=self.device).manual_seed(run.seed * 1000003 + 7919 + self.rank)
        self.step = 0
        self.skipped = 0
        self.bad_in_a_row = 0
        self.losses: list[float] = []
        self.last_batch: Batch | None = None
        self.last_terms: dict[str, float] = {}  # the regularisers' weighted values at the last step
        self.last_checkpoint: Path | None = None
        self.weight_norm0 = self.weight_norm()  # the reference of the divergence check (kept across resumes)
        self.writer = None
        self._scorer = None
        self.t0 = time.perf_counter()

    # what hooks (the Shapes benchmark) read
    @property
    def model(self) -> ATT3D:
        return self.mode.model

    @property
    def encoder(self) -> TextEncoder:
        return self.mode.encoder

    @property
    def frames_per_prompt(self) -> float:
        return self.step * self.config.run.batch_size * self.world / max(1, self.mode.n_items)

    def provenance(self) -> dict[str, Any]:
        c = self.config
        return {"name": self.out.name, "trainer": "att3d training", "mode": c.run.mode, "step": self.step,
                "frames_per_prompt": self.frames_per_prompt, "world_size": self.world,
                "guidance": {"kind": c.guidance.kind, "model": c.guidance.model, "scale": c.guidance.scale},
                "prompt_set": self.mode.prompt_set.record(), "prompts": self.mode.prompts[:10000],
                "init": self.mode.init_record, "config": c.to_dict()}

    # -- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> Path | None:
        """A checkpoint of this step (rank 0 writes; every rank must call it: the random streams are gathered)."""
        try:  # on every rank (their weights are the same), so that all stop together
            ckpt.check_finite(self.mode.export_model(), self.optimizer)
        except ckpt.NonFiniteWeights as e:
            raise TrainingError(f"step {self.step}: {e}, so no checkpoint was written; "
                                f"{self._last_good()}. Lower run.lr or guidance.scale, or set "
                                "run.grad_clip_norm") from None
        mine = {"cpu": self.rng.get_state(), "device": self.device_rng.get_state().cpu(),
                "torch": torch.get_rng_state()}
        rng = gather_states(mine, self.world)
        if not self.is_main:
            return None
        state = {"mode": self.config.run.mode, "prompt_sha256": prompt_hash(self.mode.prompts),
                 "skipped": self.skipped, "bad_in_a_row": self.bad_in_a_row, "world_size": self.world,
                 "frames_per_prompt": self.frames_per_prompt, "weight_norm0": self.weight_norm0}
        self.last_checkpoint = ckpt.save_checkpoint(
            self.out, self.step, self.mode.export_model(), self.optimizer, rng, state, self.provenance(),
            self.config.run.keep_checkpoints, extra=self.mode.checkpoint_tensors())
        return self.last_checkpoint

    def _last_good(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint was written before"
        return f"the last good weights are in {self.last_checkpoint}"

    def resume(self) -> bool:
        """Continue from the latest checkpoint in the run folder (False: there is none). A checkpoint
        that cannot be read (a truncated file: a disk that filled up, a copy cut short) is skipped,
        with a line on stderr, for the previous complete one."""
        found = ckpt.candidates(self.out)
        if not found:
            return False
        for i, path in enumerate(found):
            try:
                self._restore(path)
            except (ValueError, OSError, RuntimeError, KeyError) as e:  # TrainingError: incompatible, not damaged
                if isinstance(e, TrainingError):
                    raise
                older = found[i + 1] if i + 1 < len(found) else None
                print(f"att3d train: checkpoint {path} is damaged ({str(e)[:300]}); "
                      + (f"resuming from the previous one, {older.name}" if older else "no older one is left"),
                      file=sys.stderr)
                continue
            return True
        raise TrainingError(f"no readable checkpoint in {self.out / 'checkpoints'}: every one is damaged; "
                            "start again with a new --out")

    def _restore(self, path: Path) -> None:
        data = ckpt.load_checkpoint(path)
        st = data["state"]
        if st.get("mode") != self.config.run.mode:
            raise TrainingError(f"{path}: a {st.get('mode')} run; this config is {self.config.run.mode}")
        if st.get("prompt_sha256") != prompt_hash(self.mode.prompts):
            raise TrainingError(f"{path}: trained on a different prompt set (sha256 mismatch); use a new --out")
        self.mode.load_checkpoint(path, data)
        ckpt.optimizer_from_flat(self.optimizer, data["optimizer"], st["optimizer"])
        rng = data["rng"]
        if f"rank{self.rank}.cpu" in rng:
            self.rng.set_state(rng[f"rank{self.rank}.cpu"])
            self.device_rng.set_state(rng[f"rank{self.rank}.device"].to(self.device_rng.get_state().device))
            torch.set_rng_state(rng[f"rank{self.rank}.torch"])
        else:
            print(f"att3d train: {path} was written by {st.get('world_size')} processes; rank {self.rank} gets a "
                  f"fresh random stream", file=sys.stderr)
            self.rng.manual_seed(self.config.run.seed * 1000003 + self.rank + 104729 * st["step"])
        self.step = int(st["step"])
        self.skipped = int(st.get("skipped", 0))
        self.bad_in_a_row = int(st.get("bad_in_a_row", 0))
        norm0 = st.get("weight_norm0")
        self.weight_norm0 = float(norm0) if isinstance(norm0, (int, float)) else self.weight_norm()
        self.last_checkpoint = path

    # -- one step ---------------------------------------------------------------------------------
    def batch(self) -> Batch:
        """The mode's batch for the current step (prompts or pairs and α, cameras, guidance terms)."""
        return self.mode.batch(self.step, self.rng)

    def train_step(self) -> tuple[float, float, int]:
        """One optimizer step: → (loss, gradient norm, non-finite SDS elements). Skips non-finite steps."""
        batch = self.batch()
        self.guidance.step = self.step
        module = self.ddp or self.step_module
        anchor = getattr(self.mode, "anchor_terms", None)
        extra = (lambda mod_fn: anchor(batch, mod_fn)) if anchor is not None else None
        rgb, _, terms = module(batch.tokens, batch.mask, batch.cams, self.device_rng, extra=extra)
        out = self.guidance(rgb, batch.conds, batch.weights, prompts=batch.shown, cams=batch.cams,
                            generator=self.rng)
        loss = out.loss + sum(terms.values()) if terms else out.loss
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        ok = torch.tensor([1.0 if bool(torch.isfinite(loss)) else 0.0], device=self.device)
        all_reduce(ok, "min")  # every rank skips together, or DDP's gradient all-reduce would hang
        self.optimizer.zero_grad(set_to_none=True)
        gnorm = float("nan")
        if ok.item() > 0:
            loss.backward()
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            clip = self.config.run.grad_clip_norm
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf")))
            if math.isfinite(gnorm):
                self.optimizer.step()
            else:
                ok.zero_()
        self.step += 1
        if ok.item() > 0:
            self.bad_in_a_row = 0
        else:
            self.skipped += 1
            self.bad_in_a_row += 1
        self.optimizer.zero_grad(set_to_none=True)
        self.last_batch = batch
        return float(loss.detach()), gnorm, out.nonfinite

    # -- previews and evaluations --------------------------------------------------------------
    @torch.no_grad()
    def preview(self) -> Path | None:
        """4 views of up to 8 prompts as one PNG in ``previews/`` (rank 0)."""
        if not self.is_main:
            return None
        from PIL import Image

        n = len(self.mode.prompts[:8])
        az = [0.0, 90.0, 180.0, 270.0]
        cams = orbit_cameras(az * n, 20.0, 2.5, 1.1, device=self.device)
        idx = torch.arange(n, device=self.device).repeat_interleave(len(az))
        rc = self.config.render
        was_training = self.model.training
        self.model.eval()  # no spectral-norm power iterations: rank 0 must not drift from the others
        try:
            mod = self.step_module.modulation(self.mode.tokens[idx], self.mode.mask[idx])
            out = self.model.render(mod, cams, rc.height, rc.width, n_samples=max(rc.n_samples, 32),
                                    stratified=False, use_env=rc.use_env)
        finally:
            self.model.train(was_training)
        path = self.out / "previews" / f"step_{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_grid(out.rgb, len(az))).save(path)
        return path

    def evaluate(self) -> list[dict]:
        """Quality at the current budget (CLIP R-precision/probability when eval.clip_model is set), appended
        to ``evals.jsonl`` (rank 0)."""
        if not self.is_main:
            return []
        base = {"step": self.step, "frames_per_prompt": self.frames_per_prompt, "mode": self.config.run.mode,
                "loss": float(np.mean(self.losses[-50:])) if self.losses else None, "time": time.time()}
        ec, mode = self.config.eval, self.mode
        if ec.clip_model and mode.scores_prompts:
            from .evaluate import ClipScorer, evaluate_splits

            self._scorer = self._scorer or ClipScorer(ec.clip_model, self.device)
            distractors = read_prompt_file(ec.distractors) if ec.distractors else []
            queries = list(dict.fromkeys(mode.prompts + mode.prompt_set.held_out + mode.queries + distractors))
            recs = [{**base, **r} for r in evaluate_splits(mode.export_model(), mode.encoder, mode.prompt_set,
                                                           mode.prompts, queries, self._scorer, ec, self.device)]
        else:
            recs = [{**base, "split": "seen"}]
        with open(self.out / "evals.jsonl", "a") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        if self.writer is not None:
            for r in recs:
                for k in ("r_precision", "r_probability"):
                    if k in r:
                        self.writer.add_scalar(f"eval/{r['split']}/{k}", r[k], self.step)
        return recs

    # -- the loop --------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> TrainResult:
        """Train to ``run.steps`` (from the last checkpoint with ``resume``), then write ``out/model``."""
        c = self.config
        self._start(resume)
        old = _install_signal_handlers(self._on_signal)
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
                self._stop_if_diverging()
                if self.is_main:
                    bar.update(1)
                    if _is_due(self.step, c.run.log_every) or self.step == c.run.steps:
                        self._log(metrics, bar, loss, gnorm, nonfinite, time.perf_counter() - t_start)
                    if _is_due(self.step, c.run.preview_every):
                        self.preview()
                if _is_due(self.step, c.run.eval_every):
                    self.evaluate()
                if self._signalled():
                    stopped = "signal"
                    self.save_checkpoint()
                    break
                if self._out_of_time(t_start):
                    stopped = "time"
                    break
                if _is_due(self.step, c.run.checkpoint_every) and self.step < c.run.steps:
                    self.save_checkpoint()
        finally:
            bar.close()
            if metrics:
                metrics.close()
            for s, h in old.items():
                signal.signal(s, h)
        model_dir = self._finish() if stopped in ("done", "time") else None
        if self.writer is not None:
            self.writer.close()
        return TrainResult(self.out, model_dir, self.step, self.losses, self.skipped, self.frames_per_prompt,
                           time.perf_counter() - self.t0, stopped, self.last_checkpoint)

    def _start(self, resume: bool) -> None:
        """The run folder's config and prompts, the resumed state, TensorBoard, the budget-0 evaluation."""
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            removed = [p for d in (self.out, self.out / "checkpoints") for p in remove_stale_temporaries(d)]
            if removed:
                print(f"att3d train: removed {len(removed)} temporary file(s) a stopped run left in {self.out}",
                      file=sys.stderr)
            atomic_write_text(self.out / "train_config.toml", to_toml(self.config))
            atomic_write_text(self.out / "prompts.txt", "\n".join(self.mode.prompts) + "\n")
        resumed = self.resume() if resume else False
        if self.is_main:
            for log in ("metrics.jsonl", "evals.jsonl"):  # steps after the checkpoint are run again
                trim_log(self.out / log, self.step if resumed else None)
            self.writer = _open_tensorboard(self.out / "logs", self.step if resumed else None)
            if not resumed:
                self.evaluate()  # the budget-0 point of the quality curve

    def _out_of_time(self, t_start: float) -> bool:
        """Whether run.time_limit_s has passed (rank 0's clock decides, so all ranks stop together)."""
        limit = self.config.run.time_limit_s
        if limit <= 0:
            return False
        late = torch.tensor([1.0 if self.is_main and time.perf_counter() - t_start >= limit else 0.0],
                            device=self.device)
        return all_reduce(late, "max").item() > 0

    def _on_signal(self, name: str) -> None:
        self._stop = name

    def _signalled(self) -> bool:
        """Whether any rank was asked to stop (all ranks then stop at the same step)."""
        stop = torch.tensor([1.0 if self._stop else 0.0], device=self.device)
        return all_reduce(stop, "max").item() > 0

    def weight_norm(self) -> float:
        """The L2 norm of every trained parameter together."""
        norms = [p.detach().float().norm() for g in self.optimizer.param_groups for p in g["params"]]
        return float(torch.stack(norms).norm()) if norms else 0.0

    def _stop_if_diverging(self) -> None:
        """Stop, naming the last good checkpoint, after ``run.max_nonfinite`` non-finite losses in a row,
        or when the weights' norm has grown ``run.max_weight_growth`` times (a learning rate of 1e9
        gives finite but exploding weights, ~1e14, long before a NaN shows up)."""
        if self.bad_in_a_row >= self.config.run.max_nonfinite:
            path = self.save_checkpoint() or self.last_checkpoint  # refused (TrainingError) if damaged
            raise TrainingError(f"{self.bad_in_a_row} non-finite losses in a row at step {self.step}; "
                                f"the last good weights are in {path}. Lower run.lr or guidance.scale, or "
                                f"set guidance.grad_clip / run.grad_clip_norm")
        growth = self.config.run.max_weight_growth
        if growth > 0:
            # relative to the start, or to an RMS of 1 for weights that start at or near zero (a finetune's δ)
            n = sum(p.numel() for g in self.optimizer.param_groups for p in g["params"])
            norm, ref = self.weight_norm(), max(self.weight_norm0, math.sqrt(n))
            if not norm <= growth * ref:  # NaN included
                raise TrainingError(f"training diverged at step {self.step}: the weights' norm grew from "
                                    f"{self.weight_norm0:.3g} to {norm:.3g} (the limit is run.max_weight_growth "
                                    f"= {growth:g} times); {self._last_good()}. Lower run.lr "
                                    f"(now {self.config.run.lr:g}) or set run.grad_clip_norm")

    def _log(self, metrics, bar, loss: float, gnorm: float, nonfinite: int, seconds: float) -> None:
        rec = {"step": self.step, "loss": loss, "grad_norm": gnorm, "frames_per_prompt": self.frames_per_prompt,
               "skipped": self.skipped, "nonfinite_sds": nonfinite, "time": seconds, **self.last_batch.scalars(),
               **{f"reg_{k}": v for k, v in self.last_terms.items()}}
        metrics.write(json.dumps(rec) + "\n")
        metrics.flush()
        bar.set_postfix(loss=f"{loss:.4g}", fpp=f"{self.frames_per_prompt:.0f}")
        if self.writer is not None:
            for k in ("loss", "grad_norm", "frames_per_prompt", "skipped"):
                if rec[k] is not None and math.isfinite(rec[k]):
                    self.writer.add_scalar(f"train/{k}", rec[k], self.step)

    def _finish(self) -> Path | None:
        """The last evaluation and checkpoint, then the run's model folder and a preview (rank 0)."""
        if not _is_due(self.step, self.config.run.eval_every):
            self.evaluate()
        self.save_checkpoint()
        if not self.is_main:
            return None
        model_dir = save_model(self.mode.export_model(), self.out / "model", self.provenance())
        self.preview()
        return model_dir


def _open_tensorboard(logdir: Path, purge_step: int | None):
    """A TensorBoard writer, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(logdir), purge_step=purge_step)


def trim_log(path: Path, through_step: int | None) -> None:
    """Keep the records of a JSON-lines log up to ``through_step`` (None: none of them), dropping the
    ones a resumed run writes again and any line a kill cut short, so every step appears once."""
    if not path.is_file():
        return
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            step = json.loads(line)["step"]
            keep = through_step is not None and isinstance(step, (int, float)) and step <= through_step
        except (ValueError, KeyError, TypeError):
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(k + "\n" for k in kept))
