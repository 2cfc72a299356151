#!/usr/bin/env bash
# The benchmark's GPU run in one command, for a lent GPU with little time (docs/benchmarks.md).
#
#   bash scripts/gpu_run.sh                 # on the GPU machine, from the repository root
#   SMOKE=1 bash scripts/gpu_run.sh         # the same sequence, tiny shape, on a CPU (minutes)
#
# 1. Installs what the machine's image lacks from wheels in .whl/ (trl, datasets, peft,
#    transformers, bitsandbytes, liger-kernel, ...; see "Wheels" below) into /tmp/site.
# 2. Runs scripts/bench.py once per section, in priority order, each measurement in its own
#    process, every result file rewritten after each measurement, under one deadline
#    (BUDGET_S seconds from the start): what cannot start in time is recorded as skipped.
#       dpo-0.5b.json       DPO, Qwen2.5-0.5B shape, 8 pairs of 256+256 tokens: plain TRL
#                           against align's variants, full fine-tuning
#       ppo-0.5b.json       PPO rollouts, 0.5B shape, 128 prompts, 256 new tokens: plain
#                           generate, align, align --compile-rollout; one PPO step split
#       dpo-7b-qlora.json   7B shape, QLoRA DPO step as recipes/dpo_qlora_16gb.sh: peak memory
#       ppo-7b-qlora.json   7B shape (policy and reward model), QLoRA PPO step as
#                           recipes/ppo_qlora_16gb.sh: peak memory
#       dpo-0.5b-lora.json  DPO at 0.5B with LoRA and QLoRA against plain TRL
#    SECTIONS="dpo-0.5b ppo-0.5b" runs only those (a lease split over two calls).
# 3. Prints every table (the end of the output), and leaves everything in $OUT (default
#    ./gpu-run-out): the JSON files, env.txt (GPU, driver, packages) and log.txt.
#
# Wheels (Python 3.12, manylinux x86_64), fetched on a machine with PyPI, from the repo root:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl \
#     trl==1.16.0 datasets==5.2.0 transformers==5.24.0 peft==0.21.2 dill==0.4.1 \
#     multiprocess==0.70.19 liger-kernel==0.8.5 bitsandbytes==0.50.2
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-run-out}
BUDGET_S=${BUDGET_S:-560}
WORK=${WORK:-${TMPDIR:-/tmp}/align-bench}
mkdir -p "$OUT"
start=$(date +%s)
deadline=$((start + BUDGET_S))
log() { echo "[gpu_run +$(( $(date +%s) - start ))s] $*" | tee -a "$OUT/log.txt"; }

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRL_EXPERIMENTAL_SILENCE=1
export PYTHONUNBUFFERED=1 HF_HOME=${HF_HOME:-$WORK/hf}
PY=${PYTHON:-python3}

# 1. packages
if [ -d .whl ] && [ "${INSTALL:-1}" = 1 ]; then
  log "installing $(ls .whl | wc -l) wheels into /tmp/site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl >>"$OUT/log.txt" 2>&1 || log "pip install failed (see log.txt)"
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
{
  nvidia-smi 2>&1 | head -15
  df -h "$(dirname "$WORK")" | tail -1
  "$PY" - <<'EOF'
import importlib.metadata as md, platform
print("python", platform.python_version())
for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes",
             "liger-kernel", "triton", "pyarrow", "tokenizers", "huggingface-hub"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "absent")
import torch, transformers, trl, peft, datasets  # noqa: E401 -- fail here, loudly, if broken
print("cuda", torch.cuda.is_available(), torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt" | tee -a "$OUT/log.txt"

# 2. the measurements: name, seconds it needs to be worth starting, per-measurement limit,
#    then bench.py's arguments (SMOKE=1 replaces the shape and sizes by bench.py --smoke's)
SECTIONS=${SECTIONS:-dpo-0.5b ppo-0.5b dpo-7b-qlora ppo-7b-qlora dpo-0.5b-lora}
section() {
  local name=$1 need=$2 cell=$3
  shift 3
  local left=$((deadline - $(date +%s)))
  case " $SECTIONS " in *" $name "*) ;; *) return ;; esac
  if [ "${SMOKE:-0}" = 1 ]; then
    set -- --smoke "$@"
  elif (( left < need )); then
    log "skip $name: $left s left, it needs about $need s"
    return
  fi
  log "start $name ($left s left)"
  timeout $((left + 30)) "$PY" scripts/bench.py --work-dir "$WORK" --deadline "$deadline" \
    --cell-timeout "$cell" --out "$OUT/$name.json" "$@" >>"$OUT/log.txt" 2>&1
  log "end $name: exit $?"
}
big() { [ "${SMOKE:-0}" = 1 ] || echo "$@"; }

# shellcheck disable=SC2046  # big's output is meant to split into arguments
section dpo-0.5b 60 120 --only dpo --modes full \
  --dpo-variants defaults,precompute,precompute+ckpt,precompute+liger \
  $(big --shape 0.5b --steps 10 --warmup 3)
# shellcheck disable=SC2046
section ppo-0.5b 90 300 --only ppo --modes full \
  $(big --shape 0.5b --ppo-batch 128 --new-tokens 256 \
        --ppo-steps 1 --ppo-warmup 0)
# shellcheck disable=SC2046
section dpo-7b-qlora 150 240 --only dpo --modes qlora --no-baseline \
  --dpo-variants ckpt,precompute+ckpt \
  $(big --shape 7b --dpo-batch 1 --steps 2 --warmup 1)
# shellcheck disable=SC2046
section ppo-7b-qlora 150 300 --only ppo --modes qlora --ppo-parts step \
  --ppo-flags "--gradient-checkpointing --local-rollout-forward-batch-size 8 --per-device-train-batch-size 1 --ppo-epochs 1" \
  $(big --shape 7b --ppo-batch 16 --new-tokens 128 --ppo-steps 1 --ppo-warmup 0)
# shellcheck disable=SC2046
section dpo-0.5b-lora 45 120 --only dpo --modes lora,qlora --dpo-variants defaults,precompute \
  $(big --shape 0.5b --steps 10 --warmup 3)

# Sections run only when named in SECTIONS (issue 19's and 20's follow-up measurements):
# peak memory of one PPO step in each PPO layout (full, LoRA with the critic on the reward
# model's base, LoRA on one shared base, the same with the reward model offloaded to CPU);
# QLoRA DPO at 0.5B; rollouts again with full-length warm-ups.
# shellcheck disable=SC2046
section ppo-layouts-0.5b 120 150 --only ppo --modes full,lora-rm-base,lora,lora-offload \
  --ppo-parts step $(big --shape 0.5b --ppo-batch 64 --new-tokens 128 --ppo-steps 1 --ppo-warmup 0)
# shellcheck disable=SC2046
section dpo-0.5b-qlora 45 120 --only dpo --modes qlora --dpo-variants defaults,precompute \
  $(big --shape 0.5b --steps 10 --warmup 3)
# shellcheck disable=SC2046
section rollout-0.5b 90 240 --only ppo --modes full --ppo-parts rollout \
  $(big --shape 0.5b --ppo-batch 128 --new-tokens 256)

# 3. the tables
log "done"
"$PY" scripts/benchlib/report.py "$OUT"/*.json 2>&1 | tee "$OUT/tables.md"
