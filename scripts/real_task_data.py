"""The real-model task's data as files, and its gold measure on `align generate` output.

    python scripts/real_task_data.py DIR                          # DIR/sft.jsonl, facts.txt, held_out.txt
    python scripts/real_task_data.py DIR --pairs-from BASE.jsonl   # DIR/pairwise.jsonl
    python scripts/real_task_data.py DIR --score ANSWERS.jsonl     # gold of each model's answers

The task (tests/real/task.py; docs/real-model.md): answer briefly, with substance. The training
questions with their concise answers become ``sft.jsonl``; ``facts.txt`` and ``held_out.txt``
hold the training and the held-out prompts for ``align generate``. ``--pairs-from`` takes the
base model's greedy answers to ``facts.txt`` (``align generate ... --max-new-tokens 96 -o
BASE.jsonl``) and writes the preference pairs as the real suite builds them: the concise
answer chosen, the base model's own answer rejected where it fails the gold measure.
``--score`` prints the gold measure of the answers in an ``align generate --prompts
held_out.txt`` output (both models' with ``--compare``). Used by docs/inference.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.real import task  # noqa: E402  (the task is plain data and pure functions)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def write_prompts(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "sft.jsonl", [{"prompt": task.chat(q),
                                     "completion": [{"role": "assistant", "content": a}]}
                                    for q, a in task.FACTS])
    (out / "facts.txt").write_text("".join(q + "\n" for q, _ in task.FACTS), encoding="utf-8")
    (out / "held_out.txt").write_text("".join(h.prompt + "\n" for h in task.HELD_OUT),
                                      encoding="utf-8")
    print(f"wrote {out}/sft.jsonl ({len(task.FACTS)} examples), facts.txt, held_out.txt "
          f"({len(task.HELD_OUT)} prompts)")


def write_pairs(out: Path, base: Path) -> None:
    answers = {r["prompt"]: r for r in map(json.loads, base.read_text().splitlines())}
    pairs = []
    for question, good in task.FACTS:
        r = answers.get(question)
        if r is not None and task.gold(r["response"], r["finished"]) < 1.0:
            pairs.append({"prompt": task.chat(question),
                          "chosen": [{"role": "assistant", "content": good}],
                          "rejected": [{"role": "assistant", "content": r["response"]}]})
    write_jsonl(out / "pairwise.jsonl", pairs)
    print(f"wrote {out}/pairwise.jsonl ({len(pairs)} pairs of {len(task.FACTS)} questions)")


def score(answers: Path) -> None:
    rows = list(map(json.loads, answers.read_text().splitlines()))
    items = {h.prompt: h for h in task.HELD_OUT}
    for prefix in ("", "compare_"):
        if f"{prefix}response" not in rows[0]:
            continue
        golds, concise, words = [], [], []
        for r in rows:
            h = items[r["prompt"]]
            text, ended = r[f"{prefix}response"], r[f"{prefix}finished"]
            golds.append(task.gold(text, ended, h.keywords, h.prompt))
            concise.append(task.concise(text, ended, h.keywords, h.prompt))
            words.append(len(task.words(text)))
        n = len(rows)
        print(f"{rows[0][f'{prefix}model']}: gold {sum(golds) / n:.2f}, concise answers "
              f"{sum(concise) / n:.0%}, mean words {sum(words) / n:.0f} ({n} held-out prompts)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--pairs-from", type=Path, metavar="BASE.jsonl")
    parser.add_argument("--score", type=Path, metavar="ANSWERS.jsonl")
    args = parser.parse_args()
    if args.pairs_from:
        write_pairs(args.out, args.pairs_from)
    elif args.score:
        score(args.score)
    else:
        write_prompts(args.out)


if __name__ == "__main__":
    main()
