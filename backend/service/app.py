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

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from blender_att3d.wire import payload, routes
from blender_att3d.wire.job_state import JobState
from blender_att3d.wire.types import MeshData, SequenceData

from ..engine import Engine
from .auth import HostPolicy, host_name
from .jobs import DEFAULT_USER, JobBackend, LocalJobs, Refused
from .schemas import BlendRequest, ChainRequest, GenerateRequest, NearestRequest
from .worker import JobSnapshot, Worker

log = logging.getLogger("att3d.service")

GLB_TYPE = "model/gltf-binary"
FmtT = Literal["att3d", "glb"] | None
ColT = Literal["f32", "u8"]
MAX_BODY_BYTES = 1 << 20
MAX_WAIT_S = 30.0
BODY_TIMEOUT_S = 30.0  # a whole body (≤ 1 MiB) must arrive within this after the headers
DISCONNECT_POLL_S = 0.25


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def text(value: Any) -> str:
    """``value`` as readable text that UTF-8 can encode: control characters, and unpaired surrogates
    that came in as ``"\\ud800"`` (echoed in a field name, say), are written as escapes; a surrogate
    must not turn a 4xx answer into a serialisation error."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in str(value))


def header_value(value: Any, limit: int = 200) -> str:
    """The one place where data becomes an HTTP header value: printable ASCII only (CR, LF and other
    controls would end the header, and h11 refuses to send them, closing the connection unanswered;
    anything else becomes ``?``), at most ``limit`` characters."""
    return "".join(c if " " <= c <= "~" else "?" for c in str(value)[:limit]).strip()


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    safe = {k: header_value(v) for k, v in headers.items()} if headers else None
    return JSONResponse({"error": text(message), **extra}, status_code=status, headers=safe)


# -- operations run on the worker thread ----------------------------------------------------------

OPERATIONS: dict[str, Callable[[Engine, dict[str, Any], Callable], Any]] = {
    "generate": lambda e, p, progress: e.generate(progress=progress, **p),
    "blend": lambda e, p, progress: e.blend(progress=progress, **p),
    "chain": lambda e, p, progress: e.chain(p["keyframes"], p["steps"], p["resolution"], p["consistent"],
                                            progress=progress),
    "nearest": lambda e, p, progress: e.nearest(**p),
}


def _params(kind: str, req: Any) -> dict[str, Any]:
    if kind == "chain":
        return {"keyframes": req.keyframe_pairs(), "steps": req.steps, "resolution": req.resolution,
                "consistent": req.consistent}
    return req.model_dump()


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

class BodyLimit:
    """Reject request bodies over ``limit`` bytes with 413, and bodies that have not all arrived
    ``timeout`` seconds after their headers with 408 (a client sending one byte at a time would
    hold its connection forever), before anything parses them."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES, timeout: float | None = None) -> None:
        self.app, self.limit = app, limit
        self.timeout = BODY_TIMEOUT_S if timeout is None else timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if scope.get("method") in ("POST", "PUT", "PATCH") and ctype in (b"", b"text/plain",
                                                                          b"application/x-www-form-urlencoded"):
            # every body of this API is JSON: read it as JSON whatever a bare `curl -d` says
            scope = dict(scope, headers=[(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
                         + [(b"content-type", b"application/json")])
        too_big = JSONResponse({"error": f"the request body is too large (limit {self.limit} bytes)"}, 413)
        try:
            if cl is not None and int(cl) > self.limit:
                return await too_big(scope, receive, send)
        except ValueError:
            return await JSONResponse({"error": "bad Content-Length header"}, 400)(scope, receive, send)
        chunks, total = [], 0
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                late = JSONResponse({"error": f"the request body did not arrive within {self.timeout:g} s"}, 408,
                                    headers={"Connection": "close"})
                return await late(scope, receive, send)
            if msg["type"] != "http.request":
                return  # the client went away before sending its body
            chunks.append(msg.get("body", b""))
            total += len(chunks[-1])
            if total > self.limit:
                return await too_big(scope, receive, send)
            if not msg.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


#: who a token belongs to: the user's name, or None for a token nobody has
Authenticator = Callable[[bytes], str | None]


def single_token(token: str, user: str = DEFAULT_USER) -> Authenticator:
    """``att3d serve``'s one token (compared in constant time)."""
    expected = token.encode()
    return lambda given: user if hmac.compare_digest(given, expected) else None


class BearerAuth:
    """401 for any request (but the liveness probe) without ``Authorization: Bearer <token>``.

    A middleware rather than a route dependency so that it runs before the body is read or
    parsed: without the token, malformed JSON, an oversized body or an unknown path all get the
    same 401 and nothing else. ``token``: the one token (compared in constant time), or an
    :data:`Authenticator` (a studio's users). The user's name goes to ``request.state.user``.
    """

    OPEN_PATHS = (routes.HEALTH,)

    def __init__(self, app, token: str | Authenticator, hint: str = "") -> None:
        self.app, self.hint = app, hint
        self.who: Authenticator = single_token(token) if isinstance(token, str) else token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in self.OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = b""
        for k, v in scope.get("headers") or []:
            if k == b"authorization":
                header = v
                break
        scheme, _, given = header.strip().partition(b" ")
        given = given.strip()
        user = self.who(given) if scheme.lower() == b"bearer" and given else None
        if scheme.lower() != b"bearer" or not given:
            response = error(401, "authentication required: send 'Authorization: Bearer <token>'" + self.hint,
                             {"WWW-Authenticate": "Bearer"})
        elif user is None:
            response = error(401, "invalid token" + self.hint, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        else:
            scope.setdefault("state", {})["user"] = user
            return await self.app(scope, receive, send)
        return await response(scope, receive, send)


class HostCheck:
    """Answer only requests whose ``Host`` header names this server (DNS rebinding: a web page whose
    name an attacker re-points at 127.0.0.1 would otherwise reach the service from a browser; the
    token is then the only guard). ``allowed``: a :class:`backend.service.auth.HostPolicy`."""

    def __init__(self, app, allowed: Callable[[str], bool]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = ""
        for k, v in scope.get("headers") or []:
            if k == b"host":
                host = v.decode("latin-1")
                break
        if not host or self.allowed(host):  # HTTP/1.0 may omit it; browsers never do
            return await self.app(scope, receive, send)
        # short: the add-on quotes the first 100 characters of what /v1/health answered
        name = host_name(header_value(host, 80))
        response = error(421, f"host name {name!r} not allowed: start att3d serve with --allow-host {name}, "
                              "or connect by IP address")
        return await response(scope, receive, send)


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
    hint = f" (the token is in {token_hint})" if token_hint else ""

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

    app.add_middleware(BodyLimit)
    app.add_middleware(BearerAuth, token=token, hint=hint)  # runs before any body is read
    app.add_middleware(HostCheck, allowed=host_allowed or HostPolicy())  # added last: runs first

    @app.get(routes.HEALTH, tags=["service"])
    async def get_health() -> dict[str, Any]:
        return {"ok": True} if health is None else await health()

    v1 = APIRouter()  # every route here is behind BearerAuth

    def user_of(request: Request) -> str:
        return getattr(request.state, "user", DEFAULT_USER)

    @v1.get(routes.INFO, tags=["service"])
    async def get_info(request: Request) -> dict[str, Any]:
        return {**await backend.info(user_of(request)), **info}  # what the server was started with wins

    @v1.get(routes.OPENAPI, include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    # -- helpers -----------------------------------------------------------------------------
    async def submit(request: Request, kind: str, params: dict[str, Any], priority: int = 1) -> JobSnapshot:
        try:
            return await backend.submit(kind, params, priority, user_of(request))
        except Refused as e:
            raise ApiError(e.status, e.message, e.headers or None) from None

    async def wait_done(request: Request, job: JobSnapshot) -> JobSnapshot:
        """Until the job finishes; cancels it if the client hangs up meanwhile."""
        user = user_of(request)
        while not job.finished:
            now = await backend.status(job.id, user, job.version, DISCONNECT_POLL_S)
            if now is None:  # forgotten meanwhile (the server is stopping)
                raise ApiError(503, "the job was cancelled: the server is stopping")
            job = now
            if not job.finished and await request.is_disconnected():
                await backend.forget(job.id, user)
                raise ApiError(499, "client closed the request")
        return job

    async def job_error(job: JobSnapshot) -> ApiError:
        if job.status == JobState.CANCELLED and await backend.closing():
            return ApiError(503, "the job was cancelled: the server is stopping")
        if job.status == JobState.CANCELLED:
            return ApiError(409, "the job was cancelled")
        status, msg = job.error or (500, "the job failed")
        return ApiError(status, msg)

    async def result_response(request: Request, job_id: str, fmt: str, colors: str) -> Response:
        found = await backend.result(job_id, user_of(request))
        if found is None:
            raise ApiError(404, f"no job {job_id[:40]!r} (finished jobs are forgotten after a while)")
        job, result = found
        if job.status != JobState.DONE:
            raise await job_error(job)
        if isinstance(result, (dict, list)):
            return JSONResponse(result)
        data, media = await run_in_threadpool(encode_result, result, fmt, colors)
        meta = result.meta if isinstance(result, (MeshData, SequenceData)) else {}
        headers = {"X-ATT3D-Model": header_value(meta.get("model", ""))}
        if job.compute_s is not None:
            headers["Server-Timing"] = f"compute;dur={job.compute_s * 1000:.3f}"
        return Response(data, media_type=media, headers=headers)

    async def run_sync(request: Request, kind: str, params: dict[str, Any], fmt: str, colors: str,
                       priority: int = 1) -> Response:
        job = await submit(request, kind, params, priority)
        try:
            job = await wait_done(request, job)
            if job.status == JobState.CANCELLED:
                raise ApiError(503, "the job was cancelled: the server is stopping")
            return await result_response(request, job.id, fmt, colors)
        finally:
            await backend.forget(job.id, user_of(request))

    Fmt = Query(None, description="att3d (binary payload, default) or glb")
    Col = Query("f32", description="colour encoding of the payload: f32 or u8")
    mesh_responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {payload.CONTENT_TYPE: {}, GLB_TYPE: {}}, "description": "the mesh: ATT3D payload or GLB"}}

    # -- synchronous endpoints ------------------------------------------------------------------
    @v1.post(routes.GENERATE, tags=["mesh"], response_class=Response, responses=mesh_responses)
    async def generate(req: GenerateRequest, request: Request, format: FmtT = Fmt, colors: ColT = Col):
        return await run_sync(request, "generate", _params("generate", req), _format(request, format), colors)

    @v1.post(routes.BLEND, tags=["mesh"], response_class=Response, responses=mesh_responses)
    async def blend(req: BlendRequest, request: Request, format: FmtT = Fmt, colors: ColT = Col):
        return await run_sync(request, "blend", _params("blend", req), _format(request, format), colors)

    @v1.post(routes.CHAIN, tags=["mesh"], response_class=Response, responses=mesh_responses)
    async def chain(req: ChainRequest, request: Request, format: FmtT = Fmt, colors: ColT = Col):
        return await run_sync(request, "chain", _params("chain", req), _format(request, format), colors)

    @v1.post(routes.NEAREST, tags=["prompts"])
    async def nearest(req: NearestRequest, request: Request) -> Any:
        job = await submit(request, "nearest", req.model_dump(), priority=0)
        try:
            job = await wait_done(request, job)
            if job.status != JobState.DONE:
                raise await job_error(job)
            found = await backend.result(job.id, user_of(request))
            if found is None:
                raise ApiError(503, "the job was cancelled: the server is stopping")
            return found[1]
        finally:
            await backend.forget(job.id, user_of(request))

    # -- jobs -------------------------------------------------------------------------------------
    def accepted(job: JobSnapshot) -> JSONResponse:
        return JSONResponse(job.describe(), status_code=202, headers={"Location": routes.job(job.id)})

    @v1.post(routes.submit_job("generate"), tags=["jobs"], status_code=202)
    async def job_generate(req: GenerateRequest, request: Request):
        return accepted(await submit(request, "generate", _params("generate", req)))

    @v1.post(routes.submit_job("blend"), tags=["jobs"], status_code=202)
    async def job_blend(req: BlendRequest, request: Request):
        return accepted(await submit(request, "blend", _params("blend", req)))

    @v1.post(routes.submit_job("chain"), tags=["jobs"], status_code=202)
    async def job_chain(req: ChainRequest, request: Request):
        return accepted(await submit(request, "chain", _params("chain", req)))

    def missing(job_id: str) -> ApiError:
        return ApiError(404, f"no job {job_id[:40]!r} (finished jobs are forgotten after a while)")

    @v1.get(routes.JOB, tags=["jobs"])
    async def job_status(job_id: str, request: Request,
                         since: int = Query(-1, ge=-1, description="the version you last saw"),
                         wait: float = Query(0.0, ge=0.0, le=MAX_WAIT_S, allow_inf_nan=False)):
        job = await backend.status(job_id, user_of(request), since, wait)
        if job is None:
            raise missing(job_id)
        return {**job.describe(), "version": job.version}

    @v1.get(routes.JOB_RESULT, tags=["jobs"], response_class=Response, responses=mesh_responses)
    async def job_result(job_id: str, request: Request, format: FmtT = Fmt, colors: ColT = Col):
        job = await backend.status(job_id, user_of(request))
        if job is None:
            raise missing(job_id)
        if not job.finished:
            raise ApiError(409, f"job {job.id} is still {job.status}; poll GET {routes.job(job.id)}?wait=10")
        return await result_response(request, job_id, _format(request, format), colors)

    @v1.delete(routes.JOB, tags=["jobs"])
    async def job_cancel(job_id: str, request: Request):
        answer = await backend.cancel(job_id, user_of(request))
        if answer is None:
            raise missing(job_id)
        return answer

    app.include_router(v1)
    return app
