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
from align.health import health_metrics, rollout_stats
from align.ppo.state import PPORun, scale_lr


def run(cfg: RunConfig, data: Any, eval_data: Any = None) -> dict[str, Any]:
    """Train PPO on the validated prompts in ``data``; return the final metrics.

    The runner has already called :func:`align.ppo.plan.check` (unsupported flags refused).
    Launched as several processes, each one runs this; rank 0 writes the files."""
    from align.metrics import run_logger
    from align.ppo.plan import describe
    from align.samples import SamplesWriter

    ppo = PPORun.create(cfg, data, eval_data)
    say(ppo, describe(cfg, len(ppo.prompts), ppo.dist.world) + f"; device {ppo.roles.device}"
        + reward_read(ppo))
    resume_step = None
    if cfg.resume_from is not None:  # picked by align.output_dir
        ppo.restore(cfg.resume_from.step)
        rebase_learning_rates(ppo)
        resume_step = ppo.step
        ppo.latest_eval = logged_eval(ppo)
        say(ppo, f"resumed from {cfg.resume_from.path} (step {ppo.step} of {ppo.total_steps})")
    logger = run_logger(cfg, ppo.out, resume_step) if ppo.dist.is_main else NullLogger()
    samples = SamplesWriter(ppo.out, cfg.algo.log_samples if ppo.dist.is_main else 0,
                            resume_step)
    try:
        return train(ppo, logger, samples)
    finally:
        logger.close()


def reward_read(ppo: PPORun) -> str:
    """Where the reward model reads its score and what a cut response costs, for the start
    line; no reading place when the rewards are rules only (no reward model reads anything)."""
    penalty = f"{ppo.eos_penalty:g} off a response cut without EOS (--missing-eos-penalty)" \
        if ppo.eos_penalty else ""
    if not ppo.roles.has_reward_model:
        return f"; {penalty}" if penalty else ""
    where = "closed as a turn (--reward-at-turn-end)" if ppo.turn_end else \
        "at the last response token"
    return f"; reward read {where}" + (f", {penalty}" if penalty else "")


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
    from align.ppo.plan import learning_rates

    o = ppo.optim
    actor_lr, critic_lr = learning_rates(ppo.cfg)
    for i, base in enumerate((actor_lr * ppo.lr_scale, critic_lr)):
        old = o.scheduler.base_lrs[i]
        if old != base:
            o.scheduler.base_lrs[i] = base
            group = o.optimizer.param_groups[i]
            group["lr"] *= base / old
            if "initial_lr" in group:
                group["initial_lr"] *= base / old


class NullLogger:
    """The metrics logger of the processes other than rank 0: they log nothing."""

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def say(ppo: PPORun, text: str, err: bool = False) -> None:
    """Print on rank 0 only (every process knows the same things)."""
    if ppo.dist.is_main:
        click.echo(text, err=err)


def train(ppo: PPORun, logger: Any, samples: Any) -> dict[str, Any]:
    """The driver: one PPO step per loop, in numbered steps. ``samples``: the
    align.samples.SamplesWriter that keeps a few answers of each logged step."""
    from tqdm import tqdm

    t = ppo.cfg.train
    if ppo.step == 0 and ppo.eval_prompts:
        ppo.eval_before = log_eval(ppo, logger)
    bar = tqdm(total=ppo.total_steps, initial=ppo.step, desc="ppo", dynamic_ncols=True,
               disable=not ppo.dist.is_main)
    while ppo.step < ppo.total_steps:
        ppo.step += 1
        logged = ppo.step % t.logging_steps == 0 or ppo.step == ppo.total_steps
        # 1-4. rollout, rewards, advantages, PPO update (see ppo_step)
        ppo.keep_answers = samples.per_step if logged else 0
        metrics = checked_step(ppo)
        # 5. log, check health (warn / stop / roll back), evaluate and save
        events = ppo.monitor.check(ppo.step, metrics) if logged else []
        if logged:
            logger.log(ppo.step, metrics | health_metrics(events))
            samples.write(ppo.step, ppo.answers)
        report(ppo, bar, metrics if logged else None, events)
        if act_on_health(ppo, events, logger, bar) == "rolled_back":
            continue
        if ppo.step % t.save_steps == 0:
            if ppo.eval_prompts:
                log_eval(ppo, logger)
            ppo.save(healthy=not events and ppo.monitor.healthy())
    bar.close()
    return finish(ppo, logger)


def checked_step(ppo: PPORun) -> dict[str, float]:
    """:func:`ppo_step`, stopped (exit 3, nothing saved) when the weights or the sampling
    probabilities are no longer finite: an update skipped for a non-finite gradient keeps
    them finite, a finite but huge one may not."""
    from align.health.nonfinite import describe, is_sampling_error
    from align.ppo.checkpoint import nonfinite_weights

    try:
        metrics = ppo_step(ppo)
    except RuntimeError as e:
        if not is_sampling_error(e):
            raise
        raise nan_stop(ppo, f"sampling at step {ppo.step} met NaN/inf probabilities "
                            "(the policy's logits are not finite)") from None
    bad = nonfinite_weights(ppo.roles.model, ppo.dist)
    if bad:
        raise nan_stop(ppo, f"the weights became NaN/inf: {len(bad)} tensors are not finite "
                            f"after the update of step {ppo.step} ({describe(bad)})")
    return metrics


def nan_stop(ppo: PPORun, what: str) -> Exception:
    """The NaN stop (nothing saved; align.health.driver.stop_nonfinite)."""
    from align.health.driver import stop_nonfinite

    return stop_nonfinite(health_hooks(ppo), what)


def ppo_step(ppo: PPORun) -> dict[str, float]:
    """Steps 1-4 of one PPO iteration; returns its metrics (the whole batch's, over all
    processes), with the ``perf/*`` timings and, on CUDA, the step's peak memory; and
    keeps ``ppo.keep_answers`` of this process's answers, with their prompts and rewards, in
    ``ppo.answers`` (samples.jsonl; the signature stays one argument, for wrappers)."""
    from align.perf import Stopwatch, peak_memory_gb, reset_peak_memory
    from align.ppo.rollout import score
    from align.ppo.update import compute_advantages, compute_rewards, ppo_update

    a, t, dev = ppo.a, ppo.cfg.train, ppo.roles.device
    clock = Stopwatch(dev)
    reset_peak_memory(dev)
    timed = clock.call
    # 1. rollout: this process's share of the prompts, sampled, then scored by every role
    ids, mask, first_row, rows = next_prompts(ppo)
    options = generation_options(ppo, ppo.step, first_row)
    episodes = None
    if ppo.toolset is None:
        samples = timed("perf/rollout_s", generate_share, ppo, ids, mask, options)
    else:  # multi-turn: generate, run the tool calls, append their turns, generate again
        samples, episodes = timed("perf/rollout_s", agent_share, ppo, rows, first_row, options,
                                  clock.times)
    mine = timed("perf/score_s", score, ppo.roles, samples, temperature=a.temperature,
                 chunk=a.local_rollout_forward_batch_size, turn_end=ppo.turn_end)
    mine, by_source = timed("perf/reward_s", rule_scores, ppo, mine,
                            [ppo.rows[i] for i in rows], episodes=episodes)
    keep = ppo.keep_answers
    ppo.answers = shown_answers(ppo, mine, rows, episodes, keep) if keep else []
    batch = gather_experience(ppo.dist, mine)  # the whole rollout batch, on every process
    # 2. rewards: shaped score (reward model and/or rules) on the last token, token-level KL
    # penalty on every token
    rewards, metrics = timed("perf/train_s", compute_rewards, a, batch, ppo.kl_ctl.value,
                             ppo.reward_stats, ppo.eos_penalty)
    metrics |= by_source
    # 3. advantages: GAE over response tokens, whitening and clipping (over the whole batch)
    advantages, returns, m = timed("perf/train_s", compute_advantages, a, batch, rewards)
    metrics |= m
    # 4. PPO update: ppo_epochs x num_mini_batches optimizer steps on this process's rows,
    # gradients averaged over the processes (critic only during --critic-warmup-steps)
    metrics |= timed("perf/train_s", ppo_update, ppo.roles, ppo.optim,
                     own_rows(ppo.dist, mine, advantages, returns), a,
                     t.per_device_train_batch_size, t.max_grad_norm,
                     ppo.step > a.critic_warmup_steps, ppo.dist,
                     next_ptx_batch(ppo) if ppo.ptx else None)
    ppo.kl_ctl.update(metrics["objective/kl"], batch.batch_size)
    metrics |= rollout_metrics(batch, a.max_new_tokens, ppo)
    if episodes is not None:
        metrics |= agent_metrics(ppo, episodes)
    clock.times["perf/step_s"] = clock.elapsed()
    times = {k: ppo.dist.max_float(v, dev) for k, v in sorted(clock.times.items())}
    tokens = float(batch.mask.sum())
    metrics |= times | {"perf/tokens_per_s": tokens / max(times["perf/step_s"], 1e-9),
                        "perf/rollout_tokens_per_s": tokens / max(times["perf/rollout_s"], 1e-9)}
    peak = peak_memory_gb(dev)
    if peak is not None:
        metrics["perf/max_memory_gb"] = peak
    return metrics


def shown_answers(ppo: PPORun, exp: Any, rows: list[int], episodes: list[Any] | None,
                  k: int) -> list[dict[str, Any]]:
    """``k`` of this process's rollout answers (spread over its share), each with its prompt
    and raw reward (the reward model's and rules' weighted total, before shaping): what
    samples.jsonl keeps of a logged step (align/samples.py). With tools the answer is every
    turn after the prompt, tool calls and results included."""
    from align.ppo.agent_rollout import episode_completions
    from align.ppo.models import eos_token_ids
    from align.ppo.rewards import completions
    from align.samples import spread

    pick = spread(exp.batch_size, k)
    prompts = [ppo.rows[rows[i]]["prompt"] for i in pick]
    if episodes is not None:
        answers = episode_completions([episodes[i] for i in pick])
    else:
        answers, _ = completions(ppo.roles.tokenizer, exp.response_ids[pick], exp.mask[pick],
                                 eos_token_ids(ppo.roles), isinstance(prompts[0], list))
    scores = exp.scores[pick].tolist()
    return [{"prompt": p, "answer": a, "reward": r} for p, a, r in zip(prompts, answers, scores)]


def rule_scores(ppo: PPORun, exp: Any, rows: list[dict[str, Any]], prefix: str = "reward",
                episodes: list[Any] | None = None) -> tuple[Any, dict[str, float]]:
    """``exp`` with its scores made the run's raw rewards (align/ppo/rewards.py: the reward
    model's score, the rule functions on this process's ``rows`` and, with an environment,
    each episode's ``get_reward()``), and each rule source's mean over the whole batch
    (``<prefix>/<name>``)."""
    import dataclasses

    import torch

    from align.ppo.agent_rollout import episode_completions
    from align.ppo.models import eos_token_ids
    from align.ppo.rewards import (add_environment, check_not_all_abstained, completions,
                                   rule_rewards, source_metrics, total_scores)

    sc = ppo.scorer
    env = sc.env_weight is not None and episodes is not None
    if not sc.rules and not env:
        return exp, {}
    texts, ids = completions(ppo.roles.tokenizer, exp.response_ids, exp.mask,
                             eos_token_ids(ppo.roles), isinstance(ppo.rows[0]["prompt"], list))
    if episodes is not None:  # the turns after the prompt, tool results included (TRL's)
        texts = episode_completions(episodes)
    totals, kept = rule_rewards(sc, rows, texts, ids)
    if env:
        rewards = [ep.env_reward for ep in episodes]
        totals = add_environment(totals, rewards, sc.env_weight)
        kept = kept | {"environment": [r for r in rewards if r is not None]}
    rm = exp.scores if ppo.roles.has_reward_model else None
    scores, abstained = total_scores(rm, sc.rm_weight, totals)
    parts = ppo.dist.gather_objects([(kept, abstained.tolist())])
    if prefix == "reward":
        check_not_all_abstained(sc, torch.tensor([x for _, a in parts for x in a]))
    return (dataclasses.replace(exp, scores=scores.to(exp.mask.device)),
            source_metrics(prefix, [k for k, _ in parts]))


def agent_share(ppo: PPORun, rows: list[int], first_row: int, options: dict[str, Any],
                times: dict[str, float]) -> tuple[Any, list[Any]]:
    """This process's multi-turn episodes (align/ppo/agent_rollout.py); the seconds spent in
    tools go to ``perf/tools_s`` and the sampling alone to ``perf/sample_s``."""
    from align.ppo.agent_rollout import sample_episodes

    samples, episodes, t = sample_episodes(
        ppo.roles, ppo.toolset, [ppo_rows(ppo, options)[i] for i in rows],
        [f"record {i + 1}" for i in rows], max_new_tokens=options["max_new_tokens"],
        temperature=options["temperature"], top_p=options["top_p"], chunk=options["chunk"],
        seed=options["seed"], first_row=first_row, synced_gpus=options["synced_gpus"])
    times["perf/tools_s"] = times.get("perf/tools_s", 0.0) + t["tools_s"]
    times["perf/sample_s"] = times.get("perf/sample_s", 0.0) + t["sample_s"]
    return samples, episodes


def ppo_rows(ppo: PPORun, options: dict[str, Any]) -> Any:
    return ppo.eval_rows if options.get("eval") else ppo.rows


def agent_metrics(ppo: PPORun, episodes: list[Any]) -> dict[str, float]:
    """Tool calls, errors, turns and cut episodes of the whole rollout batch."""
    from align.agents.loop import episode_metrics
    from align.ppo.agent_rollout import episode_facts

    return episode_metrics(ppo.dist.gather_objects(episode_facts(episodes)))


def generate_share(ppo: PPORun, ids: Any, mask: Any, options: dict[str, Any]) -> Any:
    """Sample this process's responses."""
    from align.ppo.rollout import sample

    return sample(ppo.roles, ids, mask, **options)


def gather_experience(dist: Any, exp: Any) -> Any:
    """Every process's rollout rows in one Experience (rank order), prompts left-padded and
    responses right-padded to the widest process's (the identity in one process)."""
    from align.ppo.rollout import Experience

    if dist.world == 1:
        return exp
    P = dist.max_int(exp.prompt_ids.shape[1], exp.mask.device)
    T = dist.max_int(exp.response_ids.shape[1], exp.mask.device)
    left = {"prompt_ids", "prompt_mask"}
    fields = {}
    for name in ("prompt_ids", "prompt_mask", "response_ids", "mask", "ended", "logprobs",
                 "ref_logprobs", "values", "scores", "entropy", "env_mask"):
        x = getattr(exp, name)
        if x is None:
            continue
        width = P if name in left else T
        fields[name] = dist.gather_rows(x, width, left=name in left)
    return Experience(**fields)


def own_rows(dist: Any, mine: Any, advantages: Any, returns: Any) -> Any:
    """This process's rollout rows with their advantages and returns (computed over the whole
    batch), cut back to its own response width."""
    import dataclasses

    from align.ppo.dist import row_slice

    rows, T = row_slice(dist.rank, mine.batch_size), mine.response_ids.shape[1]
    return dataclasses.replace(mine, advantages=advantages[rows, :T], returns=returns[rows, :T])


def generation_options(ppo: PPORun, step: int, first_row: int = 0) -> dict[str, Any]:
    """How rollouts sample (the distribution and its random streams: one per generate call,
    seeded from --seed, the step and the call's first prompt) and batch their generate calls
    (the speed)."""
    a = ppo.a
    cache_len = ppo.prompt_limit + a.max_new_tokens if ppo.prompt_limit else None
    return dict(max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p,
                chunk=a.rollout_generate_batch_size or a.local_rollout_forward_batch_size,
                sort_by_length=a.sort_by_length, static_cache=a.compile_rollout,
                cache_len=cache_len, seed=ppo.cfg.train.seed * 100_003 + step,
                first_row=first_row, synced_gpus=ppo.dist.zero3 and ppo.dist.world > 1)


def next_prompts(ppo: PPORun) -> tuple[Any, Any, int, list[int]]:
    """This process's share of the next rollout batch: ids and mask (left-padded), the
    global row of its first prompt and the dataset indices of its prompts."""
    from align.ppo.data import left_pad
    from align.ppo.dist import row_slice

    share = ppo.a.rollout_batch_size // ppo.dist.world
    rows = row_slice(ppo.dist.rank, share)
    idx = ppo.sampler.next()[rows]
    ids, mask = left_pad([ppo.prompts[i] for i in idx], ppo.roles.tokenizer.pad_token_id)
    return ids, mask, rows.start, idx


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
    stats["lr/actor"], stats["lr/critic"] = ppo.optim.lrs
    return stats


def evaluate(ppo: PPORun) -> dict[str, float]:
    """Sampled responses to the held-out prompts: mean RM score, KL to the reference, length.

    Sampling (at --temperature) measures the policy PPO optimises, not one greedy answer; each
    generate call draws from a random stream seeded from --seed and its first prompt, inside a
    forked RNG, so every evaluation draws with the same random numbers and training's RNG
    stream is untouched (exact resume). Several processes split the prompts between them.
    """
    import torch

    from align.ppo.data import left_pad
    from align.ppo.losses import kl_penalty, masked_sum
    from align.ppo.rollout import score

    a, d = ppo.a, ppo.dist
    share = -(-len(ppo.eval_prompts) // d.world)
    first = d.rank * share
    mine = ppo.eval_prompts[first:first + share]
    # every process answers `share` prompts (the last ones padded with repeats, dropped after),
    # so that all take the same number of steps
    n_mine = len(mine)
    mine = mine + [ppo.eval_prompts[0]] * (share - n_mine)
    idx = list(range(first, first + n_mine))
    ids, mask = left_pad(mine, ppo.roles.tokenizer.pad_token_id)
    options = generation_options(ppo, 0, first) | {"seed": ppo.cfg.train.seed}
    episodes = None
    if ppo.toolset is None:
        samples = generate_share(ppo, ids, mask, options)
    else:
        idx_all = idx + [0] * (share - n_mine)
        samples, episodes = agent_share(ppo, idx_all, first, options | {"eval": True}, {})
        episodes = episodes[:n_mine]
    exp = score(ppo.roles, samples, temperature=a.temperature,
                chunk=a.local_rollout_forward_batch_size, turn_end=ppo.turn_end)
    exp = exp.select(torch.arange(n_mine, device=exp.mask.device))  # the repeats dropped
    exp, by_source = rule_scores(ppo, exp, [ppo.eval_rows[i] for i in idx[:n_mine]],
                                 prefix="eval", episodes=episodes)
    kl = masked_sum(kl_penalty(exp.logprobs, exp.ref_logprobs, "k1"), exp.mask, dim=1)
    rows = list(zip(exp.scores.tolist(), kl.tolist(), exp.mask.sum(1).float().tolist(),
                    exp.ended.float().tolist()))[:n_mine]
    rows = d.gather_objects(rows)
    n = len(rows)
    reward, kl, length, eos = (sum(r[i] for r in rows) / n for i in range(4))
    tools = {}
    if episodes is not None:
        tools = {f"eval/{k.split('/')[1]}": v for k, v in agent_metrics(ppo, episodes).items()
                 if k in ("tools/calls_per_episode", "tools/error_frac", "rollout/turns")}
    return {"eval/reward": reward, "eval/kl": kl, "eval/response_len": length,
            "eval/eos_frac": eos} | by_source | tools


def log_eval(ppo: PPORun, logger: Any) -> dict[str, float]:
    metrics = evaluate(ppo)
    logger.log(ppo.step, metrics)
    ppo.latest_eval = (ppo.step, metrics)
    return metrics


def report(ppo: PPORun, bar: Any, m: dict[str, Any] | None, events: list[Any]) -> None:
    """Console (rank 0): a compact progress-bar postfix and one line per logged step, then
    any alarms."""
    from align.console import report as report_progress

    monitor = ppo.monitor
    if not ppo.dist.is_main:
        monitor.notes.clear()
        return
    step = ppo.step
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


def health_hooks(ppo: PPORun, logger: Any = None, bar: Any = None) -> Any:
    """The adapter through which the health driver (align.health.driver) acts on a PPO run:
    a rollback reloads the checkpoint on every process, keeps what the monitor learnt since,
    lowers the actor's LR and logs the rollback; a stop saves the state as a checkpoint."""
    from align.health.driver import RunHooks

    def roll_back(target: Any, lr_scale: float) -> None:
        fired_at, events, rollbacks = ppo.step, list(ppo.monitor.events), ppo.monitor.rollbacks
        ppo.restore(target.step)
        ppo.monitor.events, ppo.monitor.rollbacks = events, rollbacks  # remember what happened
        scale_lr(ppo.optim, lr_scale / ppo.lr_scale)
        ppo.lr_scale = lr_scale
        logger.log(fired_at, {"health/rollback": 1.0, "health/rollback_to": ppo.step,
                              "lr/actor": ppo.optim.lrs[0]})
        bar.reset(total=ppo.total_steps)
        bar.update(ppo.step)

    def save_stopped() -> str:
        path = ppo.save(healthy=False)
        return (f"The state is saved in {path}: change the flags the hints name and continue "
                "with --resume")

    return RunHooks(out=ppo.out, algo="ppo", lr_flag="--actor-lr", lr=ppo.cfg.algo.actor_lr,
                    logging_steps=ppo.cfg.train.logging_steps, roll_back=roll_back,
                    save_stopped=save_stopped, say=lambda text: say(ppo, text, err=True),
                    is_main=ppo.dist.is_main, barrier=ppo.dist.barrier)


def act_on_health(ppo: PPORun, events: list[Any], logger: Any, bar: Any) -> str:
    """Apply --on-collapse to the detectors that fired (align.health.driver): warn, stop
    (save, exit 3) or roll back. Every process sees the same metrics, so every process
    decides the same."""
    from align.health.driver import act

    action = ppo.monitor.decide(events)
    nan_at = ppo.step if any(e.detector == "nan" for e in events) else None
    return act(health_hooks(ppo, logger, bar), ppo.monitor, action, events, ppo.step, nan_at)


def finish(ppo: PPORun, logger: Any) -> dict[str, Any]:
    """Final evaluation, the trained actor (and critic) in --output-dir, and the summary."""
    from align.metrics import read_metrics
    from align.ppo.checkpoint import gathered_weights, nonfinite_weights, save_models

    result: dict[str, Any] = {"steps": ppo.step}
    if ppo.eval_prompts:
        done = ppo.latest_eval and ppo.latest_eval[0] == ppo.step
        after = ppo.latest_eval[1] if done else log_eval(ppo, logger)
        result |= {"eval_reward_before": ppo.eval_before.get("eval/reward"),
                   "eval_reward_after": after["eval/reward"],
                   "eval_kl_before": ppo.eval_before.get("eval/kl"),
                   "eval_kl_after": after["eval/kl"],
                   "eval_response_len_after": after["eval/response_len"]}
    rows = [r for r in read_metrics(ppo.out) if "reward/raw" in r] if ppo.dist.is_main else []
    if rows:
        last = rows[-1]
        result |= {"reward_raw_first": rows[0]["reward/raw"],
                   "reward_raw_last": last["reward/raw"], "kl_last": last["objective/kl"]}
    from align.checkpoints import writing
    from align.health.nonfinite import describe

    bad = nonfinite_weights(ppo.roles.model, ppo.dist)
    if bad:
        raise nan_stop(ppo, f"the weights became NaN/inf: {len(bad)} tensors are not finite "
                            f"at the end of training ({describe(bad)})")
    weights = gathered_weights(ppo.roles.model, ppo.dist)
    if ppo.dist.is_main:
        with writing(ppo.out, "the final actor and critic"):
            save_models(ppo.roles.model, ppo.out, weights)
            # the actor's files at the top of the output dir, as every other algorithm saves
            for f in (ppo.out / "actor").iterdir():
                f.replace(ppo.out / f.name)
            (ppo.out / "actor").rmdir()
            ppo.roles.tokenizer.save_pretrained(str(ppo.out))
        click.echo(f"saved the actor to {ppo.out} and the critic to {ppo.out / 'critic'}")
    ppo.dist.barrier()
    return result | ppo.monitor.summary()
