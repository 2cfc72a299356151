"""The PPO loop: rollout -> rewards -> advantages -> epochs x mini-batches -> log / health / save.

One PPO *step* is one rollout batch (``--rollout-batch-size`` prompts) followed by
``--ppo-epochs`` x ``--num-mini-batches`` optimizer steps on the actor and on the critic.
``--max-steps`` counts PPO steps; without it, ``--num-train-epochs`` passes over the prompts.
Each mini-batch is processed in micro-batches of ``--per-device-train-batch-size`` sequences
(gradient accumulation inside the mini-batch).
"""

from __future__ import annotations

from typing import Any

import click

from align.config import RunConfig
from align.health import CollapseStop, health_metrics, rollout_stats
from align.ppo.state import PPORun, scale_lr


def run(cfg: RunConfig, data: Any, eval_data: Any = None) -> dict[str, Any]:
    """Train PPO on the validated prompts in ``data``; return the final metrics.

    The runner has already called :func:`align.ppo.state.check` (unsupported flags refused)."""
    from align.checkpoints import latest
    from align.metrics import run_logger

    ppo = PPORun.create(cfg, data, eval_data)
    click.echo(describe(ppo))
    resume_step = None
    if cfg.train.resume:
        ckpt = latest(ppo.out).path
        ppo.restore(int(ckpt.name.split("-")[1]))
        rebase_learning_rates(ppo)
        resume_step = ppo.step
        ppo.latest_eval = logged_eval(ppo)
        click.echo(f"resumed from {ckpt} (step {ppo.step} of {ppo.total_steps})")
    logger = run_logger(cfg, ppo.out, resume_step)
    try:
        return train(ppo, logger)
    finally:
        logger.close()


def logged_eval(ppo: PPORun) -> tuple[int, dict[str, float]] | None:
    """The held-out evaluation the interrupted run logged at the resumed step (the one before
    its checkpoint): a run resumed at its last step does not log it twice."""
    from align.metrics import read_metrics

    path = ppo.out / "metrics.jsonl"
    rows = [r for r in read_metrics(path) if r.get("step") == ppo.step and "eval/reward" in r] \
        if path.exists() else []
    return (ppo.step, {k: v for k, v in rows[-1].items() if k.startswith("eval/")}) \
        if rows else None


def rebase_learning_rates(ppo: PPORun) -> None:
    """Train a resumed run at this run's --actor-lr/--critic-lr (changed with
    --resume-allow-change): the restored schedules keep their position and rollback factor."""
    from align.ppo.state import learning_rates

    o = ppo.optim
    actor_lr, critic_lr = learning_rates(ppo.cfg)
    for opt, schedule, base in ((o.actor, o.actor_scheduler, actor_lr * ppo.lr_scale),
                                (o.critic, o.critic_scheduler, critic_lr)):
        if schedule.base_lrs[0] != base:
            scale_lr(opt, schedule, base / schedule.base_lrs[0])


def describe(ppo: PPORun) -> str:
    """The batch arithmetic of this run in one line (what a "step" means here)."""
    from align.ppo.state import learning_rates

    a, t = ppo.a, ppo.cfg.train
    actor_lr, critic_lr = learning_rates(ppo.cfg)
    return (f"ppo: {ppo.total_steps} steps of {a.rollout_batch_size} prompts "
            f"({len(ppo.prompts)} in the data); each step {a.ppo_epochs} epochs x "
            f"{a.num_mini_batches} mini-batches of {a.rollout_batch_size // a.num_mini_batches} "
            f"(micro-batches of {t.per_device_train_batch_size}); actor lr {actor_lr:g}, "
            f"critic lr {critic_lr:g}; device {ppo.roles.device}")


def train(ppo: PPORun, logger: Any) -> dict[str, Any]:
    """The driver: one PPO step per loop, numbered as in STYLE.md."""
    from tqdm import tqdm

    a, t = ppo.a, ppo.cfg.train
    if ppo.step == 0 and ppo.eval_prompts:
        ppo.eval_before = log_eval(ppo, logger)
    bar = tqdm(total=ppo.total_steps, initial=ppo.step, desc="ppo", dynamic_ncols=True)
    while ppo.step < ppo.total_steps:
        ppo.step += 1
        # 1-4. rollout, rewards, advantages, PPO update (see ppo_step)
        metrics, exp = checked_step(ppo)
        # 5. log, check health (warn / stop / roll back), evaluate and save
        metrics |= rollout_metrics(exp, a.max_new_tokens, ppo)
        logged = ppo.step % t.logging_steps == 0 or ppo.step == ppo.total_steps
        events = ppo.monitor.check(ppo.step, metrics) if logged else []
        if logged:
            logger.log(ppo.step, metrics | health_metrics(events))
        report(bar, ppo.step, metrics if logged else None, events, ppo.monitor)
        if act_on_health(ppo, events, logger, bar) == "rolled_back":
            continue
        if ppo.step % t.save_steps == 0:
            if ppo.eval_prompts:
                log_eval(ppo, logger)
            ppo.save(healthy=not events and not any(ppo.monitor.streaks.values()))
    bar.close()
    return finish(ppo, logger)


def checked_step(ppo: PPORun) -> tuple[dict[str, float], Any]:
    """:func:`ppo_step`, stopped (exit 3, nothing saved) when the weights or the sampling
    probabilities are no longer finite: an update skipped for a non-finite gradient keeps
    them finite, a finite but huge one may not."""
    from align.health.nonfinite import describe, is_sampling_error, nonfinite_parameters

    try:
        metrics, exp = ppo_step(ppo)
    except RuntimeError as e:
        if not is_sampling_error(e):
            raise
        raise nan_stop(ppo, f"sampling at step {ppo.step} met NaN/inf probabilities "
                            "(the policy's logits are not finite)") from None
    bad = nonfinite_parameters(ppo.roles.actor, ppo.roles.critic)
    if bad:
        raise nan_stop(ppo, f"the weights became NaN/inf: {len(bad)} tensors are not finite "
                            f"after the update of step {ppo.step} ({describe(bad)})")
    return metrics, exp


def nan_stop(ppo: PPORun, what: str) -> Exception:
    from align.health.nonfinite import nonfinite_stop

    return nonfinite_stop(ppo.out, "ppo", what, "--actor-lr", ppo.cfg.algo.actor_lr)


def ppo_step(ppo: PPORun) -> tuple[dict[str, float], Any]:
    """Steps 1-4 of one PPO iteration; returns its metrics (with the ``perf/*`` timings and,
    on CUDA, the step's peak memory) and the rollout batch."""
    from align.perf import Stopwatch, peak_memory_gb, reset_peak_memory
    from align.ppo.rollout import sample, score
    from align.ppo.update import compute_advantages, compute_rewards, ppo_update

    a, t, dev = ppo.a, ppo.cfg.train, ppo.roles.device
    clock = Stopwatch(dev)
    reset_peak_memory(dev)
    with clock("perf/step_s"):
        # 1. rollout: sample responses; log-probs of actor and reference, values, RM scores
        prompt_ids, prompt_mask = next_prompts(ppo)
        with clock("perf/rollout_s"):
            samples = sample(ppo.roles, prompt_ids, prompt_mask, **generation_options(ppo))
        with clock("perf/score_s"):
            exp = score(ppo.roles, samples, temperature=a.temperature,
                        chunk=a.local_rollout_forward_batch_size)
        with clock("perf/train_s"):
            # 2. rewards: shaped RM score on the last token, token-level KL penalty per token
            metrics = compute_rewards(a, exp, ppo.kl_ctl, ppo.reward_stats)
            # 3. advantages: GAE over response tokens, whitening and clipping
            metrics |= compute_advantages(a, exp)
            # 4. PPO update: ppo_epochs x num_mini_batches steps on critic (and actor after
            # warm-up)
            metrics |= ppo_update(ppo.roles, ppo.optim, exp, a, t.per_device_train_batch_size,
                                  t.max_grad_norm, ppo.step > a.critic_warmup_steps,
                                  next_ptx_batch(ppo) if ppo.ptx else None)
        ppo.kl_ctl.update(metrics["objective/kl"], exp.batch_size)
    times = clock.times
    tokens = float(exp.mask.sum())
    metrics |= times | {"perf/tokens_per_s": tokens / max(times["perf/step_s"], 1e-9),
                        "perf/rollout_tokens_per_s": tokens / max(times["perf/rollout_s"], 1e-9)}
    peak = peak_memory_gb(dev)
    if peak is not None:
        metrics["perf/max_memory_gb"] = peak
    return metrics, exp


def generation_options(ppo: PPORun) -> dict[str, Any]:
    """How rollouts sample (the distribution) and batch their generate calls (the speed)."""
    a = ppo.a
    cache_len = ppo.prompt_limit + a.max_new_tokens if ppo.prompt_limit else None
    return dict(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p,
                chunk=a.rollout_generate_batch_size or a.local_rollout_forward_batch_size,
                sort_by_length=a.sort_by_length, static_cache=a.compile_rollout,
                cache_len=cache_len)


def next_prompts(ppo: PPORun) -> tuple[Any, Any]:
    from align.ppo.data import left_pad

    batch = [ppo.prompts[i] for i in ppo.sampler.next()]
    return left_pad(batch, ppo.roles.tokenizer.pad_token_id)


def next_ptx_batch(ppo: PPORun) -> Any:
    """A function returning the next PTX micro-batch (ids, mask) on the training device."""
    from align.ppo.data import right_pad

    def draw() -> tuple[Any, Any]:
        ids, mask = right_pad([ppo.ptx[i] for i in ppo.ptx_sampler.next()],
                              ppo.roles.tokenizer.pad_token_id)
        return ids.to(ppo.roles.device), mask.to(ppo.roles.device)

    return draw


def rollout_metrics(exp: Any, max_new_tokens: int, ppo: PPORun) -> dict[str, float]:
    """Length, EOS, truncation and repetition of the responses; entropy; reference perplexity."""
    import torch

    from align.ppo.losses import masked_mean
    from align.ppo.models import eos_token_ids

    eos = torch.tensor(eos_token_ids(ppo.roles), device=exp.mask.device)
    tokens = exp.mask & ~torch.isin(exp.response_ids, eos)  # response text, EOS removed
    responses = [row[m].tolist() for row, m in zip(exp.response_ids, tokens)]
    stats = rollout_stats(responses, exp.ended.tolist(), max_new_tokens)
    stats["policy/entropy"] = masked_mean(exp.entropy, exp.mask).item()
    stats["ref/perplexity"] = torch.exp(-masked_mean(exp.ref_logprobs, exp.mask)).item()
    o = ppo.optim
    stats["lr/actor"] = o.actor.param_groups[0]["lr"]
    stats["lr/critic"] = o.critic.param_groups[0]["lr"]
    return stats


def evaluate(ppo: PPORun) -> dict[str, float]:
    """Sampled responses to the held-out prompts: mean RM score, KL to the reference, length.

    Sampling (at --temperature) measures the policy PPO optimises, not one greedy answer; the
    generator is seeded from --seed inside a forked RNG, so every evaluation draws with the
    same random numbers and training's RNG stream is untouched (exact resume).
    """
    import torch

    from align.ppo.data import left_pad
    from align.ppo.losses import kl_penalty, masked_sum
    from align.ppo.rollout import sample, score

    a = ppo.a
    ids, mask = left_pad(ppo.eval_prompts, ppo.roles.tokenizer.pad_token_id)
    cuda = [torch.cuda.current_device()] if ppo.roles.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(ppo.cfg.train.seed)
        samples = sample(ppo.roles, ids, mask, **generation_options(ppo))
        exp = score(ppo.roles, samples, temperature=a.temperature,
                    chunk=a.local_rollout_forward_batch_size)
    kl = masked_sum(kl_penalty(exp.logprobs, exp.ref_logprobs, "k1"), exp.mask, dim=1)
    return {"eval/reward": exp.scores.mean().item(), "eval/kl": kl.mean().item(),
            "eval/response_len": exp.mask.sum(1).float().mean().item(),
            "eval/eos_frac": exp.ended.float().mean().item()}


def log_eval(ppo: PPORun, logger: Any) -> dict[str, float]:
    metrics = evaluate(ppo)
    logger.log(ppo.step, metrics)
    ppo.latest_eval = (ppo.step, metrics)
    return metrics


def report(bar: Any, step: int, m: dict[str, Any] | None, events: list[Any], monitor: Any
           ) -> None:
    """Console: a compact progress-bar postfix and one line per logged step, then any alarms."""
    from align.console import report as report_progress

    bar.update(step - bar.n)
    report_progress(step, bar.total)
    if m is not None:
        bar.set_postfix(reward=f"{m['reward/raw']:.3f}", kl=f"{m['objective/kl']:.3f}",
                        len=f"{m['rollout/response_len']:.1f}")
        bar.write(f"step {step}: reward {m['reward/raw']:.4f} kl {m['objective/kl']:.4f} "
                  f"len {m['rollout/response_len']:.1f} eos {m['rollout/eos_frac']:.2f} "
                  f"policy {m.get('loss/policy', float('nan')):.4f} "
                  f"value {m['loss/value']:.4f} entropy {m['policy/entropy']:.3f}")
    for note in monitor.notes:
        bar.write(f"[health] {note}")
    monitor.notes.clear()
    for event in events:
        click.echo(str(event), err=True)


def act_on_health(ppo: PPORun, events: list[Any], logger: Any, bar: Any) -> str:
    """Apply --on-collapse to the detectors that fired: warn, stop (save, exit 3) or roll back."""
    action = ppo.monitor.decide(events)
    for note in ppo.monitor.notes:  # e.g. "--max-rollbacks reached; stopping instead"
        click.echo(f"[health] {note}", err=True)
    ppo.monitor.notes.clear()
    if action in ("continue", "warn"):
        return action
    nan = [e for e in events if e.detector == "nan"]
    if nan:
        from align.health.rollback import set_aside_broken

        set_aside_broken(ppo.out, ppo.step, ppo.cfg.train.logging_steps)
    if action == "rollback":
        from align.health.rollback import rollback_target

        target = rollback_target(ppo.out)
        if target is not None:
            return roll_back(ppo, target.step, logger, bar)
    if nan:
        raise nan_stop(ppo, nan[0].message.split(". Try:")[0] + f" at step {ppo.step}")
    path = ppo.save(healthy=False)
    why = "" if action == "stop" else " (no healthy checkpoint to roll back to)"
    raise CollapseStop(f"training stopped at step {ppo.step}{why}: "
                       f"{'; '.join(e.detector for e in events)}. State saved to {path}; change "
                       "the flags the hints name and continue with --resume")


def roll_back(ppo: PPORun, step: int, logger: Any, bar: Any) -> str:
    """Reload checkpoint ``step`` (align.health.rollback's target) and lower the actor LR."""
    from align.health.rollback import roll_back_checkpoints, rollback_lr_scale

    factor = ppo.cfg.health.rollback_lr_factor
    fired_at, events, rollbacks = ppo.step, list(ppo.monitor.events), ppo.monitor.rollbacks
    target_scale = rollback_lr_scale(factor, rollbacks)
    ppo.restore(step)
    roll_back_checkpoints(ppo.out, step)
    ppo.monitor.events, ppo.monitor.rollbacks = events, rollbacks  # remember what happened
    scale_lr(ppo.optim.actor, ppo.optim.actor_scheduler, target_scale / ppo.lr_scale)
    ppo.lr_scale = target_scale
    lr = ppo.optim.actor.param_groups[0]["lr"]
    click.echo(f"[health] rolled back from step {fired_at} to checkpoint-{ppo.step}; actor LR "
               f"x{factor:g} (now {lr:.3g})", err=True)
    logger.log(fired_at, {"health/rollback": 1.0, "health/rollback_to": ppo.step,
                          "lr/actor": lr})
    bar.reset(total=ppo.total_steps)
    bar.update(ppo.step)
    return "rolled_back"


def finish(ppo: PPORun, logger: Any) -> dict[str, Any]:
    """Final evaluation, the trained actor (and critic) in --output-dir, and the summary."""
    from align.metrics import read_metrics

    result: dict[str, Any] = {"steps": ppo.step}
    if ppo.eval_prompts:
        done = ppo.latest_eval and ppo.latest_eval[0] == ppo.step
        after = ppo.latest_eval[1] if done else log_eval(ppo, logger)
        result |= {"eval_reward_before": ppo.eval_before.get("eval/reward"),
                   "eval_reward_after": after["eval/reward"],
                   "eval_kl_before": ppo.eval_before.get("eval/kl"),
                   "eval_kl_after": after["eval/kl"],
                   "eval_response_len_after": after["eval/response_len"]}
    rows = [r for r in read_metrics(ppo.out) if "reward/raw" in r]
    if rows:
        last = rows[-1]
        result |= {"reward_raw_first": rows[0]["reward/raw"], "reward_raw_last": last["reward/raw"],
                   "kl_last": last["objective/kl"]}
    from align.checkpoints import writing
    from align.health.nonfinite import describe, nonfinite_parameters

    bad = nonfinite_parameters(ppo.roles.actor, ppo.roles.critic)
    if bad:
        raise nan_stop(ppo, f"the weights became NaN/inf: {len(bad)} tensors are not finite "
                            f"at the end of training ({describe(bad)})")
    with writing(ppo.out, "the final actor and critic"):
        ppo.roles.actor.save_pretrained(str(ppo.out))
        ppo.roles.tokenizer.save_pretrained(str(ppo.out))
        ppo.roles.critic.save_pretrained(str(ppo.out / "critic"))
    click.echo(f"saved the actor to {ppo.out} and the critic to {ppo.out / 'critic'}")
    return result | ppo.monitor.summary()
