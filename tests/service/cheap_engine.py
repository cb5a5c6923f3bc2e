"""The real engine with the same validation but small meshes: fuzzing must stay fast."""
from __future__ import annotations

from backend.engine import check_chain, check_simplify, check_texture


class CheapEngine:
    """The real engine, with the same validation but small meshes (fuzzing must stay fast)."""

    def __init__(self, engine) -> None:
        self.e = engine

    def generate(self, prompt, resolution=128, simplify=None, texture=False, mc="auto", progress=None):
        check_simplify(simplify), check_texture(texture)
        from backend.mesh import check_resolution

        check_resolution(resolution)
        return self.e.generate(prompt, 16, None, False, progress=progress)

    def blend(self, prompt_a, prompt_b, alpha, resolution=96, simplify=None, progress=None):
        from backend.mesh import check_resolution

        check_resolution(resolution)
        check_simplify(simplify)
        return self.e.blend(prompt_a, prompt_b, alpha, 16, progress=progress)

    def chain(self, keyframes, steps=4, resolution=96, consistent=True, progress=None):
        from backend.mesh import check_resolution

        check_chain(keyframes, steps)
        check_resolution(resolution)
        return self.e.chain(list(keyframes)[:2], 1, 16, consistent, progress=progress)

    def nearest(self, prompt, k=5):
        return self.e.nearest(prompt, k)
