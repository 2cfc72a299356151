"""Fault injection from outside the product, for the resume tests (tests/test_resume_faults.py).

A child process started with ``tests/faults`` first on PYTHONPATH imports this module at
start-up (Python's ``sitecustomize`` hook). ``ALIGN_FAULT=kind:N`` then patches one library or
align function so that the process SIGKILLs itself (or hits a full disk) at that moment:

- ``torch_save:N``     half-way through a torch.save into checkpoint N (TRL: optimizer.pt; PPO:
                        optim.pt): model weights written, the rest cut short
- ``safetensors:N``    half-way through writing a weights file of checkpoint N
- ``before_marker:N``  checkpoint N fully written by the trainer, its completion marker not yet
- ``in_rotation:N``    while rotation deletes an old checkpoint, after checkpoint N was marked
- ``at_step:N``        in the middle of optimizer step N (between checkpoints)
- ``metrics_line:N``   half-way through writing the metrics.jsonl row of step N
- ``final_save``       half-way through writing the final model
- ``disk_full:N``      torch.save into checkpoint N fails as on a full disk (no kill)

Nothing here is imported by align itself.
"""

from __future__ import annotations

import os
import signal

FAULT = os.environ.get("ALIGN_FAULT", "")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _in_checkpoint(path: object, step: str) -> bool:
    text = str(path)
    return f"checkpoint-{step}/" in text or f"checkpoint-{step}.tmp/" in text


def _half_write(path: object) -> None:
    with open(str(path), "wb") as fh:
        fh.write(b"\0" * 100)


def _install(kind: str, arg: str) -> None:
    if kind in ("torch_save", "disk_full"):
        import torch

        real_save = torch.save

        def save(obj, f, *args, **kwargs):  # noqa: ANN001
            if isinstance(f, (str, os.PathLike)) and _in_checkpoint(f, arg):
                if kind == "disk_full":
                    raise RuntimeError("[enforce fail at inline_container.cc:672] . "
                                       "PytorchStreamWriter failed writing file data/0: file "
                                       "write failed")
                _half_write(f)
                _die()
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
    elif kind == "safetensors":
        import safetensors.torch as st

        real = st.save_file

        def save_file(tensors, filename, *args, **kwargs):  # noqa: ANN001
            if _in_checkpoint(filename, arg):
                _half_write(filename)
                _die()
            return real(tensors, filename, *args, **kwargs)

        st.save_file = save_file
    elif kind in ("before_marker", "in_rotation"):
        import align.checkpoints as ck

        real_mark, real_remove = ck.mark_complete, ck.remove
        marked = []

        def mark_complete(path, step, *args, **kwargs):  # noqa: ANN001
            if kind == "before_marker" and str(step) == arg:
                _die()
            real_mark(path, step, *args, **kwargs)
            marked.append(step)

        def remove(path):  # noqa: ANN001
            if kind == "in_rotation" and str(arg) in map(str, marked):
                doomed = path.with_name(".deleting-" + path.name)
                os.replace(path, doomed)
                files = sorted(p for p in doomed.rglob("*") if p.is_file())
                for p in files[: len(files) // 2]:
                    p.unlink()
                _die()
            real_remove(path)

        ck.mark_complete, ck.remove = mark_complete, remove
    elif kind == "at_step":
        _count_calls(arg)
    elif kind == "metrics_line":
        import align.metrics as m

        real_log = m.MetricsLogger.log

        def log(self, step, metrics):  # noqa: ANN001
            if str(step) == arg:
                self.open()
                self._fh.write('{"step": ' + arg + ', "loss": 0.12')
                self._fh.flush()
                _die()
            real_log(self, step, metrics)

        m.MetricsLogger.log = log
    elif kind == "final_save":
        import safetensors.torch as st

        real = st.save_file

        def save_file(tensors, filename, *args, **kwargs):  # noqa: ANN001
            if "checkpoint-" not in str(filename):
                _half_write(filename)
                _die()
            return real(tensors, filename, *args, **kwargs)

        st.save_file = save_file


def _count_calls(step: str) -> None:
    """SIGKILL inside optimizer step N: TRL's Trainer.training_step (one call per step without
    gradient accumulation) or PPO's ppo_step."""
    import transformers

    calls = {"n": 0}
    real = transformers.Trainer.training_step

    def training_step(self, *args, **kwargs):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] == int(step):
            _die()
        return real(self, *args, **kwargs)

    transformers.Trainer.training_step = training_step
    import align.ppo.trainer as ppo_trainer

    real_step = ppo_trainer.ppo_step

    def ppo_step(ppo):  # noqa: ANN001
        if ppo.step == int(step):
            _die()
        return real_step(ppo)

    ppo_trainer.ppo_step = ppo_step


if FAULT:
    kind, _, arg = FAULT.partition(":")
    _install(kind, arg)
