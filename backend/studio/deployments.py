"""The studio's Ray Serve application: three deployments.

* ``StudioIngress`` (HTTP, stateless, any number of replicas): ``att3d serve``'s FastAPI app
  (:func:`backend.service.app.create_app`, the same routes, auth, limits and errors) whose jobs are
  the job store's (:class:`RayJobs`), plus ``GET /v1/metrics``.
* ``StudioJobs`` (one replica): the :class:`~backend.studio.store.JobStore` — job state, per-user
  fair queues, the dispatcher. Every ingress and model replica reaches it by its handle.
* ``StudioModel`` (``--replicas`` or autoscaling bounds): one :class:`~backend.engine.Engine`
  each, on its device; one thread owns the model, as in ``att3d serve``. Jobs arriving together are
  batched (``@serve.batch``): generate requests share one mapping-network pass.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from ..service.jobs import Refused
from ..service.worker import JobSnapshot, Outcome, run_operation
from .store import JobStore, ReplicaLost

log = logging.getLogger("att3d.studio")

APP = "att3d"
JOBS, MODEL, INGRESS = "StudioJobs", "StudioModel", "StudioIngress"
METRICS_ROUTE = "/v1/metrics"
PROGRESS_EVERY_S = 0.2  # a replica reports progress (and hears of a cancel) at most this often
MANY = 100_000  # concurrent requests the store and the ingress take (long polls wait there, idle)


@dataclass
class Settings:
    """Everything ``att3d studio`` configures (plain values: they travel to the replicas)."""

    model: str = "demo"
    device: str = "auto"
    replicas: int = 1
    min_replicas: int | None = None  # autoscaling when both are set
    max_replicas: int | None = None
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0
    threads: int | None = None
    batch_size: int = 1
    batch_wait_s: float = 0.01
    max_queue: int = 256
    max_queue_per_user: int = 64
    retries: int = 0
    ingress_replicas: int = 1
    users: dict[str, str] = field(default_factory=dict)  # token digest -> user name
    token_hint: str = ""
    allow_hosts: list[str] = field(default_factory=list)
    allow_remote: bool = False


# -- the model replicas ------------------------------------------------------------------------------

def _with_modulation(engine: Any, request: Any, progress: Any, modulation: Any) -> Any:
    """A generate job whose mapping-network pass its batch already made (:meth:`Engine.modulations`)."""
    return engine.run(request, progress, modulation=modulation)


@serve.deployment(name=MODEL)
class StudioModel:
    def __init__(self, settings: Settings) -> None:
        import torch

        from ..engine import Engine
        from ..service.app import OPERATIONS

        if settings.threads:
            torch.set_num_threads(int(settings.threads))
        self.operations = OPERATIONS
        self.engine = Engine.load(settings.model, device=settings.device)
        self.engine.warm()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="att3d-replica")  # one thread owns it
        batch: Any = self.run_batch  # the @serve.batch wrapper: its limits are set per deployment
        batch.set_max_batch_size(max(1, settings.batch_size))
        batch.set_batch_wait_timeout_s(max(0.0, settings.batch_wait_s))
        ctx = serve.get_replica_context()
        import ray

        self.where = {"pid": os.getpid(), "node": ray.util.get_node_ip_address(),
                      "replica": getattr(ctx.replica_id, "unique_id", str(ctx.replica_id))}
        self._store: DeploymentHandle | None = None

    @property
    def store(self) -> DeploymentHandle:
        if self._store is None:
            self._store = serve.get_deployment_handle(JOBS, app_name=APP)
        return self._store

    def info(self) -> dict[str, Any]:
        import torch

        return {**self.engine.info().as_dict(), "threads": torch.get_num_threads()}

    async def run(self, spec: dict[str, Any]) -> Outcome:
        return await self.run_batch(spec)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def run_batch(self, specs: list[dict[str, Any]]) -> list[Outcome]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._run_all, specs)

    def _run_all(self, specs: list[dict[str, Any]]) -> list[Outcome]:
        shared: dict[str, Any] = {}
        gen = [s for s in specs if s["kind"] == "generate"]
        if len(gen) > 1:  # one mapping-network pass for the prompts that arrived together
            try:
                for s, mod in zip(gen, self.engine.modulations([s["params"] for s in gen])):
                    shared[s["id"]] = mod
            except Exception:  # noqa: BLE001 - a bad prompt: each job then reports its own error
                shared = {}
        return [self._run_one(s, shared.get(s["id"])) for s in specs]

    def _run_one(self, spec: dict[str, Any], modulation: Any) -> Outcome:
        progress = self._progress(spec["id"])
        progress(0.0, "running")  # marks it running (a job cancelled meanwhile stops at its next report)
        operation = self.operations[spec["kind"]]
        if modulation is not None:  # this generate's step 2, done with its batch's
            operation = partial(_with_modulation, modulation=modulation)
        t0 = time.perf_counter()
        outcome = run_operation(operation, self.engine, spec["params"], progress, spec["kind"], spec["id"])
        log.info("job %s (%s): %s in %.2f s", spec["id"], spec["kind"], outcome.status, time.perf_counter() - t0)
        return outcome

    def _progress(self, job_id: str):
        """The progress callback of one job: reports reach the store without the job waiting for them
        (a round trip through Serve per report would sit on every job's critical path); the answer of
        the last one says whether to stop."""
        last, stop, pending = [-1e9], [False], [None]  # type: list[float], list[bool], list[Any]

        def progress(frac: float, message: str) -> bool:
            if pending[0] is not None:
                try:
                    stop[0] = bool(pending[0].result(timeout_s=0))
                    pending[0] = None
                except TimeoutError:
                    pass  # not answered yet: ask again later
                except Exception as e:  # noqa: BLE001 - the store restarting: go on, report later
                    log.warning("could not report progress of job %s: %s", job_id, e)
                    pending[0] = None
            now = time.monotonic()
            if not stop[0] and pending[0] is None and now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                pending[0] = self.store.progress.remote(job_id, frac, message, self.where)
            return stop[0]

        return progress


# -- the job store ------------------------------------------------------------------------------------

@serve.deployment(name=JOBS, num_replicas=1, max_ongoing_requests=MANY, ray_actor_options={"num_cpus": 0})
class StudioJobs:
    def __init__(self, model: DeploymentHandle, settings: Settings) -> None:
        from .metrics import StoreMetrics

        self.model = model
        self.metrics = StoreMetrics()
        self.store = JobStore(self._dispatch, self._replicas, per_replica=settings.batch_size,
                              max_queue=settings.max_queue, max_queue_per_user=settings.max_queue_per_user,
                              retries=settings.retries, metrics=self.metrics)
        self._started: asyncio.Task | None = None
        self._model_info: dict[str, Any] | None = None

    async def _ready(self) -> JobStore:
        if self._started is None:
            self._started = asyncio.ensure_future(self.store.start())
        await asyncio.shield(self._started)
        return self.store

    async def _dispatch(self, spec: dict[str, Any]) -> Outcome:
        import ray.exceptions

        try:
            return await self.model.run.remote(spec)
        except ray.exceptions.RayActorError as e:
            raise ReplicaLost(f"its process died: {type(e).__name__}") from None
        except ray.exceptions.RayTaskError as e:
            raise ReplicaLost(f"internal error in the replica: {str(e).strip().splitlines()[-1][:200]}") from None

    async def _replicas(self) -> int:
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(APP)
        dep = app.deployments.get(MODEL) if app is not None else None
        if dep is None:
            return 0
        return sum(int(n) for state, n in dep.replica_states.items() if str(state).endswith("RUNNING"))

    # the JobBackend methods, for the ingress (a refusal travels as a value: Ray re-wraps exceptions)
    async def submit(self, kind: str, params: Any, priority: int, user: str) -> Any:
        store = await self._ready()
        try:
            return await store.submit(kind, params, priority, user)
        except Refused as e:
            return ("refused", e.status, e.message, e.headers)

    async def status(self, job_id: str, user: str, since: int = -1, wait: float = 0.0) -> JobSnapshot | None:
        return await (await self._ready()).status(job_id, user, since, wait)

    async def result(self, job_id: str, user: str) -> tuple[JobSnapshot, Any] | None:
        return await (await self._ready()).result(job_id, user)

    async def cancel(self, job_id: str, user: str) -> dict[str, Any] | None:
        return await (await self._ready()).cancel(job_id, user)

    async def forget(self, job_id: str, user: str) -> None:
        await (await self._ready()).forget(job_id, user)

    async def info(self, user: str) -> dict[str, Any]:
        store = await self._ready()
        if self._model_info is None:
            self._model_info = await self.model.info.remote()
        return {**self._model_info, **await store.info(user)}

    async def closing(self) -> bool:
        return await (await self._ready()).closing()

    async def health(self) -> dict[str, Any]:
        store = await self._ready()
        return {"ok": not store._closing, "replicas": store.replicas}

    # for the replicas, operators and tests
    async def progress(self, job_id: str, frac: float, message: str, where: dict[str, Any] | None = None) -> bool:
        return await (await self._ready()).progress(job_id, frac, message, where)

    async def where(self, job_id: str) -> dict[str, Any] | None:
        return (await self._ready()).where(job_id)

    async def metrics_text(self) -> str:
        s = await self._ready()
        return self.metrics.render(s.queue_lengths(), s.in_flight, s.replicas)

    async def stop_jobs(self) -> int:  # not `shutdown`: a DeploymentHandle has a method of that name
        return await (await self._ready()).shutdown()


class RayJobs:
    """:class:`~backend.service.jobs.JobBackend` over the ``StudioJobs`` handle (in an ingress replica)."""

    def __init__(self, jobs: DeploymentHandle) -> None:
        self.jobs = jobs

    async def submit(self, kind: str, params: Any, priority: int, user: str) -> JobSnapshot:
        answer = await self.jobs.submit.remote(kind, params, priority, user)
        if isinstance(answer, tuple) and answer[:1] == ("refused",):
            raise Refused(*answer[1:])
        return answer

    async def status(self, job_id: str, user: str, since: int = -1, wait: float = 0.0) -> JobSnapshot | None:
        return await self.jobs.status.remote(job_id, user, since, wait)

    async def result(self, job_id: str, user: str) -> tuple[JobSnapshot, Any] | None:
        return await self.jobs.result.remote(job_id, user)

    async def cancel(self, job_id: str, user: str) -> dict[str, Any] | None:
        return await self.jobs.cancel.remote(job_id, user)

    async def forget(self, job_id: str, user: str) -> None:
        await self.jobs.forget.remote(job_id, user)

    async def info(self, user: str) -> dict[str, Any]:
        return await self.jobs.info.remote(user)

    async def closing(self) -> bool:
        return await self.jobs.closing.remote()


# -- the ingress ----------------------------------------------------------------------------------------

@serve.deployment(name=INGRESS, max_ongoing_requests=MANY, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class StudioIngress:
    def __init__(self, jobs: DeploymentHandle, settings: Settings, info: dict[str, Any]) -> None:
        self.jobs, self.settings, self.info = jobs, settings, info

    def __serve_build_asgi_app__(self) -> Any:
        from fastapi.responses import PlainTextResponse

        from ..service.app import create_app
        from ..service.auth import HostPolicy
        from .metrics import CONTENT_TYPE, HttpMetrics
        from .users import authenticator

        s = self.settings
        app = create_app(RayJobs(self.jobs), authenticator(s.users), self.info, token_hint=s.token_hint,
                         host_allowed=HostPolicy(s.allow_hosts, remote=s.allow_remote),
                         health=lambda: self.jobs.health.remote())
        http = HttpMetrics(app)

        @app.get(METRICS_ROUTE, tags=["service"], include_in_schema=False)
        async def metrics() -> PlainTextResponse:
            text = http.render() + await self.jobs.metrics_text.remote()
            return PlainTextResponse(text, media_type=CONTENT_TYPE)

        return http


def build(settings: Settings, info: dict[str, Any]) -> Any:
    """The bound application: ingress → job store → model replicas."""
    opts: dict[str, Any] = {"ray_actor_options": {"num_cpus": settings.replica_cpus,
                                                  "num_gpus": settings.replica_gpus},
                            "max_ongoing_requests": max(1, settings.batch_size)}
    if settings.min_replicas is not None and settings.max_replicas is not None:
        # the store keeps every replica full (batch_size jobs in flight) while jobs wait, and a
        # target below that makes Serve add replicas then, and remove them when the queue is empty
        opts["autoscaling_config"] = {"min_replicas": settings.min_replicas, "max_replicas": settings.max_replicas,
                                      "target_ongoing_requests": max(0.5, 0.8 * settings.batch_size),
                                      "upscale_delay_s": 5, "downscale_delay_s": 60}
    else:
        opts["num_replicas"] = settings.replicas
    deployments: Any = (StudioModel, StudioJobs, StudioIngress)  # Serve's Deployment objects, not the classes
    model = deployments[0].options(**opts).bind(settings)
    jobs = deployments[1].bind(model, settings)
    return deployments[2].options(num_replicas=settings.ingress_replicas).bind(jobs, settings, info)
