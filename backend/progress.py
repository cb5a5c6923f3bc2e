"""Progress and cancel points of long operations (mesh extraction, chains, texture bakes).

A caller passes a :data:`ProgressFn` (``progress(fraction, message)``; returning True asks the job to
stop). Long loops call a :class:`Checkpoint` between their steps: it reports progress at most every
``interval`` seconds (the service wakes long polls on every report) and raises
:class:`CancelledError` as soon as a report answers True, so a cancelled job stops within one step.
"""
from __future__ import annotations

import time

from blender_att3d.wire.types import ProgressFn

__all__ = ["CancelledError", "Checkpoint", "ProgressFn"]


class CancelledError(RuntimeError):
    """A progress callback asked the job to stop."""


class Checkpoint:
    """Cancel points within ``[start, end]`` of a job's progress: ``check(fraction)`` with the fraction of
    this part done. ``Checkpoint(None)`` does nothing (no caller is listening)."""

    def __init__(self, progress: ProgressFn | None, start: float = 0.0, end: float = 1.0,
                 message: str = "working", interval: float = 0.05) -> None:
        self.progress, self.start, self.end, self.message = progress, start, end, message
        self.interval = interval
        self._last = -float("inf")

    def __call__(self, fraction: float = 0.0, message: str | None = None, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        frac = self.start + (self.end - self.start) * min(1.0, max(0.0, fraction))
        if self.progress(frac, message or self.message):
            raise CancelledError("cancelled")

    def part(self, start: float, end: float, message: str | None = None) -> Checkpoint:
        """The sub-range [start, end] of this one (fractions of it), sharing its rate limit."""
        span = self.end - self.start
        sub = Checkpoint(self.progress, self.start + span * start, self.start + span * end,
                         message or self.message, self.interval)
        sub._last = self._last
        return sub
