"""Checking one record's fields: strings and chat-message lists as TRL reads them.

:class:`Checker` collects the errors of one record under field paths such as
``chosen[1].role`` and counts what the validator reports as notes (legacy roles read as
today's, assistant turns that call tools). Messages are accepted as OpenAI's chat exports write
them: assistant turns with ``tool_calls`` and ``content`` null, ``tool`` turns, the legacy role
``function`` and legacy ``function_call``, a per-message ``weight``.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from align.data.records import DataError, describe

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


class Checker:
    """Collects the errors of one record; field paths like ``chosen[1].role`` locate them."""

    def __init__(self, file: str, position: str, notes: Counter) -> None:
        self.file, self.position, self.notes = file, position, notes
        self.errors: list[DataError] = []
        self.keep: tuple[str, ...] = ()  # formats.TRL_KEYS this row's layout uses

    def add(self, field_name: str | None, message: str) -> None:
        self.errors.append(DataError(self.file, self.position, field_name, message))

    def text_or_messages(self, data: dict[str, Any], name: str, *, reply: bool = False,
                         prompt: bool = False) -> str | None:
        """Check a field that holds a string or a message list; return its form or None.
        A valid message list is normalised in place (legacy roles, see :meth:`messages`)."""
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
            checked = self.messages(value, name, reply=reply, prompt=prompt)
            if checked is None:
                return None
            data[name] = checked
            return "conversational"
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
                 prompt: bool = False) -> list[dict[str, Any]] | None:
        """Check a list of ``{"role", "content"}`` messages; return it normalised, or None.

        Accepted as OpenAI's chat exports have them: assistant turns with ``tool_calls`` and
        ``content`` null, ``tool`` turns, the legacy role ``function`` (read as ``tool``) and
        legacy ``function_call`` (read as ``tool_calls``), a per-message ``weight``.
        """
        before = len(self.errors)
        if not value:
            self.add(name, "expected a non-empty list of chat messages, found an empty list")
            return None
        out = []
        for i, msg in enumerate(value):
            where = f"{name}[{i}]"
            if not isinstance(msg, dict):
                self.add(where, f"expected a message object {{\"role\": ..., \"content\": ...}}, "
                                f"found {describe(msg)}")
                continue
            if "from" in msg and "value" in msg and "role" not in msg:
                self.add(where, "ShareGPT-style message ('from'/'value'); convert the file with "
                                "`align data convert FILE --to sft -o chat.jsonl` (or write "
                                "{\"role\": \"user\"|\"assistant\", \"content\": ...})")
                continue
            msg = self._legacy(msg)
            out.append(msg)
            role = msg.get("role")
            if not isinstance(role, str) or role not in ROLES:
                hint = ""
                if isinstance(role, str) and role.lower() in SHAREGPT_ROLES:
                    hint = f" (for '{role}' write '{SHAREGPT_ROLES[role.lower()]}')"
                found = "no 'role' key" if "role" not in msg else describe(role)
                self.add(f"{where}.role",
                         f"expected one of {', '.join(ROLES)}, found {found}{hint}")
            calls = msg.get("tool_calls")
            if calls is not None and role == "assistant":
                normal = self.tool_calls(calls, f"{where}.tool_calls")
                if normal is not None:
                    msg = out[-1] = {**msg, "tool_calls": normal}
                self.notes["_tool_calls"] += 1
            content = msg.get("content")
            if "content" not in msg and not calls:
                self.add(f"{where}.content", "missing key 'content'")
            elif content is None and calls and role == "assistant":
                pass  # a tool-call turn: OpenAI writes content null
            elif not isinstance(content, str):
                self.add(f"{where}.content", f"expected a string, found {describe(content)}")
            elif not content.strip() and role in ("user", "assistant") and not calls:
                self.add(f"{where}.content", "expected non-empty text, found an empty string")
            else:
                self.unicode(content, f"{where}.content")
            if role == "assistant" and msg.get("weight") in (0, 0.0) and \
                    not isinstance(msg.get("weight"), bool):
                self.notes["weight0"] += 1
        if len(self.errors) > before:
            return None
        if reply and out[0].get("role") != "assistant":
            self.add(f"{name}[0].role",
                     f"expected the assistant's reply to start with role 'assistant', found "
                     f"'{out[0].get('role')}'; keep the conversation so far in 'prompt', or "
                     "drop 'prompt' and give whole conversations in chosen/rejected")
            return None
        if prompt and out[-1].get("role") == "assistant":
            self.add(f"{name}[{len(out) - 1}].role",
                     "expected the prompt to end with a user (or tool) message for the model "
                     "to answer, found 'assistant'")
            return None
        return out

    def _legacy(self, msg: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's legacy function calling, read as today's tool calling."""
        if msg.get("role") == "function":
            self.notes["function_role"] += 1
            msg = {**msg, "role": "tool"}
        call = msg.get("function_call")
        if isinstance(call, dict) and not msg.get("tool_calls") and msg.get("role") == "assistant":
            self.notes["function_call"] += 1
            msg = {k: v for k, v in msg.items() if k != "function_call"}
            msg["tool_calls"] = [{"type": "function", "function": call}]
        return msg

    def tool_calls(self, calls: Any, where: str) -> list[dict[str, Any]] | None:
        """Check an assistant turn's tool calls; return them normalised, or None.

        Read in OpenAI's layout (``{"type": "function", "function": {"name", "arguments"}}``,
        with an ``id``) and in the flat one some Hugging Face datasets write (``{"name",
        "arguments"}``); ``arguments`` as an object or its JSON text. Normalised to OpenAI's
        layout with ``arguments`` an object, so that every chat template renders a call the
        same way whichever way the file wrote it (a template's ``tojson`` on JSON text would
        write a quoted string)."""
        if not isinstance(calls, list) or not calls:
            self.add(where, f"expected a non-empty list of tool calls, found {describe(calls)}")
            return None
        before = len(self.errors)
        out = []
        for j, call in enumerate(calls):
            flat = isinstance(call, dict) and "function" not in call and "name" in call
            fn = call if flat else call.get("function") if isinstance(call, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or \
                    not fn["name"].strip():
                self.add(f"{where}[{j}]", "expected {\"type\": \"function\", \"function\": "
                                          "{\"name\": ..., \"arguments\": ...}}")
                continue
            args = fn.get("arguments")
            at = f"{where}[{j}]" + (".arguments" if flat else ".function.arguments")
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except ValueError:
                    self.add(at, "expected a JSON object (or its JSON text), found text that is "
                                 "not JSON")
                    continue
            if args is None:
                args = {}
            if not isinstance(args, dict):
                self.add(at, f"expected a JSON object, found {describe(args)}")
                continue
            normal: dict[str, Any] = {"type": "function",
                                      "function": {"name": fn["name"], "arguments": args}}
            if isinstance(call.get("id"), str):
                normal["id"] = call["id"]
            out.append(normal)
        return out if len(self.errors) == before else None
