"""The operations behind the service and the embedded client, on one :class:`Engine` (a loaded
:class:`~backend.inference.Pipeline` plus the training-prompt index): results are the wire's
plain-numpy types, so the HTTP and the embedded transports give byte-identical meshes for the same
request. The checks here are the ones both transports share.

No web framework here: the embedded client imports this module inside Blender.
"""
from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from blender_att3d.wire import limits
from blender_att3d.wire.limits import (
    MAX_CHAIN_MESHES,
    MAX_KEYFRAMES,
    MAX_NEIGHBORS,
    TEXTURE_SIZE,
    check_prompt,
)
from blender_att3d.wire.limits import check_simplify as check_simplify_range
from blender_att3d.wire.options import check_mc
from blender_att3d.wire.routes import API_VERSION
from blender_att3d.wire.types import MeshData, ProgressFn, SequenceData

from ..inference import CancelledError, Pipeline
from ..mesh import DEFAULT_SMOOTH, Mesh, check_resolution

if TYPE_CHECKING:
    from ..nearest import PromptIndex


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


# -- validation shared by both transports ------------------------------------------------------

def check_simplify(simplify: Any) -> int | None:
    simplify = check_simplify_range(simplify)
    if simplify is None:
        return None
    if not features()["simplify"]:
        raise ValueError("this backend cannot simplify meshes: install 'att3d[mesh]' where it runs")
    return int(simplify)


def check_texture(texture: Any) -> bool:
    if not isinstance(texture, bool):
        raise ValueError(f"texture must be true or false, got {texture!r}")
    if texture and not features()["texture"]:
        raise ValueError("this backend cannot bake textures: install 'att3d[mesh]' where it runs")
    return texture


def check_mc_available(mc: Any) -> str:
    mc = check_mc(mc)
    if mc == "pymcubes" and not features()["pymcubes"]:
        raise ValueError("this backend has no PyMCubes: install 'att3d[mesh]' where it runs, or use mc 'skimage'")
    return mc


def _from(progress: ProgressFn | None, start: float) -> ProgressFn | None:
    """The rest of a job's progress, [start, 1], for a step that reports its own fractions."""
    if progress is None:
        return None
    return lambda frac, msg: progress(start + (1 - start) * frac, msg)


def chain_length(n_keyframes: int, steps: int) -> int:
    return (n_keyframes - 1) * steps + 1


def check_chain(keyframes: Sequence[tuple[float, str]], steps: Any) -> tuple[list[float], list[str], int]:
    """(positions, prompts, steps) of a chain request, or a ValueError that says what is wrong."""
    kf = list(keyframes)
    if not 2 <= len(kf) <= MAX_KEYFRAMES:
        raise ValueError(f"a chain needs 2–{MAX_KEYFRAMES} keyframes, got {len(kf)}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    n = chain_length(len(kf), int(steps))
    if n > MAX_CHAIN_MESHES:
        raise ValueError(f"that chain has {n} meshes ({len(kf)} keyframes, {steps} steps between each); "
                         f"the limit is {MAX_CHAIN_MESHES}: use fewer steps or keyframes")
    positions, prompts = [], []
    for i, item in enumerate(kf):
        try:
            pos, prompt = item
        except (TypeError, ValueError):
            raise ValueError(f"keyframe {i} must be a (position, prompt) pair") from None
        if isinstance(pos, bool) or not isinstance(pos, (int, float, np.number)) or not np.isfinite(pos):
            raise ValueError(f"keyframe {i}: the position must be a finite number, got {pos!r}")
        positions.append(float(pos))
        try:
            prompts.append(check_prompt(prompt))
        except ValueError as e:
            raise ValueError(f"keyframe {i}: {e}") from None
    if any(b <= a for a, b in zip(positions, positions[1:])):
        raise ValueError("keyframe positions must be strictly increasing")
    return positions, prompts, int(steps)


def check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


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


def mesh_data(mesh: Mesh) -> MeshData:
    """backend Mesh (Z-up world frame, already Blender's) → client MeshData."""
    return MeshData(mesh.vertices, mesh.faces, mesh.colors, mesh.uvs, mesh.texture, meta=_json_safe(mesh.meta))


# The stages a generate job names in its progress messages (the add-on shows them with the time so
# far); ``wire``-compatible: a job's message stays a free-form string.
STAGE_PROMPT = "encoding the prompt"
STAGE_GRID = "building the grid"
STAGE_MESH = "extracting the mesh"
#: how many of the training prompts ``info()`` quotes
N_EXAMPLES = 5


def examples(prompts: Sequence[str], n: int = N_EXAMPLES) -> list[str]:
    """``n`` prompts spread evenly over the list (the first ones alone are often all alike)."""
    if len(prompts) <= n:
        return list(prompts)
    return [prompts[(i * len(prompts)) // n] for i in range(n)]


def _check(progress: ProgressFn | None, frac: float, msg: str) -> None:
    if progress is not None and progress(frac, msg):
        raise CancelledError("cancelled")


class Engine:
    """A Pipeline plus the training-prompt index; not thread-safe: one caller at a time (the service's
    worker thread, or the embedded client's)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._index: PromptIndex | None = None

    @classmethod
    def load(cls, model: str = "demo", device: str = "auto", cache_dir: str | None = None) -> Engine:
        return cls(Pipeline(model, device=device, cache_dir=cache_dir))

    # -- helpers ----------------------------------------------------------------------------
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
            from ..nearest import PromptIndex

            self._index = PromptIndex.from_pipeline(self.pipeline)
        return self._index

    def info(self) -> dict[str, Any]:
        import torch

        from ..nearest import training_prompts

        prompts = training_prompts(self.pipeline.config)
        return {"model": self.pipeline.model_id, "text_encoder": self.pipeline.encoder.encoder_id,
                "device": str(self.pipeline.device), "version": att3d_version(), "api": API_VERSION,
                "versions": {"att3d": att3d_version(), "torch": torch.__version__, "numpy": np.__version__,
                             "python": platform.python_version(), "api": API_VERSION},
                "training_prompts": len(prompts) if prompts else 0,
                "training_prompts_known": bool(prompts),
                "training_prompt_examples": examples(prompts) if prompts else [],
                "features": features(), "limits": limits.as_dict()}

    # -- operations ---------------------------------------------------------------------------
    def generate(self, prompt: str, resolution: int = 128, simplify: int | None = None, texture: bool = False,
                 mc: str = "auto", progress: ProgressFn | None = None, smooth: int = DEFAULT_SMOOTH) -> MeshData:
        """One object, as the add-on and the batch get it: Taubin-smoothed ``smooth`` times
        (:data:`backend.mesh.DEFAULT_SMOOTH` by default: the raw lattice's lumps, gone, volume kept)."""
        prompt = check_prompt(prompt)
        check_resolution(resolution)
        simplify = check_simplify(simplify)
        texture = check_texture(texture)
        mc = check_mc_available(mc)
        _check(progress, 0.0, STAGE_PROMPT)
        emb = self.pipeline.embed(prompt)
        _check(progress, 0.15, STAGE_GRID)
        mod = self.pipeline.modulate(emb)
        _check(progress, 0.3, STAGE_MESH)
        mesh = self.pipeline.mesh(mod, resolution, simplify, TEXTURE_SIZE if texture else False, mc=mc,
                                  progress=_from(progress, 0.3), smooth=smooth)
        mesh.meta.update(prompt=prompt, model=self.pipeline.model_id)
        _check(progress, 1.0, "done")
        return mesh_data(mesh)

    def blend(self, prompt_a: str, prompt_b: str, alpha: float, resolution: int = 96,
              simplify: int | None = None, mc: str = "auto", progress: ProgressFn | None = None) -> MeshData:
        prompt_a, prompt_b = check_prompt(prompt_a), check_prompt(prompt_b)
        alpha = check_alpha(alpha)
        check_resolution(resolution)
        simplify = check_simplify(simplify)
        mc = check_mc_available(mc)
        _check(progress, 0.0, "encoding the prompts and building the grid")
        mod = self.pipeline.blend_modulation(prompt_a, prompt_b, alpha)
        _check(progress, 0.3, STAGE_MESH)
        mesh = self.pipeline.mesh(mod, resolution, simplify, mc=mc, progress=_from(progress, 0.3))
        mesh.meta.update(prompt=f"{prompt_a} → {prompt_b} @ {alpha:.2f}", model=self.pipeline.model_id, alpha=alpha,
                         prompts=[prompt_a, prompt_b])
        _check(progress, 1.0, "done")
        return mesh_data(mesh)

    def chain(self, keyframes: Sequence[tuple[float, str]], steps: int = 4, resolution: int = 96,
              consistent: bool = True, progress: ProgressFn | None = None) -> SequenceData:
        positions, prompts, steps = check_chain(keyframes, steps)
        check_resolution(resolution)
        if not isinstance(consistent, bool):
            raise ValueError(f"consistent must be true or false, got {consistent!r}")
        out = self.pipeline.chain(prompts, positions, steps=steps, resolution=resolution, consistent=consistent,
                                  progress=progress)
        meta = {"model": self.pipeline.model_id, "resolution": resolution, "keyframes": [
            {"position": p, "prompt": q} for p, q in zip(positions, prompts)], "steps_per_segment": steps,
            "converged": [[float(c) for c in piece.on_surface] for piece in out.pieces]}
        seq = out.sequence_data(_json_safe(meta))
        if not consistent:
            seq.meshes = [mesh_data(m) for m in out.meshes]
        return seq

    def nearest(self, prompt: str, k: int = 5) -> dict[str, Any]:
        prompt = check_prompt(prompt)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_NEIGHBORS:
            raise ValueError(f"k must be an integer in 1–{MAX_NEIGHBORS}, got {k!r}")
        return {"prompt": prompt, **self.index.query(prompt, int(k))}
