"""``align chat MODEL_DIR`` (talk to a model, answers streamed as they are generated) and
``align generate --model DIR --prompts FILE`` (answers to a file of prompts, optionally scored by
a reward model and set beside another model's answers, to JSONL and a readable table)."""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from align.errors import AlignError
from align.infer import Loaded

COMMANDS = "/reset clears the conversation, /exit (or Ctrl-D) quits, /help lists these"


def streamer(loaded: Loaded, echo: Callable[[str], None]) -> Any:
    """A transformers streamer that hands each finished piece of text to ``echo``."""
    from transformers import TextStreamer

    class Echo(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            echo(text + ("\n" if stream_end else ""))

    return Echo(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)


def context_limit(loaded: Loaded) -> int | None:
    """The longest input the model takes in tokens (None when its config does not say)."""
    return getattr(loaded.model.config, "max_position_embeddings", None)


def fit_history(loaded: Loaded, messages: list[dict[str, str]], max_new_tokens: int
                ) -> tuple[list[dict[str, str]], int]:
    """Drop the oldest turns (a system message stays) until prompt + answer fit the context;
    returns the messages kept and how many were dropped."""
    from align.infer import render

    limit = context_limit(loaded)
    dropped = 0
    while limit is not None:
        n = len(loaded.tokenizer(render(loaded.tokenizer, messages),
                                 add_special_tokens=False)["input_ids"])
        first = 1 if messages and messages[0]["role"] == "system" else 0
        if n + max_new_tokens <= limit or len(messages) - first <= 1:
            break
        del messages[first:first + 2]  # one user turn and its answer
        dropped += 2
    return messages, dropped


def chat(loaded: Loaded, *, system: str | None, max_new_tokens: int, temperature: float,
         top_p: float, seed: int, read: Callable[[str], str] = input) -> None:
    """The interactive loop: read a line, stream the answer, keep the conversation."""
    from align.infer import generate

    templated = loaded.has_chat_template
    click.echo(f"chatting with {loaded.said}")
    if not templated:
        click.echo("  its tokenizer has no chat template: each line is continued as plain text, "
                   "with no memory of earlier turns")
    click.echo(f"  {COMMANDS}")
    start = [{"role": "system", "content": system}] if system and templated else []
    messages = list(start)
    turn = 0
    while True:
        try:
            line = read("\nyou> ").strip()
        except EOFError:
            click.echo()
            return
        if not line:
            continue
        if not sys.stdin.isatty():  # piped input: show it, so the transcript reads as a chat
            click.echo(line)
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            messages = list(start)
            click.echo("(conversation cleared)")
            continue
        if line.startswith("/") and len(line.split()) == 1:  # a command, never a message
            known = line == "/help"
            click.echo(f"({'' if known else f'no command {line}; '}{COMMANDS})")
            continue
        messages.append({"role": "user", "content": line})
        messages, dropped = fit_history(loaded, messages, max_new_tokens)
        if dropped:
            click.echo(f"(the oldest {dropped} messages no longer fit the model's context "
                       "and were dropped)")
        click.echo("model> ", nl=False)
        prompt: Any = messages if templated else line
        try:
            generation = generate(loaded, [prompt], max_new_tokens=max_new_tokens,
                                  temperature=temperature, top_p=top_p, seed=seed + turn,
                                  use_template=templated,
                                  streamer=streamer(loaded, lambda t: click.echo(t, nl=False)))[0]
        except KeyboardInterrupt:
            click.echo("\n(interrupted)")
            messages.pop()
            continue
        if not generation.finished:
            click.echo(f"[cut off at --max-new-tokens {max_new_tokens}]")
        answer = generation.text
        turn += 1
        if templated:
            messages.append({"role": "assistant", "content": answer})
        else:
            messages = list(start)


def read_prompts(path: str, columns: str | None, limit: int | None) -> list[Any]:
    """Prompts from a .txt file (one per line) or any file the data layer reads in the prompt
    format (a ``prompt`` column: strings or chat messages; ``--columns prompt=question``)."""
    p = Path(path)
    if not p.exists():
        raise AlignError(f"--prompts {path}: no such file or directory")
    if p.suffix == ".txt":
        prompts: list[Any] = [line.strip() for line in p.read_text(encoding="utf-8").splitlines()
                              if line.strip()]
    else:
        from align.data import load_valid

        prompts = [row["prompt"] for row in load_valid(path, "prompt", columns,
                                                       flag="--prompts").rows]
    if not prompts:
        raise AlignError(f"--prompts {path}: no prompts in the file")
    return prompts[:limit] if limit else prompts


@dataclass
class Answers:
    """One model's answers to the prompts, and their reward-model scores when asked."""

    name: str  # the label in the table
    path: str  # the model as given on the command line
    answers: list[Any]  # align.infer.Generation, one per prompt
    scores: list[float] | None = None

    @property
    def texts(self) -> list[str]:
        return [a.text for a in self.answers]


def prompt_text(prompt: Any) -> str:
    """A prompt for the table: the last user turn of a conversation, or the string."""
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if m.get("role") == "user"]
        return users[-1] if users else prompt[-1]["content"]
    return str(prompt)


def table(prompts: list[Any], runs: list[Answers], width: int | None = None) -> str:
    """A readable table: each prompt, then every model's answer (with its score), the models'
    answers side by side when there are two; then the mean scores and the win rate."""
    width = width or min(shutil.get_terminal_size((120, 24)).columns, 160)
    out: list[str] = []
    col = (width - 3) // len(runs)
    for i, prompt in enumerate(prompts):
        out.append(textwrap.shorten(f"[{i + 1}] {prompt_text(prompt)}", width, placeholder=" ..."))
        cells = []
        for run in runs:
            head = run.name + (f" ({run.scores[i]:+.3f})" if run.scores else "")
            tail = "" if run.answers[i].finished else " [cut off at --max-new-tokens]"
            cells.append([head] + textwrap.wrap((run.texts[i] or "(empty answer)") + tail,
                                                col - 2))
        for row in range(max(len(c) for c in cells)):
            parts = [(c[row] if row < len(c) else "").ljust(col - 2) for c in cells]
            out.append("  " + " | ".join(parts).rstrip())
        out.append("")
    if all(r.scores for r in runs):
        means = ", ".join(f"{r.name} {sum(r.scores) / len(r.scores):+.3f}"  # type: ignore[arg-type]
                          for r in runs)
        out.append(f"mean reward-model score: {means}")
        if len(runs) == 2:
            a, b = runs[0].scores, runs[1].scores
            wins = sum(x > y for x, y in zip(a, b))  # type: ignore[arg-type]
            ties = sum(x == y for x, y in zip(a, b))  # type: ignore[arg-type]
            out.append(f"{runs[0].name} scores higher than {runs[1].name} on {wins} of "
                       f"{len(a)} prompts ({ties} ties)")  # type: ignore[arg-type]
    return "\n".join(out).rstrip()


def write_jsonl(path: Path, prompts: list[Any], runs: list[Answers], settings: dict[str, Any]
                ) -> None:
    """One JSON object per prompt: the prompt, ``response``, ``finished`` (ended with EOS),
    ``tokens`` and ``score``, the same with ``compare_`` for the compared model, plus the
    settings used."""
    with path.open("w", encoding="utf-8") as fh:
        for i, prompt in enumerate(prompts):
            row: dict[str, Any] = {"prompt": prompt}
            for prefix, run in zip(("", "compare_"), runs):
                row[f"{prefix}model"] = run.path
                row[f"{prefix}response"] = run.texts[i]
                row[f"{prefix}finished"] = run.answers[i].finished
                row[f"{prefix}tokens"] = run.answers[i].tokens
                if run.scores:
                    row[f"{prefix}score"] = run.scores[i]
            row["settings"] = settings
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def answer_file(model: str, prompts_path: str, *, compare: str | None, reward_model: str | None,
                output: str | None, columns: str | None, limit: int | None,
                load_options: dict[str, Any], gen_options: dict[str, Any],
                base: str | None = None) -> tuple[list[Any], list[Answers]]:
    """Generate every model's answers to the prompts file (progress on stderr), score them,
    write the JSONL. ``base`` is the base of ``model`` when it is a LoRA adapter."""
    from tqdm import tqdm

    from align.infer import generate, load, reward_scores

    prompts = read_prompts(prompts_path, columns, limit)
    if output and Path(output).exists():
        raise AlignError(f"--output {output} exists; choose another file (nothing is "
                         "overwritten)")
    runs: list[Answers] = []
    chat_rendered = False
    names = [model] + ([compare] if compare else [])
    short = [Path(n).name or n for n in names]
    labels = short if len(set(short)) == len(short) else names
    for i, (name, label) in enumerate(zip(names, labels)):
        loaded = load(name, base=base if i == 0 else None, **load_options)
        click.echo(f"loaded {loaded.said}", err=True)
        chat_rendered = loaded.has_chat_template and gen_options.get("use_template", True)
        with tqdm(total=len(prompts), desc=f"answers of {name}", unit="prompt",
                  dynamic_ncols=True) as bar:
            answers = generate(loaded, prompts, progress=bar.update, **gen_options)
        runs.append(Answers(label, name, answers))
        del loaded
    if reward_model:
        rm = load(reward_model, kind="rm", **{k: v for k, v in load_options.items()
                                              if k != "chat_template"})
        click.echo(f"scoring with {rm.description}", err=True)
        for run in runs:
            run.scores = reward_scores(rm, prompts, run.texts, chat=chat_rendered)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in gen_options.items() if k != "use_template"}
        write_jsonl(Path(output), prompts, runs, settings | {"reward_model": reward_model})
    return prompts, runs


def transcript_lines(messages: list[dict[str, Any]]) -> list[str]:
    """An agent's turns for the terminal: its words, each tool call and each result."""
    lines = []
    for m in messages:
        if m["role"] == "assistant":
            if m.get("content"):
                lines.append(f"assistant: {m['content']}")
            for c in m.get("tool_calls") or []:
                fn = c["function"]
                lines.append(f"  -> {fn['name']}({json.dumps(fn['arguments'], ensure_ascii=False)})")
        elif m["role"] == "tool":
            lines.append(f"  <- {m.get('name', 'tool')}: {m['content']}")
    return lines


def agent_answer_file(model: str, prompts_path: str, agents: Any, *, output: str | None,
                      columns: str | None, limit: int | None, load_options: dict[str, Any],
                      gen_options: dict[str, Any], base: str | None = None) -> list[Any]:
    """``align generate --tools/--environment``: roll out the multi-turn loop on every row
    (align/agents/loop.py), print each transcript, write one JSON object per row to
    ``output``: the prompt, the whole conversation (``messages``, loadable as SFT data) and
    what happened in it (``stats``). The tools load and the chat template is checked before
    the model loads."""
    import torch

    from align.agents.loop import episode_metrics, rollout
    from align.agents.parsing import require_tool_template
    from align.agents.sampler import hf_sampler
    from align.agents.tools import load_toolset
    from align.infer import load, sampling, stop_ids, to_messages

    p = Path(prompts_path)
    if not p.exists():
        raise AlignError(f"--prompts {prompts_path}: no such file or directory")
    if output and Path(output).exists():
        raise AlignError(f"--output {output} exists; choose another file (nothing is "
                         "overwritten)")
    if p.suffix == ".txt":
        rows = [{"prompt": line.strip()} for line in p.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    else:
        from align.data import load_valid

        rows = list(load_valid(prompts_path, "prompt", columns, flag="--prompts").rows)
    rows = rows[:limit] if limit else rows
    if not rows:
        raise AlignError(f"--prompts {prompts_path}: no prompts in the file")
    toolset = load_toolset(agents)
    toolset.check_rows(rows, prompts_path)
    fmt: list[str] = []
    loaded = load(model, base=base, check_tokenizer=lambda tok: fmt.append(
        require_tool_template(tok, model)), **load_options)
    click.echo(f"loaded {loaded.said}", err=True)
    sampler = hf_sampler(loaded.model, loaded.tokenizer, stop_ids=stop_ids(loaded),
                         options=sampling(gen_options["temperature"], gen_options["top_p"]))
    torch.manual_seed(gen_options["seed"])
    size = gen_options["batch_size"]
    episodes = []
    for start in range(0, len(rows), size):
        batch = rows[start:start + size]
        episodes += rollout(batch, [to_messages(r["prompt"]) for r in batch], sampler,
                            loaded.tokenizer, toolset,
                            max_completion_length=gen_options["max_new_tokens"],
                            stop_ids=stop_ids(loaded), fmt=fmt[0],
                            labels=[f"{prompts_path} record {start + k + 1}"
                                    for k in range(len(batch))])
    for i, (row, ep) in enumerate(zip(rows, episodes)):
        click.echo(textwrap.shorten(f"[{i + 1}] {prompt_text(to_messages(row['prompt']))}", 160,
                                    placeholder=" ..."))
        n = len(to_messages(row["prompt"]))
        for line in transcript_lines(ep.messages[n:]):
            click.echo("  " + line)
        click.echo("")
    metrics = episode_metrics(episodes)
    click.echo("  ".join(f"{k} {v:.3g}" for k, v in metrics.items()))
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        settings = {k: v for k, v in gen_options.items() if k != "use_template"}
        with Path(output).open("w", encoding="utf-8") as fh:
            for row, ep in zip(rows, episodes):
                rec = ep.record()
                record = {"prompt": row["prompt"], "messages": rec.pop("messages"),
                          "tools": toolset.schemas(ep.env_name), "stats": rec,
                          "model": model, "settings": settings}
                fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    return episodes


def agent_chat(model: str, agents: Any, *, system: str | None, chat_template: str | None,
               load_options: dict[str, Any], max_new_tokens: int, temperature: float,
               top_p: float, seed: int, read: Callable[[str], str] = input) -> None:
    """``align chat --tools``: each line you type is a user turn; the model may call tools
    (each call and its result is shown) until it answers. ``--max-new-tokens`` bounds the
    tokens of one answer, calls and results included. /reset starts over, /exit quits."""
    import torch

    from align.agents.loop import rollout
    from align.agents.parsing import require_tool_template
    from align.agents.sampler import hf_sampler
    from align.agents.tools import load_toolset
    from align.infer import load, sampling, stop_ids

    toolset = load_toolset(agents)
    if toolset.environments:
        raise AlignError("align chat takes --tools; an --environment needs the columns of a "
                         "data row for reset(): use align generate --environment --prompts FILE")
    fmt: list[str] = []
    loaded = load(model, chat_template=chat_template, check_tokenizer=lambda tok: fmt.append(
        require_tool_template(tok, model)), **load_options)
    click.echo(f"loaded {loaded.said}; tools: "
               f"{', '.join(t.name for t in toolset.tools)}. /reset, /exit", err=True)
    sampler = hf_sampler(loaded.model, loaded.tokenizer, stop_ids=stop_ids(loaded),
                         options=sampling(temperature, top_p))
    torch.manual_seed(seed)
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    while True:
        try:
            line = read("> ").strip()
        except (EOFError, KeyboardInterrupt):
            click.echo("")
            return
        if line in ("/exit", "/quit"):
            return
        if line == "/reset":
            messages = list(start)
            continue
        if not line:
            continue
        messages.append({"role": "user", "content": line})
        ep, = rollout([{}], [messages], sampler, loaded.tokenizer, toolset,
                      max_completion_length=max_new_tokens, stop_ids=stop_ids(loaded),
                      fmt=fmt[0])
        for out in transcript_lines(ep.messages[len(messages):]):
            click.echo(out)
        if ep.truncated:
            click.echo("[cut off at --max-new-tokens]")
        messages = ep.messages
