"""The commands around a model: talk to it (``align chat``), answer a file of prompts
(``align generate``), fold a LoRA adapter into its base (``align merge-lora``) and draw a run's
training curves (``align plot``)."""

from __future__ import annotations

from typing import Any

import click

from align.errors import AlignError
from align.plot import DEFAULT_SMOOTHING

@click.command("merge-lora")
@click.argument("adapter_dir")
@click.option("--output-dir", required=True, metavar="DIR", help="Where the merged model goes.")
@click.option("--base", metavar="PATH",
              help="Base model (default: the one named in the adapter's adapter_config.json).")
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
              default="auto", show_default=True, help="Dtype of the merged weights "
              "(auto: the base checkpoint's).")
@click.option("--trust-remote-code", is_flag=True, help="Allow the base repo's own Python code.")
def merge_lora_cmd(adapter_dir: str, output_dir: str, base: str | None, dtype: str,
                   trust_remote_code: bool) -> None:
    """Fold the LoRA adapter in ADAPTER_DIR into its base model and save a plain model
    (safetensors + tokenizer) that loads and serves without peft."""
    from align.merge import merge_adapter

    out = merge_adapter(adapter_dir, output_dir, base=base, dtype=dtype,
                        trust_remote_code=trust_remote_code)
    click.echo(f"merged {adapter_dir} into {out}")


@click.command("plot")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...")
@click.option("-o", "--output", metavar="PNG", help="Where to write the image [default: "
              "RUN_DIR/metrics.png; with several runs, compare.png beside the first].")
@click.option("--metrics", metavar="A,B", help="Metrics to draw, one panel each, e.g. "
              "reward/raw,objective/kl [default: chosen from the keys the runs logged].")
@click.option("--smoothing", default=DEFAULT_SMOOTHING, show_default=True, metavar="W",
              help="EMA weight in [0, 1) of the smoothed curves, drawn over the faint raw "
                   "values; 0 draws the raw values only (source: TensorBoard's default).")
def plot_cmd(run_dirs: tuple[str, ...], output: str | None, metrics: str | None,
             smoothing: float) -> None:
    """Draw runs' training curves (reward, KL, length, losses, entropy...) to a PNG; several
    RUN_DIRs are overlaid in one figure. Runs too short for curves get a table."""
    from align.config import parse_list
    from align.plot import plot_runs

    path, table = plot_runs(run_dirs, output, parse_list(metrics) or None, smoothing)
    if table:
        click.echo(table)
    click.echo(f"wrote {path}")


def _load_options(f: Any) -> Any:
    """Options shared by `align chat` and `align generate`: how the models are loaded."""
    for option in reversed([
        click.option("--base", metavar="PATH", help="Base model of a LoRA adapter directory "
                     "(default: the one named in its adapter_config.json)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                     show_default=True, help="Where to run (auto: a GPU when there is one)."),
        click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
                     default="auto", show_default=True,
                     help="Weights dtype (auto: bfloat16 on a GPU that has it, else float32)."),
        click.option("--trust-remote-code", is_flag=True,
                     help="Allow the model repo's own Python code."),
        click.option("--max-new-tokens", default=256, show_default=True,
                     help="Longest answer in tokens."),
        click.option("--top-p", default=1.0, show_default=True,
                     help="Nucleus sampling threshold (with --temperature > 0)."),
        click.option("--seed", default=0, show_default=True, help="Seed of the sampling."),
    ]):
        f = option(f)
    return f


def _agent_options(f: Any) -> Any:
    """--tools, --environment, --max-tool-calls, --tool-timeout (from AgentArgs, the one
    source of their help and defaults) and --chat-template (ModelArgs')."""
    import dataclasses

    from align.agents.args import AgentArgs
    from align.config import ModelArgs
    from align.options import click_options

    field = next(x for x in dataclasses.fields(ModelArgs) if x.name == "chat_template")
    options = [*click_options([("agents", AgentArgs)]),
               click.Option(["--chat-template", "chat_template"], metavar="NAME|FILE",
                            help=field.metadata["help"])]
    for option in reversed(options):
        f.__click_params__ = getattr(f, "__click_params__", [])
        f.__click_params__.append(option)
    return f


def _agent_args(values: dict[str, Any]) -> Any:
    """AgentArgs from the flags given (None: not given, the default holds); exit 2 on a bad
    value, before anything loads."""
    from align.agents.args import AgentArgs

    try:
        return AgentArgs(**{k: v for k, v in values.items() if v is not None})
    except ValueError as e:
        raise AlignError(str(e)) from None


@click.command("chat")
@click.argument("model_dir")
@_load_options
@click.option("--temperature", default=0.7, show_default=True,
              help="Sampling temperature; 0 is greedy decoding.")
@click.option("--system", metavar="TEXT", help="A system message to start the conversation.")
@_agent_options
def chat_cmd(model_dir: str, base: str | None, device: str, dtype: str, trust_remote_code: bool,
             max_new_tokens: int, top_p: float, seed: int, temperature: float,
             system: str | None, chat_template: str | None, **agent_flags: Any) -> None:
    """Talk to a model: a trained run's output dir (a LoRA adapter is loaded on its base), a
    model directory, a hub id or a .gguf file. Each line you type is a user turn, rendered
    with the model's chat template; the answer is streamed as it is generated.
    /reset starts over, /exit or Ctrl-D quits, /help lists the commands."""
    from align.chat import chat
    from align.infer import load, sampling

    sampling(temperature, top_p)  # bad values fail before the model loads
    agents = _agent_args(agent_flags)
    if agents.enabled:
        from align.chat import agent_chat

        agent_chat(model_dir, agents, system=system, chat_template=chat_template,
                   load_options={"device": device, "dtype": dtype,
                                 "trust_remote_code": trust_remote_code, "base": base},
                   max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                   seed=seed)
        return
    loaded = load(model_dir, base=base, device=device, dtype=dtype,
                  trust_remote_code=trust_remote_code, chat_template=chat_template)
    chat(loaded, system=system, max_new_tokens=max_new_tokens, temperature=temperature,
         top_p=top_p, seed=seed)


@click.command("generate")
@click.option("--model", "model", required=True, metavar="DIR",
              help="The model to answer with (a LoRA adapter dir is loaded on its base).")
@click.option("--prompts", required=True, metavar="FILE",
              help="Prompts: a .txt file (one per line) or a prompt-format dataset "
                   "(.jsonl/.json/.csv/.parquet; strings or chat messages).")
@_load_options
@click.option("--temperature", default=0.0, show_default=True,
              help="0 is greedy decoding (the same answers every time); > 0 samples.")
@click.option("--compare", metavar="DIR", help="A second model (e.g. the one training "
              "started from) whose answers are set beside the first's.")
@click.option("--reward-model", metavar="DIR", help="Score every answer with this reward "
              "model (a sequence classifier, e.g. from `align rlhf --algo rm`).")
@click.option("-o", "--output", metavar="JSONL", help="Write one JSON object per prompt "
              "(prompt, response, score, compare_response, compare_score, settings).")
@click.option("--columns", metavar="MAP", help="Map column names: prompt=question.")
@click.option("--limit", type=int, metavar="N", help="Answer only the first N prompts.")
@click.option("--batch-size", default=8, show_default=True, help="Prompts per generate call.")
@click.option("--raw", is_flag=True, help="Give text prompts to the model as they are instead "
              "of as a user turn of its chat template (as TRL trains on text prompts).")
@_agent_options
def generate_cmd(model: str, prompts: str, base: str | None, device: str, dtype: str,
                 trust_remote_code: bool, max_new_tokens: int, top_p: float, seed: int,
                 temperature: float, compare: str | None, reward_model: str | None,
                 output: str | None, columns: str | None, limit: int | None, batch_size: int,
                 raw: bool, chat_template: str | None, **agent_flags: Any) -> None:
    """Answer every prompt of a file with a model (and with --compare, a second model), score
    the answers with --reward-model, print a readable table and write --output JSONL. With
    --tools/--environment the model runs as an agent: each row's conversation goes on until
    it answers without a tool call (--max-new-tokens then bounds every token after the
    prompt), and --output gets each transcript."""
    from align.chat import answer_file, table
    from align.infer import sampling

    sampling(temperature, top_p)
    if batch_size <= 0 or max_new_tokens <= 0 or (limit is not None and limit <= 0):
        raise AlignError("--batch-size, --max-new-tokens and --limit must be positive")
    gen = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
           "seed": seed, "batch_size": batch_size, "use_template": not raw}
    load_options = {"device": device, "dtype": dtype, "trust_remote_code": trust_remote_code,
                    "chat_template": chat_template}
    agents = _agent_args(agent_flags)
    if agents.enabled:
        if compare or reward_model or raw:
            raise AlignError("--tools/--environment run the model as an agent; --compare, "
                             "--reward-model and --raw apply to single answers only")
        from align.chat import agent_answer_file

        agent_answer_file(model, prompts, agents, output=output, columns=columns, limit=limit,
                          load_options=load_options, gen_options=gen, base=base)
        if output:
            click.echo(f"\nwrote {output}")
        return
    rows, runs = answer_file(model, prompts, compare=compare, reward_model=reward_model,
                             output=output, columns=columns, limit=limit,
                             load_options=load_options, gen_options=gen, base=base)
    click.echo(table(rows, runs))
    click.echo(f"\nwrote {output}" if output else "\n(--output FILE.jsonl saves the answers)")
