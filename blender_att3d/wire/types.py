"""Plain-numpy results shared by every client transport and the Blender code (no torch, no bpy).

Conventions (the same everywhere): positions are float32 ``[V, 3]`` in Blender's frame (Z up,
the object's front faces -Y, units are scene units with the object inside [-1, 1]^3); faces are
uint32 ``[F, 3]`` counter-clockwise seen from outside; colours are float32 ``[V, 3]`` in [0, 1],
sRGB-encoded display values (what the model renders).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: ``progress(fraction_done, message)``; returning True asks the job to stop early.
ProgressFn = Callable[[float, str], bool | None]


@dataclass
class MeshData:
    positions: NDArray[Any]
    faces: NDArray[Any]
    colors: NDArray[Any]
    #: Optional baked texture: ``uvs`` float32 [V, 2] per vertex and ``texture`` uint8 [H, W, 3].
    uvs: NDArray[Any] | None = None
    texture: NDArray[Any] | None = None
    #: Provenance: prompt, model id, resolution, chain position ... (JSON-serialisable).
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.positions = np.ascontiguousarray(self.positions, dtype=np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.uint32).reshape(-1, 3)
        self.colors = np.ascontiguousarray(self.colors, dtype=np.float32).reshape(-1, 3)
        if len(self.colors) != len(self.positions):
            raise ValueError(f"{len(self.colors)} colours for {len(self.positions)} vertices")
        if len(self.faces) and int(self.faces.max()) >= len(self.positions):
            raise ValueError("a face refers to a vertex that does not exist")
        if self.uvs is not None:
            self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32).reshape(-1, 2)

    @property
    def n_vertices(self) -> int:
        return len(self.positions)


@dataclass
class SequenceData:
    """Meshes along a prompt chain, one per step.

    Consistent topology: ``faces`` is shared and ``positions[i]`` / ``colors[i]`` are step i.
    Otherwise ``faces`` is None and ``meshes`` holds one independent mesh per step.
    ``steps[i]`` is the chain position of step i (keyframe positions are integers 0..K-1,
    steps between them fractional), ``prompts[i]`` a readable label of that step.
    """

    steps: list[float]
    prompts: list[str]
    faces: NDArray[Any] | None = None
    positions: list[NDArray[Any]] = field(default_factory=list)
    colors: list[NDArray[Any]] = field(default_factory=list)
    meshes: list[MeshData] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        return self.faces is not None

    def __len__(self) -> int:
        return len(self.steps)

    def mesh(self, i: int) -> MeshData:
        """Step ``i`` as a standalone mesh, whichever the topology mode."""
        if self.faces is not None:  # consistent topology
            return MeshData(self.positions[i], self.faces, self.colors[i],
                            meta={**self.meta, "chain_position": self.steps[i], "prompt": self.prompts[i]})
        return self.meshes[i]
