"""The results of the backend's operations, shared by the backend, every client transport and the
Blender code (no torch, no bpy): meshes (:class:`MeshData`), chains (:class:`SequenceData` of
:class:`SequencePiece`), and the answers of ``info`` (:class:`ServerInfo`) and ``nearest``
(:class:`Neighbors`). The backend makes these very objects; nothing converts between look-alikes.

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
from .limits import Limits

__all__ = ["MeshData", "Neighbor", "Neighbors", "ProgressFn", "SequenceData", "SequencePiece", "ServerInfo",
           "piece_showing"]

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

    How the tracking went, where the backend made the piece (not sent over the wire: the chain's
    ``meta["converged"]`` carries ``on_surface``): ``on_surface[j]``, the share of vertices that
    converged onto state ``j``'s isosurface (1 at the key); ``held[j]``, the state repeats its
    neighbour's vertices because tracking failed there (``backend.chain.plan_pieces``). Empty when
    unknown.
    """

    faces: NDArray[Any]
    times: list[float]
    positions: list[NDArray[Any]]
    colors: list[NDArray[Any]]
    key: int = 0
    on_surface: list[float] = field(default_factory=list)
    held: list[bool] = field(default_factory=list)

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
        self.on_surface = [float(c) for c in self.on_surface]
        self.held = [bool(h) for h in self.held]

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


def _text(v: Any, default: str = "") -> str:
    return v if isinstance(v, str) else default


def _count(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _obj(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _texts(v: Any) -> list[str]:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


@dataclass(frozen=True)
class ServerInfo:
    """Who answers: what ``GET /v1/info`` reports and ``Client.info()`` returns, whatever the transport.

    ``limits`` are the server's own (a client checks requests against them); ``transport`` is set by
    the client (``embedded``, ``http``), ``backend_source`` by the add-on (which local backend it
    started); ``extra`` keeps the keys this version does not know (a studio's ``threads``, the
    queue's size ...), so nothing a newer server says is lost on the way.
    """

    model: str = "?"
    device: str = "?"
    text_encoder: str = ""
    version: str = ""  # att3d's
    api: int | None = None
    versions: dict[str, Any] = field(default_factory=dict)  # att3d, torch, numpy, python: text; api
    training_prompts: int = 0
    training_prompts_known: bool = False
    training_prompt_examples: list[str] = field(default_factory=list)
    features: dict[str, bool] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    max_queue: int | None = None  # jobs a server queues before it answers 503 (in ``limits`` on the wire)
    transport: str = ""
    url: str = ""
    backend_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerInfo:
        """From the JSON of ``/v1/info`` (any server version: a missing or mistyped key keeps its
        default, an unknown one goes to ``extra``)."""
        d = data if isinstance(data, dict) else {}
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        api = d.get("api")
        n = _count(d.get("training_prompts"))
        versions, features, limits = _obj(d.get("versions")), _obj(d.get("features")), _obj(d.get("limits"))
        known_prompts = d.get("training_prompts_known")
        return cls(model=_text(d.get("model"), "?") or "?", device=_text(d.get("device"), "?") or "?",
                   text_encoder=_text(d.get("text_encoder")), version=_text(d.get("version")),
                   api=api if isinstance(api, int) and not isinstance(api, bool) else None,
                   versions={str(k): v for k, v in versions.items()},
                   training_prompts=n,
                   training_prompts_known=known_prompts if isinstance(known_prompts, bool) else bool(n),
                   training_prompt_examples=_texts(d.get("training_prompt_examples")),
                   features={str(k): bool(v) for k, v in features.items()}, limits=Limits.from_dict(limits),
                   max_queue=_count(limits.get("max_queue")) or None,
                   transport=_text(d.get("transport")), url=_text(d.get("url")),
                   backend_source=_text(d.get("backend_source")),
                   extra={k: v for k, v in d.items() if k not in known})

    def as_dict(self) -> dict[str, Any]:
        """The JSON of ``/v1/info`` (``extra`` merged back in: a round trip keeps every key)."""
        limits: dict[str, Any] = self.limits.as_dict()
        if self.max_queue is not None:
            limits["max_queue"] = self.max_queue
        out: dict[str, Any] = {"model": self.model, "text_encoder": self.text_encoder, "device": self.device,
                               "version": self.version, "api": self.api, "versions": dict(self.versions),
                               "training_prompts": self.training_prompts,
                               "training_prompts_known": self.training_prompts_known,
                               "training_prompt_examples": list(self.training_prompt_examples),
                               "features": dict(self.features), "limits": limits}
        for k in ("transport", "url", "backend_source"):
            if getattr(self, k):
                out[k] = getattr(self, k)
        return {**out, **self.extra}

    def summary(self) -> str:
        """One line: the model, the device and how many prompts it was trained on (Check Backend)."""
        n = self.training_prompts
        trained = f"trained on {n} prompts" if self.training_prompts_known and n else "training prompts unknown"
        version = f", att3d {self.version}" if self.version else ""
        return f"Backend OK: model {self.model} on {self.device}, {trained}{version}"

    def lines(self) -> list[str]:
        """The few lines shown under the backend's status: versions and example training prompts."""
        lines = []
        if self.versions:
            lines.append(", ".join(f"{k} {self.versions[k]}" for k in ("att3d", "torch", "python")
                                   if self.versions.get(k)))
        if self.training_prompt_examples:
            lines.append("Trained on, e.g.: " + "; ".join(f"'{p}'" for p in self.training_prompt_examples[:3]))
        elif not self.training_prompts:
            lines.append("This model does not list its training prompts: closeness to them cannot be told")
        if self.backend_source:
            lines.append(f"Local backend: {self.backend_source}")
        return [ln for ln in lines if ln]


@dataclass(frozen=True)
class Neighbor:
    """A known prompt near the asked one: ``score`` in [0, 1] (higher is nearer); servers from before
    the word measure sent a ``distance`` instead (lower is nearer)."""

    prompt: str
    score: float | None = None
    distance: float | None = None


@dataclass(frozen=True)
class Neighbors:
    """How close a prompt is to what the model was trained on: the answer of ``POST /v1/nearest`` and
    ``Client.nearest()`` (``backend/nearest.py`` measures it; :mod:`.closeness` says it to the artist).

    ``far`` is None when the model does not list its training prompts; ``measure`` is ``"words"`` for
    the word-by-word measure (``unknown_words`` / ``known_words`` / ``did_you_mean`` are then
    meaningful), ``""`` for a server from before it (only ``far`` and ``neighbors``).
    """

    prompt: str = ""
    far: bool | None = None
    known_words: list[str] = field(default_factory=list)
    unknown_words: list[str] = field(default_factory=list)
    did_you_mean: dict[str, str] = field(default_factory=dict)
    neighbors: list[Neighbor] = field(default_factory=list)
    known_prompts: int = 0
    measure: str = ""
    message: str = ""

    @property
    def words_measured(self) -> bool:
        return self.measure == "words"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Neighbors:
        """From the JSON answer (any server version; mistyped parts are left out)."""
        d = data if isinstance(data, dict) else {}
        far = d.get("far")
        typos = _obj(d.get("did_you_mean"))
        nb = []
        for n in d.get("neighbors") or []:
            if isinstance(n, dict) and isinstance(n.get("prompt"), str):
                score, dist = n.get("score"), n.get("distance")
                nb.append(Neighbor(n["prompt"], float(score) if isinstance(score, (int, float)) else None,
                                   float(dist) if isinstance(dist, (int, float)) else None))
        measure = _text(d.get("measure")) or ("words" if "unknown_words" in d else "")
        return cls(prompt=_text(d.get("prompt")), far=far if isinstance(far, bool) else None,
                   known_words=_texts(d.get("known_words")), unknown_words=_texts(d.get("unknown_words")),
                   did_you_mean={str(k): str(v) for k, v in typos.items()}, neighbors=nb,
                   known_prompts=_count(d.get("known_prompts")), measure=measure, message=_text(d.get("message")))

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer."""
        nb = [{"prompt": n.prompt, **({"score": n.score} if n.score is not None else {}),
               **({"distance": n.distance} if n.distance is not None else {})} for n in self.neighbors]
        return {"prompt": self.prompt, "far": self.far, "known_words": list(self.known_words),
                "unknown_words": list(self.unknown_words), "did_you_mean": dict(self.did_you_mean),
                "neighbors": nb, "known_prompts": self.known_prompts, "measure": self.measure,
                "message": self.message}
