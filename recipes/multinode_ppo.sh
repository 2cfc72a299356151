#!/usr/bin/env bash
# PPO, full fine-tuning, DeepSpeed ZeRO-2 over several machines (2 x 8 GPUs by default).
#
# Hardware: 2 machines x 8 GPUs with 80 GB, a fast interconnect (InfiniBand/RoCE) between them;
#           a 7B policy and a 1.5B reward model.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); not yet run on a GPU.
# Memory:   ~50 GB per GPU -- an estimate from the arithmetic in docs/memory.md, not measured.
# Time:     ~40 min per 1k prompts (256-token responses, 4 PPO epochs) on 2 x 8 A100 80GB -- an estimate (docs/memory.md), not measured.
# Launch:   MAIN_PROCESS_IP=... MACHINE_RANK=... bash recipes/multinode_ppo.sh [more align flags]
#           LAUNCH=python bash recipes/multinode_ppo.sh --dry-run    # check flags and data, one process
# Same run: accelerate launch --config_file recipes/accelerate/multinode_zero2.yaml \
#             --machine_rank N --main_process_ip IP -m align rlhf --config recipes/yaml/multinode_ppo.yaml
#
# Run the same command on every machine, with its own MACHINE_RANK (0 on the main one):
#   MAIN_PROCESS_IP=10.0.0.1 MACHINE_RANK=0 bash recipes/multinode_ppo.sh   # on the main machine
#   MAIN_PROCESS_IP=10.0.0.1 MACHINE_RANK=1 bash recipes/multinode_ppo.sh   # on the second
# NUM_MACHINES (2), GPUS_PER_MACHINE (8) and MAIN_PROCESS_PORT (29500) have defaults. Every
# machine needs the models, the data and this repository at the same paths, and OUTPUT_DIR
# on storage that every machine can write (rank 0 saves the models; each process adds its
# own RNG state and optimizer partition to a checkpoint).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-7B-Instruct}"
DATASET="${DATASET:-$HERE/../data_formats/prompt.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/multinode_ppo}"
REWARD_MODEL="${REWARD_MODEL:-runs/rm-1.5b}"
DEEPSPEED="${DEEPSPEED:-$HERE/deepspeed/zero2.json}"
NUM_MACHINES="${NUM_MACHINES:-2}"
GPUS_PER_MACHINE="${GPUS_PER_MACHINE:-8}"
MAIN_PROCESS_PORT="${MAIN_PROCESS_PORT:-29500}"
# the launcher: accelerate with this machine's rank and the main machine's address;
# LAUNCH=python runs the same command in one process (as the CI dry run does)
if [[ -n "${LAUNCH:-}" ]]; then read -r -a launch <<< "$LAUNCH"
else
  launch=(accelerate launch --config_file "$HERE/accelerate/multinode_zero2.yaml"
          --num_machines "$NUM_MACHINES"
          --num_processes "$((NUM_MACHINES * GPUS_PER_MACHINE))"
          --machine_rank "${MACHINE_RANK:?set MACHINE_RANK: 0 on the main machine, 1.. on the others}"
          --main_process_ip "${MAIN_PROCESS_IP:?set MAIN_PROCESS_IP: the main machine address}"
          --main_process_port "$MAIN_PROCESS_PORT")
fi

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
  # DeepSpeed ZeRO-2: optimizer states and gradients sharded over all GPUs of all machines
  --deepspeed "$DEEPSPEED"
  # bf16 mixed precision (DeepSpeed keeps fp32 master weights and Adam states)
  --bf16
  # recompute activations in the backward pass: much less memory for ~30% more compute
  --gradient-checkpointing
  # 256 prompts per PPO step: 16 sampled and scored on each of the 16 GPUs
  --rollout-batch-size 256
  # 256-token responses at most (default 128)
  --max-new-tokens 256
  # 4 optimizer steps per epoch: mini-batches of 64 sequences, 4 per GPU
  --num-mini-batches 4
  # micro-batches of 1 sequence per GPU
  --per-device-train-batch-size 1
  # a checkpoint every 20 PPO steps (default 500); --resume continues from the latest
  --save-steps 20
)
"${launch[@]}" -m align rlhf "${args[@]}" "$@"
