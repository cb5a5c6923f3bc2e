"""`att3d serve` start-up errors: non-loopback hosts, missing models; SIGTERM; the token."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from backend.service import auth

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env=None, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.cli", "serve", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.slow
@pytest.mark.parametrize("host", ["0.0.0.0"])
def test_non_loopback_needs_allow_remote(host, tmp_path):
    r = run("--host", host, "--model", "whatever", env={"ATT3D_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert "--allow-remote" in r.stderr and "refusing to listen" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not r.stdout


@pytest.mark.slow
def test_missing_model_is_a_clear_error(tmp_path):
    r = run("--model", "no-such-model", env={"ATT3D_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and "model 'no-such-model' not found" in r.stderr and "Traceback" not in r.stderr
    assert "ATT3D_READY" not in r.stdout


def test_serve_help_lists_options():
    r = run("--help")
    for opt in ("--model", "--host", "--port", "--device", "--allow-remote", "--token-file"):
        assert opt in r.stdout


@pytest.mark.parametrize("host", ["::", "example.com", "10.1.2.3", "192.168.1.10"])
def test_check_host(host):
    from backend.service.server import check_host

    with pytest.raises(ValueError, match="--allow-remote"):
        check_host(host, allow_remote=False)
    check_host(host, allow_remote=True)
    check_host("127.0.0.1", allow_remote=False)


def test_loopback_names():
    assert auth.is_loopback("127.0.0.1") and auth.is_loopback("::1") and auth.is_loopback("localhost")
    assert auth.is_loopback("127.0.0.2")
    assert not auth.is_loopback("0.0.0.0") and not auth.is_loopback("10.0.0.1") and not auth.is_loopback("x.org")


def test_token_file_created_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("ATT3D_TOKEN", raising=False)
    monkeypatch.setenv("ATT3D_DATA_DIR", str(tmp_path / "data"))
    token, path = auth.resolve_token()
    assert path == tmp_path / "data" / "token" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 32
    assert auth.resolve_token() == (token, path)  # reused
    assert auth.resolve_token(rotate=True)[0] != token
    path.chmod(0o644)  # readable by others: not trusted, replaced
    token2, _ = auth.resolve_token()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and token2 != token


def test_token_from_env(monkeypatch):
    monkeypatch.setenv("ATT3D_TOKEN", "an-environment-token-of-some-length")
    assert auth.resolve_token() == ("an-environment-token-of-some-length", None)
    monkeypatch.setenv("ATT3D_TOKEN", "short")
    with pytest.raises(ValueError, match="too short"):
        auth.resolve_token()


@pytest.mark.slow
def test_stops_when_its_parent_is_gone(service_model_dir, tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", "pass"])
    parent.wait()  # gone (and reaped) before the server even starts
    proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "serve", "--model", str(service_model_dir),
                             "--device", "cpu", "--parent-pid", str(parent.pid)], cwd=ROOT,
                            env={**os.environ, "ATT3D_DATA_DIR": str(tmp_path)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-1000:]
    assert "parent process" in err


@pytest.mark.slow
def test_sigterm_mid_job_is_a_prompt_clean_exit(start_own_server):
    """SIGTERM while a long chain runs and a request waits behind it: the waiting request gets an
    answer (503, the server is stopping) or a closed connection, and the process exits 0 within seconds."""
    import threading
    import time

    srv = start_own_server()
    api = srv.api
    chain = {"keyframes": [{"position": 0, "prompt": "a red cube"}, {"position": 1, "prompt": "a blue sphere"}],
             "steps": 255, "resolution": 64}
    job = api.post("/v1/jobs/chain", chain).json()
    deadline = time.monotonic() + 60
    st = api.get(f"/v1/jobs/{job['id']}").json()
    while not (st["status"] == "running" and st["progress"] > 0):
        assert time.monotonic() < deadline, st
        st = api.get(f"/v1/jobs/{job['id']}?wait=1&since={st['version']}").json()
    waiting: dict = {}

    def wait_behind() -> None:
        try:
            waiting["r"] = api.post("/v1/generate", {"prompt": "a red cube", "resolution": 24}, timeout=60)
        except OSError as e:  # the connection closed: acceptable while stopping
            waiting["r"] = e

    t = threading.Thread(target=wait_behind)
    t.start()
    time.sleep(0.5)
    assert api.get("/v1/info").json()["queue"]["queued"] == 1
    t0 = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.proc.wait(30)
    elapsed = time.monotonic() - t0
    t.join(30)
    assert rc == 0, "".join(srv.stderr)[-2000:]
    assert elapsed < 10, f"stopping took {elapsed:.1f} s: the running job was not cancelled"
    r = waiting["r"]
    assert isinstance(r, OSError) or (r.status == 503 and "stopping" in r.json()["error"]), r
    assert "att3d serve: stopped" in "".join(srv.stderr)
