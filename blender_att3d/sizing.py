"""Where a result's origin sits, how big it is, and where batch objects go on their grid (no bpy:
plain numpy, testable anywhere).

``BASE`` (the default) puts the origin at the bottom centre of the object's bounding box, so an
object placed on the ground at the 3D cursor rests on it; ``CENTER`` at the box's centre. A target
height (scene units, metres in a default scene; 0 keeps the model's own size, about 1) scales the
object uniformly. A chain gets one scale for all its states (the tallest state gets the height),
so the morph keeps the prompts' relative sizes, and each state its own origin, so it rests on the
ground at every frame.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .wire.types import MeshData, SequenceData, SequencePiece

ORIGINS = ("BASE", "CENTER")


@dataclass(frozen=True)
class Fit:
    origin: str = "BASE"
    height: float = 0.0  # target height in scene units; 0 = as generated

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, got {self.origin!r}")
        if not np.isfinite(self.height) or self.height < 0:
            raise ValueError(f"the target height must be a positive number of scene units (0: as generated), "
                             f"got {self.height!r}")

    def provenance(self, scale: float) -> dict[str, Any]:
        return {"origin": self.origin, "target_height": float(self.height), "scale": float(scale)}


def anchor(positions: np.ndarray, origin: str) -> np.ndarray:
    """The point of ``positions``' bounding box that becomes the origin."""
    if len(positions) == 0:
        return np.zeros(3, np.float32)
    lo, hi = positions.min(0), positions.max(0)
    a = (lo + hi) / 2
    if origin == "BASE":
        a[2] = lo[2]
    return a.astype(np.float32)


def height_of(positions: np.ndarray) -> float:
    return float(np.ptp(positions[:, 2])) if len(positions) else 0.0


def scale_for(heights: list[float], fit: Fit) -> float:
    tallest = max(heights, default=0.0)
    return fit.height / tallest if fit.height > 0 and tallest > 1e-9 else 1.0


def _place(positions: np.ndarray, origin: str, scale: float) -> np.ndarray:
    return ((positions - anchor(positions, origin)) * scale).astype(np.float32)


def fit_mesh(data: MeshData, fit: Fit) -> tuple[MeshData, float]:
    """``data`` moved so its origin is where ``fit`` says, and scaled; returns it and the scale."""
    scale = scale_for([height_of(data.positions)], fit)
    meta = {**data.meta, **fit.provenance(scale)}
    return replace(data, positions=_place(data.positions, fit.origin, scale), meta=meta), scale


def fit_sequence(seq: SequenceData, fit: Fit) -> tuple[SequenceData, float]:
    """Every state of a chain placed (each on its own origin) with one scale for the whole chain."""
    if seq.pieces:
        scale = scale_for([height_of(p) for piece in seq.pieces for p in piece.positions], fit)
        pieces = [SequencePiece(p.faces, p.times, [_place(x, fit.origin, scale) for x in p.positions], p.colors, p.key)
                  for p in seq.pieces]
        out = SequenceData(list(seq.steps), list(seq.prompts), meta=dict(seq.meta), pieces=pieces)
    else:
        scale = scale_for([height_of(m.positions) for m in seq.meshes], fit)
        meshes = [replace(m, positions=_place(m.positions, fit.origin, scale)) for m in seq.meshes]
        out = SequenceData(list(seq.steps), list(seq.prompts), meshes=meshes, meta=dict(seq.meta))
    out.meta.update(fit.provenance(scale))
    return out, scale


def footprint(positions: list[np.ndarray]) -> tuple[float, float]:
    """Width (x) and depth (y) of the bounding box of all ``positions`` arrays (all of a chain's states)."""
    pts = [p for p in positions if len(p)]
    if not pts:
        return 0.0, 0.0
    lo = np.min([p.min(0) for p in pts], axis=0)
    hi = np.max([p.max(0) for p in pts], axis=0)
    return float(hi[0] - lo[0]), float(hi[1] - lo[1])


def grid_positions(footprints: list[tuple[float, float]], gap: float = 0.5) -> list[tuple[float, float, float]]:
    """Where to put objects of these footprints (width, depth) on a grid, about square, left to right
    and front (−Y) to back, centred on x = 0: each column as wide as its widest object, each row as
    deep as its deepest, ``gap`` between neighbouring cells, so no two boxes ever overlap (an
    object's origin is its box's x/y centre, see :func:`anchor`)."""
    n = len(footprints)
    if n == 0:
        return []
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    widths = [max((footprints[i][0] for i in range(c, n, cols)), default=0.0) for c in range(cols)]
    depths = [max(footprints[r * cols + c][1] for c in range(cols) if r * cols + c < n) for r in range(rows)]
    x_centres = [float(sum(widths[:c]) + gap * c + widths[c] / 2) for c in range(cols)]
    total_w = sum(widths) + gap * (cols - 1)
    y_centres = [float(sum(depths[:r]) + gap * r + depths[r] / 2) for r in range(rows)]
    return [(x_centres[i % cols] - total_w / 2, y_centres[i // cols] - depths[0] / 2, 0.0) for i in range(n)]
