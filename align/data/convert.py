"""Conversions of public dataset layouts into align's formats (``align data convert``).

Modes (``--from``; ``auto`` recognises them from the first record):

- ``sharegpt``: ``conversations`` of ``{"from": "human"|"gpt"|"system", "value"}`` turns ->
  ``messages`` (sft); with LLaMA-Factory's ``chosen``/``rejected`` turns -> pairwise.
- ``ab``: two answers and a label that says which is better -> pairwise. Stanford SHP
  (``history``, ``human_ref_A``, ``human_ref_B``, ``labels`` 1 = A preferred) and PKU-SafeRLHF
  (``prompt``, ``response_0``, ``response_1``, ``better_response_id`` 0 = response_0) are
  recognised; other files name their columns with ``--a``, ``--b``, ``--label``, ``--a-wins``.
- ``rated``: a list of completions with scores -> pairwise. Raw UltraFeedback
  (``instruction``, ``completions`` of ``{"response", "fine-grained_score", "overall_score",
  ...}``), or ``{"prompt", "completions": [best, ..., worst]}`` / with ``"scores"``.
- ``pairwise`` -> unpaired (KTO): each pair gives a desirable and an undesirable example.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Iterable, Iterator

from align.data.records import DataError, Record, describe

PAIRINGS = ("best-worst", "adjacent", "all")
MODES = ("auto", "sharegpt", "ab", "rated", "pairwise")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "bot": "assistant", "model": "assistant", "chatgpt": "assistant",
                  "system": "system", "observation": "tool", "tool": "tool",
                  "function": "tool", "function_call": "assistant"}
# Score keys of a rated completion, in order of preference; raw UltraFeedback's
# "fine-grained_score" (mean of the four aspect ratings) is what HuggingFaceH4's binarized
# version ranked by; its "overall_score" had a known bug (UltraFeedback update of 2023-12-29).
SCORE_KEYS = ("fine-grained_score", "score", "overall_score", "rating", "reward")
TEXT_KEYS = ("response", "text", "completion", "content", "output")


@dataclass
class ABColumns:
    """Where the two answers and the label are, and which label values mean A (B) is better."""

    prompt: str = "prompt"
    a: str = "response_0"
    b: str = "response_1"
    label: str = "better_response_id"
    a_wins: str = "0"
    b_wins: str | None = None  # default: the other of 0/1

    def __post_init__(self) -> None:
        self.a_wins = _token(self.a_wins)
        if self.b_wins is None:
            if self.a_wins not in ("0", "1"):
                raise ValueError(f"--a-wins {self.a_wins!r} is not 0 or 1: give --b-wins too")
            self.b_wins = "1" if self.a_wins == "0" else "0"
        self.b_wins = _token(self.b_wins)

    def describe(self) -> str:
        return (f"prompt '{self.prompt}', answers '{self.a}' (A) and '{self.b}' (B), label "
                f"'{self.label}': {self.a_wins} = A preferred, {self.b_wins} = B preferred")


def _token(value: Any) -> str:
    """A label value as text: True -> "1", 1.0 -> "1", " A " -> "a"."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().lower()


SHP = ABColumns("history", "human_ref_A", "human_ref_B", "labels", "1")
PKU = ABColumns("prompt", "response_0", "response_1", "better_response_id", "0")


def detect_mode(data: dict[str, Any]) -> str | None:
    """The conversion mode a record's layout needs, or None."""
    conv = data.get("conversations")
    if isinstance(conv, list) and conv and isinstance(conv[0], dict) and "from" in conv[0]:
        return "sharegpt"
    if {"human_ref_A", "human_ref_B"} <= set(data) or {"response_0", "response_1"} <= set(data):
        return "ab"
    if isinstance(data.get("completions"), list):
        return "rated"
    if {"chosen", "rejected"} <= set(data):
        return "pairwise"
    return None


def ab_columns(data: dict[str, Any]) -> ABColumns | None:
    """The known A/B layout of a record (SHP, PKU-SafeRLHF), or None."""
    if {"human_ref_A", "human_ref_B"} <= set(data):
        return SHP
    if {"response_0", "response_1"} <= set(data):
        return PKU
    return None


# ---- ShareGPT ----------------------------------------------------------------------------

def _turns(turns: Any, where: str, errors: list[str]) -> list[dict[str, Any]] | None:
    if not isinstance(turns, list) or not turns:
        errors.append(f"{where}: expected a non-empty list of {{\"from\", \"value\"}} turns, "
                      f"found {describe(turns)}")
        return None
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            errors.append(f"{where}[{i}]: expected {{\"from\": ..., \"value\": ...}}, "
                          f"found {describe(turn)}")
            return None
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            errors.append(f"{where}[{i}].from: unknown speaker {turn['from']!r}; expected one of "
                          f"{', '.join(sorted(SHAREGPT_ROLES))}")
            return None
        out.append({"role": role, "content": turn["value"]})
    return out


def sharegpt_row(data: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """One ShareGPT record -> ``{"messages": [...]}`` (sft), or a pair when the record has
    LLaMA-Factory's ``chosen``/``rejected`` turns. A top-level ``system`` string becomes the
    first message. Other columns are kept."""
    errors: list[str] = []
    messages = _turns(data.get("conversations"), "conversations", errors)
    if messages is None:
        return None, errors
    system = data.get("system")
    if isinstance(system, str) and system.strip() and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": system})
    extra = {k: v for k, v in data.items() if k not in ("conversations", "system", "chosen",
                                                         "rejected")}
    if isinstance(data.get("chosen"), dict) or isinstance(data.get("rejected"), dict):
        replies = [_turns([data.get(k)], k, errors) for k in ("chosen", "rejected")]
        if errors:
            return None, errors
        return {**extra, "prompt": messages, "chosen": replies[0], "rejected": replies[1]}, []
    return {**extra, "messages": messages}, []


# ---- two answers and a label -------------------------------------------------------------

def ab_row(data: dict[str, Any], cols: ABColumns) -> tuple[dict[str, Any] | None, list[str]]:
    """One record with two answers and a label -> a chosen/rejected pair. A label that names
    neither answer (a tie, a missing value) is an error: it carries no preference."""
    errors = [f"{k}: missing column '{c}'" for k, c in
              (("prompt", cols.prompt), ("a", cols.a), ("b", cols.b), ("label", cols.label))
              if c not in data]
    if errors:
        return None, errors
    label = data[cols.label]
    token = None if label is None else _token(label)
    if token not in (cols.a_wins, cols.b_wins):
        return None, [f"{cols.label}: expected {cols.a_wins} (A preferred) or {cols.b_wins} "
                      f"(B preferred), found {describe(label)}"]
    a, b = data[cols.a], data[cols.b]
    chosen, rejected = (a, b) if token == cols.a_wins else (b, a)
    extra = {k: v for k, v in data.items() if k not in (cols.prompt, cols.a, cols.b, cols.label)}
    return {**extra, "prompt": data[cols.prompt], "chosen": chosen, "rejected": rejected}, []


# ---- rated / ranked lists ----------------------------------------------------------------

def _completion_text(c: Any) -> Any:
    if isinstance(c, dict):
        return next((c[k] for k in TEXT_KEYS if k in c), None)
    return c


def _completion_score(c: Any, score_key: str | None) -> Any:
    if not isinstance(c, dict):
        return None
    if score_key:
        return c.get(score_key)
    return next((c[k] for k in SCORE_KEYS if k in c), None)


def rated_pairs(data: dict[str, Any], pairs: str = "best-worst", score_key: str | None = None
                ) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Turn one ranked or rated record into preference pairs.

    Input: ``{"prompt" (or "instruction"), "completions": [...]}`` where completions are
    strings (list order is the rank, best first, unless ``"scores"`` gives one number per
    completion, higher is better) or objects with the text in ``response`` (or text,
    completion, content, output) and a score (``score_key``, default the first of
    fine-grained_score, score, overall_score, rating, reward).

    ``pairs``: ``best-worst`` (one pair: top vs bottom), ``adjacent`` (rank i vs i+1),
    ``all`` (every ordered pair, n(n-1)/2 per record). Ties give no pair. Returns
    ``(rows, [(field, message), ...])``.
    """
    if pairs not in PAIRINGS:
        raise ValueError(f"--pairs {pairs!r} is not valid; choose from [{', '.join(PAIRINGS)}]")
    completions = data.get("completions")
    if not isinstance(completions, list) or len(completions) < 2:
        return [], [("completions", f"expected a list of at least 2 completions, "
                                    f"found {describe(completions)}")]
    texts = [_completion_text(c) for c in completions]
    if any(not isinstance(t, (str, list)) for t in texts):
        return [], [("completions", "expected each completion to be text (or an object with "
                                    f"its text in one of {', '.join(TEXT_KEYS)})")]
    scores = data.get("scores")
    if scores is None and isinstance(completions[0], dict):
        scores = [_completion_score(c, score_key) for c in completions]
        if any(s is None for s in scores):
            key = score_key or " / ".join(SCORE_KEYS)
            return [], [("completions", f"expected a score ({key}) in every completion")]
        scores = [_number(s) for s in scores]
    if scores is not None:
        if (not isinstance(scores, list) or len(scores) != len(texts)
                or any(isinstance(s, bool) or not isinstance(s, (int, float)) for s in scores)):
            return [], [("scores", f"expected {len(texts)} numbers (one per completion), "
                                   f"found {describe(scores)}")]
        order = sorted(range(len(texts)), key=lambda i: -scores[i])
    else:
        order = list(range(len(texts)))
    ranked = [texts[i] for i in order]
    ranked_scores = [scores[i] for i in order] if scores is not None else None
    if pairs == "best-worst":
        index_pairs = [(0, len(ranked) - 1)]
    elif pairs == "adjacent":
        index_pairs = [(i, i + 1) for i in range(len(ranked) - 1)]
    else:
        index_pairs = list(combinations(range(len(ranked)), 2))
    prompt_key = "prompt" if "prompt" in data else "instruction"
    extra = {k: v for k, v in data.items()
             if k not in ("prompt", "instruction", "completions", "scores", "models")}
    rows = []
    for hi, lo in index_pairs:
        if ranked_scores is not None and ranked_scores[hi] == ranked_scores[lo]:
            continue  # a tie carries no preference
        row = {"prompt": data.get(prompt_key), "chosen": ranked[hi], "rejected": ranked[lo]}
        if ranked_scores is not None:
            row["margin"] = float(ranked_scores[hi] - ranked_scores[lo])
        rows.append({**extra, **row})
    return rows, []


def _number(value: Any) -> Any:
    if isinstance(value, str):  # raw UltraFeedback stores some ratings as text ("4")
        try:
            return float(value)
        except ValueError:
            return value
    return value


def pairwise_to_unpaired(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Split each validated pair into a desirable and an undesirable KTO example."""
    for row in rows:
        extra = {k: v for k, v in row.items() if k not in ("chosen", "rejected", "margin")}
        yield {**extra, "completion": row["chosen"], "label": True}
        yield {**extra, "completion": row["rejected"], "label": False}


# ---- the `align data convert` pipeline ---------------------------------------------------

TARGETS = {"sharegpt": ("sft", "pairwise"), "ab": ("pairwise",), "rated": ("pairwise",),
           "pairwise": ("unpaired",)}


@dataclass
class Converted:
    """What :func:`convert_source` did: the mode, how it read the input, counts, errors."""

    mode: str
    target: str
    how: str
    records: int = 0
    rows: int = 0
    bad: int = 0
    errors: list[DataError] = field(default_factory=list)


class _Converter:
    """One conversion plan, applied record by record; every output row is validated."""

    def __init__(self, first: dict[str, Any], name: str, *, mode: str, to: str | None,
                 ab: ABColumns | None, pairs: str, score_key: str | None) -> None:
        from align.data.formats import Validator
        from align.errors import AlignError

        if mode == "auto":
            mode = detect_mode(first) or ""
            if not mode:
                raise AlignError(f"{name}: cannot tell which conversion the first record needs "
                                 f"(columns: {', '.join(first)}); name it with --from "
                                 f"({', '.join(MODES[1:])})")
        targets = TARGETS[mode]
        if mode == "sharegpt" and to is None:
            to = "pairwise" if isinstance(first.get("chosen"), dict) else "sft"
        target = to or targets[0]
        if target not in targets:
            raise AlignError(f"--from {mode} converts to {' or '.join(targets)}, not --to {target}")
        self.ab = ab
        if mode == "ab":
            self.ab = ab or ab_columns(first)
            if self.ab is None:
                raise AlignError(f"{name}: name the two answers and the label with --a, --b, "
                                 "--label and --a-wins (e.g. --a answer_a --b answer_b --label "
                                 "preferred --a-wins 0)")
        how = {"ab": f"two answers and a label: {self.ab.describe() if self.ab else ''}",
               "sharegpt": "ShareGPT turns: human -> user, gpt -> assistant, system -> system",
               "rated": f"rated/ranked completions, {pairs} pairs"
                        + (f" by '{score_key}'" if score_key else ""),
               "pairwise": "each pair -> a desirable and an undesirable example"}[mode]
        self.report = Converted(mode, target, how)
        self.pairs, self.score_key = pairs, score_key
        self.output_check = Validator(target, name)
        self.input_check = Validator("pairwise", name) if mode == "pairwise" else None

    def rows(self, data: dict[str, Any], position: str
             ) -> tuple[list[dict[str, Any]], list[DataError]]:
        """The validated output rows of one record, and its errors."""
        name = self.output_check.result.file
        mode = self.report.mode
        if mode == "sharegpt":
            row, messages = sharegpt_row(data)
            rows, errors = ([row] if row else []), [(None, m) for m in messages]
        elif mode == "ab":
            row, messages = ab_row(data, self.ab)
            rows, errors = ([row] if row else []), [(None, m) for m in messages]
        elif mode == "rated":
            rows, errors = rated_pairs(data, self.pairs, self.score_key)
        else:
            pair, bad = self.input_check.check(Record(position, data))
            rows = list(pairwise_to_unpaired([pair])) if pair else []
            errors = [(e.field, e.message) for e in bad]
        found = [DataError(name, position, f, m) for f, m in errors]
        out = []
        for row in rows:
            checked, bad = self.output_check.check(Record(position, row))
            if checked is None:
                found += [DataError(e.file, e.position, e.field, "in the converted record: "
                                    + e.message) for e in bad]
            else:
                out.append(checked)
        return out, found


def convert_source(path: str, output: str, *, to: str | None = None, mode: str = "auto",
                   pairs: str = "best-worst", score_key: str | None = None,
                   ab: ABColumns | None = None, columns: str | dict | None = None,
                   split: str | None = None, config: str | None = None,
                   skip_invalid: bool = False) -> Converted:
    """Convert a source (file, folder, saved dataset, Hub id) record by record into
    ``output`` (JSON Lines), checking every output row against its format.

    Raises :class:`align.data.DataValidationError` when a record cannot be converted or its
    result does not validate (with ``skip_invalid``: only when nothing is left, or the source
    is unreadable), and then leaves no output file behind.
    """
    import os
    import tempfile
    from pathlib import Path

    from align.data import DataValidationError
    from align.data.formats import Validated
    from align.data.io import parse_columns
    from align.data.sources import open_source
    from align.errors import AlignError

    if mode not in MODES:
        raise AlignError(f"--from {mode!r} is not valid; choose from [{', '.join(MODES)}]")
    if not str(output).endswith(".jsonl"):
        raise AlignError(f"-o {output}: conversions write JSON Lines; name the file .jsonl")
    source = open_source(path, split, config)
    mapping = parse_columns(columns)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".jsonl", dir=out.parent)
    converter: _Converter | None = None
    errors: list[DataError] = []
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for item in source.records(mapping):
                if isinstance(item, DataError):
                    errors.append(item)
                    continue
                data = item.data
                if item.errors:  # a cell that would convert as text it is not
                    errors += item.errors
                    if converter is not None:
                        converter.report.records += 1
                        converter.report.bad += 1
                    continue
                if converter is None:
                    converter = _Converter(data, source.name, mode=mode, to=to, ab=ab,
                                           pairs=pairs, score_key=score_key)
                report = converter.report
                report.records += 1
                rows, found = converter.rows(data, item.position)
                report.bad += bool(found)
                errors += found
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                report.rows += len(rows)
        fatal = converter is None or converter.report.rows == 0 or \
            any(e.position is None for e in errors)
        if errors and (fatal or not skip_invalid):
            fmt = converter.report.target if converter else (to or "pairwise")
            raise DataValidationError(Validated(file=source.name, format=fmt, errors=errors,
                                                n_errors=len(errors)))
        if converter is None:
            raise AlignError(f"{source.name}: no records to convert")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    converter.report.errors = errors
    return converter.report
