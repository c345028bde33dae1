#!/usr/bin/env bash
# The DeepfakeBench checkout, its CPU environment and the official DeCLIP code, for the real-checkout
# tests (tests/test_integration_dfb_real.py) and the parity check (scripts/parity_official.py).
#
#   bash scripts/setup_dfb_env.sh
#
# Unpacks ../shared/reference/DeepfakeBench-*.tar.gz and DeCLIP-*.tar.gz (or $DECLIP_REFERENCE_DIR)
# into .dfb/, and builds .dfb/venv: DeepfakeBench's requirements that run on a CPU
# (scripts/dfb-requirements.txt), with the project's .venv (torch, open_clip, this package) visible
# after its own packages through a .pth file, so torch is not installed twice.
# Exit status: 0 ready; 3 a snapshot is missing (a failure when CI=true); else the failing step's.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
REF=${DECLIP_REFERENCE_DIR:-../shared/reference}
OUT=.dfb
start=$SECONDS

snapshot() {  # newest $REF/<name>-*.tar.gz
    ls "$REF"/"$1"-*.tar.gz 2>/dev/null | sort | tail -n 1 || true
}
DFB_TAR=$(snapshot DeepfakeBench)
DECLIP_TAR=$(snapshot DeCLIP)
if [ -z "$DFB_TAR" ] || [ -z "$DECLIP_TAR" ]; then
    echo "[dfb-setup] no DeepfakeBench / DeCLIP snapshot in $REF (found: '${DFB_TAR}' '${DECLIP_TAR}')" >&2
    exit 3
fi

unpack() {  # unpack $1 into $OUT (it holds folder $2) unless this snapshot is already there
    local tar=$1 dir=$2 stamp="$OUT/$2.snapshot"
    if [ -d "$OUT/$dir" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(basename "$tar")" ]; then
        return
    fi
    rm -rf "${OUT:?}/$dir"
    mkdir -p "$OUT"
    tar xzf "$tar" -C "$OUT"
    [ -d "$OUT/$dir" ] || { echo "[dfb-setup] $tar did not unpack to $dir/" >&2; exit 1; }
    basename "$tar" > "$stamp"
    echo "[dfb-setup] unpacked $(basename "$tar") into $OUT/$dir"
}
unpack "$DFB_TAR" DeepfakeBench
unpack "$DECLIP_TAR" DeCLIP

MAIN_SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
DVENV=$OUT/venv
stamp="$DVENV/declip-requirements.stamp"
want="$(cat scripts/dfb-requirements.txt) | $MAIN_SITE"
if [ -x "$DVENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "[dfb-setup] reusing $DVENV"
else
    rm -rf "$DVENV"
    "$VENV/bin/python" -m venv "$DVENV"
    site=$("$DVENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # after this venv's own site-packages (so numpy<2 etc. win), the project's, with its .pth files
    # (the editable install of this package)
    echo "import site; site.addsitedir('$MAIN_SITE')" > "$site/zz_declip_project_venv.pth"
    log="$DVENV/pip-install.log"
    echo "[dfb-setup] installing DeepfakeBench's CPU requirements into $DVENV (scripts/dfb-requirements.txt)"
    if ! "$DVENV/bin/python" -m pip install --disable-pip-version-check -q -r scripts/dfb-requirements.txt >"$log" 2>&1; then
        cat "$log" >&2
        echo "[dfb-setup] pip install failed (log: $log)" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
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
    echo "[dfb-setup] the checkout's modules do not import in $DVENV" >&2
    exit 1
fi
echo "$check" | grep '^\[dfb-setup\]'
echo "[dfb-setup] done in $((SECONDS - start)) s"
