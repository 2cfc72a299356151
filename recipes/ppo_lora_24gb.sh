#!/usr/bin/env bash
# PPO (actor-critic RLHF against a reward model), LoRA on one 24 GB GPU.
#
# Hardware: one 24 GB GPU (RTX 3090/4090, A5000, L4), a 7B/8B model.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); not yet run on a GPU.
# Memory:   ~22 GB (tight) per GPU -- an estimate from the arithmetic in docs/memory.md, not measured.
# Time:     ~1 h per 1k prompts (128-token responses, 4 PPO epochs) on an RTX 4090 -- an estimate (docs/memory.md), not measured.
# Launch:   bash recipes/ppo_lora_24gb.sh [more align flags]
#           MODEL=meta-llama/Llama-3.1-8B-Instruct DATASET=my.jsonl bash recipes/ppo_lora_24gb.sh
#           bash recipes/ppo_lora_24gb.sh --dry-run    # check flags and data; loads no model
# Same run: align rlhf --config recipes/yaml/ppo_lora_24gb.yaml
#
# The reward model is a 1.5B one: a 7B policy and a 7B reward model do not both fit
# 24 GB in bf16 (~31 GB of weights). Train it first, on the policy's tokenizer:
#   MODEL=Qwen/Qwen2.5-1.5B-Instruct OUTPUT_DIR=runs/rm-1.5b bash recipes/rm_lora_24gb.sh
# Several GPUs: LAUNCH="accelerate launch --num_processes N" (each samples 1/N of every
# rollout batch; docs/ppo.md).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-7B-Instruct}"
DATASET="${DATASET:-$HERE/../data_formats/prompt.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/ppo_lora_24gb}"
REWARD_MODEL="${REWARD_MODEL:-runs/rm-1.5b}"
# the launcher: python (one process); LAUNCH="accelerate launch --config_file
# recipes/accelerate/single_gpu.yaml" also works
read -r -a launch <<< "${LAUNCH:-python}"

args=(
  --algo ppo
  # the model to train: a hub id or a local directory (MODEL=...)
  --model "$MODEL"
  # the reward model (REWARD_MODEL=...): a sequence classifier with the policy's tokenizer;
  # the critic starts from it (its score head becomes the value head)
  --reward-model "$REWARD_MODEL"
  # your data (DATASET=...); check it first: align data validate FILE --algo ppo
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
  # one generation/scoring forward pass holds 8 sequences (default 64): bounds the
  # rollout's KV cache and logits
  --local-rollout-forward-batch-size 8
  # PPO updates in micro-batches of one sequence (a mini-batch is --rollout-batch-size /
  # --num-mini-batches = 64 sequences, accumulated)
  --per-device-train-batch-size 1
  # when a collapse detector fires (repeater, mute, KL blow-up, NaN): reload the last healthy
  # checkpoint and halve the learning rate
  --on-collapse rollback
  # a checkpoint every 20 PPO steps (default 500), so that rollback has one to go back to
  --save-steps 20
)
"${launch[@]}" -m align rlhf "${args[@]}" "$@"
