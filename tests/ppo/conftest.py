"""PPO test fixtures: a tiny 'SFT' policy that answers briefly and stops, and prompt files.

A random tiny LM almost never samples EOS, so every response would run to the token limit and
the repeater/mute detectors would have no healthy baseline. ``tiny_sft`` fixes that: a few
seconds of supervised training teach the random model to answer a chat prompt with 2-6 words
and then <|im_end|>.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_jsonl

WORDS = ("the sky is blue sea wide good bad great answer yes no maybe paris light air "
         "one two three four five red green poem").split()


def chat_prompts(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"prompt": [{"role": "user", "content": " ".join(rng.choice(WORDS)
                                                            for _ in range(rng.randint(2, 5)))}]}
            for _ in range(n)]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine the
    OpenMP workers of two threads spin against other processes (a 64x64 matmul went from 0.1 ms
    to 26 ms here). One thread per PPO test; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train_sft(model: Any, tokenizer: Any, steps: int = 100, seed: int = 0) -> None:
    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        texts = []
        for _ in range(16):
            prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
            texts.append(tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                tokenize=False))
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.fixture(scope="session")
def tiny_sft(tmp_path_factory: pytest.TempPathFactory, tiny_lm: Path, tiny_tokenizer: Any) -> Path:
    """``tiny_lm`` after a short SFT: brief answers that end with <|im_end|> (EOS)."""
    import torch
    from transformers import AutoModelForCausalLM

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    _train_sft(model, tiny_tokenizer)
    out = tmp_path_factory.mktemp("tiny_sft")
    model.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    torch.set_num_threads(threads)
    return out


POSITIVE = ("good", "great", "yes")


def _train_preference_rm(model: Any, tokenizer: Any, steps: int = 60, seed: int = 0) -> None:
    """Bradley-Terry on pairs where the chosen answer swaps words for good/great/yes."""
    import torch

    rng = random.Random(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def text(prompt: str, words: list[str]) -> str:
        chat = [{"role": "user", "content": prompt},
                {"role": "assistant", "content": " ".join(words)}]
        return tokenizer.apply_chat_template(chat, tokenize=False).rstrip("\n")

    model.train()
    for _ in range(steps):
        chosen, rejected = [], []
        for _ in range(16):
            prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
            words = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
            better = list(words)
            for i in rng.sample(range(len(words)), rng.randint(1, len(words))):
                better[i] = rng.choice(POSITIVE)
            chosen.append(text(prompt, better))
            rejected.append(text(prompt, [w if w not in POSITIVE else "bad" for w in words]))
        batch = tokenizer(chosen + rejected, return_tensors="pt", padding=True,
                          add_special_tokens=False)
        scores = model(**batch).logits.squeeze(-1)
        loss = -torch.nn.functional.logsigmoid(scores[:16] - scores[16:]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


@pytest.fixture(scope="session")
def tiny_pref_rm(tmp_path_factory: pytest.TempPathFactory, tiny_rm: Path,
                 tiny_tokenizer: Any) -> Path:
    """``tiny_rm`` trained to prefer answers with good/great/yes: a reward with a known
    direction and the score spread of a real RM (chosen - rejected ~ 8)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm)
    _train_preference_rm(model, tiny_tokenizer)
    out = tmp_path_factory.mktemp("tiny_pref_rm")
    model.save_pretrained(out)
    tiny_tokenizer.save_pretrained(out)
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def prompt_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(train, held-out) chat prompt files drawn from the same word list."""
    d = tmp_path_factory.mktemp("prompts")
    return (write_jsonl(d / "train.jsonl", chat_prompts(64, seed=1)),
            write_jsonl(d / "eval.jsonl", chat_prompts(32, seed=2)))


def ppo_config(model: Path, reward_model: Path, output_dir: Path, **flags: Any) -> Any:
    """A resolved RunConfig for --algo ppo, as the CLI would build it from these flags."""
    from align.options import resolve
    from align.registry import flag_owners, get_algo

    spec = get_algo("ppo")
    values = {"model": str(model), "output_dir": str(output_dir), **flags}
    if reward_model is not None:
        values["reward_model"] = str(reward_model)
    return resolve(spec, values, {}, flag_owners())


DOUBLE_TOOL = Path(__file__).with_name("double_tool.py")


def tool_prompts(n: int, seed: int) -> list[dict[str, Any]]:
    """'double N' questions with their answers (the 'solution' column accuracy reads)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(1, 9)
        rows.append({"prompt": [{"role": "user", "content": f"double {k}"}], "solution": str(2 * k)})
    return rows


def _tool_transcript(k: int) -> list[dict[str, Any]]:
    import json

    call = {"name": "double", "arguments": {"n": k}}
    return [{"role": "user", "content": f"double {k}"},
            {"role": "assistant", "content": f"<tool_call>\n{json.dumps(call)}\n</tool_call>"},
            {"role": "tool", "name": "double", "content": str(2 * k)},
            {"role": "assistant", "content": str(2 * k)}]


def build_tool_sft(out: Path, lm: Path, tokenizer: Any, steps: int = 120) -> Path:
    """Teach the tiny LM at ``lm`` (a short SFT with the chatml-tools template) to answer
    'double N' by calling the ``double`` tool, then writing its result; save it to ``out``."""
    import copy
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import get_json_schema

    from align import templates

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tok = templates.apply(copy.deepcopy(tokenizer), "chatml-tools")
    spec = importlib.util.spec_from_file_location("double_tool", DOUBLE_TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    schema = [get_json_schema(module.double)]
    model = AutoModelForCausalLM.from_pretrained(lm)
    rng = random.Random(0)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        texts = [tok.apply_chat_template(_tool_transcript(rng.randint(1, 9)), tools=schema,
                                         tokenize=False) for _ in range(8)]
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="session")
def tiny_tool_sft(tmp_path_factory: pytest.TempPathFactory, tiny_lm: Path,
                  tiny_tokenizer: Any) -> Path:
    """``tiny_lm`` that calls the ``double`` tool: multi-turn episodes from the first rollout."""
    return build_tool_sft(tmp_path_factory.mktemp("tiny_tool_sft"), tiny_lm, tiny_tokenizer)


@pytest.fixture(scope="session")
def tool_prompt_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tool_prompts")
    return (write_jsonl(d / "train.jsonl", tool_prompts(32, seed=1)),
            write_jsonl(d / "eval.jsonl", tool_prompts(8, seed=2)))
