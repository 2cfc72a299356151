"""Evaluate a policy on held-out prompts: gold reward, reward-model score, KL to SFT, length.

KL(pi || pi_sft) is estimated on the policy's own samples as the mean over responses of
sum_t [log pi(y_t | x, y_<t) - log pi_sft(y_t | x, y_<t)] (nats per response), the same
quantity PPO penalises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from align.quickstart.task import Prompt, gold_reward


@dataclass
class Samples:
    prompts: list[Prompt]  # one per sample (prompts repeated n times)
    texts: list[str]  # decoded responses without special tokens
    input_ids: Any  # (N, P + T) prompt (left-padded) + response tokens
    attention_mask: Any  # (N, P + T)
    response_mask: Any  # (N, P + T) True on response tokens up to and including EOS
    lengths: list[int]  # response tokens per sample (EOS included)


def sample(model: Any, tokenizer: Any, prompts: list[Prompt], n: int, max_new_tokens: int,
           seed: int, temperature: float = 1.0) -> Samples:
    """Sample ``n`` responses per prompt with a fixed seed (same seed -> same draws)."""
    import torch

    repeated = [p for p in prompts for _ in range(n)]
    texts = [tokenizer.apply_chat_template(p.messages(), tokenize=False,
                                           add_generation_prompt=True) for p in repeated]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = side
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    gen = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=True,
                             temperature=temperature, top_k=0, top_p=1.0,
                             pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    model.train(was_training)
    prompt_len = batch["input_ids"].shape[1]
    response = out[:, prompt_len:]
    is_eos = response == tokenizer.eos_token_id
    # Tokens after the first EOS are padding; the EOS itself belongs to the response.
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    resp_mask = ~after_eos
    full_mask = torch.cat([batch["attention_mask"], resp_mask.long()], dim=1)
    response_mask = torch.cat([torch.zeros_like(batch["attention_mask"], dtype=torch.bool),
                               resp_mask], dim=1)
    decoded = tokenizer.batch_decode(response.masked_fill(~resp_mask, tokenizer.pad_token_id),
                                     skip_special_tokens=True)
    return Samples(repeated, [t.strip() for t in decoded], out, full_mask, response_mask,
                   resp_mask.sum(dim=1).tolist())


def sequence_logprobs(model: Any, s: Samples) -> Any:
    """Sum of log-probs of each sample's response tokens under ``model``. Shape (N,)."""
    import torch

    with torch.no_grad():
        ids, mask = s.input_ids, s.attention_mask
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
        # logits at t predict token t + 1
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        token_logp = logp.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return (token_logp * s.response_mask[:, 1:]).sum(dim=1)


def rm_scores(reward_model: Any, tokenizer: Any, s: Samples) -> list[float]:
    """Reward-model scores of prompt + response, rendered with the chat template."""
    import torch

    texts = [tokenizer.apply_chat_template(p.messages() + [{"role": "assistant",
                                                            "content": t}], tokenize=False)
             for p, t in zip(s.prompts, s.texts)]
    side = tokenizer.padding_side
    tokenizer.padding_side = "right"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = side
    with torch.no_grad():
        return reward_model(**batch).logits[:, 0].float().tolist()


def evaluate(policy: Any, sft: Any, reward_model: Any, tokenizer: Any, prompts: list[Prompt],
             n: int = 4, max_new_tokens: int = 24, seed: int = 1234) -> dict[str, float]:
    """Held-out metrics of ``policy``: gold, rm, kl (nats/response), mean_length (tokens)."""
    s = sample(policy, tokenizer, prompts, n, max_new_tokens, seed)
    golds = [gold_reward(p.topic, t) for p, t in zip(s.prompts, s.texts)]
    kl = (sequence_logprobs(policy, s) - sequence_logprobs(sft, s)).mean().item()
    rms = rm_scores(reward_model, tokenizer, s) if reward_model is not None else [float("nan")]
    return {"gold_reward": sum(golds) / len(golds), "rm_reward": sum(rms) / len(rms),
            "kl": kl, "mean_length": sum(s.lengths) / len(s.lengths),
            "example": s.texts[0]}
