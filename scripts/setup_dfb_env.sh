#!/usr/bin/env bash
# The DeepfakeBench checkout, its fork DeepFakesDetection, their CPU environment and the official DeCLIP
# code, for the real-checkout tests (tests/test_integration_dfb_real.py) and the parity check
# (scripts/parity_official.py).
#
#   bash scripts/setup_dfb_env.sh
#
# Unpacks ../shared/reference/{DeepfakeBench,DeCLIP,DeepFakesDetection}-*.tar.gz (or $DECLIP_REFERENCE_DIR)
# into .dfb/, and builds .dfb/venv with `declip dfb setup` (once per checkout; the second adds the
# fork's extra imports), with the project's .venv (torch, open_clip, this package) visible after its
# own packages, so torch is not installed twice. The interpreters are recorded in .dfb/config/.
# Exit status: 0 ready; 3 a snapshot is missing (a failure in CI: scripts/ci_env.sh); else the failing step's.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
REF=${DECLIP_REFERENCE_DIR:-../shared/reference}
OUT=.dfb
start=$SECONDS

TAG=dfb-setup
source scripts/snapshots.sh
DFB_TAR=$(snapshot DeepfakeBench)
DECLIP_TAR=$(snapshot DeCLIP)
FORK_TAR=$(snapshot DeepFakesDetection)
if [ -z "$DFB_TAR" ] || [ -z "$DECLIP_TAR" ] || [ -z "$FORK_TAR" ]; then
    echo "[dfb-setup] no DeepfakeBench / DeCLIP / DeepFakesDetection snapshot in $REF (found: '${DFB_TAR}'" \
         "'${DECLIP_TAR}' '${FORK_TAR}')" >&2
    exit 3
fi

unpack "$DFB_TAR" DeepfakeBench
unpack "$DECLIP_TAR" DeCLIP
unpack "$FORK_TAR" DeepFakesDetection

# the environment: `declip dfb setup` (DeepfakeBench's CPU-tested pins, torch and this package from
# $VENV through a .pth file); run again for the fork, it adds what the fork imports beyond them
for checkout in DeepfakeBench DeepFakesDetection; do
    if ! XDG_CONFIG_HOME=$PWD/$OUT/config "$VENV/bin/python" -m declip_plugin dfb setup --bench_root "$OUT/$checkout" \
            --venv "$OUT/venv" | sed 's/^/[dfb-setup] /'; then
        echo "[dfb-setup] declip dfb setup failed for $OUT/$checkout" >&2
        exit 1
    fi
done
# the checkout's dataset package imports (the two CPU-unimportable modules stubbed); its detectors are
# imported by the tests' first run
if ! check=$(cd "$OUT/DeepfakeBench" && CUDA_VISIBLE_DEVICES= PYTHONPATH="training${PYTHONPATH:+:$PYTHONPATH}" \
        "../venv/bin/python" -c '
from declip_plugin.integrations.deepfakebench.bootstrap import install_cpu_stubs
install_cpu_stubs()
import numpy, cv2, albumentations, torch, declip_plugin, dataset  # the dataset package: imgaug, dlib, skimage
print("[dfb-setup] ready: numpy", numpy.__version__, "| opencv", cv2.__version__, "| albumentations",
      albumentations.__version__, "| torch", torch.__version__)
' 2>&1); then
    echo "$check" | tail -n 20 >&2
    echo "[dfb-setup] the checkout's modules do not import in $OUT/venv" >&2
    exit 1
fi
echo "$check" | grep '^\[dfb-setup\]'
echo "[dfb-setup] done in $((SECONDS - start)) s"
