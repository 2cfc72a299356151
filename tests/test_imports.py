"""The import graph of align/ has no cycle, and no import goes up a layer of
docs/architecture.md, not even inside a function (an import in a function body runs later, but
it still ties the two modules together: neither can be read, moved or tested without the
other)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "align"


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """module -> {module of the package it imports: line of the first such import}, counting
    imports at module level and inside functions alike. ``from a import b`` imports module
    ``a.b`` when there is one, else ``a``."""
    mods = modules(package)
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for name, path in mods.items():
        package_of = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..y import z
                    up = package_of.split(".")[:len(package_of.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            else:
                continue
            for target in targets:
                if target in mods and target != name:
                    graph[name].setdefault(target, node.lineno)
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm,
    iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycles_are_found_through_function_level_imports(tmp_path):
    pkg = tmp_path / "align"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from align.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "sub" / "c.py").write_text("def g():\n    import align.a\n")
    (pkg / "d.py").write_text("from align import a\n")
    graph = import_graph(pkg)
    assert graph["align.sub.b"] == {"align.sub.c": 2}
    assert cycles(graph) == [["align.a", "align.sub.b", "align.sub.c"]]


def test_align_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50  # the whole package was read
    found = cycles(graph)
    shown = ["; ".join(f"{m} -> {t} ({modules()[m].relative_to(PACKAGE.parent)}:{line})"
                       for m in cycle for t, line in graph[m].items() if t in cycle)
             for cycle in found]
    assert not found, "import cycles in align/:\n" + "\n".join(shown)


def layers(page: Path = PACKAGE.parent / "docs" / "architecture.md") -> dict[str, int]:
    """docs/architecture.md's layer table: path (``cli/``, ``ppo/losses.py``) -> layer."""
    text = page.read_text(encoding="utf-8")
    found = {}
    for number, cells in re.findall(r"^\| (\d)\. [a-z ]+ \| (.+) \|$", text, re.M):
        for path in re.findall(r"`([^`]+)`", cells):
            found[path] = int(number)
    return found


def layer_of(module: str, table: dict[str, int]) -> int | None:
    """The layer of the most specific table entry that holds ``module``."""
    path = modules()[module].relative_to(PACKAGE).as_posix()
    matches = [entry for entry in table
               if path == entry or (entry.endswith("/") and path.startswith(entry))]
    return table[max(matches, key=len)] if matches else None


def test_imports_never_go_up_a_layer_of_docs_architecture():
    table = layers()
    assert len(table) > 20 and set(table.values()) == {1, 2, 3, 4, 5, 6}
    graph = import_graph()
    unplaced = [m for m in graph if m != "align" and layer_of(m, table) is None]
    assert not unplaced, f"docs/architecture.md places no layer for {unplaced}"
    up = [f"{m} (layer {layer_of(m, table)}) -> {t} (layer {layer_of(t, table)}), "
          f"{modules()[m].relative_to(PACKAGE.parent)}:{line}"
          for m in graph if m != "align" for t, line in graph[m].items()
          if t != "align" and layer_of(t, table) > layer_of(m, table)]
    assert not up, "imports that go up a layer:\n" + "\n".join(up)
