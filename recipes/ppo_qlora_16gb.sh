#!/usr/bin/env bash
# PPO (actor-critic RLHF against a reward model), QLoRA on one 12-16 GB GPU.
#
# Hardware: one 12-16 GB GPU (RTX 4060 Ti 16 GB, 4080, T4, A4000), a 7B/8B model.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); as a whole recipe, not yet run on a
#           GPU; one step with its flags ran in the benchmark on an H200 (docs/benchmarks.md).
# Memory:   ~14 GB per GPU -- an estimate from the arithmetic in docs/memory.md; measured:
#           15.4 GB peak of tensors for the 7B shapes on an H200 (docs/benchmarks.md), at the
#           edge of a 16 GB card once the CUDA context is added: a 24 GB card is comfortable.
# Time:     about 1.5x the LoRA recipe's time on the same GPU (ppo_lora_24gb.sh) -- an estimate (docs/memory.md), not measured.
# Launch:   bash recipes/ppo_qlora_16gb.sh [more align flags]
#           MODEL=meta-llama/Llama-3.1-8B-Instruct DATASET=my.jsonl bash recipes/ppo_qlora_16gb.sh
#           bash recipes/ppo_qlora_16gb.sh --dry-run    # check flags and data; loads no model
# Same run: align rlhf --config recipes/yaml/ppo_qlora_16gb.yaml
#
# Policy and reward model (the critic's start) are both 7B and both 4-bit. Train the
# reward model first: bash recipes/rm_qlora_16gb.sh (writes runs/rm_qlora_16gb).
# Several GPUs: LAUNCH="accelerate launch --num_processes N" (each samples 1/N of every
# rollout batch; docs/ppo.md).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-7B-Instruct}"
DATASET="${DATASET:-$HERE/../data_formats/prompt.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/ppo_qlora_16gb}"
REWARD_MODEL="${REWARD_MODEL:-runs/rm_qlora_16gb}"
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
  # QLoRA: the frozen base in 4-bit NF4 (~0.5 byte/param) with bf16 compute, LoRA on top;
  # needs a CUDA GPU and bitsandbytes (pip install 'align[qlora]')
  --qlora
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
