#!/usr/bin/env bash
# DPO (+ RPO's SFT term, on by default), QLoRA on one 12-16 GB GPU.
#
# Hardware: one 12-16 GB GPU (RTX 4060 Ti 16 GB, 4080, T4, A4000), a 7B/8B model.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); as a whole recipe, not yet run on a
#           GPU; one step with its flags ran in the benchmark on an H200 (docs/benchmarks.md).
# Memory:   ~11 GB per GPU -- an estimate from the arithmetic in docs/memory.md (1024-token pairs);
#           measured: 8.95 GB peak for the 7B shape with 512-token pairs on an H200
#           (docs/benchmarks.md).
# Time:     about 1.5x the LoRA recipe's time on the same GPU (dpo_lora_24gb.sh) -- an estimate (docs/memory.md), not measured.
# Launch:   bash recipes/dpo_qlora_16gb.sh [more align flags]
#           MODEL=meta-llama/Llama-3.1-8B-Instruct DATASET=my.jsonl bash recipes/dpo_qlora_16gb.sh
#           bash recipes/dpo_qlora_16gb.sh --dry-run    # check flags and data; loads no model
# Same run: align rlhf --config recipes/yaml/dpo_qlora_16gb.yaml
#
# Result: a LoRA adapter in $OUTPUT_DIR; fold it into the base with
#   align merge-lora runs/dpo_qlora_16gb --output-dir runs/dpo_qlora_16gb-merged
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-7B-Instruct}"
DATASET="${DATASET:-$HERE/../data_formats/pairwise.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/dpo_qlora_16gb}"
# the launcher: python (one process); LAUNCH="accelerate launch --config_file
# recipes/accelerate/single_gpu.yaml" also works
read -r -a launch <<< "${LAUNCH:-python}"

args=(
  --algo dpo
  # the model to train: a hub id or a local directory (MODEL=...)
  --model "$MODEL"
  # your data (DATASET=...); check it first: align data validate FILE --algo dpo
  --dataset "$DATASET"
  # checkpoints, metrics.jsonl, TensorBoard logs and the result (OUTPUT_DIR=...)
  --output-dir "$OUTPUT_DIR"
  # QLoRA: the frozen base in 4-bit NF4 (~0.5 byte/param) with bf16 compute, LoRA on top;
  # needs a CUDA GPU and bitsandbytes (pip install 'align[qlora]')
  --qlora
  # recompute activations in the backward pass: much less memory for ~30% more compute
  --gradient-checkpointing
  # one pair per device per forward pass (chosen and rejected: 2 sequences)
  --per-device-train-batch-size 1
  # x 16 accumulated = 16 pairs per optimizer step
  --gradient-accumulation-steps 16
  # a checkpoint every 200 optimizer steps (default 500); --resume continues from the latest
  --save-steps 200
)
"${launch[@]}" -m align rlhf "${args[@]}" "$@"
