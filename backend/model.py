"""The ATT3D model: mapping network → point encoder → NeRF MLP, plus the environment map, and
model folders (``config.json`` + ``model.safetensors``, no pickles).
"""
from __future__ import annotations

import json
import math
import os
import types
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Union, cast, get_args, get_origin, get_type_hints

import torch
from torch import nn

from .environment_map import EnvironmentMap
from .fileio import write_folder_atomically
from .mapping_network import MAPPINGS, Modulation, grid_target_rms
from .nerf_mlp import NeRFMLP
from .point_encoder import PointEncoder

FORMAT = "att3d-model"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHIPPED_DIR = Path(__file__).resolve().parent / "models"


class ModelFolderError(ValueError):
    """A model folder is missing, truncated or does not match its config."""


@dataclass
class ModelConfig:
    # text encoder (the mapping network flattens [max_length, token_dim] token embeddings)
    text_encoder: str = "minilm"
    max_length: int = 32
    token_dim: int = 384
    clip_skip: int = 0  # CLIP encoders: hidden states this many layers before the last (diffusers' clip_skip)
    # mapping network
    mapping: str = "hyper"  # hyper | concat | attention
    v_dim: int = 32
    #: gain on the hypernetwork's grid output. 0 = auto: √(P/v) when built, then set by training so that
    #: the grid starts at a readable RMS (backend/mapping_network.py); a model folder stores the number
    grid_scale: float = 0.0
    # point encoder
    resolutions: list[int] = field(default_factory=lambda: [9, 14, 22, 36, 58])
    features: int = 4
    hash_resolutions: list[int] = field(default_factory=list)
    hash_table_log2: int = 14
    bound: float = 1.0
    #: where the point encoder's hash levels run: auto = tiny-cuda-nn when it imports and the model is on
    #: CUDA, else PyTorch | torch | tcnn (backend/point_encoder_tcnn.py); the weights are the same either way
    backend: str = "auto"
    # NeRF MLP and density bias 10(1 − 2‖x‖)
    hidden: int = 32
    density_bias_scale: float = 10.0
    density_bias_radius: float = 0.5
    # rendering and extraction
    sphere_radius: float = 2.0
    env_freqs: int = 8
    iso_density: float = 5.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """From JSON/TOML data, checked against the fields' types (ValueError naming the field)."""
        cls.check(d)
        return cls(**d)

    @classmethod
    def check(cls, d: Any, where: str = "architecture") -> None:
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object, got {_json_type(d)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown architecture keys: {', '.join(unknown)}")
        hints = get_type_hints(cls)
        for key, value in d.items():
            check_type(value, hints[key], f"{where}.{key}")


# -- the config schema: JSON values against type hints ---------------------------------------------

def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, (int, float)):
        return f"the number {v!r}"
    if isinstance(v, str):
        return f"the string {v[:40]!r}"
    return "an array" if isinstance(v, list) else "an object" if isinstance(v, dict) else type(v).__name__


def check_type(value: Any, hint: Any, where: str) -> None:
    """ValueError ``"<where>: expected …, got …"`` unless ``value`` (parsed JSON) fits ``hint``: ``str``,
    ``int`` (not a boolean), ``float`` (a finite number, not a boolean), ``bool``, ``list[T]``,
    ``T | None``, ``Literal[...]``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return
        hint = next(a for a in args if a is not type(None))
        origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where}: expected one of {', '.join(map(repr, args))}, got {_json_type(value)}")
        return
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where}: expected an array, got {_json_type(value)}")
        for i, item in enumerate(value):
            check_type(item, args[0] if args else Any, f"{where}[{i}]")
        return
    ok = {str: lambda v: isinstance(v, str),
          bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
          }.get(hint)
    if ok is not None and not ok(value):
        want = {str: "a string", bool: "true or false", int: "an integer", float: "a finite number"}[hint]
        raise ValueError(f"{where}: expected {want}, got {_json_type(value)}")


class ATT3D(nn.Module):
    frozen: bool = False  # set by freeze_spectral_norm: inference only, no longer savable

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.mapping not in MAPPINGS:
            raise ValueError(f"unknown mapping {config.mapping!r}; choose from {sorted(MAPPINGS)}")
        out_dim = config.features * (len(config.resolutions) + len(config.hash_resolutions))
        # the concatenation variant's shared grid starts at the hypernetworks' RMS: U(±a) has RMS a/√3
        self.point_encoder = PointEncoder(config.resolutions, config.features, config.bound,
                                          config.hash_resolutions, config.hash_table_log2,
                                          shared=config.mapping == "concat",
                                          init_scale=math.sqrt(3) * grid_target_rms(out_dim), backend=config.backend)
        self.mapping = MAPPINGS[config.mapping](config.max_length, config.token_dim,
                                                self.point_encoder.n_params, config.v_dim, config.grid_scale,
                                                sizes=self.point_encoder.sizes)
        self.config = replace(config, grid_scale=float(cast(Any, self.mapping).grid_scale))  # auto (0) resolved
        in_dim = self.point_encoder.out_dim + (config.v_dim if config.mapping == "concat" else 0)
        self.nerf = NeRFMLP(in_dim, config.hidden, config.density_bias_scale, config.density_bias_radius)
        self.env = EnvironmentMap(config.v_dim, config.env_freqs)

    def calibrate_grid(self, tokens: torch.Tensor, mask: torch.Tensor | None = None,
                       target: float | None = None) -> float:
        """Set ``grid_scale`` (and the config's) so that these prompts' grid values start at RMS
        ``target`` (default: unit-norm point features, ``1/√features_out``); returns the gain."""
        from .mapping_network import calibrate_grid_scale

        target = grid_target_rms(self.point_encoder.out_dim) if target is None else target
        gain = calibrate_grid_scale(self.mapping, tokens, mask, target)
        self.config = replace(self.config, grid_scale=gain)
        return gain

    # -- the three stages ----------------------------------------------------------------------
    def modulate(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> Modulation:
        """``m(c)``: token embeddings ``[B, L, D]`` → per-prompt grid parameters and ``v``."""
        if tokens.shape[1:] != (self.config.max_length, self.config.token_dim):
            raise ValueError(f"token embeddings of shape {tuple(tokens.shape[1:])}, model expects "
                             f"({self.config.max_length}, {self.config.token_dim}): wrong text encoder?")
        return self.mapping(tokens, mask)

    def features(self, mod: Modulation, points: torch.Tensor) -> torch.Tensor:
        feats = self.point_encoder(mod.params, points)
        if self.config.mapping == "concat":
            feats = torch.cat([feats, mod.v[:, None, :].expand(-1, feats.shape[1], -1)], dim=-1)
        return feats

    def field(self, mod: Modulation, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density ``[B, N]`` and albedo ``[B, N, 3]`` at ``points`` ``[B, N, 3]``."""
        return self.nerf(self.features(mod, points), points)

    def density(self, mod: Modulation, points: torch.Tensor) -> torch.Tensor:
        return self.nerf.density_only(self.features(mod, points), points)

    def background(self, mod: Modulation, directions: torch.Tensor) -> torch.Tensor:
        return self.env(directions, mod.v)

    def render(self, mod: Modulation, cams, height: int = 64, width: int = 64, n_samples: int = 32,
               stratified: bool = True, use_env: bool = True, **kwargs):
        from .renderer import render

        return render(lambda p: self.field(mod, p), cams, height, width, radius=self.config.sphere_radius,
                      n_samples=n_samples, stratified=stratified,
                      background=(lambda d: self.background(mod, d)) if use_env else None, **kwargs)


def freeze_spectral_norm(model: ATT3D) -> ATT3D:
    """Bake ``W / σ(W)`` into plain weights for inference.

    Evaluating a spectral-normed linear re-materialises the normalised weight on every call (a
    128 MB copy for the paper-size hypernetwork); inference never changes it, so compute it once.
    The model can still be used, but no longer trained or saved in the folder format.
    """
    from torch.nn.utils import parametrize

    with torch.no_grad():
        for module in model.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    model.frozen = True
    return model


def build_model(config: ModelConfig, seed: int = 0) -> ATT3D:
    """A freshly initialised model, deterministic for a seed (spectral norms estimated at build)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ATT3D(config)


# -- model folders -----------------------------------------------------------------------------

def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A folder path, or the name of a shipped model (``demo``)."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    shipped = SHIPPED_DIR / str(name_or_path)
    if "/" not in str(name_or_path) and shipped.is_dir():
        return shipped
    known = sorted(d.name for d in SHIPPED_DIR.iterdir() if d.is_dir()) if SHIPPED_DIR.is_dir() else []
    hint = f" (shipped models: {', '.join(known)})" if known else ""
    raise ModelFolderError(f"model {str(name_or_path)!r} not found: not a folder and not a shipped model name{hint}")


def save_model(model: ATT3D, folder: str | os.PathLike, provenance: dict[str, Any] | None = None,
               dtype: torch.dtype = torch.float32, extra_files: dict[str, str] | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` atomically (a temp folder, then rename);
    ``extra_files`` (name → text, e.g. a model card) go into the same folder in the same swap."""
    from safetensors.torch import save_file

    if model.frozen:  # its weights lost their spectral-norm parametrization: load_model could not read them
        raise ValueError("a model frozen for inference (freeze_spectral_norm) cannot be saved as a model folder")

    def write(tmp: Path) -> None:
        state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
                 for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": FORMAT})
        config = {"format": FORMAT, "format_version": FORMAT_VERSION,
                  "architecture": asdict(model.config), "provenance": provenance or {}}
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")

    return write_folder_atomically(folder, write)


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a model folder, checked whole against the schema (:func:`check_config`)."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing (a model folder holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFolderError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ModelFolderError(f"{path}: not valid JSON (nested too deeply)") from None
    try:
        check_config(config)
    except ValueError as e:
        raise ModelFolderError(f"{path}: {e}") from None
    config.setdefault("provenance", {})
    return config


def check_config(config: Any) -> None:
    """The schema of ``config.json``, checked once at load: ValueError naming the first bad field.

    ``format`` is ``"att3d-model"``; ``format_version`` an integer this version reads; ``architecture``
    an object whose keys and value types are :class:`ModelConfig`'s; ``provenance`` (optional) an
    object whose ``name`` is a string and ``prompts`` an array of strings. Text must be valid
    Unicode (JSON's ``"\\ud800"`` is not)."""
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"not an ATT3D model config (expected \"format\": \"{FORMAT}\")")
    check_type(config.get("format_version"), int, "format_version")
    version = int(config["format_version"])
    if version > FORMAT_VERSION:
        raise ValueError(f"format version {version} is newer than this att3d supports ({FORMAT_VERSION}); "
                         "upgrade att3d")
    if version < 1:
        raise ValueError(f"format_version: expected 1–{FORMAT_VERSION}, got {version}")
    if "architecture" not in config:
        raise ValueError("missing \"architecture\" section")
    ModelConfig.check(config["architecture"])
    prov = config.get("provenance", {})
    if not isinstance(prov, dict):
        raise ValueError(f"provenance: expected an object, got {_json_type(prov)}")
    if "name" in prov:
        check_type(prov["name"], str, "provenance.name")
    if "prompts" in prov:
        check_type(prov["prompts"], list[str], "provenance.prompts")
    try:
        json.dumps(config, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        bad = ord(e.object[e.start])
        raise ValueError(f"holds text that is not valid Unicode (an unpaired surrogate U+{bad:04X})") from None


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[ATT3D, dict[str, Any]]:
    """Load a model folder; returns the model (eval mode, float32) and its full config dict."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_model_path(name_or_path)
    config = read_config(folder)
    try:
        arch = ModelConfig.from_dict(config["architecture"])
        if arch.backend == "tcnn":  # trained with tiny-cuda-nn: the same weights run wherever it is missing
            arch = replace(arch, backend="auto")
        model = ATT3D(arch)
    except (TypeError, ValueError, RuntimeError) as e:  # types are checked; values can still be impossible
        raise ModelFolderError(f"{folder / CONFIG_NAME}: bad architecture: {e}") from None
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelFolderError(f"{weights}: missing")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFolderError(f"{weights}: unreadable or truncated ({e})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:3]}{' …' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:3]}{' …' if len(unexpected) > 3 else ''}")
        raise ModelFolderError(f"{weights}: does not match {CONFIG_NAME}: {'; '.join(parts)}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ModelFolderError(f"{weights}: tensor {k} has shape {tuple(state[k].shape)}, "
                                   f"{CONFIG_NAME} implies {tuple(v.shape)}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.to(device).eval(), config
