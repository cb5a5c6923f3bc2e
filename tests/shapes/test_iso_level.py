"""The extraction level calibrated against the Shapes world's ground truth (``att3d calibrate-iso``):
the shipped demo's level is the calibration's, it makes the volume right, and the command writes
only the config."""
import json
import shutil

import pytest

from backend.cli import main
from backend.model import SHIPPED_DIR, load_model
from training.shapes.iso_level import calibrate_model_folder

DEMO = SHIPPED_DIR / "demo"


def test_the_shipped_level_is_its_calibration_and_matches_the_true_volume():
    shipped = json.loads((DEMO / "config.json").read_text())
    res = calibrate_model_folder(DEMO)  # writes nothing
    assert json.loads((DEMO / "config.json").read_text()) == shipped
    assert res["iso_density"] == pytest.approx(shipped["architecture"]["iso_density"], abs=0.01)
    assert res["after"]["volume_ratio"] == pytest.approx(1.0, abs=0.01)
    # the recorded calibration is the one that set this level, from a level whose volume was further off
    # (v3: 5 → 8.965, volume 1.46 → 1.00; v3.1, trained at 8.965: → 9.289, 1.033 → 1.000)
    record = shipped["provenance"]["shapes"]["iso_calibration"]
    assert record["after"]["iso_density"] == shipped["architecture"]["iso_density"]
    assert record["before"]["iso_density"] != record["after"]["iso_density"]
    assert abs(record["before"]["volume_ratio"] - 1) > abs(record["after"]["volume_ratio"] - 1)


def test_calibrate_iso_writes_the_level_into_a_copy_and_the_model_extracts_there(tmp_path, capsys):
    folder = tmp_path / "demo"
    shutil.copytree(DEMO, folder)
    config = json.loads((folder / "config.json").read_text())
    config["architecture"]["iso_density"] = 5.0
    del config["provenance"]["shapes"]["iso_calibration"]
    (folder / "config.json").write_text(json.dumps(config))
    weights = (folder / "model.safetensors").read_bytes()

    assert main(["calibrate-iso", "--model", str(folder), "--prompts", "8", "--write"]) == 0
    out = capsys.readouterr().out
    assert "8 seen prompts of the 50.0% split" in out and "wrote iso_density" in out
    written = json.loads((folder / "config.json").read_text())
    level = written["architecture"]["iso_density"]
    assert 7.0 < level < 12.0
    cal = written["provenance"]["shapes"]["iso_calibration"]
    assert cal["n_prompts"] == 8 and cal["after"]["iso_density"] == level
    assert cal["before"]["volume_ratio"] > 1.3 and cal["after"]["volume_ratio"] == pytest.approx(1.0, abs=0.01)
    assert (folder / "model.safetensors").read_bytes() == weights
    model, _ = load_model(folder)
    assert model.config.iso_density == level


@pytest.mark.parametrize("argv, says", [(["--prompts", "0"], "--prompts must be at least 1"),
                                        (["--model", "/nonexistent/model"], "/nonexistent/model")])
def test_calibrate_iso_bad_input_is_one_line_and_exit_2(capsys, argv, says):
    before = (DEMO / "config.json").read_bytes()
    assert main(["calibrate-iso", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
    assert (DEMO / "config.json").read_bytes() == before
