"""The `align` command line: parse, validate, dispatch through the registry.

Heavy packages (torch, transformers, TRL) are imported inside command functions only, so
``align --help`` and ``align data validate`` start fast. User errors (AlignError) print one
clear message and exit 2; unexpected errors print a one-line summary and exit 1; the Python
traceback is shown only with ``--debug`` (anywhere on the command line) or ALIGN_DEBUG=1.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

import click

from align import __version__
from align.config import SHARED_GROUPS
from align.errors import AlignError
from align.options import AlignOption, click_options, load_yaml
from align.plot import DEFAULT_SMOOTHING
from align.registry import ALGOS, EXTRA_GROUPS, flag_owners, get_algo

GROUP_TITLES = {"model": "Model", "lora": "LoRA / QLoRA", "data": "Data", "train": "Training",
                "health": "Health (collapse detectors)"}
RUN_OPTIONS = ("algo", "config", "dry_run", "verbose")


def _peek_algo(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a == "--algo" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--algo="):
            return a.split("=", 1)[1]
    return None


class RunCommand(click.Command):
    """A training command whose --help shows, grouped, only the flags the chosen algorithm uses."""

    def __init__(self, *args: Any, fixed_algo: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fixed_algo = fixed_algo

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from align.aliases import normalize_argv

        ctx.meta["align.algo"] = self.fixed_algo or _peek_algo(args)
        # TRL's forms: --bf16 True, --lora_target_modules q_proj v_proj, ignored flags
        bools = {p.name for p in self.params if isinstance(p, click.Option) and p.is_flag}
        args, notes = normalize_argv(args, bools)
        for note in notes:
            click.echo(note, err=True)
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        algo = ctx.meta.get("align.algo") or self.fixed_algo
        params = {p.name: p for p in self.get_params(ctx)}
        if algo in ALGOS:
            # Options shared by several algorithms (--beta) carry every owner's default; show
            # this algorithm's own help and default instead.
            params.update({p.name: p for p in _run_params(algo) if p.name not in RUN_OPTIONS})
            groups = ALGOS[algo].groups()
        else:
            groups = {**SHARED_GROUPS, **EXTRA_GROUPS}
        grouped = {name: [f.name for f in dataclasses.fields(cls)] for name, cls in groups.items()}
        in_groups = {n for names in grouped.values() for n in names}
        sections = [("Run", [n for n in params if n not in in_groups
                             and n not in flag_owners()])]
        for name, names in grouped.items():
            title = GROUP_TITLES.get(name, f"{name} options")
            sections.append((title, names))
        if algo not in ALGOS:
            sections.append(("Algorithm options (pass --algo NAME --help to see one algorithm's)",
                             [n for n in params if n in flag_owners() and n not in in_groups]))
        for title, names in sections:
            records = [r for n in names if n in params
                       and (r := params[n].get_help_record(ctx)) is not None]
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def _run_params(fixed_algo: str | None) -> list[click.Parameter]:
    specs = [ALGOS[fixed_algo]] if fixed_algo else list(ALGOS.values())
    classes: list[tuple[str, type]] = list(SHARED_GROUPS.items())
    classes += [(g, cls) for s in specs for g, cls in s.groups().items()
                if g not in SHARED_GROUPS]
    params: list[click.Parameter] = []
    if not fixed_algo:
        params.append(click.Option(["--algo"], metavar="NAME",
                                   help=f"Algorithm to run: {', '.join(ALGOS)}."))
    params += [
        click.Option(["--config"], metavar="YAML",
                     help="Flat YAML recipe of flag: value (snake_case or kebab-case keys); "
                          "command-line flags override it."),
        AlignOption(["--dry-run", "--dry_run"], "dry_run", is_flag=True,
                     help="Resolve the config, validate data and flags, print the plan, "
                          "and exit without loading any model."),
        click.Option(["--verbose"], is_flag=True,
                     help="Print what the libraries print (TRL's metrics dict every logged "
                          "step, loading bars, deprecation warnings); align is quiet by default."),
    ]
    return params + click_options(classes)


def _run(fixed_algo: str | None, kwargs: dict[str, Any]) -> None:
    from align.options import resolve
    from align.runner import execute

    yaml_path = kwargs.pop("config", None)
    dry_run = kwargs.pop("dry_run", False)
    kwargs.pop("verbose", None)  # read by main() before any library is imported
    yaml_values = load_yaml(yaml_path) if yaml_path else {}
    algo = fixed_algo or kwargs.pop("algo", None) or yaml_values.get("algo")
    if not algo:
        raise AlignError(f"--algo is required; choose from {', '.join(ALGOS)}")
    if fixed_algo and yaml_values.get("algo") not in (None, fixed_algo):
        raise AlignError(f"--config {yaml_path} sets algo: {yaml_values['algo']}, "
                         f"but this command runs {fixed_algo}")
    spec = get_algo(str(algo))
    cli_values = {k: v for k, v in kwargs.items() if v is not None}
    cfg = resolve(spec, cli_values, yaml_values, flag_owners(), yaml_path)
    if not dry_run:
        from align.console import quiet_libraries

        quiet_libraries()
    execute(cfg, spec, dry_run=dry_run)


def _make_run_command(name: str, fixed_algo: str | None, help_text: str) -> click.Command:
    def callback(**kwargs: Any) -> None:
        _run(fixed_algo, kwargs)

    return RunCommand(name, params=_run_params(fixed_algo), callback=callback, help=help_text,
                      fixed_algo=fixed_algo, context_settings={"max_content_width": 110})


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="align")
def cli() -> None:
    """Align language models with human preferences: PPO, DPO, KTO, CPO, ORPO, SimPO, GRPO,
    reward models and SFT behind one command.

    Add --debug anywhere to see Python tracebacks.
    """


cli.add_command(_make_run_command(
    "rlhf", None,
    "Train with a preference or RL algorithm:\n\n"
    "  align rlhf --algo dpo --model M --dataset pairs.jsonl\n\n"
    "  align rlhf --algo ppo --model SFT --reward-model RM --dataset prompts.jsonl"))
cli.add_command(_make_run_command(
    "sft", "sft",
    "Supervised fine-tuning (the stage before preference training):\n\n"
    "  align sft --model M --dataset chats.jsonl"))


@cli.command("algos")
@click.argument("name", required=False)
def algos_cmd(name: str | None) -> None:
    """List the algorithms, or show one algorithm's flags, defaults and their sources."""
    from align.config import field_doc

    if name:
        spec = get_algo(name)
        click.echo(f"{spec.name}: {spec.summary}\n  paper: {spec.paper}\n"
                   f"  data format: {spec.data_format}\n  reference model: "
                   f"{'yes' if spec.needs_ref else 'no'}\n  reward model: {spec.reward_model}\n")
        click.echo(f"{'flag':<28} {'default':<14} help (source)")
        for f in dataclasses.fields(spec.config_cls):
            doc = field_doc(f)
            src = f" ({doc['source']})" if doc["source"] else ""
            click.echo(f"{doc['flag']:<28} {str(doc['default']):<14} {doc['help']}{src}")
        return
    rows = [("name", "data format", "ref model", "reward model", "online", "summary")]
    for s in ALGOS.values():
        rows.append((s.name, s.data_format, "yes" if s.needs_ref else "no", s.reward_model,
                     "yes" if s.online else "no", s.summary))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for i, r in enumerate(rows):
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        if i == 0:
            click.echo("  ".join("-" * w for w in widths) + "  " + "-" * 7)


@cli.command("merge-lora")
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


@cli.command("quickstart")
@click.option("--out", "out", default="runs/quickstart", show_default=True,
              help="Output directory (summary.json, curves.png, every stage's run and log).")
@click.option("--algos", default=None, metavar="LIST",
              help="Algorithms to run, comma-separated (default: ppo,dpo,kto,simpo,cpo,orpo,grpo).")
@click.option("--seed", default=0, show_default=True, help="Seed for data, models and sampling.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where to train (auto: a GPU when there is one).")
@click.option("--model", default=None, metavar="DIR",
              help="Use this model as the SFT policy instead of training a tiny one.")
@click.option("--overoptimization", is_flag=True,
              help="Also run PPO without KL for longer: the RM score rises, the gold falls.")
@click.option("--scale", default=1.0, show_default=True, hidden=True,
              help="Multiply data sizes and step counts (tests use less).")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="CPU threads for torch [default: 1 for the tiny model, whose small matrices "
                   "gain little from more and slow down many times over on busy cores; "
                   "torch's own with --model].")
@click.option("--verbose", is_flag=True, help="Show every stage's output, not only its log.")
def quickstart_cmd(out: str, algos: str | None, seed: int, device: str, model: str | None,
                   overoptimization: bool, scale: float, threads: int | None,
                   verbose: bool) -> None:
    """The whole pipeline on an embedded task, no download: a tiny model is trained from
    scratch into an SFT policy, a reward model learns noisy preferences, every algorithm
    aligns the SFT policy, and a hidden gold reward judges them on held-out prompts."""
    from pathlib import Path

    from align.config import parse_list
    from align.quickstart.pipeline import DEFAULT_ALGOS, Options, run

    chosen = tuple(parse_list(algos)) or DEFAULT_ALGOS
    for name in chosen:
        get_algo(name)
        if ALGOS[name].name in ("rm", "sft"):
            raise AlignError(f"--algos {name}: the quickstart trains {name} itself; "
                             "choose among the alignment algorithms")
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise AlignError("--device cuda: no CUDA GPU is visible; use --device cpu")
    if model:
        from align.models import check_model_path

        check_model_path("--model", model)
    from align.console import quiet_libraries

    quiet_libraries()
    run(Options(out=Path(out), algos=chosen, seed=seed, device=device, model=model,
                scale=scale, overoptimization=overoptimization, verbose=verbose,
                threads=threads))


@cli.group("data")
def data_group() -> None:
    """Validate, inspect and convert datasets."""


def _format_for(fmt: str | None, algo: str | None) -> str:
    from align.data import FORMATS

    if fmt and algo:
        raise AlignError("give --format or --algo, not both")
    if algo:
        return get_algo(algo).data_format
    if not fmt:
        raise AlignError(f"give --format ({', '.join(FORMATS)}) or --algo NAME")
    return fmt


FORMAT_CHOICE = click.Choice(["prompt", "pairwise", "unpaired", "sft"])


def _source_options(f: Any) -> Any:
    """--columns, --dataset-split and --dataset-config, shared by the data commands."""
    for option in reversed([
        click.option("--columns", metavar="MAP",
                     help="Map column names: prompt=question,chosen=good."),
        click.option("--split", "--dataset-split", "split", metavar="SPLIT",
                     help="Split of a Hub dataset, dataset folder or saved DatasetDict "
                          "[default: train, or the only split]."),
        click.option("--config", "--dataset-config", "config", metavar="NAME",
                     help="Config (subset) of a Hub dataset or dataset folder."),
    ]):
        f = option(f)
    return f


def _echo_notes(result: Any) -> None:
    for note in result.notes:
        click.echo(note if note.startswith("warning") else f"note: {note}", err=True)


@data_group.command("validate")
@click.argument("path")
@click.option("--format", "fmt", type=FORMAT_CHOICE, help="Expected format.")
@click.option("--algo", help="Take the format from this algorithm (e.g. dpo -> pairwise).")
@_source_options
@click.option("--skip-invalid", is_flag=True,
              help="Accept the data when at most --max-invalid-frac of its records are invalid "
                   "(as training with --skip-invalid would), listing what would be dropped.")
@click.option("--max-invalid-frac", default=0.05, show_default=True, metavar="FRAC",
              help="With --skip-invalid: the largest fraction of invalid records accepted.")
def validate_cmd(path: str, fmt: str | None, algo: str | None, columns: str | None,
                 split: str | None, config: str | None, skip_invalid: bool,
                 max_invalid_frac: float) -> None:
    """Check every record of PATH (a file, folder, saved dataset or Hub id); exit 0 with a
    summary, or 2 with the errors, the source's columns and a --columns proposal."""
    from align.data import load_valid, skip_report

    result = load_valid(path, _format_for(fmt, algo), columns, split=split, config=config,
                        skip_invalid=skip_invalid, max_invalid_frac=max_invalid_frac)
    _echo_notes(result)
    for line in skip_report(result):
        click.echo(line.replace("dropped", "would drop", 1), err=True)
    click.echo(f"OK {result.summary()}")


@data_group.command("inspect")
@click.argument("path")
@click.option("--format", "fmt", type=FORMAT_CHOICE, help="Expected format.")
@click.option("--algo", help="Take the format from this algorithm.")
@_source_options
@click.option("-n", "--num", default=2, show_default=True, help="Records to print.")
def inspect_cmd(path: str, fmt: str | None, algo: str | None, columns: str | None,
                split: str | None, config: str | None, num: int) -> None:
    """Show how PATH is read: its columns, the detected layout (standard/conversational,
    explicit/implicit prompt), size statistics, and what the first records became."""
    import json

    from align.data import load
    from align.data.stats import text_stats

    result = load(path, _format_for(fmt, algo), columns, split=split, config=config)
    click.echo(result.summary())
    click.echo(f"source columns: {', '.join(result.columns) or '(none)'}")
    click.echo(f"layout: {result.layout()}")
    _echo_notes(result)
    if len(result.rows):
        click.echo("columns after validation: " + ", ".join(result.rows[0]))
        for name, st in text_stats(result.rows).items():
            click.echo(f"  {name}: characters min {st['min']}, mean {st['mean']:.0f}, "
                       f"max {st['max']}")
    for i, row in enumerate(result.rows[:num]):
        click.echo(f"record {i + 1} became:")
        click.echo(json.dumps(row, ensure_ascii=False, indent=2))
    if not result.ok:
        click.echo(f"\n{result.bad_records} invalid records; the first:\n"
                   f"{result.error_report(5)}\n(all of them: `align data validate`)", err=True)


@data_group.command("convert")
@click.argument("path")
@click.option("-o", "--output", required=True, help="Output .jsonl file.")
@click.option("--to", "target", type=click.Choice(["pairwise", "unpaired", "sft"]),
              help="Format to write [default: what --from makes: sharegpt -> sft (pairwise when "
                   "the turns have chosen/rejected), ab -> pairwise, rated -> pairwise, "
                   "pairwise -> unpaired].")
@click.option("--from", "mode", type=click.Choice(["auto", "sharegpt", "ab", "rated",
                                                   "pairwise"]),
              default="auto", show_default=True,
              help="Input layout; auto recognises it from the first record.")
@click.option("--pairs", type=click.Choice(["best-worst", "adjacent", "all"]),
              default="best-worst", show_default=True,
              help="rated: which pairs to take from each list of completions.")
@click.option("--score-key", metavar="KEY",
              help="rated: the score of each completion [default: the first of "
                   "fine-grained_score, score, overall_score, rating, reward].")
@click.option("--a", "col_a", metavar="COL", help="ab: the column of answer A.")
@click.option("--b", "col_b", metavar="COL", help="ab: the column of answer B.")
@click.option("--label", "col_label", metavar="COL", help="ab: the column that says which "
              "answer is preferred.")
@click.option("--prompt", "col_prompt", metavar="COL", help="ab: the prompt column.")
@click.option("--a-wins", metavar="VALUE", help="ab: the label value meaning A is preferred "
              "(SHP: 1, PKU-SafeRLHF: 0).")
@click.option("--b-wins", metavar="VALUE", help="ab: the label value meaning B is preferred "
              "[default: the other of 0/1].")
@_source_options
@click.option("--skip-invalid", is_flag=True,
              help="Write the records that convert and validate; report the others.")
def convert_cmd(path: str, output: str, target: str | None, mode: str, pairs: str,
                score_key: str | None, col_a: str | None, col_b: str | None,
                col_label: str | None, col_prompt: str | None, a_wins: str | None,
                b_wins: str | None, columns: str | None, split: str | None,
                config: str | None, skip_invalid: bool) -> None:
    """Convert a public dataset layout into align's formats, checking every output record.

    \b
    sharegpt  conversations of {from, value} turns -> sft messages (or pairwise)
    ab        two answers + a preference label -> pairwise
              (Stanford SHP, PKU-SafeRLHF recognised; others: --a --b --label --a-wins)
    rated     lists of scored completions (raw UltraFeedback; or ranked lists,
              best first, or with "scores") -> pairwise
    pairwise  chosen/rejected pairs -> unpaired (KTO) examples
    """
    from align.data.convert import ABColumns, ab_columns, convert_source
    from align.data.io import Record
    from align.data.sources import open_source

    ab = None
    if any(v is not None for v in (col_a, col_b, col_label, col_prompt, a_wins, b_wins)):
        first = next((i.data for i in open_source(path, split, config).items()
                      if isinstance(i, Record)), {})
        known = ab_columns(first)
        if known is None and None in (col_a, col_b, col_label, a_wins):
            raise AlignError("--from ab on a layout align does not know: give --a, --b, --label "
                             "and --a-wins (and --prompt unless the column is 'prompt')")
        known = known or ABColumns()
        try:
            ab = ABColumns(col_prompt or known.prompt, col_a or known.a, col_b or known.b,
                           col_label or known.label,
                           a_wins if a_wins is not None else known.a_wins, b_wins)
        except ValueError as e:
            raise AlignError(str(e)) from e
    report = convert_source(path, output, to=target, mode=mode, pairs=pairs,
                            score_key=score_key, ab=ab, columns=columns, split=split,
                            config=config, skip_invalid=skip_invalid)
    click.echo(f"read as {report.how}")
    if report.bad:
        click.echo(f"--skip-invalid: left out {report.bad} of {report.records} records; the "
                   "first:\n" + "\n".join(f"  {e}" for e in report.errors[:5]), err=True)
    click.echo(f"wrote {report.rows} {report.target} records to {output} "
               f"(from {report.records} records)")


@cli.command("plot")
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


@cli.command("chat")
@click.argument("model_dir")
@_load_options
@click.option("--temperature", default=0.7, show_default=True,
              help="Sampling temperature; 0 is greedy decoding.")
@click.option("--system", metavar="TEXT", help="A system message to start the conversation.")
def chat_cmd(model_dir: str, base: str | None, device: str, dtype: str, trust_remote_code: bool,
             max_new_tokens: int, top_p: float, seed: int, temperature: float,
             system: str | None) -> None:
    """Talk to a model: a trained run's output dir (a LoRA adapter is loaded on its base), a
    model directory, a hub id or a .gguf file. Each line you type is a user turn, rendered
    with the model's chat template; the answer is streamed as it is generated.
    /reset starts over, /exit or Ctrl-D quits."""
    from align.chat import chat
    from align.infer import load, sampling

    sampling(temperature, top_p)  # bad values fail before the model loads
    loaded = load(model_dir, base=base, device=device, dtype=dtype,
                  trust_remote_code=trust_remote_code)
    chat(loaded, system=system, max_new_tokens=max_new_tokens, temperature=temperature,
         top_p=top_p, seed=seed)


@cli.command("generate")
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
def generate_cmd(model: str, prompts: str, base: str | None, device: str, dtype: str,
                 trust_remote_code: bool, max_new_tokens: int, top_p: float, seed: int,
                 temperature: float, compare: str | None, reward_model: str | None,
                 output: str | None, columns: str | None, limit: int | None, batch_size: int,
                 raw: bool) -> None:
    """Answer every prompt of a file with a model (and with --compare, a second model), score
    the answers with --reward-model, print a readable table and write --output JSONL."""
    from align.chat import answer_file, table
    from align.infer import sampling

    sampling(temperature, top_p)
    if batch_size <= 0 or max_new_tokens <= 0 or (limit is not None and limit <= 0):
        raise AlignError("--batch-size, --max-new-tokens and --limit must be positive")
    gen = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
           "seed": seed, "batch_size": batch_size, "use_template": not raw}
    load_options = {"device": device, "dtype": dtype, "trust_remote_code": trust_remote_code}
    rows, runs = answer_file(model, prompts, compare=compare, reward_model=reward_model,
                             output=output, columns=columns, limit=limit,
                             load_options=load_options, gen_options=gen, base=base)
    click.echo(table(rows, runs))
    click.echo(f"\nwrote {output}" if output else "\n(--output FILE.jsonl saves the answers)")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn errors into messages and exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("ALIGN_DEBUG") == "1" or "--debug" in args
    args = [a for a in args if a != "--debug"]
    from align import console

    console.configure(verbose="--verbose" in args)
    try:
        cli.main(args=args, prog_name="align", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:  # one line, like every other error
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        click.echo(f"error: {' '.join(e.format_message().split())}{hint}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except AlignError as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # the last line of defence: no traceback unless asked for
        if debug:
            raise
        known = _in_words(e)
        if known:
            click.echo(f"error: {known}", err=True)
            sys.exit(2)
        first = (str(e).strip().splitlines() or [""])[0]
        click.echo(f"error: {type(e).__name__}: {first}\n(run again with --debug for the "
                   "traceback)", err=True)
        sys.exit(1)


def _in_words(e: Exception) -> str | None:
    """What the machine refused (disk, permissions, memory), as the user can act on it."""
    from align.errors import os_problem

    if type(e).__name__ == "OutOfMemoryError" or isinstance(e, MemoryError):
        return ("out of memory: lower --per-device-train-batch-size (raise "
                "--gradient-accumulation-steps to keep the batch), add --gradient-checkpointing, "
                "--bf16 or --lora (docs/troubleshooting.md, 'Out of memory'); a run stopped "
                "this way continues from its last checkpoint with --resume")
    if isinstance(e, OSError):
        message = os_problem(e, e.filename or ".", str(e.filename or "a file"), writing=False)
        if message is None and e.filename:
            message = f"{e.strerror or e}: {e.filename}"
        return message
    return os_problem(e, ".", "a file", writing=False)  # errno lost, the message says it
