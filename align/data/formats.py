"""Dataset formats and their validation: one module shared by every algorithm.

Formats (TRL's names in brackets):

- ``prompt``   (prompt-only):          prompt; extra columns such as ``solution`` are kept.
- ``pairwise`` (preference):           prompt, chosen, rejected; optional numeric ``margin``.
- ``unpaired`` (unpaired preference):  prompt, completion, label (a JSON boolean).
- ``sft``      (language modeling / prompt-completion): messages, or prompt + completion, or
  text, or Alpaca's instruction (+ input) + output.

Each text field is either a string (*standard* form) or a list of ``{"role", "content"}``
messages (*conversational* form); one file uses one form throughout. Pairwise data may leave
the prompt implicit, or repeat it in chosen and rejected (see :mod:`align.data.prompts`).

:class:`Validator` checks records one at a time before any model loads and turns each valid one
into a row in TRL's layout; the errors name file, position, field, expected vs found.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from align.data.records import DataError, Record, describe
from align.data.messages import Checker
from align.data.prompts import PromptError, shared_messages, split_text_pair, \
    strip_repeated_prompt

# The fields each format requires; sft accepts any one of its alternatives.
FORMATS: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt",),
    "pairwise": ("prompt", "chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
    "sft": ("messages",),
}
SFT_ALTERNATIVES = (("messages",), ("prompt", "completion"), ("text",),
                    ("instruction", "output"))
TRL_NAMES = {
    "prompt": "prompt-only",
    "pairwise": "preference",
    "unpaired": "unpaired preference",
    "sft": "language modeling / prompt-completion",
}
# Columns TRL reads as a dataset type of their own: a row keeps only its format's, since TRL
# refuses (or misreads) rows whose keys mix two types.
TRL_KEYS = ("prompt", "chosen", "rejected", "completion", "messages", "label", "text")
KEEP_TRL_KEYS = {
    "prompt": ("prompt", "label", "text"),  # GRPO passes extra columns to reward functions
    "pairwise": ("prompt", "chosen", "rejected", "text"),
    "unpaired": ("prompt", "completion", "label", "text"),
    "sft": (),  # set per row by its layout
}
MAX_LISTED_ERRORS = 20
MAX_KEPT_ERRORS = 10_000  # beyond this only the count grows (a file that is all wrong)
NOTES = {
    "implicit": "the prompt is the leading part chosen and rejected share ({n} records)",
    "repeated": "chosen and rejected repeat the prompt's turns; they were checked against "
                "'prompt' and stripped ({n} records)",
    "function_role": "{n} messages with the legacy role 'function' were read as role 'tool'",
    "function_call": "{n} legacy 'function_call' entries were read as 'tool_calls'",
    "weight0": "{n} assistant messages have weight 0 (OpenAI's 'do not train on this turn'); "
               "align trains on every assistant turn",
    "alpaca": "Alpaca layout: instruction (+ input) read as the user turn, output as the "
              "assistant's reply ({n} records)",
    "system": "the 'system' column became the system message of each prompt ({n} records), "
              "so prompt and answers are chat messages",
}


@dataclass
class Validated:
    """The outcome of validating one source: normalised rows, their form, and the errors.

    ``rows`` is a list (small, in-memory validations) or an Arrow-backed
    :class:`align.data.store.Rows` (what :func:`align.data.load` returns).
    """

    file: str
    format: str
    rows: Any = field(default_factory=list)
    form: str | None = None  # "standard" | "conversational"
    implicit_prompt: bool = False
    errors: list[DataError] = field(default_factory=list)
    n_errors: int = 0  # all errors, also those beyond MAX_KEPT_ERRORS
    records: int = 0  # records read, valid or not
    bad_records: int = 0  # records (or unreadable lines) with at least one error
    notes: list[str] = field(default_factory=list)
    hint: str | None = None  # for missing fields: the source's columns, a --columns proposal
    columns: list[str] = field(default_factory=list)  # the source's columns (first record)
    tool_calls: int = 0  # assistant messages that call tools (the chat template must render them)
    skipped: Any = None  # with --skip-invalid: the temporary JSONL of dropped records

    @property
    def ok(self) -> bool:
        return not self.errors

    def layout(self) -> str:
        """standard/conversational, explicit/implicit prompt: how the rows were read."""
        form = self.form or "unknown form"
        if self.format in ("pairwise", "unpaired", "prompt"):
            prompt = "implicit prompt" if self.implicit_prompt else "explicit prompt"
            return f"{form}, {prompt}"
        return form

    def summary(self) -> str:
        form = self.form or "unknown"
        if self.implicit_prompt:
            form += ", prompt taken from the part chosen and rejected share"
        return (f"{self.file}: {len(self.rows)} records, format {self.format} "
                f"({TRL_NAMES[self.format]}), form {form}")

    def error_report(self, limit: int = MAX_LISTED_ERRORS) -> str:
        lines = [str(e) for e in self.errors[:limit]]
        total = max(self.n_errors, len(self.errors))
        if total > limit:
            lines.append(f"... and {total - limit} more errors ({total} in all)")
        return "\n".join(lines)


def _same_form(chk: Checker, forms: dict[str, str | None]) -> str | None:
    known = {name: f for name, f in forms.items() if f is not None}
    kinds = set(known.values())
    if len(kinds) > 1:
        detail = ", ".join(f"{n} is {'a message list' if f == 'conversational' else 'a string'}"
                           for n, f in known.items())
        chk.add(None, f"fields mix standard and conversational forms ({detail}); "
                      "use strings everywhere or message lists everywhere")
        return None
    if len(known) < len(forms):
        return None
    return kinds.pop() if kinds else None


def _check_prompt(chk: Checker, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    row = dict(data)
    if row.get("prompt") is None and isinstance(row.get("messages"), list):
        # A messages list ending in a user turn is a conversational prompt (ms-swift's layout).
        row["prompt"] = chk.messages(row.pop("messages"), "messages", prompt=True)
        return row, None if row["prompt"] is None else "conversational"
    return row, chk.text_or_messages(row, "prompt", prompt=True)


def _starts_with_prompt_turns(value: Any) -> bool:
    return (isinstance(value, list) and bool(value) and isinstance(value[0], dict)
            and value[0].get("role") not in (None, "assistant"))


def _check_pairwise(chk: Checker, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    row = dict(data)
    chosen, rejected = row.get("chosen"), row.get("rejected")
    has_prompt = row.get("prompt") is not None
    form: str | None
    if not has_prompt and isinstance(chosen, list) and isinstance(rejected, list):
        form = _implicit_messages(chk, row)
    elif not has_prompt and isinstance(chosen, str) and isinstance(rejected, str) \
            and chosen.strip() and rejected.strip():
        form = _implicit_text(chk, row)
    elif has_prompt and _starts_with_prompt_turns(chosen) and _starts_with_prompt_turns(rejected):
        form = _repeated_prompt(chk, row)
    else:
        forms = {
            "prompt": chk.text_or_messages(row, "prompt", prompt=True),
            "chosen": chk.text_or_messages(row, "chosen", reply=True),
            "rejected": chk.text_or_messages(row, "rejected", reply=True),
        }
        form = _same_form(chk, forms)
    if "prompt" in row and next(iter(row)) != "prompt":  # an implicit prompt: put it first
        row = {"prompt": row.pop("prompt"), **row}
    if form and row["chosen"] == row["rejected"]:
        chk.add("rejected", "chosen and rejected are identical; a pair must differ")
        form = None
    if "margin" in row and row["margin"] is not None:
        m = row["margin"]
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m):
            chk.add("margin", f"expected a finite number, found {describe(m)}")
            form = None
    return row, form


def _implicit_messages(chk: Checker, row: dict[str, Any]) -> str | None:
    chosen = chk.messages(row["chosen"], "chosen")
    rejected = chk.messages(row["rejected"], "rejected")  # report both before stopping
    if chosen is None or rejected is None:
        return None
    try:
        n = shared_messages(chosen, rejected)
    except PromptError as e:
        chk.add(e.field, str(e))
        return None
    row["prompt"], row["chosen"], row["rejected"] = chosen[:n], chosen[n:], rejected[n:]
    if not _replies(chk, row):
        return None
    chk.notes["implicit"] += 1
    return "conversational"


def _replies(chk: Checker, row: dict[str, Any]) -> bool:
    """After a prompt was split off checked messages: each answer is an assistant reply."""
    for name in ("chosen", "rejected"):
        if not row[name]:
            chk.add(name, "the conversation ends where the prompt does: no reply to compare")
            return False
        if row[name][0].get("role") != "assistant":
            chk.add(f"{name}[0].role", "expected the reply after the shared prompt to start "
                                       f"with role 'assistant', found '{row[name][0].get('role')}'")
            return False
    return True


def _implicit_text(chk: Checker, row: dict[str, Any]) -> str | None:
    if not (chk.unicode(row["chosen"], "chosen") and chk.unicode(row["rejected"], "rejected")):
        return None
    try:
        row["prompt"], row["chosen"], row["rejected"] = split_text_pair(row["chosen"],
                                                                        row["rejected"])
    except PromptError as e:
        chk.add(e.field, str(e))
        return None
    chk.notes["implicit"] += 1
    return "standard"


def _repeated_prompt(chk: Checker, row: dict[str, Any]) -> str | None:
    prompt_form = chk.text_or_messages(row, "prompt")
    chosen = chk.messages(row["chosen"], "chosen")
    rejected = chk.messages(row["rejected"], "rejected")
    if prompt_form is None or chosen is None or rejected is None:
        return None
    try:
        row["prompt"], row["chosen"], row["rejected"] = strip_repeated_prompt(
            row["prompt"], chosen, rejected)
    except PromptError as e:
        chk.add(e.field, str(e))
        return None
    if not _replies(chk, row):
        return None
    chk.notes["repeated"] += 1
    return "conversational"


def _check_unpaired(chk: Checker, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    row = dict(data)
    forms = {
        "prompt": chk.text_or_messages(row, "prompt", prompt=True),
        "completion": chk.text_or_messages(row, "completion", reply=True),
    }
    form = _same_form(chk, forms)
    if "label" not in row:
        chk.add("label", "missing field 'label' (true for a desirable completion, else false)")
        form = None
    elif not isinstance(row["label"], bool):
        label = row["label"]
        hint = ""
        if label in (0, 1) or (isinstance(label, str) and label.strip().lower() in
                               ("true", "false", "1", "0", "yes", "no")):
            hint = "; write the JSON boolean true or false (no quotes)"
        chk.add("label", f"expected true or false, found {describe(label)}{hint}")
        form = None
    return row, form


def _check_sft(chk: Checker, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    row = dict(data)
    if row.get("messages") is not None:
        # messages win over a prompt column (HuggingFaceH4/ultrachat_200k has both)
        value = row["messages"]
        if not isinstance(value, list):
            chk.add("messages", f"expected a list of chat messages, found {describe(value)}")
            return row, None
        checked = chk.messages(value, "messages")
        if checked is None:
            return row, None
        if not any(m.get("role") == "assistant" for m in checked):
            chk.add("messages", "no message with role 'assistant': nothing to learn from")
            return row, None
        row["messages"] = checked
        chk.keep = ("messages",)
        return row, "conversational"
    if row.get("prompt") is not None or row.get("completion") is not None:
        forms = {
            "prompt": chk.text_or_messages(row, "prompt", prompt=True),
            "completion": chk.text_or_messages(row, "completion", reply=True),
        }
        chk.keep = ("prompt", "completion")
        return row, _same_form(chk, forms)
    if "text" in row:
        value = row["text"]
        if not isinstance(value, str) or not value.strip():
            chk.add("text", f"expected a non-empty string, found {describe(value)}")
            return row, None
        chk.keep = ("text",)
        return row, "standard" if chk.unicode(value, "text") else None
    if "instruction" in row and "output" in row:
        return _alpaca(chk, row)
    chk.add(None, "missing fields: expected 'messages', or 'prompt' and 'completion', or "
                  "'text' (or Alpaca's 'instruction' and 'output')")
    return row, None


def _alpaca(chk: Checker, row: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """instruction (+ input) + output -> a user turn and the assistant's reply, as ms-swift and
    LLaMA-Factory read Alpaca data; a ``system`` column becomes the system message."""
    fields = {}
    for name in ("instruction", "output", "input", "system"):
        value = row.get(name)
        if name in ("input", "system") and value in (None, ""):
            continue
        if not isinstance(value, str) or not value.strip():
            chk.add(name, f"expected a non-empty string, found {describe(value)}")
            return row, None
        if not chk.unicode(value, name):
            return row, None
        fields[name] = value
    user = fields["instruction"] + (f"\n\n{fields['input']}" if "input" in fields else "")
    prompt = ([{"role": "system", "content": fields["system"]}] if "system" in fields else [])
    prompt.append({"role": "user", "content": user})
    out = {k: v for k, v in row.items() if k not in ("instruction", "input", "output", "system")}
    out["prompt"], out["completion"] = prompt, [{"role": "assistant", "content": fields["output"]}]
    chk.notes["alpaca"] += 1
    chk.keep = ("prompt", "completion")
    return out, "conversational"


def _with_system(check: Any) -> Any:
    """Read a ``system`` column (Intel/orca_dpo_pairs, LLaMA-Factory) as the system message of
    the prompt: string fields become chat messages (a string prompt has no place for a system
    message), a message-list prompt gets it in front unless it starts with one already."""

    def checked(chk: Checker, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        system = data.get("system")
        if "system" not in data or not isinstance(system, (str, type(None))) or \
                ("prompt" not in data and "messages" not in data):
            return check(chk, data)
        row = {k: v for k, v in data.items() if k != "system"}
        system_msgs = [{"role": "system", "content": system}] if system and system.strip() else []
        key = "prompt" if "prompt" in row else "messages"
        if isinstance(row[key], str):
            row[key] = system_msgs + [{"role": "user", "content": row[key]}]
            for name in ("chosen", "rejected", "completion"):
                if isinstance(row.get(name), str):
                    row[name] = [{"role": "assistant", "content": row[name]}]
        elif isinstance(row[key], list) and system_msgs and not (
                row[key] and isinstance(row[key][0], dict) and row[key][0].get("role") == "system"):
            row[key] = system_msgs + row[key]
        chk.notes["system"] += 1
        return check(chk, row)

    return checked


CHECKS = {
    "prompt": _with_system(_check_prompt),
    "pairwise": _with_system(_check_pairwise),
    "unpaired": _with_system(_check_unpaired),
    "sft": _check_sft,  # Alpaca's system column is read by _alpaca; messages carry their own
}


class Validator:
    """Validates records one at a time (:meth:`check`) and gathers what :class:`Validated`
    reports: errors in file order, counts, notes, the form of the first valid record."""

    def __init__(self, fmt: str, file: str) -> None:
        if fmt not in CHECKS:
            raise ValueError(f"unknown format {fmt!r}; choose from [{', '.join(CHECKS)}]")
        self.result = Validated(file=file, format=fmt)
        self.notes: Counter = Counter()
        self.dropped_keys: Counter = Counter()
        self._first_position: str | None = None
        self._layout: tuple[str, ...] = ()  # sft: the first valid record's fields
        self._implicit: bool | None = None  # pairwise: the first valid record's prompt kind

    def error(self, error: DataError) -> None:
        """A read error (bad bytes, bad JSON): the line counts as a bad record."""
        self._keep_errors([error])
        if error.position is not None:
            self.result.records += 1
            self.result.bad_records += 1

    def reject(self, errors: list[DataError]) -> None:
        """A record refused before its format check (a CSV cell that cannot be read)."""
        self.result.records += 1
        self.result.bad_records += 1
        self._keep_errors(errors)

    def _keep_errors(self, errors: list[DataError]) -> None:
        r = self.result
        r.n_errors += len(errors)
        room = MAX_KEPT_ERRORS - len(r.errors)
        if room > 0:
            r.errors.extend(errors[:room])

    def check(self, record: Record) -> tuple[dict[str, Any] | None, list[DataError]]:
        """``(row, errors)``: the record normalised to TRL's layout, or None with its errors."""
        r = self.result
        r.records += 1
        if not r.columns:
            r.columns = list(record.data)
        chk = Checker(r.file, record.position, self.notes)
        implicit_before = self.notes["implicit"]
        row, form = CHECKS[r.format](chk, record.data)
        implicit = self.notes["implicit"] > implicit_before
        if form is not None and self._implicit is not None and implicit != self._implicit:
            self._mixed_prompts(chk, implicit)
            form = None
        elif form is not None and r.form is not None and form != r.form:
            chk.add(None, f"record is {form} but the first record ({self._first_position}) is "
                          f"{r.form}; use one form throughout the file")
            form = None
        elif form is not None and self._layout and chk.keep != self._layout:
            chk.add(None, f"record has {' and '.join(chk.keep)} but the first record "
                          f"({self._first_position}) has {' and '.join(self._layout)}; use one "
                          "layout throughout the file")
            form = None
        if chk.errors:
            self._keep_errors(chk.errors)
            r.bad_records += 1
            return None, chk.errors
        if r.form is None:
            r.form, self._first_position, self._layout = form, record.position, chk.keep
            self._implicit = implicit
        keep = chk.keep or KEEP_TRL_KEYS[r.format]
        for key in [k for k in row if k in TRL_KEYS and k not in keep]:
            self.dropped_keys[key] += 1
            del row[key]
        return row, []

    def _mixed_prompts(self, chk: Checker, implicit: bool) -> None:
        """A pair whose prompt is given when the first pair's was the shared start of its
        answers, or the other way round: one file, one kind (a pair without a prompt in a
        file of pairs with one would silently train on a prompt cut from its answers)."""
        if implicit:
            self.notes["implicit"] -= 1  # it is not read that way
            chk.add("prompt", f"record has no prompt (it would be the start chosen and rejected "
                              f"share) but the first record ({self._first_position}) has one; "
                              "give every record a 'prompt', or none")
        else:
            chk.add("prompt", f"record has a 'prompt' but the first record "
                              f"({self._first_position}) has none (its prompt is the start "
                              "chosen and rejected share); give every record a 'prompt', or "
                              "none")

    def finish(self) -> Validated:
        """The result without rows (the caller stores them)."""
        r = self.result
        r.implicit_prompt = bool(self.notes["implicit"])
        r.tool_calls = self.notes["_tool_calls"]
        r.notes = [NOTES[key].format(n=n) for key, n in self.notes.items() if n and key in NOTES]
        if self.dropped_keys:
            names = ", ".join(f"'{k}'" for k in self.dropped_keys)
            r.notes.append(f"not passed to training: {names} (TRL would read "
                           f"{'it' if len(self.dropped_keys) == 1 else 'them'} as another "
                           "dataset type)")
        return r


def validate(records: Iterable[Record], fmt: str, file: str,
             read_errors: Iterable[DataError] = ()) -> Validated:
    """Check in-memory records against format ``fmt``; the rows come back as a list.

    ``read_errors`` (bad bytes, bad JSON) are included, in file order. ``ok`` is False when
    any record is wrong. A record whose form (standard vs conversational) differs from the
    file's first valid record is an error: TRL needs one form per dataset.
    """
    v = Validator(fmt, file)
    for error in read_errors:
        v.error(error)
    rows = []
    for record in records:
        row, _ = v.check(record)
        if row is not None:
            rows.append(row)
    result = v.finish()
    result.errors.sort(key=_file_order)  # read errors and record errors, in file order
    result.rows = rows
    return result


def _file_order(error: DataError) -> int:
    if error.position is None:
        return -1
    match = re.search(r"line (\d+)", error.position) or re.search(r"(\d+)", error.position)
    return int(match.group(1)) if match else -1
