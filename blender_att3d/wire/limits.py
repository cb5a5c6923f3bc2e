"""The protocol's limits and the prompt check: one definition for the CLI, the service, the batch
tool and the add-on. A client reads a server's own limits from ``GET /v1/info`` (``limits``) into
:class:`Limits` and checks requests against those.
"""
from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_PROMPT_CHARS = 500
MIN_RESOLUTION, MAX_RESOLUTION = 16, 512
#: the marching-cubes lattice every entry point uses unless told otherwise (CLI, service, clients, batch,
#: the add-on's preferences): one default, so a chain and a mesh of the same prompt match
DEFAULT_RESOLUTION = 128
MAX_KEYFRAMES = 64
MAX_CHAIN_MESHES = 256
#: a consistent chain's stored states at most, in between included (no more are added past it), and the
#: most a request may cap one segment at
MAX_CHAIN_STATES = 1024
MAX_NEIGHBORS = 50
MIN_SIMPLIFY, MAX_SIMPLIFY = 4, 10_000_000
TEXTURE_SIZE = 1024  # what the service bakes
# `att3d generate --texture N`: a float32 N² atlas is 12·N² bytes plus the colour field at N² points;
# 4096² is 200 MB, while 1e6² would be 9 TiB
MIN_TEXTURE_SIZE, MAX_TEXTURE_SIZE = 64, 4096

# Letters and symbols that draw nothing (Hangul fillers, the braille blank): a prompt of only these
# is as empty as one of zero-width spaces.
_BLANK_GLYPHS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def check_prompt(prompt: Any, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """The prompt with its whitespace collapsed; ValueError with a readable reason when unusable.

    Any Unicode text that draws something is a prompt (accents, CJK, emoji sequences joined by
    U+200D). Refused: unpaired UTF-16 surrogates (JSON can carry ``"\\ud800"``, but it is not text
    and cannot be encoded), control characters other than whitespace, and prompts made only of
    invisible characters (zero-width spaces, format characters, fillers)."""
    if not isinstance(prompt, str):
        raise ValueError(f"a prompt must be text, got {type(prompt).__name__}")
    p = " ".join(prompt.split())
    if not p:
        raise ValueError("the prompt is empty: type what to make, e.g. 'a red cube wearing a blue party hat'")
    if len(p) > max_chars:
        raise ValueError(f"the prompt is {len(p)} characters long; the limit is {max_chars}")
    visible = False
    for i, ch in enumerate(p):
        cat = unicodedata.category(ch)
        if cat == "Cs":
            raise ValueError(f"the prompt holds an unpaired UTF-16 surrogate (U+{ord(ch):04X}, character {i + 1}): "
                             "that is not valid Unicode text")
        if cat == "Cc":
            raise ValueError(f"the prompt holds a control character (U+{ord(ch):04X}, character {i + 1}): "
                             "use plain text")
        visible = visible or (cat[0] in "LNPS" and ch not in _BLANK_GLYPHS)
    if not visible:
        raise ValueError("the prompt has no visible characters (only spaces, zero-width or format characters): "
                         "type what to make, e.g. 'a red cube'")
    return p


def _is_int(v: Any) -> bool:
    # bool is an int, but True is no count; numpy integers (from batch jobs) are
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_simplify(simplify: Any, max_faces: int = MAX_SIMPLIFY) -> int | None:
    """A target face count, or None (``None`` or 0: no simplification)."""
    if simplify is None or (_is_int(simplify) and simplify == 0):
        return None
    if not _is_int(simplify) or not MIN_SIMPLIFY <= simplify <= max_faces:
        raise ValueError(f"simplify must be a face count in {MIN_SIMPLIFY}–{max_faces} (or none), got {simplify!r}")
    return int(simplify)


def check_texture_size(size: Any) -> int:
    """The edge of a baked texture atlas in pixels."""
    if not _is_int(size) or not MIN_TEXTURE_SIZE <= size <= MAX_TEXTURE_SIZE:
        raise ValueError(f"the texture size must be an integer in {MIN_TEXTURE_SIZE}–{MAX_TEXTURE_SIZE} pixels, "
                         f"got {size!r}")
    return int(size)


def default_max_states(steps: int) -> int:
    """How many chain positions a segment of a consistent chain stores at most, unless told: twice its
    steps (the states in between go where the surface moves)."""
    return 2 * int(steps)


def check_max_states(max_states: Any, steps: int, most: int = MAX_CHAIN_STATES) -> int:
    """The cap on stored states per segment of a chain of ``steps`` steps per segment: ``None`` →
    :func:`default_max_states`; at least ``steps`` (the steps themselves), at most ``most``."""
    if max_states is None:
        max_states = default_max_states(steps)
    if not _is_int(max_states) or not steps <= max_states <= most:
        raise ValueError(f"max_states (stored states per segment at most) must be a whole number of at least steps "
                         f"({steps}) and at most {most}, got {max_states!r}")
    return int(max_states)


def check_resolution(resolution: Any, lo: int = MIN_RESOLUTION, hi: int = MAX_RESOLUTION) -> int:
    """The marching-cubes lattice size as an int; ValueError naming the range when unusable."""
    if not _is_int(resolution) or not lo <= resolution <= hi:
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
    max_chain_states: int = MAX_CHAIN_STATES

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
