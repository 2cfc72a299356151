"""Greedy answers and the gold measure for a model directory (full model or LoRA adapter)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.real import task

EVAL_TOKENS = 64  # token budget of a held-out answer (about 48 words: rambling runs out)
REJECTED_TOKENS = 96  # budget of the base model's answers used as rejected training answers


@dataclass
class Answers:
    texts: list[str]
    ended: list[bool]  # stopped at EOS within the budget


def load_policy(path: str | Path, base: str | Path | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) from a model directory, or from a LoRA adapter directory on ``base``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        if base is None:
            base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        model = AutoModelForCausalLM.from_pretrained(str(base), use_safetensors=True)
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True)
    return model.eval(), tokenizer


def greedy(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int,
           batch_size: int = 12) -> Answers:
    """Greedy answers to chat ``prompts`` (the tokenizer's template, default system prompt)."""
    import torch

    eos = tokenizer.eos_token_id
    texts, ended = [], []
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        for i in range(0, len(prompts), batch_size):
            chunk = [tokenizer.apply_chat_template(task.chat(p), tokenize=False,
                                                   add_generation_prompt=True)
                     for p in prompts[i:i + batch_size]]
            batch = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                     eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
            for row in out[:, batch["input_ids"].shape[1]:].tolist():
                stop = row.index(eos) if eos in row else len(row)
                ended.append(eos in row)
                texts.append(tokenizer.decode(row[:stop], skip_special_tokens=True).strip())
    finally:
        tokenizer.padding_side = side
    return Answers(texts, ended)


def score(answers: Answers, items: tuple[task.HeldOut, ...] = task.HELD_OUT) -> dict[str, Any]:
    """Gold, accuracy and mean length (words) of answers to the held-out prompts."""
    golds = [task.gold(t, e, h.keywords, h.prompt)
             for t, e, h in zip(answers.texts, answers.ended, items)]
    hits = [task.concise(t, e, h.keywords, h.prompt)
            for t, e, h in zip(answers.texts, answers.ended, items)]
    return {"gold": statistics.mean(golds), "accuracy": statistics.mean(hits),
            "mean_words": statistics.mean(len(task.words(t)) for t in answers.texts),
            "ended": statistics.mean(answers.ended),
            "answers": [{"prompt": h.prompt, "answer": t, "ended": e, "gold": g}
                        for h, t, e, g in zip(items, answers.texts, answers.ended, golds)]}


SPLITS = {"held_out": task.HELD_OUT, "dev": task.DEV}


def evaluate(path: str | Path, base: str | Path | None = None, split: str = "held_out"
             ) -> dict[str, Any]:
    """Greedy answers of the model at ``path`` to the prompts of ``split`` (held_out, or dev
    while choosing settings), scored."""
    model, tokenizer = load_policy(path, base)
    items = SPLITS[split]
    return score(greedy(model, tokenizer, [h.prompt for h in items], EVAL_TOKENS), items)


def model_hash(path: Path) -> str:
    """Content hash of the weights and tokenizer (cache key of the base model's answers)."""
    import hashlib

    h = hashlib.sha256()
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        with open(path / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def _cached(name: str, key: str, compute: Any) -> Any:
    from align.cache import cache_dir

    path = cache_dir() / "real" / f"{name}-{key}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1), encoding="utf-8")
    tmp.replace(path)
    return value


def base_answers(real_model: Path) -> dict[str, Any]:
    """The base model's greedy answers: 'train' to the fact prompts; 'held_out' and 'dev' to
    the advice prompts, scored. Cached under the model's content hash (a few minutes on 2
    cores to compute)."""
    key = f"{model_hash(real_model)}-t{REJECTED_TOKENS}-e{EVAL_TOKENS}"
    loaded: list[Any] = []

    def answers(prompts: list[str], tokens: int) -> dict[str, Any]:
        if not loaded:
            loaded.extend(load_policy(real_model))
        a = greedy(*loaded, prompts, tokens)
        return {"texts": a.texts, "ended": a.ended}

    train = _cached("base", key, lambda: {
        "train": answers([q for q, _ in task.FACTS], REJECTED_TOKENS),
        "held_out": score(Answers(**answers([h.prompt for h in task.HELD_OUT], EVAL_TOKENS)))})
    dev = _cached("base-dev", key, lambda: answers([h.prompt for h in task.DEV], EVAL_TOKENS))
    # the answers are cached, their scores are not: the gold measure may have changed since
    held = train["held_out"]["answers"]
    return {"train": train["train"],
            "held_out": score(Answers([a["answer"] for a in held], [a["ended"] for a in held])),
            "dev": score(Answers(dev["texts"], dev["ended"]), task.DEV)}


def write_data(base: dict[str, Any], root: Path) -> dict[str, Path]:
    """The task's datasets under ``root``, one file per format (see task.py for the design)."""
    from tests.conftest import write_jsonl

    root.mkdir(parents=True, exist_ok=True)
    pairs = []
    for (prompt, good), bad, ended in zip(task.FACTS, base["train"]["texts"],
                                          base["train"]["ended"]):
        if task.gold(bad, ended) < 1.0:  # keep pairs whose rejected side really is worse
            pairs.append({"prompt": task.chat(prompt),
                          "chosen": [{"role": "assistant", "content": good}],
                          "rejected": [{"role": "assistant", "content": bad}]})
    unpaired = []
    for p in pairs:
        unpaired.append({"prompt": p["prompt"], "completion": p["chosen"], "label": True})
        unpaired.append({"prompt": p["prompt"], "completion": p["rejected"], "label": False})
    held = base["held_out"]["answers"]
    held_pairs = [{"prompt": task.chat(h.prompt),
                   "chosen": [{"role": "assistant", "content": h.answer}],
                   "rejected": [{"role": "assistant", "content": a["answer"]}]}
                  for h, a in zip(task.HELD_OUT, held) if a["gold"] < 1.0]
    return {
        "pairwise": write_jsonl(root / "pairwise.jsonl", pairs),
        "unpaired": write_jsonl(root / "unpaired.jsonl", unpaired),
        "sft": write_jsonl(root / "sft.jsonl", [
            {"prompt": task.chat(q), "completion": [{"role": "assistant", "content": a}]}
            for q, a in task.FACTS]),
        "prompts": write_jsonl(root / "prompts.jsonl",
                               [{"prompt": task.chat(q)} for q, _ in task.FACTS]),
        "held_out_pairs": write_jsonl(root / "held_out_pairs.jsonl", held_pairs),
    }


def machine() -> str:
    """A short description of where a run happened (for the results table)."""
    import platform

    import torch

    return f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def script(name: str) -> Any:
    """The module ``scripts/NAME.py`` (scripts/ is not a package): the user-facing scripts own
    the suite's default paths, so that the tests and the scripts cannot disagree on them."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_dir() -> Path:
    """The SmolLM2 directory: $ALIGN_REAL_MODEL, else where scripts/get_smollm2.py writes it."""
    return script("get_smollm2").default_dir()


def results_file() -> Path:
    """Where every real-model test appends its row and scripts/real_table.py reads it from."""
    return script("real_table").default_results()


def record(name: str, before: dict[str, Any], after: dict[str, Any], steps: int,
           wall_s: float, **extra: Any) -> None:
    """Append one row (before/after gold, accuracy, length, steps, time) to results_file()."""
    append_row({"name": name, "gold_before": before["gold"], "gold_after": after["gold"],
                "accuracy_before": before["accuracy"], "accuracy_after": after["accuracy"],
                "words_before": before["mean_words"], "words_after": after["mean_words"],
                "steps": steps, "wall_s": round(wall_s, 1), "answers": after["answers"],
                **extra})


def record_rm(accuracy_before: float, accuracy_after: float, steps: int, wall_s: float) -> None:
    """Append the reward model's row: pairwise accuracy on held-out pairs (no gold: no answers)."""
    append_row({"name": "rm", "accuracy_before": accuracy_before,
                "accuracy_after": accuracy_after, "steps": steps, "wall_s": round(wall_s, 1)})


def append_row(row: dict[str, Any]) -> None:
    row = {**row, "machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M")}
    path = results_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def rm_accuracy(path: str | Path, pairs_file: str | Path) -> float:
    """Share of held-out pairs whose chosen answer the sequence classifier at ``path`` scores
    higher than the rejected one (the quickstart's measure, on pairs read from a file)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from align.quickstart.pipeline import rm_accuracy as pairwise_accuracy

    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1,
                                                               use_safetensors=True).eval()
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    pairs = [json.loads(line) for line in
             Path(pairs_file).read_text(encoding="utf-8").splitlines()]
    return pairwise_accuracy(model, tok, pairs)


def metric_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The training rows of a run's metrics.jsonl (those with a loss)."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if "loss" in r]


# Flags of every offline run (and the SFT stage): constant learning rate, no mid-run saves.
OFFLINE_FLAGS = ["--per-device-train-batch-size", "4", "--lr-scheduler-type", "constant",
                 "--warmup-ratio", "0", "--save-steps", "1000", "--report-to", "none",
                 "--logging-steps", "5", "--max-length", "192", "--seed", "0"]
SFT_STEPS, SFT_LR = 16, "1e-5"


def drop_checkpoints(argv: list[Any]) -> None:
    """Delete the resumable checkpoints of the run ``argv`` wrote (the final model stays): each
    holds weights and optimizer state, about 1.6 GB for SmolLM2 in fp32, and the suite makes a
    dozen runs that nothing resumes."""
    argv = [str(a) for a in argv]
    if "--output-dir" in argv:
        for checkpoint in Path(argv[argv.index("--output-dir") + 1]).glob("checkpoint-*"):
            shutil.rmtree(checkpoint, ignore_errors=True)


def run_align(argv: list[Any]) -> tuple[float, int]:
    """Run `align ARGV` in-process, then drop its checkpoints; (seconds, exit code)."""
    from align.cli import main

    start, code = time.time(), 0
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        code = int(e.code or 0)
    wall = time.time() - start
    drop_checkpoints(argv)
    return wall, code


def train(argv: list[Any], capsys: Any) -> tuple[str, float]:
    """Run `align ARGV` in-process through the test entry point; fail the test with the end of
    its output unless it exits 0. Returns (stdout + stderr, seconds)."""
    from tests.conftest import run_cli

    start = time.time()
    code, out, err = run_cli(argv, capsys)
    wall = time.time() - start
    drop_checkpoints(argv)
    assert code == 0, f"align {' '.join(map(str, argv))} failed:\n{err[-3000:]}"
    return out + err, wall


def check_beats_base(name: str, after: dict[str, Any], base_answers: dict[str, Any],
                     steps: int, wall: float, **extra: Any) -> None:
    """Record a run's held-out evaluation (from :func:`evaluate`) and assert that its gold beats
    the base model's by more than 0.1."""
    before = base_answers["held_out"]
    record(name, before, after, steps, wall, **extra)
    assert after["gold"] > before["gold"] + 0.1, (
        f"{name}: gold {before['gold']:.3f} -> {after['gold']:.3f}; answers: "
        f"{[a['answer'][:80] for a in after['answers'][:4]]}")
