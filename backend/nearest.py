"""How far is a prompt from what the model was trained on?

An amortized model only knows its training prompts and what lies between them, so the add-on
warns when a prompt is far from all of them. Each prompt is summarised by the mask-mean of its
token embeddings (the text encoder's own sentence embedding for MiniLM), L2-normalised; the
distance between two prompts is the cosine distance ``1 − cos`` (0 = same, 1 = unrelated,
2 = opposite).

The "far" threshold is calibrated on the training prompts themselves: each one's distance to its
nearest *other* training prompt (leave-one-out) says how densely the model's prompt space was
covered; a prompt farther from every training prompt than ``margin`` × the 95th percentile of
those distances is "far". With fewer than :data:`MIN_CALIBRATION` prompts that is not meaningful
and a fixed :data:`DEFAULT_THRESHOLD` is used (``calibrated: false`` in the result). When the
model's training prompts are unknown, :meth:`PromptIndex.query` says so instead of guessing.

Embedding the shipped demo's 992 training prompts takes 40–60 s on a busy 2-core CPU (MiniLM), and
reading them back from the per-prompt embedding cache still 1–8 s; the index itself (vectors and
calibration) is therefore cached as one file beside the embeddings, keyed by the encoder and the
prompts (:func:`index_cache_file`): a warm server start indexes them in milliseconds.
"""
from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .fileio import atomic_write_bytes

#: cosine distance above which a prompt is "far" when the training set is too small to calibrate
DEFAULT_THRESHOLD = 0.5
MIN_CALIBRATION = 5
MARGIN = 1.25
_CHUNK = 256

EmbedFn = Callable[[Sequence[str]], Any]  # prompts -> TextEmbedding (tokens [B, L, D], mask [B, L])


def pooled(tokens, mask) -> np.ndarray:
    """Mask-mean-pooled, L2-normalised prompt vectors ``[B, D]`` float32 (torch or numpy inputs)."""
    t = np.asarray(tokens.detach().cpu().numpy() if hasattr(tokens, "detach") else tokens, np.float32)
    m = np.asarray(mask.detach().cpu().numpy() if hasattr(mask, "detach") else mask, np.float32)
    v = (t * m[..., None]).sum(1) / np.maximum(m.sum(1, keepdims=True), 1.0)
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def training_prompts(config: dict[str, Any]) -> list[str] | None:
    """The training prompts recorded in a model folder's config, or None when unknown."""
    prompts = (config.get("provenance") or {}).get("prompts") if isinstance(config, dict) else None
    if not prompts or not isinstance(prompts, (list, tuple)):
        return None
    out = [" ".join(str(p).split()) for p in prompts]
    return list(dict.fromkeys(p for p in out if p)) or None


def index_cache_file(cache_dir: str | os.PathLike, encoder_id: str, max_length: int, prompts: Sequence[str]) -> Path:
    """Where the index of ``prompts`` under that text encoder is cached (``prompt_index/<sha256>.npz``)."""
    h = hashlib.sha256(f"{encoder_id}\0{max_length}\0".encode())
    h.update("\n".join(prompts).encode("utf-8"))
    return Path(cache_dir) / "prompt_index" / f"{h.hexdigest()[:32]}.npz"


def _load_index(path: Path, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path) as z:
            vectors, nn = np.asarray(z["vectors"], np.float32), np.asarray(z["nn_distances"], np.float32)
    except Exception:  # missing, partial or foreign: just compute it again
        return None
    if vectors.ndim != 2 or len(vectors) != n or nn.shape != (n,) or not np.isfinite(vectors).all():
        return None
    return vectors, nn


def _save_index(path: Path, vectors: np.ndarray, nn: np.ndarray) -> None:
    try:
        buf = io.BytesIO()
        np.savez(buf, vectors=vectors, nn_distances=nn)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    except OSError:
        pass  # a read-only cache only costs time


class PromptIndex:
    """Pooled embeddings of the training prompts and the calibrated "far" threshold.

    ``cache_file``: where the vectors are kept between runs (:func:`index_cache_file`), or None."""

    def __init__(self, embed: EmbedFn, prompts: Sequence[str] | None, margin: float = MARGIN,
                 cache_file: str | os.PathLike | None = None) -> None:
        self.prompts = list(prompts) if prompts else []
        self.margin = float(margin)
        self._embed = embed
        self.vectors = np.zeros((0, 0), np.float32)
        self.nn_distances = np.zeros(0, np.float32)
        self.from_cache = False
        if self.prompts:
            cached = _load_index(Path(cache_file), len(self.prompts)) if cache_file else None
            if cached is not None:
                self.vectors, self.nn_distances = cached
                self.from_cache = True
            else:
                self.vectors = np.concatenate([self._pool(self.prompts[s:s + _CHUNK])
                                               for s in range(0, len(self.prompts), _CHUNK)])
                self.nn_distances = self._leave_one_out()
                if cache_file:
                    _save_index(Path(cache_file), self.vectors, self.nn_distances)
        self.calibrated = len(self.prompts) >= MIN_CALIBRATION
        if self.calibrated:
            self.threshold = min(1.0, max(0.05, margin * float(np.quantile(self.nn_distances, 0.95))))
        else:
            self.threshold = DEFAULT_THRESHOLD

    @classmethod
    def from_pipeline(cls, pipeline, margin: float = MARGIN) -> PromptIndex:
        prompts = training_prompts(pipeline.config)
        enc = pipeline.encoder
        cache = (index_cache_file(enc.cache_dir, enc.encoder_id, enc.max_length, prompts)
                 if prompts and getattr(enc, "cache_dir", None) else None)
        return cls(pipeline.embed, prompts, margin, cache)

    def _pool(self, prompts: Sequence[str]) -> np.ndarray:
        emb = self._embed(list(prompts))
        return pooled(emb.tokens, emb.mask)

    def _leave_one_out(self) -> np.ndarray:
        n = len(self.vectors)
        if n < 2:
            return np.zeros(0, np.float32)
        out = np.empty(n, np.float32)
        for s in range(0, n, _CHUNK):  # chunked: n × n never materialised for big prompt sets
            sim = self.vectors[s:s + _CHUNK] @ self.vectors.T
            sim[np.arange(len(sim)), np.arange(s, s + len(sim))] = -np.inf
            out[s:s + len(sim)] = 1.0 - sim.max(1)
        return np.clip(out, 0.0, 2.0)

    def query(self, prompt: str, k: int = 5) -> dict[str, Any]:
        """``{"neighbors": [{"prompt", "distance"}], "distance", "far", "threshold", "calibrated",
        "known_prompts", "message"}``; ``far`` is None when the training prompts are unknown."""
        k = max(1, int(k))
        if not self.prompts:
            return {"neighbors": [], "distance": None, "far": None, "threshold": None, "calibrated": False,
                    "known_prompts": 0,
                    "message": "this model does not list its training prompts, so how close a prompt is to "
                               "what it knows cannot be told"}
        q = self._pool([prompt])[0]
        dist = np.clip(1.0 - self.vectors @ q, 0.0, 2.0)
        order = np.argsort(dist, kind="stable")[:k]
        best = float(dist[order[0]])
        far = best > self.threshold
        msg = (f"far from the {len(self.prompts)} training prompts (nearest: {self.prompts[order[0]]!r}); "
               "expect a rough result" if far else "close to the training prompts")
        return {"neighbors": [{"prompt": self.prompts[i], "distance": round(float(dist[i]), 6)} for i in order],
                "distance": round(best, 6), "far": bool(far), "threshold": round(self.threshold, 6),
                "calibrated": self.calibrated, "known_prompts": len(self.prompts), "message": msg}
