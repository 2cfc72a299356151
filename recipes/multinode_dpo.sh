#!/usr/bin/env bash
# DPO, full fine-tuning, DeepSpeed ZeRO-3 over several machines (2 x 8 GPUs by default).
#
# Hardware: 2 machines x 8 GPUs with 40 GB or more, a fast interconnect (InfiniBand/RoCE) between them.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); not yet run on a GPU.
# Memory:   ~18 GB per GPU -- an estimate from the arithmetic in docs/memory.md, not measured.
# Time:     ~15 min per 10k pairs of 2 x 500 tokens on 2 x 8 A100 80GB with a fast interconnect -- an estimate (docs/memory.md), not measured.
# Launch:   MAIN_PROCESS_IP=... MACHINE_RANK=... bash recipes/multinode_dpo.sh [more align flags]
#           LAUNCH=python bash recipes/multinode_dpo.sh --dry-run    # check flags and data, one process
# Same run: accelerate launch --config_file recipes/accelerate/multinode_zero3.yaml \
#             --machine_rank N --main_process_ip IP -m align rlhf --config recipes/yaml/multinode_dpo.yaml
#
# Run the same command on every machine, with its own MACHINE_RANK (0 on the main one):
#   MAIN_PROCESS_IP=10.0.0.1 MACHINE_RANK=0 bash recipes/multinode_dpo.sh   # on the main machine
#   MAIN_PROCESS_IP=10.0.0.1 MACHINE_RANK=1 bash recipes/multinode_dpo.sh   # on the second
# NUM_MACHINES (2), GPUS_PER_MACHINE (8) and MAIN_PROCESS_PORT (29500) have defaults. Every
# machine needs the model, the data and this repository at the same paths, and OUTPUT_DIR
# on storage the main machine can write (it saves the model).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-7B-Instruct}"
DATASET="${DATASET:-$HERE/../data_formats/pairwise.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/multinode_dpo}"
DEEPSPEED="${DEEPSPEED:-$HERE/deepspeed/zero3.json}"
NUM_MACHINES="${NUM_MACHINES:-2}"
GPUS_PER_MACHINE="${GPUS_PER_MACHINE:-8}"
MAIN_PROCESS_PORT="${MAIN_PROCESS_PORT:-29500}"
# the launcher: accelerate with this machine's rank and the main machine's address;
# LAUNCH=python runs the same command in one process (as the CI dry run does)
if [[ -n "${LAUNCH:-}" ]]; then read -r -a launch <<< "$LAUNCH"
else
  launch=(accelerate launch --config_file "$HERE/accelerate/multinode_zero3.yaml"
          --num_machines "$NUM_MACHINES"
          --num_processes "$((NUM_MACHINES * GPUS_PER_MACHINE))"
          --machine_rank "${MACHINE_RANK:?set MACHINE_RANK: 0 on the main machine, 1.. on the others}"
          --main_process_ip "${MAIN_PROCESS_IP:?set MAIN_PROCESS_IP: the main machine address}"
          --main_process_port "$MAIN_PROCESS_PORT")
fi

args=(
  --algo dpo
  # the model to train: a hub id or a local directory (MODEL=...)
  --model "$MODEL"
  # your data (DATASET=...); check it first: align data validate FILE --algo dpo
  --dataset "$DATASET"
  # checkpoints, metrics.jsonl, TensorBoard logs and the result (OUTPUT_DIR=...)
  --output-dir "$OUTPUT_DIR"
  # DeepSpeed ZeRO-3: weights, gradients and optimizer states sharded over all GPUs of
  # all machines; the JSON's "auto" values come from these flags
  --deepspeed "$DEEPSPEED"
  # bf16 mixed precision (DeepSpeed keeps fp32 master weights and Adam states)
  --bf16
  # recompute activations in the backward pass: much less memory for ~30% more compute
  --gradient-checkpointing
  # full-parameter DPO on 7B wants a small step: Zephyr-7B-beta and Tulu 2 used 5e-7
  # (align's default, 1e-5, is for SFT-like full fine-tuning)
  --learning-rate 5e-7
  # two pairs per device per forward pass (2 sequences each)
  --per-device-train-batch-size 2
  # x 2 accumulated per GPU; x 16 GPUs (2 machines x 8) = 64 pairs per optimizer step
  --gradient-accumulation-steps 2
  # a checkpoint every 200 optimizer steps (default 500); --resume continues from the latest
  --save-steps 200
)
"${launch[@]}" -m align rlhf "${args[@]}" "$@"
