"""Resolve an ``align rlhf`` command line as the CLI does, and run its pre-training checks."""

from __future__ import annotations

from typing import Any


def prepare(argv: list[str]) -> tuple[Any, Any, list[str]]:
    """(RunConfig, validated training data, machine issues) for ``align rlhf ARGV``.

    The flags go through the CLI's own parser and resolution (defaults < flags), and the
    checks ``align rlhf`` runs before loading a model (``runner.check_plan``, the algorithm's
    ``check`` hook). A machine issue (no CUDA for --qlora, a missing package) is returned, not
    raised, so the benchmark can skip that measurement and say why.
    """
    from align.cli import cli
    from align.cli.run import RUN_OPTIONS
    from align.options import resolve
    from align.registry import flag_owners, get_algo
    from align.runner import check_plan, load_data

    ctx = cli.commands["rlhf"].make_context("align rlhf", list(argv))
    values = {k: v for k, v in ctx.params.items()
              if v is not None and k not in RUN_OPTIONS}
    spec = get_algo(ctx.params["algo"])
    cfg = resolve(spec, values, {}, flag_owners())
    report = check_plan(cfg, spec)
    data, _ = load_data(cfg, spec)
    if spec.check is not None:
        spec.check(cfg, data, report)
    return cfg, data, list(report.machine)
