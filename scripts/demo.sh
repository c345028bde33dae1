#!/usr/bin/env bash
# The main job on the bundled demo data, from a fresh clone: detection and localization, images and video.
#   set up .venv -> generate the demo images (six manipulations, three kinds of trace; real images in
#   every split) and the demo videos (real videos and three temporal manipulations) ->
#   `declip protocol --preset demo`: declip_demo, clip_linear_demo, xception_demo trained on demo-telea,
#     tested on the six image sets (ID: telea; OOD: the other five), localization and detection ->
#   `declip protocol --preset demo-video`: clip_enhanced_demo_video (per frame), clip_stan_demo,
#     timesformer_demo trained on demo-video-flicker, tested on flicker (ID), jitter and freeze (OOD) ->
#   one HTML report of both (summary figure first, a leaderboard per task, heat-maps, video strips,
#   mask galleries), its summary figure as $OUT/summary.png, and $OUT/results.md (the three leaderboards
#   and the wall time).
# Rerunning it keeps the finished cells (the protocols are resumable); delete $OUT to start afresh.
# DATA_ROOT, OUT and VENV can be overridden from the environment. UPDATE_README=1 copies results.md into
# docs/demo_results.md and README.md's demo block, and summary.png to docs/demo_summary.png (the README's
# picture; scripts/readme_results.py): how the README's figures are regenerated.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_ROOT=${DATA_ROOT:-datasets}
OUT=${OUT:-logs/demo}
VENV=${VENV:-.venv}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # on a small shared CPU more threads only contend
start=$(date +%s)
bash scripts/setup_env.sh
DECLIP="$VENV/bin/declip"
setup_done=$(date +%s)

echo "[demo] generating the demo images in $DATA_ROOT/demo and the demo videos in $DATA_ROOT/demo_video"
"$DECLIP" make-demo-data "$DATA_ROOT/demo"
"$DECLIP" make-demo-videos "$DATA_ROOT/demo_video" --methods flicker jitter freeze --videos 96 16 40

echo "[demo] image protocol: 3 methods trained on demo-telea, tested on the six demo sets -> $OUT/image"
"$DECLIP" protocol --preset demo --data_root "$DATA_ROOT" --out "$OUT/image" --no-report
echo "[demo] video protocol: 3 methods trained on demo-video-flicker, tested on the three -> $OUT/video"
"$DECLIP" protocol --preset demo-video --data_root "$DATA_ROOT" --out "$OUT/video" --no-report

"$DECLIP" report "$OUT/image" "$OUT/video" --out "$OUT/report.html" --summary_png "$OUT/summary.png"
end=$(date +%s)
{
    echo "Wall time of \`bash scripts/demo.sh\`: $(( end - start )) s, of which setup $(( setup_done - start )) s" \
         "($(getconf _NPROCESSORS_ONLN) CPU cores, OMP_NUM_THREADS=$OMP_NUM_THREADS; load average at the end:" \
         "$(cut -d' ' -f1-3 /proc/loadavg))."
    echo
    "$DECLIP" leaderboard "$OUT/image/runs" "$OUT/video/runs" --by_task
} > "$OUT/results.md"
echo
cat "$OUT/results.md"
if [ "${UPDATE_README:-0}" = 1 ]; then
    "$VENV/bin/python" scripts/readme_results.py "$OUT/results.md"
fi
echo "[demo] done in $(( end - start )) s; report: $OUT/report.html; leaderboards: $OUT/results.md"
