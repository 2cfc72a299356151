"""``align data``: validate, inspect and convert datasets (the dataset layer, align.data,
without any model)."""

from __future__ import annotations

from typing import Any

import click

from align.errors import AlignError
from align.registry import get_algo


@click.group("data")
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
    from align.data.records import Record
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
