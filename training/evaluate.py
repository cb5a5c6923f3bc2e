"""CLIP R-precision and R-probability (paper §4.1.2, Dream Fields; DreamFusion's 4 views).

For each prompt, render a ring of views (default azimuths 0/90/180/270 at 20° elevation); CLIP
scores every view against the query set (the prompt set itself, plus optional distractors).
R-precision: the fraction of views whose best-scoring query is the right prompt. R-probability:
the mean softmax probability (CLIP's logit scale) of the right prompt. Both are averaged over views
per prompt, then over prompts.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from backend.cameras import orbit_cameras

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class ClipScorer:
    """Any transformers CLIP model (folder or hub id): image and text embeddings, cached texts."""

    def __init__(self, name_or_path: str = DEFAULT_CLIP, device="cpu") -> None:
        from transformers import AutoTokenizer, CLIPModel

        try:
            self.model = CLIPModel.from_pretrained(name_or_path).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except OSError as e:
            raise ValueError(f"cannot load the CLIP model {name_or_path!r} ({str(e).splitlines()[0]}); give a "
                             f"local folder with --clip, or download it once with network access") from None
        self.device = torch.device(device)
        self.size = int(self.model.config.vision_config.image_size)
        mean, std = OPENAI_MEAN, OPENAI_STD
        pp = Path(name_or_path) / "preprocessor_config.json"
        if pp.is_file():
            import json

            d = json.loads(pp.read_text())
            mean, std = tuple(d.get("image_mean", mean)), tuple(d.get("image_std", std))
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self._text: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def text(self, prompts: Sequence[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text]
        for i in range(0, len(missing), 256):
            chunk = missing[i:i + 256]
            tok = self.tokenizer(chunk, padding=True, truncation=True,
                                 max_length=self.model.config.text_config.max_position_embeddings, return_tensors="pt")
            e = self.model.get_text_features(**{k: v.to(self.device) for k, v in tok.items()})
            e = e if torch.is_tensor(e) else e.pooler_output
            for p, v in zip(chunk, F.normalize(e.float(), dim=-1)):
                self._text[p] = v
        return torch.stack([self._text[p] for p in prompts])

    @torch.no_grad()
    def image(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.float().clamp(0, 1), (self.size, self.size), mode="bicubic", align_corners=False)
        e = self.model.get_image_features(pixel_values=((x - self.mean) / self.std).to(self.device))
        e = e if torch.is_tensor(e) else e.pooler_output
        return F.normalize(e.float(), dim=-1)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.exp())


def r_scores(image_emb: torch.Tensor, text_emb: torch.Tensor, correct: torch.Tensor,
             logit_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: (hit of the arg-max query, softmax probability of the correct query)."""
    logits = logit_scale * image_emb @ text_emb.t()
    hit = (logits.argmax(-1) == correct).float()
    prob = logits.softmax(-1).gather(1, correct[:, None])[:, 0]
    return hit, prob


@torch.no_grad()
def evaluate_prompts(model, encoder, prompts: Sequence[str], queries: Sequence[str], scorer: ClipScorer,
                     ec: Any = None, device="cpu", batch: int = 8) -> dict[str, Any]:
    """R-precision / R-probability of ``model`` on ``prompts`` with the query set ``queries``."""
    azimuths = list(getattr(ec, "azimuths", [0.0, 90.0, 180.0, 270.0]))
    elevation = float(getattr(ec, "elevation", 20.0))
    distance = float(getattr(ec, "distance", 2.5))
    size = int(getattr(ec, "size", 64))
    n_samples = int(getattr(ec, "n_samples", 64))
    queries = list(dict.fromkeys(list(queries) + list(prompts)))
    qi = {q: i for i, q in enumerate(queries)}
    text = scorer.text(queries)
    per_prompt = []
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(prompts), batch):
            chunk = list(prompts[s:s + batch])
            emb = encoder(chunk)
            n, v = len(chunk), len(azimuths)
            idx = torch.arange(n).repeat_interleave(v)
            mod = model.modulate(emb.tokens[idx].to(device), emb.mask[idx].to(device))
            cams = orbit_cameras(azimuths * n, elevation, distance, 1.0, device=device)
            rgb = model.render(mod, cams, size, size, n_samples=n_samples, stratified=False).rgb
            correct = torch.tensor([qi[p] for p in chunk], device=text.device).repeat_interleave(v)
            hit, prob = r_scores(scorer.image(rgb), text, correct, scorer.logit_scale)
            for j, p in enumerate(chunk):
                per_prompt.append({"prompt": p, "r_precision": float(hit[j * v:(j + 1) * v].mean()),
                                   "r_probability": float(prob[j * v:(j + 1) * v].mean())})
    finally:
        model.train(was_training)
    mean = lambda k: sum(r[k] for r in per_prompt) / max(1, len(per_prompt))  # noqa: E731
    return {"r_precision": mean("r_precision"), "r_probability": mean("r_probability"),
            "n_prompts": len(per_prompt), "n_queries": len(queries), "views": azimuths, "per_prompt": per_prompt}


def evaluate_splits(model, encoder, prompt_set, prompts: Sequence[str], queries: Sequence[str],
                    scorer: ClipScorer, ec: Any, device="cpu") -> list[dict[str, Any]]:
    """During training: the trained ``prompts`` ("seen", or "all" when the set has no split) and the
    set's held-out prompts ("unseen"), each scored against ``queries``; at most ``ec.max_prompts`` each."""
    splits = [("seen" if prompt_set.held_out or prompt_set.split == "seen" else "all", list(prompts))]
    if prompt_set.held_out:
        splits.append(("unseen", prompt_set.held_out))
    recs = []
    for name, split in splits:
        split = split[:ec.max_prompts] if ec.max_prompts else split
        res = evaluate_prompts(model, encoder, split, queries, scorer, ec, device)
        recs.append({"split": name, "r_precision": res["r_precision"], "r_probability": res["r_probability"],
                     "n_prompts": len(split), "n_queries": res["n_queries"]})
    return recs


def evaluate_model(model_path: str, prompts: Sequence[str], queries: Sequence[str] = (), clip: str = DEFAULT_CLIP,
                   device: str = "auto", ec: Any = None) -> dict[str, Any]:
    """Load a model folder and its text encoder, then :func:`evaluate_prompts`."""
    from backend.device import pick_device
    from backend.model import load_model
    from backend.text_encoder import encoder_for

    dev = pick_device(device)
    model, config = load_model(model_path, dev)
    # uncached prompts are encoded on the evaluation device in half precision (CPU, float32, without a GPU
    # or when it does not fit: backend.text_encoder.TextEncoder.model)
    encoder = encoder_for(model.config, device=dev)
    scorer = ClipScorer(clip, dev)
    res = evaluate_prompts(model, encoder, list(prompts), list(queries) or list(prompts), scorer, ec, dev)
    res["model"] = str(model_path)
    res["clip"] = clip
    res["frames_per_prompt"] = config.get("provenance", {}).get("frames_per_prompt")
    return res
