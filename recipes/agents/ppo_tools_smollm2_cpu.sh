#!/usr/bin/env bash
# PPO with a tool (multiply) and a rule reward, from an SFT model taught tool calls; no reward
# model: with LoRA the critic is a second adapter on the policy's base, its value head at zeros.
#
# Hardware: CPU (2 cores), SmolLM2-135M-Instruct; any GPU runs it faster.
# Tested:   2026-12-07 on this project's 2-core CPU machine: test accuracy 0.04 (SFT) -> 0.52
#           (docs/agents.md, "PPO with the tool on SmolLM2-135M-Instruct"; one seed).
# Memory:   6.6 GB resident at step 1 (one float32 base; micro-batches of 4). Full fine-tuning
#           (no --lora, micro-batches of 8) was killed at 9.2 GB (3 models, Adam, 49k-token logits).
# Time:     8 steps in 30 min on one thread of 2 shared cores (load 2-4); 665 s a step at load ~4.
# Launch:   python scripts/agent_task_data.py runs/agent-data    # the task's data
#           align sft --model "$MODEL" --dataset runs/agent-data/sft.jsonl \
#             --chat-template chatml-tools --max-steps 24 --per-device-train-batch-size 8 \
#             --learning-rate 5e-5 --output-dir runs/sft-tools   # teaches the call format
#           bash recipes/agents/ppo_tools_smollm2_cpu.sh [more align flags]
# Score:    align generate --model runs/ppo-tools --prompts runs/agent-data/test.jsonl \
#             --tools recipes/agents/arithmetic.py:multiply --max-tool-calls 2 \
#             --temperature 0 --max-new-tokens 128 --output test.jsonl
#           python scripts/agent_task_data.py runs/agent-data --score test.jsonl
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-runs/sft-tools}"
DATASET="${DATASET:-runs/agent-data/train.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-runs/ppo-tools}"

args=(
  --algo ppo
  # the SFT model that writes Hermes tool calls (chatml-tools is saved with it)
  --model "$MODEL"
  --dataset "$DATASET"
  --output-dir "$OUTPUT_DIR"
  # the tool the model may call, imported only because it is named here
  --tools "$HERE/arithmetic.py:multiply"
  # the rule: 1 for the exact product in the final answer (the data's answer column);
  # no --reward-model
  --reward-fn "$HERE/arithmetic.py:exact_answer"
  # one call and the answer: two tool calls are plenty
  --max-tool-calls 2
  # the episode's budget: the call (~35 tokens), the tool's turn (~25) and the answer
  --max-new-tokens 128
  # one base model: actor and critic are adapters, the reference is the base without them
  --lora
  # 8 steps of 8 episodes, each step 4 epochs over the 8 in one mini-batch (micro-batches
  # of 4, and scoring passes of 4, for memory: the vocabulary has 49k tokens)
  --max-steps 8
  --rollout-batch-size 8
  --per-device-train-batch-size 4
  --local-rollout-forward-batch-size 4
  # the reward comes at the episode's end and the call that decides it ~50 tokens before:
  # λ = 1 gives every token the episode's return minus its value (verl's default for LLMs);
  # the default 0.95 passes a call token only 0.95^50 ~ 0.08 of the reward
  --lam 1.0
  # LoRA's rate: 3e-4 was the better of 1e-4 (the default) and 3e-4 on the dev split of the
  # single-turn PPO task on this model (docs/agents.md)
  --actor-lr 3e-4
  --lr-scheduler-type constant
  --warmup-ratio 0
  # only the final model
  --save-steps 100
  --seed 0
  --logging-steps 1
)
exec align rlhf "${args[@]}" "$@"
