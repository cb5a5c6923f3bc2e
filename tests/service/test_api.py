"""The HTTP API of a real `att3d serve` process: auth, bad input (always 4xx, and the server keeps
serving), formats, jobs, cancel, disconnects."""
from __future__ import annotations

import json
import socket
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from blender_att3d.wire import payload
from blender_att3d.wire.types import MeshData, SequenceData

GOOD = {"prompt": "a red cube", "resolution": 24}
CHAIN = {"keyframes": [{"position": 0, "prompt": "a red cube"}, {"position": 1, "prompt": "a blue sphere"}],
         "steps": 2, "resolution": 24}


def test_ready_line(server):
    r = server.ready
    assert r["host"] == "127.0.0.1" and isinstance(r["port"], int) and r["port"] > 0
    assert r["url"] == f"http://127.0.0.1:{r['port']}" and r["pid"] == server.proc.pid


def test_token_file_is_private(server):
    path = Path(server.ready["token_file"])
    assert path.parent == server.data_dir
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(server.token) >= 32


def test_health_needs_no_token(api):
    assert api.alive()


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-wrong-token-wrong"}, {"Authorization": "Basic abc"},
    {"Authorization": "Bearer"}, {"Authorization": "Bearer  "},
])
@pytest.mark.parametrize("method, path", [("GET", "/v1/info"), ("POST", "/v1/generate"),
                                          ("POST", "/v1/jobs/chain"), ("GET", "/v1/jobs/abc"),
                                          ("GET", "/v1/openapi.json")])
def test_auth_required(api, headers, method, path):
    r = api.request(method, path, GOOD if method == "POST" else None, token=None, headers=headers)
    assert r.status == 401, r.body
    assert "token" in r.json()["error"].lower() or "authentication" in r.json()["error"]
    assert r.headers.get("www-authenticate", "").startswith("Bearer")


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token-wrong"])
@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v1/generate", b"{bad json"), ("POST", "/v1/generate", b""), ("POST", "/v1/chain", b"[1, 2]"),
    ("POST", "/v1/generate", b'{"prompt": ""}'), ("GET", "/v1/jobs/zzz?wait=-1", None),
    ("GET", "/v1/nope", None), ("POST", "/v1/generate?format=obj", b"{}"),
])
def test_auth_comes_before_anything_else(api, token, method, path, body):
    """Without the right token nothing is parsed or validated: the answer is 401, never a 4xx about the body."""
    r = api.request(method, path, body, token=token)
    assert r.status == 401, (r.status, r.body)
    assert r.headers.get("www-authenticate", "").startswith("Bearer")


def test_prefix_of_the_token_is_rejected(api, server):
    assert api.get("/v1/info", token=server.token[:-1]).status == 401
    assert api.get("/v1/info", token=server.token + "x").status == 401
    assert api.get("/v1/info").status == 200


def test_info(api):
    info = api.get("/v1/info").json()
    assert info["model"] == "tiny-service" and info["text_encoder"] == "minilm" and info["device"] == "cpu"
    assert info["training_prompts"] == 6 and info["training_prompts_known"] is True
    assert info["limits"]["max_prompt_chars"] == 500 and info["limits"]["max_chain_meshes"] == 256
    assert info["versions"]["api"] == 2 and "torch" in info["versions"]
    assert "queue" in info


def test_openapi_schema(api):
    schema = api.get("/v1/openapi.json").json()
    assert "/v1/generate" in schema["paths"] and "/v1/jobs/chain" in schema["paths"]
    body = schema["components"]["schemas"]["GenerateRequest"]
    assert body["additionalProperties"] is False


def test_generate_payload(api):
    r = api.post("/v1/generate", GOOD)
    assert r.status == 200 and r.headers["content-type"] == payload.CONTENT_TYPE
    m = payload.decode(r.body)
    assert isinstance(m, MeshData) and m.meta["prompt"] == "a red cube" and m.meta["model"] == "tiny-service"
    assert len(m.faces) > 0 and m.positions.shape[1] == 3


def test_generate_glb(api):
    for r in (api.post("/v1/generate?format=glb", GOOD),
              api.post("/v1/generate", GOOD, headers={"Accept": "model/gltf-binary"})):
        assert r.status == 200 and r.headers["content-type"] == "model/gltf-binary"
        assert r.body[:4] == b"glTF"


def test_glb_round_trip(api, tmp_path):
    """The GLB holds the same mesh as the payload: positions turned Z-up → Y-up, same faces, and the
    colours as glTF's linear COLOR_0."""
    from gltf_check import assert_valid, first_primitive

    from blender_att3d.wire.glb import srgb_to_linear

    m = payload.decode(api.post("/v1/generate", GOOD).body)
    path = tmp_path / "m.glb"
    path.write_bytes(api.post("/v1/generate?format=glb", GOOD).body)
    assert_valid(path)
    g = first_primitive(path)
    z_up = g["POSITION"] @ np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]).T  # glTF Y-up back to Blender's Z-up
    assert np.allclose(z_up, m.positions, atol=1e-6)
    assert np.array_equal(g["indices"], m.faces)
    assert np.abs(g["COLOR_0"] - srgb_to_linear(m.colors)).max() < 1e-6


def test_chain_glb_has_one_node_per_piece_and_a_morph_target_per_other_state(api):
    import struct

    seq = payload.decode(api.post("/v1/chain", CHAIN).body)
    data = api.post("/v1/chain?format=glb", CHAIN).body
    (json_len,) = struct.unpack_from("<I", data, 12)
    gltf = json.loads(data[20:20 + json_len])
    assert len(gltf["meshes"]) == len(seq.pieces) == 2
    for mesh, piece in zip(gltf["meshes"], seq.pieces):
        prim = mesh["primitives"][0]
        assert len(prim["targets"]) == len(piece) - 1
        assert gltf["accessors"][prim["attributes"]["POSITION"]]["count"] == len(piece.positions[0])
        assert gltf["accessors"][prim["indices"]]["count"] == piece.faces.size


def test_u8_colours(api):
    a = payload.decode(api.post("/v1/generate", GOOD).body)
    b = payload.decode(api.post("/v1/generate?colors=u8", GOOD).body)
    assert np.array_equal(a.positions, b.positions)
    assert np.abs(a.colors - b.colors).max() <= 0.5 / 255 + 1e-6


def test_blend(api):
    r = api.post("/v1/blend", {"prompt_a": "a red cube", "prompt_b": "a blue sphere", "alpha": 0.5,
                               "resolution": 24})
    m = payload.decode(r.body)
    assert m.meta["alpha"] == 0.5


def test_chain_consistent_and_not(api):
    seq = payload.decode(api.post("/v1/chain", CHAIN).body)
    assert isinstance(seq, SequenceData) and seq.consistent and len(seq) == 3
    assert seq.steps == [0.0, 0.5, 1.0] and seq.prompts[0] == "a red cube" and seq.prompts[-1] == "a blue sphere"
    assert [p.times for p in seq.pieces] == [[0.0, 0.5], [0.5, 1.0]]  # keyframe pieces meet at the middle
    assert seq.meta["max_states"] == 4 and seq.meta["inserted_states"] == 0  # the default cap: 2 · steps
    assert seq.meta["max_move_voxels"] >= 0
    capped = payload.decode(api.post("/v1/chain", {**CHAIN, "max_states": 2}).body)
    assert capped.meta["max_states"] == 2
    assert all(p.shape == piece.positions[0].shape for piece in seq.pieces for p in piece.positions)
    loose = payload.decode(api.post("/v1/chain", {**CHAIN, "consistent": False}).body)
    assert not loose.consistent and len(loose.meshes) == 3
    glb = api.post("/v1/chain?format=glb", CHAIN)
    assert glb.status == 200 and glb.body[:4] == b"glTF"
    assert api.post("/v1/chain?format=glb", {**CHAIN, "consistent": False}).status == 406


def test_nearest(api):
    r = api.post("/v1/nearest", {"prompt": "a red cube", "k": 3}).json()
    assert r["neighbors"][0] == {"prompt": "a red cube", "score": 1.0}
    assert len(r["neighbors"]) == 3 and r["far"] is False and r["known_words"] == ["red", "cube"]
    far = api.post("/v1/nearest", {"prompt": "quarterly tax report spreadsheet for accountants"}).json()
    assert far["far"] is True and far["unknown_words"] == ["quarterly", "tax", "report", "spreadsheet",
                                                           "accountants"]
    assert len(far["neighbors"]) == 5 and far["known_prompts"] == 6


LONG = "x" * 501
BAD_BODIES = [
    ("/v1/generate", {"prompt": ""}, "empty"),
    ("/v1/generate", {"prompt": "   \n\t "}, "empty"),
    ("/v1/generate", {"prompt": LONG}, "limit is 500"),
    ("/v1/generate", {"prompt": 5}, "prompt"),
    ("/v1/generate", {"prompt": None}, "prompt"),
    ("/v1/generate", {"prompt": ["a"]}, "prompt"),
    ("/v1/generate", {}, "prompt"),
    ("/v1/generate", {**GOOD, "resolution": 15}, "resolution"),
    ("/v1/generate", {**GOOD, "resolution": 513}, "resolution"),
    ("/v1/generate", {**GOOD, "resolution": "32"}, "resolution"),
    ("/v1/generate", {**GOOD, "resolution": 32.0}, "resolution"),
    ("/v1/generate", {**GOOD, "resolution": True}, "resolution"),
    ("/v1/generate", {**GOOD, "resolution": 10 ** 40}, "resolution"),
    ("/v1/generate", {**GOOD, "simplify": 2}, "simplify"),
    ("/v1/generate", {**GOOD, "texture": "yes"}, "texture"),
    ("/v1/generate", {**GOOD, "colour": "red"}, "colour: unknown field"),
    ("/v1/generate", {**GOOD, "path": "/etc/passwd"}, "path: unknown field"),
    ("/v1/generate", [GOOD], "JSON object"),
    ("/v1/generate", "a red cube", "JSON object"),
    ("/v1/blend", {"prompt_a": "a", "prompt_b": "b", "alpha": 1.5}, "alpha"),
    ("/v1/blend", {"prompt_a": "a", "prompt_b": "b", "alpha": "0.5"}, "alpha"),
    ("/v1/blend", {"prompt_a": "a", "prompt_b": "", "alpha": 0.5}, "prompt_b"),
    ("/v1/blend", {"prompt_a": "a", "alpha": 0.5}, "prompt_b"),
    ("/v1/chain", {**CHAIN, "steps": 0}, "steps"),
    ("/v1/chain", {**CHAIN, "steps": 300}, "steps"),
    ("/v1/chain", {**CHAIN, "keyframes": [{"position": i, "prompt": "a"} for i in range(10)], "steps": 40},
     "limit is 256"),
    ("/v1/chain", {**CHAIN, "keyframes": [{"position": i, "prompt": "a"} for i in range(65)], "steps": 1},
     "keyframes"),
    ("/v1/chain", {**CHAIN, "keyframes": CHAIN["keyframes"][:1]}, "keyframes"),
    ("/v1/chain", {**CHAIN, "keyframes": []}, "keyframes"),
    ("/v1/chain", {**CHAIN, "keyframes": [{"position": 1, "prompt": "a"}, {"position": 0, "prompt": "b"}]},
     "strictly increasing"),
    ("/v1/chain", {**CHAIN, "keyframes": [{"position": 0, "prompt": "a"}, {"position": 0, "prompt": "b"}]},
     "strictly increasing"),
    ("/v1/chain", {**CHAIN, "keyframes": [{"position": 0, "prompt": "a", "x": 1}, {"position": 1, "prompt": "b"}]},
     "unknown field"),
    ("/v1/chain", {**CHAIN, "keyframes": [[0, "a"], [1, "b"]]}, "keyframes"),
    ("/v1/chain", {**CHAIN, "keyframes": [{"position": 0, "prompt": ""}, {"position": 1, "prompt": "b"}]}, "empty"),
    ("/v1/chain", {**CHAIN, "consistent": "no"}, "consistent"),
    ("/v1/chain", {**CHAIN, "max_states": 1}, "at least steps (2)"),
    ("/v1/chain", {**CHAIN, "max_states": 0}, "max_states"),
    ("/v1/chain", {**CHAIN, "max_states": 2.5}, "max_states"),
    ("/v1/chain", {**CHAIN, "max_states": 2000}, "at most 1024"),
    ("/v1/nearest", {"prompt": "a", "k": 0}, "k"),
    ("/v1/nearest", {"prompt": "a", "k": 1000}, "k"),
    ("/v1/jobs/generate", {"prompt": ""}, "empty"),
    ("/v1/jobs/chain", {**CHAIN, "steps": 1000}, "steps"),
    ("/v1/jobs/blend", {"prompt_a": "a", "prompt_b": "b"}, "alpha"),
]


@pytest.mark.parametrize("path, body, message", BAD_BODIES, ids=[f"{p}-{m}" for p, _, m in BAD_BODIES])
def test_bad_input_is_4xx(api, path, body, message):
    r = api.post(path, body)
    assert 400 <= r.status < 500, (r.status, r.body)
    err = r.json()["error"]
    assert message.lower() in err.lower(), err


RAW = [
    (b"{bad json", "malformed JSON"),
    (b'{"prompt": "a", "resolution": NaN}', "resolution"),
    (b'{"prompt_a": "a", "prompt_b": "b", "alpha": NaN}', "alpha"),
    (b'{"prompt_a": "a", "prompt_b": "b", "alpha": Infinity}', "alpha"),
    (b"", "JSON body"),
    (b"\xff\xfe\x00garbage", ""),
    (b'{"prompt": "a", "prompt": 7}', "prompt"),
]


@pytest.mark.parametrize("raw, message", RAW)
@pytest.mark.parametrize("path", ["/v1/generate", "/v1/blend"])
def test_malformed_bodies_are_4xx(api, raw, message, path):
    r = api.post(path, raw)
    assert 400 <= r.status < 500, (r.status, r.body)
    assert "error" in r.json()


def test_wrong_content_type_still_json(api):
    r = api.post("/v1/generate", json.dumps(GOOD).encode(), headers={"Content-Type": "text/plain"})
    assert r.status == 200


def test_oversized_body_is_413(api):
    r = api.post("/v1/generate", {"prompt": "a" * (2 << 20)})
    assert r.status == 413 and "too large" in r.json()["error"]


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/v1/nope", 404), ("GET", "/generate", 404), ("GET", "/v1/generate", 405),
    ("PUT", "/v1/info", 405), ("GET", "/v1/jobs/does-not-exist", 404), ("DELETE", "/v1/jobs/zzz", 404),
    ("GET", "/v1/jobs/zzz/result", 404), ("POST", "/v1/jobs/teleport", 405),
    ("GET", "/v1/jobs/zzz?wait=-1", 422), ("GET", "/v1/jobs/zzz?wait=1e9", 422),
    ("POST", "/v1/generate?format=obj", 422), ("POST", "/v1/generate?colors=f16", 422),
    ("GET", "/v1/../../etc/passwd", 404),
])
def test_bad_routes_are_4xx(api, method, path, status):
    r = api.request(method, path, GOOD if method in ("POST", "PUT") else None)
    assert r.status == status, (r.status, r.body)
    assert "error" in r.json()


def test_still_serving_after_bad_input(api):
    for path, body, _ in BAD_BODIES[:10]:
        api.post(path, body)
    assert api.alive()
    assert api.post("/v1/generate", GOOD).status == 200


def wait_status(api, job_id, statuses, timeout=60.0):
    deadline = time.monotonic() + timeout
    st = api.get(f"/v1/jobs/{job_id}").json()
    while st["status"] not in statuses:
        assert time.monotonic() < deadline, st
        st = api.get(f"/v1/jobs/{job_id}?wait=1&since={st['version']}").json()
    return st


def test_job_lifecycle(api):
    r = api.post("/v1/jobs/generate", GOOD)
    assert r.status == 202 and r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    job = r.json()
    st = wait_status(api, job["id"], ("done",))
    assert st["progress"] == 1.0
    m = payload.decode(api.get(f"/v1/jobs/{job['id']}/result").body)
    assert isinstance(m, MeshData)
    assert api.get(f"/v1/jobs/{job['id']}/result?format=glb").body[:4] == b"glTF"
    assert api.request("DELETE", f"/v1/jobs/{job['id']}").status == 200  # forget
    assert api.get(f"/v1/jobs/{job['id']}").status == 404


def test_result_before_the_end_is_409(api):
    job = api.post("/v1/jobs/chain", {**CHAIN, "steps": 60, "resolution": 48}).json()
    r = api.get(f"/v1/jobs/{job['id']}/result")
    assert r.status == 409 and "still" in r.json()["error"]
    api.request("DELETE", f"/v1/jobs/{job['id']}")
    wait_status(api, job["id"], ("cancelled",))


def test_cancel_a_long_chain(api):
    long_chain = {**CHAIN, "steps": 255, "resolution": 64}
    job = api.post("/v1/jobs/chain", long_chain).json()
    st = wait_status(api, job["id"], ("running",))
    t0 = time.monotonic()
    while st["progress"] == 0 and time.monotonic() - t0 < 30:
        st = api.get(f"/v1/jobs/{job['id']}?wait=1&since={st['version']}").json()
    d = api.request("DELETE", f"/v1/jobs/{job['id']}")
    assert d.status == 200 and d.json()["cancel_requested"] is True
    st = wait_status(api, job["id"], ("cancelled",), timeout=20)
    assert time.monotonic() - t0 < 20 and st["progress"] < 0.5
    r = api.get(f"/v1/jobs/{job['id']}/result")
    assert r.status == 409 and "cancelled" in r.json()["error"]
    assert api.post("/v1/generate", GOOD).status == 200


def test_cancel_a_queued_job(api):
    first = api.post("/v1/jobs/chain", {**CHAIN, "steps": 100, "resolution": 48}).json()
    second = api.post("/v1/jobs/generate", GOOD).json()
    api.request("DELETE", f"/v1/jobs/{second['id']}")
    api.request("DELETE", f"/v1/jobs/{first['id']}")
    assert wait_status(api, second["id"], ("cancelled", "done"))["status"] == "cancelled"
    wait_status(api, first["id"], ("cancelled",))


def test_disconnect_mid_job_does_not_wedge(api, server):
    body = json.dumps({**CHAIN, "steps": 255, "resolution": 64}).encode()
    s = socket.create_connection((server.ready["host"], server.ready["port"]))
    s.sendall(b"POST /v1/chain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Authorization: Bearer {server.token}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    time.sleep(0.5)
    s.close()
    t0 = time.monotonic()
    assert api.post("/v1/generate", GOOD, timeout=30).status == 200
    assert time.monotonic() - t0 < 15  # the abandoned chain was cancelled, not run to its end
    assert api.get("/v1/info").json()["queue"]["queued"] == 0
