"""What every training run does before and around its algorithm.

1. check flag combinations that need no model (reward model needed? --lora with --qlora?)
   and what this machine lacks for them (a GPU for --qlora, the deepspeed package)
2. validate the dataset (and eval dataset) before any model loads
3. run the algorithm's own checks (``AlgoSpec.check``: PPO's unsupported flags, GRPO's reward
   sources, KTO's batch size, ...)
4. print the resolved config and the plan (what would be loaded, precision, batch, launch)
5. stop here on --dry-run, with machine issues printed as warnings; in a real run a machine
   issue stops the run
6. load-time checks that need no model: the tokenizer is there and not empty, a chat template
   for chat data, the reward model has its score head
7. open the output dir (align.output_dir: lock, resume with its config check, refuse to
   clobber), save the resolved config (a new run only), seed everything, and call the
   algorithm's runner; a run that fails before training leaves no directory behind. While it
   trains, its status and console are kept in the directory (align.run_status)

Configuration errors (AlignError) stop a dry run and a real run alike; see align/plan.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import click

from align import checkpoints, output_dir, run_status
from align.config import RunConfig, parse_list
from align.data import Validated, load_valid, skip_report, write_skipped
from align.data.store import content_digest, select
from align.errors import AlignError
from align.models import check_model_path
from align.options import format_config
from align.output_dir import CONFIG_FILE, FINAL_FILE
from align.plan import (PlanReport, Threads, choose_threads, cuda_available, deepspeed_config,
                        has_package, optimizer_issue, short_run_warnings, world_rank,
                        world_size)
from align.registry import AlgoSpec


def check_plan(cfg: RunConfig, spec: AlgoSpec) -> PlanReport:
    """Check the flags before any data or model is read.

    Configuration errors (wrong on every machine) raise AlignError. What this machine lacks for
    the run (a CUDA GPU, bitsandbytes, deepspeed) goes into the returned report's ``machine``
    list: :func:`execute` stops a real run on it and prints it as a warning in a dry run.
    """
    if not cfg.model.model:
        raise AlignError(f"--model is required for --algo {spec.name}")
    if not cfg.data.dataset:
        raise AlignError(f"--dataset is required for --algo {spec.name} "
                         f"({spec.data_format} format; see `align data validate --help`)")
    if spec.reward_model == "required" and not cfg.model.reward_model:
        raise AlignError(f"--algo {spec.name} needs --reward-model (train one with "
                         "`align rlhf --algo rm`)")
    if spec.reward_model == "no" and cfg.model.reward_model:
        raise AlignError(f"--reward-model is not used by --algo {spec.name}")
    if not spec.needs_ref and cfg.model.ref_model:
        raise AlignError(f"--ref-model is not used by --algo {spec.name} (it is reference-free)")
    for flag, path in (("--model", cfg.model.model), ("--ref-model", cfg.model.ref_model),
                       ("--reward-model", cfg.model.reward_model)):
        check_model_path(flag, path)
    t = cfg.train
    if t.eval_strategy in ("steps", "epoch") and not (
            cfg.data.eval_dataset or cfg.data.eval_dataset_split or cfg.data.eval_split):
        raise AlignError(f"--eval-strategy {t.eval_strategy} needs held-out data: "
                         "--eval-dataset PATH, --eval-split 0.05, or --eval-dataset-split "
                         "SPLIT of --dataset")
    if cfg.lora.lora and cfg.lora.qlora:
        raise AlignError("--lora and --qlora exclude each other (--qlora already trains LoRA "
                         "adapters, on a 4-bit base)")
    if cfg.train.deepspeed:
        deepspeed_config(cfg.train.deepspeed)
    report = PlanReport()
    for issue in machine_issues(cfg):
        report.machine_issue(issue)
    return report


def machine_issues(cfg: RunConfig) -> list[str]:
    """What this machine lacks for the flags in ``cfg`` (empty when it has everything)."""
    issues = []
    t, attn = cfg.train, cfg.model.attn_implementation or ""
    needs_gpu = [flag for flag, on in (("--qlora", cfg.lora.qlora), ("--fp16", t.fp16),
                                       ("--use-liger-kernel", t.use_liger_kernel),
                                       ("--attn-implementation", attn.startswith("flash")))
                 if on]
    if needs_gpu and not cuda_available():
        if cfg.lora.qlora:
            issues.append("--qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); on this "
                          "machine use --lora instead")
        if t.fp16:
            issues.append("--fp16 needs a CUDA GPU; drop it to train in float32 on CPU "
                          "(--bf16 works on CPU, slowly)")
        if t.use_liger_kernel:
            issues.append("--use-liger-kernel needs a CUDA GPU (Liger's kernels are Triton "
                          "kernels); drop it on this machine")
        if attn.startswith("flash"):
            issues.append(f"--attn-implementation {attn} needs a CUDA GPU; use sdpa here")
    if cfg.lora.qlora and not has_package("bitsandbytes"):
        issues.append("--qlora needs bitsandbytes: pip install 'align[qlora]'")
    if t.use_liger_kernel and not has_package("liger_kernel"):
        issues.append("--use-liger-kernel needs liger-kernel: pip install liger-kernel")
    if attn == "flash_attention_2" and not has_package("flash_attn"):
        issues.append("--attn-implementation flash_attention_2 needs flash-attn: "
                      "pip install flash-attn --no-build-isolation")
    if t.optim and (issue := optimizer_issue(t.optim, cuda_available)):
        issues.append(issue)
    if "wandb" in parse_list(t.report_to) and not has_package("wandb"):
        issues.append("--report-to wandb needs the wandb package: pip install wandb")
    if t.push_to_hub and (issue := hub_issue()):
        issues.append(issue)
    if t.deepspeed and not has_package("deepspeed"):
        issues.append("--deepspeed needs the deepspeed package: pip install 'align[deepspeed]'")
    return issues


def hub_issue() -> str | None:
    """What keeps --push-to-hub from uploading on this machine (offline, not logged in)."""
    import os

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return "--push-to-hub: HF_HUB_OFFLINE=1 is set, so nothing can be uploaded"
    from huggingface_hub import get_token

    if not get_token():
        return ("--push-to-hub needs a Hugging Face login: `huggingface-cli login`, or set "
                "HF_TOKEN")
    return None


def load_data(cfg: RunConfig, spec: AlgoSpec) -> tuple[Validated, Validated | None]:
    """Validate train (and eval) data; split off --eval-split of train when asked."""
    d = cfg.data
    options = {"config": d.dataset_config, "skip_invalid": d.skip_invalid,
               "max_invalid_frac": d.max_invalid_frac}
    train = load_valid(d.dataset, spec.data_format, d.columns, split=d.dataset_split,
                       **options)
    evaluation = None
    if d.eval_dataset or d.eval_dataset_split:
        # --eval-dataset-split alone: that split of --dataset (TRL's --dataset_test_split)
        evaluation = load_valid(d.eval_dataset or d.dataset, spec.data_format, d.columns,
                                split=d.eval_dataset_split, flag="--eval-dataset", **options)
    elif d.eval_split > 0:
        order = list(range(len(train.rows)))
        random.Random(cfg.train.seed).shuffle(order)
        n_eval = max(1, int(round(len(order) * d.eval_split)))
        if n_eval >= len(order):
            raise AlignError(f"--eval-split {d.eval_split} leaves no training records "
                             f"out of {len(order)}")
        evaluation = dataclasses.replace(train, rows=select(train.rows, order[:n_eval]))
        train = dataclasses.replace(train, rows=select(train.rows, order[n_eval:]))
    return train, evaluation


def describe_plan(cfg: RunConfig, spec: AlgoSpec, report: PlanReport | None = None) -> list[str]:
    """Which models would be loaded, how, and with which precision, batch and launch; the
    algorithm's check hook may have described roles (``report.roles``) and added lines."""
    report = report or PlanReport()
    lo = cfg.lora
    adapters = (f"LoRA r={lo.lora_r}, alpha {lo.lora_alpha}, dropout {lo.lora_dropout:g}, "
                f"on {lo.lora_target_modules}")
    mode = (f"QLoRA: 4-bit NF4 base + {adapters}" if lo.qlora else
            adapters if lo.lora else "full fine-tuning")
    roles = {"reward model to train" if spec.name == "rm" else "policy":
             f"{cfg.model.model} ({mode})"}
    if spec.needs_ref and getattr(cfg.algo, "beta", 1.0) != 0.0:
        roles["reference"] = (
            f"{cfg.model.ref_model} (frozen)" if cfg.model.ref_model else
            "the policy's base with adapters disabled (no extra copy)" if lo.enabled else
            f"{cfg.model.model} (frozen copy)")
    if cfg.model.reward_model:
        roles["reward model"] = f"{cfg.model.reward_model} (frozen)"
    roles.update(report.roles)
    lines = [f"{name}: {text}" for name, text in roles.items()] + report.lines
    lines.append(f"precision: {_precision(cfg)}")
    for name in spec.default_lrs:
        value = getattr(cfg.train if name == "learning_rate" else cfg.algo, name)
        given = f"default for {'LoRA/QLoRA' if lo.enabled else 'full fine-tuning'}: " \
            f"{spec.lr_source}" if name in cfg.lr_defaults else "given"
        lines.append(f"{name.replace('_', ' ')}: {value:g} ({given})")
    if not spec.online:
        t = cfg.train
        world = world_size()
        lines.append(f"batch: {t.per_device_train_batch_size} per device x "
                     f"{t.gradient_accumulation_steps} accumulation x {world} process"
                     f"{'es' if world > 1 else ''} = "
                     f"{t.per_device_train_batch_size * t.gradient_accumulation_steps * world} "
                     f"{'pairs' if spec.data_format == 'pairwise' else 'examples'} per "
                     "optimizer step")
    lines.append(_launch(cfg))
    return lines


def _precision(cfg: RunConfig) -> str:
    t, m = cfg.train, cfg.model
    if cfg.lora.qlora:
        return "base weights in 4-bit NF4, the rest in bfloat16, bf16 compute"
    mixed = "bf16" if t.bf16 else "fp16" if t.fp16 else None
    weights = m.dtype if m.dtype != "auto" else \
        {"bf16": "bfloat16", "fp16": "float16"}.get(mixed or "", "float32")
    if mixed:
        return f"{mixed} mixed precision, weights loaded as {weights}"
    return f"weights loaded as {weights}, no mixed precision (--bf16 halves weight memory)"


def _launch(cfg: RunConfig) -> str:
    world = world_size()
    if not cfg.train.deepspeed:
        return (f"launch: {world} processes (data parallel)" if world > 1 else
                "launch: one process (add accelerate launch for several GPUs)")
    ds = deepspeed_config(cfg.train.deepspeed)
    zero = ds.get("zero_optimization", {})
    offload = [f"{what} offload to {zero[key].get('device')}" for what, key in
               (("optimizer", "offload_optimizer"), ("parameter", "offload_param"))
               if isinstance(zero.get(key), dict) and zero[key].get("device") not in (None, "none")]
    extra = "".join(", " + o for o in offload)
    return (f"launch: DeepSpeed ZeRO stage {zero.get('stage', 0)}{extra} from "
            f"{cfg.train.deepspeed}; {world} process{'es' if world > 1 else ''} now"
            f"{'' if world > 1 else ' (start it with accelerate launch for several GPUs)'}")


def save_config(cfg: RunConfig, out: Path) -> None:
    """Write the resolved config of a new run; `--config DIR/align_config.yaml --output-dir
    NEW` repeats it. A resume never rewrites it (it records itself in resumes.jsonl)."""
    import yaml

    with checkpoints.writing(out, CONFIG_FILE):
        (out / CONFIG_FILE).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False),
                                       encoding="utf-8")


def input_paths(cfg: RunConfig) -> dict[str, str]:
    """The files and directories a run reads, by flag (the output dir must not clobber them)."""
    from align.config import PATH_METAVARS

    found = {}
    for group in cfg.groups().values():
        for f in dataclasses.fields(group):
            value, metavar = getattr(group, f.name), f.metadata.get("metavar")
            if metavar in PATH_METAVARS and value and f.name != "output_dir":
                path = str(value).rpartition(":")[0] if metavar == "FILE:FN" else str(value)
                found["--" + f.name.replace("_", "-")] = path
    return found


def preflight(cfg: RunConfig, spec: AlgoSpec, train: Validated) -> None:
    """Load-time checks that need no model (step 6 of the module docstring)."""
    from align.models import check_chat_template, check_score_head, load_tokenizer

    tokenizer = load_tokenizer(cfg.model.model, cfg.model)
    check_chat_template(tokenizer, train, cfg.model.model)
    if cfg.model.reward_model and not cfg.model.allow_new_score_head:
        check_score_head(cfg.model.reward_model, cfg.model)


def resolve_threads(cfg: RunConfig) -> Threads:
    """Fill in --threads (``cfg.train.threads``) by align.plan's rule: given, else
    OMP_NUM_THREADS, else every idle core; returns the choice and why."""
    chosen = choose_threads(cfg.train.threads)
    cfg.train.threads = chosen.count
    return chosen


def use_threads(n: int | None) -> None:
    """Run torch's CPU math on ``n`` threads (None: leave torch's choice)."""
    if n:
        import torch

        torch.set_num_threads(n)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def execute(cfg: RunConfig, spec: AlgoSpec, dry_run: bool = False) -> dict[str, Any] | None:
    """Run ``spec`` with ``cfg`` (see the module docstring for the steps). A real run copies
    what it prints into its output directory and keeps a status there (align.run_status)."""
    tee = run_status.ConsoleTee()
    if not dry_run and world_rank() == 0:
        tee.start()  # held in memory until the output directory is open
    try:
        return _execute(cfg, spec, dry_run, tee)
    finally:
        tee.stop()


def _execute(cfg: RunConfig, spec: AlgoSpec, dry_run: bool, tee: run_status.ConsoleTee
             ) -> dict[str, Any] | None:
    report = check_plan(cfg, spec)
    if not dry_run:
        report.raise_machine_issues()
    train, evaluation = load_data(cfg, spec)
    if spec.check is not None:
        spec.check(cfg, train, report)
    report.notes += short_run_warnings(cfg, spec, len(train.rows))
    if not dry_run:
        report.raise_machine_issues()
    report.plan(f"threads: {resolve_threads(cfg).describe()}")
    click.echo(format_config(cfg))
    click.echo(f"data: {train.summary()}")
    if evaluation is not None:
        click.echo(f"eval data: {len(evaluation.rows)} records")
    for data in (train, evaluation) if evaluation is not None else (train,):
        for line in data.notes + skip_report(data):
            click.echo(line if line.startswith(("warning", "--skip")) else f"note: {line}",
                       err=True)
    for line in describe_plan(cfg, spec, report):
        click.echo(line)
    for note in report.notes:
        click.echo(note, err=True)
    if dry_run:
        for warning in report.warnings():
            click.echo(warning, err=True)
        tail = (f"; {len(report.machine)} warning(s) above: a real run on this machine "
                "would stop" if report.machine else "")
        click.echo(f"dry run OK: flags, config and data are valid; no model was loaded{tail}")
        return None
    preflight(cfg, spec, train)
    cfg.data_hash = content_digest(train.rows)
    out_dir = output_dir.open_output_dir(cfg, input_paths(cfg))
    out = out_dir.path
    cfg.resume_from = out_dir.resume_from  # chosen once, there; the algorithm starts from it
    writer = world_rank() == 0  # in a multi-process launch, rank 0 writes the run's files
    try:
        if writer and out_dir.resume_from is None:
            save_config(cfg, out)
        elif writer:
            output_dir.note_resume(out, out_dir.resume_from, out_dir.changes)
            click.echo(f"resuming from {out_dir.resume_from.path}")
        if writer:
            click.echo(f"output: {out}")
            for data, append in ((train, False), (evaluation, True)):
                if data is not None and (path := write_skipped(data, out, append)):
                    click.echo(f"--skip-invalid: the dropped records are in {path}", err=True)
        with (run_status.recording(tee, out, spec.name, out_dir.resume_from is not None)
              if writer else contextlib.nullcontext()):
            seed_everything(cfg.train.seed)
            use_threads(cfg.train.threads)
            result = spec.run(cfg, train, evaluation)
            if result and writer:
                with checkpoints.writing(out, FINAL_FILE):
                    (out / FINAL_FILE).write_text(
                        json.dumps(result, indent=2, default=float), encoding="utf-8")
            with checkpoints.writing(out, "the model card"):
                finish_output(cfg, spec, train.summary(), result or {})
    except BaseException:
        out_dir.discard_if_unstarted()
        raise
    finally:
        out_dir.release()
    return result


def finish_output(cfg: RunConfig, spec: AlgoSpec, data_summary: str,
                  result: dict[str, Any]) -> None:
    """The model card in the output directory, and the upload with --push-to-hub."""
    from align import hub

    hub.write_card(cfg, spec, data_summary, result)
    if cfg.train.push_to_hub:
        click.echo(f"pushing {cfg.train.output_dir} to the Hub as {hub.repo_id(cfg)} ...")
        click.echo(f"pushed: {hub.push(cfg)}")
