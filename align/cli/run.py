"""The training commands: ``align rlhf`` and ``align sft`` (flags generated from the config
dataclasses of the chosen algorithm, resolved and handed to align.runner), ``align algos``
(the registry as a table) and ``align quickstart`` (the embedded demo pipeline)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click

from align.config import SHARED_GROUPS
from align.errors import AlignError
from align.options import AlignOption, click_options, load_yaml
from align.registry import ALGOS, EXTRA_GROUPS, flag_owners, get_algo

GROUP_TITLES = {"model": "Model", "lora": "LoRA / QLoRA", "data": "Data", "train": "Training",
                "health": "Health (collapse detectors)", "agents": "Agents (tools, environments)"}
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
    from align.plan import pin_thread_invariant_math

    pin_thread_invariant_math()  # the same run at any thread count (before torch loads MKL)
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


rlhf_cmd = _make_run_command(
    "rlhf", None,
    "Train with a preference or RL algorithm:\n\n"
    "  align rlhf --algo dpo --model M --dataset pairs.jsonl\n\n"
    "  align rlhf --algo ppo --model SFT --reward-model RM --dataset prompts.jsonl")
sft_cmd = _make_run_command(
    "sft", "sft",
    "Supervised fine-tuning (the stage before preference training):\n\n"
    "  align sft --model M --dataset chats.jsonl")


@click.command("algos")
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
            bounds = f" Range: {doc['bounds']}." if doc["bounds"] else ""
            click.echo(f"{doc['flag']:<28} {str(doc['default']):<14} {doc['help']}{bounds}{src}")
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


@click.command("quickstart")
@click.option("--output-dir", "--out", "out", default="runs/quickstart", show_default=True,
              metavar="DIR", help="Output directory (summary.json, curves.png, every stage's "
              "run and log), as for every command; --out is its older name.")
@click.option("--algos", default=None, metavar="LIST",
              help="Algorithms to run, comma-separated (default: ppo,dpo,kto,simpo,cpo,orpo,grpo).")
@click.option("--seed", default=0, show_default=True, help="Seed for data, models and sampling.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True, help="Where to train (auto: a GPU when there is one).")
@click.option("--model", default=None, metavar="DIR",
              help="Use this model as the SFT policy instead of training a tiny one.")
@click.option("--overoptimization", is_flag=True,
              help="Also run PPO without KL for longer: the RM score rises, the gold falls.")
@click.option("--agent", is_flag=True,
              help="Add the agent stage: a tiny model learns when to call a multiply tool "
                   "(SFT on demonstrations half with the tool, half without, then GRPO with "
                   "the tool), scored on exact answers to held-out problems (not with "
                   "--model).")
@click.option("--scale", default=1.0, show_default=True, hidden=True,
              help="Multiply data sizes and step counts (tests use less).")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="CPU threads [default: chosen from the load: every idle core, at least 1; "
                   "OMP_NUM_THREADS, when set, decides instead]. The stages in sequence (SFT, "
                   "the reward model) use them all; the algorithms then run side by side, one "
                   "per thread. The numbers are the same at any count. With --model: torch's "
                   "threads.")
@click.option("--verbose", is_flag=True, help="Show every stage's output, not only its log.")
def quickstart_cmd(out: str, algos: str | None, seed: int, device: str, model: str | None,
                   overoptimization: bool, agent: bool, scale: float,
                   threads: int | None, verbose: bool) -> None:
    """The whole pipeline on an embedded task, no download: a tiny model is trained from
    scratch into an SFT policy, a reward model learns noisy preferences, every algorithm
    aligns the SFT policy, and a hidden gold reward judges them on held-out prompts."""
    from pathlib import Path

    from align.config import parse_list
    from align.plan import pin_cpu_math

    pin_cpu_math()  # its documented numbers come back on every CPU of the kind they were made on
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
                threads=threads, agent=agent and not model))
