"""Rollout on tiny models: masks, positions, log-prob alignment, scores, the four roles."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from align.ppo.data import left_pad
from align.ppo.models import load_roles, token_scores
from align.ppo.rollout import (Experience, logprobs_and_entropy, response_mask, sample, score,
                               sequence_inputs)
from tests.ppo.conftest import ppo_config


def rollout(roles, prompt_ids, prompt_mask, *, temperature: float, chunk: int,
            **sampling) -> Experience:
    """One rollout as a PPO step makes it (align/ppo/trainer.py ppo_step): sample, then score
    with every role."""
    samples = sample(roles, prompt_ids, prompt_mask, temperature=temperature, chunk=chunk,
                     **sampling)
    return score(roles, samples, temperature=temperature, chunk=chunk)

EOS, PAD = 2, 0


def test_response_mask_by_hand():
    ids = torch.tensor([[5, 6, EOS, PAD], [5, 6, 7, 8], [EOS, PAD, PAD, PAD]])
    mask, ended = response_mask(ids, [EOS])
    assert mask.int().tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert ended.tolist() == [True, False, True]


def test_positions_skip_left_padding():
    prompt_ids, prompt_mask = left_pad([[7, 8, 9], [4]], PAD)
    response = torch.tensor([[5, EOS], [EOS, PAD]])
    mask = torch.tensor([[True, True], [True, False]])
    ids, attn, pos = sequence_inputs(prompt_ids, prompt_mask, response, mask)
    assert ids.tolist() == [[7, 8, 9, 5, EOS], [PAD, PAD, 4, EOS, PAD]]
    assert attn.tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 0]]
    assert pos.tolist()[0] == [0, 1, 2, 3, 4] and pos.tolist()[1][2:4] == [0, 1]


@pytest.fixture(scope="module")
def roles(tiny_sft, tiny_rm, tmp_path_factory):
    torch.manual_seed(0)
    return load_roles(ppo_config(tiny_sft, tiny_rm, tmp_path_factory.mktemp("r"),
                                 max_new_tokens=8))


@pytest.fixture(scope="module")
def batch(roles, prompt_files):
    from align.data import load_valid
    from align.ppo.data import prompt_ids

    rows = load_valid(prompt_files[0], "prompt").rows[:6]
    ids, mask = left_pad(prompt_ids(rows, roles.tokenizer, None), roles.tokenizer.pad_token_id)
    torch.manual_seed(3)
    return rollout(roles, ids, mask, max_new_tokens=8, temperature=1.0, top_p=1.0, chunk=4)


def _unpadded(exp, b):
    prompt = exp.prompt_ids[b][exp.prompt_mask[b]]
    response = exp.response_ids[b][exp.mask[b]]
    return prompt, response


def test_logprobs_match_unpadded_single_sequences(roles, batch):
    """Left padding, positions and the logits-predict-the-next-token shift are all right."""
    exp = batch
    assert exp.prompt_mask[:, 0].logical_not().any(), "need prompts of different lengths"
    for b in range(exp.batch_size):
        prompt, response = _unpadded(exp, b)
        ids = torch.cat([prompt, response])[None]
        with torch.no_grad():
            logits = roles.actor(input_ids=ids).logits[0, len(prompt) - 1:-1]
        expected = torch.log_softmax(logits, -1).gather(1, response[:, None]).squeeze(1)
        n = len(response)
        assert exp.logprobs[b, :n] == pytest.approx(expected, abs=1e-4)
        # a frozen full-copy reference starts equal to the actor
        assert exp.ref_logprobs[b, :n] == pytest.approx(expected, abs=1e-4)


def test_reward_is_the_rm_score_of_prompt_plus_response(roles, batch, tiny_rm):
    from transformers import AutoModelForSequenceClassification

    rm = AutoModelForSequenceClassification.from_pretrained(tiny_rm)
    for b in range(batch.batch_size):
        prompt, response = _unpadded(batch, b)
        with torch.no_grad():
            expected = rm(input_ids=torch.cat([prompt, response])[None]).logits[0, 0]
        assert batch.scores[b].item() == pytest.approx(expected.item(), abs=1e-4)


def test_critic_starts_as_the_reward_model_per_token(roles, batch):
    ids, attn, pos = batch.sequences()
    P = batch.prompt_ids.shape[1]
    with torch.no_grad():
        rm_tokens = token_scores(roles.reward, ids, attn, pos)
    T = batch.response_ids.shape[1]
    assert batch.values == pytest.approx(rm_tokens[:, P - 1:P - 1 + T], abs=1e-5)
    last = batch.mask.sum(1) - 1
    # the RM score is the score head at the last response token
    assert batch.scores == pytest.approx(rm_tokens[torch.arange(len(last)), P + last], abs=1e-5)


def _nudge_adapters(model):
    """Move every trainable weight (adapters, value head) away from its starting value."""
    with torch.no_grad():
        for p in model.trainable:
            p.add_(0.05 * torch.randn_like(p))


def test_lora_shares_one_base_for_actor_critic_and_reference(tiny_sft, tiny_rm, tmp_path,
                                                              batch, roles):
    """The default LoRA layout: actor and critic adapters on the policy's base, reference =
    adapters off, reward model its own frozen copy."""
    from align.ppo.models import ACTOR, CRITIC
    from align.ppo.rollout import critic_values

    lora = load_roles(ppo_config(tiny_sft, tiny_rm, tmp_path, lora=True))
    assert lora.ref is None and lora.reward is not None and lora.critic is None
    assert lora.model.shared and set(lora.actor.peft_config) == {ACTOR, CRITIC}
    bases = {id(m) for m in lora.actor.get_base_model().modules()}
    assert all(id(m) not in bases for m in lora.reward.modules())
    # the two groups are disjoint and cover every trainable weight
    actor, critic = lora.model.actor_params(), lora.model.critic_params()
    assert actor and critic and not {id(p) for p in actor} & {id(p) for p in critic}
    assert len(actor) + len(critic) == len(lora.model.trainable)
    _nudge_adapters(lora.model)
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.mask)
    with lora.model.adapter(ACTOR) as a:
        actor_lp, _ = logprobs_and_entropy(a, *args, 1.0, 8)
    with lora.reference() as ref:
        ref_lp, _ = logprobs_and_entropy(ref, *args, 1.0, 8)
    assert not torch.allclose(actor_lp, ref_lp, atol=1e-3)
    # adapters off is the SFT model the full-mode fixture holds as its reference copy
    assert ref_lp[batch.mask] == pytest.approx(batch.ref_logprobs[batch.mask], abs=1e-4)
    with lora.model.adapter(CRITIC):
        values = critic_values(lora.model, *args, 8)
        critic_lp, _ = logprobs_and_entropy(lora.actor, *args, 1.0, 8)
    assert not torch.allclose(critic_lp, actor_lp, atol=1e-3)  # another adapter is active
    assert values.shape == batch.values.shape
    assert all(p.requires_grad for p in lora.model.trainable)  # switching left them trainable


def test_value_head_starts_from_the_rm_head_when_the_hidden_sizes_match(tiny_sft, tiny_rm,
                                                                         tmp_path):
    from tests.conftest import build_tiny_rm

    lora = load_roles(ppo_config(tiny_sft, tiny_rm, tmp_path / "a", lora=True))
    assert torch.equal(lora.model.value_head.weight, lora.reward.score.weight.float())
    assert lora.model.value_head.weight.abs().sum() > 0
    wide = build_tiny_rm(tmp_path / "wide", lora.tokenizer, hidden_size=96)
    other = load_roles(ppo_config(tiny_sft, wide, tmp_path / "b", lora=True))
    # 96 != 64: the head starts at zeros (--critic-warmup-steps trains it)
    assert other.model.value_head.weight.abs().sum() == 0


def test_lora_on_the_reward_models_base_keeps_the_two_base_layout(tiny_sft, tiny_rm, tmp_path,
                                                                  batch, roles):
    lora = load_roles(ppo_config(tiny_sft, tiny_rm, tmp_path, lora=True,
                                 critic_base="reward-model"))
    assert lora.ref is None and lora.reward is None  # no extra copies
    assert not lora.model.shared
    _nudge_adapters(lora.model)
    args = (batch.prompt_ids, batch.prompt_mask, batch.response_ids, batch.mask)
    actor_lp, _ = logprobs_and_entropy(lora.actor, *args, 1.0, 8)
    with lora.reference() as ref:
        ref_lp, _ = logprobs_and_entropy(ref, *args, 1.0, 8)
    assert not torch.allclose(actor_lp, ref_lp, atol=1e-3)
    assert ref_lp[batch.mask] == pytest.approx(batch.ref_logprobs[batch.mask], abs=1e-4)
    ids, attn, pos = batch.sequences()
    with torch.no_grad(), lora.reward_model() as rm:
        assert token_scores(rm, ids, attn, pos) == pytest.approx(
            token_scores(roles.reward, ids, attn, pos), abs=1e-4)


def test_value_head_file_overrides_the_score_head(tiny_rm, tmp_path):
    import shutil

    from safetensors.torch import save_file

    from align.ppo.models import load_value_head

    rm_dir = tmp_path / "rm"
    shutil.copytree(tiny_rm, rm_dir)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(rm_dir)
    head = torch.full_like(model.score.weight, 0.25)
    save_file({"v_head.summary.weight": head}, str(rm_dir / "value_head.safetensors"))
    load_value_head(model, str(rm_dir))
    assert torch.equal(model.score.weight, head)


def test_micro_batches_accumulate_to_the_full_mini_batch_gradient(roles, batch):
    """TRL's invariant: 1 micro-batch of 8 and 8 micro-batches of 1 give the same gradient."""
    from align.ppo.config import PPOConfig
    from align.ppo.reward_norm import RunningMoments
    from align.ppo.update import accumulate, compute_advantages, compute_rewards

    a = PPOConfig(entropy_coef=0.01)
    rewards, _ = compute_rewards(a, batch, 0.05, RunningMoments())
    advantages, returns, _ = compute_advantages(a, batch, rewards)
    # perturb the old log-probs so that some ratios clip
    exp = dataclasses.replace(batch, advantages=advantages, returns=returns,
                              logprobs=batch.logprobs + 0.3 * torch.randn_like(batch.logprobs))
    model = roles.model
    grads = []
    for micro in (exp.batch_size, 1):
        model.zero_grad(set_to_none=True)
        accumulate(model, exp, micro, a, True, exp.mask.sum().float())
        grads.append([p.grad.clone() for p in model.trainable])
    for whole, parts in zip(*grads):
        assert torch.allclose(whole, parts, atol=1e-6, rtol=1e-4)
    model.zero_grad(set_to_none=True)


def test_reward_model_with_another_tokenizer_is_refused(tiny_sft, tmp_path):
    from align.errors import AlignError
    from align.tiny import build_tokenizer
    from tests.conftest import build_tiny_rm

    other = build_tiny_rm(tmp_path / "rm", build_tokenizer(vocab_size=300))
    with pytest.raises(AlignError, match="different tokenizer"):
        load_roles(ppo_config(tiny_sft, other, tmp_path / "out"))


def _texts(exp_ids, mask):
    """Each row's response up to and including its first EOS, as a list."""
    return [row[m].tolist() for row, m in zip(exp_ids, mask)]


def test_batched_sorted_generation_gives_each_prompt_its_own_greedy_response(
        roles, prompt_files, tiny_lm):
    """However prompts are grouped into generate calls (one padded call, calls of 3 sorted by
    length or not, a static KV cache), greedy decoding gives every prompt the response it gets
    alone, in the prompts' order; scoring those responses gives the same log-probs.

    Generation runs on the random ``tiny_lm`` and random token prompts, which get a different
    answer each (the SFT model gives every chat prompt the same greedy answer, which would hide
    a response returned to the wrong prompt)."""
    import random

    from transformers import AutoModelForCausalLM

    from align.data import load_valid
    from align.ppo.data import prompt_ids
    from align.ppo.models import eos_token_ids
    from align.ppo.rollout import generate, response_mask, sample, score

    rng = random.Random(0)
    ids, mask = left_pad([[rng.randrange(3, 500) for _ in range(rng.randint(2, 12))]
                          for _ in range(7)], roles.tokenizer.pad_token_id)
    assert len(set(mask.sum(1).tolist())) > 2, "need prompts of several lengths"
    eos = eos_token_ids(roles)
    kw = dict(max_new_tokens=8, temperature=1.0, top_p=1.0, eos_ids=eos,
              pad_id=roles.tokenizer.pad_token_id, greedy=True)

    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()

    def responses(**batching):
        out = generate(model, ids, mask, **kw, **batching)
        return _texts(out, response_mask(out, eos)[0])

    alone = responses(chunk=1)  # every call holds one prompt, cut to its own length
    assert len({tuple(r) for r in alone}) == len(alone), "each prompt should get its own answer"
    assert responses(chunk=7) == alone
    assert responses(chunk=3, sort_by_length=True) == alone
    assert responses(chunk=3, sort_by_length=False) == alone
    assert responses(chunk=3, sort_by_length=True, static_cache=True, cache_len=64) == alone

    rows = load_valid(prompt_files[0], "prompt").rows[:7]
    ids, mask = left_pad(prompt_ids(rows, roles.tokenizer, None), roles.tokenizer.pad_token_id)
    one, grouped = (score(roles, sample(roles, ids, mask, max_new_tokens=8, temperature=1.0,
                                        top_p=1.0, greedy=True, **b), temperature=1.0, chunk=4)
                    for b in ({"chunk": 7}, {"chunk": 2, "sort_by_length": True}))
    assert torch.equal(one.response_ids, grouped.response_ids)
    for field in ("logprobs", "ref_logprobs", "values", "entropy"):
        a, b = getattr(one, field), getattr(grouped, field)
        assert a[one.mask] == pytest.approx(b[grouped.mask], abs=1e-5), field
    assert one.scores == pytest.approx(grouped.scores, abs=1e-5)


def test_close_turns_by_hand():
    """An ended response's EOS gives way to the turn-closing tokens; a cut one gets them after
    its last token; an empty ended response is the closing tokens alone."""
    from align.ppo.rollout import close_turns

    ids = torch.tensor([[5, 6, EOS, PAD], [5, 6, 7, 8], [EOS, PAD, PAD, PAD]])
    mask, ended = response_mask(ids, [EOS])
    closed, closed_mask = close_turns(ids, mask, ended, [EOS, 9], PAD)
    assert closed.tolist() == [[5, 6, EOS, 9, PAD, PAD], [5, 6, 7, 8, EOS, 9],
                               [EOS, 9, PAD, PAD, PAD, PAD]]
    assert closed_mask.int().tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6, [1, 1, 0, 0, 0, 0]]


def test_turn_end_is_what_the_chat_template_writes_after_an_answer(roles):
    from align.ppo.data import turn_end_ids

    tok = roles.tokenizer
    closing = turn_end_ids(tok, chat=True)
    text = tok.apply_chat_template([{"role": "user", "content": "q"},
                                    {"role": "assistant", "content": "a"}], tokenize=False)
    assert text.endswith(tok.decode(closing)) and closing[0] == tok.eos_token_id
    assert turn_end_ids(tok, chat=False) == [tok.eos_token_id]


def test_reward_at_turn_end_is_on_by_default_for_chat_prompts_only(roles):
    from types import SimpleNamespace

    from align.ppo.data import reward_at_turn_end

    tok = roles.tokenizer
    assert tok.chat_template
    assert reward_at_turn_end(None, chat=True, tokenizer=tok) is True
    assert reward_at_turn_end(None, chat=False, tokenizer=tok) is False
    untemplated = SimpleNamespace(chat_template=None)
    assert reward_at_turn_end(None, chat=True, tokenizer=untemplated) is False
    # the flag, either way, wins
    assert reward_at_turn_end(False, chat=True, tokenizer=tok) is False
    assert reward_at_turn_end(True, chat=False, tokenizer=tok) is True


def test_reward_at_turn_end_scores_the_answer_as_the_rm_was_trained(roles, batch, tiny_rm):
    """With turn_end, the score is the RM's at the end of prompt + answer text + the closing
    tokens (what TRL's RewardTrainer scores for a templated answer), cut responses included."""
    from transformers import AutoModelForSequenceClassification

    from align.ppo.data import turn_end_ids
    from align.ppo.rollout import Samples, score

    closing = turn_end_ids(roles.tokenizer, chat=True)
    s = Samples(prompt_ids=batch.prompt_ids, prompt_mask=batch.prompt_mask,
                response_ids=batch.response_ids, mask=batch.mask, ended=batch.ended)
    exp = score(roles, s, temperature=1.0, chunk=4, turn_end=closing)
    assert exp.logprobs == pytest.approx(batch.logprobs, abs=1e-5)  # only the score changes
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_rm)
    assert not batch.ended.all(), "need a response cut at the token limit"
    for b in range(batch.batch_size):
        prompt, response = _unpadded(batch, b)
        text = response[:-1] if batch.ended[b] else response
        ids = torch.cat([prompt, text, torch.tensor(closing)])[None]
        with torch.no_grad():
            expected = rm(input_ids=ids).logits[0, 0]
        assert exp.scores[b].item() == pytest.approx(expected.item(), abs=1e-4)
