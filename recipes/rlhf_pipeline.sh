#!/usr/bin/env bash
# The classic RLHF pipeline (InstructGPT): SFT -> reward model -> PPO, LoRA on one 24 GB GPU.
#
#   1. SFT:   MODEL + SFT_DATASET          -> $OUT/sft (adapter) -> merged into $OUT/sft-merged
#   2. RM:    $OUT/sft-merged + PAIRS      -> $OUT/rm (a sequence classifier; the SFT model is
#             its starting point, so it shares the policy's tokenizer, as PPO requires)
#   3. PPO:   policy $OUT/sft-merged, reward model $OUT/rm (the critic starts from it) + PROMPTS
#             -> $OUT/ppo (adapter)
#
# Hardware: one 24 GB GPU with the default 1.5B model. A 7B/8B model puts a 7B policy and a 7B
#           reward model in the PPO stage (~31 GB of bf16 weights): use a 48 GB+ GPU, or
#           EXTRA_PPO_ARGS="--qlora --no-lora" (needs bitsandbytes) to fit 24 GB.
# Tested:   dry run only (`--dry-run`, in CI on a CPU machine); not yet run on a GPU.
# Memory:   ~11 GB (SFT), ~6 GB (RM), ~12 GB (PPO) with Qwen2.5-1.5B -- estimates from the
#           arithmetic in docs/memory.md, not measured.
# Time:     with 10k SFT examples, 10k pairs and 1k prompts on an RTX 4090: ~15 min + ~25 min
#           + ~20 min -- estimates (docs/memory.md), not measured.
# Launch:   bash recipes/rlhf_pipeline.sh [flags every stage takes, e.g. --max-steps 10 --seed 1]
#           MODEL=Qwen/Qwen2.5-7B-Instruct SFT_DATASET=sft.jsonl PAIRS=pairs.jsonl \
#             PROMPTS=prompts.jsonl OUT=runs/my-rlhf bash recipes/rlhf_pipeline.sh
#           bash recipes/rlhf_pipeline.sh --dry-run    # dry-runs all three stages
# Extra flags for one stage only: EXTRA_SFT_ARGS, EXTRA_RM_ARGS, EXTRA_PPO_ARGS (space-separated).
#
# Dry run: with --dry-run among the arguments, each stage is dry-run and nothing is trained, so
# the SFT and RM outputs that stages 2 and 3 read do not exist yet. Stages 2 and 3 then use
# MODEL in their place: the dry run checks every stage's flags, data and paths, not the
# weights the earlier stages would have produced.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODEL="${MODEL:-Qwen/Qwen2.5-1.5B-Instruct}"
SFT_DATASET="${SFT_DATASET:-$HERE/../data_formats/sft.jsonl}"
PAIRS="${PAIRS:-$HERE/../data_formats/pairwise.jsonl}"
PROMPTS="${PROMPTS:-$HERE/../data_formats/prompt.jsonl}"
OUT="${OUT:-runs/rlhf_pipeline}"
read -r -a launch <<< "${LAUNCH:-python}"
read -r -a extra_sft <<< "${EXTRA_SFT_ARGS:-}"
read -r -a extra_rm <<< "${EXTRA_RM_ARGS:-}"
read -r -a extra_ppo <<< "${EXTRA_PPO_ARGS:-}"

dry_run=0
for arg in "$@"; do [[ "$arg" == "--dry-run" ]] && dry_run=1; done
if (( dry_run )); then
  sft_model="$MODEL"; reward_model="$MODEL"
  echo "dry run: stages 2 and 3 use $MODEL in place of $OUT/sft-merged and $OUT/rm"
else
  sft_model="$OUT/sft-merged"; reward_model="$OUT/rm"
fi

echo "== stage 1/3: SFT"
sft=(
  --model "$MODEL"
  --dataset "$SFT_DATASET"
  --output-dir "$OUT/sft"
  # LoRA adapters; merged into a plain model below, which stages 2 and 3 start from
  --lora
  # bf16 mixed precision; weights load as bfloat16
  --bf16
  # recompute activations in the backward pass: less memory, ~30% more compute
  --gradient-checkpointing
  # 4 examples per forward pass x 4 accumulated = 16 per optimizer step
  --per-device-train-batch-size 4
  --gradient-accumulation-steps 4
)
"${launch[@]}" -m align sft "${sft[@]}" ${extra_sft[@]+"${extra_sft[@]}"} "$@"
if (( ! dry_run )); then
  "${launch[@]}" -m align merge-lora "$OUT/sft" --output-dir "$OUT/sft-merged"
fi

echo "== stage 2/3: reward model"
rm=(
  --algo rm
  # the reward model starts from the SFT model (InstructGPT), so it reads the same tokens
  --model "$sft_model"
  --dataset "$PAIRS"
  # the result loads as a sequence classifier (LoRA merged in; the adapter in $OUT/rm/adapter)
  --output-dir "$OUT/rm"
  # LoRA, bf16 and activation recomputation, as in stage 1
  --lora
  --bf16
  --gradient-checkpointing
  # 4 pairs per forward pass x 4 accumulated = 16 pairs per optimizer step
  --per-device-train-batch-size 4
  --gradient-accumulation-steps 4
)
"${launch[@]}" -m align rlhf "${rm[@]}" ${extra_rm[@]+"${extra_rm[@]}"} "$@"

echo "== stage 3/3: PPO"
ppo=(
  --algo ppo
  # the policy: the merged SFT model (with LoRA, its base is also the frozen reference)
  --model "$sft_model"
  # scores the responses; the critic starts from it (its score head becomes the value head)
  --reward-model "$reward_model"
  --dataset "$PROMPTS"
  --output-dir "$OUT/ppo"
  # LoRA on actor and critic (reference = actor base, reward model = critic base: one copy
  # of each model), bf16 and activation recomputation, as in stage 1
  --lora
  --bf16
  --gradient-checkpointing
  # 8 sequences per generation/scoring forward pass (default 64): bounds rollout memory
  --local-rollout-forward-batch-size 8
  # PPO updates in micro-batches of 4 sequences (a mini-batch is --rollout-batch-size 64)
  --per-device-train-batch-size 4
  # on a collapse (repeater, mute, KL blow-up, NaN): back to the last healthy checkpoint,
  # half the learning rate; checkpoints every 20 PPO steps so there is one to go back to
  --on-collapse rollback
  --save-steps 20
)
"${launch[@]}" -m align rlhf "${ppo[@]}" ${extra_ppo[@]+"${extra_ppo[@]}"} "$@"

if (( ! dry_run )); then
  echo "done: the PPO adapter is in $OUT/ppo; its curves: align plot $OUT/ppo"
fi
