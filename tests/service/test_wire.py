"""The wire protocol's small pieces: routes, job states, limits, the ready line and the token's
location. (The payload codec has its own file, test_payload.py.)"""
from __future__ import annotations

import json

import numpy as np
import pytest

from blender_att3d.wire import limits, routes, token
from blender_att3d.wire.job_state import FINISHED, JobState
from blender_att3d.wire.limits import Limits
from blender_att3d.wire.ready import READY_PREFIX, format_ready_line, parse_ready_line


def test_every_route_is_served_by_the_app():
    from backend.service.app import create_app
    from backend.service.worker import Worker

    app = create_app(Worker(None, {}), "t" * 32, {})
    served = set(app.openapi()["paths"])  # all but the schema itself (routes.OPENAPI: test_api.py)
    expected = {routes.HEALTH, routes.INFO, routes.GENERATE, routes.BLEND, routes.CHAIN, routes.NEAREST,
                routes.JOB, routes.JOB_RESULT} | {routes.submit_job(k) for k in routes.JOB_KINDS}
    assert served == expected, served ^ expected
    assert routes.job("abc") == "/v1/jobs/abc" and routes.job_result("abc") == "/v1/jobs/abc/result"
    assert routes.submit_job("chain") == "/v1/jobs/chain"


def test_job_states_are_their_strings():
    assert json.dumps({"status": JobState.DONE}) == '{"status": "done"}'
    assert f"{JobState.RUNNING}" == "running" and JobState("cancelled") is JobState.CANCELLED
    assert {s.value for s in JobState} == {"queued", "running", "done", "error", "cancelled"}
    assert FINISHED == {JobState.DONE, JobState.ERROR, JobState.CANCELLED}
    assert JobState.ERROR.finished and not JobState.QUEUED.finished


def test_limits_as_the_service_reports_them():
    assert list(limits.as_dict().items()) == [
        ("max_prompt_chars", 500), ("min_resolution", 16), ("max_resolution", 512), ("max_keyframes", 64),
        ("max_chain_meshes", 256), ("max_neighbors", 50), ("max_simplify", 10_000_000), ("texture_size", 1024),
        ("max_chain_states", 1024)]


def test_service_info_limits_are_the_wires(api):
    assert api.get("/v1/info").json()["limits"] == {**limits.as_dict(), "max_queue": 64}


def test_limits_from_a_server():
    lim = Limits.from_dict({"max_prompt_chars": 20, "max_queue": 3, "max_resolution": "64", "min_resolution": True})
    assert lim == Limits(max_prompt_chars=20)  # unknown keys ignored, non-integers keep this version's value
    assert Limits.from_dict({}) == Limits()
    assert lim.check_prompt("  a   red cube ") == "a red cube"
    with pytest.raises(ValueError, match="limit is 20"):
        lim.check_prompt("x" * 21)


@pytest.mark.parametrize("resolution", [15, 513, 32.0, "32", True, None])
def test_limits_check_resolution(resolution):
    with pytest.raises(ValueError, match="resolution must be an integer in 16–512"):
        Limits().check_resolution(resolution)


def test_one_resolution_check_for_the_protocol_and_the_backend():
    from backend import engine

    assert engine.check_resolution is limits.check_resolution  # the backend's one check is the protocol's
    assert Limits(min_resolution=32, max_resolution=64).check_resolution(np.int64(48)) == 48
    with pytest.raises(ValueError, match="resolution must be an integer in 32–64, got 16"):
        Limits(min_resolution=32, max_resolution=64).check_resolution(16)


def test_ready_line_round_trip():
    info = {"host": "127.0.0.1", "port": 40123, "url": "http://127.0.0.1:40123", "token_file": None, "api": 1}
    line = format_ready_line(info)
    assert line == READY_PREFIX + json.dumps(info, separators=(",", ":")) and "\n" not in line
    assert parse_ready_line(line + "\n") == info
    for bad in ("hello", READY_PREFIX + "{not json", READY_PREFIX + "[1, 2]"):
        with pytest.raises(ValueError):
            parse_ready_line(bad)


def test_xdg_data_home(monkeypatch, tmp_path):
    monkeypatch.delenv("ATT3D_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert token.default_token_file() == tmp_path / "att3d" / "token"


def test_the_service_and_the_client_agree_on_the_token(monkeypatch, tmp_path):
    from backend.service import auth

    monkeypatch.delenv("ATT3D_TOKEN", raising=False)
    monkeypatch.setenv("ATT3D_DATA_DIR", str(tmp_path))
    assert token.read_default_token() is None  # no file yet
    written, path = auth.resolve_token()
    assert path == token.default_token_file() == tmp_path / "token"
    assert token.read_default_token() == written
    monkeypatch.setenv("ATT3D_TOKEN", "an-environment-token-of-some-length")
    assert token.read_default_token() == "an-environment-token-of-some-length"


def test_the_info_and_nearest_answers_are_typed_and_read_any_server():
    from blender_att3d.wire.types import Neighbor, Neighbors, ServerInfo

    raw = {"model": "demo", "device": "cpu", "api": 2, "versions": {"api": 2, "torch": "2.13.0"},
           "training_prompts": 3, "limits": {"max_resolution": 64, "max_queue": 8}, "threads": 4}
    info = ServerInfo.from_dict(raw)
    assert info.limits.max_resolution == 64 and info.max_queue == 8 and info.extra == {"threads": 4}
    assert info.training_prompts_known is True  # an older server that did not say: known when it counted them
    again = info.as_dict()
    assert again["threads"] == 4 and again["limits"]["max_queue"] == 8 and again["versions"]["api"] == 2
    assert ServerInfo.from_dict(again) == info
    assert ServerInfo.from_dict({"model": 7, "training_prompts": "many", "limits": []}) == ServerInfo()
    # a server from before the word measure: far and neighbours with distances only
    old = Neighbors.from_dict({"far": True, "neighbors": [{"prompt": "a red cube", "distance": 0.9}, {"x": 1}]})
    assert old.far is True and not old.words_measured and old.neighbors == [Neighbor("a red cube", None, 0.9)]
    new = Neighbors.from_dict({"far": False, "unknown_words": [], "known_words": ["red"], "measure": "words",
                               "neighbors": [{"prompt": "a red cube", "score": 1.0}], "known_prompts": 6})
    assert new.words_measured and Neighbors.from_dict(new.as_dict()) == new
    assert new.as_dict()["neighbors"] == [{"prompt": "a red cube", "score": 1.0}]


def test_scene_timing_of_a_chain():
    from blender_att3d.wire.timing import check_scene_timing, position_to_frame, scene_seconds, step_frames

    assert check_scene_timing([1, 48, 96], 3, 24) == ([1.0, 48.0, 96.0], 24.0, 1.0)
    frames = step_frames([0, 0.5, 1, 1.5, 2], [1, 48, 96])
    assert frames == [1, 24.5, 48, 72, 96] and position_to_frame(1.25, [1, 48, 96]) == 60
    # Blender's importer puts glTF time s on frame start + s · fps: the keyframes land on their frames
    assert [1 + s * 24 for s in scene_seconds(frames, 24, 1)] == pytest.approx(frames)
    assert scene_seconds([10, 34], 24, 10) == [0, 1]
    for args, message in [(([1, 48], 3, 24), "2 frames for 3 prompts"), (([1, 1], 2, 24), "frames must increase"),
                          (([0, 5], 2, 24, 1), "frame 0 is before the start frame 1"),
                          (([1, 5], 2, -24), "fps must be more than 0"), (([1, 5], 2, True), "fps must be a finite"),
                          (([1, float("inf")], 2, 24), "frame 2 must be a finite number")]:
        with pytest.raises(ValueError, match=message):
            check_scene_timing(*args)


def test_max_states_cap():
    from blender_att3d.wire.limits import check_max_states, default_max_states

    assert check_max_states(None, 5) == default_max_states(5) == 10
    assert check_max_states(5, 5) == 5 and check_max_states(np.int64(7), 5) == 7
    assert check_max_states(1024, 5) == 1024
    for bad, message in [(4, r"at least steps \(5\) and at most 1024, got 4"), (True, "at least steps"),
                         (6.0, "at least steps"), (1025, "at most 1024, got 1025")]:
        with pytest.raises(ValueError, match=message):
            check_max_states(bad, 5)
