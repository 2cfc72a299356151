"""TRL's and transformers' flag names, so that a TRL command line runs as an align one.

``trl dpo --model_name_or_path M --dataset_name D --use_peft --lora_r 32 ...`` becomes
``align rlhf --algo dpo`` followed by the same flags. Every align flag is also accepted in its
underscore spelling (``--learning_rate`` for ``--learning-rate``), as TRL's parser accepts both;
the names that differ are the table below, one home for them: the CLI registers them as
hidden second names of the align flag (``--help`` shows align's names once), YAML recipes
accept them as keys, and docs/cli.md shows the table.

TRL's flags that align has no use for are either accepted and ignored, with a note saying why
(:data:`IGNORED`), or refused with a one-line reason (:data:`REFUSED`). TRL's parser also takes
a value after a boolean flag (``--bf16 True``) and several values after a list flag
(``--lora_target_modules q_proj v_proj``); :func:`normalize_argv` rewrites those into align's
forms. This module imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

from align.errors import AlignError

# align field -> the names TRL (ModelConfig, ScriptArguments, the trainers' configs) or
# transformers' TrainingArguments give it, where they differ from align's.
ALIASES: dict[str, tuple[str, ...]] = {
    "model": ("model_name_or_path",),
    "dataset": ("dataset_name",),
    "dataset_split": ("dataset_train_split",),
    "eval_dataset_split": ("dataset_test_split",),
    "lora": ("use_peft",),
    "qlora": ("load_in_4bit",),
    "dtype": ("torch_dtype",),
    "reward_model": ("reward_model_path",),
    "eval_strategy": ("evaluation_strategy",),
    "ppo_epochs": ("num_ppo_epochs",),
    "max_new_tokens": ("response_length",),
}

# TRL flags accepted and ignored (with a note), with why align does not need them.
IGNORED: dict[str, str] = {
    "remove_unused_columns": "align hands TRL only the columns each algorithm uses",
    "dataset_streaming": "align reads and validates every record before training, so a dataset "
                         "is read whole, not streamed",
    "ignore_bias_buffers": "a DDP workaround for models with boolean buffers that align's "
                           "models do not need",
    "logging_first_step": "align always logs the first step",
    "do_train": "training is what `align rlhf` does",
    "use_bnb_nested_quant": "--qlora always quantises the quantisation constants too (QLoRA's "
                            "double quantisation)",
}
# TRL flags with a value, accepted silently when it is what align does anyway, refused
# otherwise: flag -> (accepted value, why another is refused).
FIXED: dict[str, tuple[str, str]] = {
    "model_revision": ("main", "only a model's default revision is loaded; download the "
                               "revision to a directory and pass it as --model"),
    "bnb_4bit_quant_type": ("nf4", "--qlora quantises to NF4, the QLoRA paper's type"),
}

# TRL flags refused, with the one line that says why (and what to use instead).
REFUSED: dict[str, str] = {
    "load_in_8bit": "8-bit bases are not supported; use --qlora (4-bit NF4, which TRL's "
                    "--load_in_4bit means) or --lora",
    "use_dora": "DoRA adapters are not supported; use --lora",
    "use_rslora": "rank-stabilised LoRA is not supported; use --lora with --lora-alpha",
    "lora_task_type": "align sets the adapter's task type from the algorithm (a reward model "
                      "gets SEQ_CLS)",
    "lora_modules_to_save": "align chooses the modules to save itself (a reward model's score "
                            "head)",
    "lora_target_parameters": "use --lora-target-modules",
    "dataset_text_field": "align finds the text in the format's columns; map yours with "
                          "--columns (e.g. --columns prompt=question)",
    "datasets": "give one dataset with --dataset (and --eval-dataset)",
    "hub_token": "log in with `huggingface-cli login` or set HF_TOKEN instead of putting a token "
                 "on the command line",
    "fsdp": "FSDP is not supported; use --deepspeed with a ZeRO-2/3 config",
    "resume_from_checkpoint": "use --resume: align continues from the latest complete "
                              "checkpoint in --output-dir and checks its config",
}

# Flags whose TRL form takes several values (``--lora_target_modules q_proj v_proj``);
# align takes one comma-separated value.
LIST_FLAGS = ("lora_target_modules", "report_to")
TRUE, FALSE = ("true", "yes", "1"), ("false", "no", "0")


def alias_of() -> dict[str, str]:
    """TRL name -> align field."""
    return {alias: field for field, names in ALIASES.items() for alias in names}


def spellings(name: str) -> list[str]:
    """The flags a field answers to besides its own ``--kebab-name``: the underscore
    spelling, and each alias in both spellings."""
    names = [name] + list(ALIASES.get(name, ()))
    out = []
    for n in names:
        for flag in ("--" + n.replace("_", "-"), "--" + n):
            if flag not in out:
                out.append(flag)
    return out[1:]


def _bool_value(token: str) -> bool | None:
    low = token.lower()
    return True if low in TRUE else False if low in FALSE else None


def normalize_argv(args: list[str], bool_fields: set[str]) -> tuple[list[str], list[str]]:
    """Rewrite TRL's forms into align's: ``--flag True`` for a boolean field, several values
    after a list flag; ignored flags are dropped with a note, refused ones raise AlignError.
    Returns (args, notes)."""
    out: list[str] = []
    notes: list[str] = []
    alias = alias_of()
    i = 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or token == "--":
            out.append(token)
            i += 1
            continue
        raw, has_inline, inline = token[2:].partition("=")
        key = raw.replace("-", "_")
        negated = key.startswith("no_") and key[3:] in (*IGNORED, *bool_fields, *alias)
        base = key[3:] if negated else key
        nxt = args[i + 1] if i + 1 < len(args) else None
        if base in REFUSED:
            raise AlignError(f"--{raw}: {REFUSED[base]}")
        if base in FIXED:
            value = inline if has_inline else nxt
            accepted, why = FIXED[base]
            if value != accepted:
                raise AlignError(f"--{raw} {value}: {why}")
            i += 1 if has_inline else 2
            continue
        if base in IGNORED:
            i += 1
            if not has_inline and nxt is not None and _bool_value(nxt) is not None:
                i += 1  # --remove_unused_columns False
            notes.append(f"note: --{raw} is not needed ({IGNORED[base]}); ignored")
            continue
        field = alias.get(base, base)
        if field in bool_fields and (has_inline or (nxt is not None and
                                                    _bool_value(nxt) is not None)):
            value = _bool_value(inline if has_inline else nxt)  # type: ignore[arg-type]
            if value is None:
                raise AlignError(f"--{raw}={inline}: expected true or false")
            out.append("--" + ("" if value != negated else "no-") + field.replace("_", "-"))
            i += 1 if has_inline else 2
            continue
        if field in LIST_FLAGS and not has_inline:
            values = []
            j = i + 1
            while j < len(args) and not args[j].startswith("-"):
                values.append(args[j])
                j += 1
            if len(values) > 1:
                out += [token, ",".join(values)]
                i = j
                continue
        out.append(token)
        i += 1
    return out + trl_eval_split(args, notes), notes


def trl_eval_split(args: list[str], notes: list[str]) -> list[str]:
    """TRL's scripts evaluate on the ``test`` split of --dataset_name whenever
    --eval_strategy is not ``no`` (``--dataset_test_split`` defaults to ``test``): a TRL
    command line that asks for evaluation without saying on what gets the same here."""
    given: dict[str, str] = {}
    for i, a in enumerate(args):
        if a.startswith("--"):
            key, _, inline = a[2:].partition("=")
            nxt = args[i + 1] if i + 1 < len(args) else ""
            given[key.replace("-", "_")] = inline or nxt
    held_out = {"eval_dataset", "eval_split", "eval_dataset_split", "dataset_test_split"}
    strategy = given.get("eval_strategy", given.get("evaluation_strategy", "no"))
    if "dataset_name" in given and strategy in ("steps", "epoch") and not held_out & set(given):
        notes.append("note: as TRL does, --eval_strategy evaluates on the test split of "
                     "--dataset_name (TRL's --dataset_test_split default); pass "
                     "--dataset_test_split SPLIT for another")
        return ["--eval-dataset-split", "test"]
    return []


def yaml_keys(values: dict[str, Any], origin: str) -> tuple[dict[str, Any], list[str]]:
    """A YAML recipe's keys with TRL's names turned into align's; ignored keys dropped with a
    note, refused ones raise."""
    alias = alias_of()
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in values.items():
        if key in REFUSED:
            raise AlignError(f"{origin}: {key}: {REFUSED[key]}")
        if key in FIXED:
            accepted, why = FIXED[key]
            if value not in (None, accepted):
                raise AlignError(f"{origin}: {key} {value}: {why}")
            continue
        if key in IGNORED:
            notes.append(f"note: {origin}: {key} is not needed ({IGNORED[key]}); ignored")
            continue
        target = alias.get(key, key)
        if target in out:
            raise AlignError(f"{origin}: {key} and {target} name the same setting; keep one")
        out[target] = ",".join(map(str, value)) if key in LIST_FLAGS and \
            isinstance(value, list) else value
    return out, notes


def table_markdown() -> str:
    """The alias table of docs/cli.md."""
    rows = ["| TRL / transformers name | align flag |", "| --- | --- |"]
    for field, names in sorted(ALIASES.items(), key=lambda kv: kv[1][0]):
        for n in names:
            rows.append(f"| `--{n}` | `--{field.replace('_', '-')}` |")
    rows += ["", "Accepted and ignored, with a note:", "", "| flag | why align does not need it |",
             "| --- | --- |"]
    for n, why in sorted(IGNORED.items()):
        rows.append(f"| `--{n}` | {why} |")
    for n, (value, why) in sorted(FIXED.items()):
        rows.append(f"| `--{n} {value}` | what align does anyway (another value is refused: "
                    f"{why}) |")
    rows += ["", "Refused, with this reason:", "", "| flag | why |", "| --- | --- |"]
    rows += [f"| `--{n}` | {why} |" for n, why in sorted(REFUSED.items())]
    return "\n".join(rows)
