#!/usr/bin/env bash
# CI's parity tables against the origins' own code (issue 22), after scripts/setup_dfb_env.sh:
#   1. scripts/parity_seed.py: our clip_enhanced / clip_stan against DeepFakesDetection's detector
#      code (logits within 1e-4; the trainable counts of both sides);
#   2. scripts/parity_metrics.py: our metrics against DeCLIP's validate.py and DeepfakeBench's
#      get_test_metrics (within 1e-6 where they claim the official definition).
# scripts/setup_seed_env.sh unpacks the DeepFakesDetection snapshot and builds .dfb/seed-site (its
# packages: transformers 4.x, peft, torchmetrics ...; the project's .venv is not changed).
# Exit status: 0 both pass (or the snapshot is missing, outside CI: scripts/ci_env.sh); else the failing step's.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
start=$SECONDS
set +e
bash scripts/setup_seed_env.sh
rc=$?
set -e
source scripts/ci_env.sh
if [ "$rc" -eq 3 ] && ! in_ci; then
    echo "[parity-seed] no DeepFakesDetection snapshot: the seed and metric parity tables are skipped"
    exit 0
elif [ "$rc" -ne 0 ]; then
    exit "$rc"
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
t1=$SECONDS
PYTHONPATH=$PWD/.dfb/seed-site:$PWD/.dfb/DeepFakesDetection/training "$VENV/bin/python" scripts/parity_seed.py \
    --seed-root .dfb/DeepFakesDetection
t2=$SECONDS
PYTHONPATH=$PWD/.dfb/seed-site:$PWD/.dfb/DeCLIP "$VENV/bin/python" scripts/parity_metrics.py \
    --deepfakebench-root .dfb/DeepfakeBench
echo "[parity-seed] timings: side packages $((t1 - start)) s, detector parity $((t2 - t1)) s, metric parity $((SECONDS - t2)) s"
