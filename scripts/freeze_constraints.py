"""Write constraints.txt: the exact versions of align's dependencies in this environment.

    python scripts/freeze_constraints.py            # rewrite constraints.txt
    python scripts/freeze_constraints.py --check    # exit 1 unless all are installed as pinned

``scripts/setup.sh`` installs with ``pip install -c constraints.txt``, so a fresh machine gets the
versions the documented results were measured with (a newer transformers changes the
quickstart's numbers). The file lists every package in the dependency closure of
``align[dev]``, read from the installed packages' metadata; torch is written without its local
build label (``2.13.0``, which the CPU build ``2.13.0+cpu`` and the CUDA builds both satisfy).
After upgrading a dependency on purpose: rerun this, rerun the quickstart table
(docs/quickstart.md) and commit both.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "constraints.txt"
EXTRAS = ("dev",)
HEADER = ("# Exact versions align was tested with (scripts/freeze_constraints.py writes this file;\n"
          "# scripts/setup.sh installs with `pip install -c constraints.txt`).\n")


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _extras(requirement: str) -> list[str]:
    m = re.search(r"\[([^\]]+)\]", requirement.split(";")[0])
    return [e.strip() for e in m.group(1).split(",")] if m else []


def _applies(requirement: str, extras: set[str]) -> bool:
    """Whether a requirement line holds here: no marker, or an ``extra == X`` marker for one of
    ``extras``, or an environment marker that this interpreter satisfies."""
    if ";" not in requirement:
        return True
    marker = requirement.split(";", 1)[1]
    try:
        from packaging.markers import Marker
    except ImportError:  # pragma: no cover - packaging ships with pip's environments
        return "extra" not in marker
    m = Marker(marker)
    return any(m.evaluate({"extra": e}) for e in extras or {""})


def closure(root: str, extras: tuple[str, ...]) -> dict[str, str]:
    """{name: installed version} for ``root[extras]`` and everything it requires."""
    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(_name(root), frozenset(extras))]
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed here
        found[_name(dist.metadata["Name"])] = dist.version
        for req in dist.requires or []:
            if _applies(req, set(wanted)):
                todo.append((_name(req), frozenset(_extras(req))))
    found.pop(_name(root), None)
    return found


def mismatches(constraints: str) -> list[str]:
    """Packages of ``constraints`` not installed at their pinned version (``name X != Y``)."""
    wrong = []
    for line in constraints.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, version = line.split("==")
        try:
            installed = metadata.version(name).split("+")[0]
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != version:
            wrong.append(f"{name} {installed} (tested: {version})")
    return wrong


def render(versions: dict[str, str]) -> str:
    lines = [f"{name}=={version.split('+')[0]}" for name, version in sorted(versions.items())]
    return HEADER + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="Compare with constraints.txt instead of writing it.")
    args = parser.parse_args()
    text = render(closure("align", EXTRAS))
    if args.check:
        wrong = mismatches(OUT.read_text(encoding="utf-8"))
        if wrong:
            print("not the tested versions: " + ", ".join(wrong), file=sys.stderr)
            sys.exit(1)
        print(f"every package in {OUT.name} is installed at its tested version")
        return
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT} ({text.count(chr(10)) - 2} packages)")


if __name__ == "__main__":
    main()
