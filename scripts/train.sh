#!/usr/bin/env bash
# Train a detector, DeepfakeBench style: the choices sit at the top, each overridable from the
# environment (DETECTOR=declip TRAIN_DATASET="dolos-lama" bash scripts/train.sh) or by extra
# arguments, which go to the trainer unchanged (e.g. --opt nEpochs=5 --device cpu).
#   ENGINE=embedded       the package's own DeepfakeBench-compatible engine (default)
#   ENGINE=deepfakebench  a real DeepfakeBench checkout at DEEPFAKEBENCH_ROOT (declip dfb; its train.py needs
#                         a GPU): DETECTOR may be a bundled name, our datasets are exported into EXPORT_DIR
#                         (default exports) first, `declip dfb`'s own options (--opt, --python, ...) are
#                         sorted out of the extra arguments (scripts/dfb_engine.sh)
#   NPROC=N               N processes on one machine with torchrun (DDP; embedded engine)
# Video detectors (video_mode: true in their YAML), e.g. on the demo videos (declip make-demo-videos):
#   DETECTOR=clip_stan_demo TRAIN_DATASET=demo-video TEST_DATASET=demo-video OMP_NUM_THREADS=1 bash scripts/train.sh --device cpu
set -euo pipefail
DETECTOR=${DETECTOR:-declip}                       # configs/detector/<name>.yaml or a path
TRAIN_DATASET=${TRAIN_DATASET:-"dolos-pluralistic"}
TEST_DATASET=${TEST_DATASET:-"dolos-pluralistic dolos-lama dolos-repaint-p2-9k dolos-ldm"}
WEIGHTS=${WEIGHTS:-}                               # optional initial weights
DATA_ROOT=${DATA_ROOT:-${DECLIP_DATA_ROOT:-datasets}}
ENGINE=${ENGINE:-embedded}
NPROC=${NPROC:-1}
DECLIP=${DECLIP:-declip}

args=(--detector_path "$DETECTOR" --train_dataset $TRAIN_DATASET --test_dataset $TEST_DATASET)
[ -n "$WEIGHTS" ] && args+=(--weights_path "$WEIGHTS")

case "$ENGINE" in
  embedded)
    if [ "$NPROC" -gt 1 ]; then
      exec torchrun --standalone --nproc_per_node "$NPROC" -m declip_plugin train "${args[@]}" --data_root "$DATA_ROOT" "$@"
    fi
    exec "$DECLIP" train "${args[@]}" --data_root "$DATA_ROOT" "$@" ;;
  deepfakebench)
    source "$(dirname "$0")/dfb_engine.sh"
    run_dfb train "${args[@]}" -- "$@" ;;
  *) echo "ENGINE must be embedded or deepfakebench, got '$ENGINE'" >&2; exit 2 ;;
esac
