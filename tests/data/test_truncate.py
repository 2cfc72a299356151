"""--max-prompt-length: prompts keep their end (plain text) or their latest turns (chat)."""

from __future__ import annotations

from align.data.truncate import truncate_prompts


def n_tokens(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_plain_prompts_keep_their_last_tokens(tiny_tokenizer):
    long = "one two three four five six seven eight nine ten"
    rows = [{"prompt": long, "chosen": " a", "rejected": " b"}, {"prompt": "one", "chosen": "x",
                                                                   "rejected": "y"}]
    out, n_cut = truncate_prompts(rows, tiny_tokenizer, 4)
    assert n_cut == 1 and out[1] == rows[1]
    assert n_tokens(tiny_tokenizer, out[0]["prompt"]) <= 4
    assert long.endswith(out[0]["prompt"].strip()) and out[0]["chosen"] == " a"
    assert rows[0]["prompt"] == long  # input rows are not modified


def test_chat_prompts_drop_the_oldest_turns_but_keep_the_system_message(tiny_tokenizer):
    prompt = [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": "one two three four five six seven eight"},
              {"role": "assistant", "content": "nine ten"},
              {"role": "user", "content": "yes"}]
    out, n_cut = truncate_prompts([{"prompt": prompt, "completion": [
        {"role": "assistant", "content": "no"}], "label": True}], tiny_tokenizer, 16)
    assert n_cut == 1
    assert [m["role"] for m in out[0]["prompt"]] == ["system", "user"]
    assert out[0]["prompt"][-1]["content"] == "yes"


def test_no_limit_and_rows_without_prompt_pass_through(tiny_tokenizer):
    rows = [{"messages": [{"role": "user", "content": "hi"}]}]
    assert truncate_prompts(rows, tiny_tokenizer, None) == (rows, 0)
    assert truncate_prompts(rows, tiny_tokenizer, 1) == (rows, 0)


def test_validated_arrow_rows_are_cut_in_place_of_a_copy_only_when_needed(tiny_tokenizer,
                                                                          tmp_path):
    from align.data import load
    from align.data.truncate import _prompt_tokens, truncate_dataset
    from tests.conftest import write_jsonl

    long = [{"role": "user", "content": "one two three four five six seven eight"},
            {"role": "assistant", "content": "nine ten"}, {"role": "user", "content": "yes"}]
    rows = [{"prompt": long, "chosen": [{"role": "assistant", "content": "a"}],
             "rejected": [{"role": "assistant", "content": "b"}]},
            {"prompt": [{"role": "user", "content": "no"}],
             "chosen": [{"role": "assistant", "content": "c"}],
             "rejected": [{"role": "assistant", "content": "d"}]}]
    ds = load(write_jsonl(tmp_path / "d.jsonl", rows), "pairwise").rows.dataset
    same, n_cut = truncate_dataset(ds, tiny_tokenizer, 1000)
    assert n_cut == 0 and same is ds
    limit = _prompt_tokens(tiny_tokenizer, [{"role": "user", "content": "yes"}])
    cut, n_cut = truncate_dataset(ds, tiny_tokenizer, limit)
    assert n_cut == 1 and cut.features == ds.features  # chat messages keep their type
    assert cut[0]["prompt"] == [{"role": "user", "content": "yes"}]
    assert cut[1] == ds[1]
