"""Timing and memory of training phases, for the ``perf/*`` metrics and scripts/bench.py.

CUDA runs kernels asynchronously: a Python timer around a phase measures when its kernels were
queued, not when they finished. :class:`Stopwatch` waits for the device at each phase boundary,
so each phase is charged for its own GPU work (the waits cost microseconds per phase).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

GB = 1e9


def synchronize(device: Any) -> None:
    """Wait for the work queued on ``device`` (a no-op off CUDA)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Seconds per named phase: ``with clock("perf/rollout_s"): ...``; ``clock.times``."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.times: dict[str, float] = {}
        synchronize(device)
        self.start = time.perf_counter()

    def call(self, key: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, its seconds added to ``key``."""
        with self(key):
            return fn(*args, **kwargs)

    def elapsed(self) -> float:
        """Seconds since the stopwatch was made (after the device's queued work)."""
        synchronize(self.device)
        return time.perf_counter() - self.start

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            synchronize(self.device)
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - start


def reset_peak_memory(device: Any) -> None:
    """Start a new peak for :func:`peak_memory_gb` (CUDA only)."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: Any) -> float | None:
    """The most memory tensors held on the CUDA ``device`` since the last reset, in GB (1e9
    bytes); None on other devices (a CPU has no allocator peak to read)."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / GB
