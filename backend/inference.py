"""Inference: prompt → ``m(c)`` once → meshes, previews, blends and prompt chains.

:class:`Pipeline` is a loaded model with its text encoder and the steps of inference (embed, modulate,
mesh, preview, chain). It checks nothing: requests are checked once, by :mod:`backend.engine`, which
sequences these steps for the CLI, the service and the embedded client. (Not `torch.Generator`:
instances are `pipe` or `pipeline`.)
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from blender_att3d.wire.limits import DEFAULT_RESOLUTION, MAX_CHAIN_STATES, default_max_states
from blender_att3d.wire.types import MeshData, SequenceData, SequencePiece

from .cameras import orbit_cameras
from .chain import (
    NeighborMean,
    chain_schedule,
    largest_move,
    plan_pieces,
    refine_pieces,
    settle_on_isosurface,
    state_field,
    step_label,
)
from .device import pick_device
from .mapping_network import Modulation
from .mesh import (
    LOWPASS_MAX_RESOLUTION,
    density_lattice,
    extract_mesh,
    extract_surface,
    field_colors,
    lowpass_coarse,
    lowpass_surface,
)
from .model import ATT3D, freeze_spectral_norm, load_model, resolve_model_path
from .progress import CancelledError, ProgressFn  # noqa: F401 (re-exported: the service and clients use them)
from .text_encoder import TextEmbedding, encoder_for


def occupancy_culled_field(model: ATT3D, mod: Modulation, resolution: int = 64, level: float = 0.05):
    """The model's field for one prompt, evaluated only where a coarse density lattice (dilated by
    one voxel) is non-negligible; elsewhere density is zero. Rendering previews touches ~10× fewer
    points this way. Only for inference (no gradients through the culling)."""
    cfg = model.config
    vol = torch.from_numpy(density_lattice(model, mod, resolution)).to(mod.v.device)
    occ = torch.nn.functional.max_pool3d(vol[None, None], 3, stride=1, padding=1)[0, 0] > level
    n = resolution

    def field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = points.reshape(-1, 3)
        idx = ((flat / cfg.bound + 1) * 0.5 * (n - 1)).round().long()
        inside = ((idx >= 0) & (idx < n)).all(-1)
        keep = inside.clone()
        ii = idx[inside]
        keep[inside] = occ[ii[:, 0], ii[:, 1], ii[:, 2]]
        density = torch.zeros(flat.shape[0], device=flat.device)
        albedo = torch.zeros(flat.shape[0], 3, device=flat.device)
        if keep.any():
            d, a = model.field(mod, flat[keep][None])
            density[keep], albedo[keep] = d[0], a[0]
        return density.view(points.shape[:-1]), albedo.view(*points.shape[:-1], 3)

    return field


def shade_from_depth(out, cams, bg: float, ambient: float = 0.45) -> torch.Tensor:
    """Soft lambertian shading in image space: normals from the rendered depth map, a light above
    the camera. Cheap (no gradients through the field) and enough to read shapes in a preview."""
    from .renderer import camera_rays

    b, _, h, w = out.rgb.shape
    origins, dirs = camera_rays(cams, h, w)
    depth = (out.depth / out.opacity.clamp_min(1e-4)).reshape(b, -1, 1)
    pts = (origins + dirs * depth).reshape(b, h, w, 3)
    du = torch.zeros_like(pts)
    dv = torch.zeros_like(pts)
    du[:, :, 1:-1] = pts[:, :, 2:] - pts[:, :, :-2]
    dv[:, 1:-1] = pts[:, 2:] - pts[:, :-2]
    n = torch.nn.functional.normalize(torch.cross(dv, du, dim=-1), dim=-1)
    n = torch.where((n * dirs.reshape(b, h, w, 3)).sum(-1, keepdim=True) > 0, -n, n)  # face the camera
    light = torch.nn.functional.normalize(cams.eye + torch.tensor([0.0, 0.0, 1.5], device=cams.eye.device), dim=-1)
    lam = ambient + (1 - ambient) * (n * light[:, None, None, :]).sum(-1).clamp_min(0)
    lam = torch.where(n.abs().sum(-1) > 0, lam, torch.ones_like(lam)).unsqueeze(1)
    obj = out.rgb - (1 - out.opacity) * bg  # the object's premultiplied colour
    return obj * lam + (1 - out.opacity) * bg


# chains: every k-th vertex predicts whether a settle fails (settle_on_isosurface); the share of a chain's
# progress bar that planning its pieces takes (the states in between: up to 0.95); a blend misses a
# state's surface by this quantile of the distances of every k-th of its vertices (a few stray vertices
# aside; a quarter of the vertices tell it as well, at a quarter of the cost)
PREDICT_EVERY = 8
PLAN_SHARE = 0.8
MISS_QUANTILE = 0.99
MISS_EVERY = 4
FIELD_CACHE = 64


class Pipeline:
    """A loaded model with its text encoder. ``Pipeline("demo")`` or a model folder path."""

    def __init__(self, model: str | os.PathLike = "demo", device: str = "auto",
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.device = pick_device(device)
        self.model_path = resolve_model_path(model)
        self.model, self.config = load_model(self.model_path, self.device)
        freeze_spectral_norm(self.model)
        arch = self.model.config
        self.model_id = str(self.config.get("provenance", {}).get("name") or Path(self.model_path).name)
        self.encoder = encoder_for(arch, device=self.device, cache_dir=cache_dir)  # half precision on CUDA
        if self.encoder.dim != arch.token_dim:
            raise ValueError(f"text encoder {arch.text_encoder!r} gives {self.encoder.dim}-d tokens, "
                             f"the model expects {arch.token_dim}")

    # -- embeddings and modulations -------------------------------------------------------------
    def embed(self, prompts: Sequence[str] | str) -> TextEmbedding:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return self.encoder(prompts).to(self.device)

    @torch.no_grad()
    def modulate(self, emb: TextEmbedding) -> Modulation:
        return self.model.modulate(emb.tokens, emb.mask)

    @torch.no_grad()
    def blend_modulation(self, prompt_a: str, prompt_b: str, alpha: float) -> Modulation:
        """Latent interpolation: ``m((1 − α) c1 + α c2)`` (paper §3.2.2)."""
        e = self.embed([prompt_a, prompt_b])
        tokens = (1 - alpha) * e.tokens[:1] + alpha * e.tokens[1:]
        return self.model.modulate(tokens, e.mask[:1] | e.mask[1:])

    # -- single objects -------------------------------------------------------------------------
    def mesh(self, mod: Modulation, resolution: int = DEFAULT_RESOLUTION, simplify: int | None = None,
             texture: bool | int = False, extract: str = "auto", mc: str = "auto",
             progress: ProgressFn | None = None, unwrap: str = "box", smooth: int = 0,
             lowpass: bool | None = None) -> MeshData:
        """``extract``: ``auto`` (sparse from 96³, dense below), ``sparse`` or ``dense`` (the reference,
        the same mesh); ``mc``: ``auto`` (default: ``torch`` on a GPU, ``skimage`` elsewhere),
        ``skimage``, ``pymcubes`` or ``torch``; ``unwrap`` (with a texture): ``box`` (fast) or
        ``xatlas``; ``smooth``: the low-passed density's surface, then Taubin iterations,
        volume-preserving (0–100; 0, the default: off); ``lowpass`` True/False: the low-passed density
        or not, whatever ``smooth``; ``progress(fraction, message)`` returning True stops it
        (:class:`CancelledError`) within one step of the extraction."""
        tex = (1024 if texture is True else int(texture)) if texture else None
        if tex and not simplify:
            simplify = 20000  # the texture carries the detail; xatlas is slow on dense meshes
        return extract_mesh(self.model, mod, resolution, simplify, tex, extract=extract, mc=mc, progress=progress,
                            unwrap=unwrap, smooth=smooth, lowpass=lowpass)

    @torch.no_grad()
    def preview(self, mod: Modulation, views: int = 8, size: int = 128, elevation: float = 20.0,
                n_samples: int = 64, radius: float | None = None, shaded: bool = True) -> np.ndarray:
        """A turntable contact sheet ``[rows·size, cols·size, 3]`` uint8, shaded, light background.

        ``radius`` bounds the rendered volume (e.g. the extracted mesh's bounding sphere plus a
        margin): samples go where the object is instead of across the whole radius-2 sphere.
        """
        cams = orbit_cameras([360.0 * i / views for i in range(views)], elevation, 2.6, 1.1, device=self.device)
        from .renderer import render

        r = min(self.model.config.sphere_radius, radius or self.model.config.bound * 3 ** 0.5)
        field = occupancy_culled_field(self.model, mod.select([0]))
        bg = 0.94  # a plain light background keeps the object in focus
        out = render(field, cams, size, size, radius=r, n_samples=n_samples, stratified=False,
                     bg_color=bg, chunk=1 << 14)
        rgb = out.rgb
        if shaded:
            rgb = shade_from_depth(out, cams, bg)
        img = (rgb.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
        cols = min(views, 4)
        rows = math.ceil(views / cols)
        sheet = np.full((rows * size, cols * size, 3), 255, np.uint8)
        for i in range(views):
            r, c = divmod(i, cols)
            sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = img[i]
        return sheet

    # -- chains -------------------------------------------------------------------------------
    def chain_modulation(self, emb: TextEmbedding, k: int, a: float) -> Modulation:
        """``m((1 − α) c_k + α c_{k+1})`` for segment ``k`` of a chain of embeddings."""
        tokens = (1 - a) * emb.tokens[k:k + 1] + a * emb.tokens[k + 1:k + 2]
        with torch.no_grad():
            return self.model.modulate(tokens, emb.mask[k:k + 1] | emb.mask[k + 1:k + 2])

    def chain(self, prompts: Sequence[str], positions: Sequence[float] | None = None, steps: int = 4,
              resolution: int = DEFAULT_RESOLUTION, consistent: bool = True,
              progress: ProgressFn | None = None, max_states: int | None = None) -> SequenceData:
        """Meshes along a prompt chain (:mod:`backend.chain`).

        ``consistent``: keyframe pieces (one topology per keyframe, exact at its keyframe, tracked to
        the middle of the neighbouring segments: ready for shape keys); otherwise one independent
        mesh per step. ``prompts``, ``positions`` and ``max_states`` as :class:`backend.engine.Chain`
        checked them. A consistent chain stores states in between where the surface moves
        (:func:`backend.chain.refine_pieces`), up to ``max_states`` chain positions per segment
        (default ``2 · steps``; ``steps``: none in between); its ``meta["max_move_voxels"]`` is the
        largest vertex move between neighbouring stored states, in voxels of ``resolution``.
        """
        positions = list(range(len(prompts))) if positions is None else [float(p) for p in positions]
        schedule = chain_schedule(positions, steps)
        emb = self.embed(prompts)
        out = SequenceData([s[2] for s in schedule], [step_label(prompts, k, a) for k, a, _ in schedule],
                           meta={"model": self.model_id, "resolution": resolution})

        def tick(i: float, n: int, what: str) -> None:
            if progress is not None and progress(i / n, what):
                raise CancelledError("cancelled")

        # the low-passed density (what Generate's default smoothing extracts) up to its limit: every
        # state's field is then a small lattice, cheap to settle on and shared by the pieces meeting there
        lowpass = resolution <= LOWPASS_MAX_RESOLUTION
        if not consistent:
            for i, (k, a, pos) in enumerate(schedule):
                tick(i, len(schedule), f"step {i + 1}/{len(schedule)}")
                m = self.mesh(self.chain_modulation(emb, k, a), resolution, lowpass=lowpass)
                m.meta.update(prompt=out.prompts[i], model=self.model_id, chain_position=pos)
                out.meshes.append(m)
        else:
            cfg = self.model.config
            voxel = 2 * cfg.bound / (resolution - 1)

            # (the caches key on float(x): functools keys the int 7 and the float 7.0 apart)
            @functools.cache  # each is needed 2–3 times (extract or track, colour)
            def modulation_at(x: float) -> Modulation:
                k, a, _ = schedule[int(x)]
                return self.chain_modulation(emb, k, a + (x - int(x)) / steps)

            def mod_at(x: float) -> Modulation:  # step x (a .5: the middle between two steps)
                return modulation_at(float(x))

            def position(x: float) -> float:
                k, a, _ = schedule[int(x)]
                a += (x - int(x)) / steps
                return positions[k] + a * (positions[k + 1] - positions[k])

            @functools.lru_cache(maxsize=FIELD_CACHE)  # a 48³ lattice each (0.4 MB)
            def lattice_at(x: float) -> torch.Tensor:
                return lowpass_coarse(self.model, mod_at(x))

            def coarse_at(x: float) -> torch.Tensor:
                return lattice_at(float(x))

            def field_at(x: float):
                return state_field(self.model, mod_at(x), resolution, coarse_at(x) if lowpass else None)

            def extract(i: int) -> tuple[np.ndarray, np.ndarray]:  # an anchor: what generate would make
                if lowpass:
                    return lowpass_surface(self.model, mod_at(i), resolution, coarse=coarse_at(i))
                return extract_surface(self.model, mod_at(i), resolution, cfg.iso_density)

            def project(x: float, v: np.ndarray, f: np.ndarray, adj) -> tuple[np.ndarray, np.ndarray]:
                return settle_on_isosurface(self.model, mod_at(x), v, adj, voxel, predict=PREDICT_EVERY,
                                            field=field_at(x))

            planned = plan_pieces([k * steps for k in range(len(prompts))], extract, project,
                                  lambda v, f: NeighborMean(f, len(v), self.device),
                                  tick=lambda frac: tick(PLAN_SHARE * frac, 1, "tracking the keyframes' meshes"))

            def distance(d: torch.Tensor, g: torch.Tensor) -> float:  # the blend's miss, in voxels
                dist = (d - cfg.iso_density).abs() / g.norm(dim=-1).clamp_min(1e-8)
                return float(torch.quantile(dist, MISS_QUANTILE)) / voxel if len(dist) else 0.0

            def miss(x: float, v: np.ndarray) -> float:  # how far a blend is from step x's surface
                return distance(*field_at(x)(torch.from_numpy(v[::MISS_EVERY]).to(self.device)))

            def estimate(x0: float, x1: float, v: np.ndarray) -> float:
                """The miss against the mean of the two neighbours' fields (already built): within
                a tenth of a voxel of the true miss on the bench's chains (at most 1.5× apart)."""
                pts = torch.from_numpy(v[::MISS_EVERY]).to(self.device)
                (d0, g0), (d1, g1) = field_at(x0)(pts), field_at(x1)(pts)
                return distance((d0 + d1) / 2, (g0 + g1) / 2)

            cap = default_max_states(steps) if max_states is None else max_states
            inserted = refine_pieces(
                planned, lambda x: schedule[int(x)][0], cap,
                lambda x, v, f, adj: settle_on_isosurface(self.model, mod_at(x), v, adj, voxel, field=field_at(x)),
                miss, voxel,
                max_total=MAX_CHAIN_STATES, estimate=estimate if lowpass else None,
                tick=lambda frac: tick(PLAN_SHARE + (0.95 - PLAN_SHARE) * frac, 1, "adding states where it moves"))
            moves = [largest_move(a, b) for p in planned for a, b in zip(p.vertices, p.vertices[1:])]
            out.meta.update(max_move_voxels=round(max(moves, default=0.0) / voxel, 3), inserted_states=inserted,
                            max_states=cap)
            for p in planned:
                colors = [field_colors(self.model, mod_at(x), v) for x, v in zip(p.xs, p.vertices)]
                out.pieces.append(SequencePiece(p.faces, [position(x) for x in p.xs], p.vertices, colors, p.key,
                                                p.on_surface, p.held))
        if progress is not None:
            progress(1.0, "done")
        return out
