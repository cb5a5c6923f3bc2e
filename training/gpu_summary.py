"""The figures of one ``training/gpu_check.sh`` run in one JSON object (``summary.json``): the GPU and
its software, each step's exit status, prompt → GLB at 128³ and where its time goes, the paper-size SDS
and training steps with their peak memory, the IF preset's mapping network, and the CUDA tests.

    python -m training.gpu_summary OUT > OUT/summary.json
"""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

#: bench keys worth a line in the README (seconds; counts and ratios as they are)
BENCH_KEYS = ("mapping", "lattice_128", "marching_cubes_128", "marching_cubes_method", "surface_128", "colours_128",
              "export_glb_128", "glb_bytes", "generate_glb_128", "generate_glb_128_dense", "generate_glb_256",
              "generate_glb_256_dense", "generate_glb_512", "generate_glb_512_dense", "texture_1024",
              "chain16_consistent", "chain16_independent", "chain16_tracked", "chain16_converged")
GOAL_GLB_128_S = 0.020  # issue 29: prompt → GLB at 128³ on one H100


def _json(path: Path) -> tuple[Any, str | None]:
    """(the JSON in ``path``, or None with why not)."""
    if not path.is_file():
        return None, "missing"
    text = path.read_text().strip()
    if not text:
        return None, "empty (the step failed or ran out of time: see gpu_check.log)"
    for candidate in (text, text.splitlines()[-1]):  # (the last line, should a library have printed first)
        try:
            return json.loads(candidate), None
        except json.JSONDecodeError as e:
            error = e
    return None, f"not JSON ({error})"


def _tests(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"error": "no junit XML (pytest did not finish: see gpu_check.log)"}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    out: dict[str, Any] = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    out["passed"] = out["tests"] - out["failures"] - out["errors"] - out["skipped"]
    bad, skips = [], set()
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        for kind in ("failure", "error"):
            el = case.find(kind)
            if el is not None:
                bad.append({"test": name, kind: (el.get("message") or "")[:300]})
        skipped = case.find("skipped")
        if skipped is not None:
            skips.add(skipped.get("message", ""))
    out["not_passed"] = bad
    out["skip_reasons"] = sorted(skips)
    return out


def summarize(out: Path) -> dict[str, Any]:
    status = {}
    status_file = out / ".status"
    if status_file.is_file():
        for line in status_file.read_text().split():
            name, _, rc = line.partition("=")
            status[name] = int(rc) if rc.lstrip("-").isdigit() else rc
    res: dict[str, Any] = {"exit_status": status}

    env, why = _json(out / "environment.json")
    if env is None:
        res["environment"] = why
    else:
        gpus = env.get("gpus") or []
        res["environment"] = {"gpu": gpus[0]["name"] if gpus else None,
                              "gpu_memory_gib": gpus[0]["memory_gib"] if gpus else None,
                              **{k: env.get(k) for k in ("torch", "torch_cuda", "cudnn", "bf16_supported", "python",
                                                         "diffusers", "transformers")},
                              "tinycudann": env.get("optional", {}).get("tinycudann", {}).get("available")}

    plan, why = _json(out / "plan_df415_if.json")
    if plan is None:
        res["plan_df415_if"] = why
    else:
        roles = {m["role"]: m for m in plan["models"]}
        att3d = roles.get("ATT3D (trained)", {})
        res["plan_df415_if"] = {"mapping_text_encoder": roles.get("mapping text encoder", {}).get("id"),
                                "teacher_text_encoder": roles.get("teacher text encoder", {}).get("id"),
                                "mapping_input": att3d.get("mapping_input"), "att3d_params": att3d.get("params"),
                                "mapping_text_params": att3d.get("mapping_text_params"),
                                "estimated_peak_gib": round(plan["memory"]["peak_gib"], 2)}

    bench, why = _json(out / "bench_cuda.json")
    if bench is None:
        res["bench"] = why
    else:
        res["bench"] = {k: bench[k] for k in ("complete", "next", "device", "gpu", "torch", "repeats", *BENCH_KEYS)
                        if k in bench}
        if "generate_glb_128" in bench:
            s = bench["generate_glb_128"]
            res["generate_glb_128_ms"] = round(1000 * s, 2)
            res["generate_glb_128_goal_met"] = s <= GOAL_GLB_128_S

    doctor, why = _json(out / "doctor.json")
    if doctor is None:
        res["gpu_bench"] = why
    else:
        keep = ("config", "teacher", "what", "batch", "render", "median_s", "peak_gib", "mapping_input", "error")
        res["gpu_bench"] = {"device": doctor.get("device"), "seconds": doctor.get("seconds"),
                            "benches": [{k: b[k] for k in keep if k in b} for b in doctor.get("benches", [])],
                            "skipped": doctor.get("skipped", []), "targets_h100": doctor.get("targets_h100")}
    res["cuda_tests"] = _tests(out / "cuda_tests.xml")
    return res


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m training.gpu_summary OUT", file=sys.stderr)
        return 2
    print(json.dumps(summarize(Path(args[0])), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
