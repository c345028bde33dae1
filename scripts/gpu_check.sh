#!/usr/bin/env bash
# One script for every CUDA path: `declip bench` (ViT-L/14 layer20 + conv-20 at batch 64, again with
# --compile, the ViT-L/14,RN50 fusion), torchrun/NCCL DDP on every GPU vs one process, bf16 vs fp32
# mask logits and IoU, DeepfakeBench's train.py through `declip dfb train` (scripts/gpu_check.py).
#
#   bash scripts/gpu_check.sh             # on a CUDA machine: logs/gpu_check/<device>.json and .md
#   bash scripts/gpu_check.sh --dry-run   # the same steps on the CPU at tiny shapes (CI runs this)
#   bash scripts/gpu_check.sh --steps bench --out DIR
#
# For the DeepfakeBench step: export DEEPFAKEBENCH_ROOT and DEEPFAKEBENCH_PYTHON (bash scripts/setup_dfb_env.sh
# builds .dfb/ with both; then DEEPFAKEBENCH_ROOT=$PWD/.dfb/DeepfakeBench DEEPFAKEBENCH_PYTHON=$PWD/.dfb/venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then PY=.venv/bin/python; fi
if [[ -z "${DEEPFAKEBENCH_ROOT:-}" && -x .dfb/venv/bin/python ]]; then
    export DEEPFAKEBENCH_ROOT=$PWD/.dfb/DeepfakeBench DEEPFAKEBENCH_PYTHON=$PWD/.dfb/venv/bin/python
fi
exec "$PY" scripts/gpu_check.py "$@"
