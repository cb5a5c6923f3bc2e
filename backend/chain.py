"""Prompt chains: meshes along ``(1 − α) c_k + α c_{k+1}`` between keyframe prompts.

Two forms, both a :class:`blender_att3d.wire.types.SequenceData` (made by
:meth:`backend.inference.Pipeline.chain`):

* **independent meshes** (``consistent=False``): marching cubes at every step; a mesh sequence.
* **keyframe pieces** (``consistent=True``, the default): one topology per keyframe. Piece ``k`` is
  keyframe ``k``'s own marching-cubes mesh (exact at its keyframe: the directly generated mesh),
  tracked along the chain to the middle of the segments on both sides of it: its vertices are moved
  onto each state's isosurface in turn (:func:`settle_on_isosurface`, a short way at a
  time). At each segment's middle two pieces meet on the same isosurface, and the one that shows
  swaps there. Every keyframe shows its own surface; each topology travels half a segment at
  most, so it never has to become a shape far from its own (one sphere mesh dragged onto a cube left
  a crater and 20 % of its vertices off the surface); within a piece, vertices move continuously.

Measured on the shipped demo model (``att3d bench``'s chain and "a red sphere" → "a yellow sphere"
→ "a blue cube"): the figures are in the README and printed by ``att3d bench``
(:mod:`backend.chain_quality`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def chain_schedule(positions: Sequence[float], steps: int) -> list[tuple[int, float, float]]:
    """Steps of a chain: (segment index, α within the segment, chain position) for each mesh.

    ``steps`` meshes per segment (its start included, its end excluded), then the last keyframe:
    ``(K − 1) · steps + 1`` meshes in all.
    """
    if len(positions) < 2:
        raise ValueError("a chain needs at least two keyframes")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    out = []
    for k in range(len(positions) - 1):
        for s in range(steps):
            a = s / steps
            out.append((k, a, positions[k] + a * (positions[k + 1] - positions[k])))
    out.append((len(positions) - 2, 1.0, float(positions[-1])))
    return out


def step_label(prompts: Sequence[str], k: int, a: float) -> str:
    if a == 0:
        return prompts[k]
    if a == 1:
        return prompts[k + 1]
    return f"{prompts[k]} → {prompts[k + 1]} @ {a:.2f}"


def segment_alpha(t: float, positions: Sequence[float]) -> tuple[int, float]:
    """(segment, α) of chain position ``t``: ``t = positions[k] + α (positions[k + 1] − positions[k])``."""
    k = int(np.clip(np.searchsorted(np.asarray(positions), t, side="right") - 1, 0, len(positions) - 2))
    a = (t - positions[k]) / (positions[k + 1] - positions[k])
    return k, float(np.clip(a, 0.0, 1.0))


@dataclass
class PlannedPiece:
    """One topology: extracted at step ``anchor``, tracked over ``xs`` (step indices; a ``.5`` is the
    middle between two steps), with its vertices and converged share at each."""

    anchor: int
    faces: np.ndarray
    xs: list[float]
    vertices: list[np.ndarray]
    on_surface: list[float]
    held: list[bool]
    prepared: Any = None  # what ``project`` needs for this topology (plan_pieces' ``prepare``)

    @property
    def key(self) -> int:
        return self.xs.index(self.anchor)


# an extraction's cost in settles, for progress (demo model, 128³, CPU: a sparse extraction ≈ 0.09 s,
# a settle 0.04–0.1 s)
EXTRACT_WORK = 1.5


def plan_pieces(anchors: Sequence[int], extract: Callable[[int], tuple[np.ndarray, np.ndarray]],
                project: Callable[[float, np.ndarray, np.ndarray, Any], tuple[np.ndarray, np.ndarray]],
                prepare: Callable[[np.ndarray, np.ndarray], Any] = lambda v, f: None,
                threshold: float = 0.99, tick: Callable[[float], None] = lambda frac: None) -> list[PlannedPiece]:
    """Topologies for the chain of steps from the first anchor to the last, one per anchor step.

    Starts from ``anchors`` (the keyframes' steps). Two neighbouring anchors meet half-way: each is
    tracked there, state by state (``project(x, vertices, faces, prepared)``: onto step ``x``'s
    isosurface, with the converged mask). Where less than ``threshold`` of the vertices of a state
    between them converge (the shape changes too much for one topology: a plate that vanishes, a
    hole that opens), the step half-way between becomes an anchor too, and so on, down to
    neighbouring steps. Where even neighbouring steps cannot be tracked to their middle, that side
    holds its last good state (its anchor's mesh) up to the swap: a pop between two true surfaces
    rather than frames of a mesh that missed its surface (on the bench chain such middles had 89 %
    of their vertices on the surface and 6 % of their faces inward). ``extract(i)`` gives step
    ``i``'s own mesh; ``prepare(vertices, faces)`` what ``project`` needs per topology (its
    neighbour operator).
    """
    meshes: dict[int, tuple[np.ndarray, np.ndarray, Any]] = {}
    paths: dict[tuple[int, int], list[tuple[np.ndarray, float]]] = {}
    anchors = sorted(set(int(a) for a in anchors))
    gaps = list(zip(anchors, anchors[1:]))
    walking: list[tuple[int, int]] = []  # the gap being walked (popped from gaps)
    accepted: dict[tuple[int, int], tuple[list, list]] = {}
    splits = [0]
    done = [0.0, 0.0]  # work finished (a settle is 1), and the fraction last reported

    def report() -> None:
        """Progress (and a cancel point) before each piece of work: the work done over the work done
        and the work the open gaps still need, with as many splits to come as seen so far (an
        unforeseen split adds work: the fraction then holds, it never goes back)."""
        left, unextracted = 0.0, set()
        for a, b in walking + gaps:
            half = (b - a) / 2
            for i, d in ((a, 1), (b, -1)):
                left += max(0, int(half) - len(paths.get((i, d), []))) + (half != int(half))
                if i not in meshes:
                    unextracted.add(i)
        left += EXTRACT_WORK * len(unextracted)
        # splits so far predict those to come: each adds an anchor and walks from it
        rate = splits[0] / max(1, splits[0] + len(accepted))
        left += rate * sum(EXTRACT_WORK + (b - a) / 2 for a, b in walking + gaps if b - a >= 2)
        done[1] = max(done[1], min(0.95, done[0] / max(done[0] + left, 1e-9)))
        tick(done[1])

    def mesh(i: int) -> tuple[np.ndarray, np.ndarray, Any]:
        if i not in meshes:
            report()
            v, f = extract(i)
            meshes[i] = (v, f, prepare(v, f))
            done[0] += EXTRACT_WORK
        return meshes[i]

    def run(i: int, x: float, v: np.ndarray) -> tuple[np.ndarray, float]:
        f, prep = mesh(i)[1], mesh(i)[2]
        report()
        v2, ok = project(x, v, f, prep)
        done[0] += 1
        return v2, float(ok.mean()) if len(ok) else 1.0

    def walk(i: int, direction: int, to: float, give_up: bool) -> list[tuple[float, np.ndarray, float]]:
        """States from anchor ``i`` (excluded) towards ``to`` (included), integer steps cached. With
        ``give_up``, stops at the first state below the threshold (the gap will be split anyway)."""
        path = paths.setdefault((i, direction), [])
        out: list[tuple[float, np.ndarray, float]] = []
        n_int = int(np.floor(abs(to - i) + 1e-9))
        for d in range(1, n_int + 1):
            if len(path) < d:
                prev = path[-1][0] if path else mesh(i)[0]
                path.append(run(i, i + direction * d, prev))
            out.append((float(i + direction * d), *path[d - 1]))
            if give_up and out[-1][2] < threshold:
                return out
        if abs(abs(to - i) - n_int) > 1e-9:  # a middle between two steps
            prev = path[n_int - 1][0] if n_int else mesh(i)[0]
            out.append((to, *run(i, to, prev)))
        return out

    def _hold(side: list, i: int) -> list:
        out, last = [], mesh(i)[0]
        for x, v, ok in side:
            if ok >= threshold:
                out.append((x, v, ok, False))
                last = v
            else:
                out.append((x, last, ok, True))
        return out

    while gaps:
        a, b = gaps.pop(0)
        walking[:] = [(a, b)]
        m = (a + b) / 2
        splittable = b - a >= 2
        fwd = walk(a, 1, m, splittable)
        bwd = walk(b, -1, m, splittable) if min([s[2] for s in fwd], default=1.0) >= threshold or not splittable \
            else []
        worst = min([s[2] for s in fwd + bwd], default=1.0)
        if worst < threshold and splittable:
            c = (a + b) // 2
            gaps[:0] = [(a, c), (c, b)]
            splits[0] += 1
            continue
        if worst < threshold:  # neighbouring steps: hold each failing side at its last good state
            accepted[(a, b)] = (_hold(fwd, a), _hold(bwd, b))
        else:
            accepted[(a, b)] = ([(*st, False) for st in fwd], [(*st, False) for st in bwd])
    final = sorted({i for gap in accepted for i in gap} | set(anchors))
    pieces = []
    for j, i in enumerate(final):
        before = accepted[(final[j - 1], i)][1][::-1] if j > 0 else []
        after = accepted[(i, final[j + 1])][0] if j + 1 < len(final) else []
        v, f, prep = mesh(i)
        states = before + [(float(i), v, 1.0, False)] + after
        pieces.append(PlannedPiece(i, f, [s[0] for s in states], [s[1] for s in states], [s[2] for s in states],
                                   [s[3] for s in states], prep))
    return pieces


def largest_move(a: np.ndarray, b: np.ndarray) -> float:
    """The largest distance a vertex moves between two states of one topology."""
    return float(np.sqrt(((b - a) ** 2).sum(1).max())) if len(a) else 0.0


def refine_pieces(pieces: list[PlannedPiece], segment: Callable[[float], int], cap: int,
                  project: Callable[[float, np.ndarray, np.ndarray, Any], tuple[np.ndarray, np.ndarray]],
                  miss: Callable[[float, np.ndarray], float], voxel: float, move_voxels: float = 1.0,
                  miss_voxels: float = 0.5, threshold: float = 0.99, max_total: int | None = None,
                  estimate: Callable[[float, float, np.ndarray], float] | None = None,
                  tick: Callable[[float], None] = lambda frac: None) -> int:
    """States in between, where the surface moves: a shape key blends two stored states linearly, so
    where the surface does not move linearly between them, the in-betweens are visibly off it.

    Between two neighbouring stored states of a piece whose largest vertex move exceeds
    ``move_voxels`` (less cannot miss by much), the linear blend of the two is tested against the
    middle state's surface: ``miss(x, vertices)``, in voxels (a high percentile of the vertices'
    distances to step ``x``'s isosurface). Where it misses by more than ``miss_voxels``, the middle
    is settled from the blend (``project(x, vertices, faces, prepared)``) and stored when it converges
    (``threshold``), and its two halves are tested in turn; largest moves first, until a segment
    (``segment(x)``: the keyframe segment of step ``x``) stores ``cap`` chain positions, and while the
    pieces hold fewer than ``max_total`` states in all. Held states (a pop, see :func:`plan_pieces`)
    are left as they are. Returns the number of states inserted; ``tick(fraction)`` before each test
    (a cancel point). ``estimate(x0, x1, vertices)``, if given, is a cheap estimate of the miss (from
    what the neighbouring states already have): a blend it puts within half of ``miss_voxels`` is not
    tested (``miss`` builds the middle state's field, the cost of a test).
    """
    import heapq

    stored: dict[int, set[float]] = {}
    for p in pieces:
        for x in p.xs:
            stored.setdefault(segment(x), set()).add(x)
    queue: list[tuple[float, int, float]] = []  # (−move, piece, the earlier state's x)

    def consider(n: int, j: int) -> None:
        p = pieces[n]
        if not (p.held[j] or p.held[j + 1]):
            move = largest_move(p.vertices[j], p.vertices[j + 1]) / voxel
            if move > move_voxels:
                heapq.heappush(queue, (-move, n, p.xs[j]))

    for n, p in enumerate(pieces):
        for j in range(len(p.xs) - 1):
            consider(n, j)
    inserted, tested, total = 0, 0, sum(len(p.xs) for p in pieces)
    while queue and (max_total is None or total < max_total):
        tick(tested / (tested + len(queue)))
        _, n, x0 = heapq.heappop(queue)
        p = pieces[n]
        j = p.xs.index(x0)
        x = (p.xs[j] + p.xs[j + 1]) / 2
        tested += 1
        if len(stored.get(segment(x), ())) >= cap:
            continue
        blend = (p.vertices[j] + p.vertices[j + 1]) / 2
        if estimate is not None and estimate(p.xs[j], p.xs[j + 1], blend) <= miss_voxels / 2:
            continue
        if miss(x, blend) <= miss_voxels:
            continue
        v, ok = project(x, blend, p.faces, p.prepared)
        share = float(ok.mean()) if len(ok) else 1.0
        if share < threshold:
            continue
        p.xs.insert(j + 1, x)
        p.vertices.insert(j + 1, v)
        p.on_surface.insert(j + 1, share)
        p.held.insert(j + 1, False)
        stored.setdefault(segment(x), set()).add(x)
        inserted += 1
        total += 1
        consider(n, j)
        consider(n, j + 1)
    return inserted


class NeighborMean:
    """Each vertex's one-ring mean of ``[V, k]`` values (torch): a sparse CSR product (4× faster than
    ``index_add`` on the CPU, with int32 indices). :meth:`rows` gives the same for a subset of the
    vertices, a product with only their rows (the relaxed region of a settle is often a tenth of
    the mesh)."""

    def __init__(self, faces: np.ndarray, n_vertices: int, device: Any = "cpu") -> None:
        import scipy.sparse as sp
        import torch

        f = faces.astype(np.int64).reshape(-1, 3)
        a, b = f.ravel(), f[:, [1, 2, 0]].ravel()  # each face's three directed edges
        # both directions of every edge, once: coo → csr sums the duplicates (linear, no global sort)
        adj = sp.coo_matrix((np.ones(2 * len(a), np.float32), (np.concatenate([a, b]), np.concatenate([b, a]))),
                            shape=(n_vertices, n_vertices)).tocsr()  # (canonical: sorted, summed)
        deg = np.diff(adj.indptr)
        self.n = n_vertices
        self.crow = torch.from_numpy(adj.indptr.astype(np.int64)).to(device)
        self.col = torch.from_numpy(adj.indices.astype(np.int32)).to(device)
        self.deg = torch.from_numpy(deg).to(device)
        self.val = torch.from_numpy(np.repeat(1.0 / np.maximum(deg, 1), deg).astype(np.float32)).to(device)
        self.matrix = self._csr(self.crow, self.col, self.val, n_vertices)
        self.faces = torch.from_numpy(f).to(device)
        self.corners = tuple(c.contiguous() for c in self.faces.T)  # each face's first, second, third

    def _csr(self, crow: Any, col: Any, val: Any, rows: int) -> Any:
        import warnings

        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
            # int32 indices: the CPU product converts int64 ones on every call (a third of its time)
            return torch.sparse_csr_tensor(crow.int(), col.int(), val, (rows, self.n), check_invariants=False)

    def __call__(self, x: Any) -> Any:
        return self.matrix @ x

    def rows(self, idx: Any) -> Callable[[Any], Any]:
        """The one-ring means of the vertices ``idx`` only (``[len(idx), k]``), of ``[V, k]`` values."""
        import torch

        deg = self.deg[idx]
        crow = torch.cat([deg.new_zeros(1), deg.cumsum(0)])
        # the entries of the chosen rows: each row's start, then consecutive
        take = torch.repeat_interleave(self.crow[idx] - crow[:-1], deg) + torch.arange(int(crow[-1]), device=deg.device)
        sub = self._csr(crow, self.col[take], self.val[take], len(idx))
        return lambda x: sub @ x


FieldFn = Callable[[Any], tuple[Any, Any]]  # points [N, 3] (torch) → density [N], gradient [N, 3]


def model_field(model: Any, mod: Any) -> FieldFn:
    """The model's density at points and its gradient (autograd): one prompt's field."""
    import torch

    one = mod.select([0]).detach()

    def density_grad(p):
        with torch.enable_grad():
            p = p.detach().requires_grad_(True)
            d = model.density(one, p[None])[0]
            (g,) = torch.autograd.grad(d.sum(), p)
        return d.detach(), g.contiguous()  # (a field constant in places gives an expanded gradient)

    return density_grad


def state_field(model: Any, mod: Any, resolution: int, coarse: Any = None) -> FieldFn:
    """The field a chain's states lie on at this lattice: up to
    :data:`~backend.mesh.LOWPASS_MAX_RESOLUTION`, the low-passed density that Generate's default
    smoothing extracts (a small lattice, :func:`~backend.mesh.lowpass_coarse`; ``coarse``: it, if
    known), read by trilinear interpolation — cheap to settle on, and the same surface as the
    artist's Generate before Taubin; above it, the model's own density."""
    from .mesh import lattice_field, lowpass_coarse, uses_lowpass

    if not uses_lowpass(1, resolution):
        return model_field(model, mod)
    return lattice_field(lowpass_coarse(model, mod) if coarse is None else coarse, model.config.bound)


def settle_on_isosurface(model: Any, mod: Any, vertices: np.ndarray, neighbor_mean: NeighborMean, voxel: float,
                         iterations: int = 6, relax: float = 0.5, relax_passes: int = 10,
                         settled: float = 0.1, hopeless: float = 0.03, relax_from: float = 0.5, rings: int = 3,
                         predict: int = 0, predict_below: float = 0.97,
                         field: FieldFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move a tracked mesh onto this state's isosurface, keeping its triangles even: the isosurface of
    ``field`` (default: the model's own density, :func:`model_field`; chains pass the low-passed one).

    Damped Newton steps along the density gradient (each at most half a voxel... of the coarse
    lattice, ``2 · bound / 64``), with tangential Laplacian relaxation where the mesh moves: each
    vertex moves part of the way to its neighbours' mean within the surface's tangent plane. Without
    it, a tracked mesh that shrinks (a cube's corners rounding into a sphere) folds: 5.4 % of a cube
    mesh's faces pointed inward halfway to a sphere, 0.19 % with it (demo model, 128³). Only the
    region around vertices whose step is longer than ``relax_from`` voxels (``rings`` neighbours
    wide) relaxes, and only vertices that moved, or are still more than ``settled`` voxels from the
    surface, are evaluated again: the rest of the mesh stays put.
    Vertices that end more than a quarter voxel from the surface (``|σ − ℓ| / |∇σ|``) fall back to
    their neighbours' mean. Returns the vertices and the mask of those on the surface, where the
    corners of a face that ends facing into the object (a fold) do not count: without that the bench
    chain's cone → torus middle was used with 6 % of its faces inward, all of its vertices converged.

    Early ends: after the first step, every vertex within ``settled`` voxels of the surface (the
    mesh is done), or more than ``hopeless`` of them farther away than the steps left can carry them
    (the shape changed too much for this topology; :func:`plan_pieces` will not use the state).
    With ``predict`` (k > 0), every k-th vertex first settles on its own (Newton steps, no
    neighbours: an eighth of the work): when fewer than ``predict_below`` of those reach the surface
    the state fails there, at that cost, its mask the sample's verdicts (each standing for the k
    vertices after it).
    """
    import torch

    cfg = model.config
    level = cfg.iso_density
    max_step = 2 * cfg.bound / 64
    x = torch.tensor(vertices, dtype=torch.float32, device=mod.v.device)  # a copy: steps write in place

    def distance(d, g):  # first-order distance to the isosurface
        return (d - level).abs() / g.norm(dim=-1).clamp_min(1e-8)

    def newton(d, g):
        gg = g.pow(2).sum(-1, keepdim=True) + 1e-8
        step = -(d - level)[:, None] * g / gg
        return step * (max_step / step.norm(dim=-1, keepdim=True).clamp_min(max_step))

    def descend(x, field, iterations, relax):
        """Newton steps onto ``field``'s isosurface, relaxing where the mesh moves: (x, distances,
        the field's gradient there). Each step works on the vertices still moving only."""
        d, g = field(x)
        dist = distance(d, g)
        for it in range(iterations + 1):
            if it == iterations or it >= 1 and (
                    float(dist.max()) <= settled * voxel
                    or float((dist > (iterations - it) * max_step).float().mean()) > hopeless):
                break
            moving = dist > settled * voxel  # the settled vertices stay put
            act = moving.nonzero()[:, 0]
            step = newton(d[act], g[act])
            large = step.norm(dim=-1) > relax_from * voxel
            # the last Newton steps land the relaxed vertices
            if relax and relax_passes and it < iterations - 2 and bool(large.any()):
                region = torch.zeros(len(x), 1, device=x.device)
                region[act[large]] = 1.0
                for _ in range(rings):
                    region = torch.maximum(region, neighbor_mean(region))
                x.index_add_(0, act, step)
                inside = (region[:, 0] > 0).nonzero()[:, 0]
                gi = g[inside]
                n = gi / (gi.pow(2).sum(-1, keepdim=True) + 1e-8).sqrt()
                # the region's vertices only (the rest hold it in place): their rows of the operator
                mean_inside = neighbor_mean.rows(inside)
                xi = x[inside]
                ones = xi.new_ones(3, 1)
                for _ in range(relax_passes):
                    lap = mean_inside(x) - xi
                    xi += relax * (lap - ((lap * n) @ ones) * n)  # its tangential part
                    x.index_copy_(0, inside, xi)
                x.clamp_(-cfg.bound, cfg.bound)
                moving[inside] = True
                act = moving.nonzero()[:, 0]
            else:
                x[act] = (x[act] + step).clamp(-cfg.bound, cfg.bound)
            if len(act):
                d_act, g_act = field(x[act])
                d[act], g[act], dist[act] = d_act, g_act, distance(d_act, g_act)
        return x, dist, g

    field = field or model_field(model, mod)
    if predict > 1 and len(x) >= 8 * predict:
        _, sample_dist, _ = descend(x[::predict].clone(), field, iterations, 0.0)
        sample_ok = sample_dist <= 0.25 * voxel
        if float(sample_ok.float().mean()) < predict_below:
            return vertices.copy(), sample_ok.repeat_interleave(predict)[:len(x)].cpu().numpy()
    x, dist, g = descend(x, field, iterations, relax)
    ok = (dist <= 0.25 * voxel) & torch.isfinite(x).all(-1)
    # a fold is on the surface too: a face whose normal points into the object (along the density's
    # gradient at its corners) takes its corners off the surface
    f, (f0, f1, f2) = neighbor_mean.faces, neighbor_mean.corners
    x0 = x.index_select(0, f0)
    normal = torch.linalg.cross(x.index_select(0, f1) - x0, x.index_select(0, f2) - x0)
    toward = g.index_select(0, f0) + g.index_select(0, f1) + g.index_select(0, f2)
    ok[f[(normal * toward).sum(-1) > 0].reshape(-1)] = False
    if not bool(ok.all()):
        x = torch.where(torch.isfinite(x), x, torch.from_numpy(vertices).to(x.device))
        for _ in range(3):
            x = torch.where(ok[:, None], x, neighbor_mean(x))
    return x.cpu().numpy().astype(np.float32), ok.cpu().numpy()
