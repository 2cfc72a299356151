"""The model card of a finished run (README.md in --output-dir) and --push-to-hub.

Every run ends with a model card that says what the model is: the algorithm and its paper,
the base model, the data (file or Hub id, records), the settings that shaped it, the final
metrics and how to load it (TRL's trainers write a generic card into the output directory on
save; this one replaces it). With ``--push-to-hub`` the output directory, without its
checkpoints, TensorBoard logs and pickled training arguments, goes to the Hub repository
``--hub-model-id`` (default: the output directory's name under your account), created if it
does not exist (private unless --no-hub-private-repo), through ``huggingface_hub`` (log in
with ``huggingface-cli login`` or ``HF_TOKEN``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from align.errors import AlignError

CARD = "README.md"
# What is not uploaded: resumable state and logs that only matter on the training machine.
IGNORE = ["checkpoint-*", "checkpoint-*/**", "tensorboard/**", "training_args.bin", "*.tmp",
          "wandb/**", "*.lock"]
# The final metrics shown in the card, when the run has them (others stay in
# final_metrics.json, which is uploaded too).
SHOWN = ("train_loss", "first_loss", "last_loss", "eval_loss", "eval_rewards/accuracies",
         "eval_rewards/margins", "eval_reward", "eval_pairwise_accuracy",
         "eval_reward_before", "eval_reward_after", "eval_kl_after", "reward_raw_first",
         "reward_raw_last", "kl_last", "steps", "train_runtime", "collapsed")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _is_hub_id(path: str | None) -> bool:
    return bool(path) and not Path(path).expanduser().exists() and path.count("/") == 1 \
        and not path.startswith((".", "/", "~"))


def model_card(cfg: Any, spec: Any, data_summary: str, metrics: dict[str, Any]) -> str:
    """The README.md of a finished run, with Hub metadata in its YAML header."""
    import yaml

    t, lo = cfg.train, cfg.lora
    base = cfg.model.model
    meta: dict[str, Any] = {"library_name": "peft" if lo.enabled else "transformers",
                            "tags": ["align", spec.name, *(["lora"] if lo.enabled else [])],
                            "pipeline_tag": "text-classification" if spec.name == "rm"
                            else "text-generation"}
    if _is_hub_id(base):
        meta["base_model"] = base
    if _is_hub_id(cfg.data.dataset):
        meta["datasets"] = [cfg.data.dataset]
    name = t.hub_model_id or Path(t.output_dir).name
    mode = ("QLoRA (4-bit base) adapter" if lo.qlora else "LoRA adapter" if lo.enabled
            else "full fine-tune")
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {name}", "",
             f"A {mode} of `{base}` trained with **{spec.name}** ({spec.summary}; "
             f"[paper]({spec.paper})) by align.", "",
             "## Data", "", f"- training: {data_summary}"]
    if cfg.data.eval_dataset:
        lines.append(f"- evaluation: `{cfg.data.eval_dataset}`")
    elif cfg.data.eval_split:
        lines.append(f"- evaluation: {cfg.data.eval_split:.0%} of the training records held out")
    settings = {"learning rate": getattr(t, "learning_rate", None),
                "epochs": t.num_train_epochs if t.max_steps < 0 else None,
                "max steps": t.max_steps if t.max_steps > 0 else None,
                "batch per device": t.per_device_train_batch_size,
                "gradient accumulation": t.gradient_accumulation_steps,
                "schedule": t.lr_scheduler_type, "seed": t.seed}
    if lo.enabled:
        settings["LoRA"] = f"r={lo.lora_r}, alpha={lo.lora_alpha}, on {lo.lora_target_modules}"
    algo = {k: v for k, v in (cfg.algo.__dict__.items() if cfg.algo is not None else ())
            if k in ("beta", "loss_type", "rpo_alpha", "kl_coef", "num_generations")}
    lines += ["", "## Training", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in {**settings, **algo}.items() if v is not None]
    lines.append("- full configuration: `align_config.yaml` (repeat the run with "
                 "`align rlhf --config align_config.yaml`)")
    metrics = {**last_eval(Path(t.output_dir)), **metrics}
    shown = [(k, metrics[k]) for k in SHOWN if k in metrics]
    if shown:
        lines += ["", "## Final metrics", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in shown]
        lines.append("\nAll of them in `final_metrics.json`, every logged step in "
                     "`metrics.jsonl`.")
    repo = repo_id(cfg) if t.push_to_hub else str(t.output_dir)
    loader = (f"from peft import AutoPeftModelForCausalLM\n"
              f"model = AutoPeftModelForCausalLM.from_pretrained(\"{repo}\")"
              if lo.enabled and spec.name != "rm" else
              f"from transformers import AutoModelForSequenceClassification\n"
              f"model = AutoModelForSequenceClassification.from_pretrained(\"{repo}\")"
              if spec.name == "rm" else
              f"from transformers import AutoModelForCausalLM\n"
              f"model = AutoModelForCausalLM.from_pretrained(\"{repo}\")")
    lines += ["", "## Use", "", "```python", loader, "```", "",
              f"or talk to it: `align chat {repo}`.", ""]
    return "\n".join(lines)


def last_eval(out: Path) -> dict[str, Any]:
    """The evaluation values of the run's last evaluation (TRL's ``eval_*`` keys)."""
    from align.metrics import METRICS_FILE, read_metrics

    if not (out / METRICS_FILE).is_file():
        return {}
    rows = [r for r in read_metrics(out) if any(k.startswith("eval_") for k in r)]
    return {k: v for k, v in rows[-1].items() if k.startswith("eval_")} if rows else {}


def write_card(cfg: Any, spec: Any, data_summary: str, metrics: dict[str, Any]) -> Path:
    path = Path(cfg.train.output_dir) / CARD
    path.write_text(model_card(cfg, spec, data_summary, metrics), encoding="utf-8")
    return path


def repo_id(cfg: Any) -> str:
    """--hub-model-id, or the output directory's name (the Hub puts it under your account)."""
    return cfg.train.hub_model_id or Path(cfg.train.output_dir).name


def push(cfg: Any) -> str:
    """Upload the output directory (see the module docstring); returns the repository's URL."""
    try:
        from huggingface_hub import HfApi
    except ImportError as e:  # pragma: no cover - a dependency of transformers
        raise AlignError("--push-to-hub needs huggingface_hub: pip install huggingface_hub") from e
    api = HfApi()
    repo = api.create_repo(repo_id(cfg), private=cfg.train.hub_private_repo, exist_ok=True,
                           repo_type="model")
    api.upload_folder(repo_id=repo.repo_id, folder_path=str(cfg.train.output_dir),
                      ignore_patterns=IGNORE, repo_type="model",
                      commit_message=f"align {cfg.algo_name}: {Path(cfg.train.output_dir).name}")
    return f"https://huggingface.co/{repo.repo_id}"
