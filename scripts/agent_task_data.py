"""The real-model agent task's data as files, and its accuracy on `align generate` output.

    python scripts/agent_task_data.py DIR                       # DIR/sft.jsonl, train/dev/test.jsonl
    python scripts/agent_task_data.py DIR --score ANSWERS.jsonl  # accuracy of generated answers

The task (tests/real/agent_task.py): multiply large numbers with a
``multiply`` tool. ``sft.jsonl`` holds tool-call transcripts of plain questions (prompt /
completion, OpenAI message layout, with the ``tools`` column TRL's SFT reads so that the
prompt lists the tool as GRPO's does); ``train.jsonl``, ``dev.jsonl`` and ``test.jsonl`` hold
word problems with their ``answer`` column, for GRPO and for scoring. ``--score`` reads an
``align generate --tools ... --output`` file (one transcript per row) and prints the share of
rows whose final answer is the product, with ``exact_answer`` from recipes/agents/arithmetic.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.real import agent_task  # noqa: E402  (plain data and pure functions)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def write_data(out: Path) -> dict[str, Path]:
    """Every file of the task under ``out``; returns {split: path}."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"sft": out / "sft.jsonl"}
    tools = json.dumps([tool_schema()])
    write_jsonl(files["sft"], [agent_task.transcript(p, tools) for p in agent_task.problems("sft")])
    for split in ("train", "dev", "test"):
        files[split] = out / f"{split}.jsonl"
        write_jsonl(files[split], [agent_task.prompt_row(p) for p in agent_task.problems(split)])
    return files


def tool_schema() -> dict:
    """The schema of ``multiply`` as chat templates show it (transformers' get_json_schema,
    as TRL and align build it from the function)."""
    from transformers.utils import get_json_schema

    return get_json_schema(load_reward().multiply)


def load_reward():
    """``exact_answer`` and ``final_text`` of the recipe's tool file (plain Python, no model)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("arithmetic",
                                                  ROOT / "recipes" / "agents" / "arithmetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def score_rows(rows: list[dict], answers: list[int]) -> dict[str, float]:
    """Accuracy, tool calls per row and the share of rows with at least one call, of
    transcripts (each row's ``completion``/``messages``/``response``) against ``answers``."""
    arith = load_reward()
    completions = [transcript_of(r) for r in rows]
    rewards = arith.exact_answer(None, completions, answer=answers)
    calls = [sum(len(m.get("tool_calls") or []) for m in c if isinstance(m, dict))
             if isinstance(c, list) else 0 for c in completions]
    n = max(1, len(rows))
    return {"accuracy": sum(rewards) / n, "tool_calls": sum(calls) / n,
            "used_tool": sum(c > 0 for c in calls) / n, "rows": len(rows)}


def transcript_of(row: dict):
    """The generated turns of one `align generate` output row."""
    for key in ("completion", "messages", "response"):
        if key in row:
            return row[key]
    raise KeyError(f"no completion/messages/response in {sorted(row)}")


def answers_of(rows: list[dict], split: str | None = None) -> list[int]:
    """Each transcript's product, found by its question (the prompt's last user turn) among
    the task's problems, so that an output is never scored against another split's answers
    by position. ``split`` also checks that every row comes from that split."""
    splits = [split] if split else ["train", "dev", "test"]
    known = {p.text: p.answer for s in splits for p in agent_task.problems(s)}
    answers = []
    for i, row in enumerate(rows, 1):
        prompt = row.get("prompt")
        text = ([m.get("content") for m in prompt if m.get("role") == "user"] or [None])[-1] \
            if isinstance(prompt, list) else prompt
        if text not in known:
            where = f"the {split} split" if split else "the task"
            sys.exit(f"row {i}: its question is not one of {where}'s problems: {text!r:.80}")
        answers.append(known[text])
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--score", type=Path, help="an `align generate` output to score")
    parser.add_argument("--split", choices=("train", "dev", "test"),
                        help="check that every scored row comes from this split (the answers "
                             "are found by each row's question either way)")
    args = parser.parse_args()
    if args.score:
        rows = [json.loads(line) for line in args.score.read_text(encoding="utf-8").splitlines()
                if line.strip()]
        print(json.dumps(score_rows(rows, answers_of(rows, args.split))))
        return
    for split, path in write_data(args.out).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
