"""Where the HTTP API's jobs live, behind one async interface (:class:`JobBackend`).

``att3d serve`` keeps them in its own process (:class:`LocalJobs` around the one
:class:`~backend.service.worker.Worker`); ``att3d studio`` keeps them in a job store that every
replica of the app reaches over the cluster (:mod:`backend.studio`). The routes of
:func:`backend.service.app.create_app` see only this interface, so both servers answer the same
requests with the same bodies and errors.

Every method takes the ``user`` the request's token belongs to (``att3d serve`` has one); a
backend that keeps several users apart answers "no such job" for another user's job.
"""
from __future__ import annotations

from typing import Any, Protocol

from blender_att3d.wire.job_state import JobState

from .worker import JobSnapshot, QueueFull, ShuttingDown, Worker

DEFAULT_USER = "default"


class Refused(Exception):
    """The backend will not take a job now: an HTTP ``status`` (503 busy or stopping, 429 over the
    user's own limit), a message for the client, and headers (``Retry-After``)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


class JobBackend(Protocol):
    async def submit(self, kind: str, params: Any, priority: int, user: str) -> JobSnapshot:
        """Queue a job (``priority`` 0 jumps the queue: quick lookups) or raise :class:`Refused`."""
        ...

    async def status(self, job_id: str, user: str, since: int = -1, wait: float = 0.0) -> JobSnapshot | None:
        """The job now; with ``wait`` > 0 and the job unfinished, once it changed after version
        ``since`` (-1: the version it has now) or ``wait`` seconds passed. None: no such job."""
        ...

    async def result(self, job_id: str, user: str) -> tuple[JobSnapshot, Any] | None:
        ...

    async def cancel(self, job_id: str, user: str) -> dict[str, Any] | None:
        """``DELETE /v1/jobs/{id}``: a finished job is forgotten, a queued one dropped, a running one
        asked to stop; the answer is the job's description plus ``cancel_requested``."""
        ...

    async def forget(self, job_id: str, user: str) -> None:
        ...

    async def info(self, user: str) -> dict[str, Any]:
        """Fields ``/v1/info`` adds to the model's: ``queue`` at least."""
        ...

    async def closing(self) -> bool:
        """The server is stopping (cancelled jobs then answer 503, not 409)."""
        ...


class LocalJobs:
    """The jobs of one in-process :class:`Worker` (``att3d serve``: one user, one model)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def submit(self, kind: str, params: Any, priority: int, user: str) -> JobSnapshot:
        try:
            job = self.worker.submit(kind, params, priority)
        except QueueFull as e:
            raise Refused(503, str(e), {"Retry-After": "1"}) from None
        except ShuttingDown as e:
            raise Refused(503, str(e)) from None
        return job.snapshot(self.worker.queue_position(job))

    async def status(self, job_id: str, user: str, since: int = -1, wait: float = 0.0) -> JobSnapshot | None:
        job = self.worker.get(job_id)
        if job is None:
            return None
        if wait > 0 and not job.finished:
            await job.wait_change(job.version if since < 0 else since, wait)
        return job.snapshot(self.worker.queue_position(job))

    async def result(self, job_id: str, user: str) -> tuple[JobSnapshot, Any] | None:
        job = self.worker.get(job_id)
        return None if job is None else (job.snapshot(), job.result)

    async def cancel(self, job_id: str, user: str) -> dict[str, Any] | None:
        job = self.worker.get(job_id)
        if job is None:
            return None
        if job.finished:
            self.worker.forget(job_id)
        else:
            self.worker.cancel(job_id)  # it stays, to report "cancelled" to whoever polls it
        return {**job.describe(), "cancel_requested": not job.finished or job.status == JobState.CANCELLED}

    async def forget(self, job_id: str, user: str) -> None:
        self.worker.forget(job_id)

    async def info(self, user: str) -> dict[str, Any]:
        return {"queue": self.worker.stats()}

    async def closing(self) -> bool:
        return self.worker.closing
