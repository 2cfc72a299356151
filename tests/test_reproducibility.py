"""What keeps the documented quickstart numbers reproducible: the constraints file that
setup.sh installs, and the check CI runs of a fresh seed-0 run against docs/quickstart.md."""

from __future__ import annotations

import json
from pathlib import Path

from tests.real.harness import script

ROOT = Path(__file__).resolve().parents[1]


def test_setup_installs_the_pinned_versions_and_ci_checks_the_table():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "-c \"$CONSTRAINTS\"" in setup and "CONSTRAINTS-constraints.txt" in setup
    assert "freeze_constraints.py --check" in setup
    assert "scripts/quickstart_table.py --check" in (ROOT / ".ci" / "run").read_text()


def test_constraints_pin_align_s_dependencies_exactly():
    lines = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
             if line and not line.startswith("#")]
    pins = dict(line.split("==") for line in lines)
    for name in ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "wandb"):
        assert name in pins, name
    assert all("+" not in v and v for v in pins.values())  # no local build labels


def test_mismatches_name_the_packages_not_installed_as_pinned():
    import trl

    freeze = script("freeze_constraints")
    assert freeze.mismatches(f"# a comment\ntrl=={trl.__version__}\n") == []
    assert freeze.mismatches("trl==0.0.1\nnot-a-package==1.0\n") == [
        f"trl {trl.__version__} (tested: 0.0.1)", "not-a-package not installed (tested: 1.0)"]


def test_the_docs_table_is_compared_without_its_seconds(tmp_path, monkeypatch):
    table = script("quickstart_table")
    made_on = table.CPU_LINE.search((ROOT / "docs" / "quickstart.md").read_text()).group(1)
    monkeypatch.setattr(table, "cpu_kind", lambda: made_on)  # digit for digit on that kind
    from align.quickstart import report

    doc = table.TABLE.search((ROOT / "docs" / "quickstart.md").read_text()).group(1)
    rows = table.without_seconds(doc)
    assert rows[0] == ["algorithm", "gold", "RM score", "KL to SFT", "length", "health"]
    # a summary that prints this very table passes, one number off fails
    summary = {"sft": {}, "algos": {}}
    for name, gold, rm, kl, length, health in rows[1:]:
        record = {"gold_reward": float(gold), "rm_reward": float(rm), "kl": float(kl),
                  "mean_length": float(length), "seconds": 1.0}
        if name == "sft (start)":
            summary["sft"] = record
            continue
        detectors = health.removeprefix("alarm: ").replace("displacement",
                                                           "likelihood_displacement")
        record["health_events"] = [] if health == "ok" else [
            f"[health] step 1: {d.strip()}: numbers. Try: x" for d in detectors.split(",")]
        summary["algos"][name] = record
    path = tmp_path / "summary.json"
    # the agent stage's table is compared as well (without its seconds), and is required
    path.write_text(json.dumps(summary))
    assert table.check(path, 0.0) == 1
    agent_doc = table.AGENT_TABLE.search((ROOT / "docs" / "quickstart.md").read_text()).group(1)
    agent_rows = table.without_seconds(agent_doc)
    assert agent_rows[0] == ["agent task", "gold", "tool calls"]
    keys = {"grpo + tool": "grpo", "sft + tool (start)": "sft", "sft, no tool": "sft_no_tool"}
    summary["agent"] = {keys[name]: {"gold": float(gold), "tool_calls": float(calls)}
                        for name, gold, calls in agent_rows[1:]}
    summary["agent"]["grpo"]["seconds"] = 3.0
    path.write_text(json.dumps(summary))
    assert table.check(path, 0.0) == 0
    summary["agent"]["grpo"]["gold"] += 0.01
    path.write_text(json.dumps(summary))
    assert table.check(path, 0.0) == 1
    summary["agent"]["grpo"]["gold"] -= 0.01
    first = next(iter(summary["algos"]))
    summary["algos"][first]["gold_reward"] += 0.01
    path.write_text(json.dumps(summary))
    assert table.check(path, 0.0) == 1 and table.check(path, 0.02) == 0
    assert report.leaderboard(summary)  # the table the check prints on a mismatch

    # on another kind of CPU: the claim (same algorithms, each CLAIM_GAIN over SFT) is checked
    monkeypatch.setattr(table, "cpu_kind", lambda: "AnotherVendor family 1 model 2 (other)")
    assert table.check(path, 0.0) == 0
    summary["agent"]["grpo"]["gold"] = summary["agent"]["sft"]["gold"] + table.AGENT_BAR / 2
    path.write_text(json.dumps(summary))
    assert table.check(path, 0.0) == 1  # GRPO with the tool short of the agent claim
    summary["agent"]["grpo"]["gold"] = summary["agent"]["sft"]["gold"] + 1.5 * table.AGENT_BAR
    path.write_text(json.dumps(summary))
    assert table.check(path, 0.0) == 0
    summary["algos"][first]["gold_reward"] = summary["sft"]["gold_reward"] + table.CLAIM_GAIN / 2
    path.write_text(json.dumps(summary))
    assert table.check(path, 0.0) == 1
    del summary["algos"][first]
    path.write_text(json.dumps(summary))
    assert table.check(path, 0.0) == 1  # an algorithm missing from the run


def test_the_cpu_kind_names_vendor_family_and_model():
    kind = script("quickstart_table").cpu_kind()
    assert kind
    if Path("/proc/cpuinfo").exists():  # Linux: vendor_id, cpu family, model, model name
        assert " family " in kind and " model " in kind and "?" not in kind.split("(")[0]
