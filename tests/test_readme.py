"""The README's algorithm table and commands stay true to the registry and the scripts."""

from pathlib import Path

from align.registry import ALGOS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_readme_table_lists_every_registered_algorithm():
    rows = {line.split("|")[1].strip().strip("`") for line in README.splitlines()
            if line.startswith("| `") and not line.startswith("| `--algo`")}
    assert rows == set(ALGOS)


def test_readme_commands_exist():
    root = Path(__file__).resolve().parents[1]
    for script in ("scripts/demo.sh", "scripts/test.sh"):
        assert f"bash {script}" in README and (root / script).exists()
    ci = (root / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci
    assert "bash scripts/test_real.sh --smoke" in README and "bash scripts/test_real.sh --smoke" in ci
