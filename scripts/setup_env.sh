#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the package into it.
#   bash scripts/setup_env.sh          # runtime + test dependencies (extras "dev", "deepfakebench": lmdb,
#                                      # "faces": dlib and its landmark model for `declip prepare`)
# VENV=/path/to/venv overrides the location; PYTHON picks the interpreter (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
echo "[setup] installing declip-plugin and its dependencies into $VENV (torch is the large one)"
log="$VENV/pip-install.log"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q -e ".[dev,deepfakebench,faces]" >"$log" 2>&1; then
    cat "$log" >&2
    echo "[setup] pip install failed (log: $log)" >&2
    exit 1
fi
"$VENV/bin/python" -c "import declip_plugin, torch, open_clip; print('[setup] ready: declip-plugin', declip_plugin.__version__, '| torch', torch.__version__, '| open_clip', open_clip.__version__)"
