"""The plain-numpy mesh that extraction, texture baking, export and the service pass around.

Its own module so that the steps that make or take meshes (``mesh``, ``texture``, ``export``) import
it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh in the model's world frame (Z up, front −Y)."""

    vertices: np.ndarray  # float32 [V, 3]
    faces: np.ndarray  # int64 [F, 3], counter-clockwise seen from outside
    colors: np.ndarray  # float32 [V, 3] in [0, 1]
    uvs: np.ndarray | None = None  # float32 [V, 2] when a texture was baked
    texture: np.ndarray | None = None  # uint8 [H, W, 3]
    meta: dict[str, Any] = field(default_factory=dict)
