"""Size statistics of validated rows, for `align data inspect`."""

from __future__ import annotations

from typing import Any


def _length(value: Any) -> int | None:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return sum(len(str(m.get("content") or "")) for m in value)
    return None


def text_stats(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per text field: min, mean and max length in characters (message lists: summed content)."""
    lengths: dict[str, list[int]] = {}
    for row in rows:
        for key, value in row.items():
            n = _length(value)
            if n is not None:
                lengths.setdefault(key, []).append(n)
    return {k: {"min": min(v), "mean": sum(v) / len(v), "max": max(v)} for k, v in lengths.items()}
