#!/usr/bin/env bash
# DeepFakesDetection's own detector code and the packages it needs, for scripts/parity_seed.py:
#
#   bash scripts/setup_seed_env.sh
#
# Unpacks ../shared/reference/DeepFakesDetection-*.tar.gz (or $DECLIP_REFERENCE_DIR) into .dfb/ and
# installs scripts/seed-requirements.txt (transformers 4.x, peft, ... pinned) with --no-deps into
# .dfb/seed-site, a folder put first on PYTHONPATH beside the project's .venv (torch, numpy and
# this package come from there): the main environment is not changed.
# Exit status: 0 ready; 3 the snapshot is missing (a failure in CI: scripts/ci_env.sh); else the failing step's.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
REF=${DECLIP_REFERENCE_DIR:-../shared/reference}
OUT=.dfb
start=$SECONDS

TAR=$(ls "$REF"/DeepFakesDetection-*.tar.gz 2>/dev/null | sort | tail -n 1 || true)
if [ -z "$TAR" ]; then
    echo "[seed-setup] no DeepFakesDetection snapshot in $REF" >&2
    exit 3
fi
stamp="$OUT/DeepFakesDetection.snapshot"
if [ ! -d "$OUT/DeepFakesDetection" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$(basename "$TAR")" ]; then
    rm -rf "$OUT/DeepFakesDetection"
    mkdir -p "$OUT"
    tar xzf "$TAR" -C "$OUT"
    [ -d "$OUT/DeepFakesDetection/training" ] || { echo "[seed-setup] $TAR did not unpack to DeepFakesDetection/" >&2; exit 1; }
    basename "$TAR" > "$stamp"
    echo "[seed-setup] unpacked $(basename "$TAR") into $OUT/DeepFakesDetection"
fi

SITE=$OUT/seed-site
want=$(cat scripts/seed-requirements.txt)
if [ -d "$SITE" ] && [ "$(cat "$SITE.stamp" 2>/dev/null)" = "$want" ]; then
    echo "[seed-setup] reusing $SITE"
else
    rm -rf "$SITE" "$SITE.stamp"
    log="$OUT/seed-site-install.log"
    echo "[seed-setup] installing scripts/seed-requirements.txt into $SITE (--no-deps, --target)"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --target "$SITE" \
            -r scripts/seed-requirements.txt >"$log" 2>&1; then
        cat "$log" >&2
        echo "[seed-setup] pip install failed (log: $log)" >&2
        exit 1
    fi
    echo "$want" > "$SITE.stamp"
fi
echo "[seed-setup] done in $((SECONDS - start)) s"
