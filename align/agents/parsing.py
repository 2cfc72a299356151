"""Tool calls out of generated text, per chat template.

align reads the Hermes format, the one Qwen2.5, Qwen3, NousResearch's Hermes models and align's
``chatml-tools`` template write: each call is a JSON object ``{"name": ..., "arguments": {...}}``
between ``<tool_call>`` and ``</tool_call>``; the text outside the tags is the turn's content.

A call that cannot be read is not dropped: it becomes a :class:`ToolCall` with ``error`` set,
which the loop answers with an error message in the tool turn (the model sees what was wrong)
and counts. Which format a template writes is found by rendering a probe conversation through
it (:func:`call_format`), never by matching the template's text against known ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from align.errors import AlignError

FORMATS = ("hermes",)
_HERMES = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_OPEN = "<tool_call>"


@dataclass
class ToolCall:
    """One call the model asked for, or the reason it could not be read."""

    name: str | None
    arguments: dict[str, Any] | None
    error: str | None = None  # what was wrong with it, in words the model is shown
    raw: str = ""  # the text between the tags

    def message(self) -> dict[str, Any]:
        """The call as an entry of an assistant message's ``tool_calls`` (OpenAI/HF layout)."""
        return {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def parse_tool_calls(text: str, fmt: str = "hermes") -> tuple[str, list[ToolCall]]:
    """Split one generated assistant turn into its content and its tool calls.

    ``text`` is the decoded turn without its end-of-turn token. Returns (content, calls), the
    content being the text outside the call tags, stripped. A ``<tool_call>`` never closed is a
    call with an error (the model stopped in the middle of it)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown tool-call format {fmt!r}; choose from {list(FORMATS)}")
    calls = [read_call(m.group(1)) for m in _HERMES.finditer(text)]
    rest = _HERMES.sub("", text)
    if _OPEN in rest:  # an opening tag left over: the call was never closed
        head, _, tail = rest.partition(_OPEN)
        calls.append(ToolCall(None, None, "the tool call has no closing </tool_call> tag",
                              tail.strip()))
        rest = head
    return rest.strip(), calls


def read_call(raw: str) -> ToolCall:
    """One Hermes call body, ``{"name": ..., "arguments": {...}}``, checked. ``arguments`` may
    be a JSON object or its JSON text (some models write the string form); ``parameters`` is
    read as ``arguments`` (Llama 3.1's spelling)."""
    body = raw.strip()
    try:
        obj = json.loads(body)
    except ValueError as e:
        return ToolCall(None, None, f"the tool call is not valid JSON ({e})", body)
    if not isinstance(obj, dict):
        return ToolCall(None, None, 'the tool call must be a JSON object {"name": ..., '
                        f'"arguments": {{...}}}}, found {type(obj).__name__}', body)
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return ToolCall(None, None, 'the tool call has no "name" (a string naming the tool)', body)
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError as e:
            return ToolCall(name, None, f'"arguments" of {name} is text that is not JSON ({e})',
                            body)
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return ToolCall(name, None, f'"arguments" of {name} must be a JSON object of named '
                        f"arguments, found {type(args).__name__}", body)
    return ToolCall(name.strip(), args, None, body)


def assistant_message(text: str, fmt: str = "hermes") -> tuple[dict[str, Any], list[ToolCall]]:
    """The assistant message a generated turn stands for, and its calls.

    With only readable calls: ``{"role": "assistant", "content": ..., "tool_calls": [...]}``,
    which the chat template renders back as the model wrote it. When a call could not be read
    the message keeps the whole text as its content (nothing is lost from the transcript) and
    no ``tool_calls``."""
    content, calls = parse_tool_calls(text, fmt)
    if any(c.error for c in calls):
        return {"role": "assistant", "content": text.strip()}, calls
    msg: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        msg["tool_calls"] = [c.message() for c in calls]
    return msg, calls


# A conversation whose rendering shows whether and how a template writes tool calls and tool
# results (the same idea as TRL's supports_tool_calling: distinct sentinels must all appear).
PROBE_NAME, PROBE_KEY, PROBE_VALUE, PROBE_RESULT = ("probe_tool_a1", "probe_key_b2",
                                                    "probe_value_c3", "probe_result_d4")
PROBE = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "",
     "tool_calls": [{"type": "function",
                     "function": {"name": PROBE_NAME, "arguments": {PROBE_KEY: PROBE_VALUE}}}]},
    {"role": "tool", "name": PROBE_NAME, "content": PROBE_RESULT},
]


def call_format(rendered_probe: str) -> str | None:
    """The format in which a template wrote :data:`PROBE`'s call (``hermes``), or None when
    it wrote none align can read back."""
    _, calls = parse_tool_calls(rendered_probe.split(PROBE_RESULT)[0])
    ok = [c for c in calls if not c.error and c.name == PROBE_NAME
          and (c.arguments or {}).get(PROBE_KEY) == PROBE_VALUE]
    return "hermes" if ok else None


def tool_template_problem(tokenizer: Any) -> tuple[str | None, str]:
    """(what is wrong, the rendered probe): whether the tokenizer's chat template renders
    :data:`PROBE`'s tool call, its arguments and the tool's result. None when it does."""
    if not getattr(tokenizer, "chat_template", None):
        return "its tokenizer has no chat template to render tool calls", ""
    try:
        text = tokenizer.apply_chat_template(PROBE, tokenize=False)
    except Exception as e:  # noqa: BLE001 - jinja's errors: the template refuses tool turns
        return (f"its chat template cannot render a tool call and its result "
                f"({type(e).__name__}: {e})"), ""
    missing = [what for what, s in (("the tool call's name", PROBE_NAME),
                                    ("its arguments", PROBE_VALUE),
                                    ("the tool's result", PROBE_RESULT)) if s not in text]
    if missing:
        return (f"its chat template drops {', '.join(missing)} of a tool call (the model would "
                "never see them)"), text
    return None, text


TEMPLATE_FIX = "pass --chat-template chatml-tools (ChatML with Hermes <tool_call> calls)"


def require_tool_template(tokenizer: Any, model_label: str) -> str:
    """The tool-call format of the tokenizer's chat template, after checking by rendering
    :data:`PROBE` that it writes the call, its arguments and the tool's result, in a format
    align reads back. AlignError naming the model and the fix otherwise (before any model
    loads: only the tokenizer is needed)."""
    problem, text = tool_template_problem(tokenizer)
    if problem:
        raise AlignError(f"{model_label}: {problem}; {TEMPLATE_FIX}")
    fmt = call_format(text)
    if fmt is None:
        raise AlignError(f"{model_label}: its chat template writes tool calls in a format align "
                         "cannot read back from generated text (it reads the Hermes format, "
                         '<tool_call>{"name": ..., "arguments": {...}}</tool_call>); ' + TEMPLATE_FIX)
    return fmt
