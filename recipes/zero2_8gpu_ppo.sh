#!/usr/bin/env bash
# PPO, full fine-tuning of actor and critic, DeepSpeed ZeRO-2 on 8 GPUs.
#
# Hardware: 8 GPUs with 40 GB or more on one machine; a 1.5B policy and a 1.5B reward model.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); not yet run on a GPU. The same
#           engine path (ZeRO-2, two processes, gloo) matches one process exactly in the tests.
# Memory:   ~25 GB per GPU -- an estimate from the arithmetic in docs/memory.md, not measured.
# Time:     ~25 min per 1k prompts (256-token responses, 4 PPO epochs) on 8 x A100 -- an estimate (docs/memory.md), not measured.
# Launch:   bash recipes/zero2_8gpu_ppo.sh [more align flags]
#           bash recipes/zero2_8gpu_ppo.sh --dry-run    # check flags, data and the JSON; loads no model
# Same run: accelerate launch --config_file recipes/accelerate/zero2_8gpu.yaml -m align rlhf \
#             --config recipes/yaml/zero2_8gpu_ppo.yaml
#
# Every process samples 1/8 of each rollout batch and scores it with its own reference and
# reward model; rewards, advantages and metrics use the whole batch (docs/ppo.md). One engine
# holds actor and critic: --max-grad-norm clips their joint gradient norm. For larger models
# use --lora (recipes/ppo_lora_24gb.sh) here, or ZeRO-3 (recipes/zero3_8gpu_ppo.sh).
# Train the reward model first, on the policy's tokenizer:
#   MODEL=Qwen/Qwen2.5-1.5B-Instruct bash recipes/zero2_8gpu_rm.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-1.5B-Instruct}"
DATASET="${DATASET:-$HERE/../data_formats/prompt.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/zero2_8gpu_ppo}"
REWARD_MODEL="${REWARD_MODEL:-runs/zero2_8gpu_rm}"
DEEPSPEED="${DEEPSPEED:-$HERE/deepspeed/zero2.json}"
# the launcher: one process per GPU; LAUNCH=python runs the same command in one process
if [[ -n "${LAUNCH:-}" ]]; then read -r -a launch <<< "$LAUNCH"
else launch=(accelerate launch --config_file "$HERE/accelerate/zero2_8gpu.yaml"); fi

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
  # DeepSpeed ZeRO-2: optimizer states and gradients of actor and critic sharded over the
  # GPUs; the JSON's "auto" values come from these flags
  --deepspeed "$DEEPSPEED"
  # bf16 mixed precision (DeepSpeed keeps fp32 master weights and Adam states)
  --bf16
  # recompute activations in the backward pass: much less memory for ~30% more compute
  --gradient-checkpointing
  # 128 prompts per PPO step over the 8 GPUs: 16 sampled and scored on each
  --rollout-batch-size 128
  # 256-token responses at most (default 128)
  --max-new-tokens 256
  # 4 optimizer steps per epoch: mini-batches of 32 sequences, 4 per GPU
  --num-mini-batches 4
  # micro-batches of 2 sequences per GPU (2 forward/backward passes per optimizer step)
  --per-device-train-batch-size 2
  # a checkpoint every 20 PPO steps (default 500); --resume continues from the latest
  --save-steps 20
)
"${launch[@]}" -m align rlhf "${args[@]}" "$@"
