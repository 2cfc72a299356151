#!/usr/bin/env bash
# The main job on an embedded default: set up, then run it. Extra arguments go to the command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRL_EXPERIMENTAL_SILENCE=1
align algos
align data validate data_formats/pairwise_chat.jsonl --algo dpo "$@"
