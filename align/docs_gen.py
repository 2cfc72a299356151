"""Flag tables and the CLI reference in docs/, generated so that they never drift.

A page marks where a generated block goes with a pair of comments. Flag tables come from the
config dataclasses and name a flag group: an algorithm (``dpo``, ``ppo``, ...), a shared group
(``model``, ``lora``, ``data``, ``train``) or an extra one (``health``)::

    <!-- flags:start dpo -->
    ...generated table...
    <!-- flags:end -->

Command references come from the click command tree (usage, help, options) and name a
command, with spaces written as dashes (``rlhf``, ``data-validate``, ``merge-lora``)::

    <!-- cli:start data-validate -->
    ...generated reference...
    <!-- cli:end -->

``python -m align.docs_gen`` rewrites every such region under docs/;
``python -m align.docs_gen --check`` only reports stale pages (exit 1), as the test suite does.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

from align.config import SHARED_GROUPS, field_doc

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
REGION = re.compile(r"(<!-- flags:start (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- flags:end -->)",
                    re.DOTALL)
CLI_REGION = re.compile(r"(<!-- cli:start (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- cli:end -->)",
                        re.DOTALL)


def flag_groups() -> dict[str, type]:
    """Every documented group: shared groups, extra groups, then one per algorithm."""
    from align import registry

    groups: dict[str, type] = dict(SHARED_GROUPS)
    groups.update(getattr(registry, "EXTRA_GROUPS", {}))
    groups.update({name: spec.config_cls for name, spec in registry.ALGOS.items()})
    return groups


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(value: Any, is_bool: bool) -> str:
    if is_bool:
        return "on" if value else "off"
    if value is None:
        return "—"
    return f"`{value}`"


def flag_table(cls: type) -> str:
    """A markdown table of ``cls``'s flags: flag, default, meaning, where the default is from
    (a field without a ``source`` has align's own default)."""
    from align.options import field_types

    types = field_types(cls)
    lines = ["| flag | default | meaning | default from |", "| --- | --- | --- | --- |"]
    for f in dataclasses.fields(cls):
        doc = field_doc(f)
        is_bool = types[f.name] is bool
        flag = f"`{doc['flag']}`" + (f" / `--no-{doc['flag'][2:]}`" if is_bool else "")
        meaning = doc["help"]
        if doc["choices"]:
            meaning += f" One of: {', '.join(doc['choices'])}."
        if doc["bounds"]:
            meaning += f" Range: {doc['bounds']}."
        default = _default(doc["default"], is_bool)
        if doc["presets"]:  # the default preset's value, and the others' where they differ
            presets = doc["presets"]
            first = next(iter(presets.values()))
            others = [f"{name}: {_default(v, is_bool)}" for name, v in presets.items()
                      if v != first]
            default = _default(first, is_bool) + (f" ({'; '.join(others)})" if others else "")
        lines.append(f"| {flag} | {default} | {_cell(meaning)} | "
                     f"{_cell(doc['source']) or 'align default'} |")
    return "\n".join(lines) + "\n"


# TRL's names of align's flags (align.aliases), in docs/cli.md
ALIAS_REGION = re.compile(r"(<!-- aliases:start -->\n).*?(<!-- aliases:end -->)", re.S)


def render(text: str, groups: dict[str, type] | None = None) -> str:
    """``text`` with every flags and cli region regenerated; unknown names are an error."""
    groups = flag_groups() if groups is None else groups

    def fill(m: re.Match) -> str:
        name = m.group("name")
        if name not in groups:
            raise KeyError(f"flags region names unknown group {name!r}; known: {', '.join(groups)}")
        return m.group(1) + flag_table(groups[name]) + m.group(4)

    from align.aliases import table_markdown

    text = REGION.sub(fill, text)
    if CLI_REGION.search(text):
        cmds = commands()

        def fill_cli(m: re.Match) -> str:
            name = m.group("name")
            if name not in cmds:
                raise KeyError(f"cli region names unknown command {name!r}; known: "
                               f"{', '.join(cmds)}")
            return m.group(1) + command_reference(*cmds[name]) + m.group(4)

        text = CLI_REGION.sub(fill_cli, text)
    return ALIAS_REGION.sub(lambda m: m.group(1) + table_markdown() + "\n" + m.group(2), text)


# --- the command reference ------------------------------------------------------------------

def commands() -> dict[str, tuple[str, Any]]:
    """Every leaf command of ``align``: {region name: (command path, click command)}; the
    region name is the path with dashes (``data validate`` -> ``data-validate``)."""
    import click

    from align.cli import cli

    found: dict[str, tuple[str, Any]] = {}

    def walk(group: Any, prefix: list[str]) -> None:
        for name, cmd in group.commands.items():
            if isinstance(cmd, click.Group):
                walk(cmd, prefix + [name])
            else:
                found["-".join(prefix + [name])] = (" ".join(["align", *prefix, name]), cmd)
    walk(cli, [])
    return found


def _help_markdown(text: str) -> str:
    """A click help text as markdown: indented paragraphs become code blocks."""
    out = []
    for para in text.strip("\n").split("\n\n"):
        lines = [ln for ln in para.splitlines() if ln.strip() != "\b"]
        if lines and all(ln.startswith("  ") for ln in lines):
            out.append("```bash\n" + "\n".join(ln[2:] for ln in lines) + "\n```")
        else:
            out.append(" ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def _option_row(param: Any) -> str:
    import click

    names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
    meaning = param.help or ""
    if isinstance(param.type, click.Choice):
        meaning += f" One of: {', '.join(map(str, param.type.choices))}."
    value = param.to_info_dict()["default"]
    if param.is_flag:
        default = "on" if value is True else "off"
    elif value is None or type(value).__name__ == "Sentinel":
        default = "—"
    else:
        default = f"`{value}`"
    if param.required:
        default = "required"
    return f"| {names} | {default} | {_cell(meaning)} |"


def command_reference(path: str, cmd: Any) -> str:
    """Usage, help and options of one command, from its click definition. The training
    commands (``rlhf``, ``sft``) list their own options only; their flag groups are the
    generated tables of this page and of each algorithm's page."""
    import click

    from align.cli.run import RUN_OPTIONS, RunCommand

    ctx = click.Context(cmd, info_name=path)
    usage = " ".join([ctx.command_path, *cmd.collect_usage_pieces(ctx)])
    lines = [f"```\n{usage}\n```", "", _help_markdown(cmd.help or ""), ""]
    help_option = cmd.get_help_option(ctx)
    params = [p for p in cmd.get_params(ctx)
              if isinstance(p, click.Option) and not p.hidden and p is not help_option]
    if isinstance(cmd, RunCommand):
        params = [p for p in params if p.name in RUN_OPTIONS]
    if params:
        lines += ["| option | default | meaning |", "| --- | --- | --- |"]
        lines += [_option_row(p) for p in params]
    else:
        lines.append("No options besides `--help`.")
    if isinstance(cmd, RunCommand):
        lines += ["", "Every flag of the groups below (model, LoRA / QLoRA, data, training, "
                  "health) and the chosen algorithm's own flags (its page, or "
                  "`align rlhf --algo NAME --help`) are options of this command too."]
    return "\n".join(lines) + "\n"


def stale_pages(docs_dir: Path = DOCS_DIR, write: bool = False) -> list[Path]:
    """Pages whose generated tables differ from the config metadata (rewritten if ``write``)."""
    stale = []
    for page in sorted(docs_dir.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        fresh = render(text)
        if fresh != text:
            stale.append(page)
            if write:
                page.write_text(fresh, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    stale = stale_pages(write=not check)
    for page in stale:
        print(f"{'stale' if check else 'updated'}: {page}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
