#!/usr/bin/env bash
# Reference vs optimized DeCLIP throughput and peak memory (declip_plugin/bench/), side by side.
#
#   bash scripts/bench.sh                 # GPU when present: ViT-L/14 layer20 + conv-20, batch 64, 256 images
#   bash scripts/bench.sh --quick         # CI-sized (tiny ViT + conv-4), well under a minute on 2 CPU cores
#   bash scripts/bench.sh cpu             # the CPU figures of docs/benchmarks.md (batch 2, 6 images)
#   bash scripts/bench.sh gpu             # the GPU figures of docs/benchmarks.md (batch 64, 256 images, + compile)
#   bash scripts/bench.sh [DETECTOR] [--batch_size N] [--n_images N] [--device D] [--compile] [--opt K=V] ...
#
# Results are printed and written as JSON under ${BENCH_OUT:-logs/bench}/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then PY=.venv/bin/python; fi
OUT=${BENCH_OUT:-logs/bench}
mkdir -p "$OUT"
stamp=$(date +%Y%m%d-%H%M%S)
case "${1:-}" in
  cpu)
    shift
    exec "$PY" -m declip_plugin bench declip --device cpu --batch_size 2 --n_images 6 --modes inference,train,components \
      --json "$OUT/cpu-$stamp.json" "$@" ;;
  gpu)
    shift
    "$PY" -m declip_plugin bench declip --device cuda --batch_size 64 --n_images 256 \
      --modes inference,train,components --json "$OUT/gpu-$stamp.json" "$@"
    exec "$PY" -m declip_plugin bench declip --device cuda --batch_size 64 --n_images 256 --compile --warmup 3 \
      --json "$OUT/gpu-compile-$stamp.json" "$@" ;;
  *)
    exec "$PY" -m declip_plugin bench --json "$OUT/bench-$stamp.json" "$@" ;;
esac
