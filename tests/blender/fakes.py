"""A small deterministic Client for the Blender tests (no torch): coloured UV spheres.

The shape, colour and tessellation depend on the prompt (a hash); consistent chains come as
keyframe pieces like the backend's; every call is recorded in ``calls``. ``make()`` is the factory
the batch ``--client`` hook uses.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Any

import numpy as np

from blender_att3d.client.base import BackendUnavailable, Cancelled, Client, InvalidRequest
from blender_att3d.wire.types import MeshData, Neighbors, SequenceData, SequencePiece, ServerInfo


def _h(prompt: str) -> np.ndarray:
    d = hashlib.sha256(prompt.encode()).digest()
    return np.frombuffer(d, dtype=np.uint8).astype(np.float32) / 255.0


def sphere(rings: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit UV sphere: poles + rings x segments, triangles counter-clockwise seen from outside."""
    th = np.linspace(0, np.pi, rings + 2)[1:-1]
    ph = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(th, ph, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    pos = np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]]).astype(np.float32)
    faces = []

    def idx(r, s):
        return 1 + r * segments + (s % segments)

    for s in range(segments):
        faces.append([0, idx(0, s), idx(0, s + 1)])
        faces.append([len(pos) - 1, idx(rings - 1, s + 1), idx(rings - 1, s)])
    for r in range(rings - 1):
        for s in range(segments):
            a, b, c, d = idx(r, s), idx(r, s + 1), idx(r + 1, s), idx(r + 1, s + 1)
            faces += [[a, c, d], [a, d, b]]
    return pos, np.asarray(faces, dtype=np.uint32)


def _params(prompt: str) -> tuple[np.ndarray, np.ndarray]:
    """The fake's shape of a prompt: the scale of a unit sphere and a base colour (from a hash)."""
    h = _h(prompt)
    return 0.5 + 0.4 * h[:3], 0.15 + 0.8 * h[3:6]


def rings_of(prompt: str, resolution: int) -> int:
    """Each prompt its own tessellation, as marching cubes gives each object its own."""
    return max(3, resolution // 4) + int(_h(prompt)[6] * 3)


def _shape(rings: int, scale: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos, faces = sphere(rings, 2 * rings)
    pos = pos * scale[None, :]
    colors = np.clip(base[None, :] * (0.7 + 0.3 * (pos[:, 2:3] / scale[2] + 1) / 2), 0, 1).astype(np.float32)
    return pos.astype(np.float32), faces, colors


def shape_of(prompt: str, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _shape(rings_of(prompt, resolution), *_params(prompt))


class FakeClient(Client):
    model = "fake-model"

    def __init__(self, delay: float = 0.0, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.delay = delay
        self.fail = fail
        self._cancel = threading.Event()

    def _check(self, prompt: str) -> str:
        if self.fail is not None:
            raise self.fail
        p = " ".join(str(prompt).split())
        if not p:
            raise InvalidRequest("the prompt is empty")
        return p

    def _progress(self, progress, n: int = 3) -> None:
        for i in range(n):
            if self._cancel.is_set() or (progress is not None and progress(i / n, f"step {i + 1}/{n}")):
                self._cancel.clear()
                raise Cancelled("cancelled")
            if self.delay:
                self._cancel.wait(self.delay / n)

    def info(self) -> ServerInfo:
        if self.fail is not None:
            raise self.fail
        return ServerInfo(model=self.model, device="cpu", version="fake")

    def generate(self, prompt, resolution=128, simplify=None, texture=False, progress=None, mc="auto") -> MeshData:
        p = self._check(prompt)
        self.calls.append(("generate", (p, resolution, texture)))
        self.mc = mc
        self._progress(progress)
        pos, faces, colors = shape_of(p, resolution)
        uvs = tex = None
        if texture:
            uvs = np.stack([(np.arctan2(pos[:, 1], pos[:, 0]) / (2 * np.pi)) % 1.0,
                            (pos[:, 2] / np.abs(pos[:, 2]).max() + 1) / 2], 1).astype(np.float32)
            tex = np.zeros((32, 32, 3), np.uint8)
            tex[..., :] = (colors.mean(0) * 255).astype(np.uint8)
            tex[:16, :, 0] = 255  # top half (image rows 0..15) red-ish
        return MeshData(pos, faces, colors, uvs=uvs, texture=tex,
                        meta={"prompt": p, "model": self.model, "resolution": resolution})

    def chain(self, keyframes, steps=4, resolution=96, consistent=True, progress=None,
              max_states=None) -> SequenceData:
        """Like the backend: consistent chains come as keyframe pieces (each keyframe's own mesh,
        morphed to the middle of its segments), others as one mesh per step. Between keyframes the
        shape and colour parameters are blended linearly."""
        keys = [(float(k), self._check(p)) for k, p in keyframes]
        self.calls.append(("chain", (keys, steps, resolution, consistent, max_states)))
        self._progress(progress)
        params = [_params(p) for _, p in keys]

        def at(k: int, a: float) -> tuple[np.ndarray, np.ndarray]:
            return tuple((1 - a) * x + a * y for x, y in zip(params[k], params[k + 1]))  # type: ignore

        sched = [(k, s / steps) for k in range(len(keys) - 1) for s in range(steps)] + [(len(keys) - 2, 1.0)]
        positions = [keys[k][0] + a * (keys[k + 1][0] - keys[k][0]) for k, a in sched]
        labels = [keys[k][1] if a == 0 else keys[k + 1][1] if a == 1 else f"{keys[k][1]} -> {keys[k + 1][1]} @ {a:.2f}"
                  for k, a in sched]
        meta = {"model": self.model, "resolution": resolution}
        if not consistent:
            meshes = []
            for (k, a), pos, label in zip(sched, positions, labels):
                rings = rings_of(keys[k][1] if a < 0.5 else keys[k + 1][1], resolution)
                p, f, c = _shape(rings, *at(k, a))
                meshes.append(MeshData(p, f, c, meta={"prompt": label, "model": self.model, "chain_position": pos}))
            return SequenceData(positions, labels, meshes=meshes, meta=meta)
        half = [s / steps for s in range(1, steps) if s / steps < 0.5] + [0.5]
        pieces = []
        for k in range(len(keys)):
            last = k == len(keys) - 1
            states = ([(k - 1, 1 - a) for a in reversed(half)] if k > 0 else []) + \
                [(k - 1, 1.0) if last else (k, 0.0)] + ([] if last else [(k, a) for a in half])
            key = len(half) if k > 0 else 0
            rings = rings_of(keys[k][1], resolution)
            shapes = [_shape(rings, *at(s, a)) for s, a in states]
            times = [keys[s][0] + a * (keys[s + 1][0] - keys[s][0]) for s, a in states]
            pieces.append(SequencePiece(shapes[0][1], times, [x[0] for x in shapes], [x[2] for x in shapes], key))
        voxel = 2.0 / (resolution - 1)  # like the backend: the largest vertex move between stored states
        meta["max_move_voxels"] = max(float(np.linalg.norm(b - a, axis=1).max()) / voxel
                                      for p in pieces for a, b in zip(p.positions, p.positions[1:]))
        return SequenceData(positions, labels, meta=meta, pieces=pieces)

    def blend(self, prompt_a, prompt_b, alpha, resolution=96, progress=None) -> MeshData:
        a, b = self._check(prompt_a), self._check(prompt_b)
        self.calls.append(("blend", (a, b, alpha, resolution)))
        (sa, ca), (sb, cb) = _params(a), _params(b)
        pos, faces, col = _shape(rings_of(a if alpha < 0.5 else b, resolution), (1 - alpha) * sa + alpha * sb,
                                 (1 - alpha) * ca + alpha * cb)
        return MeshData(pos, faces, col,
                        meta={"prompt": f"{a} | {b} @ {alpha:.2f}", "model": self.model, "resolution": resolution})

    def nearest(self, prompt, k=5) -> Neighbors:
        p = self._check(prompt)
        self.calls.append(("nearest", p))
        # the service's word measure (backend/nearest.py) over a fake vocabulary that lacks "far" and "zebra"
        new = [w for w in dict.fromkeys(p.split()) if w in ("far", "zebra")]
        known = [w for w in dict.fromkeys(p.split()) if w not in new and w != "a"]
        neighbors = [{"prompt": "a red cube", "score": 0.8}, {"prompt": "a blue sphere", "score": 0.4},
                     {"prompt": "a green cone", "score": 0.3}, {"prompt": "a yellow torus", "score": 0.2}]
        return Neighbors.from_dict({"far": bool(new) or not known, "unknown_words": new, "known_words": known,
                                    "did_you_mean": {}, "neighbors": neighbors[:k], "known_prompts": 4,
                                    "measure": "words",
                                    "message": "every word is in its 4 training prompts" if not new else "new words"})

    def cancel(self) -> None:
        self._cancel.set()


def make(**settings) -> FakeClient:
    return FakeClient()


def make_unavailable(**settings) -> FakeClient:
    return FakeClient(fail=BackendUnavailable("the backend is not running (fake)"))
