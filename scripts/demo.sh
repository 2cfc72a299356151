#!/usr/bin/env bash
# The main job on an embedded default: set up, then run `align quickstart` (every algorithm on
# a tiny model, no download; a few minutes on a laptop CPU). Extra arguments go to it, e.g.
# `bash scripts/demo.sh --algos dpo,ppo --overoptimization`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRL_EXPERIMENTAL_SILENCE=1
align quickstart "$@"
