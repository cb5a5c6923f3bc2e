"""The real engine with small meshes: fuzzing must stay fast. Requests arrive checked (the service's
schemas made them); only their size is cut."""
from __future__ import annotations

import dataclasses

from backend.engine import Blend, Chain, Generate


class CheapEngine:
    """The real engine, running each request at 16³ (a chain: its first segment, one step)."""

    def __init__(self, engine) -> None:
        self.e = engine

    def run(self, request, progress=None, modulation=None):
        if isinstance(request, Generate):
            request = dataclasses.replace(request, resolution=16, simplify=None, texture=False)
        elif isinstance(request, Blend):
            request = dataclasses.replace(request, resolution=16, simplify=None)
        elif isinstance(request, Chain):
            request = dataclasses.replace(request, keyframes=request.keyframes[:2], steps=1, resolution=16)
        return self.e.run(request, progress)
