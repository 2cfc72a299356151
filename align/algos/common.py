"""What every TRL-backed adapter shares to build its trainer: mapping TrainArgs to a TRL
config, loading the policy and reference, turning validated rows into a dataset.
Algorithm-specific fields stay in each adapter; how the built trainer runs (callbacks, resume,
rollback or stop, the final save) is :mod:`align.algos.watched`.

An adapter is two functions: ``build_trainer(cfg, data, eval_data, callbacks)`` returns
``(trainer, tokenizer)`` (tests use it to reach the trainer's loss on a fixed batch), and
``run(cfg, data, eval_data)`` is ``watched.run_trainer(cfg, build_trainer, data, eval_data)``.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any, Sequence

import click

from align.cache import cache_dir
from align.config import RunConfig
from align.errors import AlignError


def learning_rate(cfg: RunConfig) -> float:
    """The policy's learning rate (the resolved config holds the registry's default when
    --learning-rate was not given: align.options.fill_learning_rates)."""
    if cfg.train.learning_rate is None:
        raise ValueError("cfg.train.learning_rate is unset: build the config with "
                         "align.options.resolve (it fills in the algorithm's default)")
    return cfg.train.learning_rate


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def trl_config(cfg: RunConfig, config_cls: type, has_eval: bool = False, **fields: Any) -> Any:
    """Build a TRL config (DPOConfig, KTOConfig, ...) from our TrainArgs plus ``fields``."""
    t = cfg.train
    # QLoRA computes in bf16 (the 4-bit base is dequantised to bf16), so train in bf16 mixed
    # precision unless fp16 was asked for.
    bf16 = t.bf16 or (cfg.lora.qlora and not t.fp16)
    kwargs: dict[str, Any] = dict(
        output_dir=t.output_dir,
        learning_rate=learning_rate(cfg),
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_steps=t.max_steps,
        num_train_epochs=t.num_train_epochs,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=None,  # align rotates complete checkpoints (align.checkpoints)
        seed=t.seed,
        lr_scheduler_type=t.lr_scheduler_type,
        # a float in [0, 1) is a ratio in transformers 5
        warmup_steps=t.warmup_steps if t.warmup_steps is not None else t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        bf16=bf16,
        fp16=t.fp16,
        gradient_checkpointing=t.gradient_checkpointing,
        use_liger_kernel=t.use_liger_kernel,
        deepspeed=t.deepspeed,
        report_to="none",  # align writes metrics.jsonl and TensorBoard itself
        logging_nan_inf_filter=False,  # a NaN loss must reach the NaN detector, not become 0
        use_cpu=not on_gpu(),
        eval_strategy=eval_strategy(cfg, has_eval),
        eval_steps=(t.eval_steps or t.save_steps) if has_eval else None,
        run_name=t.run_name,
        trust_remote_code=cfg.model.trust_remote_code,
    )
    if t.optim:
        kwargs["optim"] = t.optim
    if "max_length" in config_cls.__dataclass_fields__:
        kwargs["max_length"] = cfg.data.max_length
    if "activation_checkpointing" in config_cls.__dataclass_fields__:
        # transformers >= 5.24's name; the old one (which TRL's configs default to True)
        # would warn on every run that it is deprecated
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing")
    kwargs.update(fields)
    return config_cls(**kwargs)


def eval_strategy(cfg: RunConfig, has_eval: bool) -> str:
    """--eval-strategy for TRL: auto is steps with held-out data, else no (the runner has
    refused steps or epoch without held-out data)."""
    chosen = cfg.train.eval_strategy
    if chosen == "auto" or not has_eval:
        return "steps" if has_eval and chosen == "auto" else "no"
    return chosen


def load_tokenizer(cfg: RunConfig, data: Any = None) -> Any:
    """The policy's tokenizer; conversational data needs it to have a chat template."""
    from align.models import check_chat_template
    from align.models import load_tokenizer as _load

    tok = _load(cfg.model.model, cfg.model)
    check_chat_template(tok, data, cfg.model.model)
    calls = getattr(data, "tool_calls", 0)
    if calls:
        from align.agents.parsing import TEMPLATE_FIX, tool_template_problem

        problem, _ = tool_template_problem(tok)
        if problem:
            raise AlignError(f"{data.file} has {calls} assistant messages that call tools "
                             f"(tool_calls), but the chat template of {cfg.model.model} does "
                             f"not render them ({problem}): those turns would train as empty "
                             f"replies. {TEMPLATE_FIX[0].upper()}{TEMPLATE_FIX[1:]}, use a model "
                             "whose template renders them (Qwen2.5, Llama 3.1, ...), or drop the "
                             "tool-call records")
    return tok


def load_policy(cfg: RunConfig, *, prepare_kbit: bool = True) -> Any:
    """The model to train. With --qlora, readied for k-bit training (norms in fp32, input
    grads on) unless the trainer does it itself (``prepare_kbit=False``)."""
    from align.models import load_causal_lm

    model = load_causal_lm(cfg.model.model, cfg.model, cfg.lora, cfg.train)
    return prepare_quantized(model, cfg) if prepare_kbit else model


def prepare_quantized(model: Any, cfg: RunConfig) -> Any:
    """peft's k-bit preparation for a 4-bit (QLoRA) model; other models pass through."""
    if not cfg.lora.qlora:
        return model
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)


def load_reference(cfg: RunConfig) -> Any:
    """The --ref-model, or None: TRL then uses a frozen copy of the starting policy, or with
    LoRA the policy's base with adapters disabled (no second copy in memory)."""
    if not cfg.model.ref_model:
        return None
    from align.models import load_causal_lm

    return load_causal_lm(cfg.model.ref_model, cfg.model, cfg.lora, cfg.train)


def dataset(data: Any, tokenizer: Any, cfg: RunConfig, *, shuffle: bool = False,
            rows: Any = None, on_disk: bool = False, render: bool = False) -> Any:
    """Validated rows -> datasets.Dataset, prompts cut to --max-prompt-length (None stays None).

    The rows of :func:`align.data.load` are already an Arrow dataset: it is handed over as it
    is (no copy into Python lists). ``shuffle`` orders the rows with --seed, for trainers that
    read data sequentially (KTO). ``on_disk`` backs the dataset with files under the align
    cache, named by its content, so that what TRL caches beside it (tokenized data,
    precomputed reference log-probs, keyed by the dataset's fingerprint and the model's hash)
    is found again by later runs. ``render`` turns chat messages into text with the chat
    template, for trainers that would do so in place (TRL's experimental CPO and ORPO: their
    in-place map keeps the message columns' type, so the text would not reach them).
    """
    if data is None and rows is None:
        return None
    from align.data.store import as_dataset, content_digest
    from align.data.truncate import truncate_dataset

    rows = data.rows if rows is None else rows
    ds, n_cut = truncate_dataset(as_dataset(rows), tokenizer, cfg.data.max_prompt_length)
    if n_cut:
        click.echo(f"{n_cut} of {ds.num_rows} prompts are longer than --max-prompt-length "
                   f"{cfg.data.max_prompt_length} tokens; kept their last tokens")
    if shuffle:
        order = list(range(ds.num_rows))
        random.Random(cfg.train.seed).shuffle(order)
        ds = ds.select(order)
    if render:
        ds = rendered(ds, tokenizer)
    if not on_disk:
        return ds
    key = f"{content_digest(rows)}:{cfg.data.max_prompt_length}:{tokenizer.name_or_path}:" \
          f"{cfg.train.seed if shuffle else None}"
    return disk_backed(ds, hashlib.sha256(key.encode()).hexdigest()[:24])


def rendered(ds: Any, tokenizer: Any) -> Any:
    """Conversational rows as text: TRL's ``maybe_apply_chat_template`` on each row, into
    string columns (standard rows pass through)."""
    from datasets import Value
    from trl.data_utils import is_conversational, maybe_apply_chat_template

    if ds.num_rows == 0 or not is_conversational(ds[0]):
        return ds
    keys = [k for k in ("prompt", "chosen", "rejected", "completion") if k in ds.column_names]
    features = ds.features.copy()
    for k in keys:
        features[k] = Value("string")

    def render(row: dict[str, Any]) -> dict[str, Any]:
        text = maybe_apply_chat_template({k: row[k] for k in keys}, tokenizer)
        return {k: text[k] for k in keys}

    return ds.map(render, features=features, desc="Applying the chat template")


def trainer_inputs(cfg: RunConfig, tokenizer: Any, data: Any, eval_data: Any,
                   callbacks: Sequence[Any], *, task_type: str = "CAUSAL_LM",
                   **dataset_options: Any) -> dict[str, Any]:
    """The keyword arguments every TRL trainer takes alike: training and evaluation datasets
    (``dataset_options`` go to :func:`dataset`), tokenizer, LoRA config and callbacks."""
    from align.models import lora_config

    return {"train_dataset": dataset(data, tokenizer, cfg, **dataset_options),
            "eval_dataset": dataset(eval_data, tokenizer, cfg, **dataset_options),
            "processing_class": tokenizer, "peft_config": lora_config(cfg.lora, task_type),
            "callbacks": list(callbacks)}


def disk_backed(ds: Any, digest: str) -> Any:
    """``ds`` stored under ``cache_dir()/datasets/<digest>``, reused when present."""
    from datasets import load_from_disk

    path = cache_dir() / "datasets" / digest
    if not (path / "dataset_info.json").exists():
        tmp = path.with_name(path.name + ".tmp")
        ds.flatten_indices().save_to_disk(str(tmp))
        tmp.replace(path)  # atomic: a killed run never leaves a half-written dataset
    return load_from_disk(str(path))


def to_dataset(data: Any, drop: tuple[str, ...] = ()) -> Any:
    """Validated rows -> datasets.Dataset as they are (None stays None)."""
    if data is None:
        return None
    from align.data.store import as_dataset

    ds = as_dataset(data.rows)
    return ds.remove_columns([c for c in drop if c in ds.column_names])


# What a TRL config may hold that cannot change a reference log-prob: where and how often the
# run writes, logs and evaluates. Every other field stays in the cache key (a field missing here
# costs a recomputation, never a stale hit).
NOT_IN_REF_KEY = ("output_dir", "logging_dir", "run_name", "report_to", "overwrite_output_dir",
                  "resume_from_checkpoint", "push_to_hub", "disable_tqdm", "learning_rate",
                  "num_train_epochs", "max_steps", "warmup_steps", "warmup_ratio")
NOT_IN_REF_KEY_PREFIXES = ("logging_", "save_", "eval_", "hub_")


def ref_cache_key(dataset: Any, args: Any) -> str:
    """The key of a dataset's cached reference log-probs: the tokenized rows' content (their
    Arrow buffers, with each array's offset and length, and the row order) and the trainer
    config's fields except :data:`NOT_IN_REF_KEY`. TRL keys the cache on the dataset's
    fingerprint, which its tokenizing map derives from the whole config, so a rerun that only
    writes to another --output-dir recomputed every reference log-prob."""
    h = hashlib.sha256()
    arrays = [(name, dataset.data.column(name)) for name in dataset.column_names]
    if dataset._indices is not None:  # a selection or a shuffle over the stored rows
        arrays.append(("__indices__", dataset._indices.column(0)))
    for name, column in arrays:
        h.update(name.encode() + b"\0")
        for chunk in column.chunks:
            h.update(f"{chunk.offset}:{len(chunk)}:{chunk.type}".encode())
            for buf in chunk.buffers():
                h.update(b"-" if buf is None else buf)
    fields = {k: v for k, v in sorted(args.to_dict().items()) if k not in NOT_IN_REF_KEY
              and not k.startswith(NOT_IN_REF_KEY_PREFIXES)}
    h.update(repr(fields).encode())
    return h.hexdigest()[:32]


def content_keyed(trainer_cls: type) -> type:
    """TRL's DPOTrainer or KTOTrainer with its reference log-prob cache keyed by
    :func:`ref_cache_key` (TRL adds the reference model's hash, as before): the cache written
    under $ALIGN_CACHE by ``--precompute-ref-logps`` is found again by a rerun into another
    output directory."""

    class ContentKeyed(trainer_cls):  # type: ignore[misc, valid-type]
        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            kept = dataset._fingerprint
            dataset._fingerprint = ref_cache_key(dataset, self.args)
            try:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            finally:
                dataset._fingerprint = kept

    ContentKeyed.__name__ = ContentKeyed.__qualname__ = trainer_cls.__name__
    return ContentKeyed
