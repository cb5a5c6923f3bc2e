"""Chain keyframe maths (no bpy, no torch: testable anywhere).

Keyframe (frame, prompt) lists; chain positions and frames; the driver expressions that make a
built chain follow its one position value (:mod:`.wire.chain_position`), written as *simple
expressions* that Blender evaluates without Python (a .blend plays its chains with scripts off and
without the add-on); the position curve's keys and its retiming when a prompt keyframe moves.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .wire import check_prompt
from .wire.chain_position import POSITION_EPS
from .wire.timing import position_to_frame, step_frames  # noqa: F401 (re-exported: the CLI shares them)


def sorted_keyframes(keyframes: Iterable[tuple[float, str]]) -> list[tuple[float, str]]:
    """Keyframes sorted by frame, prompts checked; ValueError for < 2 keys or duplicate frames."""
    keys = sorted(((float(f), check_prompt(p)) for f, p in keyframes), key=lambda k: k[0])
    if len(keys) < 2:
        raise ValueError("A prompt chain needs at least two keyframes")
    for (fa, _), (fb, _) in zip(keys, keys[1:]):
        if fb <= fa:
            raise ValueError(f"Two keyframes are on frame {fa:g}: each keyframe needs its own frame")
    return keys


def visible_step(frame: float, frames: Sequence[float]) -> int:
    """Index of the step a mesh sequence shows at ``frame`` (first before the start, last after)."""
    i = int(np.searchsorted(np.asarray(frames, dtype=np.float64), frame, side="right")) - 1
    return min(max(i, 0), len(frames) - 1)


def _num(x: float) -> str:
    return repr(float(x))


def weight_expression(times: Sequence[float], j: int, var: str = "p") -> str:
    """A driver expression for the weight of state ``j`` of a piece whose states sit at chain positions
    ``times``: :func:`.wire.chain_position.tent_weights` at position ``var``, as a simple expression."""
    n = len(times)
    if n < 2 or not 0 <= j < n:
        raise ValueError(f"state {j} of a {n}-state piece has no weight to drive")
    rise = f"({var}-{_num(times[j - 1])})*{_num(1.0 / (times[j] - times[j - 1]))}" if j > 0 else None
    fall = f"({_num(times[j + 1])}-{var})*{_num(1.0 / (times[j + 1] - times[j]))}" if j + 1 < n else None
    inner = f"min({rise},{fall})" if rise and fall else (rise or fall)
    return f"clamp({inner},0.0,1.0)"


def hidden_expression(starts: Sequence[float], j: int, var: str = "p") -> str | None:
    """A driver expression that is true while piece ``j`` of pieces starting at ``starts`` does not
    show (:func:`.wire.chain_position.piece_showing`); None when it always shows (one piece)."""
    parts = []
    if j > 0:
        parts.append(f"{var}<{_num(starts[j] - POSITION_EPS)}")
    if j + 1 < len(starts):
        parts.append(f"{var}>={_num(starts[j + 1] - POSITION_EPS)}")
    return " or ".join(parts) or None


def position_keys(key_frames: Sequence[float]) -> list[tuple[float, float]]:
    """The position curve's keys: keyframe ``k`` on its frame at position ``k``."""
    return [(float(f), float(k)) for k, f in enumerate(key_frames)]


def warp_frame(x: float, old: Sequence[float], new: Sequence[float]) -> float:
    """Where a key at frame ``x`` goes when the prompt keyframes move from frames ``old`` to ``new``:
    keys on a keyframe follow it, keys between two keyframes keep their share of the segment, keys
    before the first or after the last move with it (a hold, a loop's extra keys)."""
    if len(old) != len(new) or not len(old):
        raise ValueError("one new frame per keyframe")
    if x <= old[0]:
        return float(x + new[0] - old[0])
    if x >= old[-1]:
        return float(x + new[-1] - old[-1])
    return float(np.interp(x, old, new))
