"""The real-model agent task: multiply large numbers, which a 135M model can only do with a tool.

SmolLM2-135M-Instruct cannot multiply a 3-4 digit number by a 2-3 digit one in its head (its
accuracy without a tool is about 0). With ``multiply(a, b)`` (recipes/agents/arithmetic.py) the
task is: read the two factors out of the question, call the tool, and copy its result into the
final answer.

- **SFT transcripts** teach the format on *plain* questions only ("What is 4821 * 37?"): user ->
  assistant with a ``multiply`` tool call -> tool result -> "The answer is N." (OpenAI layout,
  arguments as a dict).
- **RL, dev and test prompts** are *word problems* ("A crate weighs 212 kg and holds 4821
  bottles. How many bottles are in 37 crates?"), most with a third number that is not a
  factor, a kind no transcript shows: the SFT model has to transfer what it learnt and pick
  the right two numbers, and GRPO, rewarded by the rule below, teaches it on these prompts. Dev and test
  share the templates but not the numbers; settings are chosen on dev, test is scored once.

Gold (``exact_answer`` in recipes/agents/arithmetic.py): 1 when the last integer of the final
assistant message equals a * b, else 0; accuracy is its mean over the prompts.

Everything here is plain data and pure functions: no model, no network.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

PLAIN = ("What is {a} * {b}?", "Compute {a} times {b}.", "Multiply {a} by {b}.",
         "What is the product of {a} and {b}?")
# Word problems, most with a third number that is not a factor (a weight, a year, a count):
# the model must pick the two factors, which no SFT transcript shows.
WORD = (
    "A crate weighs {d} kg and holds {a} bottles. How many bottles are in {b} crates?",
    "Each ticket costs {a} dollars. On day {d} of the fair, {b} tickets were sold. How many "
    "dollars did they bring in?",
    "A train travels {a} km every day. How many km does it travel in {b} days?",
    "A farm has {b} fields with {a} trees in each, and {d} sheep. How many trees are there?",
    "A printer bought in {y} prints {a} pages an hour. How many pages does it print in {b} "
    "hours?",
    "A box contains {a} beads. How many beads do {b} boxes contain?",
)
SYSTEM = "You are a helpful assistant. Use the multiply tool for every multiplication."
SPLIT_SEEDS = {"sft": 11, "train": 12, "dev": 13, "test": 14}
SIZES = {"sft": 256, "train": 256, "dev": 48, "test": 100}


@dataclass(frozen=True)
class Problem:
    text: str
    a: int
    b: int

    @property
    def answer(self) -> int:
        return self.a * self.b


def factors(rng: random.Random) -> tuple[int, int]:
    """A 3-4 digit and a 2-3 digit factor (the product has 5-7 digits)."""
    return rng.randint(100, 9999), rng.randint(12, 999)


def problems(split: str, n: int | None = None) -> list[Problem]:
    """The split's problems: plain questions for ``sft``, word problems otherwise; every split
    draws its numbers from its own seed, so no two splits share a problem by construction
    (and a rare repeat of both factors is dropped)."""
    rng = random.Random(SPLIT_SEEDS[split])
    templates = PLAIN if split == "sft" else WORD
    seen = {(p.a, p.b) for s in SPLIT_SEEDS if s != split and SPLIT_SEEDS[s] < SPLIT_SEEDS[split]
            for p in problems(s)}
    out: list[Problem] = []
    count = SIZES[split] if n is None else n
    while len(out) < count:
        a, b = factors(rng)
        d, y = rng.randint(12, 999), rng.randint(1980, 2024)  # distractors
        template = templates[len(out) % len(templates)]
        if (a, b) in seen:
            continue
        seen.add((a, b))
        out.append(Problem(template.format(a=a, b=b, d=d, y=y), a, b))
    return out


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]


def transcript(p: Problem, tools: str | None = None) -> dict[str, Any]:
    """One SFT row in the prompt/completion layout: the tool call, its result, the answer.
    ``tools``: the JSON list of tool schemas the prompt shows (TRL's ``tools`` column), so
    that SFT renders the prompt GRPO and ``align generate --tools`` render."""
    call = {"type": "function", "function": {"name": "multiply",
                                             "arguments": {"a": p.a, "b": p.b}}}
    return {"prompt": chat(p.text),
            "completion": [{"role": "assistant", "content": "", "tool_calls": [call]},
                           {"role": "tool", "name": "multiply", "content": str(p.answer)},
                           {"role": "assistant", "content": f"The answer is {p.answer}."}],
            **({"tools": tools} if tools else {})}


def prompt_row(p: Problem) -> dict[str, Any]:
    """One RL / evaluation row: the chat prompt and the ``answer`` column the reward reads."""
    return {"prompt": chat(p.text), "answer": p.answer}
