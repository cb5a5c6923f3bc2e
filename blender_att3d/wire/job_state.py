"""The states of a service job, as ``GET /v1/jobs/{id}`` reports them in ``status``."""
from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """A ``str`` (``JobState.DONE == "done"``): JSON, f-strings and comparisons with the strings a
    server sends all see the plain value."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobState.DONE, JobState.ERROR, JobState.CANCELLED})
