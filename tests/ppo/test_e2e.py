"""PPO end to end through the CLI on tiny models: the reward rises with KL bounded (full and
LoRA), a run killed with SIGKILL resumes to the same metrics, and the collapse detectors fire on
forced repeater and mute runs (and stay quiet on the healthy ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from align.metrics import read_metrics as read_rows
from tests.conftest import run_cli, write_jsonl

EOS = 2  # <|im_end|> in the tiny tokenizer


def timing(key: str) -> bool:
    """The metrics that differ between runs of the same config: wall clock and speed."""
    return key == "time" or key.startswith("perf/")


def ppo_args(model, rm, data, out, *extra):
    return ["rlhf", "--algo", "ppo", "--model", model, "--reward-model", rm, "--dataset", data,
            "--output-dir", out, "--rollout-batch-size", "16", "--max-new-tokens", "12",
            "--per-device-train-batch-size", "8", "--num-mini-batches", "2",
            "--lr-scheduler-type", "constant", "--warmup-ratio", "0", "--critic-lr", "1e-3",
            *extra]


@pytest.mark.parametrize("mode,actor_lr", [("full", "2e-4"), ("lora", "1e-3")])
def test_ppo_raises_held_out_reward_with_bounded_kl(tmp_path, capsys, tiny_sft, tiny_pref_rm,
                                                      prompt_files, mode, actor_lr):
    train, held_out = prompt_files
    out = tmp_path / mode
    # The tiny reward model scores an answer cut at 12 tokens low at its last token, which
    # keeps the answers ending; read at the turn end (the default for chat prompts), the cut
    # looks like an end to it: the lora run's ended share fell from 0.81 to 0.03-0.38 over
    # these 12 steps (kl_drift fired), 0.4-0.6 with --missing-eos-penalty 1.0 (docs/ppo.md,
    # "Defaults on a real chat model")
    extra = ["--lora"] if mode == "lora" else []
    # the memory-saving paths ride along (moving offloaded models is a no-op on CPU)
    extra += ["--gradient-checkpointing"] if mode == "lora" else \
        ["--offload-ref-model", "--offload-reward-model"]
    code, stdout, err = run_cli(ppo_args(tiny_sft, tiny_pref_rm, train, out, "--eval-dataset",
                                         held_out, "--max-steps", "12", "--save-steps", "6",
                                         "--rollout-batch-size", "32", "--actor-lr", actor_lr,
                                         "--no-reward-at-turn-end", *extra), capsys)
    assert code == 0, err
    final = json.loads((out / "final_metrics.json").read_text())
    # sampled answers to 32 held-out prompts, same seed before and after; development runs
    # (seeds 1-3) rose by 3.1 to 5.6 with KL to the reference of 4.5 to 7.8 nats
    assert final["eval_reward_after"] > final["eval_reward_before"] + 2.0, final
    assert final["eval_kl_after"] < 15.0, final
    rows = read_rows(out)
    train_rows = [r for r in rows if "reward/raw" in r]
    assert len(train_rows) == 12
    assert max(r["objective/kl"] for r in train_rows) < 20.0
    # healthy: no detector fired, responses still end with EOS
    assert final["collapsed"] is False and not any(k.startswith("health/") for r in rows for k in r)
    assert train_rows[-1]["rollout/eos_frac"] >= 0.5
    for key in ("reward/raw", "reward/normalized", "objective/kl", "rollout/response_len",
                "rollout/eos_frac", "rollout/truncated_frac", "rollout/repeat_frac",
                "policy/entropy", "ref/perplexity", "policy/clipfrac", "policy/approx_kl",
                "value/clipfrac", "value/explained_var", "grad/actor_norm", "grad/critic_norm",
                "perf/tokens_per_s", "perf/rollout_s", "perf/score_s", "perf/train_s",
                "perf/rollout_tokens_per_s", "loss/policy", "loss/value", "lr/actor"):
        assert key in train_rows[0], key
    assert [r["step"] for r in rows if "eval/reward" in r] == [0, 6, 12]
    assert (out / "tensorboard").is_dir() and (out / "checkpoint-12").is_dir()
    assert "step 12: reward" in err + stdout
    assert "ppo: 12 steps of 32 prompts (64 in the data); each step 4 epochs x 2 mini-batches " \
        "of 16 (micro-batches of 8)" in stdout
    _check_saved_actor(out, tiny_sft, lora=mode == "lora")


def _check_saved_actor(out: Path, base: Path, lora: bool) -> None:
    from transformers import AutoModelForCausalLM

    if lora:
        from peft import PeftModel

        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out)
        assert (out / "critic" / "adapter_model.safetensors").exists()
        changed = any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)
    else:
        model = AutoModelForCausalLM.from_pretrained(out)
        start = AutoModelForCausalLM.from_pretrained(base)
        changed = any(not torch.equal(p, q) for p, q in zip(model.parameters(),
                                                             start.parameters()))
        assert (out / "critic" / "model.safetensors").exists()
    assert changed


def test_reward_at_turn_end_rescores_the_same_samples(tmp_path, capsys, tiny_sft, tiny_pref_rm,
                                                     prompt_files):
    """--reward-at-turn-end changes what the reward model is shown, not what is sampled: the
    first step's responses are the same, their scores are not (some are cut at 12 tokens).
    With chat prompts it is the default."""
    runs = {}
    for name, extra in (("last", ["--no-reward-at-turn-end"]),
                        ("closed", ["--reward-at-turn-end"]), ("default", [])):
        out = tmp_path / name
        code, stdout, err = run_cli(ppo_args(tiny_sft, tiny_pref_rm, prompt_files[0], out,
                                             "--max-steps", "1", *extra), capsys)
        assert code == 0, err
        runs[name] = [r for r in read_rows(out) if "reward/raw" in r][0]
    last, closed = runs["last"], runs["closed"]
    assert last["rollout/response_len"] == closed["rollout/response_len"]
    assert last["rollout/eos_frac"] == closed["rollout/eos_frac"] < 1.0
    assert closed["reward/raw"] != pytest.approx(last["reward/raw"], abs=1e-3)
    assert runs["default"]["reward/raw"] == closed["reward/raw"]


def test_sigkill_mid_save_and_mid_step_then_resume_logs_the_same_metrics(
        tmp_path, capsys, tiny_sft, tiny_pref_rm, prompt_files):
    """Every resumable state at once: preset ppo-max (running reward statistics), adaptive KL,
    PTX data position, critic warm-up, plus the remaining tricks' code paths. Killed from
    outside (tests/faults) half-way through checkpoint-4, then in the middle of step 5."""
    from tests.test_resume_faults import assert_same_rows, assert_same_weights, killed, \
        tensorboard_steps

    train, held_out = prompt_files
    ptx = write_jsonl(tmp_path / "ptx.jsonl", [
        {"messages": [{"role": "user", "content": f"say {w}"},
                      {"role": "assistant", "content": f"{w} {w}"}]}
        for w in ("good", "blue", "paris", "three", "sea")])
    extra = ["--eval-dataset", held_out, "--max-steps", "5", "--save-steps", "2",
             "--rollout-batch-size", "8", "--ppo-epochs", "2", "--actor-lr", "1e-3",
             "--preset", "ppo-max", "--target-kl", "1", "--kl-horizon", "100",
             "--ptx-dataset", ptx, "--critic-warmup-steps", "1", "--dual-clip", "3",
             "--entropy-coef", "0.01", "--kl-estimator", "k3", "--whiten-rewards",
             "--missing-eos-penalty", "1", "--advantage-clip", "3"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    code, _, err = run_cli(ppo_args(tiny_sft, tiny_pref_rm, train, whole, *extra), capsys)
    assert code == 0, err
    # 1. killed half-way through checkpoint-4's optim.pt (actor and critic already written)
    killed(ppo_args(tiny_sft, tiny_pref_rm, train, cut, *extra), "torch_save:4")
    assert (cut / "checkpoint-2").is_dir() and (cut / "checkpoint-4.tmp").is_dir()
    assert not (cut / "checkpoint-4").exists()
    # 2. resumed from checkpoint-2; killed in the middle of step 5 (checkpoint-4 complete)
    proc = killed(ppo_args(tiny_sft, tiny_pref_rm, train, cut, *extra, "--resume"), "at_step:5")
    assert "skipped checkpoint-4.tmp" in proc.stderr and "checkpoint-2" in proc.stdout
    # 3. resumed from checkpoint-4, to the end
    code, out, err = run_cli(ppo_args(tiny_sft, tiny_pref_rm, train, cut, *extra, "--resume"),
                             capsys)
    assert code == 0, err
    assert "resumed from" in out and "checkpoint-4" in out
    assert_same_rows(whole, cut)
    assert_same_weights(whole, cut)
    assert tensorboard_steps(cut, "reward/raw") == [1, 2, 3, 4, 5]
    a = read_rows(whole)
    assert "loss/ptx" in a[2] and "grad/actor_norm" not in a[1]  # step 1: critic warm-up
    whole_final = json.loads((whole / "final_metrics.json").read_text())
    cut_final = json.loads((cut / "final_metrics.json").read_text())
    assert cut_final["eval_reward_before"] == whole_final["eval_reward_before"]


def _repeater_reward(rm, prompt_ids, prompt_mask, response_ids, mask, chunk):
    """Forced repeater: pay for repeating the previous token and for never stopping."""
    scores = []
    for ids, m in zip(response_ids, mask):
        tokens = ids[m].tolist()
        repeats = sum(a == b for a, b in zip(tokens, tokens[1:]))
        scores.append(repeats / 4 + (0.0 if tokens[-1] == EOS else 1.0))
    return torch.tensor(scores, device=response_ids.device)


def _mute_reward(rm, prompt_ids, prompt_mask, response_ids, mask, chunk):
    """Forced mute: every token costs one point, so the best answer is EOS at once."""
    return -mask.sum(1).float()


# development runs fired at steps 7-14; a run stops as soon as the test has seen enough
COLLAPSE = ["--kl-coef", "0", "--actor-lr", "2e-3", "--max-steps", "40"]


def test_repeater_detector_stops_a_forced_repeater(tmp_path, capsys, monkeypatch, tiny_sft,
                                                   tiny_pref_rm, prompt_files):
    import align.ppo.rollout

    monkeypatch.setattr(align.ppo.rollout, "score_responses", _repeater_reward)
    out = tmp_path / "rep"
    code, _, err = run_cli(ppo_args(tiny_sft, tiny_pref_rm, prompt_files[0], out, *COLLAPSE,
                                    "--save-steps", "100", "--kl-max", "1e9",
                                    "--on-collapse", "stop"), capsys)
    assert code == 3, err
    assert "repeater" in err and "ran to the token limit" in err and "Try:" in err
    rows = read_rows(out)
    fired = [r for r in rows if r.get("health/repeater")]
    assert len(fired) == 1 and fired[0]["rollout/truncated_frac"] >= 0.8
    assert (out / f"checkpoint-{fired[0]['step']}").is_dir()  # saved before stopping
    assert not any(k in r for r in rows for k in ("health/mute", "health/nan"))


def test_no_eos_that_keeps_firing_stops_the_run_with_the_remedy(tmp_path, capsys, tiny_sft,
                                                                 tiny_pref_rm, prompt_files):
    """An online detector acts once it keeps firing: with --no-eos-frac 1.0 every step counts
    as "no answer ends", so no_eos advises at step 3 and, still firing at step 6
    (--advice-patience 3), stops the run (--on-collapse stop) naming the flag that fixed it
    on the real model."""
    out = tmp_path / "no_eos"
    code, _, err = run_cli(ppo_args(tiny_sft, tiny_pref_rm, prompt_files[0], out,
                                    "--max-steps", "10", "--save-steps", "100",
                                    "--no-eos-frac", "1.0", "--on-collapse", "stop"), capsys)
    assert code == 3, err
    rows = read_rows(out)
    assert [r["step"] for r in rows if r.get("health/no_eos")] == [3, 6]
    assert max(r["step"] for r in rows) == 6
    assert "stopped by --on-collapse stop at step 6 (no_eos at step 6)" in err
    assert "--reward-at-turn-end" in err and "still, 3 logged steps after" in err
    assert (out / "checkpoint-6").is_dir()  # the state, saved to continue from


def test_mute_detector_rolls_back_then_stops(tmp_path, capsys, monkeypatch, tiny_sft,
                                             tiny_pref_rm, prompt_files):
    import align.ppo.rollout

    monkeypatch.setattr(align.ppo.rollout, "score_responses", _mute_reward)
    out = tmp_path / "mute"
    code, _, err = run_cli(ppo_args(tiny_sft, tiny_pref_rm, prompt_files[0], out, *COLLAPSE,
                                    "--save-steps", "2", "--on-collapse", "rollback",
                                    "--max-rollbacks", "1"), capsys)
    rows = read_rows(out)
    assert code == 3, [(r["step"], r.get("rollout/response_len"), r.get("health/rollback_to"))
                       for r in rows]
    first = next(r for r in rows if r.get("health/mute"))
    back = next(r for r in rows if r.get("health/rollback"))
    # back to the newest checkpoint saved before the detector's streak began
    patience = 3
    assert back["step"] == first["step"]
    assert back["health/rollback_to"] <= first["step"] - patience
    assert back["lr/actor"] == pytest.approx(1e-3)  # 2e-3 x --rollback-lr-factor 0.5
    after = rows[rows.index(back) + 1:]
    assert after[0]["step"] == back["health/rollback_to"] + 1
    assert all(r["lr/actor"] == pytest.approx(1e-3) for r in after if "lr/actor" in r)
    assert sum(1 for r in rows if r.get("health/mute")) == 2  # fired again: out of rollbacks
    assert f"rollback 1/1 at step {back['step']}: resuming from checkpoint-" \
        f"{back['health/rollback_to']} at 0.5 x the learning rate" in err
    assert "stopped by --on-collapse rollback" in err and "mute" in err
