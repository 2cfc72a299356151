"""Mean reward of a policy on held-out prompts: the number GRPO/RLOO runs report before and after
training (``eval_reward_before`` / ``eval_reward_after``).

Each prompt gets ``k`` sampled completions, generated the way TRL's trainers generate them
(text prompts tokenized as they are, chat prompts through the chat template), scored by the
same reward sources and weights as training. The sampling seed is fixed and the global RNG is
restored afterwards, so the two evaluations see the same random draws and training is not
perturbed.
"""

from __future__ import annotations

import math
from typing import Any, Sequence


def _is_chat(prompt: Any) -> bool:
    return isinstance(prompt, list)


def _encode(tokenizer: Any, prompts: list[Any]) -> dict[str, Any]:
    if _is_chat(prompts[0]):  # render, then tokenize: the template already has its specials
        texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
                 for p in prompts]
        return tokenizer(text=texts, return_tensors="pt", padding=True, padding_side="left",
                         add_special_tokens=False)
    return tokenizer(text=prompts, return_tensors="pt", padding=True, padding_side="left")


def _completion_ids(out: Any, prompt_len: int, eos_ids: set[int], pad_id: int | None
                    ) -> list[list[int]]:
    """Generated ids per sequence, cut after the first EOS (kept, as TRL keeps it)."""
    result = []
    for row in out[:, prompt_len:].tolist():
        ids: list[int] = []
        for t in row:
            ids.append(t)
            if t in eos_ids:
                break
        while ids and pad_id is not None and ids[-1] == pad_id and pad_id not in eos_ids:
            ids.pop()
        result.append(ids)
    return result


def model_scores(model: Any, tokenizer: Any, prompts: list[Any], completions: list[Any]
                 ) -> list[float]:
    """A reward model's score for prompt + completion (its last non-padding token)."""
    import torch

    if _is_chat(prompts[0]):
        texts = [tokenizer.apply_chat_template(p + c, tokenize=False)
                 for p, c in zip(prompts, completions)]
    else:
        texts = [p + c for p, c in zip(prompts, completions)]
    enc = tokenizer(text=texts, return_tensors="pt", padding=True, padding_side="right",
                    add_special_tokens=False)
    device = next(model.parameters()).device
    with torch.inference_mode():
        return model(**{k: v.to(device) for k, v in enc.items()}).logits[:, 0].float().tolist()


def score(sources: Sequence[Any], weights: Sequence[float], prompts: list[Any],
          completions: list[Any], completion_ids: list[list[int]],
          columns: dict[str, list[Any]]) -> tuple[list[float | None], dict[str, list[float]]]:
    """Weighted total per completion (None where every source abstained) and each source's
    non-None rewards, the way TRL sums rewards (None counts as absent, not as zero)."""
    per_source: dict[str, list[float | None]] = {}
    for source in sources:
        if source.kind == "model":
            values: list[Any] = model_scores(source.func, source.tokenizer, prompts, completions)
        else:
            values = source.func(prompts=prompts, completions=completions,
                                 completion_ids=completion_ids, **columns)
        per_source[source.name] = [None if v is None or (isinstance(v, float) and math.isnan(v))
                                   else float(v) for v in values]
    totals: list[float | None] = []
    for i in range(len(completions)):
        parts = [(w, per_source[s.name][i]) for s, w in zip(sources, weights)]
        present = [w * v for w, v in parts if v is not None]
        totals.append(sum(present) if present else None)
    kept = {name: [v for v in vals if v is not None] for name, vals in per_source.items()}
    return totals, kept


def mean_reward(model: Any, tokenizer: Any, rows: list[dict[str, Any]], sources: Sequence[Any],
                weights: Sequence[float], *, k: int, max_new_tokens: int, temperature: float,
                seed: int, batch_prompts: int = 8) -> dict[str, float]:
    """Sample ``k`` completions per row's prompt and return the mean weighted reward
    (``eval_reward``) and each source's mean (``eval_rewards/<name>``)."""
    import torch

    configured = getattr(model.generation_config, "eos_token_id", None)
    eos_ids = set(configured if isinstance(configured, list) else
                  [] if configured is None else [configured])
    eos_ids.add(tokenizer.eos_token_id)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals: list[float] = []
    by_source: dict[str, list[float]] = {s.name: [] for s in sources}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(rows), batch_prompts):
            batch = rows[start:start + batch_prompts]
            prompts = [r["prompt"] for r in batch]
            enc = {key: v.to(device) for key, v in _encode(tokenizer, prompts).items()}
            with torch.inference_mode():
                out = model.generate(**enc, do_sample=True, temperature=temperature, top_p=1.0,
                                     top_k=0, max_new_tokens=max_new_tokens,
                                     num_return_sequences=k, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=sorted(eos_ids))
            ids = _completion_ids(out, enc["input_ids"].shape[1], eos_ids, tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(ids, skip_special_tokens=True)
            rep = [r for r in batch for _ in range(k)]
            rep_prompts = [r["prompt"] for r in rep]
            completions: list[Any] = ([[{"role": "assistant", "content": t}] for t in texts]
                                      if _is_chat(prompts[0]) else texts)
            names = {c for r in rep for c in r} - {"prompt"}
            columns = {c: [r.get(c) for r in rep] for c in sorted(names)}
            batch_totals, kept = score(sources, weights, rep_prompts, completions, ids, columns)
            totals += [t for t in batch_totals if t is not None]
            for name, vals in kept.items():
                by_source[name] += vals
    model.train(was_training)
    result = _means(totals, by_source)
    return result


def mean_reward_with_tools(model: Any, tokenizer: Any, rows: list[dict[str, Any]],
                           sources: Sequence[Any], weights: Sequence[float], toolset: Any, *,
                           k: int, max_new_tokens: int, temperature: float, seed: int,
                           batch_prompts: int = 8) -> dict[str, float]:
    """:func:`mean_reward` for a run with tools or environments: each of the ``k`` samples per
    prompt is a multi-turn episode of align's loop (:func:`align.agents.loop.rollout`, the
    tools run under the run's budget and timeout), scored on its turns after the prompt, the
    environment's ``get_reward()`` (weight 1, as TRL adds it) included. Also returns the
    episodes' agent metrics, prefixed ``eval_`` (``eval_tools/calls_per_episode``, ...)."""
    import torch

    from align.agents.loop import episode_metrics, rollout
    from align.agents.sampler import hf_sampler

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sampler = hf_sampler(model, tokenizer, stop_ids=[tokenizer.eos_token_id],
                         options={"do_sample": True, "temperature": temperature, "top_p": 1.0,
                                  "top_k": 0})  # as mean_reward samples
    totals: list[float] = []
    by_source: dict[str, list[float]] = {s.name: [] for s in sources}
    episodes: list[Any] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(rows), batch_prompts):
            rep = [r for r in rows[start:start + batch_prompts] for _ in range(k)]
            eps = rollout(rep, [r["prompt"] for r in rep], sampler, tokenizer, toolset,
                          max_completion_length=max_new_tokens)
            episodes += eps
            completions = [ep.messages[len(r["prompt"]):] for ep, r in zip(eps, rep)]
            names = {c for r in rep for c in r} - {"prompt"}
            columns = {c: [r.get(c) for r in rep] for c in sorted(names)}
            batch_totals, kept = score(sources, weights, [r["prompt"] for r in rep], completions,
                                       [ep.completion_ids for ep in eps], columns)
            for total, ep in zip(batch_totals, eps):
                parts = [v for v in (total, ep.env_reward) if v is not None]
                if parts:
                    totals.append(sum(parts))
            for name, vals in kept.items():
                by_source[name] += vals
    model.train(was_training)
    result = _means(totals, by_source)
    result.update({f"eval_{k_}": v for k_, v in episode_metrics(episodes).items()})
    return result


def _means(totals: list[float], by_source: dict[str, list[float]]) -> dict[str, float]:
    """``eval_reward`` (the mean weighted total) and ``eval_rewards/NAME`` (each source's
    mean); NaN where nothing was scored."""
    result = {"eval_reward": sum(totals) / len(totals) if totals else float("nan")}
    for name, vals in by_source.items():
        result[f"eval_rewards/{name}"] = sum(vals) / len(vals) if vals else float("nan")
    return result
