"""Property-based fuzzing derived from the service's own OpenAPI schema (schemathesis): requests that
fit the schema and requests that break it (wrong types, missing fields, odd strings in paths and
queries) on every operation. Asserted for each: never a 5xx; every 4xx is JSON with a readable
``error``; the server stays healthy, and its memory and job table bounded.

Bounded by default (``ATT3D_FUZZ_EXAMPLES``, 200 in-process and 40 against the real server:
about a minute); ``ATT3D_FUZZ_LONG=1`` runs 20× as many."""
from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
from cheap_engine import CheapEngine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

schemathesis = pytest.importorskip("schemathesis", reason="the fuzz suite needs schemathesis (the test extra)")
from schemathesis import GenerationMode  # noqa: E402

TOKEN = "f" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCALE = 20 if os.environ.get("ATT3D_FUZZ_LONG") else 1
EXAMPLES = int(os.environ.get("ATT3D_FUZZ_EXAMPLES", "200")) * SCALE
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def check_answer(status: int, headers, body: bytes, what: str) -> None:
    import json

    assert status < 500, f"{what}: {status} {body[:300]!r}"
    if status >= 400:
        ctype = headers.get("content-type", "")
        ctype = ctype[0] if isinstance(ctype, list) else ctype  # schemathesis keeps every value of a header
        assert ctype.startswith("application/json"), f"{what}: {status} with {ctype!r}: {body[:200]!r}"
        err = json.loads(body)["error"]
        assert isinstance(err, str) and 3 <= len(err) <= 2000 and "Traceback" not in err, (what, err)
        assert err.isprintable(), (what, err)


@pytest.fixture(scope="module")
def fuzz_app(engine):
    from backend.service.app import OPERATIONS, create_app
    from backend.service.auth import HostPolicy
    from backend.service.worker import Worker

    worker = Worker(CheapEngine(engine), OPERATIONS, max_queue=64).start()
    # schemathesis' in-process transport says "Host: testserver"
    app = create_app(worker, TOKEN, {"model": "fuzz"}, host_allowed=HostPolicy(["testserver"]))
    yield app, worker
    worker.shutdown()


def _strategy(schema):
    return schema.as_strategy(GenerationMode.POSITIVE, headers=AUTH) | \
        schema.as_strategy(GenerationMode.NEGATIVE, headers=AUTH)


def _cleanup(case, response, call) -> None:
    """Cancel the jobs fuzzing starts, so that the queue drains."""
    try:
        data = response.json()
    except Exception:
        return
    if response.status_code == 202 and isinstance(data, dict) and "id" in data:
        call(data["id"])


@pytest.mark.slow
def test_schema_fuzz_in_process(fuzz_app):
    app, worker = fuzz_app
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", app, headers=AUTH)
    assert {"/v1/generate", "/v1/jobs/{job_id}", "/v1/nearest"} <= set(schema.raw_schema["paths"])
    gc.collect()
    before = rss_bytes()
    seen: dict[int, int] = {}

    @SETTINGS
    @given(data=st.data())
    def fuzz(data):
        case = data.draw(_strategy(schema))
        r = case.call(headers=AUTH)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        check_answer(r.status_code, r.headers, r.content, f"{case.method} {case.formatted_path}")
        _cleanup(case, r, lambda job_id: worker.forget(job_id))

    fuzz()
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/v1/health").json() == {"ok": True}
        r = c.post("/v1/generate", json={"prompt": "a red cube", "resolution": 16}, headers=AUTH)
        assert r.status_code == 200 and r.content[:4] == b"A3DM"  # still serving meshes
    gc.collect()
    assert len(worker.jobs) <= worker.keep_finished + worker.max_queue
    grown = rss_bytes() - before
    assert grown < 300 * 2**20, f"memory grew by {grown / 2**20:.0f} MiB over {EXAMPLES} requests"
    assert sum(seen.values()) >= EXAMPLES * 0.9 and any(400 <= s < 500 for s in seen), seen


def test_schema_fuzz_real_server(server):
    """The same against ``att3d serve`` (real sockets, uvicorn, the Host check, the tiny model)."""
    auth = {"Authorization": f"Bearer {server.token}"}
    schema = schemathesis.openapi.from_url(f"{server.url}/v1/openapi.json", headers=auth)
    before = rss_bytes(server.proc.pid)

    @settings(max_examples=max(10, EXAMPLES // 5), deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    @given(data=st.data())
    def fuzz(data):
        case = data.draw(schema.as_strategy(GenerationMode.POSITIVE, headers=auth)
                         | schema.as_strategy(GenerationMode.NEGATIVE, headers=auth))
        if isinstance(case.body, dict) and isinstance(case.body.get("resolution"), int):
            case.body["resolution"] = min(case.body["resolution"], 24)  # keep valid meshes cheap
        if isinstance(case.body, dict) and isinstance(case.body.get("steps"), int):
            case.body["steps"] = min(case.body["steps"], 3)
        r = case.call(base_url=server.url, headers=auth, timeout=120)
        check_answer(r.status_code, r.headers, r.content, f"{case.method} {case.formatted_path}")
        _cleanup(case, r, lambda job_id: server.api.request("DELETE", f"/v1/jobs/{job_id}"))

    fuzz()
    assert server.api.alive()
    grown = rss_bytes(server.proc.pid) - before
    assert grown < 300 * 2**20, f"the server's memory grew by {grown / 2**20:.0f} MiB"
    assert server.api.get("/v1/info").json()["queue"]["jobs_kept"] <= 64 + 64
