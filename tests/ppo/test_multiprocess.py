"""PPO as two processes on CPU (torchrun, gloo): the same first steps as one process, a reward
that rises, and a SIGKILLed run that resumes exactly; full fine-tuning and LoRA.

Two processes share the rollout batch (8 prompts each of 16). One process gets the same
generate calls (``--rollout-generate-batch-size 8``), each of which samples from a stream
seeded by its first prompt's global row, so both launches sample the same responses; every
statistic is taken over the whole batch and the gradients are averaged, so the logged
metrics agree up to float rounding.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from align.metrics import read_metrics
from tests.conftest import run_cli
from tests.ppo.test_e2e import timing

ROOT = Path(__file__).parents[2]


def torchrun(argv: list, log: Path) -> subprocess.Popen:
    """Start ``align ARGV`` as two processes (one intra-op thread each), in its own session."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path,
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "align",
           *map(str, argv)]
    return subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def run_two(argv: list, log: Path) -> str:
    proc = torchrun(argv, log)
    code = proc.wait(timeout=600)
    text = log.read_text()
    assert code == 0, text[-3000:]
    return text


def args(model, rm, data, out, *extra):
    return ["rlhf", "--algo", "ppo", "--model", model, "--reward-model", rm, "--dataset", data,
            "--output-dir", out, "--rollout-batch-size", "16", "--max-new-tokens", "12",
            "--rollout-generate-batch-size", "8", "--no-sort-by-length",
            "--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--critic-lr", "1e-3",
            "--report-to", "none", *extra]


MODES = {"full": ["--actor-lr", "2e-4"], "lora": ["--lora", "--actor-lr", "1e-3"]}


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_match_one_process(tmp_path, capsys, tiny_sft, tiny_pref_rm,
                                         prompt_files, mode):
    """Half the per-process batch on two processes: the first steps' losses, rewards, KL,
    advantages' statistics and clip fractions are those of one process with the whole
    batch (a second step checks that the averaged update moved both alike)."""
    extra = [*MODES[mode], "--max-steps", "2", "--save-steps", "100", "--ppo-epochs", "2"]
    one, two = tmp_path / "one", tmp_path / "two"
    code, _, err = run_cli(args(tiny_sft, tiny_pref_rm, prompt_files[0], one, *extra,
                                "--per-device-train-batch-size", "16"), capsys)
    assert code == 0, err
    out = run_two(args(tiny_sft, tiny_pref_rm, prompt_files[0], two, *extra,
                       "--per-device-train-batch-size", "4"), tmp_path / "two.log")
    assert "over 2 processes (8 each)" in out
    a, b = read_metrics(one), read_metrics(two)
    assert [r["step"] for r in b] == [1, 2]  # each step logged once
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in (k for k in ra if not timing(k)):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-5), (ra["step"], key)
    assert out.count("step 1: reward") == 1  # one console line per step, from rank 0


def test_two_processes_raise_the_held_out_reward(tmp_path, tiny_sft, tiny_pref_rm,
                                                 prompt_files):
    train, held_out = prompt_files
    out = tmp_path / "run"
    run_two(args(tiny_sft, tiny_pref_rm, train, out, *MODES["full"], "--eval-dataset",
                 held_out, "--max-steps", "12", "--save-steps", "6", "--rollout-batch-size",
                 "32", "--per-device-train-batch-size", "8", "--num-mini-batches", "2",
                 "--rollout-generate-batch-size", "16"), tmp_path / "run.log")
    final = json.loads((out / "final_metrics.json").read_text())
    # the one-process test's development runs rose by 3.1 to 5.6 (32 held-out prompts)
    assert final["eval_reward_after"] > final["eval_reward_before"] + 2.0, final
    rows = [r for r in read_metrics(out) if "reward/raw" in r]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert final["collapsed"] is False
    assert sorted(p.name for p in (out / "checkpoint-12").iterdir()) == \
        ["actor", "align_checkpoint.json", "critic", "optim.pt", "rank-0.pt", "rank-1.pt",
         "state.json"]


def kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL torchrun and the workers it started (each in a session of its own)."""
    def children(pid: int) -> list[int]:
        kids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(stat.parent.name))
        return kids + [k for kid in kids for k in children(kid)]

    for pid in [proc.pid, *children(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, "the run ended before it saved"
        assert time.time() < end, f"no {path} after {timeout} s"
        time.sleep(0.05)


def test_two_processes_killed_then_resumed_log_the_same_metrics(tmp_path, tiny_sft,
                                                                tiny_pref_rm, prompt_files):
    """LoRA on the shared base, ppo-max (running reward statistics), adaptive KL and PTX (each
    process draws its own PTX records): SIGKILL to both processes after the first
    checkpoint, then --resume; every logged value equals the uninterrupted run's."""
    from tests.conftest import write_jsonl

    ptx = write_jsonl(tmp_path / "ptx.jsonl", [
        {"messages": [{"role": "user", "content": f"say {w}"},
                      {"role": "assistant", "content": f"{w} {w}"}]}
        for w in ("good", "blue", "paris", "three", "sea")])
    extra = [*MODES["lora"], "--max-steps", "4", "--save-steps", "2", "--ppo-epochs", "2",
             "--per-device-train-batch-size", "4", "--num-mini-batches", "2", "--preset",
             "ppo-max", "--target-kl", "1", "--kl-horizon", "100", "--ptx-dataset", ptx,
             "--eval-dataset", prompt_files[1]]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run_two(args(tiny_sft, tiny_pref_rm, prompt_files[0], whole, *extra), tmp_path / "w.log")
    proc = torchrun(args(tiny_sft, tiny_pref_rm, prompt_files[0], cut, *extra),
                    tmp_path / "c.log")
    wait_for(cut / "checkpoint-2" / "state.json", proc)
    kill_all(proc)
    time.sleep(1)
    assert not (cut / "final_metrics.json").exists() and not (cut / "checkpoint-4").exists()
    out = run_two(args(tiny_sft, tiny_pref_rm, prompt_files[0], cut, *extra, "--resume"),
                  tmp_path / "r.log")
    assert "resumed from" in out
    a, b = read_metrics(whole), read_metrics(cut)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in (k for k in ra if not timing(k)):
            assert rb[key] == pytest.approx(ra[key], abs=1e-6), (ra["step"], key)
    assert "loss/ptx" in [r for r in a if "reward/raw" in r][-1]


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_under_deepspeed_zero2_match_one_process(tmp_path, capsys, tiny_sft,
                                                               tiny_pref_rm, prompt_files, mode):
    """ZeRO-2 (gloo on CPU): one engine holds actor and critic, partitions the optimizer state
    and gradients, and reduces them; with clipping off (the engine clips actor and critic by
    one joint norm, align by one norm each) the steps match one process without DeepSpeed. A
    second launch resumes from the engine's checkpoint and logs what the whole run logged."""
    pytest.importorskip("deepspeed")
    ds = ROOT / "recipes" / "deepspeed" / "zero2.json"
    extra = [*MODES[mode], "--max-steps", "2", "--ppo-epochs", "2", "--max-grad-norm", "0"]
    one, two = tmp_path / "one", tmp_path / "two"
    code, _, err = run_cli(args(tiny_sft, tiny_pref_rm, prompt_files[0], one, *extra,
                                "--save-steps", "100", "--per-device-train-batch-size", "16"),
                           capsys)
    assert code == 0, err
    zero2 = [*extra, "--per-device-train-batch-size", "4", "--deepspeed", ds]
    out = run_two(args(tiny_sft, tiny_pref_rm, prompt_files[0], two, *zero2, "--save-steps",
                       "1"), tmp_path / "two.log")
    assert "ZeRO stage 2" in out
    a, b = read_metrics(one), read_metrics(two)
    for ra, rb in zip(a, b):
        for key in (k for k in ra if not timing(k) and not k.startswith("grad/")):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-5), (ra["step"], key)
    assert "grad/norm" in b[-1]  # the engine's one norm
    assert (two / "checkpoint-1" / "deepspeed").is_dir()
    # resume step 2 from the engine's checkpoint of step 1
    import shutil

    shutil.rmtree(two / "checkpoint-2")
    run_two(args(tiny_sft, tiny_pref_rm, prompt_files[0], two, *zero2, "--save-steps", "1",
                 "--resume"), tmp_path / "resume.log")
    c = read_metrics(two)
    assert [r["step"] for r in c] == [1, 2]
    for key in (k for k in b[1] if not timing(k)):
        assert c[1][key] == pytest.approx(b[1][key], abs=1e-6), key


def weights(out: Path) -> dict:
    """Every tensor of the actor and critic saved in ``out`` (a full model or adapters)."""
    from safetensors.torch import load_file

    files = sorted([*out.glob("*.safetensors"), *(out / "critic").glob("*.safetensors")])
    return {f"{f.relative_to(out)}:{k}": v for f in files for k, v in load_file(f).items()}


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_under_deepspeed_zero3_match_one_process(tmp_path, capsys, tiny_sft,
                                                               tiny_pref_rm, prompt_files, mode):
    """ZeRO-3 (gloo on CPU) shards the weights too, every one of them here (persistence
    threshold 0: adapters, value head and norms included), and each forward pass gathers
    them: responses of up to 32 tokens end at different lengths on the two processes, whose
    generate calls must then keep stepping together (synced_gpus; without it gloo reports a
    collective mismatch). The steps match one process without DeepSpeed (the engine's
    gradient buffer is cleared before each mini-batch, see Dist.start_accumulation: without
    that step 2's critic differed, explained variance 0.319 against 0.309 in full
    fine-tuning); the saved models, gathered
    onto rank 0, hold one process's weights; a second launch resumes step 2 from the
    engine's checkpoint."""
    pytest.importorskip("deepspeed")
    import torch

    ds = json.loads((ROOT / "recipes" / "deepspeed" / "zero3.json").read_text())
    ds["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    (tmp_path / "zero3.json").write_text(json.dumps(ds))
    extra = [*MODES[mode], "--max-steps", "2", "--ppo-epochs", "2", "--max-grad-norm", "0",
             "--max-new-tokens", "32"]
    one, two = tmp_path / "one", tmp_path / "two"
    code, _, err = run_cli(args(tiny_sft, tiny_pref_rm, prompt_files[0], one, *extra,
                                "--save-steps", "100", "--per-device-train-batch-size", "16"),
                           capsys)
    assert code == 0, err
    zero3 = [*extra, "--per-device-train-batch-size", "4", "--deepspeed", tmp_path / "zero3.json",
             "--save-steps", "1"]
    out = run_two(args(tiny_sft, tiny_pref_rm, prompt_files[0], two, *zero3),
                  tmp_path / "two.log")
    assert "ZeRO stage 3" in out
    a, b = read_metrics(one), read_metrics(two)
    assert [r["step"] for r in b] == [1, 2]
    for ra, rb in zip(a, b):
        for key in (k for k in ra if not timing(k) and not k.startswith("grad/")):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-5), (ra["step"], key)
    w1, w2 = weights(one), weights(two)
    assert w1.keys() == w2.keys() and len(w1) > 2
    for k, v in w1.items():
        assert w2[k].shape == v.shape, k
        assert (w2[k] - v).abs().max() < 1e-4, k
    # resume step 2 from the engine's checkpoint of step 1
    import shutil

    shutil.rmtree(two / "checkpoint-2")
    run_two(args(tiny_sft, tiny_pref_rm, prompt_files[0], two, *zero3, "--resume"),
            tmp_path / "resume.log")
    c = read_metrics(two)
    assert [r["step"] for r in c] == [1, 2]
    for key in (k for k in b[1] if not timing(k)):
        assert c[1][key] == pytest.approx(b[1][key], abs=1e-6), key
    for k, v in weights(two).items():
        assert torch.equal(v, w2[k]), k
