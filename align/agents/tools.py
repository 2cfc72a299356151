"""Loading and checking the user's tools and environments (``--tools``, ``--environment``).

The user's side is TRL's, so one file serves TRL's GRPOTrainer and align unchanged:

- a **tool** is a plain function (sync or async) with type hints and a Google-style docstring;
  its JSON schema (what the chat template shows the model) comes from transformers'
  ``get_json_schema``, as in TRL;
- an **environment** is a class constructed with no arguments, one instance per rollout:
  ``reset(**row)`` starts a rollout with the row's columns and may return text that is
  appended to the last user message; every other public method is a tool (its schema read
  from the bound method); an optional ``get_reward()`` returns the rollout's reward.

Everything that can be wrong with them is an :class:`AlignError` naming the flag, the file and
the function or class, raised here, before any model loads. Files are imported only by
:func:`load_toolset` (a dry run calls :func:`check_files`, which imports nothing).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from align.agents.args import AgentArgs, parse_environment_spec, parse_tools_spec
from align.errors import AlignError
from align.rewards.plugin import describe_exception, import_user_file, user_frame

# Methods of an environment that are not tools (TRL's GRPOTrainer skips the same two).
ENV_HOOKS = ("reset", "get_reward")


@dataclass
class Tool:
    """One callable the model may call by ``name``."""

    name: str
    schema: dict[str, Any]  # {"type": "function", "function": {name, description, parameters}}
    origin: str  # "file.py:fn" or "file.py:Class.method", for messages
    is_async: bool = False
    fn: Callable[..., Any] | None = None  # a standalone tool; None for an environment method

    def bound(self, env: Any = None) -> Callable[..., Any]:
        """The callable of this tool for one rollout (an environment's method on ``env``)."""
        return self.fn if self.fn is not None else getattr(env, self.name)

    def required(self) -> list[str]:
        return list(self.schema["function"]["parameters"].get("required", []))


@dataclass
class EnvironmentSpec:
    """One environment class, checked: its tools and whether it scores rollouts."""

    name: str | None  # its key in --environment name=..., or None for the only one
    cls: type
    origin: str  # "file.py:Class"
    tools: list[Tool] = field(default_factory=list)
    has_reward: bool = False
    path: Path | None = None

    def new(self) -> Any:
        """A fresh instance for one rollout (TRL: ``environment_factory()``)."""
        try:
            return self.cls()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - user code: one clear message
            raise AlignError(f"--environment {self.origin}: {self.cls.__name__}() raised "
                             f"{describe_exception(e)}{_frame(e, self.path)}") from e


@dataclass
class Toolset:
    """What a run gives the model: standalone tools, environments, and the budgets."""

    tools: list[Tool] = field(default_factory=list)
    environments: dict[str | None, EnvironmentSpec] = field(default_factory=dict)
    max_tool_calls: int = 8
    tool_timeout: float = 10.0

    @property
    def multi_environment(self) -> bool:
        """True when rows pick their environment with an ``environment`` column."""
        return bool(self.environments) and None not in self.environments

    def tools_for(self, env_name: str | None = None) -> list[Tool]:
        """The tools a rollout of environment ``env_name`` sees: the standalone ones, then
        the environment's methods."""
        env = self.environments.get(env_name)
        return self.tools + (env.tools if env else [])

    def schemas(self, env_name: str | None = None) -> list[dict[str, Any]] | None:
        """``tools=`` for ``apply_chat_template``; None when there are none (TRL passes None,
        not [], because some templates write tool boilerplate for an empty list)."""
        return [t.schema for t in self.tools_for(env_name)] or None

    def env_name_of(self, row: dict[str, Any]) -> str | None:
        """Which environment a row uses (its ``environment`` column with several)."""
        return row.get("environment") if self.multi_environment else None

    def check_rows(self, rows: Iterable[dict[str, Any]], file: str) -> None:
        """With several environments every row must name one of them in its ``environment``
        column: an AlignError naming the record and the field, before any model loads."""
        if not self.multi_environment:
            return
        names = [n for n in self.environments if n is not None]
        for i, row in enumerate(rows):
            value = row.get("environment")
            if value not in self.environments:
                found = "no 'environment' column" if "environment" not in row else repr(value)
                raise AlignError(f"{file}: record {i + 1}: field 'environment': expected one of "
                                 f"{', '.join(names)} (--environment), found {found}")


def check_files(args: AgentArgs) -> None:
    """The files ``--tools`` and ``--environment`` name exist (imports nothing: a dry run
    never runs user code). AlignError naming the flag and the file otherwise."""
    for flag, pairs in (("--tools", parse_tools_spec(args.tools)),
                        ("--environment", list(parse_environment_spec(args.environment).values()))):
        for file, name in pairs:
            path = Path(file).expanduser()
            if not path.is_file():
                raise AlignError(f"{flag} {file}:{name}: no such file {path}")


def load_toolset(args: AgentArgs) -> Toolset | None:
    """Import and check every tool and environment ``args`` names; None when it names none.

    Runs user code (imports the files, builds one probe instance of each environment), so it
    is called when a command is about to use them, before any model loads."""
    if not args.enabled:
        return None
    check_files(args)
    tools = [load_tool(file, name) for file, name in parse_tools_spec(args.tools)]
    envs = {key: load_environment(key, file, cls)
            for key, (file, cls) in parse_environment_spec(args.environment).items()}
    standalone = {t.name: t.origin for t in tools}
    for env in envs.values():
        for t in env.tools:
            if t.name in standalone:
                raise AlignError(f"--environment {env.origin}: its method {t.name} has the name "
                                 f"of the tool {standalone[t.name]} (--tools); the model calls "
                                 "tools by name, so rename one")
    return Toolset(tools=tools, environments=envs, max_tool_calls=args.max_tool_calls,
                   tool_timeout=args.tool_timeout)


def _defined(module: Any, kind: Any) -> list[str]:
    """The public names of ``kind`` (functions or classes) a user's file defines itself, for
    the error that says which one it lacks."""
    return sorted(k for k, v in vars(module).items() if kind(v) and not k.startswith("_")
                  and getattr(v, "__module__", None) == module.__name__)


def load_tool(file: str, name: str) -> Tool:
    """Import ``file`` and check its function ``name`` as a tool."""
    path = Path(file).expanduser()
    label = f"{file}:{name}"
    module = import_user_file(path, label, flag="--tools")
    fn = getattr(module, name, None)
    if fn is None:
        defined = _defined(module, inspect.isfunction)
        raise AlignError(f"--tools {label}: {path} has no function {name!r} (it defines: "
                         f"{', '.join(defined) or 'no public functions'})")
    if inspect.isclass(fn):
        raise AlignError(f"--tools {label}: {name} is a class; an environment class goes to "
                         f"--environment {file}:{name}")
    if not callable(fn):
        raise AlignError(f"--tools {label}: {name} is a {type(fn).__name__}, not a function")
    return Tool(name=name, schema=tool_schema(fn, f"--tools {label}"), origin=label,
                is_async=inspect.iscoroutinefunction(fn), fn=fn)


def load_environment(key: str | None, file: str, cls_name: str) -> EnvironmentSpec:
    """Import ``file``, check its class ``cls_name`` as an environment and read its tools
    from a probe instance (TRL probes one the same way)."""
    path = Path(file).expanduser()
    label = f"{file}:{cls_name}"
    module = import_user_file(path, label, flag="--environment")
    cls = getattr(module, cls_name, None)
    if cls is None:
        defined = _defined(module, inspect.isclass)
        raise AlignError(f"--environment {label}: {path} has no class {cls_name!r} (it defines: "
                         f"{', '.join(defined) or 'no public classes'})")
    if not inspect.isclass(cls):
        raise AlignError(f"--environment {label}: {cls_name} is a {type(cls).__name__}, not a "
                         "class (a function goes to --tools)")
    spec = EnvironmentSpec(name=key, cls=cls, origin=label, path=path)
    if not callable(getattr(cls, "reset", None)):
        raise AlignError(f"--environment {label}: {cls_name} has no reset method; write "
                         "def reset(self, **row) -> str | None (it starts each rollout)")
    probe = spec.new()
    # Listed on the class, as TRL does: getmembers on an instance would evaluate properties.
    for member, _ in inspect.getmembers(cls, predicate=inspect.isfunction):
        if member in ENV_HOOKS or member.startswith("_"):
            continue
        method = getattr(probe, member)
        spec.tools.append(Tool(name=member, schema=tool_schema(method, f"--environment {label}"),
                               origin=f"{label}.{member}",
                               is_async=inspect.iscoroutinefunction(method)))
    reward = getattr(cls, "get_reward", None)
    if reward is not None:
        needed = [p for p in inspect.signature(getattr(probe, "get_reward")).parameters.values()
                  if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if needed:
            raise AlignError(f"--environment {label}: get_reward takes {', '.join(p.name for p in needed)};"
                             " it is called with no arguments and returns the rollout's reward")
        spec.has_reward = True
    return spec


def tool_schema(fn: Callable[..., Any], label: str) -> dict[str, Any]:
    """The function's JSON schema as the chat template shows it, from transformers'
    ``get_json_schema`` (type hints + Google docstring); an AlignError saying what to add."""
    from transformers.utils import get_json_schema
    from transformers.utils.chat_template_utils import (DocstringParsingException,
                                                        TypeHintParsingException)

    name = getattr(fn, "__name__", repr(fn))
    try:
        return get_json_schema(fn)
    except TypeHintParsingException as e:
        raise AlignError(f"{label}: {name}: {e}; every argument needs a type hint "
                         "(def f(x: int, unit: str = 'cm') -> str)") from None
    except DocstringParsingException as e:
        raise AlignError(f"{label}: {name}: {e}; write a Google-style docstring: a one-line "
                         "description, then 'Args:' with one 'name: what it is' line per "
                         "argument") from None
    except (ValueError, TypeError) as e:
        raise AlignError(f"{label}: {name}: its schema cannot be built: {e}") from None


def _frame(e: BaseException, path: Path | None) -> str:
    return user_frame(e, path) if path is not None else ""
