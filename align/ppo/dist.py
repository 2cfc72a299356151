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

Under ``--deepspeed`` (ZeRO stage 0-3) the actor-critic module and its optimizer go into one
DeepSpeed engine (:meth:`Dist.deepspeed`): the engine partitions the optimizer state (and with
ZeRO-2 the gradients), reduces and clips the gradients (``gradient_clipping``: one norm over
actor and critic together) and steps the optimizer; every forward pass of the update goes
through the engine, which counts them for its gradient accumulation. ZeRO-3 also shards the
actor's and critic's weights (each forward pass gathers them, so every process samples with
``synced_gpus`` and clears the gradient buffer before each mini-batch,
:meth:`Dist.start_accumulation`); the saved models are gathered onto rank 0 layer by layer.

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
        from align.plan import world_size

        self.world = world_size()
        self.ds_config: dict[str, Any] | None = None  # set (resolved) before the models load
        self.engine: Any = None  # the DeepSpeed engine, once made
        self.frozen_engines: list[Any] = []  # ZeRO-3: the engines that shard the frozen models
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

    def shard_frozen(self, model: Any) -> Any:
        """ZeRO-3: shard a frozen model (reference, reward model) over the processes as well,
        in an engine without optimizer (as OpenRLHF does); returns the module, whose forward
        passes gather its weights layer by layer."""
        import deepspeed

        zero = {k: v for k, v in self.ds_config["zero_optimization"].items()
                if k != "offload_optimizer"}
        config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1,
                  "zero_optimization": zero, "bf16": self.ds_config.get("bf16", {}),
                  "steps_per_print": self.ds_config.get("steps_per_print", 1_000_000)}
        engine, _, _, _ = deepspeed.initialize(model=model, config=config)
        self.frozen_engines.append(engine)
        return engine.module

    @property
    def zero3(self) -> bool:
        """Whether the engine shards the weights themselves (ZeRO stage 3)."""
        return self.engine is not None and self.engine.zero_optimization_stage() == 3

    def start_accumulation(self) -> None:
        """Begin a mini-batch's gradients from zero (call before its first backward pass).

        ZeRO-3 keeps each process's gradient shards in one flat buffer that it *overwrites*
        at the first micro-step of an accumulation window and *adds to* after it, counting a
        micro-step at every forward pass through the engine that follows a backward pass. A
        PPO micro-batch makes two such passes over disjoint parameters (actor, then critic),
        so the critic's first gradient of a window arrives at micro-step 1 and would be added
        to the previous window's (engine.step() does not clear the buffer; ZeRO-1/2 clear
        theirs). Zeroing the buffer makes "overwrite" and "add" agree."""
        if self.zero3:
            buffer = getattr(self.engine.optimizer, "grad_partitions_flat_buffer", None)
            if buffer is None:
                import deepspeed

                raise RuntimeError(f"deepspeed {deepspeed.__version__}: ZeRO-3's optimizer has "
                                   "no grad_partitions_flat_buffer, which align's PPO clears "
                                   "before each mini-batch (tested with deepspeed 0.19)")
            buffer.zero_()

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
