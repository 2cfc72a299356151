"""Config dataclasses -> click options, and resolution of a run's config.

Flags are generated from dataclass fields (``lora_r`` -> ``--lora-r``), with click defaults of
None so that we can tell which flags the user actually passed. A run's values are resolved as
dataclass default < YAML ``--config`` < command line. Flags that exist only for other
algorithms (``--rpo-alpha`` with ``--algo kto``) are errors that name the algorithms they
belong to.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Iterable

import click

from align.aliases import spellings, yaml_keys
from align.config import PATH_METAVARS, RunConfig, validate_fields
from align.errors import AlignError


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _base_type(tp: Any) -> Any:
    """``int | None`` -> int; ``Optional[str]`` -> str."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: _base_type(hints[f.name]) for f in dataclasses.fields(cls)}


def _help_text(f: dataclasses.Field, defaults: dict[str, Any]) -> str:
    text = f.metadata.get("help", "")
    if len(set(map(repr, defaults.values()))) > 1:
        text += " [default: " + ", ".join(f"{k} {v!r}" for k, v in defaults.items()) + "]"
    else:
        value = next(iter(defaults.values()))
        if value is not None and value is not False and value != "":
            text += f" [default: {value}]"
    if f.metadata.get("source"):
        text += f" (source: {f.metadata['source']})"
    return text


def click_options(classes: Iterable[tuple[str, type]]) -> list[click.Option]:
    """One click option per distinct field over ``classes`` (owner name, dataclass).

    A field that appears in several algorithm configs (``beta``) becomes one option; its help
    lists each owner's default when they differ. Fields must agree on type across owners.
    """
    seen: dict[str, tuple[Any, dataclasses.Field, dict[str, Any]]] = {}
    order: list[str] = []
    for owner, cls in classes:
        types_ = field_types(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            if f.name in seen:
                tp, first, defaults = seen[f.name]
                if tp is not types_[f.name]:
                    raise TypeError(f"field {f.name} has type {types_[f.name]} in {owner} "
                                    f"but {tp} elsewhere")
                defaults[owner] = default
                continue
            seen[f.name] = (types_[f.name], f, {owner: default})
            order.append(f.name)
    options = []
    for name in order:
        tp, f, defaults = seen[name]
        help_text = _help_text(f, defaults)
        choices = f.metadata.get("choices")
        metavar = f.metadata.get("metavar")
        # TRL's spellings (--lora_r, --use_peft): second names that --help leaves out
        others = spellings(name)
        if tp is bool:
            decls = [f"{flag_name(name)}/--no-{name.replace('_', '-')}", f" /--no_{name}"]
            decls += [f"{o}/--no{'_' if '_' in o else '-'}{o[2:]}" for o in others]
            options.append(AlignOption(decls, name, default=None, help=help_text))
            continue
        click_type: Any = {int: int, float: float}.get(tp, str)
        if choices:
            click_type = click.Choice(choices)
        options.append(AlignOption([flag_name(name), *others], name, type=click_type,
                                   default=None, help=help_text, metavar=metavar))
    return options


class AlignOption(click.Option):
    """A flag whose help shows only align's own name (and its --no- form), not the second
    names it also answers to (align.aliases)."""

    def __init__(self, decls: list[str], name: str, **kwargs: Any) -> None:
        super().__init__([*decls, name], **kwargs)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        opts, secondary = self.opts, self.secondary_opts
        self.opts, self.secondary_opts = opts[:1], secondary[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = opts, secondary


def _unique_key_loader() -> type:
    """A safe YAML loader that refuses a key given twice in one mapping (PyYAML keeps the last
    silently, so a recipe edited in two places would run with whichever came later)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[str, int] = {}
            for key_node, _ in node.value:
                key = str(self.construct_object(key_node, deep=deep)).replace("-", "_")
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice (lines {seen[key]} and {line})",
                        key_node.start_mark)
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def load_yaml(path: str) -> dict[str, Any]:
    """Read a flat YAML recipe; keys may be written snake_case or kebab-case, each once."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise AlignError(f"--config {path}: no such file")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_unique_key_loader()) or {}
    except yaml.constructor.ConstructorError as e:
        raise AlignError(f"--config {path}: {e.problem}") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise AlignError(f"--config {path}: not valid YAML ({' '.join(str(e).split())})") from e
    if not isinstance(data, dict):
        raise AlignError(f"--config {path}: expected a mapping of flag: value, found "
                         f"{type(data).__name__}")
    values, notes = yaml_keys({str(k).replace("-", "_"): v for k, v in data.items()},
                              f"--config {path}")
    for note in notes:
        click.echo(note, err=True)
    return values


def _coerce(value: Any, tp: Any, key: str, origin: str) -> Any:
    """Coerce a YAML value to the field's type; YAML already types most scalars."""
    if value is None:
        return None
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if tp is int and not isinstance(value, bool):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError  # max_steps: 2.9 is a typo, not 2
            return int(value)
        if tp is float and not isinstance(value, bool):
            return float(value)
        if tp is str:
            if isinstance(value, (list, tuple)):
                return ",".join(map(str, value))
            if isinstance(value, dict):
                return ",".join(f"{k}={v}" for k, v in value.items())
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        if tp not in (bool, int, float, str):
            return value
    raise AlignError(f"{origin}: {key} = {value!r} is not a valid {getattr(tp, '__name__', tp)}")


def suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def resolve(spec: Any, cli_values: dict[str, Any], yaml_values: dict[str, Any],
            owners: dict[str, list[str]], yaml_path: str | None = None) -> RunConfig:
    """Build the RunConfig for the algorithm ``spec`` (its registry record,
    :class:`align.registry.AlgoSpec`): dataclass defaults < YAML < command line.

    ``cli_values`` holds only flags the user passed; ``owners`` maps algorithm-specific field
    names to the algorithms that take them, so a flag of another algorithm is named as such.
    Raises AlignError for unknown keys and turns ``__post_init__`` ValueErrors into AlignError.
    """
    algo_name, groups = spec.name, spec.groups()
    owner_of = {f.name: g for g, cls in groups.items() for f in dataclasses.fields(cls)}
    values: dict[str, dict[str, Any]] = {g: {} for g in groups}
    for origin, source in ((f"--config {yaml_path}", yaml_values), ("command line", cli_values)):
        for key, value in source.items():
            if key in ("algo", "config"):
                continue
            if key not in owner_of:
                shown = flag_name(key) if origin == "command line" else key
                if key in owners:
                    raise AlignError(f"{shown} is not used by --algo {algo_name}; it is a flag of "
                                     f"{', '.join(sorted(owners[key]))}")
                known = list(owner_of) + ["algo"]
                raise AlignError(f"{origin}: unknown key {key!r}{suggest(key, known)}")
            group = owner_of[key]
            tp = field_types(groups[group])[key]
            values[group][key] = _coerce(value, tp, key, origin)
            if value is not None and field_metavar(groups[group], key) in PATH_METAVARS:
                values[group][key] = expand_home(values[group][key])
    try:
        built = {g: cls(**values[g]) for g, cls in groups.items()}
        for group in built.values():
            validate_fields(group)  # the one numeric/choice check, whatever __post_init__ does
    except ValueError as e:
        raise AlignError(str(e)) from e
    cfg = RunConfig(algo_name=algo_name, model=built["model"], lora=built["lora"],
                    data=built["data"], train=built["train"], algo=built[algo_name],
                    health=built.get("health"), agents=built.get("agents"))
    fill_learning_rates(cfg, spec)
    return cfg


def field_metavar(cls: type, name: str) -> str | None:
    return next(f.metadata.get("metavar") for f in dataclasses.fields(cls) if f.name == name)


def expand_home(value: Any) -> Any:
    """``~/x`` -> ``/home/me/x`` (and in comma lists); other values as they are."""
    import os

    if not isinstance(value, str) or "~" not in value:
        return value
    return ",".join(os.path.expanduser(part) if part.startswith("~") else part
                    for part in value.split(","))


def fill_learning_rates(cfg: RunConfig, spec: Any) -> None:
    """Give every learning rate the user left unset the algorithm's default, from its registry
    record ``spec`` (``AlgoSpec.default_lrs``, ``default_learning_rate``), so that the printed
    and saved config holds the rates that train. ``--learning-rate`` is the policy's rate: for
    an algorithm whose first rate has its own name (PPO's ``--actor-lr``) it fills that one."""
    filled = []
    computed = spec.default_lrs_for(cfg) if spec.default_lrs_for else None
    for i, name in enumerate(spec.default_lrs):
        group = cfg.train if name == "learning_rate" else cfg.algo
        if name != "learning_rate" and i == 0 and cfg.train.learning_rate is not None:
            if getattr(group, name) is not None:
                raise AlignError(f"give --{name.replace('_', '-')} or --learning-rate (its alias "
                                 f"for {cfg.algo_name}), not both")
            setattr(group, name, cfg.train.learning_rate)
            cfg.train.learning_rate = None
        if getattr(group, name) is None:
            setattr(group, name, computed[name] if computed else
                    spec.default_learning_rate(name, cfg.lora.enabled))
            filled.append(name)
    cfg.lr_defaults = tuple(filled)


def format_config(cfg: RunConfig) -> str:
    """The resolved config as grouped ``key: value`` lines (printed at the start of a run)."""
    lines = [f"algo: {cfg.algo_name}"]
    for name, group in cfg.groups().items():
        lines.append(f"[{name}]")
        for f in dataclasses.fields(group):
            lines.append(f"  {f.name}: {getattr(group, f.name)!r}")
    return "\n".join(lines)
