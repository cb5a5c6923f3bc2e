"""The Shapes world: a deterministic procedural prompt set with analytic ground truth.

In the spirit of the paper's compositional "{animal} {activity} {theme} {hat}" set (App. B.1.12),
every prompt is ``"a {colour} {shape} {accessory}"`` where the accessory has its own colour and sits
on, around, under or beside the main shape::

    a red cube                        a red cube wearing a blue party hat
    a red cube with a blue ring around it
    a red cube with a blue ball on top
    a red cube on a blue plate        a red cube with blue ears
    an orange sphere                  (the article an artist writes)

8 shapes × 8 colours × (5 accessories × 6 accessory colours + none) = 1984 prompts, then the paper's
seasonal tree (Fig. 3, "… in the spring / summer / fall / winter"): a trunk and a canopy whose season
changes them — spring pale green with pink blossom, summer full green, fall orange-red, winter a
smaller bare grey-brown crown under snow — with the same accessories::

    a tree in the winter              a tree in the fall with a red ball on top

4 seasons × 31 = 124 more, 2108 in all. For a tree the season plays the colour's part
(``Prompt.color`` is the season), so "pairs that differ in colour" include the season pairs. Each prompt maps
to a :class:`Scene`, a union of coloured signed-distance primitives with a torch field
``scene.field(points [B, N, 3]) -> (density [B, N], albedo [B, N, 3])`` (density
``max_density · sigmoid(−sdf / eps)``) that renders with the same volume renderer as the ATT3D
models. Frame: Z up, the object's front faces −Y, everything inside |x| < 0.8 and centred (the
models' density bias favours radius ≈ 0.5).

Nothing here is random except the seen/unseen splits, which are fixed by a seed and stratified so
that every shape, colour, accessory and accessory colour appears in the seen set. The trees came
later and are split on their own, so the first 1984 prompts' splits are exactly what they were
(models trained before stay comparable); the four plain season trees are in every seen split.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.fileio import atomic_write_text

SHAPES = ("sphere", "cube", "cylinder", "cone", "torus", "capsule", "pyramid", "diamond")
COLORS = {
    "red": (0.85, 0.10, 0.10),
    "orange": (1.00, 0.55, 0.05),
    "yellow": (0.95, 0.85, 0.10),
    "green": (0.10, 0.65, 0.20),
    "blue": (0.10, 0.25, 0.90),
    "purple": (0.55, 0.15, 0.75),
    "pink": (1.00, 0.50, 0.75),
    "black": (0.08, 0.08, 0.08),
}
ACCESSORY_COLORS = ("red", "yellow", "green", "blue", "pink", "black")
#: accessory → phrase template (``{c}`` is the accessory colour)
ACCESSORIES = {
    "party hat": "wearing a {c} party hat",
    "ring": "with a {c} ring around it",
    "ball": "with a {c} ball on top",
    "plate": "on a {c} plate",
    "ears": "with {c} ears",
}
NONE = "none"
#: the seasonal tree: its "colour" is the season
TREE = "tree"
SEASONS = ("spring", "summer", "fall", "winter")
ALL_SHAPES = (*SHAPES, TREE)
SPLIT_FRACTIONS = (0.125, 0.5)
DEFAULT_SEED = 0
#: scene density: ``MAX_DENSITY · sigmoid(−sdf / EPS)``
MAX_DENSITY = 200.0
EPS = 0.01
#: every scene is scaled by this about the origin (largest extent ≈ 0.78)
SCALE = 1.12
#: GT renders only march inside this sphere (objects lie well inside it)
RENDER_RADIUS = 1.0
#: the fixed evaluation views: front, right, back, left at elevation 20°, distance 2, focal 1
EVAL_AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
EVAL_ELEVATION = 20.0
EVAL_DISTANCE = 2.0
EVAL_FOCAL = 1.0

# main shapes span z ∈ [BOTTOM, TOP] (cone/pyramid/diamond apexes a little higher)
TOP = 0.38
BOTTOM = -0.38


@dataclass(frozen=True)
class Prompt:
    index: int
    text: str
    shape: str
    color: str
    accessory: str  # one of ACCESSORIES or "none"
    accessory_color: str | None


@dataclass
class Part:
    """One coloured primitive: ``kind`` with parameters, translated by ``center``."""

    kind: str
    params: dict
    center: tuple[float, float, float]
    color: tuple[float, float, float]
    name: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "params": self.params, "center": list(self.center),
                "color": list(self.color)}


# -- signed distance primitives (points [..., 3] in the part's frame) -------------------------------

def _sd_sphere(p, r):
    return p.norm(dim=-1) - r


def _sd_box(p, half):
    q = p.abs() - torch.tensor(half, dtype=p.dtype, device=p.device)
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)


def _sd_cylinder(p, r, h):  # vertical, radius r, half height h
    d = torch.stack([p[..., :2].norm(dim=-1) - r, p[..., 2].abs() - h], dim=-1)
    return d.clamp_min(0).norm(dim=-1) + d.max(dim=-1).values.clamp_max(0)


def _sd_cone(p, r, z0, z1, square=False):
    """Cone (or square pyramid) with base radius r at z0 and apex at z1 (a Lipschitz bound)."""
    rad = p[..., :2].abs().max(dim=-1).values if square else p[..., :2].norm(dim=-1)
    hgt = z1 - z0
    cos = hgt / math.hypot(hgt, r)
    side = (rad - r * (z1 - p[..., 2]) / hgt) * cos
    return torch.maximum(side, torch.maximum(z0 - p[..., 2], p[..., 2] - z1))


def _sd_torus_xz(p, big, small):  # standing ring, hole facing the front (−Y)
    q = torch.stack([torch.stack([p[..., 0], p[..., 2]], -1).norm(dim=-1) - big, p[..., 1]], dim=-1)
    return q.norm(dim=-1) - small


def _sd_torus_xy(p, big, small):  # lying flat
    q = torch.stack([p[..., :2].norm(dim=-1) - big, p[..., 2]], dim=-1)
    return q.norm(dim=-1) - small


def _sd_capsule(p, a, r):  # vertical segment z ∈ [−a, a]
    z = p[..., 2].clamp(-a, a)
    return torch.stack([p[..., 0], p[..., 1], p[..., 2] - z], -1).norm(dim=-1) - r


def _sd_octahedron(p, sx, sz):
    return (p[..., 0].abs() / sx + p[..., 1].abs() / sx + p[..., 2].abs() / sz - 1) * (1 / math.sqrt(
        1 / sx ** 2 + 1 / sx ** 2 + 1 / sz ** 2))


def part_sdf(part: Part, points: torch.Tensor) -> torch.Tensor:
    p = points - torch.tensor(part.center, dtype=points.dtype, device=points.device)
    k, a = part.kind, part.params
    if k == "sphere":
        return _sd_sphere(p, a["r"])
    if k == "box":
        return _sd_box(p, a["half"])
    if k == "cylinder":
        return _sd_cylinder(p, a["r"], a["h"])
    if k == "cone":
        return _sd_cone(p, a["r"], a["z0"], a["z1"])
    if k == "pyramid":
        return _sd_cone(p, a["r"], a["z0"], a["z1"], square=True)
    if k == "torus_xz":
        return _sd_torus_xz(p, a["R"], a["r"])
    if k == "torus_xy":
        return _sd_torus_xy(p, a["R"], a["r"])
    if k == "capsule":
        return _sd_capsule(p, a["a"], a["r"])
    if k == "octahedron":
        return _sd_octahedron(p, a["sx"], a["sz"])
    if k == "cap":  # a sphere's part above height z (of its own frame): snow on a crown
        return torch.maximum(_sd_sphere(p, a["r"]), a["z"] - p[..., 2])
    raise ValueError(f"unknown primitive {k!r}")


# main shapes, centred, z from BOTTOM to about TOP; "top" is where a hat or ball sits
_MAIN = {
    "sphere": (("sphere", {"r": 0.40}), 0.40),
    "cube": (("box", {"half": [0.32, 0.32, 0.32]}), 0.32),
    "cylinder": (("cylinder", {"r": 0.30, "h": 0.36}), 0.36),
    "cone": (("cone", {"r": 0.38, "z0": -0.36, "z1": 0.42}), 0.36),
    "torus": (("torus_xz", {"R": 0.27, "r": 0.11}), 0.38),
    "capsule": (("capsule", {"a": 0.18, "r": 0.21}), 0.39),
    "pyramid": (("pyramid", {"r": 0.36, "z0": -0.34, "z1": 0.42}), 0.36),
    "diamond": (("octahedron", {"sx": 0.34, "sz": 0.44}), 0.40),
}
_BOTTOM = {"sphere": -0.40, "cube": -0.32, "cylinder": -0.36, "cone": -0.36, "torus": -0.38,
           "capsule": -0.39, "pyramid": -0.34, "diamond": -0.44, TREE: BOTTOM}


def _accessory_parts(accessory: str, shape: str, color: tuple[float, float, float], top: float) -> list[Part]:
    bottom = _BOTTOM[shape]
    if accessory == "party hat":
        return [Part("cone", {"r": 0.15, "z0": 0.0, "z1": 0.34}, (0.0, 0.0, top - 0.03), color, "party hat")]
    if accessory == "ring":
        return [Part("torus_xy", {"R": 0.56, "r": 0.055}, (0.0, 0.0, 0.0), color, "ring")]
    if accessory == "ball":
        return [Part("sphere", {"r": 0.17}, (0.0, 0.0, top + 0.14), color, "ball")]
    if accessory == "plate":
        return [Part("cylinder", {"r": 0.62, "h": 0.035}, (0.0, 0.0, bottom - 0.03), color, "plate")]
    if accessory == "ears":
        x = 0.26 if shape != "torus" else 0.30
        return [Part("sphere", {"r": 0.13}, (s * x, 0.0, top - 0.04), color, "ears") for s in (-1.0, 1.0)]
    raise ValueError(f"unknown accessory {accessory!r}")


# the tree: a brown trunk under a round canopy (centre CANOPY_Z) whose size and colours are the season's
TRUNK_COLOR = (0.36, 0.22, 0.10)
CANOPY_Z = 0.10
#: season → (canopy radius, canopy colour); spring adds blossom, winter a snow cap
TREE_SEASONS = {
    "spring": (0.28, (0.62, 0.86, 0.45)),   # pale new leaves
    "summer": (0.31, (0.14, 0.50, 0.12)),   # full, dark leaf green
    "fall": (0.28, (0.90, 0.32, 0.06)),     # orange-red
    "winter": (0.24, (0.45, 0.37, 0.31)),   # a bare crown of grey-brown twigs
}
BLOSSOM_COLOR = (1.00, 0.60, 0.80)
SNOW_COLOR = (0.96, 0.96, 0.98)
# blossom clusters on the spring canopy: unit directions (x, y, z), spread so every view sees some
_BLOSSOM_DIRS = ((0.0, -1.0, 0.25), (0.8, -0.55, 0.2), (-0.8, -0.55, 0.2), (0.55, -0.4, 0.75), (-0.55, -0.4, 0.75),
                 (0.9, 0.3, -0.25), (-0.9, 0.3, -0.25), (0.0, 0.75, 0.65), (0.35, 0.9, -0.1), (-0.35, 0.9, -0.1),
                 (0.0, -0.75, -0.6), (0.0, 0.1, 1.0))


def tree_parts(season: str) -> list[Part]:
    """The tree of a season: trunk, canopy, and the season's extras (blossom, snow)."""
    r, color = TREE_SEASONS[season]
    parts = [Part("cylinder", {"r": 0.075, "h": 0.14}, (0.0, 0.0, BOTTOM + 0.14), TRUNK_COLOR, "trunk"),
             Part("sphere", {"r": r}, (0.0, 0.0, CANOPY_Z), color, "canopy")]
    if season == "spring":
        for k, d in enumerate(_BLOSSOM_DIRS):
            n = math.sqrt(sum(x * x for x in d))
            c = tuple(CANOPY_Z * (i == 2) + (r - 0.015) * x / n for i, x in enumerate(d))
            parts.append(Part("sphere", {"r": 0.06}, c, BLOSSOM_COLOR, f"blossom {k}"))
    if season == "winter":  # snow on the crown's upper part: a slightly larger cap, nearest up there
        parts.append(Part("cap", {"r": r + 0.02, "z": 0.07}, (0.0, 0.0, CANOPY_Z), SNOW_COLOR, "snow"))
    return parts


def _top(shape: str, color: str) -> float:
    """Where a hat or ball sits on the main shape."""
    return CANOPY_Z + TREE_SEASONS[color][0] if shape == TREE else _MAIN[shape][1]


class Scene:
    """A union of coloured SDF parts with a torch field for the volume renderer."""

    def __init__(self, parts: Sequence[Part], max_density: float = MAX_DENSITY, eps: float = EPS,
                 scale: float = SCALE) -> None:
        self.parts = list(parts)
        self.max_density = float(max_density)
        self.eps = float(eps)
        self.scale = float(scale)

    def sdf_and_color(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SDF ``[..., N]`` of the union and the colour of the nearest part ``[..., N, 3]``."""
        q = points / self.scale
        d = torch.stack([part_sdf(p, q) for p in self.parts], dim=-1) * self.scale  # [..., N, P]
        sdf, idx = d.min(dim=-1)
        colors = torch.tensor([p.color for p in self.parts], dtype=points.dtype, device=points.device)
        return sdf, colors[idx]

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        return self.sdf_and_color(points)[0]

    def field(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.is_grad_enabled() and points.requires_grad:
            # normals for lit renders: a sparse analytic-by-differences gradient (fast; see _Density)
            with torch.no_grad():
                albedo = self.sdf_and_color(points)[1]
            return _Density.apply(points, self), albedo
        sdf, albedo = self.sdf_and_color(points)
        return self.max_density * torch.sigmoid(-sdf / self.eps), albedo

    def to_dict(self) -> dict:
        return {"max_density": self.max_density, "eps": self.eps, "scale": self.scale,
                "parts": [p.to_dict() for p in self.parts]}


class _Density(torch.autograd.Function):
    """``max_density · sigmoid(−sdf/eps)`` whose gradient is evaluated only near the surface (where
    the sigmoid's slope is not negligible), with central differences of the SDF. Autograd through
    the primitives costs ~10× the forward; this costs a few percent. Once differentiable."""

    @staticmethod
    def forward(ctx, points, scene):
        sdf = scene.sdf(points)
        ctx.save_for_backward(points, sdf)
        ctx.scene = scene
        return scene.max_density * torch.sigmoid(-sdf / scene.eps)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        points, sdf = ctx.saved_tensors
        scene = ctx.scene
        grad = torch.zeros_like(points)
        near = sdf.abs() < 12 * scene.eps
        if near.any():
            p = points[near]
            s = torch.sigmoid(-sdf[near] / scene.eps)
            dd = -scene.max_density / scene.eps * s * (1 - s)
            h = 1e-3
            eye = torch.eye(3, dtype=p.dtype, device=p.device) * h
            g = torch.stack([(scene.sdf(p + eye[k]) - scene.sdf(p - eye[k])) / (2 * h) for k in range(3)], -1)
            grad[near] = (grad_out[near] * dd)[..., None] * g
        return grad, None


def batch_field(scenes: Sequence[Scene]):
    """A renderer field for a batch of scenes: points ``[B, N, 3]``, scene b for row b."""

    def f(points: torch.Tensor):
        # unbind, not points[b]: indexing would backpropagate B full-size zero tensors
        outs = [s.field(p) for p, s in zip(points.unbind(0), scenes)]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])

    return f


# -- the world ---------------------------------------------------------------------------------------

def article(word: str) -> str:
    """The indefinite article an artist writes before ``word`` ("an orange", "a red")."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def prompt_text(shape: str, color: str, accessory: str, accessory_color: str | None) -> str:
    base = f"a tree in the {color}" if shape == TREE else f"{article(color)} {color} {shape}"
    if accessory == NONE:
        return base
    return f"{base} {ACCESSORIES[accessory].format(c=accessory_color)}"


class ShapesWorld:
    """All prompts, their scenes and the seen/unseen splits (deterministic for a seed)."""

    def __init__(self, seed: int = DEFAULT_SEED) -> None:
        self.seed = int(seed)
        prompts = []
        for shape in SHAPES:
            for color in COLORS:
                combos = [(NONE, None)] + [(a, c) for a in ACCESSORIES for c in ACCESSORY_COLORS]
                for acc, acc_color in combos:
                    prompts.append(Prompt(len(prompts), prompt_text(shape, color, acc, acc_color), shape, color,
                                          acc, acc_color))
        self.n_base = len(prompts)  # the first 1984: everything but the trees
        for season in SEASONS:
            for acc, acc_color in [(NONE, None)] + [(a, c) for a in ACCESSORIES for c in ACCESSORY_COLORS]:
                prompts.append(Prompt(len(prompts), prompt_text(TREE, season, acc, acc_color), TREE, season,
                                      acc, acc_color))
        self.prompts: list[Prompt] = prompts
        self.texts: list[str] = [p.text for p in prompts]
        self._index = {t: i for i, t in enumerate(self.texts)}
        self._order = self._stratified_order()
        self._tree_order = self._tree_split_order()

    def __len__(self) -> int:
        return len(self.prompts)

    def index(self, text: str) -> int:
        try:
            return self._index[text]
        except KeyError:
            raise ValueError(f"{text!r} is not a Shapes-world prompt") from None

    def scene(self, prompt: int | str | Prompt) -> Scene:
        if isinstance(prompt, Prompt):
            p = prompt
        else:
            p = self.prompts[prompt if isinstance(prompt, int) else self.index(prompt)]
        if p.shape == TREE:
            parts = tree_parts(p.color)
        else:
            (kind, params), _ = _MAIN[p.shape]
            parts = [Part(kind, dict(params), (0.0, 0.0, 0.0), COLORS[p.color], p.shape)]
        if p.accessory != NONE:
            parts += _accessory_parts(p.accessory, p.shape, COLORS[p.accessory_color], _top(p.shape, p.color))
        return Scene(parts)

    def ghost_zone(self, prompt: int | str) -> Scene | None:
        """Where a ball, a party hat or ears would sit on a prompt *without* an accessory (None for
        one with): a model that leaks its accessories into plain prompts (the "nub on top of spheres",
        ghost ears) fills part of it. Its SDF < 0 marks the zone."""
        p = self.prompts[prompt if isinstance(prompt, int) else self.index(prompt)]
        if p.accessory != NONE:
            return None
        top = _top(p.shape, p.color)
        return Scene([part for acc in ("ball", "party hat", "ears")
                      for part in _accessory_parts(acc, p.shape, (0.0, 0.0, 0.0), top)])

    def scenes(self, indices: Sequence[int]) -> list[Scene]:
        return [self.scene(int(i)) for i in indices]

    @property
    def prompt_hash(self) -> str:
        """sha256 of the prompt list (one per line), to record in provenance."""
        return hashlib.sha256("\n".join(self.texts).encode()).hexdigest()

    # -- splits ----------------------------------------------------------------------------------
    def _stratified_order(self) -> list[int]:
        """A seeded order of all prompts whose every prefix is spread over the (shape, colour) cells.

        Round robin over the 64 cells (cells in a seeded order, prompts within a cell shuffled), so a
        prefix of n ≥ 64 prompts has every shape and colour equally often (±1). If a split prefix
        misses an accessory or accessory colour, the next seed attempt is used (never happens for the
        default seed, but the rule keeps every seed valid).
        """
        for attempt in range(1000):
            rng = random.Random(f"shapes-world/{self.seed}/{attempt}")
            cells: dict[tuple[str, str], list[int]] = {}
            for p in self.prompts[:self.n_base]:
                cells.setdefault((p.shape, p.color), []).append(p.index)
            keys = list(cells)
            rng.shuffle(keys)
            for k in keys:
                rng.shuffle(cells[k])
            order = []
            for r in range(max(len(v) for v in cells.values())):
                for k in keys:
                    if r < len(cells[k]):
                        order.append(cells[k][r])
            if all(self._covers(order[:self._n_seen(f)]) for f in SPLIT_FRACTIONS):
                return order
        raise RuntimeError("could not build a stratified split")  # pragma: no cover

    def _tree_split_order(self) -> list[int]:
        """The trees' own seeded order: the four plain season trees first (seen in every split: the
        season chain is made of them), then the rest round robin over the seasons."""
        rng = random.Random(f"shapes-world/{self.seed}/trees")
        trees = self.prompts[self.n_base:]
        plain = [p.index for p in trees if p.accessory == NONE]
        cells = [[p.index for p in trees if p.color == s and p.accessory != NONE] for s in SEASONS]
        for c in cells:
            rng.shuffle(c)
        return plain + [c[r] for r in range(max(map(len, cells))) for c in cells if r < len(c)]

    def _n_seen(self, fraction: float) -> int:
        return int(round(fraction * self.n_base))

    def _n_seen_trees(self, fraction: float) -> int:
        return len(SEASONS) + int(round(fraction * (len(self.prompts) - self.n_base - len(SEASONS))))

    def _covers(self, indices: Sequence[int]) -> bool:
        ps = [self.prompts[i] for i in indices]
        return ({p.shape for p in ps} == set(SHAPES) and {p.color for p in ps} == set(COLORS)
                and {p.accessory for p in ps} == set(ACCESSORIES) | {NONE}
                and {p.accessory_color for p in ps if p.accessory_color} == set(ACCESSORY_COLORS))

    def split(self, fraction: float | str = 0.125) -> dict[str, list[int]]:
        """``{"seen": [...], "unseen": [...]}`` prompt indices (sorted); the 12.5% seen set is a subset
        of the 50% one. The first 1984 prompts split as they did before the trees came."""
        fraction = parse_fraction(fraction)
        seen = sorted(self._order[:self._n_seen(fraction)] + self._tree_order[:self._n_seen_trees(fraction)])
        s = set(seen)
        return {"seen": seen, "unseen": [i for i in range(len(self.prompts)) if i not in s]}

    # -- export ----------------------------------------------------------------------------------
    def export(self, folder: str | Path) -> list[Path]:
        """Write ``prompts.txt``, ``splits.json`` and ``scenes.json`` (human-readable)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = [folder / "prompts.txt", folder / "splits.json", folder / "scenes.json"]
        atomic_write_text(files[0], "\n".join(self.texts) + "\n")
        splits = {"seed": self.seed, "n_prompts": len(self), "prompt_hash": self.prompt_hash, "splits": {}}
        for f in SPLIT_FRACTIONS:
            sp = self.split(f)
            splits["splits"][split_name(f)] = {"fraction": f, "n_seen": len(sp["seen"]),
                                               "n_unseen": len(sp["unseen"]), **sp}
        atomic_write_text(files[1], json.dumps(splits, indent=1) + "\n")
        scenes = {"frame": "Z up, front faces -Y, units of the model box (|x| < 0.8)",
                  "density": "max_density * sigmoid(-sdf / eps)",
                  "scenes": [{"index": p.index, "prompt": p.text, "shape": p.shape, "color": p.color,
                              "accessory": p.accessory, "accessory_color": p.accessory_color,
                              **self.scene(p).to_dict()} for p in self.prompts]}
        atomic_write_text(files[2], json.dumps(scenes, indent=1) + "\n")
        return files


def split_name(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def parse_fraction(fraction: float | str) -> float:
    """0.125, "0.125", "12.5", "12.5%" → 0.125 (only the world's split fractions are valid)."""
    if isinstance(fraction, str):
        s = fraction.strip().rstrip("%")
        try:
            v = float(s)
        except ValueError:
            raise ValueError(f"bad split {fraction!r}; use one of 12.5%, 50%") from None
        fraction = v / 100 if (fraction.strip().endswith("%") or v > 1) else v
    for f in SPLIT_FRACTIONS:
        if abs(float(fraction) - f) < 1e-9:
            return f
    raise ValueError(f"bad split {fraction!r}; use one of 12.5%, 50%")


_WORLDS: dict[int, ShapesWorld] = {}


def get_world(seed: int = DEFAULT_SEED) -> ShapesWorld:
    if seed not in _WORLDS:
        _WORLDS[seed] = ShapesWorld(seed)
    return _WORLDS[seed]


# -- ground-truth rendering --------------------------------------------------------------------------

def camera_sampler():
    """The world's training camera distribution (App. B.1.7 ranges moved closer so that the small
    objects fill the 32×32 frames; no textureless shading: the teacher, like a real text-to-image
    model, knows coloured objects, albedo or lit)."""
    from backend.cameras import CameraSampler

    return CameraSampler(distance=(1.8, 2.4), focal=(0.9, 1.1), elevation=(-10.0, 60.0),
                         shading_probs=(0.4, 0.0, 0.6), ambient=(0.2, 0.5))


VIEW_LABELS = ("front", "side", "back")


def view_caption(text: str, label: str) -> str:
    """The view-augmented caption the guidance sees (``"…, front view"``)."""
    return f"{text}, {label} view"


@torch.no_grad()
def render_scenes(scenes: Sequence[Scene], cams, size: int = 32, n_samples: int = 64,
                  bg_color: float = 1.0, chunk: int | None = None):
    """Render scene b from camera b (``backend.renderer.render``, deterministic samples, white
    background, shading as the cameras say)."""
    from backend.renderer import render

    return render(batch_field(scenes), cams, size, size, radius=RENDER_RADIUS, n_samples=n_samples,
                  stratified=False, bg_color=bg_color, chunk=chunk)


def eval_cameras(n: int = 1, azimuths: Sequence[float] = EVAL_AZIMUTHS):
    """The fixed evaluation views, repeated for n objects: camera k·n_views + v."""
    from backend.cameras import orbit_cameras

    return orbit_cameras(list(azimuths) * n, elevation=EVAL_ELEVATION, distance=EVAL_DISTANCE, focal=EVAL_FOCAL)


def render_eval_views(world: ShapesWorld, indices: Sequence[int], size: int = 32, n_samples: int = 64,
                      batch: int = 64, progress: bool = False, device: str | torch.device = "cpu") -> torch.Tensor:
    """GT albedo renders ``[len(indices), V, 3, size, size]`` (on the CPU) from the fixed evaluation
    views, rendered on ``device``."""
    from tqdm import tqdm

    nv = len(EVAL_AZIMUTHS)
    out = []
    idx = list(indices)
    per = max(1, batch // nv)
    for s in tqdm(range(0, len(idx), per), disable=not progress, desc="GT renders", leave=False):
        chunk = idx[s:s + per]
        scenes = [sc for sc in world.scenes(chunk) for _ in range(nv)]
        r = render_scenes(scenes, eval_cameras(len(chunk)).to(device), size, n_samples)
        out.append(r.rgb.reshape(len(chunk), nv, 3, size, size).cpu())
    return torch.cat(out)
