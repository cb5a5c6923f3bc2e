"""The operation layer: every operation on a loaded model is validated and sequenced here, once, for
every caller: ``att3d generate`` / ``att3d interpolate`` (:mod:`backend.cli`), the service's and the
studio's jobs, the embedded client (the add-on, in-process) and the benches.

As a diffusers pipeline's ``check_inputs`` and numbered steps:

* **a request per operation** (:class:`Generate`, :class:`Blend`, :class:`Chain`, :class:`Nearest`)
  checks its inputs when it is made: the backend's one check of a prompt, a resolution, a face
  count ... (the rules are the wire's :mod:`blender_att3d.wire.limits`; ``tests/test_boundaries.py``
  refuses ``check_prompt`` / ``check_resolution`` anywhere else in ``backend/``). A request that
  exists is valid: the service's schemas make one at the door (a bad one is a 422 at once) and the
  worker runs it; the CLI makes one before it loads the model.
* **:meth:`Engine.run`** runs a request's steps (generate: 1. encode the prompt, 2. the mapping
  network's grid, 3. extract, colour, bake), reporting through one callback
  ``progress(fraction, message)`` (True stops it: :class:`~backend.progress.CancelledError`) that
  the CLI turns into its bar and the service into the job's progress.
* **results are the wire's types** (:class:`MeshData`, :class:`SequenceData`, :class:`Neighbors`,
  :class:`ServerInfo`): every transport gives byte-identical meshes for the same request.

Writing a result out is the caller's: a file (:mod:`backend.export`, the CLI) or a payload (the
service). No web framework here: the embedded client imports this module inside Blender.
"""
from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from blender_att3d.wire import limits
from blender_att3d.wire.limits import (
    DEFAULT_RESOLUTION,
    MAX_CHAIN_MESHES,
    MAX_KEYFRAMES,
    MAX_NEIGHBORS,
    TEXTURE_SIZE,
    check_max_states,
    check_prompt,
    check_resolution,
    check_texture_size,
)
from blender_att3d.wire.limits import check_simplify as check_simplify_range
from blender_att3d.wire.options import DEFAULT_SMOOTH, check_extract, check_mc
from blender_att3d.wire.routes import API_VERSION
from blender_att3d.wire.types import MeshData, Neighbors, ProgressFn, SequenceData, ServerInfo

from .inference import Pipeline
from .mesh import check_smooth
from .progress import CancelledError
from .texture import check_unwrap

if TYPE_CHECKING:
    from .mapping_network import Modulation
    from .nearest import PromptIndex


def att3d_version() -> str:
    try:
        from importlib.metadata import version

        return version("att3d")
    except Exception:
        return "unknown"


def features() -> dict[str, bool]:
    return {"texture": importlib.util.find_spec("xatlas") is not None,
            "simplify": importlib.util.find_spec("fast_simplification") is not None,
            "pymcubes": importlib.util.find_spec("mcubes") is not None}


# -- the checks (each request calls them once, when it is made) ------------------------------------

def _is_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float, np.number)) and bool(np.isfinite(v))


def _is_int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer))


def check_simplify(simplify: Any) -> int | None:
    simplify = check_simplify_range(simplify)
    if simplify is None:
        return None
    if not features()["simplify"]:
        raise ValueError("this backend cannot simplify meshes: install 'att3d[mesh]' where it runs")
    return int(simplify)


def check_texture(texture: Any) -> bool | int:
    """A texture bake: ``False`` (or None) none, ``True`` the service's size, or a size in pixels (the
    CLI's ``--texture N``). The bake simplifies first, so it needs ``att3d[mesh]``."""
    if texture is None or texture is False:
        return False
    if texture is True:
        size = TEXTURE_SIZE
    elif _is_int(texture):
        size = check_texture_size(texture)
    else:
        raise ValueError(f"texture must be true or false, got {texture!r}")
    if not (features()["texture"] and features()["simplify"]):
        raise ValueError("this backend cannot bake textures: install 'att3d[mesh]' where it runs")
    return size


def check_mc_available(mc: Any) -> str:
    mc = check_mc(mc)
    if mc == "pymcubes" and not features()["pymcubes"]:
        raise ValueError("this backend has no PyMCubes: install 'att3d[mesh]' where it runs, or use mc 'skimage'")
    return mc


def check_alpha(alpha: Any) -> float:
    if not _is_number(alpha) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def chain_length(n_keyframes: int, steps: int) -> int:
    return (n_keyframes - 1) * steps + 1


def check_keyframes(keyframes: Any, steps: Any) -> tuple[tuple[tuple[float, str], ...], int]:
    """((position, prompt) pairs, steps) of a chain, or a ValueError that says what is wrong."""
    try:
        kf = list(keyframes)
    except TypeError:
        raise ValueError("keyframes must be a list of (position, prompt) pairs") from None
    if not 2 <= len(kf) <= MAX_KEYFRAMES:
        raise ValueError(f"a chain needs 2–{MAX_KEYFRAMES} keyframes, got {len(kf)}")
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    n = chain_length(len(kf), int(steps))
    if n > MAX_CHAIN_MESHES:
        raise ValueError(f"that chain has {n} meshes ({len(kf)} keyframes, {steps} steps between each); "
                         f"the limit is {MAX_CHAIN_MESHES}: use fewer steps or keyframes")
    out = []
    for i, item in enumerate(kf):
        try:
            pos, prompt = item
        except (TypeError, ValueError):
            raise ValueError(f"keyframe {i} must be a (position, prompt) pair") from None
        if not _is_number(pos):
            raise ValueError(f"keyframe {i}: the position must be a finite number, got {pos!r}")
        try:
            out.append((float(pos), check_prompt(prompt)))
        except ValueError as e:
            raise ValueError(f"keyframe {i}: {e}") from None
    if any(b[0] <= a[0] for a, b in zip(out, out[1:])):
        raise ValueError("keyframe positions must be strictly increasing")
    return tuple(out), int(steps)


def check_k(k: Any) -> int:
    if not _is_int(k) or not 1 <= k <= MAX_NEIGHBORS:
        raise ValueError(f"k must be an integer in 1–{MAX_NEIGHBORS}, got {k!r}")
    return int(k)


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{name} must be true or false, got {v!r}")
    return v


# -- requests: valid once made ----------------------------------------------------------------------

class InvalidInput(ValueError):
    """An input a request cannot use; ``field`` names it (the CLI's flag, the service's JSON field)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class _Request:
    def _check(self, **checks: Callable[[Any], Any]) -> None:
        """Each field through its check, normalised in place (a frozen dataclass setting its own fields)."""
        for name, check in checks.items():
            try:
                value = check(getattr(self, name))
            except InvalidInput:
                raise
            except ValueError as e:
                raise InvalidInput(name, str(e)) from None
            object.__setattr__(self, name, value)


@dataclass(frozen=True)
class Generate(_Request):
    """A mesh from a prompt. ``texture``: a baked texture's size in pixels (``True``: the service's
    1024; ``False``: vertex colours only); ``mc``: the marching cubes; ``extract``: ``auto`` / ``sparse`` /
    ``dense``; ``unwrap``: ``box`` / ``xatlas``; ``smooth``: Taubin iterations (0: off; by default
    :data:`~blender_att3d.wire.options.DEFAULT_SMOOTH`, what the add-on, the batch and the service give artists)."""

    prompt: str
    resolution: int = DEFAULT_RESOLUTION
    simplify: int | None = None
    texture: bool | int = False
    mc: str = "auto"
    extract: str = "auto"
    unwrap: str = "box"
    smooth: int = DEFAULT_SMOOTH

    def __post_init__(self) -> None:
        self._check(prompt=check_prompt, resolution=check_resolution, simplify=check_simplify, texture=check_texture,
                    mc=check_mc_available, extract=check_extract, unwrap=check_unwrap, smooth=check_smooth)


@dataclass(frozen=True)
class Blend(_Request):
    """A mesh between two prompts: ``m((1 − α) c_a + α c_b)``, smoothed like :class:`Generate` (so its ends
    are the generated objects)."""

    prompt_a: str
    prompt_b: str
    alpha: float
    resolution: int = DEFAULT_RESOLUTION
    simplify: int | None = None
    mc: str = "auto"
    smooth: int = DEFAULT_SMOOTH

    def __post_init__(self) -> None:
        self._check(prompt_a=check_prompt, prompt_b=check_prompt, alpha=check_alpha, resolution=check_resolution,
                    simplify=check_simplify, mc=check_mc_available, smooth=check_smooth)


@dataclass(frozen=True)
class Chain(_Request):
    """Meshes along keyframe prompts: ``keyframes`` (position, prompt) pairs, ``steps`` meshes per
    segment; ``consistent``: keyframe pieces for shape keys, else one independent mesh per step;
    ``max_states``: a consistent chain's stored chain positions per segment at most (states in
    between go where the surface moves; ``None``: ``2 · steps``; at least ``steps``)."""

    keyframes: tuple[tuple[float, str], ...]
    steps: int = 4
    resolution: int = DEFAULT_RESOLUTION
    consistent: bool = True
    max_states: int | None = None

    def __post_init__(self) -> None:
        try:
            keyframes, steps = check_keyframes(self.keyframes, self.steps)
        except ValueError as e:
            raise InvalidInput("steps" if str(e).startswith(("steps", "that chain")) else "keyframes", str(e)) \
                from None
        object.__setattr__(self, "keyframes", keyframes)
        object.__setattr__(self, "steps", steps)
        self._check(resolution=check_resolution, consistent=lambda v: _bool("consistent", v),
                    max_states=lambda v: check_max_states(v, steps))

    @property
    def positions(self) -> list[float]:
        return [p for p, _ in self.keyframes]

    @property
    def prompts(self) -> list[str]:
        return [q for _, q in self.keyframes]


@dataclass(frozen=True)
class Nearest(_Request):
    """How close ``prompt`` is to the training prompts, with its ``k`` nearest."""

    prompt: str
    k: int = 5

    def __post_init__(self) -> None:
        self._check(prompt=check_prompt, k=check_k)


Request = Generate | Blend | Chain | Nearest
#: the requests by the name the service's routes and jobs use
REQUESTS: dict[str, type[Generate] | type[Blend] | type[Chain] | type[Nearest]] = {
    "generate": Generate, "blend": Blend, "chain": Chain, "nearest": Nearest}


# -- conversions ---------------------------------------------------------------------------------

def _json_safe(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return str(v)


#: how many of the training prompts ``info()`` quotes
N_EXAMPLES = 5


def examples(prompts: Sequence[str], n: int = N_EXAMPLES) -> list[str]:
    """``n`` prompts spread evenly over the list (the first ones alone are often all alike)."""
    if len(prompts) <= n:
        return list(prompts)
    return [prompts[(i * len(prompts)) // n] for i in range(n)]


#: generate's numbered steps: where each starts in the job's progress, and the message the add-on
#: shows with the time so far (step 3 reports its own fractions and messages within [0.3, 1])
GENERATE_STEPS = ((0.0, "encoding the prompt"), (0.15, "building the grid"), (0.3, "extracting the mesh"))
BLEND_STEPS = ((0.0, "encoding the prompts and building the grid"), (0.3, "extracting the mesh"))


def _report(progress: ProgressFn | None, frac: float, msg: str) -> None:
    """A progress report and a cancel point."""
    if progress is not None and progress(frac, msg):
        raise CancelledError("cancelled")


def _rest(progress: ProgressFn | None, start: float) -> ProgressFn | None:
    """The rest of a job's progress, [start, 1], for a step that reports its own fractions."""
    if progress is None:
        return None
    return lambda frac, msg: progress(start + (1 - start) * frac, msg)


class Engine:
    """A :class:`~backend.inference.Pipeline` plus the training-prompt index; not thread-safe: one caller
    at a time (the service's worker thread, a studio replica's, the embedded client's)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._index: PromptIndex | None = None

    @classmethod
    def load(cls, model: str = "demo", device: str = "auto", cache_dir: str | None = None) -> Engine:
        return cls(Pipeline(model, device=device, cache_dir=cache_dir))

    def warm(self, on_stage: Callable[[str], Any] | None = None) -> None:
        """Load the text encoder and index the training prompts now rather than on the first request;
        ``on_stage(name)`` hears each of the two (the server names them to the client)."""
        if on_stage is not None:
            on_stage("loading the text encoder")
        self.pipeline.encoder.load()
        self.pipeline.embed("a warm-up prompt")
        if on_stage is not None:
            on_stage("indexing the training prompts")
        _ = self.index

    @property
    def index(self) -> PromptIndex:
        if self._index is None:
            from .nearest import PromptIndex

            self._index = PromptIndex.from_pipeline(self.pipeline)
        return self._index

    def info(self) -> ServerInfo:
        import torch

        from .nearest import training_prompts

        prompts = training_prompts(self.pipeline.config) or []
        return ServerInfo(model=self.pipeline.model_id, text_encoder=self.pipeline.encoder.encoder_id,
                          device=str(self.pipeline.device), version=att3d_version(), api=API_VERSION,
                          versions={"att3d": att3d_version(), "torch": torch.__version__, "numpy": np.__version__,
                                    "python": platform.python_version(), "api": API_VERSION},
                          training_prompts=len(prompts), training_prompts_known=bool(prompts),
                          training_prompt_examples=examples(prompts), features=features(), limits=limits.Limits())

    # -- the one entry point --------------------------------------------------------------------------
    def run(self, request: Request, progress: ProgressFn | None = None,
            modulation: Modulation | None = None) -> Any:
        """Run a request (already valid: it checked itself when made). ``modulation``: a
        :class:`Generate`'s, already computed (:meth:`modulations`, a studio replica batching)."""
        if isinstance(request, Generate):
            return self._generate(request, progress, modulation)
        if isinstance(request, Blend):
            return self._blend(request, progress)
        if isinstance(request, Chain):
            return self._chain(request, progress)
        if isinstance(request, Nearest):
            return self._nearest(request)
        raise TypeError(f"not a request of the engine: {type(request).__name__}")

    # -- keyword forms (the embedded client, scripts, tests): make the request, run it ------------------
    def generate(self, prompt: str, resolution: int = DEFAULT_RESOLUTION, simplify: int | None = None,
                 texture: bool | int = False, mc: str = "auto", progress: ProgressFn | None = None,
                 modulation: Modulation | None = None, *,
                 extract: str = "auto", unwrap: str = "box", smooth: int = DEFAULT_SMOOTH) -> MeshData:
        return self._generate(Generate(prompt, resolution, simplify, texture, mc, extract, unwrap, smooth), progress,
                              modulation)

    def blend(self, prompt_a: str, prompt_b: str, alpha: float, resolution: int = DEFAULT_RESOLUTION,
              simplify: int | None = None, mc: str = "auto", progress: ProgressFn | None = None, *,
              smooth: int = DEFAULT_SMOOTH) -> MeshData:
        return self._blend(Blend(prompt_a, prompt_b, alpha, resolution, simplify, mc, smooth), progress)

    def chain(self, keyframes: Sequence[tuple[float, str]], steps: int = 4, resolution: int = DEFAULT_RESOLUTION,
              consistent: bool = True, progress: ProgressFn | None = None,
              max_states: int | None = None) -> SequenceData:
        """``max_states``: see :class:`Chain`. The result's meta says how many states were added in
        between (``inserted_states``) and the largest vertex move between neighbouring stored states
        (``max_move_voxels``, in voxels of the resolution)."""
        return self._chain(Chain(keyframes, steps, resolution, consistent, max_states),  # type: ignore[arg-type]
                           progress)

    def nearest(self, prompt: str, k: int = 5) -> Neighbors:
        return self._nearest(Nearest(prompt, k))

    # -- the operations -------------------------------------------------------------------------------
    def modulations(self, requests: Sequence[Generate]) -> list[Modulation]:
        """The mapping network's output for several requests in one pass (a server batching requests that
        arrive together); each equals step 2 of :meth:`run` to float rounding, not bit for bit."""
        import torch

        embs = [self.pipeline.embed(r.prompt) for r in requests]
        width = max(e.tokens.shape[1] for e in embs)
        if any(e.tokens.shape[1] != width for e in embs):  # encoders pad to a fixed length; if not, one by one
            return [self.pipeline.modulate(e) for e in embs]
        batch = type(embs[0])(torch.cat([e.tokens for e in embs]), torch.cat([e.mask for e in embs]))
        mod = self.pipeline.modulate(batch)
        return [mod.select([i]) for i in range(len(embs))]

    def _generate(self, r: Generate, progress: ProgressFn | None, modulation: Modulation | None) -> MeshData:
        (encode_at, encode), (grid_at, grid), (mesh_at, mesh_msg) = GENERATE_STEPS
        _report(progress, encode_at, encode)  # 1. the prompt's tokens (cached on disk)
        if modulation is None:
            emb = self.pipeline.embed(r.prompt)
            _report(progress, grid_at, grid)  # 2. the mapping network: the grid's parameters
            modulation = self.pipeline.modulate(emb)
        _report(progress, mesh_at, mesh_msg)  # 3. surface, colours, simplification, texture
        mesh = self.pipeline.mesh(modulation, r.resolution, r.simplify, r.texture, extract=r.extract, mc=r.mc,
                                  progress=_rest(progress, mesh_at), unwrap=r.unwrap, smooth=r.smooth)
        mesh.meta = _json_safe({**mesh.meta, "prompt": r.prompt, "model": self.pipeline.model_id})
        _report(progress, 1.0, "done")
        return mesh

    def _blend(self, r: Blend, progress: ProgressFn | None) -> MeshData:
        (grid_at, grid), (mesh_at, mesh_msg) = BLEND_STEPS
        _report(progress, grid_at, grid)  # 1. both prompts' tokens, mixed, through the mapping network
        mod = self.pipeline.blend_modulation(r.prompt_a, r.prompt_b, r.alpha)
        _report(progress, mesh_at, mesh_msg)  # 2. the mesh
        mesh = self.pipeline.mesh(mod, r.resolution, r.simplify, mc=r.mc, progress=_rest(progress, mesh_at),
                                  smooth=r.smooth)
        mesh.meta = _json_safe({**mesh.meta, "prompt": f"{r.prompt_a} → {r.prompt_b} @ {r.alpha:.2f}",
                                "model": self.pipeline.model_id, "alpha": r.alpha, "prompts": [r.prompt_a, r.prompt_b]})
        _report(progress, 1.0, "done")
        return mesh

    def _chain(self, r: Chain, progress: ProgressFn | None) -> SequenceData:
        seq = self.pipeline.chain(r.prompts, r.positions, steps=r.steps, resolution=r.resolution,
                                  consistent=r.consistent, progress=progress, max_states=r.max_states)
        seq.meta = _json_safe({**seq.meta, "keyframes": [{"position": p, "prompt": q} for p, q in r.keyframes],
                               "steps_per_segment": r.steps,
                               "converged": [piece.on_surface for piece in seq.pieces]})
        for m in seq.meshes:
            m.meta = _json_safe(m.meta)
        return seq

    def _nearest(self, r: Nearest) -> Neighbors:
        return Neighbors.from_dict({"prompt": r.prompt, **self.index.query(r.prompt, r.k)})

    def preview(self, request: Generate, mesh: MeshData) -> np.ndarray:
        """A turntable contact sheet of a generated mesh (``att3d generate --preview``): the volume
        rendered within the mesh's bounding sphere."""
        radius = float(np.linalg.norm(mesh.positions, axis=1).max()) * 1.05 + 0.05 if len(mesh.positions) else None
        mod = self.pipeline.modulate(self.pipeline.embed(request.prompt))
        return self.pipeline.preview(mod, radius=radius)
