"""One worker thread owns the :class:`~backend.engine.Engine` (one device, one model); requests
become :class:`Job` objects in a bounded priority queue (quick lookups such as ``nearest`` jump the
queue). Jobs report progress, can be cancelled, and finished ones are forgotten after a while so
memory stays bounded however many clients come and go.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from blender_att3d.wire.job_state import FINISHED, JobState

from ..engine import Engine
from ..inference import CancelledError

log = logging.getLogger("att3d.service")


class QueueFull(RuntimeError):
    pass


class ShuttingDown(RuntimeError):
    pass


def _set_result(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass(frozen=True)
class JobSnapshot:
    """A job's state at one moment: what ``GET /v1/jobs/{id}`` reports (:meth:`describe`)."""

    id: str
    kind: str
    status: JobState
    progress: float
    message: str
    error: tuple[int, str] | None  # (HTTP status, message)
    version: int
    compute_s: float | None
    queue_position: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "kind": self.kind, "status": self.status,
                             "progress": round(float(self.progress), 4), "message": self.message}
        if self.error:
            d["error"], d["error_status"] = self.error[1], self.error[0]
        if self.queue_position is not None and self.status == JobState.QUEUED:
            d["queue_position"] = self.queue_position
        if self.compute_s is not None:
            d["compute_s"] = round(self.compute_s, 6)
        return d


class Job:
    def __init__(self, kind: str, params: Any, priority: int) -> None:
        self.id = secrets.token_hex(8)
        self.kind = kind
        self.params = params
        self.priority = priority
        self.status = JobState.QUEUED
        self.progress = 0.0
        self.message = "queued"
        self.error: tuple[int, str] | None = None  # (HTTP status, message)
        self.result: Any = None
        self.created = time.monotonic()
        self.finished_at: float | None = None
        self.started_at: float | None = None
        self.version = 0  # bumped on every change, for long polls
        self.cancel_requested = threading.Event()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    # -- change notification (worker thread → event loop) ----------------------------------
    def _changed(self) -> None:
        with self._lock:
            self.version += 1
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_set_result, fut)
            except RuntimeError:  # that loop is closed
                pass

    async def wait_change(self, since: int, timeout: float) -> None:
        """Return when the job changed after version ``since``, or after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self.version != since:
                return
            self._waiters.append((loop, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters = [w for w in self._waiters if w[1] is not fut]

    def _finish(self, status: JobState, message: str, result: Any = None,
                error: tuple[int, str] | None = None) -> bool:
        """Record the outcome; the first one wins (a job the server finished as cancelled on shutdown
        stays cancelled when its operation returns later). False if it had already finished."""
        with self._lock:
            if self.status in FINISHED and self.finished_at is not None:
                return False
            self.status, self.message, self.result, self.error = status, message, result, error
            if status == JobState.DONE:
                self.progress = 1.0
            self.finished_at = time.monotonic()
        self.done.set()
        self._changed()
        return True

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def describe(self, queue_position: int | None = None) -> dict[str, Any]:
        return self.snapshot(queue_position).describe()

    def snapshot(self, queue_position: int | None = None) -> JobSnapshot:
        """The job as it is now, a plain value (what a service hands across processes)."""
        with self._lock:
            return JobSnapshot(self.id, self.kind, JobState(self.status), float(self.progress), self.message,
                               self.error, self.version, self.compute_s, queue_position)

    @property
    def compute_s(self) -> float | None:
        """Seconds the worker spent on this job (None until it finished running)."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


def forget_finished(jobs: dict[str, Job], keep: int, ttl: float) -> None:
    """Drop finished jobs older than ``ttl`` seconds, and all but the ``keep`` newest finished ones:
    memory stays bounded however many clients come and go without fetching their results."""
    now = time.monotonic()
    for j in [j for j in jobs.values() if j.finished]:
        if now - (j.finished_at or now) > ttl:
            jobs.pop(j.id, None)
    finished = sorted((j for j in jobs.values() if j.finished), key=lambda j: j.finished_at or 0)
    for j in finished[: max(0, len(finished) - keep)]:
        jobs.pop(j.id, None)


#: a job's work: ``operation(engine, params, progress)``; the service's params are engine requests
Operation = Callable[[Engine, Any, Callable[[float, str], bool]], Any]


@dataclass(frozen=True)
class Outcome:
    """How an operation ended, as a job records it (:meth:`Job._finish`'s arguments)."""

    status: JobState
    message: str
    result: Any = None
    error: tuple[int, str] | None = None  # (HTTP status, message)


CANCELLED = Outcome(JobState.CANCELLED, "cancelled")


def run_operation(operation: Operation, engine: Any, params: Any,
                  progress: Callable[[float, str], bool], kind: str = "job", job_id: str = "") -> Outcome:
    """Run one operation and map how it ended to a job's outcome: the one place that decides which
    failures are the request's (400), the device's memory (507) or the server's (500). Shared by
    :class:`Worker` and the studio's replicas, so both report the same errors."""
    try:
        result = operation(engine, params, progress)
    except CancelledError:
        return CANCELLED
    except (ValueError, TypeError) as e:  # the request's content, not the server
        return Outcome(JobState.ERROR, str(e), error=(400, str(e)))
    except MemoryError:
        msg = "out of memory: try a lower resolution"
        return Outcome(JobState.ERROR, msg, error=(507, msg))
    except Exception as e:  # a bug or a device failure: keep serving
        log.exception("job %s (%s) failed", job_id, kind)
        msg = f"internal error in {kind}: {type(e).__name__}: {e}"
        return Outcome(JobState.ERROR, msg, error=(500, msg))
    return Outcome(JobState.DONE, "done", result=result)


class Worker:
    """``submit(kind, params)`` → Job; the thread runs ``operations[kind](engine, params, progress)``."""

    def __init__(self, engine: Engine, operations: dict[str, Operation], max_queue: int = 64,
                 keep_finished: int = 64, ttl: float = 600.0) -> None:
        self.engine = engine
        self.operations = operations
        self.max_queue = max_queue
        self.keep_finished = keep_finished
        self.ttl = ttl
        self.jobs: dict[str, Job] = {}
        self._queue: queue.PriorityQueue[tuple[int, int, Job | None]] = queue.PriorityQueue()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._pending = 0
        self._closing = False
        self.completed = 0
        self.current: Job | None = None
        self._thread = threading.Thread(target=self._run, name="att3d-worker", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    # -- queue ---------------------------------------------------------------------------------
    def submit(self, kind: str, params: Any, priority: int = 1) -> Job:
        if kind not in self.operations:
            raise KeyError(kind)
        job = Job(kind, params, priority)
        with self._lock:
            if self._closing:
                raise ShuttingDown("the ATT3D service is shutting down")
            if self._pending >= self.max_queue:
                raise QueueFull(f"the ATT3D service is busy: {self._pending} jobs are waiting (the limit is "
                                f"{self.max_queue}); try again in a moment")
            self._pending += 1
            self._gc_locked()
            self.jobs[job.id] = job
        self._queue.put((priority, next(self._seq), job))
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def queue_position(self, job: Job) -> int | None:
        if job.status != JobState.QUEUED:
            return None
        with self._lock:
            ahead = [j for j in self.jobs.values() if j.status == JobState.QUEUED and not j.cancel_requested.is_set()
                     and (j.priority, j.created) < (job.priority, job.created)]
        return len(ahead)

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop: a queued one is dropped at once, a running one at its next progress point."""
        job = self.get(job_id)
        if job is None:
            return None
        job.cancel_requested.set()
        with self._lock:
            if job.status == JobState.QUEUED:
                job.status = JobState.CANCELLED  # the worker skips it
                self._pending -= 1
                queued = True
            else:
                queued = False
        if queued:
            job._finish(JobState.CANCELLED, "cancelled")
        return job

    def forget(self, job_id: str) -> Job | None:
        """Cancel if still going, and drop the job and its result."""
        job = self.cancel(job_id)
        with self._lock:
            self.jobs.pop(job_id, None)
        return job

    def _gc_locked(self) -> None:
        forget_finished(self.jobs, self.keep_finished, self.ttl)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"queued": self._pending, "max_queue": self.max_queue, "completed": self.completed,
                    "running": self.current.kind if self.current else None, "jobs_kept": len(self.jobs)}

    # -- the thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            _, _, job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.status != JobState.QUEUED:  # cancelled while waiting
                    continue
                self._pending -= 1
                job.status = JobState.RUNNING
                job.started_at = time.monotonic()
                self.current = job
            job.message = "running"
            job._changed()

            def progress(frac: float, msg: str, job: Job = job) -> bool:
                if job.finished:  # finished from outside (shutdown): stop, and keep its final message
                    return True
                job.progress = max(job.progress, min(1.0, float(frac)))
                job.message = msg
                job._changed()
                return job.cancel_requested.is_set()

            try:
                outcome = CANCELLED if job.cancel_requested.is_set() else run_operation(
                    self.operations[job.kind], self.engine, job.params, progress, job.kind, job.id)
                job._finish(outcome.status, outcome.message, outcome.result, outcome.error)
            finally:
                job.params = {}
                with self._lock:
                    self.current = None
                    self.completed += 1

    @property
    def closing(self) -> bool:
        """Shutting down: new jobs are refused, running ones are cancelled."""
        return self._closing

    @property
    def busy(self) -> bool:
        """The thread is still inside an operation (native code, maybe, that no one can interrupt)."""
        return self._thread.is_alive() and self.current is not None

    def shutdown(self, timeout: float = 10.0) -> None:
        """Refuse new jobs, cancel queued and running ones, stop the thread (waiting up to ``timeout``
        seconds for it). Safe to call again, e.g. once with ``timeout=0`` from a signal handler and
        later with a real timeout to join the thread.

        Waiting clients are answered at once: the running job is finished as cancelled here, and
        asked to stop at its next progress point; whatever it returns after that is dropped. (A mesh
        extraction may run for a minute without such a point; the server does not wait for it.)"""
        with self._lock:
            first = not self._closing
            self._closing = True
            ids = list(self.jobs) if first else []
            running = self.current if first else None
        if first:
            for jid in ids:
                self.cancel(jid)
            if running is not None:
                running.cancel_requested.set()
                running._finish(JobState.CANCELLED, "cancelled: the server is stopping")
            self._queue.put((-1, -1, None))
        if timeout and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
