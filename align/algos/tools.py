"""The user's tools and environments as TRL's GRPOTrainer takes them, with what TRL lacks.

TRL 1.16 runs the multi-turn loop itself (``GRPOTrainer(tools=..., environment_factory=...)``):
it parses each completion's calls with the chat template's response parser, calls the tools
one by one, appends the results as ``tool`` turns (masked out of the loss), and generates
again, up to ``max_tool_calling_iterations`` turns. A call that raises becomes
``{'error': message}`` in the tool turn and is counted; the run goes on. What it lacks and
align adds here, without touching TRL:

- a time limit per call (``--tool-timeout``): each tool is wrapped so that a call running
  longer raises ``TimeoutError`` inside TRL's loop, which turns it into an error turn;
- a clear error when an environment's ``reset`` raises, naming the environment and the row
  (TRL would stop with a traceback);
- the same checks before any model loads (:mod:`align.agents.tools`).

The wrappers keep each tool's name, signature, type hints and docstring, so TRL and the chat
template build the same JSON schema as for the user's function. An environment becomes a
subclass of the user's class whose tool methods and ``reset`` are wrapped: TRL finds its
tools on the class, as it does on the user's.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable

from align.agents.execute import call_with_timeout, timeout_message
from align.errors import AlignError


def timed(fn: Callable[..., Any], seconds: float, label: str | None = None) -> Callable[..., Any]:
    """``fn`` with a time limit per call, same name, signature, hints and docstring (sync: run
    by :func:`align.agents.execute.call_with_timeout`, as align's own loop runs a call, the
    caller not kept past the deadline; async: awaited under ``asyncio.wait_for`` on TRL's
    event loop)."""
    label = label or getattr(fn, "__name__", "tool")
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await asyncio.wait_for(fn(*args, **kwargs), seconds)
            except asyncio.TimeoutError:
                raise TimeoutError(timeout_message(label, seconds)) from None

        return call_async

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        # the thread and its deadline are align's loop's (agents/execute.py); here a call past
        # it raises, which TRL's loop turns into an error turn
        end = call_with_timeout(functools.partial(fn, *args), kwargs, seconds, label)
        if not end.done:
            raise TimeoutError(timeout_message(label, seconds))
        if end.exc is not None:
            raise end.exc
        return end.value

    return call


def _describe_row(row: dict[str, Any], limit: int = 160) -> str:
    """A short picture of a row for an error message: its columns and the prompt's start."""
    prompt = row.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        prompt = prompt[-1].get("content")
    text = str(prompt)[:limit] if prompt is not None else ""
    return f"the row with columns {', '.join(sorted(row))}" + (f" and prompt {text!r}" if text
                                                                 else "")


def guarded_environment(env: Any, seconds: float) -> type:
    """A subclass of the user's environment class (``env``: an
    :class:`align.agents.tools.EnvironmentSpec`) whose tools have the time limit and whose
    ``reset`` failing is an AlignError naming the environment and the row."""
    cls = env.cls
    attrs: dict[str, Any] = {"__module__": cls.__module__, "__doc__": cls.__doc__}
    for tool in env.tools:
        attrs[tool.name] = timed(getattr(cls, tool.name), seconds, f"{cls.__name__}.{tool.name}")
    user_reset = cls.reset

    @functools.wraps(user_reset)
    def reset(self: Any, **row: Any) -> Any:
        try:
            return user_reset(self, **row)
        except Exception as e:  # noqa: BLE001 - user code: one clear message
            raise AlignError(f"--environment {env.origin}: reset raised "
                             f"{type(e).__name__}: {e} on {_describe_row(row)}") from e

    attrs["reset"] = reset
    return type(cls.__name__, (cls,), attrs)


def trl_tools(toolset: Any) -> dict[str, Any]:
    """``tools=`` and ``environment_factory=`` for TRL's GRPOTrainer from a loaded
    :class:`align.agents.tools.Toolset` (one factory, or a dict of them when rows pick their
    environment with an ``environment`` column)."""
    out: dict[str, Any] = {"tools": [timed(t.fn, toolset.tool_timeout, t.name)
                                     for t in toolset.tools]}
    if toolset.environments:
        factories = {name: guarded_environment(env, toolset.tool_timeout)
                     for name, env in toolset.environments.items()}
        out["environment_factory"] = factories if toolset.multi_environment else factories[None]
    return out
