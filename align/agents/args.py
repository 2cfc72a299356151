"""The agent flags: which tools and environments a run gives the model, and its budgets.

Torch-free (``align --help`` imports it). The user's side is TRL's (``GRPOTrainer(tools=...,
environment_factory=...)``): a tool is a typed function with a Google-style docstring; an
environment is a class whose ``reset(**row)`` starts a rollout and whose other public methods
are its tools. The files are named here and imported only when a run or command loads them
(:func:`align.agents.tools.load_toolset`), never at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass

from align.config import arg, parse_list, validate_fields

# The defaults, in one place so that the loop's own keyword defaults agree with the flags.
DEFAULT_MAX_TOOL_CALLS = 8
DEFAULT_TOOL_TIMEOUT = 10.0


def parse_tools_spec(spec: str | None) -> list[tuple[str, str]]:
    """``"a.py:f,g,b.py:h"`` -> ``[("a.py", "f"), ("a.py", "g"), ("b.py", "h")]``.

    A bare name continues the file named before it. ValueError (naming the flag) when a part
    has the wrong shape."""
    out: list[tuple[str, str]] = []
    path = None
    for part in parse_list(spec):
        file, sep, name = part.rpartition(":")
        if sep:
            if not file.endswith(".py") or not name.isidentifier():
                raise ValueError(f"--tools {part!r} should look like path/to/file.py:function "
                                 "(several: file.py:f,g or a.py:f,b.py:g)")
            path = file
        elif path is None or not part.isidentifier():
            raise ValueError(f"--tools {part!r} should look like path/to/file.py:function "
                             "(several: file.py:f,g or a.py:f,b.py:g)")
        else:
            name = part
        out.append((path, name))
    seen = [n for _, n in out]
    twice = sorted({n for n in seen if seen.count(n) > 1})
    if twice:
        raise ValueError(f"--tools names {', '.join(twice)} twice; each tool needs its own name "
                         "(the model calls it by name)")
    return out


def parse_environment_spec(spec: str | None) -> dict[str | None, tuple[str, str]]:
    """``"f.py:Env"`` -> ``{None: ("f.py", "Env")}`` (one environment for every row);
    ``"math=a.py:Calc,game=b.py:Game"`` -> ``{"math": ..., "game": ...}`` (each row's
    ``environment`` column picks one). ValueError (naming the flag) on a malformed part."""
    parts = parse_list(spec)
    out: dict[str | None, tuple[str, str]] = {}
    for part in parts:
        name, eq, target = part.partition("=")
        if not eq:
            name, target = None, part  # type: ignore[assignment]
        file, sep, cls = target.rpartition(":")
        if not sep or not file.endswith(".py") or not cls.isidentifier() or \
                (name is not None and not name.strip()):
            raise ValueError(f"--environment {part!r} should look like path/to/file.py:Class, "
                             "or name=file.py:Class,... with an 'environment' column naming one")
        if name in out:
            raise ValueError(f"--environment names {name or 'an unnamed environment'} twice")
        out[name.strip() if name else None] = (file, cls)
    if None in out and len(out) > 1:
        raise ValueError("--environment: give one file.py:Class for every row, or name each "
                         "(name=file.py:Class,...) and pick it with an 'environment' column; "
                         "not both")
    return out


@dataclass
class AgentArgs:
    """Tools and environments for multi-turn rollouts (GRPO/RLOO, PPO, generate, chat)."""

    tools: str | None = arg(
        None, "Tools the model may call: path/to/file.py:fn[,fn...] (several files: "
        "a.py:f,b.py:g). Plain functions with type hints and a Google-style docstring, as "
        "TRL's tools=; imported only when named.",
        source="TRL GRPOTrainer(tools=)", metavar="FILE:FN")
    environment: str | None = arg(
        None, "An environment class, path/to/file.py:Class: one instance per rollout; "
        "reset(**row) gets the row's columns and may return text appended to the last user "
        "message; its other public methods are tools; an optional get_reward() scores the "
        "rollout. Several: name=file.py:Class,... with an 'environment' column per row.",
        source="TRL GRPOTrainer(environment_factory=)", metavar="FILE:FN")
    max_tool_calls: int = arg(
        DEFAULT_MAX_TOOL_CALLS, "Most tool calls one rollout may make; a turn that asks for "
        "more ends the rollout there (counted as cut by the budget).",
        source="align default (TRL: no limit but the completion length)", bounds="[1, inf)")
    tool_timeout: float = arg(
        DEFAULT_TOOL_TIMEOUT, "Seconds one tool call may run; a call that takes longer gives "
        "the model an error message and the run goes on.",
        source="align default (TRL: no timeout)", bounds="(0, inf)")

    def __post_init__(self) -> None:
        validate_fields(self)
        parse_tools_spec(self.tools)
        parse_environment_spec(self.environment)

    @property
    def enabled(self) -> bool:
        """True when the run gives the model any tool or environment."""
        return bool(self.tools or self.environment)
