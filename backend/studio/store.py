"""The studio's job state, its fair queue and its dispatcher: one object on one asyncio loop (in the
cluster, the one replica of the ``StudioJobs`` deployment), reached by every ingress replica and
every model replica, so progress, cancel and results work whichever replica runs a job.

It holds no model and no Ray: ``dispatch(spec)`` sends a job to a model replica and returns its
:class:`~backend.service.worker.Outcome`, or raises :class:`ReplicaLost` when the replica died with
it; ``replicas()`` says how many model replicas run. The store sends no more jobs than the replicas
take at once (``replicas × per_replica``), so every other job waits here, in its user's queue,
served round-robin (:class:`~backend.studio.fair.FairQueue`), not in Serve's first-come queue.

Jobs are :class:`backend.service.worker.Job` objects, as ``att3d serve``'s worker keeps them.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from blender_att3d.wire.job_state import JobState

from ..service.jobs import Refused
from ..service.worker import Job, JobSnapshot, Outcome, forget_finished
from .fair import FairQueue

log = logging.getLogger("att3d.studio")

REPLICA_POLL_S = 2.0  # how often the store asks how many model replicas run


class ReplicaLost(RuntimeError):
    """The model replica that ran a job died (or became unreachable) before answering."""


class StudioJob(Job):
    def __init__(self, kind: str, params: Any, priority: int, user: str) -> None:
        super().__init__(kind, params, priority)
        self.user = user
        self.express = priority == 0
        self.attempts = 0
        self.assigned = False  # sent to a model replica (maybe still waiting in Serve's router)
        self.assigned_at: float | None = None
        self.replica: dict[str, Any] | None = None  # where it runs: {"pid", "node", "replica"}


Dispatch = Callable[[dict[str, Any]], Awaitable[Outcome]]


class JobStore:
    def __init__(self, dispatch: Dispatch, replicas: Callable[[], Awaitable[int]], per_replica: int = 1,
                 max_queue: int = 256, max_queue_per_user: int = 64, retries: int = 0, keep_finished: int = 256,
                 ttl: float = 600.0, metrics: Any = None) -> None:
        if max_queue < 1 or max_queue_per_user < 1:
            raise ValueError("the queue limits must be at least 1")
        self.dispatch, self.replicas_fn = dispatch, replicas
        self.per_replica = max(1, int(per_replica))
        self.max_queue, self.max_queue_per_user = max_queue, max_queue_per_user
        self.retries, self.keep_finished, self.ttl = retries, keep_finished, ttl
        self.jobs: dict[str, StudioJob] = {}
        self.queue: FairQueue[StudioJob] = FairQueue()
        self.in_flight = 0
        self.replicas = 0
        self.completed = 0
        self.replica_failures = 0
        self._closing = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.metrics = metrics

    async def start(self) -> JobStore:
        await self._refresh_replicas()
        self._tasks = [asyncio.create_task(self._dispatch_loop()), asyncio.create_task(self._watch_replicas())]
        return self

    # -- the API's side (every method takes the request's user) ------------------------------
    def _find(self, job_id: str, user: str) -> StudioJob | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.user == user else None  # another user's job: "no such job"

    def _position(self, job: StudioJob) -> int | None:
        """How many jobs run before a queued one: 0 once a replica has it (its first progress report,
        which makes it running, may still be on its way)."""
        if job.status != JobState.QUEUED:
            return None
        return 0 if job.assigned else self.queue.position(job.user, job, job.express)

    def _snapshot(self, job: StudioJob) -> JobSnapshot:
        return job.snapshot(self._position(job))

    async def submit(self, kind: str, params: Any, priority: int, user: str) -> JobSnapshot:
        if self._closing:
            raise Refused(503, "the ATT3D studio is shutting down")
        queued = len(self.queue)
        if queued >= self.max_queue:
            raise Refused(503, f"the ATT3D studio is busy: {queued} jobs are waiting (the limit is {self.max_queue}); "
                               "try again in a moment", {"Retry-After": "1"})
        mine = sum(1 for j in self.jobs.values() if j.user == user and not j.finished)
        if mine >= self.max_queue_per_user and priority != 0:
            raise Refused(429, f"you have {mine} jobs waiting or running on this ATT3D studio (the limit per user "
                               f"is {self.max_queue_per_user}): wait for some to finish", {"Retry-After": "5"})
        forget_finished(self.jobs, self.keep_finished, self.ttl)  # type: ignore[arg-type]
        job = StudioJob(kind, params, priority, user)
        self.jobs[job.id] = job
        self.queue.push(user, job, job.express)
        if self.metrics is not None:
            self.metrics.submitted(user, kind)
        self._wake.set()
        return self._snapshot(job)

    async def status(self, job_id: str, user: str, since: int = -1, wait: float = 0.0) -> JobSnapshot | None:
        job = self._find(job_id, user)
        if job is None:
            return None
        if wait > 0 and not job.finished:
            await job.wait_change(job.version if since < 0 else since, wait)
        return self._snapshot(job)

    async def result(self, job_id: str, user: str) -> tuple[JobSnapshot, Any] | None:
        job = self._find(job_id, user)
        return None if job is None else (job.snapshot(), job.result)

    def _cancel(self, job: StudioJob, message: str = "cancelled") -> None:
        job.cancel_requested.set()
        if job.status == JobState.QUEUED and not job.assigned:
            self.queue.remove(job.user, job, job.express)
            self._finish(job, Outcome(JobState.CANCELLED, message))
        elif message != "cancelled":  # running, and the server stops: answer its waiting client now
            self._finish(job, Outcome(JobState.CANCELLED, message))

    async def cancel(self, job_id: str, user: str) -> dict[str, Any] | None:
        job = self._find(job_id, user)
        if job is None:
            return None
        if job.finished:
            self.jobs.pop(job_id, None)
        else:
            self._cancel(job)  # a running one stops at its next progress point
        return {**job.describe(), "cancel_requested": not job.finished or job.status == JobState.CANCELLED}

    async def forget(self, job_id: str, user: str) -> None:
        job = self._find(job_id, user)
        if job is not None:
            if not job.finished:
                self._cancel(job)
            self.jobs.pop(job_id, None)

    async def closing(self) -> bool:
        return self._closing

    async def info(self, user: str) -> dict[str, Any]:
        mine = [j for j in self.jobs.values() if j.user == user and not j.finished]
        mine.sort(key=lambda j: j.created)
        running = sum(1 for j in self.jobs.values() if j.status == JobState.RUNNING)
        return {"replicas": self.replicas,
                "queue": {"queued": len(self.queue), "max_queue": self.max_queue,
                          "max_queue_per_user": self.max_queue_per_user, "running": running,
                          "completed": self.completed, "users_waiting": len(self.queue.lengths()),
                          "yours": [{"id": j.id, "kind": j.kind, "status": j.status,
                                     **({"queue_position": p} if (p := self._position(j)) is not None else {})}
                                    for j in mine]}}

    def queue_lengths(self) -> dict[str, int]:
        return self.queue.lengths()

    # -- the replicas' side --------------------------------------------------------------------
    async def progress(self, job_id: str, frac: float, message: str, where: dict[str, Any] | None = None) -> bool:
        """A model replica reports on a job; True: stop it (cancelled, forgotten, or finished)."""
        job = self.jobs.get(job_id)
        if job is None or job.finished:
            return True
        if job.status == JobState.QUEUED:
            job.status = JobState.RUNNING
            job.started_at = time.monotonic()
            job.replica = where
            if self.metrics is not None:
                self.metrics.started(job)
        job.progress = max(job.progress, min(1.0, float(frac)))
        job.message = message
        job._changed()
        return job.cancel_requested.is_set()

    def where(self, job_id: str) -> dict[str, Any] | None:
        """Which replica runs a job (operators, tests): {"pid", "node", "replica"}."""
        job = self.jobs.get(job_id)
        return None if job is None else job.replica

    def _finish(self, job: StudioJob, outcome: Outcome) -> None:
        if job.started_at is None and job.assigned_at is not None:  # done before its first report came
            job.started_at = job.assigned_at
        if job._finish(outcome.status, outcome.message, outcome.result, outcome.error):
            job.params = {}
            self.completed += 1
            if self.metrics is not None:
                self.metrics.finished(job)

    # -- dispatch ------------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self.replicas * self.per_replica

    async def _refresh_replicas(self) -> None:
        try:
            n = int(await self.replicas_fn())
        except Exception as e:  # noqa: BLE001 - the controller may be restarting: keep the last count
            log.warning("could not count the model replicas: %s", e)
            return
        if n != self.replicas:
            log.info("model replicas: %d -> %d", self.replicas, n)
            self.replicas = n
            self._wake.set()

    async def _watch_replicas(self) -> None:
        while not self._closing:
            await asyncio.sleep(REPLICA_POLL_S)
            await self._refresh_replicas()

    async def _dispatch_loop(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            while not self._closing and self.in_flight < max(1, self.capacity):
                nxt = self.queue.pop()
                if nxt is None:
                    break
                job = nxt[1]
                job.assigned, job.assigned_at = True, time.monotonic()
                job.attempts += 1
                self.in_flight += 1
                asyncio.create_task(self._run(job))

    async def _run(self, job: StudioJob) -> None:
        spec = {"id": job.id, "kind": job.kind, "params": job.params}
        try:
            outcome = await self.dispatch(spec)
        except Exception as e:  # noqa: BLE001 - the replica died, or Serve could not reach one
            self.replica_failures += 1
            if self.metrics is not None:
                self.metrics.replica_failure()
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            log.warning("job %s (%s) lost its replica: %s", job.id, job.kind, reason)
            if not job.finished and not job.cancel_requested.is_set() and job.attempts <= self.retries:
                job.status, job.assigned, job.assigned_at, job.replica = JobState.QUEUED, False, None, None
                job.started_at = None
                job.progress, job.message = 0.0, "queued again: the replica running it stopped"
                job._changed()
                self.queue.push(job.user, job, job.express, front=True)
            else:
                where = job.replica or {}
                msg = (f"the studio replica running this job (pid {where.get('pid', '?')}) stopped before it "
                       f"finished ({reason}); the studio goes on with its other replicas: submit the job again")
                self._finish(job, Outcome(JobState.ERROR, msg, error=(502, msg)))
        else:
            self._finish(job, outcome)
        finally:
            self.in_flight -= 1
            self._wake.set()

    # -- shutdown -------------------------------------------------------------------------------------
    async def shutdown(self) -> int:
        """Refuse new jobs, cancel queued ones, and finish running ones as cancelled (their replicas stop
        them at their next progress point); returns how many jobs were cut short."""
        self._closing = True
        self._wake.set()
        cut = [j for j in self.jobs.values() if not j.finished]
        for job in cut:
            self._cancel(job, "cancelled: the server is stopping")
        for t in self._tasks:
            t.cancel()
        return len(cut)
