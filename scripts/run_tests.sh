#!/usr/bin/env bash
# Set everything up (virtual environment, package, test dependencies) and run the test suite, then
# the parity check against the official DeCLIP code.
#
# The real-checkout tests and the parity check need the snapshots in ../shared/reference
# (scripts/setup_dfb_env.sh builds .dfb/ from them); without them they are skipped, except in CI
# (CI=1 or CI=true, scripts/ci_env.sh), where a missing snapshot or environment is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ci_env.sh
bash scripts/setup_env.sh
VENV=${VENV:-.venv}
t0=$SECONDS
set +e
bash scripts/setup_dfb_env.sh
rc=$?
set -e
dfb_ready=0
if [ "$rc" -eq 0 ]; then
    export DEEPFAKEBENCH_ROOT=$PWD/.dfb/DeepfakeBench DEEPFAKEBENCH_PYTHON=$PWD/.dfb/venv/bin/python \
        DEEPFAKESDETECTION_ROOT=$PWD/.dfb/DeepFakesDetection
    dfb_ready=1
elif [ "$rc" -eq 3 ] && ! in_ci; then
    echo "[tests] no reference snapshots: the real-checkout tests and the parity check are skipped"
else
    echo "[tests] the DeepfakeBench environment could not be built (exit $rc)" >&2
    exit "$rc"
fi
t1=$SECONDS
# -rap: every test's outcome by name in the log (PASSED, SKIPPED, FAILED...), e.g. the Chromium report test
"$VENV/bin/python" -m pytest -q -rap -p no:cacheprovider --durations=15 "$@"
t2=$SECONDS
if [ "$dfb_ready" -eq 1 ]; then
    # quick subset: ViT-L/14 layer20 conv-20 with and without the backbone keys, the ViT-L/14,RN50 fusion
    PYTHONPATH=$PWD/.dfb/DeCLIP${PYTHONPATH:+:$PYTHONPATH} "$VENV/bin/python" scripts/parity_official.py \
        --official-root "$PWD/.dfb/DeCLIP" --cases quick --batch 1 --tolerance 1e-3
    # DeepFakesDetection's detectors and the official metric code: docs/parity.md
    bash scripts/run_parity_seed.sh
fi
t3=$SECONDS
echo "[tests] timings: DeepfakeBench environment $((t1 - t0)) s, test suite $((t2 - t1)) s, parity $((t3 - t2)) s"
