"""SFT end to end (prompt/completion and chat messages) and which tokens carry the loss."""

from __future__ import annotations

import pytest

from align.algos.sft import SFTArgs, assistant_masks_supported, data_kind, loss_masks
from tests.algos.conftest import FAST, assert_loss_falls, make_config
from tests.conftest import run_cli


@pytest.mark.parametrize("data", ["sft_file", "chat_file"])
def test_sft_loss_falls_and_model_loads_back(tmp_path, capsys, tiny_lm, data, request):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sft"
    code, _, err = run_cli(["sft", "--model", tiny_lm, "--dataset", request.getfixturevalue(data),
                            "--output-dir", out, "--max-steps", "24", "--learning-rate", "3e-3",
                            *FAST], capsys)
    assert code == 0, err
    assert "warning" not in err.lower()  # the tiny template marks assistant turns
    assert_loss_falls(out, min_drop=0.5)
    assert AutoModelForCausalLM.from_pretrained(out).config.model_type == "qwen2"


def test_sft_masks_follow_the_data_layout(tiny_tokenizer):
    on, off = SFTArgs(), SFTArgs(completion_only_loss=False)
    assert loss_masks(on, "prompt_completion", tiny_tokenizer) == \
        {"completion_only_loss": True, "assistant_only_loss": False}
    assert loss_masks(on, "messages", tiny_tokenizer) == \
        {"completion_only_loss": False, "assistant_only_loss": True}
    assert loss_masks(on, "text", tiny_tokenizer)["completion_only_loss"] is False
    assert loss_masks(off, "messages", tiny_tokenizer)["assistant_only_loss"] is False
    assert data_kind([{"messages": []}]) == "messages"
    assert data_kind([{"prompt": "p", "completion": "c"}]) == "prompt_completion"
    assert data_kind([{"text": "t"}]) == "text"


def test_chat_template_without_generation_markers_falls_back_with_a_warning(capsys):
    from align.tiny import build_tokenizer

    tok = build_tokenizer()
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                         "{% endfor %}")
    assert not assistant_masks_supported(tok)
    masks = loss_masks(SFTArgs(), "messages", tok)
    assert masks == {"completion_only_loss": False, "assistant_only_loss": False}
    assert "covers the whole conversation" in capsys.readouterr().err


def test_assistant_mask_covers_only_the_assistant_turn(tiny_tokenizer):
    """The tiny template's {% generation %} markers put the reply (and its end token) in the
    mask and leave the user turn out."""
    messages = [{"role": "user", "content": "2 + 2 ="}, {"role": "assistant", "content": "4"}]
    enc = tiny_tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                             return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    kept = tiny_tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert kept == "4<|im_end|>"


@pytest.mark.parametrize("row,answer", [
    ({"prompt": "3 + 4 =", "completion": " 7"}, " 7<|im_end|>"),
    ({"messages": [{"role": "user", "content": "3 + 4 ="},
                   {"role": "assistant", "content": "7"}]}, "7<|im_end|>"),
])
def test_sft_labels_cover_only_the_answer(tmp_path, tiny_lm, row, answer):
    from align.algos import sft
    from tests.algos.conftest import make_config
    from tests.conftest import write_jsonl

    cfg, rows = make_config("sft", tiny_lm, write_jsonl(tmp_path / "one.jsonl", [row]),
                            tmp_path / "o")
    trainer, tok = sft.build_trainer(cfg, rows)
    labels = trainer.data_collator([trainer.train_dataset[0]])["labels"][0]
    assert tok.decode([int(t) for t in labels if t != -100]) == answer


def _first_batch_loss(trainer):
    import torch

    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch).item(), batch


def test_padding_free_gives_the_padded_loss(tmp_path, tiny_lm, sft_file):
    """One flattened sequence per batch (no padding) trains on the same tokens with the same
    attention as a padded batch: transformers masks each packed sequence apart (sdpa here;
    flash attention on GPUs)."""
    from align.algos import sft

    losses = {}
    for padding_free in (False, True):
        cfg, rows = make_config("sft", tiny_lm, sft_file, tmp_path / str(padding_free),
                                padding_free=padding_free)
        cfg.model.attn_implementation = "sdpa"
        trainer, _ = sft.build_trainer(cfg, rows)
        losses[padding_free], batch = _first_batch_loss(trainer)
        assert (batch["input_ids"].shape[0] == 1) == padding_free  # flattened into one row
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)


def test_padding_free_refuses_examples_longer_than_max_length(tmp_path, tiny_lm, sft_file):
    from align.algos import sft
    from align.errors import AlignError

    cfg, rows = make_config("sft", tiny_lm, sft_file, tmp_path, max_length=6,
                            padding_free=True)
    with pytest.raises(AlignError, match="longer than --max-length 6 tokens"):
        sft.build_trainer(cfg, rows)


def test_padding_free_without_flash_attention_is_a_note(capsys, tiny_lm, sft_file):
    code, out, err = run_cli(["sft", "--model", tiny_lm, "--dataset", sft_file,
                              "--padding-free", "--dry-run"], capsys)
    assert code == 0, err
    assert "--padding-free without --attn-implementation flash_attention_2" in err


@pytest.mark.parametrize("shifted", [False, True])
def test_plain_head_gives_what_trls_fused_head_gives(tiny_lm, shifted):
    """The loss from plain logits (align's CPU path for small vocabularies) against TRL's fused
    log-prob head as the reference: the same per-token log-probs, entropy, top-1 flags, mask,
    loss and gradients on a batch with prompt and padding positions ignored."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from align.algos.sft import use_plain_head

    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    fused, plain = copy.deepcopy(model), copy.deepcopy(model)
    for m in (fused, plain):
        add_fused_lm_head(m, outputs=("log_probs", "entropy", "is_top1"))
    use_plain_head(plain)
    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (3, 12))
    attention = torch.ones_like(ids)
    attention[1, 9:] = 0
    labels = ids.masked_fill(attention == 0, -100)
    labels[:, :4] = -100  # the prompt
    kwargs = {"input_ids": ids, "attention_mask": attention, "fused_lm_head": True}
    if shifted:  # pre-shifted labels, as under context parallelism
        kwargs["shift_labels"] = torch.cat([labels[:, 1:], torch.full((3, 1), -100)], dim=1)
    else:
        kwargs["labels"] = labels
    want, got = fused(**kwargs), plain(**kwargs)
    assert torch.equal(want.label_mask, got.label_mask)
    assert torch.equal(want.is_top1, got.is_top1)
    for name in ("loss", "log_probs", "entropy"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name).detach(),
                                   rtol=1e-5, atol=1e-5)
    assert got.log_probs[~got.label_mask].abs().sum() == 0
    want.loss.backward()
    got.loss.backward()
    for (name, p), q in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    # without fused_lm_head the model's own forward answers (generation is unchanged)
    torch.testing.assert_close(plain(input_ids=ids).logits, model(input_ids=ids).logits)


def test_plain_head_applies_on_a_cpu_to_small_vocabularies(tmp_path, tiny_lm, sft_file,
                                                           monkeypatch):
    from align.algos import sft

    # the length groups (tests/algos/test_sft_groups.py) would wrap the head
    monkeypatch.setattr(sft, "length_groups_apply", lambda trainer: False)
    cfg, rows = make_config("sft", tiny_lm, sft_file, tmp_path)
    trainer, _ = sft.build_trainer(cfg, rows)
    # build_trainer put the plain head in place of TRL's
    assert trainer.model.forward.__func__.__code__.co_qualname == "use_plain_head.<locals>.forward"
    assert sft.plain_head_applies(trainer.model, "cpu")
    assert not sft.plain_head_applies(trainer.model, "cuda")
    trainer.model.config.vocab_size = sft.FUSED_HEAD_TILE + 1
    assert not sft.plain_head_applies(trainer.model, "cpu")
