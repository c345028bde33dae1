#!/usr/bin/env bash
# Test a checkpoint, DeepfakeBench style (see train.sh for ENGINE / NPROC and overrides):
#   WEIGHTS=logs/declip/declip_<time>/ckpt_best.pth bash scripts/test.sh
#   DETECTOR=declip_vit_rn50 WEIGHTS=ViT_layer20+RN50_layer3_conv-20_lama.pth bash scripts/test.sh  (official checkpoints)
#   DETECTOR=clip_stan_demo TEST_DATASET=demo-video WEIGHTS=logs/demo_video/clip_stan_demo_<time>/ckpt_best.pth bash scripts/test.sh
#   ENGINE=deepfakebench DEEPFAKEBENCH_ROOT=~/DeepfakeBench DETECTOR=declip_demo TEST_DATASET=demo-telea \
#       WEIGHTS=runs/declip_demo_<time>/ckpt_best.pth bash scripts/test.sh   (the checkout's test.py; on the CPU
#       when it sees no GPU; our datasets exported into EXPORT_DIR, default exports: scripts/dfb_engine.sh)
set -euo pipefail
DETECTOR=${DETECTOR:-declip}
TEST_DATASET=${TEST_DATASET:-"dolos-pluralistic dolos-lama dolos-repaint-p2-9k dolos-ldm"}
WEIGHTS=${WEIGHTS:?set WEIGHTS to a checkpoint (ours, an official DeCLIP one, or DeepfakeBench ckpt_best.pth)}
DATA_ROOT=${DATA_ROOT:-${DECLIP_DATA_ROOT:-datasets}}
ENGINE=${ENGINE:-embedded}
NPROC=${NPROC:-1}
DECLIP=${DECLIP:-declip}

args=(--detector_path "$DETECTOR" --test_dataset $TEST_DATASET --weights_path "$WEIGHTS")
case "$ENGINE" in
  embedded)
    if [ "$NPROC" -gt 1 ]; then
      exec torchrun --standalone --nproc_per_node "$NPROC" -m declip_plugin test "${args[@]}" --data_root "$DATA_ROOT" "$@"
    fi
    exec "$DECLIP" test "${args[@]}" --data_root "$DATA_ROOT" "$@" ;;
  deepfakebench)
    source "$(dirname "$0")/dfb_engine.sh"
    run_dfb test "${args[@]}" -- "$@" ;;
  *) echo "ENGINE must be embedded or deepfakebench, got '$ENGINE'" >&2; exit 2 ;;
esac
