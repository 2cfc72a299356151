"""What a run would do, worked out before any model loads, and what could stop it.

Three kinds of finding come out of the checks that run before training (``runner.check_plan``
and each algorithm's ``AlgoSpec.check`` hook):

- a *configuration error* (a flag combination that is wrong on every machine) is raised at once
  as an :class:`~align.errors.AlignError`: exit 2 in a dry run and in a real run alike;
- a *machine issue* (no CUDA GPU for ``--qlora``, a package such as bitsandbytes, deepspeed or
  vllm not installed) goes into :attr:`PlanReport.machine`: a real run stops on it, a dry run
  prints it as a warning and still succeeds, so that a GPU recipe can be validated on a laptop
  or in CI;
- *plan lines* say what would be loaded and how; *notes* are advice that never stops a run.

It also holds the torch-free facts about the launch that every layer may read: the processes
(:func:`world_size`, :func:`world_rank`) and the ``--deepspeed`` JSON (:func:`deepspeed_config`).
This module imports nothing heavy; :func:`cuda_available` imports torch only when called.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align.errors import AlignError


@dataclass
class PlanReport:
    """Findings of the pre-training checks (see the module docstring)."""

    roles: dict[str, str] = field(default_factory=dict)  # role -> model and how it is held
    lines: list[str] = field(default_factory=list)  # what would be loaded, and how
    notes: list[str] = field(default_factory=list)  # advice; printed, never fatal
    machine: list[str] = field(default_factory=list)  # fatal in a real run, warnings in a dry run

    def role(self, name: str, text: str) -> None:
        """Say which model plays ``name`` (policy, reference, reward model, critic), replacing
        the runner's generic description of that role."""
        self.roles[name] = text

    def plan(self, line: str) -> None:
        """Add a line to the printed plan."""
        self.lines.append(line)

    def note(self, text: str) -> None:
        """Add advice that is printed but never stops the run."""
        self.notes.append(text)

    def machine_issue(self, text: str) -> None:
        """Record something this machine lacks (a GPU, a package) for the run as configured."""
        self.machine.append(text)

    def warnings(self) -> list[str]:
        """The machine issues as the warnings a dry run prints."""
        return [f"warning: on this machine: {m}; a real run here would stop" for m in self.machine]

    def raise_machine_issues(self) -> None:
        """Stop a real run on the first machine issue (the others are listed after it)."""
        if self.machine:
            extra = "".join(f"\n  also: {m}" for m in self.machine[1:])
            raise AlignError(self.machine[0] + extra)


def has_package(name: str) -> bool:
    """Whether ``name`` can be imported here (without importing it)."""
    return importlib.util.find_spec(name) is not None


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (imports torch)."""
    import torch

    return torch.cuda.is_available()


def world_rank() -> int:
    """This process's global rank in a multi-process launch (0 otherwise)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes in this launch (set by accelerate launch / torchrun; 1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def deepspeed_config(path: str) -> dict[str, Any]:
    """Read a DeepSpeed JSON config; a missing, unreadable or malformed file is an AlignError."""
    p = Path(path)
    if not p.is_file():
        raise AlignError(f"--deepspeed {path}: no such file")
    try:
        config = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AlignError(f"--deepspeed {path}: not a valid JSON file ({e})") from e
    if not isinstance(config, dict):
        raise AlignError(f"--deepspeed {path}: expected a JSON object, found "
                         f"{type(config).__name__}")
    stage = config.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise AlignError(f"--deepspeed {path}: zero_optimization.stage must be 0, 1, 2 or 3, "
                         f"found {stage!r}")
    return config


def optimizer_steps(cfg: Any, spec: Any, n_rows: int) -> tuple[int, int, str]:
    """(optimizer steps, warm-up steps, how the steps were counted) of a run on ``n_rows``
    training records, counted as the trainers count them (transformers' Trainer: whole
    micro-batches per process, then whole accumulation rounds; PPO: rollout batches times
    --ppo-epochs x --num-mini-batches). For GRPO/RLOO each prompt counts --num-generations
    completions."""
    import math

    t, a = cfg.train, cfg.algo
    world = world_size()
    if spec.name == "ppo":
        rollouts = t.max_steps if t.max_steps > 0 else \
            max(1, math.ceil(t.num_train_epochs * n_rows / a.rollout_batch_size))
        steps = rollouts * a.ppo_epochs * a.num_mini_batches
        how = (f"{rollouts} PPO step(s) of {a.rollout_batch_size} prompts x {a.ppo_epochs} "
               f"epochs x {a.num_mini_batches} mini-batch(es)")
    else:
        unit = "completions" if spec.online else \
            "pairs" if spec.data_format == "pairwise" else "examples"
        items = n_rows * (a.num_generations * a.num_iterations if spec.online else 1)
        batches = math.ceil(items / (t.per_device_train_batch_size * world))
        per_epoch = max(1, math.ceil(batches / t.gradient_accumulation_steps))
        steps = t.max_steps if t.max_steps > 0 else \
            max(1, math.ceil(t.num_train_epochs * per_epoch))
        how = (f"--max-steps {t.max_steps}" if t.max_steps > 0 else
               f"{items} {unit} / ({t.per_device_train_batch_size} per device x "
               f"{t.gradient_accumulation_steps} accumulation x {world} process"
               f"{'es' if world > 1 else ''}) x {t.num_train_epochs:g} epoch(s)")
    fixed = getattr(t, "warmup_steps", None)
    warmup = fixed if fixed is not None else math.ceil(t.warmup_ratio * steps)
    return steps, warmup, how


MIN_STEPS = 3  # fewer optimizer steps than this is a run too small to train


def short_run_warnings(cfg: Any, spec: Any, n_rows: int) -> list[str]:
    """Warnings, with the numbers, for a run too small to train: fewer optimizer steps than
    warm-up steps (the learning rate never leaves its climb from 0), or fewer than
    :data:`MIN_STEPS` at all."""
    steps, warmup, how = optimizer_steps(cfg, spec, n_rows)
    t = cfg.train
    if steps >= MIN_STEPS and steps > warmup:
        return []
    plural = "s" if steps != 1 else ""
    text = f"warning: this run takes only {steps} optimizer step{plural} ({how})"
    if warmup >= steps and warmup > 0:
        why = (f"--warmup-steps {warmup}" if getattr(t, "warmup_steps", None) is not None else
               f"--warmup-ratio {t.warmup_ratio:g} of {steps}, rounded up")
        text += (f" and {warmup} of warm-up ({why}): the learning rate is still climbing "
                 "from 0 when training ends, so the model barely changes (a LoRA adapter "
                 "stays all zeros)")
    else:
        text += f": fewer than {MIN_STEPS} steps train very little"
    text += (". Train longer (more data, --num-train-epochs, --max-steps, a smaller "
             "--per-device-train-batch-size)")
    if warmup > 0:
        flag = "--warmup-steps" if getattr(t, "warmup_steps", None) is not None else \
            "--warmup-ratio"
        text += f" or drop the warm-up ({flag} 0)"
    return [text]


# Optimizers (transformers' names) that need a package beyond torch:
# (name prefixes, module to import, what to pip install).
OPTIMIZER_PACKAGES = (
    (("adamw_bnb", "adamw_8bit", "ademamix_8bit", "lion", "paged_", "rmsprop_bnb"),
     "bitsandbytes", "bitsandbytes"),
    (("galore_",), "galore_torch", "galore-torch"),
    (("apollo_",), "apollo_torch", "apollo-torch"),
    (("lomo", "adalomo"), "lomo_optim", "lomo-optim"),
    (("grokadamw",), "grokadamw", "grokadamw"),
    (("schedule_free_",), "schedulefree", "schedulefree"),
    (("adamw_torch_4bit", "adamw_torch_8bit"), "torchao", "torchao"),
    (("stable_adamw",), "optimi", "torch-optimi"),
    (("adamw_anyprecision",), "torchdistx", "torchdistx"),
    (("adamw_torch_xla",), "torch_xla", "torch-xla"),
    (("adamw_torch_npu_fused",), "torch_npu", "torch-npu"),
)


def optimizer_issue(name: str, cuda: Any = cuda_available) -> str | None:
    """What this machine lacks for the optimizer ``name`` (transformers' name), or None."""
    for prefixes, module, pip_name in OPTIMIZER_PACKAGES:
        if not name.startswith(prefixes):
            continue
        if not has_package(module):
            return f"--optim {name} needs {pip_name}: pip install {pip_name}"
        if name.startswith("paged_") and not cuda():
            return (f"--optim {name}: paged optimizers page their state to CUDA memory and "
                    "need a CUDA GPU; use adamw_torch here")
        return None
    return None


# The x86 math libraries choose their code path from the CPU they find (AVX2 or AVX-512, Intel
# or AMD), and the paths round differently, so a seeded CPU run can give other numbers on
# another machine. Pinned to the AVX2 path, which x86-64 servers and laptops of the last decade
# all have, the same seed gives the same numbers on any of them (MKL's "conditional numerical
# reproducibility", oneDNN's ISA cap, PyTorch's kernel dispatch). MKL's path is taken in its
# strict mode (",STRICT", see THREAD_INVARIANT_MATH below), so that the numbers are also the same
# at any thread count: the quickstart's tiny model then trains on every idle core.
AVX2_MATH = {"MKL_CBWR": "AVX2,STRICT", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "ATEN_CPU_CAPABILITY": "avx2"}


def pin_cpu_math() -> dict[str, str]:
    """Pin the CPU math libraries to their AVX2 code path (:data:`AVX2_MATH`), leaving any of
    these variables the user set alone; returns what it set. Does nothing off x86-64, on a CPU
    without AVX2, or once torch is imported (the libraries read these variables when they load).
    """
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return {}
    if "avx2" not in flags:
        return {}
    return _set_before_torch(AVX2_MATH)


# MKL splits a matrix product's rows between its threads and computes the rows at the edge of
# each thread's share with other kernels, which round differently: the same product gives other
# bits at another thread count. On SmolLM2-135M the reward model's scores of the same responses
# differed at 1 and 2 threads, and a PPO run diverged from there (docs/real-model.md, "The same
# result on any machine load"). MKL's strict "conditional numerical reproducibility" mode
# gives the same bits at any thread count, on the code path it picks for this CPU (AUTO). The
# quickstart uses the same mode on the AVX2 path (AVX2_MATH), for numbers that are the same on
# every CPU of one kind as well.
THREAD_INVARIANT_MATH = {"MKL_CBWR": "AUTO,STRICT"}


def pin_thread_invariant_math() -> dict[str, str]:
    """Make MKL's matrix products give the same bits at any thread count
    (:data:`THREAD_INVARIANT_MATH`), unless the user set ``MKL_CBWR``; returns what it set.
    Does nothing once torch is imported (MKL reads the variable when it loads)."""
    return _set_before_torch(THREAD_INVARIANT_MATH)


def _set_before_torch(values: dict[str, str]) -> dict[str, str]:
    """Set the environment variables of ``values`` that the user did not set, if torch (and the
    math libraries it loads) is not imported yet; returns what it set."""
    import sys

    if "torch" in sys.modules:
        return {}
    pinned = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(pinned)
    return pinned


# --- CPU threads chosen from the load -------------------------------------------------------
# torch's default is one thread per core. On cores that other jobs keep busy, extra threads
# spin-wait for each other at every matrix product and a run slows many times over; on idle
# cores they are free speed. So align counts the idle cores when a command starts (the share
# of CPU time the whole machine left idle over a short window, /proc/stat) and takes that many
# threads, at least one. --threads and OMP_NUM_THREADS override it.
IDLE_WINDOW_S = 0.25  # how long the idle share is measured at start-up
IDLE_ROUNDING = 0.3  # 1.7 idle cores -> 2 threads, 1.6 -> 1: a thread too few costs less
#                      on a busy machine than one too many


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> tuple[float, float] | None:
    """(idle, total) jiffies of the whole machine from /proc/stat, or None off Linux."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [float(v) for v in fields[1:9]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return idle, sum(values)


def idle_cores(cores: int, window_s: float = IDLE_WINDOW_S) -> tuple[float, str]:
    """How many of ``cores`` are idle now, and how that was measured: the machine's idle
    share of CPU time over ``window_s`` seconds (/proc/stat), else the 1-minute load average
    (cores minus load)."""
    import time

    first = _cpu_times()
    if first is not None:
        time.sleep(window_s)
        second = _cpu_times()
        if second is not None and second[1] > first[1]:
            share = (second[0] - first[0]) / (second[1] - first[1])
            return cores * share, f"{share:.0%} of CPU time idle over {window_s:g} s"
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return float(cores), "load unknown"
    return max(0.0, cores - load), f"1-minute load {load:.2f}"


def threads_for(idle: float, cores: int, processes: int = 1) -> int:
    """The threads rule: every idle core, rounded with :data:`IDLE_ROUNDING` and shared among
    ``processes`` processes of one launch; at least 1, at most ``cores``."""
    per = (idle + IDLE_ROUNDING) / max(1, processes)
    return max(1, min(cores, int(per)))


@dataclass
class Threads:
    """The CPU threads a command runs torch with, and why (printed with the config)."""

    count: int
    source: str  # "--threads", "OMP_NUM_THREADS" or "load"
    detail: str = ""

    def describe(self) -> str:
        how = {"--threads": "given with --threads", "OMP_NUM_THREADS": "from OMP_NUM_THREADS"}
        why = how.get(self.source, f"chosen from the load: {self.detail}")
        return f"{self.count} CPU thread{'s' if self.count != 1 else ''} ({why})"


def choose_threads(given: int | None = None, env: Any = None, cores: int | None = None,
                   measure: Any = idle_cores) -> Threads:
    """The CPU threads for torch: ``given`` (--threads), else OMP_NUM_THREADS, else every idle
    core (:func:`threads_for`), measured by ``measure(cores) -> (idle cores, how)``."""
    env = os.environ if env is None else env
    if given:
        return Threads(int(given), "--threads")
    omp = str(env.get("OMP_NUM_THREADS", "")).strip()
    if omp.isdigit() and int(omp) >= 1:
        return Threads(int(omp), "OMP_NUM_THREADS")
    cores = cores or cpu_cores()
    idle, how = measure(cores)
    n = threads_for(idle, cores, world_size())
    share = f", shared by {world_size()} processes" if world_size() > 1 else ""
    return Threads(n, "load", f"{idle:.1f} of {cores} cores idle ({how}){share}")
