"""align chat / align generate: models (full or LoRA adapters on their base) answer prompts
through their chat template, greedy or seeded sampling, scored by a reward model, side by side."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

PROMPTS = ["What is 2 + 2?", "Name a colour.", "Count to three."]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, tiny_lm):
    """A LoRA adapter on tiny_lm whose B matrices are not zero, so that it changes answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules="all-linear"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_lm).save_pretrained(out)
    return out


def _prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n\n", encoding="utf-8")
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_greedy_writes_jsonl_and_table(tmp_path, capsys, tiny_lm):
    out = tmp_path / "a.jsonl"
    code, stdout, err = run_cli(["generate", "--model", tiny_lm, "--prompts", _prompts(tmp_path),
                                 "--max-new-tokens", "6", "-o", out], capsys)
    assert code == 0, err
    rows = _rows(out)
    assert [r["prompt"] for r in rows] == PROMPTS
    assert all(isinstance(r["response"], str) and isinstance(r["finished"], bool)
               and 1 <= r["tokens"] <= 6 for r in rows)
    assert rows[0]["settings"]["temperature"] == 0.0
    assert "[1] What is 2 + 2?" in stdout and "[3] Count to three." in stdout
    # greedy: the same answers again
    again = tmp_path / "b.jsonl"
    run_cli(["generate", "--model", tiny_lm, "--prompts", _prompts(tmp_path),
             "--max-new-tokens", "6", "-o", again], capsys)
    assert [r["response"] for r in _rows(again)] == [r["response"] for r in rows]


def test_answers_are_what_the_model_generates_through_its_template(tiny_lm):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from align.infer import generate, load

    loaded = load(str(tiny_lm), device="cpu")
    answers = [g.text for g in generate(loaded, PROMPTS[:1], max_new_tokens=6)]
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm).eval()
    text = tok.apply_chat_template([{"role": "user", "content": PROMPTS[0]}], tokenize=False,
                                   add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=6, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    expected = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert answers == [expected]


def test_sampling_is_seeded(tiny_lm):
    from align.infer import generate, load

    loaded = load(str(tiny_lm), device="cpu")
    kwargs = dict(max_new_tokens=8, temperature=1.0, top_p=1.0)
    a = generate(loaded, PROMPTS, seed=3, **kwargs)
    assert generate(loaded, PROMPTS, seed=3, **kwargs) == a
    assert generate(loaded, PROMPTS * 3, seed=4, **kwargs) != a * 3
    assert all(g.tokens <= 8 and (g.finished or g.tokens == 8) for g in a)


def test_lora_adapter_loads_on_its_base_and_compares_with_it(tmp_path, capsys, adapter, tiny_lm):
    out = tmp_path / "cmp.jsonl"
    code, stdout, err = run_cli(["generate", "--model", adapter, "--compare", tiny_lm,
                                 "--prompts", _prompts(tmp_path), "--max-new-tokens", "8",
                                 "-o", out], capsys)
    assert code == 0, err
    assert "LoRA adapter on" in err
    rows = _rows(out)
    assert all({"response", "compare_response", "model", "compare_model"} <= set(r)
               for r in rows)
    assert any(r["response"] != r["compare_response"] for r in rows)  # the adapter matters
    header = [line for line in stdout.splitlines() if " | " in line][0]
    assert Path(adapter).name in header and Path(tiny_lm).name in header  # side by side


def test_reward_model_scores_every_answer(tmp_path, capsys, tiny_lm, tiny_rm):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path / "scored.jsonl"
    code, stdout, err = run_cli(["generate", "--model", tiny_lm, "--compare", tiny_lm,
                                 "--reward-model", tiny_rm, "--prompts", _prompts(tmp_path),
                                 "--max-new-tokens", "5", "-o", out], capsys)
    assert code == 0, err
    rows = _rows(out)
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_rm, num_labels=1).eval()
    tok = AutoTokenizer.from_pretrained(tiny_rm)
    msgs = [{"role": "user", "content": rows[0]["prompt"]},
            {"role": "assistant", "content": rows[0]["response"]}]
    ids = tok(tok.apply_chat_template(msgs, tokenize=False), return_tensors="pt",
              add_special_tokens=False)
    with torch.no_grad():
        expected = rm(**ids).logits[0, 0].item()
    assert rows[0]["score"] == pytest.approx(expected, abs=1e-4)
    assert "mean reward-model score" in stdout and "scores higher than" in stdout


def test_prompts_from_a_chat_dataset(tmp_path, capsys, tiny_lm):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"question": [{"role": "system", "content": "Be brief."},
                                             {"role": "user", "content": "Hi?"}]}) + "\n")
    code, stdout, err = run_cli(["generate", "--model", tiny_lm, "--prompts", path,
                                 "--columns", "prompt=question", "--max-new-tokens", "4"], capsys)
    assert code == 0, err
    assert "[1] Hi?" in stdout and "--output" in stdout


def test_generate_refuses_bad_input(tmp_path, capsys, tiny_lm):
    prompts = _prompts(tmp_path)
    existing = tmp_path / "exists.jsonl"
    existing.write_text("mine\n")
    for args, needle in ((["-o", existing], "exists"), (["--temperature", "-1"], "--temperature"),
                         (["--top-p", "0"], "--top-p")):
        code, _, err = run_cli(["generate", "--model", tiny_lm, "--prompts", prompts, *args],
                               capsys)
        assert code == 2 and needle in err, err
    assert existing.read_text() == "mine\n"
    code, _, err = run_cli(["generate", "--model", tmp_path / "nope", "--prompts", prompts],
                           capsys)
    assert code == 2 and "no such" in err


def test_chat_streams_answers_keeps_history_and_resets(monkeypatch, capsys, tiny_lm):
    from align.infer import generate, load

    monkeypatch.setattr("sys.stdin", io.StringIO("What is 2 + 2?\n/reset\nName a colour.\n"))
    code, stdout, err = run_cli(["chat", tiny_lm, "--temperature", "0", "--max-new-tokens", "6",
                                 "--device", "cpu"], capsys)
    assert code == 0, err
    assert "chatting with" in stdout and "(conversation cleared)" in stdout
    assert " on cpu, " in stdout and " CPU thread" in stdout  # the threads, and why
    loaded = load(str(tiny_lm), device="cpu")
    first = generate(loaded, [PROMPTS[0]], max_new_tokens=6)[0].text
    replies = [line.split("model> ", 1)[1].strip() for line in stdout.splitlines()
               if "model> " in line]
    assert replies[0] == first
    # after /reset the second question is answered without the first in its context
    assert replies[1] == generate(loaded, [PROMPTS[1]], max_new_tokens=6, seed=1)[0].text


def test_chat_lists_its_commands_instead_of_sending_them_to_the_model(monkeypatch, capsys,
                                                                      tiny_lm):
    monkeypatch.setattr("sys.stdin", io.StringIO("/help\n/colour\n/exit\n"))
    code, stdout, err = run_cli(["chat", tiny_lm, "--temperature", "0", "--max-new-tokens", "6",
                                 "--device", "cpu"], capsys)
    assert code == 0, err
    assert "model> " not in stdout  # nothing was sent to the model
    assert "(/reset clears the conversation" in stdout
    assert "(no command /colour; /reset clears the conversation" in stdout


def test_chat_drops_the_oldest_turns_that_no_longer_fit(tiny_lm):
    from align.chat import fit_history
    from align.infer import load

    loaded = load(str(tiny_lm), device="cpu")
    loaded.model.config.max_position_embeddings = 60
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(6):
        messages += [{"role": "user", "content": f"question {i} about the sea"},
                     {"role": "assistant", "content": f"answer {i} about the sea"}]
    messages.append({"role": "user", "content": "last question"})
    kept, dropped = fit_history(loaded, list(messages), max_new_tokens=10)
    assert dropped > 0 and kept[0]["role"] == "system" and kept[-1]["content"] == "last question"
    assert len(kept) == len(messages) - dropped


def test_the_loaded_line_says_the_cpu_threads_and_why(monkeypatch):
    """On a CPU, generate's and chat's first line names the threads (align.plan's rule, the
    same as training's): here OMP_NUM_THREADS decides."""
    from align.infer import Loaded, cpu_threads

    monkeypatch.setattr("align.infer._THREADS", [])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    import torch

    before = torch.get_num_threads()
    try:
        chosen = cpu_threads()
    finally:
        torch.set_num_threads(before)
    assert chosen.count == 1 and chosen.describe() == "1 CPU thread (from OMP_NUM_THREADS)"
    assert Loaded(None, None, "m on cpu", chosen.describe()).said == \
        "m on cpu, 1 CPU thread (from OMP_NUM_THREADS)"
    assert Loaded(None, None, "m on cuda").said == "m on cuda"
