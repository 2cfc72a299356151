"""Files in the exact record layouts of the public datasets RLHF tutorials use, written by the
tests with short invented text: the containers (files, .gz, parquet shards with a dataset card,
saved DatasetDicts) and column names are those the Hugging Face Hub serves.

Each :class:`Layout` says how a user trains on it with align: the format, the documented
flags, or the one `align data convert` command that comes first (docs/data-formats.md,
"Public datasets", gives the same commands).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

QUESTIONS = ["What is the capital of France?", "Count from one to five.",
             "Why is the sky blue?", "Write a short poem about the sea.",
             "Is the fox quick?", "Say yes or no.", "What is two plus two?",
             "Name a colour of the sky."]
GOOD = ["The capital of France is Paris.", "One two three four five.",
        "Light scatters in the air.", "The sea is wide and blue.", "Yes, the fox is quick.",
        "Yes.", "Two plus two is four.", "The sky is blue."]
BAD = ["I do not know.", "One two.", "Because it is.", "Sea.", "No.", "Maybe, maybe not.",
       "Five.", "Green, I think."]


def U(text: str) -> dict[str, str]:
    return {"content": text, "role": "user"}  # the Hub's key order: content, role


def A(text: str) -> dict[str, str]:
    return {"content": text, "role": "assistant"}


def _jsonl(path: Path, rows: list[dict[str, Any]], *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _json(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


def _parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    from datasets import Dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows).to_parquet(str(path))
    return path


def _card(repo: Path, configs: dict[str, dict[str, str]]) -> None:
    """A dataset card whose YAML lists configs and their split files, as the Hub's do."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        for split, pattern in splits.items():
            lines += [f"  - split: {split}", f"    path: {pattern}"]
    (repo / "README.md").write_text("\n".join(lines + ["---", "# Dataset card", ""]),
                                    encoding="utf-8")


# ---- the layouts ------------------------------------------------------------------------

def hh_rlhf(root: Path) -> Path:
    """Anthropic/hh-rlhf: helpful-base/train.jsonl.gz; whole transcripts in chosen/rejected,
    "\\n\\nHuman: ...\\n\\nAssistant: ...", no prompt column; some multi-turn."""
    rows = []
    for i, (q, g, b) in enumerate(zip(QUESTIONS, GOOD, BAD)):
        head = f"\n\nHuman: {q}\n\nAssistant:"
        if i % 3 == 0:  # multi-turn: an earlier exchange both transcripts share
            head = f"\n\nHuman: Hello.\n\nAssistant: Hello, how can I help?{head}"
        rows.append({"chosen": f"{head} {g}", "rejected": f"{head} {b}"})
    return _jsonl(root / "hh-rlhf" / "helpful-base" / "train.jsonl.gz", rows, gz=True)


def trl_hh_helpful_base(root: Path) -> Path:
    """trl-lib/hh-rlhf-helpful-base: conversational, explicit prompt; parquet shards."""
    repo = root / "hh-rlhf-helpful-base"
    rows = [{"chosen": [A(g)], "prompt": [U(q)], "rejected": [A(b)]}
            for q, g, b in zip(QUESTIONS, GOOD, BAD)]
    rows[0]["prompt"] = [U("Hello."), A("Hello, how can I help?"), U(QUESTIONS[0])]
    _parquet(repo / "data" / "train-00000-of-00001.parquet", rows)
    _parquet(repo / "data" / "test-00000-of-00001.parquet", rows[:2])
    return repo


def trl_ultrafeedback(root: Path) -> Path:
    """trl-lib/ultrafeedback_binarized: conversational, implicit prompt, score columns."""
    repo = root / "trl-ultrafeedback_binarized"
    rows = [{"chosen": [U(q), A(g)], "rejected": [U(q), A(b)], "score_chosen": 8.0,
             "score_rejected": 5.0} for q, g, b in zip(QUESTIONS, GOOD, BAD)]
    _parquet(repo / "data" / "train-00000-of-00001.parquet", rows)
    _parquet(repo / "data" / "test-00000-of-00001.parquet", rows[:2])
    return repo


H4_SPLITS = ("train_prefs", "test_prefs", "train_sft", "test_sft", "train_gen", "test_gen")


def h4_rows() -> list[dict[str, Any]]:
    """HuggingFaceH4/ultrafeedback_binarized records: a prompt string, chosen/rejected message
    lists that repeat the user turn, messages (= chosen), scores."""
    return [{"prompt": q, "prompt_id": f"{i:064x}", "chosen": [U(q), A(g)],
             "rejected": [U(q), A(b)], "messages": [U(q), A(g)], "score_chosen": 9.0,
             "score_rejected": 4.5} for i, (q, g, b) in enumerate(zip(QUESTIONS, GOOD, BAD))]


def h4_ultrafeedback(root: Path) -> Path:
    """The Hub repository: a card with one config and six splits, parquet shards."""
    repo = root / "ultrafeedback_binarized"
    for split in H4_SPLITS:
        _parquet(repo / "data" / f"{split}-00000-of-00001.parquet", h4_rows())
    _card(repo, {"default": {s: f"data/{s}-*" for s in H4_SPLITS}})
    return repo


def h4_ultrafeedback_saved(root: Path) -> Path:
    """The same, as `load_dataset(...).save_to_disk(...)` leaves it: a saved DatasetDict."""
    from datasets import Dataset, DatasetDict

    path = root / "ultrafeedback_saved"
    DatasetDict({s: Dataset.from_list(h4_rows()) for s in ("train_prefs", "test_prefs")}
                ).save_to_disk(str(path))
    return path


def h4_ultrafeedback_jsonl(root: Path) -> Path:
    return _jsonl(root / "ultrafeedback_train_prefs.jsonl", h4_rows())


def h4_ultrafeedback_json(root: Path) -> Path:
    return _json(root / "ultrafeedback_train_prefs.json", h4_rows())


def h4_ultrafeedback_csv(root: Path) -> Path:
    """Exported with datasets' to_csv: message lists become numpy-repr text cells."""
    from datasets import Dataset

    path = root / "ultrafeedback_train_prefs.csv"
    root.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(h4_rows()).to_csv(str(path), index=False)
    return path


def ultrafeedback_raw(root: Path) -> Path:
    """openbmb/UltraFeedback: instruction + four rated completions (annotations per aspect)."""
    rows = []
    for i, q in enumerate(QUESTIONS):
        completions = []
        for j, (text, fine, overall) in enumerate([(GOOD[i], 4.75, 8.5), (BAD[i], 2.0, 4.0),
                                                   (BAD[i - 1], 1.5, 3.0),
                                                   (GOOD[i - 1], 3.25, 6.0)]):
            rating = str(round(fine))
            completions.append({
                "annotations": {aspect: {"Rating": rating, "Rationale": "Reasoned."}
                                for aspect in ("helpfulness", "honesty",
                                               "instruction_following", "truthfulness")},
                "critique": "A critique.", "custom_system_prompt": "You are helpful.",
                "fine-grained_score": fine, "model": f"model-{j}", "overall_score": overall,
                "principle": "helpfulness", "response": text})
        rows.append({"source": "evol_instruct", "instruction": q,
                     "models": [f"model-{j}" for j in range(4)], "completions": completions,
                     "correct_answers": ["None"], "incorrect_answers": ["None"]})
    return _jsonl(root / "UltraFeedback" / "evol_instruct.jsonl", rows)


def shp(root: Path) -> Path:
    """stanfordnlp/SHP: askculinary/train.json (JSON Lines in a .json file); labels 1 means
    human_ref_A is preferred. Half the pairs prefer B."""
    rows = []
    for i, (q, g, b) in enumerate(zip(QUESTIONS, GOOD, BAD)):
        a_wins = i % 2 == 0
        rows.append({"post_id": f"p{i}", "domain": "askculinary_train", "upvote_ratio": 0.95,
                     "history": q, "c_root_id_A": f"a{i}", "c_root_id_B": f"b{i}",
                     "created_at_utc_A": 1600000000 + i, "created_at_utc_B": 1600000100 + i,
                     "score_A": 40 if a_wins else 3, "score_B": 3 if a_wins else 40,
                     "human_ref_A": g if a_wins else b, "human_ref_B": b if a_wins else g,
                     "labels": 1 if a_wins else 0, "seconds_difference": 100.0,
                     "score_ratio": 13.3})
    return _jsonl(root / "SHP" / "askculinary" / "train.json", rows)


def pku_saferlhf(root: Path) -> Path:
    """PKU-Alignment/PKU-SafeRLHF: prompt, response_0/1, better_response_id (0: response_0)."""
    rows = []
    for i, (q, g, b) in enumerate(zip(QUESTIONS, GOOD, BAD)):
        first = i % 2 == 0
        rows.append({"prompt": q, "response_0": g if first else b,
                     "response_1": b if first else g, "prompt_source": "Alpaca3-70B",
                     "response_0_source": "Alpaca-7B", "response_1_source": "Alpaca-7B",
                     "is_response_0_safe": True, "is_response_1_safe": not first,
                     "response_0_harm_category": {"Endangering National Security": False},
                     "response_1_harm_category": {"Endangering National Security": False},
                     "response_0_severity_level": 0, "response_1_severity_level": 0,
                     "better_response_id": 0 if first else 1,
                     "safer_response_id": 0 if first else 1,
                     "response_0_sha256": "0" * 64, "response_1_sha256": "1" * 64})
    return _parquet(root / "PKU-SafeRLHF" / "data" / "Alpaca-7B" / "train.parquet", rows)


def sharegpt(root: Path) -> Path:
    """ShareGPT dumps: a JSON array of {id, conversations: [{from, value}]}, some with a
    system turn."""
    rows = []
    for i, (q, g) in enumerate(zip(QUESTIONS, GOOD)):
        turns = [{"from": "human", "value": q}, {"from": "gpt", "value": g}]
        if i % 2:
            turns.insert(0, {"from": "system", "value": "You are a helpful assistant."})
        rows.append({"id": f"conv{i}", "conversations": turns})
    return _json(root / "sharegpt.json", rows)


def ultrachat(root: Path) -> Path:
    """HuggingFaceH4/ultrachat_200k: prompt, prompt_id, messages; splits train_sft etc."""
    repo = root / "ultrachat_200k"
    rows = [{"prompt": q, "prompt_id": f"{i:064x}",
             "messages": [U(q), A(g), U("Thanks."), A("You are welcome.")]}
            for i, (q, g) in enumerate(zip(QUESTIONS, GOOD))]
    splits = ("train_sft", "test_sft", "train_gen", "test_gen")
    for split in splits:
        _parquet(repo / "data" / f"{split}-00000-of-00001.parquet", rows)
    _card(repo, {"default": {s: f"data/{s}-*" for s in splits}})
    return repo


def alpaca(root: Path) -> Path:
    """tatsu-lab/alpaca: instruction, input, output, text (the formatted prompt + response)."""
    rows = []
    for i, (q, g) in enumerate(zip(QUESTIONS, GOOD)):
        extra = "Answer briefly." if i % 2 else ""
        text = ("Below is an instruction that describes a task. Write a response that "
                "appropriately completes the request.\n\n### Instruction:\n" + q +
                (f"\n\n### Input:\n{extra}" if extra else "") + f"\n\n### Response:\n{g}")
        rows.append({"instruction": q, "input": extra, "output": g, "text": text})
    return _parquet(root / "alpaca" / "data" / "train-00000-of-00001.parquet", rows)


def alpaca_cleaned(root: Path) -> Path:
    """yahma/alpaca-cleaned: instruction, input, output, no text column (JSON array)."""
    rows = [{"instruction": q, "input": "Answer briefly." if i % 2 else "", "output": g}
            for i, (q, g) in enumerate(zip(QUESTIONS, GOOD))]
    return _json(root / "alpaca_data_cleaned.json", rows)


def gsm8k(root: Path) -> Path:
    """openai/gsm8k: configs main and socratic; question, answer ending in "#### N"."""
    repo = root / "gsm8k"
    rows = [{"question": f"Tom has {a} apples and buys {b} more. How many apples has he?",
             "answer": f"Tom has {a} + {b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}"}
            for a, b in [(2, 3), (4, 1), (5, 5), (1, 1), (3, 6), (2, 2), (7, 1), (0, 4)]]
    for config in ("main", "socratic"):
        _parquet(repo / config / "train-00000-of-00001.parquet", rows)
        _parquet(repo / config / "test-00000-of-00001.parquet", rows[:2])
    _card(repo, {c: {"train": f"{c}/train-*", "test": f"{c}/test-*"}
                 for c in ("main", "socratic")})
    return repo


def kto_mix(root: Path) -> Path:
    """trl-lib/kto-mix-14k: prompt/completion message lists and a boolean label."""
    repo = root / "kto-mix-14k"
    rows = []
    for q, g, b in zip(QUESTIONS, GOOD, BAD):
        rows.append({"prompt": [U(q)], "completion": [A(g)], "label": True})
        rows.append({"prompt": [U(q)], "completion": [A(b)], "label": False})
    _parquet(repo / "data" / "train-00000-of-00001.parquet", rows)
    _parquet(repo / "data" / "test-00000-of-00001.parquet", rows[:4])
    return repo


def openai_chat(root: Path) -> Path:
    """OpenAI chat fine-tuning export: messages with assistant tool_calls (content null), tool
    results, the legacy function role and function_call, per-message weight, tools."""
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}]
    rows = []
    for i, (q, g) in enumerate(zip(QUESTIONS, GOOD)):
        if i % 3 == 0:
            messages = [{"role": "system", "content": "You are a helpful assistant."},
                        {"role": "user", "content": "What is the weather in Paris?"},
                        {"role": "assistant", "content": None, "tool_calls": [{
                            "id": f"call_{i}", "type": "function",
                            "function": {"name": "get_weather",
                                         "arguments": "{\"city\": \"Paris\"}"}}]},
                        {"role": "tool", "tool_call_id": f"call_{i}", "content": "sunny"},
                        {"role": "assistant", "content": "It is sunny in Paris."}]
            rows.append({"messages": messages, "tools": tools})
        elif i % 3 == 1:
            messages = [{"role": "user", "content": q},
                        {"role": "assistant", "content": None,
                         "function_call": {"name": "get_weather",
                                           "arguments": "{\"city\": \"Rome\"}"}},
                        {"role": "function", "name": "get_weather", "content": "rain"},
                        {"role": "assistant", "content": g, "weight": 1}]
            rows.append({"messages": messages, "tools": tools})
        else:
            rows.append({"messages": [{"role": "user", "content": q},
                                      {"role": "assistant", "content": "Hmm.", "weight": 0},
                                      {"role": "user", "content": "Please answer."},
                                      {"role": "assistant", "content": g, "weight": 1}],
                         "tools": tools})
    return _jsonl(root / "openai_export.jsonl", rows)


def orca_dpo_pairs(root: Path) -> Path:
    """Intel/orca_dpo_pairs: system, question, chosen, rejected (strings)."""
    rows = [{"system": "You are an AI assistant." if i % 2 else "", "question": q,
             "chosen": g, "rejected": b} for i, (q, g, b) in enumerate(zip(QUESTIONS, GOOD, BAD))]
    return _parquet(root / "orca_dpo_pairs" / "orca_rlhf.parquet", rows)


def rm_static(root: Path) -> Path:
    """Dahoas/rm-static: prompt is the HH transcript up to "Assistant:", answers separate."""
    rows = [{"prompt": f"\n\nHuman: {q}\n\nAssistant:", "response": f" {g}",
             "chosen": f" {g}", "rejected": f" {b}"} for q, g, b in zip(QUESTIONS, GOOD, BAD)]
    return _parquet(root / "rm-static" / "data" / "train-00000-of-00001.parquet", rows)


def trl_implicit_standard(root: Path) -> Path:
    """TRL's standard preference type with an implicit prompt (strings, no prompt column)."""
    rows = [{"chosen": f"Q: {q} A: {g}", "rejected": f"Q: {q} A: {b}"}
            for q, g, b in zip(QUESTIONS, GOOD, BAD)]
    return _jsonl(root / "trl_implicit.jsonl", rows)


@dataclass
class Layout:
    """A public layout and how a user trains on it: format, algorithm of the 2-step run,
    documented flags, or the convert command (args after PATH) that comes first."""

    name: str
    write: Callable[[Path], Path]
    fmt: str
    algo: str
    flags: tuple[str, ...] = ()
    convert: tuple[str, ...] | None = None
    layout: str = ""  # what `align data inspect` says: form, prompt
    expect: dict[int, dict[str, Any]] = field(default_factory=dict)  # row index -> fields
    train: tuple[str, ...] = ()  # flags of the 2-step run only (the algorithm's own)
    doc: str | None = None  # its row in docs/data-formats.md, "Public datasets" (default: name)

    @property
    def doc_row(self) -> str:
        return self.doc or self.name


H4_PREFS = "HuggingFaceH4/ultrafeedback_binarized (preferences)"
H4_FIRST = {0: {"prompt": [U(QUESTIONS[0])], "chosen": [A(GOOD[0])],
                "rejected": [A(BAD[0])]}}
LAYOUTS = [
    Layout("Anthropic/hh-rlhf", hh_rlhf, "pairwise", "dpo", layout="standard, implicit prompt",
           expect={0: {"prompt": "\n\nHuman: Hello.\n\nAssistant: Hello, how can I help?"
                                 f"\n\nHuman: {QUESTIONS[0]}\n\nAssistant:",
                       "chosen": f" {GOOD[0]}", "rejected": f" {BAD[0]}"},
                   1: {"prompt": f"\n\nHuman: {QUESTIONS[1]}\n\nAssistant:"}}),
    Layout("trl-lib/hh-rlhf-helpful-base", trl_hh_helpful_base, "pairwise", "dpo",
           layout="conversational, explicit prompt"),
    Layout("trl-lib/ultrafeedback_binarized", trl_ultrafeedback, "pairwise", "rm",
           layout="conversational, implicit prompt", expect=H4_FIRST),
    Layout("HuggingFaceH4/ultrafeedback_binarized", h4_ultrafeedback, "pairwise", "dpo",
           flags=("--dataset-split", "train_prefs"), layout="conversational, explicit prompt",
           expect=H4_FIRST, doc=H4_PREFS),
    Layout("HuggingFaceH4/ultrafeedback_binarized (SFT)", h4_ultrafeedback, "sft", "sft",
           flags=("--dataset-split", "train_sft"), layout="conversational",
           expect={0: {"messages": [U(QUESTIONS[0]), A(GOOD[0])]}}),
    Layout("HuggingFaceH4/ultrafeedback_binarized (saved)", h4_ultrafeedback_saved, "pairwise",
           "dpo", flags=("--dataset-split", "train_prefs"),
           layout="conversational, explicit prompt", expect=H4_FIRST, doc=H4_PREFS),
    Layout("HuggingFaceH4/ultrafeedback_binarized (jsonl)", h4_ultrafeedback_jsonl, "pairwise",
           "simpo", layout="conversational, explicit prompt", expect=H4_FIRST, doc=H4_PREFS),
    Layout("HuggingFaceH4/ultrafeedback_binarized (json)", h4_ultrafeedback_json, "pairwise",
           "orpo", layout="conversational, explicit prompt", expect=H4_FIRST, doc=H4_PREFS),
    Layout("HuggingFaceH4/ultrafeedback_binarized (csv)", h4_ultrafeedback_csv, "pairwise",
           "cpo", layout="conversational, explicit prompt", expect=H4_FIRST, doc=H4_PREFS),
    Layout("openbmb/UltraFeedback", ultrafeedback_raw, "pairwise", "dpo",
           convert=("--to", "pairwise"), layout="standard, explicit prompt",
           expect={0: {"prompt": QUESTIONS[0], "chosen": GOOD[0], "rejected": BAD[-1],
                       "margin": 3.25}}),
    Layout("stanfordnlp/SHP", shp, "pairwise", "rm", convert=("--to", "pairwise"),
           layout="standard, explicit prompt",
           expect={i: {"prompt": QUESTIONS[i], "chosen": GOOD[i], "rejected": BAD[i]}
                   for i in (0, 1)}),
    Layout("PKU-Alignment/PKU-SafeRLHF", pku_saferlhf, "pairwise", "dpo",
           convert=("--to", "pairwise"), layout="standard, explicit prompt",
           expect={i: {"prompt": QUESTIONS[i], "chosen": GOOD[i], "rejected": BAD[i]}
                   for i in (0, 1)}),
    Layout("ShareGPT dumps", sharegpt, "sft", "sft", convert=("--to", "sft"),
           layout="conversational",
           expect={1: {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                                    {"role": "user", "content": QUESTIONS[1]},
                                    {"role": "assistant", "content": GOOD[1]}]}}),
    Layout("HuggingFaceH4/ultrachat_200k", ultrachat, "sft", "sft",
           flags=("--dataset-split", "train_sft"), layout="conversational"),
    Layout("tatsu-lab/alpaca", alpaca, "sft", "sft", layout="standard"),
    Layout("yahma/alpaca-cleaned (Alpaca without `text`)", alpaca_cleaned, "sft", "sft",
           layout="conversational",
           expect={1: {"prompt": [U(f"{QUESTIONS[1]}\n\nAnswer briefly.")],
                       "completion": [A(GOOD[1])]}}),
    Layout("openai/gsm8k", gsm8k, "prompt", "grpo",
           flags=("--dataset-config", "main", "--columns", "prompt=question,solution=answer"),
           layout="standard, explicit prompt",
           train=("--reward-funcs", "accuracy", "--num-generations", "2",
                  "--max-completion-length", "4", "--per-device-train-batch-size", "2")),
    Layout("trl-lib/kto-mix-14k", kto_mix, "unpaired", "kto",
           layout="conversational, explicit prompt"),
    Layout("OpenAI chat fine-tuning export", openai_chat, "sft", "sft", layout="conversational",
           expect={1: {"messages": [
               U(QUESTIONS[1]),
               {"role": "assistant", "content": None, "tool_calls": [
                   {"type": "function", "function": {"name": "get_weather",
                                                     "arguments": {"city": "Rome"}}}]},
               {"role": "tool", "name": "get_weather", "content": "rain"},
               {"role": "assistant", "content": GOOD[1], "weight": 1}]}}),
    Layout("Intel/orca_dpo_pairs", orca_dpo_pairs, "pairwise", "dpo",
           flags=("--columns", "prompt=question"), layout="conversational, explicit prompt",
           expect={1: {"prompt": [{"role": "system", "content": "You are an AI assistant."},
                                  {"role": "user", "content": QUESTIONS[1]}],
                       "chosen": [{"role": "assistant", "content": GOOD[1]}]}}),
    Layout("Dahoas/rm-static", rm_static, "pairwise", "rm", layout="standard, explicit prompt"),
    Layout("TRL's standard preference type, implicit prompt", trl_implicit_standard,
           "pairwise", "dpo",
           layout="standard, implicit prompt",
           expect={0: {"prompt": f"Q: {QUESTIONS[0]} A:", "chosen": f" {GOOD[0]}"}}),
]
