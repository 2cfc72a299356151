"""The machine a benchmark ran on: device, peak FLOPS, package versions; MFU and clean-up."""

from __future__ import annotations

import gc
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any

# Dense bf16 tensor-core peaks (TFLOPS, no sparsity) from the vendors' data sheets, matched in
# order against torch.cuda.get_device_name(); a device not listed gets no MFU.
PEAK_BF16_TFLOPS: list[tuple[str, float | None]] = [
    ("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0),
    ("L40S", 362.0), ("L4", 121.0), ("A10G", None), ("A10", 125.0), ("RTX 4090", 165.0),
]
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes",
            "liger-kernel", "flash-attn", "vllm")


def device_kind(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def peak_tflops(name: str) -> float | None:
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in name:
            return tflops
    return None


def device_info(kind: str) -> dict[str, Any]:
    """Name, memory and dense bf16 peak of the device (None for a CPU: no MFU there)."""
    import torch

    if kind == "cuda":
        props = torch.cuda.get_device_properties(0)
        return {"kind": "cuda", "name": props.name, "count": torch.cuda.device_count(),
                "memory_gb": props.total_memory / 1e9, "peak_bf16_tflops": peak_tflops(props.name),
                "cuda": torch.version.cuda}
    return {"kind": "cpu", "name": _cpu_name(), "threads": torch.get_num_threads(),
            "memory_gb": None, "peak_bf16_tflops": None, "cuda": None}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def versions() -> dict[str, str | None]:
    """Python, the installed packages that matter (None when absent) and align's commit."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["align_commit"] = _git_commit()
    return out


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                             capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("-dirty" if dirty else "")


def mfu(params: int, tokens_per_s: float | None, device: dict[str, Any]) -> float | None:
    """Model FLOPs utilisation: 6 x parameters x tokens/s over the device's dense bf16 peak
    (the 6N-per-token convention of the PaLM paper, whatever the run really computes: a
    reference forward, recomputation or a frozen LoRA base are not counted)."""
    peak = device.get("peak_bf16_tflops")
    if not peak or not tokens_per_s:
        return None
    return 6 * params * tokens_per_s / (peak * 1e12)


def free_memory() -> None:
    """Drop what the previous measurement left, so the next peak is its own (CUDA only: no
    memory is measured on a CPU, and a full garbage collection costs ~0.4 s there)."""
    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def partial(env: dict[str, Any], done: dict[str, Any]) -> None:
    """Save the parts of a measurement finished so far, which bench.py's ``run_isolated``
    returns if the rest runs out of time (a no-op for a measurement run in-process)."""
    import json

    if env.get("partial_file"):
        Path(env["partial_file"]).write_text(json.dumps(done, default=str))


def failure(e: BaseException) -> dict[str, Any]:
    """A measurement that could not finish: out of memory, or an error, with its message."""
    import torch

    oom = isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()
    return {"status": "oom" if oom else "error",
            "reason": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
