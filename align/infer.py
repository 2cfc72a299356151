"""Talk to a trained model: load it (a LoRA adapter on its base, a full model, a .gguf file),
render prompts through its chat template, generate (greedy or sampled, optionally streamed),
and score answers with a reward model. ``align chat`` and ``align generate`` (align/chat.py)
are built on these functions.

A directory with ``adapter_config.json`` is a peft adapter: its base model is the one the
adapter names (``--base`` overrides it, for a base that moved), loaded unquantised, with the
adapter on top. Everything loads as safetensors; remote code runs only with
``--trust-remote-code``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from align.errors import AlignError

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class Loaded:
    """A model ready for inference, its tokenizer, and how it was loaded (one line)."""

    model: Any
    tokenizer: Any
    description: str
    threads: str = ""  # on a CPU: how many threads and why (align.plan.Threads.describe)

    @property
    def said(self) -> str:
        """The line a command prints: what was loaded where, and on a CPU its threads."""
        return f"{self.description}, {self.threads}" if self.threads else self.description

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))


def _device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise AlignError("--device cuda: no CUDA GPU is visible; use --device cpu")
    return torch.device(device)


def _dtype(dtype: str, device: Any) -> Any:
    """``auto``: bfloat16 on a GPU that supports it, else float32 (CPU half precision is slow)."""
    import torch

    if dtype == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    return getattr(torch, dtype)


def _has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))


def base_of(adapter_dir: Path, base: str | None) -> str:
    """The base model of a LoRA adapter: ``base`` if given, else the one it names."""
    from align.merge import read_adapter_config

    config = read_adapter_config(adapter_dir)
    path = base or config.get("base_model_name_or_path")
    if not path:
        raise AlignError(f"{adapter_dir}/adapter_config.json names no base model; pass --base")
    local = path.startswith((".", "/", "~")) or Path(path).expanduser().exists()
    if local and not Path(path).expanduser().exists():
        raise AlignError(f"{adapter_dir}: its base model {path} (from adapter_config.json) does "
                         "not exist here; pass --base PATH")
    return path


_THREADS: list[Any] = []  # this process's align.plan.Threads, once chosen


def cpu_threads() -> Any:
    """Set torch's CPU threads once per process by align.plan's rule (OMP_NUM_THREADS, else
    every idle core), as training runs do; returns the choice (``.count``, ``.describe()``)."""
    if not _THREADS:
        import torch

        from align.plan import choose_threads

        _THREADS.append(choose_threads())
        torch.set_num_threads(_THREADS[0].count)
    return _THREADS[0]


def load(path: str, *, kind: str = "lm", base: str | None = None, device: str = "auto",
         dtype: str = "auto", trust_remote_code: bool = False, chat_template: str | None = None,
         check_tokenizer: Callable[[Any], None] | None = None) -> Loaded:
    """Load ``path`` for inference: ``kind`` "lm" (a causal LM) or "rm" (a one-output reward
    model). LoRA adapter directories are loaded on their base. The tokenizer loads first:
    ``chat_template`` (``--chat-template``) replaces its template, and ``check_tokenizer``
    runs on it before the model loads (the tool-template check of ``--tools``)."""
    from align.console import quiet_libraries

    quiet_libraries()
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification,
                              AutoTokenizer)

    from align.models import _friendly_load_error, gguf_directory

    p = Path(path).expanduser()
    if not p.exists() and (path.startswith((".", "/", "~")) or path.count("/") != 1):
        raise AlignError(f"{path}: no such file or directory")
    dev = _device(device)
    threads = cpu_threads().describe() if str(dev) == "cpu" else ""
    kwargs: dict[str, Any] = {"dtype": _dtype(dtype, dev), "use_safetensors": True,
                              "trust_remote_code": trust_remote_code}
    auto = AutoModelForCausalLM if kind == "lm" else AutoModelForSequenceClassification
    if kind == "rm":
        kwargs["num_labels"] = 1
    adapter = (p / "adapter_config.json").is_file()
    source = base_of(p, base) if adapter else gguf_directory(str(p) if p.exists() else path)
    from align.templates import apply

    try:
        tok_dir = str(p) if adapter and _has_tokenizer(p) else source
        tokenizer = AutoTokenizer.from_pretrained(tok_dir, trust_remote_code=trust_remote_code)
        apply(tokenizer, chat_template)
        if check_tokenizer is not None:
            check_tokenizer(tokenizer)
        model = auto.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        raise _friendly_load_error(source, e) from e
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(p))
        description = f"{path} (LoRA adapter on {source})"
    else:
        description = path
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(dev).eval()
    return Loaded(model, tokenizer, f"{description} on {dev.type}", threads)


def to_messages(prompt: Any) -> list[dict[str, str]]:
    """A prompt as chat messages: a plain string becomes one user turn."""
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]


def render(tokenizer: Any, prompt: Any, use_template: bool = True) -> str:
    """The text the model continues: the chat template with the assistant's turn opened, or
    the prompt as it is (a string prompt with ``use_template`` False, or no template)."""
    if use_template and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(to_messages(prompt), tokenize=False,
                                             add_generation_prompt=True)
    if isinstance(prompt, list):
        return "\n".join(m["content"] for m in prompt) + "\n"
    return str(prompt)


def stop_ids(loaded: Loaded) -> list[int]:
    """Token ids that end an answer: the generation config's EOS ids and the tokenizer's."""
    configured = getattr(loaded.model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else
              [] if configured is None else [configured])
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(loaded.tokenizer.eos_token_id)
    return sorted(ids)


def sampling(temperature: float, top_p: float) -> dict[str, Any]:
    """generate() options: greedy at temperature 0, else sampling at this temperature/top-p."""
    if temperature < 0:
        raise AlignError(f"--temperature must be >= 0 (0 is greedy), got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise AlignError(f"--top-p must be in (0, 1], got {top_p}")
    if temperature == 0:
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}


@dataclass
class Generation:
    """One answer: its text (special tokens removed), its length in tokens (EOS included), and
    whether it finished (ended with EOS) rather than running out of --max-new-tokens."""

    text: str
    tokens: int
    finished: bool


def generate(loaded: Loaded, prompts: Sequence[Any], *, max_new_tokens: int,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 8,
             use_template: bool = True, streamer: Any = None,
             progress: Callable[[int], None] | None = None) -> list[Generation]:
    """Answers to ``prompts`` (strings or message lists), in order. Sampling is seeded with
    ``seed``, so the same call gives the same answers. ``streamer`` (one prompt at a time)
    receives the tokens as they are generated."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    options = sampling(temperature, top_p)
    device = next(model.parameters()).device
    eos = stop_ids(loaded)
    answers: list[Generation] = []
    torch.manual_seed(seed)
    for start in range(0, len(prompts), batch_size):
        batch = [render(tok, p, use_template) for p in prompts[start:start + batch_size]]
        enc = tok(batch, return_tensors="pt", padding=True, padding_side="left",
                  add_special_tokens=not (use_template and tok.chat_template))
        enc = {k: v.to(device) for k, v in enc.items()}
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=eos,
                                 pad_token_id=tok.pad_token_id, streamer=streamer, **options)
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            ids: list[int] = []
            for t in row:  # up to and including the first EOS; the rest is padding
                ids.append(t)
                if t in eos:
                    break
            answers.append(Generation(tok.decode(ids, skip_special_tokens=True).strip(),
                                      len(ids), bool(ids) and ids[-1] in eos))
        if progress is not None:
            progress(len(batch))
    return answers


def reward_scores(rm: Loaded, prompts: Sequence[Any], answers: Sequence[str], *, chat: bool,
                  batch_size: int = 8) -> list[float]:
    """A reward model's score of each (prompt, answer): as chat messages through its chat
    template when ``chat`` (the answers were generated that way), else as prompt + answer."""
    from align.rewards.evaluate import model_scores

    if chat and not rm.tokenizer.chat_template:
        raise AlignError(f"--reward-model {rm.description}: its tokenizer has no chat template "
                         "to render the chat prompts with; use --raw, or a reward model with one")
    scores: list[float] = []
    for start in range(0, len(prompts), batch_size):
        ps = list(prompts[start:start + batch_size])
        ans = list(answers[start:start + batch_size])
        if chat:
            completions: list[Any] = [[{"role": "assistant", "content": a}] for a in ans]
            ps = [to_messages(p) for p in ps]
        else:
            completions = [" " + a for a in ans]
            ps = [render(rm.tokenizer, p, use_template=False) for p in ps]
        scores += model_scores(rm.model, rm.tokenizer, ps, completions)
    return scores
