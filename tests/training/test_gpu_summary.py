"""``python -m training.gpu_summary OUT``: the summary of a GPU check from its step files, as the GPU box
writes them (shapes of ``att3d doctor --json``, ``train --dry-run --json``, ``bench --partial``,
``doctor --gpu-bench --json`` and pytest's junit XML), including steps that failed or were cut short."""
from __future__ import annotations

import json

import pytest

from backend.cli import main as att3d
from training.gpu_summary import main, summarize

DOCTOR = {"device": "NVIDIA H100 80GB HBM3", "torch": "2.11.0+cu130", "repeats": 5, "seconds": 141.2,
          "benches": [{"config": "df415_if", "teacher": "IF-I-XL (4.3 B)", "what": "training_step", "batch": 8,
                       "render": "64×64", "median_s": 0.41, "times_s": [0.41] * 5, "peak_gib": 15.2, "build_s": 3.1,
                       "mapping_input": "77×768 (openai/clip-vit-large-patch14)"},
                      {"config": "df415_sd", "what": "training_step", "batch": 16, "error": "out of memory: ..."}],
          "skipped": ["df415_sd sds batch 16: out of time"], "targets_h100": {"if_sds_8x64_s": 0.3}}
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1"
skipped="0" tests="3"><testcase classname="tests.test_cuda" name="test_a"/><testcase classname="tests.test_cuda"
name="test_b"><failure message="AssertionError: 0.2 voxel">tb</failure></testcase><testcase
classname="tests.test_cuda" name="test_c"/></testsuite></testsuites>"""


@pytest.mark.slow  # (the dry-run builds IF-I-XL on the meta device)
def test_summary_of_a_gpu_check(tmp_path, capsys):
    assert att3d(["doctor", "--json"]) == 0
    (tmp_path / "environment.json").write_text(capsys.readouterr().out)
    assert att3d(["train", "--dry-run", "--json", "--preset", "df415_if"]) == 0
    (tmp_path / "plan_df415_if.json").write_text(capsys.readouterr().out)
    (tmp_path / "bench_cuda.json").write_text(json.dumps({"device": "cuda:0", "gpu": "NVIDIA H100 80GB HBM3",
                                                          "mapping": 1e-4, "generate_glb_128": 0.0184,
                                                          "complete": False, "next": "texture_1024"}))
    (tmp_path / "doctor.json").write_text(json.dumps(DOCTOR))
    (tmp_path / "cuda_tests.xml").write_text(JUNIT)
    (tmp_path / ".status").write_text("environment=0\nplan_df415_if=0\nbench=124\ndoctor=0\ncuda_tests=1\n")
    s = summarize(tmp_path)
    assert s["exit_status"] == {"environment": 0, "plan_df415_if": 0, "bench": 124, "doctor": 0, "cuda_tests": 1}
    assert s["plan_df415_if"]["mapping_input"] == [77, 768]
    assert s["plan_df415_if"]["mapping_text_encoder"] == "openai/clip-vit-large-patch14"
    assert s["bench"]["complete"] is False and s["bench"]["next"] == "texture_1024"
    assert s["generate_glb_128_ms"] == 18.4 and s["generate_glb_128_goal_met"] is True
    assert s["gpu_bench"]["benches"][0]["mapping_input"].startswith("77×768")
    assert "error" in s["gpu_bench"]["benches"][1] and s["gpu_bench"]["skipped"]
    assert s["cuda_tests"]["passed"] == 2 and s["cuda_tests"]["not_passed"] == [
        {"test": "tests.test_cuda::test_b", "failure": "AssertionError: 0.2 voxel"}]
    assert main([str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(s))


def test_summary_says_which_steps_left_nothing(tmp_path):
    (tmp_path / "bench_cuda.json").write_text("")
    s = summarize(tmp_path)
    assert s["bench"].startswith("empty") and s["gpu_bench"] == "missing" and s["environment"] == "missing"
    assert "no junit XML" in s["cuda_tests"]["error"]
