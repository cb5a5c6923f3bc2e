"""The HTTP API of ``att3d serve`` (FastAPI). Versioned under ``/v1``.

=======================================  ====================================================
``GET  /v1/health``                      liveness, no token: ``{"ok": true}``
``GET  /v1/info``                        model, text encoder, device, versions, limits, queue
``POST /v1/generate``                    prompt → mesh (waits for the result)
``POST /v1/blend``                       two prompts and α → mesh
``POST /v1/chain``                       keyframes → sequence
``POST /v1/nearest``                     prompt → nearest training prompts (JSON)
``POST /v1/jobs/{generate|blend|chain}`` the same as a job: ``202 {"id", "status", ...}``
``GET  /v1/jobs/{id}?wait=S``            status and progress; with ``wait`` a long poll that
                                         returns as soon as the job changes (≤ 30 s)
``GET  /v1/jobs/{id}/result``            the result (409 while it runs)
``DELETE /v1/jobs/{id}``                 cancel (queued: at once; running: at its next step)
                                         and forget the job
``GET  /v1/openapi.json``                the OpenAPI schema
=======================================  ====================================================

Every route but ``/v1/health`` needs ``Authorization: Bearer <token>``. Mesh results are the
binary payload of :mod:`blender_att3d.wire.payload` (``application/vnd.att3d.mesh``), or GLB
(Y-up, as glTF wants) with ``?format=glb`` or ``Accept: model/gltf-binary``; ``?colors=u8``
sends 8-bit colours. Errors are JSON ``{"error": "a readable message"}`` with a 4xx status for
anything the request got wrong, 503 when the queue is full or the server is stopping.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from blender_att3d.wire import payload, routes
from blender_att3d.wire.job_state import JobState
from blender_att3d.wire.types import MeshData, Neighbors, SequenceData

from ..engine import REQUESTS, Engine
from ..engine import Request as EngineRequest
from .auth import HostPolicy
from .jobs import DEFAULT_USER, JobBackend, LocalJobs, Refused
from .middleware import Authenticator, BearerAuth, BodyLimit, HostCheck, error, header_value, text
from .schemas import BlendRequest, ChainRequest, GenerateRequest, NearestRequest
from .worker import JobSnapshot, Worker

log = logging.getLogger("att3d.service")

GLB_TYPE = "model/gltf-binary"
FmtT = Literal["att3d", "glb"] | None
ColT = Literal["f32", "u8"]
MAX_WAIT_S = 30.0
DISCONNECT_POLL_S = 0.25


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


# -- operations run on the worker thread ----------------------------------------------------------

def run_request(engine: Engine, params: EngineRequest, progress: Callable[[float, str], bool]) -> Any:
    """A job's work: the engine runs the request its route's body made (and checked, once)."""
    return engine.run(params, progress)


#: every kind of job runs the same way: its params are the engine request
OPERATIONS: dict[str, Callable[[Engine, EngineRequest, Callable], Any]] = {kind: run_request for kind in REQUESTS}


# -- result encoding ----------------------------------------------------------------------------------

def encode_result(result: Any, fmt: str, colors: str) -> tuple[bytes, str]:
    if fmt == "att3d":
        return payload.encode(result, colors), payload.CONTENT_TYPE
    from blender_att3d.wire import glb

    if isinstance(result, MeshData):
        return glb.mesh_glb(result), GLB_TYPE
    if isinstance(result, SequenceData) and result.consistent:
        return glb.sequence_glb(result), GLB_TYPE
    raise ApiError(406, "GLB is available for meshes and consistent-topology chains only; "
                        "ask for the att3d payload (format=att3d) or a consistent chain")


def _format(request: Request, fmt: str | None) -> str:
    if fmt:
        return fmt
    return "glb" if GLB_TYPE in request.headers.get("accept", "") else "att3d"


# -- the app ------------------------------------------------------------------------------------------

def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            return f"malformed JSON in the request body: {err.get('ctx', {}).get('error', msg)}"
        if err.get("type") == "missing" and not loc:
            return "the request needs a JSON body"
        if err.get("type") == "model_attributes_type" and not loc:
            return "the request body must be a JSON object (Content-Type: application/json)"
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "invalid request: " + "; ".join(parts[:8]) + (" ..." if len(parts) > 8 else "")


def add_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"error": "..."}``: the request's (4xx, naming the field), a route's (404, 405),
    a bug (500, logged)."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        msg = {404: f"no such endpoint: {request.method} {request.url.path} (the API is under {routes.PREFIX})",
               405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code,
                                                                                        str(exc.detail))
        return error(exc.status_code, msg, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unhandled error on %s", text(request.url.path))
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


def user_of(request: Request) -> str:
    return getattr(request.state, "user", DEFAULT_USER)


def missing(job_id: str) -> ApiError:
    return ApiError(404, f"no job {job_id[:40]!r} (finished jobs are forgotten after a while)")


class Jobs:
    """What the routes do with jobs, on a :class:`~backend.service.jobs.JobBackend`: submit one, wait for
    it (cancelling it when the client hangs up), answer its result or its error."""

    def __init__(self, backend: JobBackend) -> None:
        self.backend = backend

    async def submit(self, request: Request, kind: str, params: EngineRequest, priority: int = 1) -> JobSnapshot:
        try:
            return await self.backend.submit(kind, params, priority, user_of(request))
        except Refused as e:
            raise ApiError(e.status, e.message, e.headers or None) from None

    async def wait_done(self, request: Request, job: JobSnapshot) -> JobSnapshot:
        """Until the job finishes; cancels it if the client hangs up meanwhile."""
        user = user_of(request)
        while not job.finished:
            now = await self.backend.status(job.id, user, job.version, DISCONNECT_POLL_S)
            if now is None:  # forgotten meanwhile (the server is stopping)
                raise ApiError(503, "the job was cancelled: the server is stopping")
            job = now
            if not job.finished and await request.is_disconnected():
                await self.backend.forget(job.id, user)
                raise ApiError(499, "client closed the request")
        return job

    async def error_of(self, job: JobSnapshot) -> ApiError:
        if job.status == JobState.CANCELLED and await self.backend.closing():
            return ApiError(503, "the job was cancelled: the server is stopping")
        if job.status == JobState.CANCELLED:
            return ApiError(409, "the job was cancelled")
        status, msg = job.error or (500, "the job failed")
        return ApiError(status, msg)

    async def result(self, request: Request, job_id: str, fmt: str, colors: str) -> Response:
        found = await self.backend.result(job_id, user_of(request))
        if found is None:
            raise missing(job_id)
        job, result = found
        if job.status != JobState.DONE:
            raise await self.error_of(job)
        if isinstance(result, Neighbors):
            return JSONResponse(result.as_dict())
        data, media = await run_in_threadpool(encode_result, result, fmt, colors)
        meta = result.meta if isinstance(result, (MeshData, SequenceData)) else {}
        headers = {"X-ATT3D-Model": header_value(meta.get("model", ""))}
        if job.compute_s is not None:
            headers["Server-Timing"] = f"compute;dur={job.compute_s * 1000:.3f}"
        return Response(data, media_type=media, headers=headers)

    async def run(self, request: Request, kind: str, params: EngineRequest, fmt: str = "att3d", colors: str = "f32",
                  priority: int = 1) -> Response:
        """A synchronous route: the job, waited for, answered, forgotten."""
        job = await self.submit(request, kind, params, priority)
        try:
            job = await self.wait_done(request, job)
            if job.status == JobState.CANCELLED:
                raise ApiError(503, "the job was cancelled: the server is stopping")
            return await self.result(request, job.id, fmt, colors)
        finally:
            await self.backend.forget(job.id, user_of(request))


Fmt = Query(None, description="att3d (binary payload, default) or glb")
Col = Query("f32", description="colour encoding of the payload: f32 or u8")
MESH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {payload.CONTENT_TYPE: {}, GLB_TYPE: {}}, "description": "the mesh: ATT3D payload or GLB"}}


def add_operation_routes(v1: APIRouter, jobs: Jobs) -> None:
    """``POST /v1/{generate|blend|chain|nearest}``: the answer in the response (jobs behind it)."""

    @v1.post(routes.GENERATE, tags=["mesh"], response_class=Response, responses=MESH_RESPONSES)
    async def generate(req: GenerateRequest, request: Request, format: FmtT = Fmt, colors: ColT = Col):
        return await jobs.run(request, "generate", req.request(), _format(request, format), colors)

    @v1.post(routes.BLEND, tags=["mesh"], response_class=Response, responses=MESH_RESPONSES)
    async def blend(req: BlendRequest, request: Request, format: FmtT = Fmt, colors: ColT = Col):
        return await jobs.run(request, "blend", req.request(), _format(request, format), colors)

    @v1.post(routes.CHAIN, tags=["mesh"], response_class=Response, responses=MESH_RESPONSES)
    async def chain(req: ChainRequest, request: Request, format: FmtT = Fmt, colors: ColT = Col):
        return await jobs.run(request, "chain", req.request(), _format(request, format), colors)

    @v1.post(routes.NEAREST, tags=["prompts"])
    async def nearest(req: NearestRequest, request: Request) -> Any:
        return await jobs.run(request, "nearest", req.request(), priority=0)


def add_job_routes(v1: APIRouter, jobs: Jobs) -> None:
    """``/v1/jobs``: submit (202), long-poll the status, fetch the result, cancel."""

    def accepted(job: JobSnapshot) -> JSONResponse:
        return JSONResponse(job.describe(), status_code=202, headers={"Location": routes.job(job.id)})

    @v1.post(routes.submit_job("generate"), tags=["jobs"], status_code=202)
    async def job_generate(req: GenerateRequest, request: Request):
        return accepted(await jobs.submit(request, "generate", req.request()))

    @v1.post(routes.submit_job("blend"), tags=["jobs"], status_code=202)
    async def job_blend(req: BlendRequest, request: Request):
        return accepted(await jobs.submit(request, "blend", req.request()))

    @v1.post(routes.submit_job("chain"), tags=["jobs"], status_code=202)
    async def job_chain(req: ChainRequest, request: Request):
        return accepted(await jobs.submit(request, "chain", req.request()))

    @v1.get(routes.JOB, tags=["jobs"])
    async def job_status(job_id: str, request: Request,
                         since: int = Query(-1, ge=-1, description="the version you last saw"),
                         wait: float = Query(0.0, ge=0.0, le=MAX_WAIT_S, allow_inf_nan=False)):
        job = await jobs.backend.status(job_id, user_of(request), since, wait)
        if job is None:
            raise missing(job_id)
        return {**job.describe(), "version": job.version}

    @v1.get(routes.JOB_RESULT, tags=["jobs"], response_class=Response, responses=MESH_RESPONSES)
    async def job_result(job_id: str, request: Request, format: FmtT = Fmt, colors: ColT = Col):
        job = await jobs.backend.status(job_id, user_of(request))
        if job is None:
            raise missing(job_id)
        if not job.finished:
            raise ApiError(409, f"job {job.id} is still {job.status}; poll GET {routes.job(job.id)}?wait=10")
        return await jobs.result(request, job_id, _format(request, format), colors)

    @v1.delete(routes.JOB, tags=["jobs"])
    async def job_cancel(job_id: str, request: Request):
        answer = await jobs.backend.cancel(job_id, user_of(request))
        if answer is None:
            raise missing(job_id)
        return answer


def create_app(jobs: Worker | JobBackend, token: str | Authenticator, info: dict[str, Any], token_hint: str = "",
               host_allowed: Callable[[str], bool] | None = None,
               health: Callable[[], Any] | None = None) -> FastAPI:
    """The ASGI app. ``jobs``: where jobs run (a :class:`Worker` of this process, or any
    :class:`~backend.service.jobs.JobBackend`); ``token``: the bearer token every request but
    /v1/health must carry, or an :data:`Authenticator` of several users; ``host_allowed``: which
    ``Host`` headers to answer, default loopback names and addresses; ``health``: an async function
    whose dict ``/v1/health`` answers (default ``{"ok": true}``)."""
    backend: JobBackend = LocalJobs(jobs) if isinstance(jobs, Worker) else jobs
    app = FastAPI(title="ATT3D service", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  description=__doc__)
    add_error_handlers(app)
    hint = f" (the token is in {token_hint})" if token_hint else ""
    app.add_middleware(BodyLimit)
    app.add_middleware(BearerAuth, token=token, hint=hint)  # runs before any body is read
    app.add_middleware(HostCheck, allowed=host_allowed or HostPolicy())  # added last: runs first

    @app.get(routes.HEALTH, tags=["service"])
    async def get_health() -> dict[str, Any]:
        return {"ok": True} if health is None else await health()

    v1 = APIRouter()  # every route here is behind BearerAuth

    @v1.get(routes.INFO, tags=["service"])
    async def get_info(request: Request) -> dict[str, Any]:
        return {**await backend.info(user_of(request)), **info}  # what the server was started with wins

    @v1.get(routes.OPENAPI, include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    jobs_routes = Jobs(backend)
    add_operation_routes(v1, jobs_routes)
    add_job_routes(v1, jobs_routes)
    app.include_router(v1)
    return app
