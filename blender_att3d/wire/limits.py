"""The protocol's limits and the prompt check: one definition for the CLI, the service, the batch
tool and the add-on. A client reads a server's own limits from ``GET /v1/info`` (``limits``) into
:class:`Limits` and checks requests against those.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_PROMPT_CHARS = 500
MIN_RESOLUTION, MAX_RESOLUTION = 16, 512
MAX_KEYFRAMES = 64
MAX_CHAIN_MESHES = 256
MAX_NEIGHBORS = 50
MAX_SIMPLIFY = 10_000_000
TEXTURE_SIZE = 1024


def check_prompt(prompt: Any, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """The prompt with its whitespace collapsed; ValueError with a readable reason when unusable."""
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt must be text, got {type(prompt).__name__}")
    p = " ".join(prompt.split())
    if not p:
        raise ValueError("the prompt is empty: type what to make, e.g. 'a red cube wearing a blue party hat'")
    if len(p) > max_chars:
        raise ValueError(f"the prompt is {len(p)} characters long; the limit is {max_chars}")
    return p


def check_resolution(resolution: Any, lo: int = MIN_RESOLUTION, hi: int = MAX_RESOLUTION) -> int:
    """The marching-cubes lattice size as an int; ValueError naming the range when unusable."""
    # bool is an int, but True is no resolution; numpy integers (from batch jobs) are
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not lo <= resolution <= hi:
        raise ValueError(f"resolution must be an integer in {lo}–{hi}, got {resolution!r}")
    return int(resolution)


@dataclass(frozen=True)
class Limits:
    """A server's limits; the defaults are this version's. The field order is the JSON's order."""

    max_prompt_chars: int = MAX_PROMPT_CHARS
    min_resolution: int = MIN_RESOLUTION
    max_resolution: int = MAX_RESOLUTION
    max_keyframes: int = MAX_KEYFRAMES
    max_chain_meshes: int = MAX_CHAIN_MESHES
    max_neighbors: int = MAX_NEIGHBORS
    max_simplify: int = MAX_SIMPLIFY
    texture_size: int = TEXTURE_SIZE

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        """From ``info["limits"]``: keys this version does not know (``max_queue``) are ignored, and a
        limit the server does not report (or reports as a non-integer) keeps this version's value."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: int(v) for k, v in data.items()
                      if k in known and isinstance(v, int) and not isinstance(v, bool)})

    def check_prompt(self, prompt: Any) -> str:
        return check_prompt(prompt, self.max_prompt_chars)

    def check_resolution(self, resolution: Any) -> int:
        return check_resolution(resolution, self.min_resolution, self.max_resolution)


def as_dict() -> dict[str, int]:
    """This version's limits, as the service reports them in ``GET /v1/info``."""
    return Limits().as_dict()
