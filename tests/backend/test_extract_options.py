"""The extraction options as users reach them: ``att3d generate --extract/--mc``, the service's
``mc`` request field, the engine, and the HTTP client's request body."""
import numpy as np
import pytest
import trimesh

from backend.cli import main


def test_cli_generate_with_each_extraction_and_marching_cubes(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("mcubes")
    meshes = {}
    for extract in ("sparse", "dense"):
        for mc in ("skimage", "pymcubes", "torch", "auto"):
            out = tmp_path / f"{extract}-{mc}.ply"
            assert main(["-q", "generate", "a red cube", "--model", str(tiny_model_dir), "--out", str(out),
                         "--resolution", "40", "--extract", extract, "--mc", mc]) == 0
            meshes[extract, mc] = trimesh.load(out, force="mesh", process=False)
    counts = {k: (len(m.vertices), len(m.faces)) for k, m in meshes.items()}
    assert len(set(counts.values())) == 1, counts  # the same surface eight ways
    assert all(m.is_watertight for m in meshes.values())


def test_cli_refuses_an_unknown_marching_cubes(tiny_model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["generate", "a red cube", "--model", str(tiny_model_dir), "--out", str(tmp_path / "a.glb"),
              "--mc", "fast"])
    assert e.value.code == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_service_request_takes_mc_and_refuses_others():
    pytest.importorskip("pydantic")
    from pydantic import ValidationError

    from backend.service.schemas import GenerateRequest

    assert GenerateRequest(prompt="a red cube").mc == "auto"
    assert GenerateRequest(prompt="a red cube", mc="torch").mc == "torch"
    assert GenerateRequest(prompt="a red cube", mc="pymcubes").mc == "pymcubes"
    with pytest.raises(ValidationError, match="mc must be one of auto, skimage, pymcubes, torch"):
        GenerateRequest(prompt="a red cube", mc="marching")


def test_engine_generate_with_pymcubes(pipeline):
    pytest.importorskip("mcubes")
    from backend.engine import Engine

    engine = Engine(pipeline)
    a = engine.generate("a red cube", resolution=40, smooth=0)  # the two marching cubes' own surfaces
    b = engine.generate("a red cube", resolution=40, mc="pymcubes", smooth=0)
    assert len(a.positions) == len(b.positions) > 100
    np.testing.assert_allclose(np.sort(a.positions, 0), np.sort(b.positions, 0), atol=1e-3)
    with pytest.raises(ValueError, match="mc must be one of"):
        engine.generate("a red cube", resolution=40, mc="nope")


def test_http_client_sends_mc_only_when_chosen(monkeypatch):
    from blender_att3d.client.http import HTTPClient
    from blender_att3d.wire.limits import Limits

    client = HTTPClient.__new__(HTTPClient)  # no server to ask for its limits
    client.limits = Limits()
    sent = []
    monkeypatch.setattr(client, "_job", lambda kind, body, progress: sent.append(body))
    client.generate("a red cube", 64)
    client.generate("a red cube", 64, mc="pymcubes")
    client.generate("a red cube", 64, mc="auto")
    assert "mc" not in sent[0] and sent[1]["mc"] == "pymcubes" and "mc" not in sent[2]
