#!/bin/bash
# Demo v3.2 (shipped): the mean of v3.1 (run 6) and run 7 (v32, v3.1 continued 1500 steps). No
# training: a soup (training/soup.py), calibrated and measured. From the repository root:
#   bash training/shapes/results/demo_v3/v34/make.sh V31_RUN V32_RUN OUT
# V31_RUN: run 6's folder (its fp32 model: weights SHA-256 5029aa5b…); V32_RUN: run 7's (8e8a110f…).
# Seconds to make, 4 s to calibrate, about 8 minutes to measure on both cores. The other soups
# measured here (soup23 = runs 7 + 8, soup123 = v3.1 + runs 7 + 8, soupw = v3.1 : run 7 : run 8 at
# 2 : 1 : 1; v3.1 in them as its shipped fp16 file) were made the same way, e.g.
#   att3d train-demo --soup V31_MODEL:2 V32_RUN V33_RUN --out OUT/soupw
# and measured by eval.sh (their JSON here keep the aggregates only).
set -euo pipefail
V31=$1; V32=$2; OUT=$3
att3d train-demo --soup "$V31" "$V32" --out "$OUT/v34"
OMP_NUM_THREADS=1 att3d calibrate-iso --model "$OUT/v34/model" --write      # 9.587
bash training/shapes/results/demo_v3/eval.sh "$OUT/v34/model" "$OUT/eval" v34
# shipped with: att3d train-demo --ship "$OUT/v34" --metrics "$OUT/eval/v34_unseen.json" (its calibration record goes along)
