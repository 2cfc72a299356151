#!/usr/bin/env bash
# PPO with a verifiable (rule) reward and no reward model, LoRA on one 24 GB GPU: GSM8K-style
# math word problems, the final answer checked against the `solution` column.
#
# Hardware: one 24 GB GPU (RTX 3090/4090, A5000, L4), a 1.5B-3B instruct model.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); not yet run on a GPU.
# Memory:   ~14 GB per GPU for Qwen2.5-3B-Instruct -- an estimate from the arithmetic in docs/memory.md (one bf16 base ~6 GB serves actor, critic and reference; no reward model), not measured.
# Time:     ~2 h per 1k prompts (512-token answers, 4 PPO epochs) on an RTX 4090 -- an estimate, not measured.
# Launch:   bash recipes/ppo_gsm8k_lora_24gb.sh [more align flags]
#           MODEL=Qwen/Qwen2.5-0.5B-Instruct DATASET=gsm8k_train.jsonl bash recipes/ppo_gsm8k_lora_24gb.sh
#           bash recipes/ppo_gsm8k_lora_24gb.sh --dry-run    # check flags and data; loads no model
# Same run: align rlhf --config recipes/yaml/ppo_gsm8k_lora_24gb.yaml
#
# Data: one record per problem, {"prompt": ..., "solution": "72"}; GSM8K's answers end with
# "#### 72", which the accuracy reward reads as well. This is verl's GSM8K PPO setup (a rule
# reward, the critic started from the policy: here a LoRA critic adapter with a value head of
# zeros on the policy's own base) on one GPU. Keep a held-out split (--eval-dataset) to
# report accuracy once, after choosing settings on a dev split.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-3B-Instruct}"
DATASET="${DATASET:-$HERE/../data_formats/prompt.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/ppo_gsm8k_lora_24gb}"
read -r -a launch <<< "${LAUNCH:-python}"

args=(
  --algo ppo
  # the model to train: a hub id or a local directory (MODEL=...)
  --model "$MODEL"
  # your data (DATASET=...): prompts and a `solution` column; align data validate FILE --algo ppo
  --dataset "$DATASET"
  # checkpoints, metrics.jsonl, TensorBoard logs and the result (OUTPUT_DIR=...)
  --output-dir "$OUTPUT_DIR"
  # the reward: 1 when the final answer equals the `solution` column, else 0 (no reward
  # model: the critic starts from the policy)
  --reward-funcs accuracy
  # LoRA on one base: actor and critic adapters; with the adapters off it is the reference
  --lora
  # bf16 mixed precision; weights load as bfloat16: 2 bytes/param instead of 4
  --bf16
  # recompute activations in the backward pass: much less memory for ~30% more compute
  --gradient-checkpointing
  # room for a worked solution (default 128)
  --max-new-tokens 512
  # the critic's value head starts at zeros: train it alone for the first steps
  --critic-warmup-steps 5
  # one generation/scoring forward pass holds 16 sequences (default 64): bounds the
  # rollout's KV cache and logits at 512-token answers
  --local-rollout-forward-batch-size 16
  # PPO updates in micro-batches of two sequences, accumulated over a mini-batch
  --per-device-train-batch-size 2
  # when a collapse detector fires (repeater, mute, KL blow-up, NaN): reload the last healthy
  # checkpoint and halve the learning rate
  --on-collapse rollback
  # a checkpoint every 20 PPO steps (default 500), so that rollback has one to go back to
  --save-steps 20
)
"${launch[@]}" -m align rlhf "${args[@]}" "$@"
