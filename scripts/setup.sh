#!/usr/bin/env bash
# Create ./.venv and install align with its test extras at the tested versions (constraints.txt).
# Safe to run again (fast when done).
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
# The exact versions the documented results were measured with (constraints.txt), so that the
# quickstart's seed-0 table in docs/quickstart.md reproduces here; installs again whenever an
# installed package differs from its pin.
# CONSTRAINTS= (empty) installs within pyproject.toml's ranges instead (e.g. on a Python other
# than the 3.11 the pins were tested on).
CONSTRAINTS=${CONSTRAINTS-constraints.txt}
if ! python -c "import align, trl, pytest" 2>/dev/null \
    || { [ -n "$CONSTRAINTS" ] && ! python scripts/freeze_constraints.py --check >/dev/null 2>&1; }; then
  python -m pip install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e ".[dev]"
fi
python -c "import torch, transformers, trl; print(f'align set-up: torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, cuda={torch.cuda.is_available()}')"
