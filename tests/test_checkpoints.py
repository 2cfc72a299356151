"""align/checkpoints.py and align/output_dir.py: complete-or-ignored checkpoints, rotation,
the output-dir lock, the overwrite and resume refusals, and the resume config check on real
runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from align import checkpoints as ck
from align import output_dir as od
from align.errors import AlignError
from align.metrics import read_metrics
from tests.conftest import addition_pairs, run_cli, write_jsonl

ROOT = Path(__file__).parents[1]


def make_checkpoint(out: Path, step: int, healthy: bool = True, config: dict | None = None,
                    data_hash: str | None = None) -> Path:
    path = out / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"w" * (10 + step))
    (path / "sub").mkdir()
    (path / "sub" / "optim.pt").write_bytes(b"o" * 7)
    ck.mark_complete(path, step, {"config": config or {}, "data_hash": data_hash}, healthy)
    return path


def test_only_checkpoints_with_a_whole_marker_count(tmp_path):
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 4)
    (tmp_path / "checkpoint-6").mkdir()  # the trainer's files, no marker: cut short
    (tmp_path / "checkpoint-8.tmp").mkdir()  # PPO's temporary name
    (tmp_path / "checkpoint-x").mkdir()
    truncated = make_checkpoint(tmp_path, 10)
    (truncated / "model.safetensors").write_bytes(b"short")  # a file shorter than recorded
    complete, incomplete = ck.scan(tmp_path)
    assert [c.step for c in complete] == [2, 4]
    assert [p.name for p in incomplete] == ["checkpoint-10", "checkpoint-6", "checkpoint-8.tmp"]
    assert ck.latest(tmp_path).step == 4
    record = ck.read_marker(tmp_path / "checkpoint-4")
    assert record["files"] == {"model.safetensors": 14, "sub/optim.pt": 7}


def test_rotation_keeps_the_newest_healthy_checkpoint_and_deletes_at_once(tmp_path):
    make_checkpoint(tmp_path, 2)
    for step in (4, 6, 8):
        make_checkpoint(tmp_path, step, healthy=False)
    assert ck.rotate(tmp_path, 2) == [4]
    assert [c.step for c in ck.scan(tmp_path)[0]] == [2, 6, 8]
    assert ck.latest(tmp_path, healthy=True).step == 2
    assert not list(tmp_path.glob(".deleting-*"))
    assert ck.rotate(tmp_path, None) == []


def test_incomplete_checkpoints_are_moved_aside_not_deleted(tmp_path):
    (tmp_path / "checkpoint-6").mkdir()
    (tmp_path / "incomplete-checkpoint-6").mkdir()
    moved = ck.move_aside([tmp_path / "checkpoint-6"])
    assert [p.name for p in moved] == ["incomplete-checkpoint-6-2"]


def run_cfg(tmp_path: Path, **train: object) -> SimpleNamespace:
    """The parts of a RunConfig that open_output_dir reads."""
    t = SimpleNamespace(output_dir=str(tmp_path / "out"), resume=False, overwrite_output_dir=False,
                        resume_allow_change=None)
    t.__dict__.update(train)
    return SimpleNamespace(train=t, algo_name="dpo")


def test_a_second_run_into_a_locked_directory_is_refused_at_once(tmp_path):
    first = od.open_output_dir(run_cfg(tmp_path), {})
    try:
        with pytest.raises(AlignError, match=r"in use by another align run \(pid "):
            od.open_output_dir(run_cfg(tmp_path), {})
    finally:
        first.release()
    od.open_output_dir(run_cfg(tmp_path), {}).release()  # free again


def test_the_lock_dies_with_a_killed_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from pathlib import Path; "
            "from align.output_dir import _lock; _lock(Path(sys.argv[1])); print('locked', "
            "flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(out), str(ROOT)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(AlignError, match="in use by another align run"):
            od._lock(out)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    os.close(od._lock(out))  # the OS released it with the process


def dpo_args(model: Path, data: Path, out: Path, *extra: object) -> list:
    return ["rlhf", "--algo", "dpo", "--model", model, "--dataset", data, "--output-dir", out,
            "--learning-rate", "1e-3", "--max-steps", "4", "--save-steps", "2",
            "--per-device-train-batch-size", "8", "--report-to", "none", *extra]


def test_a_finished_run_is_replaced_only_with_overwrite_output_dir(tmp_path, capsys, tiny_lm,
                                                                  pairs_file):
    out = tmp_path / "run"
    code, _, err = run_cli(dpo_args(tiny_lm, pairs_file, out), capsys)
    assert code == 0, err
    before = (out / "model.safetensors").stat().st_mtime_ns
    code, _, err = run_cli(dpo_args(tiny_lm, pairs_file, out), capsys)
    assert code == 2 and "holds a finished run" in err
    assert (out / "model.safetensors").stat().st_mtime_ns == before  # untouched
    (out / "checkpoint-99").mkdir()  # something of the old run that must go
    code, _, err = run_cli(dpo_args(tiny_lm, pairs_file, out, "--overwrite-output-dir",
                                    "--max-steps", "2"), capsys)
    assert code == 0, err
    assert "deleting the earlier run" in err and not (out / "checkpoint-99").exists()
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2]


def test_overwrite_refuses_to_delete_an_input(tmp_path, capsys, tiny_lm):
    out = tmp_path / "run"
    data = write_jsonl(out / "pairs.jsonl", addition_pairs(16))
    (out / "align_config.yaml").write_text("algo: dpo\n")
    code, _, err = run_cli(dpo_args(tiny_lm, data, out, "--overwrite-output-dir"), capsys)
    assert code == 2 and "would delete" in err and "--dataset" in err
    assert data.exists()


def test_home_is_expanded_in_paths(tmp_path, monkeypatch, tiny_lm, pairs_file):
    from align.options import resolve
    from align.registry import flag_owners, get_algo

    monkeypatch.setenv("HOME", str(tmp_path))
    spec = get_algo("dpo")
    cfg = resolve(spec, {"model": str(tiny_lm), "dataset": str(pairs_file),
                         "output_dir": "~/runs/x"}, {}, flag_owners())
    assert cfg.train.output_dir == str(tmp_path / "runs" / "x")


def test_resume_refuses_each_changed_run_defining_flag_and_the_data(tmp_path, capsys, tiny_lm,
                                                                   pairs_file):
    out = tmp_path / "run"
    code, _, err = run_cli(dpo_args(tiny_lm, pairs_file, out, "--max-steps", "2"), capsys)
    assert code == 0, err
    config = (out / "align_config.yaml").read_text()
    code, _, err = run_cli(dpo_args(tiny_lm, pairs_file, out, "--max-steps", "2", "--resume",
                                    "--beta", "0.3", "--lora"), capsys)
    assert code == 2
    assert "--lora False -> True" in err and "--beta 0.1 -> 0.3" in err
    assert "--resume-allow-change beta,lora" in err or "--resume-allow-change lora,beta" in err
    edited = write_jsonl(tmp_path / "pairs.jsonl", addition_pairs(64, seed=5))
    code, _, err = run_cli(dpo_args(tiny_lm, edited, out, "--max-steps", "2", "--resume"),
                           capsys)
    assert code == 2 and "--dataset" in err
    pairs_file_copy = write_jsonl(tmp_path / "same.jsonl", addition_pairs())
    code, _, err = run_cli(dpo_args(tiny_lm, pairs_file_copy, out, "--max-steps", "2",
                                    "--resume", "--resume-allow-change", "dataset"), capsys)
    assert code == 0, err  # same content under another name: allowed once named
    code, _, err = run_cli(dpo_args(tiny_lm, pairs_file, out, "--resume",
                                    "--resume-allow-change", "nonsense"), capsys)
    assert code == 2 and "no flag named nonsense" in err
    assert (out / "align_config.yaml").read_text() == config  # never rewritten by a resume


def test_a_resume_with_an_allowed_new_learning_rate_trains_at_it(tmp_path, capsys, tiny_lm,
                                                                 pairs_file):
    out = tmp_path / "run"
    args = dpo_args(tiny_lm, pairs_file, out, "--lr-scheduler-type", "constant",
                    "--warmup-ratio", "0")
    code, _, err = run_cli([*args, "--max-steps", "2"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*args, "--learning-rate", "5e-4", "--resume",
                            "--resume-allow-change", "learning-rate,max-steps"], capsys)
    assert code == 0, err
    rates = [(r["step"], r["learning_rate"]) for r in read_metrics(out) if "loss" in r]
    assert rates == [(1, 1e-3), (2, 1e-3), (3, 5e-4), (4, 5e-4)], rates
    resumes = [json.loads(line) for line in (out / "resumes.jsonl").read_text().splitlines()]
    assert resumes[0]["changes"] == {"learning_rate": [1e-3, 5e-4], "max_steps": [2, 4]}


def test_ppo_resume_with_a_new_actor_lr_trains_at_it(tmp_path, capsys, tiny_lm, tiny_rm):
    from tests.ppo.conftest import chat_prompts

    data = write_jsonl(tmp_path / "p.jsonl", chat_prompts(16, 0))
    out = tmp_path / "ppo"
    args = ["rlhf", "--algo", "ppo", "--model", tiny_lm, "--reward-model", tiny_rm, "--dataset",
            data, "--output-dir", out, "--rollout-batch-size", "4", "--max-new-tokens", "4",
            "--per-device-train-batch-size", "4", "--ppo-epochs", "1", "--save-steps", "1",
            "--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--report-to", "none"]
    code, _, err = run_cli([*args, "--max-steps", "1", "--actor-lr", "1e-4"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*args, "--max-steps", "2", "--actor-lr", "3e-4", "--resume"], capsys)
    assert code == 2 and "--actor-lr 0.0001 -> 0.0003" in err and "--max-steps 1 -> 2" in err
    code, _, err = run_cli([*args, "--max-steps", "2", "--actor-lr", "3e-4", "--resume",
                            "--resume-allow-change", "actor-lr,max-steps"], capsys)
    assert code == 0, err
    assert [r["lr/actor"] for r in read_metrics(out) if "lr/actor" in r] == \
        pytest.approx([1e-4, 3e-4])


def test_two_runs_started_together_one_is_refused(tmp_path, capsys, tiny_lm, pairs_file):
    """A real run in another process holds the directory: a second run into it stops at once,
    and the first finishes with its own rows alone in metrics.jsonl."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "shared"
    args = dpo_args(tiny_lm, pairs_file, out, "--max-steps", "40", "--save-steps", "100")
    first = subprocess.Popen([sys.executable, "-m", "align", *map(str, args)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (out / od.LOCK_FILE).exists() or "pid" not in (out / od.LOCK_FILE).read_text():
        assert first.poll() is None, first.communicate()
        time.sleep(0.02)
    code, _, err = run_cli(args, capsys)
    _, first_err = first.communicate()
    assert first.returncode == 0, first_err[-2000:]
    assert code == 2 and "in use by another align run (pid" in err
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == list(range(1, 41))


def test_resuming_a_finished_run_trains_nothing_and_repeats_no_row(tmp_path, capsys, tiny_lm,
                                                                   tiny_rm, pairs_file):
    from tests.ppo.conftest import chat_prompts

    out = tmp_path / "dpo"
    code, _, err = run_cli(dpo_args(tiny_lm, pairs_file, out), capsys)
    assert code == 0, err
    before = read_metrics(out)
    code, stdout, err = run_cli(dpo_args(tiny_lm, pairs_file, out, "--resume"), capsys)
    assert code == 0, err
    assert "nothing left to train" in stdout
    assert [r["step"] for r in read_metrics(out)] == [r["step"] for r in before]

    data = write_jsonl(tmp_path / "p.jsonl", chat_prompts(8, 0))
    out = tmp_path / "ppo"
    args = ["rlhf", "--algo", "ppo", "--model", tiny_lm, "--reward-model", tiny_rm, "--dataset",
            data, "--eval-dataset", data, "--output-dir", out, "--rollout-batch-size", "4",
            "--max-new-tokens", "4", "--per-device-train-batch-size", "4", "--ppo-epochs", "1",
            "--max-steps", "2", "--save-steps", "2", "--report-to", "none"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    before = [r["step"] for r in read_metrics(out)]
    code, _, err = run_cli([*args, "--resume"], capsys)
    assert code == 0, err
    assert [r["step"] for r in read_metrics(out)] == before == [0, 1, 2, 2]
