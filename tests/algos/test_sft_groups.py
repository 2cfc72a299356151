"""SFT's forward in length groups on a CPU (align.algos.sft.use_length_groups): each group cut
to its longest row, the outputs put back in the batch's order and width, and SFTTrainer's loss,
gradients and logged metrics as from its one padded forward."""

from __future__ import annotations

import itertools
import random

import pytest

from tests.algos.conftest import make_config
from tests.conftest import write_jsonl


def positions(lengths, groups, group_cost):
    """The cost length_groups minimises: rows x longest row of each group, plus group_cost each."""
    return sum(len(g) * max(lengths[i] for i in g) + group_cost for g in groups)


def best_by_brute_force(lengths, max_groups, group_cost):
    """Every way to cut the rows sorted by length into at most max_groups runs: the cheapest."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    best = None
    for k in range(max_groups):
        for cuts in itertools.combinations(range(1, len(order)), k):
            bounds = (0, *cuts, len(order))
            groups = [order[a:b] for a, b in zip(bounds, bounds[1:])]
            cost = positions(lengths, groups, group_cost)
            best = cost if best is None else min(best, cost)
    return best


def test_length_groups_by_hand():
    """Rows of 3, 10, 3, 10 tokens: one group computes 4 x 10 = 40 positions, two groups
    2 x 3 + 2 x 10 = 26; at 5 a group, 45 against 36: split, each group in batch order."""
    from align.algos.sft import length_groups

    assert length_groups([3, 10, 3, 10], 2, 5) == [[0, 2], [1, 3]]
    # saving 14 positions does not pay a group of 20: one group, every row
    assert length_groups([3, 10, 3, 10], 2, 20) == [[0, 1, 2, 3]]
    # nothing to cut
    assert length_groups([7, 7, 7], 3, 0) == [[0, 1, 2]]
    # three lengths, three groups when allowed and free: 2x2 + 2x5 + 2x9 = 32 positions
    assert length_groups([9, 2, 5, 2, 9, 5], 3, 0) == [[1, 3], [2, 5], [0, 4]]
    # two at most: 4 x 5 + 2 x 9 = 38 positions beats 2 x 2 + 4 x 9 = 40
    assert length_groups([9, 2, 5, 2, 9, 5], 2, 0) == [[1, 2, 3, 5], [0, 4]]


@pytest.mark.parametrize("max_groups,group_cost", [(2, 0), (2, 40), (3, 10), (4, 64)])
def test_length_groups_finds_the_cheapest_cut(max_groups, group_cost):
    """Against every cut of the sorted rows (brute force), on random batches: the same cost,
    and every row exactly once."""
    from align.algos.sft import length_groups

    rng = random.Random(max_groups * 100 + group_cost)
    for _ in range(30):
        lengths = [rng.randint(2, 60) for _ in range(rng.randint(1, 10))]
        groups = length_groups(lengths, max_groups, group_cost)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert all(g == sorted(g) for g in groups) and len(groups) <= max_groups
        assert positions(lengths, groups, group_cost) == \
            best_by_brute_force(lengths, max_groups, group_cost)


def mixed_rows(n: int = 16, seed: int = 0) -> list[dict[str, str]]:
    """Prompt/completion rows of very different lengths: one-word and 60-to-80-word answers,
    interleaved so that the groups' rows are scattered across each batch."""
    rng = random.Random(seed)
    words = "the quick brown fox jumps over lazy dog sea blue light sky".split()
    rows = []
    for i in range(n):
        answer = rng.randint(60, 80) if i % 3 == 1 else 1
        rows.append({"prompt": " ".join(rng.choice(words) for _ in range(rng.randint(2, 4))),
                     "completion": " " + " ".join(rng.choice(words) for _ in range(answer))})
    return rows


def trainer_for(tmp_path, tiny_lm, name, monkeypatch, *, groups: bool, head: str):
    from align.algos import sft

    monkeypatch.setattr(sft, "length_groups_apply", lambda trainer: groups)
    if head == "trl":  # TRL's fused head on every position, as for a wide vocabulary
        monkeypatch.setattr(sft, "plain_head_applies", lambda model, device: False)
    data = write_jsonl(tmp_path / "mixed.jsonl", mixed_rows())
    cfg, rows = make_config("sft", tiny_lm, data, tmp_path / name, batch_size=8)
    return sft.build_trainer(cfg, rows)[0]


@pytest.mark.parametrize("head", ["plain", "trl"])
def test_groups_give_the_one_forward_loss_gradients_and_metrics(tmp_path, tiny_lm, monkeypatch,
                                                                 head):
    """The same batch of 8 rows (lengths about 8 and 70 tokens, interleaved) through
    SFTTrainer.compute_loss with and without groups: two forwards, cut to the short rows'
    and the long rows' widths, against one; the same loss, gradients, entropy and token
    accuracy; the per-token outputs in the batch's row order."""
    import torch

    results = {}
    for groups in (True, False):
        trainer = trainer_for(tmp_path, tiny_lm, f"{head}{groups}", monkeypatch,
                              groups=groups, head=head)
        batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        model = trainer.model.train()  # as in a training step: the metrics go to "train"
        calls: list[tuple[int, int]] = []
        hook = model.model.register_forward_pre_hook(
            lambda mod, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)),
            with_kwargs=True)
        try:
            trainer._metrics["train"].clear()
            model.zero_grad()
            loss = trainer.compute_loss(model, dict(batch))
            loss.backward()
            step_calls = list(calls)
            with torch.no_grad():
                out = model(**batch, fused_lm_head=True)
        finally:
            hook.remove()
        results[groups] = (batch, loss.detach(), {n: p.grad.clone() for n, p in
                                                  model.named_parameters()},
                           {k: list(v) for k, v in trainer._metrics["train"].items()},
                           step_calls, out)
    (batch, loss, grads, metrics, calls, out), (batch1, loss1, grads1, metrics1, calls1, out1) = \
        results[True], results[False]
    assert torch.equal(batch["input_ids"], batch1["input_ids"])  # the same batch in both
    lengths = batch["attention_mask"].sum(1).tolist()
    short = [n for n in lengths if n < 20]
    assert short and len(short) < len(lengths)  # both kinds of row in the batch
    assert calls1 == [tuple(batch["input_ids"].shape)]
    assert calls == [(len(short), max(short)), (len(lengths) - len(short), max(lengths))]
    assert loss.item() == pytest.approx(loss1.item(), rel=1e-5)
    for name, g in grads1.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert metrics.keys() == metrics1.keys() and {"entropy", "mean_token_accuracy"} <= metrics.keys()
    for key in metrics1:
        assert metrics[key] == pytest.approx(metrics1[key], rel=1e-5), key
    # row by row, in the batch's order and at its width
    assert torch.equal(out.label_mask, out1.label_mask)
    assert torch.equal(out.is_top1, out1.is_top1)
    torch.testing.assert_close(out.log_probs, out1.log_probs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.entropy, out1.entropy, rtol=1e-5, atol=1e-5)


def grouped_model(tiny_lm):
    """A tiny model with align's plain head in length groups, and the shapes of its
    backbone's calls."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from align.algos.sft import use_length_groups, use_plain_head

    model = AutoModelForCausalLM.from_pretrained(str(tiny_lm))
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    use_plain_head(model)
    use_length_groups(model)
    calls: list[tuple[int, int]] = []
    model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)
                                               if kwargs.get("input_ids") is not None
                                               else ("embeds",)), with_kwargs=True)
    return model, calls


def padded_batch(lengths, width=None, seed=0):
    import torch

    torch.manual_seed(seed)
    width = width or max(lengths)
    ids = torch.randint(3, 300, (len(lengths), width))
    mask = (torch.arange(width) < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask, ids.masked_fill(mask == 0, -100)


def test_groups_widths_and_order_on_a_hand_built_batch(tiny_lm):
    """Rows of 4, 150, 5, 150, 4, 150 tokens: one group computes 900 positions, two 15 + 450,
    which saves more than a group costs (GROUP_COST): a call of the short rows at width 5 and
    one of the long rows at width 150; outputs at the batch's width 149 with zeros past each
    row, rows in their order."""
    import torch

    model, calls = grouped_model(tiny_lm)
    ids, mask, labels = padded_batch([4, 150, 5, 150, 4, 150])
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    assert calls == [(3, 5), (3, 150)]
    assert out.log_probs.shape == (6, 149)
    assert torch.equal(out.label_mask, labels[:, 1:] != -100)
    assert (out.log_probs[~out.label_mask] == 0).all()
    # each row as it comes out alone
    for row in (0, 1, 2):
        n = int(mask[row].sum())
        alone = model(input_ids=ids[row:row + 1, :n], attention_mask=mask[row:row + 1, :n],
                      labels=labels[row:row + 1, :n], fused_lm_head=True)
        torch.testing.assert_close(out.log_probs[row, :n - 1], alone.log_probs[0],
                                   rtol=1e-5, atol=1e-5)


def test_groups_pass_through_what_they_cannot_split(tiny_lm):
    """One forward, at the batch's shape, for: nothing worth cutting, a padding-free batch
    (position_ids), inputs_embeds, left padding, a scored label in the padding, no fused head
    (generation), a positional argument."""
    import torch

    model, calls = grouped_model(tiny_lm)
    ids, mask, labels = padded_batch([4, 150, 5, 150, 4, 150])
    cases = {
        "nothing to cut": dict(input_ids=ids[:, :4], attention_mask=torch.ones_like(ids[:, :4]),
                               labels=ids[:, :4], fused_lm_head=True),
        "saves little": dict(zip(("input_ids", "attention_mask", "labels"),
                                 padded_batch([5, 6])), fused_lm_head=True),
        "padding-free": dict(input_ids=ids[:1], position_ids=torch.arange(150)[None],
                             labels=labels[:1], fused_lm_head=True),
        "with position_ids": dict(input_ids=ids, attention_mask=mask, labels=labels,
                                  position_ids=torch.arange(150).expand(6, -1),
                                  fused_lm_head=True),
        "left padding": dict(input_ids=ids, attention_mask=mask.flip(1), labels=labels.flip(1),
                             fused_lm_head=True),
        "label in the padding": dict(input_ids=ids, attention_mask=mask, labels=ids,
                                     fused_lm_head=True),
        "no fused head": dict(input_ids=ids, attention_mask=mask),
    }
    for name, kwargs in cases.items():
        calls.clear()
        model(**kwargs)
        assert calls == [tuple(kwargs["input_ids"].shape)], name
    calls.clear()
    embeds = model.get_input_embeddings()(ids)
    model(inputs_embeds=embeds, attention_mask=mask, labels=labels, fused_lm_head=True)
    assert calls == [("embeds",)]
    calls.clear()
    model(ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    assert calls == [tuple(ids.shape)]


def test_groups_apply_on_a_cpu_in_one_process(tmp_path, tiny_lm, sft_file):
    from align.algos import sft

    cfg, rows = make_config("sft", tiny_lm, sft_file, tmp_path)
    trainer, _ = sft.build_trainer(cfg, rows)
    assert trainer.model.forward.__func__.__code__.co_qualname == \
        "use_length_groups.<locals>.forward"
    assert sft.length_groups_apply(trainer)
    trainer.aux_loss_enabled = True
    assert not sft.length_groups_apply(trainer)
    cfg.algo.length_groups = False  # --no-length-groups: one forward per batch, as TRL
    trainer, _ = sft.build_trainer(cfg, rows)
    assert trainer.model.forward.__func__.__code__.co_qualname != \
        "use_length_groups.<locals>.forward"
