"""The `align` command line: parse, validate, dispatch through the registry.

The commands live by kind, each module a set of click commands that this one adds to the group:

- :mod:`align.cli.run`: ``rlhf`` and ``sft`` (training), ``algos``, ``quickstart``;
- :mod:`align.cli.data`: ``data validate``, ``data inspect``, ``data convert``;
- :mod:`align.cli.models`: ``chat``, ``generate``, ``merge-lora``, ``plot``;
- :mod:`align.cli.board`: ``board`` (the local web page of docs/board.md).

Heavy packages (torch, transformers, TRL) are imported inside command functions only, so
``align --help`` and ``align data validate`` start fast. User errors (AlignError) print one
clear message and exit 2; unexpected errors print a one-line summary and exit 1; the Python
traceback is shown only with ``--debug`` (anywhere on the command line) or ALIGN_DEBUG=1.
"""

from __future__ import annotations

import os
import sys

import click

from align import __version__
from align.cli import board, data, models, run
from align.errors import AlignError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="align")
def cli() -> None:
    """Align language models with human preferences: PPO, DPO, KTO, CPO, ORPO, SimPO, GRPO,
    reward models and SFT behind one command.

    Add --debug anywhere to see Python tracebacks.
    """


for command in (run.rlhf_cmd, run.sft_cmd, run.algos_cmd, models.merge_lora_cmd,
                run.quickstart_cmd, data.data_group, models.plot_cmd, models.chat_cmd,
                models.generate_cmd, board.board_cmd):  # the order of docs/cli.md
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn errors into messages and exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("ALIGN_DEBUG") == "1" or "--debug" in args
    args = [a for a in args if a != "--debug"]
    from align import console

    console.configure(verbose="--verbose" in args)
    from align.run_status import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # `kill` and `align board`'s stop end a run as Ctrl-C does
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
