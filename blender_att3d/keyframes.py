"""Chain keyframe maths (no bpy, no torch: testable anywhere).

Keyframe (frame, prompt) lists, mapping chain positions to frames, which step shows at a frame, and
the keyframes that animate mesh sequences and chain pieces (visibility) and shape keys (weights).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from .wire import check_prompt


def sorted_keyframes(keyframes: Iterable[tuple[float, str]]) -> list[tuple[float, str]]:
    """Keyframes sorted by frame, prompts checked; ValueError for < 2 keys or duplicate frames."""
    keys = sorted(((float(f), check_prompt(p)) for f, p in keyframes), key=lambda k: k[0])
    if len(keys) < 2:
        raise ValueError("A prompt chain needs at least two keyframes")
    for (fa, _), (fb, _) in zip(keys, keys[1:]):
        if fb <= fa:
            raise ValueError(f"Two keyframes are on frame {fa:g}: each keyframe needs its own frame")
    return keys


def position_to_frame(position: float, key_frames: Sequence[float]) -> float:
    """Chain position (keyframe k at integer k, steps between fractional) -> scene frame.

    Keyframe k lands on ``key_frames[k]``; positions between keyframes are placed linearly.
    """
    n = len(key_frames)
    if n == 0:
        raise ValueError("no keyframes")
    if n == 1:
        return float(key_frames[0])
    k = int(math.floor(position))
    k = min(max(k, 0), n - 2)
    t = position - k
    return float(key_frames[k] + t * (key_frames[k + 1] - key_frames[k]))


def step_frames(positions: Sequence[float], key_frames: Sequence[float]) -> list[float]:
    """The frame of every chain step (strictly increasing for a valid chain)."""
    frames = [position_to_frame(p, key_frames) for p in positions]
    for a, b in zip(frames, frames[1:]):
        if b <= a:
            raise ValueError("chain steps must map to strictly increasing frames")
    return frames


def visible_step(frame: float, frames: Sequence[float]) -> int:
    """Index of the step a mesh sequence shows at ``frame`` (first before the start, last after)."""
    i = int(np.searchsorted(np.asarray(frames, dtype=np.float64), frame, side="right")) - 1
    return min(max(i, 0), len(frames) - 1)


def sequence_visibility_keys(frames: Sequence[float]) -> list[list[tuple[float, bool]]]:
    """Per step, (frame, hidden) keyframes (CONSTANT) so exactly one step shows at any frame."""
    n = len(frames)
    out = []
    for i in range(n):
        keys: list[tuple[float, bool]] = []
        if i > 0:
            keys.append((frames[0], True))
        keys.append((frames[i], False))
        if i + 1 < n:
            keys.append((frames[i + 1], True))
        out.append(keys)
    return out


def shape_key_weight_keys(frames: Sequence[float], interpolation: str = "LINEAR",
                          key: int = 0) -> list[list[tuple[float, float]]]:
    """Keyframes (frame, value) of the shape key of every state but ``key`` (the basis), in order.

    LINEAR: a tent 0 -> 1 -> 0 over (frame[i-1], frame[i], frame[i+1]): the weights are a partition of
    unity (the basis weighs what is left), so the mesh is exactly state i at its frame and the
    straight blend of neighbours between.
    CONSTANT: the same keys held: key i is 1 on [frame[i], frame[i+1]) and 0 elsewhere.
    """
    if interpolation not in ("LINEAR", "CONSTANT"):
        raise ValueError(f"unknown interpolation {interpolation!r}")
    n = len(frames)
    if not 0 <= key < n:
        raise ValueError(f"basis state {key} of {n}")
    out = []
    for i in range(n):
        if i == key:
            continue
        keys = [(frames[i - 1], 0.0)] if i > 0 else []
        keys.append((frames[i], 1.0))
        if i + 1 < n:
            keys.append((frames[i + 1], 0.0))
        out.append(keys)
    return out


def expected_weights(frame: float, frames: Sequence[float], interpolation: str = "LINEAR") -> np.ndarray:
    """Weights of states 0..N-1 at ``frame`` (the basis state weighs what the keys leave); sums to 1."""
    n = len(frames)
    w = np.zeros(n)
    i = visible_step(frame, frames)
    if interpolation == "CONSTANT" or i == n - 1 or frame <= frames[0]:
        w[i] = 1.0
        return w
    t = (frame - frames[i]) / (frames[i + 1] - frames[i])
    w[i], w[i + 1] = 1.0 - t, t
    return w


