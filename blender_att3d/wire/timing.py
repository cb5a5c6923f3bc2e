"""Chain timing: chain positions → scene frames → seconds of a glTF animation (stdlib + numpy only).

One definition for the add-on (:mod:`blender_att3d.keyframes` re-exports the frame functions), the
batch tool and ``att3d interpolate --frames``. A keyframe on scene frame ``f`` plays at glTF time
``(f − frame_start) / fps``, so Blender's glTF importer, which puts time ``s`` on frame
``frame_start + s · fps``, puts it back on frame ``f``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


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


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_scene_timing(key_frames: Sequence[Any], n_keyframes: int, fps: Any,
                       frame_start: Any = 1) -> tuple[list[float], float, float]:
    """(key frames, fps, frame start) of a chain timed to a scene, or a ValueError saying what is wrong:
    one frame per keyframe prompt, strictly increasing, none before ``frame_start``; ``fps`` > 0."""
    fps = _number("fps", fps)
    if fps <= 0:
        raise ValueError(f"fps must be more than 0, got {fps:g}")
    start = _number("the start frame", frame_start)
    frames = [_number(f"frame {i + 1}", f) for i, f in enumerate(key_frames)]
    if len(frames) != n_keyframes:
        raise ValueError(f"{len(frames)} frames for {n_keyframes} prompts: give one frame per prompt")
    for a, b in zip(frames, frames[1:]):
        if b <= a:
            raise ValueError(f"frames must increase: {b:g} follows {a:g}")
    if frames and frames[0] < start:
        raise ValueError(f"frame {frames[0]:g} is before the start frame {start:g}")
    return frames, fps, start


def scene_seconds(frames: Sequence[float], fps: float, frame_start: float = 1.0) -> list[float]:
    """glTF animation time of each scene frame: ``(frame − frame_start) / fps``."""
    return [(float(f) - frame_start) / fps for f in frames]
