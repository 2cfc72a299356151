#!/usr/bin/env bash
# DPO, full fine-tuning, DeepSpeed ZeRO-2 on 8 GPUs.
#
# Hardware: 8 GPUs with 80 GB (A100/H100 80GB) on one machine.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); not yet run on a GPU.
# Memory:   ~53 GB per GPU -- an estimate from the arithmetic in docs/memory.md, not measured.
# Time:     ~15 min per 10k pairs of 2 x 500 tokens on 8 x A100 80GB -- an estimate (docs/memory.md), not measured.
# Launch:   bash recipes/zero2_8gpu_dpo.sh [more align flags]
#           bash recipes/zero2_8gpu_dpo.sh --dry-run    # check flags, data and the JSON; loads no model
# Same run: accelerate launch --config_file recipes/accelerate/zero2_8gpu.yaml -m align rlhf \
#             --config recipes/yaml/zero2_8gpu_dpo.yaml
#
# Full fine-tuning: $OUTPUT_DIR holds the whole model (ZeRO-3 gathers the 16-bit weights
# on save: stage3_gather_16bit_weights_on_model_save in the JSON).
# The launcher must start one process per GPU; without it (LAUNCH=python) the same
# command runs in one process, as the CI dry run does.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-7B-Instruct}"
DATASET="${DATASET:-$HERE/../data_formats/pairwise.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/zero2_8gpu_dpo}"
DEEPSPEED="${DEEPSPEED:-$HERE/deepspeed/zero2.json}"
# the launcher: one process per GPU; LAUNCH=python runs the same command in one process
if [[ -n "${LAUNCH:-}" ]]; then read -r -a launch <<< "$LAUNCH"
else launch=(accelerate launch --config_file "$HERE/accelerate/zero2_8gpu.yaml"); fi

args=(
  --algo dpo
  # the model to train: a hub id or a local directory (MODEL=...)
  --model "$MODEL"
  # your data (DATASET=...); check it first: align data validate FILE --algo dpo
  --dataset "$DATASET"
  # checkpoints, metrics.jsonl, TensorBoard logs and the result (OUTPUT_DIR=...)
  --output-dir "$OUTPUT_DIR"
  # DeepSpeed ZeRO-2: optimizer states and gradients sharded over the GPUs,
  # weights replicated; the JSON's "auto" values come from these flags
  --deepspeed "$DEEPSPEED"
  # bf16 mixed precision (DeepSpeed keeps fp32 master weights and Adam states:
  # 16 bytes/param in all, which ZeRO divides over the GPUs)
  --bf16
  # recompute activations in the backward pass: much less memory for ~30% more compute
  --gradient-checkpointing
  # full-parameter DPO on 7B wants a small step: Zephyr-7B-beta and Tulu 2 used 5e-7
  # (align's default, 1e-5, is for SFT-like full fine-tuning)
  --learning-rate 5e-7
  # two pairs per device per forward pass (2 sequences each)
  --per-device-train-batch-size 2
  # x 4 accumulated = 8 pairs per optimizer step per GPU; x 8 GPUs = 64
  --gradient-accumulation-steps 4
  # a checkpoint every 200 optimizer steps (default 500); --resume continues from the latest
  --save-steps 200
)
"${launch[@]}" -m align rlhf "${args[@]}" "$@"
