"""A small deterministic Client for the Blender tests (no torch): coloured UV spheres.

The shape and colour depend on the prompt (a hash), chains have consistent topology, and every
call is recorded in ``calls``. ``make()`` is the factory the batch ``--client`` hook uses.
"""
from __future__ import annotations

import hashlib
import threading
from typing import Any

import numpy as np

from blender_att3d.client.base import BackendUnavailable, Cancelled, Client, InvalidRequest
from blender_att3d.wire.types import MeshData, SequenceData


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


def shape_of(prompt: str, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = _h(prompt)
    rings = max(3, resolution // 4)
    pos, faces = sphere(rings, 2 * rings)
    scale = 0.5 + 0.4 * h[:3]
    pos = pos * scale[None, :]
    base = 0.15 + 0.8 * h[3:6]
    colors = np.clip(base[None, :] * (0.7 + 0.3 * (pos[:, 2:3] / scale[2] + 1) / 2), 0, 1).astype(np.float32)
    return pos.astype(np.float32), faces, colors


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

    def info(self) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        return {"model": self.model, "device": "cpu", "version": "fake"}

    def generate(self, prompt, resolution=128, simplify=None, texture=False, progress=None, mc="skimage") -> MeshData:
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

    def chain(self, keyframes, steps=4, resolution=96, consistent=True, progress=None) -> SequenceData:
        keys = [(float(k), self._check(p)) for k, p in keyframes]
        self.calls.append(("chain", (keys, steps, resolution, consistent)))
        self._progress(progress)
        shapes = [shape_of(p, resolution) for _, p in keys]
        positions, colors, meshes, labels, pos_list = [], [], [], [], []
        sched = []
        for k in range(len(keys) - 1):
            for s in range(steps):
                sched.append((k, s / steps))
        sched.append((len(keys) - 2, 1.0))
        faces = shapes[0][1]
        for k, a in sched:
            pa, pb = shapes[k][0], shapes[k + 1][0]
            ca, cb = shapes[k][2], shapes[k + 1][2]
            pos = ((1 - a) * pa + a * pb).astype(np.float32)
            col = ((1 - a) * ca + a * cb).astype(np.float32)
            pos_list.append(keys[k][0] + a * (keys[k + 1][0] - keys[k][0]))
            mid = f"{keys[k][1]} -> {keys[k + 1][1]} @ {a:.2f}"
            label = keys[k][1] if a == 0 else keys[k + 1][1] if a == 1 else mid
            labels.append(label)
            if consistent:
                positions.append(pos)
                colors.append(col)
            else:
                meshes.append(MeshData(pos, faces, col, meta={"prompt": label, "model": self.model,
                                                              "chain_position": pos_list[-1]}))
        meta = {"model": self.model, "resolution": resolution}
        if consistent:
            return SequenceData(pos_list, labels, faces=faces, positions=positions, colors=colors, meta=meta)
        return SequenceData(pos_list, labels, meshes=meshes, meta=meta)

    def blend(self, prompt_a, prompt_b, alpha, resolution=96, progress=None) -> MeshData:
        a, b = self._check(prompt_a), self._check(prompt_b)
        self.calls.append(("blend", (a, b, alpha, resolution)))
        pa, faces, ca = shape_of(a, resolution)
        pb, _, cb = shape_of(b, resolution)
        return MeshData((1 - alpha) * pa + alpha * pb, faces, (1 - alpha) * ca + alpha * cb,
                        meta={"prompt": f"{a} | {b} @ {alpha:.2f}", "model": self.model, "resolution": resolution})

    def nearest(self, prompt, k=5) -> dict[str, Any]:
        p = self._check(prompt)
        self.calls.append(("nearest", p))
        far = "far" in p.split() or "zebra" in p
        return {"neighbors": [{"prompt": "a red cube", "distance": 0.9 if far else 0.1}],
                "distance": 0.9 if far else 0.1, "far": far}

    def cancel(self) -> None:
        self._cancel.set()


def make(**settings) -> FakeClient:
    return FakeClient()


def make_unavailable(**settings) -> FakeClient:
    return FakeClient(fail=BackendUnavailable("the backend is not running (fake)"))
