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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--score", type=Path, help="an `align generate` output to score")
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"),
                        help="the split whose answers --score compares against")
    args = parser.parse_args()
    if args.score:
        rows = [json.loads(line) for line in args.score.read_text(encoding="utf-8").splitlines()
                if line.strip()]
        answers = [p.answer for p in agent_task.problems(args.split)][:len(rows)]
        print(json.dumps(score_rows(rows, answers)))
        return
    for split, path in write_data(args.out).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
