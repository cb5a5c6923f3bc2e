"""A local Ray instance with the studio application on it, for the tests (``studio_cluster`` in
tests/conftest.py): small resources (2 CPUs, a 200 MB object store, no dashboard), one HTTP port for
the session, and the application deployed again whenever a test asks for other settings. Ray is a
test dependency (``att3d[test]``): without it these tests fail, saying how to install it."""
from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "pip install 'att3d[studio]' (or the test extra: pip install -e '.[test]')"


def need_ray() -> None:
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError as e:
        pytest.fail(f"the studio tests need Ray Serve, which does not import ({e}): {INSTALL}", pytrace=False)


@dataclass
class Studio:
    url: str
    tokens: dict[str, str]  # user -> token
    settings: Any

    def jobs_handle(self):
        from ray import serve

        from backend.studio.deployments import APP, JOBS

        return serve.get_deployment_handle(JOBS, app_name=APP)


class StudioCluster:
    def __init__(self) -> None:
        self.started = False
        self.port = 0
        self.current: tuple | None = None
        self.studio: Studio | None = None

    def start(self) -> StudioCluster:
        need_ray()
        from backend.studio.server import free_port, init_ray

        self.started = init_ray(None, num_cpus=2, num_gpus=0, object_store_mb=200)
        self.port = free_port("127.0.0.1")
        return self

    def deploy(self, model: str | Path, users: tuple[str, ...] = ("default",), **settings: Any) -> Studio:
        """The studio app with these settings (deployed again only when they differ from the last)."""
        key = (str(model), users, tuple(sorted(settings.items())))
        if self.current == key and self.studio is not None:
            return self.studio
        from backend.studio.deployments import Settings
        from backend.studio.server import deploy
        from backend.studio.users import digest

        tokens = {u: secrets.token_urlsafe(24) for u in users}
        s = Settings(model=str(model), device="cpu", users={digest(t): u for u, t in tokens.items()}, **settings)
        url = deploy(s, "127.0.0.1", self.port)
        self.current, self.studio = key, Studio(url, tokens, s)
        return self.studio

    def stop(self) -> None:
        if not self.started:
            return
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()


def start_process(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> tuple[subprocess.Popen,
                                                                                                     dict]:
    """Start ``att3d serve`` or ``att3d studio`` and read its ready line (stderr is kept in a file)."""
    from blender_att3d.wire.ready import is_ready_line, parse_ready_line

    e = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [e.get("PYTHONPATH")])])
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", *cmd], cwd=ROOT, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=1.0):
            line = proc.stdout.readline()
            if is_ready_line(line):
                ready = parse_ready_line(line)
                ready["stderr"] = lines
                return proc, ready
            if not line and proc.poll() is not None:
                break
    proc.kill()
    proc.wait()
    raise RuntimeError(f"{cmd[0]} did not get ready: {''.join(lines)[-3000:]}")


def stop_process(proc: subprocess.Popen, timeout: float = 60) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


class Http:
    """The jobs API by hand (raw HTTP: GLB results, status codes), for the studio tests."""

    def __init__(self, url: str, token: str) -> None:
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.token = u.hostname, u.port, token

    def request(self, method: str, path: str, body=None, timeout: float = 120) -> tuple[int, bytes]:
        from backend.studio.bench import _request

        return _request(f"http://{self.host}:{self.port}", self.token, method, path, body, timeout)

    def json(self, method: str, path: str, body=None, expect: int = 200) -> dict:
        status, data = self.request(method, path, body)
        assert status == expect, (status, data[:300])
        return json.loads(data)

    def submit(self, prompt: str, resolution: int = 64) -> dict:
        return self.json("POST", "/v1/jobs/generate", {"prompt": prompt, "resolution": resolution}, expect=202)

    def wait(self, job_id: str, until=lambda st: st["status"] not in ("queued", "running"), limit: float = 600):
        deadline, version = time.monotonic() + limit, -1
        while True:
            st = self.json("GET", f"/v1/jobs/{job_id}?wait=5&since={version}")
            version = st["version"]
            if until(st):
                return st
            assert time.monotonic() < deadline, f"job {job_id} still {st}"

    def glb(self, job_id: str) -> bytes:
        status, data = self.request("GET", f"/v1/jobs/{job_id}/result?format=glb")
        assert status == 200, data[:300]
        return data
