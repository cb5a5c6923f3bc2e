"""The chain position: one number that says where a prompt chain is (no bpy, no torch).

Keyframe ``k`` of a chain sits at position ``k``; the in-betweens are fractional. Everything a
chain shows at a position follows from it by two rules, used alike by the add-on's drivers (as
expressions Blender evaluates without Python), the GLB writer and the tests:

* **which piece shows** (:func:`piece_showing`): the one whose first state is the last at or
  before the position, the later one where two meet;
* **how a piece's states mix** (:func:`tent_weights`): linearly between the two stored states
  around the position ("tent" weights that sum to 1), the first or last state held outside them.

A position curve maps time to position: :func:`track_samples` refines a sampled one so that
linear interpolation between its samples gives the state weights exactly (a sample wherever the
position crosses a stored state).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Positions this close below a piece's start already show that piece. Blender's F-curves evaluate
#: in float32 (a position of 37.5 lands within 4e-6 of it), so a tolerance far above that and far
#: below the spacing of stored states (≥ 1/256) makes Blender, the GLB and numpy agree on every frame.
POSITION_EPS = 1e-4


def piece_showing(starts: Sequence[float], position: float) -> int:
    """Index of the piece that shows at ``position``, given each piece's first position (``starts``,
    increasing): the later one where two meet. The one rule of the backend, the add-on and the GLB."""
    return max(0, int(np.searchsorted(np.asarray(starts, np.float64), position + POSITION_EPS, side="right")) - 1)


def tent_weights(times: Sequence[float], position: float) -> NDArray[np.float64]:
    """Weights of a piece's states (at chain positions ``times``, increasing) at ``position``: the two
    states around it mixed linearly, the end state alone beyond the ends. They sum to 1."""
    t = np.asarray(times, np.float64)
    w = np.zeros(len(t))
    if len(t) == 1 or position <= t[0]:
        w[0] = 1.0
        return w
    if position >= t[-1]:
        w[-1] = 1.0
        return w
    i = int(np.searchsorted(t, position, side="right")) - 1
    a = (position - t[i]) / (t[i + 1] - t[i])
    w[i], w[i + 1] = 1.0 - a, a
    return w


def track_samples(seconds: Sequence[float], positions: Sequence[float],
                  state_times: Sequence[float]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A position track (``positions`` at ``seconds``, linear between) with a sample added wherever it
    crosses one of ``state_times``: between its samples the tent weights are then linear in time, as
    glTF's LINEAR samplers interpolate them."""
    ts = np.asarray(seconds, np.float64)
    ps = np.asarray(positions, np.float64)
    if ts.shape != ps.shape or not len(ts) or np.any(np.diff(ts) <= 0):
        raise ValueError("a position track needs one position per time, times increasing")
    extra: list[float] = []
    marks = np.unique(np.asarray(state_times, np.float64))
    for t0, t1, p0, p1 in zip(ts[:-1], ts[1:], ps[:-1], ps[1:]):
        if p0 == p1:
            continue
        lo, hi = min(p0, p1), max(p0, p1)
        for m in marks[(marks > lo) & (marks < hi)]:
            extra.append(float(t0 + (m - p0) / (p1 - p0) * (t1 - t0)))
    out_t = np.unique(np.concatenate([ts, np.asarray(extra, np.float64)]))
    return out_t, np.interp(out_t, ts, ps)


def check_track(track: Any) -> tuple[list[float], list[float]]:
    """``(seconds, positions)`` as two float lists of one length ≥ 1, seconds increasing; ValueError else."""
    try:
        secs, pos = ([float(x) for x in track[0]], [float(x) for x in track[1]])
    except (TypeError, ValueError, IndexError) as e:
        raise ValueError(f"a position track is (seconds, positions): {e}") from None
    if not secs or len(secs) != len(pos) or any(b <= a for a, b in zip(secs, secs[1:])):
        raise ValueError("a position track needs one position per time, times increasing")
    if not all(np.isfinite(secs + pos)):
        raise ValueError("a position track's times and positions must be finite")
    return secs, pos
