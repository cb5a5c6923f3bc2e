"""What the adversarial pass broke, one class per test: prompts the JSON parser accepts but that are
not text, header values built from data, the Host header (DNS rebinding), stalled and slow clients."""
from __future__ import annotations

import http.client
import json
import resource
import socket
import time

import pytest

from backend.service.app import OPERATIONS, create_app, header_value, text
from backend.service.auth import HostPolicy
from backend.service.worker import Worker
from blender_att3d.wire.routes import API_VERSION

TOKEN = "h" * 32


# -- prompts that are not text --------------------------------------------------------------------

@pytest.mark.parametrize("path,field", [("/v1/nearest", "prompt"), ("/v1/generate", "prompt"),
                                        ("/v1/blend", "prompt_a"), ("/v1/jobs/generate", "prompt")])
@pytest.mark.parametrize("raw,message", [
    ('"\\ud800"', "unpaired UTF-16 surrogate (U+D800, character 1)"),
    ('"a red \\udfff cube"', "unpaired UTF-16 surrogate (U+DFFF, character 7)"),
    ('"\\u200b"', "the prompt has no visible characters"),
    ('"\\u200b\\u200d\\ufeff \\u3164"', "the prompt has no visible characters"),
    ('"\\u0000"', "control character (U+0000, character 1)"),
    ('"a red\\u0007cube"', "control character (U+0007, character 6)"),
])
def test_prompts_that_are_not_text_are_a_clear_422(api, path, field, raw, message):
    body = {"prompt": "x", "prompt_a": "a", "prompt_b": "b", "alpha": 0.5, "resolution": 16}
    body = {k: v for k, v in body.items() if k in ({"prompt_a", "prompt_b", "alpha", "resolution"} if field ==
                                                    "prompt_a" else {"prompt", "resolution"})}
    if path == "/v1/nearest":
        body.pop("resolution")
    data = json.dumps(body).replace('"a"' if field == "prompt_a" else '"x"', raw, 1).encode()
    r = api.post(path, data)
    assert r.status == 422 and r.headers["content-type"] == "application/json", r.body
    err = r.json()["error"]
    assert message in err and "codec" not in err and err.isprintable(), err


def test_ordinary_unicode_prompts_still_work(api):
    for prompt in ("un cube rouge à pois", "赤い立方体", "a 🧊 cube", "👨\u200d👩\u200d👧 on a plate"):
        r = api.post("/v1/nearest", {"prompt": prompt, "k": 1})
        assert r.status == 200 and r.json()["prompt"] == prompt, r.body
    r = api.post("/v1/generate", {"prompt": "a red cube \u00e9\u732b", "resolution": 16})
    assert r.status == 200 and r.body[:4] == b"A3DM"


def test_error_text_is_encodable_and_readable():
    assert text("bad \ud800 \x1f field") == "bad \\ud800 \\x1f field"
    json.dumps({"error": text("\udfff")}, ensure_ascii=False).encode("utf-8")


# -- headers built from data ------------------------------------------------------------------------

def test_header_values_are_sanitised_in_one_place():
    assert header_value("tiny\r\nX-Injected: 1") == "tiny??X-Injected: 1"
    assert header_value("caf\u00e9\x00") == "caf??"
    assert len(header_value("x" * 1000)) == 200


def test_a_model_name_with_cr_lf_does_not_break_mesh_responses(tmp_path, serve_app):
    """Over real h11: before, every mesh response of such a model closed the connection unanswered."""
    from backend.engine import Engine
    from backend.model import ModelConfig, build_model, save_model

    folder = save_model(build_model(ModelConfig(resolutions=[8, 12], v_dim=4), seed=0), tmp_path / "crlf",
                        {"name": "evil\r\nSet-Cookie: x=1\r\n\r\nbody", "prompts": ["a red cube"]})
    worker = Worker(Engine.load(str(folder), device="cpu"), OPERATIONS).start()
    try:
        url = serve_app(create_app(worker, TOKEN, {"model": "crlf"}))
        host, port = url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.request("POST", "/v1/generate", json.dumps({"prompt": "a red cube", "resolution": 16}),
                     {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200 and body[:4] == b"A3DM"
        assert r.getheader("X-ATT3D-Model") == "evil??Set-Cookie: x=1????body"
        assert r.getheader("Set-Cookie") is None
    finally:
        worker.shutdown()


# -- the Host header --------------------------------------------------------------------------------

def test_host_policy():
    local, remote = HostPolicy(), HostPolicy(["gpu-box.lan"], remote=True)
    for h in ("127.0.0.1:8000", "localhost:1", "[::1]:80", "LOCALHOST.", "127.0.0.2"):
        assert local(h) and remote(h), h
    for h in ("evil.example", "evil.example:80", "127.0.0.1.nip.io", "10.0.0.2:9", "gpu-box.lan"):
        assert not local(h), h
    assert remote("10.0.0.2:9") and remote("[fe80::1]:4") and remote("GPU-box.lan:8000")
    assert not remote("evil.example") and HostPolicy(["*"])("anything.at.all")


def test_dns_rebinding_is_refused_on_the_real_server(server, api):
    for host in ("attacker.example", f"attacker.example:{server.ready['port']}", "127.0.0.1.nip.io"):
        for path, token in (("/v1/health", None), ("/v1/info", "default")):
            r = api.get(path, token=token, headers={"Host": host})
            assert r.status == 421 and r.headers["content-type"] == "application/json"
            err = r.json()["error"]
            assert err.startswith(f"host name {host.split(':')[0]!r} not allowed: start att3d serve with "
                                  f"--allow-host {host.split(':')[0]}, or connect by IP address"), err
    assert api.get("/v1/health", token=None, headers={"Host": "localhost"}).status == 200
    assert api.get("/v1/info", headers={"Host": f"127.0.0.1:{server.ready['port']}"}).status == 200


@pytest.mark.slow
def test_allow_host_lets_a_name_in(launch, service_model_dir):
    srv = launch("--allow-host", "my-alias.test", model_dir=service_model_dir)
    assert srv.api.get("/v1/info", headers={"Host": "my-alias.test:1234"}).status == 200
    assert srv.api.get("/v1/info", headers={"Host": "other.test"}).status == 421


def test_the_addons_client_still_connects(server):
    from blender_att3d.client.http import HTTPClient

    for url in (server.url, f"http://localhost:{server.ready['port']}"):
        client = HTTPClient(url, server.token)
        try:
            assert client.info().api == API_VERSION
            assert client.nearest("a red cube", 1).prompt == "a red cube"
        finally:
            client.close()
    # a name the server was not told about: the add-on quotes the first 100 characters of /v1/health's
    # answer, and what to do is in them
    r = server.api.get("/v1/health", token=None, headers={"Host": "my-gpu-box.local:8000"})
    assert "--allow-host my-gpu-box.local" in r.json()["error"][:100]


# -- slow and stalled clients -----------------------------------------------------------------------

def _guarded(header_timeout: float, max_idle: int = 256):
    from backend.service.connections import GuardedH11Protocol

    return type("Guarded", (GuardedH11Protocol,), {"header_timeout": header_timeout, "max_idle": max_idle})


def _recv_all(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    chunks = []
    try:
        while chunk := s.recv(65536):
            chunks.append(chunk)
    except TimeoutError:
        chunks.append(b"<still open>")
    return b"".join(chunks)


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def test_stalled_and_half_sent_requests_time_out(serve_app):
    worker = Worker(None, {})
    url = serve_app(create_app(worker, TOKEN, {}), http=_guarded(0.5))
    silent, half = _connect(url), _connect(url)
    half.sendall(b"GET /v1/info HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthor")
    t0 = time.monotonic()
    for s in (silent, half):
        answer = _recv_all(s, 5)
        assert answer.startswith(b"HTTP/1.1 408 ") and b'"the request did not arrive within 0.5 s"' in answer, answer
    assert time.monotonic() - t0 < 3
    # a kept-alive connection that starts a second request and stalls is timed out too
    s = _connect(url)
    s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /v1/hea")
    answer = _recv_all(s, 5)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in answer


def test_a_body_that_never_arrives_is_408(serve_app, monkeypatch):
    from backend.service import middleware as app_mod

    monkeypatch.setattr(app_mod, "BODY_TIMEOUT_S", 0.5)
    url = serve_app(create_app(Worker(None, {}), TOKEN, {}), http=_guarded(30))
    s = _connect(url)
    s.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TOKEN.encode()
              + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\": ")
    answer = _recv_all(s, 5)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"the request body did not arrive within 0.5 s" in answer


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


@pytest.mark.slow
def test_hundreds_of_stalled_sockets_do_not_starve_a_server_with_few_descriptors(launch, service_model_dir):
    """300 silent connections to a server limited to 128 descriptors: a real client is still answered
    at once (without the cap it waited until the stalled ones were dropped, or forever)."""
    srv = launch(model_dir=service_model_dir, preexec_fn=_low_fd_limit)
    host, port = srv.ready["host"], srv.ready["port"]
    stalled = []
    try:
        for _ in range(300):
            s = socket.socket()
            s.settimeout(5)
            s.connect((host, port))
            stalled.append(s)
        time.sleep(0.5)
        t0 = time.monotonic()
        r = srv.api.get("/v1/info", timeout=10)
        elapsed = time.monotonic() - t0
        assert r.status == 200 and r.json()["api"] == API_VERSION
        assert elapsed < 3, f"a client waited {elapsed:.1f} s behind stalled connections"
        # the oldest stalled connections were closed (503 JSON), not left to use up descriptors
        closed = sum(1 for s in stalled[:200] if _recv_all(s, 0.05).startswith(b"HTTP/1.1 503 "))
        assert closed >= 150, closed
    finally:
        for s in stalled:
            s.close()
    assert srv.api.alive()
