"""Flag tables in docs/ generated from the config dataclasses, so they never drift.

A page marks where a table goes with a pair of comments naming a flag group, an algorithm
(``dpo``, ``kto``, ...) or a shared group (``model``, ``lora``, ``data``, ``train``)::

    <!-- flags:start dpo -->
    ...generated table...
    <!-- flags:end -->

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
        lines.append(f"| {flag} | {_default(doc['default'], is_bool)} | {_cell(meaning)} | "
                     f"{_cell(doc['source']) or 'align default'} |")
    return "\n".join(lines) + "\n"


def render(text: str, groups: dict[str, type] | None = None) -> str:
    """``text`` with every flags region regenerated; unknown group names are an error."""
    groups = flag_groups() if groups is None else groups

    def fill(m: re.Match) -> str:
        name = m.group("name")
        if name not in groups:
            raise KeyError(f"flags region names unknown group {name!r}; known: {', '.join(groups)}")
        return m.group(1) + flag_table(groups[name]) + m.group(4)

    return REGION.sub(fill, text)


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
