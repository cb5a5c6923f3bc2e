"""Fixtures of the service tests: a tiny model with known training prompts, a real `att3d serve`
process on an ephemeral loopback port (stopped with SIGTERM at the end, which must exit 0), and
a raw HTTP helper."""
from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from blender_att3d.wire.ready import is_ready_line, parse_ready_line

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["a red cube", "a blue sphere", "a green cone", "a yellow torus", "a wooden chair",
           "a stone statue of a cat"]


@pytest.fixture(scope="session")
def service_model_dir(tmp_path_factory) -> Path:
    from backend.model import ModelConfig, build_model, save_model

    folder = tmp_path_factory.mktemp("service-models") / "tiny-service"
    save_model(build_model(ModelConfig(resolutions=[8, 12, 16], v_dim=8), seed=0), folder,
               {"name": "tiny-service", "prompts": PROMPTS})
    return folder


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Api:
    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token

    def request(self, method: str, path: str, body: Any = None, token: str | None = "default",
                headers: dict[str, str] | None = None, timeout: float = 120) -> Response:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        h = {} if headers is None else dict(headers)
        tok = self.token if token == "default" else token
        if tok is not None:
            h.setdefault("Authorization", f"Bearer {tok}")
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Response:
        return self.request("POST", path, body, **kw)

    def alive(self) -> bool:
        r = self.get("/v1/health", token=None)
        return r.status == 200 and r.json() == {"ok": True}


@dataclass
class Server:
    proc: subprocess.Popen
    ready: dict[str, Any]
    token: str
    api: Api
    data_dir: Path
    stderr: list[str]

    @property
    def url(self) -> str:
        return self.ready["url"]


def start_server(model_dir: Path, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 120, command: list[str] | None = None, preexec_fn=None) -> Server:
    """Start ``att3d serve`` (or ``command``, a script that serves) and wait for its ready line."""
    e = {**os.environ, "ATT3D_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
    e.pop("ATT3D_TOKEN", None) if not (env and "ATT3D_TOKEN" in env) else None
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [e.get("PYTHONPATH")])])
    cmd = command or [sys.executable, "-m", "backend.cli", "serve", "--model", str(model_dir), "--port", "0",
                      "--device", "cpu", *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec_fn)
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: list[str] = []

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    threading.Thread(target=lambda: [stderr.append(ln) for ln in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            raise RuntimeError("the server did not print its ready line in time") from None
        if line is None:
            proc.wait()
            raise RuntimeError(f"the server exited ({proc.returncode}): {''.join(stderr)[-2000:]}")
        if is_ready_line(line):
            ready = parse_ready_line(line)
            break
    token = (env or {}).get("ATT3D_TOKEN") or Path(ready["token_file"]).read_text().strip()
    return Server(proc, ready, token, Api(ready["host"], ready["port"], token), data_dir, stderr)


def stop_server(server: Server, timeout: float = 30) -> int:
    server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        raise


@pytest.fixture(scope="session")
def server(service_model_dir, tmp_path_factory):
    srv = start_server(service_model_dir, tmp_path_factory.mktemp("att3d-data"))
    yield srv
    rc = stop_server(srv)
    assert rc == 0, f"the server did not exit cleanly on SIGTERM (status {rc}): {''.join(srv.stderr)[-2000:]}"


@pytest.fixture()
def api(server) -> Api:
    return server.api


@pytest.fixture(scope="session")
def engine(service_model_dir):
    from backend.engine import Engine

    return Engine.load(str(service_model_dir), device="cpu")


@pytest.fixture()
def serve_app():
    """``serve_app(app, **uvicorn_config) -> url``: serve an ASGI app (e.g. ``create_app`` with a fake engine
    and made-up ``info``) with uvicorn on a free loopback port, in a thread of this process; stopped
    afterwards."""
    import socket

    import uvicorn

    running: list[tuple[uvicorn.Server, threading.Thread, socket.socket]] = []

    def serve(app, **config) -> str:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **config))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread, sock))
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the in-process server did not start"
            time.sleep(0.01)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield serve
    for server, thread, sock in running:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture()
def launch(tmp_path):
    """``launch(*args, model_dir=..., command=..., preexec_fn=...)``: :func:`start_server` for a test that
    needs its own kind of server (a stand-in engine, a low descriptor limit); killed afterwards."""
    started: list[Server] = []

    def start(*args: str, model_dir: Path | None = None, **kw) -> Server:
        srv = start_server(model_dir or tmp_path, tmp_path / f"launch{len(started)}", *args, **kw)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()


@pytest.fixture()
def start_own_server(service_model_dir, launch):
    """Start a server of the test's own on the tiny service model (to stop or kill it); any left running
    are killed afterwards."""

    def start(*args: str, **kw) -> Server:
        return launch(*args, model_dir=service_model_dir, **kw)

    return start
