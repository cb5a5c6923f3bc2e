#!/bin/bash
# The model card's v2/v3 figures: bash eval.sh MODEL_DIR OUT_DIR NAME (run from the repository root; ~10–16 min
# a model on one core). NAME_unseen.json: all unseen prompts of the 50 % split, surfaces on 48 (raw);
# NAME_smooth20.json: 48 prompts, surfaces smoothed ×20 (the artist paths' default); NAME_interp.json:
# eval-interpolation with the four-season chain. (The JSON here keep per-prompt rows trimmed to
# prompt/retrieved/nearest/rank/IoU.) Cycles renders: docs/results/render_demo_v3.py.
set -euo pipefail
M=$1; E=$2; N=$3; mkdir -p "$E"
export OMP_NUM_THREADS=1
att3d eval --world shapes --model "$M" --split unseen --seen-fraction 0.5 --max-prompts 0 --surface-prompts 48 --json > "$E/${N}_unseen.json" &
P=$!
att3d eval-interpolation --model "$M" --json > "$E/${N}_interp.json"
att3d eval --world shapes --model "$M" --split unseen --seen-fraction 0.5 --max-prompts 48 --surface-prompts 48 --smooth 20 --json > "$E/${N}_smooth20.json"
wait $P
