"""PPO over several processes: who does what, and the statistics every process must share.

Launched by ``torchrun`` or ``accelerate launch`` (``WORLD_SIZE`` > 1), accelerate sets up the
process group (NCCL on GPUs, gloo on CPU) and each process:

- samples its share of every rollout batch (the global batch's rows ``rank * n`` to
  ``(rank + 1) * n``) and scores it with its own copies of the frozen models;
- gathers the rollout's per-token tensors from all processes (:meth:`Dist.gather_rows`), so
  that rewards, reward normalisation, advantage whitening, the adaptive KL controller and every
  logged metric see the whole batch, exactly as one process would;
- trains on its own rows, weighting each micro-batch by its share of the *global* mini-batch's
  tokens, and averages the gradients over the processes before each optimizer step
  (:meth:`Dist.average_gradients`; under DeepSpeed the engine does it);
- writes files only on rank 0, except its own RNG state in a checkpoint.

Under ``--deepspeed`` (ZeRO stage 0-2) the actor-critic module and its optimizer go into one
DeepSpeed engine (:meth:`Dist.deepspeed`): the engine partitions the optimizer state (and with
ZeRO-2 the gradients), reduces and clips the gradients (``gradient_clipping``: one norm over
actor and critic together) and steps the optimizer; every forward pass of the update goes
through the engine, which counts them for its gradient accumulation. ZeRO-3 is refused (see
:func:`align.ppo.plan.check_supported`).

Gradients are averaged explicitly rather than through DistributedDataParallel: one PPO
micro-batch runs several forward passes (actor, critic, PTX), each with its own backward pass
and, on a shared LoRA base, its own adapter, which DDP's one-forward-per-backward reducer does
not fit. The all-reduce goes over one flat buffer per optimizer step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class Dist:
    """This process's place in the launch; every method is a no-op in a single process."""

    def __init__(self, deepspeed: bool = False) -> None:
        import os

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.ds_config: dict[str, Any] | None = None  # set (resolved) before the models load
        self.engine: Any = None  # the DeepSpeed engine, once made
        self.accelerator = None
        if deepspeed:
            import deepspeed

            deepspeed.init_distributed(dist_backend=None if torch.cuda.is_available()
                                       else "gloo")
        elif self.world > 1:
            from accelerate import Accelerator

            self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.rank = torch.distributed.get_rank() if self.world > 1 else 0

    def deepspeed(self, model: Any, optimizer: Any) -> Any:
        """Put the trainable module and its optimizer into a DeepSpeed engine."""
        import deepspeed

        self.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                                    config=self.ds_config)
        return self.engine

    def backward(self, loss: Tensor, last: bool) -> None:
        """Backward pass of one part of a mini-batch; ``last`` is the mini-batch's final one
        (DeepSpeed's gradient-accumulation boundary)."""
        if self.engine is None:
            loss.backward()
            return
        self.engine.set_gradient_accumulation_boundary(last)
        self.engine.backward(loss, scale_wrt_gas=False)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def sum(self, x: Tensor) -> Tensor:
        """The sum of ``x`` over all processes (a copy; ``x`` is unchanged)."""
        x = x.detach().clone()
        if self.world > 1:
            torch.distributed.all_reduce(x)
        return x

    def max_int(self, value: int, device: torch.device) -> int:
        if self.world == 1:
            return value
        x = torch.tensor([value], device=device)
        torch.distributed.all_reduce(x, op=torch.distributed.ReduceOp.MAX)
        return int(x.item())

    def max_float(self, value: float, device: torch.device) -> float:
        """The largest ``value`` over the processes (a phase lasts as long as its slowest)."""
        if self.world == 1:
            return value
        x = torch.tensor([value], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(x, op=torch.distributed.ReduceOp.MAX)
        return float(x.item())

    def gather_rows(self, x: Tensor, width: int | None = None, pad: Any = 0,
                    left: bool = False) -> Tensor:
        """Concatenate ``x`` (B, ...) of every process along dim 0, in rank order. A 2-d
        tensor is first padded along dim 1 to ``width`` columns (on the left with ``left``)."""
        if x.dim() == 2 and width is not None and x.shape[1] < width:
            n = width - x.shape[1]
            x = torch.nn.functional.pad(x, (n, 0) if left else (0, n), value=pad)
        if self.world == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world)]
        torch.distributed.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, items: list[Any]) -> list[Any]:
        """The lists ``items`` of every process, concatenated in rank order."""
        if self.world == 1:
            return list(items)
        parts: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(parts, list(items))
        return [x for part in parts for x in part]

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the processes (one flat all-reduce)."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def row_slice(rank: int, per_process: int) -> slice:
    """This process's rows of a global batch."""
    return slice(rank * per_process, (rank + 1) * per_process)
