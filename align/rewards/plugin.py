"""User reward functions: ``--reward-fn path/to/file.py:function_name``.

The file is imported by path (never from ``sys.path``) and only when named on the command line,
because importing it runs its code. Everything that can go wrong is an :class:`AlignError` that
names the file and the function: a missing file, an import that fails, a missing or
non-callable name, a signature that cannot take ``prompts`` and ``completions``, an exception
inside a call, or a return value that is not one number (or None) per completion.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import numbers
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

from align.errors import AlignError

# Keyword arguments TRL's trainers add to the dataset columns when calling a reward function.
TRAINER_KWARGS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


def parse_spec(spec: str) -> tuple[str, str]:
    """``"dir/file.py:fn"`` -> ``("dir/file.py", "fn")``; ValueError when the shape is wrong."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name.isidentifier() or not path.endswith(".py"):
        raise ValueError(f"--reward-fn {spec!r} should look like path/to/file.py:function_name")
    return path, name


def user_frame(exc: BaseException, path: Path) -> str:
    """' (file.py line N)' for the deepest frame of ``exc`` inside the user's file."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve() == path.resolve()]
    return f" ({path.name} line {frames[-1].lineno})" if frames else ""


def describe_exception(e: BaseException) -> str:
    """The exception in words; a plugin calling sys.exit() must not end the run quietly."""
    if isinstance(e, SystemExit):
        return (f"SystemExit (it called sys.exit({e.code!r}) or exit(); a reward function must "
                "return its rewards, not end the program)")
    return f"{type(e).__name__}: {e}"


def import_user_file(path: Path, label: str, flag: str = "--reward-fn") -> Any:
    """Import the user's Python file ``path`` by path (never from ``sys.path``); a file that
    fails to import is an AlignError naming ``flag``, ``label`` and the line that failed.
    Also the importer of ``--tools`` and ``--environment`` files (align/agents/tools.py)."""
    module_name = f"align_user_plugin_{abs(hash(str(path.resolve())))}"
    if module_name in sys.modules:  # one file named by two flags is imported once
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AlignError(f"{flag} {label}: cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses/pickle inside the plugin look it up here
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # noqa: BLE001 - user code: one clear message
        sys.modules.pop(module_name, None)
        raise AlignError(f"{flag} {label}: importing {path} failed{user_frame(e, path)}: "
                         f"{describe_exception(e)}") from e
    return module


def check_signature(fn: Callable, label: str, columns: Iterable[str]) -> tuple[bool, set[str]]:
    """Check that ``fn`` can be called as ``fn(prompts=..., completions=..., **columns)``.

    Returns (takes **kwargs, the parameter names it accepts). Parameters without defaults must be
    ``prompts``, ``completions``, a dataset column or one of TRL's extra arguments.
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        raise AlignError(f"--reward-fn {label}: cannot read its signature ({e})") from e
    params = sig.parameters.values()
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not var_kw and not {"prompts", "completions"} <= named:
        raise AlignError(
            f"--reward-fn {label}: its signature {sig} cannot take prompts and completions; "
            "write it as def f(prompts, completions, **kwargs) -> list[float]")
    positional_only = [p.name for p in params if p.kind is p.POSITIONAL_ONLY
                       and p.default is p.empty]
    known = {"prompts", "completions", *columns, *TRAINER_KWARGS}
    missing = [p.name for p in params
               if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and p.default is p.empty and p.name not in known]
    if positional_only or missing:
        names = ", ".join(positional_only + missing)
        raise AlignError(
            f"--reward-fn {label}: it requires {names}, which is not a dataset column "
            f"(columns: {', '.join(sorted(set(columns))) or 'none'}) nor an argument TRL passes "
            f"({', '.join(TRAINER_KWARGS)}); give it a default or add the column")
    return var_kw, named


def check_rewards(out: Any, n: int, label: str) -> list[float | None]:
    """``out`` as a list of n floats/None, or an AlignError saying what came back instead."""
    if hasattr(out, "tolist"):  # numpy arrays and tensors
        out = out.tolist()
    if not isinstance(out, (list, tuple)):
        raise AlignError(f"--reward-fn {label} returned {type(out).__name__}; it must return a "
                         f"list with one float (or None) per completion ({n} here)")
    if len(out) != n:
        raise AlignError(f"--reward-fn {label} returned {len(out)} rewards for {n} completions; "
                         "return exactly one per completion")
    values: list[float | None] = []
    for i, r in enumerate(out):
        if r is None:
            values.append(None)
        elif isinstance(r, numbers.Real) and not isinstance(r, bool) and math.isfinite(float(r)):
            values.append(float(r))
        else:
            raise AlignError(f"--reward-fn {label} returned {r!r} (a {type(r).__name__}) for "
                             f"completion {i}; rewards must be finite numbers or None")
    return values


def reward_fn_path(spec: str) -> Path:
    """The file a ``file.py:function`` spec names; AlignError when it does not exist. Checks
    the file only: nothing is imported (a dry run never runs user code)."""
    path_text, name = parse_spec(spec)
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise AlignError(f"--reward-fn {path_text}:{name}: no such file {path}")
    return path


def load_reward_fn(spec: str, columns: Iterable[str] = ()) -> Callable[..., list[float | None]]:
    """Import ``file.py:function`` and return it wrapped: same name, checked calls and results.

    ``columns`` are the dataset's column names, used to check the function's required
    parameters before training starts.
    """
    path = reward_fn_path(spec)
    path_text, name = parse_spec(spec)
    label = f"{path_text}:{name}"
    module = import_user_file(path, label)
    fn = getattr(module, name, None)
    if fn is None:
        defined = sorted(k for k, v in vars(module).items()
                         if callable(v) and not k.startswith("_")
                         and getattr(v, "__module__", None) == module.__name__)
        raise AlignError(f"--reward-fn {label}: {path} has no function {name!r} (it defines: "
                         f"{', '.join(defined) or 'no public functions'})")
    if not callable(fn):
        raise AlignError(f"--reward-fn {label}: {name} is a {type(fn).__name__}, not a function")
    call = getattr(fn, "__call__", None)
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call):
        raise AlignError(f"--reward-fn {label}: async reward functions are not supported; "
                         "write it with plain def")
    var_kw, accepted = check_signature(fn, label, columns)

    def reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        if not var_kw:  # pass only what it declares: TRL adds trainer_state, log_metric, ...
            kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        try:
            out = fn(prompts=prompts, completions=completions, **kwargs)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - user code: file and function
            raise AlignError(f"--reward-fn {label} raised {describe_exception(e)}{user_frame(e, path)}") from e
        return check_rewards(out, len(completions), label)

    reward.__name__ = name  # TRL logs it as rewards/<name>/mean
    reward.__qualname__ = name
    reward.__doc__ = getattr(fn, "__doc__", None)
    return reward
