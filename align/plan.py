"""What a run would do, worked out before any model loads, and what could stop it.

Three kinds of finding come out of the checks that run before training (``runner.check_plan``
and each algorithm's ``AlgoSpec.check`` hook):

- a *configuration error* (a flag combination that is wrong on every machine) is raised at once
  as an :class:`~align.errors.AlignError`: exit 2 in a dry run and in a real run alike;
- a *machine issue* (no CUDA GPU for ``--qlora``, a package such as bitsandbytes, deepspeed or
  vllm not installed) goes into :attr:`PlanReport.machine`: a real run stops on it, a dry run
  prints it as a warning and still succeeds, so that a GPU recipe can be validated on a laptop
  or in CI;
- *plan lines* say what would be loaded and how; *notes* are advice that never stops a run.

This module imports nothing heavy; :func:`cuda_available` imports torch only when called.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from align.errors import AlignError


@dataclass
class PlanReport:
    """Findings of the pre-training checks (see the module docstring)."""

    roles: dict[str, str] = field(default_factory=dict)  # role -> model and how it is held
    lines: list[str] = field(default_factory=list)  # what would be loaded, and how
    notes: list[str] = field(default_factory=list)  # advice; printed, never fatal
    machine: list[str] = field(default_factory=list)  # fatal in a real run, warnings in a dry run

    def role(self, name: str, text: str) -> None:
        """Say which model plays ``name`` (policy, reference, reward model, critic), replacing
        the runner's generic description of that role."""
        self.roles[name] = text

    def plan(self, line: str) -> None:
        """Add a line to the printed plan."""
        self.lines.append(line)

    def note(self, text: str) -> None:
        """Add advice that is printed but never stops the run."""
        self.notes.append(text)

    def machine_issue(self, text: str) -> None:
        """Record something this machine lacks (a GPU, a package) for the run as configured."""
        self.machine.append(text)

    def warnings(self) -> list[str]:
        """The machine issues as the warnings a dry run prints."""
        return [f"warning: on this machine: {m}; a real run here would stop" for m in self.machine]

    def raise_machine_issues(self) -> None:
        """Stop a real run on the first machine issue (the others are listed after it)."""
        if self.machine:
            extra = "".join(f"\n  also: {m}" for m in self.machine[1:])
            raise AlignError(self.machine[0] + extra)


def has_package(name: str) -> bool:
    """Whether ``name`` can be imported here (without importing it)."""
    return importlib.util.find_spec(name) is not None


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (imports torch)."""
    import torch

    return torch.cuda.is_available()
