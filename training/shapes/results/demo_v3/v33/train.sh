#!/bin/bash
# Run 8 (not shipped): v3.1 continued 1500 steps with 40 % of every batch from prompts
# naming a pyramid, a cone or a tree, κ 0.5 throughout (run 6's recipe). From the
# repository root:
#   bash training/shapes/results/demo_v3/v33/train.sh V31_MODEL_DIR RUN_DIR
# V31_MODEL_DIR: a copy of demo v3.1's folder (backend/models/demo at ef4b92f). 2734 s on one core here
# (1.8 s a step), resumable (--resume). Then: att3d calibrate-iso --model RUN_DIR/model --write (9.627);
# bash training/shapes/results/demo_v3/eval.sh RUN_DIR/model OUT v33.
set -euo pipefail
INIT=$1; RUN=$2
OMP_NUM_THREADS=1 att3d train-demo --recipe v3 --out "$RUN" --split 50% --init "$INIT" --threads 1 \
  --time-limit 3000 --steps 1500 --set 'prompts.focus=["pyramid","cone","tree"]' --set prompts.focus_share=0.4 \
  --set model.iso_density=9.289 --set 'interpolation.kappa=[[1e12, 0.5]]'
