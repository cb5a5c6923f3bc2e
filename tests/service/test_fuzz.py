"""Property-based: random JSON bodies (and random bytes, and random queries) never get a 5xx.

Most examples run against the app in-process (the real validation and the real tiny model, with
the mesh work kept small), a few against the real server process."""
from __future__ import annotations

import json

import pytest
from cheap_engine import CheapEngine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

scalars = st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True) | st.text(max_size=20)
anything = st.recursive(scalars,
                        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                        max_leaves=12)
prompts = st.sampled_from(["a red cube", "", "  ", "x" * 501, "a blue sphere"]) | st.text(max_size=30) | anything
small_ints = st.sampled_from([-1, 0, 1, 2, 3, 4, 15, 16, 17, 24, 513, 10**30]) | anything
floats = st.sampled_from([0, 0.5, 1, -0.1, 1.5, 1e308]) | st.floats() | anything
keyframe = st.fixed_dictionaries({}, optional={"position": floats, "prompt": prompts, "extra": anything})
bodies = st.one_of(
    anything,
    st.fixed_dictionaries({}, optional={"prompt": prompts, "resolution": small_ints, "simplify": small_ints,
                                        "texture": st.booleans() | anything, "junk": anything}),
    st.fixed_dictionaries({}, optional={"prompt_a": prompts, "prompt_b": prompts, "alpha": floats,
                                        "resolution": small_ints}),
    st.fixed_dictionaries({}, optional={"keyframes": st.lists(keyframe, max_size=5) | anything,
                                        "steps": small_ints, "resolution": small_ints,
                                        "consistent": st.booleans() | anything}),
    st.fixed_dictionaries({}, optional={"prompt": prompts, "k": small_ints}),
)
paths = st.sampled_from(["/v1/generate", "/v1/blend", "/v1/chain", "/v1/nearest", "/v1/jobs/generate",
                         "/v1/jobs/blend", "/v1/jobs/chain"])


@pytest.fixture(scope="module")
def app_client(engine):
    from fastapi.testclient import TestClient

    from backend.service.app import OPERATIONS, create_app
    from backend.service.worker import Worker

    worker = Worker(CheapEngine(engine), OPERATIONS, max_queue=1000).start()
    app = create_app(worker, "t" * 32, {"model": "x"})
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as c:
        c.headers["Authorization"] = "Bearer " + "t" * 32
        yield c
    worker.shutdown()


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(path=paths, body=bodies)
def test_random_json_never_5xx_in_process(app_client, path, body):
    data = json.dumps(body).encode()  # NaN/Infinity included: Python writes them, the server must cope
    r = app_client.post(path, content=data, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (path, body, r.status_code, r.text)
    if r.status_code >= 400:
        assert r.json()["error"]
    if path.startswith("/v1/jobs/") and r.status_code == 202:
        app_client.delete(f"/v1/jobs/{r.json()['id']}")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=paths, data=st.binary(max_size=200))
def test_random_bytes_never_5xx(app_client, path, data):
    r = app_client.post(path, content=data, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(job=st.text(max_size=30), query=st.dictionaries(st.sampled_from(["wait", "since", "format", "colors", "x"]),
                                                       st.text(max_size=10), max_size=3))
def test_random_job_queries_never_5xx(app_client, job, query):
    from urllib.parse import quote

    r = app_client.get(f"/v1/jobs/{quote(job, safe='')}", params=query)
    assert r.status_code < 500, r.text


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=paths, body=bodies)
def test_random_json_never_5xx_real_server(server, path, body):
    if isinstance(body, dict):  # keep whatever is valid cheap on the real model
        if isinstance(body.get("resolution"), int) and not isinstance(body.get("resolution"), bool):
            body["resolution"] = min(body["resolution"], 24)
        if isinstance(body.get("steps"), int) and not isinstance(body.get("steps"), bool):
            body["steps"] = min(body["steps"], 3)
        if path.endswith("generate") and "resolution" not in body:
            body["resolution"] = 16
    r = server.api.post(path, json.dumps(body).encode())
    assert r.status < 500, (path, body, r.status, r.body)
    if path.startswith("/v1/jobs/") and r.status == 202:
        server.api.request("DELETE", f"/v1/jobs/{r.json()['id']}")
