#!/usr/bin/env bash
# The main job on the bundled demo data, from a fresh clone:
#   set up .venv -> generate the demo data -> train the demo DeCLIP on one demo method ->
#   test it in-domain and on the three other methods (out-of-domain) -> print the leaderboard.
# DATA_ROOT, LOG_DIR and DETECTOR can be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${DATA_ROOT:-datasets}
LOG_DIR=${LOG_DIR:-logs/demo}
DETECTOR=${DETECTOR:-declip_demo}
VENV=${VENV:-.venv}
start=$(date +%s)
bash scripts/setup_env.sh
DECLIP="$VENV/bin/declip"

echo "[demo] generating the demo data in $DATA_ROOT/demo"
"$DECLIP" make-demo-data "$DATA_ROOT/demo"

echo "[demo] training $DETECTOR on demo-telea, then testing on demo-telea (in-domain) and demo-ns/blur/resample (out-of-domain)"
"$DECLIP" train --detector_path "$DETECTOR" --data_root "$DATA_ROOT" --log_dir "$LOG_DIR" \
    --train_dataset demo-telea --test_dataset demo-telea demo-ns demo-blur demo-resample
run_dir=$(ls -td "$LOG_DIR"/*/ | head -n 1)

echo "[demo] leaderboard of $run_dir (also written to $LOG_DIR/leaderboard.md)"
"$DECLIP" leaderboard "$run_dir" | tee "$LOG_DIR/leaderboard.md"
echo "[demo] done in $(( $(date +%s) - start )) s; run directory: $run_dir"
