"""Pure-PyTorch marching cubes with a programmatically generated triangle table.

Conventions
-----------
* Corner ``i`` of a cell (0..7) sits at offset ``(i & 1, (i >> 1) & 1, (i >> 2) & 1)``
  in (x, y, z), where x, y, z are the three axes of the volume tensor.
* ``EDGES`` lists the 12 cell edges as sorted corner pairs ``(a, b)``, ``a < b``,
  differing in exactly one bit; ``a`` is therefore always the lower end.
* A corner is *inside* when its value is ``> level`` (density: high inside).
* Faces are wound counter-clockwise seen from outside: the normal
  ``cross(v1 - v0, v2 - v0)`` points towards decreasing values.

Why the table is generated rather than copied: the classic Lorensen table resolves
ambiguous faces inconsistently between neighbouring cells, which leaves holes. Here
every cube face is contoured by one fixed rule that depends only on that face's four
signs ("inside corners are separated"), so two cells sharing a face always produce
the same segments. Loops are fan-triangulated from an apex chosen so that no diagonal
lies in a cube face; then every mesh edge is either a face segment (shared by exactly
the two cells on that face) or a diagonal inside one cell, and the mesh is watertight,
consistently oriented and manifold by construction.

Ambiguity inside a cell (the "tunnel" cases) is not resolved: the inside of a cell is
whatever the face contours imply, capped with one disk per loop.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "CORNER_OFFSETS",
    "EDGES",
    "EDGE_AXIS",
    "MAX_TRIANGLES",
    "build_table",
    "marching_cubes_cells",
    "marching_cubes_volume",
    "TRI_TABLE",
    "TRI_COUNT",
]

MAX_TRIANGLES = 5

CORNER_OFFSETS: np.ndarray = np.array([[i & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], dtype=np.int64)

EDGES: list[tuple[int, int]] = sorted((a, a | (1 << d)) for a in range(8) for d in range(3) if not a & (1 << d))
# Axis along which each edge runs (the single differing bit).
EDGE_AXIS: list[int] = [(a ^ b).bit_length() - 1 for a, b in EDGES]
_EDGE_INDEX: dict[tuple[int, int], int] = {e: i for i, e in enumerate(EDGES)}


def _edge_index(a: int, b: int) -> int:
    return _EDGE_INDEX[(min(a, b), max(a, b))]


def _cube_faces() -> list[list[int]]:
    """Corner cycles of the six cube faces, counter-clockwise seen from outside the cube.

    A common outward orientation of all faces is what makes the segments of one face
    chain up with those of its neighbours: a cube edge is traversed in opposite
    directions by the two faces that share it.
    """
    faces = []
    for d in range(3):
        u, w = (d + 1) % 3, (d + 2) % 3  # cyclic, so e_u x e_w = +e_d
        for s in (0, 1):
            cycle = [(s << d) | (i << u) | (j << w) for i, j in ((0, 0), (1, 0), (1, 1), (0, 1))]
            if s == 0:  # outward normal is -e_d: reverse to stay counter-clockwise
                cycle.reverse()
            faces.append(cycle)

    # Sanity check of the orientation claim above.
    for cycle in faces:
        p = CORNER_OFFSETS[cycle].astype(np.float64)
        outward = p.mean(0) - 0.5
        assert np.dot(np.cross(p[1] - p[0], p[2] - p[1]), outward) > 0
    return faces


_FACES: list[list[int]] = _cube_faces()


def _face_segments(cycle: list[int], inside: list[bool]) -> list[tuple[int, int]]:
    """Directed iso-segments on one face, as (entry edge, exit edge) index pairs.

    Walking the face counter-clockwise (from outside), every maximal run of inside
    corners is cut off by one segment from the edge where the run starts to the edge
    where it ends. For the ambiguous face (diagonal corners alike) this yields two
    runs of one corner each, i.e. the inside corners are separated. The rule reads
    only this face's signs, so it is identical for both cells sharing the face.
    """
    segments = []
    for k in range(4):
        a, b = cycle[k], cycle[(k + 1) % 4]
        if inside[a] or not inside[b]:
            continue  # not the start of an inside run
        j = (k + 1) % 4
        while inside[cycle[(j + 1) % 4]]:  # terminates: cycle[k] is outside
            j = (j + 1) % 4
        segments.append((_edge_index(a, b), _edge_index(cycle[j], cycle[(j + 1) % 4])))
    return segments


# Edge indices of each cube face; two crossing points on one face plane must not be
# joined by a triangle edge unless they form one of that face's segments.
_FACE_EDGES: list[frozenset[int]] = [
    frozenset(_edge_index(cycle[k], cycle[(k + 1) % 4]) for k in range(4)) for cycle in _FACES
]


def _may_join(e1: int, e2: int) -> bool:
    """Whether a triangle diagonal between the crossings on edges e1 and e2 is allowed.

    A loop can pass through an ambiguous face twice. A diagonal between the two
    segments' points would then lie in that face plane, outside the cell interior;
    the neighbouring cell can produce the same diagonal, and the mesh edge ends up
    shared by four triangles. Forbidding such diagonals keeps every diagonal interior
    to its own cell, so it is used by exactly two triangles of the same loop.
    """
    return not any(e1 in face and e2 in face for face in _FACE_EDGES)


def _triangulate_loop(loop: list[int]) -> list[tuple[int, int, int]]:
    """Fan-triangulate a closed loop (L - 2 triangles, loop orientation kept).

    The fan apex is the first loop vertex whose diagonals are all allowed. Loops that
    pass through an ambiguous face twice (17 loops in the table) need a rotated apex;
    for all 256 cases some apex works, which the assertion guards.
    """
    n = len(loop)
    for r in range(n):
        rot = loop[r:] + loop[:r]
        if all(_may_join(rot[0], rot[i]) for i in range(2, n - 1)):
            return [(rot[0], rot[i], rot[i + 1]) for i in range(1, n - 1)]
    raise AssertionError(f"no valid fan apex for loop {loop}")


def _case_triangles(case: int) -> list[tuple[int, int, int]]:
    inside = [bool(case >> i & 1) for i in range(8)]

    # Chain the face segments: every crossing edge belongs to exactly two faces, and is
    # the entry of a segment on one of them and the exit on the other.
    successor: dict[int, int] = {}
    for cycle in _FACES:
        for start, end in _face_segments(cycle, inside):
            assert start not in successor, (case, start)
            successor[start] = end
    crossing = {i for i, (a, b) in enumerate(EDGES) if inside[a] != inside[b]}
    assert set(successor) == crossing and set(successor.values()) == crossing, case

    triangles = []
    unvisited = set(successor)
    while unvisited:
        loop = [min(unvisited)]
        while successor[loop[-1]] != loop[0]:
            loop.append(successor[loop[-1]])
        unvisited.difference_update(loop)
        assert len(loop) >= 3, (case, loop)
        triangles += _triangulate_loop(loop)
    return triangles


def _trilinear_gradient(corner_values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Gradient of the trilinear interpolant of 8 corner values at points [N, 3] in [0,1]^3."""
    o = CORNER_OFFSETS[None, :, :]  # [1, 8, 3]
    p = points[:, None, :]  # [N, 1, 3]
    weights = np.where(o == 1, p, 1.0 - p)  # [N, 8, 3] per-axis weights of each corner
    sign = np.where(o == 1, 1.0, -1.0)  # d(weight)/dp along each axis
    others = [[1, 2], [0, 2], [0, 1]]
    partial = np.stack([sign[..., k] * weights[..., others[k]].prod(-1) for k in range(3)], -1)
    return (corner_values[None, :, None] * partial).sum(1)  # [N, 3]


_EDGE_MIDPOINTS: np.ndarray = np.array([(CORNER_OFFSETS[a] + CORNER_OFFSETS[b]) / 2.0 for a, b in EDGES])


def _outward_dots(case: int, triangles: list[tuple[int, int, int]]) -> np.ndarray:
    """Per triangle: dot(normal, trilinear gradient) for +-1 corner values at level 0.

    Vertices are edge midpoints (what linear interpolation gives for +-1 values); the
    gradient is summed over the three vertices. Outward winding means the normal points
    against the gradient, i.e. a negative dot.
    """
    if not triangles:
        return np.zeros(0)
    corner_values = np.array([1.0 if case >> i & 1 else -1.0 for i in range(8)])
    v = _EDGE_MIDPOINTS[np.array(triangles)]  # [T, 3 vertices, 3]
    normal = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    grad = _trilinear_gradient(corner_values, v.reshape(-1, 3)).reshape(v.shape).sum(1)
    return (normal * grad).sum(-1)


def build_table() -> tuple[np.ndarray, np.ndarray]:
    """Generate the marching-cubes triangle table.

    Returns ``tri_table`` (int64 [256, 5, 3], edge indices into ``EDGES``, padded with -1)
    and ``tri_count`` (int64 [256], number of valid triangles per case). Case index bit i
    is set when corner i is inside.
    """
    tri_table = np.full((256, MAX_TRIANGLES, 3), -1, dtype=np.int64)
    tri_count = np.zeros(256, dtype=np.int64)
    for case in range(256):
        triangles = _case_triangles(case)
        assert len(triangles) <= MAX_TRIANGLES, (case, len(triangles))
        dots = _outward_dots(case, triangles)
        # The orientation follows from the segment direction (entry -> exit); a single
        # sign error there would flip every case, so all of them are asserted here.
        assert np.all(dots < 0), (case, dots)
        # Every mixed case crosses at least one edge, hence has a loop and a triangle.
        assert (len(triangles) > 0) == (0 < case < 255), case
        tri_count[case] = len(triangles)
        if triangles:
            tri_table[case, : len(triangles)] = triangles
    return tri_table, tri_count


TRI_TABLE, TRI_COUNT = build_table()

_CORNER_BITS = [1 << i for i in range(8)]
_device_constants: dict[torch.device, dict[str, torch.Tensor]] = {}


def _constants(device: torch.device) -> dict[str, torch.Tensor]:
    """Table and edge descriptors on `device`, cached so they are uploaded once."""
    if device not in _device_constants:
        edges = torch.tensor(EDGES, dtype=torch.int64)
        _device_constants[device] = {
            "tri_table": torch.from_numpy(TRI_TABLE).to(device),
            "tri_count": torch.from_numpy(TRI_COUNT).to(device),
            "edge_a": edges[:, 0].to(device),
            "edge_b": edges[:, 1].to(device),
            "edge_axis": torch.tensor(EDGE_AXIS, dtype=torch.int64, device=device),
            "corner_offsets": torch.from_numpy(CORNER_OFFSETS).to(device),
            "corner_bits": torch.tensor(_CORNER_BITS, dtype=torch.int64, device=device),
        }
    return _device_constants[device]


def corner_offsets(device: torch.device) -> torch.Tensor:
    """``CORNER_OFFSETS`` ``[8, 3]`` int64 on ``device``, uploaded once (an upload synchronises a GPU)."""
    return _constants(device)["corner_offsets"]


def _empty_mesh(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.zeros((0, 3), dtype=torch.float32, device=device),
        torch.zeros((0, 3), dtype=torch.int64, device=device),
    )


def marching_cubes_cells(
    values: torch.Tensor, origins: torch.Tensor, level: float, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Extract the iso-surface ``level`` from a set of cells.

    Args:
        values: [C, 8] corner values of each cell (corner order as in ``CORNER_OFFSETS``).
        origins: [C, 3] int64 lattice index of corner 0 of each cell.
        level: iso value; corners with value > level are inside.
        size: number of lattice nodes per axis (>= every node index + 1); only used to
            build unique edge keys, so cells of one lattice must share the same `size`.

    Returns:
        verts: float32 [V, 3] in lattice index units; faces: int64 [F, 3], wound
        counter-clockwise seen from outside (low values). Vertices on the same lattice
        edge are shared, so cells that are neighbours in the lattice produce a welded,
        watertight mesh. Everything runs on ``values.device``.
    """
    if values.ndim != 2 or values.shape[1] != 8:
        raise ValueError(f"values must be [C, 8], got {tuple(values.shape)}")
    if origins.shape != (values.shape[0], 3):
        raise ValueError(f"origins must be [C, 3], got {tuple(origins.shape)}")
    device = values.device
    if not values.is_floating_point():
        values = values.float()
    origins = origins.to(device=device, dtype=torch.int64)
    c = _constants(device)

    cube = ((values > level).long() * c["corner_bits"]).sum(1)  # [C] case index
    n_tri = c["tri_count"][cube]
    slot = torch.arange(MAX_TRIANGLES, device=device)
    cell_of_tri, slot_of_tri = (slot[None, :] < n_tri[:, None]).nonzero(as_tuple=True)
    if cell_of_tri.numel() == 0:
        return _empty_mesh(device)
    tri_edges = c["tri_table"][cube[cell_of_tri], slot_of_tri]  # [T, 3]

    # One entry per triangle corner: (cell, edge) -> global key of the lattice edge.
    corner_cell = cell_of_tri.repeat_interleave(3)
    corner_edge = tri_edges.reshape(-1)
    lower = origins[corner_cell] + c["corner_offsets"][c["edge_a"][corner_edge]]
    axis = c["edge_axis"][corner_edge]
    keys = ((lower[:, 0] * size + lower[:, 1]) * size + lower[:, 2]) * 3 + axis
    unique_keys, inverse = torch.unique(keys, return_inverse=True)
    faces = inverse.view(-1, 3)

    # Any corner that maps to a vertex can supply its position: neighbouring cells hold
    # the same lattice values, so interpolating once per unique vertex is enough.
    rep = torch.empty(unique_keys.numel(), dtype=torch.int64, device=device)
    rep.scatter_(0, inverse, torch.arange(inverse.numel(), device=device))
    rep_cell, rep_edge = corner_cell[rep], corner_edge[rep]
    va = values[rep_cell, c["edge_a"][rep_edge]]
    vb = values[rep_cell, c["edge_b"][rep_edge]]
    # va and vb are on opposite sides of level, so the denominator is never zero.
    t = (level - va) / (vb - va)
    compute_dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    verts = lower[rep].to(compute_dtype)
    verts[torch.arange(verts.shape[0], device=device), axis[rep]] += t.to(compute_dtype)
    # no degenerate faces to drop: a triangle's corners lie on three different edges of its cell
    return verts.to(torch.float32), faces


def marching_cubes_volume(volume: torch.Tensor, level: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Marching cubes over a dense [X, Y, Z] volume; vertices are in index units (x, y, z).

    Only cells that the surface crosses are gathered and passed to
    ``marching_cubes_cells``, which keeps the [C, 8] value tensor small.
    """
    if volume.ndim != 3:
        raise ValueError(f"volume must be [X, Y, Z], got {tuple(volume.shape)}")
    device = volume.device
    X, Y, Z = volume.shape
    if min(X, Y, Z) < 2:
        return _empty_mesh(device)
    c = _constants(device)

    # Case index of every cell, built from 8 shifted views (uint8 keeps it cheap).
    inside = (volume > level).to(torch.uint8)
    cube = torch.zeros((X - 1, Y - 1, Z - 1), dtype=torch.uint8, device=device)
    for i, (dx, dy, dz) in enumerate(CORNER_OFFSETS.tolist()):
        cube |= inside[dx : X - 1 + dx, dy : Y - 1 + dy, dz : Z - 1 + dz] << i
    # Exactly the mixed cases have triangles (asserted in build_table); comparing is
    # much cheaper than gathering tri_count for every cell of the volume.
    origins = ((cube != 0) & (cube != 255)).nonzero()  # [C, 3]
    if origins.shape[0] == 0:
        return _empty_mesh(device)

    strides = torch.tensor([Y * Z, Z, 1], dtype=torch.int64, device=device)
    # Integer matmul is unsupported on CUDA, hence multiply-and-sum.
    corner_linear = (c["corner_offsets"] * strides).sum(1)  # [8]
    node_linear = (origins * strides).sum(1)  # [C]
    values = volume.reshape(-1)[node_linear[:, None] + corner_linear[None, :]]
    return marching_cubes_cells(values, origins, level, max(X, Y, Z))
