"""Dataset formats and their validation: one module shared by every algorithm.

Formats (TRL's names in brackets):

- ``prompt``   (prompt-only):          prompt; extra columns such as ``solution`` are kept.
- ``pairwise`` (preference):           prompt, chosen, rejected; optional numeric ``margin``.
- ``unpaired`` (unpaired preference):  prompt, completion, label (a JSON boolean).
- ``sft``      (language modeling / prompt-completion): messages, or prompt + completion, or text.

Each text field is either a string (*standard* form) or a list of ``{"role", "content"}``
messages (*conversational* form); one file uses one form throughout. Conversational pairwise
data may leave the prompt implicit: it is then the messages that chosen and rejected share.

:func:`validate` checks every record before any model loads and returns normalised rows in
TRL's layout plus a list of :class:`DataError` (file, position, field, expected vs found).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from align.data.io import DataError, Record, describe

ROLES = ("system", "user", "assistant", "tool")
# The fields each format requires; sft accepts any one of its alternatives.
FORMATS: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt",),
    "pairwise": ("prompt", "chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
    "sft": ("messages",),
}
SFT_ALTERNATIVES = (("messages",), ("prompt", "completion"), ("text",))
TRL_NAMES = {
    "prompt": "prompt-only",
    "pairwise": "preference",
    "unpaired": "unpaired preference",
    "sft": "language modeling / prompt-completion",
}
MAX_LISTED_ERRORS = 20
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


@dataclass
class Validated:
    """The outcome of validating one file: normalised rows, their form, and the errors."""

    file: str
    format: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    form: str | None = None  # "standard" | "conversational"
    implicit_prompt: bool = False
    errors: list[DataError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        form = self.form or "unknown"
        if self.implicit_prompt:
            form += ", prompt taken from the messages chosen and rejected share"
        return (f"{self.file}: {len(self.rows)} records, format {self.format} "
                f"({TRL_NAMES[self.format]}), form {form}")

    def error_report(self, limit: int = MAX_LISTED_ERRORS) -> str:
        lines = [str(e) for e in self.errors[:limit]]
        if len(self.errors) > limit:
            lines.append(f"... and {len(self.errors) - limit} more errors "
                         f"({len(self.errors)} in all)")
        return "\n".join(lines)


class _Checker:
    """Collects the errors of one record; field paths like ``chosen[1].role`` locate them."""

    def __init__(self, file: str, position: str) -> None:
        self.file, self.position = file, position
        self.errors: list[DataError] = []

    def add(self, field_name: str | None, message: str) -> None:
        self.errors.append(DataError(self.file, self.position, field_name, message))

    def text_or_messages(self, data: dict[str, Any], name: str, *, reply: bool = False,
                         prompt: bool = False) -> str | None:
        """Check a field that holds a string or a message list; return its form or None."""
        if name not in data:
            self.add(name, f"missing field '{name}'")
            return None
        value = data[name]
        if isinstance(value, str):
            if not value.strip():
                self.add(name, "expected a non-empty string, found an empty string")
                return None
            return "standard" if self.unicode(value, name) else None
        if isinstance(value, list):
            if self.messages(value, name, reply=reply, prompt=prompt):
                return "conversational"
            return None
        self.add(name, f"expected a non-empty string or a list of chat messages, "
                       f"found {describe(value)}")
        return None

    def unicode(self, text: str, name: str) -> bool:
        """Text must be valid Unicode: a lone surrogate (from an escaped, half-copied emoji)
        passes JSON but breaks tokenizers later."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            self.add(name, f"text is not valid Unicode (a lone surrogate {text[e.start]!r} at "
                           f"character {e.start + 1}); fix or drop that character")
            return False
        return True

    def messages(self, value: list[Any], name: str, *, reply: bool = False,
                 prompt: bool = False) -> bool:
        """Check a list of ``{"role", "content"}`` messages; True when it is valid."""
        before = len(self.errors)
        if not value:
            self.add(name, "expected a non-empty list of chat messages, found an empty list")
            return False
        for i, msg in enumerate(value):
            where = f"{name}[{i}]"
            if not isinstance(msg, dict):
                self.add(where, f"expected a message object {{\"role\": ..., \"content\": ...}}, "
                                f"found {describe(msg)}")
                continue
            if "from" in msg and "value" in msg and "role" not in msg:
                self.add(where, "ShareGPT-style message ('from'/'value'); "
                                "write {\"role\": \"user\"|\"assistant\", \"content\": ...}")
                continue
            role = msg.get("role")
            if not isinstance(role, str) or role not in ROLES:
                hint = ""
                if isinstance(role, str) and role.lower() in SHAREGPT_ROLES:
                    hint = f" (for '{role}' write '{SHAREGPT_ROLES[role.lower()]}')"
                found = "no 'role' key" if "role" not in msg else describe(role)
                self.add(f"{where}.role",
                         f"expected one of {', '.join(ROLES)}, found {found}{hint}")
            content = msg.get("content")
            if "content" not in msg:
                self.add(f"{where}.content", "missing key 'content'")
            elif not isinstance(content, str):
                self.add(f"{where}.content", f"expected a string, found {describe(content)}")
            elif not content.strip() and role in ("user", "assistant") and not msg.get("tool_calls"):
                self.add(f"{where}.content", "expected non-empty text, found an empty string")
            else:
                self.unicode(content, f"{where}.content")
        if len(self.errors) > before:
            return False
        if reply and value[0].get("role") != "assistant":
            self.add(f"{name}[0].role",
                     f"expected the assistant's reply to start with role 'assistant', found "
                     f"'{value[0].get('role')}'; keep the conversation so far in 'prompt', or "
                     "drop 'prompt' and give whole conversations in chosen/rejected")
            return False
        if prompt and value[-1].get("role") == "assistant":
            self.add(f"{name}[{len(value) - 1}].role",
                     "expected the prompt to end with a user (or tool) message for the model "
                     "to answer, found 'assistant'")
            return False
        return True


def _same_form(chk: _Checker, forms: dict[str, str | None]) -> str | None:
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


def _check_prompt(chk: _Checker, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    row = dict(data)
    if "prompt" not in data and isinstance(data.get("messages"), list):
        # A messages list ending in a user turn is a conversational prompt (ms-swift's layout).
        if chk.messages(data["messages"], "messages", prompt=True):
            row["prompt"] = row.pop("messages")
            return row, "conversational"
        return row, None
    return row, chk.text_or_messages(data, "prompt", prompt=True)


def _common_prefix(a: list[Any], b: list[Any]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _check_pairwise(chk: _Checker, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    row = dict(data)
    implicit = ("prompt" not in data or data["prompt"] is None) and \
        isinstance(data.get("chosen"), list) and isinstance(data.get("rejected"), list)
    if implicit:
        chosen_ok = chk.messages(data["chosen"], "chosen")
        rejected_ok = chk.messages(data["rejected"], "rejected")  # report both before stopping
        if not (chosen_ok and rejected_ok):
            return row, None
        n = _common_prefix(data["chosen"], data["rejected"])
        # The shared prefix must end before an assistant reply: back off to the last user turn.
        while n > 0 and data["chosen"][n - 1].get("role") == "assistant":
            n -= 1
        if n == 0:
            chk.add("prompt", "missing field 'prompt', and chosen and rejected share no leading "
                              "user message to take it from; add a 'prompt' field")
            return row, None
        row["prompt"] = data["chosen"][:n]
        row["chosen"], row["rejected"] = data["chosen"][n:], data["rejected"][n:]
        for name in ("chosen", "rejected"):
            if not row[name]:
                chk.add(name, "the conversation ends where the prompt does: no reply to compare")
                return row, None
            if not chk.messages(row[name], name, reply=True):
                return row, None
        row["_implicit_prompt"] = True
        form = "conversational"
    else:
        forms = {
            "prompt": chk.text_or_messages(data, "prompt", prompt=True),
            "chosen": chk.text_or_messages(data, "chosen", reply=True),
            "rejected": chk.text_or_messages(data, "rejected", reply=True),
        }
        form = _same_form(chk, forms)
    if form and row["chosen"] == row["rejected"]:
        chk.add("rejected", "chosen and rejected are identical; a pair must differ")
        form = None
    if "margin" in data and data["margin"] is not None:
        m = data["margin"]
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m):
            chk.add("margin", f"expected a finite number, found {describe(m)}")
            form = None
    return row, form


def _check_unpaired(chk: _Checker, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    forms = {
        "prompt": chk.text_or_messages(data, "prompt", prompt=True),
        "completion": chk.text_or_messages(data, "completion", reply=True),
    }
    form = _same_form(chk, forms)
    if "label" not in data:
        chk.add("label", "missing field 'label' (true for a desirable completion, else false)")
        form = None
    elif not isinstance(data["label"], bool):
        label = data["label"]
        hint = ""
        if label in (0, 1) or (isinstance(label, str) and label.strip().lower() in
                               ("true", "false", "1", "0", "yes", "no")):
            hint = "; write the JSON boolean true or false (no quotes)"
        chk.add("label", f"expected true or false, found {describe(label)}{hint}")
        form = None
    return dict(data), form


def _check_sft(chk: _Checker, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    row = dict(data)
    if "messages" in data:
        value = data["messages"]
        if not isinstance(value, list):
            chk.add("messages", f"expected a list of chat messages, found {describe(value)}")
            return row, None
        if not chk.messages(value, "messages"):
            return row, None
        if not any(m.get("role") == "assistant" for m in value):
            chk.add("messages", "no message with role 'assistant': nothing to learn from")
            return row, None
        return row, "conversational"
    if "prompt" in data or "completion" in data:
        forms = {
            "prompt": chk.text_or_messages(data, "prompt", prompt=True),
            "completion": chk.text_or_messages(data, "completion", reply=True),
        }
        return row, _same_form(chk, forms)
    if "text" in data:
        value = data["text"]
        if not isinstance(value, str) or not value.strip():
            chk.add("text", f"expected a non-empty string, found {describe(value)}")
            return row, None
        return row, "standard"
    chk.add(None, "missing fields: expected 'messages', or 'prompt' and 'completion', or 'text'")
    return row, None


CHECKS = {
    "prompt": _check_prompt,
    "pairwise": _check_pairwise,
    "unpaired": _check_unpaired,
    "sft": _check_sft,
}


def validate(records: Iterable[Record], fmt: str, file: str,
             read_errors: Iterable[DataError] = ()) -> Validated:
    """Check every record against format ``fmt`` and normalise it to TRL's layout.

    ``read_errors`` (bad bytes, bad JSON) from :func:`align.data.io.read_records` are
    included first, in file order. Returns a :class:`Validated`; ``ok`` is False when any
    record is wrong. A record whose form (standard vs conversational) differs from the
    file's first valid record is an error: TRL needs one form per dataset.
    """
    if fmt not in CHECKS:
        raise ValueError(f"unknown format {fmt!r}; choose from [{', '.join(CHECKS)}]")
    result = Validated(file=file, format=fmt, errors=list(read_errors))
    first_position = None
    for record in records:
        chk = _Checker(file, record.position)
        row, form = CHECKS[fmt](chk, record.data)
        if form is not None and result.form is not None and form != result.form:
            chk.add(None, f"record is {form} but the first record ({first_position}) is "
                          f"{result.form}; use one form throughout the file")
            form = None
        if chk.errors:
            result.errors.extend(chk.errors)
            continue
        if result.form is None:
            result.form, first_position = form, record.position
        if row.pop("_implicit_prompt", False):
            result.implicit_prompt = True
        result.rows.append(row)
    result.errors.sort(key=_file_order)  # read errors and record errors, in file order
    return result


def _file_order(error: DataError) -> int:
    if error.position is None:
        return -1
    match = re.search(r"line (\d+)", error.position) or re.search(r"(\d+)", error.position)
    return int(match.group(1)) if match else -1
