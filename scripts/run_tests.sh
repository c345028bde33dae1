#!/usr/bin/env bash
# Set everything up (virtual environment, package, test dependencies) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
VENV=${VENV:-.venv}
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
