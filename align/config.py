"""Shared configuration dataclasses: the single source of CLI flags, help text, defaults and docs.

Each field is declared with :func:`arg`, which stores the help line, where the default comes
from (``source``) and, for string options, the allowed ``choices``. The CLI (``align.options``),
``align algos NAME`` and the generated docs all read this metadata, so a default is written once.

Groups are composed, not inherited: a run is ``RunConfig(model, lora, data, train, algo)``.
This module imports nothing heavy (no torch), so ``align --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# metavars of the fields that name files or directories (``~`` is expanded in them)
PATH_METAVARS = ("PATH", "PATH|ID", "DIR", "JSON", "FILE:FN")


def arg(
    default: Any,
    help: str,
    *,
    source: str = "",
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    presets: dict[str, Any] | None = None,
    bounds: str | None = None,
) -> Any:
    """Declare a config field with its CLI help, the source of its default, allowed choices and,
    for a number, its allowed values (:func:`parse_bounds`): ``"[0, 1)"``, ``"(0, inf)"``,
    ``"0 or (1, inf)"``. The bounds are the one check of a number's range (:func:`check_number`,
    run by :func:`validate_fields`) and the docs print them next to the flag.

    ``presets`` maps preset names to the value the field takes under each (PPO's --preset),
    for fields whose ``default`` is None until a preset fills it in."""
    if bounds is not None:
        parse_bounds(bounds)  # a typo in a declaration fails at import, not in a user's run
    meta = {"help": help, "source": source, "choices": choices, "metavar": metavar,
            "bounds": bounds, "presets": presets}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


Interval = tuple[float, bool, float, bool]  # low, low included, high, high included


def parse_bounds(text: str) -> list[Interval]:
    """The allowed values of a number as intervals: ``"[0, 1)"`` -> [(0.0, True, 1.0, False)].

    Several parts join with ``or``; a part is an interval or a single number:
    ``"0 or (1, inf)"`` -> [(0.0, True, 0.0, True), (1.0, False, inf, False)]."""
    parts = []
    for part in text.split(" or "):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            pass
        else:
            parts.append((value, True, value, True))
            continue
        if not part or part[0] not in "[(" or part[-1] not in "])" or part.count(",") != 1:
            raise ValueError(f"bounds {text!r}: write an interval such as [0, 1) or (0, inf), "
                             "or several joined by 'or' (0 or (1, inf))")
        low, high = (float(x) for x in part[1:-1].split(","))
        parts.append((low, part[0] == "[", high, part[-1] == "]"))
    return parts


def check_number(name: str, value: Any, bounds: str | None) -> None:
    """Raise ``ValueError`` naming the flag when a number is not finite or out of its bounds."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    flag = "--" + name.replace("_", "-")
    if not math.isfinite(value):
        raise ValueError(f"{flag} must be a finite number, got {value}")
    if bounds is None:
        return
    if not any((low < value or (value == low and low_in)) and
               (value < high or (value == high and high_in))
               for low, low_in, high, high_in in parse_bounds(bounds)):
        words = " or ".join(part.strip() if part.strip()[0] not in "[(" else f"in {part.strip()}"
                            for part in bounds.split(" or "))
        raise ValueError(f"{flag} must be {words}, got {value:g}")


def check_choice(name: str, value: Any, choices: tuple[str, ...] | None) -> None:
    """Raise ``ValueError`` naming the flag and the valid choices when ``value`` is not one of them."""
    if choices is not None and value is not None and value not in choices:
        raise ValueError(
            f"--{name.replace('_', '-')} {value!r} is not valid; choose from [{', '.join(choices)}]"
        )


def validate_fields(obj: Any) -> None:
    """The one check of every field's declared constraints: choices, finite numbers, bounds.

    Run from each config's ``__post_init__`` and again by :func:`align.options.resolve` on
    every group it builds, so no user value escapes it; cross-field rules stay in
    ``__post_init__``.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        check_choice(f.name, value, f.metadata.get("choices"))
        check_number(f.name, value, f.metadata.get("bounds"))



def parse_list(value: Any) -> list[str]:
    """Turn ``"a,b, c"`` (a CLI value) or a YAML list into ``["a", "b", "c"]``."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


REPORT_TO = ("tensorboard", "wandb", "all", "none")
EVAL_STRATEGIES = ("auto", "no", "steps", "epoch")
# transformers' OptimizerNames (a test checks that they match the installed transformers).
OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor",
    "adamw_anyprecision", "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad",
    "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit",
    "paged_adamw_32bit", "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit",
    "paged_lion_32bit", "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit",
    "rmsprop_bnb_32bit", "galore_adamw", "galore_adamw_8bit", "galore_adafactor",
    "galore_adamw_layerwise", "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise",
    "lomo", "adalomo", "grokadamw", "schedule_free_radam", "schedule_free_adamw",
    "schedule_free_sgd", "apollo_adamw", "apollo_adamw_layerwise", "stable_adamw",
)


@dataclass
class ModelArgs:
    model: str | None = arg(
        None,
        "Policy model to train: a local directory, a hub id, or a .gguf file (dequantized on load).",
        metavar="PATH",
    )
    ref_model: str | None = arg(
        None,
        "Frozen reference model for the KL/implicit-reward term. Defaults to --model "
        "(with LoRA: the base model with adapters disabled, no second copy).",
        metavar="PATH",
    )
    reward_model: str | None = arg(
        None, "Reward model directory (a sequence classifier, e.g. from `align rlhf --algo rm`).",
        metavar="PATH",
    )
    dtype: str = arg(
        "auto",
        "Weights dtype on load: auto picks bfloat16/float16 when --bf16/--fp16 is set, else float32.",
        choices=("auto", "float32", "bfloat16", "float16"),
    )
    attn_implementation: str | None = arg(
        None, "Attention kernel passed to from_pretrained (eager, sdpa, flash_attention_2).",
    )
    trust_remote_code: bool = arg(
        False, "Allow model repos to run their own Python code. Off unless you pass it (safety)."
    )
    chat_template: str | None = arg(
        None, "Chat template to render conversations with, instead of the tokenizer's own: a "
        "template align ships (chatml-tools: ChatML with Hermes <tool_call> tool calls, as "
        "Qwen2.5) or a .jinja file. Saved with the trained model.",
        source="the tokenizer's own template", metavar="NAME|FILE")
    allow_new_score_head: bool = arg(
        False, "Accept a --reward-model whose saved weights lack the score head (it would be "
        "initialised at random, so its rewards mean nothing). Off: such a model is refused.")

    def __post_init__(self) -> None:
        validate_fields(self)


# LoRA/QLoRA adapters train at this multiple of the full fine-tuning learning rate (every
# algorithm's default, PPO's size bands included): the ratio of ms-swift's defaults (1e-4 for
# LoRA, 1e-5 for full fine-tuning).
LORA_LR_FACTOR = 10.0


@dataclass
class LoraArgs:
    lora: bool = arg(False, "Train LoRA adapters instead of all weights.")
    qlora: bool = arg(
        False, "LoRA on a 4-bit NF4 base (bitsandbytes, bf16 compute). Needs a CUDA GPU.",
        source="QLoRA, Dettmers et al. 2023",
    )
    lora_r: int = arg(8, "LoRA rank.", source="ms-swift default", bounds="[1, inf)")
    lora_alpha: int = arg(32, "LoRA scaling alpha.", source="ms-swift default", bounds="(0, inf)")
    lora_dropout: float = arg(0.05, "Dropout on the LoRA branch.", source="ms-swift default",
                              bounds="[0, 1)")
    lora_target_modules: str = arg(
        "all-linear",
        "Modules that get adapters: all-linear, or a comma list such as q_proj,v_proj.",
        source="ms-swift default (all linear layers)",
    )

    def __post_init__(self) -> None:
        validate_fields(self)

    @property
    def enabled(self) -> bool:
        return self.lora or self.qlora


@dataclass
class DataArgs:
    dataset: str | None = arg(
        None,
        "Training data: a .jsonl, .json, .csv, .parquet file (also .gz, .bz2, .xz, .zst, "
        ".zip), a folder of such files or shards, a datasets.save_to_disk directory, or a "
        "Hugging Face Hub dataset id (org/name).",
        metavar="PATH|ID",
    )
    dataset_split: str | None = arg(
        None,
        "Split of a Hub dataset, dataset folder or saved DatasetDict, e.g. train_prefs "
        "(default: train, or the only split).",
        metavar="SPLIT",
    )
    dataset_config: str | None = arg(
        None, "Config (subset) of a Hub dataset or dataset folder, e.g. main for openai/gsm8k.",
        metavar="NAME",
    )
    columns: str | None = arg(
        None,
        "Map your column names to ours, e.g. prompt=question,chosen=good,rejected=bad.",
        metavar="MAP",
    )
    eval_dataset: str | None = arg(
        None, "Held-out data in the same format (a path or Hub id, like --dataset).",
        metavar="PATH|ID")
    eval_dataset_split: str | None = arg(
        None, "Split of --eval-dataset, e.g. test_prefs (default: train, or the only split).",
        metavar="SPLIT",
    )
    eval_split: float = arg(
        0.0, "Fraction of --dataset held out for evaluation when no --eval-dataset is given.",
        bounds="[0, 1)",
    )
    skip_invalid: bool = arg(
        False, "Train on the valid records: drop invalid ones, say how many and why, and write "
        "them to OUTPUT_DIR/skipped.jsonl (default: any invalid record stops the run).",
        source="align default (strict)",
    )
    max_invalid_frac: float = arg(
        0.05, "With --skip-invalid: refuse the data when more than this fraction of its "
        "records is invalid.", source="align default", bounds="[0, 1]",
    )
    max_length: int | None = arg(
        1024, "Longest prompt+response in tokens (longer ones are truncated).",
        source="TRL default", bounds="[1, inf)",
    )
    max_prompt_length: int | None = arg(
        512, "Longest prompt in tokens (truncated from the left).", source="ms-swift default",
        bounds="[1, inf)",
    )

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass
class TrainArgs:
    output_dir: str | None = arg(
        None, "Where checkpoints, metrics.jsonl and the final model go "
        "(default: runs/<algo>-<date>-<time>).", metavar="DIR",
    )
    learning_rate: float | None = arg(
        None, "Peak learning rate (default: the algorithm's own, see its docs page).",
        bounds="(0, inf)",
    )
    per_device_train_batch_size: int = arg(
        4, "Examples per device per step (pairs for pairwise data).", source="align default",
        bounds="[1, inf)",
    )
    gradient_accumulation_steps: int = arg(
        1, "Micro-batches accumulated before each optimizer step.", bounds="[1, inf)"
    )
    max_steps: int = arg(-1, "Stop after this many optimizer steps (-1: use --num-train-epochs).",
                         bounds="-1 or [1, inf)")
    num_train_epochs: float = arg(1.0, "Passes over the dataset.", source="ms-swift default",
                                  bounds="(0, inf)")
    logging_steps: int = arg(1, "Log metrics every N steps.", bounds="[1, inf)")
    save_steps: int = arg(500, "Save a checkpoint every N steps.", source="TRL default",
                          bounds="[1, inf)")
    save_total_limit: int | None = arg(
        2, "Keep at most N checkpoints (oldest deleted first; the newest healthy one is always "
        "kept).", bounds="[1, inf)")
    seed: int = arg(42, "Random seed for data order, sampling and initialisation.",
                    bounds="[0, 4294967295]")
    lr_scheduler_type: str = arg(
        "cosine", "Learning-rate schedule.", source="ms-swift default",
        choices=("linear", "cosine", "constant", "constant_with_warmup"),
    )
    warmup_ratio: float = arg(0.05, "Fraction of steps spent warming up the learning rate.",
                              source="ms-swift default", bounds="[0, 1)")
    weight_decay: float = arg(0.0, "AdamW weight decay.", bounds="[0, inf)")
    max_grad_norm: float = arg(1.0, "Global gradient-norm clip (0: no clipping).",
                               source="Secrets of RLHF (PPO-max)", bounds="[0, inf)")
    bf16: bool = arg(False, "Train in bfloat16 mixed precision (GPU).")
    fp16: bool = arg(False, "Train in float16 mixed precision (GPU).")
    gradient_checkpointing: bool = arg(
        False, "Recompute activations in the backward pass: far less activation memory for "
        "about a third more compute.", source="align default (TRL's trainers default to on)")
    use_liger_kernel: bool = arg(
        False, "Patch the model's layers (RMSNorm, RoPE, SwiGLU) with Liger's fused Triton "
        "kernels; TRL-backed algorithms only (not PPO). Needs a CUDA GPU and liger-kernel.",
        source="TRL default (off)")
    deepspeed: str | None = arg(
        None, "DeepSpeed JSON config (ZeRO-2/3); launch with `accelerate launch`.", metavar="JSON"
    )
    resume: bool = arg(
        False, "Continue from the latest complete checkpoint in --output-dir; the flags that "
        "define the run must match the checkpoint's (see --resume-allow-change).")
    resume_allow_change: str | None = arg(
        None, "With --resume: flags that may differ from the checkpoint's config, "
        "comma-separated (e.g. max-steps,learning-rate); any other change is refused.",
        metavar="LIST")
    overwrite_output_dir: bool = arg(
        False, "Replace the earlier run in --output-dir (its checkpoints, metrics and model are "
        "deleted first). Without it, a directory holding a run is refused.",
        source="TrainingArguments' name")
    report_to: str = arg(
        "tensorboard", "Loggers besides metrics.jsonl, comma-separated: tensorboard, wandb "
        "(Weights & Biases; WANDB_PROJECT names the project, default align), all (each of "
        "these that is installed), none.", source="align default (TRL's: all)", metavar="LIST",
    )
    run_name: str | None = arg(
        None, "The run's name in Weights & Biases (default: the output directory's name).",
        source="TrainingArguments", metavar="NAME")
    warmup_steps: int | None = arg(
        None, "Warm-up steps from 0 to the peak learning rate; overrides --warmup-ratio.",
        source="TrainingArguments", bounds="[0, inf)")
    eval_strategy: str = arg(
        "auto", "When to evaluate on the held-out data (--eval-dataset, --eval-split): steps "
        "(every --eval-steps), epoch, or no; auto is steps when there is held-out data.",
        source="TrainingArguments (default no)", choices=EVAL_STRATEGIES)
    eval_steps: int | None = arg(
        None, "Evaluate every N steps (default: --save-steps).", source="TrainingArguments",
        bounds="[1, inf)")
    optim: str | None = arg(
        None, "Optimizer, by transformers' name: adamw_torch, adamw_torch_fused, adafactor, "
        "sgd, adamw_8bit and paged_adamw_8bit (bitsandbytes), ... (default: transformers' own, "
        "adamw_torch_fused; PPO's engine: AdamW).", source="TrainingArguments",
        choices=OPTIMIZERS, metavar="NAME")
    push_to_hub: bool = arg(
        False, "At the end, upload the output directory (model, tokenizer, model card, metrics; "
        "not the checkpoints) to the Hugging Face Hub as --hub-model-id.",
        source="TrainingArguments")
    hub_model_id: str | None = arg(
        None, "Hub repository for --push-to-hub, e.g. you/my-dpo (default: the output "
        "directory's name under your account).", source="TrainingArguments", metavar="ID")
    hub_private_repo: bool = arg(
        True, "Create the --push-to-hub repository as private (--no-hub-private-repo: public).",
        source="align default (TrainingArguments: the account's default)")

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.bf16 and self.fp16:
            raise ValueError("--bf16 and --fp16 exclude each other; choose one")
        self.loggers()  # checks --report-to
        if self.hub_model_id and not self.push_to_hub:
            raise ValueError("--hub-model-id names the repository of --push-to-hub; add "
                             "--push-to-hub")
        if self.resume and self.overwrite_output_dir:
            raise ValueError("--resume continues the run in --output-dir and "
                             "--overwrite-output-dir deletes it; choose one")
        if self.resume_allow_change and not self.resume:
            raise ValueError("--resume-allow-change applies only with --resume")

    def loggers(self) -> set[str]:
        """--report-to as a set of tensorboard/wandb ("all": both, where installed)."""
        names = set(parse_list(self.report_to))
        unknown = names - set(REPORT_TO)
        if unknown or not names:
            raise ValueError(f"--report-to {self.report_to!r}: choose from "
                             f"[{', '.join(REPORT_TO)}], comma-separated")
        if "none" in names and len(names) > 1:
            raise ValueError("--report-to none excludes the other loggers")
        if "all" in names:
            return {"tensorboard", "wandb"}
        return names - {"none"}


SHARED_GROUPS: dict[str, type] = {
    "model": ModelArgs,
    "lora": LoraArgs,
    "data": DataArgs,
    "train": TrainArgs,
}


@dataclass
class RunConfig:
    """Everything one `align rlhf` / `align sft` run needs, resolved from defaults, YAML and flags."""

    algo_name: str
    model: ModelArgs
    lora: LoraArgs
    data: DataArgs
    train: TrainArgs
    algo: Any  # the algorithm's own dataclass (DPOArgs, PPOConfig, ...)
    health: Any = None  # HealthArgs for algorithms with collapse detectors, else None
    agents: Any = None  # AgentArgs for algorithms that roll out with tools, else None
    # Set while resolving, not flags: the learning-rate fields filled from the registry's
    # defaults, the content hash of the validated data (align.data.store.content_digest) and,
    # with --resume, the checkpoint the run continues from (align.checkpoints.Checkpoint,
    # picked once by align.output_dir and handed to the algorithm by align.runner).
    lr_defaults: tuple[str, ...] = ()
    data_hash: str | None = None
    resume_from: Any = None

    def groups(self) -> dict[str, Any]:
        groups = {"model": self.model, "lora": self.lora, "data": self.data, "train": self.train}
        if self.health is not None:
            groups["health"] = self.health
        if self.agents is not None:
            groups["agents"] = self.agents
        groups[self.algo_name] = self.algo
        return groups

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{field: value}`` mapping; loads back with ``--config`` (YAML keys are fields)."""
        out: dict[str, Any] = {"algo": self.algo_name}
        for group in self.groups().values():
            out.update(dataclasses.asdict(group))
        return out


def field_doc(f: dataclasses.Field) -> dict[str, Any]:
    """The documentation record of one field: flag, default, help, source, choices."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return {
        "name": f.name,
        "flag": "--" + f.name.replace("_", "-"),
        "default": default,
        "help": f.metadata.get("help", ""),
        "source": f.metadata.get("source", ""),
        "choices": f.metadata.get("choices"),
        "bounds": f.metadata.get("bounds"),
        "presets": f.metadata.get("presets"),
    }
