#!/usr/bin/env bash
# RLOO (leave-one-out baseline) with a built-in accuracy reward, LoRA on one 24 GB GPU.
#
# Hardware: one 24 GB GPU (RTX 3090/4090, A5000, L4), a 7B/8B model.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); not yet run on a GPU.
# Memory:   ~19 GB per GPU -- an estimate from the arithmetic in docs/memory.md, not measured.
# Time:     ~1 h per 1k prompts x 2 completions of up to 512 tokens on an RTX 4090 -- an estimate (docs/memory.md), not measured.
# Launch:   bash recipes/rloo_lora_24gb.sh [more align flags]
#           MODEL=meta-llama/Llama-3.1-8B-Instruct DATASET=my.jsonl bash recipes/rloo_lora_24gb.sh
#           bash recipes/rloo_lora_24gb.sh --dry-run    # check flags and data; loads no model
# Same run: align rlhf --config recipes/yaml/rloo_lora_24gb.yaml
#
# Result: a LoRA adapter in $OUTPUT_DIR; fold it into the base with
#   align merge-lora runs/rloo_lora_24gb --output-dir runs/rloo_lora_24gb-merged
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-7B-Instruct}"
DATASET="${DATASET:-$HERE/../data_formats/prompt.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/rloo_lora_24gb}"
# the launcher: python (one process); LAUNCH="accelerate launch --config_file
# recipes/accelerate/single_gpu.yaml" also works
read -r -a launch <<< "${LAUNCH:-python}"

args=(
  --algo rloo
  # the model to train: a hub id or a local directory (MODEL=...)
  --model "$MODEL"
  # your data (DATASET=...); check it first: align data validate FILE --algo rloo
  --dataset "$DATASET"
  # checkpoints, metrics.jsonl, TensorBoard logs and the result (OUTPUT_DIR=...)
  --output-dir "$OUTPUT_DIR"
  # LoRA adapters on every linear layer; the base stays frozen (and, where a reference
  # is needed, doubles as it with the adapters switched off: no second copy)
  --lora
  # bf16 mixed precision; weights load as bfloat16: 2 bytes/param instead of 4
  --bf16
  # recompute activations in the backward pass: much less memory for ~30% more compute
  --gradient-checkpointing
  # reward: 1 when the final answer matches the dataset's `solution` column, else 0;
  # add format/length or your own (--reward-fn file.py:function, see recipes/reward_fns/)
  --reward-funcs accuracy
  # two completions per device per forward pass (completions, not prompts)
  --per-device-train-batch-size 2
  # x 16 accumulated = 32 completions per optimizer step: 16 prompts x 2 (--num-generations)
  --gradient-accumulation-steps 16
  # a checkpoint every 200 optimizer steps (default 500); --resume continues from the latest
  --save-steps 200
)
"${launch[@]}" -m align rlhf "${args[@]}" "$@"
