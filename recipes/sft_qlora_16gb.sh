#!/usr/bin/env bash
# Supervised fine-tuning, QLoRA on one 12-16 GB GPU.
#
# Hardware: one 12-16 GB GPU (RTX 4060 Ti 16 GB, 4080, T4, A4000), a 7B/8B model.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); not yet run on a GPU.
# Memory:   ~11 GB per GPU -- an estimate from the arithmetic in docs/memory.md, not measured.
# Time:     about 1.5x the LoRA recipe's time on the same GPU (sft_lora_24gb.sh) -- an estimate (docs/memory.md), not measured.
# Launch:   bash recipes/sft_qlora_16gb.sh [more align flags]
#           MODEL=meta-llama/Llama-3.1-8B-Instruct DATASET=my.jsonl bash recipes/sft_qlora_16gb.sh
#           bash recipes/sft_qlora_16gb.sh --dry-run    # check flags and data; loads no model
# Same run: align sft --config recipes/yaml/sft_qlora_16gb.yaml
#
# Result: a LoRA adapter in $OUTPUT_DIR; fold it into the base with
#   align merge-lora runs/sft_qlora_16gb --output-dir runs/sft_qlora_16gb-merged
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-7B-Instruct}"
DATASET="${DATASET:-$HERE/../data_formats/sft.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/sft_qlora_16gb}"
# the launcher: python (one process); LAUNCH="accelerate launch --config_file
# recipes/accelerate/single_gpu.yaml" also works
read -r -a launch <<< "${LAUNCH:-python}"

args=(
  # the model to train: a hub id or a local directory (MODEL=...)
  --model "$MODEL"
  # your data (DATASET=...); check it first: align data validate FILE --algo sft
  --dataset "$DATASET"
  # checkpoints, metrics.jsonl, TensorBoard logs and the result (OUTPUT_DIR=...)
  --output-dir "$OUTPUT_DIR"
  # QLoRA: the frozen base in 4-bit NF4 (~0.5 byte/param) with bf16 compute, LoRA on top;
  # needs a CUDA GPU and bitsandbytes (pip install 'align[qlora]')
  --qlora
  # recompute activations in the backward pass: much less memory for ~30% more compute
  --gradient-checkpointing
  # two examples per device per forward pass
  --per-device-train-batch-size 2
  # x 8 accumulated = 16 examples per optimizer step
  --gradient-accumulation-steps 8
  # a checkpoint every 200 optimizer steps (default 500); --resume continues from the latest
  --save-steps 200
)
"${launch[@]}" -m align sft "${args[@]}" "$@"
