#!/usr/bin/env bash
# Create .venv and install evogm-opt with its dev extras. Idempotent: re-running only installs what is missing.
# torch: if the environment has none, install ${EVOGM_TORCH_SPEC:-torch==2.13.0} first (a CPU build on our CI
# machines); the package itself only asks for torch>=2.1, so your own torch (CUDA or not) is never replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${EVOGM_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install --quiet "${EVOGM_TORCH_SPEC:-torch==2.13.0}" || "$PY" -m pip install --quiet torch
fi
"$PY" -m pip install --quiet -e ".[${EVOGM_EXTRAS:-dev}]"
