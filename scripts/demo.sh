#!/usr/bin/env bash
# The main job on the bundled demo data, from a fresh clone: the paper's protocol in miniature.
#   set up .venv -> generate the demo data (six manipulations, three kinds of trace) ->
#   `declip protocol --preset demo`: three methods (declip_demo, clip_linear_demo, xception_demo),
#   each trained on demo-telea and tested on all six demo sets (ID: telea; OOD: the other five) ->
#   grids, ID/OOD means, heat-maps, leaderboard and a self-contained HTML report.
# Rerunning it keeps the finished cells (the protocol is resumable); delete $OUT to start afresh.
# DATA_ROOT, OUT and VENV can be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${DATA_ROOT:-datasets}
OUT=${OUT:-logs/demo/protocol}
VENV=${VENV:-.venv}
start=$(date +%s)
bash scripts/setup_env.sh
DECLIP="$VENV/bin/declip"

echo "[demo] generating the demo data in $DATA_ROOT/demo"
"$DECLIP" make-demo-data "$DATA_ROOT/demo"

echo "[demo] protocol: 3 methods trained on demo-telea, tested on the six demo sets -> $OUT"
"$DECLIP" protocol --preset demo --data_root "$DATA_ROOT" --out "$OUT"
echo "[demo] done in $(( $(date +%s) - start )) s; protocol folder: $OUT"
