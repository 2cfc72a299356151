#!/usr/bin/env bash
# The test suite: set up (idempotent), then run pytest on CPU with no network.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k dpo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRL_EXPERIMENTAL_SILENCE=1
python -m pytest -q "$@"
