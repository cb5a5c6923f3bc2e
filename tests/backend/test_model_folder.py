import json

import pytest
import torch

from backend.model import ModelConfig, ModelFolderError, build_model, load_model, save_model

CFG = ModelConfig(resolutions=[6, 8], v_dim=4, max_length=4, token_dim=8)


@pytest.fixture
def folder(tmp_path):
    return save_model(build_model(CFG), tmp_path / "m", {"prompts": ["a"], "steps": 3})


def test_round_trip_preserves_weights_and_provenance(folder):
    model = build_model(CFG)
    loaded, config = load_model(folder)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert config["provenance"] == {"prompts": ["a"], "steps": 3}
    assert config["architecture"]["resolutions"] == [6, 8]


def test_fp16_folder_loads_as_float32(tmp_path):
    f = save_model(build_model(CFG), tmp_path / "h", dtype=torch.float16)
    model, _ = load_model(f)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_saving_over_an_existing_folder_replaces_it(folder):
    save_model(build_model(CFG, seed=1), folder, {"steps": 9})
    assert load_model(folder)[1]["provenance"] == {"steps": 9}
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_missing_folder_names_the_model(tmp_path):
    with pytest.raises(ModelFolderError, match="'nope' not found"):
        load_model("nope")
    with pytest.raises(ModelFolderError, match="not found"):
        load_model(tmp_path / "absent")


def test_missing_config(folder):
    (folder / "config.json").unlink()
    with pytest.raises(ModelFolderError, match=r"config\.json: missing"):
        load_model(folder)


def test_invalid_json_config(folder):
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelFolderError, match=r"config\.json: not valid JSON"):
        load_model(folder)


def test_not_a_model_config(folder):
    (folder / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ModelFolderError, match="not an ATT3D model config"):
        load_model(folder)


def test_a_newer_format_version_is_refused(folder):
    from backend.model import FORMAT_VERSION

    c = json.loads((folder / "config.json").read_text())
    assert c["format"] == "att3d-model" and c["format_version"] == FORMAT_VERSION
    c["format_version"] = FORMAT_VERSION + 1
    (folder / "config.json").write_text(json.dumps(c))
    with pytest.raises(ModelFolderError, match=f"format version {FORMAT_VERSION + 1} is newer than this att3d"):
        load_model(folder)


def test_unknown_architecture_key(folder):
    c = json.loads((folder / "config.json").read_text())
    c["architecture"]["wings"] = 2
    (folder / "config.json").write_text(json.dumps(c))
    with pytest.raises(ModelFolderError, match="unknown architecture keys: wings"):
        load_model(folder)


def test_missing_weights(folder):
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match=r"model\.safetensors: missing"):
        load_model(folder)


def test_truncated_weights(folder):
    w = folder / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ModelFolderError, match=r"model\.safetensors: unreadable or truncated"):
        load_model(folder)


def test_weights_that_do_not_match_the_config(folder):
    c = json.loads((folder / "config.json").read_text())
    c["architecture"]["resolutions"] = [6, 9]
    (folder / "config.json").write_text(json.dumps(c))
    with pytest.raises(ModelFolderError, match=r"model\.safetensors: tensor .* has shape"):
        load_model(folder)
    c["architecture"]["resolutions"] = [6, 8]
    c["architecture"]["mapping"] = "attention"
    (folder / "config.json").write_text(json.dumps(c))
    with pytest.raises(ModelFolderError, match=r"does not match config\.json: missing tensors"):
        load_model(folder)


def test_a_model_frozen_for_inference_is_not_saved(tmp_path):
    # freeze_spectral_norm bakes the weights: its state dict no longer matches what load_model builds
    from backend.model import freeze_spectral_norm

    model = freeze_spectral_norm(build_model(CFG))
    with pytest.raises(ValueError, match="frozen for inference"):
        save_model(model, tmp_path / "m")
    assert not (tmp_path / "m").exists()
