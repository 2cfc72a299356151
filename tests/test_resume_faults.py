"""Kill a run at any moment, then --resume: it continues as if it had never stopped.

Faults come from outside the product: a child process runs `align` with ``tests/faults`` on its
PYTHONPATH, whose ``sitecustomize`` SIGKILLs the process at the named moment (half-way through
a checkpoint's optimizer or weights file, after the trainer's save but before align's
completion marker, while rotation deletes an old checkpoint, half-way through a metrics row,
while writing the final model, in the middle of an optimizer step). Each test chains several
kills in one output directory, then compares every logged value (losses included) and the
final weights with an uninterrupted run of the same flags: nothing may be lost, duplicated
or different. DPO and GRPO cover the TRL-backed path here; tests/ppo/test_e2e.py kills PPO
mid-checkpoint and mid-step with every resumable state of align's own engine in use.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from align.metrics import read_metrics
from tests.conftest import run_cli

ROOT = Path(__file__).parents[1]
FAULTS = Path(__file__).parent / "faults"


def killed(args: list, fault: str) -> subprocess.CompletedProcess:
    """Run `align ARGS` in a child that SIGKILLs itself at ``fault``; assert it died so."""
    env = {**os.environ, "ALIGN_FAULT": fault, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(FAULTS), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-m", "align", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == -9, (fault, proc.returncode, proc.stderr[-3000:])
    return proc


def timing(key: str) -> bool:
    """Values that differ between identical runs: wall clock (tools/seconds too) and speed,
    and the end-of-run summary's train_loss (transformers averages it over the steps of the last invocation)."""
    return key in ("time", "train_runtime", "train_loss") or key.startswith("perf/") or \
        key.endswith(("_per_second", "step_time", "/seconds")) or "time" in key.split("/")[-1]


def assert_same_rows(whole: Path, cut: Path) -> None:
    a, b = read_metrics(whole), read_metrics(cut)
    assert [r["step"] for r in a] == [r["step"] for r in b], \
        ([r["step"] for r in a], [r["step"] for r in b])
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys(), (ra["step"], set(ra) ^ set(rb))
        for key in ra:
            if timing(key) or not isinstance(ra[key], (int, float)):
                continue
            assert rb[key] == pytest.approx(ra[key], abs=1e-6), (ra["step"], key)


def assert_same_weights(whole: Path, cut: Path, name: str = "model.safetensors") -> None:
    import torch
    from safetensors.torch import load_file

    a, b = load_file(str(whole / name)), load_file(str(cut / name))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def error_line(err: str) -> str:
    """The one `error: ...` line of a failed run's stderr (progress bars around it aside)."""
    found = [line[line.index("error: "):] for line in err.replace("\r", "\n").splitlines()
             if "error: " in line]
    assert len(found) == 1 and "Traceback" not in err, err[-3000:]
    return found[0]


def tensorboard_steps(out: Path, tag: str) -> list[int]:
    """The steps TensorBoard shows for ``tag`` (purged events of a resumed run left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_dpo_killed_mid_checkpoint_before_its_marker_and_mid_row_resumes_exactly(
        tmp_path, capsys, tiny_lm, pairs_file):
    args = ["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file,
            "--learning-rate", "1e-3", "--max-steps", "8", "--save-steps", "2",
            "--per-device-train-batch-size", "8", "--report-to", "tensorboard"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    code, _, err = run_cli([*args, "--output-dir", whole], capsys)
    assert code == 0, err
    # 1. killed half-way through checkpoint-4's optimizer.pt (its weights are written)
    killed([*args, "--output-dir", cut], "torch_save:4")
    assert (cut / "checkpoint-4").is_dir() and not (cut / "checkpoint-4" /
                                                     "align_checkpoint.json").exists()
    assert [r["step"] for r in read_metrics(cut)] == [1, 2, 3, 4]
    # 2. resumed from checkpoint-2; killed after the Trainer saved checkpoint-6, before the marker
    proc = killed([*args, "--output-dir", cut, "--resume"], "before_marker:6")
    assert "skipped checkpoint-4: incomplete" in proc.stderr
    assert (cut / "incomplete-checkpoint-4").is_dir()
    # 3. resumed from checkpoint-4; killed half-way through the metrics row of step 7
    proc = killed([*args, "--output-dir", cut, "--resume"], "metrics_line:7")
    assert "skipped checkpoint-6" in proc.stderr
    # 4. resumed from checkpoint-6 (complete this time), to the end
    code, out, err = run_cli([*args, "--output-dir", cut, "--resume"], capsys)
    assert code == 0, err
    assert "resuming from" in out and "checkpoint-6" in out
    assert_same_rows(whole, cut)
    assert_same_weights(whole, cut)
    assert tensorboard_steps(cut, "loss") == list(range(1, 9))
    assert sorted(p.name for p in cut.glob("*checkpoint-*")) == [
        "checkpoint-6", "checkpoint-8", "incomplete-checkpoint-4", "incomplete-checkpoint-6"]
    assert len((cut / "resumes.jsonl").read_text().splitlines()) == 3


def test_grpo_killed_mid_weights_in_rotation_and_in_the_final_save_resumes_exactly(
        tmp_path, capsys, tiny_lm):
    from tests.algos.test_grpo import prompts
    from tests.conftest import write_jsonl

    data = write_jsonl(tmp_path / "prompts.jsonl", prompts(32, 0))
    args = ["rlhf", "--algo", "grpo", "--model", tiny_lm, "--dataset", data,
            "--reward-funcs", "length", "--length-target", "5", "--num-generations", "4",
            "--max-completion-length", "10", "--per-device-train-batch-size", "8",
            "--learning-rate", "1e-2", "--lr-scheduler-type", "constant", "--warmup-ratio",
            "0", "--max-steps", "8", "--save-steps", "2", "--save-total-limit", "1",
            "--report-to", "none", "--seed", "0"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    code, _, err = run_cli([*args, "--output-dir", whole], capsys)
    assert code == 0, err
    # 1. killed half-way through checkpoint-4's weights file
    killed([*args, "--output-dir", cut], "safetensors:4")
    # 2. resumed from checkpoint-2; killed while rotation deletes checkpoint-4 after marking 6
    killed([*args, "--output-dir", cut, "--resume"], "in_rotation:6")
    assert (cut / ".deleting-checkpoint-4").is_dir() and (cut / "checkpoint-6").is_dir()
    # 3. resumed from checkpoint-6; killed while writing the final model
    killed([*args, "--output-dir", cut, "--resume"], "final_save")
    # 4. resumed from checkpoint-8: nothing left to train but the final save
    code, out, err = run_cli([*args, "--output-dir", cut, "--resume"], capsys)
    assert code == 0, err
    assert "checkpoint-8" in out and not list(cut.glob(".deleting-*"))
    assert_same_rows(whole, cut)
    assert_same_weights(whole, cut)


def test_a_full_disk_while_saving_is_one_line_and_the_run_resumes(tmp_path, capsys,
                                                                   monkeypatch, tiny_lm,
                                                                   pairs_file):
    """torch's writer says `file write failed` on a full disk, never `no space`."""
    import shutil

    import torch

    args = ["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", pairs_file,
            "--output-dir", tmp_path / "out", "--learning-rate", "1e-3", "--max-steps", "6",
            "--save-steps", "2", "--per-device-train-batch-size", "8", "--report-to", "none"]
    real_save, real_usage = torch.save, shutil.disk_usage

    def full(obj, f, *a, **k):
        if "checkpoint-4" in str(f):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                               "failed writing file data/0: file write failed")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: real_usage(p)._replace(free=4096))
    code, _, err = run_cli(args, capsys)
    assert code == 2, err
    line = error_line(err)
    assert line.startswith("error: no space left on the disk of") and "MB)" in line, line
    assert "checkpoint-2" in line and "Traceback" not in err
    monkeypatch.setattr(torch, "save", real_save)
    monkeypatch.setattr(shutil, "disk_usage", real_usage)
    code, _, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    assert [r["step"] for r in read_metrics(tmp_path / "out") if "loss" in r] == \
        list(range(1, 7))
