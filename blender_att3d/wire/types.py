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

from .chain_position import piece_showing

__all__ = ["MeshData", "ProgressFn", "SequenceData", "SequencePiece", "piece_showing"]

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
class SequencePiece:
    """One topology of a chain: ``faces`` shared by its states, a run of chain positions.

    ``times[j]`` is the chain position of state ``j`` (increasing), ``positions[j]`` / ``colors[j]``
    its vertices and colours; ``key`` is the state that is the piece's own keyframe mesh (exactly
    the directly generated object). Consecutive pieces share their meeting state's chain position,
    where both lie on the same surface: the later piece shows from there on.
    """

    faces: NDArray[Any]
    times: list[float]
    positions: list[NDArray[Any]]
    colors: list[NDArray[Any]]
    key: int = 0

    def __post_init__(self) -> None:
        self.faces = np.ascontiguousarray(self.faces, dtype=np.uint32).reshape(-1, 3)
        self.times = [float(t) for t in self.times]
        self.positions = [np.ascontiguousarray(p, dtype=np.float32).reshape(-1, 3) for p in self.positions]
        self.colors = [np.ascontiguousarray(c, dtype=np.float32).reshape(-1, 3) for c in self.colors]
        n = len(self.times)
        if not n or len(self.positions) != n or len(self.colors) != n:
            raise ValueError("a chain piece needs one positions and one colours array per state")
        if any(b <= a for a, b in zip(self.times, self.times[1:])):
            raise ValueError("a chain piece's states must be in increasing chain order")
        n_v = len(self.positions[0])
        if any(len(p) != n_v for p in self.positions) or any(len(c) != n_v for c in self.colors):
            raise ValueError("every state of a chain piece has the same vertices")
        if len(self.faces) and int(self.faces.max()) >= n_v:
            raise ValueError("a face refers to a vertex that does not exist")
        if not 0 <= self.key < n:
            raise ValueError(f"key state {self.key} of a {n}-state piece")

    def __len__(self) -> int:
        return len(self.times)

    def state(self, j: int, meta: dict[str, Any] | None = None) -> MeshData:
        return MeshData(self.positions[j], self.faces, self.colors[j], meta=dict(meta or {}))


@dataclass
class SequenceData:
    """Meshes along a prompt chain, one per step.

    ``steps[i]`` is the chain position of step i (keyframe positions are integers 0..K-1, steps
    between them fractional), ``prompts[i]`` a readable label of that step. The geometry is either

    * ``pieces`` (consistent topology, for shape keys): one :class:`SequencePiece` per keyframe, or a
      single piece over the whole chain (``faces``, ``positions[i]``, ``colors[i]`` per step, the
      older form: it becomes that one piece); or
    * ``meshes``: one independent mesh per step (a mesh sequence).
    """

    steps: list[float]
    prompts: list[str]
    faces: NDArray[Any] | None = None
    positions: list[NDArray[Any]] = field(default_factory=list)
    colors: list[NDArray[Any]] = field(default_factory=list)
    meshes: list[MeshData] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    pieces: list[SequencePiece] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.faces is not None and not self.pieces:
            self.pieces = [SequencePiece(self.faces, self.steps, self.positions, self.colors, 0)]

    @property
    def consistent(self) -> bool:
        return bool(self.pieces)

    def __len__(self) -> int:
        return len(self.steps)

    def piece_at(self, position: float) -> int:
        """Index of the piece that shows at chain ``position`` (the later one where two meet)."""
        return piece_showing([p.times[0] for p in self.pieces], position)

    def mesh(self, i: int) -> MeshData:
        """Step ``i`` as a standalone mesh, as it shows, whichever the topology mode."""
        if not self.pieces:
            return self.meshes[i]
        t = self.steps[i]
        piece = self.pieces[self.piece_at(t)]
        j = int(np.argmin(np.abs(np.asarray(piece.times) - t)))
        return piece.state(j, {**self.meta, "chain_position": t, "prompt": self.prompts[i]})
