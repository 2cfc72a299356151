"""Built-in reward functions: accuracy against a reference answer, a format regex, a target length.

Each takes TRL's reward-function arguments ``(prompts, completions, **columns)`` and returns one
float (or ``None``: not applicable) per completion. Completions are plain strings (standard
data) or lists of messages (conversational data); :func:`completion_text` reads both.
This module imports only the standard library, so ``align --help`` stays fast.
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

BUILTIN_REWARDS = ("accuracy", "format", "length")
# DeepSeek-R1's reasoning format (think, then answer): the usual target of a format reward.
DEFAULT_FORMAT_PATTERN = r"<think>.*?</think>\s*<answer>.*?</answer>"

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*(.*)", re.IGNORECASE)
_DECIMAL = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")
_FRACTION = re.compile(r"([-+]?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")
_LATEX_FRAC = re.compile(r"([-+]?)\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")
_ANY_NUMBER = re.compile(r"[-+]?\\[dt]?frac\{[^{}]+\}\{[^{}]+\}"  # \frac{1}{2}
                         r"|[-+]?\d+(?:\.\d+)?\s*/\s*\d+(?:\.\d+)?"  # 1/2
                         r"|[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.\d+|\d+)(?:[eE][-+]?\d+)?")
_TEXT_WRAPPER = re.compile(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}")


def completion_text(completion: Any) -> str:
    """The text of one completion: a string as is; for messages, the last assistant turn's text."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)) and completion:
        turns = [m for m in completion if isinstance(m, dict)]
        chosen = [m for m in turns if m.get("role") == "assistant"] or turns
        content = chosen[-1].get("content", "") if chosen else ""
        if isinstance(content, list):  # content parts: keep the text ones
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "")
    return "" if completion is None else str(completion)


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, braces matched (``\\boxed{\\frac{1}{2}}`` works)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None  # unbalanced: the answer was cut off


def extract_answer(text: str) -> str | None:
    """The final answer marked in ``text``, or None when nothing marks one.

    Markers, first found wins: the last ``\\boxed{}``, the last ``<answer>...</answer>``, text after
    the last GSM8K ``####``, the rest of the line after the last "answer:" / "answer is".
    """
    boxed = _last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    lines = [m.group(1) for m in _ANSWER_LINE.finditer(text)]
    if lines:
        return lines[-1].strip()
    return None


def _strip_decoration(s: str) -> str:
    s = _TEXT_WRAPPER.sub(r"\1", s.strip())
    s = s.replace("\\$", "").replace("$", "").replace("\\!", "").replace("\\,", "")
    return s.strip().rstrip(".").strip()


def parse_number(s: Any) -> float | None:
    """``s`` as a number when all of it is one, else None.

    Accepted: ``1,000``, ``.5``, ``1e-3``, ``1/2``, ``\\frac{1}{2}``, ``50%`` (read as 50), ``$3``.
    """
    if isinstance(s, bool):
        return None
    if isinstance(s, (int, float)):
        return float(s)
    if not isinstance(s, str):
        return None
    s = _strip_decoration(s).rstrip("%").strip()
    if not s:
        return None
    if m := _LATEX_FRAC.fullmatch(s):
        num, den = parse_number(m.group(2)), parse_number(m.group(3))
        if num is None or not den:
            return None
        return (-1.0 if m.group(1) == "-" else 1.0) * num / den
    if m := _FRACTION.fullmatch(s):
        den = float(m.group(2))
        return float(m.group(1)) / den if den else None
    if _DECIMAL.fullmatch(s) and any(c.isdigit() for c in s):
        try:
            return float(s.replace(",", ""))
        except ValueError:
            return None
    return None


def last_number(text: str) -> float | None:
    """The last number written anywhere in ``text`` (fractions and ``\\frac`` included)."""
    found = _ANY_NUMBER.findall(text)
    for candidate in reversed(found):
        value = parse_number(candidate)
        if value is not None:
            return value
    return None


def normalize_text(s: str) -> str:
    """Lowercase, no surrounding LaTeX/punctuation, single spaces: for non-numeric answers."""
    return " ".join(_strip_decoration(s).lower().split())


def answers_match(completion: str, solution: Any, tol: float = 1e-6) -> bool:
    """Does the final answer in ``completion`` equal ``solution``?

    Numbers compare as numbers (``1,000`` == ``1000``, ``0.5`` == ``.5`` == ``1/2``, within
    ``tol``); anything else compares as normalised text. A completion with no answer marker
    (see :func:`extract_answer`) is judged by its last number, or by all of its text.
    """
    gold_text = str(solution)
    gold = extract_answer(gold_text)
    gold = gold_text.strip() if gold is None else gold
    pred = extract_answer(completion)
    gold_num = parse_number(gold)
    if gold_num is not None:
        if pred is None:
            pred_num = last_number(completion)
        else:
            pred_num = parse_number(pred)
            pred_num = last_number(pred) if pred_num is None else pred_num
        return pred_num is not None and math.isclose(pred_num, gold_num, rel_tol=tol, abs_tol=tol)
    pred = completion if pred is None else pred
    return normalize_text(pred) == normalize_text(gold)


def accuracy(prompts: Sequence[Any], completions: Sequence[Any],
             solution: Sequence[Any] | None = None, **_: Any) -> list[float | None]:
    """1.0 when the completion's final answer equals the row's ``solution``, else 0.0.

    Rows without a solution (missing or null) get None, which TRL leaves out of the reward.
    """
    if solution is None:
        return [None] * len(completions)
    return [None if sol is None or (isinstance(sol, str) and not sol.strip())
            else float(answers_match(completion_text(c), sol))
            for c, sol in zip(completions, solution)]


class FormatReward:
    """1.0 when the whole completion (surrounding whitespace stripped) matches ``pattern``.

    The regex runs with ``re.DOTALL`` and must match all of the text (``re.fullmatch``); write
    ``.*X.*`` to reward completions that merely contain ``X``.
    """

    __name__ = "format"  # the name TRL logs it under: rewards/format/mean

    def __init__(self, pattern: str = DEFAULT_FORMAT_PATTERN) -> None:
        self.pattern = pattern
        self.regex = re.compile(pattern, re.DOTALL)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 **_: Any) -> list[float]:
        return [float(self.regex.fullmatch(completion_text(c).strip()) is not None)
                for c in completions]


class LengthReward:
    """``max(0, 1 - |L - target| / target)`` for a completion of L tokens: 1 at the target,
    falling linearly to 0 at zero tokens and at twice the target.

    L counts the completion's token ids as the trainer passes them (``completion_ids``, the
    same count as TRL's ``completions/mean_length``).
    """

    __name__ = "length"

    def __init__(self, target: int) -> None:
        if target <= 0:
            raise ValueError(f"--length-target must be a positive number of tokens, got {target}")
        self.target = target

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any],
                 completion_ids: Sequence[Sequence[int]] | None = None,
                 **_: Any) -> list[float]:
        if completion_ids is None:
            raise ValueError("the length reward counts tokens and needs completion_ids "
                             "(TRL's trainers pass them)")
        return [max(0.0, 1.0 - abs(len(ids) - self.target) / self.target)
                for ids in completion_ids]


def make_builtin(name: str, *, format_pattern: str = DEFAULT_FORMAT_PATTERN,
                 length_target: int | None = None) -> Any:
    """The built-in reward ``name`` configured from its flags."""
    if name == "accuracy":
        return accuracy
    if name == "format":
        return FormatReward(format_pattern)
    if name == "length":
        if length_target is None:
            raise ValueError("--reward-funcs length needs --length-target N (tokens)")
        return LengthReward(length_target)
    raise ValueError(f"unknown reward function {name!r}; choose from "
                     f"[{', '.join(BUILTIN_REWARDS)}]")
