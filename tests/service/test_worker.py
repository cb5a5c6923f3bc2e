"""The job queue in-process, with a fake engine: bounded queue → 503, cancel, forgetting, shutdown."""
from __future__ import annotations

import threading
import time

import pytest

from backend.inference import CancelledError
from backend.service.worker import QueueFull, ShuttingDown, Worker
from blender_att3d.wire.job_state import JobState

TOKEN = "k" * 32


def slow(engine, params, progress):
    for i in range(params.get("n", 10)):
        if progress(i / params.get("n", 10), f"step {i}"):
            raise CancelledError("cancelled")
        engine["gate"].wait(params.get("dt", 0.01))
    if params.get("fail") == "value":
        raise ValueError("the prompt is empty")
    if params.get("fail") == "bug":
        raise KeyError("oops")
    return {"ok": params.get("tag")}


def make(max_queue=3, keep_finished=4):
    return Worker({"gate": threading.Event()}, {"slow": slow}, max_queue=max_queue, keep_finished=keep_finished).start()


def test_bounded_queue_and_priority():
    w = make(max_queue=2)
    try:
        running = w.submit("slow", {"n": 50})
        deadline = time.monotonic() + 5
        while running.status != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        a = w.submit("slow", {"tag": "a", "n": 1})
        b = w.submit("slow", {"tag": "b", "n": 1}, priority=0)
        with pytest.raises(QueueFull, match="busy.*limit is 2"):
            w.submit("slow", {})
        assert w.queue_position(b) == 0 and w.queue_position(a) == 1
        w.cancel(running.id)
        assert a.done.wait(5) and b.done.wait(5)
        assert b.finished_at <= a.finished_at and a.result == {"ok": "a"}
        assert running.status == JobState.CANCELLED
    finally:
        w.shutdown()


def test_errors_are_kept_apart():
    w = make()
    try:
        v = w.submit("slow", {"n": 1, "fail": "value"})
        b = w.submit("slow", {"n": 1, "fail": "bug"})
        ok = w.submit("slow", {"n": 1, "tag": 1})
        for j in (v, b, ok):
            assert j.done.wait(5)
        assert v.status == JobState.ERROR and v.error == (400, "the prompt is empty")
        assert b.status == JobState.ERROR and b.error[0] == 500
        assert ok.status == JobState.DONE  # the worker survived the bug
    finally:
        w.shutdown()


def test_finished_jobs_are_forgotten():
    w = make(max_queue=100, keep_finished=4)
    try:
        jobs = [w.submit("slow", {"n": 1}) for _ in range(10)]
        for j in jobs:
            assert j.done.wait(5)
        w.submit("slow", {"n": 1}).done.wait(5)
        assert len(w.jobs) <= 5
    finally:
        w.shutdown()


def test_shutdown_cancels_and_refuses():
    w = make(max_queue=10)
    j = w.submit("slow", {"n": 1000})
    q = w.submit("slow", {"n": 1})
    w.shutdown(timeout=5)
    assert j.status == JobState.CANCELLED and q.status == JobState.CANCELLED
    with pytest.raises(ShuttingDown):
        w.submit("slow", {})


def test_http_503_when_full():
    from fastapi.testclient import TestClient

    from backend.service import app as app_mod

    gate = threading.Event()
    w = Worker({"gate": gate}, {"generate": lambda e, p, progress: (gate.wait(10), slow(e, {"n": 1}, progress))[1]},
               max_queue=2).start()
    app = app_mod.create_app(w, TOKEN, {"model": "fake"})
    try:
        with TestClient(app, base_url="http://127.0.0.1") as c:
            c.headers["Authorization"] = f"Bearer {TOKEN}"
            first = c.post("/v1/jobs/generate", json={"prompt": "a", "resolution": 16})
            deadline = time.monotonic() + 10  # on a busy machine the worker thread may take a while to pick it
            while (c.get(f"/v1/jobs/{first.json()['id']}").json()["status"] != "running"
                   and time.monotonic() < deadline):
                time.sleep(0.01)
            codes = [first.status_code] + [c.post("/v1/jobs/generate", json={"prompt": "a", "resolution": 16})
                                           .status_code for _ in range(3)]
            assert codes[:3] == [202, 202, 202]  # one running, two queued
            r = c.post("/v1/jobs/generate", json={"prompt": "a", "resolution": 16})
            assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
            assert c.get("/v1/info").json()["queue"]["queued"] == 2
            gate.set()
    finally:
        w.shutdown()


def test_shutdown_twice_still_joins_the_thread():
    """serve() calls shutdown(timeout=0) from the SIGTERM handler, then shutdown(timeout=5) on its way out:
    the second call must still wait for the running job to stop, so the process never exits mid-computation."""
    w = make(max_queue=10)
    j = w.submit("slow", {"n": 100, "dt": 0.3})
    deadline = time.monotonic() + 5
    while j.status != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    w.shutdown(timeout=0)
    assert w._thread.is_alive()  # still inside its 0.3 s step
    w.shutdown(timeout=5)
    assert not w._thread.is_alive() and j.status == JobState.CANCELLED
