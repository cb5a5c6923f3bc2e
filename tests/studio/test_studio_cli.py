"""``att3d studio`` as a command: wrong options and tokens files give one error line; a real start
prints the ready line, serves the HTTP client, and SIGTERM mid-job answers the waiting client, stops
Ray and exits 0."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def att3d(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "backend.cli", "studio", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--min-replicas", "1"], "--min-replicas and --max-replicas go together"),
    (["--min-replicas", "3", "--max-replicas", "2"], "autoscaling bounds need 0 <= --min-replicas <= --max-replicas"),
    (["--replicas", "0"], "--replicas must be at least 1"),
    (["--add-user", "alice"], "--add-user needs --tokens FILE"),
    (["--host", "0.0.0.0"], "refusing to listen on '0.0.0.0'"),
])
def test_bad_options_are_one_error_line(args, message):
    r = att3d(*args)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("att3d: error: ") and message in r.stderr


def test_a_tokens_file_others_can_read_is_refused_before_ray_starts(tmp_path):
    f = tmp_path / "tokens"
    assert att3d("--tokens", str(f), "--add-user", "alice").returncode == 0
    f.chmod(0o644)
    r = att3d("--tokens", str(f))
    assert r.returncode == 2 and f"the tokens file {f} can be read by other users: chmod 600" in r.stderr
    assert "Ray" not in r.stderr  # refused before anything started


def ray_processes() -> set[int]:
    out = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and (b"ray::" in cmd or b"raylet" in cmd or b"gcs_server" in cmd):
                out.add(int(pid))
    return out


@pytest.mark.slow
def test_studio_serves_and_stops_cleanly_on_sigterm(engine, tmp_path):
    from studio_harness import start_process, stop_process

    from blender_att3d.client import BackendError, Cancelled
    from blender_att3d.client.http import HTTPClient

    tokens = tmp_path / "tokens"
    token = att3d("--tokens", str(tokens), "--add-user", "alice").stdout.strip()
    before = ray_processes()
    proc, ready = start_process(["studio", "--model", engine.pipeline.model_path, "--device", "cpu", "--tokens",
                                 str(tokens), "--replicas", "1", "--num-cpus", "2", "--port", "0"])
    try:
        assert ready["studio"] is True and ready["replicas"] == 1 and ready["tokens_file"] == str(tokens)
        client = HTTPClient(ready["url"], token)
        assert client.info()["replicas"] == 1
        assert len(client.generate("a red cube", resolution=24).faces) > 0
        # a long job is running when SIGTERM comes: its client is answered, not left hanging
        outcome: list[BaseException | None] = []
        started = threading.Event()

        def long_job() -> None:
            try:
                client.chain([(0, "a red cube"), (1, "a blue sphere")], steps=250, resolution=96,
                             progress=lambda f, m: started.set())
                outcome.append(None)
            except (BackendError, Cancelled) as e:
                outcome.append(e)

        t = threading.Thread(target=long_job)
        t.start()
        assert started.wait(120)
        assert stop_process(proc, timeout=120) == 0
        t.join(60)
        assert outcome and outcome[0] is not None and ("stopping" in str(outcome[0]) or "cancelled" in
                                                       str(outcome[0]) or "Lost the connection" in str(outcome[0]))
        assert "att3d studio: stopped" in "".join(ready["stderr"])
        left = ray_processes() - before
        assert not left, f"Ray processes left running: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
