#!/usr/bin/env bash
# Create ./.venv and install align with its test extras. Safe to run again (fast when done).
# On a machine without a GPU, torch is installed first as torch==2.13.0 (override: TORCH_SPEC).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  # Installing torch first keeps pip from pulling a multi-GB CUDA build on CPU-only machines.
  python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
if ! python -c "import align, trl, pytest" 2>/dev/null; then
  python -m pip install -q -e ".[dev]"
fi
python -c "import torch, transformers, trl; print(f'align set-up: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, cuda={torch.cuda.is_available()}')"
