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

TAG=seed-setup
source scripts/snapshots.sh
TAR=$(snapshot DeepFakesDetection)
if [ -z "$TAR" ]; then
    echo "[seed-setup] no DeepFakesDetection snapshot in $REF" >&2
    exit 3
fi
unpack "$TAR" DeepFakesDetection

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
