"""SIGTERM while a job runs native code with no cancel point for a minute (a stand-in for a 512³
mesh extraction): every waiting client gets the documented 503 JSON (or, polling a job, its
``cancelled`` status), and the process exits 0 within seconds, never aborting ("terminate called
without an active exception", status 134)."""
from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

SLOW_ENGINE_SERVER = [sys.executable, str(Path(__file__).with_name("slow_engine_server.py"))]


def test_sigterm_during_native_work_answers_everyone_and_exits_0(launch):
    srv = launch(command=SLOW_ENGINE_SERVER)
    api = srv.api
    answers: dict = {}

    def call(name: str, method: str, path: str, body=None) -> None:
        try:
            answers[name] = api.request(method, path, body, timeout=60)
        except OSError as e:  # a closed connection is no answer: the asserts below fail on it
            answers[name] = e

    try:
        threads = [threading.Thread(target=call, args=("sync", "POST", "/v1/generate", {"prompt": "a red cube"}))]
        threads[0].start()
        deadline = time.monotonic() + 30
        while api.get("/v1/info").json()["queue"]["running"] != "generate":
            assert time.monotonic() < deadline, "the slow job did not start"
            time.sleep(0.1)
        job = api.post("/v1/jobs/generate", {"prompt": "a blue sphere"}).json()  # queued behind it
        threads += [threading.Thread(target=call, args=("poll", "GET", f"/v1/jobs/{job['id']}?wait=30")),
                    threading.Thread(target=call, args=("nearest", "POST", "/v1/nearest", {"prompt": "a cube"}))]
        for t in threads[1:]:
            t.start()
        time.sleep(1.0)  # all three are waiting now
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(30)
        elapsed = time.monotonic() - t0
        for t in threads:
            t.join(30)
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
    time.sleep(0.2)  # the stderr pump
    err = "".join(srv.stderr)
    assert rc == 0, f"status {rc}: {err[-2000:]}"
    assert elapsed < 6, f"stopping took {elapsed:.1f} s"
    assert "terminate called" not in err and "Traceback" not in err, err[-2000:]
    for name in ("sync", "nearest"):
        r = answers[name]
        assert not isinstance(r, OSError), f"{name}: the connection closed unanswered ({r!r})"
        assert r.status == 503 and r.headers["content-type"] == "application/json", (name, r)
        assert "the server is stopping" in r.json()["error"]
    poll = answers["poll"]
    assert not isinstance(poll, OSError), poll
    assert poll.status == 200 and poll.json()["status"] == "cancelled", poll.body
