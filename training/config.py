"""Training configuration: one dataclass per concern, read from a small TOML (or YAML) file,
overridden with dotted ``key=value`` pairs (``run.steps=100 guidance.scale=50``). Unknown keys are
errors.
"""
from __future__ import annotations

import difflib
import json
import math
import tomllib
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from backend.cameras import CameraSampler
from backend.model import ModelConfig

from .guidance.config import GuidanceConfig
from .prompts import Split
from .regularizers import RegularizerConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: run.mode (training/modes/)
Mode = Literal["amortized", "interpolation", "per_prompt", "finetune"]


@dataclass
class RunConfig:
    mode: Mode = "amortized"
    steps: int = 10000  # optimizer steps (per prompt for per_prompt mode)
    batch_size: int = 8  # prompts (= rendered frames) per step and per process
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda[:N]
    lr: float = 1e-3  # the paper uses 1e-1 with its (JAX) parametrisation; 1e-3 is stable here
    beta1: float = 0.0  # App. B.1.10: no momentum converges fastest
    beta2: float = 0.999
    eps: float = 1e-15
    grad_clip_norm: float = 0.0  # clip the parameter-gradient norm (0 = off)
    max_nonfinite: int = 10  # this many non-finite losses in a row stop the run
    max_weight_growth: float = 1000.0  # the weights' norm growing this many times stops the run (0 = off)
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    preview_every: int = 1000
    eval_every: int = 0  # 0 = only at the end
    threads: int = 0  # CPU threads for torch (0 = torch's default; 1 is fastest on a busy, shared CPU)
    #: stop after this many seconds of training in this call (0 = no limit) and finish as if run.steps
    #: were reached (last checkpoint, model folder); --resume goes on later. For runs on a lent machine.
    time_limit_s: float = 0.0
    #: amortized / interpolation: start from this model's weights (a model, run or checkpoint folder
    #: of the same architecture), e.g. to go on training on a larger prompt set; fresh optimizer
    init: str = ""


@dataclass
class PromptsConfig:
    set: str = ""  # pig | animals | a .txt file | a prompt_library.json
    list: list[str] = field(default_factory=list)  # inline prompts (used when set is empty)
    key: str = ""  # the list in a prompt_library.json (e.g. "dreamfusion"; "" = all lists)
    split: Split = "all"  # the part trained on
    seen_fraction: float = 0.5
    split_seed: int = 0
    #: continuing on a grown prompt set: ``focus_share`` of every batch is drawn from the prompts that
    #: contain one of the ``focus`` phrases (e.g. "tree"), the rest from all prompts as usual
    focus: tuple[str, ...] = ()
    focus_share: float = 0.0


@dataclass
class RenderConfig:
    height: int = 64
    width: int = 64
    n_samples: int = 32  # App. B.1.9 (128 for interpolation runs)
    use_env: bool = True
    #: normals of lit renders: autograd (exact; a second derivative in the backward) | finite_difference
    normals: Literal["autograd", "finite_difference"] = "autograd"


@dataclass
class InterpolationConfig:
    """training/modes/interpolation.py (App. B.1.14)."""

    target: Literal["latent", "loss", "guidance"] = "latent"  # Eq. 8 | Eq. 10 | Eq. 11
    #: α ~ Beta(κ, κ); the schedule is [[until_step, κ], ...], the last κ holds afterwards
    kappa: list[list[float]] = field(default_factory=lambda: [[5000, 2.0], [1e12, 0.5]])
    pairs: list[list[str]] = field(default_factory=list)  # explicit pairs; empty = consecutive prompts
    #: draw each step's pairs at random from the whole prompt set (two different prompts) instead of
    #: a fixed list: chains between any keyframes of the set (what the add-on's users make)
    random_pairs: bool = False
    #: with random_pairs, who a prompt is paired with: "random" (any other prompt of the set) or
    #: "nearest" (one of its ``neighbours`` nearest prompts by text embedding: related prompts, as the
    #: paper's chains are; a blend of unrelated objects pulls both endpoints apart through the shared
    #: weights)
    partners: Literal["random", "nearest"] = "random"
    neighbours: int = 16
    #: this share of every batch is trained at α ∈ {0, 1} (a plain prompt of the pair): Beta(κ, κ)
    #: never draws an endpoint, and endpoints nobody trains drift
    endpoint_share: float = 0.0
    #: λ of an anchor term that keeps the pairs' prompts' modulations m(c) near the start's (the warm
    #: start of ``run.init``; no teacher calls): mean squared change over the start's mean square
    anchor: float = 0.0
    scale1: float = 100.0  # ω1 of Eq. 11
    scale2: float = 100.0  # ω2 of Eq. 11


@dataclass
class EvalConfig:
    clip_model: str = ""  # transformers CLIP folder or hub id; "" = no R-precision during training
    azimuths: list[float] = field(default_factory=lambda: [0.0, 90.0, 180.0, 270.0])
    elevation: float = 20.0
    distance: float = 2.5
    size: int = 64
    n_samples: int = 64
    distractors: str = ""  # a prompt file whose prompts join the query set
    max_prompts: int = 0  # evaluate at most this many prompts per split (0 = all)


@dataclass
class FinetuneConfig:
    """training/modes/finetune.py (App. B.1.13)."""

    init: str = ""  # the amortized model folder to start from
    prompt: str = ""  # the one prompt to finetune (default: the first of the prompt set)
    #: text = detach the mapping network only (it only embeds text; B.1.13): the offset δ, the NeRF MLP
    #: and the environment map train | all = freeze everything but δ
    freeze: Literal["text", "all"] = "text"


@dataclass
class TrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    camera: CameraSampler = field(default_factory=CameraSampler)
    interpolation: InterpolationConfig = field(default_factory=InterpolationConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    regularizers: RegularizerConfig = field(default_factory=RegularizerConfig)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))

    def validate(self) -> TrainConfig:
        """Checks what a config file cannot say by its types (and the choices of a config built in Python)."""
        for section in fields(self):
            obj = getattr(self, section.name)
            for name, typ in typing.get_type_hints(type(obj)).items():
                if typing.get_origin(typ) is Literal:
                    _check_choice(getattr(obj, name), typ, f"{section.name}.{name}")
        if self.run.time_limit_s < 0:
            raise ValueError("run.time_limit_s must be ≥ 0 (0 = no limit)")
        if not self.run.max_weight_growth >= 0:
            raise ValueError("run.max_weight_growth must be ≥ 0 (0 = off)")
        for k in ("steps", "batch_size"):
            if getattr(self.run, k) < 1:
                raise ValueError(f"run.{k} must be at least 1")
        if self.render.height < 4 or self.render.width < 4 or self.render.n_samples < 1:
            raise ValueError("render.height/width must be ≥ 4 and render.n_samples ≥ 1")
        for k in ("distortion", "grid_tv", "opacity"):
            if getattr(self.regularizers, k) < 0:
                raise ValueError(f"regularizers.{k} must be ≥ 0 (a weight), got {getattr(self.regularizers, k)}")
        if not 0 <= self.prompts.focus_share <= 1:
            raise ValueError(f"prompts.focus_share must be in [0, 1], got {self.prompts.focus_share}")
        if self.prompts.focus_share > 0 and not self.prompts.focus:
            raise ValueError("prompts.focus_share needs prompts.focus (the phrases of the prompts to draw it from)")
        ic = self.interpolation
        if not 0 <= ic.endpoint_share <= 1:
            raise ValueError(f"interpolation.endpoint_share must be in [0, 1], got {ic.endpoint_share}")
        if ic.neighbours < 1 or ic.anchor < 0:
            raise ValueError("interpolation.neighbours must be ≥ 1 and interpolation.anchor ≥ 0")
        if self.run.init and self.run.mode == "finetune":
            raise ValueError("run.init starts an amortized or interpolation run; a finetune starts from finetune.init")
        return self


# -- reading and overriding ----------------------------------------------------------------------

def _check_choice(value: Any, typ: Any, where: str) -> Any:
    choices = typing.get_args(typ)
    if value not in choices:
        raise ValueError(f"{where} {value!r}: choose from {', '.join(map(str, choices))}")
    return value


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is Literal:
        return _check_choice(value, typ, where)
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: expected float, got {value!r}") from None
    if typ is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if typ in (int, float, str, bool):
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ValueError(f"{where}: expected {typ.__name__}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(typ)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
        inner = args[0] if args else Any
        out = [_coerce(v, inner, where) for v in value]
        return tuple(out) if origin is tuple else out
    return value


def _set(section_obj: Any, key: str, value: Any, section: str) -> None:
    hints = typing.get_type_hints(type(section_obj))
    names = [f.name for f in fields(section_obj)]
    if key not in names:
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {section}.{close[0]}?)" if close else f" (known: {', '.join(names)})"
        raise ValueError(f"unknown config key {section}.{key}{hint}")
    setattr(section_obj, key, _coerce(value, hints[key], f"{section}.{key}"))


def apply_dict(config: TrainConfig, data: dict[str, Any], origin: str = "config") -> TrainConfig:
    sections = [f.name for f in fields(TrainConfig)]
    for section, values in data.items():
        if section not in sections:
            close = difflib.get_close_matches(section, sections, n=1)
            hint = f" (did you mean [{close[0]}]?)" if close else f" (sections: {', '.join(sections)})"
            raise ValueError(f"{origin}: unknown section [{section}]{hint}")
        if not isinstance(values, dict):
            raise ValueError(f"{origin}: [{section}] must be a table of keys")
        obj = getattr(config, section)
        for key, value in values.items():
            _set(obj, key, value, section)
    return config


def parse_value(text: str) -> Any:
    """A TOML value (``3``, ``1e-3``, ``true``, ``[1, 2]``, ``"x"``), else the raw string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"override {item!r}: expected section.key=value (e.g. run.steps=100)")
        section, _, name = key.strip().partition(".")
        apply_dict(config, {section: {name: parse_value(value.strip())}}, "override")
    return config


def preset_path(name: str) -> Path:
    p = CONFIG_DIR / f"{name}.toml"
    if not p.is_file():
        known = sorted(f.stem for f in CONFIG_DIR.glob("*.toml"))
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(known)}")
    return p


def read_config_file(path: Path) -> dict[str, Any]:
    """A config file as nested dicts: TOML (``.toml``) or YAML (``.yaml`` / ``.yml``, needs PyYAML)."""
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(f"{path}: YAML configs need PyYAML (pip install -e \".[train]\"), or use TOML") from None
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML ({e})") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of sections at the top level")
        return data
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: invalid TOML ({e})") from None


def load_config(path: str | Path | None = None, overrides: list[str] = (), preset: str | None = None,
                base: dict | None = None) -> TrainConfig:
    """Defaults ← ``base`` dict ← preset / TOML file ← ``key=value`` overrides, then validated."""
    config = TrainConfig()
    if base:
        apply_dict(config, base, "base")
    for p in [preset_path(preset) if preset else None, path]:
        if p is None:
            continue
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"config file {p} not found")
        apply_dict(config, read_config_file(p), str(p))
    apply_overrides(config, list(overrides))
    return config.validate()


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    return apply_dict(TrainConfig(), data).validate()


def to_toml(config: TrainConfig) -> str:
    """A TOML rendering of the full config (recorded in the run folder)."""
    lines = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")
