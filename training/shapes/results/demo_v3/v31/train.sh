#!/bin/bash
# Run 6 (demo v3.1): v3 continued with a focus on pyramids, cones (unseen pyramids failed only as
# cones) and the winter tree, κ 0.5 throughout (v3's second phase). From the repository root:
#   bash training/shapes/results/demo_v3/v31/train.sh V3_MODEL_DIR RUN_DIR
# V3_MODEL_DIR: demo v3's folder, e.g. `mkdir v3 && git archive 6defd71 backend/models/demo | tar -x -C v3`
# then v3/backend/models/demo. 1500 steps on one core: 2879 s here (1.9 s a step), resumable (--resume).
# Then: att3d calibrate-iso --model RUN_DIR/model --write; bash training/shapes/results/demo_v3/eval.sh
# RUN_DIR/model OUT v31; att3d train-demo --ship RUN_DIR --metrics OUT/v31_unseen.json; att3d
# calibrate-iso --write (ship keeps the level, not its provenance).
set -euo pipefail
INIT=$1; RUN=$2
OMP_NUM_THREADS=1 att3d train-demo --recipe v3 --out "$RUN" --split 50% --init "$INIT" --threads 1 \
  --time-limit 3000 --steps 1500 --set 'prompts.focus=["pyramid","cone","winter"]' \
  --set prompts.focus_share=0.4 --set model.iso_density=8.965 --set 'interpolation.kappa=[[1e12, 0.5]]'
