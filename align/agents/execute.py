"""Running the tool calls of a batch of rollouts: in parallel, under a timeout, never raising.

Each rollout's calls run in order (an environment's state moves from one call to the next);
different rollouts run at the same time, each call in its own daemon thread joined with
``--tool-timeout``. A call still running at its deadline is abandoned, not killed (Python
cannot stop a thread): the model gets an error message and the run goes on, and the daemon
thread cannot keep the process from exiting. Such a call may still change its environment's
state later; it belongs to a rollout that has moved on.

Whatever goes wrong with a call becomes its result's ``error`` and the text the model reads in
the tool turn: a call that could not be read, an unknown tool, arguments that do not fit the
function's signature or its schema's types, an exception inside the tool, a timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from align.agents.parsing import ToolCall
from align.agents.tools import Tool


@dataclass
class ToolResult:
    """What one call gave back, as the tool turn shows it."""

    name: str  # the tool's name ("invalid" for a call whose name could not be read)
    content: str  # the text the model reads: the tool's return value, or the error message
    error: str | None = None  # what went wrong, or None
    seconds: float = 0.0  # wall time of the call


def error_text(error: str) -> str:
    """How an error reads in the tool turn: a JSON object, as TRL answers a failed call
    with ``{"error": ...}``."""
    return json.dumps({"error": error}, ensure_ascii=False)


def result_text(value: Any) -> str:
    """A tool's return value as tool-turn text: ``str(value)``, as TRL writes it."""
    return value if isinstance(value, str) else str(value)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list, tuple), "object": (dict,), "null": (type(None),),
}


def check_arguments(tool: Tool, fn: Any, arguments: dict[str, Any]) -> str | None:
    """Why ``arguments`` cannot be passed to the tool, or None: they must bind to its
    signature and each must have a JSON type its schema allows."""
    try:
        inspect.signature(fn).bind(**arguments)
    except TypeError as e:
        return f"bad arguments for {tool.name}: {e}"
    props = tool.schema["function"]["parameters"].get("properties", {})
    for key, value in arguments.items():
        declared = props.get(key, {}).get("type")
        if declared is None:
            continue
        allowed = declared if isinstance(declared, list) else [declared]
        if any(t in _JSON_TYPES for t in allowed):
            ok = any(isinstance(value, _JSON_TYPES[t]) and
                     not (t in ("integer", "number") and isinstance(value, bool))
                     for t in allowed if t in _JSON_TYPES)
            if not ok:
                return (f"bad arguments for {tool.name}: {key} must be {' or '.join(allowed)}, "
                        f"got {json.dumps(value, ensure_ascii=False)}")
    return None


@dataclass
class Finished:
    """How a call run under a time limit ended."""

    done: bool  # False: still running at the deadline (abandoned)
    value: Any = None  # what it returned (an awaitable result is awaited first)
    exc: BaseException | None = None  # what it raised, if it raised
    seconds: float = 0.0  # wall time until it ended or the deadline


def timeout_message(label: str, seconds: float) -> str:
    """What a call past its deadline reads as, here and in TRL's tool turn."""
    return f"{label} did not answer within {seconds:g} s (--tool-timeout)"


def call_with_timeout(fn: Any, arguments: dict[str, Any], timeout: float,
                      label: str) -> Finished:
    """``fn(**arguments)`` in a daemon thread joined with ``timeout``; never raises. An
    awaitable result (an async tool) runs to completion on its own event loop in that thread.
    A call still running at the deadline is abandoned: Python cannot stop a thread, and a
    daemon thread does not keep the process from exiting."""
    box: dict[str, Any] = {}

    def invoke() -> None:
        try:
            out = fn(**arguments)
            if inspect.isawaitable(out):
                out = asyncio.run(_await(out))
            box["value"] = out
        except BaseException as e:  # noqa: BLE001 - user code: the caller decides
            box["exc"] = e

    start = time.perf_counter()
    worker = threading.Thread(target=invoke, name=f"align-tool-{label}", daemon=True)
    worker.start()
    worker.join(timeout)
    seconds = time.perf_counter() - start
    if worker.is_alive():
        return Finished(False, seconds=seconds)
    return Finished(True, box.get("value"), box.get("exc"), seconds)


async def _await(awaitable: Any) -> Any:
    return await awaitable


def call_one(call: ToolCall, tools: dict[str, Tool], env: Any, timeout: float) -> ToolResult:
    """Run one call (in a daemon thread, joined with ``timeout``); never raises."""
    if call.error:
        return ToolResult(call.name or "invalid", error_text(call.error), call.error)
    tool = tools.get(call.name or "")
    if tool is None:
        known = ", ".join(sorted(tools)) or "none"
        why = f"unknown tool {call.name!r}; the tools are: {known}"
        return ToolResult(call.name or "invalid", error_text(why), why)
    fn = tool.bound(env)
    bad = check_arguments(tool, fn, call.arguments or {})
    if bad:
        return ToolResult(tool.name, error_text(bad), bad)
    end = call_with_timeout(fn, call.arguments or {}, timeout, tool.name)
    if not end.done:
        why = timeout_message(tool.name, timeout)
        return ToolResult(tool.name, error_text(why), why, end.seconds)
    if end.exc is not None:
        e = end.exc
        what = (f"SystemExit({e.code!r})" if isinstance(e, SystemExit)
                else f"{type(e).__name__}: {e}")
        why = f"{tool.name} raised {what}"
        return ToolResult(tool.name, error_text(why), why, end.seconds)
    return ToolResult(tool.name, result_text(end.value), None, end.seconds)


def run_calls(calls: Sequence[Sequence[ToolCall]], tools: Sequence[dict[str, Tool]],
              envs: Sequence[Any], timeout: float) -> list[list[ToolResult]]:
    """Run each rollout's calls, rollouts in parallel: ``calls[i]`` with ``tools[i]`` (name ->
    Tool) on environment ``envs[i]`` (or None). One list of results per rollout, in call
    order. Never raises; takes at most about ``timeout`` x the longest rollout's call count."""
    results: list[list[ToolResult]] = [[] for _ in calls]

    def episode(i: int) -> None:
        for call in calls[i]:
            results[i].append(call_one(call, tools[i], envs[i], timeout))

    busy = [i for i, c in enumerate(calls) if c]
    if len(busy) == 1:  # nothing to overlap with: no extra thread
        episode(busy[0])
        return results
    threads = [threading.Thread(target=episode, args=(i,), daemon=True) for i in busy]
    for t in threads:
        t.start()
    for t in threads:
        t.join()  # each episode thread ends: every call in it is joined with the timeout
    return results
