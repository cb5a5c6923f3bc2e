"""The clients: embedded and HTTP give identical results; the subprocess client starts, restarts
once and explains failures; make_client picks a transport; the package needs no torch."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from blender_att3d.client import (
    BackendSettings,
    BackendUnavailable,
    Cancelled,
    InvalidRequest,
    MeshData,
    SequenceData,
    make_client,
)
from blender_att3d.client.embedded import EmbeddedClient
from blender_att3d.client.http import HTTPClient, SubprocessClient
from blender_att3d.wire.routes import API_VERSION

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def embedded(engine):
    return EmbeddedClient(engine=engine)


@pytest.fixture(scope="module")
def remote_serve(server):
    c = HTTPClient(server.url, server.token)
    yield c
    c.close()


@pytest.fixture(scope="module")
def remote_studio(studio_cluster, service_model_dir):
    """The HTTP client of `att3d studio` on a local Ray instance: one replica with this process's torch
    threads, so the same bits as the embedded client."""
    import torch

    studio = studio_cluster.deploy(service_model_dir, replicas=1, threads=torch.get_num_threads())
    c = HTTPClient(studio.url, studio.tokens["default"])
    yield c
    c.close()


@pytest.fixture(scope="module", params=["serve", pytest.param("studio", marks=pytest.mark.slow)])
def remote(request):
    """The HTTP client of `att3d serve`, and of `att3d studio`."""
    return request.getfixturevalue(f"remote_{request.param}")


REMOTES = [pytest.param("remote_serve", marks=pytest.mark.slow), pytest.param("remote_studio", marks=pytest.mark.slow)]


def same(a: MeshData, b: MeshData) -> None:
    assert np.array_equal(a.positions, b.positions)
    assert np.array_equal(a.faces, b.faces)
    assert np.array_equal(a.colors, b.colors)
    assert (a.uvs is None) == (b.uvs is None) and (a.texture is None) == (b.texture is None)
    if a.uvs is not None:
        assert np.array_equal(a.uvs, b.uvs) and np.array_equal(a.texture, b.texture)
    assert a.meta == b.meta


def test_client_package_needs_no_torch():
    code = ("import sys, blender_att3d.client as c, blender_att3d.client.http, blender_att3d.client.embedded, "
            "blender_att3d.wire.payload; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'bpy', 'httpx', 'requests', 'backend', "
            "'fastapi', 'pydantic')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_generate_identical(embedded, remote):
    same(embedded.generate("a red cube", resolution=32), remote.generate("a red cube", resolution=32))


def test_generate_texture_identical(embedded, remote):
    a = embedded.generate("a blue sphere", resolution=24, texture=True)
    b = remote.generate("a blue sphere", resolution=24, texture=True)
    assert a.texture is not None and a.uvs is not None
    same(a, b)


def test_blend_identical(embedded, remote):
    same(embedded.blend("a red cube", "a blue sphere", 0.3, resolution=24),
         remote.blend("a red cube", "a blue sphere", 0.3, resolution=24))


@pytest.mark.parametrize("consistent", [True, False])
def test_chain_identical(embedded, remote, consistent):
    kf = [(0, "a red cube"), (2, "a blue sphere"), (3, "a green cone")]
    a = embedded.chain(kf, steps=2, resolution=24, consistent=consistent, max_states=3)
    b = remote.chain(kf, steps=2, resolution=24, consistent=consistent, max_states=3)
    assert isinstance(a, SequenceData) and a.consistent == consistent
    assert a.steps == b.steps == [0.0, 1.0, 2.0, 2.5, 3.0]
    assert a.prompts == b.prompts and a.meta == b.meta
    if consistent:  # the cap and the largest move between stored states travel with the result
        assert a.meta["max_states"] == 3 and a.meta["max_move_voxels"] >= 0
    for i in range(len(a)):
        same(a.mesh(i), b.mesh(i))


def test_nearest_and_info_agree(embedded, remote):
    assert embedded.nearest("a red box", k=3) == remote.nearest("a red box", k=3)
    ie, ir = embedded.info(), remote.info()
    for key in ("model", "text_encoder", "device", "version", "training_prompts", "training_prompt_examples",
                "api", "limits"):
        assert getattr(ie, key) == getattr(ir, key), key
    assert ie.transport == "embedded" and ir.transport == "http" and ir.url.startswith("http://")


@pytest.mark.parametrize("client_name", ["embedded", *REMOTES])
def test_errors_are_invalid_request(request, client_name):
    c = request.getfixturevalue(client_name)
    with pytest.raises(InvalidRequest, match="empty"):
        c.generate("  ")
    with pytest.raises(InvalidRequest, match="resolution"):
        c.generate("a red cube", resolution=8)
    with pytest.raises(InvalidRequest, match="limit is 256"):
        c.chain([(0, "a"), (1, "b")], steps=300)
    with pytest.raises(InvalidRequest, match=r"at least steps \(4\) and at most 1024, got 3"):
        c.chain([(0, "a"), (1, "b")], steps=4, max_states=3)
    with pytest.raises(InvalidRequest, match="alpha"):
        c.blend("a", "b", 2.0)


def test_numpy_scalars_work_on_both_transports(embedded, remote):
    """Batch jobs pass numpy numbers: both transports accept them and agree."""
    same(embedded.generate("a red cube", resolution=np.int64(20)),
         remote.generate("a red cube", resolution=np.int64(20)))
    same(embedded.blend("a red cube", "a blue sphere", np.float32(0.25), resolution=np.int32(20)),
         remote.blend("a red cube", "a blue sphere", np.float32(0.25), resolution=np.int32(20)))


@pytest.mark.parametrize("client_name", ["embedded", *REMOTES])
def test_non_finite_numbers_are_invalid_request(request, client_name):
    c = request.getfixturevalue(client_name)
    with pytest.raises(InvalidRequest):
        c.blend("a red cube", "a blue sphere", float("nan"))
    with pytest.raises(InvalidRequest):
        c.chain([(0, "a red cube"), (float("inf"), "a blue sphere")], steps=1, resolution=16)
    with pytest.raises(InvalidRequest):
        c.generate("a red cube", resolution=object())
    assert isinstance(c.generate("a red cube", resolution=16), MeshData)  # still usable


@pytest.mark.parametrize("client_name", ["embedded", *REMOTES])
def test_progress_and_cancel_from_callback(request, client_name):
    c = request.getfixturevalue(client_name)
    seen = []

    def progress(frac, msg):
        seen.append(frac)
        return len(seen) >= 3

    with pytest.raises(Cancelled):
        c.chain([(0, "a red cube"), (1, "a blue sphere")], steps=200, resolution=32, progress=progress)
    assert seen and all(0 <= f <= 1 for f in seen)
    seen2 = []
    c.generate("a red cube", resolution=24, progress=lambda f, m: seen2.append((f, m)))
    assert seen2[-1][0] == 1.0


@pytest.mark.parametrize("client_name", ["embedded", *REMOTES])
def test_cancel_from_another_thread(request, client_name):
    c = request.getfixturevalue(client_name)
    started = threading.Event()
    out = {}

    def work():
        try:
            c.chain([(0, "a red cube"), (1, "a blue sphere")], steps=250, resolution=48,
                    progress=lambda f, m: started.set())
            out["r"] = "finished"
        except Cancelled:
            out["r"] = "cancelled"

    t = threading.Thread(target=work)
    t.start()
    assert started.wait(30)
    time.sleep(0.2)
    t0 = time.monotonic()
    c.cancel()
    t.join(30)
    assert out.get("r") == "cancelled" and time.monotonic() - t0 < 10
    assert isinstance(c.generate("a red cube", resolution=16), MeshData)  # usable afterwards


def test_remote_wrong_token(server):
    with pytest.raises(BackendUnavailable, match="rejected the token"):
        HTTPClient(server.url, "not-the-token-not-the-token")


def test_remote_unreachable():
    with pytest.raises(BackendUnavailable, match="Cannot reach|is `att3d serve` running"):
        HTTPClient("http://127.0.0.1:9", "x" * 20, connect_timeout=2)


def test_make_client(engine, service_model_dir, server):
    c = make_client(BackendSettings(mode="auto", model=str(service_model_dir), device="cpu"))
    assert isinstance(c, EmbeddedClient)  # torch is here
    c.close()
    r = make_client(BackendSettings(mode="remote", url=server.url, token=server.token))
    assert isinstance(r, HTTPClient) and r.info().model == "tiny-service"
    with pytest.raises(InvalidRequest, match="unknown backend mode 'telepathy'; use one of auto, embedded, local"):
        BackendSettings(mode="telepathy")
    with pytest.raises(BackendUnavailable, match="URL"):
        make_client(BackendSettings(mode="remote", url=""))
    with pytest.raises(BackendUnavailable, match="check the model"):
        make_client(BackendSettings(mode="embedded", model="no-such-model", device="cpu"))


def test_subprocess_bad_python():
    with pytest.raises(BackendUnavailable, match="check the Python interpreter in the add-on preferences") as e:
        SubprocessClient(python="/nonexistent/python3", model="x")
    assert "/nonexistent/python3" in str(e.value)


def test_subprocess_python_without_att3d(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'No module named backend' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(BackendUnavailable, match="'No module named backend' — this Python has no att3d: use Set Up "
                       "Local Backend, or pick the Python of an environment with att3d and PyTorch in the add-on "
                       "preferences$"):
        SubprocessClient(python=str(fake), start_timeout=20)


@pytest.mark.slow
def test_subprocess_missing_model(tmp_path):
    with pytest.raises(BackendUnavailable, match="model 'no-such-model' not found.*check the model"):
        SubprocessClient(python=sys.executable, model="no-such-model", device="cpu",
                         env={"ATT3D_DATA_DIR": str(tmp_path)})


@pytest.mark.slow
def test_subprocess_client_restarts_and_closes_cleanly(service_model_dir, tmp_path):
    stages = []
    c = SubprocessClient(python=sys.executable, model=str(service_model_dir), device="cpu",
                         env={"ATT3D_DATA_DIR": str(tmp_path)}, on_stage=stages.append)
    try:
        # the start names what it waits for, in order
        assert stages == ["starting the backend", "loading the model", "loading the text encoder",
                          "indexing the training prompts"]
        assert c.generate("a red cube", resolution=16).faces.shape[1] == 3
        first = c.pid
        os.kill(first, signal.SIGKILL)
        m = c.generate("a red cube", resolution=16)  # restarted behind the scenes
        assert isinstance(m, MeshData) and c.restarts == 1 and c.restarts_left == 2 and c.pid != first
        assert stages[4].startswith("restarting the backend (it stopped: ") and stages[5] == "starting the backend"
        assert c.info().model == "tiny-service"
    finally:
        proc = c.proc
        c.close()
    assert proc.returncode == 0  # close() sends SIGTERM: a clean exit
    with pytest.raises(BackendUnavailable, match="closed"):
        c.info()


@pytest.mark.slow
def test_a_server_killed_during_a_job_fails_that_job_and_the_next_one_starts_it_again(service_model_dir, tmp_path):
    """Issue 26: the server is killed (the OOM killer, a crash) while it works on a job. That job
    fails with one sentence saying so (it is not sent again: an out-of-memory job would only kill
    the server again); the next request starts the server anew and works."""
    c = SubprocessClient(python=sys.executable, model=str(service_model_dir), device="cpu",
                         env={"ATT3D_DATA_DIR": str(tmp_path)})
    try:
        first = c.pid
        killed = []

        def kill_once(fraction, message):  # the server has taken the job: kill it now
            if not killed:
                os.kill(first, signal.SIGKILL)
                killed.append(message)
            return False

        with pytest.raises(BackendUnavailable) as e:
            c.chain([(0, "a red cube"), (1, "a blue sphere")], steps=8, resolution=32, progress=kill_once)
        assert killed and str(e.value) == (
            "The ATT3D backend stopped while it worked on this job (killed by SIGKILL — the system does that when "
            "memory runs out). The job failed; the next one starts the backend again")
        assert c.restarts == 0  # nothing was sent again behind the caller's back
        m = c.generate("a red cube", resolution=16)
        assert isinstance(m, MeshData) and m.n_vertices > 0
        assert c.restarts == 1 and c.pid != first
    finally:
        c.close()


def _dead_process():
    dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    dead.wait()
    return dead


def _dead_client(restarts: int, stderr: list[str]):
    """A SubprocessClient whose server has died (no server started: the restart rule alone)."""
    c = SubprocessClient.__new__(SubprocessClient)
    dead = _dead_process()
    c.proc, c.max_restarts, c.restarts, c._deaths, c._generation, c._closed = dead, restarts, 0, [], 1, False
    c.python, c.att3d, c._stderr, c._lock, c.on_stage, c.started_once = "python", "", stderr, threading.Lock(), \
        None, True
    return c


def test_a_server_that_keeps_dying_is_given_up_with_its_own_last_error(monkeypatch):
    """Restarts back off (0.5 s, 2 s, 5 s); after three deaths within five minutes the client gives up,
    quoting the server's own last error line, not blaming the interpreter (it ran before)."""
    from blender_att3d.client import http
    from blender_att3d.client.http import _ConnectionLost

    def lost():
        raise _ConnectionLost("connection refused")

    starts, sleeps = [], []
    monkeypatch.setattr(http.time, "sleep", sleeps.append)
    c = _dead_client(3, ["Traceback (most recent call last):", '  File "x.py", line 1', "RuntimeError: CUDA error: "
                         "out of memory", "att3d serve: stage: loading the model"])
    monkeypatch.setattr(c, "_start", lambda: (starts.append(1), setattr(c, "proc", _dead_process())))
    for _ in range(3):
        with pytest.raises(_ConnectionLost):  # restarted, then the (fake) request fails again
            c._run(lost)
    assert len(starts) == 3 and sleeps == [0.5, 2.0, 5.0] and c.restarts_left == 0
    with pytest.raises(BackendUnavailable) as e:
        c._run(lost)
    msg = str(e.value)
    assert msg == ("The ATT3D backend stopped 4 times within 5 minutes (exit status 3); its last error: "
                   "'RuntimeError: CUDA error: out of memory'. Press Restart Backend once the cause is fixed")
    assert "interpreter" not in msg and len(starts) == 3


def test_no_restart_at_all_when_restarts_is_zero():
    from blender_att3d.client.http import _ConnectionLost

    c = _dead_client(0, ["att3d: error: model 'x' not found"])

    def lost():
        raise _ConnectionLost("connection refused")

    with pytest.raises(BackendUnavailable, match=r"stopped once \(exit status 3\); its last error: "
                       r"'model 'x' not found'\. Press Restart Backend"):
        c._run(lost)


@pytest.fixture()
def banner_server():
    """A TCP server on loopback that answers every connection with an SSH banner (not HTTP)."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                time.sleep(0.05)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    stop.set()
    t.join(5)
    srv.close()


def test_remote_that_is_not_http(banner_server):
    with pytest.raises(BackendUnavailable, match="did not answer like an ATT3D backend.*backend URL"):
        HTTPClient(banner_server, "x" * 20, connect_timeout=5)


@pytest.mark.parametrize("health_status, health_body", [(404, b"<html>Not Found</html>"),
                                                        (200, b"<html>hello</html>"), (200, b'{"ok": false}')])
def test_remote_that_is_another_web_server(health_status, health_body):
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(health_status)
            self.send_header("Content-Type", "application/json" if health_body.startswith(b"{") else "text/html")
            self.send_header("Content-Length", str(len(health_body)))
            self.end_headers()
            self.wfile.write(health_body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        with pytest.raises(BackendUnavailable, match="is not an ATT3D backend.*backend URL"):
            HTTPClient(f"http://127.0.0.1:{srv.server_address[1]}", "x" * 20, connect_timeout=5)
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.slow  # starts a Python process that never becomes ready
def test_subprocess_start_up_timeout(tmp_path):
    """A server that never prints its ready line: a clear error after start_timeout, and no process left."""
    pid_file = tmp_path / "pid"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 120\n")
    fake.chmod(0o755)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"did not get ready within 2 s.*check the Python interpreter"):
        SubprocessClient(python=str(fake), start_timeout=2)
    assert time.monotonic() - t0 < 15
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # stopped and reaped, not left running
        os.kill(pid, 0)


# -- the API version and the server's limits, against the app in-process with a fake engine --------

class RecordingEngine:
    """Answers a generate request with a one-triangle mesh and remembers what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def run(self, request, progress=None, modulation=None):
        self.calls.append((request.prompt, request.resolution))
        return MeshData(np.eye(3, dtype=np.float32), [[0, 1, 2]], np.full((3, 3), 0.5, np.float32),
                        meta={"prompt": request.prompt})


@pytest.fixture()
def fake_service(serve_app):
    """``fake_service(info) -> (url, token, engine)``: the real app and worker, a fake engine, made-up info."""
    from backend.service.app import OPERATIONS, create_app
    from backend.service.worker import Worker

    workers = []

    def start(info):
        engine = RecordingEngine()
        worker = Worker(engine, OPERATIONS).start()
        workers.append(worker)
        token = "t" * 32
        return serve_app(create_app(worker, token, info)), token, engine

    yield start
    for w in workers:
        w.shutdown()


@pytest.mark.parametrize("server_api, advice", [(API_VERSION + 1, "update the ATT3D add-on"),
                                                (API_VERSION - 1, r"update att3d where the server runs"),
                                                (None, "unknown API version")])
def test_client_refuses_another_api_version(fake_service, server_api, advice):
    info = {"model": "fake", "limits": {}} if server_api is None else {"model": "fake", "api": server_api}
    url, token, _ = fake_service(info)
    with pytest.raises(BackendUnavailable, match=advice) as e:
        HTTPClient(url, token)
    if server_api is not None:
        assert f"speaks API version {server_api}" in str(e.value)
    assert f"this add-on speaks API version {API_VERSION}" in str(e.value) and url in str(e.value)


def test_client_checks_requests_against_the_server_limits(fake_service):
    from blender_att3d.wire.limits import Limits
    from blender_att3d.wire.routes import API_VERSION

    server_limits = {**Limits().as_dict(), "max_prompt_chars": 20, "max_resolution": 64, "max_queue": 3}
    url, token, engine = fake_service({"model": "fake", "api": API_VERSION, "limits": server_limits})
    c = HTTPClient(url, token)
    try:
        assert c.limits.max_prompt_chars == 20 and c.limits.max_resolution == 64
        assert c.limits.min_resolution == Limits().min_resolution  # the rest as the server said
        with pytest.raises(InvalidRequest, match="limit is 20"):
            c.generate("a prompt longer than twenty characters")
        with pytest.raises(InvalidRequest, match="16–64"):
            c.generate("a red cube", resolution=128)
        with pytest.raises(InvalidRequest, match="limit is 20"):
            c.chain([(0, "a red cube"), (1, "a blue sphere on a long plate")])
        with pytest.raises(InvalidRequest, match="limit is 20"):
            c.blend("a red cube", "a blue sphere on a long plate", 0.5, resolution=32)
        assert engine.calls == []  # refused here, never sent
        m = c.generate("a red cube", resolution=np.int64(64))
        assert engine.calls == [("a red cube", 64)] and m.meta["prompt"] == "a red cube"
    finally:
        c.close()


def test_embedded_client_limits_are_this_versions(embedded):
    from blender_att3d.wire.limits import Limits

    assert embedded.limits == Limits()
    assert embedded.info().limits == Limits()


@pytest.mark.parametrize("setting", ["modle", "tiemout", "cache"])
def test_a_misspelled_setting_is_an_error_naming_it(setting):
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{setting}'"):
        BackendSettings(mode="local", url="http://127.0.0.1:9", **{setting: "x"})
