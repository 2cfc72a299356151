"""align's reference pass for DPO's --precompute-ref-logps (align.algos.ref_logps) gives TRL's
reference log-probs: the same numbers as TRL's own pass, to float tolerance."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.conftest import write_jsonl


def uneven_pairs(n: int = 13, seed: int = 0) -> list[dict[str, Any]]:
    """Pairs whose prompts and answers vary in length (1 to 12 words), so that batches pad."""
    rng = random.Random(seed)
    words = "the quick brown fox jumps over lazy dog sea blue light sky".split()

    def text(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k))

    return [{"prompt": text(rng.randint(1, 8)), "chosen": " " + text(rng.randint(1, 12)),
             "rejected": " " + text(rng.randint(1, 12))} for _ in range(n)]


def trl_reference(cfg: Any, data: Any) -> tuple[list[float], list[float]]:
    """TRL 1.16's own pass (its DPOTrainer, batches of the training batch size)."""
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    from align.algos import common

    a = cfg.algo
    args = common.trl_config(cfg, DPOConfig, beta=a.beta, ld_alpha=a.ld_alpha,
                             precompute_ref_log_probs=True)
    tok = common.load_tokenizer(cfg, data)
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(cfg.model.model), args=args,
                         processing_class=tok, train_dataset=common.dataset(data, tok, cfg))
    ds = trainer.train_dataset
    return ds["ref_chosen_logps"], ds["ref_rejected_logps"]


@pytest.mark.parametrize("max_length,ld_alpha", [(1024, None), (9, None), (1024, 0.5)])
def test_align_reference_pass_gives_trls_log_probs(tmp_path, tiny_lm, monkeypatch, capsys,
                                                   max_length, ld_alpha):
    from align.algos import dpo
    from tests.algos.conftest import make_config

    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    data_file = write_jsonl(tmp_path / "pairs.jsonl", uneven_pairs())
    cfg, data = make_config("dpo", tiny_lm, data_file, tmp_path / "align", batch_size=3,
                            max_length=max_length, precompute_ref_logps=True, ld_alpha=ld_alpha)
    cfg.train.max_steps = 5  # 15 draws: every row (fewer steps score fewer rows, below)
    trainer, _ = dpo.build_trainer(cfg, data)
    assert "each prompt once" in capsys.readouterr().out  # align's pass ran, not TRL's
    ds = trainer.train_dataset
    chosen, rejected = trl_reference(cfg, data)
    # float32 sums near -100 are 7.6e-6 apart: a couple of ulps (rel 2e-7) for the other
    # batch shapes of the shared-prompt pass
    assert ds["ref_chosen_logps"] == pytest.approx(chosen, rel=2e-7, abs=1e-5)
    assert ds["ref_rejected_logps"] == pytest.approx(rejected, rel=2e-7, abs=1e-5)


def test_reference_pass_scores_only_the_rows_the_run_reaches(tmp_path, tiny_lm, monkeypatch,
                                                             capsys):
    """A run that ends inside its first epoch scores only the rows its batches draw (the
    others stay NaN in the cache), with TRL's values; the batches the trainer then draws hold
    exactly those rows. A longer rerun scores only the rows it adds; a run past one epoch
    scores the rest."""
    import math

    from align.algos import dpo
    from tests.algos.conftest import make_config

    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    data_file = write_jsonl(tmp_path / "pairs.jsonl", uneven_pairs())  # 13 pairs
    cfg, data = make_config("dpo", tiny_lm, data_file, tmp_path / "align", batch_size=2,
                            precompute_ref_logps=True)
    trl_chosen, _ = trl_reference(cfg, data)  # TRL's pass: every row
    seen: list[set[int]] = []
    for steps, new_rows in ((3, 6), (5, 4), (7, 3)):  # 6, 10, then 14 >= 13 draws
        cfg.train.max_steps = steps
        trainer, _ = dpo.build_trainer(cfg, data)
        out = capsys.readouterr().out
        assert f"log probs for train dataset: {new_rows} " in out
        values = trainer.train_dataset["ref_chosen_logps"]
        scored = {i for i, v in enumerate(values) if not math.isnan(v)}
        assert len(scored) == min(2 * steps, 13)
        assert all(scored >= earlier for earlier in seen)
        seen.append(scored)
        assert [values[i] for i in sorted(scored)] == \
            pytest.approx([trl_chosen[i] for i in sorted(scored)], abs=1e-5)
        loader = iter(trainer.get_train_dataloader())
        drawn = [v for _ in range(steps) for v in next(loader)["ref_chosen_logps"].tolist()]
        assert not any(math.isnan(v) for v in drawn)
        if 2 * steps < 13:  # one epoch's first draws: each scored row once
            assert sorted(drawn) == pytest.approx(sorted(values[i] for i in scored))


def loop_logps(model: Any, tokens: list[int], answer: list[int]) -> Any:
    """The slow, obvious reference: one sequence alone, unpadded, through the model's own
    forward; the log-softmax of position t's logits at token t + 1, for every answer token
    but the first of the sequence (no position predicts it)."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tokens])).logits[0].double()
    logps = logits.log_softmax(-1)
    return torch.tensor([float(logps[t - 1, tokens[t]]) for t in range(1, len(tokens))
                         if answer[t]], dtype=torch.float64)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_shared_prompt_pass_gives_each_sequence_alone(request, arch):
    """Each distinct prompt run once, its keys and values shared by the answers after it:
    the same log-probs as each sequence run alone (a loop), for pairs on one prompt, prompts
    of different lengths in one batch (left-padded cache), identical sequences, a one-token
    prompt, a prompt cut away (keep_end), an answer cut away (keep_start), and batches of
    one to many sequences."""
    import torch
    from transformers import AutoModelForCausalLM

    from align.algos import ref_logps

    model = AutoModelForCausalLM.from_pretrained(
        str(request.getfixturevalue("tiny_lm" if arch == "qwen2" else "tiny_llama"))).eval()
    rng = random.Random(1)
    prompts = [[rng.randint(3, 60) for _ in range(k)] for k in (1, 2, 5, 5, 9)]
    seqs = []
    for prompt in prompts:
        for _ in range(3):  # three answers on each prompt, of 1 to 12 tokens
            answer = [rng.randint(3, 60) for _ in range(rng.randint(1, 12))]
            seqs.append((prompt + answer, [0] * len(prompt) + [1] * len(answer)))
    seqs += [seqs[4], seqs[7]]  # identical sequences
    seqs.append(([7, 8, 9, 10], [1, 1, 1, 1]))  # keep_end cut the whole prompt away
    seqs.append(([7, 8, 9], [0, 0, 0]))  # keep_start cut the whole answer away
    expected = [loop_logps(model, *s) for s in seqs]
    with torch.inference_mode():
        for budget in (1, 24, 10_000):
            got = ref_logps.shared_prompt_logps(model, seqs, budget)
            assert got is not None
            for want, have in zip(expected, got):
                assert have.shape == want.shape
                assert torch.allclose(have.double(), want, atol=1e-5)
    assert ref_logps.split_prompt([7, 8, 9, 10], [1, 1, 1, 1]) == ((7,), (8, 9, 10))
    assert ref_logps.split_prompt([7, 8, 9], [0, 0, 0]) == ((7, 8, 9), ())


def test_shared_prompt_pass_leaves_heads_that_scale_logits_to_trl(tiny_lm):
    """A model whose logits TRL's head caps or scales (Gemma 2's softcapping): the shared-prompt
    pass does not apply, so the sequences run whole through TRL's fused head."""
    from transformers import AutoModelForCausalLM

    from align.algos import ref_logps

    model = AutoModelForCausalLM.from_pretrained(str(tiny_lm))
    assert ref_logps.answer_head(model) is not None
    model.config.final_logit_softcapping = 30.0
    assert ref_logps.answer_head(model) is None
    assert ref_logps.shared_prompt_logps(model, [([1, 2, 3], [0, 1, 1])]) is None


def test_by_tokens_keeps_each_batch_within_the_budget():
    from align.algos.ref_logps import by_tokens

    items = [1, 2, 2, 3, 5, 9]  # widths, ascending
    batches = list(by_tokens(items, lambda w: w, 6))
    assert batches == [[1, 2, 2], [3], [5], [9]]  # 3 x 2 = 6; 2 x 3 > 6; 9 alone
    assert [w for b in batches for w in b] == items


def test_sequences_cut_like_trls_collator():
    """keep_start keeps the first max_length tokens, keep_end the last; the answer mask is cut
    with them."""
    from align.algos.ref_logps import sequences

    ds = {"prompt_ids": [[1, 2, 3]], "chosen_ids": [[4, 5]], "rejected_ids": [[6]]}
    assert sequences(ds, None, "keep_start") == [([1, 2, 3, 4, 5], [0, 0, 0, 1, 1]),
                                                 ([1, 2, 3, 6], [0, 0, 0, 1])]
    assert sequences(ds, 4, "keep_start") == [([1, 2, 3, 4], [0, 0, 0, 1]),
                                              ([1, 2, 3, 6], [0, 0, 0, 1])]
    assert sequences(ds, 3, "keep_end") == [([3, 4, 5], [0, 1, 1]), ([2, 3, 6], [0, 0, 1])]


def test_pair_logps_weighs_the_longer_answers_tail_by_ld_alpha():
    """LD-DPO by hand: answers of 2 and 4 tokens share 2; the longer one's last 2 weigh 0.5."""
    import torch

    from align.algos.ref_logps import pair_logps

    chosen, rejected = torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -1.0, -4.0, -2.0])
    assert pair_logps(chosen, rejected, None) == (-3.0, -8.0)
    assert pair_logps(chosen, rejected, 0.5) == (-3.0, -2.0 + 0.5 * -6.0)


def test_answer_positions_only_keeps_the_dpo_loss_and_gradients(tmp_path, tiny_lm, monkeypatch):
    """align's DPO loss (the fused head on the answer positions only) against TRL's (every
    position scored on a CPU): the same loss and the same gradient on a padded batch."""
    import torch
    from trl import DPOTrainer

    from align.algos import dpo
    from tests.algos.conftest import make_config

    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    data_file = write_jsonl(tmp_path / "pairs.jsonl", uneven_pairs())
    cfg, data = make_config("dpo", tiny_lm, data_file, tmp_path / "out", batch_size=4)
    trainer, _ = dpo.build_trainer(cfg, data)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert (batch["completion_mask"] == 0).any()  # prompts and padding are in the batch
    model = trainer.model
    results = []
    for loss_of in (trainer.compute_loss, lambda m, b: DPOTrainer.compute_loss(trainer, m, b)):
        model.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (ours, our_grads), (trls, trl_grads) = results
    assert ours.item() == pytest.approx(trls.item(), abs=1e-6)
    for a, b in zip(our_grads, trl_grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)


def test_pair_halves_runs_each_half_at_its_own_width_with_trls_loss(tmp_path, tiny_lm,
                                                                      monkeypatch):
    """On a CPU align's DPO loss runs the chosen and the rejected half in two forwards, each
    cut to its own longest row (align.algos.ref_logps.PairHalves): concise chosen answers are
    not padded to rambling rejected ones, and TRL's loss, gradients and logged metrics (the
    per-token fields padded back) come out as from TRL's one forward."""
    import torch
    from trl import DPOTrainer

    from align.algos import dpo
    from tests.algos.conftest import make_config

    monkeypatch.setenv("ALIGN_CACHE", str(tmp_path / "cache"))
    rows = [{**r, "chosen": " sea", "rejected": r["rejected"] + r["rejected"]}
            for r in uneven_pairs(8, seed=3)]
    data_file = write_jsonl(tmp_path / "pairs.jsonl", rows)
    cfg, data = make_config("dpo", tiny_lm, data_file, tmp_path / "out", batch_size=4)
    trainer, _ = dpo.build_trainer(cfg, data)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model = trainer.model
    widths: list[int] = []
    hook = model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: widths.append(kwargs["input_ids"].size(1)), with_kwargs=True)
    results = []
    try:
        for loss_of in (trainer.compute_loss, lambda m, b: DPOTrainer.compute_loss(trainer, m, b)):
            widths.clear()
            trainer._metrics["train"].clear()
            model.zero_grad()
            loss = loss_of(model, batch)
            loss.backward()
            results.append((loss.detach(), [p.grad.clone() for p in model.parameters()],
                            list(widths), {k: list(v) for k, v in trainer._metrics["train"].items()}))
    finally:
        hook.remove()
    (ours, our_grads, our_widths, our_metrics), (trls, trl_grads, trl_widths, trl_metrics) = results
    full = batch["input_ids"].size(1)
    assert trl_widths == [full]
    assert len(our_widths) == 2 and our_widths[0] < our_widths[1] == full
    assert ours.item() == pytest.approx(trls.item(), abs=1e-6)
    for a, b in zip(our_grads, trl_grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
    assert our_metrics.keys() == trl_metrics.keys()
    for key in trl_metrics:
        assert our_metrics[key] == pytest.approx(trl_metrics[key], abs=1e-5), key


def test_pair_halves_passes_through_what_it_cannot_split(tiny_lm):
    """No fused head, an odd batch, extra model inputs or nothing to cut: one plain forward."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from align.algos.ref_logps import PairHalves

    model = AutoModelForCausalLM.from_pretrained(str(tiny_lm))
    add_fused_lm_head(model, outputs=("log_probs",))
    calls: list[int] = []
    model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(kwargs["input_ids"].size(0)), with_kwargs=True)
    ids = torch.randint(3, 50, (4, 6))
    full = torch.ones_like(ids)
    labels = ids.clone()
    halves = PairHalves(model)
    for kwargs in ({"input_ids": ids, "attention_mask": full},  # nothing to cut
                   {"input_ids": ids[:3], "attention_mask": full[:3]},  # odd batch
                   {"input_ids": ids, "attention_mask": full, "position_ids": None}):
        calls.clear()
        out = halves(**kwargs, labels=labels[:kwargs["input_ids"].size(0)], fused_lm_head=True)
        assert calls == [kwargs["input_ids"].size(0)] and out.log_probs is not None
    calls.clear()
    short = full.clone()
    short[:2, 3:] = 0
    out = halves(input_ids=ids, attention_mask=short, labels=labels.masked_fill(short == 0, -100),
                 fused_lm_head=True)
    assert calls == [2, 2] and out.log_probs.shape == (4, 5)
    assert (out.log_probs[:2, 2:] == 0).all() and not out.label_mask[:2, 2:].any()
