"""The HTTP API's version and routes: one table for the service (FastAPI) and the HTTP client.

``API_VERSION`` is what ``GET /v1/info`` reports as ``api``; bump it on any change an older client
or server cannot follow (the client refuses a server that speaks another version and says which to
update). The ``/v1`` prefix names the URL namespace and stays put until a new namespace is needed.
"""
from __future__ import annotations

API_VERSION = 2  # 2: consistent chains come as keyframe pieces (SequencePiece)
PREFIX = "/v1"

HEALTH = f"{PREFIX}/health"  # liveness, the one route without a token
INFO = f"{PREFIX}/info"
OPENAPI = f"{PREFIX}/openapi.json"
GENERATE = f"{PREFIX}/generate"
BLEND = f"{PREFIX}/blend"
CHAIN = f"{PREFIX}/chain"
NEAREST = f"{PREFIX}/nearest"

JOBS = f"{PREFIX}/jobs"
#: The operations that also run as jobs: ``POST /v1/jobs/{kind}``.
JOB_KINDS = ("generate", "blend", "chain")
#: Templates (FastAPI path syntax); :func:`job` and :func:`job_result` fill them in.
JOB = JOBS + "/{job_id}"
JOB_RESULT = JOBS + "/{job_id}/result"


def submit_job(kind: str) -> str:
    """``/v1/jobs/{kind}``: where a job of ``kind`` (one of :data:`JOB_KINDS`) is posted."""
    return f"{JOBS}/{kind}"


def job(job_id: str) -> str:
    """A job's status (GET, long polls with ``?wait=``) and cancel (DELETE)."""
    return JOB.format(job_id=job_id)


def job_result(job_id: str) -> str:
    return JOB_RESULT.format(job_id=job_id)
