"""What a run prints: the short-run warning before training, align's progress bar instead of
TRL's metrics dict, no warnings caused by align's own settings, one line for a new reward head;
--verbose brings the libraries' output back."""

from __future__ import annotations

import warnings

import pytest

from align.plan import MIN_STEPS, optimizer_steps, short_run_warnings
from tests.conftest import addition_pairs, run_cli, write_jsonl


def _cfg(algo="dpo", **flags):
    from align.options import resolve
    from align.registry import flag_owners, get_algo

    spec = get_algo(algo)
    values = {"model": "m", "dataset": "d.jsonl", **flags}
    return resolve(spec, values, {}, flag_owners()), spec


@pytest.mark.parametrize("rows, flags, steps, warmup", [
    (3, {}, 1, 1),  # getting-started's three pairs: one step, and it is the warm-up
    (3, {"per_device_train_batch_size": 1, "num_train_epochs": 3.0}, 9, 1),
    (100, {"gradient_accumulation_steps": 4}, 7, 1),  # 25 micro-batches -> 7 accumulation rounds
    (100, {"max_steps": 2, "warmup_ratio": 0.0}, 2, 0),
    (10, {"per_device_train_batch_size": 1}, 10, 1),
])
def test_optimizer_steps_are_counted_as_the_trainer_counts_them(rows, flags, steps, warmup):
    cfg, spec = _cfg(**flags)
    assert optimizer_steps(cfg, spec, rows)[:2] == (steps, warmup)


def test_grpo_and_ppo_steps():
    cfg, spec = _cfg("grpo", num_generations=4, per_device_train_batch_size=8)
    assert optimizer_steps(cfg, spec, 10)[0] == 5  # 40 completions / 8
    cfg, spec = _cfg("ppo", reward_model="rm", rollout_batch_size=8, ppo_epochs=2)
    assert optimizer_steps(cfg, spec, 16)[0] == 4  # 2 rollouts x 2 epochs x 1 mini-batch


def test_short_runs_warn_with_the_numbers_and_long_ones_do_not():
    cfg, spec = _cfg()
    (text,) = short_run_warnings(cfg, spec, 3)
    assert "only 1 optimizer step (3 pairs / (4 per device" in text
    assert "1 of warm-up (--warmup-ratio 0.05 of 1" in text and "all zeros" in text
    cfg, spec = _cfg(warmup_ratio=0.0, per_device_train_batch_size=2)
    (text,) = short_run_warnings(cfg, spec, 3)
    assert "only 2 optimizer steps" in text and f"fewer than {MIN_STEPS}" in text
    assert "--warmup-ratio 0" not in text
    assert short_run_warnings(*_cfg(per_device_train_batch_size=1), 3) == []


def test_the_warning_is_in_the_dry_run(capsys, tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", addition_pairs(3))
    code, out, err = run_cli(["rlhf", "--algo", "dpo", "--model", "Qwen/Qwen2.5-0.5B-Instruct",
                              "--dataset", data, "--lora", "--dry-run"], capsys)
    assert code == 0 and "warning: this run takes only 1 optimizer step" in err


def test_getting_started_example_trains_its_adapter(capsys, tmp_path, tiny_lm):
    """docs/getting-started.md: three pairs; the documented flags give 9 steps and an adapter
    that is not all zeros, the defaults one warm-up step and an all-zero adapter."""
    from safetensors.torch import load_file

    data = write_jsonl(tmp_path / "my_pairs.jsonl", [
        {"question": "What is the capital of France?", "good": "Paris.", "bad": "Lyon."},
        {"question": "What is 2+2?", "good": "4.", "bad": "5."},
        {"question": "Colour of the sky?", "good": "Blue.", "bad": "Green."}])
    base = ["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", data, "--columns",
            "prompt=question,chosen=good,rejected=bad", "--lora", "--report-to", "none"]
    largest = {}
    for name, extra in (("default", []), ("documented", ["--per-device-train-batch-size", "1",
                                                         "--num-train-epochs", "3"])):
        out = tmp_path / name
        code, stdout, err = run_cli(base + ["--output-dir", out, *extra], capsys)
        assert code == 0, err
        weights = load_file(out / "adapter_model.safetensors")
        largest[name] = max(float(v.abs().max()) for k, v in weights.items() if "lora_B" in k)
        assert ("only 1 optimizer step" in err) == (name == "default")
    assert largest == {"default": 0.0, "documented": pytest.approx(largest["documented"])}
    assert largest["documented"] > 0


def test_trl_runs_print_align_bar_not_metrics_dicts_nor_deprecations(capsys, tmp_path, tiny_lm,
                                                                      recwarn):
    data = write_jsonl(tmp_path / "p.jsonl", addition_pairs(16))
    args = ["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", data, "--max-steps", "3",
            "--save-steps", "2", "--gradient-checkpointing", "--report-to", "none"]
    warnings.simplefilter("always")  # count every warning, not pytest's filtered view
    code, out, err = run_cli(args + ["--output-dir", tmp_path / "quiet"], capsys)
    assert code == 0, err
    assert "{'loss'" not in out + err and "'rewards/margins'" not in out + err
    assert "3/3" in err and "loss=" in err  # align's bar with its metrics
    ours = [w for w in recwarn if "gradient_checkpointing" in str(w.message)]
    assert not ours, [str(w.message) for w in ours]
    code, out, err = run_cli(args + ["--output-dir", tmp_path / "loud", "--verbose"], capsys)
    assert code == 0, err
    assert "{'loss'" in out + err  # TRL's own printing, as it is


def test_a_new_reward_head_is_one_align_line(capsys, tmp_path, tiny_lm):
    data = write_jsonl(tmp_path / "p.jsonl", addition_pairs(16))
    code, out, err = run_cli(["rlhf", "--algo", "rm", "--model", tiny_lm, "--dataset", data,
                              "--max-steps", "2", "--output-dir", tmp_path / "rm",
                              "--report-to", "none"], capsys)
    assert code == 0, err
    assert "a new score head (one output) is initialised at random" in out + err
    assert "LOAD REPORT" not in out + err and "were not sharded" not in out + err


def test_training_loops_report_progress_to_listeners(capsys, tmp_path, tiny_lm):
    from align import console

    data = write_jsonl(tmp_path / "p.jsonl", addition_pairs(16))
    seen: list[tuple[int, int]] = []
    with console.listen(lambda done, total: seen.append((done, total))):
        code, _, err = run_cli(["rlhf", "--algo", "dpo", "--model", tiny_lm, "--dataset", data,
                                "--max-steps", "3", "--output-dir", tmp_path / "o",
                                "--report-to", "none"], capsys)
    assert code == 0, err
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)
    console.report(1, 2)  # no listener left: nothing happens


def test_stage_line_draws_a_bar_with_time_left_and_ends_with_the_time():
    import io

    from align.quickstart.stages import StageLine

    stream = io.StringIO()
    line = StageLine("sft", stream, live=True)
    line.update(0, 10)
    line.last_draw = 0.0
    line._bar_start -= 2.0  # two seconds for the first 5 steps
    line.update(5, 10)
    line.set_phase("evaluating", "checkpoints")
    line.finish("done in 3.0 s")
    text = stream.getvalue()
    frames = text.split("\r")
    assert any("[############------------] 5/10 steps" in f and "0:02 left" in f for f in frames)
    assert "evaluating" in text and frames[-1].rstrip().endswith("done in 3.0 s")
    quiet = io.StringIO()
    StageLine("dpo", quiet, live=False).finish("done in 1.0 s")
    assert quiet.getvalue() == "  dpo             done in 1.0 s\n"  # no redraws in a log
